// C++ CPU kernels of skelops::spatio_temporal_curve and its backward.
//
// Forward, in three parallel passes (each writes only its own outputs; no locks):
//   1. transitions, per (sample, block of frame pairs): the block's key frames are copied once
//      into cache-resident scratch ([D, frames, V], any stride layout of key works); for each
//      frame pair the V x V scores are one small GEMM into a V x V scratch, reduced row by row
//      over the candidates to (next joint, log-probability, log-normaliser). Only that scratch
//      ever holds scores.
//   2. curves, per (sample, frame): the joints p_i and weights pi_i of every curve, a
//      [N, T, L + 1, V] table (L = min(length, T - 1)), tiny next to x.
//   3. aggregation, per (sample, block of 16 channels), frame by frame: the frames a curve
//      can reach, [t, t + L], are kept joint-major ([V, 16] each) in an L1-resident ring, so
//      that y[t, v, :] = sum_i pi_i x[t + i, p_i, :] reads one table entry per step and moves a
//      contiguous (vectorised) run of channels; x is read once and y written once.
// Backward (g = grad_out), from the saved transition statistics and the same curve table:
//   per (sample, block of 16 channels), frame by frame with rings like the forward:
//     dx[t + i, p_i, :] += pi_i g[t, v, :] scattered into the ring (one writer, a fixed order;
//     frame t is complete after step t), and the block's partial
//     h_i(t, v) = <g[t, v, :], x[t + i, p_i, :]>;
//   per sample: the partials summed in block order, G_j = sum_{i >= j} pi_i h_i (the gradient
//     of the curve's log-weight through step j), and R[t', u] = sum of G_j over the curve
//     steps that leave (t', u);
//   key, per (sample, block of frames): for every transition touching the block, the scores
//     are recomputed (one GEMM), dS[u, w] = scale * R[u] (1[w = next(u)] - softmax(u, w)) on
//     the candidates (rows without a curve step, most of them, stay zero: no exp), and
//     dkey[t'] += K[t' + 1] dS^T, dkey[t' + 1] += K[t'] dS (two GEMMs), kept only for the
//     block's own frames: a transition on a block boundary is recomputed by both blocks, so
//     that every dkey frame has one writer.
// Channel blocks have a fixed size (not a function of the thread count), so results do not
// depend on the number of threads.
#include "spatio_temporal_curve/spatio_temporal_curve_common.h"
#include "spatio_temporal_curve/spatio_temporal_curve_math.h"

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

#if defined(__SSE2__)
#include <xmmintrin.h>
#endif

namespace skelops::spatio_temporal_curve {
namespace {

using namespace skelops::cpu;

// Channels per task of the aggregation passes: a joint-major frame block is [V, 16] (1.6 KB
// at V = 25), so the rings of L + 1 frames stay in L1.
constexpr int64_t kChannelBlock = 16;

// Tasks per parallel_for chunk: at least ~64k multiply-adds, so that small problems run on the
// calling thread (waking a second one costs more than they take).
int64_t grain(int64_t work_per_task) {
  constexpr int64_t kMinParallelWork = int64_t{1} << 16;
  return std::max<int64_t>(1, kMinParallelWork / std::max<int64_t>(1, work_per_task));
}

// The candidates w of every joint v, in increasing order: joints[offsets[v] .. offsets[v + 1]).
struct CandidateLists {
  std::vector<int32_t> offsets, joints;
};

CandidateLists candidate_lists(const std::optional<at::Tensor>& candidates, const Problem& p) {
  CandidateLists lists;
  lists.offsets.reserve(p.V + 1);
  lists.offsets.push_back(0);
  const at::Tensor mask = p.has_candidates ? candidates->contiguous() : at::Tensor();
  const bool* m = p.has_candidates ? mask.const_data_ptr<bool>() : nullptr;
  for (int64_t v = 0; v < p.V; ++v) {
    for (int64_t w = 0; w < p.V; ++w) {
      if (m == nullptr || m[v * p.V + w]) lists.joints.push_back(static_cast<int32_t>(w));
    }
    lists.offsets.push_back(static_cast<int32_t>(lists.joints.size()));
  }
  return lists;
}

// Key frames [f0, f0 + frames) of sample n as scratch [D, frames, V].
template <typename scalar_t, typename acc_t>
void load_key_frames(const at::Tensor& key, int64_t n, int64_t f0, int64_t frames,
                     const Problem& p, acc_t* dst) {
  load_tile(key.const_data_ptr<scalar_t>() + n * key.stride(0) + f0 * key.stride(2),
            key.stride(1), key.stride(2), key.stride(3), p.D, frames, p.V, dst);
}

// scores[u, w] = sum_d K[d, a, u] K[d, a + 1, w] for frames a, a + 1 of a [D, frames, V]
// scratch (unscaled).
template <typename acc_t>
void frame_pair_scores(const acc_t* ks, int64_t frames, int64_t a, const Problem& p,
                       acc_t* scores) {
  const int64_t ld = frames * p.V;
  gemm_rm<acc_t>(true, false, p.V, p.V, p.D, ks + a * p.V, ld, ks + (a + 1) * p.V, ld, 0, scores,
                 p.V);
}

// Pass 1 of the forward: next_joint, log_prob and log_normalizer [N, T - 1, V].
template <typename scalar_t, typename acc_t>
void transitions_impl(const Problem& p, const at::Tensor& key, const CandidateLists& lists,
                      acc_t scale, int32_t* next, acc_t* log_prob, acc_t* log_normalizer) {
  const int64_t P = p.T - 1, V = p.V;
  const int64_t tb = frames_per_tile(p.N, P, p.D * V + V, sizeof(acc_t));
  const int64_t tiles = ceil_div(P, tb);
  at::parallel_for(0, p.N * tiles, grain(tb * V * V * p.D), [&](int64_t begin, int64_t end) {
    const SequentialBlas sequential;
    Scratch<acc_t> ks(p.D * (tb + 1) * V), scores(V * V);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / tiles, t0 = (task % tiles) * tb;
      const int64_t tl = std::min(tb, P - t0);
      load_key_frames<scalar_t>(key, n, t0, tl + 1, p, ks.data());
      for (int64_t a = 0; a < tl; ++a) {
        frame_pair_scores(ks.data(), tl + 1, a, p, scores.data());
        const int64_t row0 = (n * P + t0 + a) * V;
        for (int64_t u = 0; u < V; ++u) {
          const acc_t* s = scores.data() + u * V;
          const int32_t* cand = lists.joints.data() + lists.offsets[u];
          const int64_t count = lists.offsets[u + 1] - lists.offsets[u];
          RowBest<acc_t> best{scale * s[cand[0]], cand[0]};
          for (int64_t k = 1; k < count; ++k) {
            const RowBest<acc_t> here{scale * s[cand[k]], cand[k]};
            if (better(here, best)) best = here;
          }
          acc_t sum = 0;
          for (int64_t k = 0; k < count; ++k) sum += exp_acc(scale * s[cand[k]] - best.score);
          const acc_t log_sum = log_acc(sum);
          next[row0 + u] = best.joint;
          log_prob[row0 + u] = -log_sum;  // s(u, next) - (max + log sum) with max = s(u, next)
          log_normalizer[row0 + u] = best.score + log_sum;
        }
      }
    }
  });
}

// The curve from every (n, t, v): joints[((n * T + t) * (L + 1) + i) * V + v] = p_i and
// weights[...] = pi_i for i <= min(L, T - 1 - t). The step probabilities exp(log_prob) are
// taken once per transition (into `probs`, [N, T - 1, V]) and multiplied along the curves,
// rather than one exp per curve step.
template <typename acc_t>
void curve_table(const Problem& p, const int32_t* next, const acc_t* log_prob, acc_t* probs,
                 int32_t* joints, acc_t* weights) {
  const int64_t V = p.V, L1 = p.steps + 1, P = p.T - 1;
  at::parallel_for(0, p.N * P * V, grain(16), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) probs[i] = exp_acc(log_prob[i]);
  });
  at::parallel_for(0, p.N * p.T, grain(V * L1), [&](int64_t begin, int64_t end) {
    for (int64_t nt = begin; nt < end; ++nt) {
      const int64_t n = nt / p.T, t = nt % p.T;
      const int64_t steps = curve_steps(p.steps, p.T, t);
      int32_t* pj = joints + nt * L1 * V;
      acc_t* pw = weights + nt * L1 * V;
      for (int64_t v = 0; v < V; ++v) {
        int32_t joint = static_cast<int32_t>(v);
        acc_t weight = 1;
        pj[v] = joint;
        pw[v] = weight;
        for (int64_t i = 1; i <= steps; ++i) {
          const int64_t at = (n * P + t + i - 1) * V + joint;
          weight *= probs[at];
          joint = next[at];
          pj[i * V + v] = joint;
          pw[i * V + v] = weight;
        }
      }
    }
  });
}

// dst[j * ldd + i] = src[i * lds + j] for i < rows, j < cols: 4 x 4 SSE blocks where the
// element types are float (x86), a scalar loop otherwise.
template <typename src_t, typename dst_t>
void transpose(const src_t* src, int64_t lds, int64_t rows, int64_t cols, dst_t* dst,
               int64_t ldd) {
  int64_t i = 0;
#if defined(__SSE2__)
  if constexpr (std::is_same_v<src_t, float> && std::is_same_v<dst_t, float>) {
    for (; i + 4 <= rows; i += 4) {
      int64_t j = 0;
      for (; j + 4 <= cols; j += 4) {
        __m128 r0 = _mm_loadu_ps(src + i * lds + j), r1 = _mm_loadu_ps(src + (i + 1) * lds + j),
               r2 = _mm_loadu_ps(src + (i + 2) * lds + j),
               r3 = _mm_loadu_ps(src + (i + 3) * lds + j);
        _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
        _mm_storeu_ps(dst + j * ldd + i, r0);
        _mm_storeu_ps(dst + (j + 1) * ldd + i, r1);
        _mm_storeu_ps(dst + (j + 2) * ldd + i, r2);
        _mm_storeu_ps(dst + (j + 3) * ldd + i, r3);
      }
      for (; j < cols; ++j) {
        for (int64_t k = i; k < i + 4; ++k) dst[j * ldd + k] = src[k * lds + j];
      }
    }
  }
#endif
  for (; i < rows; ++i) {
    for (int64_t j = 0; j < cols; ++j) dst[j * ldd + i] = static_cast<dst_t>(src[i * lds + j]);
  }
}

// Frame f of channels [c0, c0 + cb) of sample n of a [N, C, T, V] tensor into joint-major
// scratch dst[v * cb + c] (a [V, cb] block: one curve step then moves a contiguous run of
// channels).
template <typename scalar_t, typename acc_t>
void load_frame(const at::Tensor& t, int64_t n, int64_t c0, int64_t cb, int64_t f, int64_t V,
                acc_t* dst) {
  const scalar_t* src =
      t.const_data_ptr<scalar_t>() + n * t.stride(0) + c0 * t.stride(1) + f * t.stride(2);
  const int64_t sc = t.stride(1), sv = t.stride(3);
  if (sv == 1) {
    transpose(src, sc, cb, V, dst, cb);
  } else if (sc == 1) {  // channels last: runs of channels
    for (int64_t v = 0; v < V; ++v) {
      for (int64_t c = 0; c < cb; ++c) dst[v * cb + c] = static_cast<acc_t>(src[v * sv + c]);
    }
  } else {
    for (int64_t c = 0; c < cb; ++c) {
      for (int64_t v = 0; v < V; ++v) dst[v * cb + c] = static_cast<acc_t>(src[c * sc + v * sv]);
    }
  }
}

// A joint-major [V, cb] block back into frame f of channels [c0, c0 + cb) of sample n of a
// contiguous [N, C, T, V] tensor.
template <typename acc_t, typename scalar_t>
void store_frame(const acc_t* src, int64_t n, int64_t c0, int64_t cb, int64_t f, const Problem& p,
                 scalar_t* dst) {
  transpose(src, cb, p.V, cb, dst + ((n * p.C + c0) * p.T + f) * p.V, p.T * p.V);
}

// The frames a curve can reach, [t, t + L], as a ring of L + 1 joint-major [V, cb] blocks:
// the passes walk the frames in order, so x is read once, each output frame is written once,
// and the working set stays in L1.
template <typename acc_t>
struct FrameRing {
  Scratch<acc_t> storage;
  int64_t frames, block;
  std::vector<acc_t*> window;  // slots of frames t .. t + L, set by from()
  FrameRing(int64_t frames, int64_t block)
      : storage(frames * block), frames(frames), block(block), window(frames) {}
  acc_t* operator[](int64_t f) { return storage.data() + (f % frames) * block; }
  // The slots of frames t, t + 1, ... (as many as the ring holds), looked up once per frame
  // rather than per curve step.
  acc_t* const* from(int64_t t) {
    for (int64_t i = 0; i < frames; ++i) window[i] = (*this)[t + i];
    return window.data();
  }
};

// One frame t of the aggregation for a block of channels: out[v, :] = sum_i pi_i x[t + i,
// p_i, :], with frames[i] the ring slot of frame t + i. CB is the block width when known at
// compile time (the full blocks: the channel loops then live in registers), else 0 and `cb`
// is used.
template <int64_t CB, typename acc_t>
void aggregate_frame(const acc_t* const* frames, const int32_t* joints_t,
                     const acc_t* weights_t, int64_t steps, int64_t V, int64_t cb, acc_t* out) {
  const int64_t width = CB > 0 ? CB : cb;
  for (int64_t v = 0; v < V; ++v) {
    acc_t sum[CB > 0 ? CB : kChannelBlock];
    const acc_t* here = frames[0] + v * width;  // step 0: p_0 = v, pi_0 = 1
    for (int64_t c = 0; c < width; ++c) sum[c] = here[c];
    for (int64_t i = 1; i <= steps; ++i) {
      const acc_t w = weights_t[i * V + v];
      const acc_t* met = frames[i] + joints_t[i * V + v] * width;
#pragma omp simd
      for (int64_t c = 0; c < width; ++c) sum[c] += w * met[c];
    }
    for (int64_t c = 0; c < width; ++c) out[v * width + c] = sum[c];
  }
}

// One frame t of the backward for a block of channels: dx[t + i, p_i, :] += pi_i g[t, v, :]
// into the ring slots dx_frames[i] (when given) and h_i(t, v) += <g[t, v, :], x[t + i, p_i, :]>
// from the slots x_frames[i] (when h_t is given). CB as for aggregate_frame.
template <int64_t CB, typename acc_t>
void backward_frame(const acc_t* const* x_frames, acc_t* const* dx_frames, const acc_t* gs,
                    const int32_t* joints_t, const acc_t* weights_t, int64_t steps, int64_t V,
                    int64_t cb, acc_t* h_t) {
  const int64_t width = CB > 0 ? CB : cb;
  for (int64_t v = 0; v < V; ++v) {
    const acc_t* g = gs + v * width;
    for (int64_t i = 0; i <= steps; ++i) {
      const int64_t at = joints_t[i * V + v] * width;
      if (dx_frames != nullptr) {
        const acc_t w = weights_t[i * V + v];
        acc_t* dx = dx_frames[i] + at;
#pragma omp simd
        for (int64_t c = 0; c < width; ++c) dx[c] += w * g[c];
      }
      if (h_t != nullptr && i > 0) {
        const acc_t* met = x_frames[i] + at;
        acc_t dot = 0;
#pragma omp simd reduction(+ : dot)
        for (int64_t c = 0; c < width; ++c) dot += g[c] * met[c];
        h_t[i * V + v] += dot;
      }
    }
  }
}

template <typename scalar_t>
void forward_impl(const Problem& p, const at::Tensor& x, const at::Tensor& key,
                  const CandidateLists& lists, double scale, at::Tensor& y, at::Tensor& next,
                  at::Tensor& log_prob, at::Tensor& log_normalizer) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t V = p.V, T = p.T, L1 = p.steps + 1;
  int32_t* next_p = next.mutable_data_ptr<int32_t>();
  acc_t* log_prob_p = log_prob.mutable_data_ptr<acc_t>();
  transitions_impl<scalar_t, acc_t>(p, key, lists, static_cast<acc_t>(scale), next_p, log_prob_p,
                                    log_normalizer.mutable_data_ptr<acc_t>());

  const auto opts = x.options();
  const auto acc_opts = opts.dtype(log_prob.scalar_type());
  at::Tensor joints_t = at::empty({p.N * T * L1 * V}, opts.dtype(at::kInt));
  at::Tensor weights_t = at::empty({p.N * T * L1 * V}, acc_opts);
  at::Tensor probs_t = at::empty({p.N * (T - 1) * V}, acc_opts);
  curve_table(p, next_p, log_prob_p, probs_t.mutable_data_ptr<acc_t>(),
              joints_t.mutable_data_ptr<int32_t>(), weights_t.mutable_data_ptr<acc_t>());
  const int32_t* joints = joints_t.const_data_ptr<int32_t>();
  const acc_t* weights = weights_t.const_data_ptr<acc_t>();

  // y[t, v, :] = sum_i pi_i x[t + i, p_i, :] per (sample, block of channels), frame by frame.
  const int64_t blocks = ceil_div(p.C, kChannelBlock);
  scalar_t* yp = y.mutable_data_ptr<scalar_t>();
  at::parallel_for(0, p.N * blocks, grain(kChannelBlock * T * V * L1), [&](int64_t begin,
                                                                            int64_t end) {
    FrameRing<acc_t> xs(L1, V * kChannelBlock);
    Scratch<acc_t> ys(V * kChannelBlock);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / blocks, c0 = (task % blocks) * kChannelBlock;
      const int64_t cb = std::min(kChannelBlock, p.C - c0);
      for (int64_t f = 0; f < L1 - 1; ++f) load_frame<scalar_t>(x, n, c0, cb, f, V, xs[f]);
      for (int64_t t = 0; t < T; ++t) {
        if (t + L1 - 1 < T) load_frame<scalar_t>(x, n, c0, cb, t + L1 - 1, V, xs[t + L1 - 1]);
        const int64_t steps = curve_steps(p.steps, T, t);
        const int64_t e = (n * T + t) * L1 * V;
        acc_t* const* frames = xs.from(t);
        if (cb == kChannelBlock) {
          aggregate_frame<kChannelBlock>(frames, joints + e, weights + e, steps, V, cb, ys.data());
        } else {
          aggregate_frame<0>(frames, joints + e, weights + e, steps, V, cb, ys.data());
        }
        store_frame(ys.data(), n, c0, cb, t, p, yp);
      }
    }
  });
}

template <typename scalar_t>
void backward_impl(const Problem& p, const at::Tensor& grad_out, const at::Tensor& x,
                   const at::Tensor& key, const CandidateLists& lists, const at::Tensor& next,
                   const at::Tensor& log_prob, const at::Tensor& log_normalizer, double scale,
                   bool need_grad_x, bool need_grad_key, at::Tensor& grad_x,
                   at::Tensor& grad_key) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t V = p.V, T = p.T, P = T - 1, L1 = p.steps + 1;
  const auto opts = x.options();
  const auto acc_opts = opts.dtype(log_prob.scalar_type());
  const int32_t* next_p = next.const_data_ptr<int32_t>();
  const acc_t* log_prob_p = log_prob.const_data_ptr<acc_t>();
  const acc_t* log_normalizer_p = log_normalizer.const_data_ptr<acc_t>();

  const int64_t table = T * L1 * V;
  at::Tensor joints_t = at::empty({p.N * table}, opts.dtype(at::kInt));
  at::Tensor weights_t = at::empty({p.N * table}, acc_opts);
  at::Tensor probs_t = at::empty({p.N * P * V}, acc_opts);
  curve_table(p, next_p, log_prob_p, probs_t.mutable_data_ptr<acc_t>(),
              joints_t.mutable_data_ptr<int32_t>(), weights_t.mutable_data_ptr<acc_t>());
  const int32_t* joints = joints_t.const_data_ptr<int32_t>();
  const acc_t* weights = weights_t.const_data_ptr<acc_t>();

  // Per (sample, block of channels), frame by frame: dx, and the block's partial h_i(t, v).
  // dx[t] receives from the curves of frames t - L .. t only, so it is complete (and written
  // out, its ring slot reused) once frame t is done.
  const int64_t blocks = ceil_div(p.C, kChannelBlock);
  at::Tensor h_partial_t = need_grad_key ? at::zeros({p.N * blocks * table}, acc_opts)
                                         : at::empty({0}, acc_opts);
  acc_t* h_partial = h_partial_t.mutable_data_ptr<acc_t>();
  scalar_t* gxp = need_grad_x ? grad_x.mutable_data_ptr<scalar_t>() : nullptr;
  const int64_t block = V * kChannelBlock;
  at::parallel_for(0, p.N * blocks, grain(kChannelBlock * table), [&](int64_t begin,
                                                                       int64_t end) {
    FrameRing<acc_t> xs(need_grad_key ? L1 : 0, block), dxs(need_grad_x ? L1 : 0, block);
    Scratch<acc_t> gs(block);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / blocks, c0 = (task % blocks) * kChannelBlock;
      const int64_t cb = std::min(kChannelBlock, p.C - c0);
      acc_t* h = need_grad_key ? h_partial + task * table : nullptr;
      const int32_t* joints_n = joints + n * table;
      const acc_t* weights_n = weights + n * table;
      if (need_grad_key) {
        for (int64_t f = 1; f < L1 - 1; ++f) load_frame<scalar_t>(x, n, c0, cb, f, V, xs[f]);
      }
      if (need_grad_x) std::fill(dxs.storage.data(), dxs.storage.data() + L1 * block, acc_t(0));
      for (int64_t t = 0; t < T; ++t) {
        load_frame<scalar_t>(grad_out, n, c0, cb, t, V, gs.data());
        if (need_grad_key && L1 > 1 && t + L1 - 1 < T) {
          load_frame<scalar_t>(x, n, c0, cb, t + L1 - 1, V, xs[t + L1 - 1]);
        }
        const int64_t steps = curve_steps(p.steps, T, t);
        const int64_t e = t * L1 * V;
        acc_t* const* x_frames = need_grad_key ? xs.from(t) : nullptr;
        acc_t* const* dx_frames = need_grad_x ? dxs.from(t) : nullptr;
        acc_t* h_t = need_grad_key ? h + e : nullptr;
        if (cb == kChannelBlock) {
          backward_frame<kChannelBlock>(x_frames, dx_frames, gs.data(), joints_n + e,
                                        weights_n + e, steps, V, cb, h_t);
        } else {
          backward_frame<0>(x_frames, dx_frames, gs.data(), joints_n + e, weights_n + e, steps, V,
                            cb, h_t);
        }
        if (need_grad_x) {
          store_frame(dxs[t], n, c0, cb, t, p, gxp);
          std::fill(dxs[t], dxs[t] + block, acc_t(0));  // the slot of frame t + L + 1
        }
      }
    }
  });
  if (!need_grad_key) return;

  // Per sample: R[t', u], the gradient of log_prob_{t'}(u), through every curve step leaving
  // (t', u).
  at::Tensor r_t = at::zeros({p.N * P * V}, acc_opts);
  acc_t* r = r_t.mutable_data_ptr<acc_t>();
  at::parallel_for(0, p.N, grain(blocks * table), [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      acc_t* h = h_partial + n * blocks * table;
      for (int64_t g = 1; g < blocks; ++g) {
        const acc_t* part = h + g * table;
        for (int64_t e = 0; e < table; ++e) h[e] += part[e];
      }
      const int32_t* joints_n = joints + n * table;
      const acc_t* weights_n = weights + n * table;
      acc_t* r_n = r + n * P * V;
      for (int64_t t = 0; t < P; ++t) {
        const int64_t steps = curve_steps(p.steps, T, t);
        for (int64_t v = 0; v < V; ++v) {
          acc_t through = 0;  // G_j: sum_{i >= j} pi_i h_i
          for (int64_t j = steps; j >= 1; --j) {
            const int64_t e = (t * L1 + j) * V + v;
            through += weights_n[e] * h[e];
            r_n[(t + j - 1) * V + joints_n[e - V]] += through;
          }
        }
      }
    }
  });

  // dkey per (sample, block of frames).
  const acc_t s = static_cast<acc_t>(scale);
  const int64_t tb = frames_per_tile(p.N, T, 3 * p.D * V, sizeof(acc_t));
  const int64_t tiles = ceil_div(T, tb);
  scalar_t* gkp = grad_key.mutable_data_ptr<scalar_t>();
  at::parallel_for(0, p.N * tiles, grain(3 * tb * V * V * p.D), [&](int64_t begin, int64_t end) {
    const SequentialBlas sequential;
    Scratch<acc_t> ks(p.D * (tb + 2) * V), dks(p.D * tb * V), scores(V * V), ds(V * V);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / tiles, t0 = (task % tiles) * tb;
      const int64_t t1 = std::min(T, t0 + tb), tl = t1 - t0;
      const int64_t f0 = std::max<int64_t>(t0 - 1, 0), f1 = std::min(T, t1 + 1);
      load_key_frames<scalar_t>(key, n, f0, f1 - f0, p, ks.data());
      std::fill(dks.data(), dks.data() + p.D * tl * V, acc_t(0));
      // Transitions tt (frames tt, tt + 1) with a frame in [t0, t1).
      for (int64_t tt = f0; tt < std::min(t1, P); ++tt) {
        frame_pair_scores(ks.data(), f1 - f0, tt - f0, p, scores.data());
        const int64_t row0 = (n * P + tt) * V;
        std::fill(ds.data(), ds.data() + V * V, acc_t(0));
        for (int64_t u = 0; u < V; ++u) {
          const acc_t ru = r[row0 + u];
          if (ru == acc_t(0)) continue;  // no curve step leaves (tt, u): most rows
          const int32_t chosen = next_p[row0 + u];
          const acc_t lz = log_normalizer_p[row0 + u];
          for (int32_t k = lists.offsets[u]; k < lists.offsets[u + 1]; ++k) {
            const int32_t w = lists.joints[k];
            const acc_t score = s * scores.data()[u * V + w];
            ds.data()[u * V + w] = s * score_grad(ru, w == chosen, score, lz);
          }
        }
        const int64_t ld_k = (f1 - f0) * V, ld_d = tl * V;
        if (tt >= t0) {  // dkey[d, tt, u] += sum_w K[d, tt + 1, w] dS[u, w]
          gemm_rm<acc_t>(false, true, p.D, V, V, ks.data() + (tt + 1 - f0) * V, ld_k, ds.data(), V,
                         1, dks.data() + (tt - t0) * V, ld_d);
        }
        if (tt + 1 < t1) {  // dkey[d, tt + 1, w] += sum_u K[d, tt, u] dS[u, w]
          gemm_rm<acc_t>(false, false, p.D, V, V, ks.data() + (tt - f0) * V, ld_k, ds.data(), V, 1,
                         dks.data() + (tt + 1 - t0) * V, ld_d);
        }
      }
      store_tile<acc_t, scalar_t>(dks.data(), nullptr, p.D, tl, T, V,
                                  gkp + (n * p.D * T + t0) * V);
    }
  });
}

void check_cpu(const char* op, const at::Tensor& x) {
  TORCH_CHECK_VALUE(x.device().is_cpu(), op, ": the CPU kernel got a tensor on ", x.device());
}

// Every next joint must index a joint: the backward gathers with them.
void check_next_joints(const char* op, const at::Tensor& next, int64_t V) {
  const at::Tensor c = next.contiguous();
  const int32_t* p = c.const_data_ptr<int32_t>();
  for (int64_t i = 0; i < c.numel(); ++i) {
    TORCH_CHECK_INDEX(p[i] >= 0 && p[i] < V, op, ": next_joint entries must be joints in [0, ",
                      V, "), got ", p[i], " at flat index ", i);
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> spatio_temporal_curve_cpu(
    const at::Tensor& x, const at::Tensor& key, const std::optional<at::Tensor>& candidates,
    int64_t length, double scale) {
  const char* op = "skelops::spatio_temporal_curve";
  const Problem p = check_problem(op, x, key, candidates, length, scale);
  check_cpu(op, x);
  const CandidateLists lists = candidate_lists(candidates, p);
  const auto stats = x.options().dtype(stats_dtype(x.scalar_type()));
  at::Tensor y = at::empty({p.N, p.C, p.T, p.V}, x.options());
  at::Tensor next = at::empty({p.N, p.T - 1, p.V}, x.options().dtype(at::kInt));
  at::Tensor log_prob = at::empty({p.N, p.T - 1, p.V}, stats);
  at::Tensor log_normalizer = at::empty({p.N, p.T - 1, p.V}, stats);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(),
                                  "spatio_temporal_curve_cpu", [&] {
                                    forward_impl<scalar_t>(p, x, key, lists, scale, y, next,
                                                           log_prob, log_normalizer);
                                  });
  return {y, next, log_prob, log_normalizer};
}

std::tuple<at::Tensor, at::Tensor> spatio_temporal_curve_backward_cpu(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& key,
    const std::optional<at::Tensor>& candidates, const at::Tensor& next_joint,
    const at::Tensor& log_prob, const at::Tensor& log_normalizer, int64_t length, double scale,
    std::array<bool, 2> output_mask) {
  const char* op = "skelops::spatio_temporal_curve_backward";
  const Problem p = check_problem(op, x, key, candidates, length, scale);
  check_cpu(op, x);
  check_backward_inputs(op, p, grad_out, x, next_joint, log_prob, log_normalizer);
  check_next_joints(op, next_joint, p.V);
  const CandidateLists lists = candidate_lists(candidates, p);
  at::Tensor grad_x = output_mask[0] ? at::empty({p.N, p.C, p.T, p.V}, x.options())
                                     : empty_like_none(x);
  at::Tensor grad_key = output_mask[1] ? at::empty({p.N, p.D, p.T, p.V}, x.options())
                                       : empty_like_none(x);
  if (output_mask[0] || output_mask[1]) {
    const at::Tensor next = next_joint.contiguous(), lp = log_prob.contiguous(),
                     lz = log_normalizer.contiguous();
    AT_DISPATCH_FLOATING_TYPES_AND2(
        at::kBFloat16, at::kHalf, x.scalar_type(), "spatio_temporal_curve_backward_cpu", [&] {
          backward_impl<scalar_t>(p, grad_out, x, key, lists, next, lp, lz, scale, output_mask[0],
                                  output_mask[1], grad_x, grad_key);
        });
  }
  return {grad_x, grad_key};
}

}  // namespace

TORCH_LIBRARY_IMPL(skelops, CPU, m) {
  m.impl("spatio_temporal_curve", &spatio_temporal_curve_cpu);
  m.impl("spatio_temporal_curve_backward", &spatio_temporal_curve_backward_cpu);
}

}  // namespace skelops::spatio_temporal_curve
