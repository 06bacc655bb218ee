// Torch-free launchers of the CUDA kernels of skelops::render_heatmaps and its backward (defined
// in render_heatmaps_kernels.cu). acc_t is float (float32 / float16 / bfloat16 keypoints) or
// double (float64 keypoints); out_t / grad_t is float, double, __half or __nv_bfloat16.
//
// Convention (render_heatmaps_math.h): keypoints [N, T, M, V, 2] and scores [N, T, M, V],
// contiguous, in acc_t; limbs [C, 2] contiguous int64 joint indices in [0, V) (limb mode) or
// null (keypoint mode, C = V); out [N, C, T, H, W] contiguous or channels_last_3d (strides
// (C T H W, 1, H W C, W C, C)). Every launcher enqueues on `stream` and returns the first
// failing call's error or cudaGetLastError(), which the caller must check.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "render_heatmaps_math.h"

namespace skelops::render_heatmaps {

struct Dims {
  int64_t N, T, M, V, C, H, W;
};

// Strides (elements) of grad [N, C, T, H, W].
struct GradStrides {
  int64_t n, c, t, h, w;
};

// Scratch (bytes) the launchers need, allocated by the caller: the [N, T, C, M] primitives,
// and for the backward also the [N, T, C, M, kGradSlots] per-primitive gradient partials.
template <typename acc_t>
inline int64_t forward_workspace_bytes(const Dims& d) {
  return d.N * d.T * d.C * d.M * static_cast<int64_t>(sizeof(Primitive<acc_t>));
}

template <typename acc_t>
inline int64_t backward_workspace_bytes(const Dims& d) {
  const int64_t prims = (forward_workspace_bytes<acc_t>(d) + 255) / 256 * 256;
  return prims + d.N * d.T * d.C * d.M * kGradSlots * static_cast<int64_t>(sizeof(acc_t));
}

// out [N, C, T, H, W] (every element written). The caller checks H * W * C < 2^31.
template <typename acc_t, typename out_t>
cudaError_t launch_render_heatmaps_forward(const acc_t* keypoints, const acc_t* scores,
                                           const int64_t* limbs, Dims dims, double sigma,
                                           bool pyskl_window, bool channels_last,
                                           void* workspace, out_t* out, cudaStream_t stream);

// grad_keypoints [N, T, M, V, 2] and grad_scores [N, T, M, V] (contiguous, acc_t; either may be
// null when not asked for) from grad (any strides). Deterministic: no atomics.
template <typename acc_t, typename grad_t>
cudaError_t launch_render_heatmaps_backward(const grad_t* grad, GradStrides grad_strides,
                                            const acc_t* keypoints, const acc_t* scores,
                                            const int64_t* limbs, Dims dims, double sigma,
                                            bool pyskl_window, void* workspace,
                                            acc_t* grad_keypoints, acc_t* grad_scores,
                                            cudaStream_t stream);

}  // namespace skelops::render_heatmaps
