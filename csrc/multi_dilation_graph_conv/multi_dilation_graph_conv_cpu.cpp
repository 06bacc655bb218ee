// C++ CPU kernels of skelops::multi_dilation_graph_conv and its backward.
//
// Sum reduction: graph_conv with the summed adjacency A_sum[k] = sum_d A[d, k] (its CPU kernel
// is called as a function); the gradient of A_sum reaches every dilation unchanged.
//
// Concat reduction, tiled like graph_conv (tiles of (sample n, tb frames) copied once into
// cache-resident scratch, BLAS GEMMs on the scratch). The order is chosen by FLOP count
// (multi_dilation_graph_conv_math.h):
//   mix once:        Z   = W_cat @ X_tile                 ([K*C_out, C_in] x [C_in, tb*V])
//                    Y   = sum_k Z_k @ A_cat[k]           ([C_out*tb, V] x [V, D*V])
//                    where A_cat[k][v, (d, w)] = A[d, k, v, w]: every dilation in one GEMM,
//                    written straight into its channel block of y;
//   aggregate first: per d, graph_conv's order: Z_k = X_tile @ A[d, k], Y_d = W' @ Z.
// The backward on the output side (chosen for C_in >= C_out) works on dY laid out as
// [(o, t), (d, w)]:
//   H_k = dY @ A_cat[k]^T (all dilations summed by the GEMM), dX = W_cat^T @ H,
//   dW_cat += H @ X^T, Z = W_cat @ X (recomputed), dA_cat[k] += Z_k^T @ dY;
// on the input side it is graph_conv's backward per dilation, accumulating dX.
// dW and dA are per-thread partial sums added up after the parallel loop.
#include "multi_dilation_graph_conv/multi_dilation_graph_conv_common.h"
#include "multi_dilation_graph_conv/multi_dilation_graph_conv_math.h"

#include "graph_conv/graph_conv_ops.h"

#include <skelops/cpu_tiles.h>

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <optional>
#include <tuple>

namespace skelops::multi_dilation_graph_conv {
namespace {

using namespace skelops::cpu;

// Operands converted once per call to the accumulation type, laid out for the GEMMs.
template <typename acc_t>
struct Operands {
  at::Tensor weight_cat;     // [K * C_out, C_in]: rows (k, o)            (mix once / output side)
  at::Tensor weight_kc;      // [C_out, K * C_in]: W'[o, (k, c)]          (aggregate first / input)
  at::Tensor adjacency_cat;  // [K, V, D * V]: A_cat[k, v, (d, w)]        (mix once / output side)
  at::Tensor adjacency;      // [D, K, V, V] contiguous                   (aggregate first / input)
  at::Tensor bias;           // [D * C_out] or undefined

  static const acc_t* data(const at::Tensor& t) {
    return t.defined() ? t.data_ptr<acc_t>() : nullptr;
  }
};

template <typename acc_t>
Operands<acc_t> prepare(const Problem& p, const at::Tensor& weight, const at::Tensor& adjacency,
                        const std::optional<at::Tensor>& bias, bool output_side) {
  const auto acc = c10::CppTypeToScalarType<acc_t>::value;
  Operands<acc_t> ops;
  const at::Tensor w = weight.to(acc);
  const at::Tensor a = adjacency.to(acc);
  if (output_side) {
    ops.weight_cat = w.reshape({p.K * p.C_out, p.C_in}).contiguous();
    ops.adjacency_cat = a.permute({1, 2, 0, 3}).contiguous();  // [K, V, D, V]
  } else {
    ops.weight_kc = w.permute({1, 0, 2}).contiguous();
    ops.adjacency = a.contiguous();
  }
  if (bias.has_value() && bias->defined()) ops.bias = bias->to(acc).contiguous();
  return ops;
}

// dst[(o * tl + t) * row + d * V + w] = src[d * C_out + o, t, w] (strided, c / t / v strides
// sc / st / sv), for the D channel blocks of a [D * C_out, T, V] sample: dY as [(o, t), (d, w)].
template <typename src_t, typename dst_t>
void load_branches(const src_t* src, int64_t sc, int64_t st, int64_t sv, int64_t D, int64_t C_out,
                   int64_t tl, int64_t V, dst_t* dst) {
  const int64_t row = D * V;
  for (int64_t d = 0; d < D; ++d) {
    for (int64_t o = 0; o < C_out; ++o) {
      for (int64_t t = 0; t < tl; ++t) {
        const src_t* in = src + branch_channel(d, o, C_out) * sc + t * st;
        dst_t* out = dst + (o * tl + t) * row + d * V;
        for (int64_t v = 0; v < V; ++v) out[v] = static_cast<dst_t>(in[v * sv]);
      }
    }
  }
}

// y[c0 + o, t, w] of a contiguous [*, T, V] sample = src[(o * tl + t) * row + w] + bias[o],
// for o < C_out, t < tl: one dilation's channel block (dst points at channel c0, frame t0).
template <typename acc_t, typename scalar_t>
void store_branch(const acc_t* src, int64_t row, const acc_t* bias, int64_t C_out, int64_t tl,
                  int64_t T, int64_t V, scalar_t* dst) {
  for (int64_t o = 0; o < C_out; ++o) {
    const acc_t b = bias != nullptr ? bias[o] : acc_t(0);
    for (int64_t t = 0; t < tl; ++t) {
      const acc_t* in = src + (o * tl + t) * row;
      scalar_t* out = dst + (o * T + t) * V;
      for (int64_t w = 0; w < V; ++w) out[w] = static_cast<scalar_t>(in[w] + b);
    }
  }
}

template <typename scalar_t>
void concat_forward_impl(const Problem& p, const at::Tensor& x, const at::Tensor& weight,
                         const at::Tensor& adjacency, const std::optional<at::Tensor>& bias,
                         at::Tensor& y) {
  using acc_t = at::opmath_type<scalar_t>;
  const bool mix_once = mix_once_is_cheaper(p.C_in, p.C_out, p.V, p.D);
  const auto ops = prepare<acc_t>(p, weight, adjacency, bias, mix_once);
  const int64_t V = p.V, DV = p.D * p.V, KC = p.K * p.C_in;
  const int64_t mid = mix_once ? p.K * p.C_out : KC;
  const int64_t out_row = mix_once ? DV : V;  // ys holds all dilations, or one
  const int64_t tb = frames_per_tile(p.N, p.T, (p.C_in + mid) * V + p.C_out * out_row,
                                     sizeof(acc_t));
  const int64_t tiles_per_sample = ceil_div(p.T, tb);
  const scalar_t* xp = x.data_ptr<scalar_t>();
  const int64_t sx_n = x.stride(0), sx_c = x.stride(1), sx_t = x.stride(2), sx_v = x.stride(3);
  scalar_t* yp = y.data_ptr<scalar_t>();
  const acc_t* bias_p = Operands<acc_t>::data(ops.bias);

  at::parallel_for(0, p.N * tiles_per_sample, 1, [&](int64_t begin, int64_t end) {
    const SequentialBlas sequential;
    Scratch<acc_t> xs(p.C_in * tb * V), z(mid * tb * V), ys(p.C_out * tb * out_row);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / tiles_per_sample;
      const int64_t t0 = (task % tiles_per_sample) * tb;
      const int64_t tl = std::min(tb, p.T - t0), tv = tl * V;
      load_tile(xp + n * sx_n + t0 * sx_t, sx_c, sx_t, sx_v, p.C_in, tl, V, xs.data());
      scalar_t* y_n = yp + (n * p.D * p.C_out * p.T + t0) * V;
      if (mix_once) {
        gemm_rm<acc_t>(false, false, p.K * p.C_out, tv, p.C_in,
                       ops.weight_cat.template data_ptr<acc_t>(), p.C_in, xs.data(), tv, 0,
                       z.data(), tv);
        const acc_t* a_cat = ops.adjacency_cat.template data_ptr<acc_t>();
        for (int64_t k = 0; k < p.K; ++k)
          gemm_rm<acc_t>(false, false, p.C_out * tl, DV, V, z.data() + k * p.C_out * tv, V,
                         a_cat + k * V * DV, DV, k == 0 ? 0 : 1, ys.data(), DV);
        for (int64_t d = 0; d < p.D; ++d)
          store_branch(ys.data() + d * V, DV, bias_p ? bias_p + d * p.C_out : nullptr, p.C_out,
                       tl, p.T, V, y_n + d * p.C_out * p.T * V);
      } else {
        const acc_t* a = ops.adjacency.template data_ptr<acc_t>();
        for (int64_t d = 0; d < p.D; ++d) {
          for (int64_t k = 0; k < p.K; ++k)
            gemm_rm<acc_t>(false, false, p.C_in * tl, V, V, xs.data(), V,
                           a + (d * p.K + k) * V * V, V, 0, z.data() + k * p.C_in * tv, V);
          gemm_rm<acc_t>(false, false, p.C_out, tv, KC, ops.weight_kc.template data_ptr<acc_t>(),
                         KC, z.data(), tv, 0, ys.data(), tv);
          store_branch(ys.data(), V, bias_p ? bias_p + d * p.C_out : nullptr, p.C_out, tl, p.T,
                       V, y_n + d * p.C_out * p.T * V);
        }
      }
    }
  });
}

// Writes the concat gradients of dW and dA into grad_weight_acc ([K, C_out, C_in]) and
// grad_adjacency_acc ([D, K, V, V]), both zeroed, in the accumulation type.
template <typename scalar_t>
void concat_backward_impl(const Problem& p, const at::Tensor& grad_out, const at::Tensor& x,
                          const at::Tensor& weight, const at::Tensor& adjacency,
                          std::array<bool, 4> mask, at::Tensor& grad_x,
                          at::Tensor& grad_weight_acc, at::Tensor& grad_adjacency_acc) {
  using acc_t = at::opmath_type<scalar_t>;
  const bool need_gx = mask[0], need_gw = mask[1], need_ga = mask[2];
  if (!need_gx && !need_gw && !need_ga) return;
  const bool output_side = backward_on_output_side(p.C_in, p.C_out, p.V, p.D);
  const auto ops = prepare<acc_t>(p, weight, adjacency, std::nullopt, output_side);
  const int64_t V = p.V, DV = p.D * p.V, KC = p.K * p.C_in;
  const int64_t mid = output_side ? p.K * p.C_out : KC;
  const int64_t tb =
      frames_per_tile(p.N, p.T, (p.D * p.C_out + 2 * p.C_in + mid) * V, sizeof(acc_t));
  const int64_t tiles_per_sample = ceil_div(p.T, tb);
  const int64_t num_tasks = p.N * tiles_per_sample;
  const int64_t num_chunks = std::min<int64_t>(at::get_num_threads(), num_tasks);
  const int64_t gw_elems = p.K * p.C_out * p.C_in, ga_elems = p.D * p.K * V * V;
  // Per-chunk partial sums: output side dW [(k, o), c] and dA [k, v, (d, w)]; input side
  // dW [o, (k, c)] and dA [d, k, v, w].
  const auto acc_opts = x.options().dtype(c10::CppTypeToScalarType<acc_t>::value);
  at::Tensor gw_partial_t = at::zeros({need_gw ? num_chunks * gw_elems : 0}, acc_opts);
  at::Tensor ga_partial_t = at::zeros({need_ga ? num_chunks * ga_elems : 0}, acc_opts);
  acc_t* gw_partial = gw_partial_t.data_ptr<acc_t>();
  acc_t* ga_partial = ga_partial_t.data_ptr<acc_t>();

  const scalar_t* xp = x.data_ptr<scalar_t>();
  const scalar_t* gp = grad_out.data_ptr<scalar_t>();
  const int64_t sx_n = x.stride(0), sx_c = x.stride(1), sx_t = x.stride(2), sx_v = x.stride(3);
  const int64_t sg_n = grad_out.stride(0), sg_c = grad_out.stride(1), sg_t = grad_out.stride(2),
                sg_v = grad_out.stride(3);
  scalar_t* gxp = need_gx ? grad_x.data_ptr<scalar_t>() : nullptr;

  at::parallel_for(0, num_chunks, 1, [&](int64_t chunk_begin, int64_t chunk_end) {
    const SequentialBlas sequential;
    Scratch<acc_t> gs(p.D * p.C_out * tb * V), xs(p.C_in * tb * V), m(mid * tb * V),
        gxs(need_gx ? p.C_in * tb * V : 0);
    for (int64_t chunk = chunk_begin; chunk < chunk_end; ++chunk) {
      acc_t* gw = need_gw ? gw_partial + chunk * gw_elems : nullptr;
      acc_t* ga = need_ga ? ga_partial + chunk * ga_elems : nullptr;
      const int64_t task_begin = chunk * num_tasks / num_chunks;
      const int64_t task_end = (chunk + 1) * num_tasks / num_chunks;
      for (int64_t task = task_begin; task < task_end; ++task) {
        const int64_t n = task / tiles_per_sample;
        const int64_t t0 = (task % tiles_per_sample) * tb;
        const int64_t tl = std::min(tb, p.T - t0), tv = tl * V;
        const scalar_t* g_n = gp + n * sg_n + t0 * sg_t;
        if (need_gw || need_ga)
          load_tile(xp + n * sx_n + t0 * sx_t, sx_c, sx_t, sx_v, p.C_in, tl, V, xs.data());
        if (output_side) {
          const acc_t* w_cat = ops.weight_cat.template data_ptr<acc_t>();
          const acc_t* a_cat = ops.adjacency_cat.template data_ptr<acc_t>();
          load_branches(g_n, sg_c, sg_t, sg_v, p.D, p.C_out, tl, V, gs.data());
          if (need_gx || need_gw) {
            // H_k[(o, t), v] = sum_{(d, w)} dY[(o, t), (d, w)] A_cat[k][v, (d, w)]
            for (int64_t k = 0; k < p.K; ++k)
              gemm_rm<acc_t>(false, true, p.C_out * tl, V, DV, gs.data(), DV, a_cat + k * V * DV,
                             DV, 0, m.data() + k * p.C_out * tv, V);
            if (need_gx) {  // dX[c, (t, v)] = sum_{(k, o)} W_cat[(k, o), c] H[(k, o), (t, v)]
              gemm_rm<acc_t>(true, false, p.C_in, tv, p.K * p.C_out, w_cat, p.C_in, m.data(), tv,
                             0, gxs.data(), tv);
              store_tile<acc_t, scalar_t>(gxs.data(), nullptr, p.C_in, tl, p.T, V,
                                          gxp + (n * p.C_in * p.T + t0) * V);
            }
            if (need_gw)  // dW_cat[(k, o), c] += H[(k, o), (t, v)] X[c, (t, v)]
              gemm_rm<acc_t>(false, true, p.K * p.C_out, p.C_in, tv, m.data(), tv, xs.data(), tv,
                             1, gw, p.C_in);
          }
          if (need_ga) {
            // Z = W_cat X, then dA_cat[k][v, (d, w)] += Z_k[(o, t), v] dY[(o, t), (d, w)]
            gemm_rm<acc_t>(false, false, p.K * p.C_out, tv, p.C_in, w_cat, p.C_in, xs.data(), tv,
                           0, m.data(), tv);
            for (int64_t k = 0; k < p.K; ++k)
              gemm_rm<acc_t>(true, false, V, DV, p.C_out * tl, m.data() + k * p.C_out * tv, V,
                             gs.data(), DV, 1, ga + k * V * DV, DV);
          }
        } else {
          const acc_t* w_kc = ops.weight_kc.template data_ptr<acc_t>();
          const acc_t* a = ops.adjacency.template data_ptr<acc_t>();
          load_tile(g_n, sg_c, sg_t, sg_v, p.D * p.C_out, tl, V, gs.data());
          for (int64_t d = 0; d < p.D; ++d) {
            const acc_t* gs_d = gs.data() + d * p.C_out * tv;
            const acc_t* a_d = a + d * p.K * V * V;
            if (need_gx || need_ga) {
              // G[(k, c), (t, w)] = sum_o W[k, o, c] dY_d[o, (t, w)]
              gemm_rm<acc_t>(true, false, KC, tv, p.C_out, w_kc, KC, gs_d, tv, 0, m.data(), tv);
              for (int64_t k = 0; k < p.K; ++k) {
                const acc_t* gk = m.data() + k * p.C_in * tv;
                if (need_gx)  // dX[(c, t), v] += G_k[(c, t), w] A[d, k][v, w]
                  gemm_rm<acc_t>(false, true, p.C_in * tl, V, V, gk, V, a_d + k * V * V, V,
                                 d == 0 && k == 0 ? 0 : 1, gxs.data(), V);
                if (need_ga)  // dA[d, k][v, w] += X[(c, t), v] G_k[(c, t), w]
                  gemm_rm<acc_t>(true, false, V, V, p.C_in * tl, xs.data(), V, gk, V, 1,
                                 ga + (d * p.K + k) * V * V, V);
              }
            }
            if (need_gw) {
              // Z_k = X A[d, k], then dW'[o, (k, c)] += dY_d[o, (t, w)] Z[(k, c), (t, w)]
              for (int64_t k = 0; k < p.K; ++k)
                gemm_rm<acc_t>(false, false, p.C_in * tl, V, V, xs.data(), V, a_d + k * V * V, V,
                               0, m.data() + k * p.C_in * tv, V);
              gemm_rm<acc_t>(false, true, p.C_out, KC, tv, gs_d, tv, m.data(), tv, 1, gw, KC);
            }
          }
          if (need_gx)
            store_tile<acc_t, scalar_t>(gxs.data(), nullptr, p.C_in, tl, p.T, V,
                                        gxp + (n * p.C_in * p.T + t0) * V);
        }
      }
    }
  });

  if (need_gw) {
    at::Tensor total = gw_partial_t.view({num_chunks, gw_elems}).sum(0);
    grad_weight_acc.copy_(output_side ? total.view({p.K, p.C_out, p.C_in})
                                      : total.view({p.C_out, p.K, p.C_in}).permute({1, 0, 2}));
  }
  if (need_ga) {
    at::Tensor total = ga_partial_t.view({num_chunks, ga_elems}).sum(0);
    grad_adjacency_acc.copy_(output_side
                                 ? total.view({p.K, V, p.D, V}).permute({2, 0, 1, 3})
                                 : total.view({p.D, p.K, V, V}));
  }
}

void check_cpu(const char* op, const at::Tensor& x) {
  TORCH_CHECK_VALUE(x.device().is_cpu(), op, ": the CPU kernel got a tensor on ", x.device());
}

void check_sizes(const char* op, const Problem& p) {
  check_blas_range(op, std::max(p.C_in, p.out_channels()) * p.T * p.V);
}

at::Tensor multi_dilation_graph_conv_cpu(const at::Tensor& x, const at::Tensor& weight,
                                         const at::Tensor& adjacency,
                                         const std::optional<at::Tensor>& bias, bool concat) {
  const char* op = "skelops::multi_dilation_graph_conv";
  const Problem p = check_problem(op, x, weight, adjacency, bias, concat);
  check_cpu(op, x);
  check_sizes(op, p);
  if (!concat) return graph_conv::graph_conv_cpu(x, weight, summed_adjacency(adjacency), bias);
  at::Tensor y = at::empty({p.N, p.D * p.C_out, p.T, p.V}, x.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(),
                                  "multi_dilation_graph_conv_cpu", [&] {
                                    concat_forward_impl<scalar_t>(p, x, weight, adjacency, bias, y);
                                  });
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> multi_dilation_graph_conv_backward_cpu(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& weight,
    const at::Tensor& adjacency, const std::optional<at::Tensor>& bias, bool concat,
    std::array<bool, 4> output_mask) {
  const char* op = "skelops::multi_dilation_graph_conv_backward";
  const Problem p = check_problem(op, x, weight, adjacency, bias, concat);
  check_cpu(op, x);
  check_grad_out(op, grad_out, x, p);
  check_sizes(op, p);
  if (!concat) {
    auto [grad_x, grad_weight, grad_summed, grad_bias] = graph_conv::graph_conv_backward_cpu(
        grad_out, x, weight, summed_adjacency(adjacency), bias, output_mask);
    at::Tensor grad_adjacency =
        output_mask[2] ? broadcast_adjacency_grad(grad_summed, p) : empty_like_none(x);
    return {grad_x, grad_weight, grad_adjacency, grad_bias};
  }
  const auto acc = accumulation_type(x);
  at::Tensor grad_x = output_mask[0] ? at::empty_like(x, at::MemoryFormat::Contiguous)
                                     : empty_like_none(x);
  at::Tensor gw_acc = output_mask[1] ? at::empty({p.K, p.C_out, p.C_in}, x.options().dtype(acc))
                                     : at::Tensor();
  at::Tensor ga_acc = output_mask[2]
                          ? at::empty({p.D, p.K, p.V, p.V}, x.options().dtype(acc))
                          : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(),
                                  "multi_dilation_graph_conv_backward_cpu", [&] {
                                    concat_backward_impl<scalar_t>(p, grad_out, x, weight,
                                                                   adjacency, output_mask, grad_x,
                                                                   gw_acc, ga_acc);
                                  });
  at::Tensor grad_weight = output_mask[1] ? gw_acc.to(x.scalar_type()) : empty_like_none(x);
  at::Tensor grad_adjacency = output_mask[2] ? ga_acc.to(x.scalar_type()) : empty_like_none(x);
  return {grad_x, grad_weight, grad_adjacency, bias_gradient(grad_out, x, p, output_mask)};
}

}  // namespace

TORCH_LIBRARY_IMPL(skelops, CPU, m) {
  m.impl("multi_dilation_graph_conv", &multi_dilation_graph_conv_cpu);
  m.impl("multi_dilation_graph_conv_backward", &multi_dilation_graph_conv_backward_cpu);
}

}  // namespace skelops::multi_dilation_graph_conv
