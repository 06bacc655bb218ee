// The float loops of partition_attention_cpu_rows_impl.h compiled for AVX2 + FMA (CMakeLists.txt
// adds -mavx2 -mfma to this file alone, and builds it only for x86-64 compilers that accept
// them). partition_attention_cpu.cpp calls these only where the running CPU has both.
// flatten inlines everything the loops call, partition_attention_math.h's inline functions
// included: this unit then emits no out-of-line copy of them, which the linker (or LTO) could
// otherwise keep as the one that the baseline code calls.
#define SKELOPS_PARTITION_ATTENTION_ISA avx2
#include "partition_attention/partition_attention_cpu_rows_impl.h"

namespace skelops::partition_attention::avx2 {

__attribute__((flatten)) void forward_rows(const ForwardRows<float>& a) { forward_partition(a); }

__attribute__((flatten)) void backward_rows(const BackwardRows<float>& a) {
  backward_partition(a);
}

}  // namespace skelops::partition_attention::avx2
