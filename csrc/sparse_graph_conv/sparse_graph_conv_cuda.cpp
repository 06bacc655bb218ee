// CUDA glue of skelops::sparse_graph_conv and skelops::sparse_graph_conv_backward: argument
// checks, the kernels' view of the CSR structure (cached per index tensors), output and fp32
// accumulator allocation, the current stream, and the torch-free launchers of
// sparse_graph_conv_kernels.cu. x and grad_out are passed with their strides (no copies); the
// bias map and the bias gradients are the ATen helpers shared with the CPU backend.
#include "sparse_graph_conv/sparse_graph_conv_common.h"
#include "sparse_graph_conv/sparse_graph_conv_kernels.cuh"
#include "sparse_graph_conv/sparse_graph_conv_transpose.h"

#include <skelops/cuda_glue.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/index_select.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <array>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <tuple>
#include <type_traits>
#include <vector>

namespace skelops::sparse_graph_conv {
namespace {

using namespace skelops::cuda;

FrameStrides frame_strides(const at::Tensor& t) {
  return {t.stride(0), t.stride(1), t.stride(2), t.stride(3)};
}

// weight[k, o, c] as weight[k, m = o, c]; transposed: m = c, reducing over o.
WeightStrides weight_strides(const at::Tensor& weight, bool transposed) {
  return transposed ? WeightStrides{weight.stride(0), weight.stride(2), weight.stride(1)}
                    : WeightStrides{weight.stride(0), weight.stride(1), weight.stride(2)};
}

Dims dims_of(const Problem& p) { return {p.N, p.C_in, p.T, p.V, p.K, p.C_out}; }

// The kernels index samples, frames and joints with int32.
void check_sizes(const char* op, const Problem& p) {
  constexpr int64_t kMax = std::numeric_limits<int32_t>::max();
  TORCH_CHECK_VALUE(p.N < kMax && p.T < kMax && p.V < kMax, op,
                    ": the CUDA kernel needs N, T and V below 2^31, got N=", p.N, ", T=", p.T,
                    ", V=", p.V);
}

// ---------------------------------------------------------------------------------------------
// CSR structure on the device, cached per index tensors
// ---------------------------------------------------------------------------------------------

// The device copy of CsrStructure for one (crow_indices, col_indices) pair.
struct Plan {
  at::Tensor data;          // int32, the arrays of `layout`
  at::Tensor source_entry;  // int64 [nnz]: transposed entry -> entry
  CsrStructure layout;      // offsets only (its vectors are cleared)
  c10::cuda::CUDAStream stream;  // current stream when `data` was allocated

  Csr forward(int64_t nnz) const {
    const int32_t* base = data.const_data_ptr<int32_t>();
    return {base + layout.crow,          base + layout.col,  nnz, base + layout.row_order,
            base + layout.nonempty_rows, base + layout.nonempty_count, layout.max_nonempty};
  }
  // Rows = sources; the row lists of the reductions are not needed on this side.
  Csr transposed(int64_t nnz) const {
    const int32_t* base = data.const_data_ptr<int32_t>();
    return {base + layout.crow_t, base + layout.col_t, nnz, base + layout.row_order_t,
            nullptr,              nullptr,             0};
  }
};

std::shared_ptr<const Plan> build_plan(const at::Tensor& crow, const at::Tensor& col,
                                       const Problem& p, c10::cuda::CUDAStream stream) {
  // One device synchronisation, as for the structure check of check_problem.
  const at::Tensor crow_h = crow.cpu().to(at::kLong).contiguous();
  const at::Tensor col_h = col.cpu().to(at::kLong).contiguous();
  CsrStructure layout = build_csr_structure<int64_t>(
      crow_h.const_data_ptr<int64_t>(), col_h.const_data_ptr<int64_t>(), p.K, p.V, p.nnz);
  const auto upload = [&crow](const auto& values, at::ScalarType dtype) {
    at::Tensor host = at::empty({static_cast<int64_t>(values.size())}, at::TensorOptions(dtype));
    if (!values.empty()) {
      std::memcpy(host.mutable_data_ptr(), values.data(),
                  values.size() * sizeof(values.front()));
    }
    return host.to(crow.device(), dtype);  // a blocking copy: `values` may go afterwards
  };
  at::Tensor data = upload(layout.data, at::kInt);
  at::Tensor source_entry = upload(layout.source_entry, at::kLong);
  std::vector<int32_t>().swap(layout.data);
  std::vector<int64_t>().swap(layout.source_entry);
  return std::make_shared<const Plan>(
      Plan{std::move(data), std::move(source_entry), std::move(layout), stream});
}

// Plans of live index tensors at their version (in-place edits bump it), like the structure
// check of check_problem, so that a training loop does not read the indices back every call.
struct CachedPlan {
  c10::weak_intrusive_ptr<c10::TensorImpl> crow, col;
  uint32_t crow_version, col_version;
  int64_t K, V;
  std::shared_ptr<const Plan> plan;
};

std::shared_ptr<const Plan> plan_for(const at::Tensor& crow, const at::Tensor& col,
                                     const Problem& p, c10::cuda::CUDAStream stream) {
  static std::mutex mutex;
  static std::vector<CachedPlan> cache;
  constexpr size_t kCapacity = 64;
  const bool cacheable = version_tracked(crow) && version_tracked(col);
  std::shared_ptr<const Plan> plan;
  uint32_t crow_version = 0, col_version = 0;
  if (cacheable) {
    crow_version = crow.unsafeGetTensorImpl()->version_counter().current_version();
    col_version = col.unsafeGetTensorImpl()->version_counter().current_version();
    std::lock_guard<std::mutex> lock(mutex);
    for (const auto& entry : cache) {
      if (entry.K == p.K && entry.V == p.V && entry.crow_version == crow_version &&
          entry.col_version == col_version && detail::same_impl(entry.crow, crow) &&
          detail::same_impl(entry.col, col)) {
        plan = entry.plan;
        break;
      }
    }
  }
  if (plan == nullptr) {
    plan = build_plan(crow, col, p, stream);
    if (cacheable) {
      std::lock_guard<std::mutex> lock(mutex);
      std::vector<CachedPlan> alive;
      for (auto& entry : cache) {
        if (!entry.crow.expired() && !entry.col.expired()) alive.push_back(std::move(entry));
      }
      if (alive.size() >= kCapacity) alive.erase(alive.begin());
      alive.push_back(CachedPlan{
          c10::weak_intrusive_ptr<c10::TensorImpl>(crow.getIntrusivePtr()),
          c10::weak_intrusive_ptr<c10::TensorImpl>(col.getIntrusivePtr()), crow_version,
          col_version, p.K, p.V, plan});
      cache = std::move(alive);
    }
  }
  if (plan->stream != stream) {
    // Used on another stream than the one it was allocated on: keep the caching allocator from
    // reusing the memory before this stream's work is done, should the plan be dropped.
    for (const at::Tensor* t : {&plan->data, &plan->source_entry}) {
      if (t->numel() > 0) {
        c10::cuda::CUDACachingAllocator::recordStream(t->storage().data_ptr(), stream);
      }
    }
  }
  return plan;
}

// ---------------------------------------------------------------------------------------------
// Operators
// ---------------------------------------------------------------------------------------------

at::Tensor sparse_graph_conv_cuda(const at::Tensor& x, const at::Tensor& weight,
                                  const at::Tensor& crow, const at::Tensor& col,
                                  const at::Tensor& values,
                                  const std::optional<at::Tensor>& bias) {
  const char* op = "skelops::sparse_graph_conv";
  const Problem p = check_problem(op, x, weight, crow, col, values, bias);
  check_cuda(op, x);
  check_sizes(op, p);
  const c10::cuda::CUDAGuard guard(x.device());
  const c10::cuda::CUDAStream stream = c10::cuda::getCurrentCUDAStream();
  at::Tensor y;
  dispatch_cuda_dtype(op, x.scalar_type(), [&](auto* type_tag) {
    using scalar_t = std::remove_pointer_t<decltype(type_tag)>;
    const std::shared_ptr<const Plan> plan = plan_for(crow, col, p, stream);
    const at::Tensor bmap = p.has_bias ? bias_map(crow, values, *bias, p) : at::Tensor();
    const at::Tensor v = values.contiguous();
    y = at::empty({p.N, p.C_out, p.T, p.V}, x.options());
    check_launch(op, "forward",
                 launch_sparse_mix<scalar_t>(
                     data_of<scalar_t>(x), frame_strides(x), data_of<scalar_t>(weight),
                     weight_strides(weight, false), plan->forward(p.nnz), data_of<scalar_t>(v),
                     bmap.defined() ? bmap.const_data_ptr<float>() : nullptr,
                     mutable_data_of<scalar_t>(y), dims_of(p), stream.stream()));
  });
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> sparse_graph_conv_backward_cuda(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& weight,
    const at::Tensor& crow, const at::Tensor& col, const at::Tensor& values,
    const std::optional<at::Tensor>& bias, std::array<bool, 4> output_mask) {
  const char* op = "skelops::sparse_graph_conv_backward";
  const Problem p = check_problem(op, x, weight, crow, col, values, bias);
  check_cuda(op, x);
  check_grad_out(op, grad_out, x, p);
  check_sizes(op, p);
  const c10::cuda::CUDAGuard guard(x.device());
  const c10::cuda::CUDAStream stream = c10::cuda::getCurrentCUDAStream();
  const auto f32 = x.options().dtype(at::kFloat);
  at::Tensor grad_x = empty_like_none(x), grad_weight = empty_like_none(x),
             grad_values = empty_like_none(x);
  at::Tensor grad_values_acc;  // fp32 [nnz]
  dispatch_cuda_dtype(op, x.scalar_type(), [&](auto* type_tag) {
    using scalar_t = std::remove_pointer_t<decltype(type_tag)>;
    if (!output_mask[0] && !output_mask[1] && !output_mask[2]) return;
    const std::shared_ptr<const Plan> plan = plan_for(crow, col, p, stream);
    const at::Tensor v = values.contiguous();
    const FrameStrides gs = frame_strides(grad_out);
    if (output_mask[0]) {
      // d x = the forward on grad_out with W^T and the transposed CSR (rows = sources), whose
      // entry i carries values[source_entry[i]].
      const at::Tensor values_t = p.nnz > 0 ? v.index_select(0, plan->source_entry) : v;
      grad_x = at::empty({p.N, p.C_in, p.T, p.V}, x.options());
      check_launch(op, "grad_x",
                   launch_sparse_mix<scalar_t>(
                       data_of<scalar_t>(grad_out), gs, data_of<scalar_t>(weight),
                       weight_strides(weight, true), plan->transposed(p.nnz),
                       data_of<scalar_t>(values_t), nullptr, mutable_data_of<scalar_t>(grad_x),
                       Dims{p.N, p.C_out, p.T, p.V, p.K, p.C_in}, stream.stream()));
    }
    if (output_mask[1]) {
      at::Tensor grad_weight_acc = at::empty({p.K, p.C_out, p.C_in}, f32);
      check_launch(op, "grad_weight",
                   launch_sparse_weight_grad<scalar_t>(
                       data_of<scalar_t>(grad_out), gs, data_of<scalar_t>(x), frame_strides(x),
                       plan->forward(p.nnz), data_of<scalar_t>(v),
                       grad_weight_acc.mutable_data_ptr<float>(), dims_of(p), stream.stream()));
      grad_weight = grad_weight_acc.to(x.scalar_type());
    }
    if (output_mask[2]) {
      grad_values_acc = at::empty({p.nnz}, f32);
      check_launch(op, "grad_values",
                   launch_sparse_values_grad<scalar_t>(
                       data_of<scalar_t>(grad_out), gs, data_of<scalar_t>(x), frame_strides(x),
                       data_of<scalar_t>(weight), weight_strides(weight, false),
                       plan->forward(p.nnz), grad_values_acc.mutable_data_ptr<float>(),
                       dims_of(p), stream.stream()));
    }
  });
  const at::Tensor grad_bias =
      bias_gradients(grad_out, x, crow, values, bias, p, output_mask, &grad_values_acc);
  if (output_mask[2]) grad_values = grad_values_acc.to(x.scalar_type());
  return {grad_x, grad_weight, grad_values, grad_bias};
}

}  // namespace

TORCH_LIBRARY_IMPL(skelops, CUDA, m) {
  m.impl("sparse_graph_conv", &sparse_graph_conv_cuda);
  m.impl("sparse_graph_conv_backward", &sparse_graph_conv_backward_cuda);
}

}  // namespace skelops::sparse_graph_conv
