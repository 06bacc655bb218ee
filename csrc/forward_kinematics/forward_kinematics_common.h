// Torch-level pieces of forward_kinematics shared by the CPU kernels and the CUDA glue: argument
// checks (a safety net behind the Python wrapper's friendlier ones, so that direct
// torch.ops.skelops calls never read out of bounds), the inputs as the kernels read them, and
// the output allocation.
//
//   local_rotations [N, J, 3, 3], rest_joints [J, 3] (shared) or [N, J, 3], one floating dtype
//   and device, any strides; parents [J] host ints with parents[j] in [-1, j).
//   Outputs global_rotations [N, J, 3, 3], posed_joints [N, J, 3], global_translations
//   [N, J, 3], contiguous, in the inputs' dtype. The backward's incoming gradients (each may be
//   absent: zero) have the outputs' shapes, any strides and floating dtype; global_rotations is
//   the forward's first output.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>

#include "forward_kinematics_math.h"

#include <array>
#include <cstdint>
#include <optional>
#include <tuple>

namespace skelops::forward_kinematics {

struct Problem {
  int64_t N, J;
  bool shared_rest;  // rest_joints [J, 3] for every sample
};

inline bool is_supported_float(at::ScalarType dtype) {
  return dtype == at::kFloat || dtype == at::kDouble || dtype == at::kHalf ||
         dtype == at::kBFloat16;
}

inline void check_parents(const char* op, at::IntArrayRef parents, int64_t J) {
  TORCH_CHECK_VALUE(static_cast<int64_t>(parents.size()) == J, op,
                    ": parents must have one entry per joint (J = ", J, "), got ",
                    parents.size());
  for (int64_t j = 0; j < J; ++j) {
    TORCH_CHECK_VALUE(parents[j] >= -1 && parents[j] < j, op,
                      ": parents[j] must be -1 (a root) or in [0, j) (topologically ordered), got "
                      "parents[",
                      j, "] = ", parents[j]);
  }
}

inline Problem check_problem(const char* op, const at::Tensor& local_rotations,
                             const at::Tensor& rest_joints, at::IntArrayRef parents) {
  TORCH_CHECK_VALUE(local_rotations.dim() == 4 && local_rotations.size(2) == 3 &&
                        local_rotations.size(3) == 3,
                    op, ": local_rotations must be [N, J, 3, 3], got shape ",
                    local_rotations.sizes());
  TORCH_CHECK_TYPE(is_supported_float(local_rotations.scalar_type()), op,
                   ": local_rotations must be float32, float64, float16 or bfloat16, got ",
                   local_rotations.scalar_type());
  TORCH_CHECK_TYPE(rest_joints.scalar_type() == local_rotations.scalar_type(), op,
                   ": rest_joints dtype must be local_rotations' (",
                   local_rotations.scalar_type(), "), got ", rest_joints.scalar_type());
  TORCH_CHECK_VALUE(rest_joints.device() == local_rotations.device(), op,
                    ": rest_joints must be on local_rotations' device (",
                    local_rotations.device(), "), got ", rest_joints.device());
  Problem p{};
  p.N = local_rotations.size(0);
  p.J = local_rotations.size(1);
  p.shared_rest = rest_joints.dim() == 2;
  const bool shape_ok = p.shared_rest
                            ? rest_joints.size(0) == p.J && rest_joints.size(1) == 3
                            : rest_joints.dim() == 3 && rest_joints.size(0) == p.N &&
                                  rest_joints.size(1) == p.J && rest_joints.size(2) == 3;
  TORCH_CHECK_VALUE(shape_ok, op, ": rest_joints must be [J, 3] or [N, J, 3] with N = ", p.N,
                    ", J = ", p.J, ", got shape ", rest_joints.sizes());
  check_parents(op, parents, p.J);
  return p;
}

// An incoming gradient as the kernels read it: contiguous in the inputs' dtype, or undefined
// when absent (zero).
inline at::Tensor incoming_gradient(const char* op, const char* name,
                                    const std::optional<at::Tensor>& grad, at::IntArrayRef shape,
                                    const at::Tensor& like) {
  if (!grad.has_value() || !grad->defined()) return at::Tensor();
  TORCH_CHECK_VALUE(grad->sizes() == shape, op, ": ", name, " must have shape ", shape, ", got ",
                    grad->sizes());
  TORCH_CHECK_TYPE(is_supported_float(grad->scalar_type()), op, ": ", name,
                   " must be float32, float64, float16 or bfloat16, got ", grad->scalar_type());
  TORCH_CHECK_VALUE(grad->device() == like.device(), op, ": ", name,
                    " must be on local_rotations' device (", like.device(), "), got ",
                    grad->device());
  return grad->to(like.scalar_type()).contiguous();
}

struct BackwardInputs {
  at::Tensor grad_rotations, grad_positions, grad_translations;  // undefined: absent
  at::Tensor local_rotations, rest_joints, global_rotations;     // contiguous
};

inline Problem check_backward_problem(const char* op,
                                      const std::optional<at::Tensor>& grad_global_rotations,
                                      const std::optional<at::Tensor>& grad_posed_joints,
                                      const std::optional<at::Tensor>& grad_global_translations,
                                      const at::Tensor& local_rotations,
                                      const at::Tensor& rest_joints, at::IntArrayRef parents,
                                      const at::Tensor& global_rotations, BackwardInputs* in) {
  const Problem p = check_problem(op, local_rotations, rest_joints, parents);
  TORCH_CHECK_VALUE(global_rotations.sizes() == local_rotations.sizes(), op,
                    ": global_rotations must be [N, J, 3, 3] = ", local_rotations.sizes(),
                    " (the forward's first output), got ", global_rotations.sizes());
  TORCH_CHECK_TYPE(global_rotations.scalar_type() == local_rotations.scalar_type(), op,
                   ": global_rotations dtype must be local_rotations' (",
                   local_rotations.scalar_type(), "), got ", global_rotations.scalar_type());
  TORCH_CHECK_VALUE(global_rotations.device() == local_rotations.device(), op,
                    ": global_rotations must be on local_rotations' device (",
                    local_rotations.device(), "), got ", global_rotations.device());
  const std::array<int64_t, 3> vectors{p.N, p.J, 3};
  in->grad_rotations = incoming_gradient(op, "grad_global_rotations", grad_global_rotations,
                                         local_rotations.sizes(), local_rotations);
  in->grad_positions =
      incoming_gradient(op, "grad_posed_joints", grad_posed_joints, vectors, local_rotations);
  in->grad_translations = incoming_gradient(op, "grad_global_translations",
                                            grad_global_translations, vectors, local_rotations);
  in->local_rotations = local_rotations.contiguous();
  in->rest_joints = rest_joints.contiguous();
  in->global_rotations = global_rotations.contiguous();
  return p;
}

struct Outputs {
  at::Tensor global_rotations, posed_joints, global_translations;
};

inline Outputs empty_outputs(const Problem& p, const at::Tensor& local_rotations) {
  const auto options = local_rotations.options();
  return {at::empty({p.N, p.J, 3, 3}, options), at::empty({p.N, p.J, 3}, options),
          at::empty({p.N, p.J, 3}, options)};
}

// A masked-out gradient is an empty [0] tensor.
inline at::Tensor unwanted_gradient(const at::Tensor& like) {
  return at::empty({0}, like.options());
}

}  // namespace skelops::forward_kinematics
