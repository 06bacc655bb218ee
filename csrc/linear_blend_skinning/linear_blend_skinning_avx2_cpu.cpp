// The float32 loops of linear_blend_skinning_cpu_rows_impl.h compiled for AVX2 + FMA
// (CMakeLists.txt adds -mavx2 -mfma to this file, and builds it only for x86-64 compilers that
// accept them). linear_blend_skinning_cpu.cpp calls these only where
// skelops::cpu::use_avx2_fma(). flatten inlines everything the loops call: this unit then emits
// no out-of-line copy of an inline function, which the linker (or LTO) could otherwise keep as
// the one that the baseline code calls.
#define SKELOPS_LINEAR_BLEND_SKINNING_ISA avx2
#include "linear_blend_skinning/linear_blend_skinning_cpu_rows_impl.h"

namespace skelops::linear_blend_skinning::avx2 {

__attribute__((flatten)) void forward_rows(const ForwardRows<float, float>& a) {
  forward_rows_impl(a);
}

__attribute__((flatten)) void joint_rows(const JointRows<float, float>& a) {
  joint_rows_impl(a);
}

}  // namespace skelops::linear_blend_skinning::avx2
