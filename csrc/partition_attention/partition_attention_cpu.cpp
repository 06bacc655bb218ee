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
// Reductions over the keys (row max, sums, dots) keep kLanes independent partial results: the
// compiler vectorises them without reassociating (the build has no -ffast-math), and their
// order depends on N only. The float exp is a polynomial written to vectorise (exp_in_range).
// The forward runs the (b, p, g, h) partition-heads in parallel. The backward runs samples in
// parallel, and a sample's partitions and heads in order, because dbias sums dS over all of
// them: a sample adds its per-head N x N sums of dS into a table of its own, and the B tables
// are summed in order afterwards, so no result depends on the thread count.
#include "partition_attention/partition_attention_common.h"
#include "partition_attention/partition_attention_math.h"

#include <skelops/cpu_tiles.h>

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <tuple>
#include <type_traits>
#include <vector>

namespace skelops::partition_attention {
namespace {

using skelops::cpu::Scratch;

// Interleaved partial results of a reduction over a row of keys: two SSE vectors of floats.
constexpr int64_t kLanes = 8;

// Tasks per parallel_for chunk: at least ~64k multiply-adds, so that small problems run on the
// calling thread (waking a second one costs more than they take).
int64_t grain(int64_t work_per_task) {
  constexpr int64_t kMinParallelWork = int64_t{1} << 16;
  return std::max<int64_t>(1, kMinParallelWork / std::max<int64_t>(1, work_per_task));
}

// e^x for float x in [kExpMin, kExpMax], as plain arithmetic so that the loops over a score row
// vectorise (glibc's expf is a scalar call without -ffast-math, and it would take most of the
// kernels' time): e^x = 2^n e^r with n = round(x / ln 2) and r = x - n ln 2 in
// [-ln 2 / 2, ln 2 / 2] (ln 2 split in two so that n * kLn2High is exact), e^r from its degree-7
// Taylor polynomial, whose truncation error r^8 / 8! < 5.3e-9 is below float's rounding (the
// result is within 1.2 ulp of e^x). n is read from the bits of x / ln 2 + 1.5 * 2^23, whose
// low mantissa bits hold the rounded integer, rather than by a float-to-int conversion; at
// x = -88, n = -127 gives the power of two 0 (e^x is below float's normal range from -87.3).
// A NaN x gives NaN.
constexpr float kExpMin = -88.0f, kExpMax = 88.0f;

inline float exp_in_range(float x) {
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2High = 0.693145751953125f;  // 45426 / 2^16
  constexpr float kLn2Low = 1.42860682030941723e-6f;
  constexpr float kRoundToInteger = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float shifted = x * kLog2e + kRoundToInteger;
  const float n = shifted - kRoundToInteger;
  int32_t shifted_bits, round_bits;
  std::memcpy(&shifted_bits, &shifted, sizeof(shifted));
  std::memcpy(&round_bits, &kRoundToInteger, sizeof(kRoundToInteger));
  const float r = (x - n * kLn2High) - n * kLn2Low;
  float poly = 1.0f / 5040.0f;
  poly = poly * r + 1.0f / 720.0f;
  poly = poly * r + 1.0f / 120.0f;
  poly = poly * r + 1.0f / 24.0f;
  poly = poly * r + 1.0f / 6.0f;
  poly = poly * r + 0.5f;
  poly = poly * r + 1.0f;
  poly = poly * r + 1.0f;
  const uint32_t power_bits = static_cast<uint32_t>(shifted_bits - round_bits + 127) << 23;
  float power;
  std::memcpy(&power, &power_bits, sizeof(power));
  return poly * power;
}

// Reduces term(j) over j < n with `combine`, in kLanes interleaved partial results (the tail
// goes to lane 0, so that the lanes are fixed registers) combined pairwise at the end.
template <typename acc_t, typename Term, typename Combine>
acc_t lane_reduce(int64_t n, acc_t init, Term term, Combine combine) {
  acc_t lane[kLanes];
  for (int64_t l = 0; l < kLanes; ++l) lane[l] = init;
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    for (int64_t l = 0; l < kLanes; ++l) lane[l] = combine(lane[l], term(j + l));
  }
  for (; j < n; ++j) lane[0] = combine(lane[0], term(j));
  // Pairwise halving: log2(kLanes) dependent steps, which vectorise like the loop above.
  for (int64_t width = kLanes / 2; width > 0; width /= 2) {
    for (int64_t l = 0; l < width; ++l) lane[l] = combine(lane[l], lane[l + width]);
  }
  return lane[0];
}

template <typename acc_t>
acc_t row_dot(const acc_t* a, const acc_t* b, int64_t n) {
  return lane_reduce<acc_t>(
      n, acc_t(0), [&](int64_t j) { return a[j] * b[j]; },
      [](acc_t x, acc_t y) { return x + y; });
}

template <typename acc_t>
acc_t row_sum(const acc_t* a, int64_t n) {
  return lane_reduce<acc_t>(
      n, acc_t(0), [&](int64_t j) { return a[j]; }, [](acc_t x, acc_t y) { return x + y; });
}

template <typename acc_t>
acc_t row_max(const acc_t* a, int64_t n) {
  return lane_reduce<acc_t>(
      n, -std::numeric_limits<acc_t>::infinity(), [&](int64_t j) { return a[j]; },
      [](acc_t x, acc_t y) { return x < y ? y : x; });
}

// dst[j] = init[j] (0 without init) + sum_d coeffs[d] * rows[d * n + j]: a query row against
// the key-major k (the scores) or a dO row against the key-major v.
template <typename acc_t>
void combine_rows(const acc_t* coeffs, const acc_t* rows, const acc_t* init, int64_t n,
                  int64_t D, acc_t* dst) {
  const acc_t c0 = coeffs[0];
  if (init != nullptr) {
    for (int64_t j = 0; j < n; ++j) dst[j] = init[j] + c0 * rows[j];
  } else {
    for (int64_t j = 0; j < n; ++j) dst[j] = c0 * rows[j];
  }
  for (int64_t d = 1; d < D; ++d) {
    const acc_t c = coeffs[d];
    const acc_t* row = rows + d * n;
    for (int64_t j = 0; j < n; ++j) dst[j] += c * row[j];
  }
}

template <typename acc_t>
void add_scaled(const acc_t* src, acc_t factor, int64_t n, acc_t* dst) {
  for (int64_t j = 0; j < n; ++j) dst[j] += factor * src[j];
}

// a[j] = exp(a[j] - shift), where the shift is the row's max or log-sum-exp (so that the
// arguments are <= 0 up to rounding).
template <typename acc_t>
void exp_shifted(acc_t shift, int64_t n, acc_t* a) {
  if constexpr (std::is_same_v<acc_t, float>) {
    // The clamp has a pass of its own: inside the exp loop, the compiler turns the clamped case
    // (a constant result) into a branch and then does not vectorise the loop.
    for (int64_t j = 0; j < n; ++j) a[j] = std::min(std::max(a[j] - shift, kExpMin), kExpMax);
    for (int64_t j = 0; j < n; ++j) a[j] = exp_in_range(a[j]);
  } else {  // float64 is the checking dtype: the exact exp
    for (int64_t j = 0; j < n; ++j) a[j] = std::exp(a[j] - shift);
  }
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
  static uint64_t row_base(const Problem& p, int64_t b, int64_t h, const Token& query) {
    return dropout_element(p.H, p.T, p.V, p.tokens(), b, h, query.t, query.u, 0);
  }
  bool keep(uint64_t element) const { return dropout_bits(key, element) >= threshold; }
};

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
    Scratch<acc_t> qs(N * D), kt(N * D), vt(N * D), row(N);
    std::vector<Token> tokens(N);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t h = task % p.H, b = task / (p.H * parts), bh = b * p.H + h;
      partitions.fill(p, (task / p.H) % parts, tokens.data());
      gather_token_major(qv, b, h, tokens.data(), N, D, s, qs.data());
      gather_key_major(kv, b, h, tokens.data(), N, D, kt.data());
      gather_key_major(vv, b, h, tokens.data(), N, D, vt.data());
      const acc_t* bias_h = head_bias<acc_t>(bias_rows, h, N);
      acc_t* e = row.data();
      for (int64_t x = 0; x < N; ++x) {
        combine_rows(qs.data() + x * D, kt.data(), bias_h ? bias_h + x * N : nullptr, N, D, e);
        const acc_t m = row_max(e, N);
        exp_shifted(m, N, e);
        const acc_t l = row_sum(e, N);
        if (dropout.active) {
          const uint64_t base = Dropout::row_base(p, b, h, tokens[x]);
          for (int64_t y = 0; y < N; ++y) e[y] = dropout.keep(base + y) ? e[y] : acc_t(0);
        }
        const acc_t norm = keep_scale / l;
        scalar_t* o = ov.at(b, h, tokens[x].t, tokens[x].u);
        for (int64_t d = 0; d < D; ++d) {
          o[d * ov.sd] = static_cast<scalar_t>(row_dot(e, vt.data() + d * N, N) * norm);
        }
        lse_p[(bh * p.T + tokens[x].t) * p.V + tokens[x].u] = m + std::log(l);
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
    Scratch<acc_t> qs(N * D), kt(N * D), vt(N * D), dos(N * D), di(N), dkt(N * D), dvt(N * D);
    Scratch<acc_t> prob(N), dprob(N), dscore(N), keep(N);
    Scratch<acc_t> dbias_sums(want.bias ? p.H * N * N : 0);  // [H, N, N] sums of dS
    std::vector<Token> tokens(N);
    for (int64_t b = begin; b < end; ++b) {
      if (want.bias) std::fill(dbias_sums.data(), dbias_sums.data() + p.H * N * N, acc_t(0));
      for (int64_t part = 0; part < parts; ++part) {
        partitions.fill(p, part, tokens.data());
        for (int64_t h = 0; h < p.H; ++h) {
          const int64_t bh = b * p.H + h;
          const acc_t* bias_h = head_bias<acc_t>(bias_rows, h, N);
          acc_t* head_dbias = want.bias ? dbias_sums.data() + h * N * N : nullptr;
          gather_token_major(qv, b, h, tokens.data(), N, D, s, qs.data());
          gather_key_major(kv, b, h, tokens.data(), N, D, kt.data());
          gather_token_major(gv, b, h, tokens.data(), N, D, acc_t(1), dos.data());
          if (want.scores()) {
            gather_key_major(vv, b, h, tokens.data(), N, D, vt.data());
            for (int64_t x = 0; x < N; ++x) {
              const scalar_t* o = ov.at(b, h, tokens[x].t, tokens[x].u);
              const acc_t* do_x = dos.data() + x * D;
              acc_t sum = 0;
              for (int64_t d = 0; d < D; ++d) sum += do_x[d] * static_cast<acc_t>(o[d * ov.sd]);
              di.data()[x] = sum;
            }
          }
          if (want.k) std::fill(dkt.data(), dkt.data() + N * D, acc_t(0));
          if (want.v) std::fill(dvt.data(), dvt.data() + N * D, acc_t(0));
          for (int64_t x = 0; x < N; ++x) {
            const acc_t* do_x = dos.data() + x * D;
            acc_t* pr = prob.data();
            combine_rows(qs.data() + x * D, kt.data(), bias_h ? bias_h + x * N : nullptr, N, D,
                         pr);
            exp_shifted(lse_p[(bh * p.T + tokens[x].t) * p.V + tokens[x].u], N, pr);
            acc_t* ks = keep.data();
            if (dropout.active) {
              const uint64_t base = Dropout::row_base(p, b, h, tokens[x]);
              for (int64_t y = 0; y < N; ++y) {
                ks[y] = dropout.keep(base + y) ? keep_scale : acc_t(0);
              }
            }
            if (want.v) {
              const acc_t* kept = pr;
              if (dropout.active) {
                acc_t* scaled = dscore.data();  // free until dS is formed below
                for (int64_t y = 0; y < N; ++y) scaled[y] = pr[y] * ks[y];
                kept = scaled;
              }
              for (int64_t d = 0; d < D; ++d) add_scaled(kept, do_x[d], N, dvt.data() + d * N);
            }
            if (!want.scores()) continue;
            acc_t* dp = dprob.data();
            acc_t* ds = dscore.data();
            combine_rows(do_x, vt.data(), static_cast<const acc_t*>(nullptr), N, D, dp);
            if (dropout.active) {
              for (int64_t y = 0; y < N; ++y) dp[y] *= ks[y];
            }
            const acc_t di_x = di.data()[x];
            for (int64_t y = 0; y < N; ++y) ds[y] = pr[y] * (dp[y] - di_x);
            if (want.k) {
              for (int64_t d = 0; d < D; ++d) {
                add_scaled(ds, qs.data()[x * D + d], N, dkt.data() + d * N);
              }
            }
            if (want.q) {
              scalar_t* dq = dqv.at(b, h, tokens[x].t, tokens[x].u);
              for (int64_t d = 0; d < D; ++d) {
                dq[d * dqv.sd] = static_cast<scalar_t>(s * row_dot(ds, kt.data() + d * N, N));
              }
            }
            if (want.bias) add_scaled(ds, acc_t(1), N, head_dbias + x * N);
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
  at::Tensor lse = at::empty({p.B, p.H, p.T, p.V}, q.options().dtype(stats_dtype(q.scalar_type())));
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
  const GradMask want{output_mask[0], output_mask[1], output_mask[2],
                      output_mask[3] && p.bias_kind != kNoBias};
  at::Tensor grad_q = want.q ? empty_like_layout(q) : empty_like_none(q);
  at::Tensor grad_k = want.k ? empty_like_layout(k) : empty_like_none(q);
  at::Tensor grad_v = want.v ? empty_like_layout(v) : empty_like_none(q);
  at::Tensor grad_bias = want.bias ? at::empty(bias->sizes(), bias->options()) : empty_like_none(q);
  if (want.q || want.k || want.v || want.bias) {
    const PartitionTokens partitions(joint_partition, frame_partition);
    const Dropout dropout(dropout_p, seed);
    AT_DISPATCH_FLOATING_TYPES_AND2(
        at::kBFloat16, at::kHalf, q.scalar_type(), "partition_attention_backward_cpu", [&] {
          backward_impl<scalar_t>(p, partitions, grad_out, q, k, v, out, lse, bias, scale,
                                  dropout, want, grad_q, grad_k, grad_v, grad_bias);
        });
  }
  return {grad_q, grad_k, grad_v, grad_bias};
}

}  // namespace

TORCH_LIBRARY_IMPL(skelops, CPU, m) {
  m.impl("partition_attention", &partition_attention_cpu);
  m.impl("partition_attention_backward", &partition_attention_backward_cpu);
}

}  // namespace skelops::partition_attention
