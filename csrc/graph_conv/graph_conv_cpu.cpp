// C++ CPU kernels of skelops::graph_conv and skelops::graph_conv_backward.
//
// The work is cut into tiles of (sample n, a block of tb frames). Each tile is copied once into
// cache-resident scratch (which also makes any stride layout of x work), then computed with
// BLAS GEMMs on the scratch, so the K x C_out x T x V intermediate of `conv1x1 + einsum`
// never exists outside a tile:
//   aggregate first:  Z_k = X_tile @ A_k          ([C_in*tb, V] x [V, V], one GEMM per k)
//                     Y   = W' @ Z                ([C_out, K*C_in] x [K*C_in, tb*V])
//   channels first:   Z   = W_cat @ X_tile        ([K*C_out, C_in] x [C_in, tb*V])
//                     Y   = sum_k Z_k @ A_k       ([C_out*tb, V] x [V, V])
// The order that does fewer FLOPs is taken (aggregation on the smaller of C_in and C_out).
#include "graph_conv/graph_conv_common.h"
#include "graph_conv/graph_conv_math.h"
#include "graph_conv/graph_conv_ops.h"

#include <skelops/cpu_tiles.h>

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <type_traits>
#include <vector>

namespace skelops::graph_conv {

using namespace skelops::cpu;

namespace {

// Operands converted once per call to the accumulation type, laid out for the GEMMs.
template <typename acc_t>
struct Operands {
  at::Tensor weight_kc;   // [C_out, K, C_in]: W'[o, k * C_in + c] = W[k, o, c]
  at::Tensor weight_cat;  // [K, C_out, C_in] contiguous: W_cat rows (k, o)
  at::Tensor adjacency;   // [Na, K, V, V]
  at::Tensor bias_map;    // [Nb, C_out, V] or undefined
  int64_t adjacency_stride = 0, bias_map_stride = 0;

  const acc_t* adjacency_of(int64_t n) const {
    return adjacency.data_ptr<acc_t>() + n * adjacency_stride;
  }
  const acc_t* bias_of(int64_t n) const {
    return bias_map.defined() ? bias_map.data_ptr<acc_t>() + n * bias_map_stride : nullptr;
  }
};

template <typename scalar_t, typename acc_t>
Operands<acc_t> prepare(const Problem& p, const at::Tensor& weight, const at::Tensor& adjacency,
                        const std::optional<at::Tensor>& bias, bool need_weight_kc,
                        bool need_weight_cat) {
  const auto acc = c10::CppTypeToScalarType<acc_t>::value;
  Operands<acc_t> ops;
  if (need_weight_kc) ops.weight_kc = weight.to(acc).permute({1, 0, 2}).contiguous();
  if (need_weight_cat) ops.weight_cat = weight.to(acc).contiguous();
  ops.adjacency = adjacency.to(acc).contiguous();
  if (!p.per_sample_adjacency) ops.adjacency = ops.adjacency.unsqueeze(0);
  ops.adjacency_stride = p.per_sample_adjacency ? p.K * p.V * p.V : 0;
  if (bias.has_value() && bias->defined()) {  // the backward passes none: dbias is separate
    const at::Tensor b = bias->contiguous();
    const int64_t Na = ops.adjacency.size(0);
    const int64_t Nb = p.bias_before_aggregation ? Na : 1;
    ops.bias_map = at::empty({Nb, p.C_out, p.V}, weight.options().dtype(acc));
    const acc_t* a = ops.adjacency.template data_ptr<acc_t>();
    const scalar_t* bp = b.data_ptr<scalar_t>();
    acc_t* map = ops.bias_map.template data_ptr<acc_t>();
    std::vector<acc_t> colsum(p.K * p.V);
    for (int64_t n = 0; n < Nb; ++n) {
      for (int64_t k = 0; k < p.K && p.bias_before_aggregation; ++k)
        for (int64_t w = 0; w < p.V; ++w)
          colsum[k * p.V + w] = column_sum<acc_t>(a + n * p.K * p.V * p.V, p.V, k, w);
      for (int64_t o = 0; o < p.C_out; ++o)
        for (int64_t w = 0; w < p.V; ++w)
          map[(n * p.C_out + o) * p.V + w] = bias_map_entry<acc_t>(
              bp, p.bias_before_aggregation, colsum.data(), p.K, p.C_out, p.V, o, w);
    }
    ops.bias_map_stride = Nb == 1 ? 0 : p.C_out * p.V;
  }
  return ops;
}

template <typename scalar_t>
void forward_impl(const Problem& p, const at::Tensor& x, const at::Tensor& weight,
                  const at::Tensor& adjacency, const std::optional<at::Tensor>& bias,
                  at::Tensor& y) {
  using acc_t = at::opmath_type<scalar_t>;
  const bool aggregate_first = p.C_in <= p.C_out;
  const auto ops = prepare<scalar_t, acc_t>(p, weight, adjacency, bias, aggregate_first,
                                            !aggregate_first);
  const int64_t mid = aggregate_first ? p.K * p.C_in : p.K * p.C_out;
  const int64_t tb = frames_per_tile(p.N, p.T, (p.C_in + mid + p.C_out) * p.V, sizeof(acc_t));
  const int64_t tiles_per_sample = ceil_div(p.T, tb);
  const scalar_t* xp = x.data_ptr<scalar_t>();
  const int64_t sx_n = x.stride(0), sx_c = x.stride(1), sx_t = x.stride(2), sx_v = x.stride(3);
  scalar_t* yp = y.data_ptr<scalar_t>();
  const int64_t V = p.V;

  at::parallel_for(0, p.N * tiles_per_sample, 1, [&](int64_t begin, int64_t end) {
    const SequentialBlas sequential;
    Scratch<acc_t> xs(p.C_in * tb * V), z(mid * tb * V), ys(p.C_out * tb * V);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / tiles_per_sample;
      const int64_t t0 = (task % tiles_per_sample) * tb;
      const int64_t tl = std::min(tb, p.T - t0);
      load_tile(xp + n * sx_n + t0 * sx_t, sx_c, sx_t, sx_v, p.C_in, tl, V, xs.data());
      const acc_t* a = ops.adjacency_of(n);
      if (aggregate_first) {
        for (int64_t k = 0; k < p.K; ++k)
          gemm_rm<acc_t>(false, false, p.C_in * tl, V, V, xs.data(), V, a + k * V * V, V, 0,
                         z.data() + k * p.C_in * tl * V, V);
        gemm_rm<acc_t>(false, false, p.C_out, tl * V, p.K * p.C_in,
                       ops.weight_kc.template data_ptr<acc_t>(), p.K * p.C_in, z.data(), tl * V, 0,
                       ys.data(), tl * V);
      } else {
        gemm_rm<acc_t>(false, false, p.K * p.C_out, tl * V, p.C_in,
                       ops.weight_cat.template data_ptr<acc_t>(), p.C_in, xs.data(), tl * V, 0,
                       z.data(), tl * V);
        for (int64_t k = 0; k < p.K; ++k)
          gemm_rm<acc_t>(false, false, p.C_out * tl, V, V, z.data() + k * p.C_out * tl * V, V,
                         a + k * V * V, V, k == 0 ? 0 : 1, ys.data(), V);
      }
      store_tile(ys.data(), ops.bias_of(n), p.C_out, tl, p.T, V,
                 yp + (n * p.C_out * p.T + t0) * V);
    }
  });
}

template <typename scalar_t>
void backward_impl(const Problem& p, const at::Tensor& grad_out, const at::Tensor& x,
                   const at::Tensor& weight, const at::Tensor& adjacency,
                   const std::optional<at::Tensor>& bias, std::array<bool, 4> mask,
                   at::Tensor& grad_x, at::Tensor& grad_weight_acc,
                   at::Tensor& grad_adjacency_acc) {
  using acc_t = at::opmath_type<scalar_t>;
  const bool need_gx = mask[0], need_gw = mask[1], need_ga = mask[2];
  if (!need_gx && !need_gw && !need_ga) return;
  // Backward works on the C_in side: G = W'^T dY gives dX (through A^T) and dA (with X);
  // Z = X A gives dW (with dY).
  const auto ops = prepare<scalar_t, acc_t>(p, weight, adjacency, std::nullopt, true, false);
  const int64_t V = p.V, KC = p.K * p.C_in;
  const int64_t tb = frames_per_tile(p.N, p.T, (p.C_in + KC + p.C_out + p.C_in) * V, sizeof(acc_t));
  const int64_t tiles_per_sample = ceil_div(p.T, tb);
  // A per sample: one task per sample, so that its dA[n] has a single writer.
  const bool task_is_sample = p.per_sample_adjacency;
  const int64_t num_tasks = task_is_sample ? p.N : p.N * tiles_per_sample;
  const int64_t num_chunks = std::min<int64_t>(at::get_num_threads(), num_tasks);
  const int64_t gw_elems = p.C_out * KC, ga_elems = p.K * V * V;
  // Per-chunk partial sums of dW and (A shared) dA, added up after the parallel loop.
  const auto acc_opts = x.options().dtype(c10::CppTypeToScalarType<acc_t>::value);
  at::Tensor gw_partial_t = at::zeros({need_gw ? num_chunks * gw_elems : 0}, acc_opts);
  at::Tensor ga_partial_t =
      at::zeros({need_ga && !task_is_sample ? num_chunks * ga_elems : 0}, acc_opts);
  acc_t* gw_partial = gw_partial_t.data_ptr<acc_t>();
  acc_t* ga_partial = ga_partial_t.data_ptr<acc_t>();
  acc_t* ga_per_sample = need_ga && task_is_sample ? grad_adjacency_acc.data_ptr<acc_t>() : nullptr;

  const scalar_t* xp = x.data_ptr<scalar_t>();
  const scalar_t* gp = grad_out.data_ptr<scalar_t>();
  const int64_t sx_n = x.stride(0), sx_c = x.stride(1), sx_t = x.stride(2), sx_v = x.stride(3);
  const int64_t sg_n = grad_out.stride(0), sg_c = grad_out.stride(1), sg_t = grad_out.stride(2),
                sg_v = grad_out.stride(3);
  scalar_t* gxp = need_gx ? grad_x.data_ptr<scalar_t>() : nullptr;
  const acc_t* wkc = ops.weight_kc.template data_ptr<acc_t>();

  at::parallel_for(0, num_chunks, 1, [&](int64_t chunk_begin, int64_t chunk_end) {
    const SequentialBlas sequential;
    Scratch<acc_t> gs(p.C_out * tb * V), xs(p.C_in * tb * V), g(KC * tb * V),
        gxs(need_gx ? p.C_in * tb * V : 0);
    for (int64_t chunk = chunk_begin; chunk < chunk_end; ++chunk) {
      acc_t* gw = need_gw ? gw_partial + chunk * gw_elems : nullptr;
      const int64_t task_begin = chunk * num_tasks / num_chunks;
      const int64_t task_end = (chunk + 1) * num_tasks / num_chunks;
      for (int64_t task = task_begin; task < task_end; ++task) {
        const int64_t n = task_is_sample ? task : task / tiles_per_sample;
        const int64_t tile_begin = task_is_sample ? 0 : task % tiles_per_sample;
        const int64_t tile_end = task_is_sample ? tiles_per_sample : tile_begin + 1;
        const acc_t* a = ops.adjacency_of(n);
        acc_t* ga = nullptr;
        if (need_ga) {
          ga = task_is_sample ? ga_per_sample + n * ga_elems : ga_partial + chunk * ga_elems;
        }
        for (int64_t tile = tile_begin; tile < tile_end; ++tile) {
          const int64_t t0 = tile * tb, tl = std::min(tb, p.T - t0);
          const int64_t tv = tl * V, ct = p.C_in * tl;
          load_tile(gp + n * sg_n + t0 * sg_t, sg_c, sg_t, sg_v, p.C_out, tl, V, gs.data());
          if (need_gw || need_ga)
            load_tile(xp + n * sx_n + t0 * sx_t, sx_c, sx_t, sx_v, p.C_in, tl, V, xs.data());
          if (need_gx || need_ga) {
            // G[(k, c), (t, w)] = sum_o W[k, o, c] dY[o, t, w]
            gemm_rm<acc_t>(true, false, KC, tv, p.C_out, wkc, KC, gs.data(), tv, 0, g.data(), tv);
            for (int64_t k = 0; k < p.K; ++k) {
              const acc_t* gk = g.data() + k * ct * V;
              if (need_gx)  // dX[(c, t), v] += G_k[(c, t), w] A_k[v, w]
                gemm_rm<acc_t>(false, true, ct, V, V, gk, V, a + k * V * V, V, k == 0 ? 0 : 1,
                               gxs.data(), V);
              if (need_ga)  // dA_k[v, w] += X[(c, t), v] G_k[(c, t), w]
                gemm_rm<acc_t>(true, false, V, V, ct, xs.data(), V, gk, V, 1, ga + k * V * V, V);
            }
            if (need_gx)
              store_tile<acc_t, scalar_t>(gxs.data(), nullptr, p.C_in, tl, p.T, V,
                                          gxp + (n * p.C_in * p.T + t0) * V);
          }
          if (need_gw) {
            // Z_k = X A_k, then dW'[o, (k, c)] += dY[o, (t, w)] Z[(k, c), (t, w)]
            for (int64_t k = 0; k < p.K; ++k)
              gemm_rm<acc_t>(false, false, ct, V, V, xs.data(), V, a + k * V * V, V, 0,
                             g.data() + k * ct * V, V);
            gemm_rm<acc_t>(false, true, p.C_out, KC, tv, gs.data(), tv, g.data(), tv, 1, gw, KC);
          }
        }
      }
    }
  });

  if (need_gw) {
    acc_t* out = grad_weight_acc.data_ptr<acc_t>();  // [C_out, K, C_in]
    for (int64_t chunk = 0; chunk < num_chunks; ++chunk)
      for (int64_t i = 0; i < gw_elems; ++i) out[i] += gw_partial[chunk * gw_elems + i];
  }
  if (need_ga && !task_is_sample) {
    acc_t* out = grad_adjacency_acc.data_ptr<acc_t>();  // [K, V, V]
    for (int64_t chunk = 0; chunk < num_chunks; ++chunk)
      for (int64_t i = 0; i < ga_elems; ++i) out[i] += ga_partial[chunk * ga_elems + i];
  }
}

void check_cpu(const char* op, const at::Tensor& x) {
  TORCH_CHECK_VALUE(x.device().is_cpu(), op, ": the CPU kernel got a tensor on ", x.device());
}

}  // namespace

at::Tensor graph_conv_cpu(const at::Tensor& x, const at::Tensor& weight,
                          const at::Tensor& adjacency, const std::optional<at::Tensor>& bias) {
  const Problem p = check_problem("skelops::graph_conv", x, weight, adjacency, bias);
  check_cpu("skelops::graph_conv", x);
  check_blas_range("skelops::graph_conv", std::max(p.C_in, p.C_out) * p.T * p.V);
  at::Tensor y = at::empty({p.N, p.C_out, p.T, p.V}, x.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "graph_conv_cpu",
                                  [&] { forward_impl<scalar_t>(p, x, weight, adjacency, bias, y); });
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> graph_conv_backward_cpu(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& weight,
    const at::Tensor& adjacency, const std::optional<at::Tensor>& bias,
    std::array<bool, 4> output_mask) {
  const char* op = "skelops::graph_conv_backward";
  const Problem p = check_problem(op, x, weight, adjacency, bias);
  check_cpu(op, x);
  check_grad_out(op, grad_out, x, p);
  check_blas_range(op, std::max(p.C_in, p.C_out) * p.T * p.V);
  const auto acc = x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor grad_x = output_mask[0] ? at::empty_like(x, at::MemoryFormat::Contiguous)
                                     : empty_like_none(x);
  at::Tensor gw_acc = output_mask[1] ? at::zeros({p.C_out, p.K, p.C_in}, x.options().dtype(acc))
                                     : at::Tensor();
  at::Tensor ga_acc =
      output_mask[2] ? at::zeros(adjacency.sizes(), x.options().dtype(acc)) : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(),
                                  "graph_conv_backward_cpu", [&] {
                                    backward_impl<scalar_t>(p, grad_out, x, weight, adjacency, bias,
                                                            output_mask, grad_x, gw_acc, ga_acc);
                                  });
  at::Tensor grad_bias = bias_gradients(grad_out, x, adjacency, bias, p, output_mask, &ga_acc);
  at::Tensor grad_weight = output_mask[1]
                               ? gw_acc.permute({1, 0, 2}).to(x.scalar_type()).contiguous()
                               : empty_like_none(x);
  at::Tensor grad_adjacency =
      output_mask[2] ? ga_acc.to(x.scalar_type()) : empty_like_none(x);
  return {grad_x, grad_weight, grad_adjacency, grad_bias};
}

TORCH_LIBRARY_IMPL(skelops, CPU, m) {
  m.impl("graph_conv", &graph_conv_cpu);
  m.impl("graph_conv_backward", &graph_conv_backward_cpu);
}

}  // namespace skelops::graph_conv
