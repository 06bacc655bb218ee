// The float drawing loops of render_heatmaps_cpu_draw_impl.h compiled for AVX2 + FMA
// (CMakeLists.txt adds -mavx2 -mfma to this file, and builds it only for x86-64 compilers that
// accept them). render_heatmaps_cpu.cpp calls these only where skelops::cpu::use_avx2_fma().
// flatten inlines everything the loops call, render_heatmaps_math.h's inline functions
// included: this unit then emits no out-of-line copy of them, which the linker (or LTO) could
// otherwise keep as the one that the baseline code calls.
#define SKELOPS_RENDER_HEATMAPS_ISA avx2
#include "render_heatmaps/render_heatmaps_cpu_draw_impl.h"

namespace skelops::render_heatmaps::avx2 {

__attribute__((flatten)) void draw_channel(const ChannelDraw<float, float>& a) {
  draw_channel_impl(a);
}

}  // namespace skelops::render_heatmaps::avx2
