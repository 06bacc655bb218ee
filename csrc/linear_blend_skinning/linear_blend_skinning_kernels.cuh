// Torch-free launchers of the CUDA kernels of skelops::linear_blend_skinning and its backward
// (defined in linear_blend_skinning_kernels.cu). scalar_t is float, __half, __nv_bfloat16
// (acc_t float) or double (acc_t double).
//
// Convention (linear_blend_skinning_math.h): vertices [N or 1, P, 3] and grad_out [N, P, 3]
// contiguous in scalar_t; weights [P, K] contiguous in acc_t (K = J when dense, indices null);
// indices [P, K] contiguous int32 in [0, J) (checked by the caller); transforms [N, J, 12]
// contiguous acc_t, joint j's 3 x 4 [R | t] row-major. Every launcher enqueues on `stream` and
// returns the first failing call's error or cudaGetLastError(), which the caller must check.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace skelops::linear_blend_skinning {

struct Dims {
  int64_t N, P, J, K;
  bool dense;            // weights [P, J], indices null
  bool shared_vertices;  // vertices [1, P, 3] serve every sample
};

// Which gradients the backward writes (a null output pointer means not wanted).
struct Wanted {
  bool vertices, weights, rotations, translations;
};

// Scratch (bytes) the backward needs, allocated by the caller: the fixed-order partial sums.
template <typename acc_t>
int64_t backward_workspace_bytes(const Dims& dims, Wanted wanted);

// out [N, P, 3] contiguous. dims must be non-trivial (N, P, K > 0).
template <typename scalar_t, typename acc_t>
cudaError_t launch_linear_blend_skinning_forward(const scalar_t* vertices, const acc_t* weights,
                                                 const int32_t* indices, const acc_t* transforms,
                                                 Dims dims, scalar_t* out, cudaStream_t stream);

// grad_vertices (vertices' shape), grad_weights [P, K], grad_rotations [N, J, 3, 3] and
// grad_translations [N, J, 3], contiguous in scalar_t; a null one is not computed. Deterministic:
// no atomics, partial sums over shape-determined splits reduced in a fixed order.
template <typename scalar_t, typename acc_t>
cudaError_t launch_linear_blend_skinning_backward(
    const scalar_t* grad_out, const scalar_t* vertices, const acc_t* weights,
    const int32_t* indices, const acc_t* transforms, Dims dims, void* workspace,
    scalar_t* grad_vertices, scalar_t* grad_weights, scalar_t* grad_rotations,
    scalar_t* grad_translations, cudaStream_t stream);

}  // namespace skelops::linear_blend_skinning
