// C++ CPU kernels of skelops::project_points and its backward.
//
// Work is split into tasks of (sample n, chunk of kChunk points), run by at::parallel_for, so
// that a few samples with many points (one SMPL mesh: P = 6890) still use every thread. A
// task loads its sample's parameters once (project_points_math.h: R, t and the camera in the
// accumulation dtype, float32 or float64 for float64 inputs) and streams its points.
//
// Forward: per point 9 multiply-adds, a division and 4 more: bound by reading 3 and writing 2
// values per point.
// Backward: per point the gradient of X is written, and the 16 per-sample sums (camera 4,
// rotation 9, translation 3; project_points_math.h's slots) are accumulated in kLanes
// interleaved lanes (point p adds to lane p % kLanes: independent chains the compiler can keep
// in vector registers), reduced lane 0 first into the task's partials [N, chunks, 16]; a
// second pass adds each sample's chunks in order. Chunk size and lane count are constants, so
// the sums, hence the gradients, are the same bits for any thread count.
#include "project_points/project_points_common.h"
#include "project_points/project_points_math.h"

#include <skelops/cpu_memory.h>

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <tuple>
#include <type_traits>
#include <vector>

namespace skelops::project_points {
namespace {

constexpr int64_t kChunk = 2048;
constexpr int kLanes = 8;
// Points per parallel_for grain: smaller problems run on the calling thread.
constexpr int64_t kMinParallelPoints = 16384;

int64_t chunks_of(const Problem& p) { return std::max<int64_t>(1, ceil_div(p.P, kChunk)); }

int64_t task_grain(const Problem& p) {
  return std::max<int64_t>(1, kMinParallelPoints / std::max<int64_t>(1, std::min(p.P, kChunk)));
}

template <typename acc_t, typename scalar_t>
Sample<acc_t> sample_of(const Problem& p, const KernelInputs& in, int64_t n) {
  const scalar_t* rotation =
      p.has_rotation ? in.rotation.const_data_ptr<scalar_t>() + n * 9 : nullptr;
  const scalar_t* translation =
      p.has_translation ? in.translation.const_data_ptr<scalar_t>() + n * 3 : nullptr;
  return load_sample<acc_t>(in.camera.const_data_ptr<scalar_t>() + n * p.camera_size,
                            p.camera_size, rotation, translation,
                            [](const scalar_t* ptr, int i) { return static_cast<acc_t>(ptr[i]); });
}

template <bool kWeak, typename scalar_t, typename acc_t>
void forward_tasks(const Problem& p, const KernelInputs& in, acc_t min_depth, at::Tensor& out) {
  const scalar_t* points = in.points.const_data_ptr<scalar_t>();
  scalar_t* o = out.mutable_data_ptr<scalar_t>();
  const int64_t chunks = chunks_of(p);
  at::parallel_for(0, p.N * chunks, task_grain(p), [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / chunks;
      const int64_t first = (task % chunks) * kChunk, last = std::min(first + kChunk, p.P);
      const Sample<acc_t> s = sample_of<acc_t, scalar_t>(p, in, n);
      const scalar_t* x = points + n * p.P * 3;
      scalar_t* y = o + n * p.P * 2;
      for (int64_t i = first; i < last; ++i) {
        acc_t u, v;
        project_point<kWeak>(s, min_depth, static_cast<acc_t>(x[i * 3]),
                             static_cast<acc_t>(x[i * 3 + 1]), static_cast<acc_t>(x[i * 3 + 2]),
                             &u, &v);
        y[i * 2] = static_cast<scalar_t>(u);
        y[i * 2 + 1] = static_cast<scalar_t>(v);
      }
    }
  });
}

// One point's backward: writes its gradient (when asked for) and adds its terms to `lane`.
template <bool kWeak, bool kSums, typename scalar_t, typename acc_t>
inline void backward_point(const Sample<acc_t>& s, acc_t min_depth, const scalar_t* x,
                           const scalar_t* g, scalar_t* grad_x, acc_t (&sums)[kSlots][kLanes],
                           int lane) {
  const acc_t x0 = static_cast<acc_t>(x[0]), x1 = static_cast<acc_t>(x[1]),
              x2 = static_cast<acc_t>(x[2]);
  const PointGrad<acc_t> pg = point_grad<kWeak>(s, min_depth, x0, x1, x2,
                                                static_cast<acc_t>(g[0]), static_cast<acc_t>(g[1]));
  if (grad_x != nullptr) {
    for (int j = 0; j < 3; ++j) grad_x[j] = static_cast<scalar_t>(pg.point[j]);
  }
  if constexpr (kSums) {
    for (int slot = 0; slot < kSlots; ++slot) sums[slot][lane] += slot_term(pg, x0, x1, x2, slot);
  }
}

template <bool kWeak, bool kSums, typename scalar_t, typename acc_t>
void backward_tasks(const Problem& p, const KernelInputs& in, const at::Tensor& grad,
                    acc_t min_depth, Gradients& grads, acc_t* partials /* [N, chunks, kSlots] */) {
  const scalar_t* points = in.points.const_data_ptr<scalar_t>();
  const scalar_t* gr = grad.const_data_ptr<scalar_t>();
  scalar_t* grad_points = grads.want_points ? grads.points.mutable_data_ptr<scalar_t>() : nullptr;
  const int64_t chunks = chunks_of(p);
  at::parallel_for(0, p.N * chunks, task_grain(p), [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / chunks;
      const int64_t first = (task % chunks) * kChunk, last = std::min(first + kChunk, p.P);
      const Sample<acc_t> s = sample_of<acc_t, scalar_t>(p, in, n);
      const scalar_t* x = points + n * p.P * 3;
      const scalar_t* g = gr + n * p.P * 2;
      scalar_t* gx = grad_points != nullptr ? grad_points + n * p.P * 3 : nullptr;
      acc_t sums[kSlots][kLanes] = {};
      int64_t i = first;
      for (; i + kLanes <= last; i += kLanes) {
        for (int lane = 0; lane < kLanes; ++lane) {
          const int64_t k = i + lane;
          backward_point<kWeak, kSums>(s, min_depth, x + k * 3, g + k * 2,
                                       gx != nullptr ? gx + k * 3 : nullptr, sums, lane);
        }
      }
      for (int lane = 0; i < last; ++i, ++lane) {
        backward_point<kWeak, kSums>(s, min_depth, x + i * 3, g + i * 2,
                                     gx != nullptr ? gx + i * 3 : nullptr, sums, lane);
      }
      if constexpr (kSums) {
        acc_t* out = partials + task * kSlots;
        for (int slot = 0; slot < kSlots; ++slot) {
          acc_t total = acc_t(0);
          for (int lane = 0; lane < kLanes; ++lane) total += sums[slot][lane];
          out[slot] = total;
        }
      }
    }
  });
}

// Each sample's chunks added in order into the camera / rotation / translation gradients.
template <typename scalar_t, typename acc_t>
void finish_sums(const Problem& p, const acc_t* partials, Gradients& grads) {
  const int64_t chunks = chunks_of(p);
  scalar_t* gc = grads.want_camera ? grads.camera.mutable_data_ptr<scalar_t>() : nullptr;
  scalar_t* gr = grads.want_rotation ? grads.rotation.mutable_data_ptr<scalar_t>() : nullptr;
  scalar_t* gt = grads.want_translation ? grads.translation.mutable_data_ptr<scalar_t>() : nullptr;
  at::parallel_for(0, p.N, std::max<int64_t>(1, 4096 / chunks), [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      acc_t total[kSlots] = {};
      for (int64_t c = 0; c < chunks; ++c) {
        const acc_t* part = partials + (n * chunks + c) * kSlots;
        for (int slot = 0; slot < kSlots; ++slot) total[slot] += part[slot];
      }
      if (gc != nullptr) {
        for (int i = 0; i < p.camera_size; ++i) {
          gc[n * p.camera_size + i] = static_cast<scalar_t>(total[kCameraSlot + i]);
        }
      }
      if (gr != nullptr) {
        for (int i = 0; i < 9; ++i) gr[n * 9 + i] = static_cast<scalar_t>(total[kRotationSlot + i]);
      }
      if (gt != nullptr) {
        for (int i = 0; i < 3; ++i) {
          gt[n * 3 + i] = static_cast<scalar_t>(total[kTranslationSlot + i]);
        }
      }
    }
  });
}

void check_cpu(const char* op, const at::Tensor& points) {
  TORCH_CHECK_VALUE(points.device().is_cpu(), op, ": the CPU kernel got a tensor on ",
                    points.device());
}

// Calls f(std::bool_constant<weak_perspective>{}).
template <typename F>
void dispatch_model(bool weak_perspective, F&& f) {
  if (weak_perspective) {
    f(std::true_type{});
  } else {
    f(std::false_type{});
  }
}

at::Tensor project_points_cpu(const at::Tensor& points, const at::Tensor& camera,
                              const std::optional<at::Tensor>& rotation,
                              const std::optional<at::Tensor>& translation, bool weak_perspective,
                              double min_depth) {
  const char* op = "skelops::project_points";
  const Problem p =
      check_problem(op, points, camera, rotation, translation, weak_perspective, min_depth);
  check_cpu(op, points);
  at::Tensor out = empty_output(p, points);
  if (out.numel() == 0) return out;
  // Written once, in full: huge pages spare a large output's first-touch faults.
  skelops::cpu::advise_huge_pages(out.mutable_data_ptr(), out.nbytes());
  const KernelInputs in = kernel_inputs(p, points, camera, rotation, translation);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, points.scalar_type(),
                                  "project_points_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    dispatch_model(weak_perspective, [&](auto weak) {
      forward_tasks<decltype(weak)::value, scalar_t, acc_t>(p, in, static_cast<acc_t>(min_depth),
                                                            out);
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> project_points_backward_cpu(
    const at::Tensor& grad, const at::Tensor& points, const at::Tensor& camera,
    const std::optional<at::Tensor>& rotation, const std::optional<at::Tensor>& translation,
    bool weak_perspective, double min_depth, std::array<bool, 4> output_mask) {
  const char* op = "skelops::project_points_backward";
  const Problem p = check_backward_problem(op, grad, points, camera, rotation, translation,
                                           weak_perspective, min_depth);
  check_cpu(op, points);
  Gradients grads = empty_gradients(p, points, output_mask);
  if (!grads.want_any() || p.N == 0) return grads.as_tuple();
  const KernelInputs in = kernel_inputs(p, points, camera, rotation, translation);
  const at::Tensor g = grad.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, points.scalar_type(),
                                  "project_points_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const acc_t depth = static_cast<acc_t>(min_depth);
    dispatch_model(weak_perspective, [&](auto weak) {
      constexpr bool kWeak = decltype(weak)::value;
      if (!grads.want_sums()) {
        backward_tasks<kWeak, false, scalar_t, acc_t>(p, in, g, depth, grads, nullptr);
        return;
      }
      std::vector<acc_t> partials(static_cast<size_t>(p.N * chunks_of(p) * kSlots));
      backward_tasks<kWeak, true, scalar_t, acc_t>(p, in, g, depth, grads, partials.data());
      finish_sums<scalar_t, acc_t>(p, partials.data(), grads);
    });
  });
  return grads.as_tuple();
}

}  // namespace

TORCH_LIBRARY_IMPL(skelops, CPU, m) {
  m.impl("project_points", &project_points_cpu);
  m.impl("project_points_backward", &project_points_backward_cpu);
}

}  // namespace skelops::project_points
