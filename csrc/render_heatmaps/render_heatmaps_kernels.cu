// CUDA kernels of skelops::render_heatmaps and skelops::render_heatmaps_backward (torch-free;
// launchers declared in render_heatmaps_kernels.cuh, per-element math shared with the CPU loops
// in render_heatmaps_math.h).
//
// Floor. Forward: every output element is written once, N C T H W * sizeof(out): at N = 32,
// T = 48, C = 17, 64 x 64 that is 107 M elements, 428 MB in float32 (214 MB in 16 bits), ~0.13 ms
// at an H100's ~3.35 TB/s. The inputs (N T M V * 3 values) and the primitives (N T C M * 48
// bytes, 2.5 MB here) are small next to it. Compute: per element and person a box test (a few
// integer compares); ~15% of the elements (sigma = 0.6) fall in a box, where a point costs two
// exp polynomials (~40 FLOPs) and a segment one polynomial, a division and ~25 FLOPs: under 10
// GFLOP, far below the time of the writes. So the forward is a write-bandwidth kernel: one
// thread per output element, consecutive threads on consecutive addresses in both layouts.
// Backward: grad is read only inside the boxes (~15-30% of it, row runs of ~20 elements) and
// the gradients (N T M V * 3 values) are written once: bound by those reads.
//
// Kernels:
//   primitives_kernel: one thread per (n, t, c, m) builds the primitive (validity, peak, box)
//     into the [N, T, C, M] workspace, once per call, so that the per-element kernels only read
//     48 (float) / 72 (double) bytes per person, the same for a whole block (broadcast loads).
//   forward_kernel: grid (element chunks of a plane, planes); a plane is an [H, W] map (n, c, t)
//     for contiguous outputs, a frame's [H, W, C] block (n, t) for channels_last_3d ones. Each
//     thread takes the max over the M persons of the value at its element (box test first) and
//     writes it once.
//   plane_grad_kernel: one block per (n, t, c) plane; for each person m in order, the threads
//     stride over m's box, recompute the values of the persons whose boxes hold the pixel, and
//     where m is the first person attaining the pixel's maximum (and it is > 0) add the
//     pixel's contribution to their partial sums; the block reduces them (warp shuffles, then
//     the warps in order: a fixed tree) into the [N, T, C, M, 6] partials.
//   finalize_kernel: one thread per (n, t, m, v) adds its keypoint's slots of the partials in
//     channel order (a before b), as the CPU kernel does, and writes the gradients.
// No atomics: two runs give the same bits.
#include "render_heatmaps_kernels.cuh"

#include "render_heatmaps_math.h"


#include <algorithm>
#include <climits>
#include <cstdint>
#include <type_traits>

namespace skelops::render_heatmaps {
namespace {

constexpr int kForwardThreads = 256;
constexpr int kGradThreads = 128;
constexpr int kGradWarps = kGradThreads / 32;
constexpr int64_t kMaxGridY = 65535;
constexpr int64_t kMaxBlocks = int64_t{1} << 20;

template <typename out_t, typename acc_t>
__device__ __forceinline__ out_t convert_out(acc_t v) {
  if constexpr (std::is_same_v<out_t, __half>) {
    if constexpr (std::is_same_v<acc_t, double>) {
      return __double2half(v);
    } else {
      return __float2half_rn(v);
    }
  } else if constexpr (std::is_same_v<out_t, __nv_bfloat16>) {
    if constexpr (std::is_same_v<acc_t, double>) {
      return __double2bfloat16(v);
    } else {
      return __float2bfloat16_rn(v);
    }
  } else {
    return static_cast<out_t>(v);
  }
}

template <typename acc_t>
__device__ __forceinline__ acc_t load_grad(const float* p) {
  return static_cast<acc_t>(*p);
}
template <typename acc_t>
__device__ __forceinline__ acc_t load_grad(const double* p) {
  return static_cast<acc_t>(*p);
}
template <typename acc_t>
__device__ __forceinline__ acc_t load_grad(const __half* p) {
  return static_cast<acc_t>(__half2float(*p));
}
template <typename acc_t>
__device__ __forceinline__ acc_t load_grad(const __nv_bfloat16* p) {
  return static_cast<acc_t>(__bfloat162float(*p));
}

template <typename acc_t>
__global__ void primitives_kernel(const acc_t* __restrict__ keypoints,
                                  const acc_t* __restrict__ scores,
                                  const int64_t* __restrict__ limbs, Dims d, Params<acc_t> q,
                                  Primitive<acc_t>* __restrict__ prims) {
  const int64_t total = d.N * d.T * d.C * d.M;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t m = idx % d.M;
    const int64_t c = (idx / d.M) % d.C;
    const int64_t frame = idx / (d.M * d.C);
    const acc_t* k = keypoints + (frame * d.M + m) * d.V * 2;
    const acc_t* s = scores + (frame * d.M + m) * d.V;
    if (limbs == nullptr) {
      prims[idx] = make_point(k[c * 2], k[c * 2 + 1], s[c], q);
    } else {
      const int64_t a = limbs[c * 2], b = limbs[c * 2 + 1];
      prims[idx] = make_limb(k[a * 2], k[a * 2 + 1], s[a], k[b * 2], k[b * 2 + 1], s[b], q);
    }
  }
}

template <typename acc_t, typename out_t, bool kChannelsLast>
__global__ void __launch_bounds__(kForwardThreads)
    forward_kernel(const Primitive<acc_t>* __restrict__ prims, Dims d, Params<acc_t> q,
                   out_t* __restrict__ out) {
  const int32_t W = static_cast<int32_t>(d.W);
  const int32_t C = static_cast<int32_t>(d.C);
  const int32_t per_plane = static_cast<int32_t>(d.H * d.W * (kChannelsLast ? d.C : 1));
  const int32_t k = static_cast<int32_t>(blockIdx.x) * kForwardThreads + threadIdx.x;
  if (k >= per_plane) return;
  const int64_t planes = kChannelsLast ? d.N * d.T : d.N * d.C * d.T;
  for (int64_t plane = blockIdx.y; plane < planes; plane += gridDim.y) {
    int64_t prim_base;
    int32_t i, j;
    if constexpr (kChannelsLast) {
      // plane = frame n T + t; k = (i W + j) C + c.
      const int32_t pixel = k / C;
      const int32_t c = k - pixel * C;
      i = pixel / W;
      j = pixel - i * W;
      prim_base = (plane * d.C + c) * d.M;
    } else {
      // plane = (n C + c) T + t; k = i W + j.
      const int64_t t = plane % d.T;
      const int64_t nc = plane / d.T;
      const int64_t c = nc % d.C, n = nc / d.C;
      i = k / W;
      j = k - i * W;
      prim_base = ((n * d.T + t) * d.C + c) * d.M;
    }
    acc_t best = 0;
    for (int64_t m = 0; m < d.M; ++m) {
      const Primitive<acc_t>& p = prims[prim_base + m];
      if (!in_box(p, i, j)) continue;
      const acc_t v = primitive_value(p, i, j, q);
      best = v > best ? v : best;
    }
    out[plane * per_plane + k] = convert_out<out_t>(best);
  }
}

// The value, Gaussian factor and residual of a primitive at pixel (i, j), as the forward
// computes the value (render_heatmaps_math.h: primitive_value).
template <typename acc_t>
struct PixelTerms {
  acc_t value, gaussian;
  SegmentPoint<acc_t> s;  // a point: c = 0, r = p - a
};

template <typename acc_t>
__device__ __forceinline__ PixelTerms<acc_t> pixel_terms(const Primitive<acc_t>& p, int32_t i,
                                                         int32_t j, const Params<acc_t>& q) {
  PixelTerms<acc_t> out;
  const acc_t px = static_cast<acc_t>(j), py = static_cast<acc_t>(i);
  if (p.kind == kPoint) {
    const acc_t dx = px - p.ax, dy = py - p.ay;
    const acc_t ex = axis_exponent(dx, q.two_sigma2), ey = axis_exponent(dy, q.two_sigma2);
    const acc_t gx = exp_neg(ex), gy = exp_neg(ey);
    out.value = point_value(ex, ey, p.peak * gx, gy, q.window);
    out.gaussian = gy * gx;
    out.s.along = 0;
    out.s.rx = dx;
    out.s.ry = dy;
    out.s.e = 0;
  } else {
    out.s = segment_at(p, px, py, q.two_sigma2);
    out.gaussian = gaussian_of(out.s.e, q.window);
    out.value = p.peak * out.gaussian;
  }
  return out;
}

template <typename acc_t>
__device__ __forceinline__ acc_t warp_sum(acc_t v) {
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}

template <typename acc_t, typename grad_t>
__global__ void __launch_bounds__(kGradThreads)
    plane_grad_kernel(const Primitive<acc_t>* __restrict__ prims, const grad_t* __restrict__ grad,
                      GradStrides gs, Dims d, Params<acc_t> q, acc_t* __restrict__ partials) {
  __shared__ acc_t warp_sums[kGradWarps][kGradSlots];
  const int64_t planes = d.N * d.T * d.C;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (int64_t plane = blockIdx.x; plane < planes; plane += gridDim.x) {
    // plane = (n T + t) C + c, the primitives' order.
    const int64_t c = plane % d.C, frame = plane / d.C;
    const int64_t n = frame / d.T, t = frame % d.T;
    const Primitive<acc_t>* pp = prims + plane * d.M;
    const grad_t* g = grad + n * gs.n + c * gs.c + t * gs.t;
    for (int64_t m = 0; m < d.M; ++m) {
      const Primitive<acc_t> p = pp[m];
      acc_t* slots = partials + (plane * d.M + m) * kGradSlots;
      if (p.kind == kNothing) {
        if (threadIdx.x < kGradSlots) slots[threadIdx.x] = 0;
        continue;
      }
      acc_t sums[kGradSlots] = {0, 0, 0, 0, 0, 0};
      const int32_t bw = p.x1 - p.x0;
      const int32_t box = bw * (p.y1 - p.y0);
      for (int32_t k = threadIdx.x; k < box; k += kGradThreads) {
        const int32_t di = k / bw;
        const int32_t i = p.y0 + di, j = p.x0 + (k - di * bw);
        const PixelTerms<acc_t> terms = pixel_terms(p, i, j, q);
        if (!(terms.value > acc_t(0))) continue;
        // m wins the pixel if every earlier person's value is smaller and no later one's is
        // larger: the first person attaining the maximum.
        bool wins = true;
        for (int64_t o = 0; o < d.M && wins; ++o) {
          if (o == m || !in_box(pp[o], i, j)) continue;
          const acc_t other = primitive_value(pp[o], i, j, q);
          wins = o < m ? other < terms.value : !(other > terms.value);
        }
        if (!wins) continue;
        const acc_t gv = load_grad<acc_t>(g + i * gs.h + j * gs.w);
        if (p.kind == kPoint) {
          add_point_grad(gv, terms.value, terms.gaussian, terms.s.rx, terms.s.ry, sums);
        } else {
          add_segment_grad(gv, terms.value, terms.gaussian, terms.s, sums);
        }
      }
      for (int s = 0; s < kGradSlots; ++s) {
        const acc_t w = warp_sum(sums[s]);
        if (lane == 0) warp_sums[warp][s] = w;
      }
      __syncthreads();
      if (threadIdx.x == 0) {
        acc_t total[kGradSlots];
        for (int s = 0; s < kGradSlots; ++s) {
          total[s] = warp_sums[0][s];
          for (int w = 1; w < kGradWarps; ++w) total[s] += warp_sums[w][s];
        }
        acc_t finished[kGradSlots];
        finish_grad(p, total, q.inv_sigma2, finished);
        for (int s = 0; s < kGradSlots; ++s) slots[s] = finished[s];
      }
      __syncthreads();
    }
  }
}

template <typename acc_t>
__global__ void finalize_kernel(const acc_t* __restrict__ partials,
                                const int64_t* __restrict__ limbs, Dims d,
                                acc_t* __restrict__ grad_keypoints,
                                acc_t* __restrict__ grad_scores) {
  const int64_t total = d.N * d.T * d.M * d.V;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    // idx = ((n T + t) M + m) V + v, the gradients' order.
    const int64_t v = idx % d.V, m = (idx / d.V) % d.M, frame = idx / (d.V * d.M);
    acc_t gx = 0, gy = 0, gs = 0;
    if (limbs == nullptr) {
      const acc_t* s = partials + ((frame * d.C + v) * d.M + m) * kGradSlots;
      gx += s[0];
      gy += s[1];
      gs += s[4];
    } else {
      for (int64_t l = 0; l < d.C; ++l) {
        const acc_t* s = partials + ((frame * d.C + l) * d.M + m) * kGradSlots;
        if (limbs[l * 2] == v) {
          gx += s[0];
          gy += s[1];
          gs += s[4];
        }
        if (limbs[l * 2 + 1] == v) {
          gx += s[2];
          gy += s[3];
          gs += s[5];
        }
      }
    }
    if (grad_keypoints != nullptr) {
      grad_keypoints[idx * 2] = gx;
      grad_keypoints[idx * 2 + 1] = gy;
    }
    if (grad_scores != nullptr) grad_scores[idx] = gs;
  }
}

int blocks_for(int64_t work, int threads) {
  return static_cast<int>(std::min<int64_t>(std::max<int64_t>((work + threads - 1) / threads, 1),
                                            kMaxBlocks));
}

template <typename acc_t>
cudaError_t build_primitives(const acc_t* keypoints, const acc_t* scores, const int64_t* limbs,
                             const Dims& d, const Params<acc_t>& q, Primitive<acc_t>* prims,
                             cudaStream_t stream) {
  const int64_t total = d.N * d.T * d.C * d.M;
  if (total == 0) return cudaSuccess;
  primitives_kernel<acc_t><<<blocks_for(total, 256), 256, 0, stream>>>(keypoints, scores, limbs,
                                                                       d, q, prims);
  return cudaGetLastError();
}

}  // namespace

template <typename acc_t, typename out_t>
cudaError_t launch_render_heatmaps_forward(const acc_t* keypoints, const acc_t* scores,
                                           const int64_t* limbs, Dims dims, double sigma,
                                           bool pyskl_window, bool channels_last,
                                           void* workspace, out_t* out, cudaStream_t stream) {
  const int64_t per_plane = dims.H * dims.W * (channels_last ? dims.C : 1);
  const int64_t planes = channels_last ? dims.N * dims.T : dims.N * dims.C * dims.T;
  if (per_plane == 0 || planes == 0) return cudaSuccess;
  if (per_plane >= INT_MAX) return cudaErrorInvalidValue;
  const Params<acc_t> q = make_params<acc_t>(sigma, dims.H, dims.W, pyskl_window);
  auto* prims = static_cast<Primitive<acc_t>*>(workspace);
  cudaError_t err = build_primitives(keypoints, scores, limbs, dims, q, prims, stream);
  if (err != cudaSuccess) return err;
  const dim3 grid(static_cast<unsigned>((per_plane + kForwardThreads - 1) / kForwardThreads),
                  static_cast<unsigned>(std::min(planes, kMaxGridY)));
  if (channels_last) {
    forward_kernel<acc_t, out_t, true><<<grid, kForwardThreads, 0, stream>>>(prims, dims, q, out);
  } else {
    forward_kernel<acc_t, out_t, false><<<grid, kForwardThreads, 0, stream>>>(prims, dims, q, out);
  }
  return cudaGetLastError();
}

template <typename acc_t, typename grad_t>
cudaError_t launch_render_heatmaps_backward(const grad_t* grad, GradStrides grad_strides,
                                            const acc_t* keypoints, const acc_t* scores,
                                            const int64_t* limbs, Dims dims, double sigma,
                                            bool pyskl_window, void* workspace,
                                            acc_t* grad_keypoints, acc_t* grad_scores,
                                            cudaStream_t stream) {
  const int64_t outputs = dims.N * dims.T * dims.M * dims.V;
  if (outputs == 0 || (grad_keypoints == nullptr && grad_scores == nullptr)) return cudaSuccess;
  if (dims.H * dims.W >= INT_MAX) return cudaErrorInvalidValue;
  const Params<acc_t> q = make_params<acc_t>(sigma, dims.H, dims.W, pyskl_window);
  auto* prims = static_cast<Primitive<acc_t>*>(workspace);
  const int64_t prim_bytes = (forward_workspace_bytes<acc_t>(dims) + 255) / 256 * 256;
  auto* partials = reinterpret_cast<acc_t*>(static_cast<char*>(workspace) + prim_bytes);
  cudaError_t err = build_primitives(keypoints, scores, limbs, dims, q, prims, stream);
  if (err != cudaSuccess) return err;
  const int64_t planes = dims.N * dims.T * dims.C;
  if (planes > 0) {
    plane_grad_kernel<acc_t, grad_t>
        <<<static_cast<unsigned>(std::min(planes, kMaxBlocks)), kGradThreads, 0, stream>>>(
            prims, grad, grad_strides, dims, q, partials);
    err = cudaGetLastError();
    if (err != cudaSuccess) return err;
  }
  finalize_kernel<acc_t><<<blocks_for(outputs, 256), 256, 0, stream>>>(
      partials, limbs, dims, grad_keypoints, grad_scores);
  return cudaGetLastError();
}

#define SKELOPS_INSTANTIATE_RENDER_HEATMAPS(acc_t, out_t)                                       \
  template cudaError_t launch_render_heatmaps_forward<acc_t, out_t>(                            \
      const acc_t*, const acc_t*, const int64_t*, Dims, double, bool, bool, void*, out_t*,      \
      cudaStream_t);                                                                            \
  template cudaError_t launch_render_heatmaps_backward<acc_t, out_t>(                           \
      const out_t*, GradStrides, const acc_t*, const acc_t*, const int64_t*, Dims, double, bool, \
      void*, acc_t*, acc_t*, cudaStream_t);

SKELOPS_INSTANTIATE_RENDER_HEATMAPS(float, float)
SKELOPS_INSTANTIATE_RENDER_HEATMAPS(float, double)
SKELOPS_INSTANTIATE_RENDER_HEATMAPS(float, __half)
SKELOPS_INSTANTIATE_RENDER_HEATMAPS(float, __nv_bfloat16)
SKELOPS_INSTANTIATE_RENDER_HEATMAPS(double, float)
SKELOPS_INSTANTIATE_RENDER_HEATMAPS(double, double)
SKELOPS_INSTANTIATE_RENDER_HEATMAPS(double, __half)
SKELOPS_INSTANTIATE_RENDER_HEATMAPS(double, __nv_bfloat16)

#undef SKELOPS_INSTANTIATE_RENDER_HEATMAPS

}  // namespace skelops::render_heatmaps
