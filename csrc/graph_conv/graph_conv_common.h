// Torch-level pieces of graph convolution shared by the CPU kernels and the CUDA glue:
// argument checks (a safety net behind the Python wrapper's friendlier ones) and the bias
// gradients, which are small reductions done with ATen ops on any device.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/einsum.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/sum.h>
#include <c10/util/Exception.h>

#include <array>
#include <optional>

namespace skelops::graph_conv {

struct Problem {
  int64_t N, C_in, T, V, K, C_out;
  bool per_sample_adjacency;  // adjacency is [N, K, V, V] rather than [K, V, V]
  bool has_bias;
  bool bias_before_aggregation;  // bias is [K, C_out] rather than [C_out]
};

// Sizes of x [N, C_in, T, V] and weight [K, C_out, C_in] (ranks already checked), which must
// be non-empty and agree on C_in. Shared with sparse graph convolution.
inline Problem problem_sizes(const char* op, const at::Tensor& x, const at::Tensor& weight) {
  Problem p{};
  p.N = x.size(0);
  p.C_in = x.size(1);
  p.T = x.size(2);
  p.V = x.size(3);
  p.K = weight.size(0);
  p.C_out = weight.size(1);
  TORCH_CHECK_VALUE(p.N > 0 && p.C_in > 0 && p.T > 0 && p.V > 0, op,
                    ": x must be non-empty, got shape ", x.sizes());
  TORCH_CHECK_VALUE(p.K > 0 && p.C_out > 0, op, ": weight must be non-empty, got shape ",
                    weight.sizes());
  TORCH_CHECK_VALUE(weight.size(2) == p.C_in, op, ": weight.shape[2] must equal C_in=", p.C_in,
                    ", got ", weight.size(2));
  return p;
}

// A bias of x's dtype and on x's device (the dense, sparse and multi-dilation checks).
inline void check_bias_dtype_device(const char* op, const at::Tensor& b, const at::Tensor& x) {
  TORCH_CHECK_TYPE(b.scalar_type() == x.scalar_type(), op, ": bias dtype must be ",
                   x.scalar_type(), ", got ", b.scalar_type());
  TORCH_CHECK_VALUE(b.device() == x.device(), op, ": bias must be on ", x.device(), ", got ",
                    b.device());
}

// bias: none, [C_out] (added after aggregation) or [K, C_out] (before), of x's dtype and device;
// sets p.has_bias and p.bias_before_aggregation.
inline void check_bias(const char* op, const std::optional<at::Tensor>& bias, const at::Tensor& x,
                       Problem& p) {
  p.has_bias = bias.has_value() && bias->defined();
  if (p.has_bias) {
    const at::Tensor& b = *bias;
    check_bias_dtype_device(op, b, x);
    const bool after = b.dim() == 1 && b.size(0) == p.C_out;
    const bool before = b.dim() == 2 && b.size(0) == p.K && b.size(1) == p.C_out;
    TORCH_CHECK_VALUE(after || before, op, ": bias must be [C_out]=[", p.C_out, "] or [K, C_out]=[",
                      p.K, ", ", p.C_out, "], got shape ", b.sizes());
    p.bias_before_aggregation = before;
  }
}

// x, weight and adjacency: floating point, one dtype, one device (shared by the dense and
// multi-dilation graph convolutions).
inline void check_dtype_device(const char* op, const at::Tensor& x, const at::Tensor& weight,
                               const at::Tensor& adjacency) {
  TORCH_CHECK_TYPE(at::isFloatingType(x.scalar_type()), op,
                   ": x must be a floating-point tensor, got ", x.scalar_type());
  TORCH_CHECK_TYPE(weight.scalar_type() == x.scalar_type() &&
                       adjacency.scalar_type() == x.scalar_type(),
                   op, ": x, weight and adjacency must share one dtype, got ", x.scalar_type(),
                   ", ", weight.scalar_type(), ", ", adjacency.scalar_type());
  TORCH_CHECK_VALUE(weight.device() == x.device() && adjacency.device() == x.device(), op,
                    ": x, weight and adjacency must be on one device, got ", x.device(), ", ",
                    weight.device(), ", ", adjacency.device());
}

inline Problem check_problem(const char* op, const at::Tensor& x, const at::Tensor& weight,
                             const at::Tensor& adjacency, const std::optional<at::Tensor>& bias) {
  TORCH_CHECK_VALUE(x.dim() == 4, op, ": x must be 4-D [N, C_in, T, V], got ", x.dim(), "-D");
  TORCH_CHECK_VALUE(weight.dim() == 3, op, ": weight must be 3-D [K, C_out, C_in], got ",
                    weight.dim(), "-D");
  TORCH_CHECK_VALUE(adjacency.dim() == 3 || adjacency.dim() == 4, op,
                    ": adjacency must be [K, V, V] or [N, K, V, V], got ", adjacency.dim(), "-D");
  check_dtype_device(op, x, weight, adjacency);
  Problem p = problem_sizes(op, x, weight);
  p.per_sample_adjacency = adjacency.dim() == 4;
  const int64_t a0 = p.per_sample_adjacency ? 1 : 0;
  if (p.per_sample_adjacency) {
    TORCH_CHECK_VALUE(adjacency.size(0) == p.N, op, ": adjacency.shape[0] must equal N=", p.N,
                      ", got ", adjacency.size(0));
  }
  TORCH_CHECK_VALUE(adjacency.size(a0) == p.K, op, ": adjacency must have K=", p.K,
                    " subsets (weight.shape[0]), got ", adjacency.size(a0));
  TORCH_CHECK_VALUE(adjacency.size(a0 + 1) == p.V && adjacency.size(a0 + 2) == p.V, op,
                    ": adjacency must be V x V with V=", p.V, ", got shape ", adjacency.sizes());
  check_bias(op, bias, x, p);
  return p;
}

inline void check_grad_out(const char* op, const at::Tensor& grad_out, const at::Tensor& x,
                           const Problem& p) {
  TORCH_CHECK_VALUE(grad_out.dim() == 4 && grad_out.size(0) == p.N && grad_out.size(1) == p.C_out &&
                        grad_out.size(2) == p.T && grad_out.size(3) == p.V,
                    op, ": grad_out must be [", p.N, ", ", p.C_out, ", ", p.T, ", ", p.V,
                    "], got ", grad_out.sizes());
  TORCH_CHECK_TYPE(grad_out.scalar_type() == x.scalar_type(), op, ": grad_out dtype must be ",
                   x.scalar_type(), ", got ", grad_out.scalar_type());
  TORCH_CHECK_VALUE(grad_out.device() == x.device(), op, ": grad_out must be on ", x.device());
}

// Gradients of the bias term (see bias_map_entry in graph_conv_math.h), from
// S[n, o, w] = sum_t grad_out[n, o, t, w]:
//   after:  d bias[o]     = sum_{n, w} S[n, o, w]
//   before: d bias[k, o]  = sum_{n, w} S[n, o, w] * colsum[n, k, w]
//           d A[k, v, w] += sum_o bias[k, o] * S[n, o, w]   (for every v; summed over n
//                                                            unless A is per sample)
// Returns d bias; adds the adjacency part into grad_adjacency (acc dtype) when it is defined.
inline at::Tensor bias_backward(const at::Tensor& grad_out, const at::Tensor& adjacency,
                                const at::Tensor& bias, const Problem& p,
                                at::Tensor* grad_adjacency_acc) {
  const auto acc = grad_out.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const at::Tensor S = at::sum(grad_out, {2}, /*keepdim=*/false, acc);  // [N, C_out, V]
  if (!p.bias_before_aggregation) {
    return at::sum(S, {0, 2}, false, acc).to(bias.scalar_type()).contiguous();
  }
  const at::Tensor b = bias.to(acc);
  const at::Tensor colsum = at::sum(adjacency, {-2}, false, acc);  // [K, V] or [N, K, V]
  at::Tensor grad_bias = p.per_sample_adjacency ? at::einsum("now,nkw->ko", {S, colsum})
                                                : at::einsum("ow,kw->ko", {at::sum(S, {0}), colsum});
  if (grad_adjacency_acc != nullptr && grad_adjacency_acc->defined()) {
    if (p.per_sample_adjacency) {
      grad_adjacency_acc->add_(at::einsum("ko,now->nkw", {b, S}).unsqueeze(-2));
    } else {
      grad_adjacency_acc->add_(at::einsum("ko,ow->kw", {b, at::sum(S, {0})}).unsqueeze(-2));
    }
  }
  return grad_bias.to(bias.scalar_type()).contiguous();
}

inline at::Tensor empty_like_none(const at::Tensor& like) { return at::empty({0}, like.options()); }

// The bias's share of graph_conv_backward for every backend: d bias when output_mask asks for
// it (an empty tensor otherwise), and, for a bias before aggregation, its part of dA added into
// grad_adjacency_acc whenever dA is asked for, whether or not d bias itself is.
inline at::Tensor bias_gradients(const at::Tensor& grad_out, const at::Tensor& x,
                                 const at::Tensor& adjacency,
                                 const std::optional<at::Tensor>& bias, const Problem& p,
                                 std::array<bool, 4> output_mask,
                                 at::Tensor* grad_adjacency_acc) {
  const bool need_grad_bias = output_mask[3] && p.has_bias;
  const bool bias_reaches_adjacency = output_mask[2] && p.has_bias && p.bias_before_aggregation;
  if (!need_grad_bias && !bias_reaches_adjacency) return empty_like_none(x);
  at::Tensor grad_bias =
      bias_backward(grad_out, adjacency, *bias, p, output_mask[2] ? grad_adjacency_acc : nullptr);
  return need_grad_bias ? grad_bias : empty_like_none(x);
}

}  // namespace skelops::graph_conv
