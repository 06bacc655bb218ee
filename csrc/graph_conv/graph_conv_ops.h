// The graph_conv operator kernels as plain functions, for operators that reduce to graph_conv
// (multi_dilation_graph_conv: the sum of its dilation branches is graph_conv with the summed
// adjacency). The CUDA pair is defined only in builds with CUDA.
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <optional>
#include <tuple>

namespace skelops::graph_conv {

at::Tensor graph_conv_cpu(const at::Tensor& x, const at::Tensor& weight,
                          const at::Tensor& adjacency, const std::optional<at::Tensor>& bias);
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> graph_conv_backward_cpu(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& weight,
    const at::Tensor& adjacency, const std::optional<at::Tensor>& bias,
    std::array<bool, 4> output_mask);

at::Tensor graph_conv_cuda(const at::Tensor& x, const at::Tensor& weight,
                           const at::Tensor& adjacency, const std::optional<at::Tensor>& bias);
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> graph_conv_backward_cuda(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& weight,
    const at::Tensor& adjacency, const std::optional<at::Tensor>& bias,
    std::array<bool, 4> output_mask);

}  // namespace skelops::graph_conv
