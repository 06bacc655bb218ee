// CUDA glue of skelops::forward_kinematics and its backward: argument checks (shared with the
// CPU kernels), contiguous inputs, output and workspace allocation, the parents table, the
// current stream, and the torch-free launchers of forward_kinematics_kernels.cu.
//
// Parents: trees of up to kParamParents (256) joints pass them by value in the kernel
// parameters (int16); larger trees through a device int32 copy made here (a small host-to-
// device transfer per call). The shared rest_joints gradient is the per-sample gradient summed
// over the batch by at::sum (a fixed-order reduction: deterministic).
#include "forward_kinematics/forward_kinematics_common.h"
#include "forward_kinematics/forward_kinematics_kernels.cuh"

#include <skelops/cuda_glue.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/tensor.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <array>
#include <optional>
#include <tuple>
#include <type_traits>
#include <vector>

namespace skelops::forward_kinematics {
namespace {

using namespace skelops::cuda;

// The parents as the kernels take them; `storage` keeps a large tree's device copy alive.
struct DeviceParents {
  ParentTable table{};
  at::Tensor storage;
};

DeviceParents device_parents(at::IntArrayRef parents, const at::Tensor& like) {
  DeviceParents out;
  out.table.large = nullptr;
  if (static_cast<int64_t>(parents.size()) <= kParamParents) {
    for (size_t j = 0; j < parents.size(); ++j) {
      out.table.small[j] = static_cast<int16_t>(parents[j]);
    }
    return out;
  }
  std::vector<int32_t> host(parents.begin(), parents.end());
  out.storage = at::tensor(host, like.options().dtype(at::kInt).device(at::kCPU))
                    .to(like.device(), /*non_blocking=*/false);
  out.table.large = out.storage.const_data_ptr<int32_t>();
  return out;
}

Dims dims_of(const Problem& p) { return {p.N, p.J, p.shared_rest ? 0 : p.J * 3}; }

// Calls f(scalar_t*, acc_t*) (null tags) for the inputs' dtype.
template <typename F>
void dispatch(const char* op, at::ScalarType dtype, F&& f) {
  dispatch_cuda_dtype<true>(op, dtype, [&](auto* tag) {
    using scalar_t = std::remove_pointer_t<decltype(tag)>;
    using acc_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    f(static_cast<scalar_t*>(nullptr), static_cast<acc_t*>(nullptr));
  });
}

at::ScalarType acc_dtype(at::ScalarType dtype) {
  return dtype == at::kDouble ? at::kDouble : at::kFloat;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> forward_kinematics_cuda(
    const at::Tensor& local_rotations, const at::Tensor& rest_joints, at::IntArrayRef parents) {
  const char* op = "skelops::forward_kinematics";
  const Problem p = check_problem(op, local_rotations, rest_joints, parents);
  check_cuda(op, local_rotations);
  const c10::cuda::CUDAGuard guard(local_rotations.device());
  Outputs out = empty_outputs(p, local_rotations);
  if (p.N * p.J == 0) return {out.global_rotations, out.posed_joints, out.global_translations};
  const at::Tensor L = local_rotations.contiguous();
  const at::Tensor r = rest_joints.contiguous();
  const DeviceParents table = device_parents(parents, L);
  const Dims dims = dims_of(p);
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream().stream();
  dispatch(op, L.scalar_type(), [&](auto* scalar_tag, auto* acc_tag) {
    using scalar_t = std::remove_pointer_t<decltype(scalar_tag)>;
    using acc_t = std::remove_pointer_t<decltype(acc_tag)>;
    const int64_t elems = forward_workspace_elems<scalar_t, acc_t>(dims);
    const auto acc_options = L.options().dtype(acc_dtype(L.scalar_type()));
    at::Tensor workspace = elems > 0 ? at::empty({elems}, acc_options) : at::Tensor();
    check_launch(op, "forward",
                 launch_forward_kinematics_forward<scalar_t, acc_t>(
                     data_of<scalar_t>(L), data_of<scalar_t>(r), table.table, dims,
                     elems > 0 ? static_cast<acc_t*>(workspace.mutable_data_ptr()) : nullptr,
                     mutable_data_of<scalar_t>(out.global_rotations),
                     mutable_data_of<scalar_t>(out.posed_joints),
                     mutable_data_of<scalar_t>(out.global_translations), stream));
  });
  return {out.global_rotations, out.posed_joints, out.global_translations};
}

std::tuple<at::Tensor, at::Tensor> forward_kinematics_backward_cuda(
    const std::optional<at::Tensor>& grad_global_rotations,
    const std::optional<at::Tensor>& grad_posed_joints,
    const std::optional<at::Tensor>& grad_global_translations, const at::Tensor& local_rotations,
    const at::Tensor& rest_joints, at::IntArrayRef parents, const at::Tensor& global_rotations,
    std::array<bool, 2> output_mask) {
  const char* op = "skelops::forward_kinematics_backward";
  const c10::cuda::CUDAGuard guard(local_rotations.device());
  BackwardInputs in;
  const Problem p =
      check_backward_problem(op, grad_global_rotations, grad_posed_joints,
                             grad_global_translations, local_rotations, rest_joints, parents,
                             global_rotations, &in);
  check_cuda(op, local_rotations);
  const at::ScalarType dtype = local_rotations.scalar_type();
  at::Tensor grad_L = output_mask[0]
                          ? at::empty(local_rotations.sizes(), in.local_rotations.options())
                          : unwanted_gradient(local_rotations);
  if (!output_mask[0] && !output_mask[1]) return {grad_L, unwanted_gradient(rest_joints)};
  const auto acc_options = in.local_rotations.options().dtype(acc_dtype(dtype));
  // Per-sample rest gradient in acc_t, summed over the batch below when rest_joints is shared.
  at::Tensor grad_rest_samples =
      output_mask[1] ? at::empty({p.N, p.J, 3}, acc_options) : at::Tensor();
  if (p.N * p.J > 0) {
    const DeviceParents table = device_parents(parents, in.local_rotations);
    const Dims dims = dims_of(p);
    at::Tensor workspace = at::empty({backward_workspace_elems(dims)}, acc_options);
    const cudaStream_t stream = at::cuda::getCurrentCUDAStream().stream();
    dispatch(op, dtype, [&](auto* scalar_tag, auto* acc_tag) {
      using scalar_t = std::remove_pointer_t<decltype(scalar_tag)>;
      using acc_t = std::remove_pointer_t<decltype(acc_tag)>;
      auto data = [](const at::Tensor& t) {
        return t.defined() ? data_of<scalar_t>(t) : nullptr;
      };
      check_launch(
          op, "backward",
          launch_forward_kinematics_backward<scalar_t, acc_t>(
              data(in.grad_rotations), data(in.grad_positions), data(in.grad_translations),
              data(in.local_rotations), data(in.rest_joints), data(in.global_rotations),
              table.table, dims, static_cast<acc_t*>(workspace.mutable_data_ptr()),
              output_mask[0] ? mutable_data_of<scalar_t>(grad_L) : nullptr,
              output_mask[1] ? static_cast<acc_t*>(grad_rest_samples.mutable_data_ptr())
                             : nullptr,
              stream));
    });
  }
  if (!output_mask[1]) return {grad_L, unwanted_gradient(rest_joints)};
  at::Tensor grad_rest = p.shared_rest ? at::sum(grad_rest_samples, 0) : grad_rest_samples;
  return {grad_L, grad_rest.to(dtype)};
}

}  // namespace

TORCH_LIBRARY_IMPL(skelops, CUDA, m) {
  m.impl("forward_kinematics", &forward_kinematics_cuda);
  m.impl("forward_kinematics_backward", &forward_kinematics_backward_cuda);
}

}  // namespace skelops::forward_kinematics
