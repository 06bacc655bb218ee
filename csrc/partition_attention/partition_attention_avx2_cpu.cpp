// The float loops of partition_attention_cpu_rows_impl.h compiled for AVX2 + FMA (CMakeLists.txt
// adds -mavx2 -mfma to this file alone, and builds it only for x86-64 compilers that accept
// them). partition_attention_cpu.cpp calls these only where the running CPU has both.
#define SKELOPS_PARTITION_ATTENTION_ISA avx2
#include "partition_attention/partition_attention_cpu_rows_impl.h"

namespace skelops::partition_attention::avx2 {

void forward_rows(const ForwardRows<float>& a) { forward_partition(a); }

void backward_rows(const BackwardRows<float>& a) { backward_partition(a); }

}  // namespace skelops::partition_attention::avx2
