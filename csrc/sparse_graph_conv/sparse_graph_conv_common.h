// Torch-level pieces of sparse graph convolution shared by the CPU kernels and the CUDA glue:
// argument and CSR-structure checks, the bias map of the forward and the bias gradients (small
// ATen computations that run on any device).
//
// Adjacency: subsets k < K of A[k, v, w] (source v, target w) as CSR with rows indexed by the
// TARGET w (skelops.graphs.SparseAdjacency). Entries j in [crow[k, w], crow[k, w + 1]) of row
// (k, w) carry values[j] = A[k, col[j], w]; crow holds global offsets, so crow[0, 0] = 0,
// crow[k, V] = crow[k + 1, 0] and crow[K - 1, V] = nnz. Within a row the sources are strictly
// increasing (sorted, no duplicates). Empty rows (degree-0 nodes) and empty subsets are valid.
//
//   y[n, o, t, w] = sum_k sum_{j in row(k, w)} values[j] sum_c W[k, o, c] x[n, c, t, col[j]]
//                   + bias term
// bias [C_out] is added as is; bias [K, C_out] (before aggregation, as the bias of ST-GCN's
// 1x1 convolution) is scaled by the row sums r[k, w] = sum_{j in row(k, w)} values[j].
#pragma once

#include "graph_conv/graph_conv_common.h"

#include <ATen/core/Tensor.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/repeat_interleave.h>
#include <ATen/ops/sub.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/zeros.h>
#include <c10/core/TensorImpl.h>
#include <c10/util/Exception.h>
#include <c10/util/intrusive_ptr.h>
#include <skelops/checked_tensors.h>

#include <array>
#include <cstdint>
#include <limits>
#include <optional>
#include <vector>

namespace skelops::sparse_graph_conv {

// The dense op's sizes and bias kind (per_sample_adjacency is always false), and nnz.
struct Problem : graph_conv::Problem {
  int64_t nnz = 0;
};

using graph_conv::check_grad_out;
using graph_conv::empty_like_none;

namespace detail {

// Reads the CSR arrays on the host and checks every invariant the kernels rely on.
template <typename index_t>
void check_csr_host(const char* op, const index_t* crow, const index_t* col, int64_t K, int64_t V,
                    int64_t nnz) {
  TORCH_CHECK_VALUE(crow[0] == 0, op, ": crow_indices[0, 0] must be 0, got ",
                    static_cast<int64_t>(crow[0]));
  // Offsets first (so that the entry loop below only reads within [0, nnz)), then entries.
  for (int64_t k = 0; k < K; ++k) {
    const index_t* row = crow + k * (V + 1);
    if (k > 0) {
      TORCH_CHECK_VALUE(row[0] == crow[k * (V + 1) - 1], op, ": crow_indices[", k,
                        ", 0] must equal crow_indices[", k - 1, ", V] (subsets are stored one "
                        "after the other), got ", static_cast<int64_t>(row[0]), " and ",
                        static_cast<int64_t>(crow[k * (V + 1) - 1]));
    }
    for (int64_t w = 0; w < V; ++w) {
      const int64_t begin = row[w], end = row[w + 1];
      TORCH_CHECK_VALUE(begin <= end && end <= nnz, op,
                        ": crow_indices must be non-decreasing and at most nnz=", nnz,
                        ", got crow_indices[", k, ", ", w, ":", w + 2, "] = [", begin, ", ", end,
                        "]");
    }
  }
  for (int64_t k = 0; k < K; ++k) {
    const index_t* row = crow + k * (V + 1);
    for (int64_t w = 0; w < V; ++w) {
      const int64_t begin = row[w], end = row[w + 1];
      for (int64_t j = begin; j < end; ++j) {
        const int64_t v = col[j];
        TORCH_CHECK_INDEX(v >= 0 && v < V, op, ": col_indices[", j, "] = ", v,
                          " is out of range for V=", V, " (row k=", k, ", w=", w, ")");
        TORCH_CHECK_VALUE(j == begin || v > static_cast<int64_t>(col[j - 1]), op,
                          ": col_indices must be strictly increasing within a row (sorted, no "
                          "duplicates), got ", static_cast<int64_t>(col[j - 1]), " then ", v,
                          " in row k=", k, ", w=", w);
      }
    }
  }
  TORCH_CHECK_VALUE(crow[K * (V + 1) - 1] == nnz, op, ": crow_indices[K - 1, V] must equal nnz=",
                    nnz, " (values.numel()), got ", static_cast<int64_t>(crow[K * (V + 1) - 1]));
}

inline void check_csr(const char* op, const at::Tensor& crow, const at::Tensor& col, int64_t K,
                      int64_t V, int64_t nnz) {
  const at::Tensor crow_h = crow.cpu().contiguous(), col_h = col.cpu().contiguous();
  if (crow.scalar_type() == at::kInt) {
    check_csr_host<int32_t>(op, crow_h.const_data_ptr<int32_t>(), col_h.const_data_ptr<int32_t>(),
                            K, V, nnz);
  } else {
    check_csr_host<int64_t>(op, crow_h.const_data_ptr<int64_t>(), col_h.const_data_ptr<int64_t>(),
                            K, V, nnz);
  }
}

inline bool same_impl(const c10::weak_intrusive_ptr<c10::TensorImpl>& weak, const at::Tensor& t) {
  const auto strong = weak.lock();
  return strong.defined() && strong.get() == t.unsafeGetTensorImpl();
}

// The structure is checked on the host; for GPU tensors once per live pair of index tensors and
// versions (skelops/checked_tensors.h), so that a training loop does not synchronise every call.
inline void check_csr_cached(const char* op, const at::Tensor& crow, const at::Tensor& col,
                             int64_t K, int64_t V, int64_t nnz) {
  if (crow.device().is_cpu()) {
    check_csr(op, crow, col, K, V, nnz);
    return;
  }
  static CheckedTensors<2> checked;
  // The check depends on K, V and nnz; crow's shape holds K and V, so V and nnz make the key.
  checked.check_once({&crow, &col}, V * (int64_t{1} << 40) + nnz,
                     [&] { check_csr(op, crow, col, K, V, nnz); });
}

}  // namespace detail

// Checks shapes, dtypes and devices, and the CSR structure (on the host; for GPU tensors once
// per live index tensor and version), and returns the sizes.
inline Problem check_problem(const char* op, const at::Tensor& x, const at::Tensor& weight,
                             const at::Tensor& crow, const at::Tensor& col,
                             const at::Tensor& values, const std::optional<at::Tensor>& bias) {
  TORCH_CHECK_VALUE(x.dim() == 4, op, ": x must be 4-D [N, C_in, T, V], got ", x.dim(), "-D");
  TORCH_CHECK_VALUE(weight.dim() == 3, op, ": weight must be 3-D [K, C_out, C_in], got ",
                    weight.dim(), "-D");
  TORCH_CHECK_VALUE(crow.dim() == 2, op, ": crow_indices must be 2-D [K, V + 1], got ",
                    crow.dim(), "-D");
  TORCH_CHECK_VALUE(col.dim() == 1, op, ": col_indices must be 1-D [nnz], got ", col.dim(), "-D");
  TORCH_CHECK_VALUE(values.dim() == 1, op, ": values must be 1-D [nnz], got ", values.dim(), "-D");
  TORCH_CHECK_TYPE(at::isFloatingType(x.scalar_type()), op,
                   ": x must be a floating-point tensor, got ", x.scalar_type());
  TORCH_CHECK_TYPE(weight.scalar_type() == x.scalar_type() &&
                       values.scalar_type() == x.scalar_type(),
                   op, ": x, weight and values must share one dtype, got ", x.scalar_type(), ", ",
                   weight.scalar_type(), ", ", values.scalar_type());
  TORCH_CHECK_TYPE(
      (crow.scalar_type() == at::kInt || crow.scalar_type() == at::kLong) &&
          col.scalar_type() == crow.scalar_type(),
      op, ": crow_indices and col_indices must both be int32 or both int64, got ",
      crow.scalar_type(), " and ", col.scalar_type());
  for (const at::Tensor* t : {&weight, &crow, &col, &values}) {
    TORCH_CHECK_VALUE(t->device() == x.device(), op,
                      ": weight, crow_indices, col_indices and values must be on x's device (",
                      x.device(), "), got ", t->device());
  }
  Problem p;
  static_cast<graph_conv::Problem&>(p) = graph_conv::problem_sizes(op, x, weight);
  p.nnz = values.size(0);
  TORCH_CHECK_VALUE(crow.size(0) == p.K && crow.size(1) == p.V + 1, op,
                    ": crow_indices must be [K, V + 1] = [", p.K, ", ", p.V + 1,
                    "] (K = weight.shape[0], V = x.shape[3]), got ", crow.sizes());
  TORCH_CHECK_VALUE(col.size(0) == p.nnz, op, ": col_indices must have nnz=", p.nnz,
                    " entries (values.numel()), got ", col.size(0));
  TORCH_CHECK_VALUE(p.nnz <= std::numeric_limits<int32_t>::max(), op,
                    ": at most 2^31 - 1 stored entries are supported, got ", p.nnz);
  graph_conv::check_bias(op, bias, x, p);
  detail::check_csr_cached(op, crow, col, p.K, p.V, p.nnz);
  return p;
}

inline at::ScalarType acc_type(at::ScalarType dtype) {
  return dtype == at::kDouble ? at::kDouble : at::kFloat;
}

// entry_rows[j] = k * V + w: the (subset, target) row that entry j belongs to; int64 [nnz].
inline at::Tensor entry_rows(const at::Tensor& crow, const Problem& p) {
  const at::Tensor counts = at::sub(crow.narrow(1, 1, p.V), crow.narrow(1, 0, p.V)).reshape({-1});
  return at::repeat_interleave(at::arange(p.K * p.V, crow.options().dtype(at::kLong)),
                               counts.to(at::kLong), std::nullopt, p.nnz);
}

// Row sums r[k, w] = sum_{j in row(k, w)} values[j], in the accumulation type; [K, V].
inline at::Tensor row_sums(const at::Tensor& crow, const at::Tensor& values, const Problem& p) {
  at::Tensor sums = at::zeros({p.K * p.V}, values.options().dtype(acc_type(values.scalar_type())));
  if (p.nnz > 0) sums.index_add_(0, entry_rows(crow, p), values.to(sums.scalar_type()));
  return sums.view({p.K, p.V});
}

// The bias term the forward adds to output (o, w), [C_out, V] contiguous in the accumulation
// type: bias[o] (after aggregation) or sum_k bias[k, o] * r[k, w] (before).
inline at::Tensor bias_map(const at::Tensor& crow, const at::Tensor& values,
                           const at::Tensor& bias, const Problem& p) {
  const auto acc = acc_type(values.scalar_type());
  const at::Tensor b = bias.to(acc);
  if (!p.bias_before_aggregation) return b.view({p.C_out, 1}).expand({p.C_out, p.V}).contiguous();
  return at::matmul(b.t(), row_sums(crow, values, p)).contiguous();
}

// The bias's share of sparse_graph_conv_backward for every backend, from
// S[o, w] = sum_{n, t} grad_out[n, o, t, w]:
//   after:  d bias[o]    = sum_w S[o, w]
//   before: d bias[k, o] = sum_w S[o, w] r[k, w];  d values[j] += sum_o bias[k, o] S[o, w]
//           for entry j of row (k, w), added into grad_values_acc (acc dtype [nnz]) whenever
//           d values is asked for, whether or not d bias itself is.
// Returns d bias when output_mask asks for it, else an empty tensor.
inline at::Tensor bias_gradients(const at::Tensor& grad_out, const at::Tensor& x,
                                 const at::Tensor& crow, const at::Tensor& values,
                                 const std::optional<at::Tensor>& bias, const Problem& p,
                                 std::array<bool, 4> output_mask, at::Tensor* grad_values_acc) {
  const bool need_grad_bias = output_mask[3] && p.has_bias;
  const bool bias_reaches_values = output_mask[2] && p.has_bias && p.bias_before_aggregation &&
                                   grad_values_acc != nullptr && grad_values_acc->defined();
  if (!need_grad_bias && !bias_reaches_values) return empty_like_none(x);
  const auto acc = acc_type(x.scalar_type());
  const at::Tensor S = at::sum(grad_out, {0, 2}, /*keepdim=*/false, acc);  // [C_out, V]
  if (!p.bias_before_aggregation) {
    return need_grad_bias ? at::sum(S, {1}, false, acc).to(x.scalar_type()) : empty_like_none(x);
  }
  if (bias_reaches_values && p.nnz > 0) {
    const at::Tensor per_row = at::matmul(bias->to(acc), S).reshape({-1});  // [K * V]
    grad_values_acc->add_(per_row.index_select(0, entry_rows(crow, p)));
  }
  if (!need_grad_bias) return empty_like_none(x);
  return at::matmul(row_sums(crow, values, p), S.t()).to(x.scalar_type()).contiguous();  // [K, C_out]
}

}  // namespace skelops::sparse_graph_conv
