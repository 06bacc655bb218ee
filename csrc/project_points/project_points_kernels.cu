// CUDA kernels of skelops::project_points and skelops::project_points_backward (torch-free;
// launchers declared in project_points_kernels.cuh, per-point math shared with the CPU loops in
// project_points_math.h).
//
// Floor. Forward: 3 values read and 2 written per point (20 bytes in float32); ~20 FLOPs and a
// division: bandwidth bound (N = 1024 meshes of 6890 points, float32: 141 MB, ~45 us at an
// H100's ~3.35 TB/s). Backward: grad (2) and points (3) read, grad_points (3) written per point,
// plus 16 per-sample sums: bound by the same traffic.
//
// Kernels:
//   forward_kernel: one thread per point (grid-stride over N * P); a thread reads its sample's
//     parameters (camera, R, t: the same addresses across the block, cached broadcasts).
//   backward_kernel: one block per (sample, chunk of kCudaChunk points); each thread takes the
//     chunk's points tid, tid + kThreads, ..., writes their gradients, and keeps its terms of the
//     16 per-sample sums in registers; the block reduces them in a fixed order (a warp butterfly
//     of shuffles, then the warps in order) into the [N, chunks, 16] partials workspace.
//   finish_kernel: one thread per (sample, slot) adds the sample's chunk partials in order and
//     writes the camera / rotation / translation gradients.
// No atomics: two runs give the same bits.
#include "project_points_kernels.cuh"

#include "project_points_math.h"

#include <algorithm>
#include <cstdint>

namespace skelops::project_points {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kPointsPerThread = static_cast<int>(kCudaChunk / kThreads);
constexpr int64_t kMaxBlocks = int64_t{1} << 20;

static_assert(kCudaChunk % kThreads == 0, "a chunk is a whole number of points per thread");

__device__ __forceinline__ float load_acc(const float* p) { return *p; }
__device__ __forceinline__ double load_acc(const double* p) { return *p; }
__device__ __forceinline__ float load_acc(const __half* p) { return __half2float(*p); }
__device__ __forceinline__ float load_acc(const __nv_bfloat16* p) { return __bfloat162float(*p); }

__device__ __forceinline__ void store_acc(float* p, float v) { *p = v; }
__device__ __forceinline__ void store_acc(double* p, double v) { *p = v; }
__device__ __forceinline__ void store_acc(__half* p, float v) { *p = __float2half_rn(v); }
__device__ __forceinline__ void store_acc(__nv_bfloat16* p, float v) {
  *p = __float2bfloat16_rn(v);
}

template <typename scalar_t>
struct Inputs {
  const scalar_t* points;
  const scalar_t* camera;
  const scalar_t* rotation;     // null: identity
  const scalar_t* translation;  // null: zero
};

template <typename scalar_t>
struct Outputs {
  scalar_t* points;
  scalar_t* camera;
  scalar_t* rotation;
  scalar_t* translation;
};

template <typename acc_t, typename scalar_t>
__device__ __forceinline__ Sample<acc_t> sample_of(const Inputs<scalar_t>& in, const Dims& d,
                                                   int64_t n) {
  return load_sample<acc_t>(in.camera + n * d.camera_size, d.camera_size,
                            in.rotation != nullptr ? in.rotation + n * 9 : nullptr,
                            in.translation != nullptr ? in.translation + n * 3 : nullptr,
                            [](const scalar_t* p, int i) { return load_acc(p + i); });
}

int64_t blocks_for(int64_t items, int threads) {
  return std::max<int64_t>(1, std::min<int64_t>((items + threads - 1) / threads, kMaxBlocks));
}

template <bool kWeak, typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads)
    forward_kernel(Inputs<scalar_t> in, Dims d, acc_t min_depth, scalar_t* __restrict__ out) {
  const int64_t total = d.N * d.P;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(kThreads) + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * kThreads) {
    const Sample<acc_t> s = sample_of<acc_t>(in, d, idx / d.P);
    const scalar_t* x = in.points + idx * 3;
    acc_t u, v;
    project_point<kWeak>(s, min_depth, load_acc(x), load_acc(x + 1), load_acc(x + 2), &u, &v);
    store_acc(out + idx * 2, u);
    store_acc(out + idx * 2 + 1, v);
  }
}

template <typename acc_t>
__device__ __forceinline__ acc_t warp_sum(acc_t v) {
  // Butterfly: every lane ends with the same, fixed-order sum.
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

template <bool kWeak, bool kSums, typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads)
    backward_kernel(const scalar_t* __restrict__ grad, Inputs<scalar_t> in, Dims d,
                    acc_t min_depth, scalar_t* __restrict__ grad_points,
                    acc_t* __restrict__ partials /* [N, chunks, kSlots] */) {
  __shared__ acc_t warp_sums[kWarps][kSlots];
  const int64_t chunks = d.P > 0 ? (d.P + kCudaChunk - 1) / kCudaChunk : 1;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (int64_t task = blockIdx.x; task < d.N * chunks; task += gridDim.x) {
    const int64_t n = task / chunks;
    const int64_t first = (task % chunks) * kCudaChunk;
    const Sample<acc_t> s = sample_of<acc_t>(in, d, n);
    acc_t sums[kSlots];
    for (int slot = 0; slot < kSlots; ++slot) sums[slot] = acc_t(0);
#pragma unroll
    for (int j = 0; j < kPointsPerThread; ++j) {
      const int64_t i = first + j * kThreads + threadIdx.x;
      if (i >= d.P) break;
      const int64_t idx = n * d.P + i;
      const scalar_t* x = in.points + idx * 3;
      const acc_t x0 = load_acc(x), x1 = load_acc(x + 1), x2 = load_acc(x + 2);
      const PointGrad<acc_t> g = point_grad<kWeak>(s, min_depth, x0, x1, x2,
                                                   load_acc(grad + idx * 2),
                                                   load_acc(grad + idx * 2 + 1));
      if (grad_points != nullptr) {
        for (int k = 0; k < 3; ++k) store_acc(grad_points + idx * 3 + k, g.point[k]);
      }
      if constexpr (kSums) {
#pragma unroll
        for (int slot = 0; slot < kSlots; ++slot) sums[slot] += slot_term(g, x0, x1, x2, slot);
      }
    }
    if constexpr (kSums) {
#pragma unroll
      for (int slot = 0; slot < kSlots; ++slot) {
        const acc_t v = warp_sum(sums[slot]);
        if (lane == 0) warp_sums[warp][slot] = v;
      }
      __syncthreads();
      if (threadIdx.x < kSlots) {
        acc_t total = acc_t(0);
        for (int w = 0; w < kWarps; ++w) total += warp_sums[w][threadIdx.x];
        partials[task * kSlots + threadIdx.x] = total;
      }
      __syncthreads();  // warp_sums is reused by the next task
    }
  }
}

template <typename scalar_t, typename acc_t>
__global__ void finish_kernel(const acc_t* __restrict__ partials, Dims d,
                              Outputs<scalar_t> grads) {
  const int64_t chunks = d.P > 0 ? (d.P + kCudaChunk - 1) / kCudaChunk : 1;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
       idx < d.N * kSlots; idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t n = idx / kSlots;
    const int slot = static_cast<int>(idx % kSlots);
    scalar_t* dst = nullptr;
    if (slot < kRotationSlot) {
      if (slot < d.camera_size && grads.camera != nullptr) {
        dst = grads.camera + n * d.camera_size + slot;
      }
    } else if (slot < kTranslationSlot) {
      if (grads.rotation != nullptr) dst = grads.rotation + n * 9 + (slot - kRotationSlot);
    } else if (grads.translation != nullptr) {
      dst = grads.translation + n * 3 + (slot - kTranslationSlot);
    }
    if (dst == nullptr) continue;
    acc_t total = acc_t(0);
    for (int64_t c = 0; c < chunks; ++c) total += partials[(n * chunks + c) * kSlots + slot];
    store_acc(dst, total);
  }
}

template <bool kWeak, typename scalar_t>
cudaError_t backward_for_model(const scalar_t* grad, const Inputs<scalar_t>& in, const Dims& d,
                               double min_depth, void* workspace, const Outputs<scalar_t>& out,
                               cudaStream_t stream) {
  using acc_t = typename CudaAcc<scalar_t>::type;
  const int64_t chunks = d.P > 0 ? (d.P + kCudaChunk - 1) / kCudaChunk : 1;
  const unsigned blocks = static_cast<unsigned>(std::min(d.N * chunks, kMaxBlocks));
  const acc_t depth = static_cast<acc_t>(min_depth);
  const bool sums = out.camera != nullptr || out.rotation != nullptr || out.translation != nullptr;
  auto* partials = static_cast<acc_t*>(workspace);
  if (!sums) {
    backward_kernel<kWeak, false, scalar_t, acc_t>
        <<<blocks, kThreads, 0, stream>>>(grad, in, d, depth, out.points, partials);
    return cudaGetLastError();
  }
  backward_kernel<kWeak, true, scalar_t, acc_t>
      <<<blocks, kThreads, 0, stream>>>(grad, in, d, depth, out.points, partials);
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  finish_kernel<scalar_t, acc_t><<<static_cast<unsigned>(blocks_for(d.N * kSlots, 256)), 256, 0,
                                   stream>>>(partials, d, out);
  return cudaGetLastError();
}

}  // namespace

template <typename scalar_t>
cudaError_t launch_project_points_forward(const scalar_t* points, const scalar_t* camera,
                                          const scalar_t* rotation, const scalar_t* translation,
                                          Dims dims, bool weak_perspective, double min_depth,
                                          scalar_t* out, cudaStream_t stream) {
  if (dims.N * dims.P == 0) return cudaSuccess;
  using acc_t = typename CudaAcc<scalar_t>::type;
  const Inputs<scalar_t> in{points, camera, rotation, translation};
  const unsigned blocks = static_cast<unsigned>(blocks_for(dims.N * dims.P, kThreads));
  const acc_t depth = static_cast<acc_t>(min_depth);
  if (weak_perspective) {
    forward_kernel<true, scalar_t, acc_t><<<blocks, kThreads, 0, stream>>>(in, dims, depth, out);
  } else {
    forward_kernel<false, scalar_t, acc_t><<<blocks, kThreads, 0, stream>>>(in, dims, depth, out);
  }
  return cudaGetLastError();
}

template <typename scalar_t>
cudaError_t launch_project_points_backward(const scalar_t* grad, const scalar_t* points,
                                           const scalar_t* camera, const scalar_t* rotation,
                                           const scalar_t* translation, Dims dims,
                                           bool weak_perspective, double min_depth,
                                           void* workspace, scalar_t* grad_points,
                                           scalar_t* grad_camera, scalar_t* grad_rotation,
                                           scalar_t* grad_translation, cudaStream_t stream) {
  const Outputs<scalar_t> out{grad_points, grad_camera, grad_rotation, grad_translation};
  if (dims.N == 0 || (grad_points == nullptr && grad_camera == nullptr &&
                      grad_rotation == nullptr && grad_translation == nullptr)) {
    return cudaSuccess;
  }
  const Inputs<scalar_t> in{points, camera, rotation, translation};
  if (weak_perspective) {
    return backward_for_model<true>(grad, in, dims, min_depth, workspace, out, stream);
  }
  return backward_for_model<false>(grad, in, dims, min_depth, workspace, out, stream);
}

#define SKELOPS_INSTANTIATE_PROJECT_POINTS(scalar_t)                                             \
  template cudaError_t launch_project_points_forward<scalar_t>(                                  \
      const scalar_t*, const scalar_t*, const scalar_t*, const scalar_t*, Dims, bool, double,    \
      scalar_t*, cudaStream_t);                                                                  \
  template cudaError_t launch_project_points_backward<scalar_t>(                                 \
      const scalar_t*, const scalar_t*, const scalar_t*, const scalar_t*, const scalar_t*, Dims, \
      bool, double, void*, scalar_t*, scalar_t*, scalar_t*, scalar_t*, cudaStream_t);

SKELOPS_INSTANTIATE_PROJECT_POINTS(float)
SKELOPS_INSTANTIATE_PROJECT_POINTS(double)
SKELOPS_INSTANTIATE_PROJECT_POINTS(__half)
SKELOPS_INSTANTIATE_PROJECT_POINTS(__nv_bfloat16)

#undef SKELOPS_INSTANTIATE_PROJECT_POINTS

}  // namespace skelops::project_points
