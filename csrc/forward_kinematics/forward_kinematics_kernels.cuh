// Torch-free launchers of the CUDA kernels of skelops::forward_kinematics and its backward
// (defined in forward_kinematics_kernels.cu). scalar_t is float, double, __half or
// __nv_bfloat16; acc_t is float (double for double).
//
// Convention (forward_kinematics_math.h): local_rotations L [N, J, 3, 3], rest_joints r [J, 3]
// (shared, rest_stride 0) or [N, J, 3] (rest_stride J * 3), global_rotations G [N, J, 3, 3],
// posed_joints and global_translations [N, J, 3]; all contiguous, in scalar_t. parents[j] in
// [-1, j) (the caller checks it). Every launcher enqueues on `stream` and returns the first
// failing call's error or cudaGetLastError(), which the caller must check.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "forward_kinematics_math.h"

namespace skelops::forward_kinematics {

// Trees of up to kParamParents joints (every skeleton model in use: SMPL-X has 55) pass their
// parents by value in the kernel parameters (int16, 512 bytes): no device copy, and every
// thread of a warp reads the same entry (a broadcast constant-bank load). Larger trees pass a
// device int32 array prepared by the caller in `large`.
constexpr int kParamParents = 256;

struct ParentTable {
  int16_t small[kParamParents];
  const int32_t* large;  // [J] on the device, or null when `small` holds the parents
};

struct Dims {
  int64_t N, J;
  int64_t rest_stride;  // 0: rest_joints shared by the batch
};

// Elements of acc_t workspace the forward needs: none when the outputs are in acc_t (a joint's
// parent state is read back from the outputs), else the [J, 12, N] state in acc_t (half
// outputs are not re-read: the chain keeps float precision).
template <typename scalar_t, typename acc_t>
inline int64_t forward_workspace_elems(const Dims& d) {
  return std::is_same_v<scalar_t, acc_t> ? 0 : d.J * kForwardState * d.N;
}

// The backward's [J, 15, N] adjoint accumulators (sample fastest: coalesced).
inline int64_t backward_workspace_elems(const Dims& d) { return d.J * kBackwardState * d.N; }

// One thread per sample walks the chain; one launch.
template <typename scalar_t, typename acc_t>
cudaError_t launch_forward_kinematics_forward(const scalar_t* local_rotations,
                                              const scalar_t* rest_joints,
                                              const ParentTable& parents, Dims dims,
                                              acc_t* workspace, scalar_t* global_rotations,
                                              scalar_t* posed_joints,
                                              scalar_t* global_translations, cudaStream_t stream);

// Gradients from the incoming ones (each may be null: zero). grad_local_rotations
// [N, J, 3, 3] (scalar_t) and grad_rest [N, J, 3] (acc_t, per sample; the caller sums it over
// the batch for shared rest_joints) may each be null when not wanted. One thread per sample,
// joints in reverse order; the launcher zeroes the workspace. Deterministic: no atomics.
template <typename scalar_t, typename acc_t>
cudaError_t launch_forward_kinematics_backward(
    const scalar_t* grad_global_rotations, const scalar_t* grad_posed_joints,
    const scalar_t* grad_global_translations, const scalar_t* local_rotations,
    const scalar_t* rest_joints, const scalar_t* global_rotations, const ParentTable& parents,
    Dims dims, acc_t* workspace, scalar_t* grad_local_rotations, acc_t* grad_rest,
    cudaStream_t stream);

}  // namespace skelops::forward_kinematics
