// Torch-free launchers of the CUDA kernels of skelops::partition_attention and its backward
// (defined in partition_attention_kernels.cu, instantiated for float, double, __half and
// __nv_bfloat16; accumulation in acc_type<scalar_t>: float, double for double).
//
// Convention (see partition_attention_math.h): q, k, v [B, H, T, V, D]; partition (p, g) holds
// the N = W * J tokens (frame_partition[p, a], joint_partition[g, i]), numbered n = a * J + i;
// for a query x and a key y of one partition
//   s_xy = scale * <q_x, k_y> + bias(x, y),  lse_x = logsumexp_y s_xy,
//   out_x = sum_y exp(s_xy - lse_x) * keep_xy * keep_scale * v_y.
//
// Strides of the [B, H, T, V, D] tensors are in elements and may be anything; the partitions
// are contiguous int32, bias (and the bias gradient) a contiguous [2W - 1, H] or
// [2W - 1, J, J, H] table, lse a contiguous [B, H, T, V]. Every launcher enqueues on `stream`
// and returns the first failing call's error or cudaGetLastError(), which the caller must check.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace skelops::partition_attention {

// The kernels keep one token per thread with its D-vectors in registers (D padded to a power of
// two >= 4) and loop over the N tokens of its partition.
constexpr int64_t kMaxCudaTokens = 1024;  // N = W * J
constexpr int64_t kMaxCudaHeadDim = 64;   // D

template <typename scalar_t>
struct Accumulate {
  using type = float;
};
template <>
struct Accumulate<double> {
  using type = double;
};
// The accumulation (and log-sum-exp) dtype of scalar_t.
template <typename scalar_t>
using acc_type = typename Accumulate<scalar_t>::type;

struct Dims {
  int64_t B, H, T, V, D;
  int64_t P, W;  // frame windows x frames per window
  int64_t G, J;  // joint groups x joints per group
  int32_t bias_kind;  // BiasKind of partition_attention_math.h
};

// Strides of a [B, H, T, V, D] tensor.
struct TokenStrides {
  int64_t b, h, t, v, d;
};

template <typename T>
struct TokenTensor {
  T* data;
  TokenStrides strides;
};

// Probability (x, y) is kept when dropout_bits(key, element) >= threshold (always when
// threshold is 0); kept ones are scaled by keep_scale = 1 / (1 - p).
struct Dropout {
  uint32_t key;
  uint32_t threshold;
  double keep_scale;
};

// What the forward and the backward both read.
template <typename scalar_t>
struct Inputs {
  TokenTensor<const scalar_t> q, k, v;
  const int32_t* joint_partition;  // [G, J]
  const int32_t* frame_partition;  // [P, W]
  const scalar_t* bias;            // null without bias
  double scale;
  Dropout dropout;
};

// The backward's outputs; a null data pointer is a gradient not asked for. dbias_workspace
// (dbias_workspace_size(dims) elements, uninitialised) is needed with dbias.
template <typename scalar_t>
struct Gradients {
  TokenTensor<scalar_t> dq, dk, dv;
  scalar_t* dbias;
  acc_type<scalar_t>* dbias_workspace;
};

// Elements of the bias-gradient workspace (per-block partial tables); depends on the sizes
// only, so the summation order of the bias gradient does too.
int64_t dbias_workspace_size(const Dims& dims);

// out (any strides) and lse [B, H, T, V] (contiguous).
template <typename scalar_t>
cudaError_t launch_partition_attention_forward(const Inputs<scalar_t>& in, const Dims& dims,
                                               TokenTensor<scalar_t> out,
                                               acc_type<scalar_t>* lse, cudaStream_t stream);

// The gradients asked for in `grads` from grad_out, the forward's out and lse (contiguous).
template <typename scalar_t>
cudaError_t launch_partition_attention_backward(const Inputs<scalar_t>& in, const Dims& dims,
                                                TokenTensor<const scalar_t> grad_out,
                                                TokenTensor<const scalar_t> out,
                                                const acc_type<scalar_t>* lse,
                                                const Gradients<scalar_t>& grads,
                                                cudaStream_t stream);

}  // namespace skelops::partition_attention
