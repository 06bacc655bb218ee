// CUDA glue of skelops::spatio_temporal_curve and its backward: argument checks (shared with the
// CPU kernels), output and workspace allocation, the current stream, and the torch-free
// launchers of spatio_temporal_curve_kernels.cu. x, key and grad_out are passed with their
// strides (no copies).
#include "spatio_temporal_curve/spatio_temporal_curve_common.h"
#include "spatio_temporal_curve/spatio_temporal_curve_kernels.cuh"

#include <skelops/cuda_glue.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <array>
#include <optional>
#include <tuple>
#include <type_traits>

namespace skelops::spatio_temporal_curve {
namespace {

using namespace skelops::cuda;

FrameStrides strides_of(const at::Tensor& t) {
  return {t.stride(0), t.stride(1), t.stride(2), t.stride(3)};
}

Dims dims_of(const Problem& p) { return {p.N, p.C, p.T, p.V, p.D, p.steps}; }

void check_cuda_problem(const char* op, const at::Tensor& x, const Problem& p) {
  check_cuda(op, x);
  const at::ScalarType dtype = x.scalar_type();
  TORCH_CHECK_TYPE(dtype == at::kFloat || dtype == at::kHalf || dtype == at::kBFloat16, op,
                   ": the CUDA kernel supports float32, float16 and bfloat16 tensors, got ", dtype);
  TORCH_CHECK_VALUE(p.V <= kMaxCudaJoints, op, ": the CUDA kernel supports V <= ",
                    kMaxCudaJoints, " joints, got V=", p.V);
  // The backward's curve tables index (t, v, step) with int32.
  TORCH_CHECK_VALUE(p.T * p.V * (p.steps + 1) < (int64_t{1} << 31), op,
                    ": T * V * (min(length, T - 1) + 1) must be below 2^31, got T=", p.T,
                    ", V=", p.V, ", length=", p.steps);
}

// The mask as the kernels read it (contiguous [V, V] bool), or null for all joints.
const bool* candidate_mask(const Problem& p, const std::optional<at::Tensor>& candidates,
                           at::Tensor& holder) {
  if (!p.has_candidates) return nullptr;
  holder = candidates->contiguous();
  return holder.const_data_ptr<bool>();
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> spatio_temporal_curve_cuda(
    const at::Tensor& x, const at::Tensor& key, const std::optional<at::Tensor>& candidates,
    int64_t length, double scale) {
  const char* op = "skelops::spatio_temporal_curve";
  const Problem p = check_problem(op, x, key, candidates, length, scale);
  check_cuda_problem(op, x, p);
  const c10::cuda::CUDAGuard guard(x.device());
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream().stream();
  at::Tensor mask;
  const bool* mask_ptr = candidate_mask(p, candidates, mask);
  const auto f32 = x.options().dtype(at::kFloat);
  at::Tensor y = at::empty({p.N, p.C, p.T, p.V}, x.options());
  at::Tensor next = at::empty({p.N, p.T - 1, p.V}, x.options().dtype(at::kInt));
  at::Tensor log_prob = at::empty({p.N, p.T - 1, p.V}, f32);
  at::Tensor log_normalizer = at::empty({p.N, p.T - 1, p.V}, f32);
  dispatch_cuda_dtype(op, x.scalar_type(), [&](auto* type_tag) {
    using scalar_t = std::remove_pointer_t<decltype(type_tag)>;
    check_launch(op, "forward",
                 launch_spatio_temporal_curve_forward<scalar_t>(
                     data_of<scalar_t>(x), strides_of(x), data_of<scalar_t>(key), strides_of(key),
                     mask_ptr, static_cast<float>(scale), dims_of(p), mutable_data_of<scalar_t>(y),
                     next.mutable_data_ptr<int32_t>(), log_prob.mutable_data_ptr<float>(),
                     log_normalizer.mutable_data_ptr<float>(), stream));
  });
  return {y, next, log_prob, log_normalizer};
}

std::tuple<at::Tensor, at::Tensor> spatio_temporal_curve_backward_cuda(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& key,
    const std::optional<at::Tensor>& candidates, const at::Tensor& next_joint,
    const at::Tensor& log_prob, const at::Tensor& log_normalizer, int64_t length, double scale,
    std::array<bool, 2> output_mask) {
  const char* op = "skelops::spatio_temporal_curve_backward";
  const Problem p = check_problem(op, x, key, candidates, length, scale);
  check_cuda_problem(op, x, p);
  check_backward_inputs(op, p, grad_out, x, next_joint, log_prob, log_normalizer);
  const c10::cuda::CUDAGuard guard(x.device());
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream().stream();
  at::Tensor grad_x = output_mask[0] ? at::empty({p.N, p.C, p.T, p.V}, x.options())
                                     : empty_like_none(x);
  at::Tensor grad_key = output_mask[1] ? at::empty({p.N, p.D, p.T, p.V}, x.options())
                                       : empty_like_none(x);
  if (!output_mask[0] && !output_mask[1]) return {grad_x, grad_key};

  at::Tensor mask;
  const bool* mask_ptr = candidate_mask(p, candidates, mask);
  const at::Tensor next = next_joint.contiguous(), lp = log_prob.contiguous(),
                   lz = log_normalizer.contiguous();
  const Dims dims = dims_of(p);
  const int64_t table = curve_table_size(dims);
  const auto i32 = x.options().dtype(at::kInt), f32 = x.options().dtype(at::kFloat);
  at::Tensor joints = at::empty({table}, i32), weights = at::empty({table}, f32);
  at::Tensor arrivals = at::empty({table}, i32);
  at::Tensor offsets = at::empty({p.N * (p.T * p.V + 1)}, i32);
  at::Tensor through = at::empty({output_mask[1] ? table : 0}, f32);
  at::Tensor log_prob_grad = at::empty({output_mask[1] ? p.N * (p.T - 1) * p.V : 0}, f32);
  const BackwardWorkspace workspace{
      joints.mutable_data_ptr<int32_t>(),  weights.mutable_data_ptr<float>(),
      offsets.mutable_data_ptr<int32_t>(), arrivals.mutable_data_ptr<int32_t>(),
      through.mutable_data_ptr<float>(),   log_prob_grad.mutable_data_ptr<float>()};
  dispatch_cuda_dtype(op, x.scalar_type(), [&](auto* type_tag) {
    using scalar_t = std::remove_pointer_t<decltype(type_tag)>;
    check_launch(
        op, "backward",
        launch_spatio_temporal_curve_backward<scalar_t>(
            data_of<scalar_t>(grad_out), strides_of(grad_out), data_of<scalar_t>(x),
            strides_of(x), data_of<scalar_t>(key), strides_of(key), mask_ptr,
            next.const_data_ptr<int32_t>(), lp.const_data_ptr<float>(),
            lz.const_data_ptr<float>(), static_cast<float>(scale), dims, workspace,
            output_mask[0] ? mutable_data_of<scalar_t>(grad_x) : nullptr,
            output_mask[1] ? mutable_data_of<scalar_t>(grad_key) : nullptr, stream));
  });
  return {grad_x, grad_key};
}

}  // namespace

TORCH_LIBRARY_IMPL(skelops, CUDA, m) {
  m.impl("spatio_temporal_curve", &spatio_temporal_curve_cuda);
  m.impl("spatio_temporal_curve_backward", &spatio_temporal_curve_backward_cuda);
}

}  // namespace skelops::spatio_temporal_curve
