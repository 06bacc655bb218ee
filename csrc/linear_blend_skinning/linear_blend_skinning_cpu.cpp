// C++ CPU kernels of skelops::linear_blend_skinning and its backward.
//
// Weights are read as "ELL" rows: [P, K] values with int32 joint indices. Dense [P, J] weights
// are first compressed to their non-zero entries (K' = the largest count in a row, padded with
// zeros; SMPL's [6890, 24] matrix has at most 4 per row), so that the dense path costs what the
// sparse one does. The hot per-vertex loops (forward; joint side of the backward, with the
// vertex gradients fused in) are linear_blend_skinning_cpu_rows_impl.h: torch-free, on explicit
// 4- or 8-wide vectors, blending every entry of a row (a zero weight's multiply is cheaper than
// the mispredicted branch that skipped it), and compiled twice: for the build's baseline ISA
// (SSE2 on x86-64; every dtype) and, for float32, with AVX2 + FMA in
// linear_blend_skinning_avx2_cpu.cpp, called where skelops::cpu::use_avx2_fma()
// (skelops/cpu_isa.h) says so. The two round differently where FMA contracts a multiply-add.
// The blended matrix lives in registers, never in memory.
//
// Forward, parallel over (vertex chunk, sample) units: the unit's vertices are blended and
// posed one after another from [J, 16] column transforms (linear_blend_skinning_cpu_rows.h;
// 16 multiply-adds per influence, 12 more to apply), reading vertices and writing out once:
// the floor is the bytes of vertices + out (24 B per vertex and sample in float32, ~0.7 GB at
// SMPL size and N = 4096) and ~16 (K + 1) multiply-adds. Large outputs get transparent huge
// pages (skelops/cpu_memory.h): with 4 KB pages their first-touch faults cost about what the
// kernel does.
//
// Backward, each pass a fixed partition with partial sums reduced in a fixed order, so the
// results do not depend on the number of threads:
//   vertex side (weight gradients or shared vertices asked for): units (vertex chunk of
//     kVertexChunk, sample range); per vertex and sample the weight gradients g . (a_j [v; 1])
//     (every j of a dense row, every k of a sparse one: zero weights have gradients too) and
//     the vertex gradient M_R^T g; per-sample vertex gradients are written directly, the
//     weight and shared-vertex gradients go to [T, P, .] partials (T sample ranges) summed in
//     range order.
//   joint side: units (sample n, vertex range s); a unit accumulates d a_j[r, c] +=
//     w g[r] [v; 1][c] over its vertices into its own [J, 12] partial; the S partials of a
//     sample are summed in order into grad_rotations / grad_translations. Per-sample vertex
//     gradients without weight gradients (the usual training case) are computed here too,
//     M_R^T g per vertex, so that grad_out and the vertices are read once.
// T and S depend on the shapes only (split_count), never on the thread count.
#include "linear_blend_skinning/linear_blend_skinning_common.h"
#include "linear_blend_skinning/linear_blend_skinning_cpu_rows.h"
#include "linear_blend_skinning/linear_blend_skinning_math.h"

#define SKELOPS_LINEAR_BLEND_SKINNING_ISA baseline
#include "linear_blend_skinning/linear_blend_skinning_cpu_rows_impl.h"

#include <skelops/cpu_isa.h>
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

namespace skelops::linear_blend_skinning {
namespace {

constexpr int64_t kVertexChunk = 256;     // vertices per task
constexpr int64_t kMinTaskFlops = 65536;  // below this, tasks are merged (parallel_for grain)
constexpr int64_t kTargetTasks = 64;      // enough tasks for any CPU's cores
constexpr int64_t kMinSamplesPerSplit = 16;
constexpr int64_t kMinVerticesPerSplit = 1024;

// ELL rows [P, K] of the weights to blend with.
template <typename acc_t>
struct Influences {
  std::vector<acc_t> compressed_values;  // storage for compressed dense weights
  std::vector<int32_t> compressed_indices;
  const acc_t* values = nullptr;
  const int32_t* indices = nullptr;
  int64_t K = 0;
};

// Sparse weights as they are; dense ones compressed to the non-zero entries of each row.
template <typename acc_t>
void make_influences(const Problem& p, const KernelInputs& in, Influences<acc_t>& out) {
  const acc_t* w = in.weights.const_data_ptr<acc_t>();
  if (!p.dense) {
    out.values = w;
    out.indices = in.indices.const_data_ptr<int32_t>();
    out.K = p.K;
    return;
  }
  std::vector<int64_t> counts(p.P);
  const int64_t grain = kMinTaskFlops / std::max<int64_t>(1, p.J) + 1;
  at::parallel_for(0, p.P, grain, [&](int64_t b, int64_t e) {
    for (int64_t v = b; v < e; ++v) {
      int64_t c = 0;
      for (int64_t j = 0; j < p.J; ++j) c += w[v * p.J + j] != acc_t(0);
      counts[v] = c;
    }
  });
  const int64_t K = p.P > 0 ? *std::max_element(counts.begin(), counts.end()) : 0;
  out.compressed_values.assign(p.P * K, acc_t(0));
  out.compressed_indices.assign(p.P * K, 0);
  at::parallel_for(0, p.P, grain, [&](int64_t b, int64_t e) {
    for (int64_t v = b; v < e; ++v) {
      int64_t k = 0;
      for (int64_t j = 0; j < p.J; ++j) {
        if (w[v * p.J + j] == acc_t(0)) continue;
        out.compressed_values[v * K + k] = w[v * p.J + j];
        out.compressed_indices[v * K + k] = static_cast<int32_t>(j);
        ++k;
      }
    }
  });
  out.values = out.compressed_values.data();
  out.indices = out.compressed_indices.data();
  out.K = K;
}

template <typename acc_t, typename scalar_t>
void load3(const scalar_t* src, acc_t* dst) {
  dst[0] = static_cast<acc_t>(src[0]);
  dst[1] = static_cast<acc_t>(src[1]);
  dst[2] = static_cast<acc_t>(src[2]);
}

// The per-vertex loops (linear_blend_skinning_cpu_rows_impl.h) for the running CPU: float32 on
// AVX2 + FMA where skelops::cpu::use_avx2_fma() says so, everything else in the baseline build.
template <typename scalar_t, typename acc_t>
void forward_rows(const ForwardRows<scalar_t, acc_t>& a) {
#if defined(SKELOPS_WITH_AVX2)
  if constexpr (std::is_same_v<scalar_t, float> && std::is_same_v<acc_t, float>) {
    if (skelops::cpu::use_avx2_fma()) return avx2::forward_rows(a);
  }
#endif
  baseline::forward_rows_impl(a);
}

template <typename scalar_t, typename acc_t>
void joint_rows(const JointRows<scalar_t, acc_t>& a) {
#if defined(SKELOPS_WITH_AVX2)
  if constexpr (std::is_same_v<scalar_t, float> && std::is_same_v<acc_t, float>) {
    if (skelops::cpu::use_avx2_fma()) return avx2::joint_rows(a);
  }
#endif
  baseline::joint_rows_impl(a);
}

// The packed [N, J, 12] row-major transforms as [N, J, 16] column transforms
// (linear_blend_skinning_cpu_rows.h), for the forward.
template <typename acc_t>
std::vector<acc_t> column_transforms(const Problem& p, const acc_t* transforms) {
  std::vector<acc_t> columns(p.N * p.J * kColumnTransform);
  at::parallel_for(0, p.N * p.J, kMinTaskFlops / kColumnTransform + 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const acc_t* rows = transforms + i * kTransform;
      acc_t* cols = columns.data() + i * kColumnTransform;
      for (int c = 0; c < 4; ++c) {
        for (int r = 0; r < 3; ++r) cols[c * 4 + r] = rows[r * 4 + c];
        cols[c * 4 + 3] = acc_t(0);
      }
    }
  });
  return columns;
}

template <typename scalar_t, typename acc_t>
void forward_kernel(const Problem& p, const KernelInputs& in, const Influences<acc_t>& inf,
                    scalar_t* out) {
  const scalar_t* vertices = in.vertices.const_data_ptr<scalar_t>();
  const std::vector<acc_t> columns =
      column_transforms(p, in.transforms.const_data_ptr<acc_t>());
  const int64_t chunks = ceil_div(p.P, kVertexChunk);
  const int64_t unit_flops = std::min(p.P, kVertexChunk) * (inf.K + 1) * 24;
  const int64_t grain = ceil_div(kMinTaskFlops, std::max<int64_t>(1, unit_flops));
  // Units sample-major: a task streams through contiguous vertices and out (chunk-major
  // units, 3 KB apart from each other per sample, ran ~1.7x slower at SMPL size), and the
  // weights it rereads per sample ([P, K] values and indices, 220 KB for SMPL) stay in L2.
  at::parallel_for(0, chunks * p.N, grain, [&](int64_t begin, int64_t end) {
    for (int64_t u = begin; u < end; ++u) {
      const int64_t n = u / chunks, chunk = u % chunks;
      ForwardRows<scalar_t, acc_t> rows;
      rows.vertices = vertices + (p.shared_vertices ? 0 : n) * p.P * 3;
      rows.columns = columns.data() + n * p.J * kColumnTransform;
      rows.values = inf.values;
      rows.indices = inf.indices;
      rows.K = inf.K;
      rows.out = out + n * p.P * 3;
      rows.v0 = chunk * kVertexChunk;
      rows.v1 = std::min(p.P, (chunk + 1) * kVertexChunk);
      forward_rows(rows);
    }
  });
}

// Weight gradients and vertex gradients (vertex side of the backward).
template <typename scalar_t, typename acc_t>
void vertex_side_backward(const Problem& p, const KernelInputs& in, const Influences<acc_t>& inf,
                          const scalar_t* grad_out, Gradients& grads) {
  const bool want_v = grads.want[0], want_w = grads.want[1];
  if (!want_v && !want_w) return;
  const scalar_t* vertices = in.vertices.const_data_ptr<scalar_t>();
  const acc_t* transforms = in.transforms.const_data_ptr<acc_t>();
  const int32_t* weight_indices = p.dense ? nullptr : in.indices.const_data_ptr<int32_t>();
  const bool reduce_v = want_v && p.shared_vertices;
  const int64_t chunks = ceil_div(p.P, kVertexChunk);
  const int64_t T = want_w || reduce_v
                        ? split_count(chunks, kTargetTasks, p.N, kMinSamplesPerSplit)
                        : split_count(chunks, kTargetTasks, p.N, 1);
  const int64_t samples_per_split = ceil_div(p.N, T);
  std::vector<acc_t> partial_w(want_w ? T * p.P * p.K : 0);
  std::vector<acc_t> partial_v(reduce_v ? T * p.P * 3 : 0);
  scalar_t* grad_v = want_v ? grads.vertices.mutable_data_ptr<scalar_t>() : nullptr;
  const int64_t unit_flops = std::min(p.P, kVertexChunk) * samples_per_split *
                             ((want_w ? p.K : 0) + (want_v ? inf.K : 0) + 1) * 24;
  const int64_t grain = ceil_div(kMinTaskFlops, std::max<int64_t>(1, unit_flops));
  at::parallel_for(0, chunks * T, grain, [&](int64_t begin, int64_t end) {
    for (int64_t u = begin; u < end; ++u) {
      const int64_t chunk = u / T, s = u % T;
      const int64_t v0 = chunk * kVertexChunk, v1 = std::min(p.P, v0 + kVertexChunk);
      const int64_t n0 = s * samples_per_split, n1 = std::min(p.N, n0 + samples_per_split);
      acc_t* pw = want_w ? partial_w.data() + s * p.P * p.K : nullptr;
      acc_t* pv = reduce_v ? partial_v.data() + s * p.P * 3 : nullptr;
      if (pw != nullptr) std::fill(pw + v0 * p.K, pw + v1 * p.K, acc_t(0));
      if (pv != nullptr) std::fill(pv + v0 * 3, pv + v1 * 3, acc_t(0));
      for (int64_t n = n0; n < n1; ++n) {
        const acc_t* a = transforms + n * p.J * kTransform;
        const scalar_t* vn = vertices + (p.shared_vertices ? 0 : n) * p.P * 3;
        const scalar_t* gn = grad_out + n * p.P * 3;
        for (int64_t v = v0; v < v1; ++v) {
          acc_t g[3];
          load3(gn + v * 3, g);
          if (pw != nullptr) {
            acc_t x[3];
            load3(vn + v * 3, x);
            acc_t* row = pw + v * p.K;
            for (int64_t k = 0; k < p.K; ++k) {
              const int64_t j = p.dense ? k : weight_indices[v * p.K + k];
              row[k] += transformed_dot(a + j * kTransform, x[0], x[1], x[2], g[0], g[1], g[2]);
            }
          }
          if (want_v) {
            acc_t gv[3] = {};
            for (int64_t k = 0; k < inf.K; ++k) {
              const acc_t w = inf.values[v * inf.K + k];
              if (w == acc_t(0)) continue;
              add_rotation_transpose(gv, w, a + inf.indices[v * inf.K + k] * kTransform, g[0],
                                     g[1], g[2]);
            }
            if (pv != nullptr) {
              for (int c = 0; c < 3; ++c) pv[v * 3 + c] += gv[c];
            } else {
              scalar_t* out = grad_v + (n * p.P + v) * 3;
              for (int c = 0; c < 3; ++c) out[c] = static_cast<scalar_t>(gv[c]);
            }
          }
        }
      }
    }
  });
  if (!want_w && !reduce_v) return;
  scalar_t* grad_w = want_w ? grads.weights.mutable_data_ptr<scalar_t>() : nullptr;
  at::parallel_for(0, p.P, kMinTaskFlops / (T * (p.K + 3)) + 1, [&](int64_t begin, int64_t end) {
    for (int64_t v = begin; v < end; ++v) {
      if (want_w) {
        for (int64_t k = 0; k < p.K; ++k) {
          acc_t sum = 0;
          for (int64_t s = 0; s < T; ++s) sum += partial_w[(s * p.P + v) * p.K + k];
          grad_w[v * p.K + k] = static_cast<scalar_t>(sum);
        }
      }
      if (reduce_v) {
        for (int c = 0; c < 3; ++c) {
          acc_t sum = 0;
          for (int64_t s = 0; s < T; ++s) sum += partial_v[(s * p.P + v) * 3 + c];
          grad_v[v * 3 + c] = static_cast<scalar_t>(sum);
        }
      }
    }
  });
}

// Rotation and translation gradients (joint side of the backward), and the vertex gradients
// with them where with_vertices (per-sample vertices and no weight gradients: the vertex side
// then needs no pass of its own over grad_out and the vertices).
template <typename scalar_t, typename acc_t>
void joint_side_backward(const Problem& p, const KernelInputs& in, const Influences<acc_t>& inf,
                         const scalar_t* grad_out, Gradients& grads, bool with_vertices) {
  const bool want_r = grads.want[2], want_t = grads.want[3];
  const bool want_joints = want_r || want_t;
  if (!want_joints && !with_vertices) return;
  const scalar_t* vertices = in.vertices.const_data_ptr<scalar_t>();
  const acc_t* transforms = in.transforms.const_data_ptr<acc_t>();
  scalar_t* grad_v = with_vertices ? grads.vertices.mutable_data_ptr<scalar_t>() : nullptr;
  const int64_t S = split_count(p.N, kTargetTasks, p.P, kMinVerticesPerSplit);
  const int64_t vertices_per_split = ceil_div(p.P, S);
  const int64_t slice = p.J * kTransform;
  std::vector<acc_t> partial(want_joints ? p.N * S * slice : 0);
  const int64_t unit_flops =
      std::min(p.P, vertices_per_split) * (inf.K + 1) * (want_joints + with_vertices) * 24;
  const int64_t grain = ceil_div(kMinTaskFlops, std::max<int64_t>(1, unit_flops));
  at::parallel_for(0, p.N * S, grain, [&](int64_t begin, int64_t end) {
    for (int64_t u = begin; u < end; ++u) {
      const int64_t n = u / S, s = u % S;
      JointRows<scalar_t, acc_t> rows;
      rows.vertices = vertices + (p.shared_vertices ? 0 : n) * p.P * 3;
      rows.grad_out = grad_out + n * p.P * 3;
      rows.transforms = transforms + n * p.J * kTransform;
      rows.values = inf.values;
      rows.indices = inf.indices;
      rows.K = inf.K;
      rows.acc = want_joints ? partial.data() + u * slice : nullptr;
      rows.grad_vertices = with_vertices ? grad_v + n * p.P * 3 : nullptr;
      rows.v0 = s * vertices_per_split;
      rows.v1 = std::min(p.P, rows.v0 + vertices_per_split);
      if (rows.acc != nullptr) std::fill(rows.acc, rows.acc + slice, acc_t(0));
      joint_rows(rows);
    }
  });
  if (!want_joints) return;
  scalar_t* grad_r = want_r ? grads.rotations.mutable_data_ptr<scalar_t>() : nullptr;
  scalar_t* grad_t = want_t ? grads.translations.mutable_data_ptr<scalar_t>() : nullptr;
  at::parallel_for(0, p.N, kMinTaskFlops / (S * slice) + 1, [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      for (int64_t j = 0; j < p.J; ++j) {
        for (int e = 0; e < kTransform; ++e) {
          acc_t sum = 0;
          for (int64_t s = 0; s < S; ++s) sum += partial[(n * S + s) * slice + j * kTransform + e];
          const int r = e / 4, c = e % 4;
          if (c < 3 && grad_r != nullptr) {
            grad_r[((n * p.J + j) * 3 + r) * 3 + c] = static_cast<scalar_t>(sum);
          }
          if (c == 3 && grad_t != nullptr) {
            grad_t[(n * p.J + j) * 3 + r] = static_cast<scalar_t>(sum);
          }
        }
      }
    }
  });
}

void check_cpu(const char* op, const at::Tensor& vertices) {
  TORCH_CHECK_VALUE(vertices.device().is_cpu(), op, ": the CPU kernel got a tensor on ",
                    vertices.device());
}

at::Tensor linear_blend_skinning_cpu(const at::Tensor& vertices, const at::Tensor& weights,
                                     const std::optional<at::Tensor>& weight_indices,
                                     const at::Tensor& rotations, const at::Tensor& translations) {
  const char* op = "skelops::linear_blend_skinning";
  const Problem p = check_problem(op, vertices, weights, weight_indices, rotations, translations);
  check_cpu(op, vertices);
  if (is_trivial(p)) return at::zeros({p.N, p.P, 3}, vertices.options());
  at::Tensor out = at::empty({p.N, p.P, 3}, vertices.options());
  skelops::cpu::advise_huge_pages(out.mutable_data_ptr(), out.nbytes());
  const KernelInputs in =
      kernel_inputs(p, vertices, weights, weight_indices, rotations, translations);
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kBFloat16, at::kHalf, vertices.scalar_type(), "linear_blend_skinning_cpu", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        Influences<acc_t> inf;
        make_influences(p, in, inf);
        forward_kernel<scalar_t, acc_t>(p, in, inf, out.mutable_data_ptr<scalar_t>());
      });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> linear_blend_skinning_backward_cpu(
    const at::Tensor& grad_out, const at::Tensor& vertices, const at::Tensor& weights,
    const std::optional<at::Tensor>& weight_indices, const at::Tensor& rotations,
    const at::Tensor& translations, std::array<bool, 4> output_mask) {
  const char* op = "skelops::linear_blend_skinning_backward";
  const Problem p = check_problem(op, vertices, weights, weight_indices, rotations, translations);
  check_cpu(op, vertices);
  check_grad_out(op, grad_out, vertices, p);
  Gradients grads = allocate_gradients(p, vertices, weights, output_mask);
  if (is_trivial(p)) return as_tuple(grads);
  if (output_mask[0]) {
    skelops::cpu::advise_huge_pages(grads.vertices.mutable_data_ptr(), grads.vertices.nbytes());
  }
  const KernelInputs in =
      kernel_inputs(p, vertices, weights, weight_indices, rotations, translations);
  const at::Tensor g = grad_out.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kBFloat16, at::kHalf, vertices.scalar_type(), "linear_blend_skinning_backward_cpu", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        Influences<acc_t> inf;
        make_influences(p, in, inf);
        const scalar_t* gp = g.const_data_ptr<scalar_t>();
        // Per-sample vertex gradients without weight gradients come with the joint side's pass.
        const bool fused = output_mask[0] && !output_mask[1] && !p.shared_vertices;
        if (!fused) vertex_side_backward<scalar_t, acc_t>(p, in, inf, gp, grads);
        joint_side_backward<scalar_t, acc_t>(p, in, inf, gp, grads, fused);
      });
  return as_tuple(grads);
}

}  // namespace

TORCH_LIBRARY_IMPL(skelops, CPU, m) {
  m.impl("linear_blend_skinning", &linear_blend_skinning_cpu);
  m.impl("linear_blend_skinning_backward", &linear_blend_skinning_backward_cpu);
}

}  // namespace skelops::linear_blend_skinning
