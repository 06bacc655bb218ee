// Torch-level pieces of render_heatmaps shared by the CPU kernels and the CUDA glue: argument
// checks (a safety net behind the Python wrapper's friendlier ones), the inputs as the kernels
// read them, and the output allocation.
//
//   keypoints [N, T, M, V, 2] (x, y) and scores [N, T, M, V] (one floating dtype and device, any
//   strides); limbs [L, 2] int32/int64 joint pairs in [0, V) or none (keypoint mode);
//   out [N, C, T, H, W], C = V or L, contiguous or channels_last_3d (strides
//   (C T H W, 1, H W C, W C, C)); grad [N, C, T, H, W] any strides; grad_keypoints and
//   grad_scores in the keypoints' dtype, contiguous.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>
#include <skelops/checked_tensors.h>

#include "render_heatmaps_math.h"

#include <array>
#include <cmath>
#include <cstdint>
#include <optional>
#include <tuple>

namespace skelops::render_heatmaps {

struct Problem {
  int64_t N, T, M, V;
  int64_t C;  // channels: V (keypoint mode) or L (limb mode)
  int64_t H, W;
  bool limb_mode;
};

// Computation in float32, float64 for float64 keypoints.
inline at::ScalarType acc_dtype(at::ScalarType dtype) {
  return dtype == at::kDouble ? at::kDouble : at::kFloat;
}

inline bool is_supported_float(at::ScalarType dtype) {
  return dtype == at::kFloat || dtype == at::kDouble || dtype == at::kHalf ||
         dtype == at::kBFloat16;
}

namespace detail {

// Every joint index of the host copy of limbs [L, 2] must be in [0, V).
inline void check_limb_values(const char* op, const at::Tensor& limbs, int64_t V) {
  const at::Tensor host = limbs.to(at::kCPU, at::kLong).contiguous();
  const int64_t* l = host.const_data_ptr<int64_t>();
  for (int64_t i = 0; i < host.numel(); ++i) {
    TORCH_CHECK_VALUE(l[i] >= 0 && l[i] < V, op, ": limbs must hold joint indices in [0, V) = [0, ",
                      V, "), got limbs[", i / 2, ", ", i % 2, "] = ", l[i]);
  }
}

// Limbs are checked on the host; for GPU tensors once per live tensor and version
// (skelops/checked_tensors.h), so that a training loop does not synchronise on every call.
inline void check_limb_values_cached(const char* op, const at::Tensor& limbs, int64_t V) {
  if (limbs.device().is_cpu()) {
    check_limb_values(op, limbs, V);
    return;
  }
  static CheckedTensors<1> checked;
  checked.check_once({&limbs}, V, [&] { check_limb_values(op, limbs, V); });
}

}  // namespace detail

inline Problem check_problem(const char* op, const at::Tensor& keypoints, const at::Tensor& scores,
                             const std::optional<at::Tensor>& limbs, int64_t height,
                             int64_t width, double sigma) {
  TORCH_CHECK_VALUE(keypoints.dim() == 5 && keypoints.size(4) == 2, op,
                    ": keypoints must be [N, T, M, V, 2], got shape ", keypoints.sizes());
  TORCH_CHECK_TYPE(is_supported_float(keypoints.scalar_type()), op,
                   ": keypoints must be float32, float64, float16 or bfloat16, got ",
                   keypoints.scalar_type());
  TORCH_CHECK_TYPE(scores.scalar_type() == keypoints.scalar_type(), op,
                   ": scores dtype must be keypoints' (", keypoints.scalar_type(), "), got ",
                   scores.scalar_type());
  TORCH_CHECK_VALUE(scores.device() == keypoints.device(), op,
                    ": scores must be on keypoints' device (", keypoints.device(), "), got ",
                    scores.device());
  Problem p{};
  p.N = keypoints.size(0);
  p.T = keypoints.size(1);
  p.M = keypoints.size(2);
  p.V = keypoints.size(3);
  TORCH_CHECK_VALUE(scores.dim() == 4 && scores.size(0) == p.N && scores.size(1) == p.T &&
                        scores.size(2) == p.M && scores.size(3) == p.V,
                    op, ": scores must be [N, T, M, V] = [", p.N, ", ", p.T, ", ", p.M, ", ", p.V,
                    "] (keypoints' shape without the last dimension), got ", scores.sizes());
  TORCH_CHECK_VALUE(height >= 1 && width >= 1, op, ": height and width must be >= 1, got ",
                    height, " x ", width);
  // Pixel boxes are int32.
  TORCH_CHECK_VALUE(height < (int64_t{1} << 31) && width < (int64_t{1} << 31), op,
                    ": height and width must be below 2^31, got ", height, " x ", width);
  TORCH_CHECK_VALUE(std::isfinite(sigma) && sigma > 0, op,
                    ": sigma must be positive and finite, got ", sigma);
  p.H = height;
  p.W = width;
  p.limb_mode = limbs.has_value() && limbs->defined();
  p.C = p.V;
  if (p.limb_mode) {
    const at::Tensor& l = *limbs;
    TORCH_CHECK_TYPE(l.scalar_type() == at::kLong || l.scalar_type() == at::kInt, op,
                     ": limbs must be an int64 or int32 tensor, got ", l.scalar_type());
    TORCH_CHECK_VALUE(l.device() == keypoints.device(), op,
                      ": limbs must be on keypoints' device (", keypoints.device(), "), got ",
                      l.device());
    TORCH_CHECK_VALUE(l.dim() == 2 && l.size(1) == 2, op, ": limbs must be [L, 2], got shape ",
                      l.sizes());
    p.C = l.size(0);
    if (l.numel() > 0) detail::check_limb_values_cached(op, l, p.V);
  }
  return p;
}

inline at::ScalarType output_dtype(const char* op, const at::Tensor& keypoints,
                                   std::optional<at::ScalarType> dtype) {
  const at::ScalarType out = dtype.value_or(keypoints.scalar_type());
  TORCH_CHECK_TYPE(is_supported_float(out), op,
                   ": dtype must be float32, float64, float16 or bfloat16, got ", out);
  return out;
}

// The backward's checks: grad [N, C, T, H, W] (its H and W are the maps'), then the forward's
// checks of keypoints, scores, limbs and sigma.
inline Problem check_backward_problem(const char* op, const at::Tensor& grad,
                                      const at::Tensor& keypoints, const at::Tensor& scores,
                                      const std::optional<at::Tensor>& limbs, double sigma) {
  TORCH_CHECK_VALUE(grad.dim() == 5, op, ": grad must be [N, C, T, H, W], got shape ",
                    grad.sizes());
  const Problem p = check_problem(op, keypoints, scores, limbs, grad.size(3), grad.size(4), sigma);
  TORCH_CHECK_VALUE(grad.size(0) == p.N && grad.size(1) == p.C && grad.size(2) == p.T, op,
                    ": grad must be [N, C, T, H, W] with [N, C, T] = [", p.N, ", ", p.C, ", ",
                    p.T, "], got shape ", grad.sizes());
  TORCH_CHECK_TYPE(is_supported_float(grad.scalar_type()), op,
                   ": grad must be float32, float64, float16 or bfloat16, got ",
                   grad.scalar_type());
  TORCH_CHECK_VALUE(grad.device() == keypoints.device(), op,
                    ": grad must be on keypoints' device (", keypoints.device(), "), got ",
                    grad.device());
  return p;
}

// An uninitialised [N, C, T, H, W] output, contiguous or channels_last_3d.
inline at::Tensor empty_output(const Problem& p, const at::Tensor& keypoints,
                               at::ScalarType dtype, bool channels_last) {
  const auto options = keypoints.options().dtype(dtype);
  if (channels_last) {
    return at::empty({p.N, p.C, p.T, p.H, p.W},
                     options.memory_format(at::MemoryFormat::ChannelsLast3d));
  }
  return at::empty({p.N, p.C, p.T, p.H, p.W}, options);
}

// The small inputs as the kernels read them: contiguous, in the accumulation dtype; limbs as a
// contiguous int64 [L, 2] (undefined in keypoint mode).
struct KernelInputs {
  at::Tensor keypoints, scores, limbs;
};

inline KernelInputs kernel_inputs(const Problem& p, const at::Tensor& keypoints,
                                  const at::Tensor& scores,
                                  const std::optional<at::Tensor>& limbs) {
  const at::ScalarType acc = acc_dtype(keypoints.scalar_type());
  KernelInputs in;
  in.keypoints = keypoints.to(acc).contiguous();
  in.scores = scores.to(acc).contiguous();
  if (p.limb_mode) in.limbs = limbs->to(at::kLong).contiguous();
  return in;
}

// The gradients asked for by output_mask, in the accumulation dtype (the caller converts them
// to the keypoints' dtype); a masked-out one is an empty tensor of the keypoints' dtype.
struct Gradients {
  at::Tensor keypoints, scores;
  bool want_keypoints, want_scores;
};

inline Gradients empty_gradients(const Problem& p, const at::Tensor& keypoints,
                                 std::array<bool, 2> output_mask) {
  const auto acc = keypoints.options().dtype(acc_dtype(keypoints.scalar_type()));
  Gradients g;
  g.want_keypoints = output_mask[0];
  g.want_scores = output_mask[1];
  g.keypoints = output_mask[0] ? at::empty({p.N, p.T, p.M, p.V, 2}, acc)
                               : at::empty({0}, keypoints.options());
  g.scores = output_mask[1] ? at::empty({p.N, p.T, p.M, p.V}, acc)
                            : at::empty({0}, keypoints.options());
  return g;
}

// The gradients in the keypoints' dtype.
inline std::tuple<at::Tensor, at::Tensor> finish_gradients(const Gradients& g,
                                                           const at::Tensor& keypoints) {
  const at::ScalarType dtype = keypoints.scalar_type();
  return {g.want_keypoints ? g.keypoints.to(dtype) : g.keypoints,
          g.want_scores ? g.scores.to(dtype) : g.scores};
}

}  // namespace skelops::render_heatmaps
