// CUDA kernels of skelops::sparse_graph_conv and skelops::sparse_graph_conv_backward (torch-free;
// launchers declared in sparse_graph_conv_kernels.cuh).
//
// Convention: x[n, c, t, v], weight[k, o, c]; subset k of A[k, v, w] (source v -> target w) is
// CSR with rows = targets. Aggregate first, then mix channels, on non-empty rows only:
//   U_k[n, c, t, w] = sum_{j in row(k, w)} values[j] x[n, c, t, col[j]]        (gather_row)
//   y[n, o, t, w]   = sum_k sum_c W[k, o, c] U_k[n, c, t, w]   over the rows (k, w) with entries.
//
// Work per frame (R = number of non-empty rows over all subsets, nnz = stored entries):
//   forward  2 * C_in * C_out * R (channel mix) + 2 * C_in * nnz (gather) FLOPs;
//   d x      the forward on the transposed CSR (rows = sources) with W^T: same count;
//   d W      2 * C_in * C_out * R;   d values  2 * C_in * C_out * R (h = W_k^T g on the rows of
//            the entries) + 2 * C_in * nnz.
//   Bytes: y written once; x read once from DRAM, and from L2 once per output-channel tile and
//   target tile (one of each for C_out <= 64, V <= 256); weights and indices stay in L2.
//   MP-GCN panoramic graph (V = 216, K = 3, nnz = 660: R = 216 + ~216 + 12 = 444 of K * V = 648),
//   C_in = C_out = 64, N * T = 16 * 72 frames, forward: 4.2 GFLOP (the dense aggregation + mix
//   does 27 GFLOP) against 127 MB of fp32 x and y, 33 FLOP/byte: compute bound on CUDA cores
//   (H100: ~67 TFLOP/s fp32 vs 3.35 TB/s, ridge ~20 FLOP/byte), so the fp32 kernels keep the
//   operands in shared memory and 8 x 8 register tiles; bf16 / fp16 (64 MB, 66 FLOP/byte) use
//   tensor cores (WMMA 16x16x16, fp32 accumulation) and are bound by memory and the gather.
//
// Kernels (256 threads, 8 warps; a warp owns a 64 x 32 tile of the block's output GEMM):
//   mix_kernel: one block per (sample, TT frames x WT targets in processing order, 64 or 128
//     output channels). Per chunk of input channels: x's frames are staged in shared memory; for
//     each subset k, the row bounds of the block's targets are read, U_k [chunk, positions] is
//     gathered from the staged frames, and the warps whose 32 positions include a non-empty row
//     of k add W_k U_k to their tile (the processing order groups targets by their set of
//     non-empty subsets, so a subset with few rows, like MP-GCN's 12 inter-person links, costs
//     one warp instead of eight). A subset with no entry in the whole tile is skipped. The tile
//     is written once, through shared memory for coalesced stores, with the bias map.
//   weight_grad_kernel: the positions (n, t, non-empty row of k) of all subsets, in tiles of
//     P positions of one subset, are split evenly over the blocks; per tile, grad_out [P, TO] is
//     staged and U_k [P, TC] gathered from global memory (L1/L2), and warps accumulate
//     g^T U in registers (thread groups split P when the output tile is small). Partial sums go
//     to d W with one fp32 atomicAdd per output per block and subset: not bitwise deterministic.
//   values_grad_kernel: same position tiles; h = W_k^T g over chunks of output channels into
//     registers, then through shared memory, d values[j] += sum_c x[n, c, t, col[j]] h[c, p]
//     for the entries of each position's row, one fp32 atomicAdd per entry, position and
//     channel tile: not bitwise deterministic.
// Matrix products: fp32 FMA on CUDA cores for float (thread tile 8 x 8: 4 float4 shared loads
// per 64 FMAs); WMMA for __half / __nv_bfloat16 with the gathered operand U (an fp32 sum) split
// into a 16-bit high part and the 16-bit rounding of the remainder (two products), so that U
// keeps ~16 significant bits instead of 8 (bf16) / 11 (fp16); the other operands (x, grad_out,
// W) are exact in 16 bits.
#include "sparse_graph_conv_kernels.cuh"

#include "sparse_graph_conv_math.h"

#include <skelops/cuda_launch.cuh>
#include <skelops/cuda_scalar.cuh>

#include <mma.h>

#include <algorithm>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
#define SKELOPS_SPARSE_WMMA 1
#endif

namespace skelops::sparse_graph_conv {
namespace {

using namespace skelops::cuda;

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kWarpM = 64;  // rows of a warp's output tile
constexpr int kWarpN = 32;  // columns of a warp's output tile
// Opt-in ceiling per block: two blocks per SM fit on sm_80 (164 KB) and sm_90 (228 KB).
constexpr int kSmemBudget = 80 * 1024;

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------

__host__ __device__ __forceinline__ size_t max_size(size_t a, size_t b) { return a > b ? a : b; }
__host__ __device__ __forceinline__ int64_t round_up(int64_t a, int64_t b) {
  return (a + b - 1) / b * b;
}

__device__ __forceinline__ void store4(float* p, float a, float b, float c, float d) {
  *reinterpret_cast<float4*>(p) = make_float4(a, b, c, d);
}

// Element type of the shared-memory GEMM operands: fp32 for float (CUDA-core FMA), the input
// type for 16-bit inputs (tensor cores). kStep: channel / position granularity of a GEMM depth
// chunk; kPad: padding of operand rows (elements) against shared-memory bank conflicts.
template <typename scalar_t>
struct Ops {
  using operand = scalar_t;
  static constexpr bool kTensor = true;
  static constexpr int kStep = 16;
  static constexpr int kPad = 8;
  static constexpr int kMaxChannels = 64;
};
template <>
struct Ops<float> {
  using operand = float;
  static constexpr bool kTensor = false;
  static constexpr int kStep = 4;
  static constexpr int kPad = 4;
  static constexpr int kMaxChannels = 32;
};

// Stores the gathered value u as an operand: as is (fp32), or as high and low 16-bit parts
// (hi + lo = u to ~16 significant bits; lo = 0 when hi overflowed).
template <typename op_t>
__device__ __forceinline__ void store_gathered(op_t* hi, op_t* lo, int64_t index, float u) {
  if constexpr (std::is_same_v<op_t, float>) {
    hi[index] = u;
  } else {
    const op_t h = from_float<op_t>(u);
    const float hf = to_float(h);
    hi[index] = h;
    lo[index] = from_float<op_t>(isfinite(hf) ? u - hf : 0.f);
  }
}

// Carves a dynamic shared-memory buffer into 128-byte aligned regions (same offsets on host,
// for the size, and on device).
struct Carver {
  size_t offset = 0;
  template <typename T>
  __host__ __device__ size_t take(int64_t count) {
    offset = static_cast<size_t>(round_up(static_cast<int64_t>(offset), 128));
    const size_t at = offset;
    offset += sizeof(T) * static_cast<size_t>(count);
    return at;
  }
};

// ---------------------------------------------------------------------------------------------
// Warp tiles: C[64 x 32] += A[64 x depth] B[depth x 32], A read as a(m, kd) = A[kd * lda + m],
// B as b(kd, n) = B[kd * ldb + n] (both depth-major in shared memory).
// ---------------------------------------------------------------------------------------------

// fp32 on CUDA cores. Lane (mg = lane / 4, ng = lane % 4) owns rows mg * 4 + {0..3} and
// 32 + mg * 4 + {0..3}, columns ng * 4 + {0..3} and 16 + ng * 4 + {0..3}: per depth step two
// float4 loads of A (the warp reads 256 contiguous bytes) and two of B (128 bytes).
struct Fp32WarpTile {
  float acc[8][8];

  __device__ __forceinline__ void zero() {
#pragma unroll
    for (int i = 0; i < 8; ++i) {
#pragma unroll
      for (int j = 0; j < 8; ++j) acc[i][j] = 0.f;
    }
  }

  __device__ __forceinline__ void mma(const float* A, int lda, const float* B, const float*,
                                      int ldb, int depth) {
    const int lane = threadIdx.x & 31;
    const float* a = A + (lane >> 2) * 4;
    const float* b = B + (lane & 3) * 4;
#pragma unroll 2
    for (int kd = 0; kd < depth; ++kd) {
      const float4 a0 = load4(a + kd * lda), a1 = load4(a + kd * lda + 32);
      const float4 b0 = load4(b + kd * ldb), b1 = load4(b + kd * ldb + 16);
      const float av[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
      const float bv[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
#pragma unroll
      for (int i = 0; i < 8; ++i) {
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
      }
    }
  }

  // C[m * ldc + n] = tile (ldc a multiple of 4, C 16-byte aligned).
  __device__ __forceinline__ void store(float* C, int ldc) const {
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const int m = (i >> 2) * 32 + (lane >> 2) * 4 + (i & 3);
      float* row = C + m * ldc + (lane & 3) * 4;
      store4(row, acc[i][0], acc[i][1], acc[i][2], acc[i][3]);
      store4(row + 16, acc[i][4], acc[i][5], acc[i][6], acc[i][7]);
    }
  }
};

#ifdef SKELOPS_SPARSE_WMMA
// 16-bit inputs on tensor cores: 4 x 2 WMMA 16x16x16 accumulators (fp32). A is col_major
// (a(m, kd) at A[m + kd * lda]), B row_major (b(kd, n) at B[kd * ldb + n]); pointers 32-byte
// aligned, lda / ldb multiples of 8 elements, depth a multiple of 16. B_lo (may be null) is the
// low part of a split operand: acc += A (B_hi + B_lo).
template <typename T>
struct TensorWarpTile {
  nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, float> acc[4][2];

  __device__ __forceinline__ void zero() {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
#pragma unroll
      for (int j = 0; j < 2; ++j) nvcuda::wmma::fill_fragment(acc[i][j], 0.f);
    }
  }

  __device__ __forceinline__ void mma(const T* A, int lda, const T* B_hi, const T* B_lo, int ldb,
                                      int depth) {
    namespace wmma = nvcuda::wmma;
    for (int kd = 0; kd < depth; kd += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::col_major> a[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) wmma::load_matrix_sync(a[i], A + kd * lda + 16 * i, lda);
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> b;
        wmma::load_matrix_sync(b, B_hi + kd * ldb + 16 * j, ldb);
#pragma unroll
        for (int i = 0; i < 4; ++i) wmma::mma_sync(acc[i][j], a[i], b, acc[i][j]);
        if (B_lo != nullptr) {
          wmma::load_matrix_sync(b, B_lo + kd * ldb + 16 * j, ldb);
#pragma unroll
          for (int i = 0; i < 4; ++i) wmma::mma_sync(acc[i][j], a[i], b, acc[i][j]);
        }
      }
    }
  }

  // C[m * ldc + n] = tile (ldc a multiple of 4, C 32-byte aligned).
  __device__ __forceinline__ void store(float* C, int ldc) const {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        nvcuda::wmma::store_matrix_sync(C + 16 * i * ldc + 16 * j, acc[i][j], ldc,
                                        nvcuda::wmma::mem_row_major);
      }
    }
  }
};
#else
// Device code for architectures without bf16 WMMA: the launchers refuse 16-bit inputs there.
template <typename T>
struct TensorWarpTile {
  __device__ void zero() { __trap(); }
  __device__ void mma(const T*, int, const T*, const T*, int, int) { __trap(); }
  __device__ void store(float*, int) const { __trap(); }
};
#endif

template <typename scalar_t>
using WarpTile =
    std::conditional_t<Ops<scalar_t>::kTensor, TensorWarpTile<scalar_t>, Fp32WarpTile>;

// ---------------------------------------------------------------------------------------------
// Position tiles of the reductions (weight_grad_kernel, values_grad_kernel): the positions
// (n, t, i-th non-empty row of subset k) of all subsets, k-major, cut into tiles of P positions
// that never straddle two subsets; each block takes an even share (a segment) of the tiles.
// ---------------------------------------------------------------------------------------------

__device__ __forceinline__ int64_t subset_tiles(const Csr& csr, int64_t k, int64_t frames, int P) {
  return (frames * csr.nonempty_count[k] + P - 1) / P;
}

// The positions of one tile in shared memory: sample, frame, target joint (-1 past the subset's
// positions) and row bounds of each of its P positions.
struct PositionTile {
  int* n;
  int* t;
  int* w;
  int* row_begin;
  int* row_end;

  // Fills the entries of tile `tile_in_k` of subset k. Thread p writes entry p (P <= kThreads).
  __device__ __forceinline__ void load(const Csr& csr, const Dims& d, int64_t k, int64_t tile_in_k,
                                       int P) const {
    const int64_t count = csr.nonempty_count[k];
    const int64_t frame_positions = d.T * count;
    const int64_t total = d.N * frame_positions;
    for (int p = threadIdx.x; p < P; p += kThreads) {
      const int64_t q = tile_in_k * P + p;
      int n_p = 0, t_p = 0, w_p = -1, begin = 0, end = 0;
      if (q < total) {
        n_p = static_cast<int>(q / frame_positions);
        const int64_t r = q % frame_positions;
        t_p = static_cast<int>(r / count);
        w_p = csr.nonempty_rows[k * d.V + r % count];
        const int32_t* row = csr.crow + k * (d.V + 1) + w_p;
        begin = row[0];
        end = row[1];
      }
      n[p] = n_p;
      t[p] = t_p;
      w[p] = w_p;
      row_begin[p] = begin;
      row_end[p] = end;
    }
  }

  // grad_out[n_p, m, t_p, w_p] in fp32; 0 past the subset's positions and for m >= C_out.
  template <typename scalar_t>
  __device__ __forceinline__ float grad_out_at(const scalar_t* __restrict__ grad_out,
                                               const FrameStrides& gs, const Dims& d, int p,
                                               int64_t m) const {
    const int w_p = w[p];
    if (w_p < 0 || m >= d.C_out) return 0.f;
    return to_float(grad_out[n[p] * gs.n + m * gs.c + t[p] * gs.t + w_p * gs.v]);
  }
};

// Byte offsets of a PositionTile in a kernel's dynamic shared memory (host, for the size, and
// device), carved after the kernel's other regions.
struct PositionTileLayout {
  size_t n, t, w, row_begin, row_end;

  __host__ __device__ static PositionTileLayout carve(Carver& carver, int P) {
    PositionTileLayout L{};
    L.n = carver.take<int>(P);
    L.t = carver.take<int>(P);
    L.w = carver.take<int>(P);
    L.row_begin = carver.take<int>(P);
    L.row_end = carver.take<int>(P);
    return L;
  }

  __device__ __forceinline__ PositionTile at(unsigned char* smem) const {
    return {reinterpret_cast<int*>(smem + n), reinterpret_cast<int*>(smem + t),
            reinterpret_cast<int*>(smem + w), reinterpret_cast<int*>(smem + row_begin),
            reinterpret_cast<int*>(smem + row_end)};
  }
};

// A block's segment of the position tiles, [begin, end) in the k-major list of all subsets,
// walked in order: k is the subset of the current tile and k_first the index of its first tile.
struct SegmentTiles {
  int64_t frames;
  int P;
  int64_t begin, end;
  int64_t k = 0, k_first = 0;

  __device__ __forceinline__ SegmentTiles(const Csr& csr, const Dims& d, int tile_positions,
                                          int64_t segment, int64_t segments)
      : frames(d.N * d.T), P(tile_positions) {
    int64_t all_tiles = 0;
    for (int64_t s = 0; s < d.K; ++s) all_tiles += subset_tiles(csr, s, frames, P);
    begin = segment * all_tiles / segments;
    end = (segment + 1) * all_tiles / segments;
    if (begin < end) seek(csr, begin);
  }

  // One past the index of subset k's last tile.
  __device__ __forceinline__ int64_t k_end(const Csr& csr) const {
    return k_first + subset_tiles(csr, k, frames, P);
  }

  // Moves k to the subset of tile `index` (index < end, not before the current tile), passing
  // over the subsets without non-empty rows, which have no tiles.
  __device__ __forceinline__ void seek(const Csr& csr, int64_t index) {
    while (index >= k_end(csr)) {
      k_first = k_end(csr);
      ++k;
    }
  }

  // Moves k past subset k, whose last tile is done, and the subsets without tiles after it.
  __device__ __forceinline__ void next_subset(const Csr& csr, int64_t K) {
    k_first = k_end(csr);
    ++k;
    while (k < K && subset_tiles(csr, k, frames, P) == 0) ++k;
  }
};

// Shared memory of a reduction kernel (byte offsets): the GEMM operands a_s [depth][lda] and
// b_hi [depth][ldb] (b_lo likewise: the low parts of a gathered operand split for tensor cores),
// an fp32 buffer c [rows][ldc] that reuses them (flush / epilogue), then the PositionTile.
struct ReductionLayout {
  size_t a, b_hi, b_lo, c, total;
  PositionTileLayout pos;
  int lda, ldb, ldc;
};

// a_cols / b_cols: operand columns before padding; split_b: b_lo is needed (16-bit inputs only).
template <typename scalar_t>
__host__ __device__ ReductionLayout reduction_layout(int depth, int a_cols, int b_cols,
                                                     bool split_b, int c_rows, int c_cols,
                                                     int P) {
  using op_t = typename Ops<scalar_t>::operand;
  ReductionLayout L{};
  L.lda = a_cols + Ops<scalar_t>::kPad;
  L.ldb = b_cols + Ops<scalar_t>::kPad;
  L.ldc = c_cols + 4;
  Carver operands;
  L.a = operands.take<op_t>(static_cast<int64_t>(depth) * L.lda);
  L.b_hi = operands.take<op_t>(static_cast<int64_t>(depth) * L.ldb);
  L.b_lo = operands.take<op_t>(split_b && Ops<scalar_t>::kTensor
                                   ? static_cast<int64_t>(depth) * L.ldb
                                   : 0);
  Carver reuse;
  L.c = reuse.take<float>(static_cast<int64_t>(c_rows) * L.ldc);
  Carver rest;
  rest.offset = max_size(operands.offset, reuse.offset);
  L.pos = PositionTileLayout::carve(rest, P);
  L.total = rest.offset;
  return L;
}

// ---------------------------------------------------------------------------------------------
// Forward channel mix (also d x on the transposed CSR)
// ---------------------------------------------------------------------------------------------

struct MixTiling {
  int warps_m, warps_n;  // TO = 64 * warps_m output channels, P = 32 * warps_n positions
  int channels;          // CC: input channels per chunk
  int frames, joints;    // TT frames x WT targets (processing order): p = tl * WT + slot
  bool stage_x;          // x_s holds [CC][TT][V] of the input; else gather from global memory
  int64_t m_tiles, w_tiles, t_tiles;
};

// Shared memory (byte offsets): x_s [CC][TT][V] (scalar_t), a_s [CC][TO + pad] = W_k chunk,
// b_hi / b_lo [CC][P + pad] = gathered U_k (b_lo for 16-bit inputs only); the epilogue's c_s
// [TO][P + 4] (fp32) reuses them. Then, not reused: the target of each position (-1 outside the
// tensor), its frame, the row bounds for the current k, and the warp-column activity marks.
struct MixLayout {
  size_t x, a, b_hi, b_lo, c, joint, frame, row_begin, row_end, active, total;
  int lda, ldb, ldc;
};

template <typename scalar_t>
__host__ __device__ MixLayout mix_layout(const MixTiling& g, int64_t V) {
  using op_t = typename Ops<scalar_t>::operand;
  const int TO = kWarpM * g.warps_m, P = kWarpN * g.warps_n, CC = g.channels;
  MixLayout L{};
  L.lda = TO + Ops<scalar_t>::kPad;
  L.ldb = P + Ops<scalar_t>::kPad;
  L.ldc = P + 4;
  Carver main;
  L.x = main.take<scalar_t>(g.stage_x ? static_cast<int64_t>(CC) * g.frames * V : 0);
  L.a = main.take<op_t>(static_cast<int64_t>(CC) * L.lda);
  L.b_hi = main.take<op_t>(static_cast<int64_t>(CC) * L.ldb);
  L.b_lo = main.take<op_t>(Ops<scalar_t>::kTensor ? static_cast<int64_t>(CC) * L.ldb : 0);
  Carver epilogue;
  L.c = epilogue.take<float>(static_cast<int64_t>(TO) * L.ldc);
  Carver rest;
  rest.offset = max_size(main.offset, epilogue.offset);
  L.joint = rest.take<int>(P);
  L.frame = rest.take<int>(P);
  L.row_begin = rest.take<int>(P);
  L.row_end = rest.take<int>(P);
  L.active = rest.take<int>(g.warps_n);
  L.total = rest.offset;
  return L;
}

template <typename scalar_t>
__global__ void __launch_bounds__(kThreads, 2)
    mix_kernel(const scalar_t* __restrict__ in, FrameStrides is,
               const scalar_t* __restrict__ weight, WeightStrides ws, Csr csr,
               const scalar_t* __restrict__ values, const float* __restrict__ bias_map,
               scalar_t* __restrict__ out, Dims d, MixTiling g) {
  using op_t = typename Ops<scalar_t>::operand;
  extern __shared__ __align__(128) unsigned char smem[];
  const MixLayout L = mix_layout<scalar_t>(g, d.V);
  scalar_t* const x_s = reinterpret_cast<scalar_t*>(smem + L.x);
  op_t* const a_s = reinterpret_cast<op_t*>(smem + L.a);
  op_t* const b_hi = reinterpret_cast<op_t*>(smem + L.b_hi);
  op_t* const b_lo = Ops<scalar_t>::kTensor ? reinterpret_cast<op_t*>(smem + L.b_lo) : nullptr;
  float* const c_s = reinterpret_cast<float*>(smem + L.c);
  int* const joint_s = reinterpret_cast<int*>(smem + L.joint);
  int* const frame_s = reinterpret_cast<int*>(smem + L.frame);
  int* const begin_s = reinterpret_cast<int*>(smem + L.row_begin);
  int* const end_s = reinterpret_cast<int*>(smem + L.row_end);
  int* const active_s = reinterpret_cast<int*>(smem + L.active);

  const int TO = kWarpM * g.warps_m, P = kWarpN * g.warps_n;
  const int CC = g.channels, TT = g.frames, WT = g.joints;
  int64_t b = blockIdx.x;
  const int64_t m_tile = b % g.m_tiles;
  b /= g.m_tiles;
  const int64_t w_tile = b % g.w_tiles;
  b /= g.w_tiles;
  const int64_t t_tile = b % g.t_tiles;
  const int64_t n = b / g.t_tiles;
  const int64_t m0 = m_tile * TO, w0 = w_tile * WT, t0 = t_tile * TT;
  const int frames_here = static_cast<int>(min64(TT, d.T - t0));
  const int joints_here = static_cast<int>(min64(WT, d.V - w0));
  const scalar_t* const in_n = in + n * is.n;

  // Thread p owns position p in every per-position loop (P <= kThreads).
  for (int p = threadIdx.x; p < P; p += kThreads) {
    const int tl = p / WT, slot = p % WT;
    const bool valid = tl < frames_here && slot < joints_here;
    joint_s[p] = valid ? csr.row_order[w0 + slot] : -1;
    frame_s[p] = tl;
  }
  for (int i = threadIdx.x; i < g.warps_n; i += kThreads) active_s[i] = 0;
  __syncthreads();

  const int warp = threadIdx.x / 32;
  const int wm = warp / g.warps_n, wn = warp % g.warps_n;
  WarpTile<scalar_t> tile;
  tile.zero();

  int generation = 0;
  for (int64_t c0 = 0; c0 < d.C_in; c0 += CC) {
    for (int64_t k = 0; k < d.K; ++k) {
      ++generation;
      // Row bounds of the positions' targets in subset k; a warp column is marked active for
      // this (chunk, k) when one of its 32 positions has a non-empty row.
      int any_entry = 0;
      for (int p = threadIdx.x; p < P; p += kThreads) {
        const int w = joint_s[p];
        int begin = 0, end = 0;
        if (w >= 0) {
          const int32_t* row = csr.crow + k * (d.V + 1) + w;
          begin = row[0];
          end = row[1];
        }
        begin_s[p] = begin;
        end_s[p] = end;
        if (begin < end) {
          any_entry = 1;
          atomicMax(active_s + p / kWarpN, generation);
        }
      }
      if (g.stage_x && k == 0) {
        const int V = static_cast<int>(d.V);  // x_s fits shared memory, so V fits int
        for (int e = threadIdx.x; e < CC * TT * V; e += kThreads) {
          const int v = e % V;
          const int r = e / V;
          const int tl = r % TT, c = r / TT;
          scalar_t value = from_float<scalar_t>(0.f);
          if (c0 + c < d.C_in && t0 + tl < d.T) {
            value = in_n[(c0 + c) * is.c + (t0 + tl) * is.t + v * is.v];
          }
          x_s[e] = value;
        }
      }
      if (!__syncthreads_or(any_entry)) continue;  // subset k has no entry in this tile

      // a_s[c][o] = W[k, m0 + o, c0 + c]; c fastest: coalesced rows of a contiguous weight
      for (int e = threadIdx.x; e < CC * TO; e += kThreads) {
        const int c = e % CC, o = e / CC;
        float value = 0.f;
        if (m0 + o < d.C_out && c0 + c < d.C_in) {
          value = to_float(weight[k * ws.k + (m0 + o) * ws.m + (c0 + c) * ws.c]);
        }
        a_s[c * L.lda + o] = from_float<op_t>(value);
      }
      // b[c][p] = U_k[c0 + c, position p] for the positions of active warp columns (0 for empty
      // rows and padded channels); inactive columns are not read.
      for (int e = threadIdx.x; e < CC * P; e += kThreads) {
        const int p = e % P, c = e / P;
        if (active_s[p / kWarpN] != generation) continue;
        const int begin = begin_s[p], end = end_s[p];
        float u = 0.f;
        if (begin < end && c0 + c < d.C_in) {
          const int tl = frame_s[p];
          if (g.stage_x) {
            u = gather_row<float>(csr.col, values, begin, end, x_s + (c * TT + tl) * d.V, 1);
          } else {
            u = gather_row<float>(csr.col, values, begin, end,
                                  in_n + (c0 + c) * is.c + (t0 + tl) * is.t, is.v);
          }
        }
        store_gathered(b_hi, b_lo, static_cast<int64_t>(c) * L.ldb + p, u);
      }
      __syncthreads();
      if (active_s[wn] == generation) {
        tile.mma(a_s + wm * kWarpM, L.lda, b_hi + wn * kWarpN,
                 b_lo != nullptr ? b_lo + wn * kWarpN : nullptr, L.ldb, CC);
      }
      __syncthreads();  // a_s, b, bounds and x_s are rewritten by the next (chunk, k)
    }
  }

  // Every (chunk, k) ended with a barrier after the last use of the operand buffers, which
  // c_s reuses.
  tile.store(c_s + wm * kWarpM * L.ldc + wn * kWarpN, L.ldc);
  __syncthreads();
  for (int e = threadIdx.x; e < TO * P; e += kThreads) {
    const int p = e % P, o = e / P;
    const int w = joint_s[p];
    const int64_t m = m0 + o;
    if (w < 0 || m >= d.C_out) continue;
    float value = c_s[o * L.ldc + p];
    if (bias_map != nullptr) value += bias_map[m * d.V + w];
    out[((n * d.C_out + m) * d.T + t0 + frame_s[p]) * d.V + w] = from_float<scalar_t>(value);
  }
}

// ---------------------------------------------------------------------------------------------
// d weight
// ---------------------------------------------------------------------------------------------

struct WeightGradTiling {
  int warps_m, warps_n, lanes;  // output tile TO = 64 * warps_m (o) x TC = 32 * warps_n (c);
                                // `lanes` warp groups split each position tile
  int positions;                // P: positions per tile, a multiple of 16 * lanes
  int64_t m_tiles, c_tiles, segments;
};

// Shared memory (reduction_layout): a_s [P][TO + pad] = grad_out at the positions, b_hi / b_lo
// [P][TC + pad] = gathered U_k; red = c [lanes * TO][TC + 4] (fp32, for the flush) reuses them.
template <typename scalar_t>
__host__ __device__ ReductionLayout weight_grad_layout(const WeightGradTiling& g) {
  const int TO = kWarpM * g.warps_m, TC = kWarpN * g.warps_n, P = g.positions;
  return reduction_layout<scalar_t>(P, TO, TC, true, g.lanes * TO, TC, P);
}

template <typename scalar_t>
__global__ void __launch_bounds__(kThreads, 2)
    weight_grad_kernel(const scalar_t* __restrict__ grad_out, FrameStrides gs,
                       const scalar_t* __restrict__ x, FrameStrides xs, Csr csr,
                       const scalar_t* __restrict__ values, float* __restrict__ grad_weight,
                       Dims d, WeightGradTiling g) {
  using op_t = typename Ops<scalar_t>::operand;
  extern __shared__ __align__(128) unsigned char smem[];
  const ReductionLayout L = weight_grad_layout<scalar_t>(g);
  op_t* const a_s = reinterpret_cast<op_t*>(smem + L.a);
  op_t* const b_hi = reinterpret_cast<op_t*>(smem + L.b_hi);
  op_t* const b_lo = Ops<scalar_t>::kTensor ? reinterpret_cast<op_t*>(smem + L.b_lo) : nullptr;
  float* const red = reinterpret_cast<float*>(smem + L.c);
  const PositionTile pos = L.pos.at(smem);

  const int TO = kWarpM * g.warps_m, TC = kWarpN * g.warps_n, P = g.positions;
  int64_t b = blockIdx.x;
  const int64_t m_tile = b % g.m_tiles;
  b /= g.m_tiles;
  const int64_t c_tile = b % g.c_tiles;
  const int64_t segment = b / g.c_tiles;
  const int64_t m0 = m_tile * TO, c0 = c_tile * TC;

  SegmentTiles tiles(csr, d, P, segment, g.segments);  // this block's share of the tiles
  if (tiles.begin >= tiles.end) return;

  const int warp = threadIdx.x / 32;
  const int lane_group = warp / (g.warps_m * g.warps_n);
  const int wm = warp % (g.warps_m * g.warps_n) / g.warps_n, wn = warp % g.warps_n;
  const int depth = P / g.lanes;
  WarpTile<scalar_t> tile;
  tile.zero();

  for (int64_t tile_index = tiles.begin; tile_index < tiles.end; ++tile_index) {
    const int64_t k = tiles.k;
    pos.load(csr, d, k, tile_index - tiles.k_first, P);
    __syncthreads();
    // a_s[p][o] = grad_out[n_p, m0 + o, t_p, w_p]
    for (int e = threadIdx.x; e < P * TO; e += kThreads) {
      const int p = e % P, o = e / P;
      a_s[p * L.lda + o] = from_float<op_t>(pos.grad_out_at(grad_out, gs, d, p, m0 + o));
    }
    // b[p][c] = U_k[n_p, c0 + c, t_p, w_p]
    for (int e = threadIdx.x; e < P * TC; e += kThreads) {
      const int p = e % P, c = e / P;
      const int begin = pos.row_begin[p], end = pos.row_end[p];
      float u = 0.f;
      if (begin < end && c0 + c < d.C_in) {
        u = gather_row<float>(csr.col, values, begin, end,
                              x + pos.n[p] * xs.n + (c0 + c) * xs.c + pos.t[p] * xs.t, xs.v);
      }
      store_gathered(b_hi, b_lo, static_cast<int64_t>(p) * L.ldb + c, u);
    }
    __syncthreads();
    const int kd0 = lane_group * depth;
    tile.mma(a_s + kd0 * L.lda + wm * kWarpM, L.lda, b_hi + kd0 * L.ldb + wn * kWarpN,
             b_lo != nullptr ? b_lo + kd0 * L.ldb + wn * kWarpN : nullptr, L.ldb, depth);
    __syncthreads();  // a_s, b and the positions are rewritten by the next tile

    const bool last = tile_index + 1 == tiles.end;
    const bool subset_ends = tile_index + 1 == tiles.k_end(csr);
    if (last || subset_ends) {
      // Flush subset k: sum the lane groups' tiles, one atomicAdd per output.
      tile.store(red + (lane_group * TO + wm * kWarpM) * L.ldc + wn * kWarpN, L.ldc);
      __syncthreads();
      for (int e = threadIdx.x; e < TO * TC; e += kThreads) {
        const int o = e / TC, c = e % TC;
        if (m0 + o >= d.C_out || c0 + c >= d.C_in) continue;
        float sum = 0.f;
        for (int l = 0; l < g.lanes; ++l) sum += red[(l * TO + o) * L.ldc + c];
        atomicAdd(grad_weight + (k * d.C_out + m0 + o) * d.C_in + c0 + c, sum);
      }
      // red is next rewritten (as a_s, b) after the barrier that follows pos.load.
      tile.zero();
      if (subset_ends) tiles.next_subset(csr, d.K);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// d values
// ---------------------------------------------------------------------------------------------

struct ValuesGradTiling {
  int warps_m, warps_n;  // h tile: TC = 64 * warps_m input channels x P = 32 * warps_n positions
  int out_chunk;         // OC: output channels per GEMM depth chunk
  int64_t c_tiles, segments;
};

// Shared memory (reduction_layout): a_s [OC][TC + pad] = W_k^T chunk, b_s = b_hi [OC][P + pad] =
// grad_out at the positions (not split); c_s = c [TC][P + 4] (fp32, h) reuses them.
template <typename scalar_t>
__host__ __device__ ReductionLayout values_grad_layout(const ValuesGradTiling& g) {
  const int TC = kWarpM * g.warps_m, P = kWarpN * g.warps_n;
  return reduction_layout<scalar_t>(g.out_chunk, TC, P, false, TC, P, P);
}

template <typename scalar_t>
__global__ void __launch_bounds__(kThreads, 2)
    values_grad_kernel(const scalar_t* __restrict__ grad_out, FrameStrides gs,
                       const scalar_t* __restrict__ x, FrameStrides xs,
                       const scalar_t* __restrict__ weight, WeightStrides ws, Csr csr,
                       float* __restrict__ grad_values, Dims d, ValuesGradTiling g) {
  using op_t = typename Ops<scalar_t>::operand;
  extern __shared__ __align__(128) unsigned char smem[];
  const ReductionLayout L = values_grad_layout<scalar_t>(g);
  op_t* const a_s = reinterpret_cast<op_t*>(smem + L.a);
  op_t* const b_s = reinterpret_cast<op_t*>(smem + L.b_hi);
  float* const c_s = reinterpret_cast<float*>(smem + L.c);
  const PositionTile pos = L.pos.at(smem);

  const int TC = kWarpM * g.warps_m, P = kWarpN * g.warps_n, OC = g.out_chunk;
  const int64_t c_tile = blockIdx.x % g.c_tiles;
  const int64_t segment = blockIdx.x / g.c_tiles;
  const int64_t c0 = c_tile * TC;

  SegmentTiles tiles(csr, d, P, segment, g.segments);  // this block's share of the tiles
  if (tiles.begin >= tiles.end) return;

  const int warp = threadIdx.x / 32;
  const int wm = warp / g.warps_n, wn = warp % g.warps_n;
  // Entry phase: `groups` threads per position split the tile's channels.
  const int groups = kThreads / P;
  const int my_p = threadIdx.x % P, my_group = threadIdx.x / P;
  const int c_valid = static_cast<int>(min64(TC, d.C_in - c0));
  const int c_lo = my_group * TC / groups;
  const int c_hi = static_cast<int>(min64((my_group + 1) * TC / groups, c_valid));

  for (int64_t tile_index = tiles.begin; tile_index < tiles.end; ++tile_index) {
    __syncthreads();  // the previous tile's entry phase has read the positions and c_s
    tiles.seek(csr, tile_index);
    const int64_t k = tiles.k;
    pos.load(csr, d, k, tile_index - tiles.k_first, P);
    WarpTile<scalar_t> tile;
    tile.zero();
    for (int64_t o0 = 0; o0 < d.C_out; o0 += OC) {
      __syncthreads();  // positions visible; a_s / b_s / c_s free
      // a_s[o][c] = W[k, o0 + o, c0 + c]
      for (int e = threadIdx.x; e < OC * TC; e += kThreads) {
        const int c = e % TC, o = e / TC;
        float value = 0.f;
        if (o0 + o < d.C_out && c0 + c < d.C_in) {
          value = to_float(weight[k * ws.k + (o0 + o) * ws.m + (c0 + c) * ws.c]);
        }
        a_s[o * L.lda + c] = from_float<op_t>(value);
      }
      // b_s[o][p] = grad_out[n_p, o0 + o, t_p, w_p]
      for (int e = threadIdx.x; e < OC * P; e += kThreads) {
        const int p = e % P, o = e / P;
        b_s[o * L.ldb + p] = from_float<op_t>(pos.grad_out_at(grad_out, gs, d, p, o0 + o));
      }
      __syncthreads();
      tile.mma(a_s + wm * kWarpM, L.lda, b_s + wn * kWarpN, nullptr, L.ldb, OC);
    }
    __syncthreads();  // c_s reuses a_s / b_s
    tile.store(c_s + wm * kWarpM * L.ldc + wn * kWarpN, L.ldc);
    __syncthreads();
    // d values[j] += sum_c x[n_p, c0 + c, t_p, col[j]] h[c, p] for the entries of p's row.
    if (pos.w[my_p] >= 0 && c_lo < c_hi) {
      const scalar_t* const x_p = x + pos.n[my_p] * xs.n + pos.t[my_p] * xs.t + c0 * xs.c;
      const float* const h_p = c_s + my_p;
      for (int j = pos.row_begin[my_p]; j < pos.row_end[my_p]; ++j) {
        const scalar_t* const x_j = x_p + static_cast<int64_t>(csr.col[j]) * xs.v;
        float sum = 0.f;
#pragma unroll 4
        for (int c = c_lo; c < c_hi; ++c) sum = fmaf(to_float(x_j[c * xs.c]), h_p[c * L.ldc], sum);
        atomicAdd(grad_values + j, sum);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Host side: tile choice, launches
// ---------------------------------------------------------------------------------------------

template <typename scalar_t>
cudaError_t prepare(DeviceLimits* dev) {
  const cudaError_t err = query_device(kSmemBudget, dev);
  if (err != cudaSuccess) return err;
  if (Ops<scalar_t>::kTensor && dev->major < 8) return cudaErrorNotSupported;
  return cudaSuccess;
}

// Output-channel tile of 64 or 128 rows (the warps split the rest over positions / channels).
int warps_for_rows(int64_t rows) { return rows <= kWarpM ? 1 : 2; }

template <typename scalar_t>
bool choose_mix_tiling(const Dims& d, const DeviceLimits& dev, MixTiling* g) {
  g->warps_m = warps_for_rows(d.C_out);
  g->warps_n = kWarps / g->warps_m;
  const int P = kWarpN * g->warps_n;
  g->joints = static_cast<int>(min64(d.V, P));
  g->frames = d.V <= P ? static_cast<int>(min64(d.T, P / d.V)) : 1;
  // Channels per chunk: of those that fit the budget, the fewest padded channels, then the
  // fewest chunks; x is gathered from global memory only when no staged chunk fits (huge V).
  const int step = Ops<scalar_t>::kStep;
  const int most = static_cast<int>(min64(round_up(d.C_in, step), Ops<scalar_t>::kMaxChannels));
  g->channels = 0;
  for (const bool stage_x : {true, false}) {
    g->stage_x = stage_x;
    int best = 0;
    for (int channels = most; channels >= step; channels -= step) {
      MixTiling candidate = *g;
      candidate.channels = channels;
      if (static_cast<int64_t>(mix_layout<scalar_t>(candidate, d.V).total) > dev.smem_budget) {
        continue;
      }
      if (best == 0 || round_up(d.C_in, channels) < round_up(d.C_in, best)) best = channels;
    }
    if (best > 0) {
      g->channels = best;
      break;
    }
  }
  if (g->channels == 0) return false;
  g->m_tiles = ceil_div(d.C_out, kWarpM * g->warps_m);
  g->w_tiles = ceil_div(d.V, g->joints);
  g->t_tiles = ceil_div(d.T, g->frames);
  return true;
}

// Blocks for the reductions: about four per SM (two resident per SM, so that one block's
// staging overlaps another's arithmetic), never more than there are position tiles.
int64_t reduction_segments(const Dims& d, const Csr& csr, int P, int64_t out_tiles,
                           const DeviceLimits& dev) {
  const int64_t min_tiles = ceil_div(d.N * d.T * csr.max_nonempty, P);
  const int64_t target = 4 * int64_t{dev.sm_count};
  return std::max<int64_t>(1, std::min(min_tiles, ceil_div(target, out_tiles)));
}

template <typename scalar_t>
bool choose_weight_grad_tiling(const Dims& d, const Csr& csr, const DeviceLimits& dev,
                               WeightGradTiling* g) {
  g->warps_m = warps_for_rows(d.C_out);
  g->warps_n = d.C_in <= kWarpN ? 1 : (d.C_in <= 2 * kWarpN ? 2 : 4);
  g->lanes = kWarps / (g->warps_m * g->warps_n);
  g->positions = 256;
  const int min_positions = 16 * g->lanes;
  while (static_cast<int64_t>(weight_grad_layout<scalar_t>(*g).total) > dev.smem_budget) {
    if (g->positions <= min_positions) return false;
    g->positions /= 2;
  }
  g->m_tiles = ceil_div(d.C_out, kWarpM * g->warps_m);
  g->c_tiles = ceil_div(d.C_in, kWarpN * g->warps_n);
  g->segments = reduction_segments(d, csr, g->positions, g->m_tiles * g->c_tiles, dev);
  return true;
}

template <typename scalar_t>
bool choose_values_grad_tiling(const Dims& d, const Csr& csr, const DeviceLimits& dev,
                               ValuesGradTiling* g) {
  g->warps_m = warps_for_rows(d.C_in);
  g->warps_n = kWarps / g->warps_m;
  g->out_chunk = static_cast<int>(min64(round_up(d.C_out, Ops<scalar_t>::kStep), 32));
  if (static_cast<int64_t>(values_grad_layout<scalar_t>(*g).total) > dev.smem_budget) return false;
  g->c_tiles = ceil_div(d.C_in, kWarpM * g->warps_m);
  g->segments = reduction_segments(d, csr, kWarpN * g->warps_n, g->c_tiles, dev);
  return true;
}

}  // namespace

template <typename scalar_t>
cudaError_t launch_sparse_mix(const scalar_t* in, FrameStrides in_strides, const scalar_t* weight,
                              WeightStrides weight_strides, Csr csr, const scalar_t* values,
                              const float* bias_map, scalar_t* out, Dims dims,
                              cudaStream_t stream) {
  DeviceLimits dev{};
  cudaError_t err = prepare<scalar_t>(&dev);
  if (err != cudaSuccess) return err;
  MixTiling g{};
  if (!choose_mix_tiling<scalar_t>(dims, dev, &g)) return cudaErrorInvalidConfiguration;
  return launch_with_smem(
      mix_kernel<scalar_t>, dims.N * g.t_tiles * g.w_tiles * g.m_tiles, kThreads,
      mix_layout<scalar_t>(g, dims.V).total, stream, in, in_strides, weight, weight_strides, csr,
      values, bias_map, out, dims, g);
}

template <typename scalar_t>
cudaError_t launch_sparse_weight_grad(const scalar_t* grad_out, FrameStrides grad_out_strides,
                                      const scalar_t* x, FrameStrides x_strides, Csr csr,
                                      const scalar_t* values, float* grad_weight, Dims dims,
                                      cudaStream_t stream) {
  cudaError_t err = cudaMemsetAsync(
      grad_weight, 0, sizeof(float) * dims.K * dims.C_out * dims.C_in, stream);
  if (err != cudaSuccess || csr.max_nonempty == 0) return err;
  DeviceLimits dev{};
  err = prepare<scalar_t>(&dev);
  if (err != cudaSuccess) return err;
  WeightGradTiling g{};
  if (!choose_weight_grad_tiling<scalar_t>(dims, csr, dev, &g)) {
    return cudaErrorInvalidConfiguration;
  }
  return launch_with_smem(
      weight_grad_kernel<scalar_t>, g.segments * g.m_tiles * g.c_tiles, kThreads,
      weight_grad_layout<scalar_t>(g).total, stream, grad_out, grad_out_strides, x, x_strides, csr,
      values, grad_weight, dims, g);
}

template <typename scalar_t>
cudaError_t launch_sparse_values_grad(const scalar_t* grad_out, FrameStrides grad_out_strides,
                                      const scalar_t* x, FrameStrides x_strides,
                                      const scalar_t* weight, WeightStrides weight_strides,
                                      Csr csr, float* grad_values, Dims dims,
                                      cudaStream_t stream) {
  if (csr.nnz == 0) return cudaSuccess;
  cudaError_t err = cudaMemsetAsync(grad_values, 0, sizeof(float) * csr.nnz, stream);
  if (err != cudaSuccess) return err;
  DeviceLimits dev{};
  err = prepare<scalar_t>(&dev);
  if (err != cudaSuccess) return err;
  ValuesGradTiling g{};
  if (!choose_values_grad_tiling<scalar_t>(dims, csr, dev, &g)) {
    return cudaErrorInvalidConfiguration;
  }
  return launch_with_smem(
      values_grad_kernel<scalar_t>, g.segments * g.c_tiles, kThreads,
      values_grad_layout<scalar_t>(g).total, stream, grad_out, grad_out_strides, x, x_strides,
      weight, weight_strides, csr, grad_values, dims, g);
}

#define SKELOPS_INSTANTIATE_SPARSE_GRAPH_CONV(scalar_t)                                         \
  template cudaError_t launch_sparse_mix<scalar_t>(const scalar_t*, FrameStrides,               \
                                                   const scalar_t*, WeightStrides, Csr,         \
                                                   const scalar_t*, const float*, scalar_t*,    \
                                                   Dims, cudaStream_t);                         \
  template cudaError_t launch_sparse_weight_grad<scalar_t>(const scalar_t*, FrameStrides,       \
                                                           const scalar_t*, FrameStrides, Csr,  \
                                                           const scalar_t*, float*, Dims,       \
                                                           cudaStream_t);                       \
  template cudaError_t launch_sparse_values_grad<scalar_t>(                                     \
      const scalar_t*, FrameStrides, const scalar_t*, FrameStrides, const scalar_t*,            \
      WeightStrides, Csr, float*, Dims, cudaStream_t);

SKELOPS_INSTANTIATE_SPARSE_GRAPH_CONV(float)
SKELOPS_INSTANTIATE_SPARSE_GRAPH_CONV(__half)
SKELOPS_INSTANTIATE_SPARSE_GRAPH_CONV(__nv_bfloat16)

#undef SKELOPS_INSTANTIATE_SPARSE_GRAPH_CONV

}  // namespace skelops::sparse_graph_conv
