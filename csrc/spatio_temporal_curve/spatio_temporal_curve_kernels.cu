// CUDA kernels of skelops::spatio_temporal_curve and its backward (torch-free; launchers
// declared in spatio_temporal_curve_kernels.cuh). Deterministic: every output element has one
// writer and sums run in a fixed order (no atomics).
//
// Forward:
//   transitions_kernel, one block per (sample n, frame pair t, tile of source joints): the
//     tile's scores s_t(u, w) accumulate in shared memory over chunks of key channels (both
//     frames' chunks staged in shared memory), then one warp per row reduces it over the
//     candidates to (next joint, log-probability, log-normaliser). Scores never reach global
//     memory.
//   curve_forward_kernel, one thread per (n, group of 8 channels, t, v): walks the curve
//     (reading next_joint / log_prob, L1-resident) once for its 8 channels and gathers
//     y = sum_i pi_i x[t + i, p_i] in fp32 registers.
// Backward (g = grad_out):
//   curve_table_kernel: the curve of every (n, t, v) into a [N, T, V, L + 1] table (p_i, pi_i).
//   arrival_{count,scan,fill}_kernel: for every (n, t', w) the table entries (t, v, i) with
//     t + i = t', p_i = w, in (i, v) order: a counting sort into per-sample lists, so that the
//     scatters of the backward become gathers.
//   grad_x_kernel, one thread per (n, group of 8 channels, t', w):
//     dx[c, t', w] = sum over arrivals of pi_i g[c, t, v].
//   through_kernel, one thread per (n, t, v): h_i = sum_c g[c, t, v] x[c, t + i, p_i] (steps
//     in chunks of 8 held in registers, one pass over C per chunk), G_i = sum_{i' >= i} pi_i' h_i'.
//   log_prob_grad_kernel, one thread per (n, t', u): R = sum of G_{i+1} over arrivals (t, v, i)
//     whose curve steps on from (t', u).
//   key_grad_kernel, one block per (n, frame t, tile of joints): recomputes the scores of
//     transitions t (rows = the tile) and t - 1 (columns = the tile) as in the forward, turns them
//     into dS = scale * R (1[w = next] - softmax) on the candidates, and gathers
//     dkey[:, t, j] = sum_w dS_t[j, w] key[:, t + 1, w] + sum_u key[:, t - 1, u] dS_{t-1}[u, j].
//     Each transition's scores are recomputed by the two frames it touches.
#include "spatio_temporal_curve_kernels.cuh"

#include "spatio_temporal_curve_math.h"

#include <skelops/cuda_scalar.cuh>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>

namespace skelops::spatio_temporal_curve {
namespace {

using namespace skelops::cuda;

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kChannelsPerThread = 8;
constexpr int kStepChunk = 8;                   // curve steps whose h_i one pass over C sums
constexpr int64_t kSmemFloats = 12 * 1024;      // 48 KB: no opt-in needed
constexpr int64_t kMaxGrid = int64_t{1} << 20;  // grid-stride kernels: enough to fill any GPU
constexpr int kMaxDepth = 64;                   // key channels staged per chunk

__device__ __forceinline__ bool is_candidate(const bool* candidates, int64_t V, int64_t u,
                                             int64_t w) {
  return candidates == nullptr || candidates[u * V + w];
}

__device__ __forceinline__ int32_t clamp_joint(int32_t joint, int64_t V) {
  return joint < 0 ? 0 : (joint >= V ? static_cast<int32_t>(V - 1) : joint);
}

__device__ __forceinline__ int64_t thread_index() {
  return static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
}

__device__ __forceinline__ int64_t grid_stride() {
  return static_cast<int64_t>(gridDim.x) * kThreads;
}

// Rows of score tiles: `rows` source (or target) joints against all V, and `depth` key channels
// staged per chunk, sized so that the kernel's shared memory stays within kSmemFloats.
struct ScoreTiling {
  int rows, depth;
  int64_t row_tiles;
};

// score_tiles: [rows, V] float tiles the kernel keeps; full_frames: key frames staged in full
// ([depth, V]) next to the [depth, rows] chunk of the tile's own frame.
ScoreTiling score_tiling(const Dims& d, int score_tiles, int full_frames) {
  ScoreTiling g{};
  g.rows = static_cast<int>(std::min<int64_t>(d.V, std::max<int64_t>(1, 2048 / d.V)));
  const int64_t fixed = score_tiles * g.rows * d.V;
  const int64_t per_channel = g.rows + full_frames * d.V;
  g.depth = static_cast<int>(std::clamp<int64_t>((kSmemFloats - fixed) / per_channel, 1,
                                                 std::min<int64_t>(d.D, kMaxDepth)));
  g.row_tiles = ceil_div(d.V, g.rows);
  return g;
}

int64_t score_smem_floats(const ScoreTiling& g, const Dims& d, int score_tiles, int full_frames) {
  return score_tiles * g.rows * d.V + g.depth * (g.rows + full_frames * d.V);
}

unsigned grid_1d(int64_t count) {
  return static_cast<unsigned>(std::clamp<int64_t>(ceil_div(count, kThreads), 1, kMaxGrid));
}

// ---------------------------------------------------------------------------------------------
// Forward
// ---------------------------------------------------------------------------------------------

// dst[dd * V + w] = key_n[d0 + dd, frame, w] for dd < depth_here, w < V.
template <typename scalar_t>
__device__ void stage_frame(float* dst, const scalar_t* __restrict__ key_n, FrameStrides ks,
                            int64_t d0, int depth_here, int64_t frame, int64_t V) {
  for (int64_t e = threadIdx.x; e < depth_here * V; e += kThreads) {
    const int64_t dd = e / V, w = e % V;
    dst[e] = to_float(key_n[(d0 + dd) * ks.c + frame * ks.t + w * ks.v]);
  }
}

// dst[dd * rows + r] = key_n[d0 + dd, frame, j0 + r] for dd < depth_here, r < rows.
template <typename scalar_t>
__device__ void stage_tile(float* dst, const scalar_t* __restrict__ key_n, FrameStrides ks,
                           int64_t d0, int depth_here, int64_t frame, int64_t j0, int rows) {
  for (int64_t e = threadIdx.x; e < depth_here * rows; e += kThreads) {
    const int64_t dd = e / rows, r = e % rows;
    dst[e] = to_float(key_n[(d0 + dd) * ks.c + frame * ks.t + (j0 + r) * ks.v]);
  }
}

template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    transitions_kernel(const scalar_t* __restrict__ key, FrameStrides ks,
                       const bool* __restrict__ candidates, float scale, Dims d, ScoreTiling g,
                       int32_t* __restrict__ next, float* __restrict__ log_prob,
                       float* __restrict__ log_normalizer) {
  extern __shared__ float4 smem_vec[];
  const int64_t V = d.V, P = d.T - 1;
  int64_t b = blockIdx.x;
  const int64_t u0 = (b % g.row_tiles) * g.rows;
  b /= g.row_tiles;
  const int64_t t = b % P;
  const int64_t n = b / P;
  const int rows = static_cast<int>(min64(g.rows, V - u0));
  float* const s_s = reinterpret_cast<float*>(smem_vec);  // [rows, V] scores (unscaled)
  float* const a_s = s_s + g.rows * V;                      // [depth, rows]: frame t, tile
  float* const b_s = a_s + g.depth * g.rows;                // [depth, V]: frame t + 1
  const int64_t cells = rows * V;
  const scalar_t* const key_n = key + n * ks.n;

  for (int64_t e = threadIdx.x; e < cells; e += kThreads) s_s[e] = 0.f;
  for (int64_t d0 = 0; d0 < d.D; d0 += g.depth) {
    const int depth_here = static_cast<int>(min64(g.depth, d.D - d0));
    stage_tile(a_s, key_n, ks, d0, depth_here, t, u0, rows);
    stage_frame(b_s, key_n, ks, d0, depth_here, t + 1, V);
    __syncthreads();
    for (int64_t e = threadIdx.x; e < cells; e += kThreads) {
      const int64_t r = e / V, w = e % V;
      float acc = s_s[e];
      for (int dd = 0; dd < depth_here; ++dd) acc = fmaf(a_s[dd * rows + r], b_s[dd * V + w], acc);
      s_s[e] = acc;
    }
    __syncthreads();  // a_s / b_s are restaged by the next chunk; s_s is read below
  }

  // One warp per row: the argmax (ties to the lowest joint: `better` is a total order, so the
  // butterfly leaves every lane with the same winner), then the sum of exp(s - max).
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int r = warp; r < rows; r += kWarps) {
    const int64_t u = u0 + r;
    const float* const s_row = s_s + r * V;
    RowBest<float> best{-INFINITY, INT_MAX};
    for (int64_t w = lane; w < V; w += 32) {
      if (!is_candidate(candidates, V, u, w)) continue;
      const RowBest<float> here{scale * s_row[w], static_cast<int32_t>(w)};
      if (better(here, best)) best = here;
    }
    for (int offset = 16; offset > 0; offset /= 2) {
      const RowBest<float> other{__shfl_xor_sync(0xffffffffu, best.score, offset),
                                 __shfl_xor_sync(0xffffffffu, best.joint, offset)};
      if (better(other, best)) best = other;
    }
    float sum = 0.f;
    for (int64_t w = lane; w < V; w += 32) {
      if (is_candidate(candidates, V, u, w)) sum += exp_acc(scale * s_row[w] - best.score);
    }
    for (int offset = 16; offset > 0; offset /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, offset);
    if (lane == 0) {
      // A row without candidates (the glue rejects them) keeps an in-range joint and NaNs.
      const bool found = best.joint < V;
      const float log_sum = log_acc(sum);
      const int64_t o = (n * P + t) * V + u;
      next[o] = found ? best.joint : static_cast<int32_t>(u);
      log_prob[o] = found ? -log_sum : NAN;  // s(u, next) - (max + log sum), max = s(u, next)
      log_normalizer[o] = found ? best.score + log_sum : NAN;
    }
  }
}

template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    curve_forward_kernel(const scalar_t* __restrict__ x, FrameStrides xs,
                         const int32_t* __restrict__ next, const float* __restrict__ log_prob,
                         Dims d, scalar_t* __restrict__ y) {
  const int64_t V = d.V, T = d.T, P = T - 1;
  const int64_t groups = ceil_div(d.C, kChannelsPerThread);
  const int64_t total = d.N * groups * T * V;
  for (int64_t idx = thread_index(); idx < total; idx += grid_stride()) {
    const int64_t v = idx % V;
    int64_t rest = idx / V;
    const int64_t t = rest % T;
    rest /= T;
    const int64_t c0 = (rest % groups) * kChannelsPerThread;
    const int64_t n = rest / groups;
    const int channels = static_cast<int>(min64(kChannelsPerThread, d.C - c0));
    const scalar_t* const x_c = x + n * xs.n + c0 * xs.c;
    float acc[kChannelsPerThread];
#pragma unroll
    for (int k = 0; k < kChannelsPerThread; ++k) {
      acc[k] = k < channels ? to_float(x_c[k * xs.c + t * xs.t + v * xs.v]) : 0.f;
    }
    const int64_t steps = curve_steps(d.steps, T, t);
    int32_t joint = static_cast<int32_t>(v);
    float log_weight = 0.f;
    for (int64_t i = 1; i <= steps; ++i) {
      // next_joint comes from transitions_kernel: always a joint.
      curve_step(next + n * P * V, log_prob + n * P * V, V, t + i - 1, &joint, &log_weight);
      const float weight = exp_acc(log_weight);
      const scalar_t* const x_at = x_c + (t + i) * xs.t + joint * xs.v;
#pragma unroll
      for (int k = 0; k < kChannelsPerThread; ++k) {
        if (k < channels) acc[k] = fmaf(weight, to_float(x_at[k * xs.c]), acc[k]);
      }
    }
    scalar_t* const y_c = y + ((n * d.C + c0) * T + t) * V + v;
#pragma unroll
    for (int k = 0; k < kChannelsPerThread; ++k) {
      if (k < channels) y_c[k * T * V] = from_float<scalar_t>(acc[k]);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Backward: curve table and arrivals
// ---------------------------------------------------------------------------------------------

__global__ void __launch_bounds__(kThreads)
    curve_table_kernel(const int32_t* __restrict__ next, const float* __restrict__ log_prob,
                       Dims d, int32_t* __restrict__ joints, float* __restrict__ weights) {
  const int64_t V = d.V, T = d.T, P = T - 1, L1 = d.steps + 1;
  const int64_t total = d.N * T * V;
  for (int64_t idx = thread_index(); idx < total; idx += grid_stride()) {
    const int64_t v = idx % V, t = idx / V % T, n = idx / (V * T);
    const int64_t steps = curve_steps(d.steps, T, t);
    int32_t* const pj = joints + idx * L1;
    float* const pw = weights + idx * L1;
    int32_t joint = static_cast<int32_t>(v);
    float log_weight = 0.f;
    pj[0] = joint;
    pw[0] = 1.f;
    for (int64_t i = 1; i <= steps; ++i) {
      curve_step(next + n * P * V, log_prob + n * P * V, V, t + i - 1, &joint, &log_weight);
      joint = clamp_joint(joint, V);
      pj[i] = joint;
      pw[i] = exp_acc(log_weight);
    }
  }
}

// The table entries e = (t, v, i) of sample n arriving at (t', w): t = t' - i, p_i = w, for
// i <= min(steps, t') (every such i is within the curve: t + i = t' <= T - 1), in (i, v) order;
// f(e) is called for each.
template <typename F>
__device__ __forceinline__ void for_each_arrival(const int32_t* __restrict__ joints_n,
                                                 const Dims& d, int64_t t_to, int64_t w, F&& f) {
  const int64_t V = d.V, L1 = d.steps + 1;
  const int64_t last = min64(d.steps, t_to);
  for (int64_t i = 0; i <= last; ++i) {
    for (int64_t v = 0; v < V; ++v) {
      const int64_t e = ((t_to - i) * V + v) * L1 + i;
      if (joints_n[e] == w) f(static_cast<int32_t>(e));
    }
  }
}

// offsets[n, 1 + t' * V + w] = number of arrivals at (t', w).
__global__ void __launch_bounds__(kThreads)
    arrival_count_kernel(const int32_t* __restrict__ joints, Dims d,
                         int32_t* __restrict__ offsets) {
  const int64_t TV = d.T * d.V, table = TV * (d.steps + 1);
  const int64_t total = d.N * TV;
  for (int64_t idx = thread_index(); idx < total; idx += grid_stride()) {
    const int64_t q = idx % TV, n = idx / TV;
    int32_t count = 0;
    for_each_arrival(joints + n * table, d, q / d.V, q % d.V, [&](int32_t) { ++count; });
    offsets[n * (TV + 1) + 1 + q] = count;
  }
}

// One block per sample: the counts become exclusive offsets (offsets[n, 0] = 0), in place.
__global__ void __launch_bounds__(kThreads)
    arrival_scan_kernel(Dims d, int32_t* __restrict__ offsets) {
  __shared__ int32_t partial[kThreads];
  const int64_t TV = d.T * d.V;
  int32_t* const off = offsets + static_cast<int64_t>(blockIdx.x) * (TV + 1);
  if (threadIdx.x == 0) off[0] = 0;
  int32_t carry = 0;
  for (int64_t base = 0; base < TV; base += kThreads) {
    const int64_t i = base + threadIdx.x;
    partial[threadIdx.x] = i < TV ? off[1 + i] : 0;
    __syncthreads();
    for (int stride = 1; stride < kThreads; stride *= 2) {  // inclusive Hillis-Steele scan
      const int32_t add = threadIdx.x >= stride ? partial[threadIdx.x - stride] : 0;
      __syncthreads();
      partial[threadIdx.x] += add;
      __syncthreads();
    }
    if (i < TV) off[1 + i] = carry + partial[threadIdx.x];
    carry += partial[kThreads - 1];
    __syncthreads();  // partial is rewritten by the next chunk
  }
}

__global__ void __launch_bounds__(kThreads)
    arrival_fill_kernel(const int32_t* __restrict__ joints, const int32_t* __restrict__ offsets,
                        Dims d, int32_t* __restrict__ arrivals) {
  const int64_t TV = d.T * d.V, table = TV * (d.steps + 1);
  const int64_t total = d.N * TV;
  for (int64_t idx = thread_index(); idx < total; idx += grid_stride()) {
    const int64_t q = idx % TV, n = idx / TV;
    int32_t* const out = arrivals + n * table;
    int32_t position = offsets[n * (TV + 1) + q];
    for_each_arrival(joints + n * table, d, q / d.V, q % d.V,
                     [&](int32_t e) { out[position++] = e; });
  }
}

// ---------------------------------------------------------------------------------------------
// Backward: gradients
// ---------------------------------------------------------------------------------------------

template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    grad_x_kernel(const scalar_t* __restrict__ g, FrameStrides gs,
                  const float* __restrict__ weights, const int32_t* __restrict__ offsets,
                  const int32_t* __restrict__ arrivals, Dims d, scalar_t* __restrict__ grad_x) {
  const int64_t V = d.V, T = d.T, TV = T * V, L1 = d.steps + 1, table = TV * L1;
  const int64_t groups = ceil_div(d.C, kChannelsPerThread);
  const int64_t total = d.N * groups * TV;
  for (int64_t idx = thread_index(); idx < total; idx += grid_stride()) {
    const int64_t q = idx % TV;
    int64_t rest = idx / TV;
    const int64_t c0 = (rest % groups) * kChannelsPerThread;
    const int64_t n = rest / groups;
    const int channels = static_cast<int>(min64(kChannelsPerThread, d.C - c0));
    const int32_t* const off = offsets + n * (TV + 1);
    const int32_t* const arrivals_n = arrivals + n * table;
    const float* const weights_n = weights + n * table;
    const scalar_t* const g_c = g + n * gs.n + c0 * gs.c;
    float acc[kChannelsPerThread];
#pragma unroll
    for (int k = 0; k < kChannelsPerThread; ++k) acc[k] = 0.f;
    for (int32_t a = off[q]; a < off[q + 1]; ++a) {
      const int32_t e = arrivals_n[a];
      const int64_t tv = e / L1;
      const float weight = weights_n[e];
      const scalar_t* const g_at = g_c + (tv / V) * gs.t + (tv % V) * gs.v;
#pragma unroll
      for (int k = 0; k < kChannelsPerThread; ++k) {
        if (k < channels) acc[k] = fmaf(weight, to_float(g_at[k * gs.c]), acc[k]);
      }
    }
    scalar_t* const out = grad_x + (n * d.C + c0) * TV + q;
#pragma unroll
    for (int k = 0; k < kChannelsPerThread; ++k) {
      if (k < channels) out[k * TV] = from_float<scalar_t>(acc[k]);
    }
  }
}

// through[n, t, v, i] = G_i for 1 <= i <= steps(t), t < T - 1.
template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    through_kernel(const scalar_t* __restrict__ g, FrameStrides gs, const scalar_t* __restrict__ x,
                   FrameStrides xs, const int32_t* __restrict__ joints,
                   const float* __restrict__ weights, Dims d, float* __restrict__ through) {
  const int64_t V = d.V, T = d.T, P = T - 1, L1 = d.steps + 1;
  const int64_t total = d.N * P * V;
  for (int64_t idx = thread_index(); idx < total; idx += grid_stride()) {
    const int64_t v = idx % V, t = idx / V % P, n = idx / (V * P);
    const int64_t steps = curve_steps(d.steps, T, t);
    const int64_t e0 = ((n * T + t) * V + v) * L1;
    const scalar_t* const g_at = g + n * gs.n + t * gs.t + v * gs.v;
    const scalar_t* const x_n = x + n * xs.n;
    for (int64_t i0 = 1; i0 <= steps; i0 += kStepChunk) {
      const int count = static_cast<int>(min64(kStepChunk, steps - i0 + 1));
      int64_t at[kStepChunk];
      float h[kStepChunk];
#pragma unroll
      for (int k = 0; k < kStepChunk; ++k) {
        h[k] = 0.f;
        at[k] = k < count ? (t + i0 + k) * xs.t + joints[e0 + i0 + k] * xs.v : 0;
      }
      for (int64_t c = 0; c < d.C; ++c) {
        const float gv = to_float(g_at[c * gs.c]);
        const scalar_t* const x_c = x_n + c * xs.c;
#pragma unroll
        for (int k = 0; k < kStepChunk; ++k) {
          if (k < count) h[k] = fmaf(gv, to_float(x_c[at[k]]), h[k]);
        }
      }
#pragma unroll
      for (int k = 0; k < kStepChunk; ++k) {
        if (k < count) through[e0 + i0 + k] = weights[e0 + i0 + k] * h[k];
      }
    }
    float sum = 0.f;  // suffix sums: G_i = sum_{i' >= i} pi_i' h_i'
    for (int64_t i = steps; i >= 1; --i) {
      sum += through[e0 + i];
      through[e0 + i] = sum;
    }
  }
}

// R[n, t', u] = sum of G_{i+1} over the arrivals (t, v, i) at (t', u) whose curve takes step
// i + 1 (which leaves (t', u)).
__global__ void __launch_bounds__(kThreads)
    log_prob_grad_kernel(const float* __restrict__ through, const int32_t* __restrict__ offsets,
                         const int32_t* __restrict__ arrivals, Dims d, float* __restrict__ r) {
  const int64_t V = d.V, T = d.T, P = T - 1, TV = T * V, L1 = d.steps + 1, table = TV * L1;
  const int64_t total = d.N * P * V;
  for (int64_t idx = thread_index(); idx < total; idx += grid_stride()) {
    const int64_t q = idx % (P * V), n = idx / (P * V);  // q = t' * V + u with t' < T - 1
    const int32_t* const off = offsets + n * (TV + 1);
    const int32_t* const arrivals_n = arrivals + n * table;
    const float* const through_n = through + n * table;
    float sum = 0.f;
    for (int32_t a = off[q]; a < off[q + 1]; ++a) {
      const int32_t e = arrivals_n[a];
      const int64_t i = e % L1, t = e / L1 / V;
      if (i + 1 <= curve_steps(d.steps, T, t)) sum += through_n[e + 1];
    }
    r[n * P * V + q] = sum;
  }
}

template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    key_grad_kernel(const scalar_t* __restrict__ key, FrameStrides ks,
                    const bool* __restrict__ candidates, const int32_t* __restrict__ next,
                    const float* __restrict__ log_normalizer, const float* __restrict__ r,
                    float scale, Dims d, ScoreTiling g, scalar_t* __restrict__ grad_key) {
  extern __shared__ float4 smem_vec[];
  const int64_t V = d.V, T = d.T, P = T - 1;
  int64_t b = blockIdx.x;
  const int64_t j0 = (b % g.row_tiles) * g.rows;
  b /= g.row_tiles;
  const int64_t t = b % T;
  const int64_t n = b / T;
  const int rows = static_cast<int>(min64(g.rows, V - j0));
  const bool source = t < P;  // frame t leaves along transition t ...
  const bool target = t > 0;  // ... and is reached along transition t - 1
  float* const ds_out = reinterpret_cast<float*>(smem_vec);  // [rows, V]: transition t
  float* const ds_in = ds_out + g.rows * V;                    // [V, rows]: transition t - 1
  float* const here_s = ds_in + g.rows * V;                    // [depth, rows]: frame t, tile
  float* const after_s = here_s + g.depth * g.rows;            // [depth, V]: frame t + 1
  float* const before_s = after_s + g.depth * V;               // [depth, V]: frame t - 1
  const int64_t cells = rows * V;
  const scalar_t* const key_n = key + n * ks.n;

  for (int64_t e = threadIdx.x; e < cells; e += kThreads) {
    ds_out[e] = 0.f;
    ds_in[e] = 0.f;
  }
  for (int64_t d0 = 0; d0 < d.D; d0 += g.depth) {
    const int depth_here = static_cast<int>(min64(g.depth, d.D - d0));
    stage_tile(here_s, key_n, ks, d0, depth_here, t, j0, rows);
    if (source) stage_frame(after_s, key_n, ks, d0, depth_here, t + 1, V);
    if (target) stage_frame(before_s, key_n, ks, d0, depth_here, t - 1, V);
    __syncthreads();
    for (int64_t e = threadIdx.x; e < cells; e += kThreads) {
      if (source) {  // ds_out[r, w]: s_t(j0 + r, w)
        const int64_t rr = e / V, w = e % V;
        float acc = ds_out[e];
        for (int dd = 0; dd < depth_here; ++dd) {
          acc = fmaf(here_s[dd * rows + rr], after_s[dd * V + w], acc);
        }
        ds_out[e] = acc;
      }
      if (target) {  // ds_in[u, r]: s_{t-1}(u, j0 + r)
        const int64_t u = e / rows, rr = e % rows;
        float acc = ds_in[e];
        for (int dd = 0; dd < depth_here; ++dd) {
          acc = fmaf(before_s[dd * V + u], here_s[dd * rows + rr], acc);
        }
        ds_in[e] = acc;
      }
    }
    __syncthreads();  // the staged chunks are rewritten by the next one
  }

  for (int64_t e = threadIdx.x; e < cells; e += kThreads) {
    if (source) {
      const int64_t u = j0 + e / V, w = e % V;
      const int64_t o = (n * P + t) * V + u;
      ds_out[e] = is_candidate(candidates, V, u, w)
                      ? scale * score_grad(r[o], w == next[o], scale * ds_out[e], log_normalizer[o])
                      : 0.f;
    }
    if (target) {
      const int64_t u = e / rows, w = j0 + e % rows;
      const int64_t o = (n * P + t - 1) * V + u;
      ds_in[e] = is_candidate(candidates, V, u, w)
                     ? scale * score_grad(r[o], w == next[o], scale * ds_in[e], log_normalizer[o])
                     : 0.f;
    }
  }
  __syncthreads();

  for (int64_t d0 = 0; d0 < d.D; d0 += g.depth) {
    const int depth_here = static_cast<int>(min64(g.depth, d.D - d0));
    if (source) stage_frame(after_s, key_n, ks, d0, depth_here, t + 1, V);
    if (target) stage_frame(before_s, key_n, ks, d0, depth_here, t - 1, V);
    __syncthreads();
    for (int64_t e = threadIdx.x; e < depth_here * rows; e += kThreads) {
      const int64_t dd = e / rows, rr = e % rows;
      float acc = 0.f;
      if (source) {
        for (int64_t w = 0; w < V; ++w) acc = fmaf(ds_out[rr * V + w], after_s[dd * V + w], acc);
      }
      if (target) {
        for (int64_t u = 0; u < V; ++u) acc = fmaf(before_s[dd * V + u], ds_in[u * rows + rr], acc);
      }
      grad_key[((n * d.D + d0 + dd) * T + t) * V + j0 + rr] = from_float<scalar_t>(acc);
    }
    __syncthreads();
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Launchers
// ---------------------------------------------------------------------------------------------

template <typename scalar_t>
cudaError_t launch_spatio_temporal_curve_forward(const scalar_t* x, FrameStrides x_strides,
                                                 const scalar_t* key, FrameStrides key_strides,
                                                 const bool* candidates, float scale, Dims dims,
                                                 scalar_t* y, int32_t* next_joint,
                                                 float* log_prob, float* log_normalizer,
                                                 cudaStream_t stream) {
  if (dims.V > kMaxCudaJoints) return cudaErrorInvalidValue;
  const ScoreTiling g = score_tiling(dims, 1, 1);
  const int64_t smem_floats = score_smem_floats(g, dims, 1, 1);
  const int64_t blocks = dims.N * (dims.T - 1) * g.row_tiles;
  if (smem_floats > kSmemFloats || blocks > INT_MAX) return cudaErrorInvalidConfiguration;
  transitions_kernel<scalar_t>
      <<<static_cast<unsigned>(blocks), kThreads, sizeof(float) * smem_floats, stream>>>(
          key, key_strides, candidates, scale, dims, g, next_joint, log_prob, log_normalizer);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  const int64_t threads = dims.N * ceil_div(dims.C, kChannelsPerThread) * dims.T * dims.V;
  curve_forward_kernel<scalar_t><<<grid_1d(threads), kThreads, 0, stream>>>(
      x, x_strides, next_joint, log_prob, dims, y);
  return cudaGetLastError();
}

template <typename scalar_t>
cudaError_t launch_spatio_temporal_curve_backward(
    const scalar_t* grad_out, FrameStrides grad_out_strides, const scalar_t* x,
    FrameStrides x_strides, const scalar_t* key, FrameStrides key_strides, const bool* candidates,
    const int32_t* next_joint, const float* log_prob, const float* log_normalizer, float scale,
    Dims dims, BackwardWorkspace ws, scalar_t* grad_x, scalar_t* grad_key, cudaStream_t stream) {
  if (dims.V > kMaxCudaJoints) return cudaErrorInvalidValue;
  if (grad_x == nullptr && grad_key == nullptr) return cudaSuccess;
  const int64_t TV = dims.T * dims.V, P = dims.T - 1;
  if (dims.N > INT_MAX) return cudaErrorInvalidConfiguration;
  curve_table_kernel<<<grid_1d(dims.N * TV), kThreads, 0, stream>>>(next_joint, log_prob, dims,
                                                                     ws.joints, ws.weights);
  arrival_count_kernel<<<grid_1d(dims.N * TV), kThreads, 0, stream>>>(ws.joints, dims,
                                                                       ws.arrival_offsets);
  arrival_scan_kernel<<<static_cast<unsigned>(dims.N), kThreads, 0, stream>>>(
      dims, ws.arrival_offsets);
  arrival_fill_kernel<<<grid_1d(dims.N * TV), kThreads, 0, stream>>>(
      ws.joints, ws.arrival_offsets, dims, ws.arrivals);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  if (grad_x != nullptr) {
    const int64_t threads = dims.N * ceil_div(dims.C, kChannelsPerThread) * TV;
    grad_x_kernel<scalar_t><<<grid_1d(threads), kThreads, 0, stream>>>(
        grad_out, grad_out_strides, ws.weights, ws.arrival_offsets, ws.arrivals, dims, grad_x);
    err = cudaGetLastError();
    if (err != cudaSuccess) return err;
  }
  if (grad_key != nullptr) {
    through_kernel<scalar_t><<<grid_1d(dims.N * P * dims.V), kThreads, 0, stream>>>(
        grad_out, grad_out_strides, x, x_strides, ws.joints, ws.weights, dims, ws.through);
    log_prob_grad_kernel<<<grid_1d(dims.N * P * dims.V), kThreads, 0, stream>>>(
        ws.through, ws.arrival_offsets, ws.arrivals, dims, ws.log_prob_grad);
    err = cudaGetLastError();
    if (err != cudaSuccess) return err;
    const ScoreTiling g = score_tiling(dims, 2, 2);
    const int64_t smem_floats = score_smem_floats(g, dims, 2, 2);
    const int64_t blocks = dims.N * dims.T * g.row_tiles;
    if (smem_floats > kSmemFloats || blocks > INT_MAX) return cudaErrorInvalidConfiguration;
    key_grad_kernel<scalar_t>
        <<<static_cast<unsigned>(blocks), kThreads, sizeof(float) * smem_floats, stream>>>(
            key, key_strides, candidates, next_joint, log_normalizer, ws.log_prob_grad, scale,
            dims, g, grad_key);
    err = cudaGetLastError();
  }
  return err;
}

#define SKELOPS_INSTANTIATE_STC(scalar_t)                                                       \
  template cudaError_t launch_spatio_temporal_curve_forward<scalar_t>(                          \
      const scalar_t*, FrameStrides, const scalar_t*, FrameStrides, const bool*, float, Dims,   \
      scalar_t*, int32_t*, float*, float*, cudaStream_t);                                       \
  template cudaError_t launch_spatio_temporal_curve_backward<scalar_t>(                         \
      const scalar_t*, FrameStrides, const scalar_t*, FrameStrides, const scalar_t*,            \
      FrameStrides, const bool*, const int32_t*, const float*, const float*, float, Dims,       \
      BackwardWorkspace, scalar_t*, scalar_t*, cudaStream_t);

SKELOPS_INSTANTIATE_STC(float)
SKELOPS_INSTANTIATE_STC(__half)
SKELOPS_INSTANTIATE_STC(__nv_bfloat16)

#undef SKELOPS_INSTANTIATE_STC

}  // namespace skelops::spatio_temporal_curve
