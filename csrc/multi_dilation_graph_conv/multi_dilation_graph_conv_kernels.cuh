// Torch-free launcher of the CUDA kernel of skelops::multi_dilation_graph_conv's concat forward
// (defined in multi_dilation_graph_conv_kernels.cu, instantiated for float, __half and
// __nv_bfloat16; fp32 accumulation). The sum reduction and the backward run graph_conv's
// kernels (graph_conv_kernels.cuh, with Branches for the sums over dilations).
//
// Convention: x[n, c, t, v], weight[k, o, c] shared by the D dilations, adjacency[d, k, v, w]
// carries source joint v to target joint w:
//   y[n, d * C_out + o, t, w] = sum_k sum_v Z[n, k, o, t, v] A[d, k, v, w] + bias[d * C_out + o],
//   Z[n, k, o, t, v] = sum_c weight[k, o, c] x[n, c, t, v].
//
// Strides are in elements and may be anything; the launcher enqueues on `stream` and returns
// cudaGetLastError() (or the first failing call's error), so the caller must check it.
#pragma once

#include "../graph_conv/graph_conv_kernels.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace skelops::multi_dilation_graph_conv {

using graph_conv::FrameStrides;
using graph_conv::WeightStrides;

// x [N, C_in, T, V], weight [K, C_out, C_in], adjacency [D, K, V, V].
struct Dims {
  int64_t N, C_in, T, V, K, C_out, D;
};

// Strides of adjacency as A[d, k, v, w].
struct DilatedAdjacencyStrides {
  int64_t d, k, v, w;
};

// The concat forward with the channels mixed once: y contiguous [N, D * C_out, T, V]; bias
// contiguous [D * C_out] or null. Fails with cudaErrorInvalidConfiguration when one block's
// Z tile (K * 4 channels of one frame's V joints) exceeds shared memory (K * V > ~5000).
template <typename scalar_t>
cudaError_t launch_concat_forward(const scalar_t* x, FrameStrides x_strides,
                                  const scalar_t* weight, WeightStrides weight_strides,
                                  const scalar_t* adjacency,
                                  DilatedAdjacencyStrides adjacency_strides, const scalar_t* bias,
                                  scalar_t* y, Dims dims, cudaStream_t stream);

}  // namespace skelops::multi_dilation_graph_conv
