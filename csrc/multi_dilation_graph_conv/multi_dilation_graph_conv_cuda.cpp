// CUDA glue of skelops::multi_dilation_graph_conv and its backward: argument checks, output and
// fp32 accumulator allocation, the current stream, and the torch-free launchers.
//
// Sum reduction: graph_conv's CUDA kernels with the summed adjacency (called as functions).
// Concat reduction:
//   forward: launch_concat_forward (channels mixed once for every dilation) when that costs
//     fewer FLOPs (multi_dilation_graph_conv_math.h), else graph_conv's forward per dilation;
//   dX = sum_k W_k^T sum_d dY_d A[d, k]^T: graph_conv's forward kernel on dY with transposed
//     views of W and A and the dilations as Branches (dY_d is channel block d of grad_out);
//   dW: as graph_conv's weight gradient with the roles of x and dY exchanged,
//     dW_k^T[c, o] = sum x[c, t, v] (sum_d dY_d A[d, k]^T)[o, t, v] (one mix for every
//     dilation), or per dilation when mixing once is the costlier order;
//   dA[d] = graph_conv's adjacency gradient for dY_d, per dilation.
// x and grad_out are passed with their strides (no copies); d bias is an ATen reduction.
#include "multi_dilation_graph_conv/multi_dilation_graph_conv_common.h"
#include "multi_dilation_graph_conv/multi_dilation_graph_conv_kernels.cuh"
#include "multi_dilation_graph_conv/multi_dilation_graph_conv_math.h"

#include "graph_conv/graph_conv_ops.h"

#include <skelops/cuda_glue.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <array>
#include <optional>
#include <tuple>
#include <type_traits>

namespace skelops::multi_dilation_graph_conv {
namespace {

using namespace skelops::cuda;
using graph_conv::AdjacencyStrides;
using graph_conv::Branches;

FrameStrides frame_strides(const at::Tensor& t) {
  return {t.stride(0), t.stride(1), t.stride(2), t.stride(3)};
}

WeightStrides weight_strides(const at::Tensor& weight) {
  return {weight.stride(0), weight.stride(1), weight.stride(2)};
}

DilatedAdjacencyStrides adjacency_strides(const at::Tensor& adjacency) {
  return {adjacency.stride(0), adjacency.stride(1), adjacency.stride(2), adjacency.stride(3)};
}

// One dilation's [K, V, V] kernel as graph_conv's shared adjacency, or its transpose.
AdjacencyStrides branch_strides(const DilatedAdjacencyStrides& as, bool transposed) {
  return transposed ? AdjacencyStrides{0, as.k, as.w, as.v} : AdjacencyStrides{0, as.k, as.v, as.w};
}

graph_conv::Dims graph_conv_dims(const Problem& p) {
  return {p.N, p.C_in, p.T, p.V, p.K, p.C_out};
}

// The same sizes with input and output channels exchanged (the backward's dY-side kernels).
graph_conv::Dims exchanged_dims(const Problem& p) {
  return {p.N, p.C_out, p.T, p.V, p.K, p.C_in};
}

at::Tensor multi_dilation_graph_conv_cuda(const at::Tensor& x, const at::Tensor& weight,
                                          const at::Tensor& adjacency,
                                          const std::optional<at::Tensor>& bias, bool concat) {
  const char* op = "skelops::multi_dilation_graph_conv";
  const Problem p = check_problem(op, x, weight, adjacency, bias, concat);
  check_cuda(op, x);
  if (!concat) return graph_conv::graph_conv_cuda(x, weight, summed_adjacency(adjacency), bias);
  const c10::cuda::CUDAGuard guard(x.device());
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream().stream();
  at::Tensor y = at::empty({p.N, p.D * p.C_out, p.T, p.V}, x.options());
  const at::Tensor b = p.has_bias ? bias->contiguous() : at::Tensor();
  const DilatedAdjacencyStrides as = adjacency_strides(adjacency);
  dispatch_cuda_dtype(op, x.scalar_type(), [&](auto* type_tag) {
    using scalar_t = std::remove_pointer_t<decltype(type_tag)>;
    if (mix_once_is_cheaper(p.C_in, p.C_out, p.V, p.D)) {
      check_launch(op, "forward",
                   launch_concat_forward<scalar_t>(
                       data_of<scalar_t>(x), frame_strides(x), data_of<scalar_t>(weight),
                       weight_strides(weight), data_of<scalar_t>(adjacency), as,
                       b.defined() ? data_of<scalar_t>(b) : nullptr, mutable_data_of<scalar_t>(y),
                       Dims{p.N, p.C_in, p.T, p.V, p.K, p.C_out, p.D}, stream));
      return;
    }
    // Narrow inputs: aggregating x per dilation and mixing each result does fewer FLOPs;
    // graph_conv's forward writes each branch, which is copied into its channel block.
    at::Tensor bias_map;  // [1, D * C_out, V] fp32
    if (p.has_bias) {
      bias_map = at::empty({1, p.D * p.C_out, p.V}, x.options().dtype(at::kFloat));
      check_launch(op, "bias map",
                   graph_conv::launch_bias_map<scalar_t>(
                       data_of<scalar_t>(b), /*before_aggregation=*/false, nullptr, 1, p.K,
                       p.D * p.C_out, p.V, nullptr, bias_map.mutable_data_ptr<float>(), stream));
    }
    at::Tensor branch = at::empty({p.N, p.C_out, p.T, p.V}, x.options());
    for (int64_t d = 0; d < p.D; ++d) {
      check_launch(op, "forward",
                   graph_conv::launch_graph_conv_forward<scalar_t>(
                       data_of<scalar_t>(x), frame_strides(x), data_of<scalar_t>(weight),
                       weight_strides(weight), data_of<scalar_t>(adjacency) + d * as.d,
                       branch_strides(as, false),
                       bias_map.defined() ? bias_map.const_data_ptr<float>() + d * p.C_out * p.V
                                          : nullptr,
                       0, mutable_data_of<scalar_t>(branch), graph_conv_dims(p), stream));
      y.narrow(1, d * p.C_out, p.C_out).copy_(branch);
    }
  });
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> multi_dilation_graph_conv_backward_cuda(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& weight,
    const at::Tensor& adjacency, const std::optional<at::Tensor>& bias, bool concat,
    std::array<bool, 4> output_mask) {
  const char* op = "skelops::multi_dilation_graph_conv_backward";
  const Problem p = check_problem(op, x, weight, adjacency, bias, concat);
  check_cuda(op, x);
  check_grad_out(op, grad_out, x, p);
  if (!concat) {
    auto [grad_x, grad_weight, grad_summed, grad_bias] = graph_conv::graph_conv_backward_cuda(
        grad_out, x, weight, summed_adjacency(adjacency), bias, output_mask);
    at::Tensor grad_adjacency =
        output_mask[2] ? broadcast_adjacency_grad(grad_summed, p) : empty_like_none(x);
    return {grad_x, grad_weight, grad_adjacency, grad_bias};
  }
  const c10::cuda::CUDAGuard guard(x.device());
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream().stream();
  const auto f32 = x.options().dtype(at::kFloat);
  at::Tensor grad_x = empty_like_none(x), grad_weight = empty_like_none(x),
             grad_adjacency = empty_like_none(x);
  dispatch_cuda_dtype(op, x.scalar_type(), [&](auto* type_tag) {
    using scalar_t = std::remove_pointer_t<decltype(type_tag)>;
    const FrameStrides gs = frame_strides(grad_out), xs = frame_strides(x);
    const WeightStrides ws = weight_strides(weight);
    const DilatedAdjacencyStrides as = adjacency_strides(adjacency);
    const scalar_t* const g = data_of<scalar_t>(grad_out);
    const scalar_t* const a = data_of<scalar_t>(adjacency);
    // dY_d = grad_out's channel block d; summed over d through A[d, k]^T.
    const Branches dilations{p.D, p.C_out * gs.c, as.d};
    if (output_mask[0]) {
      grad_x = at::empty({p.N, p.C_in, p.T, p.V}, x.options());
      check_launch(op, "grad_x",
                   graph_conv::launch_graph_conv_forward<scalar_t>(
                       g, gs, data_of<scalar_t>(weight), WeightStrides{ws.k, ws.c, ws.o}, a,
                       branch_strides(as, true), nullptr, 0, mutable_data_of<scalar_t>(grad_x),
                       exchanged_dims(p), stream, dilations));
    }
    if (output_mask[1]) {
      if (mix_once_is_cheaper(p.C_in, p.C_out, p.V, p.D)) {
        at::Tensor acc = at::empty({p.K, p.C_in, p.C_out}, f32);  // dW_k^T
        check_launch(op, "grad_weight",
                     graph_conv::launch_graph_conv_weight_grad<scalar_t>(
                         data_of<scalar_t>(x), xs, g, gs, a, branch_strides(as, true),
                         acc.mutable_data_ptr<float>(), exchanged_dims(p), stream, dilations));
        grad_weight = acc.permute({0, 2, 1}).to(x.scalar_type()).contiguous();
      } else {
        at::Tensor acc = at::empty({p.D, p.K, p.C_out, p.C_in}, f32);
        for (int64_t d = 0; d < p.D; ++d) {
          check_launch(op, "grad_weight",
                       graph_conv::launch_graph_conv_weight_grad<scalar_t>(
                           g + d * p.C_out * gs.c, gs, data_of<scalar_t>(x), xs, a + d * as.d,
                           branch_strides(as, false),
                           acc.mutable_data_ptr<float>() + d * p.K * p.C_out * p.C_in,
                           graph_conv_dims(p), stream));
        }
        grad_weight = acc.sum(0).to(x.scalar_type());
      }
    }
    if (output_mask[2]) {
      at::Tensor acc = at::empty({p.D, p.K, p.V, p.V}, f32);
      for (int64_t d = 0; d < p.D; ++d) {
        check_launch(op, "grad_adjacency",
                     graph_conv::launch_graph_conv_adjacency_grad<scalar_t>(
                         g + d * p.C_out * gs.c, gs, data_of<scalar_t>(x), xs,
                         data_of<scalar_t>(weight), ws, /*per_sample_adjacency=*/false,
                         acc.mutable_data_ptr<float>() + d * p.K * p.V * p.V, graph_conv_dims(p),
                         stream));
      }
      grad_adjacency = acc.to(x.scalar_type());
    }
  });
  return {grad_x, grad_weight, grad_adjacency, bias_gradient(grad_out, x, p, output_mask)};
}

}  // namespace

TORCH_LIBRARY_IMPL(skelops, CUDA, m) {
  m.impl("multi_dilation_graph_conv", &multi_dilation_graph_conv_cuda);
  m.impl("multi_dilation_graph_conv_backward", &multi_dilation_graph_conv_backward_cuda);
}

}  // namespace skelops::multi_dilation_graph_conv
