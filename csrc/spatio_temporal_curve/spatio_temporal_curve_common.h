// Torch-level pieces of spatio-temporal curves shared by the CPU kernels and the CUDA glue:
// argument checks (a safety net behind the Python wrapper's friendlier ones).
//
//   x [N, C, T, V], key [N, D, T, V] (x's dtype and device), candidates [V, V] bool or none
//   (all joints); per transition (n, t, v), t < T - 1: next_joint [N, T - 1, V] int32,
//   log_prob and log_normalizer [N, T - 1, V] in the accumulation dtype (float32, float64 for
//   float64 inputs, so that float64 gradients are exact).
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/any.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>
#include <skelops/checked_tensors.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <optional>
#include <vector>

namespace skelops::spatio_temporal_curve {

struct Problem {
  int64_t N, C, T, V, D;
  int64_t steps;  // min(length, T - 1): the longest curve
  bool has_candidates;
};

// float64 inputs keep their transition statistics in float64, everything else in float32.
inline at::ScalarType stats_dtype(at::ScalarType dtype) {
  return dtype == at::kDouble ? at::kDouble : at::kFloat;
}

namespace detail {

// Every row of the host copy of candidates [V, V] needs a True: a row without one has no
// next joint.
inline void check_candidate_rows(const char* op, const at::Tensor& candidates, int64_t V) {
  const at::Tensor host = candidates.cpu().contiguous();
  const bool* c = host.const_data_ptr<bool>();
  for (int64_t v = 0; v < V; ++v) {
    bool any = false;
    for (int64_t w = 0; w < V && !any; ++w) any = c[v * V + w];
    TORCH_CHECK_VALUE(any, op, ": candidates must give every joint a candidate; row ", v,
                      " is all False");
  }
}

// Candidate masks are checked on the host; for GPU tensors once per live mask and version
// (skelops/checked_tensors.h), so that a training loop does not synchronise on every call.
inline void check_candidate_rows_cached(const char* op, const at::Tensor& candidates, int64_t V) {
  if (candidates.device().is_cpu()) {
    check_candidate_rows(op, candidates, V);
    return;
  }
  static CheckedTensors<1> checked;
  checked.check_once({&candidates}, V, [&] { check_candidate_rows(op, candidates, V); });
}

}  // namespace detail

inline Problem check_problem(const char* op, const at::Tensor& x, const at::Tensor& key,
                             const std::optional<at::Tensor>& candidates, int64_t length,
                             double scale) {
  TORCH_CHECK_VALUE(x.dim() == 4, op, ": x must be 4-D [N, C, T, V], got ", x.dim(), "-D");
  TORCH_CHECK_VALUE(key.dim() == 4, op, ": key must be 4-D [N, D, T, V], got ", key.dim(), "-D");
  TORCH_CHECK_TYPE(at::isFloatingType(x.scalar_type()), op,
                   ": x must be a floating-point tensor, got ", x.scalar_type());
  TORCH_CHECK_TYPE(key.scalar_type() == x.scalar_type(), op, ": key dtype must be x's (",
                   x.scalar_type(), "), got ", key.scalar_type());
  TORCH_CHECK_VALUE(key.device() == x.device(), op, ": key must be on x's device (", x.device(),
                    "), got ", key.device());
  Problem p{};
  p.N = x.size(0);
  p.C = x.size(1);
  p.T = x.size(2);
  p.V = x.size(3);
  p.D = key.size(1);
  TORCH_CHECK_VALUE(p.N > 0 && p.C > 0 && p.T > 0 && p.V > 0, op,
                    ": x must be non-empty, got shape ", x.sizes());
  TORCH_CHECK_VALUE(p.T >= 2, op,
                    ": x must have T >= 2 frames (curves link adjacent frames), got T=", p.T);
  TORCH_CHECK_VALUE(key.size(0) == p.N && key.size(2) == p.T && key.size(3) == p.V && p.D > 0, op,
                    ": key must be [N, D, T, V] = [", p.N, ", D >= 1, ", p.T, ", ", p.V, "], got ",
                    key.sizes());
  // Joint and flat (frame, joint) indices are int32 in the kernels.
  TORCH_CHECK_VALUE(p.T * p.V < (int64_t{1} << 31), op, ": T * V must be below 2^31, got T=",
                    p.T, ", V=", p.V);
  TORCH_CHECK_VALUE(length >= 1, op, ": length must be >= 1 (steps along each curve), got ",
                    length);
  TORCH_CHECK_VALUE(std::isfinite(scale), op, ": scale must be finite, got ", scale);
  p.steps = std::min<int64_t>(length, p.T - 1);
  p.has_candidates = candidates.has_value() && candidates->defined();
  if (p.has_candidates) {
    const at::Tensor& c = *candidates;
    TORCH_CHECK_TYPE(c.scalar_type() == at::kBool, op, ": candidates must be a bool tensor, got ",
                     c.scalar_type());
    TORCH_CHECK_VALUE(c.device() == x.device(), op, ": candidates must be on x's device (",
                      x.device(), "), got ", c.device());
    TORCH_CHECK_VALUE(c.dim() == 2 && c.size(0) == p.V && c.size(1) == p.V, op,
                      ": candidates must be [V, V] = [", p.V, ", ", p.V, "], got ", c.sizes());
    detail::check_candidate_rows_cached(op, c, p.V);
  }
  return p;
}

// The backward's extra inputs: grad_out like x, and the forward's transition statistics.
inline void check_backward_inputs(const char* op, const Problem& p, const at::Tensor& grad_out,
                                  const at::Tensor& x, const at::Tensor& next_joint,
                                  const at::Tensor& log_prob, const at::Tensor& log_normalizer) {
  TORCH_CHECK_VALUE(grad_out.dim() == 4 && grad_out.size(0) == p.N && grad_out.size(1) == p.C &&
                        grad_out.size(2) == p.T && grad_out.size(3) == p.V,
                    op, ": grad_out must be [", p.N, ", ", p.C, ", ", p.T, ", ", p.V, "], got ",
                    grad_out.sizes());
  TORCH_CHECK_TYPE(grad_out.scalar_type() == x.scalar_type(), op, ": grad_out dtype must be ",
                   x.scalar_type(), ", got ", grad_out.scalar_type());
  TORCH_CHECK_VALUE(grad_out.device() == x.device(), op, ": grad_out must be on ", x.device(),
                    ", got ", grad_out.device());
  const at::ScalarType stats = stats_dtype(x.scalar_type());
  const std::array<const char*, 3> names{"next_joint", "log_prob", "log_normalizer"};
  const std::array<const at::Tensor*, 3> tensors{&next_joint, &log_prob, &log_normalizer};
  for (size_t i = 0; i < tensors.size(); ++i) {
    const at::Tensor& t = *tensors[i];
    TORCH_CHECK_VALUE(t.dim() == 3 && t.size(0) == p.N && t.size(1) == p.T - 1 &&
                          t.size(2) == p.V,
                      op, ": ", names[i], " must be [N, T - 1, V] = [", p.N, ", ", p.T - 1, ", ",
                      p.V, "], got ", t.sizes());
    TORCH_CHECK_VALUE(t.device() == x.device(), op, ": ", names[i], " must be on ", x.device(),
                      ", got ", t.device());
    const at::ScalarType want = i == 0 ? at::kInt : stats;
    TORCH_CHECK_TYPE(t.scalar_type() == want, op, ": ", names[i], " dtype must be ", want,
                     " (as the forward returns it), got ", t.scalar_type());
  }
}

inline at::Tensor empty_like_none(const at::Tensor& like) { return at::empty({0}, like.options()); }

}  // namespace skelops::spatio_temporal_curve
