// Torch-level pieces of partitioned self-attention shared by the CPU kernels and the CUDA glue:
// argument checks (a safety net behind the Python wrapper's friendlier ones), the partitions
// as int32, and the output layout.
//
//   q, k, v [B, H, T, V, D] (one dtype and device, any strides); joint_partition [G, J] and
//   frame_partition [P, W] int32/int64, each a permutation of range(V) / range(T); bias none,
//   [2W - 1, H] or [2W - 1, J, J, H] (q's dtype); out follows q's layout (layout_like), lse
//   [B, H, T, V] contiguous in the accumulation dtype (float32; float64 for float64 inputs).
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_strided.h>
#include <c10/util/Exception.h>
#include <skelops/checked_tensors.h>

#include "partition_attention_math.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <optional>
#include <tuple>
#include <vector>

namespace skelops::partition_attention {

struct Problem {
  int64_t B, H, T, V, D;
  int64_t P, W;  // frame windows x frames per window
  int64_t G, J;  // joint groups x joints per group
  int32_t bias_kind;
  int64_t tokens() const { return W * J; }  // N, tokens per partition
};

// float64 inputs keep their log-sum-exp in float64, everything else in float32.
inline at::ScalarType stats_dtype(at::ScalarType dtype) {
  return dtype == at::kDouble ? at::kDouble : at::kFloat;
}

// An uninitialised tensor of `like`'s sizes whose strides order the dimensions as `like`'s do
// (larger stride first, ties in dimension order): a dense tensor in like's memory layout, so
// that out and the gradients keep q's (k's, v's) layout, e.g. [B, T, V, H, D] in memory for
// heads sliced from a channels-last projection. skelops/ops/partition_attention.py's
// layout_like computes the same strides for the fake kernels.
inline at::Tensor empty_like_layout(const at::Tensor& like) {
  const int64_t dims = like.dim();
  std::vector<int64_t> order(dims);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return like.stride(a) > like.stride(b); });
  std::vector<int64_t> strides(dims);
  int64_t step = 1;
  for (int64_t i = dims - 1; i >= 0; --i) {
    strides[order[i]] = step;
    step *= std::max<int64_t>(like.size(order[i]), 1);
  }
  return at::empty_strided(like.sizes(), strides, like.options());
}

namespace detail {

// `t` (named `name`) must have q's shape, dtype and device.
inline void check_like_q(const char* op, const char* name, const at::Tensor& t,
                         const at::Tensor& q) {
  TORCH_CHECK_VALUE(t.sizes() == q.sizes(), op, ": ", name, " must have q's shape ", q.sizes(),
                    ", got ", t.sizes());
  TORCH_CHECK_TYPE(t.scalar_type() == q.scalar_type(), op, ": ", name, " dtype must be q's (",
                   q.scalar_type(), "), got ", t.scalar_type());
  TORCH_CHECK_VALUE(t.device() == q.device(), op, ": ", name, " must be on q's device (",
                    q.device(), "), got ", t.device());
}

// partition [rows, cols] (host copy) must hold every value of range(total) once.
inline void check_permutation(const char* op, const char* name, const at::Tensor& partition,
                              int64_t total) {
  const at::Tensor host = partition.cpu().to(at::kLong).contiguous();
  const int64_t* idx = host.const_data_ptr<int64_t>();
  std::vector<int64_t> seen_at(total, -1);
  for (int64_t e = 0; e < host.numel(); ++e) {
    const int64_t value = idx[e];
    TORCH_CHECK_VALUE(value >= 0 && value < total, op, ": ", name, " values must be in [0, ",
                      total, "), got ", value, " at flat position ", e);
    TORCH_CHECK_VALUE(seen_at[value] < 0, op, ": ", name, " must hold every index once; ", value,
                      " appears at flat positions ", seen_at[value], " and ", e);
    seen_at[value] = e;
  }
}

inline void check_partition(const char* op, const char* name, const at::Tensor& partition,
                            const at::Tensor& q, int64_t total, const char* what) {
  TORCH_CHECK_VALUE(partition.dim() == 2, op, ": ", name, " must be 2-D, got ", partition.dim(),
                    "-D");
  TORCH_CHECK_TYPE(partition.scalar_type() == at::kInt || partition.scalar_type() == at::kLong,
                   op, ": ", name, " must be int32 or int64, got ", partition.scalar_type());
  TORCH_CHECK_VALUE(partition.device() == q.device(), op, ": ", name, " must be on q's device (",
                    q.device(), "), got ", partition.device());
  TORCH_CHECK_VALUE(partition.numel() == total && total > 0, op, ": ", name, " must have ", what,
                    " = ", total, " entries (a partition of them), got shape ",
                    partition.sizes());
  static CheckedTensors<1> checked;
  checked.check_once({&partition}, total,
                     [&] { check_permutation(op, name, partition, total); });
}

}  // namespace detail

// Checks q, k, v, the partitions and the bias; returns the sizes.
inline Problem check_problem(const char* op, const at::Tensor& q, const at::Tensor& k,
                             const at::Tensor& v, const at::Tensor& joint_partition,
                             const at::Tensor& frame_partition,
                             const std::optional<at::Tensor>& bias, double scale,
                             double dropout_p) {
  TORCH_CHECK_VALUE(q.dim() == 5, op, ": q must be 5-D [B, H, T, V, D], got ", q.dim(), "-D");
  TORCH_CHECK_TYPE(at::isFloatingType(q.scalar_type()), op,
                   ": q must be a floating-point tensor, got ", q.scalar_type());
  detail::check_like_q(op, "k", k, q);
  detail::check_like_q(op, "v", v, q);
  Problem p{};
  p.B = q.size(0);
  p.H = q.size(1);
  p.T = q.size(2);
  p.V = q.size(3);
  p.D = q.size(4);
  TORCH_CHECK_VALUE(q.numel() > 0, op, ": q must be non-empty, got shape ", q.sizes());
  // Token numbers (b, h, t, v) and dropout element numbers times N fit int64 easily; the
  // kernels index tokens of one (b, h) with int32.
  TORCH_CHECK_VALUE(p.T * p.V < (int64_t{1} << 31), op, ": T * V must be below 2^31, got T=",
                    p.T, ", V=", p.V);
  detail::check_partition(op, "joint_partition", joint_partition, q, p.V, "V");
  detail::check_partition(op, "frame_partition", frame_partition, q, p.T, "T");
  p.G = joint_partition.size(0);
  p.J = joint_partition.size(1);
  p.P = frame_partition.size(0);
  p.W = frame_partition.size(1);
  p.bias_kind = kNoBias;
  if (bias.has_value() && bias->defined()) {
    const at::Tensor& b = *bias;
    TORCH_CHECK_TYPE(b.scalar_type() == q.scalar_type(), op, ": bias dtype must be q's (",
                     q.scalar_type(), "), got ", b.scalar_type());
    TORCH_CHECK_VALUE(b.device() == q.device(), op, ": bias must be on q's device (", q.device(),
                      "), got ", b.device());
    const bool frame_only = b.dim() == 2 && b.size(0) == 2 * p.W - 1 && b.size(1) == p.H;
    const bool frame_joint = b.dim() == 4 && b.size(0) == 2 * p.W - 1 && b.size(1) == p.J &&
                             b.size(2) == p.J && b.size(3) == p.H;
    TORCH_CHECK_VALUE(frame_only || frame_joint, op,
                      ": bias must be [2W - 1, H] = [", 2 * p.W - 1, ", ", p.H,
                      "] or [2W - 1, J, J, H] = [", 2 * p.W - 1, ", ", p.J, ", ", p.J, ", ", p.H,
                      "], got ", b.sizes());
    p.bias_kind = frame_only ? kFrameOffset : kFrameJointOffset;
  }
  TORCH_CHECK_VALUE(std::isfinite(scale), op, ": scale must be finite, got ", scale);
  TORCH_CHECK_VALUE(dropout_p >= 0.0 && dropout_p < 1.0, op,
                    ": dropout_p must be in [0, 1), got ", dropout_p);
  return p;
}

// The backward's extra inputs: grad_out and out of q's shape, dtype and device, lse as the
// forward returns it.
inline void check_backward_inputs(const char* op, const Problem& p, const at::Tensor& q,
                                  const at::Tensor& grad_out, const at::Tensor& out,
                                  const at::Tensor& lse) {
  detail::check_like_q(op, "grad_out", grad_out, q);
  detail::check_like_q(op, "out", out, q);
  TORCH_CHECK_VALUE(lse.dim() == 4 && lse.size(0) == p.B && lse.size(1) == p.H &&
                        lse.size(2) == p.T && lse.size(3) == p.V,
                    op, ": lse must be [B, H, T, V] = [", p.B, ", ", p.H, ", ", p.T, ", ", p.V,
                    "], got ", lse.sizes());
  TORCH_CHECK_TYPE(lse.scalar_type() == stats_dtype(q.scalar_type()), op, ": lse dtype must be ",
                   stats_dtype(q.scalar_type()), " (as the forward returns it), got ",
                   lse.scalar_type());
  TORCH_CHECK_VALUE(lse.device() == q.device(), op, ": lse must be on q's device (", q.device(),
                    "), got ", lse.device());
}

// The partitions as contiguous int32 (the kernels' index type).
inline at::Tensor partition_int32(const at::Tensor& partition) {
  return partition.to(at::kInt).contiguous();
}

inline at::Tensor empty_like_none(const at::Tensor& like) { return at::empty({0}, like.options()); }

// The forward's per-query log-sum-exp [B, H, T, V], contiguous, in the accumulation dtype.
inline at::Tensor empty_lse(const at::Tensor& q, const Problem& p) {
  return at::empty({p.B, p.H, p.T, p.V}, q.options().dtype(stats_dtype(q.scalar_type())));
}

// The backward's outputs: the gradients output_mask asks for (the bias's only with a bias),
// each in its input's layout (empty_like_layout), the others empty_like_none.
struct GradientOutputs {
  bool want_q, want_k, want_v, want_bias;
  at::Tensor q, k, v, bias;
  bool any() const { return want_q || want_k || want_v || want_bias; }
  std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> as_tuple() const {
    return {q, k, v, bias};
  }
};

inline GradientOutputs empty_gradients(const Problem& p, const at::Tensor& q, const at::Tensor& k,
                                       const at::Tensor& v, const std::optional<at::Tensor>& bias,
                                       std::array<bool, 4> output_mask) {
  GradientOutputs g{output_mask[0], output_mask[1], output_mask[2],
                    output_mask[3] && p.bias_kind != kNoBias};
  g.q = g.want_q ? empty_like_layout(q) : empty_like_none(q);
  g.k = g.want_k ? empty_like_layout(k) : empty_like_none(q);
  g.v = g.want_v ? empty_like_layout(v) : empty_like_none(q);
  g.bias = g.want_bias ? at::empty(bias->sizes(), q.options()) : empty_like_none(q);
  return g;
}

}  // namespace skelops::partition_attention
