// CUDA kernels of skelops::axis_angle_to_matrix, skelops::dof_rotations and their backwards
// (torch-free; launchers declared in rotations_kernels.cuh, per-rotation math shared with the CPU
// kernels in rotations_math.h).
//
// Floor. Every kernel is a map over independent rotations: per rotation the forward reads 3
// values and writes 9, ~40 FLOPs (axis-angle) or ~60 per DoF (dof_rotations: sin, cos, a 3 x 3
// product), so they are bound by memory and launch latency: at B = 1M float32 rotations 48 MB
// move, ~15 us at an H100's ~3.35 TB/s. One thread per rotation (axis-angle) or per
// (sample, joint) (dof_rotations), consecutive threads on consecutive outputs; the 9 outputs of a
// thread are contiguous, so a warp's stores cover 32 x 36 contiguous bytes (float32).
//
// dof_rotations_backward: one thread per (sample, joint) writes the pose gradient of the joint's
// DoFs (each DoF has one joint: one writer) and the sample's axes-gradient contributions into an
// [N, D, 3] workspace; column_sums_kernel then adds them over the samples in chunks of
// kRowsPerChunk rows, each column sum by one thread in row order (coalesced across the columns),
// pass after pass until one row remains, written as the gradient. No atomics: the result does
// not depend on the launch configuration, and two runs give the same bits.
#include "rotations_kernels.cuh"

#include "rotations_math.h"

#include <skelops/cuda_launch.cuh>

#include <algorithm>
#include <cstdint>
#include <type_traits>

namespace skelops::rotations {
namespace {

constexpr int kThreads = 256;
constexpr int kColumnThreads = 128;
constexpr int64_t kRowsPerChunk = 256;
constexpr int64_t kMaxBlocks = int64_t{1} << 20;
constexpr int64_t kMaxGridY = 65535;

__device__ __forceinline__ float to_acc(float v) { return v; }
__device__ __forceinline__ double to_acc(double v) { return v; }
__device__ __forceinline__ float to_acc(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename scalar_t>
__device__ __forceinline__ scalar_t from_acc(Acc<scalar_t> v) {
  if constexpr (std::is_same_v<scalar_t, __half>) {
    return __float2half_rn(v);
  } else if constexpr (std::is_same_v<scalar_t, __nv_bfloat16>) {
    return __float2bfloat16_rn(v);
  } else {
    return v;
  }
}

int64_t grid_for(int64_t items) { return std::min(ceil_div(items, kThreads), kMaxBlocks); }

template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    axis_angle_kernel(const scalar_t* __restrict__ axis_angle, Strides2 as, int64_t B,
                      scalar_t* __restrict__ out) {
  using acc_t = Acc<scalar_t>;
  for (int64_t b = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; b < B;
       b += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const scalar_t* a = axis_angle + b * as.s0;
    acc_t R[9];
    axis_angle_matrix<acc_t>(to_acc(a[0]), to_acc(a[as.s1]), to_acc(a[2 * as.s1]), R);
#pragma unroll
    for (int k = 0; k < 9; ++k) out[b * 9 + k] = from_acc<scalar_t>(R[k]);
  }
}

template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    axis_angle_backward_kernel(const scalar_t* __restrict__ grad, Strides4 gs,
                               const scalar_t* __restrict__ axis_angle, Strides2 as, int64_t B,
                               scalar_t* __restrict__ grad_axis) {
  using acc_t = Acc<scalar_t>;
  for (int64_t b = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; b < B;
       b += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const scalar_t* a = axis_angle + b * as.s0;
    acc_t G[9], out[3];
#pragma unroll
    for (int i = 0; i < 3; ++i)
#pragma unroll
      for (int j = 0; j < 3; ++j) G[i * 3 + j] = to_acc(grad[b * gs.s1 + i * gs.s2 + j * gs.s3]);
    axis_angle_matrix_grad<acc_t>(to_acc(a[0]), to_acc(a[as.s1]), to_acc(a[2 * as.s1]), G, out);
#pragma unroll
    for (int c = 0; c < 3; ++c) grad_axis[b * 3 + c] = from_acc<scalar_t>(out[c]);
  }
}

template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    dof_kernel(const scalar_t* __restrict__ pose, Strides2 ps, const Acc<scalar_t>* __restrict__ axes,
               const int64_t* __restrict__ joint_begin, DofDims d, scalar_t* __restrict__ out) {
  using acc_t = Acc<scalar_t>;
  const int64_t total = d.N * d.J;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t n = idx / d.J, j = idx - n * d.J;
    const scalar_t* qn = pose + n * ps.s0;
    const auto angle = [&](int64_t dof) { return to_acc(qn[dof * ps.s1]); };
    acc_t R[9];
    joint_rotation<acc_t>(axes, joint_begin[j], joint_begin[j + 1], angle, R);
#pragma unroll
    for (int k = 0; k < 9; ++k) out[idx * 9 + k] = from_acc<scalar_t>(R[k]);
  }
}

template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    dof_backward_kernel(const scalar_t* __restrict__ grad, Strides4 gs,
                        const scalar_t* __restrict__ pose, Strides2 ps,
                        const Acc<scalar_t>* __restrict__ axes,
                        const int64_t* __restrict__ joint_begin, DofDims d,
                        scalar_t* __restrict__ grad_pose, Acc<scalar_t>* __restrict__ contributions) {
  using acc_t = Acc<scalar_t>;
  const int64_t total = d.N * d.J;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t n = idx / d.J, j = idx - n * d.J;
    const int64_t begin = joint_begin[j], end = joint_begin[j + 1];
    if (begin == end) continue;
    const scalar_t* qn = pose + n * ps.s0;
    const auto angle = [&](int64_t dof) { return to_acc(qn[dof * ps.s1]); };
    acc_t G[9];
#pragma unroll
    for (int r = 0; r < 3; ++r)
#pragma unroll
      for (int c = 0; c < 3; ++c) G[r * 3 + c] = to_acc(grad[n * gs.s0 + j * gs.s1 + r * gs.s2 + c * gs.s3]);
    const auto emit = [&](int64_t dof, acc_t grad_q, const acc_t* grad_a) {
      if (grad_pose != nullptr) grad_pose[n * d.D + dof] = from_acc<scalar_t>(grad_q);
      if (contributions != nullptr) {
        acc_t* dst = contributions + (n * d.D + dof) * 3;
        dst[0] = grad_a[0];
        dst[1] = grad_a[1];
        dst[2] = grad_a[2];
      }
    };
    joint_rotation_backward<acc_t>(axes, begin, end, angle, G, emit);
  }
}

// out[chunk, col] = sum of in[r, col] over the rows r of the chunk, in row order.
template <typename acc_t>
__global__ void __launch_bounds__(kColumnThreads)
    column_sums_kernel(const acc_t* __restrict__ in, int64_t rows, int64_t cols,
                       acc_t* __restrict__ out) {
  const int64_t col = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (col >= cols) return;
  const int64_t chunks = ceil_div(rows, kRowsPerChunk);
  for (int64_t chunk = blockIdx.y; chunk < chunks; chunk += gridDim.y) {
    const int64_t end = (chunk + 1) * kRowsPerChunk < rows ? (chunk + 1) * kRowsPerChunk : rows;
    acc_t sum = 0;
    for (int64_t r = chunk * kRowsPerChunk; r < end; ++r) sum += in[r * cols + col];
    out[chunk * cols + col] = sum;
  }
}

template <typename acc_t>
cudaError_t launch_column_sums(const acc_t* in, int64_t rows, int64_t cols, acc_t* out,
                               cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(ceil_div(cols, kColumnThreads)),
                  static_cast<unsigned>(std::min(ceil_div(rows, kRowsPerChunk), kMaxGridY)));
  column_sums_kernel<acc_t><<<grid, kColumnThreads, 0, stream>>>(in, rows, cols, out);
  return cudaGetLastError();
}

}  // namespace

int64_t dof_rotations_axes_workspace_elements(DofDims dims) {
  const int64_t cols = dims.D * 3;
  int64_t elements = dims.N * cols;
  for (int64_t rows = dims.N; rows > kRowsPerChunk; rows = ceil_div(rows, kRowsPerChunk)) {
    elements += ceil_div(rows, kRowsPerChunk) * cols;
  }
  return elements;
}

template <typename scalar_t>
cudaError_t launch_axis_angle_to_matrix(const scalar_t* axis_angle, Strides2 axis_strides,
                                        int64_t B, scalar_t* out, cudaStream_t stream) {
  return cuda::launch_with_smem(axis_angle_kernel<scalar_t>, grid_for(B), kThreads, 0, stream,
                                axis_angle, axis_strides, B, out);
}

template <typename scalar_t>
cudaError_t launch_axis_angle_to_matrix_backward(const scalar_t* grad, Strides4 grad_strides,
                                                 const scalar_t* axis_angle,
                                                 Strides2 axis_strides, int64_t B,
                                                 scalar_t* grad_axis, cudaStream_t stream) {
  return cuda::launch_with_smem(axis_angle_backward_kernel<scalar_t>, grid_for(B), kThreads, 0,
                                stream, grad, grad_strides, axis_angle, axis_strides, B,
                                grad_axis);
}

template <typename scalar_t>
cudaError_t launch_dof_rotations(const scalar_t* pose, Strides2 pose_strides,
                                 const Acc<scalar_t>* axes, const int64_t* joint_begin,
                                 DofDims dims, scalar_t* out, cudaStream_t stream) {
  return cuda::launch_with_smem(dof_kernel<scalar_t>, grid_for(dims.N * dims.J), kThreads, 0,
                                stream, pose, pose_strides, axes, joint_begin, dims, out);
}

template <typename scalar_t>
cudaError_t launch_dof_rotations_backward(const scalar_t* grad, Strides4 grad_strides,
                                          const scalar_t* pose, Strides2 pose_strides,
                                          const Acc<scalar_t>* axes, const int64_t* joint_begin,
                                          DofDims dims, scalar_t* grad_pose,
                                          Acc<scalar_t>* workspace, Acc<scalar_t>* grad_axes,
                                          cudaStream_t stream) {
  using acc_t = Acc<scalar_t>;
  const int64_t cols = dims.D * 3;
  if (cols == 0) return cudaSuccess;
  if (dims.N == 0) {
    if (grad_axes == nullptr) return cudaSuccess;
    return cudaMemsetAsync(grad_axes, 0, sizeof(acc_t) * cols, stream);  // all-zero bits: 0.0
  }
  acc_t* contributions = grad_axes != nullptr ? workspace : nullptr;
  cudaError_t err = cuda::launch_with_smem(dof_backward_kernel<scalar_t>,
                                           grid_for(dims.N * dims.J), kThreads, 0, stream, grad,
                                           grad_strides, pose, pose_strides, axes, joint_begin,
                                           dims, grad_pose, contributions);
  if (err != cudaSuccess || grad_axes == nullptr) return err;
  const acc_t* in = contributions;
  acc_t* next = contributions + dims.N * cols;
  int64_t rows = dims.N;
  while (rows > kRowsPerChunk) {
    err = launch_column_sums(in, rows, cols, next, stream);
    if (err != cudaSuccess) return err;
    rows = ceil_div(rows, kRowsPerChunk);
    in = next;
    next += rows * cols;
  }
  return launch_column_sums(in, rows, cols, grad_axes, stream);
}

#define SKELOPS_ROTATIONS_INSTANTIATE(scalar_t)                                                   \
  template cudaError_t launch_axis_angle_to_matrix<scalar_t>(const scalar_t*, Strides2, int64_t, \
                                                             scalar_t*, cudaStream_t);            \
  template cudaError_t launch_axis_angle_to_matrix_backward<scalar_t>(                            \
      const scalar_t*, Strides4, const scalar_t*, Strides2, int64_t, scalar_t*, cudaStream_t);    \
  template cudaError_t launch_dof_rotations<scalar_t>(const scalar_t*, Strides2,                  \
                                                      const Acc<scalar_t>*, const int64_t*,       \
                                                      DofDims, scalar_t*, cudaStream_t);          \
  template cudaError_t launch_dof_rotations_backward<scalar_t>(                                   \
      const scalar_t*, Strides4, const scalar_t*, Strides2, const Acc<scalar_t>*, const int64_t*, \
      DofDims, scalar_t*, Acc<scalar_t>*, Acc<scalar_t>*, cudaStream_t);

SKELOPS_ROTATIONS_INSTANTIATE(float)
SKELOPS_ROTATIONS_INSTANTIATE(double)
SKELOPS_ROTATIONS_INSTANTIATE(__half)
SKELOPS_ROTATIONS_INSTANTIATE(__nv_bfloat16)

#undef SKELOPS_ROTATIONS_INSTANTIATE

}  // namespace skelops::rotations
