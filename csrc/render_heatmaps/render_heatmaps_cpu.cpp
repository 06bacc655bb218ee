// C++ CPU kernels of skelops::render_heatmaps and its backward.
//
// Forward, parallel over frames (n, t); a frame's task owns all of its output: per frame the
// C x M primitives (render_heatmaps_math.h) are built from the frame's keypoints, then
//   contiguous output: per channel, the [H, W] plane is zeroed (memset) and every person's
//     primitive is drawn into its box only, out = max(out, value);
//   channels_last_3d: the frame's [H, W, C] block is zeroed once, and the boxes are drawn
//     with a column stride of C.
// The drawing loops (render_heatmaps_cpu_draw_impl.h: points separably, one exp per column and
// row then a product, a cut-off test and a max per pixel; segments one inlined, branch-free exp
// per pixel of the box; contiguous runs that vectorise) are torch-free and compiled twice: for
// the build's baseline ISA (SSE2 on x86-64) and, for float keypoints and float output, with
// AVX2 + FMA in render_heatmaps_avx2_cpu.cpp; this file builds the primitives, zeroes the planes
// and calls the AVX2 loops where skelops::cpu::use_avx2_fma() (skelops/cpu_isa.h) picks them:
// the build has them, the running CPU supports both, SKELOPS_CPU_ISA is not "baseline". The two
// builds round differently where FMA contracts a multiply-add (a segment's coefficient and
// residual: a few ulp of the peak), but one machine always takes the same path. The limb
// forward is bound by the segments' per-pixel exp, and AVX2 runs it ~1.7x faster than SSE2.
// float16 / bfloat16 / float64 outputs (baseline loops) keep the running maximum in the output
// dtype: rounding is monotonic, so max(round(a), v) rounds to round(max(a, v)).
// Bytes: the output is written once (memset, then the boxes again while they are in L1/L2);
// the keypoints are read once. At N = 32, T = 48, C = 17, 64 x 64, float32 the output is 428 MB
// and the boxes (~20 x 20 pixels per keypoint at sigma = 0.6) cover ~10% of it, so the memset's
// memory traffic (and the first touch of the fresh pages) bounds the keypoint-mode kernel.
//
// Backward, parallel over frames (n, t), so that each frame's keypoint gradients have one
// writer (no atomics; the result does not depend on the thread count): per channel, with more
// than one person, the first person attaining each pixel's maximum is found on the union of
// the boxes (best value and winner scratch planes, strictly greater wins, so ties go to the
// earlier person); then per person its box is visited again, the value recomputed, and where
// the person is the winner (one person: where its value is > 0) the pixel's grad (read with its
// strides; only inside the boxes) adds to the primitive's sums in raster order. The sums become
// the end points' gradients (render_heatmaps_math.h: finish_grad), added to the frame's
// [M, V] accumulators in channel order, a before b; the frame then writes its slice of
// grad_keypoints / grad_scores. The backward runs the baseline loops only (for_each_value in
// render_heatmaps_cpu_draw_impl.h): its sums are serial reductions that the compiler does not
// vectorise without reordering them, so a second ISA would gain little.
#include "render_heatmaps/render_heatmaps_common.h"
#include "render_heatmaps/render_heatmaps_cpu_draw.h"
#include "render_heatmaps/render_heatmaps_math.h"

#define SKELOPS_RENDER_HEATMAPS_ISA baseline
#include "render_heatmaps/render_heatmaps_cpu_draw_impl.h"

#include <skelops/cpu_isa.h>
#include <skelops/cpu_memory.h>

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <optional>
#include <tuple>
#include <type_traits>
#include <vector>


namespace skelops::render_heatmaps {
namespace {

// Frames per parallel_for chunk: at least ~32k output elements, so that small problems run on
// the calling thread.
int64_t frame_grain(const Problem& p) {
  constexpr int64_t kMinParallelElements = int64_t{1} << 15;
  return std::max<int64_t>(1, kMinParallelElements / std::max<int64_t>(1, p.C * p.H * p.W));
}

// The frame's primitives, [C, M].
template <typename acc_t>
void frame_primitives(const Problem& p, const acc_t* keypoints, const acc_t* scores,
                      const int64_t* limbs, int64_t frame, const Params<acc_t>& q,
                      Primitive<acc_t>* prims) {
  const acc_t* k = keypoints + frame * p.M * p.V * 2;
  const acc_t* s = scores + frame * p.M * p.V;
  for (int64_t c = 0; c < p.C; ++c) {
    for (int64_t m = 0; m < p.M; ++m) {
      const acc_t* km = k + m * p.V * 2;
      const acc_t* sm = s + m * p.V;
      Primitive<acc_t>& out = prims[c * p.M + m];
      if (!p.limb_mode) {
        out = make_point(km[c * 2], km[c * 2 + 1], sm[c], q);
      } else {
        const int64_t a = limbs[c * 2], b = limbs[c * 2 + 1];
        out = make_limb(km[a * 2], km[a * 2 + 1], sm[a], km[b * 2], km[b * 2 + 1], sm[b], q);
      }
    }
  }
}

// Scratch of the point tables (render_heatmaps_cpu_draw.h), one per thread.
template <typename acc_t>
struct TableScratch {
  std::vector<acc_t> storage;
  AxisTables<acc_t> tables;
  TableScratch(int64_t height, int64_t width) : storage(3 * width + 2 * height) {
    acc_t* d = storage.data();
    tables = {d, d + width, d + 2 * width, d + 3 * width, d + 3 * width + height};
  }
};

// The drawing loops for the running CPU: float keypoints and output on AVX2 + FMA where
// skelops::cpu::use_avx2_fma() says so (skelops/cpu_isa.h), everything else in the baseline
// build.
template <typename acc_t, typename out_t>
void draw_channel(const ChannelDraw<acc_t, out_t>& a) {
#if defined(SKELOPS_WITH_AVX2)
  if constexpr (std::is_same_v<acc_t, float> && std::is_same_v<out_t, float>) {
    if (skelops::cpu::use_avx2_fma()) return avx2::draw_channel(a);
  }
#endif
  baseline::draw_channel_impl(a);
}

// The output is written once, in full, right after its allocation: for a large one,
// skelops::cpu::advise_huge_pages (skelops/cpu_memory.h) first, since with 4 KB pages the
// first-touch page faults cost more than the kernel itself.
template <typename acc_t, typename out_t>
void forward_frames(const Problem& p, const KernelInputs& in, const Params<acc_t>& q,
                    bool channels_last, at::Tensor& out) {
  out_t* o = out.mutable_data_ptr<out_t>();
  skelops::cpu::advise_huge_pages(o, sizeof(out_t) * static_cast<size_t>(out.numel()));
  const acc_t* keypoints = in.keypoints.const_data_ptr<acc_t>();
  const acc_t* scores = in.scores.const_data_ptr<acc_t>();
  const int64_t* limbs = p.limb_mode ? in.limbs.const_data_ptr<int64_t>() : nullptr;
  const int64_t plane = p.H * p.W;
  const int64_t sn = out.stride(0), sc = out.stride(1), st = out.stride(2);
  at::parallel_for(0, p.N * p.T, frame_grain(p), [&](int64_t begin, int64_t end) {
    std::vector<Primitive<acc_t>> prims(p.C * p.M);
    TableScratch<acc_t> scratch(p.H, p.W);
    ChannelDraw<acc_t, out_t> channel{nullptr, p.M, q, scratch.tables, nullptr, 0, 0};
    for (int64_t f = begin; f < end; ++f) {
      const int64_t n = f / p.T, t = f % p.T;
      frame_primitives(p, keypoints, scores, limbs, f, q, prims.data());
      if (channels_last) {
        out_t* frame = o + n * sn + t * st;  // [H, W, C], contiguous
        std::memset(static_cast<void*>(frame), 0, sizeof(out_t) * plane * p.C);
        for (int64_t c = 0; c < p.C; ++c) {
          channel.prims = prims.data() + c * p.M;
          channel.base = frame + c;
          channel.row_stride = p.W * p.C;
          channel.col_stride = p.C;
          draw_channel(channel);
        }
      } else {
        for (int64_t c = 0; c < p.C; ++c) {
          out_t* dst = o + n * sn + c * sc + t * st;  // [H, W], contiguous
          std::memset(static_cast<void*>(dst), 0, sizeof(out_t) * plane);
          channel.prims = prims.data() + c * p.M;
          channel.base = dst;
          channel.row_stride = p.W;
          channel.col_stride = 1;
          draw_channel(channel);
        }
      }
    }
  });
}

template <bool kWindow, typename acc_t, typename grad_t>
void backward_frames(const Problem& p, const KernelInputs& in, const Params<acc_t>& q,
                     const at::Tensor& grad, Gradients& grads) {
  const grad_t* g = grad.const_data_ptr<grad_t>();
  const acc_t* keypoints = in.keypoints.const_data_ptr<acc_t>();
  const acc_t* scores = in.scores.const_data_ptr<acc_t>();
  const int64_t* limbs = p.limb_mode ? in.limbs.const_data_ptr<int64_t>() : nullptr;
  acc_t* grad_keypoints = grads.want_keypoints ? grads.keypoints.mutable_data_ptr<acc_t>() : nullptr;
  acc_t* grad_scores = grads.want_scores ? grads.scores.mutable_data_ptr<acc_t>() : nullptr;
  const int64_t g0 = grad.stride(0), g1 = grad.stride(1), g2 = grad.stride(2);
  const int64_t g3 = grad.stride(3), g4 = grad.stride(4);
  const int64_t MV = p.M * p.V;
  at::parallel_for(0, p.N * p.T, frame_grain(p), [&](int64_t begin, int64_t end) {
    std::vector<Primitive<acc_t>> prims(p.C * p.M);
    TableScratch<acc_t> tables(p.H, p.W);
    const int64_t scratch = p.M > 1 ? p.H * p.W : 0;
    std::vector<acc_t> best(scratch);
    std::vector<int32_t> winner(scratch);
    std::vector<acc_t> frame_k(MV * 2), frame_s(MV);
    for (int64_t f = begin; f < end; ++f) {
      const int64_t n = f / p.T, t = f % p.T;
      frame_primitives(p, keypoints, scores, limbs, f, q, prims.data());
      std::fill(frame_k.begin(), frame_k.end(), acc_t(0));
      std::fill(frame_s.begin(), frame_s.end(), acc_t(0));
      for (int64_t c = 0; c < p.C; ++c) {
        const Primitive<acc_t>* pc = prims.data() + c * p.M;
        const grad_t* gp = g + n * g0 + c * g1 + t * g2;
        if (p.M > 1) {
          for (int64_t m = 0; m < p.M; ++m) {
            for (int32_t i = pc[m].y0; i < pc[m].y1; ++i) {
              std::fill(best.begin() + i * p.W + pc[m].x0, best.begin() + i * p.W + pc[m].x1,
                        acc_t(0));
              std::fill(winner.begin() + i * p.W + pc[m].x0,
                        winner.begin() + i * p.W + pc[m].x1, -1);
            }
          }
          for (int64_t m = 0; m < p.M; ++m) {
            baseline::for_each_value<kWindow>(pc[m], q, tables.tables,
                                    [&](int32_t i, int32_t j, acc_t v, acc_t, const auto&) {
                                      const int64_t k = i * p.W + j;
                                      if (v > best[k]) {
                                        best[k] = v;
                                        winner[k] = static_cast<int32_t>(m);
                                      }
                                    });
          }
        }
        for (int64_t m = 0; m < p.M; ++m) {
          const Primitive<acc_t>& pr = pc[m];
          if (pr.kind == kNothing) continue;
          acc_t sums[kGradSlots] = {0, 0, 0, 0, 0, 0};
          baseline::for_each_value<kWindow>(
              pr, q, tables.tables,
              [&](int32_t i, int32_t j, acc_t v, acc_t gaussian, const SegmentPoint<acc_t>& s) {
                const bool wins = p.M > 1 ? winner[i * p.W + j] == m : v > acc_t(0);
                if (!wins) return;
                const acc_t gv = static_cast<acc_t>(gp[i * g3 + j * g4]);
                if (pr.kind == kPoint) {
                  add_point_grad(gv, v, gaussian, s.rx, s.ry, sums);
                } else {
                  add_segment_grad(gv, v, gaussian, s, sums);
                }
              });
          acc_t slots[kGradSlots];
          finish_grad(pr, sums, q.inv_sigma2, slots);
          const int64_t a = p.limb_mode ? limbs[c * 2] : c;
          frame_k[(m * p.V + a) * 2] += slots[0];
          frame_k[(m * p.V + a) * 2 + 1] += slots[1];
          frame_s[m * p.V + a] += slots[4];
          if (p.limb_mode) {
            const int64_t b = limbs[c * 2 + 1];
            frame_k[(m * p.V + b) * 2] += slots[2];
            frame_k[(m * p.V + b) * 2 + 1] += slots[3];
            frame_s[m * p.V + b] += slots[5];
          }
        }
      }
      if (grad_keypoints != nullptr) {
        std::copy(frame_k.begin(), frame_k.end(), grad_keypoints + f * MV * 2);
      }
      if (grad_scores != nullptr) {
        std::copy(frame_s.begin(), frame_s.end(), grad_scores + f * MV);
      }
    }
  });
}

void check_cpu(const char* op, const at::Tensor& keypoints) {
  TORCH_CHECK_VALUE(keypoints.device().is_cpu(), op, ": the CPU kernel got a tensor on ",
                    keypoints.device());
}

at::Tensor render_heatmaps_cpu(const at::Tensor& keypoints, const at::Tensor& scores,
                               const std::optional<at::Tensor>& limbs, int64_t height,
                               int64_t width, double sigma, bool pyskl_window, bool channels_last,
                               std::optional<at::ScalarType> dtype) {
  const char* op = "skelops::render_heatmaps";
  const Problem p = check_problem(op, keypoints, scores, limbs, height, width, sigma);
  check_cpu(op, keypoints);
  const at::ScalarType out_dtype = output_dtype(op, keypoints, dtype);
  at::Tensor out = empty_output(p, keypoints, out_dtype, channels_last);
  if (out.numel() == 0) return out;
  const KernelInputs in = kernel_inputs(p, keypoints, scores, limbs);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, out_dtype, "render_heatmaps_cpu", [&] {
    using out_t = scalar_t;
    auto run = [&](auto acc_tag) {
      using acc_t = decltype(acc_tag);
      const Params<acc_t> q = make_params<acc_t>(sigma, p.H, p.W, pyskl_window);
      forward_frames<acc_t, out_t>(p, in, q, channels_last, out);
    };
    if (keypoints.scalar_type() == at::kDouble) {
      run(double{});
    } else {
      run(float{});
    }
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> render_heatmaps_backward_cpu(
    const at::Tensor& grad, const at::Tensor& keypoints, const at::Tensor& scores,
    const std::optional<at::Tensor>& limbs, double sigma, bool pyskl_window,
    std::array<bool, 2> output_mask) {
  const char* op = "skelops::render_heatmaps_backward";
  const Problem p = check_backward_problem(op, grad, keypoints, scores, limbs, sigma);
  check_cpu(op, keypoints);
  Gradients grads = empty_gradients(p, keypoints, output_mask);
  if (!grads.want_keypoints && !grads.want_scores) return {grads.keypoints, grads.scores};
  if (p.N * p.T * p.M * p.V == 0) return finish_gradients(grads, keypoints);  // empty
  const KernelInputs in = kernel_inputs(p, keypoints, scores, limbs);
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kBFloat16, at::kHalf, grad.scalar_type(), "render_heatmaps_backward_cpu", [&] {
        using grad_t = scalar_t;
        auto run = [&](auto acc_tag) {
          using acc_t = decltype(acc_tag);
          const Params<acc_t> q = make_params<acc_t>(sigma, p.H, p.W, pyskl_window);
          if (pyskl_window) {
            backward_frames<true, acc_t, grad_t>(p, in, q, grad, grads);
          } else {
            backward_frames<false, acc_t, grad_t>(p, in, q, grad, grads);
          }
        };
        if (keypoints.scalar_type() == at::kDouble) {
          run(double{});
        } else {
          run(float{});
        }
      });
  return finish_gradients(grads, keypoints);
}

}  // namespace

TORCH_LIBRARY_IMPL(skelops, CPU, m) {
  m.impl("render_heatmaps", &render_heatmaps_cpu);
  m.impl("render_heatmaps_backward", &render_heatmaps_backward_cpu);
}

}  // namespace skelops::render_heatmaps
