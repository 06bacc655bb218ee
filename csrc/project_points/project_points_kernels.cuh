// Torch-free launchers of the CUDA kernels of skelops::project_points and its backward (defined
// in project_points_kernels.cu). scalar_t is float, double, __half or __nv_bfloat16: the dtype
// of every tensor; the math runs in float (double for double).
//
// Convention (project_points_math.h): points [N, P, 3], camera [N, camera_size] (4: pinhole
// fx, fy, cx, cy; 3: weak perspective s, tx, ty), rotation [N, 3, 3] and translation [N, 3]
// (null: absent), grad and out [N, P, 2]; all contiguous. Every launcher enqueues on `stream`
// and returns the first failing call's error or cudaGetLastError(), which the caller must
// check.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace skelops::project_points {

struct Dims {
  int64_t N, P;
  int camera_size;
};

// Points per block of the backward: its per-sample sums are one partial per (sample, chunk).
constexpr int64_t kCudaChunk = 1024;

template <typename scalar_t>
struct CudaAcc {
  using type = float;
};
template <>
struct CudaAcc<double> {
  using type = double;
};

// Scratch (bytes) of the backward, allocated by the caller: the [N, chunks, 16] partial sums.
template <typename scalar_t>
inline int64_t backward_workspace_bytes(const Dims& d) {
  const int64_t chunks = d.P > 0 ? (d.P + kCudaChunk - 1) / kCudaChunk : 1;
  return d.N * chunks * 16 * static_cast<int64_t>(sizeof(typename CudaAcc<scalar_t>::type));
}

template <typename scalar_t>
cudaError_t launch_project_points_forward(const scalar_t* points, const scalar_t* camera,
                                          const scalar_t* rotation, const scalar_t* translation,
                                          Dims dims, bool weak_perspective, double min_depth,
                                          scalar_t* out, cudaStream_t stream);

// grad_points [N, P, 3], grad_camera [N, camera_size], grad_rotation [N, 3, 3] and
// grad_translation [N, 3] (contiguous; each may be null when not asked for). Deterministic:
// the per-sample sums are fixed-order block reductions, no atomics.
template <typename scalar_t>
cudaError_t launch_project_points_backward(const scalar_t* grad, const scalar_t* points,
                                           const scalar_t* camera, const scalar_t* rotation,
                                           const scalar_t* translation, Dims dims,
                                           bool weak_perspective, double min_depth,
                                           void* workspace, scalar_t* grad_points,
                                           scalar_t* grad_camera, scalar_t* grad_rotation,
                                           scalar_t* grad_translation, cudaStream_t stream);

}  // namespace skelops::project_points
