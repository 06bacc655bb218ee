// Pieces of the thin torch glue around the torch-free CUDA kernels (compiled only with a CUDA
// build of torch): device and launch checks, and the mapping of torch dtypes to CUDA types.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace skelops::cuda {

inline void check_cuda(const char* op, const at::Tensor& x) {
  TORCH_CHECK_VALUE(x.is_cuda(), op, ": the CUDA kernel got a tensor on ", x.device());
}

inline void check_launch(const char* op, const char* what, cudaError_t err) {
  TORCH_CHECK(err == cudaSuccess, op, ": CUDA ", what, " kernel failed: ",
              cudaGetErrorString(err));
}

// Calls f with a null pointer of the CUDA element type of `dtype`; float64 too with
// kWithDouble (for kernels instantiated for it).
template <bool kWithDouble = false, typename F>
void dispatch_cuda_dtype(const char* op, at::ScalarType dtype, F&& f) {
  if constexpr (kWithDouble) {
    if (dtype == at::kDouble) {
      f(static_cast<double*>(nullptr));
      return;
    }
  }
  switch (dtype) {
    case at::kFloat:
      f(static_cast<float*>(nullptr));
      break;
    case at::kHalf:
      f(static_cast<__half*>(nullptr));
      break;
    case at::kBFloat16:
      f(static_cast<__nv_bfloat16*>(nullptr));
      break;
    default:
      TORCH_CHECK_TYPE(false, op, ": the CUDA kernel supports float32, ",
                       kWithDouble ? "float64, " : "", "float16 and bfloat16 tensors, got ", dtype);
  }
}

// at::Half / at::BFloat16 share the bit layout of __half / __nv_bfloat16.
template <typename scalar_t>
const scalar_t* data_of(const at::Tensor& t) {
  return static_cast<const scalar_t*>(t.const_data_ptr());
}

template <typename scalar_t>
scalar_t* mutable_data_of(at::Tensor& t) {
  return static_cast<scalar_t*>(t.mutable_data_ptr());
}

}  // namespace skelops::cuda
