// Host-side structure the CUDA kernels of sparse graph convolution derive from a checked CSR
// (rows = targets, see sparse_graph_conv_common.h): int32 copies of the indices, the processing
// order of the targets, the non-empty rows of each subset, and the transposed CSR (rows =
// sources) with the permutation of its entries, for d x as the forward on A^T. Plain C++ (no
// torch), built once per index tensors by the CUDA glue, which caches the device copy.
#pragma once

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <vector>

namespace skelops::sparse_graph_conv {

// `data` concatenates int32 arrays; the other fields are their offsets (in elements).
struct CsrStructure {
  std::vector<int32_t> data;
  // CSR as given (rows = targets): crow [K * (V + 1)], col [nnz], row_order [V],
  // nonempty_rows [K * V], nonempty_count [K] (see Csr in sparse_graph_conv_kernels.cuh).
  int64_t crow = 0, col = 0, row_order = 0, nonempty_rows = 0, nonempty_count = 0;
  int64_t max_nonempty = 0;
  // Transposed (rows = sources v, col = targets w): crow_t [K * (V + 1)], col_t [nnz],
  // row_order_t [V]; transposed entry i is entry source_entry[i] of the given CSR.
  int64_t crow_t = 0, col_t = 0, row_order_t = 0;
  std::vector<int64_t> source_entry;
};

namespace detail {

// Rows w = 0..V-1 grouped by the set of subsets k in which row (k, w) is non-empty (sets
// compared lexicographically over k, non-empty first), ties in index order. crow: [K][V + 1].
inline std::vector<int32_t> order_by_pattern(const std::vector<int64_t>& crow, int64_t K,
                                             int64_t V) {
  std::vector<int32_t> order(static_cast<size_t>(V));
  std::iota(order.begin(), order.end(), 0);
  const auto nonempty = [&](int64_t k, int64_t w) {
    return crow[k * (V + 1) + w + 1] > crow[k * (V + 1) + w];
  };
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    for (int64_t k = 0; k < K; ++k) {
      const bool in_a = nonempty(k, a), in_b = nonempty(k, b);
      if (in_a != in_b) return in_a;
    }
    return false;
  });
  return order;
}

}  // namespace detail

// crow [K * (V + 1)] global offsets and col [nnz], already checked (check_problem).
template <typename index_t>
CsrStructure build_csr_structure(const index_t* crow_in, const index_t* col_in, int64_t K,
                                 int64_t V, int64_t nnz) {
  const int64_t rows = K * (V + 1);
  std::vector<int64_t> crow(crow_in, crow_in + rows);
  std::vector<int64_t> crow_t(static_cast<size_t>(rows), 0);
  std::vector<int32_t> col_t(static_cast<size_t>(nnz)), entry_t(static_cast<size_t>(nnz));

  // Transposed CSR by counting sort of the entries on (k, source), stable in entry order, so
  // that each transposed row lists its targets in increasing order.
  std::vector<int64_t> cursor(static_cast<size_t>(K * V), 0);
  for (int64_t k = 0; k < K; ++k) {
    for (int64_t w = 0; w < V; ++w) {
      for (int64_t j = crow[k * (V + 1) + w]; j < crow[k * (V + 1) + w + 1]; ++j) {
        ++cursor[k * V + col_in[j]];
      }
    }
  }
  int64_t running = 0;
  for (int64_t k = 0; k < K; ++k) {
    for (int64_t v = 0; v < V; ++v) {
      crow_t[k * (V + 1) + v] = running;
      const int64_t count = cursor[k * V + v];
      cursor[k * V + v] = running;
      running += count;
    }
    crow_t[k * (V + 1) + V] = running;
  }
  for (int64_t k = 0; k < K; ++k) {
    for (int64_t w = 0; w < V; ++w) {
      for (int64_t j = crow[k * (V + 1) + w]; j < crow[k * (V + 1) + w + 1]; ++j) {
        const int64_t at = cursor[k * V + col_in[j]]++;
        col_t[at] = static_cast<int32_t>(w);
        entry_t[at] = static_cast<int32_t>(j);
      }
    }
  }

  CsrStructure s;
  std::vector<int32_t>& data = s.data;
  const auto append = [&data](auto first, auto last) {
    const int64_t at = static_cast<int64_t>(data.size());
    for (; first != last; ++first) data.push_back(static_cast<int32_t>(*first));
    return at;
  };
  s.crow = append(crow.begin(), crow.end());
  s.col = append(col_in, col_in + nnz);
  const std::vector<int32_t> order = detail::order_by_pattern(crow, K, V);
  s.row_order = append(order.begin(), order.end());
  s.nonempty_rows = static_cast<int64_t>(data.size());
  data.resize(data.size() + static_cast<size_t>(K * V), 0);
  s.nonempty_count = static_cast<int64_t>(data.size());
  data.resize(data.size() + static_cast<size_t>(K), 0);
  for (int64_t k = 0; k < K; ++k) {
    int64_t count = 0;
    for (int64_t w = 0; w < V; ++w) {
      if (crow[k * (V + 1) + w + 1] > crow[k * (V + 1) + w]) {
        data[s.nonempty_rows + k * V + count++] = static_cast<int32_t>(w);
      }
    }
    data[s.nonempty_count + k] = static_cast<int32_t>(count);
    s.max_nonempty = std::max(s.max_nonempty, count);
  }
  s.crow_t = append(crow_t.begin(), crow_t.end());
  s.col_t = append(col_t.begin(), col_t.end());
  const std::vector<int32_t> order_t = detail::order_by_pattern(crow_t, K, V);
  s.row_order_t = append(order_t.begin(), order_t.end());
  s.source_entry.assign(entry_t.begin(), entry_t.end());
  return s;
}

}  // namespace skelops::sparse_graph_conv
