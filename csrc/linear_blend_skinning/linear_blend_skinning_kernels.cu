// CUDA kernels of skelops::linear_blend_skinning and its backward (torch-free; launchers
// declared in linear_blend_skinning_kernels.cuh, per-vertex math in
// linear_blend_skinning_math.h).
//
// Forward: a thread per (sample n, vertex p); a block's 256 vertices belong to one sample,
// whose J x 12 transforms are staged in shared memory (read from global memory / L1 when they
// exceed 48 KB). The blended 3 x 4 matrix stays in registers; zero weights are skipped (dense
// SMPL rows have at most ~4 non-zeros of 24). Bytes: vertices and output once (24 B per vertex
// and sample in float32), the weights from L2: at batch 4096 x 6,890 vertices ~680 MB, ~0.2 ms
// at 3.35 TB/s (H100); the blend's ~12 (K + 1) FMAs per vertex are far below the FP32 peak.
//
// Backward, no float atomics; every reduction is a partial sum over a split fixed by the
// shapes (split_count, never the device) followed by a fixed-order sum:
//   joint side (grad_rotations, grad_translations): a block per (sample, vertex range); the
//     range is walked in tiles of kTile vertices whose grad_out and vertices are staged in
//     shared memory; thread unit (j, r) sums, in vertex order, W[p, j] g[p, r] [v_p; 1] (4
//     columns) over the tile (sparse rows: the weights whose index is j) and adds the sums to
//     the block's own [J, 12] partial in the workspace; joint_finalize_kernel sums the
//     partials of each sample in range order and writes R's and t's gradients.
//   weight gradients: a thread per (p, k) and sample range: g . (a_j [v; 1]) summed over the
//     range's samples in order; sum_partials_kernel adds the ranges in order.
//   vertex gradients: a thread per (p, sample) writing M_R^T g (per-sample vertices), or per
//     (p, sample range) summing it (a shared mesh), then sum_partials_kernel.
#include "linear_blend_skinning_kernels.cuh"

#include "linear_blend_skinning_math.h"

#include <skelops/cuda_launch.cuh>
#include <skelops/cuda_scalar.cuh>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace skelops::linear_blend_skinning {
namespace {

using namespace skelops::cuda;

constexpr int kThreads = 256;
constexpr int kTile = 256;                 // vertices staged per step of the joint-side kernel
constexpr int64_t kTargetBlocks = 1024;    // enough blocks for ~4 waves on 132 SMs
constexpr int64_t kMinSamplesPerSplit = 16;

__device__ __forceinline__ double to_acc(double v) { return v; }
__device__ __forceinline__ float to_acc(float v) { return v; }
__device__ __forceinline__ float to_acc(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename out_t, typename acc_t>
__device__ __forceinline__ out_t from_acc(acc_t v) {
  if constexpr (std::is_same_v<out_t, acc_t>) {
    return v;
  } else {
    return from_float<out_t>(v);
  }
}

__host__ __device__ __forceinline__ int64_t align_bytes(int64_t bytes) {
  return (bytes + 255) / 256 * 256;
}

// The backward's splits and workspace layout, the same on host and device.
struct Plan {
  int64_t weight_blocks, weight_splits, samples_per_weight_split;
  int64_t vertex_blocks, vertex_splits, samples_per_vertex_split;
  int64_t joint_splits, vertices_per_joint_split;
  int64_t weight_offset, vertex_offset, joint_offset, bytes;
};

template <typename acc_t>
Plan make_plan(const Dims& d, Wanted wanted) {
  Plan plan{};
  plan.weight_blocks = ceil_div(d.P * d.K, kThreads);
  plan.weight_splits = split_count(plan.weight_blocks, kTargetBlocks, d.N, kMinSamplesPerSplit);
  plan.samples_per_weight_split = ceil_div(d.N, plan.weight_splits);
  plan.vertex_blocks = ceil_div(d.P, kThreads);
  plan.vertex_splits = split_count(plan.vertex_blocks, kTargetBlocks, d.N, kMinSamplesPerSplit);
  plan.samples_per_vertex_split = ceil_div(d.N, plan.vertex_splits);
  const int64_t joint_splits = split_count(d.N, kTargetBlocks, d.P, kTile);
  plan.vertices_per_joint_split = ceil_div(ceil_div(d.P, joint_splits), kTile) * kTile;
  plan.joint_splits = ceil_div(d.P, plan.vertices_per_joint_split);
  const int64_t acc = static_cast<int64_t>(sizeof(acc_t));
  int64_t offset = 0;
  plan.weight_offset = offset;
  if (wanted.weights) offset += align_bytes(plan.weight_splits * d.P * d.K * acc);
  plan.vertex_offset = offset;
  if (wanted.vertices && d.shared_vertices) {
    offset += align_bytes(plan.vertex_splits * d.P * 3 * acc);
  }
  plan.joint_offset = offset;
  if (wanted.rotations || wanted.translations) {
    offset += align_bytes(d.N * plan.joint_splits * d.J * kTransform * acc);
  }
  plan.bytes = offset;
  return plan;
}

// ---------------------------------------------------------------------------------------------
// Forward
// ---------------------------------------------------------------------------------------------

template <typename scalar_t, typename acc_t, bool kDense, bool kStaged>
__global__ void __launch_bounds__(kThreads)
    forward_kernel(const scalar_t* __restrict__ vertices, const acc_t* __restrict__ weights,
                   const int32_t* __restrict__ indices, const acc_t* __restrict__ transforms,
                   Dims d, int64_t blocks_per_sample, scalar_t* __restrict__ out) {
  extern __shared__ __align__(16) unsigned char smem[];
  const int64_t n = blockIdx.x / blocks_per_sample;
  const int64_t p = (blockIdx.x % blocks_per_sample) * kThreads + threadIdx.x;
  const acc_t* a = transforms + n * d.J * kTransform;
  if constexpr (kStaged) {
    acc_t* staged = reinterpret_cast<acc_t*>(smem);
    for (int64_t i = threadIdx.x; i < d.J * kTransform; i += kThreads) staged[i] = a[i];
    __syncthreads();
    a = staged;
  }
  if (p >= d.P) return;
  acc_t m[kTransform] = {};
  for (int64_t k = 0; k < d.K; ++k) {
    const acc_t w = weights[p * d.K + k];
    if (w == acc_t(0)) continue;
    const int64_t j = kDense ? k : indices[p * d.K + k];
    add_weighted_transform(m, w, a + j * kTransform);
  }
  const scalar_t* v = vertices + ((d.shared_vertices ? 0 : n) * d.P + p) * 3;
  acc_t y[3];
  apply_transform(m, to_acc(v[0]), to_acc(v[1]), to_acc(v[2]), y);
  scalar_t* o = out + (n * d.P + p) * 3;
  for (int c = 0; c < 3; ++c) o[c] = from_acc<scalar_t>(y[c]);
}

// ---------------------------------------------------------------------------------------------
// Backward
// ---------------------------------------------------------------------------------------------

// Block (n, s) of the joint side: partial[n, s, j, 4 r + c] = sum over its vertices p of
// W[p, j] g[n, p, r] [v_p; 1][c]. Thread unit (j, r) owns 4 entries of the partial.
template <typename scalar_t, typename acc_t, bool kDense>
__global__ void __launch_bounds__(kThreads)
    joint_partial_kernel(const scalar_t* __restrict__ grad_out,
                         const scalar_t* __restrict__ vertices, const acc_t* __restrict__ weights,
                         const int32_t* __restrict__ indices, Dims d, int64_t splits,
                         int64_t vertices_per_split, acc_t* __restrict__ partial) {
  __shared__ acc_t tile_g[kTile * 3];
  __shared__ acc_t tile_v[kTile * 3];
  const int64_t n = blockIdx.x / splits, s = blockIdx.x % splits;
  const int64_t p_begin = s * vertices_per_split;
  const int64_t p_end = min64(d.P, p_begin + vertices_per_split);
  acc_t* block_partial = partial + blockIdx.x * d.J * kTransform;
  const int64_t units = d.J * 3;
  for (int64_t u = threadIdx.x; u < units; u += blockDim.x) {
    for (int c = 0; c < 4; ++c) block_partial[u * 4 + c] = acc_t(0);
  }
  const scalar_t* g_n = grad_out + n * d.P * 3;
  const scalar_t* v_n = vertices + (d.shared_vertices ? 0 : n) * d.P * 3;
  for (int64_t p0 = p_begin; p0 < p_end; p0 += kTile) {
    const int64_t count = min64(kTile, p_end - p0);
    __syncthreads();  // the previous tile is consumed
    for (int64_t i = threadIdx.x; i < count * 3; i += blockDim.x) {
      tile_g[i] = to_acc(g_n[p0 * 3 + i]);
      tile_v[i] = to_acc(v_n[p0 * 3 + i]);
    }
    __syncthreads();
    for (int64_t u = threadIdx.x; u < units; u += blockDim.x) {
      const int64_t j = u / 3;
      const int r = static_cast<int>(u % 3);
      acc_t sum[4] = {};
      for (int64_t q = 0; q < count; ++q) {
        const int64_t p = p0 + q;
        acc_t w = 0;
        if constexpr (kDense) {
          w = weights[p * d.J + j];
        } else {
          for (int64_t k = 0; k < d.K; ++k) {
            if (indices[p * d.K + k] == j) w += weights[p * d.K + k];
          }
        }
        if (w == acc_t(0)) continue;
        const acc_t wg = w * tile_g[q * 3 + r];
        sum[0] += wg * tile_v[q * 3];
        sum[1] += wg * tile_v[q * 3 + 1];
        sum[2] += wg * tile_v[q * 3 + 2];
        sum[3] += wg;
      }
      for (int c = 0; c < 4; ++c) block_partial[u * 4 + c] += sum[c];
    }
  }
}

// grad_rotations[n, j, r, c] / grad_translations[n, j, r] from the partials of sample n,
// summed in split order; a thread per (n, j, entry).
template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads)
    joint_finalize_kernel(const acc_t* __restrict__ partial, Dims d, int64_t splits,
                          scalar_t* __restrict__ grad_rotations,
                          scalar_t* __restrict__ grad_translations) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  const int64_t per_sample = d.J * kTransform;
  if (i >= d.N * per_sample) return;
  const int64_t n = i / per_sample, je = i % per_sample;
  acc_t sum = 0;
  for (int64_t s = 0; s < splits; ++s) sum += partial[(n * splits + s) * per_sample + je];
  const int64_t j = je / kTransform;
  const int e = static_cast<int>(je % kTransform), r = e / 4, c = e % 4;
  if (c < 3 && grad_rotations != nullptr) {
    grad_rotations[((n * d.J + j) * 3 + r) * 3 + c] = from_acc<scalar_t>(sum);
  }
  if (c == 3 && grad_translations != nullptr) {
    grad_translations[(n * d.J + j) * 3 + r] = from_acc<scalar_t>(sum);
  }
}

// partial[s, p, k] = sum over the samples n of split s of g[n, p] . (a[n, j_pk] [v_p; 1]);
// a thread per (p, k) and split.
template <typename scalar_t, typename acc_t, bool kDense>
__global__ void __launch_bounds__(kThreads)
    weight_partial_kernel(const scalar_t* __restrict__ grad_out,
                          const scalar_t* __restrict__ vertices,
                          const int32_t* __restrict__ indices,
                          const acc_t* __restrict__ transforms, Dims d, int64_t item_blocks,
                          int64_t samples_per_split, acc_t* __restrict__ partial) {
  const int64_t s = blockIdx.x / item_blocks;
  const int64_t i = (blockIdx.x % item_blocks) * kThreads + threadIdx.x;
  if (i >= d.P * d.K) return;
  const int64_t p = i / d.K;
  const int64_t j = kDense ? i % d.K : indices[i];
  const int64_t n_end = min64(d.N, (s + 1) * samples_per_split);
  acc_t sum = 0;
  for (int64_t n = s * samples_per_split; n < n_end; ++n) {
    const scalar_t* g = grad_out + (n * d.P + p) * 3;
    const scalar_t* v = vertices + ((d.shared_vertices ? 0 : n) * d.P + p) * 3;
    sum += transformed_dot(transforms + (n * d.J + j) * kTransform, to_acc(v[0]), to_acc(v[1]),
                           to_acc(v[2]), to_acc(g[0]), to_acc(g[1]), to_acc(g[2]));
  }
  partial[s * d.P * d.K + i] = sum;
}

// out[s, p] = sum over the samples n of split s of M_R[n, p]^T g[n, p]; per-sample vertices
// use one sample per split and write grad_vertices directly (out_t = scalar_t).
template <typename scalar_t, typename acc_t, typename out_t, bool kDense>
__global__ void __launch_bounds__(kThreads)
    vertex_grad_kernel(const scalar_t* __restrict__ grad_out, const acc_t* __restrict__ weights,
                       const int32_t* __restrict__ indices, const acc_t* __restrict__ transforms,
                       Dims d, int64_t vertex_blocks, int64_t samples_per_split,
                       out_t* __restrict__ out) {
  const int64_t s = blockIdx.x / vertex_blocks;
  const int64_t p = (blockIdx.x % vertex_blocks) * kThreads + threadIdx.x;
  if (p >= d.P) return;
  const int64_t n_end = min64(d.N, (s + 1) * samples_per_split);
  acc_t gv[3] = {};
  for (int64_t n = s * samples_per_split; n < n_end; ++n) {
    const scalar_t* g = grad_out + (n * d.P + p) * 3;
    const acc_t g0 = to_acc(g[0]), g1 = to_acc(g[1]), g2 = to_acc(g[2]);
    const acc_t* a = transforms + n * d.J * kTransform;
    for (int64_t k = 0; k < d.K; ++k) {
      const acc_t w = weights[p * d.K + k];
      if (w == acc_t(0)) continue;
      const int64_t j = kDense ? k : indices[p * d.K + k];
      add_rotation_transpose(gv, w, a + j * kTransform, g0, g1, g2);
    }
  }
  for (int c = 0; c < 3; ++c) out[(s * d.P + p) * 3 + c] = from_acc<out_t>(gv[c]);
}

// out[i] = sum_s partial[s, i] in split order.
template <typename acc_t, typename out_t>
__global__ void __launch_bounds__(kThreads)
    sum_partials_kernel(const acc_t* __restrict__ partial, int64_t splits, int64_t count,
                        out_t* __restrict__ out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (i >= count) return;
  acc_t sum = 0;
  for (int64_t s = 0; s < splits; ++s) sum += partial[s * count + i];
  out[i] = from_acc<out_t>(sum);
}

template <typename T>
T* at_offset(void* base, int64_t offset) {
  return reinterpret_cast<T*>(static_cast<unsigned char*>(base) + offset);
}

template <typename scalar_t, typename acc_t, bool kDense>
cudaError_t backward_impl(const scalar_t* grad_out, const scalar_t* vertices, const acc_t* weights,
                          const int32_t* indices, const acc_t* transforms, const Dims& d,
                          void* workspace, scalar_t* grad_vertices, scalar_t* grad_weights,
                          scalar_t* grad_rotations, scalar_t* grad_translations,
                          cudaStream_t stream) {
  const Wanted wanted{grad_vertices != nullptr, grad_weights != nullptr,
                      grad_rotations != nullptr, grad_translations != nullptr};
  const Plan plan = make_plan<acc_t>(d, wanted);
  cudaError_t err = cudaSuccess;
  if (wanted.weights) {
    acc_t* partial = at_offset<acc_t>(workspace, plan.weight_offset);
    err = launch_with_smem(weight_partial_kernel<scalar_t, acc_t, kDense>,
                           plan.weight_splits * plan.weight_blocks, kThreads, 0, stream, grad_out,
                           vertices, indices, transforms, d, plan.weight_blocks,
                           plan.samples_per_weight_split, partial);
    if (err != cudaSuccess) return err;
    err = launch_with_smem(sum_partials_kernel<acc_t, scalar_t>, plan.weight_blocks, kThreads, 0,
                           stream, partial, plan.weight_splits, d.P * d.K, grad_weights);
    if (err != cudaSuccess) return err;
  }
  if (wanted.vertices && d.shared_vertices) {
    acc_t* partial = at_offset<acc_t>(workspace, plan.vertex_offset);
    err = launch_with_smem(vertex_grad_kernel<scalar_t, acc_t, acc_t, kDense>,
                           plan.vertex_splits * plan.vertex_blocks, kThreads, 0, stream, grad_out,
                           weights, indices, transforms, d, plan.vertex_blocks,
                           plan.samples_per_vertex_split, partial);
    if (err != cudaSuccess) return err;
    err = launch_with_smem(sum_partials_kernel<acc_t, scalar_t>, ceil_div(d.P * 3, kThreads),
                           kThreads, 0, stream, partial, plan.vertex_splits, d.P * 3,
                           grad_vertices);
    if (err != cudaSuccess) return err;
  } else if (wanted.vertices) {
    err = launch_with_smem(vertex_grad_kernel<scalar_t, acc_t, scalar_t, kDense>,
                           d.N * plan.vertex_blocks, kThreads, 0, stream, grad_out, weights,
                           indices, transforms, d, plan.vertex_blocks, int64_t{1}, grad_vertices);
    if (err != cudaSuccess) return err;
  }
  if (wanted.rotations || wanted.translations) {
    acc_t* partial = at_offset<acc_t>(workspace, plan.joint_offset);
    // A thread per unit (j, r), whole warps, at most kThreads (units beyond loop).
    const int64_t unit_threads = std::max<int64_t>(32, ceil_div(d.J * 3, 32) * 32);
    const int threads = static_cast<int>(std::min<int64_t>(kThreads, unit_threads));
    err = launch_with_smem(joint_partial_kernel<scalar_t, acc_t, kDense>,
                           d.N * plan.joint_splits, threads, 0, stream, grad_out, vertices,
                           weights, indices, d, plan.joint_splits, plan.vertices_per_joint_split,
                           partial);
    if (err != cudaSuccess) return err;
    err = launch_with_smem(joint_finalize_kernel<scalar_t, acc_t>,
                           ceil_div(d.N * d.J * kTransform, kThreads), kThreads, 0, stream,
                           partial, d, plan.joint_splits, grad_rotations, grad_translations);
    if (err != cudaSuccess) return err;
  }
  return cudaSuccess;
}

template <typename scalar_t, typename acc_t, bool kDense>
cudaError_t forward_impl(const scalar_t* vertices, const acc_t* weights, const int32_t* indices,
                         const acc_t* transforms, const Dims& d, scalar_t* out,
                         cudaStream_t stream) {
  const int64_t blocks_per_sample = ceil_div(d.P, kThreads);
  const int64_t staged_bytes = d.J * kTransform * static_cast<int64_t>(sizeof(acc_t));
  if (staged_bytes <= kSmemDefault) {
    return launch_with_smem(forward_kernel<scalar_t, acc_t, kDense, true>,
                            d.N * blocks_per_sample, kThreads, static_cast<size_t>(staged_bytes),
                            stream, vertices, weights, indices, transforms, d, blocks_per_sample,
                            out);
  }
  return launch_with_smem(forward_kernel<scalar_t, acc_t, kDense, false>, d.N * blocks_per_sample,
                          kThreads, 0, stream, vertices, weights, indices, transforms, d,
                          blocks_per_sample, out);
}

}  // namespace

template <typename acc_t>
int64_t backward_workspace_bytes(const Dims& dims, Wanted wanted) {
  return make_plan<acc_t>(dims, wanted).bytes;
}

template <typename scalar_t, typename acc_t>
cudaError_t launch_linear_blend_skinning_forward(const scalar_t* vertices, const acc_t* weights,
                                                 const int32_t* indices, const acc_t* transforms,
                                                 Dims dims, scalar_t* out, cudaStream_t stream) {
  if (dims.dense) {
    return forward_impl<scalar_t, acc_t, true>(vertices, weights, indices, transforms, dims, out,
                                               stream);
  }
  return forward_impl<scalar_t, acc_t, false>(vertices, weights, indices, transforms, dims, out,
                                              stream);
}

template <typename scalar_t, typename acc_t>
cudaError_t launch_linear_blend_skinning_backward(
    const scalar_t* grad_out, const scalar_t* vertices, const acc_t* weights,
    const int32_t* indices, const acc_t* transforms, Dims dims, void* workspace,
    scalar_t* grad_vertices, scalar_t* grad_weights, scalar_t* grad_rotations,
    scalar_t* grad_translations, cudaStream_t stream) {
  if (dims.dense) {
    return backward_impl<scalar_t, acc_t, true>(grad_out, vertices, weights, indices, transforms,
                                                dims, workspace, grad_vertices, grad_weights,
                                                grad_rotations, grad_translations, stream);
  }
  return backward_impl<scalar_t, acc_t, false>(grad_out, vertices, weights, indices, transforms,
                                               dims, workspace, grad_vertices, grad_weights,
                                               grad_rotations, grad_translations, stream);
}

#define SKELOPS_LBS_INSTANTIATE(scalar_t, acc_t)                                                 \
  template cudaError_t launch_linear_blend_skinning_forward<scalar_t, acc_t>(                    \
      const scalar_t*, const acc_t*, const int32_t*, const acc_t*, Dims, scalar_t*,              \
      cudaStream_t);                                                                             \
  template cudaError_t launch_linear_blend_skinning_backward<scalar_t, acc_t>(                   \
      const scalar_t*, const scalar_t*, const acc_t*, const int32_t*, const acc_t*, Dims, void*, \
      scalar_t*, scalar_t*, scalar_t*, scalar_t*, cudaStream_t);

SKELOPS_LBS_INSTANTIATE(float, float)
SKELOPS_LBS_INSTANTIATE(__half, float)
SKELOPS_LBS_INSTANTIATE(__nv_bfloat16, float)
SKELOPS_LBS_INSTANTIATE(double, double)

template int64_t backward_workspace_bytes<float>(const Dims&, Wanted);
template int64_t backward_workspace_bytes<double>(const Dims&, Wanted);

}  // namespace skelops::linear_blend_skinning
