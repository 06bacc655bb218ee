// CUDA kernels of skelops::partition_attention and its backward (torch-free; launchers declared
// in partition_attention_kernels.cuh). Deterministic: every output element has one writer, every
// sum runs in an order fixed by the sizes alone (no atomics): neither the SM count nor the
// shared memory available changes a result (they only choose where tables live).
//
// The head dimension is tiny (SkateFormer: D = 3 or 6) and partitions are small (N = 64 or 96
// tokens), so FlashAttention's tensor-core tiles would be mostly padding. Instead one thread owns
// one token of a partition, keeps its D-vectors in registers (D padded with zeros to MaxD, a
// compile-time 4, 8, 16, 32 or 64, so the inner loops are unpredicated) and loops over the
// partition's other tokens, which the block stages in shared memory in the accumulation type.
// A block serves a few (b, partition) units of one head (blockIdx = chunk * H + h, heads
// fastest: the heads of one token usually share cache lines), block size min(N rounded up to a
// warp, 256); tokens beyond that are handled in rounds.
//
// The head's slice of the bias table is staged in shared memory when it fits, laid out so that
// a warp's 32 consecutive thread-side tokens hit distinct banks (frame stride padded to J or -J
// mod 32); otherwise it is read from the global table. Dropout recomputes the counter hash of
// partition_attention_math.h for every pair: element (((b H + h) T + t_x) V + u_x) N + n_y.
//
// Forward, forward_kernel: thread per query x, key tiles (K, V) in shared memory; online
//   softmax over the keys in order (running max, sum of exp, D output accumulators; dropped
//   probabilities count in the sum but not in the output); writes out and lse.
// Backward (FlashAttention-style, from out and lse):
//   query_grad_kernel: thread per query x, Di = <dO_x, O_x>, then over the keys
//     dS_xy = P_xy (keep_xy keep_scale <dO_x, v_y> - Di), dq_x = scale * sum_y dS_xy k_y.
//   key_grad_kernel: thread per key y, the partition's queries staged in tiles (scale * q, dO,
//     lse, Di and the dropout element row): dv_y = sum_x P_xy keep_xy keep_scale dO_x,
//     dk_y = sum_x dS_xy scale q_x. For the bias gradient each tile's dS goes to shared memory;
//     thread-owned joint pairs (i_x, i_y) then sum it per frame offset into a per-block scratch
//     table [offset, pair] ([pair, offset] for the frame-only table, folded over the pairs when
//     the block ends), one writer per entry. Each block leaves its partial table in a workspace;
//   bias_grad_sum_kernel sums the partials of every entry over the blocks of its head in a
//     fixed order (lanes x segments, then the segments in order) and casts to the bias dtype.
// Chunking (units per block) depends on the sizes only: enough units to amortise staging the
// bias table against the N^2 pairs of a unit, and for the bias gradient at most
// kMaxChunksPerHead partials per head and a workspace of about kMaxWorkspace elements.
#include "partition_attention_kernels.cuh"

#include "partition_attention_math.h"

#include <skelops/common.h>
#include <skelops/cuda_launch.cuh>
#include <skelops/cuda_scalar.cuh>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

namespace skelops::partition_attention {
namespace {

using namespace skelops::cuda;

constexpr int kMaxThreads = 256;
constexpr int64_t kSmemCap = 96 * 1024;              // dynamic shared memory a block may ask for
constexpr int64_t kKeyTileBytes = 32 * 1024;         // K and V tiles of the query-thread kernels
constexpr int64_t kQueryTileBytes = 48 * 1024;       // key_grad_kernel's query tile (with dS)
constexpr int kMaxQueryTile = 32;                    // queries per tile: keeps the dS tile small
constexpr int64_t kAmortise = 16;                    // unit pairs per staged or cleared entry
constexpr int64_t kMaxChunksPerHead = 1024;          // partial tables the final bias sum reads
constexpr int64_t kMaxWorkspace = int64_t{1} << 22;  // elements of all partial tables
constexpr int kSumLanes = 32;                        // bias entries per block of the final sum
constexpr int kSumSegments = 16;                     // threads splitting each entry's partials

// ---------------------------------------------------------------------------------------------
// Element helpers
// ---------------------------------------------------------------------------------------------

template <typename scalar_t>
__device__ __forceinline__ acc_type<scalar_t> to_acc(scalar_t v) {
  return to_float(v);
}
template <>
__device__ __forceinline__ double to_acc<double>(double v) {
  return v;
}

template <typename scalar_t>
__device__ __forceinline__ scalar_t from_acc(acc_type<scalar_t> v) {
  return from_float<scalar_t>(v);
}
template <>
__device__ __forceinline__ double from_acc<double>(double v) {
  return v;
}

__device__ __forceinline__ float exp_acc(float v) { return expf(v); }
__device__ __forceinline__ double exp_acc(double v) { return exp(v); }
__device__ __forceinline__ float log_acc(float v) { return logf(v); }
__device__ __forceinline__ double log_acc(double v) { return log(v); }

// A staged row (MaxD elements, 16-byte aligned) into registers with 16-byte loads; every thread
// of a warp reads the same row, so these are broadcasts.
template <int MaxD>
__device__ __forceinline__ void read_row(const float* src, float (&dst)[MaxD]) {
#pragma unroll
  for (int c = 0; c < MaxD; c += 4) {
    const float4 v = load4(src + c);
    dst[c] = v.x;
    dst[c + 1] = v.y;
    dst[c + 2] = v.z;
    dst[c + 3] = v.w;
  }
}
template <int MaxD>
__device__ __forceinline__ void read_row(const double* src, double (&dst)[MaxD]) {
#pragma unroll
  for (int c = 0; c < MaxD; c += 2) {
    const double2 v = *reinterpret_cast<const double2*>(src + c);
    dst[c] = v.x;
    dst[c + 1] = v.y;
  }
}

template <int MaxD, typename acc_t>
__device__ __forceinline__ acc_t dot(const acc_t (&a)[MaxD], const acc_t (&b)[MaxD]) {
  acc_t sum = 0;
#pragma unroll
  for (int c = 0; c < MaxD; ++c) sum += a[c] * b[c];
  return sum;
}

template <int MaxD, typename acc_t>
__device__ __forceinline__ void add_scaled(acc_t (&acc)[MaxD], acc_t weight,
                                           const acc_t (&x)[MaxD]) {
#pragma unroll
  for (int c = 0; c < MaxD; ++c) acc[c] += weight * x[c];
}

__device__ __forceinline__ bool kept(const Dropout& dropout, uint64_t element) {
  return dropout.threshold == 0 || dropout_bits(dropout.key, element) >= dropout.threshold;
}

// ---------------------------------------------------------------------------------------------
// Partitions and tokens
// ---------------------------------------------------------------------------------------------

struct Plan {
  int threads;              // block size: tokens of a partition served at once
  int tile;                 // keys (query-thread kernels) or queries (key_grad) staged at once
  int64_t units_per_block;  // (b, partition) units of one head per block
  int64_t chunks;           // blocks per head
  bool bias_staged;         // the head's bias table is in shared memory (else global)
  bool scratch_staged;      // key_grad: the bias-gradient scratch is in shared memory
};

struct BlockUnits {
  int64_t h, first, last;
};

__device__ __forceinline__ BlockUnits block_units(const Dims& d, const Plan& plan) {
  const int64_t h = blockIdx.x % d.H;
  const int64_t first = blockIdx.x / d.H * plan.units_per_block;
  return {h, first, min64(first + plan.units_per_block, d.B * d.P * d.G)};
}

// The tokens of partition unit % (P G) of batch unit / (P G), head h.
struct PartitionRef {
  int64_t b, h;
  const int32_t* frames;  // its W frames
  const int32_t* joints;  // its J joints
};

template <typename scalar_t>
__device__ __forceinline__ PartitionRef partition_of(const Inputs<scalar_t>& in, const Dims& d,
                                                     int64_t h, int64_t unit) {
  const int64_t per_batch = d.P * d.G;
  const int64_t pg = unit % per_batch;
  return {unit / per_batch, h, in.frame_partition + pg / d.G * d.W,
          in.joint_partition + pg % d.G * d.J};
}

// Token n = a * J + i of a partition: frame t, joint u.
struct TokenRef {
  int a, i;
  int64_t t, u;
};

__device__ __forceinline__ TokenRef token_of(const PartitionRef& part, int J, int n) {
  const int a = n / J, i = n - a * J;
  return {a, i, part.frames[a], part.joints[i]};
}

// Its position in [B, H, T, V]: the lse index and the dropout element row.
__device__ __forceinline__ int64_t token_index(const Dims& d, const PartitionRef& part,
                                               const TokenRef& tok) {
  return ((part.b * d.H + part.h) * d.T + tok.t) * d.V + tok.u;
}

__device__ __forceinline__ int64_t token_offset(const TokenStrides& s, const PartitionRef& part,
                                                const TokenRef& tok) {
  return part.b * s.b + part.h * s.h + tok.t * s.t + tok.u * s.v;
}

// row = factor * x[token, :D], zero-padded to MaxD.
template <int MaxD, typename scalar_t, typename acc_t>
__device__ __forceinline__ void load_token(const TokenTensor<const scalar_t>& x, int64_t offset,
                                           int64_t D, acc_t factor, acc_t (&row)[MaxD]) {
#pragma unroll
  for (int c = 0; c < MaxD; ++c) {
    row[c] = c < D ? factor * to_acc(x.data[offset + c * x.strides.d]) : acc_t(0);
  }
}

template <int MaxD, typename scalar_t, typename acc_t>
__device__ __forceinline__ void store_token(const TokenTensor<scalar_t>& x, int64_t offset,
                                            int64_t D, acc_t factor, const acc_t (&row)[MaxD]) {
#pragma unroll
  for (int c = 0; c < MaxD; ++c) {
    if (c < D) x.data[offset + c * x.strides.d] = from_acc<scalar_t>(factor * row[c]);
  }
}

template <int MaxD, typename acc_t>
__device__ __forceinline__ void write_row(const acc_t (&row)[MaxD], acc_t* dst) {
#pragma unroll
  for (int c = 0; c < MaxD; ++c) dst[c] = row[c];
}

// dst[j] = x[token n0 + j] (padded rows of MaxD) for j < rows.
template <int MaxD, typename scalar_t, typename acc_t>
__device__ void stage_tokens(const TokenTensor<const scalar_t>& x, const Dims& d,
                             const PartitionRef& part, int n0, int rows, acc_t* dst,
                             int threads) {
  const int J = static_cast<int>(d.J);
  for (int j = threadIdx.x; j < rows; j += threads) {
    const TokenRef tok = token_of(part, J, n0 + j);
    acc_t row[MaxD];
    load_token<MaxD>(x, token_offset(x.strides, part, tok), d.D, acc_t(1), row);
    write_row<MaxD>(row, dst + j * MaxD);
  }
}

// ---------------------------------------------------------------------------------------------
// Bias table
// ---------------------------------------------------------------------------------------------

// bias(x, y) of one head sits at origin + (a_x - a_y) * frame + i_x * query_joint +
// i_y * key_joint of the staged copy or of the global table (where this is bias_offset).
struct BiasLayout {
  int64_t origin, frame, query_joint, key_joint;
};

// Frame stride of a staged [2W - 1, J, J] table: the warp's consecutive thread-side tokens
// n = a J + i must fall on distinct banks. With the thread-side joint at unit stride the
// offset's thread-dependent part is a * frame + i (queries) or -a * frame + i (keys), which is
// n mod 32 when frame = J (resp. -J) mod 32.
SKELOPS_HD int64_t staged_frame_stride(int64_t J, bool key_major) {
  const int64_t target = key_major ? (32 - J % 32) % 32 : J % 32;
  return J * J + (target - J * J % 32 + 32) % 32;
}

SKELOPS_HD int64_t staged_bias_entries(const Dims& d, bool key_major) {
  if (d.bias_kind == kNoBias) return 0;
  const int64_t offsets = 2 * d.W - 1;
  return d.bias_kind == kFrameOffset ? offsets : offsets * staged_frame_stride(d.J, key_major);
}

__device__ __forceinline__ BiasLayout bias_layout(const Dims& d, int64_t h, bool staged,
                                                  bool key_major) {
  BiasLayout L{};
  if (d.bias_kind == kFrameOffset) {
    L.frame = staged ? 1 : d.H;
  } else if (staged) {
    L.frame = staged_frame_stride(d.J, key_major);
    L.query_joint = key_major ? d.J : 1;
    L.key_joint = key_major ? 1 : d.J;
  } else {
    L.frame = d.J * d.J * d.H;
    L.query_joint = d.J * d.H;
    L.key_joint = d.H;
  }
  L.origin = (d.W - 1) * L.frame + (staged ? 0 : h);
  return L;
}

template <typename scalar_t>
struct HeadBias {
  const acc_type<scalar_t>* staged;  // null: read `table`
  const scalar_t* table;
  BiasLayout layout;

  __device__ __forceinline__ acc_type<scalar_t> at(int64_t offset) const {
    return staged != nullptr ? staged[offset] : to_acc(table[offset]);
  }
};

// Head h's bias, staged into `staged` unless that is null; the copy is complete after the
// caller's next __syncthreads.
template <typename scalar_t>
__device__ HeadBias<scalar_t> head_bias(const scalar_t* table, const Dims& d, int64_t h,
                                        acc_type<scalar_t>* staged, bool key_major,
                                        int threads) {
  const BiasLayout L = bias_layout(d, h, staged != nullptr, key_major);
  if (staged != nullptr) {
    // 32-bit index math: a staged table has at most (2N - 1) N entries.
    const int J = static_cast<int>(d.J);
    const int pairs = d.bias_kind == kFrameOffset ? 1 : J * J;
    const int entries = static_cast<int>(2 * d.W - 1) * pairs;
    for (int e = threadIdx.x; e < entries; e += threads) {
      const int offset = e / pairs, pair = e - offset * pairs;
      const int i_x = pair / J, i_y = pair - i_x * J;
      staged[offset * L.frame + i_x * L.query_joint + i_y * L.key_joint] =
          to_acc(table[static_cast<int64_t>(e) * d.H + h]);
    }
  }
  return {staged, table, L};
}

// The looping side's share of the bias offset, advanced token by token (n -> n + 1).
struct BiasWalk {
  int64_t term, step, wrap;
  int joint, joints;

  __device__ __forceinline__ void advance() {
    term += step;
    if (++joint == joints) {
      joint = 0;
      term += wrap;
    }
  }
};

// Keys from n0 (queries on the threads): -a_y * frame + i_y * key_joint.
__device__ __forceinline__ BiasWalk walk_keys(const BiasLayout& L, int J, int n0) {
  const int a = n0 / J, i = n0 - a * J;
  return {-a * L.frame + i * L.key_joint, L.key_joint, -L.frame - J * L.key_joint, i, J};
}

// Queries from n0 (keys on the threads): a_x * frame + i_x * query_joint.
__device__ __forceinline__ BiasWalk walk_queries(const BiasLayout& L, int J, int n0) {
  const int a = n0 / J, i = n0 - a * J;
  return {a * L.frame + i * L.query_joint, L.query_joint, L.frame - J * L.query_joint, i, J};
}

// ---------------------------------------------------------------------------------------------
// Forward
// ---------------------------------------------------------------------------------------------

template <typename scalar_t, int MaxD>
__global__ void __launch_bounds__(kMaxThreads)
    forward_kernel(Inputs<scalar_t> in, Dims d, Plan plan, TokenTensor<scalar_t> out,
                   acc_type<scalar_t>* __restrict__ lse) {
  using acc_t = acc_type<scalar_t>;
  extern __shared__ float4 smem_vec[];
  acc_t* const k_s = reinterpret_cast<acc_t*>(smem_vec);  // [tile, MaxD]
  acc_t* const v_s = k_s + plan.tile * MaxD;               // [tile, MaxD]
  acc_t* const bias_s = v_s + plan.tile * MaxD;
  const int J = static_cast<int>(d.J), N = static_cast<int>(d.W * d.J);
  const BlockUnits blk = block_units(d, plan);
  const bool has_bias = d.bias_kind != kNoBias;
  const HeadBias<scalar_t> bias = head_bias(in.bias, d, blk.h, plan.bias_staged ? bias_s : nullptr,
                                            /*key_major=*/false, plan.threads);
  const acc_t scale = static_cast<acc_t>(in.scale);
  const acc_t keep_scale = static_cast<acc_t>(in.dropout.keep_scale);

  for (int64_t unit = blk.first; unit < blk.last; ++unit) {
    const PartitionRef part = partition_of(in, d, blk.h, unit);
    for (int x0 = 0; x0 < N; x0 += plan.threads) {
      const int n_x = x0 + static_cast<int>(threadIdx.x);
      const bool active = n_x < N;
      TokenRef x_tok{};
      int64_t x_index = 0, x_bias = 0;
      acc_t q[MaxD] = {}, o[MaxD] = {};
      acc_t row_max = -INFINITY, row_sum = 0;
      if (active) {
        x_tok = token_of(part, J, n_x);
        x_index = token_index(d, part, x_tok);
        load_token<MaxD>(in.q, token_offset(in.q.strides, part, x_tok), d.D, scale, q);
        x_bias = bias.layout.origin + x_tok.a * bias.layout.frame +
                 x_tok.i * bias.layout.query_joint;
      }
      const uint64_t x_element = static_cast<uint64_t>(x_index) * N;
      for (int y0 = 0; y0 < N; y0 += plan.tile) {
        const int rows = min(plan.tile, N - y0);
        __syncthreads();  // every thread is done with the previous tile
        stage_tokens<MaxD>(in.k, d, part, y0, rows, k_s, plan.threads);
        stage_tokens<MaxD>(in.v, d, part, y0, rows, v_s, plan.threads);
        __syncthreads();  // the tile (and, the first time, the bias) is staged
        if (!active) continue;
        BiasWalk walk = walk_keys(bias.layout, J, y0);
        for (int j = 0; j < rows; ++j) {
          acc_t k_row[MaxD];
          read_row<MaxD>(k_s + j * MaxD, k_row);
          acc_t s = dot<MaxD>(q, k_row);
          if (has_bias) s += bias.at(x_bias + walk.term);
          walk.advance();
          // Online softmax: rescale only when the running max grows (rare after a few keys).
          if (s > row_max) {
            const acc_t rescale = exp_acc(row_max - s);
            row_sum *= rescale;
#pragma unroll
            for (int c = 0; c < MaxD; ++c) o[c] *= rescale;
            row_max = s;
          }
          const acc_t p = exp_acc(s - row_max);
          row_sum += p;
          if (kept(in.dropout, x_element + static_cast<uint64_t>(y0 + j))) {
            acc_t v_row[MaxD];
            read_row<MaxD>(v_s + j * MaxD, v_row);
            add_scaled<MaxD>(o, p, v_row);
          }
        }
      }
      if (active) {
        lse[x_index] = row_max + log_acc(row_sum);
        store_token<MaxD>(out, token_offset(out.strides, part, x_tok), d.D, keep_scale / row_sum,
                          o);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Backward
// ---------------------------------------------------------------------------------------------

template <typename scalar_t, int MaxD>
__global__ void __launch_bounds__(kMaxThreads)
    query_grad_kernel(Inputs<scalar_t> in, Dims d, Plan plan,
                      TokenTensor<const scalar_t> grad_out, TokenTensor<const scalar_t> out,
                      const acc_type<scalar_t>* __restrict__ lse, TokenTensor<scalar_t> dq) {
  using acc_t = acc_type<scalar_t>;
  extern __shared__ float4 smem_vec[];
  acc_t* const k_s = reinterpret_cast<acc_t*>(smem_vec);  // [tile, MaxD]
  acc_t* const v_s = k_s + plan.tile * MaxD;               // [tile, MaxD]
  acc_t* const bias_s = v_s + plan.tile * MaxD;
  const int J = static_cast<int>(d.J), N = static_cast<int>(d.W * d.J);
  const BlockUnits blk = block_units(d, plan);
  const bool has_bias = d.bias_kind != kNoBias;
  const HeadBias<scalar_t> bias = head_bias(in.bias, d, blk.h, plan.bias_staged ? bias_s : nullptr,
                                            /*key_major=*/false, plan.threads);
  const acc_t scale = static_cast<acc_t>(in.scale);
  const acc_t keep_scale = static_cast<acc_t>(in.dropout.keep_scale);

  for (int64_t unit = blk.first; unit < blk.last; ++unit) {
    const PartitionRef part = partition_of(in, d, blk.h, unit);
    for (int x0 = 0; x0 < N; x0 += plan.threads) {
      const int n_x = x0 + static_cast<int>(threadIdx.x);
      const bool active = n_x < N;
      TokenRef x_tok{};
      int64_t x_index = 0, x_bias = 0;
      acc_t q[MaxD] = {}, g[MaxD] = {}, grad[MaxD] = {};
      acc_t x_lse = 0, x_di = 0;
      if (active) {
        x_tok = token_of(part, J, n_x);
        x_index = token_index(d, part, x_tok);
        load_token<MaxD>(in.q, token_offset(in.q.strides, part, x_tok), d.D, scale, q);
        load_token<MaxD>(grad_out, token_offset(grad_out.strides, part, x_tok), d.D, acc_t(1), g);
        acc_t o[MaxD];
        load_token<MaxD>(out, token_offset(out.strides, part, x_tok), d.D, acc_t(1), o);
        x_di = dot<MaxD>(g, o);
        x_lse = lse[x_index];
        x_bias = bias.layout.origin + x_tok.a * bias.layout.frame +
                 x_tok.i * bias.layout.query_joint;
      }
      const uint64_t x_element = static_cast<uint64_t>(x_index) * N;
      for (int y0 = 0; y0 < N; y0 += plan.tile) {
        const int rows = min(plan.tile, N - y0);
        __syncthreads();  // every thread is done with the previous tile
        stage_tokens<MaxD>(in.k, d, part, y0, rows, k_s, plan.threads);
        stage_tokens<MaxD>(in.v, d, part, y0, rows, v_s, plan.threads);
        __syncthreads();  // the tile (and, the first time, the bias) is staged
        if (!active) continue;
        BiasWalk walk = walk_keys(bias.layout, J, y0);
        for (int j = 0; j < rows; ++j) {
          acc_t k_row[MaxD];
          read_row<MaxD>(k_s + j * MaxD, k_row);
          acc_t s = dot<MaxD>(q, k_row);
          if (has_bias) s += bias.at(x_bias + walk.term);
          walk.advance();
          const acc_t p = exp_acc(s - x_lse);
          acc_t dp = 0;
          if (kept(in.dropout, x_element + static_cast<uint64_t>(y0 + j))) {
            acc_t v_row[MaxD];
            read_row<MaxD>(v_s + j * MaxD, v_row);
            dp = keep_scale * dot<MaxD>(g, v_row);
          }
          add_scaled<MaxD>(grad, p * (dp - x_di), k_row);
        }
      }
      if (active) store_token<MaxD>(dq, token_offset(dq.strides, part, x_tok), d.D, scale, grad);
    }
  }
}

// Adds the dS tile (queries [x0, x1) x keys [y0, y1), ds[(n_x - x0) * ds_stride + n_y - y0]) to
// the scratch table, entry (frame offset a_x - a_y + W - 1, joint pair i_x J + i_y) at
// offset * offset_stride + pair * pair_stride. Each joint pair belongs to one thread (always the
// same), which sums the tile per frame offset in order of a_x: one writer per entry, a fixed
// order.
template <typename acc_t>
__device__ void accumulate_bias_grad(const acc_t* ds, int ds_stride, int W, int J, int x0,
                                     int x1, int y0, int y1, acc_t* scratch,
                                     int64_t offset_stride, int64_t pair_stride, int threads) {
  // Frames of the tile's first and last query (key); for joint i the frames [lo, hi) whose token
  // a J + i lies in the tile are these, each moved in by one where that token falls outside.
  const int fx_first = x0 / J, fx_last = (x1 - 1) / J;
  const int fy_first = y0 / J, fy_last = (y1 - 1) / J;
  for (int pair = threadIdx.x; pair < J * J; pair += threads) {
    const int i_x = pair / J, i_y = pair - i_x * J;
    const int ax_lo = fx_first + (fx_first * J + i_x < x0);
    const int ax_hi = fx_last + (fx_last * J + i_x < x1);
    const int ay_lo = fy_first + (fy_first * J + i_y < y0);
    const int ay_hi = fy_last + (fy_last * J + i_y < y1);
    if (ax_lo >= ax_hi || ay_lo >= ay_hi) continue;
    for (int delta = ax_lo - ay_hi + 1; delta < ax_hi - ay_lo; ++delta) {
      const int a_end = min(ax_hi, ay_hi + delta);
      acc_t sum = 0;
      for (int a_x = max(ax_lo, ay_lo + delta); a_x < a_end; ++a_x) {
        sum += ds[(a_x * J + i_x - x0) * ds_stride + (a_x - delta) * J + i_y - y0];
      }
      scratch[(delta + W - 1) * offset_stride + pair * pair_stride] += sum;
    }
  }
}

template <typename scalar_t, int MaxD>
__global__ void __launch_bounds__(kMaxThreads)
    key_grad_kernel(Inputs<scalar_t> in, Dims d, Plan plan, TokenTensor<const scalar_t> grad_out,
                    TokenTensor<const scalar_t> out, const acc_type<scalar_t>* __restrict__ lse,
                    Gradients<scalar_t> grads) {
  using acc_t = acc_type<scalar_t>;
  const int J = static_cast<int>(d.J), W = static_cast<int>(d.W), N = W * J;
  const int tile = plan.tile, threads = plan.threads;
  const bool has_bias = d.bias_kind != kNoBias;
  const bool want_dbias = grads.dbias != nullptr;
  extern __shared__ float4 smem_vec[];
  acc_t* const q_s = reinterpret_cast<acc_t*>(smem_vec);  // [tile, MaxD]: scale * q
  acc_t* const g_s = q_s + tile * MaxD;                    // [tile, MaxD]: dO
  uint64_t* const element_s = reinterpret_cast<uint64_t*>(g_s + tile * MaxD);  // [tile]
  acc_t* const lse_s = reinterpret_cast<acc_t*>(element_s + tile);             // [tile]
  acc_t* const di_s = lse_s + tile;                                            // [tile]
  acc_t* const ds_s = di_s + tile;  // [tile, threads] with the bias gradient
  acc_t* const bias_s = ds_s + (want_dbias ? tile * threads : 0);
  acc_t* const scratch_s = bias_s + (plan.bias_staged ? staged_bias_entries(d, true) : 0);

  const BlockUnits blk = block_units(d, plan);
  const HeadBias<scalar_t> bias = head_bias(in.bias, d, blk.h, plan.bias_staged ? bias_s : nullptr,
                                            /*key_major=*/true, plan.threads);
  // Scratch [2W - 1, J * J] for the offset-and-pair table, [J * J, 2W - 1] for the frame-only
  // one (so that the fold over the pairs reads a column per offset).
  const int64_t scratch_size = (2 * d.W - 1) * d.J * d.J;
  const bool frame_only = d.bias_kind == kFrameOffset;
  const int64_t offset_stride = frame_only ? 1 : d.J * d.J;
  const int64_t pair_stride = frame_only ? 2 * d.W - 1 : 1;
  acc_t* const region =
      want_dbias ? grads.dbias_workspace + static_cast<int64_t>(blockIdx.x) * scratch_size
                 : nullptr;
  acc_t* const scratch = plan.scratch_staged ? scratch_s : region;
  if (want_dbias) {
    // Cleared before the first tile's barriers, updated after them.
    for (int64_t e = threadIdx.x; e < scratch_size; e += threads) scratch[e] = 0;
  }
  const acc_t scale = static_cast<acc_t>(in.scale);
  const acc_t keep_scale = static_cast<acc_t>(in.dropout.keep_scale);

  for (int64_t unit = blk.first; unit < blk.last; ++unit) {
    const PartitionRef part = partition_of(in, d, blk.h, unit);
    for (int y0 = 0; y0 < N; y0 += threads) {
      const int y1 = min(y0 + threads, N);
      const int n_y = y0 + static_cast<int>(threadIdx.x);
      const bool active = n_y < N;
      TokenRef y_tok{};
      int64_t y_bias = 0;
      acc_t k[MaxD] = {}, v[MaxD] = {}, dk[MaxD] = {}, dv[MaxD] = {};
      if (active) {
        y_tok = token_of(part, J, n_y);
        load_token<MaxD>(in.k, token_offset(in.k.strides, part, y_tok), d.D, acc_t(1), k);
        load_token<MaxD>(in.v, token_offset(in.v.strides, part, y_tok), d.D, acc_t(1), v);
        y_bias = bias.layout.origin - y_tok.a * bias.layout.frame +
                 y_tok.i * bias.layout.key_joint;
      }
      for (int x0 = 0; x0 < N; x0 += tile) {
        const int rows = min(tile, N - x0);
        __syncthreads();  // every thread is done with the previous tile and its dS
        for (int j = threadIdx.x; j < rows; j += threads) {
          const TokenRef tok = token_of(part, J, x0 + j);
          const int64_t index = token_index(d, part, tok);
          acc_t row[MaxD], o[MaxD];
          load_token<MaxD>(in.q, token_offset(in.q.strides, part, tok), d.D, scale, row);
          write_row<MaxD>(row, q_s + j * MaxD);
          load_token<MaxD>(grad_out, token_offset(grad_out.strides, part, tok), d.D, acc_t(1),
                           row);
          write_row<MaxD>(row, g_s + j * MaxD);
          load_token<MaxD>(out, token_offset(out.strides, part, tok), d.D, acc_t(1), o);
          di_s[j] = dot<MaxD>(row, o);
          lse_s[j] = lse[index];
          element_s[j] = static_cast<uint64_t>(index) * N;
        }
        __syncthreads();  // the tile (and, the first time, the bias) is staged
        if (active) {
          BiasWalk walk = walk_queries(bias.layout, J, x0);
          for (int j = 0; j < rows; ++j) {
            acc_t q_row[MaxD], g_row[MaxD];
            read_row<MaxD>(q_s + j * MaxD, q_row);
            acc_t s = dot<MaxD>(q_row, k);
            if (has_bias) s += bias.at(y_bias + walk.term);
            walk.advance();
            const acc_t p = exp_acc(s - lse_s[j]);
            read_row<MaxD>(g_s + j * MaxD, g_row);
            acc_t dp = 0;
            if (kept(in.dropout, element_s[j] + static_cast<uint64_t>(n_y))) {
              add_scaled<MaxD>(dv, p * keep_scale, g_row);
              dp = keep_scale * dot<MaxD>(g_row, v);
            }
            const acc_t ds = p * (dp - di_s[j]);
            add_scaled<MaxD>(dk, ds, q_row);
            if (want_dbias) ds_s[j * threads + threadIdx.x] = ds;
          }
        }
        if (want_dbias) {
          __syncthreads();  // the tile's dS is complete
          accumulate_bias_grad(ds_s, threads, W, J, x0, x0 + rows, y0, y1, scratch,
                               offset_stride, pair_stride, threads);
        }
      }
      if (active) {
        // q_s holds scale * q, so dk already carries the scale.
        if (grads.dk.data != nullptr) {
          store_token<MaxD>(grads.dk, token_offset(grads.dk.strides, part, y_tok), d.D,
                            acc_t(1), dk);
        }
        if (grads.dv.data != nullptr) {
          store_token<MaxD>(grads.dv, token_offset(grads.dv.strides, part, y_tok), d.D,
                            acc_t(1), dv);
        }
      }
    }
  }

  if (!want_dbias) return;
  __syncthreads();  // every pair's scratch entries are final
  if (!frame_only) {
    if (plan.scratch_staged) {
      for (int64_t e = threadIdx.x; e < scratch_size; e += threads) region[e] = scratch[e];
    }
    return;
  }
  // Fold the pairs: column `offset` of the [pair, offset] scratch into region[offset]. Only its
  // owner touches that column, so this also works in place (scratch == region).
  const int64_t offsets = 2 * d.W - 1, pairs = d.J * d.J;
  for (int64_t offset = threadIdx.x; offset < offsets; offset += threads) {
    acc_t sum = 0;
    for (int64_t pair = 0; pair < pairs; ++pair) sum += scratch[pair * offsets + offset];
    region[offset] = sum;
  }
}

// dbias[e, h] = sum over the chunks c of head h of workspace[(c H + h) region + e]: each
// segment sums every kSumSegments-th chunk in order, then the segments are summed in order.
template <typename scalar_t>
__global__ void __launch_bounds__(kSumLanes* kSumSegments)
    bias_grad_sum_kernel(const acc_type<scalar_t>* __restrict__ workspace, int64_t chunks,
                         int64_t H, int64_t region, int64_t entries,
                         scalar_t* __restrict__ dbias) {
  using acc_t = acc_type<scalar_t>;
  __shared__ acc_t partial[kSumSegments][kSumLanes];
  const int lane = threadIdx.x % kSumLanes, segment = threadIdx.x / kSumLanes;
  const int64_t o = static_cast<int64_t>(blockIdx.x) * kSumLanes + lane;
  const bool valid = o < H * entries;
  const int64_t h = o / entries, e = o % entries;
  acc_t sum = 0;
  if (valid) {
    for (int64_t c = segment; c < chunks; c += kSumSegments) {
      sum += workspace[(c * H + h) * region + e];
    }
  }
  partial[segment][lane] = sum;
  __syncthreads();
  if (segment != 0 || !valid) return;
  acc_t total = 0;
#pragma unroll
  for (int s = 0; s < kSumSegments; ++s) total += partial[s][lane];
  dbias[e * H + h] = from_acc<scalar_t>(total);
}

// ---------------------------------------------------------------------------------------------
// Host side: plans, launches
// ---------------------------------------------------------------------------------------------

int block_threads(int64_t N) {
  return static_cast<int>(std::min<int64_t>(kMaxThreads, ceil_div(N, 32) * 32));
}

int64_t units_total(const Dims& d) { return d.B * d.P * d.G; }

int64_t bias_table_entries(const Dims& d) {
  if (d.bias_kind == kNoBias) return 0;
  return d.bias_kind == kFrameOffset ? 2 * d.W - 1 : (2 * d.W - 1) * d.J * d.J;
}

// key_grad_kernel's per-block bias-gradient table (frame offset x joint pair, either kind).
int64_t scratch_entries(const Dims& d) { return (2 * d.W - 1) * d.J * d.J; }

// Units per block, from the sizes only (see the header comment).
int64_t units_per_block(const Dims& d, bool bias_grad) {
  const int64_t units = units_total(d), N = d.W * d.J;
  const int64_t fixed = bias_table_entries(d) + (bias_grad ? scratch_entries(d) : 0);
  int64_t per_block = std::max<int64_t>(1, ceil_div(kAmortise * fixed, N * N));
  if (bias_grad) {
    per_block = std::max(per_block, ceil_div(units, kMaxChunksPerHead));
    per_block = std::max(per_block, ceil_div(units * d.H * scratch_entries(d), kMaxWorkspace));
  }
  return std::min(per_block, units);
}

void set_chunking(const Dims& d, bool bias_grad, Plan* plan) {
  plan->units_per_block = units_per_block(d, bias_grad);
  plan->chunks = ceil_div(units_total(d), plan->units_per_block);
}

// forward_kernel / query_grad_kernel: K and V tiles, then the staged bias when it fits.
template <typename acc_t, int MaxD>
Plan query_thread_plan(const Dims& d, const DeviceLimits& dev, int64_t* smem_bytes) {
  const int64_t N = d.W * d.J;
  Plan plan{};
  plan.threads = block_threads(N);
  const int64_t row_bytes = MaxD * static_cast<int64_t>(sizeof(acc_t));
  plan.tile = static_cast<int>(std::min(N, std::max<int64_t>(1, kKeyTileBytes / (2 * row_bytes))));
  *smem_bytes = 2 * plan.tile * row_bytes;
  const int64_t bias_bytes = staged_bias_entries(d, false) * static_cast<int64_t>(sizeof(acc_t));
  plan.bias_staged = d.bias_kind != kNoBias && *smem_bytes + bias_bytes <= dev.smem_budget;
  if (plan.bias_staged) *smem_bytes += bias_bytes;
  set_chunking(d, false, &plan);
  return plan;
}

// key_grad_kernel: the query tile (with dS when the bias gradient is wanted), then the staged
// bias, then the bias-gradient scratch, each when it fits.
template <typename acc_t, int MaxD>
Plan key_thread_plan(const Dims& d, bool bias_grad, const DeviceLimits& dev,
                     int64_t* smem_bytes) {
  const int64_t N = d.W * d.J, acc_bytes = sizeof(acc_t);
  Plan plan{};
  plan.threads = block_threads(N);
  const int64_t per_query = (2 * MaxD + 2 + (bias_grad ? plan.threads : 0)) * acc_bytes +
                            static_cast<int64_t>(sizeof(uint64_t));
  plan.tile = static_cast<int>(std::min<int64_t>(
      {N, kMaxQueryTile, std::max<int64_t>(1, kQueryTileBytes / per_query)}));
  *smem_bytes = plan.tile * per_query;
  const int64_t bias_bytes = staged_bias_entries(d, true) * acc_bytes;
  plan.bias_staged = d.bias_kind != kNoBias && *smem_bytes + bias_bytes <= dev.smem_budget;
  if (plan.bias_staged) *smem_bytes += bias_bytes;
  const int64_t scratch_bytes = scratch_entries(d) * acc_bytes;
  plan.scratch_staged = bias_grad && *smem_bytes + scratch_bytes <= dev.smem_budget;
  if (plan.scratch_staged) *smem_bytes += scratch_bytes;
  set_chunking(d, bias_grad, &plan);
  return plan;
}

bool supported(const Dims& d) {
  return d.D >= 1 && d.D <= kMaxCudaHeadDim && d.W >= 1 && d.J >= 1 &&
         d.W * d.J <= kMaxCudaTokens;
}

// Calls f with std::integral_constant<int, MaxD>, the padded head dimension for D.
template <typename F>
cudaError_t with_head_dim(int64_t D, F&& f) {
  if (D <= 4) return f(std::integral_constant<int, 4>{});
  if (D <= 8) return f(std::integral_constant<int, 8>{});
  if (D <= 16) return f(std::integral_constant<int, 16>{});
  if (D <= 32) return f(std::integral_constant<int, 32>{});
  return f(std::integral_constant<int, 64>{});
}

}  // namespace

int64_t dbias_workspace_size(const Dims& dims) {
  if (dims.bias_kind == kNoBias) return 0;
  return ceil_div(units_total(dims), units_per_block(dims, true)) * dims.H *
         scratch_entries(dims);
}

template <typename scalar_t>
cudaError_t launch_partition_attention_forward(const Inputs<scalar_t>& in, const Dims& dims,
                                               TokenTensor<scalar_t> out,
                                               acc_type<scalar_t>* lse, cudaStream_t stream) {
  using acc_t = acc_type<scalar_t>;
  if (!supported(dims)) return cudaErrorInvalidValue;
  DeviceLimits dev{};
  const cudaError_t err = query_device(kSmemCap, &dev);
  if (err != cudaSuccess) return err;
  return with_head_dim(dims.D, [&](auto max_d) {
    constexpr int MaxD = decltype(max_d)::value;
    int64_t smem = 0;
    const Plan plan = query_thread_plan<acc_t, MaxD>(dims, dev, &smem);
    return launch_with_smem(forward_kernel<scalar_t, MaxD>, plan.chunks * dims.H, plan.threads,
                            smem, stream, in, dims, plan, out, lse);
  });
}

template <typename scalar_t>
cudaError_t launch_partition_attention_backward(const Inputs<scalar_t>& in, const Dims& dims,
                                                TokenTensor<const scalar_t> grad_out,
                                                TokenTensor<const scalar_t> out,
                                                const acc_type<scalar_t>* lse,
                                                const Gradients<scalar_t>& grads,
                                                cudaStream_t stream) {
  using acc_t = acc_type<scalar_t>;
  if (!supported(dims)) return cudaErrorInvalidValue;
  const bool bias_grad = grads.dbias != nullptr;
  if (bias_grad && (dims.bias_kind == kNoBias || grads.dbias_workspace == nullptr)) {
    return cudaErrorInvalidValue;
  }
  const bool key_side = grads.dk.data != nullptr || grads.dv.data != nullptr || bias_grad;
  DeviceLimits dev{};
  const cudaError_t err = query_device(kSmemCap, &dev);
  if (err != cudaSuccess) return err;
  return with_head_dim(dims.D, [&](auto max_d) {
    constexpr int MaxD = decltype(max_d)::value;
    if (grads.dq.data != nullptr) {
      int64_t smem = 0;
      const Plan plan = query_thread_plan<acc_t, MaxD>(dims, dev, &smem);
      const cudaError_t e =
          launch_with_smem(query_grad_kernel<scalar_t, MaxD>, plan.chunks * dims.H,
                           plan.threads, smem, stream, in, dims, plan, grad_out, out, lse,
                           grads.dq);
      if (e != cudaSuccess) return e;
    }
    if (!key_side) return cudaSuccess;
    int64_t smem = 0;
    const Plan plan = key_thread_plan<acc_t, MaxD>(dims, bias_grad, dev, &smem);
    cudaError_t e = launch_with_smem(key_grad_kernel<scalar_t, MaxD>, plan.chunks * dims.H,
                                     plan.threads, smem, stream, in, dims, plan, grad_out, out,
                                     lse, grads);
    if (e != cudaSuccess || !bias_grad) return e;
    const int64_t entries = bias_table_entries(dims);
    const acc_t* const workspace = grads.dbias_workspace;
    return launch_with_smem(bias_grad_sum_kernel<scalar_t>, ceil_div(dims.H * entries, kSumLanes),
                            kSumLanes * kSumSegments, 0, stream, workspace, plan.chunks, dims.H,
                            scratch_entries(dims), entries, grads.dbias);
  });
}

#define SKELOPS_INSTANTIATE_PARTITION_ATTENTION(scalar_t)                                      \
  template cudaError_t launch_partition_attention_forward<scalar_t>(                           \
      const Inputs<scalar_t>&, const Dims&, TokenTensor<scalar_t>, acc_type<scalar_t>*,        \
      cudaStream_t);                                                                           \
  template cudaError_t launch_partition_attention_backward<scalar_t>(                          \
      const Inputs<scalar_t>&, const Dims&, TokenTensor<const scalar_t>,                       \
      TokenTensor<const scalar_t>, const acc_type<scalar_t>*, const Gradients<scalar_t>&,      \
      cudaStream_t);

SKELOPS_INSTANTIATE_PARTITION_ATTENTION(float)
SKELOPS_INSTANTIATE_PARTITION_ATTENTION(double)
SKELOPS_INSTANTIATE_PARTITION_ATTENTION(__half)
SKELOPS_INSTANTIATE_PARTITION_ATTENTION(__nv_bfloat16)

#undef SKELOPS_INSTANTIATE_PARTITION_ATTENTION

}  // namespace skelops::partition_attention
