// The per-pixel work of the CPU kernels (render_heatmaps_cpu.cpp) on primitives the caller has
// built: the arguments here, the loops in render_heatmaps_cpu_draw_impl.h. The drawing loops are
// compiled twice: for the build's baseline ISA, and (float keypoints and output only, x86-64
// compilers that accept -mavx2 -mfma) for AVX2 + FMA in render_heatmaps_avx2_cpu.cpp, which the
// forward calls where skelops::cpu::use_avx2_fma() (skelops/cpu_isa.h) says so. This header is
// torch-free (render_heatmaps_math.h is too) so that nothing the AVX2 translation unit
// instantiates can be shared with (and picked by the linker for) the baseline code.
#pragma once

#include "render_heatmaps/render_heatmaps_math.h"

#include <cstdint>

namespace skelops::render_heatmaps {

// Per-column and per-row factors of a point's box, caller-owned scratch indexed by pixel (valid
// inside the box once filled): e_x, exp(-e_x), peak * exp(-e_x) over the W columns, e_y,
// exp(-e_y) over the H rows.
template <typename acc_t>
struct AxisTables {
  acc_t *ex, *gx, *gx_peak;
  acc_t *ey, *gy;
};

// One channel of one frame: the `count` primitives (its persons) drawn into
// base[i * row_stride + j * col_stride] = max(base, value) over each primitive's box (the
// caller has zeroed the plane).
template <typename acc_t, typename out_t>
struct ChannelDraw {
  const Primitive<acc_t>* prims;
  int64_t count;
  Params<acc_t> q;
  AxisTables<acc_t> tables;
  out_t* base;
  int64_t row_stride, col_stride;
};

#if defined(SKELOPS_WITH_AVX2)
namespace avx2 {
void draw_channel(const ChannelDraw<float, float>& a);
}  // namespace avx2
#endif

}  // namespace skelops::render_heatmaps
