// CUDA glue of skelops::graph_conv and skelops::graph_conv_backward: argument checks, output
// and fp32 accumulator allocation, the current stream, and the torch-free launchers of
// graph_conv_kernels.cu. x and grad_out are passed with their strides (no copies); the bias
// gradients are ATen reductions (bias_backward), as on the CPU.
#include "graph_conv/graph_conv_common.h"
#include "graph_conv/graph_conv_kernels.cuh"
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

namespace skelops::graph_conv {

using namespace skelops::cuda;

namespace {

FrameStrides frame_strides(const at::Tensor& t) {
  return {t.stride(0), t.stride(1), t.stride(2), t.stride(3)};
}

WeightStrides weight_strides(const at::Tensor& weight) {
  return {weight.stride(0), weight.stride(1), weight.stride(2)};
}

AdjacencyStrides adjacency_strides(const at::Tensor& adjacency, const Problem& p) {
  if (p.per_sample_adjacency) {
    return {adjacency.stride(0), adjacency.stride(1), adjacency.stride(2), adjacency.stride(3)};
  }
  return {0, adjacency.stride(0), adjacency.stride(1), adjacency.stride(2)};
}

Dims dims_of(const Problem& p) { return {p.N, p.C_in, p.T, p.V, p.K, p.C_out}; }

// The fp32 [Nb, C_out, V] bias map the forward's epilogue adds (see launch_bias_map);
// *sample_stride is 0 when one map serves every sample.
template <typename scalar_t>
at::Tensor make_bias_map(const char* op, const Problem& p, const at::Tensor& adjacency,
                         const at::Tensor& bias, cudaStream_t stream, int64_t* sample_stride) {
  const int64_t Nb = p.bias_before_aggregation && p.per_sample_adjacency ? p.N : 1;
  const auto f32 = adjacency.options().dtype(at::kFloat);
  at::Tensor bias_map = at::empty({Nb, p.C_out, p.V}, f32);
  const at::Tensor b = bias.contiguous();
  at::Tensor a, column_sums;
  if (p.bias_before_aggregation) {
    a = adjacency.contiguous();
    column_sums = at::empty({Nb, p.K, p.V}, f32);
  }
  check_launch(op, "bias map",
               launch_bias_map<scalar_t>(
                   data_of<scalar_t>(b), p.bias_before_aggregation,
                   a.defined() ? data_of<scalar_t>(a) : nullptr, Nb, p.K, p.C_out, p.V,
                   column_sums.defined() ? column_sums.mutable_data_ptr<float>() : nullptr,
                   bias_map.mutable_data_ptr<float>(), stream));
  *sample_stride = Nb == 1 ? 0 : p.C_out * p.V;
  return bias_map;
}

}  // namespace

at::Tensor graph_conv_cuda(const at::Tensor& x, const at::Tensor& weight,
                           const at::Tensor& adjacency, const std::optional<at::Tensor>& bias) {
  const char* op = "skelops::graph_conv";
  const Problem p = check_problem(op, x, weight, adjacency, bias);
  check_cuda(op, x);
  const c10::cuda::CUDAGuard guard(x.device());
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream().stream();
  at::Tensor y;
  dispatch_cuda_dtype(op, x.scalar_type(), [&](auto* type_tag) {
    using scalar_t = std::remove_pointer_t<decltype(type_tag)>;
    at::Tensor bias_map;
    int64_t bias_map_stride = 0;
    if (p.has_bias) {
      bias_map = make_bias_map<scalar_t>(op, p, adjacency, *bias, stream, &bias_map_stride);
    }
    y = at::empty({p.N, p.C_out, p.T, p.V}, x.options());
    check_launch(op, "forward",
                 launch_graph_conv_forward<scalar_t>(
                     data_of<scalar_t>(x), frame_strides(x), data_of<scalar_t>(weight),
                     weight_strides(weight), data_of<scalar_t>(adjacency),
                     adjacency_strides(adjacency, p),
                     bias_map.defined() ? bias_map.const_data_ptr<float>() : nullptr,
                     bias_map_stride, mutable_data_of<scalar_t>(y), dims_of(p), stream));
  });
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> graph_conv_backward_cuda(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& weight,
    const at::Tensor& adjacency, const std::optional<at::Tensor>& bias,
    std::array<bool, 4> output_mask) {
  const char* op = "skelops::graph_conv_backward";
  const Problem p = check_problem(op, x, weight, adjacency, bias);
  check_cuda(op, x);
  check_grad_out(op, grad_out, x, p);
  const c10::cuda::CUDAGuard guard(x.device());
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream().stream();
  const auto f32 = x.options().dtype(at::kFloat);
  at::Tensor grad_x = empty_like_none(x), grad_weight = empty_like_none(x),
             grad_adjacency = empty_like_none(x), grad_bias;
  at::Tensor grad_adjacency_acc;  // fp32, shape of adjacency
  dispatch_cuda_dtype(op, x.scalar_type(), [&](auto* type_tag) {
    using scalar_t = std::remove_pointer_t<decltype(type_tag)>;
    const FrameStrides gs = frame_strides(grad_out), xs = frame_strides(x);
    const WeightStrides ws = weight_strides(weight);
    const AdjacencyStrides as = adjacency_strides(adjacency, p);
    if (output_mask[0]) {
      // d x = graph_conv(grad_out, W^T, A^T): the forward kernel on transposed weight and
      // adjacency views, with C_in and C_out exchanged.
      grad_x = at::empty({p.N, p.C_in, p.T, p.V}, x.options());
      check_launch(op, "grad_x",
                   launch_graph_conv_forward<scalar_t>(
                       data_of<scalar_t>(grad_out), gs, data_of<scalar_t>(weight),
                       WeightStrides{ws.k, ws.c, ws.o}, data_of<scalar_t>(adjacency),
                       AdjacencyStrides{as.n, as.k, as.w, as.v}, nullptr, 0,
                       mutable_data_of<scalar_t>(grad_x),
                       Dims{p.N, p.C_out, p.T, p.V, p.K, p.C_in}, stream));
    }
    if (output_mask[1]) {
      at::Tensor grad_weight_acc = at::empty({p.K, p.C_out, p.C_in}, f32);
      check_launch(op, "grad_weight",
                   launch_graph_conv_weight_grad<scalar_t>(
                       data_of<scalar_t>(grad_out), gs, data_of<scalar_t>(x), xs,
                       data_of<scalar_t>(adjacency), as,
                       grad_weight_acc.mutable_data_ptr<float>(), dims_of(p), stream));
      grad_weight = grad_weight_acc.to(x.scalar_type());
    }
    if (output_mask[2]) {
      grad_adjacency_acc = at::empty(adjacency.sizes(), f32);
      check_launch(op, "grad_adjacency",
                   launch_graph_conv_adjacency_grad<scalar_t>(
                       data_of<scalar_t>(grad_out), gs, data_of<scalar_t>(x), xs,
                       data_of<scalar_t>(weight), ws, p.per_sample_adjacency,
                       grad_adjacency_acc.mutable_data_ptr<float>(), dims_of(p), stream));
    }
  });
  grad_bias = bias_gradients(grad_out, x, adjacency, bias, p, output_mask, &grad_adjacency_acc);
  if (output_mask[2]) grad_adjacency = grad_adjacency_acc.to(x.scalar_type());
  return {grad_x, grad_weight, grad_adjacency, grad_bias};
}

TORCH_LIBRARY_IMPL(skelops, CUDA, m) {
  m.impl("graph_conv", &graph_conv_cuda);
  m.impl("graph_conv_backward", &graph_conv_backward_cuda);
}

}  // namespace skelops::graph_conv
