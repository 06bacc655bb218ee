// Per-element math of graph convolution shared by the C++ CPU loops and the CUDA kernels.
//
// Convention (whole library): x[n, c, t, v], weight[k, o, c], adjacency[k, v, w] (or
// [n, k, v, w]) carries source joint v to target joint w:
//   y[n, o, t, w] = sum_k sum_c sum_v weight[k, o, c] * x[n, c, t, v] * adjacency[k, v, w] + bias
#pragma once

#include <skelops/common.h>

namespace skelops::graph_conv {

// The bias term added to output (o, w) of sample n, collected once per call into a
// [Nb, C_out, V] "bias map" so the kernels' epilogue is a single add.
//   before aggregation (bias[k, o], the bias of ST-GCN's 1x1 convolution): it travels through
//   the adjacency, so it is scaled by the column sums colsum[k, w] = sum_v A[k, v, w];
//   after aggregation (bias[o]): added as is.
template <typename acc_t, typename bias_t>
SKELOPS_HD acc_t bias_map_entry(
    const bias_t* bias, bool before_aggregation, const acc_t* colsum_n /* [K, V] */,
    int64_t K, int64_t C_out, int64_t V, int64_t o, int64_t w) {
  if (!before_aggregation) {
    return static_cast<acc_t>(bias[o]);
  }
  acc_t sum = acc_t(0);
  for (int64_t k = 0; k < K; ++k) {
    sum += static_cast<acc_t>(bias[k * C_out + o]) * colsum_n[k * V + w];
  }
  return sum;
}

// Column sums of one sample's adjacency: colsum[k, w] = sum_v A[k, v, w].
template <typename acc_t, typename adj_t>
SKELOPS_HD acc_t column_sum(const adj_t* adjacency_n /* [K, V, V] contiguous */, int64_t V,
                            int64_t k, int64_t w) {
  acc_t sum = acc_t(0);
  const adj_t* a = adjacency_n + k * V * V + w;
  for (int64_t v = 0; v < V; ++v) {
    sum += static_cast<acc_t>(a[v * V]);
  }
  return sum;
}

}  // namespace skelops::graph_conv
