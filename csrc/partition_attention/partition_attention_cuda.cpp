// CUDA glue of skelops::partition_attention and its backward: argument checks (shared with the
// CPU kernels), output and workspace allocation, the dropout key and threshold, the current
// stream, and the torch-free launchers of partition_attention_kernels.cu. q, k, v, out and
// grad_out are passed with their strides (no copies); the partitions as contiguous int32, the
// bias table and lse contiguous (tiny, and already so as the forward returns them).
#include "partition_attention/partition_attention_common.h"
#include "partition_attention/partition_attention_kernels.cuh"

#include <skelops/cuda_glue.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <array>
#include <optional>
#include <tuple>
#include <type_traits>

namespace skelops::partition_attention {
namespace {

using namespace skelops::cuda;

TokenStrides strides_of(const at::Tensor& t) {
  return {t.stride(0), t.stride(1), t.stride(2), t.stride(3), t.stride(4)};
}

template <typename scalar_t>
TokenTensor<const scalar_t> input_of(const at::Tensor& t) {
  return {data_of<scalar_t>(t), strides_of(t)};
}

// A null tensor for an undefined gradient (not asked for).
template <typename scalar_t>
TokenTensor<scalar_t> output_of(at::Tensor& t, bool wanted) {
  return {wanted ? mutable_data_of<scalar_t>(t) : nullptr,
          wanted ? strides_of(t) : TokenStrides{}};
}

Dims dims_of(const Problem& p) {
  return {p.B, p.H, p.T, p.V, p.D, p.P, p.W, p.G, p.J, p.bias_kind};
}

void check_cuda_problem(const char* op, const at::Tensor& q, const Problem& p) {
  check_cuda(op, q);
  TORCH_CHECK_VALUE(p.D <= kMaxCudaHeadDim, op, ": the CUDA kernel supports head dimensions D <= ",
                    kMaxCudaHeadDim, ", got D=", p.D);
  TORCH_CHECK_VALUE(p.tokens() <= kMaxCudaTokens, op,
                    ": the CUDA kernel supports partitions of N = W * J <= ", kMaxCudaTokens,
                    " tokens, got W=", p.W, ", J=", p.J, " (N=", p.tokens(), ")");
}

// Calls f with a null pointer of the CUDA element type of `dtype`.
template <typename F>
void dispatch_attention_dtype(const char* op, at::ScalarType dtype, F&& f) {
  switch (dtype) {
    case at::kDouble:
      f(static_cast<double*>(nullptr));
      break;
    case at::kFloat:
    case at::kHalf:
    case at::kBFloat16:
      dispatch_cuda_dtype(op, dtype, f);
      break;
    default:
      TORCH_CHECK_TYPE(false, op,
                       ": the CUDA kernel supports float64, float32, float16 and bfloat16 "
                       "tensors, got ",
                       dtype);
  }
}

// What the launchers read of the forward's arguments; `holders` keep the int32 partitions and
// the contiguous bias alive.
template <typename scalar_t>
Inputs<scalar_t> inputs_of(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           const std::array<at::Tensor, 3>& holders, double scale,
                           double dropout_p, int64_t seed) {
  const at::Tensor& joints = holders[0];
  const at::Tensor& frames = holders[1];
  const at::Tensor& bias = holders[2];
  const Dropout dropout{dropout_seed_key(static_cast<uint64_t>(seed)),
                        dropout_threshold(dropout_p), 1.0 / (1.0 - dropout_p)};
  return {input_of<scalar_t>(q),
          input_of<scalar_t>(k),
          input_of<scalar_t>(v),
          joints.const_data_ptr<int32_t>(),
          frames.const_data_ptr<int32_t>(),
          bias.defined() ? data_of<scalar_t>(bias) : nullptr,
          scale,
          dropout};
}

std::array<at::Tensor, 3> prepare_tables(const Problem& p, const at::Tensor& joint_partition,
                                         const at::Tensor& frame_partition,
                                         const std::optional<at::Tensor>& bias) {
  return {partition_int32(joint_partition), partition_int32(frame_partition),
          p.bias_kind != kNoBias ? bias->contiguous() : at::Tensor()};
}

std::tuple<at::Tensor, at::Tensor> partition_attention_cuda(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const at::Tensor& joint_partition, const at::Tensor& frame_partition,
    const std::optional<at::Tensor>& bias, double scale, double dropout_p, int64_t seed) {
  const char* op = "skelops::partition_attention";
  const Problem p =
      check_problem(op, q, k, v, joint_partition, frame_partition, bias, scale, dropout_p);
  check_cuda_problem(op, q, p);
  const c10::cuda::CUDAGuard guard(q.device());
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream().stream();
  const std::array<at::Tensor, 3> holders =
      prepare_tables(p, joint_partition, frame_partition, bias);
  at::Tensor out = empty_like_layout(q);
  at::Tensor lse = empty_lse(q, p);
  dispatch_attention_dtype(op, q.scalar_type(), [&](auto* type_tag) {
    using scalar_t = std::remove_pointer_t<decltype(type_tag)>;
    using acc_t = acc_type<scalar_t>;
    check_launch(op, "forward",
                 launch_partition_attention_forward<scalar_t>(
                     inputs_of<scalar_t>(q, k, v, holders, scale, dropout_p, seed), dims_of(p),
                     output_of<scalar_t>(out, true), lse.mutable_data_ptr<acc_t>(), stream));
  });
  return {out, lse};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> partition_attention_backward_cuda(
    const at::Tensor& grad_out, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const at::Tensor& out, const at::Tensor& lse, const at::Tensor& joint_partition,
    const at::Tensor& frame_partition, const std::optional<at::Tensor>& bias, double scale,
    double dropout_p, int64_t seed, std::array<bool, 4> output_mask) {
  const char* op = "skelops::partition_attention_backward";
  const Problem p =
      check_problem(op, q, k, v, joint_partition, frame_partition, bias, scale, dropout_p);
  check_cuda_problem(op, q, p);
  check_backward_inputs(op, p, q, grad_out, out, lse);
  const c10::cuda::CUDAGuard guard(q.device());
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream().stream();
  GradientOutputs g = empty_gradients(p, q, k, v, bias, output_mask);
  if (!g.any()) return g.as_tuple();
  const bool want_dbias = g.want_bias;

  const std::array<at::Tensor, 3> holders =
      prepare_tables(p, joint_partition, frame_partition, bias);
  const at::Tensor lse_c = lse.contiguous();
  const Dims dims = dims_of(p);
  const at::Tensor workspace = at::empty({want_dbias ? dbias_workspace_size(dims) : 0},
                                         q.options().dtype(stats_dtype(q.scalar_type())));
  dispatch_attention_dtype(op, q.scalar_type(), [&](auto* type_tag) {
    using scalar_t = std::remove_pointer_t<decltype(type_tag)>;
    using acc_t = acc_type<scalar_t>;
    const Gradients<scalar_t> grads{
        output_of<scalar_t>(g.q, g.want_q), output_of<scalar_t>(g.k, g.want_k),
        output_of<scalar_t>(g.v, g.want_v),
        want_dbias ? mutable_data_of<scalar_t>(g.bias) : nullptr,
        want_dbias ? static_cast<acc_t*>(workspace.mutable_data_ptr()) : nullptr};
    check_launch(op, "backward",
                 launch_partition_attention_backward<scalar_t>(
                     inputs_of<scalar_t>(q, k, v, holders, scale, dropout_p, seed), dims,
                     input_of<scalar_t>(grad_out), input_of<scalar_t>(out),
                     lse_c.const_data_ptr<acc_t>(), grads, stream));
  });
  return g.as_tuple();
}

}  // namespace

TORCH_LIBRARY_IMPL(skelops, CUDA, m) {
  m.impl("partition_attention", &partition_attention_cuda);
  m.impl("partition_attention_backward", &partition_attention_backward_cuda);
}

}  // namespace skelops::partition_attention
