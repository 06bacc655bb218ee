// Per-element math of sparse graph convolution (see sparse_graph_conv_common.h for the CSR
// convention: rows are targets). The CUDA kernels call gather_row per element; the C++ CPU
// kernel computes the same sum, in the same entry order, for a run of channels at once
// (gather_features in sparse_graph_conv_cpu.cpp), since per element it would not vectorise.
#pragma once

#include <skelops/common.h>

#include <cstdint>

namespace skelops::sparse_graph_conv {

// One row (k, w) of the adjacency applied to a strided run of features:
//   sum_{j in [begin, end)} values[j] * src[col[j] * stride]
// src points at the features of (n, c, t) with the joints `stride` apart.
template <typename acc_t, typename value_t, typename src_t>
SKELOPS_HD acc_t gather_row(const int32_t* col, const value_t* values, int32_t begin,
                            int32_t end, const src_t* src, int64_t stride) {
  acc_t sum = acc_t(0);
  for (int32_t j = begin; j < end; ++j) {
    sum += static_cast<acc_t>(values[j]) * static_cast<acc_t>(src[col[j] * stride]);
  }
  return sum;
}

}  // namespace skelops::sparse_graph_conv
