// Host-side launch helpers shared by the torch-free CUDA kernels (nvcc only): the device's
// limits, power-of-two rounding, and launches that opt in to more than 48 KB of dynamic shared
// memory.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cstddef>
#include <cstdint>

namespace skelops::cuda {

constexpr int kSmemDefault = 48 * 1024;  // dynamic shared memory a block gets without opt-in

struct DeviceLimits {
  int sm_count;
  int major;            // compute capability
  int64_t smem_budget;  // bytes of dynamic shared memory a block may use
};

// The current device's limits. The shared-memory budget is the device's opt-in maximum capped
// at `smem_cap` (each kernel family's occupancy choice), and never below the 48 KB default.
inline cudaError_t query_device(int64_t smem_cap, DeviceLimits* limits) {
  int device = 0, sm_count = 0, optin = 0, major = 0;
  cudaError_t err = cudaGetDevice(&device);
  if (err != cudaSuccess) return err;
  err = cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, device);
  if (err != cudaSuccess) return err;
  err = cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
  if (err != cudaSuccess) return err;
  err = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device);
  if (err != cudaSuccess) return err;
  limits->sm_count = std::max(sm_count, 1);
  limits->major = major;
  limits->smem_budget = std::min<int64_t>(smem_cap, std::max(optin, kSmemDefault));
  return cudaSuccess;
}

// The smallest power of two >= a (1 for a <= 1).
inline int pow2_ceil(int64_t a) {
  int p = 1;
  while (p < a) p *= 2;
  return p;
}

// Launches `kernel` on `blocks` blocks of `threads` threads with `smem_bytes` of dynamic shared
// memory; above 48 KB that needs an explicit opt-in, per kernel and device. No blocks: nothing
// to do.
template <typename... Params, typename... Args>
cudaError_t launch_with_smem(void (*kernel)(Params...), int64_t blocks, int threads,
                             size_t smem_bytes, cudaStream_t stream, const Args&... args) {
  if (blocks <= 0) return cudaSuccess;
  if (blocks > INT_MAX) return cudaErrorInvalidConfiguration;
  if (smem_bytes > static_cast<size_t>(kSmemDefault)) {
    const cudaError_t err = cudaFuncSetAttribute(
        kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem_bytes));
    if (err != cudaSuccess) return err;
  }
  kernel<<<static_cast<unsigned>(blocks), threads, smem_bytes, stream>>>(args...);
  return cudaGetLastError();
}

}  // namespace skelops::cuda
