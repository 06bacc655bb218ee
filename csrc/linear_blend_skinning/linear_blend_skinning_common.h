// Torch-level pieces of linear_blend_skinning shared by the CPU kernels and the CUDA glue:
// argument checks (a safety net behind the Python wrapper's friendlier ones), the inputs as the
// kernels read them, and the output allocation.
//
//   vertices [N or 1, P, 3] (1: one rest mesh shared by the batch), weights [P, J] dense
//   (weight_indices none) or [P, K] with weight_indices [P, K] int32/int64 in [0, J),
//   rotations [N, J, 3, 3], translations [N, J, 3]: one floating dtype and device, any strides.
//   out [N, P, 3] in that dtype; the gradients in the inputs' dtypes and shapes.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/util/Exception.h>
#include <skelops/checked_tensors.h>

#include <array>
#include <cstdint>
#include <optional>
#include <tuple>

namespace skelops::linear_blend_skinning {

struct Problem {
  int64_t N, P, J;
  int64_t K;             // weights.size(1): J for dense weights
  bool dense;            // no weight_indices
  bool shared_vertices;  // vertices [1, P, 3] serve every sample (and N != 1)
};

inline bool is_supported_float(at::ScalarType dtype) {
  return dtype == at::kFloat || dtype == at::kDouble || dtype == at::kHalf ||
         dtype == at::kBFloat16;
}

// Computation in float32, float64 for float64 inputs.
inline at::ScalarType acc_dtype(at::ScalarType dtype) {
  return dtype == at::kDouble ? at::kDouble : at::kFloat;
}

namespace detail {

inline void check_index_values(const char* op, const at::Tensor& indices, int64_t J) {
  const at::Tensor host = indices.to(at::kCPU, at::kLong).contiguous();
  const int64_t* idx = host.const_data_ptr<int64_t>();
  const int64_t K = host.size(1);
  for (int64_t i = 0; i < host.numel(); ++i) {
    TORCH_CHECK_VALUE(idx[i] >= 0 && idx[i] < J, op,
                      ": weight_indices must hold joint indices in [0, J) = [0, ", J, "), got ",
                      "weight_indices[", i / K, ", ", i % K, "] = ", idx[i]);
  }
}

// Indices are checked on the host; for GPU tensors once per live tensor and version
// (skelops/checked_tensors.h), so that a training loop does not synchronise on every call.
inline void check_index_values_cached(const char* op, const at::Tensor& indices, int64_t J) {
  if (indices.device().is_cpu()) {
    check_index_values(op, indices, J);
    return;
  }
  static CheckedTensors<1> checked;
  checked.check_once({&indices}, J, [&] { check_index_values(op, indices, J); });
}

inline void check_float_like(const char* op, const char* name, const at::Tensor& t,
                             const at::Tensor& vertices) {
  TORCH_CHECK_TYPE(t.scalar_type() == vertices.scalar_type(), op, ": ", name,
                   " dtype must be vertices' (", vertices.scalar_type(), "), got ",
                   t.scalar_type());
  TORCH_CHECK_VALUE(t.device() == vertices.device(), op, ": ", name,
                    " must be on vertices' device (", vertices.device(), "), got ", t.device());
}

}  // namespace detail

inline Problem check_problem(const char* op, const at::Tensor& vertices, const at::Tensor& weights,
                             const std::optional<at::Tensor>& weight_indices,
                             const at::Tensor& rotations, const at::Tensor& translations) {
  TORCH_CHECK_VALUE(vertices.dim() == 3 && vertices.size(2) == 3, op,
                    ": vertices must be [N or 1, P, 3], got shape ", vertices.sizes());
  TORCH_CHECK_TYPE(is_supported_float(vertices.scalar_type()), op,
                   ": vertices must be float32, float64, float16 or bfloat16, got ",
                   vertices.scalar_type());
  detail::check_float_like(op, "weights", weights, vertices);
  detail::check_float_like(op, "rotations", rotations, vertices);
  detail::check_float_like(op, "translations", translations, vertices);
  TORCH_CHECK_VALUE(rotations.dim() == 4 && rotations.size(2) == 3 && rotations.size(3) == 3, op,
                    ": rotations must be [N, J, 3, 3], got shape ", rotations.sizes());
  Problem p{};
  p.N = rotations.size(0);
  p.J = rotations.size(1);
  TORCH_CHECK_VALUE(translations.dim() == 3 && translations.size(0) == p.N &&
                        translations.size(1) == p.J && translations.size(2) == 3,
                    op, ": translations must be [N, J, 3] = [", p.N, ", ", p.J,
                    ", 3] (rotations' N and J), got shape ", translations.sizes());
  TORCH_CHECK_VALUE(weights.dim() == 2, op, ": weights must be [P, J] or [P, K], got shape ",
                    weights.sizes());
  p.P = weights.size(0);
  p.K = weights.size(1);
  TORCH_CHECK_VALUE(vertices.size(0) == p.N || vertices.size(0) == 1, op,
                    ": vertices must be [N, P, 3] or [1, P, 3] with N = ", p.N,
                    " (rotations.shape[0]), got shape ", vertices.sizes());
  TORCH_CHECK_VALUE(vertices.size(1) == p.P, op, ": vertices must have P = ", p.P,
                    " vertices (weights.shape[0]), got shape ", vertices.sizes());
  p.shared_vertices = vertices.size(0) != p.N;
  p.dense = !(weight_indices.has_value() && weight_indices->defined());
  // Joint indices are int32 in the kernels.
  TORCH_CHECK_VALUE(p.J < (int64_t{1} << 31), op, ": J must be below 2^31, got ", p.J);
  if (p.dense) {
    TORCH_CHECK_VALUE(p.K == p.J, op, ": dense weights must be [P, J] with J = ", p.J,
                      " (rotations.shape[1]), got shape ", weights.sizes());
  } else {
    const at::Tensor& idx = *weight_indices;
    TORCH_CHECK_TYPE(idx.scalar_type() == at::kInt || idx.scalar_type() == at::kLong, op,
                     ": weight_indices must be an int32 or int64 tensor, got ", idx.scalar_type());
    TORCH_CHECK_VALUE(idx.device() == vertices.device(), op,
                      ": weight_indices must be on vertices' device (", vertices.device(),
                      "), got ", idx.device());
    TORCH_CHECK_VALUE(idx.sizes() == weights.sizes(), op,
                      ": weight_indices must have weights' shape [P, K] = ", weights.sizes(),
                      ", got ", idx.sizes());
    if (idx.numel() > 0) detail::check_index_values_cached(op, idx, p.J);
  }
  return p;
}

inline void check_grad_out(const char* op, const at::Tensor& grad_out, const at::Tensor& vertices,
                           const Problem& p) {
  TORCH_CHECK_VALUE(grad_out.dim() == 3 && grad_out.size(0) == p.N && grad_out.size(1) == p.P &&
                        grad_out.size(2) == 3,
                    op, ": grad_out must be [N, P, 3] = [", p.N, ", ", p.P, ", 3], got shape ",
                    grad_out.sizes());
  detail::check_float_like(op, "grad_out", grad_out, vertices);
}

// Nothing to blend: no sample, no vertex or no influence. Every output is then zero.
inline bool is_trivial(const Problem& p) { return p.N == 0 || p.P == 0 || p.K == 0; }

// The inputs as the kernels read them: vertices in their dtype, contiguous; the transforms
// packed [N, J, 12] (3 x 4 [R | t], linear_blend_skinning_math.h) and the weights [P, K]
// contiguous in the accumulation dtype (small next to the vertices); indices int32 [P, K]
// (undefined for dense weights).
struct KernelInputs {
  at::Tensor vertices, transforms, weights, indices;
};

inline KernelInputs kernel_inputs(const Problem& p, const at::Tensor& vertices,
                                  const at::Tensor& weights,
                                  const std::optional<at::Tensor>& weight_indices,
                                  const at::Tensor& rotations, const at::Tensor& translations) {
  const at::ScalarType acc = acc_dtype(vertices.scalar_type());
  KernelInputs in;
  in.vertices = vertices.contiguous();
  in.transforms = at::cat({rotations.to(acc), translations.to(acc).unsqueeze(-1)}, -1).contiguous();
  in.weights = weights.to(acc).contiguous();
  if (!p.dense) in.indices = weight_indices->to(at::kInt).contiguous();
  return in;
}

// The gradients asked for by output_mask, uninitialised in the inputs' dtype (every element is
// written by the kernels), zeros for a trivial problem; a masked-out one is an empty tensor.
struct Gradients {
  at::Tensor vertices, weights, rotations, translations;
  std::array<bool, 4> want;
};

inline Gradients allocate_gradients(const Problem& p, const at::Tensor& vertices,
                                    const at::Tensor& weights, std::array<bool, 4> output_mask) {
  const auto options = vertices.options();
  const bool zero = is_trivial(p);
  auto make = [&](bool wanted, at::IntArrayRef shape) {
    if (!wanted) return at::empty({0}, options);
    return zero ? at::zeros(shape, options) : at::empty(shape, options);
  };
  Gradients g;
  g.want = output_mask;
  g.vertices = make(output_mask[0], vertices.sizes());
  g.weights = make(output_mask[1], weights.sizes());
  g.rotations = make(output_mask[2], {p.N, p.J, 3, 3});
  g.translations = make(output_mask[3], {p.N, p.J, 3});
  return g;
}

inline std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> as_tuple(const Gradients& g) {
  return {g.vertices, g.weights, g.rotations, g.translations};
}

}  // namespace skelops::linear_blend_skinning
