// CUDA glue of skelops::render_heatmaps and its backward: argument checks (shared with the CPU
// kernels), output and workspace allocation, the current stream, and the torch-free launchers
// of render_heatmaps_kernels.cu. keypoints and scores are made contiguous in the accumulation
// dtype (tiny); grad is passed with its strides (no copy: only the boxes are read).
#include "render_heatmaps/render_heatmaps_common.h"
#include "render_heatmaps/render_heatmaps_kernels.cuh"

#include <skelops/cuda_glue.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <array>
#include <optional>
#include <tuple>
#include <type_traits>

namespace skelops::render_heatmaps {
namespace {

using namespace skelops::cuda;

Dims dims_of(const Problem& p) { return {p.N, p.T, p.M, p.V, p.C, p.H, p.W}; }

template <typename F>
void dispatch_acc(const at::Tensor& keypoints, F&& f) {
  if (keypoints.scalar_type() == at::kDouble) {
    f(static_cast<double*>(nullptr));
  } else {
    f(static_cast<float*>(nullptr));
  }
}

const int64_t* limbs_of(const Problem& p, const KernelInputs& in) {
  return p.limb_mode ? in.limbs.const_data_ptr<int64_t>() : nullptr;
}

at::Tensor render_heatmaps_cuda(const at::Tensor& keypoints, const at::Tensor& scores,
                                const std::optional<at::Tensor>& limbs, int64_t height,
                                int64_t width, double sigma, bool pyskl_window,
                                bool channels_last, std::optional<at::ScalarType> dtype) {
  const char* op = "skelops::render_heatmaps";
  const Problem p = check_problem(op, keypoints, scores, limbs, height, width, sigma);
  check_cuda(op, keypoints);
  // Elements of a plane (or a channels-last frame) are int32 in the kernels.
  TORCH_CHECK_VALUE(p.H * p.W * p.C < (int64_t{1} << 31), op,
                    ": the CUDA kernel needs H * W * C < 2^31, got H=", p.H, ", W=", p.W,
                    ", C=", p.C);
  const at::ScalarType out_dtype = output_dtype(op, keypoints, dtype);
  const c10::cuda::CUDAGuard guard(keypoints.device());
  at::Tensor out = empty_output(p, keypoints, out_dtype, channels_last);
  if (out.numel() == 0) return out;
  const KernelInputs in = kernel_inputs(p, keypoints, scores, limbs);
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream().stream();
  const Dims dims = dims_of(p);
  dispatch_acc(keypoints, [&](auto* acc_tag) {
    using acc_t = std::remove_pointer_t<decltype(acc_tag)>;
    at::Tensor workspace = at::empty({std::max<int64_t>(forward_workspace_bytes<acc_t>(dims), 1)},
                                     keypoints.options().dtype(at::kByte));
    dispatch_cuda_dtype<true>(op, out_dtype, [&](auto* out_tag) {
      using out_t = std::remove_pointer_t<decltype(out_tag)>;
      check_launch(op, "forward",
                   launch_render_heatmaps_forward<acc_t, out_t>(
                       in.keypoints.const_data_ptr<acc_t>(), in.scores.const_data_ptr<acc_t>(),
                       limbs_of(p, in), dims, sigma, pyskl_window, channels_last,
                       workspace.mutable_data_ptr(), mutable_data_of<out_t>(out), stream));
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> render_heatmaps_backward_cuda(
    const at::Tensor& grad, const at::Tensor& keypoints, const at::Tensor& scores,
    const std::optional<at::Tensor>& limbs, double sigma, bool pyskl_window,
    std::array<bool, 2> output_mask) {
  const char* op = "skelops::render_heatmaps_backward";
  const Problem p = check_backward_problem(op, grad, keypoints, scores, limbs, sigma);
  check_cuda(op, keypoints);
  TORCH_CHECK_VALUE(p.H * p.W < (int64_t{1} << 31), op,
                    ": the CUDA kernel needs H * W < 2^31, got H=", p.H, ", W=", p.W);
  const c10::cuda::CUDAGuard guard(keypoints.device());
  Gradients grads = empty_gradients(p, keypoints, output_mask);
  if (!grads.want_keypoints && !grads.want_scores) return {grads.keypoints, grads.scores};
  if (p.N * p.T * p.M * p.V == 0) return finish_gradients(grads, keypoints);
  const KernelInputs in = kernel_inputs(p, keypoints, scores, limbs);
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream().stream();
  const Dims dims = dims_of(p);
  const GradStrides strides{grad.stride(0), grad.stride(1), grad.stride(2), grad.stride(3),
                            grad.stride(4)};
  dispatch_acc(keypoints, [&](auto* acc_tag) {
    using acc_t = std::remove_pointer_t<decltype(acc_tag)>;
    at::Tensor workspace =
        at::empty({std::max<int64_t>(backward_workspace_bytes<acc_t>(dims), 1)},
                  keypoints.options().dtype(at::kByte));
    dispatch_cuda_dtype<true>(op, grad.scalar_type(), [&](auto* grad_tag) {
      using grad_t = std::remove_pointer_t<decltype(grad_tag)>;
      check_launch(
          op, "backward",
          launch_render_heatmaps_backward<acc_t, grad_t>(
              data_of<grad_t>(grad), strides, in.keypoints.const_data_ptr<acc_t>(),
              in.scores.const_data_ptr<acc_t>(), limbs_of(p, in), dims, sigma, pyskl_window,
              workspace.mutable_data_ptr(),
              grads.want_keypoints ? grads.keypoints.mutable_data_ptr<acc_t>() : nullptr,
              grads.want_scores ? grads.scores.mutable_data_ptr<acc_t>() : nullptr, stream));
    });
  });
  return finish_gradients(grads, keypoints);
}

}  // namespace

TORCH_LIBRARY_IMPL(skelops, CUDA, m) {
  m.impl("render_heatmaps", &render_heatmaps_cuda);
  m.impl("render_heatmaps_backward", &render_heatmaps_backward_cuda);
}

}  // namespace skelops::render_heatmaps
