// Torch-level pieces of multi-dilation graph convolution shared by the CPU kernels and the CUDA
// glue: argument checks (a safety net behind the Python wrapper's friendlier ones), the summed
// adjacency of the sum reduction, and the bias gradient.
//
// x [N, C_in, T, V], weight [K, C_out, C_in] shared by every dilation, adjacency [D, K, V, V]
// (A[d, k, v, w] carries source joint v to target joint w in subset k of dilation d):
//   sum:    y[n, o, t, w]            = sum_d sum_k sum_v Z[n, k, o, t, v] A[d, k, v, w] + b[o]
//   concat: y[n, d * C_out + o, t, w] = sum_k sum_v Z[n, k, o, t, v] A[d, k, v, w]
//                                       + b[d * C_out + o]
// with Z[n, k, o, t, v] = sum_c W[k, o, c] x[n, c, t, v].
#pragma once

#include "graph_conv/graph_conv_common.h"

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/sum.h>
#include <c10/util/Exception.h>

#include <array>
#include <cstdint>
#include <optional>

namespace skelops::multi_dilation_graph_conv {

using graph_conv::empty_like_none;

struct Problem {
  int64_t N, C_in, T, V, K, C_out, D;
  bool concat;
  bool has_bias;

  int64_t out_channels() const { return concat ? D * C_out : C_out; }
};

inline Problem check_problem(const char* op, const at::Tensor& x, const at::Tensor& weight,
                             const at::Tensor& adjacency, const std::optional<at::Tensor>& bias,
                             bool concat) {
  TORCH_CHECK_VALUE(x.dim() == 4, op, ": x must be 4-D [N, C_in, T, V], got ", x.dim(), "-D");
  TORCH_CHECK_VALUE(weight.dim() == 3, op, ": weight must be 3-D [K, C_out, C_in], got ",
                    weight.dim(), "-D");
  TORCH_CHECK_VALUE(adjacency.dim() == 4, op, ": adjacency must be 4-D [D, K, V, V], got ",
                    adjacency.dim(), "-D");
  graph_conv::check_dtype_device(op, x, weight, adjacency);
  const graph_conv::Problem sizes = graph_conv::problem_sizes(op, x, weight);
  Problem p{sizes.N, sizes.C_in, sizes.T, sizes.V, sizes.K, sizes.C_out, adjacency.size(0),
            concat, false};
  TORCH_CHECK_VALUE(p.D > 0, op, ": adjacency must hold at least one dilation, got shape ",
                    adjacency.sizes());
  TORCH_CHECK_VALUE(adjacency.size(1) == p.K, op, ": adjacency must have K=", p.K,
                    " subsets (weight.shape[0]), got ", adjacency.size(1));
  TORCH_CHECK_VALUE(adjacency.size(2) == p.V && adjacency.size(3) == p.V, op,
                    ": adjacency must be [D, K, V, V] with V=", p.V, ", got shape ",
                    adjacency.sizes());
  p.has_bias = bias.has_value() && bias->defined();
  if (p.has_bias) {
    const at::Tensor& b = *bias;
    graph_conv::check_bias_dtype_device(op, b, x);
    TORCH_CHECK_VALUE(b.dim() == 1 && b.size(0) == p.out_channels(), op, ": bias must be [",
                      concat ? "D * C_out" : "C_out", "]=[", p.out_channels(), "], got shape ",
                      b.sizes());
  }
  return p;
}

inline void check_grad_out(const char* op, const at::Tensor& grad_out, const at::Tensor& x,
                           const Problem& p) {
  TORCH_CHECK_VALUE(grad_out.dim() == 4 && grad_out.size(0) == p.N &&
                        grad_out.size(1) == p.out_channels() && grad_out.size(2) == p.T &&
                        grad_out.size(3) == p.V,
                    op, ": grad_out must be [", p.N, ", ", p.out_channels(), ", ", p.T, ", ",
                    p.V, "], got ", grad_out.sizes());
  TORCH_CHECK_TYPE(grad_out.scalar_type() == x.scalar_type(), op, ": grad_out dtype must be ",
                   x.scalar_type(), ", got ", grad_out.scalar_type());
  TORCH_CHECK_VALUE(grad_out.device() == x.device(), op, ": grad_out must be on ", x.device(),
                    ", got ", grad_out.device());
}

inline at::ScalarType accumulation_type(const at::Tensor& x) {
  return x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

// A_sum[k] = sum_d A[d, k] in x's dtype (summed in fp32 or fp64): the sum reduction is
// graph_conv with this adjacency.
inline at::Tensor summed_adjacency(const at::Tensor& adjacency) {
  return at::sum(adjacency, {0}, /*keepdim=*/false, accumulation_type(adjacency))
      .to(adjacency.scalar_type())
      .contiguous();
}

// The gradient of the summed adjacency reaches every dilation unchanged.
inline at::Tensor broadcast_adjacency_grad(const at::Tensor& grad_summed, const Problem& p) {
  return grad_summed.unsqueeze(0).expand({p.D, p.K, p.V, p.V}).contiguous();
}

// d bias[j] = sum_{n, t, w} grad_out[n, j, t, w], or an empty tensor when not asked for.
inline at::Tensor bias_gradient(const at::Tensor& grad_out, const at::Tensor& x, const Problem& p,
                                std::array<bool, 4> output_mask) {
  if (!(output_mask[3] && p.has_bias)) return empty_like_none(x);
  return at::sum(grad_out, {0, 2, 3}, /*keepdim=*/false, accumulation_type(x))
      .to(x.scalar_type())
      .contiguous();
}

}  // namespace skelops::multi_dilation_graph_conv
