// The run-time choice between the two builds of the CPU loops that are compiled twice: for the
// build's baseline ISA (SSE2 on x86-64) and for AVX2 + FMA (partition_attention's float rows,
// render_heatmaps' float drawing loops, linear_blend_skinning's float32 vertex loops; the
// *_avx2_cpu.cpp translation units). CMakeLists.txt compiles those with -mavx2 -mfma and
// defines SKELOPS_WITH_AVX2 where the compiler targets x86-64 and accepts both flags; elsewhere
// they are not built and this always says no.
//
// use_avx2_fma(): the build has the AVX2 loops and the running CPU supports AVX2 and FMA, unless
// the environment variable SKELOPS_CPU_ISA is "baseline", which forces the portable loops of
// every op (read once per process, so that both paths can be tested on one machine). The two
// builds round differently where FMA contracts a multiply-add, but a process always takes the
// same path.
//
// Include this only from translation units compiled for the baseline ISA: an inline function
// emitted by an AVX2 unit could be the copy the linker keeps.
#pragma once

#include <cstdlib>
#include <cstring>

namespace skelops::cpu {

inline bool use_avx2_fma() {
#if defined(SKELOPS_WITH_AVX2)
  static const bool use = [] {
    const char* forced = std::getenv("SKELOPS_CPU_ISA");
    if (forced != nullptr && std::strcmp(forced, "baseline") == 0) return false;
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return use;
#else
  return false;
#endif
}

}  // namespace skelops::cpu
