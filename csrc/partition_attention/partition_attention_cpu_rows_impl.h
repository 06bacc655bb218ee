// The loops of partition_attention_cpu_rows.h, defined in namespace
// skelops::partition_attention::SKELOPS_PARTITION_ATTENTION_ISA: included once per instruction
// set by the translation unit compiled for it (hence no include guard). Everything here is
// torch-free and uses no library templates, so that the AVX2 copy shares no weak symbol with
// the baseline one.
#include "partition_attention/partition_attention_cpu_rows.h"
#include "partition_attention/partition_attention_math.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#ifndef SKELOPS_PARTITION_ATTENTION_ISA
#error "define SKELOPS_PARTITION_ATTENTION_ISA before including this file"
#endif

namespace skelops::partition_attention::SKELOPS_PARTITION_ATTENTION_ISA {

// Interleaved partial results of a reduction over a row of keys: one AVX2 vector, or two SSE
// vectors, of floats (the same order in both builds).
constexpr int64_t kLanes = 8;

template <typename acc_t>
inline acc_t max_of(acc_t a, acc_t b) {
  return a < b ? b : a;
}

template <typename acc_t>
inline acc_t min_of(acc_t a, acc_t b) {
  return b < a ? b : a;
}

// e^x for float x in [kExpMin, kExpMax], as plain arithmetic so that the loops over a score row
// vectorise (glibc's expf is a scalar call without -ffast-math, and it would take most of the
// kernels' time): e^x = 2^n e^r with n = round(x / ln 2) and r = x - n ln 2 in
// [-ln 2 / 2, ln 2 / 2] (ln 2 split in two so that n * kLn2High is exact), e^r from its degree-7
// Taylor polynomial, whose truncation error r^8 / 8! < 5.3e-9 is below float's rounding (the
// result is within 1.2 ulp of e^x). n is read from the bits of x / ln 2 + 1.5 * 2^23, whose
// low mantissa bits hold the rounded integer, rather than by a float-to-int conversion; at
// x = -88, n = -127 gives the power of two 0 (e^x is below float's normal range from -87.3).
// A NaN x gives NaN. With FMA contraction (the AVX2 build) r and the polynomial are rounded
// once per step instead of twice, which only tightens the bound.
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
      [](acc_t x, acc_t y) { return max_of(x, y); });
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
  if constexpr (sizeof(acc_t) == sizeof(float)) {
    // The clamp has a pass of its own: inside the exp loop, the compiler turns the clamped case
    // (a constant result) into a branch and then does not vectorise the loop.
    for (int64_t j = 0; j < n; ++j) a[j] = min_of(max_of(a[j] - shift, kExpMin), kExpMax);
    for (int64_t j = 0; j < n; ++j) a[j] = exp_in_range(a[j]);
  } else {  // float64 is the checking dtype: the exact exp
    for (int64_t j = 0; j < n; ++j) a[j] = std::exp(a[j] - shift);
  }
}

inline bool kept(const RowDropout& dropout, uint64_t element) {
  return dropout_bits(dropout.key, element) >= dropout.threshold;
}

template <typename acc_t>
void forward_partition(const ForwardRows<acc_t>& a) {
  const int64_t N = a.N, D = a.D;
  acc_t* e = a.row;
  for (int64_t x = 0; x < N; ++x) {
    combine_rows(a.qs + x * D, a.kt, a.bias ? a.bias + x * N : nullptr, N, D, e);
    const acc_t m = row_max(e, N);
    exp_shifted(m, N, e);
    const acc_t l = row_sum(e, N);
    if (a.dropout.row_base != nullptr) {
      const uint64_t base = a.dropout.row_base[x];
      for (int64_t y = 0; y < N; ++y) e[y] = kept(a.dropout, base + y) ? e[y] : acc_t(0);
    }
    const acc_t norm = a.keep_scale / l;
    for (int64_t d = 0; d < D; ++d) a.out[x * D + d] = row_dot(e, a.vt + d * N, N) * norm;
    a.lse[x] = m + std::log(l);
  }
}

template <typename acc_t>
void backward_partition(const BackwardRows<acc_t>& a) {
  const int64_t N = a.N, D = a.D;
  const bool scores = a.want_q || a.want_k || a.dbias != nullptr;  // anything that needs dS
  const bool drop = a.dropout.row_base != nullptr;
  if (scores) {
    // Di_x = dO_x . O_x summed as combine_rows sums dP_xy = dO_x . v_y (first product, then
    // multiply-adds in d order), so that both round alike under FMA contraction: with a single
    // key O_x = v_y, and dS = P (dP - Di) is then exactly 0.
    for (int64_t x = 0; x < N; ++x) {
      const acc_t* do_x = a.dos + x * D;
      const acc_t* o_x = a.os + x * D;
      acc_t sum = do_x[0] * o_x[0];
      for (int64_t d = 1; d < D; ++d) sum += do_x[d] * o_x[d];
      a.di[x] = sum;
    }
  }
  if (a.want_k) {
    for (int64_t i = 0; i < N * D; ++i) a.dkt[i] = 0;
  }
  if (a.want_v) {
    for (int64_t i = 0; i < N * D; ++i) a.dvt[i] = 0;
  }
  for (int64_t x = 0; x < N; ++x) {
    const acc_t* do_x = a.dos + x * D;
    acc_t* pr = a.prob;
    combine_rows(a.qs + x * D, a.kt, a.bias ? a.bias + x * N : nullptr, N, D, pr);
    exp_shifted(a.lse[x], N, pr);
    acc_t* ks = a.keep;
    if (drop) {
      const uint64_t base = a.dropout.row_base[x];
      for (int64_t y = 0; y < N; ++y) ks[y] = kept(a.dropout, base + y) ? a.keep_scale : acc_t(0);
    }
    if (a.want_v) {
      const acc_t* kept_p = pr;
      if (drop) {
        acc_t* scaled = a.dscore;  // free until dS is formed below
        for (int64_t y = 0; y < N; ++y) scaled[y] = pr[y] * ks[y];
        kept_p = scaled;
      }
      for (int64_t d = 0; d < D; ++d) add_scaled(kept_p, do_x[d], N, a.dvt + d * N);
    }
    if (!scores) continue;
    acc_t* dp = a.dprob;
    acc_t* ds = a.dscore;
    combine_rows(do_x, a.vt, static_cast<const acc_t*>(nullptr), N, D, dp);
    if (drop) {
      for (int64_t y = 0; y < N; ++y) dp[y] *= ks[y];
    }
    const acc_t di_x = a.di[x];
    for (int64_t y = 0; y < N; ++y) ds[y] = pr[y] * (dp[y] - di_x);
    if (a.want_k) {
      for (int64_t d = 0; d < D; ++d) add_scaled(ds, a.qs[x * D + d], N, a.dkt + d * N);
    }
    if (a.want_q) {
      for (int64_t d = 0; d < D; ++d) a.dq[x * D + d] = a.scale * row_dot(ds, a.kt + d * N, N);
    }
    if (a.dbias != nullptr) add_scaled(ds, acc_t(1), N, a.dbias + x * N);
  }
}

}  // namespace skelops::partition_attention::SKELOPS_PARTITION_ATTENTION_ISA
