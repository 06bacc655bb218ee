// C++ CPU kernels of skelops::sparse_graph_conv and skelops::sparse_graph_conv_backward.
//
// Aggregate first, then mix channels, over only the (subset, target) rows that hold entries.
// The work is cut into tiles of (sample n, a block of tb frames); each tile of x is copied
// once, joint-major ([t, v, c]: channel runs contiguous, any stride layout of x works), into
// cache-resident scratch. Then, for the subsets whose every target row holds entries (the
// "full" subsets, F of them) together, and for each other subset k on its non-empty rows R_k:
//   U[(t, r), (f, c)] = sum_{j in row(k_f, w_r)} values[j] x[t, col[j], c]   (channel axpys)
//   Y[(t, w), :]     (+)= U @ W'^T            (one GEMM, reduction F * C_in, or C_in per k)
// so that per frame the GEMMs do 2 C_in C_out sum_k |R_k| FLOPs and the gathers 2 C_in nnz,
// against 2 K C_in C_out V + 2 K C_out V^2 for `conv1x1 + einsum` with the dense matrix
// (MP-GCN Volleyball, K = 3, V = 216: 444 of 648 rows; 660 of 139,968 entries).
//
// Backward, per tile and the same groups, with G = dY on the group's rows:
//   H = G W'                     d x[t, col[j], :] += values[j] H[(t, r), k_f block]
//                                d values[j] += <x[t, col[j], :], H[(t, r), k_f block]>
//   d W' += G^T U                (U gathered again from x)
// d W and d values are summed per chunk of tiles and added up after the parallel loop.
//
// The per-row sum is the one gather_row (sparse_graph_conv_math.h) defines, in the same entry
// order; the CPU runs it across a row of channels at once (vectorised axpys) rather than per
// element, which the joint-major tile makes contiguous.
#include "sparse_graph_conv/sparse_graph_conv_common.h"

#include <skelops/cpu_tiles.h>

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

namespace skelops::sparse_graph_conv {
namespace {

using namespace skelops::cpu;

// The adjacency and weights, converted and grouped once per call.
template <typename acc_t>
struct Operands {
  int64_t V = 0;
  std::vector<int32_t> crow;               // [K, V + 1]
  std::vector<int32_t> col;                // [nnz]
  std::vector<int64_t> full;               // subsets whose every target row holds entries
  std::vector<int64_t> partial;            // the other non-empty subsets
  std::vector<std::vector<int32_t>> rows;  // R_k: targets w with a non-empty row (k, w)
  at::Tensor values;                       // [nnz]
  at::Tensor weight;                       // [K, C_out, C_in] contiguous
  at::Tensor weight_full;                  // [C_out, F * C_in]: W'[o, f C_in + c] = W[full[f], o, c]
  at::Tensor bias_map;                     // [C_out, V], or undefined

  const int32_t* crow_of(int64_t k) const { return crow.data() + k * (V + 1); }
};

template <typename index_t>
void copy_indices(const at::Tensor& t, std::vector<int32_t>& out) {
  const at::Tensor c = t.contiguous();
  const index_t* p = c.const_data_ptr<index_t>();
  out.assign(p, p + c.numel());  // check_problem bounded them by nnz < 2^31 and V
}

template <typename acc_t>
Operands<acc_t> prepare(const Problem& p, const at::Tensor& weight, const at::Tensor& crow,
                        const at::Tensor& col, const at::Tensor& values,
                        const std::optional<at::Tensor>& bias) {
  const auto acc = c10::CppTypeToScalarType<acc_t>::value;
  Operands<acc_t> ops;
  ops.V = p.V;
  if (crow.scalar_type() == at::kInt) {
    copy_indices<int32_t>(crow, ops.crow);
    copy_indices<int32_t>(col, ops.col);
  } else {
    copy_indices<int64_t>(crow, ops.crow);
    copy_indices<int64_t>(col, ops.col);
  }
  ops.rows.resize(p.K);
  for (int64_t k = 0; k < p.K; ++k) {
    const int32_t* row = ops.crow_of(k);
    for (int32_t w = 0; w < p.V; ++w) {
      if (row[w + 1] > row[w]) ops.rows[k].push_back(w);
    }
    const auto R = static_cast<int64_t>(ops.rows[k].size());
    if (R == p.V) {
      ops.full.push_back(k);
    } else if (R > 0) {
      ops.partial.push_back(k);
    }
  }
  ops.values = values.to(acc).contiguous();
  ops.weight = weight.to(acc).contiguous();
  const auto F = static_cast<int64_t>(ops.full.size());
  if (F > 0) {
    ops.weight_full = at::empty({p.C_out, F * p.C_in}, ops.weight.options());
    const acc_t* w = ops.weight.template const_data_ptr<acc_t>();
    acc_t* out = ops.weight_full.template mutable_data_ptr<acc_t>();
    for (int64_t o = 0; o < p.C_out; ++o)
      for (int64_t f = 0; f < F; ++f)
        std::copy_n(w + (ops.full[f] * p.C_out + o) * p.C_in, p.C_in, out + (o * F + f) * p.C_in);
  }
  if (bias.has_value() && bias->defined()) ops.bias_map = bias_map(crow, values, *bias, p);
  return ops;
}

// out[c] = sum_{j in [begin, end)} values[j] x_t[col[j], c] for c < C, where x_t is one
// frame of a joint-major tile ([V, C]); the row is non-empty.
template <typename acc_t>
inline void gather_features(const int32_t* col, const acc_t* values, int32_t begin, int32_t end,
                            const acc_t* x_t, int64_t C, acc_t* __restrict out) {
  const acc_t* __restrict src = x_t + col[begin] * C;
  const acc_t first = values[begin];
  for (int64_t c = 0; c < C; ++c) out[c] = first * src[c];
  for (int32_t j = begin + 1; j < end; ++j) {
    const acc_t* __restrict s = x_t + col[j] * C;
    const acc_t value = values[j];
    for (int64_t c = 0; c < C; ++c) out[c] += value * s[c];
  }
}

// U for the full subsets: U[(t, w), f C + c] over every target w.
template <typename acc_t>
void gather_full(const Operands<acc_t>& ops, int64_t C, int64_t tl, const acc_t* xs, acc_t* U) {
  const int64_t V = ops.V, F = static_cast<int64_t>(ops.full.size());
  const acc_t* vals = ops.values.template const_data_ptr<acc_t>();
  for (int64_t t = 0; t < tl; ++t) {
    for (int64_t w = 0; w < V; ++w) {
      acc_t* out = U + (t * V + w) * F * C;
      for (int64_t f = 0; f < F; ++f) {
        const int32_t* crow = ops.crow_of(ops.full[f]);
        gather_features(ops.col.data(), vals, crow[w], crow[w + 1], xs + t * V * C, C,
                        out + f * C);
      }
    }
  }
}

// U for one partial subset k: U[(t, r), c] over its non-empty rows.
template <typename acc_t>
void gather_partial(const Operands<acc_t>& ops, int64_t k, int64_t C, int64_t tl,
                    const acc_t* xs, acc_t* U) {
  const int64_t V = ops.V;
  const std::vector<int32_t>& rows = ops.rows[k];
  const auto R = static_cast<int64_t>(rows.size());
  const int32_t* crow = ops.crow_of(k);
  const acc_t* vals = ops.values.template const_data_ptr<acc_t>();
  for (int64_t t = 0; t < tl; ++t) {
    for (int64_t r = 0; r < R; ++r) {
      gather_features(ops.col.data(), vals, crow[rows[r]], crow[rows[r] + 1], xs + t * V * C, C,
                      U + (t * R + r) * C);
    }
  }
}

template <typename scalar_t>
void forward_impl(const Problem& p, const at::Tensor& x, const at::Tensor& weight,
                  const at::Tensor& crow, const at::Tensor& col, const at::Tensor& values,
                  const std::optional<at::Tensor>& bias, at::Tensor& y) {
  using acc_t = at::opmath_type<scalar_t>;
  const auto ops = prepare<acc_t>(p, weight, crow, col, values, bias);
  const int64_t V = p.V, F = static_cast<int64_t>(ops.full.size());
  const int64_t FC = std::max<int64_t>(F, 1) * p.C_in;
  // per frame: xs [V, C_in], U [V, F C_in], ys and a partial subset's Y_k [V, C_out]
  const int64_t tb = frames_per_tile(p.N, p.T, (p.C_in + FC + 2 * p.C_out) * V, sizeof(acc_t));
  const int64_t tiles_per_sample = ceil_div(p.T, tb);
  const scalar_t* xp = x.const_data_ptr<scalar_t>();
  const int64_t sx_n = x.stride(0), sx_c = x.stride(1), sx_t = x.stride(2), sx_v = x.stride(3);
  scalar_t* yp = y.mutable_data_ptr<scalar_t>();
  const acc_t* wp = ops.weight.template const_data_ptr<acc_t>();
  const acc_t* bias_of =
      ops.bias_map.defined() ? ops.bias_map.template const_data_ptr<acc_t>() : nullptr;

  at::parallel_for(0, p.N * tiles_per_sample, 1, [&](int64_t begin, int64_t end) {
    const SequentialBlas sequential;
    Scratch<acc_t> xs(tb * V * p.C_in), U(tb * V * FC), ys(tb * V * p.C_out),
        yk(tb * V * p.C_out);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / tiles_per_sample;
      const int64_t t0 = (task % tiles_per_sample) * tb;
      const int64_t tl = std::min(tb, p.T - t0);
      load_tile_transposed(xp + n * sx_n + t0 * sx_t, sx_c, sx_t, sx_v, p.C_in, tl, V,
                           xs.data());
      if (F > 0) {
        gather_full(ops, p.C_in, tl, xs.data(), U.data());
        gemm_rm<acc_t>(false, true, tl * V, p.C_out, F * p.C_in, U.data(), F * p.C_in,
                       ops.weight_full.template const_data_ptr<acc_t>(), F * p.C_in, 0,
                       ys.data(), p.C_out);
      } else {
        std::fill(ys.data(), ys.data() + tl * V * p.C_out, acc_t(0));
      }
      for (const int64_t k : ops.partial) {
        const std::vector<int32_t>& rows = ops.rows[k];
        const auto R = static_cast<int64_t>(rows.size());
        gather_partial(ops, k, p.C_in, tl, xs.data(), U.data());
        gemm_rm<acc_t>(false, true, tl * R, p.C_out, p.C_in, U.data(), p.C_in,
                       wp + k * p.C_out * p.C_in, p.C_in, 0, yk.data(), p.C_out);
        for (int64_t t = 0; t < tl; ++t) {
          for (int64_t r = 0; r < R; ++r) {
            const acc_t* __restrict in = yk.data() + (t * R + r) * p.C_out;
            acc_t* __restrict out = ys.data() + (t * V + rows[r]) * p.C_out;
            for (int64_t o = 0; o < p.C_out; ++o) out[o] += in[o];
          }
        }
      }
      store_tile_transposed(ys.data(), bias_of, p.C_out, tl, p.T, V,
                            yp + (n * p.C_out * p.T + t0) * V);
    }
  });
}

// The backward's per-row work of one subset block: H holds rows (t, r) of C_in values at
// stride ldh; row r of frame t is target rows[r] (or r itself when rows is null).
template <typename acc_t>
void scatter_rows(const Operands<acc_t>& ops, int64_t k, const int32_t* rows, int64_t R,
                  int64_t C, int64_t tl, const acc_t* H, int64_t ldh, const acc_t* xs,
                  acc_t* gxs, acc_t* gv) {
  const int64_t V = ops.V;
  const int32_t* crow = ops.crow_of(k);
  const int32_t* col = ops.col.data();
  const acc_t* vals = ops.values.template const_data_ptr<acc_t>();
  for (int64_t t = 0; t < tl; ++t) {
    for (int64_t r = 0; r < R; ++r) {
      const int32_t w = rows != nullptr ? rows[r] : static_cast<int32_t>(r);
      const acc_t* __restrict h = H + (t * R + r) * ldh;
      for (int32_t j = crow[w]; j < crow[w + 1]; ++j) {
        const int64_t at = (t * V + col[j]) * C;
        if (gxs != nullptr) {
          acc_t* __restrict dst = gxs + at;
          const acc_t value = vals[j];
          for (int64_t c = 0; c < C; ++c) dst[c] += value * h[c];
        }
        if (gv != nullptr) {
          const acc_t* __restrict src = xs + at;
          acc_t dot = acc_t(0);
          for (int64_t c = 0; c < C; ++c) dot += src[c] * h[c];
          gv[j] += dot;
        }
      }
    }
  }
}

template <typename scalar_t>
void backward_impl(const Problem& p, const at::Tensor& grad_out, const at::Tensor& x,
                   const at::Tensor& weight, const at::Tensor& crow, const at::Tensor& col,
                   const at::Tensor& values, std::array<bool, 4> mask, at::Tensor& grad_x,
                   at::Tensor& grad_weight_acc, at::Tensor& grad_values_acc) {
  using acc_t = at::opmath_type<scalar_t>;
  const bool need_gx = mask[0], need_gw = mask[1], need_gv = mask[2] && p.nnz > 0;
  if (!need_gx && !need_gw && !need_gv) return;
  const auto ops = prepare<acc_t>(p, weight, crow, col, values, std::nullopt);
  const int64_t V = p.V, F = static_cast<int64_t>(ops.full.size());
  const int64_t FC = std::max<int64_t>(F, 1) * p.C_in;
  // per frame: gs and a partial subset's G_k [V, C_out]; xs, gxs [V, C_in]; H and U [V, F C_in]
  const int64_t tb =
      frames_per_tile(p.N, p.T, (2 * p.C_out + 2 * p.C_in + 2 * FC) * V, sizeof(acc_t));
  const int64_t tiles_per_sample = ceil_div(p.T, tb);
  const int64_t num_tasks = p.N * tiles_per_sample;
  const int64_t num_chunks = std::min<int64_t>(at::get_num_threads(), num_tasks);
  // d W per chunk: [C_out, F C_in] for the full subsets, then [C_out, C_in] per partial one.
  const int64_t gw_elems = p.K * p.C_out * p.C_in;
  const auto acc_opts = x.options().dtype(c10::CppTypeToScalarType<acc_t>::value);
  at::Tensor gw_partial_t = at::zeros({need_gw ? num_chunks * gw_elems : 0}, acc_opts);
  at::Tensor gv_partial_t = at::zeros({need_gv ? num_chunks * p.nnz : 0}, acc_opts);
  acc_t* gw_partial = gw_partial_t.mutable_data_ptr<acc_t>();
  acc_t* gv_partial = gv_partial_t.mutable_data_ptr<acc_t>();

  const scalar_t* xp = x.const_data_ptr<scalar_t>();
  const scalar_t* gp = grad_out.const_data_ptr<scalar_t>();
  const int64_t sx_n = x.stride(0), sx_c = x.stride(1), sx_t = x.stride(2), sx_v = x.stride(3);
  const int64_t sg_n = grad_out.stride(0), sg_c = grad_out.stride(1), sg_t = grad_out.stride(2),
                sg_v = grad_out.stride(3);
  scalar_t* gxp = need_gx ? grad_x.mutable_data_ptr<scalar_t>() : nullptr;
  const acc_t* wp = ops.weight.template const_data_ptr<acc_t>();
  const acc_t* w_full = F > 0 ? ops.weight_full.template const_data_ptr<acc_t>() : nullptr;

  at::parallel_for(0, num_chunks, 1, [&](int64_t chunk_begin, int64_t chunk_end) {
    const SequentialBlas sequential;
    Scratch<acc_t> gs(tb * V * p.C_out), gk(tb * V * p.C_out), xs(tb * V * p.C_in),
        H(tb * V * FC), U(tb * V * FC), gxs(need_gx ? tb * V * p.C_in : 0);
    for (int64_t chunk = chunk_begin; chunk < chunk_end; ++chunk) {
      acc_t* gw = need_gw ? gw_partial + chunk * gw_elems : nullptr;
      acc_t* gv = need_gv ? gv_partial + chunk * p.nnz : nullptr;
      const int64_t task_begin = chunk * num_tasks / num_chunks;
      const int64_t task_end = (chunk + 1) * num_tasks / num_chunks;
      for (int64_t task = task_begin; task < task_end; ++task) {
        const int64_t n = task / tiles_per_sample;
        const int64_t t0 = (task % tiles_per_sample) * tb, tl = std::min(tb, p.T - t0);
        load_tile_transposed(gp + n * sg_n + t0 * sg_t, sg_c, sg_t, sg_v, p.C_out, tl, V,
                             gs.data());
        if (need_gw || need_gv)
          load_tile_transposed(xp + n * sx_n + t0 * sx_t, sx_c, sx_t, sx_v, p.C_in, tl, V,
                               xs.data());
        if (need_gx) std::fill(gxs.data(), gxs.data() + tl * V * p.C_in, acc_t(0));
        acc_t* gx_tile = need_gx ? gxs.data() : nullptr;
        if (F > 0) {
          if (need_gx || need_gv) {
            // H[(t, w), f C_in + c] = sum_o dY[(t, w), o] W[full[f], o, c]
            gemm_rm<acc_t>(false, false, tl * V, F * p.C_in, p.C_out, gs.data(), p.C_out, w_full,
                           F * p.C_in, 0, H.data(), F * p.C_in);
            for (int64_t f = 0; f < F; ++f)
              scatter_rows(ops, ops.full[f], nullptr, V, p.C_in, tl, H.data() + f * p.C_in,
                           F * p.C_in, xs.data(), gx_tile, gv);
          }
          if (need_gw) {
            gather_full(ops, p.C_in, tl, xs.data(), U.data());
            gemm_rm<acc_t>(true, false, p.C_out, F * p.C_in, tl * V, gs.data(), p.C_out,
                           U.data(), F * p.C_in, 1, gw, F * p.C_in);
          }
        }
        for (size_t i = 0; i < ops.partial.size(); ++i) {
          const int64_t k = ops.partial[i];
          const std::vector<int32_t>& rows = ops.rows[k];
          const auto R = static_cast<int64_t>(rows.size());
          for (int64_t t = 0; t < tl; ++t)  // G_k = dY on the rows (t, R_k)
            for (int64_t r = 0; r < R; ++r)
              std::copy_n(gs.data() + (t * V + rows[r]) * p.C_out, p.C_out,
                          gk.data() + (t * R + r) * p.C_out);
          const acc_t* wk = wp + k * p.C_out * p.C_in;
          if (need_gx || need_gv) {
            gemm_rm<acc_t>(false, false, tl * R, p.C_in, p.C_out, gk.data(), p.C_out, wk, p.C_in,
                           0, H.data(), p.C_in);
            scatter_rows(ops, k, rows.data(), R, p.C_in, tl, H.data(), p.C_in, xs.data(),
                         gx_tile, gv);
          }
          if (need_gw) {
            gather_partial(ops, k, p.C_in, tl, xs.data(), U.data());
            gemm_rm<acc_t>(true, false, p.C_out, p.C_in, tl * R, gk.data(), p.C_out, U.data(),
                           p.C_in, 1, gw + (F + static_cast<int64_t>(i)) * p.C_out * p.C_in,
                           p.C_in);
          }
        }
        if (need_gx)
          store_tile_transposed<acc_t, scalar_t>(gxs.data(), nullptr, p.C_in, tl, p.T, V,
                                                 gxp + (n * p.C_in * p.T + t0) * V);
      }
    }
  });

  if (need_gw) {  // sum the chunks, then unpack the blocks into [K, C_out, C_in]
    for (int64_t chunk = 1; chunk < num_chunks; ++chunk)
      for (int64_t i = 0; i < gw_elems; ++i) gw_partial[i] += gw_partial[chunk * gw_elems + i];
    acc_t* out = grad_weight_acc.mutable_data_ptr<acc_t>();
    const int64_t CC = p.C_out * p.C_in;
    for (int64_t f = 0; f < F; ++f)
      for (int64_t o = 0; o < p.C_out; ++o)
        std::copy_n(gw_partial + (o * F + f) * p.C_in, p.C_in,
                    out + ops.full[f] * CC + o * p.C_in);
    for (size_t i = 0; i < ops.partial.size(); ++i)
      std::copy_n(gw_partial + (F + static_cast<int64_t>(i)) * CC, CC,
                  out + ops.partial[i] * CC);
  }
  if (need_gv) {
    acc_t* out = grad_values_acc.mutable_data_ptr<acc_t>();
    for (int64_t chunk = 0; chunk < num_chunks; ++chunk)
      for (int64_t j = 0; j < p.nnz; ++j) out[j] += gv_partial[chunk * p.nnz + j];
  }
}

void check_cpu(const char* op, const at::Tensor& x) {
  TORCH_CHECK_VALUE(x.device().is_cpu(), op, ": the CPU kernel got a tensor on ", x.device());
}

at::Tensor sparse_graph_conv_cpu(const at::Tensor& x, const at::Tensor& weight,
                                 const at::Tensor& crow, const at::Tensor& col,
                                 const at::Tensor& values, const std::optional<at::Tensor>& bias) {
  const char* op = "skelops::sparse_graph_conv";
  check_cpu(op, x);
  const Problem p = check_problem(op, x, weight, crow, col, values, bias);
  check_blas_range(op, std::max(p.C_in, p.C_out) * p.T * p.V);
  at::Tensor y = at::empty({p.N, p.C_out, p.T, p.V}, x.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(),
                                  "sparse_graph_conv_cpu", [&] {
                                    forward_impl<scalar_t>(p, x, weight, crow, col, values, bias,
                                                           y);
                                  });
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> sparse_graph_conv_backward_cpu(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& weight,
    const at::Tensor& crow, const at::Tensor& col, const at::Tensor& values,
    const std::optional<at::Tensor>& bias, std::array<bool, 4> output_mask) {
  const char* op = "skelops::sparse_graph_conv_backward";
  check_cpu(op, x);
  const Problem p = check_problem(op, x, weight, crow, col, values, bias);
  check_grad_out(op, grad_out, x, p);
  check_blas_range(op, std::max(p.C_in, p.C_out) * p.T * p.V);
  const auto acc = acc_type(x.scalar_type());
  at::Tensor grad_x = output_mask[0] ? at::empty({p.N, p.C_in, p.T, p.V}, x.options())
                                     : empty_like_none(x);
  at::Tensor gw_acc = output_mask[1] ? at::zeros({p.K, p.C_out, p.C_in}, x.options().dtype(acc))
                                     : at::Tensor();
  at::Tensor gv_acc = output_mask[2] ? at::zeros({p.nnz}, x.options().dtype(acc)) : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(),
                                  "sparse_graph_conv_backward_cpu", [&] {
                                    backward_impl<scalar_t>(p, grad_out, x, weight, crow, col,
                                                            values, output_mask, grad_x, gw_acc,
                                                            gv_acc);
                                  });
  at::Tensor grad_bias =
      bias_gradients(grad_out, x, crow, values, bias, p, output_mask, &gv_acc);
  return {grad_x, output_mask[1] ? gw_acc.to(x.scalar_type()) : empty_like_none(x),
          output_mask[2] ? gv_acc.to(x.scalar_type()) : empty_like_none(x), grad_bias};
}

}  // namespace

TORCH_LIBRARY_IMPL(skelops, CPU, m) {
  m.impl("sparse_graph_conv", &sparse_graph_conv_cpu);
  m.impl("sparse_graph_conv_backward", &sparse_graph_conv_backward_cpu);
}

}  // namespace skelops::sparse_graph_conv
