// Macros shared by host C++ and torch-free CUDA sources.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define SKELOPS_HD __host__ __device__ __forceinline__
#else
#define SKELOPS_HD inline
#endif

namespace skelops {

SKELOPS_HD int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace skelops
