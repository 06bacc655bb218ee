// CUDA glue of skelops::project_points and its backward: argument checks (shared with the CPU
// kernels), output and workspace allocation, the current stream, and the torch-free launchers
// of project_points_kernels.cu. The inputs are made contiguous in their own dtype (a no-op for
// the usual layouts; broadcast camera / extrinsics rows are small).
#include "project_points/project_points_common.h"
#include "project_points/project_points_kernels.cuh"

#include <skelops/cuda_glue.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <array>
#include <optional>
#include <tuple>
#include <type_traits>

namespace skelops::project_points {
namespace {

using namespace skelops::cuda;

Dims dims_of(const Problem& p) { return {p.N, p.P, p.camera_size}; }

template <typename scalar_t>
const scalar_t* data_or_null(const at::Tensor& t) {
  return t.defined() ? data_of<scalar_t>(t) : nullptr;
}

template <typename scalar_t>
scalar_t* mutable_data_if(bool wanted, at::Tensor& t) {
  return wanted ? mutable_data_of<scalar_t>(t) : nullptr;
}

at::Tensor project_points_cuda(const at::Tensor& points, const at::Tensor& camera,
                               const std::optional<at::Tensor>& rotation,
                               const std::optional<at::Tensor>& translation,
                               bool weak_perspective, double min_depth) {
  const char* op = "skelops::project_points";
  const Problem p =
      check_problem(op, points, camera, rotation, translation, weak_perspective, min_depth);
  check_cuda(op, points);
  const c10::cuda::CUDAGuard guard(points.device());
  at::Tensor out = empty_output(p, points);
  if (out.numel() == 0) return out;
  const KernelInputs in = kernel_inputs(p, points, camera, rotation, translation);
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream().stream();
  dispatch_cuda_dtype<true>(op, points.scalar_type(), [&](auto* tag) {
    using scalar_t = std::remove_pointer_t<decltype(tag)>;
    check_launch(op, "forward",
                 launch_project_points_forward<scalar_t>(
                     data_of<scalar_t>(in.points), data_of<scalar_t>(in.camera),
                     data_or_null<scalar_t>(in.rotation), data_or_null<scalar_t>(in.translation),
                     dims_of(p), weak_perspective, min_depth, mutable_data_of<scalar_t>(out),
                     stream));
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> project_points_backward_cuda(
    const at::Tensor& grad, const at::Tensor& points, const at::Tensor& camera,
    const std::optional<at::Tensor>& rotation, const std::optional<at::Tensor>& translation,
    bool weak_perspective, double min_depth, std::array<bool, 4> output_mask) {
  const char* op = "skelops::project_points_backward";
  const Problem p = check_backward_problem(op, grad, points, camera, rotation, translation,
                                           weak_perspective, min_depth);
  check_cuda(op, points);
  const c10::cuda::CUDAGuard guard(points.device());
  Gradients grads = empty_gradients(p, points, output_mask);
  if (!grads.want_any() || p.N == 0) return grads.as_tuple();
  const KernelInputs in = kernel_inputs(p, points, camera, rotation, translation);
  const at::Tensor g = grad.contiguous();
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream().stream();
  const Dims dims = dims_of(p);
  dispatch_cuda_dtype<true>(op, points.scalar_type(), [&](auto* tag) {
    using scalar_t = std::remove_pointer_t<decltype(tag)>;
    at::Tensor workspace;
    if (grads.want_sums()) {
      workspace = at::empty({backward_workspace_bytes<scalar_t>(dims)},
                            points.options().dtype(at::kByte));
    }
    check_launch(op, "backward",
                 launch_project_points_backward<scalar_t>(
                     data_of<scalar_t>(g), data_of<scalar_t>(in.points),
                     data_of<scalar_t>(in.camera), data_or_null<scalar_t>(in.rotation),
                     data_or_null<scalar_t>(in.translation), dims, weak_perspective, min_depth,
                     workspace.defined() ? workspace.mutable_data_ptr() : nullptr,
                     mutable_data_if<scalar_t>(grads.want_points, grads.points),
                     mutable_data_if<scalar_t>(grads.want_camera, grads.camera),
                     mutable_data_if<scalar_t>(grads.want_rotation, grads.rotation),
                     mutable_data_if<scalar_t>(grads.want_translation, grads.translation),
                     stream));
  });
  return grads.as_tuple();
}

}  // namespace

TORCH_LIBRARY_IMPL(skelops, CUDA, m) {
  m.impl("project_points", &project_points_cuda);
  m.impl("project_points_backward", &project_points_backward_cuda);
}

}  // namespace skelops::project_points
