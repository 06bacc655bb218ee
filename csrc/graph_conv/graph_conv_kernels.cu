// CUDA kernels of skelops::graph_conv and skelops::graph_conv_backward (torch-free; launchers
// declared in graph_conv_kernels.cuh).
//
// Convention: x[n, c, t, v], weight[k, o, c], adjacency[k, v, w] (or [n, k, v, w]) carries source
// joint v to target joint w:
//   y[n, o, t, w] = sum_k sum_c weight[k, o, c] Z[n, k, c, t, w] + bias term,
//   Z[n, k, c, t, w] = sum_v x[n, c, t, v] A[k, v, w]                 ("aggregate first").
//
// Floor (forward), P = N * T * V positions:
//   FLOPs = 2 * P * K * C_in * (C_out + V)   (aggregation V x V per channel, then the 1x1 mix);
//   bytes = (C_in + C_out) * P * sizeof(scalar) + weights (K * C_out * C_in, K * V * V: small).
//   ST-GCN layer N=64, C_in=C_out=64, T=300, V=25, K=3: 16.4 GFLOP vs 246 MB in fp32, i.e.
//   67 FLOP/byte, above an H100's FP32 ridge (~67 TFLOP/s / 3.35 TB/s = 20 FLOP/byte): the
//   kernels are compute bound, so they keep every operand in shared memory / registers and
//   read x and write y exactly once (no K x C_out x T x V intermediate in global memory).
// The backward needs the same count three times: d x = the forward with W^T and A^T,
//   d W = dY . (x A)^T and d A = x^T . (W^T dY), each 2 * P * K * C_in * (C_out + V) FLOPs
//   (C_in and C_out swapped for d x).
//
// What the kernels do on top of the floor: the forward recomputes Z once per tile of TO output
// channels (factor ceil(C_out / TO) on the aggregation term, 1 for C_out <= 128 at V = 25 with
// the chosen tiles); d W recomputes Z per tile of output channels; d A recomputes W^T dY per
// tile of target joints w (one tile for V <= 64). All arithmetic is FP32 FMA on CUDA cores.
#include "graph_conv_kernels.cuh"

#include "graph_conv_math.h"

#include <skelops/cuda_launch.cuh>
#include <skelops/cuda_scalar.cuh>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>

namespace skelops::graph_conv {
namespace {

using namespace skelops::cuda;

constexpr int kThreads = 256;
// Register micro-tiles: the forward's thread owns 8 output channels x 4 positions (32 FMAs per
// 2 float4 + 4 scalar shared loads); the reductions' threads own 4 x 4 outputs.
constexpr int kForwardRows = 8;
constexpr int kMicro = 4;
// Opt-in ceiling: keeps two blocks per SM on sm_90 (227 KB) and one on sm_80 (163 KB).
constexpr int kSmemBudget = 96 * 1024;
// Blocks assumed resident per SM in the tile-choice cost model (256 threads, ~100 registers).
constexpr int kBlocksPerSm = 2;

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------

__host__ __device__ __forceinline__ int min_int(int a, int b) { return a < b ? a : b; }
__host__ __device__ __forceinline__ int round_up4(int a) { return (a + 3) / 4 * 4; }

// Row stride (floats) of a staged [.., joints] tile: a multiple of 4 for float4 loads, and not a
// multiple of 32, so that rows of different frames read by one warp fall in different banks.
int padded_row(int joints) {
  const int row = round_up4(joints);
  return row % 32 == 0 ? row + 4 : row;
}

// ---------------------------------------------------------------------------------------------
// Block-wide building blocks (all kThreads threads call them; no __syncthreads inside)
// ---------------------------------------------------------------------------------------------

// x_s[c, tl, vl] (row stride `row`) = x_n[c0 + c, t0 + tl, v0 + vl] for c < channels,
// tl < frames, vl < row; zero outside the tensor and for vl >= valid_joints, so that padded
// channels, frames and joints add nothing and never read garbage.
template <typename scalar_t>
__device__ void stage_frames(float* x_s, const scalar_t* __restrict__ x_n, FrameStrides s,
                             int64_t c0, int64_t C, int64_t t0, int64_t T, int64_t v0,
                             int valid_joints, int channels, int frames, int row) {
  const int total = channels * frames * row;
  for (int e = threadIdx.x; e < total; e += kThreads) {
    const int vl = e % row;
    const int r = e / row;
    const int tl = r % frames;
    const int c = r / frames;
    float value = 0.f;
    if (vl < valid_joints && c0 + c < C && t0 + tl < T) {
      value = to_float(x_n[(c0 + c) * s.c + (t0 + tl) * s.t + (v0 + vl) * s.v]);
    }
    x_s[e] = value;
  }
}

// a_s[vl, wl] (row stride cols) = A_k[v0 + vl, w0 + wl], zero beyond valid_rows / valid_cols.
template <typename scalar_t>
__device__ void stage_adjacency(float* a_s, const scalar_t* __restrict__ a_k, int64_t sv,
                                int64_t sw, int64_t v0, int valid_rows, int rows, int64_t w0,
                                int valid_cols, int cols) {
  const int total = rows * cols;
  for (int e = threadIdx.x; e < total; e += kThreads) {
    const int wl = e % cols;
    const int vl = e / cols;
    float value = 0.f;
    if (vl < valid_rows && wl < valid_cols) {
      value = to_float(a_k[(v0 + vl) * sv + (w0 + wl) * sw]);
    }
    a_s[e] = value;
  }
}

// Aggregation over source joints of one staged joint chunk:
//   z[c * zc + p * zp] (+)= sum_vl x_s[c, tl, vl] a_s[vl, wl],  p = tl * joints + wl,
// for c < channels (a multiple of 4) and p < positions. Positions outside the valid frames /
// joints get 0 (so a GEMM over all positions adds nothing for them). A thread owns 4 channels
// of one position: one a_s column value feeds 4 FMAs, and x_s is read as float4 along v (a warp
// covers ~2 frames, so those loads are near-broadcasts).
__device__ void aggregate_joints(const float* x_s, const float* a_s, float* z, int zc, int zp,
                                 int positions, int channels, int frames, int joints, int x_row,
                                 int rows4, int frames_here, int joints_here, bool accumulate) {
  const int items = channels / 4 * positions;
  const int x_channel = frames * x_row;
  for (int e = threadIdx.x; e < items; e += kThreads) {
    const int group = e / positions;
    const int p = e % positions;
    const int tl = p / joints;
    const int wl = p % joints;
    float sum[4] = {0.f, 0.f, 0.f, 0.f};
    if (tl < frames_here && wl < joints_here) {
      const float* xr = x_s + (group * 4 * frames + tl) * x_row;
      for (int vl = 0; vl < rows4; vl += 4) {
        const float a0 = a_s[vl * joints + wl];
        const float a1 = a_s[(vl + 1) * joints + wl];
        const float a2 = a_s[(vl + 2) * joints + wl];
        const float a3 = a_s[(vl + 3) * joints + wl];
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const float4 xv = load4(xr + i * x_channel + vl);
          sum[i] = fmaf(xv.x, a0, sum[i]);
          sum[i] = fmaf(xv.y, a1, sum[i]);
          sum[i] = fmaf(xv.z, a2, sum[i]);
          sum[i] = fmaf(xv.w, a3, sum[i]);
        }
      }
    }
    float* out = z + group * 4 * zc + p * zp;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      out[i * zc] = accumulate ? out[i * zc] + sum[i] : sum[i];
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Forward (also d x)
// ---------------------------------------------------------------------------------------------

// One block: sample n, TT frames x WT target joints (P = 4 * threads_p position slots, p =
// tl * WT + wl), TO = 8 * threads_o output channels. Loop over chunks of CC input channels and
// over k: Z_k[c, p] for the chunk is built in shared memory, then acc[o, p] += W_k[o, c] Z_k[c, p]
// in registers. Shared memory (floats): w_s [CC][TO], z_s [CC][P], x_s [CC][TT][x_row],
// a_s [VC4][WT]. x_s is staged once per chunk and reused for every k when all V source joints fit
// one chunk (joints_chunk == V); larger V is processed in chunks of VC joints accumulated in z_s.
struct ForwardTiling {
  int threads_o, threads_p;
  int frames, joints, channels, joints_chunk, x_row;
  int64_t o_tiles, w_tiles, t_tiles;
};

int64_t forward_smem_floats(const ForwardTiling& g) {
  const int64_t to = kForwardRows * g.threads_o, positions = kMicro * g.threads_p;
  return g.channels * (to + positions + static_cast<int64_t>(g.frames) * g.x_row) +
         static_cast<int64_t>(round_up4(g.joints_chunk)) * g.joints;
}

// kBranched: sum the aggregation over br.count > 1 branches (compiled apart so that graph_conv's
// own kernel keeps its registers).
template <typename scalar_t, bool kBranched>
__global__ void __launch_bounds__(kThreads)
    forward_kernel(const scalar_t* __restrict__ x, FrameStrides xs,
                   const scalar_t* __restrict__ weight, WeightStrides ws,
                   const scalar_t* __restrict__ adjacency, AdjacencyStrides as,
                   const float* __restrict__ bias_map, int64_t bias_map_stride,
                   scalar_t* __restrict__ y, Dims d, ForwardTiling g, Branches br) {
  extern __shared__ float4 smem_vec[];
  const int TO = kForwardRows * g.threads_o;
  const int P = kMicro * g.threads_p;
  const int CC = g.channels, TT = g.frames, WT = g.joints;
  const int rows4_max = round_up4(g.joints_chunk);
  float* const w_s = reinterpret_cast<float*>(smem_vec);
  float* const z_s = w_s + CC * TO;
  float* const x_s = z_s + CC * P;
  float* const a_s = x_s + CC * TT * g.x_row;

  int64_t b = blockIdx.x;
  const int64_t o_tile = b % g.o_tiles;
  b /= g.o_tiles;
  const int64_t w_tile = b % g.w_tiles;
  b /= g.w_tiles;
  const int64_t t_tile = b % g.t_tiles;
  const int64_t n = b / g.t_tiles;
  const int64_t o0 = o_tile * TO, w0 = w_tile * WT, t0 = t_tile * TT;
  const int frames_here = static_cast<int>(min64(TT, d.T - t0));
  const int joints_here = static_cast<int>(min64(WT, d.V - w0));
  const scalar_t* const x_n = x + n * xs.n;
  const scalar_t* const a_n = adjacency + n * as.n;
  const int64_t branches = kBranched ? br.count : 1;
  // The staged x chunk serves every k when it is the whole of x's joints (and branches).
  const bool stage_once = g.joints_chunk >= d.V && !kBranched;

  const int to = threadIdx.x / g.threads_p;
  const int tp = threadIdx.x % g.threads_p;
  float acc[kForwardRows][kMicro];
#pragma unroll
  for (int i = 0; i < kForwardRows; ++i) {
#pragma unroll
    for (int j = 0; j < kMicro; ++j) acc[i][j] = 0.f;
  }

  for (int64_t c0 = 0; c0 < d.C_in; c0 += CC) {
    for (int64_t k = 0; k < d.K; ++k) {
      // w_s[c, o] = W[k, o0 + o, c0 + c]; c runs fastest to read W's rows coalesced.
      for (int e = threadIdx.x; e < CC * TO; e += kThreads) {
        const int c = e % CC;
        const int o = e / CC;
        float value = 0.f;
        if (c0 + c < d.C_in && o0 + o < d.C_out) {
          value = to_float(weight[k * ws.k + (o0 + o) * ws.o + (c0 + c) * ws.c]);
        }
        w_s[c * TO + o] = value;
      }
      for (int64_t branch = 0; branch < branches; ++branch) {
        for (int64_t v0 = 0; v0 < d.V; v0 += g.joints_chunk) {
          const int vc = static_cast<int>(min64(g.joints_chunk, d.V - v0));
          if (k == 0 || !stage_once) {
            stage_frames(x_s, x_n + branch * br.x_offset, xs, c0, d.C_in, t0, d.T, v0, vc, CC,
                         TT, g.x_row);
          }
          stage_adjacency(a_s, a_n + branch * br.adjacency_offset + k * as.k, as.v, as.w, v0, vc,
                          rows4_max, w0, joints_here, WT);
          __syncthreads();
          aggregate_joints(x_s, a_s, z_s, P, 1, P, CC, TT, WT, g.x_row, round_up4(vc),
                           frames_here, joints_here, branch > 0 || v0 > 0);
          __syncthreads();
        }
      }
#pragma unroll 4
      for (int c = 0; c < CC; ++c) {
        const float4 wa = load4(w_s + c * TO + to * kForwardRows);
        const float4 wb = load4(w_s + c * TO + to * kForwardRows + 4);
        const float wv[kForwardRows] = {wa.x, wa.y, wa.z, wa.w, wb.x, wb.y, wb.z, wb.w};
        float zv[kMicro];
#pragma unroll
        for (int j = 0; j < kMicro; ++j) zv[j] = z_s[c * P + tp + j * g.threads_p];
#pragma unroll
        for (int i = 0; i < kForwardRows; ++i) {
#pragma unroll
          for (int j = 0; j < kMicro; ++j) acc[i][j] = fmaf(wv[i], zv[j], acc[i][j]);
        }
      }
      __syncthreads();  // w_s and z_s are rewritten by the next k / chunk
    }
  }

  const float* const bias_n = bias_map != nullptr ? bias_map + n * bias_map_stride : nullptr;
#pragma unroll
  for (int i = 0; i < kForwardRows; ++i) {
    const int64_t o = o0 + to * kForwardRows + i;
    if (o >= d.C_out) continue;
    scalar_t* const y_o = y + (n * d.C_out + o) * d.T * d.V;
#pragma unroll
    for (int j = 0; j < kMicro; ++j) {
      // Consecutive threads hold consecutive positions: coalesced stores along (t, w).
      const int p = tp + j * g.threads_p;
      const int tl = p / WT;
      const int wl = p % WT;
      if (tl < frames_here && wl < joints_here) {
        float value = acc[i][j];
        if (bias_n != nullptr) value += bias_n[o * d.V + w0 + wl];
        y_o[(t0 + tl) * d.V + w0 + wl] = from_float<scalar_t>(value);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// d weight
// ---------------------------------------------------------------------------------------------

// One block: subset k, TO = 4 * threads_o output channels x TC = 4 * threads_c input channels of
// d W_k, and a segment of position tiles (n, TT frames, WT target joints) of the reduction.
// Per tile: dy_s[p, o] is staged, z_s[p, c] = (x A_k) is built as in the forward, then each of
// `lanes` thread groups reduces its share of the positions into a 4 x 4 register tile. At the end
// the lanes are summed through shared memory and each output gets one atomicAdd per block.
// Shared memory (floats): dy_s [P][TO + 4], x_s [TC][TT][x_row], a_s [VC4][WT], z_s [P][TC + 1]
// (odd row: conflict-free aggregation stores), P = TT * WT.
struct WeightGradTiling {
  int threads_o, threads_c, lanes;
  int frames, joints, joints_chunk, x_row;
  int64_t o_tiles, c_tiles, t_tiles, w_tiles, segments;
};

int64_t weight_grad_smem_floats(const WeightGradTiling& g) {
  const int64_t to = kMicro * g.threads_o, tc = kMicro * g.threads_c;
  const int64_t positions = static_cast<int64_t>(g.frames) * g.joints;
  const int64_t main = positions * (to + 4) + tc * g.frames * g.x_row +
                       static_cast<int64_t>(round_up4(g.joints_chunk)) * g.joints +
                       positions * (tc + 1);
  const int64_t lane_sums = g.lanes > 1 ? int64_t{kThreads} * kMicro * kMicro : 0;
  return std::max(main, lane_sums);
}

template <typename scalar_t, bool kBranched>
__global__ void __launch_bounds__(kThreads)
    weight_grad_kernel(const scalar_t* __restrict__ grad_out, FrameStrides gs,
                       const scalar_t* __restrict__ x, FrameStrides xs,
                       const scalar_t* __restrict__ adjacency, AdjacencyStrides as,
                       float* __restrict__ grad_weight, Dims d, WeightGradTiling g, Branches br) {
  extern __shared__ float4 smem_vec[];
  float* const smem = reinterpret_cast<float*>(smem_vec);
  const int TO = kMicro * g.threads_o, TC = kMicro * g.threads_c;
  const int TT = g.frames, WT = g.joints, P = TT * WT;
  const int dy_row = TO + 4, z_row = TC + 1;
  const int rows4_max = round_up4(g.joints_chunk);
  float* const dy_s = smem;
  float* const x_s = dy_s + P * dy_row;
  float* const a_s = x_s + TC * TT * g.x_row;
  float* const z_s = a_s + rows4_max * WT;

  int64_t b = blockIdx.x;
  const int64_t k = b % d.K;
  b /= d.K;
  const int64_t c_tile = b % g.c_tiles;
  b /= g.c_tiles;
  const int64_t o_tile = b % g.o_tiles;
  const int64_t segment = b / g.o_tiles;
  const int64_t o0 = o_tile * TO, c0 = c_tile * TC;
  const int64_t tiles = d.N * g.t_tiles * g.w_tiles;
  const int64_t tile_begin = segment * tiles / g.segments;
  const int64_t tile_end = (segment + 1) * tiles / g.segments;

  const int per_lane = g.threads_o * g.threads_c;
  const int tc = threadIdx.x % g.threads_c;
  const int to = threadIdx.x / g.threads_c % g.threads_o;
  const int lane = threadIdx.x / per_lane;
  float acc[kMicro][kMicro];
#pragma unroll
  for (int i = 0; i < kMicro; ++i) {
#pragma unroll
    for (int j = 0; j < kMicro; ++j) acc[i][j] = 0.f;
  }

  for (int64_t tile = tile_begin; tile < tile_end; ++tile) {
    const int64_t w_tile = tile % g.w_tiles;
    const int64_t t_tile = tile / g.w_tiles % g.t_tiles;
    const int64_t n = tile / (g.w_tiles * g.t_tiles);
    const int64_t t0 = t_tile * TT, w0 = w_tile * WT;
    const int frames_here = static_cast<int>(min64(TT, d.T - t0));
    const int joints_here = static_cast<int>(min64(WT, d.V - w0));
    const scalar_t* const g_n = grad_out + n * gs.n;
    const scalar_t* const x_n = x + n * xs.n;
    const scalar_t* const a_k = adjacency + n * as.n + k * as.k;

    // dy_s[p, o] = dY[n, o0 + o, t0 + tl, w0 + wl]; p runs fastest for coalesced reads.
    for (int e = threadIdx.x; e < TO * P; e += kThreads) {
      const int p = e % P;
      const int o = e / P;
      const int tl = p / WT;
      const int wl = p % WT;
      float value = 0.f;
      if (o0 + o < d.C_out && tl < frames_here && wl < joints_here) {
        value = to_float(g_n[(o0 + o) * gs.c + (t0 + tl) * gs.t + (w0 + wl) * gs.v]);
      }
      dy_s[p * dy_row + o] = value;
    }
    for (int64_t branch = 0; branch < (kBranched ? br.count : 1); ++branch) {
      for (int64_t v0 = 0; v0 < d.V; v0 += g.joints_chunk) {
        const int vc = static_cast<int>(min64(g.joints_chunk, d.V - v0));
        stage_frames(x_s, x_n + branch * br.x_offset, xs, c0, d.C_in, t0, d.T, v0, vc, TC, TT,
                     g.x_row);
        stage_adjacency(a_s, a_k + branch * br.adjacency_offset, as.v, as.w, v0, vc, rows4_max,
                        w0, joints_here, WT);
        __syncthreads();
        aggregate_joints(x_s, a_s, z_s, 1, z_row, P, TC, TT, WT, g.x_row, round_up4(vc),
                         frames_here, joints_here, branch > 0 || v0 > 0);
        __syncthreads();
      }
    }
    // The joint loop ended with a barrier, so dy_s and z_s are complete.
    for (int p = lane; p < P; p += g.lanes) {
      const float4 dy = load4(dy_s + p * dy_row + to * kMicro);
      const float dv[kMicro] = {dy.x, dy.y, dy.z, dy.w};
      float zv[kMicro];
#pragma unroll
      for (int j = 0; j < kMicro; ++j) zv[j] = z_s[p * z_row + tc + j * g.threads_c];
#pragma unroll
      for (int i = 0; i < kMicro; ++i) {
#pragma unroll
        for (int j = 0; j < kMicro; ++j) acc[i][j] = fmaf(dv[i], zv[j], acc[i][j]);
      }
    }
    __syncthreads();  // dy_s, x_s, a_s, z_s are rewritten by the next tile
  }

  if (g.lanes > 1) {
    // Lane sums through shared memory: red[r][thread], conflict-free stores and loads.
    float* const red = smem;  // aliases the tile buffers
    __syncthreads();
#pragma unroll
    for (int r = 0; r < kMicro * kMicro; ++r) red[r * kThreads + threadIdx.x] = acc[r / 4][r % 4];
    __syncthreads();
    if (lane != 0) return;
#pragma unroll
    for (int r = 0; r < kMicro * kMicro; ++r) {
      float sum = 0.f;
      for (int l = 0; l < g.lanes; ++l) sum += red[r * kThreads + l * per_lane + threadIdx.x];
      acc[r / 4][r % 4] = sum;
    }
  }
#pragma unroll
  for (int i = 0; i < kMicro; ++i) {
    const int64_t o = o0 + to * kMicro + i;
    if (o >= d.C_out) continue;
#pragma unroll
    for (int j = 0; j < kMicro; ++j) {
      const int64_t c = c0 + tc + j * g.threads_c;
      if (c < d.C_in) atomicAdd(grad_weight + (k * d.C_out + o) * d.C_in + c, acc[i][j]);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// d adjacency
// ---------------------------------------------------------------------------------------------

// One block: group g (a sample for a per-sample adjacency, else all samples), subset k, a tile of
// TV = 4 * threads_v source joints x TW = 4 * threads_w target joints of d A_k, and a segment of
// (n, TT frames) tiles of the reduction. Per tile and chunk of CC input channels:
//   G[c, tl, wl] = sum_o W[k, o, c] dY[n, o, t0 + tl, w0 + wl]   (register GEMM over chunks of
//   OC output channels, thread tile 4 channels x 4 positions, then stored to g_s),
//   acc[v, w] += sum_{c, tl} x_s[c, tl, v] g_s[c, tl, w]          (thread tile 4 v x 4 w; the
//   (c, tl) rows are split over `lanes` thread groups, summed at the end of the block).
// Shared memory (floats): wt_s [OC][CC], dy_s [OC][PG], x_s [CC * TT][x_row], g_s [CC * TT][WG],
// where PG = 4 * (kThreads / (CC / 4)) >= TT * WG and WG = min(TW, V) G positions per frame.
struct AdjacencyGradTiling {
  int threads_v, threads_w, lanes;
  int channels, out_chunk, frames, g_joints, x_row;
  int64_t v_tiles, w_tiles, t_tiles, groups, items_per_group, segments;
};

int64_t adjacency_grad_smem_floats(const AdjacencyGradTiling& g) {
  const int64_t cc = g.channels, oc = g.out_chunk;
  const int64_t pg = kMicro * (kThreads / (cc / kMicro));
  const int64_t main = oc * cc + oc * pg + cc * g.frames * g.x_row + cc * g.frames * g.g_joints;
  const int64_t lane_sums = g.lanes > 1 ? int64_t{kThreads} * kMicro * kMicro : 0;
  return std::max(main, lane_sums);
}

template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    adjacency_grad_kernel(const scalar_t* __restrict__ grad_out, FrameStrides gs,
                          const scalar_t* __restrict__ x, FrameStrides xs,
                          const scalar_t* __restrict__ weight, WeightStrides ws,
                          bool per_sample_adjacency, float* __restrict__ grad_adjacency, Dims d,
                          AdjacencyGradTiling g) {
  extern __shared__ float4 smem_vec[];
  float* const smem = reinterpret_cast<float*>(smem_vec);
  const int CC = g.channels, OC = g.out_chunk, TT = g.frames, WG = g.g_joints;
  const int threads_gp = kThreads / (CC / kMicro);
  const int PG = kMicro * threads_gp;
  const int TV = kMicro * g.threads_v;
  const int g_positions = TT * WG;
  float* const wt_s = smem;
  float* const dy_s = wt_s + OC * CC;
  float* const x_s = dy_s + OC * PG;
  float* const g_s = x_s + CC * TT * g.x_row;

  int64_t b = blockIdx.x;
  const int64_t k = b % d.K;
  b /= d.K;
  const int64_t w_tile = b % g.w_tiles;
  b /= g.w_tiles;
  const int64_t v_tile = b % g.v_tiles;
  b /= g.v_tiles;
  const int64_t segment = b % g.segments;
  const int64_t group = b / g.segments;
  const int64_t v0 = v_tile * TV, w0 = w_tile * WG;
  const int joints_here_v = static_cast<int>(min64(TV, d.V - v0));
  const int joints_here_w = static_cast<int>(min64(WG, d.V - w0));
  const int64_t item_begin = segment * g.items_per_group / g.segments;
  const int64_t item_end = (segment + 1) * g.items_per_group / g.segments;

  // G phase: thread owns channels 4 * gc .. + 3 and positions gp + j * threads_gp.
  const int gc = threadIdx.x / threads_gp;
  const int gp = threadIdx.x % threads_gp;
  // d A phase: thread owns v = 4 * tv .. + 3 and w = tw + j * threads_w; threads past the
  // last whole lane only help with the G phase.
  const int per_lane = g.threads_v * g.threads_w;
  const int tw = threadIdx.x % g.threads_w;
  const int tv = threadIdx.x / g.threads_w % g.threads_v;
  const int lane = threadIdx.x / per_lane;
  const bool has_lane = lane < g.lanes;
  int g_col[kMicro];  // clamped so that padded w columns (never stored) read inside g_s
#pragma unroll
  for (int j = 0; j < kMicro; ++j) g_col[j] = min_int(tw + j * g.threads_w, WG - 1);

  float acc[kMicro][kMicro];
#pragma unroll
  for (int i = 0; i < kMicro; ++i) {
#pragma unroll
    for (int j = 0; j < kMicro; ++j) acc[i][j] = 0.f;
  }

  for (int64_t item = item_begin; item < item_end; ++item) {
    const int64_t n = per_sample_adjacency ? group : item / g.t_tiles;
    const int64_t t0 = item % g.t_tiles * TT;
    const int frames_here = static_cast<int>(min64(TT, d.T - t0));
    const scalar_t* const g_n = grad_out + n * gs.n;
    const scalar_t* const x_n = x + n * xs.n;

    for (int64_t c0 = 0; c0 < d.C_in; c0 += CC) {
      float gacc[kMicro][kMicro];
#pragma unroll
      for (int i = 0; i < kMicro; ++i) {
#pragma unroll
        for (int j = 0; j < kMicro; ++j) gacc[i][j] = 0.f;
      }
      for (int64_t oc0 = 0; oc0 < d.C_out; oc0 += OC) {
        // wt_s[o, c] = W[k, oc0 + o, c0 + c]
        for (int e = threadIdx.x; e < OC * CC; e += kThreads) {
          const int c = e % CC;
          const int o = e / CC;
          float value = 0.f;
          if (oc0 + o < d.C_out && c0 + c < d.C_in) {
            value = to_float(weight[k * ws.k + (oc0 + o) * ws.o + (c0 + c) * ws.c]);
          }
          wt_s[e] = value;
        }
        // dy_s[o, p] = dY[n, oc0 + o, t0 + tl, w0 + wl], p = tl * WG + wl < PG
        for (int e = threadIdx.x; e < OC * PG; e += kThreads) {
          const int p = e % PG;
          const int o = e / PG;
          const int tl = p / WG;
          const int wl = p % WG;
          float value = 0.f;
          if (oc0 + o < d.C_out && tl < frames_here && wl < joints_here_w) {
            value = to_float(g_n[(oc0 + o) * gs.c + (t0 + tl) * gs.t + (w0 + wl) * gs.v]);
          }
          dy_s[e] = value;
        }
        if (oc0 == 0) {
          stage_frames(x_s, x_n, xs, c0, d.C_in, t0, d.T, v0, joints_here_v, CC, TT, g.x_row);
        }
        __syncthreads();
        for (int o = 0; o < OC; ++o) {
          const float4 wv4 = load4(wt_s + o * CC + gc * kMicro);
          const float wv[kMicro] = {wv4.x, wv4.y, wv4.z, wv4.w};
          float dv[kMicro];
#pragma unroll
          for (int j = 0; j < kMicro; ++j) dv[j] = dy_s[o * PG + gp + j * threads_gp];
#pragma unroll
          for (int i = 0; i < kMicro; ++i) {
#pragma unroll
            for (int j = 0; j < kMicro; ++j) gacc[i][j] = fmaf(wv[i], dv[j], gacc[i][j]);
          }
        }
        __syncthreads();  // wt_s and dy_s are rewritten by the next output chunk
      }
#pragma unroll
      for (int j = 0; j < kMicro; ++j) {
        const int p = gp + j * threads_gp;
        if (p < g_positions) {
#pragma unroll
          for (int i = 0; i < kMicro; ++i) g_s[(gc * kMicro + i) * g_positions + p] = gacc[i][j];
        }
      }
      __syncthreads();
      if (has_lane) {
        // Rows r = (c, tl) of x_s and g_s; padded rows hold zeros in x_s.
        for (int r = lane; r < CC * TT; r += g.lanes) {
          const float4 xv4 = load4(x_s + r * g.x_row + tv * kMicro);
          const float xv[kMicro] = {xv4.x, xv4.y, xv4.z, xv4.w};
          float gv[kMicro];
#pragma unroll
          for (int j = 0; j < kMicro; ++j) gv[j] = g_s[r * WG + g_col[j]];
#pragma unroll
          for (int i = 0; i < kMicro; ++i) {
#pragma unroll
            for (int j = 0; j < kMicro; ++j) acc[i][j] = fmaf(xv[i], gv[j], acc[i][j]);
          }
        }
      }
      __syncthreads();  // x_s and g_s are rewritten by the next chunk / item
    }
  }

  if (g.lanes > 1) {
    float* const red = smem;  // aliases the tile buffers
    __syncthreads();
    if (has_lane) {
#pragma unroll
      for (int r = 0; r < kMicro * kMicro; ++r) red[r * kThreads + threadIdx.x] = acc[r / 4][r % 4];
    }
    __syncthreads();
    if (lane != 0) return;
#pragma unroll
    for (int r = 0; r < kMicro * kMicro; ++r) {
      float sum = 0.f;
      for (int l = 0; l < g.lanes; ++l) sum += red[r * kThreads + l * per_lane + threadIdx.x];
      acc[r / 4][r % 4] = sum;
    }
  }
  if (!has_lane) return;
  float* const ga_k = grad_adjacency + (group * d.K + k) * d.V * d.V;
#pragma unroll
  for (int i = 0; i < kMicro; ++i) {
    const int vl = tv * kMicro + i;
    if (vl >= joints_here_v) continue;
#pragma unroll
    for (int j = 0; j < kMicro; ++j) {
      const int wl = tw + j * g.threads_w;
      if (wl < joints_here_w) atomicAdd(ga_k + (v0 + vl) * d.V + w0 + wl, acc[i][j]);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Bias map
// ---------------------------------------------------------------------------------------------

template <typename scalar_t>
__global__ void column_sum_kernel(const scalar_t* __restrict__ adjacency, int64_t count,
                                  int64_t K, int64_t V, float* __restrict__ column_sums) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t w = i % V;
    const int64_t k = i / V % K;
    const int64_t n = i / (V * K);
    column_sums[i] = column_sum<float>(adjacency + n * K * V * V, V, k, w);
  }
}

template <typename scalar_t>
__global__ void bias_map_kernel(const scalar_t* __restrict__ bias, bool before_aggregation,
                                const float* __restrict__ column_sums, int64_t count, int64_t K,
                                int64_t C_out, int64_t V, float* __restrict__ bias_map) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t w = i % V;
    const int64_t o = i / V % C_out;
    const int64_t n = i / (V * C_out);
    const float* const colsum_n = before_aggregation ? column_sums + n * K * V : nullptr;
    bias_map[i] = bias_map_entry<float>(bias, before_aggregation, colsum_n, K, C_out, V, o, w);
  }
}

// ---------------------------------------------------------------------------------------------
// Host side: tile choice, launches
// ---------------------------------------------------------------------------------------------

int grid_size_1d(int64_t count) {
  return static_cast<int>(std::clamp<int64_t>(ceil_div(count, kThreads), 1, 4096));
}

// Tile choice by a small cost model (in FMA-equivalents per thread-slot, times waves of
// resident blocks): the register GEMM costs 1 per FMA, the aggregation ~2.5 (it issues ~2
// shared loads per 4 FMAs), staging ~8 per element (global load, index math), a barrier ~20
// per thread. Candidates trade output-channel tile TO (less Z recompute) against positions per
// block (less padding for small C_out, more parallelism).
bool choose_forward_tiling(const Dims& d, int64_t branches, const DeviceLimits& dev,
                           ForwardTiling* best) {
  double best_cost = -1.0;
  for (int threads_o = 1; threads_o <= 16; threads_o *= 2) {
    ForwardTiling g{};
    g.threads_o = threads_o;
    g.threads_p = kThreads / threads_o;
    const int positions = kMicro * g.threads_p;
    g.joints = static_cast<int>(min64(d.V, positions));
    g.frames = d.V <= positions ? static_cast<int>(min64(d.T, positions / d.V)) : 1;
    g.channels = round_up4(static_cast<int>(min64(d.C_in, 32)));
    g.joints_chunk = static_cast<int>(min64(d.V, 4096));
    for (;;) {
      g.x_row = padded_row(g.joints_chunk);
      if (forward_smem_floats(g) * 4 <= dev.smem_budget) break;
      if (g.channels > 8) {
        g.channels -= 4;
      } else if (g.joints_chunk > 32) {
        g.joints_chunk = round_up4((g.joints_chunk + 1) / 2);
      } else if (g.frames > 1) {
        g.frames = (g.frames + 1) / 2;
      } else if (g.channels > 4) {
        g.channels = 4;
      } else if (g.joints_chunk > 4) {
        g.joints_chunk = round_up4((g.joints_chunk + 1) / 2);
      } else {
        break;
      }
    }
    if (forward_smem_floats(g) * 4 > dev.smem_budget) continue;
    const int to = kForwardRows * threads_o;
    g.o_tiles = ceil_div(d.C_out, to);
    g.w_tiles = ceil_div(d.V, g.joints);
    g.t_tiles = ceil_div(d.T, g.frames);
    const double blocks = static_cast<double>(d.N) * g.t_tiles * g.w_tiles * g.o_tiles;
    const double joint_chunks = static_cast<double>(branches * ceil_div(d.V, g.joints_chunk));
    const double cc = g.channels;
    const double v4 = 4.0 * static_cast<double>(ceil_div(d.V, 4));
    const double per_step =  // one (channel chunk, k)
        cc * to * positions + 2.5 * branches * cc * g.frames * g.joints * v4 +
        8.0 * (cc * to + joint_chunks * (cc * g.frames * g.x_row +
                                         round_up4(g.joints_chunk) * g.joints)) +
        20.0 * kThreads * (2 * joint_chunks + 1);
    const double per_block =
        static_cast<double>(d.K) * ceil_div(d.C_in, g.channels) * per_step + 8.0 * to * positions;
    const double waves = std::ceil(blocks / (static_cast<double>(dev.sm_count) * kBlocksPerSm));
    const double cost = waves * per_block;
    if (best_cost < 0 || cost < best_cost) {
      best_cost = cost;
      *best = g;
    }
  }
  return best_cost >= 0;
}

// Reduction tiles: output tiles as large as the channels allow (up to 64 x 64), positions per
// step as many as shared memory allows (fewer barriers per FMA), and enough reduction segments
// for ~4 blocks per SM; more segments would only add atomics.
bool choose_weight_grad_tiling(const Dims& d, const DeviceLimits& dev, WeightGradTiling* g) {
  g->threads_o = std::min(16, pow2_ceil(ceil_div(d.C_out, kMicro)));
  g->threads_c = std::min(16, pow2_ceil(ceil_div(d.C_in, kMicro)));
  g->lanes = kThreads / (g->threads_o * g->threads_c);
  constexpr int kMaxPositions = 256;
  g->joints = static_cast<int>(min64(d.V, kMaxPositions));
  g->frames = d.V <= kMaxPositions ? static_cast<int>(min64(d.T, kMaxPositions / d.V)) : 1;
  g->joints_chunk = static_cast<int>(min64(d.V, 4096));
  for (;;) {
    g->x_row = padded_row(g->joints_chunk);
    if (weight_grad_smem_floats(*g) * 4 <= dev.smem_budget) break;
    if (g->frames > 1) {
      g->frames = (g->frames + 1) / 2;
    } else if (g->joints_chunk > 32) {
      g->joints_chunk = round_up4((g->joints_chunk + 1) / 2);
    } else if (g->joints > 32) {
      g->joints = (g->joints + 1) / 2;
    } else if (g->joints_chunk > 4) {
      g->joints_chunk = round_up4((g->joints_chunk + 1) / 2);
    } else if (g->joints > 1) {
      g->joints = (g->joints + 1) / 2;
    } else {
      return false;
    }
  }
  g->o_tiles = ceil_div(d.C_out, kMicro * g->threads_o);
  g->c_tiles = ceil_div(d.C_in, kMicro * g->threads_c);
  g->t_tiles = ceil_div(d.T, g->frames);
  g->w_tiles = ceil_div(d.V, g->joints);
  const int64_t out_tiles = d.K * g->o_tiles * g->c_tiles;
  const int64_t tiles = d.N * g->t_tiles * g->w_tiles;
  const int64_t target_blocks = 4 * int64_t{dev.sm_count};
  g->segments = std::max<int64_t>(1, std::min(tiles, ceil_div(target_blocks, out_tiles)));
  return true;
}

bool choose_adjacency_grad_tiling(const Dims& d, bool per_sample_adjacency,
                                  const DeviceLimits& dev, AdjacencyGradTiling* g) {
  g->threads_v = static_cast<int>(min64(16, ceil_div(d.V, kMicro)));
  g->threads_w = g->threads_v;
  g->lanes = kThreads / (g->threads_v * g->threads_w);
  const int tv = kMicro * g->threads_v, tw = kMicro * g->threads_w;
  g->g_joints = static_cast<int>(min64(tw, d.V));
  g->x_row = padded_row(tv);
  g->channels = static_cast<int>(min64(32, pow2_ceil(std::max<int64_t>(d.C_in, kMicro))));
  const int pg = kMicro * (kThreads / (g->channels / kMicro));
  g->frames = static_cast<int>(min64(d.T, std::max(1, pg / g->g_joints)));
  g->out_chunk = static_cast<int>(min64(d.C_out, 32));
  while (adjacency_grad_smem_floats(*g) * 4 > dev.smem_budget) {
    if (g->out_chunk > 4) {
      g->out_chunk = (g->out_chunk + 1) / 2;
    } else if (g->frames > 1) {
      g->frames = (g->frames + 1) / 2;
    } else {
      return false;
    }
  }
  g->v_tiles = ceil_div(d.V, tv);
  g->w_tiles = ceil_div(d.V, g->g_joints);
  g->t_tiles = ceil_div(d.T, g->frames);
  g->groups = per_sample_adjacency ? d.N : 1;
  g->items_per_group = (per_sample_adjacency ? 1 : d.N) * g->t_tiles;
  const int64_t out_tiles = g->groups * d.K * g->v_tiles * g->w_tiles;
  const int64_t target_blocks = 4 * int64_t{dev.sm_count};
  g->segments =
      std::max<int64_t>(1, std::min(g->items_per_group, ceil_div(target_blocks, out_tiles)));
  return true;
}

}  // namespace

template <typename scalar_t>
cudaError_t launch_bias_map(const scalar_t* bias, bool before_aggregation,
                            const scalar_t* adjacency, int64_t Nb, int64_t K, int64_t C_out,
                            int64_t V, float* column_sums, float* bias_map, cudaStream_t stream) {
  if (before_aggregation) {
    const int64_t count = Nb * K * V;
    column_sum_kernel<scalar_t>
        <<<grid_size_1d(count), kThreads, 0, stream>>>(adjacency, count, K, V, column_sums);
    const cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) return err;
  }
  const int64_t count = Nb * C_out * V;
  bias_map_kernel<scalar_t><<<grid_size_1d(count), kThreads, 0, stream>>>(
      bias, before_aggregation, column_sums, count, K, C_out, V, bias_map);
  return cudaGetLastError();
}

template <typename scalar_t>
cudaError_t launch_graph_conv_forward(const scalar_t* x, FrameStrides x_strides,
                                      const scalar_t* weight, WeightStrides weight_strides,
                                      const scalar_t* adjacency,
                                      AdjacencyStrides adjacency_strides, const float* bias_map,
                                      int64_t bias_map_sample_stride, scalar_t* y, Dims dims,
                                      cudaStream_t stream, Branches branches) {
  if (branches.count < 1) return cudaErrorInvalidValue;
  DeviceLimits dev{};
  cudaError_t err = query_device(kSmemBudget, &dev);
  if (err != cudaSuccess) return err;
  ForwardTiling g{};
  if (!choose_forward_tiling(dims, branches.count, dev, &g)) return cudaErrorInvalidConfiguration;
  const auto kernel =
      branches.count > 1 ? forward_kernel<scalar_t, true> : forward_kernel<scalar_t, false>;
  return launch_with_smem(kernel, dims.N * g.t_tiles * g.w_tiles * g.o_tiles, kThreads,
                          sizeof(float) * forward_smem_floats(g), stream, x, x_strides, weight,
                          weight_strides, adjacency, adjacency_strides, bias_map,
                          bias_map_sample_stride, y, dims, g, branches);
}

template <typename scalar_t>
cudaError_t launch_graph_conv_weight_grad(const scalar_t* grad_out, FrameStrides grad_out_strides,
                                          const scalar_t* x, FrameStrides x_strides,
                                          const scalar_t* adjacency,
                                          AdjacencyStrides adjacency_strides, float* grad_weight,
                                          Dims dims, cudaStream_t stream, Branches branches) {
  if (branches.count < 1) return cudaErrorInvalidValue;
  cudaError_t err = cudaMemsetAsync(
      grad_weight, 0, sizeof(float) * dims.K * dims.C_out * dims.C_in, stream);
  if (err != cudaSuccess) return err;
  DeviceLimits dev{};
  err = query_device(kSmemBudget, &dev);
  if (err != cudaSuccess) return err;
  WeightGradTiling g{};
  if (!choose_weight_grad_tiling(dims, dev, &g)) return cudaErrorInvalidConfiguration;
  const auto kernel = branches.count > 1 ? weight_grad_kernel<scalar_t, true>
                                         : weight_grad_kernel<scalar_t, false>;
  return launch_with_smem(kernel, g.segments * g.o_tiles * g.c_tiles * dims.K, kThreads,
                          sizeof(float) * weight_grad_smem_floats(g), stream, grad_out,
                          grad_out_strides, x, x_strides, adjacency, adjacency_strides,
                          grad_weight, dims, g, branches);
}

template <typename scalar_t>
cudaError_t launch_graph_conv_adjacency_grad(const scalar_t* grad_out,
                                             FrameStrides grad_out_strides, const scalar_t* x,
                                             FrameStrides x_strides, const scalar_t* weight,
                                             WeightStrides weight_strides,
                                             bool per_sample_adjacency, float* grad_adjacency,
                                             Dims dims, cudaStream_t stream) {
  const int64_t groups = per_sample_adjacency ? dims.N : 1;
  cudaError_t err = cudaMemsetAsync(
      grad_adjacency, 0, sizeof(float) * groups * dims.K * dims.V * dims.V, stream);
  if (err != cudaSuccess) return err;
  DeviceLimits dev{};
  err = query_device(kSmemBudget, &dev);
  if (err != cudaSuccess) return err;
  AdjacencyGradTiling g{};
  if (!choose_adjacency_grad_tiling(dims, per_sample_adjacency, dev, &g)) {
    return cudaErrorInvalidConfiguration;
  }
  return launch_with_smem(
      adjacency_grad_kernel<scalar_t>, g.groups * g.segments * g.v_tiles * g.w_tiles * dims.K,
      kThreads, sizeof(float) * adjacency_grad_smem_floats(g), stream, grad_out, grad_out_strides,
      x, x_strides, weight, weight_strides, per_sample_adjacency, grad_adjacency, dims, g);
}

#define SKELOPS_INSTANTIATE_GRAPH_CONV(scalar_t)                                                  \
  template cudaError_t launch_bias_map<scalar_t>(const scalar_t*, bool, const scalar_t*, int64_t, \
                                                 int64_t, int64_t, int64_t, float*, float*,      \
                                                 cudaStream_t);                                   \
  template cudaError_t launch_graph_conv_forward<scalar_t>(                                       \
      const scalar_t*, FrameStrides, const scalar_t*, WeightStrides, const scalar_t*,             \
      AdjacencyStrides, const float*, int64_t, scalar_t*, Dims, cudaStream_t, Branches);          \
  template cudaError_t launch_graph_conv_weight_grad<scalar_t>(                                   \
      const scalar_t*, FrameStrides, const scalar_t*, FrameStrides, const scalar_t*,              \
      AdjacencyStrides, float*, Dims, cudaStream_t, Branches);                                    \
  template cudaError_t launch_graph_conv_adjacency_grad<scalar_t>(                                \
      const scalar_t*, FrameStrides, const scalar_t*, FrameStrides, const scalar_t*,              \
      WeightStrides, bool, float*, Dims, cudaStream_t);

SKELOPS_INSTANTIATE_GRAPH_CONV(float)
SKELOPS_INSTANTIATE_GRAPH_CONV(__half)
SKELOPS_INSTANTIATE_GRAPH_CONV(__nv_bfloat16)

#undef SKELOPS_INSTANTIATE_GRAPH_CONV

}  // namespace skelops::graph_conv
