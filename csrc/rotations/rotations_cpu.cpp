// C++ CPU kernels of skelops::axis_angle_to_matrix, skelops::dof_rotations and their backwards
// (per-rotation math in rotations_math.h).
//
// axis_angle_to_matrix: at::parallel_for over the rotations; each reads its 3 values with their
// strides and writes its 9 contiguous outputs. dof_rotations: at::parallel_for over the samples;
// a sample's joints are built one after another, each as the product of its DoF matrices in
// registers (no per-DoF intermediates in memory). Bytes, not FLOPs, bound both: per rotation
// 12 values move and ~40 (axis-angle) or ~60 per DoF (sin, cos, a 3 x 3 product) FLOPs run.
//
// dof_rotations_backward: the pose gradient has one writer per element (DoF d belongs to one
// joint). The axes gradient sums per-sample contributions over the batch; to be independent of
// the thread count the batch is cut into fixed blocks of kSampleBlock samples (not into
// parallel_for's chunks): each block sums its samples in order into its row of a
// [blocks, D, 3] workspace, and the rows are then added in block order.
#include "rotations/rotations_common.h"
#include "rotations/rotations_math.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <tuple>
#include <vector>

namespace skelops::rotations {
namespace {

// Rotations per parallel_for chunk: small problems stay on the calling thread.
constexpr int64_t kMinRotationsPerTask = 2048;
// Samples per block of the axes gradient's fixed-order reduction.
constexpr int64_t kSampleBlock = 64;

int64_t rotation_grain(int64_t rotations_per_item) {
  return std::max<int64_t>(1, kMinRotationsPerTask / std::max<int64_t>(1, rotations_per_item));
}

void check_cpu(const char* op, const at::Tensor& t) {
  TORCH_CHECK_VALUE(t.device().is_cpu(), op, ": the CPU kernel got a tensor on ", t.device());
}

// axes [D, 3] as the kernels read them: contiguous, in the math type.
template <typename acc_t>
std::vector<acc_t> axes_of(const at::Tensor& axes) {
  const at::Tensor a = axes.to(c10::CppTypeToScalarType<acc_t>::value).contiguous();
  const acc_t* p = a.const_data_ptr<acc_t>();
  return std::vector<acc_t>(p, p + a.numel());
}

at::Tensor axis_angle_to_matrix_cpu(const at::Tensor& axis_angle) {
  const char* op = "skelops::axis_angle_to_matrix";
  const int64_t B = check_axis_angle(op, axis_angle);
  check_cpu(op, axis_angle);
  at::Tensor out = at::empty({B, 3, 3}, axis_angle.options());
  if (B == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, axis_angle.scalar_type(), "rotations_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* a = axis_angle.const_data_ptr<scalar_t>();
    const int64_t sb = axis_angle.stride(0), sc = axis_angle.stride(1);
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, B, rotation_grain(1), [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        const scalar_t* ab = a + b * sb;
        acc_t R[9];
        axis_angle_matrix<acc_t>(static_cast<acc_t>(ab[0]), static_cast<acc_t>(ab[sc]),
                                 static_cast<acc_t>(ab[2 * sc]), R);
        for (int k = 0; k < 9; ++k) o[b * 9 + k] = static_cast<scalar_t>(R[k]);
      }
    });
  });
  return out;
}

at::Tensor axis_angle_to_matrix_backward_cpu(const at::Tensor& grad, const at::Tensor& axis_angle) {
  const char* op = "skelops::axis_angle_to_matrix_backward";
  const int64_t B = check_axis_angle_backward(op, grad, axis_angle);
  check_cpu(op, axis_angle);
  at::Tensor grad_axis = at::empty({B, 3}, axis_angle.options());
  if (B == 0) return grad_axis;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, axis_angle.scalar_type(), "rotations_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* a = axis_angle.const_data_ptr<scalar_t>();
    const scalar_t* g = grad.const_data_ptr<scalar_t>();
    const int64_t sb = axis_angle.stride(0), sc = axis_angle.stride(1);
    const int64_t g0 = grad.stride(0), g1 = grad.stride(1), g2 = grad.stride(2);
    scalar_t* o = grad_axis.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, B, rotation_grain(1), [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        const scalar_t* ab = a + b * sb;
        acc_t G[9], out[3];
        for (int i = 0; i < 3; ++i)
          for (int j = 0; j < 3; ++j) G[i * 3 + j] = static_cast<acc_t>(g[b * g0 + i * g1 + j * g2]);
        axis_angle_matrix_grad<acc_t>(static_cast<acc_t>(ab[0]), static_cast<acc_t>(ab[sc]),
                                      static_cast<acc_t>(ab[2 * sc]), G, out);
        for (int c = 0; c < 3; ++c) o[b * 3 + c] = static_cast<scalar_t>(out[c]);
      }
    });
  });
  return grad_axis;
}

at::Tensor dof_rotations_cpu(const at::Tensor& pose, const at::Tensor& axes,
                             c10::IntArrayRef dof_joints, int64_t num_joints) {
  const char* op = "skelops::dof_rotations";
  const DofProblem p = check_dof_problem(op, pose, axes, dof_joints, num_joints);
  check_cpu(op, pose);
  at::Tensor out = at::empty({p.N, p.J, 3, 3}, pose.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, pose.scalar_type(), "rotations_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const std::vector<acc_t> a = axes_of<acc_t>(axes);
    const scalar_t* q = pose.const_data_ptr<scalar_t>();
    const int64_t sn = pose.stride(0), sd = pose.stride(1);
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, p.N, rotation_grain(p.J), [&](int64_t begin, int64_t end) {
      for (int64_t n = begin; n < end; ++n) {
        const scalar_t* qn = q + n * sn;
        const auto angle = [&](int64_t d) { return static_cast<acc_t>(qn[d * sd]); };
        for (int64_t j = 0; j < p.J; ++j) {
          acc_t R[9];
          joint_rotation<acc_t>(a.data(), p.joint_begin[j], p.joint_begin[j + 1], angle, R);
          scalar_t* oj = o + (n * p.J + j) * 9;
          for (int k = 0; k < 9; ++k) oj[k] = static_cast<scalar_t>(R[k]);
        }
      }
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> dof_rotations_backward_cpu(
    const at::Tensor& grad, const at::Tensor& pose, const at::Tensor& axes,
    c10::IntArrayRef dof_joints, int64_t num_joints, std::array<bool, 2> output_mask) {
  const char* op = "skelops::dof_rotations_backward";
  const DofProblem p = check_dof_backward_problem(op, grad, pose, axes, dof_joints, num_joints);
  check_cpu(op, pose);
  const auto acc_options = pose.options().dtype(acc_dtype(pose.scalar_type()));
  at::Tensor grad_pose = output_mask[0] ? at::empty({p.N, p.D}, pose.options())
                                        : at::empty({0}, pose.options());
  if (!output_mask[0] && !output_mask[1]) return {grad_pose, at::empty({0}, pose.options())};
  const int64_t blocks = ceil_div(p.N, kSampleBlock);
  // [blocks, D, 3] partial sums of the axes gradient; zeros also give D x 3 zeros for N = 0.
  at::Tensor partials = output_mask[1] ? at::zeros({std::max<int64_t>(blocks, 1), p.D, 3},
                                                   acc_options)
                                       : at::Tensor();
  if (p.N > 0 && p.D > 0) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, pose.scalar_type(), "rotations_cpu", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      const std::vector<acc_t> a = axes_of<acc_t>(axes);
      const scalar_t* q = pose.const_data_ptr<scalar_t>();
      const int64_t sn = pose.stride(0), sd = pose.stride(1);
      const scalar_t* g = grad.const_data_ptr<scalar_t>();
      const int64_t g0 = grad.stride(0), g1 = grad.stride(1), g2 = grad.stride(2),
                    g3 = grad.stride(3);
      scalar_t* gq = output_mask[0] ? grad_pose.mutable_data_ptr<scalar_t>() : nullptr;
      acc_t* ga = output_mask[1] ? partials.mutable_data_ptr<acc_t>() : nullptr;
      at::parallel_for(0, blocks, rotation_grain(kSampleBlock * p.J), [&](int64_t b0, int64_t b1) {
        for (int64_t block = b0; block < b1; ++block) {
          acc_t* block_axes = ga != nullptr ? ga + block * p.D * 3 : nullptr;
          const int64_t n_end = std::min(p.N, (block + 1) * kSampleBlock);
          for (int64_t n = block * kSampleBlock; n < n_end; ++n) {
            const scalar_t* qn = q + n * sn;
            const auto angle = [&](int64_t d) { return static_cast<acc_t>(qn[d * sd]); };
            const auto emit = [&](int64_t d, acc_t grad_q, const acc_t* grad_a) {
              if (gq != nullptr) gq[n * p.D + d] = static_cast<scalar_t>(grad_q);
              if (block_axes != nullptr) {
                for (int c = 0; c < 3; ++c) block_axes[d * 3 + c] += grad_a[c];
              }
            };
            for (int64_t j = 0; j < p.J; ++j) {
              if (p.joint_begin[j] == p.joint_begin[j + 1]) continue;
              acc_t G[9];
              for (int r = 0; r < 3; ++r)
                for (int c = 0; c < 3; ++c)
                  G[r * 3 + c] = static_cast<acc_t>(g[n * g0 + j * g1 + r * g2 + c * g3]);
              joint_rotation_backward<acc_t>(a.data(), p.joint_begin[j], p.joint_begin[j + 1],
                                             angle, G, emit);
            }
          }
        }
      });
    });
  }
  at::Tensor grad_axes = at::empty({0}, pose.options());
  if (output_mask[1]) {
    // Block order, on the calling thread: the same sums whatever the thread count.
    grad_axes = at::zeros({p.D, 3}, acc_options);
    AT_DISPATCH_FLOATING_TYPES(acc_dtype(pose.scalar_type()), "rotations_cpu", [&] {
      const scalar_t* src = partials.const_data_ptr<scalar_t>();
      scalar_t* dst = grad_axes.mutable_data_ptr<scalar_t>();
      for (int64_t block = 0; block < partials.size(0); ++block)
        for (int64_t k = 0; k < p.D * 3; ++k) dst[k] += src[block * p.D * 3 + k];
    });
    grad_axes = grad_axes.to(pose.scalar_type());
  }
  return {grad_pose, grad_axes};
}

}  // namespace

TORCH_LIBRARY_IMPL(skelops, CPU, m) {
  m.impl("axis_angle_to_matrix", &axis_angle_to_matrix_cpu);
  m.impl("axis_angle_to_matrix_backward", &axis_angle_to_matrix_backward_cpu);
  m.impl("dof_rotations", &dof_rotations_cpu);
  m.impl("dof_rotations_backward", &dof_rotations_backward_cpu);
}

}  // namespace skelops::rotations
