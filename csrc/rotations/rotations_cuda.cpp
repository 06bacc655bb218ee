// CUDA glue of skelops::axis_angle_to_matrix, skelops::dof_rotations and their backwards:
// argument checks (shared with the CPU kernels), output and workspace allocation, the current
// stream, and the torch-free launchers of rotations_kernels.cu. Inputs and grad are passed with
// their strides (no copies); the tiny axes [D, 3] are made contiguous in the math dtype, and the
// joints' DoF ranges (from the int[] dof_joints) go to the device through pinned memory.
#include "rotations/rotations_common.h"
#include "rotations/rotations_kernels.cuh"

#include <skelops/cuda_glue.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <type_traits>

namespace skelops::rotations {
namespace {

using namespace skelops::cuda;

Strides2 strides2(const at::Tensor& t) { return {t.stride(0), t.stride(1)}; }

// joint_begin [J + 1] int64 on `device`, copied asynchronously from a pinned host buffer (the
// caching host allocator keeps it alive until the copy has run).
at::Tensor joint_begin_on(const DofProblem& p, const at::Device& device) {
  const int64_t count = static_cast<int64_t>(p.joint_begin.size());
  at::Tensor host = at::empty({count}, at::TensorOptions().dtype(at::kLong).pinned_memory(true));
  std::memcpy(host.mutable_data_ptr<int64_t>(), p.joint_begin.data(), sizeof(int64_t) * count);
  return host.to(host.options().device(device), /*non_blocking=*/true);
}

at::Tensor axis_angle_to_matrix_cuda(const at::Tensor& axis_angle) {
  const char* op = "skelops::axis_angle_to_matrix";
  const int64_t B = check_axis_angle(op, axis_angle);
  check_cuda(op, axis_angle);
  const c10::cuda::CUDAGuard guard(axis_angle.device());
  at::Tensor out = at::empty({B, 3, 3}, axis_angle.options());
  if (B == 0) return out;
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream().stream();
  dispatch_cuda_dtype<true>(op, axis_angle.scalar_type(), [&](auto* tag) {
    using scalar_t = std::remove_pointer_t<decltype(tag)>;
    check_launch(op, "forward",
                 launch_axis_angle_to_matrix<scalar_t>(data_of<scalar_t>(axis_angle),
                                                       strides2(axis_angle), B,
                                                       mutable_data_of<scalar_t>(out), stream));
  });
  return out;
}

at::Tensor axis_angle_to_matrix_backward_cuda(const at::Tensor& grad,
                                              const at::Tensor& axis_angle) {
  const char* op = "skelops::axis_angle_to_matrix_backward";
  const int64_t B = check_axis_angle_backward(op, grad, axis_angle);
  check_cuda(op, axis_angle);
  const c10::cuda::CUDAGuard guard(axis_angle.device());
  at::Tensor grad_axis = at::empty({B, 3}, axis_angle.options());
  if (B == 0) return grad_axis;
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream().stream();
  const Strides4 gs{0, grad.stride(0), grad.stride(1), grad.stride(2)};
  dispatch_cuda_dtype<true>(op, axis_angle.scalar_type(), [&](auto* tag) {
    using scalar_t = std::remove_pointer_t<decltype(tag)>;
    check_launch(op, "backward",
                 launch_axis_angle_to_matrix_backward<scalar_t>(
                     data_of<scalar_t>(grad), gs, data_of<scalar_t>(axis_angle),
                     strides2(axis_angle), B, mutable_data_of<scalar_t>(grad_axis), stream));
  });
  return grad_axis;
}

at::Tensor dof_rotations_cuda(const at::Tensor& pose, const at::Tensor& axes,
                              c10::IntArrayRef dof_joints, int64_t num_joints) {
  const char* op = "skelops::dof_rotations";
  const DofProblem p = check_dof_problem(op, pose, axes, dof_joints, num_joints);
  check_cuda(op, pose);
  const c10::cuda::CUDAGuard guard(pose.device());
  at::Tensor out = at::empty({p.N, p.J, 3, 3}, pose.options());
  if (out.numel() == 0) return out;
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream().stream();
  const at::Tensor axes_acc = axes.to(acc_dtype(pose.scalar_type())).contiguous();
  const at::Tensor joint_begin = joint_begin_on(p, pose.device());
  dispatch_cuda_dtype<true>(op, pose.scalar_type(), [&](auto* tag) {
    using scalar_t = std::remove_pointer_t<decltype(tag)>;
    check_launch(op, "forward",
                 launch_dof_rotations<scalar_t>(
                     data_of<scalar_t>(pose), strides2(pose), axes_acc.const_data_ptr<Acc<scalar_t>>(),
                     joint_begin.const_data_ptr<int64_t>(), DofDims{p.N, p.D, p.J},
                     mutable_data_of<scalar_t>(out), stream));
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> dof_rotations_backward_cuda(
    const at::Tensor& grad, const at::Tensor& pose, const at::Tensor& axes,
    c10::IntArrayRef dof_joints, int64_t num_joints, std::array<bool, 2> output_mask) {
  const char* op = "skelops::dof_rotations_backward";
  const DofProblem p = check_dof_backward_problem(op, grad, pose, axes, dof_joints, num_joints);
  check_cuda(op, pose);
  const c10::cuda::CUDAGuard guard(pose.device());
  const auto acc_options = pose.options().dtype(acc_dtype(pose.scalar_type()));
  at::Tensor grad_pose = output_mask[0] ? at::empty({p.N, p.D}, pose.options())
                                        : at::empty({0}, pose.options());
  at::Tensor grad_axes_acc = output_mask[1] ? at::empty({p.D, 3}, acc_options) : at::Tensor();
  if ((output_mask[0] || output_mask[1]) && p.D > 0) {
    const cudaStream_t stream = at::cuda::getCurrentCUDAStream().stream();
    const at::Tensor axes_acc = axes.to(acc_dtype(pose.scalar_type())).contiguous();
    const at::Tensor joint_begin = joint_begin_on(p, pose.device());
    const DofDims dims{p.N, p.D, p.J};
    at::Tensor workspace;
    if (output_mask[1]) {
      workspace = at::empty({std::max<int64_t>(dof_rotations_axes_workspace_elements(dims), 1)},
                            acc_options);
    }
    const Strides4 gs{grad.stride(0), grad.stride(1), grad.stride(2), grad.stride(3)};
    dispatch_cuda_dtype<true>(op, pose.scalar_type(), [&](auto* tag) {
      using scalar_t = std::remove_pointer_t<decltype(tag)>;
      using acc_t = Acc<scalar_t>;
      check_launch(op, "backward",
                   launch_dof_rotations_backward<scalar_t>(
                       data_of<scalar_t>(grad), gs, data_of<scalar_t>(pose), strides2(pose),
                       axes_acc.const_data_ptr<acc_t>(), joint_begin.const_data_ptr<int64_t>(),
                       dims, output_mask[0] ? mutable_data_of<scalar_t>(grad_pose) : nullptr,
                       output_mask[1] ? workspace.mutable_data_ptr<acc_t>() : nullptr,
                       output_mask[1] ? grad_axes_acc.mutable_data_ptr<acc_t>() : nullptr,
                       stream));
    });
  }
  at::Tensor grad_axes = output_mask[1] ? grad_axes_acc.to(pose.scalar_type())
                                        : at::empty({0}, pose.options());
  return {grad_pose, grad_axes};
}

}  // namespace

TORCH_LIBRARY_IMPL(skelops, CUDA, m) {
  m.impl("axis_angle_to_matrix", &axis_angle_to_matrix_cuda);
  m.impl("axis_angle_to_matrix_backward", &axis_angle_to_matrix_backward_cuda);
  m.impl("dof_rotations", &dof_rotations_cuda);
  m.impl("dof_rotations_backward", &dof_rotations_backward_cuda);
}

}  // namespace skelops::rotations
