// Torch-free launchers of the CUDA kernels of skelops::sparse_graph_conv and its backward
// (defined in sparse_graph_conv_kernels.cu, instantiated for float, __half and __nv_bfloat16;
// fp32 accumulation).
//
// Convention (whole library): x[n, c, t, v], weight[k, o, c]; subset k of the adjacency
// A[k, v, w] (source joint v -> target joint w) is CSR with rows = TARGETS: entries j in
// [crow[k * (V + 1) + w], crow[k * (V + 1) + w + 1]) of row (k, w) carry values[j] =
// A[k, col[j], w]; crow holds global offsets into col / values (see
// sparse_graph_conv_common.h, which checks the structure before any launch):
//   y[n, o, t, w] = sum_k sum_{j in row(k, w)} values[j] sum_c weight[k, o, c] x[n, c, t, col[j]]
//
// Indices are int32 and contiguous; values are contiguous [nnz]. Strides of the feature
// tensors and of weight are in elements and may be anything. Every launcher enqueues on
// `stream` and returns the first failing CUDA call's error or cudaGetLastError(). The 16-bit
// kernels use tensor cores (WMMA) and need sm_80 or newer (cudaErrorNotSupported otherwise).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace skelops::sparse_graph_conv {

// x [N, C_in, T, V] -> y [N, C_out, T, V] with K adjacency subsets.
struct Dims {
  int64_t N, C_in, T, V, K, C_out;
};

// Strides of a [N, C, T, V] tensor (x, grad_out).
struct FrameStrides {
  int64_t n, c, t, v;
};

// Strides of a weight read as weight[k, m, c]: m indexes the kernel's output channels and c the
// channels it reduces over ([K, C_out, C_in] as is, or with o and c exchanged for W^T).
struct WeightStrides {
  int64_t k, m, c;
};

// One CSR (int32, on the device) with what the kernels derive from its structure:
//   row_order [V]: the target joints in processing order, grouped by the set of subsets whose
//     row is non-empty, so that a warp's 32 consecutive targets mostly share that set (the
//     forward skips a subset for a warp whose targets all have empty rows in it);
//   nonempty_rows [K * V] and nonempty_count [K]: nonempty_rows[k * V + i], i <
//     nonempty_count[k], are the targets whose row in subset k holds entries (ascending);
//     max_nonempty (host) is the largest count.
struct Csr {
  const int32_t* crow;  // [K * (V + 1)], global offsets
  const int32_t* col;   // [nnz]
  int64_t nnz;
  const int32_t* row_order;
  const int32_t* nonempty_rows;
  const int32_t* nonempty_count;
  int64_t max_nonempty;
};

// The sparse channel mix of the forward:
//   out[n, m, t, w] = sum_k sum_{j in row(k, w)} values[j] sum_c weight[k, m, c] in[n, c, t, col[j]]
//                     + bias_map[m * V + w]   (when bias_map != null; fp32 [M, V] contiguous)
// for in [N, C, T, V] (C = dims.C_in) and out [N, M, T, V] contiguous (M = dims.C_out).
// Uses csr.crow, col and row_order. With the transposed CSR (rows = sources), its values, and
// weight passed with o and c exchanged (WeightStrides{k, c, o}, dims with C_in and C_out
// exchanged), this is d x of the backward.
template <typename scalar_t>
cudaError_t launch_sparse_mix(const scalar_t* in, FrameStrides in_strides, const scalar_t* weight,
                              WeightStrides weight_strides, Csr csr, const scalar_t* values,
                              const float* bias_map, scalar_t* out, Dims dims,
                              cudaStream_t stream);

// grad_weight[k, o, c] = sum_{n, t, w} grad_out[n, o, t, w] sum_{j in row(k, w)} values[j]
//                                                             x[n, c, t, col[j]]
// into fp32 [K, C_out, C_in] contiguous, which this launcher zeroes first. Uses the non-empty
// row lists of csr. fp32 atomics: not bitwise deterministic.
template <typename scalar_t>
cudaError_t launch_sparse_weight_grad(const scalar_t* grad_out, FrameStrides grad_out_strides,
                                      const scalar_t* x, FrameStrides x_strides, Csr csr,
                                      const scalar_t* values, float* grad_weight, Dims dims,
                                      cudaStream_t stream);

// grad_values[j] = sum_{n, t, c} x[n, c, t, col[j]] sum_o weight[k, o, c] grad_out[n, o, t, w]
// for entry j of row (k, w), into fp32 [nnz], which this launcher zeroes first (the bias's
// share is added by the caller). weight_strides as weight[k, o, c]. fp32 atomics: not bitwise
// deterministic.
template <typename scalar_t>
cudaError_t launch_sparse_values_grad(const scalar_t* grad_out, FrameStrides grad_out_strides,
                                      const scalar_t* x, FrameStrides x_strides,
                                      const scalar_t* weight, WeightStrides weight_strides,
                                      Csr csr, float* grad_values, Dims dims,
                                      cudaStream_t stream);

}  // namespace skelops::sparse_graph_conv
