// Torch-level pieces of axis_angle_to_matrix and dof_rotations shared by the CPU kernels and the
// CUDA glue: argument checks (a safety net behind the Python wrappers' friendlier ones), the
// joints' DoF ranges, and the accumulation dtype.
//
//   axis_angle [B, 3] -> R [B, 3, 3] (contiguous); grad [B, 3, 3] any strides.
//   pose [N, D], axes [D, 3] (one floating dtype and device, any strides), dof_joints [D]
//   non-decreasing joint indices in [0, num_joints) -> R [N, num_joints, 3, 3] (contiguous);
//   grad [N, num_joints, 3, 3] any strides.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <vector>

namespace skelops::rotations {

// Computation in float32, float64 for float64 inputs.
inline at::ScalarType acc_dtype(at::ScalarType dtype) {
  return dtype == at::kDouble ? at::kDouble : at::kFloat;
}

inline void check_supported_float(const char* op, const char* name, const at::Tensor& t) {
  const at::ScalarType dtype = t.scalar_type();
  TORCH_CHECK_TYPE(dtype == at::kFloat || dtype == at::kDouble || dtype == at::kHalf ||
                       dtype == at::kBFloat16,
                   op, ": ", name, " must be float32, float64, float16 or bfloat16, got ", dtype);
}

// grad has like's dtype and device.
inline void check_grad_like(const char* op, const at::Tensor& grad, const at::Tensor& like,
                            const char* like_name) {
  TORCH_CHECK_TYPE(grad.scalar_type() == like.scalar_type(), op, ": grad dtype must be ",
                   like_name, "'s (", like.scalar_type(), "), got ", grad.scalar_type());
  TORCH_CHECK_VALUE(grad.device() == like.device(), op, ": grad must be on ", like_name,
                    "'s device (", like.device(), "), got ", grad.device());
}

// Returns B.
inline int64_t check_axis_angle(const char* op, const at::Tensor& axis_angle) {
  TORCH_CHECK_VALUE(axis_angle.dim() == 2 && axis_angle.size(1) == 3, op,
                    ": axis_angle must be [B, 3], got shape ", axis_angle.sizes());
  check_supported_float(op, "axis_angle", axis_angle);
  return axis_angle.size(0);
}

inline int64_t check_axis_angle_backward(const char* op, const at::Tensor& grad,
                                         const at::Tensor& axis_angle) {
  const int64_t B = check_axis_angle(op, axis_angle);
  TORCH_CHECK_VALUE(grad.dim() == 3 && grad.size(0) == B && grad.size(1) == 3 &&
                        grad.size(2) == 3,
                    op, ": grad must be [B, 3, 3] = [", B, ", 3, 3], got shape ", grad.sizes());
  check_grad_like(op, grad, axis_angle, "axis_angle");
  return B;
}

struct DofProblem {
  int64_t N, D, J;
  // DoFs of joint j: [joint_begin[j], joint_begin[j + 1]) (J + 1 entries).
  std::vector<int64_t> joint_begin;
};

inline DofProblem check_dof_problem(const char* op, const at::Tensor& pose, const at::Tensor& axes,
                                    c10::IntArrayRef dof_joints, int64_t num_joints) {
  TORCH_CHECK_VALUE(pose.dim() == 2, op, ": pose must be [N, D], got shape ", pose.sizes());
  check_supported_float(op, "pose", pose);
  DofProblem p{pose.size(0), pose.size(1), num_joints, {}};
  TORCH_CHECK_VALUE(axes.dim() == 2 && axes.size(0) == p.D && axes.size(1) == 3, op,
                    ": axes must be [D, 3] = [", p.D, ", 3] (D = pose.shape[1]), got shape ",
                    axes.sizes());
  TORCH_CHECK_TYPE(axes.scalar_type() == pose.scalar_type(), op, ": axes dtype must be pose's (",
                   pose.scalar_type(), "), got ", axes.scalar_type());
  TORCH_CHECK_VALUE(axes.device() == pose.device(), op, ": axes must be on pose's device (",
                    pose.device(), "), got ", axes.device());
  TORCH_CHECK_VALUE(num_joints >= 0, op, ": num_joints must be >= 0, got ", num_joints);
  TORCH_CHECK_VALUE(static_cast<int64_t>(dof_joints.size()) == p.D, op,
                    ": dof_joints must have D = ", p.D, " entries (pose.shape[1]), got ",
                    dof_joints.size());
  p.joint_begin.assign(num_joints + 1, 0);
  for (int64_t d = 0; d < p.D; ++d) {
    const int64_t j = dof_joints[d];
    TORCH_CHECK_VALUE(j >= 0 && j < num_joints, op, ": dof_joints must hold joint indices in [0, ",
                      "num_joints) = [0, ", num_joints, "), got dof_joints[", d, "] = ", j);
    TORCH_CHECK_VALUE(d == 0 || j >= dof_joints[d - 1], op,
                      ": dof_joints must be non-decreasing, got dof_joints[", d - 1,
                      "] = ", dof_joints[d - 1], " > dof_joints[", d, "] = ", j);
    ++p.joint_begin[j + 1];
  }
  for (int64_t j = 0; j < num_joints; ++j) p.joint_begin[j + 1] += p.joint_begin[j];
  return p;
}

inline DofProblem check_dof_backward_problem(const char* op, const at::Tensor& grad,
                                             const at::Tensor& pose, const at::Tensor& axes,
                                             c10::IntArrayRef dof_joints, int64_t num_joints) {
  DofProblem p = check_dof_problem(op, pose, axes, dof_joints, num_joints);
  TORCH_CHECK_VALUE(grad.dim() == 4 && grad.size(0) == p.N && grad.size(1) == p.J &&
                        grad.size(2) == 3 && grad.size(3) == 3,
                    op, ": grad must be [N, num_joints, 3, 3] = [", p.N, ", ", p.J,
                    ", 3, 3], got shape ", grad.sizes());
  check_grad_like(op, grad, pose, "pose");
  return p;
}

}  // namespace skelops::rotations
