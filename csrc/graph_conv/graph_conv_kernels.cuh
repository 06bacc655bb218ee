// Torch-free launchers of the CUDA kernels of skelops::graph_conv and its backward (defined in
// graph_conv_kernels.cu, instantiated for float, __half and __nv_bfloat16; fp32 accumulation).
//
// Convention (whole library): x[n, c, t, v], weight[k, o, c], adjacency[k, v, w] (or
// [n, k, v, w]) carries source joint v to target joint w:
//   y[n, o, t, w] = sum_k sum_c sum_v weight[k, o, c] * x[n, c, t, v] * adjacency[k, v, w] + bias
//
// Strides are in elements and may be anything (non-contiguous views, broadcast zeros); every
// launcher enqueues on `stream` and returns cudaGetLastError() (or the first failing call's
// error), so the caller must check it.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace skelops::graph_conv {

// x [N, C_in, T, V] -> y [N, C_out, T, V] with K adjacency subsets.
struct Dims {
  int64_t N, C_in, T, V, K, C_out;
};

// Strides of a [N, C, T, V] tensor (x, grad_out).
struct FrameStrides {
  int64_t n, c, t, v;
};

// Strides of weight [K, C_out, C_in] as weight[k, o, c].
struct WeightStrides {
  int64_t k, o, c;
};

// Strides of adjacency as A[n, k, v, w]; n = 0 when one adjacency is shared by all samples.
struct AdjacencyStrides {
  int64_t n, k, v, w;
};

// Inputs summed by the aggregation, for operators built from graph convolution
// (multi_dilation_graph_conv's backward): the kernels that aggregate x (the forward and the
// weight gradient) then aggregate sum_b x_b A_b with x_b = x + b * x_offset and
// A_b = adjacency + b * adjacency_offset (element offsets), b < count. graph_conv itself has one.
struct Branches {
  int64_t count = 1, x_offset = 0, adjacency_offset = 0;
};

// bias_map[nb, o, w] (fp32, [Nb, C_out, V] contiguous), the bias term the forward adds to
// output (o, w) of sample nb (see bias_map_entry in graph_conv_math.h):
//   before_aggregation: bias [K, C_out], scaled by the column sums of adjacency, which is
//     contiguous [Nb, K, V, V] (Nb = N for a per-sample adjacency, else 1); column_sums is a
//     [Nb, K, V] fp32 workspace;
//   otherwise: bias [C_out] broadcast over w; Nb = 1, adjacency and column_sums are unused.
// bias is contiguous.
template <typename scalar_t>
cudaError_t launch_bias_map(const scalar_t* bias, bool before_aggregation,
                            const scalar_t* adjacency, int64_t Nb, int64_t K, int64_t C_out,
                            int64_t V, float* column_sums, float* bias_map, cudaStream_t stream);

// y[n, o, t, w] = sum_k sum_c weight[k, o, c] sum_v x[n, c, t, v] A[n, k, v, w]
//                 + bias_map[n * bias_map_sample_stride + o * V + w]   (when bias_map != null)
// y is contiguous [N, C_out, T, V]. With weight and adjacency passed as transposed views
// (strides swapped) and no bias map, this is also d x of the backward. With branches, x A is
// sum_b x_b A_b.
template <typename scalar_t>
cudaError_t launch_graph_conv_forward(const scalar_t* x, FrameStrides x_strides,
                                      const scalar_t* weight, WeightStrides weight_strides,
                                      const scalar_t* adjacency,
                                      AdjacencyStrides adjacency_strides, const float* bias_map,
                                      int64_t bias_map_sample_stride, scalar_t* y, Dims dims,
                                      cudaStream_t stream, Branches branches = {});

// grad_weight[k, o, c] = sum_{n, t, w} grad_out[n, o, t, w] sum_v x[n, c, t, v] A[n, k, v, w]
// into fp32 [K, C_out, C_in] contiguous, which this launcher zeroes first. With branches,
// x A is sum_b x_b A_b.
template <typename scalar_t>
cudaError_t launch_graph_conv_weight_grad(const scalar_t* grad_out, FrameStrides grad_out_strides,
                                          const scalar_t* x, FrameStrides x_strides,
                                          const scalar_t* adjacency,
                                          AdjacencyStrides adjacency_strides, float* grad_weight,
                                          Dims dims, cudaStream_t stream, Branches branches = {});

// grad_adjacency[g, k, v, w] = sum_{n in g, c, t} x[n, c, t, v] sum_o weight[k, o, c]
//                                                   grad_out[n, o, t, w]
// into fp32 contiguous [N, K, V, V] (per_sample_adjacency: group g = sample n) or [K, V, V]
// (one group, summed over n), which this launcher zeroes first.
template <typename scalar_t>
cudaError_t launch_graph_conv_adjacency_grad(const scalar_t* grad_out,
                                             FrameStrides grad_out_strides, const scalar_t* x,
                                             FrameStrides x_strides, const scalar_t* weight,
                                             WeightStrides weight_strides,
                                             bool per_sample_adjacency, float* grad_adjacency,
                                             Dims dims, cudaStream_t stream);

}  // namespace skelops::graph_conv
