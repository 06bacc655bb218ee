// Torch-free launchers of the CUDA kernels of skelops::axis_angle_to_matrix,
// skelops::dof_rotations and their backwards (defined in rotations_kernels.cu, instantiated for
// float, double, __half and __nv_bfloat16; math in Acc<scalar_t>: double for double, else float).
//
// Conventions (rotations_math.h): axis_angle [B, 3] -> R [B, 3, 3]; pose [N, D], axes [D, 3],
// joint_begin [J + 1] (the DoFs of joint j are joint_begin[j] .. joint_begin[j + 1] - 1)
// -> R [N, J, 3, 3]. Inputs are read with their strides (elements); outputs are contiguous.
// Every launcher enqueues on `stream` and returns the first failing call's error or
// cudaGetLastError(), which the caller must check. Nothing is launched for empty problems.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

namespace skelops::rotations {

template <typename scalar_t>
using Acc = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;

// Strides of a [B, 3] or [N, D] tensor.
struct Strides2 {
  int64_t s0, s1;
};

// Strides of a [B, 3, 3] tensor (s0 unused for none) or of a [N, J, 3, 3] one.
struct Strides4 {
  int64_t s0, s1, s2, s3;
};

struct DofDims {
  int64_t N, D, J;
};

// R[b] = Rodrigues(axis_angle[b]), R contiguous [B, 3, 3].
template <typename scalar_t>
cudaError_t launch_axis_angle_to_matrix(const scalar_t* axis_angle, Strides2 axis_strides,
                                        int64_t B, scalar_t* out, cudaStream_t stream);

// grad_axis [B, 3] contiguous from grad [B, 3, 3] (strides s1, s2, s3 as grad[b, i, j] with s0
// unused: pass {0, stride(0), stride(1), stride(2)}).
template <typename scalar_t>
cudaError_t launch_axis_angle_to_matrix_backward(const scalar_t* grad, Strides4 grad_strides,
                                                 const scalar_t* axis_angle,
                                                 Strides2 axis_strides, int64_t B,
                                                 scalar_t* grad_axis, cudaStream_t stream);

// out [N, J, 3, 3] contiguous; axes [D, 3] contiguous in Acc<scalar_t>; joint_begin on the device.
template <typename scalar_t>
cudaError_t launch_dof_rotations(const scalar_t* pose, Strides2 pose_strides,
                                 const Acc<scalar_t>* axes, const int64_t* joint_begin,
                                 DofDims dims, scalar_t* out, cudaStream_t stream);

// Elements (Acc<scalar_t>) of the workspace the axes gradient needs: the [N, D, 3] per-sample
// contributions and the partial sums of the fixed-order reduction over the samples.
int64_t dof_rotations_axes_workspace_elements(DofDims dims);

// grad_pose [N, D] contiguous (null: not wanted) and grad_axes [D, 3] contiguous in
// Acc<scalar_t> (null: not wanted; then workspace may be null too) from grad [N, J, 3, 3].
// Deterministic: every output has one writer and the batch sum runs in a fixed order.
template <typename scalar_t>
cudaError_t launch_dof_rotations_backward(const scalar_t* grad, Strides4 grad_strides,
                                          const scalar_t* pose, Strides2 pose_strides,
                                          const Acc<scalar_t>* axes, const int64_t* joint_begin,
                                          DofDims dims, scalar_t* grad_pose,
                                          Acc<scalar_t>* workspace, Acc<scalar_t>* grad_axes,
                                          cudaStream_t stream);

}  // namespace skelops::rotations
