// C++ CPU kernels of skelops::partition_attention and its backward.
//
// Every (frame window p, joint group g) partition of a (sample b, head h) is an attention
// problem of its own over N = W * J tokens (64 or 96 in SkateFormer) with a tiny head dimension
// D (3..6): N^2 scores per partition and only a few multiply-adds per score, so the exp of the
// scores costs as much as all the dot products. Per partition, the N tokens of q (times
// scale), k, v (and dO) are gathered through their strides into scratch in the accumulation
// type: q and dO token-major ([N, D]), k and v key-major ([D, N]), so that every loop over the
// keys of one query row runs over contiguous memory and vectorises. One query row at a time
// (a row of N scores is all the score storage there is):
//   forward:  s = bias row + sum_d q[d] K[d, :], m = max s, e = exp(s - m), l = sum e, dropped
//             keys zeroed, out = (sum_y e_y v_y) / ((1 - p) l), lse = m + log l;
//   backward: from the saved lse, P = exp(s - lse) recomputed; with P' and dP the dropout-masked
//             and 1/(1 - p)-scaled P and dO . V:  dV += P' dO_x,  dS = P (dP - Di_x)
//             (Di_x = dO_x . O_x),  dK += dS q_x scale,  dQ_x = scale dS . K;  dK and dV of the
//             partition's keys are complete after its last row and written once (every token
//             belongs to one partition, so each gradient element has one writer).
// The per-row loops of one partition-head (partition_attention_cpu_rows_impl.h) are torch-free
// and compiled twice: for the build's baseline ISA (SSE2 on x86-64) and, for float, with AVX2 +
// FMA in partition_attention_avx2_cpu.cpp; this file gathers and scatters the tokens and calls
// the AVX2 loops where skelops::cpu::use_avx2_fma() (skelops/cpu_isa.h) picks them: the build
// has them and the running CPU supports both (the two builds round differently where FMA
// contracts a multiply-add, but one machine always takes the same path). Reductions over the keys (row max, sums, dots) keep kLanes independent partial
// results: the compiler vectorises them without reassociating (the build has no -ffast-math),
// and their order depends on N only. The float exp is a polynomial written to vectorise
// (exp_in_range).
// The forward runs the (b, p, g, h) partition-heads in parallel. The backward runs samples in
// parallel, and a sample's partitions and heads in order, because dbias sums dS over all of
// them: a sample adds its per-head N x N sums of dS into a table of its own, and the B tables
// are summed in order afterwards, so no result depends on the thread count.
#include "partition_attention/partition_attention_common.h"
#include "partition_attention/partition_attention_cpu_rows.h"
#include "partition_attention/partition_attention_math.h"

#define SKELOPS_PARTITION_ATTENTION_ISA baseline
#include "partition_attention/partition_attention_cpu_rows_impl.h"

#include <skelops/cpu_isa.h>
#include <skelops/cpu_tiles.h>

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <tuple>
#include <type_traits>
#include <vector>

namespace skelops::partition_attention {
namespace {

using skelops::cpu::Scratch;

// Tasks per parallel_for chunk: at least ~64k multiply-adds, so that small problems run on the
// calling thread (waking a second one costs more than they take).
int64_t grain(int64_t work_per_task) {
  constexpr int64_t kMinParallelWork = int64_t{1} << 16;
  return std::max<int64_t>(1, kMinParallelWork / std::max<int64_t>(1, work_per_task));
}

// A [B, H, T, V, D] tensor addressed through its strides.
template <typename T>
struct TokenView {
  T* data = nullptr;
  int64_t sb = 0, sh = 0, st = 0, sv = 0, sd = 0;
  TokenView() = default;
  TokenView(T* data, const at::Tensor& t)
      : data(data), sb(t.stride(0)), sh(t.stride(1)), st(t.stride(2)), sv(t.stride(3)),
        sd(t.stride(4)) {}
  T* at(int64_t b, int64_t h, int64_t t, int64_t u) const {
    return data + b * sb + h * sh + t * st + u * sv;
  }
};

template <typename scalar_t>
TokenView<const scalar_t> read_view(const at::Tensor& t) {
  return {t.const_data_ptr<scalar_t>(), t};
}

// An output's view, or an empty one for a gradient that was not asked for (its placeholder
// is 1-D).
template <typename scalar_t>
TokenView<scalar_t> write_view(at::Tensor& t, bool wanted = true) {
  return wanted ? TokenView<scalar_t>(t.mutable_data_ptr<scalar_t>(), t) : TokenView<scalar_t>();
}

struct Token {
  int64_t t, u;  // frame, joint
};

// The frames and joints of the partitions, and the N tokens (t, u) of partition number
// `part` = p * G + g, token n = a * J + i at position a of its window and i of its group.
struct PartitionTokens {
  at::Tensor frames, joints;  // int32 [P, W], [G, J]
  PartitionTokens(const at::Tensor& joint_partition, const at::Tensor& frame_partition)
      : frames(partition_int32(frame_partition)), joints(partition_int32(joint_partition)) {}
  void fill(const Problem& p, int64_t part, Token* tokens) const {
    const int32_t* window = frames.const_data_ptr<int32_t>() + (part / p.G) * p.W;
    const int32_t* group = joints.const_data_ptr<int32_t>() + (part % p.G) * p.J;
    for (int64_t a = 0; a < p.W; ++a) {
      for (int64_t i = 0; i < p.J; ++i) tokens[a * p.J + i] = {window[a], group[i]};
    }
  }
};

// dst[n * D + d] = factor * x[b, h, token n, d].
template <typename scalar_t, typename acc_t>
void gather_token_major(const TokenView<const scalar_t>& x, int64_t b, int64_t h,
                        const Token* tokens, int64_t N, int64_t D, acc_t factor, acc_t* dst) {
  for (int64_t n = 0; n < N; ++n) {
    const scalar_t* src = x.at(b, h, tokens[n].t, tokens[n].u);
    for (int64_t d = 0; d < D; ++d) dst[n * D + d] = factor * static_cast<acc_t>(src[d * x.sd]);
  }
}

// dst[d * N + n] = x[b, h, token n, d].
template <typename scalar_t, typename acc_t>
void gather_key_major(const TokenView<const scalar_t>& x, int64_t b, int64_t h,
                      const Token* tokens, int64_t N, int64_t D, acc_t* dst) {
  for (int64_t n = 0; n < N; ++n) {
    const scalar_t* src = x.at(b, h, tokens[n].t, tokens[n].u);
    for (int64_t d = 0; d < D; ++d) dst[d * N + n] = static_cast<acc_t>(src[d * x.sd]);
  }
}

// x[b, h, token n, d] = src[d * N + n].
template <typename acc_t, typename scalar_t>
void scatter_key_major(const acc_t* src, int64_t b, int64_t h, const Token* tokens, int64_t N,
                       int64_t D, const TokenView<scalar_t>& x) {
  for (int64_t n = 0; n < N; ++n) {
    scalar_t* dst = x.at(b, h, tokens[n].t, tokens[n].u);
    for (int64_t d = 0; d < D; ++d) dst[d * x.sd] = static_cast<scalar_t>(src[d * N + n]);
  }
}

// Calls visit(x, y, table offset) for every query x and key y of a partition, in head h.
template <typename Visit>
void for_each_bias_entry(const Problem& p, int64_t h, Visit visit) {
  const int64_t N = p.tokens();
  for (int64_t x = 0; x < N; ++x) {
    for (int64_t y = 0; y < N; ++y) {
      visit(x, y,
            bias_offset(p.bias_kind, p.W, p.J, p.H, h, x / p.J, x % p.J, y / p.J, y % p.J));
    }
  }
}

// The bias of every head as score rows, [H, N, N] in the accumulation type (the same for all
// partitions, and small: H N^2), or an undefined tensor without bias.
template <typename scalar_t, typename acc_t>
at::Tensor expand_bias(const Problem& p, const std::optional<at::Tensor>& bias) {
  if (p.bias_kind == kNoBias) return {};
  const at::Tensor table_t = bias->contiguous();
  const scalar_t* table = table_t.const_data_ptr<scalar_t>();
  const int64_t N = p.tokens();
  at::Tensor rows_t =
      at::empty({p.H, N, N}, bias->options().dtype(stats_dtype(bias->scalar_type())));
  acc_t* rows = rows_t.mutable_data_ptr<acc_t>();
  for (int64_t h = 0; h < p.H; ++h) {
    acc_t* head = rows + h * N * N;
    for_each_bias_entry(p, h, [&](int64_t x, int64_t y, int64_t offset) {
      head[x * N + y] = static_cast<acc_t>(table[offset]);
    });
  }
  return rows_t;
}

// Head h's [N, N] rows of expand_bias, or null.
template <typename acc_t>
const acc_t* head_bias(const at::Tensor& rows, int64_t h, int64_t N) {
  return rows.defined() ? rows.const_data_ptr<acc_t>() + h * N * N : nullptr;
}

// Dropout of the probabilities: keep(e) for element number e (partition_attention_math.h);
// kept ones are scaled by 1 / (1 - p).
struct Dropout {
  bool active;
  uint32_t key, threshold;
  double keep_scale;
  Dropout(double dropout_p, int64_t seed)
      : active(dropout_p > 0), key(dropout_seed_key(static_cast<uint64_t>(seed))),
        threshold(dropout_threshold(dropout_p)), keep_scale(1.0 / (1.0 - dropout_p)) {}
  // The element number of key 0 of a query row; key y's is this + y.
  static uint64_t row_base_of(const Problem& p, int64_t b, int64_t h, const Token& query) {
    return dropout_element(p.H, p.T, p.V, p.tokens(), b, h, query.t, query.u, 0);
  }
  // The row kernels' view of the dropout of a partition-head, filling row_base (N entries).
  RowDropout rows(const Problem& p, int64_t b, int64_t h, const Token* tokens,
                  uint64_t* row_base) const {
    if (!active) return {};
    for (int64_t x = 0; x < p.tokens(); ++x) row_base[x] = row_base_of(p, b, h, tokens[x]);
    return {row_base, key, threshold};
  }
};

// The row kernels for the running CPU: float on AVX2 + FMA where skelops::cpu::use_avx2_fma()
// says so (skelops/cpu_isa.h: the build has them, the CPU supports both, SKELOPS_CPU_ISA is not
// "baseline"), everything else in the baseline build.
template <typename acc_t>
void forward_rows(const ForwardRows<acc_t>& rows) {
#if defined(SKELOPS_WITH_AVX2)
  if constexpr (std::is_same_v<acc_t, float>) {
    if (skelops::cpu::use_avx2_fma()) return avx2::forward_rows(rows);
  }
#endif
  baseline::forward_partition(rows);
}

template <typename acc_t>
void backward_rows(const BackwardRows<acc_t>& rows) {
#if defined(SKELOPS_WITH_AVX2)
  if constexpr (std::is_same_v<acc_t, float>) {
    if (skelops::cpu::use_avx2_fma()) return avx2::backward_rows(rows);
  }
#endif
  baseline::backward_partition(rows);
}

template <typename scalar_t>
void forward_impl(const Problem& p, const PartitionTokens& partitions, const at::Tensor& q,
                  const at::Tensor& k, const at::Tensor& v,
                  const std::optional<at::Tensor>& bias, double scale, const Dropout& dropout,
                  at::Tensor& out, at::Tensor& lse) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t N = p.tokens(), D = p.D, parts = p.P * p.G;
  const at::Tensor bias_rows = expand_bias<scalar_t, acc_t>(p, bias);
  const auto qv = read_view<scalar_t>(q), kv = read_view<scalar_t>(k), vv = read_view<scalar_t>(v);
  const auto ov = write_view<scalar_t>(out);
  acc_t* lse_p = lse.mutable_data_ptr<acc_t>();
  const acc_t s = static_cast<acc_t>(scale);
  const acc_t keep_scale = static_cast<acc_t>(dropout.keep_scale);
  // Tasks (b, partition, h), heads innermost: a token's heads share cache lines in the usual
  // layouts (heads sliced from one projection), so the partition's tokens are fetched from
  // memory once rather than once per head.
  at::parallel_for(0, p.B * parts * p.H, grain(N * N * (2 * D + 16)), [&](int64_t begin,
                                                                          int64_t end) {
    Scratch<acc_t> qs(N * D), kt(N * D), vt(N * D), row(N), out_rows(N * D), lse_rows(N);
    std::vector<Token> tokens(N);
    std::vector<uint64_t> row_base(dropout.active ? N : 0);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t h = task % p.H, b = task / (p.H * parts), bh = b * p.H + h;
      partitions.fill(p, (task / p.H) % parts, tokens.data());
      gather_token_major(qv, b, h, tokens.data(), N, D, s, qs.data());
      gather_key_major(kv, b, h, tokens.data(), N, D, kt.data());
      gather_key_major(vv, b, h, tokens.data(), N, D, vt.data());
      const ForwardRows<acc_t> rows{N, D, qs.data(), kt.data(), vt.data(),
                                    head_bias<acc_t>(bias_rows, h, N),
                                    dropout.rows(p, b, h, tokens.data(), row_base.data()),
                                    keep_scale, out_rows.data(), lse_rows.data(), row.data()};
      forward_rows(rows);
      for (int64_t x = 0; x < N; ++x) {
        scalar_t* o = ov.at(b, h, tokens[x].t, tokens[x].u);
        for (int64_t d = 0; d < D; ++d) o[d * ov.sd] = static_cast<scalar_t>(out_rows.data()[x * D + d]);
        lse_p[(bh * p.T + tokens[x].t) * p.V + tokens[x].u] = lse_rows.data()[x];
      }
    }
  });
}

struct GradMask {
  bool q, k, v, bias;
  bool scores() const { return q || k || bias; }  // anything that needs dS
};

template <typename scalar_t>
void backward_impl(const Problem& p, const PartitionTokens& partitions,
                   const at::Tensor& grad_out, const at::Tensor& q, const at::Tensor& k,
                   const at::Tensor& v, const at::Tensor& out, const at::Tensor& lse,
                   const std::optional<at::Tensor>& bias, double scale, const Dropout& dropout,
                   const GradMask& want, at::Tensor& grad_q,
                   at::Tensor& grad_k, at::Tensor& grad_v, at::Tensor& grad_bias) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t N = p.tokens(), D = p.D, parts = p.P * p.G;
  const at::Tensor bias_rows = expand_bias<scalar_t, acc_t>(p, bias);
  const auto qv = read_view<scalar_t>(q), kv = read_view<scalar_t>(k), vv = read_view<scalar_t>(v),
             gv = read_view<scalar_t>(grad_out), ov = read_view<scalar_t>(out);
  const auto dqv = write_view<scalar_t>(grad_q, want.q),
             dkv = write_view<scalar_t>(grad_k, want.k),
             dvv = write_view<scalar_t>(grad_v, want.v);
  const at::Tensor lse_c = lse.contiguous();  // a no-op for the forward's lse
  const acc_t* lse_p = lse_c.const_data_ptr<acc_t>();
  const int64_t table = want.bias ? grad_bias.numel() : 0;
  at::Tensor partial_t = at::zeros({want.bias ? p.B : 0, table},
                                   q.options().dtype(stats_dtype(q.scalar_type())));
  acc_t* partial = partial_t.mutable_data_ptr<acc_t>();
  const acc_t s = static_cast<acc_t>(scale);
  const acc_t keep_scale = static_cast<acc_t>(dropout.keep_scale);

  // Tasks are samples, with their partitions and, innermost, heads in order (see the header
  // comment; heads innermost for the reason the forward's are).
  at::parallel_for(0, p.B, grain(p.H * parts * N * N * (5 * D + 16)), [&](int64_t begin,
                                                                         int64_t end) {
    Scratch<acc_t> qs(N * D), kt(N * D), vt(N * D), dos(N * D), os(N * D), di(N), lse_rows(N),
        dkt(N * D), dvt(N * D), dq_rows(N * D);
    Scratch<acc_t> prob(N), dprob(N), dscore(N), keep(N);
    Scratch<acc_t> dbias_sums(want.bias ? p.H * N * N : 0);  // [H, N, N] sums of dS
    std::vector<Token> tokens(N);
    std::vector<uint64_t> row_base(dropout.active ? N : 0);
    for (int64_t b = begin; b < end; ++b) {
      if (want.bias) std::fill(dbias_sums.data(), dbias_sums.data() + p.H * N * N, acc_t(0));
      for (int64_t part = 0; part < parts; ++part) {
        partitions.fill(p, part, tokens.data());
        for (int64_t h = 0; h < p.H; ++h) {
          const int64_t bh = b * p.H + h;
          gather_token_major(qv, b, h, tokens.data(), N, D, s, qs.data());
          gather_key_major(kv, b, h, tokens.data(), N, D, kt.data());
          gather_token_major(gv, b, h, tokens.data(), N, D, acc_t(1), dos.data());
          for (int64_t x = 0; x < N; ++x) {
            lse_rows.data()[x] = lse_p[(bh * p.T + tokens[x].t) * p.V + tokens[x].u];
          }
          if (want.scores()) {
            gather_key_major(vv, b, h, tokens.data(), N, D, vt.data());
            gather_token_major(ov, b, h, tokens.data(), N, D, acc_t(1), os.data());
          }
          const BackwardRows<acc_t> rows{
              N, D, s, keep_scale, qs.data(), kt.data(), vt.data(),
              head_bias<acc_t>(bias_rows, h, N), dos.data(), os.data(), lse_rows.data(),
              dropout.rows(p, b, h, tokens.data(), row_base.data()), want.q, want.k, want.v,
              dq_rows.data(), dkt.data(), dvt.data(),
              want.bias ? dbias_sums.data() + h * N * N : nullptr, di.data(), prob.data(),
              dprob.data(), dscore.data(), keep.data()};
          backward_rows(rows);
          if (want.q) {
            for (int64_t x = 0; x < N; ++x) {
              scalar_t* dq = dqv.at(b, h, tokens[x].t, tokens[x].u);
              for (int64_t d = 0; d < D; ++d) {
                dq[d * dqv.sd] = static_cast<scalar_t>(dq_rows.data()[x * D + d]);
              }
            }
          }
          if (want.k) scatter_key_major(dkt.data(), b, h, tokens.data(), N, D, dkv);
          if (want.v) scatter_key_major(dvt.data(), b, h, tokens.data(), N, D, dvv);
        }
      }
      if (want.bias) {
        acc_t* sample = partial + b * table;
        for (int64_t h = 0; h < p.H; ++h) {
          const acc_t* sums = dbias_sums.data() + h * N * N;
          for_each_bias_entry(p, h, [&](int64_t x, int64_t y, int64_t offset) {
            sample[offset] += sums[x * N + y];
          });
        }
      }
    }
  });
  if (!want.bias) return;

  // dbias = the samples' tables summed in sample order, entry by entry.
  scalar_t* dbias = grad_bias.mutable_data_ptr<scalar_t>();
  at::parallel_for(0, table, grain(p.B), [&](int64_t begin, int64_t end) {
    for (int64_t b = 1; b < p.B; ++b) {
      const acc_t* sample = partial + b * table;
      for (int64_t e = begin; e < end; ++e) partial[e] += sample[e];
    }
    for (int64_t e = begin; e < end; ++e) dbias[e] = static_cast<scalar_t>(partial[e]);
  });
}

void check_cpu(const char* op, const at::Tensor& q) {
  TORCH_CHECK_VALUE(q.device().is_cpu(), op, ": the CPU kernel got a tensor on ", q.device());
}

std::tuple<at::Tensor, at::Tensor> partition_attention_cpu(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const at::Tensor& joint_partition, const at::Tensor& frame_partition,
    const std::optional<at::Tensor>& bias, double scale, double dropout_p, int64_t seed) {
  const char* op = "skelops::partition_attention";
  const Problem p =
      check_problem(op, q, k, v, joint_partition, frame_partition, bias, scale, dropout_p);
  check_cpu(op, q);
  const PartitionTokens partitions(joint_partition, frame_partition);
  const Dropout dropout(dropout_p, seed);
  at::Tensor out = empty_like_layout(q);
  at::Tensor lse = empty_lse(q, p);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, q.scalar_type(),
                                  "partition_attention_cpu", [&] {
                                    forward_impl<scalar_t>(p, partitions, q, k, v, bias, scale,
                                                           dropout, out, lse);
                                  });
  return {out, lse};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> partition_attention_backward_cpu(
    const at::Tensor& grad_out, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const at::Tensor& out, const at::Tensor& lse, const at::Tensor& joint_partition,
    const at::Tensor& frame_partition, const std::optional<at::Tensor>& bias, double scale,
    double dropout_p, int64_t seed, std::array<bool, 4> output_mask) {
  const char* op = "skelops::partition_attention_backward";
  const Problem p =
      check_problem(op, q, k, v, joint_partition, frame_partition, bias, scale, dropout_p);
  check_cpu(op, q);
  check_backward_inputs(op, p, q, grad_out, out, lse);
  GradientOutputs grads = empty_gradients(p, q, k, v, bias, output_mask);
  if (grads.any()) {
    const GradMask want{grads.want_q, grads.want_k, grads.want_v, grads.want_bias};
    const PartitionTokens partitions(joint_partition, frame_partition);
    const Dropout dropout(dropout_p, seed);
    AT_DISPATCH_FLOATING_TYPES_AND2(
        at::kBFloat16, at::kHalf, q.scalar_type(), "partition_attention_backward_cpu", [&] {
          backward_impl<scalar_t>(p, partitions, grad_out, q, k, v, out, lse, bias, scale,
                                  dropout, want, grads.q, grads.k, grads.v, grads.bias);
        });
  }
  return grads.as_tuple();
}

}  // namespace

TORCH_LIBRARY_IMPL(skelops, CPU, m) {
  m.impl("partition_attention", &partition_attention_cpu);
  m.impl("partition_attention_backward", &partition_attention_backward_cpu);
}

}  // namespace skelops::partition_attention
