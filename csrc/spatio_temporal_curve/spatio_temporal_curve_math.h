// Per-element math of spatio-temporal curves shared by the C++ CPU loops and the CUDA kernels.
//
// Convention: x[n, c, t, v], key[n, d, t, v]. Transition t (t < T - 1) scores joint v of frame
// t against candidate w of frame t + 1, s_t(v, w) = scale * sum_d key[n, d, t, v] key[n, d,
// t + 1, w]; next_t(v) = argmax_w s_t(v, w) (lowest w on ties), log_normalizer_t(v) =
// logsumexp_w s_t(v, w), log_prob_t(v) = s_t(v, next_t(v)) - log_normalizer_t(v). The curve
// from (t, v) visits p_0 = v, p_i = next_{t+i-1}(p_{i-1}) for i <= min(length, T - 1 - t),
// with weights pi_i = exp(sum_{j <= i} log_prob_{t+j-1}(p_{j-1})):
//   y[n, c, t, v] = sum_i pi_i x[n, c, t + i, p_i]
#pragma once

#include <skelops/common.h>

#include <cmath>
#include <cstdint>

namespace skelops::spatio_temporal_curve {

SKELOPS_HD float exp_acc(float v) { return expf(v); }
SKELOPS_HD double exp_acc(double v) { return exp(v); }
SKELOPS_HD float log_acc(float v) { return logf(v); }
SKELOPS_HD double log_acc(double v) { return log(v); }

// Steps of the curve that starts at frame t: curves stop at the last frame. `steps` is
// min(length, T - 1), the longest curve.
SKELOPS_HD int64_t curve_steps(int64_t steps, int64_t T, int64_t t) {
  return steps < T - 1 - t ? steps : T - 1 - t;
}

// The best candidate of a score row so far. The argmax is taken like torch.argmax: a NaN
// beats every number (the first NaN wins), otherwise the larger score, the lower joint on ties.
template <typename acc_t>
struct RowBest {
  acc_t score;
  int32_t joint;
};

template <typename acc_t>
SKELOPS_HD bool better(const RowBest<acc_t>& b, const RowBest<acc_t>& a) {
  const bool b_nan = b.score != b.score, a_nan = a.score != a.score;
  if (b_nan || a_nan) return b_nan && (!a_nan || b.joint < a.joint);
  return b.score > a.score || (b.score == a.score && b.joint < a.joint);
}

// One step along a curve: from `*joint` at `frame`, to next_{frame}(*joint); the step's
// log-probability is added to `*log_weight`. next_n / log_prob_n are one sample's [T - 1, V].
template <typename acc_t, typename stat_t>
SKELOPS_HD void curve_step(const int32_t* next_n, const stat_t* log_prob_n, int64_t V,
                           int64_t frame, int32_t* joint, acc_t* log_weight) {
  const int64_t i = frame * V + *joint;
  *log_weight += static_cast<acc_t>(log_prob_n[i]);
  *joint = next_n[i];
}

// d loss / d s_t(u, w) for the candidate w of u, where r = d loss / d log_prob_t(u):
// log_prob_t(u) = s_t(u, next) - logsumexp_w s_t(u, w), so the derivative is
// r * (1[w = next] - softmax_w s_t(u, w)).
template <typename acc_t>
SKELOPS_HD acc_t score_grad(acc_t r, bool chosen, acc_t score, acc_t log_normalizer) {
  return r * ((chosen ? acc_t(1) : acc_t(0)) - exp_acc(score - log_normalizer));
}

}  // namespace skelops::spatio_temporal_curve
