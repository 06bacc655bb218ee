// CUDA glue of skelops::linear_blend_skinning and its backward: argument checks (shared with the
// CPU kernels), output and workspace allocation, the current stream, and the torch-free
// launchers of linear_blend_skinning_kernels.cu. vertices and grad_out are read in their dtype
// (made contiguous: no copy when they already are); the small transforms and weights in the
// accumulation dtype, indices as int32.
#include "linear_blend_skinning/linear_blend_skinning_common.h"
#include "linear_blend_skinning/linear_blend_skinning_kernels.cuh"

#include <skelops/cuda_glue.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <optional>
#include <tuple>
#include <type_traits>

namespace skelops::linear_blend_skinning {
namespace {

using namespace skelops::cuda;

Dims dims_of(const Problem& p) { return {p.N, p.P, p.J, p.K, p.dense, p.shared_vertices}; }

// Calls f with null pointers of the vertices' CUDA element type and of the accumulation type.
template <typename F>
void dispatch_types(const char* op, at::ScalarType dtype, F&& f) {
  dispatch_cuda_dtype<true>(op, dtype, [&](auto* scalar_tag) {
    using scalar_t = std::remove_pointer_t<decltype(scalar_tag)>;
    if constexpr (std::is_same_v<scalar_t, double>) {
      f(scalar_tag, static_cast<double*>(nullptr));
    } else {
      f(scalar_tag, static_cast<float*>(nullptr));
    }
  });
}

const int32_t* indices_of(const KernelInputs& in) {
  return in.indices.defined() ? in.indices.const_data_ptr<int32_t>() : nullptr;
}

at::Tensor linear_blend_skinning_cuda(const at::Tensor& vertices, const at::Tensor& weights,
                                      const std::optional<at::Tensor>& weight_indices,
                                      const at::Tensor& rotations,
                                      const at::Tensor& translations) {
  const char* op = "skelops::linear_blend_skinning";
  const Problem p = check_problem(op, vertices, weights, weight_indices, rotations, translations);
  check_cuda(op, vertices);
  const c10::cuda::CUDAGuard guard(vertices.device());
  if (is_trivial(p)) return at::zeros({p.N, p.P, 3}, vertices.options());
  at::Tensor out = at::empty({p.N, p.P, 3}, vertices.options());
  const KernelInputs in =
      kernel_inputs(p, vertices, weights, weight_indices, rotations, translations);
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream().stream();
  dispatch_types(op, vertices.scalar_type(), [&](auto* scalar_tag, auto* acc_tag) {
    using scalar_t = std::remove_pointer_t<decltype(scalar_tag)>;
    using acc_t = std::remove_pointer_t<decltype(acc_tag)>;
    check_launch(op, "forward",
                 launch_linear_blend_skinning_forward<scalar_t, acc_t>(
                     data_of<scalar_t>(in.vertices), in.weights.const_data_ptr<acc_t>(),
                     indices_of(in), in.transforms.const_data_ptr<acc_t>(), dims_of(p),
                     mutable_data_of<scalar_t>(out), stream));
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> linear_blend_skinning_backward_cuda(
    const at::Tensor& grad_out, const at::Tensor& vertices, const at::Tensor& weights,
    const std::optional<at::Tensor>& weight_indices, const at::Tensor& rotations,
    const at::Tensor& translations, std::array<bool, 4> output_mask) {
  const char* op = "skelops::linear_blend_skinning_backward";
  const Problem p = check_problem(op, vertices, weights, weight_indices, rotations, translations);
  check_cuda(op, vertices);
  check_grad_out(op, grad_out, vertices, p);
  const c10::cuda::CUDAGuard guard(vertices.device());
  Gradients grads = allocate_gradients(p, vertices, weights, output_mask);
  if (is_trivial(p)) return as_tuple(grads);
  const KernelInputs in =
      kernel_inputs(p, vertices, weights, weight_indices, rotations, translations);
  const at::Tensor g = grad_out.contiguous();
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream().stream();
  const Wanted wanted{output_mask[0], output_mask[1], output_mask[2], output_mask[3]};
  dispatch_types(op, vertices.scalar_type(), [&](auto* scalar_tag, auto* acc_tag) {
    using scalar_t = std::remove_pointer_t<decltype(scalar_tag)>;
    using acc_t = std::remove_pointer_t<decltype(acc_tag)>;
    const int64_t bytes = backward_workspace_bytes<acc_t>(dims_of(p), wanted);
    at::Tensor workspace =
        at::empty({std::max<int64_t>(bytes, 1)}, vertices.options().dtype(at::kByte));
    auto out_ptr = [](bool want, at::Tensor& t) {
      return want ? mutable_data_of<scalar_t>(t) : nullptr;
    };
    check_launch(op, "backward",
                 launch_linear_blend_skinning_backward<scalar_t, acc_t>(
                     data_of<scalar_t>(g), data_of<scalar_t>(in.vertices),
                     in.weights.const_data_ptr<acc_t>(), indices_of(in),
                     in.transforms.const_data_ptr<acc_t>(), dims_of(p),
                     workspace.mutable_data_ptr(), out_ptr(wanted.vertices, grads.vertices),
                     out_ptr(wanted.weights, grads.weights),
                     out_ptr(wanted.rotations, grads.rotations),
                     out_ptr(wanted.translations, grads.translations), stream));
  });
  return as_tuple(grads);
}

}  // namespace

TORCH_LIBRARY_IMPL(skelops, CUDA, m) {
  m.impl("linear_blend_skinning", &linear_blend_skinning_cuda);
  m.impl("linear_blend_skinning_backward", &linear_blend_skinning_backward_cuda);
}

}  // namespace skelops::linear_blend_skinning
