// Torch-level pieces of project_points shared by the CPU kernels and the CUDA glue: argument
// checks (a safety net behind the Python wrapper's friendlier ones), the inputs as the kernels
// read them, and the output and gradient allocation.
//
//   points [N, P, 3]; camera [N, 4] (pinhole) or [N, 3] (weak perspective); rotation [N, 3, 3]
//   and translation [N, 3] or none; one floating dtype and device, any strides. out [N, P, 2]
//   and the gradients: contiguous, in the points' dtype. grad [N, P, 2] in the points' dtype.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>

#include "project_points_math.h"

#include <array>
#include <cmath>
#include <cstdint>
#include <optional>
#include <tuple>

namespace skelops::project_points {

struct Problem {
  int64_t N, P;
  int camera_size;  // 4 (pinhole) or 3 (weak perspective)
  bool has_rotation, has_translation;
};

inline bool is_supported_float(at::ScalarType dtype) {
  return dtype == at::kFloat || dtype == at::kDouble || dtype == at::kHalf ||
         dtype == at::kBFloat16;
}

namespace detail {

inline void check_like(const char* op, const char* name, const at::Tensor& t,
                       const at::Tensor& points) {
  TORCH_CHECK_TYPE(t.scalar_type() == points.scalar_type(), op, ": ", name,
                   " dtype must be points' (", points.scalar_type(), "), got ", t.scalar_type());
  TORCH_CHECK_VALUE(t.device() == points.device(), op, ": ", name, " must be on points' device (",
                    points.device(), "), got ", t.device());
}

inline bool present(const std::optional<at::Tensor>& t) { return t.has_value() && t->defined(); }

}  // namespace detail

inline Problem check_problem(const char* op, const at::Tensor& points, const at::Tensor& camera,
                             const std::optional<at::Tensor>& rotation,
                             const std::optional<at::Tensor>& translation, bool weak_perspective,
                             double min_depth) {
  TORCH_CHECK_VALUE(points.dim() == 3 && points.size(2) == 3, op,
                    ": points must be [N, P, 3], got shape ", points.sizes());
  TORCH_CHECK_TYPE(is_supported_float(points.scalar_type()), op,
                   ": points must be float32, float64, float16 or bfloat16, got ",
                   points.scalar_type());
  Problem p{};
  p.N = points.size(0);
  p.P = points.size(1);
  p.camera_size = weak_perspective ? 3 : 4;
  detail::check_like(op, "camera", camera, points);
  TORCH_CHECK_VALUE(camera.dim() == 2 && camera.size(0) == p.N && camera.size(1) == p.camera_size,
                    op, ": camera must be [N, ", p.camera_size, "] = [", p.N, ", ", p.camera_size,
                    "] (", weak_perspective ? "s, tx, ty" : "fx, fy, cx, cy", "), got shape ",
                    camera.sizes());
  p.has_rotation = detail::present(rotation);
  if (p.has_rotation) {
    detail::check_like(op, "rotation", *rotation, points);
    TORCH_CHECK_VALUE(rotation->dim() == 3 && rotation->size(0) == p.N &&
                          rotation->size(1) == 3 && rotation->size(2) == 3,
                      op, ": rotation must be [N, 3, 3] = [", p.N, ", 3, 3], got shape ",
                      rotation->sizes());
  }
  p.has_translation = detail::present(translation);
  if (p.has_translation) {
    detail::check_like(op, "translation", *translation, points);
    TORCH_CHECK_VALUE(translation->dim() == 2 && translation->size(0) == p.N &&
                          translation->size(1) == 3,
                      op, ": translation must be [N, 3] = [", p.N, ", 3], got shape ",
                      translation->sizes());
  }
  TORCH_CHECK_VALUE(std::isfinite(min_depth) && min_depth > 0, op,
                    ": min_depth must be positive and finite, got ", min_depth);
  return p;
}

inline Problem check_backward_problem(const char* op, const at::Tensor& grad,
                                      const at::Tensor& points, const at::Tensor& camera,
                                      const std::optional<at::Tensor>& rotation,
                                      const std::optional<at::Tensor>& translation,
                                      bool weak_perspective, double min_depth) {
  const Problem p =
      check_problem(op, points, camera, rotation, translation, weak_perspective, min_depth);
  detail::check_like(op, "grad", grad, points);
  TORCH_CHECK_VALUE(grad.dim() == 3 && grad.size(0) == p.N && grad.size(1) == p.P &&
                        grad.size(2) == 2,
                    op, ": grad must be [N, P, 2] = [", p.N, ", ", p.P, ", 2], got shape ",
                    grad.sizes());
  return p;
}

// The inputs as the kernels read them: contiguous, in their own dtype (undefined when absent).
struct KernelInputs {
  at::Tensor points, camera, rotation, translation;
};

inline KernelInputs kernel_inputs(const Problem& p, const at::Tensor& points,
                                  const at::Tensor& camera,
                                  const std::optional<at::Tensor>& rotation,
                                  const std::optional<at::Tensor>& translation) {
  KernelInputs in;
  in.points = points.contiguous();
  in.camera = camera.contiguous();
  if (p.has_rotation) in.rotation = rotation->contiguous();
  if (p.has_translation) in.translation = translation->contiguous();
  return in;
}

inline at::Tensor empty_output(const Problem& p, const at::Tensor& points) {
  return at::empty({p.N, p.P, 2}, points.options());
}

// The gradients asked for by output_mask (an absent rotation or translation gets none), in the
// points' dtype; a masked-out one is an empty tensor.
struct Gradients {
  at::Tensor points, camera, rotation, translation;
  bool want_points, want_camera, want_rotation, want_translation;

  bool want_sums() const { return want_camera || want_rotation || want_translation; }
  bool want_any() const { return want_points || want_sums(); }
  std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> as_tuple() const {
    return {points, camera, rotation, translation};
  }
};

inline Gradients empty_gradients(const Problem& p, const at::Tensor& points,
                                 std::array<bool, 4> output_mask) {
  const auto options = points.options();
  Gradients g;
  g.want_points = output_mask[0];
  g.want_camera = output_mask[1];
  g.want_rotation = output_mask[2] && p.has_rotation;
  g.want_translation = output_mask[3] && p.has_translation;
  // Distinct empties: the outputs of an operator must not alias each other.
  auto make = [&](bool wanted, at::IntArrayRef shape) {
    return wanted ? at::empty(shape, options) : at::empty({0}, options);
  };
  g.points = make(g.want_points, {p.N, p.P, 3});
  g.camera = make(g.want_camera, {p.N, p.camera_size});
  g.rotation = make(g.want_rotation, {p.N, 3, 3});
  g.translation = make(g.want_translation, {p.N, 3});
  return g;
}

}  // namespace skelops::project_points
