// CUDA kernel of skelops::multi_dilation_graph_conv's concat forward (torch-free; launcher
// declared in multi_dilation_graph_conv_kernels.cuh).
//
// Convention: x[n, c, t, v], weight[k, o, c] shared by the D dilations, adjacency[d, k, v, w]
// carries source joint v to target joint w:
//   y[n, d * C_out + o, t, w] = sum_k sum_v Z[n, k, o, t, v] A[d, k, v, w] + bias[d * C_out + o],
//   Z[n, k, o, t, v] = sum_c weight[k, o, c] x[n, c, t, v]                 ("mix once").
//
// One block: sample n, TT frames (P = TT * V positions), TO output channels, every dilation
// and target joint. Two phases, each a register GEMM with 4 x 4 outputs per thread:
//   mix:       for each k, Z_k[o, p] = sum_c W[k, o, c] x[n, c, p] over chunks of CC input
//              channels (w_s [CC][TO] and x_s [CC][PT] staged in shared memory; PT = 4 *
//              threads_p positions per pass); Z stays in shared memory, z_s [K][TO][z_row];
//   aggregate: Y[(t, o), (d, w)] = sum_{(k, v)} Z_k[o, t * V + v] A_cat[(k, v), (d, w)] with
//              A_cat[(k, v), (d, w)] = A[d, k, v, w] staged a_rows rows at a time (a_s
//              [a_rows][a_row], aliasing the mix's staging buffers); 256 output micro-tiles per
//              round; each result goes straight to y's channel block d.
// So x is read once per output-channel tile and its channels are mixed once for all D
// dilations; the K x C_out x T x V intermediate only exists per block in shared memory.
//
// Floor, P = N * T * V positions: FLOPs 2 * P * K * C_out * (C_in + D * V); bytes
// (C_in + D * C_out) * P * sizeof(scalar) (+ the small weight and adjacency). At C_in = C_out =
// 64..256, V = 25, D = 2 that is 30-100 FLOP/byte in fp32: compute bound on CUDA cores.
// On top of the floor: the aggregation's output tile is padded to micro-tiles of 4 dilation-
// joint columns (D * V = 50 -> 52) and rounds of 256 micro-tiles.
#include "multi_dilation_graph_conv_kernels.cuh"

#include "multi_dilation_graph_conv_math.h"

#include <skelops/cuda_launch.cuh>
#include <skelops/cuda_scalar.cuh>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>

namespace skelops::multi_dilation_graph_conv {
namespace {

using namespace skelops::cuda;

constexpr int kThreads = 256;
constexpr int kMicro = 4;
// Opt-in ceiling: keeps two blocks per SM on sm_90 (227 KB) and one on sm_80 (163 KB).
constexpr int kSmemBudget = 96 * 1024;
// Blocks assumed resident per SM in the tile-choice cost model.
constexpr int kBlocksPerSm = 2;

__host__ __device__ __forceinline__ int round_up4(int64_t a) {
  return static_cast<int>((a + 3) / 4 * 4);
}

// Threads: threads_o x threads_p = kThreads for the mix (TO = 4 * threads_o output channels,
// PT = 4 * threads_p positions per pass). z_row >= positions and a_row >= cols = D * V are
// multiples of 4 (float4 loads).
struct ConcatTiling {
  int threads_o, threads_p;
  int frames, channels, positions, z_row;
  int cols, a_row, a_rows;
  int64_t o_tiles, t_tiles;
};

int64_t concat_smem_floats(const ConcatTiling& g, int64_t K) {
  const int64_t to = kMicro * g.threads_o, pt = kMicro * g.threads_p;
  const int64_t stage = std::max<int64_t>(g.channels * (to + pt), int64_t{g.a_rows} * g.a_row);
  return K * to * g.z_row + stage;
}

template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    concat_forward_kernel(const scalar_t* __restrict__ x, FrameStrides xs,
                          const scalar_t* __restrict__ weight, WeightStrides ws,
                          const scalar_t* __restrict__ adjacency, DilatedAdjacencyStrides as,
                          const scalar_t* __restrict__ bias, scalar_t* __restrict__ y, Dims d,
                          ConcatTiling g) {
  extern __shared__ float4 smem_vec[];
  const int TO = kMicro * g.threads_o, PT = kMicro * g.threads_p;
  const int CC = g.channels, TT = g.frames, P = g.positions;
  const int V = static_cast<int>(d.V);
  float* const z_s = reinterpret_cast<float*>(smem_vec);
  float* const stage = z_s + d.K * TO * g.z_row;
  float* const w_s = stage;
  float* const x_s = stage + CC * TO;
  float* const a_s = stage;

  const int64_t o_tile = blockIdx.x % g.o_tiles;
  const int64_t rest = blockIdx.x / g.o_tiles;
  const int64_t t_tile = rest % g.t_tiles;
  const int64_t n = rest / g.t_tiles;
  const int64_t o0 = o_tile * TO, t0 = t_tile * TT;
  const int frames_here = static_cast<int>(min64(TT, d.T - t0));
  const scalar_t* const x_n = x + n * xs.n;

  // --- mix: z_s[k][o][p] = Z_k[o0 + o, p] (zero for padded channels and frames) ---
  const int to = threadIdx.x / g.threads_p;
  const int tp = threadIdx.x % g.threads_p;
  for (int64_t k = 0; k < d.K; ++k) {
    for (int p0 = 0; p0 < P; p0 += PT) {
      float acc[kMicro][kMicro];
#pragma unroll
      for (int i = 0; i < kMicro; ++i) {
#pragma unroll
        for (int j = 0; j < kMicro; ++j) acc[i][j] = 0.f;
      }
      for (int64_t c0 = 0; c0 < d.C_in; c0 += CC) {
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
        // x_s[c, pl] = x[n, c0 + c, t0 + p / V, p % V] with p = p0 + pl (frame-major).
        for (int e = threadIdx.x; e < CC * PT; e += kThreads) {
          const int pl = e % PT;
          const int c = e / PT;
          const int p = p0 + pl;
          const int tl = p / V;
          float value = 0.f;
          if (c0 + c < d.C_in && p < P && tl < frames_here) {
            value = to_float(x_n[(c0 + c) * xs.c + (t0 + tl) * xs.t + (p % V) * xs.v]);
          }
          x_s[e] = value;
        }
        __syncthreads();
#pragma unroll 4
        for (int c = 0; c < CC; ++c) {
          const float4 w4 = load4(w_s + c * TO + to * kMicro);
          const float4 x4 = load4(x_s + c * PT + tp * kMicro);
          const float wv[kMicro] = {w4.x, w4.y, w4.z, w4.w};
          const float xv[kMicro] = {x4.x, x4.y, x4.z, x4.w};
#pragma unroll
          for (int i = 0; i < kMicro; ++i) {
#pragma unroll
            for (int j = 0; j < kMicro; ++j) acc[i][j] = fmaf(wv[i], xv[j], acc[i][j]);
          }
        }
        __syncthreads();  // w_s and x_s are rewritten by the next chunk
      }
      float* const z_out = z_s + (k * TO + to * kMicro) * g.z_row + p0 + tp * kMicro;
#pragma unroll
      for (int i = 0; i < kMicro; ++i) {
#pragma unroll
        for (int j = 0; j < kMicro; ++j) {
          if (p0 + tp * kMicro + j < P) z_out[i * g.z_row + j] = acc[i][j];
        }
      }
    }
  }

  // --- aggregate: rows (tl, o) of 4 channels, columns (d, w) of 4 ---
  const int col_groups = (g.cols + kMicro - 1) / kMicro;
  const int channel_groups = TO / kMicro;
  const int64_t items = int64_t{TT} * channel_groups * col_groups;
  const int64_t kv_total = d.K * d.V;
  const bool stage_a_once = g.a_rows >= kv_total;
  for (int64_t round0 = 0; round0 < items; round0 += kThreads) {
    const int64_t item = round0 + threadIdx.x;
    const bool active = item < items;
    const int row_group = active ? static_cast<int>(item / col_groups) : 0;
    const int cg = active ? static_cast<int>(item % col_groups) : 0;
    const int tl = row_group / channel_groups;
    const int og = row_group % channel_groups;
    const float* const z_rows = z_s + og * kMicro * g.z_row + tl * V;  // + k TO z_row + v
    float acc[kMicro][kMicro];
#pragma unroll
    for (int i = 0; i < kMicro; ++i) {
#pragma unroll
      for (int j = 0; j < kMicro; ++j) acc[i][j] = 0.f;
    }
    for (int64_t kv0 = 0; kv0 < kv_total; kv0 += g.a_rows) {
      const int rows_here = static_cast<int>(min64(g.a_rows, kv_total - kv0));
      if (!stage_a_once || round0 == 0) {
        // The previous chunk's readers are done; on the first staging, so are the mix's
        // w_s / x_s readers (a_s aliases them) and its z_s stores.
        __syncthreads();
        for (int e = threadIdx.x; e < rows_here * g.a_row; e += kThreads) {
          const int col = e % g.a_row;
          const int64_t kv = kv0 + e / g.a_row;
          float value = 0.f;
          if (col < g.cols) {
            value = to_float(adjacency[(col / V) * as.d + (kv / V) * as.k + (kv % V) * as.v +
                                       (col % V) * as.w]);
          }
          a_s[e] = value;
        }
        __syncthreads();
      }
      if (active) {
        int64_t k = kv0 / V;
        int v = static_cast<int>(kv0 % V);
        for (int r = 0; r < rows_here; ++r) {
          const float4 a4 = load4(a_s + r * g.a_row + cg * kMicro);
          const float av[kMicro] = {a4.x, a4.y, a4.z, a4.w};
          const float* const zp = z_rows + k * TO * g.z_row + v;
          float zv[kMicro];
#pragma unroll
          for (int i = 0; i < kMicro; ++i) zv[i] = zp[i * g.z_row];
#pragma unroll
          for (int i = 0; i < kMicro; ++i) {
#pragma unroll
            for (int j = 0; j < kMicro; ++j) acc[i][j] = fmaf(zv[i], av[j], acc[i][j]);
          }
          if (++v == V) {
            v = 0;
            ++k;
          }
        }
      }
    }
    if (active && tl < frames_here) {
      const int64_t t = t0 + tl;
#pragma unroll
      for (int i = 0; i < kMicro; ++i) {
        const int64_t o = o0 + og * kMicro + i;
        if (o >= d.C_out) continue;
#pragma unroll
        for (int j = 0; j < kMicro; ++j) {
          const int col = cg * kMicro + j;
          if (col >= g.cols) continue;
          const int64_t channel = branch_channel(col / V, o, d.C_out);
          float value = acc[i][j];
          if (bias != nullptr) value += to_float(bias[channel]);
          y[((n * d.D * d.C_out + channel) * d.T + t) * d.V + col % V] =
              from_float<scalar_t>(value);
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Host side: tile choice, launch
// ---------------------------------------------------------------------------------------------

// Tile choice by a small cost model (FMA-equivalents per thread-slot, times waves of resident
// blocks), as graph_conv's: register-GEMM FMAs cost 1 (the aggregation's 1.25: a float4 and
// four scalar shared loads per 16 FMAs), staging ~8 per element, a barrier ~20. Candidates
// trade the output-channel tile TO (fewer x re-reads) against frames per block (less padding of
// the position passes and of the aggregation rounds).
bool choose_concat_tiling(const Dims& d, const DeviceLimits& dev, ConcatTiling* best) {
  const int64_t budget = dev.smem_budget / static_cast<int64_t>(sizeof(float));
  const int64_t kv_total = d.K * d.V;
  const int max_threads_o = std::min(8, pow2_ceil((d.C_out + kMicro - 1) / kMicro));
  double best_cost = -1.0;
  for (int threads_o = 1; threads_o <= max_threads_o; threads_o *= 2) {
    const int threads_p = kThreads / threads_o;
    const int to = kMicro * threads_o, pt = kMicro * threads_p;
    const int64_t max_frames = std::min<int64_t>(d.T, std::max<int64_t>(1, pt / d.V));
    for (int64_t frames = 1; frames <= max_frames; ++frames) {
      for (int channels = std::min(32, round_up4(d.C_in)); channels >= 4; channels /= 2) {
        ConcatTiling g{};
        g.threads_o = threads_o;
        g.threads_p = threads_p;
        g.frames = static_cast<int>(frames);
        g.channels = channels;
        g.positions = static_cast<int>(frames * d.V);
        g.z_row = round_up4(g.positions);
        g.cols = static_cast<int>(d.D * d.V);
        g.a_row = round_up4(g.cols);
        const int64_t z_floats = d.K * to * g.z_row;
        const int64_t mix_stage = int64_t{channels} * (to + pt);
        if (z_floats + std::max<int64_t>(mix_stage, g.a_row) > budget) continue;
        g.a_rows = static_cast<int>(std::min<int64_t>(kv_total, (budget - z_floats) / g.a_row));
        g.o_tiles = (d.C_out + to - 1) / to;
        g.t_tiles = (d.T + frames - 1) / frames;
        const double passes = std::ceil(static_cast<double>(g.positions) / pt);
        const double chunks = std::ceil(static_cast<double>(d.C_in) / channels);
        const double mix = d.K * passes * chunks *
                           (channels * kMicro * kMicro + 8.0 * mix_stage / kThreads + 40.0);
        const double items =
            static_cast<double>(frames) * threads_o * std::ceil(g.cols / double{kMicro});
        const double rounds = std::ceil(items / kThreads);
        const double a_chunks = std::ceil(static_cast<double>(kv_total) / g.a_rows);
        const double stagings = a_chunks > 1 ? rounds * a_chunks : 1.0;
        const double aggregate = rounds * 1.25 * kv_total * kMicro * kMicro +
                                 stagings * (8.0 * g.a_rows * g.a_row / kThreads + 40.0);
        const double blocks = static_cast<double>(d.N) * g.t_tiles * g.o_tiles;
        const double waves = std::ceil(blocks / (static_cast<double>(dev.sm_count) * kBlocksPerSm));
        const double cost = waves * (mix + aggregate);
        if (best_cost < 0 || cost < best_cost) {
          best_cost = cost;
          *best = g;
        }
        break;  // the widest channel chunk that fits
      }
    }
  }
  return best_cost >= 0;
}

}  // namespace

template <typename scalar_t>
cudaError_t launch_concat_forward(const scalar_t* x, FrameStrides x_strides,
                                  const scalar_t* weight, WeightStrides weight_strides,
                                  const scalar_t* adjacency,
                                  DilatedAdjacencyStrides adjacency_strides, const scalar_t* bias,
                                  scalar_t* y, Dims dims, cudaStream_t stream) {
  DeviceLimits dev{};
  const cudaError_t err = query_device(kSmemBudget, &dev);
  if (err != cudaSuccess) return err;
  ConcatTiling g{};
  if (!choose_concat_tiling(dims, dev, &g)) return cudaErrorInvalidConfiguration;
  return launch_with_smem(
      concat_forward_kernel<scalar_t>, dims.N * g.t_tiles * g.o_tiles, kThreads,
      sizeof(float) * concat_smem_floats(g, dims.K), stream, x, x_strides, weight, weight_strides,
      adjacency, adjacency_strides, bias, y, dims, g);
}

#define SKELOPS_INSTANTIATE_MULTI_DILATION(scalar_t)                                            \
  template cudaError_t launch_concat_forward<scalar_t>(                                         \
      const scalar_t*, FrameStrides, const scalar_t*, WeightStrides, const scalar_t*,           \
      DilatedAdjacencyStrides, const scalar_t*, scalar_t*, Dims, cudaStream_t);

SKELOPS_INSTANTIATE_MULTI_DILATION(float)
SKELOPS_INSTANTIATE_MULTI_DILATION(__half)
SKELOPS_INSTANTIATE_MULTI_DILATION(__nv_bfloat16)

#undef SKELOPS_INSTANTIATE_MULTI_DILATION

}  // namespace skelops::multi_dilation_graph_conv
