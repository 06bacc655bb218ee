// The per-vertex loops of the CPU kernels (linear_blend_skinning_cpu.cpp) over one unit of work
// (one sample, a range of vertices): the arguments here, the loops in
// linear_blend_skinning_cpu_rows_impl.h. The loops are compiled twice: for the build's baseline
// ISA, and (float32 only, x86-64 compilers that accept -mavx2 -mfma) for AVX2 + FMA in
// linear_blend_skinning_avx2_cpu.cpp, which the kernels call where
// skelops::cpu::use_avx2_fma() (skelops/cpu_isa.h) says so. This header is torch-free so that
// nothing the AVX2 translation unit instantiates can be shared with (and picked by the linker
// for) the baseline code.
#pragma once

#include <cstdint>

namespace skelops::linear_blend_skinning {

// A transform with its columns padded to 4 entries, column-major: entries [4 c, 4 c + 3) are
// column c of [R | t] (c = 3: t), entry 4 c + 3 is 0. Posing a vertex is then 3 multiply-adds
// of 4-wide columns, blending one 16-wide multiply-add per influence: both vectorise, where
// the row-major [3, 4] layout needs a horizontal sum per output coordinate.
constexpr int kColumnTransform = 16;

// The forward over vertices [v0, v1) of one sample: out[v] = M_v [x_v; 1].
template <typename scalar_t, typename acc_t>
struct ForwardRows {
  const scalar_t* vertices;  // the sample's [P, 3]
  const acc_t* columns;      // the sample's [J, 16] column transforms
  const acc_t* values;       // [P, K] ELL weights (zero-padded)
  const int32_t* indices;    // [P, K]
  int64_t K;
  scalar_t* out;  // the sample's [P, 3]
  int64_t v0, v1;
};

// The joint side of the backward over vertices [v0, v1) of one sample, and optionally its
// vertex gradients:
//   acc[j, r, c] += w g[r] [v; 1][c] for every influence (j, w) of every vertex (acc: [J, 12],
//     row-major 3 x 4 as the transforms; none when rotations and translations need none),
//   grad_vertices[v] = M_R^T g (none when vertices need none).
template <typename scalar_t, typename acc_t>
struct JointRows {
  const scalar_t* vertices;  // the sample's [P, 3]
  const scalar_t* grad_out;  // the sample's [P, 3]
  const acc_t* transforms;   // the sample's [J, 12] row-major transforms
  const acc_t* values;       // [P, K] ELL weights (zero-padded)
  const int32_t* indices;    // [P, K]
  int64_t K;
  acc_t* acc;                // [J, 12] or null
  scalar_t* grad_vertices;  // the sample's [P, 3] or null
  int64_t v0, v1;
};

#if defined(SKELOPS_WITH_AVX2)
namespace avx2 {
void forward_rows(const ForwardRows<float, float>& a);
void joint_rows(const JointRows<float, float>& a);
}  // namespace avx2
#endif

}  // namespace skelops::linear_blend_skinning
