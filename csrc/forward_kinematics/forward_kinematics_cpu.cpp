// C++ CPU kernels of skelops::forward_kinematics and its backward.
//
// Forward: at::parallel_for over samples. A sample walks its joints in order; each joint's G and
// p are kept, in the accumulation dtype, in a per-task [J, 12] buffer (allocated once per task,
// not per sample), from which the children read their parent's state, and are written to the
// outputs in the inputs' dtype. Math in float32 (float64 for float64 inputs): half-precision
// outputs are rounded once, never re-read.
//
// Backward: the same walk in reverse over a per-task [J, 15] buffer of adjoints (gG, gp, gr)
// that each joint completes (children, having larger indices, are done first) and then passes
// to its parent (forward_kinematics_math.h). The local_rotations gradient and a per-sample
// rest_joints gradient are written per sample. A shared rest_joints [J, 3] gradient is a sum
// over the batch: the batch is cut into fixed chunks of kChunk samples (independent of the
// thread count), each chunk sums its samples in order into its own [J, 3] partial, and the
// partials are added in chunk order: the result does not depend on the number of threads.
//
// Bytes: per sample and joint the forward reads L (9) and r (3) values and writes 15; the
// backward reads L, G, r and up to 15 gradient values and writes 12. Tens of FLOPs per joint:
// bound by memory for large batches.
#include "forward_kinematics/forward_kinematics_common.h"
#include "forward_kinematics/forward_kinematics_math.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <tuple>
#include <vector>

namespace skelops::forward_kinematics {
namespace {

// Samples per chunk of the shared rest_joints gradient's fixed-order reduction.
constexpr int64_t kChunk = 32;

// Samples per parallel_for task: at least ~4k joints, so that small batches stay on the
// calling thread.
int64_t sample_grain(int64_t J) { return std::max<int64_t>(1, 4096 / std::max<int64_t>(J, 1)); }

template <typename scalar_t, typename acc_t, int Count>
void load(const scalar_t* src, acc_t* dst) {
  for (int k = 0; k < Count; ++k) dst[k] = static_cast<acc_t>(src[k]);
}

template <typename scalar_t, typename acc_t>
void forward_samples(const Problem& p, const at::Tensor& local_rotations,
                     const at::Tensor& rest_joints, at::IntArrayRef parents, Outputs& out) {
  const scalar_t* L = local_rotations.const_data_ptr<scalar_t>();
  const scalar_t* r = rest_joints.const_data_ptr<scalar_t>();
  scalar_t* G_out = out.global_rotations.mutable_data_ptr<scalar_t>();
  scalar_t* p_out = out.posed_joints.mutable_data_ptr<scalar_t>();
  scalar_t* t_out = out.global_translations.mutable_data_ptr<scalar_t>();
  const int64_t J = p.J;
  const int64_t rest_stride = p.shared_rest ? 0 : J * 3;
  at::parallel_for(0, p.N, sample_grain(J), [&](int64_t begin, int64_t end) {
    std::vector<acc_t> state(J * kForwardState);
    for (int64_t n = begin; n < end; ++n) {
      const scalar_t* Ln = L + n * J * 9;
      const scalar_t* rn = r + n * rest_stride;
      for (int64_t j = 0; j < J; ++j) {
        const int64_t q = parents[j];
        acc_t Lj[9], rj[3], rq[3] = {0, 0, 0}, t[3];
        load<scalar_t, acc_t, 9>(Ln + j * 9, Lj);
        load<scalar_t, acc_t, 3>(rn + j * 3, rj);
        acc_t* G = state.data() + j * kForwardState;
        acc_t* pos = G + kMatrix;
        const acc_t* Gq = nullptr;
        const acc_t* pq = nullptr;
        if (q >= 0) {
          load<scalar_t, acc_t, 3>(rn + q * 3, rq);
          Gq = state.data() + q * kForwardState;
          pq = Gq + kMatrix;
        }
        forward_joint(Gq, pq, Lj, rj, rq, G, pos, t);
        const int64_t row = n * J + j;
        for (int k = 0; k < 9; ++k) G_out[row * 9 + k] = static_cast<scalar_t>(G[k]);
        for (int k = 0; k < 3; ++k) {
          p_out[row * 3 + k] = static_cast<scalar_t>(pos[k]);
          t_out[row * 3 + k] = static_cast<scalar_t>(t[k]);
        }
      }
    }
  });
}

// Pointers of one backward call; a null incoming gradient is zero, a null output is not
// wanted. grad_rest: [N, J, 3] per sample, or the [chunks, J, 3] partials (shared rest).
template <typename scalar_t, typename acc_t>
struct BackwardPointers {
  const scalar_t *gG, *gp, *gt, *L, *r, *G;
  scalar_t* grad_L;
  scalar_t* grad_rest;   // per-sample rest gradient, or null
  acc_t* rest_partials;  // shared rest gradient's chunk partials, or null
};

// The backward of samples [begin, end) with the adjoint buffer `state` ([J, 15]); each
// sample's complete gr_j goes to `emit_rest(n, j, gr)`.
template <typename scalar_t, typename acc_t, typename EmitRest>
void backward_range(const Problem& p, at::IntArrayRef parents,
                    const BackwardPointers<scalar_t, acc_t>& b, int64_t begin, int64_t end,
                    acc_t* state, EmitRest&& emit_rest) {
  const int64_t J = p.J;
  const int64_t rest_stride = p.shared_rest ? 0 : J * 3;
  for (int64_t n = begin; n < end; ++n) {
    std::fill(state, state + J * kBackwardState, acc_t(0));
    const scalar_t* rn = b.r + n * rest_stride;
    for (int64_t j = J - 1; j >= 0; --j) {
      const int64_t row = n * J + j;
      acc_t* s = state + j * kBackwardState;
      acc_t* gG = s;
      acc_t* gp = s + kMatrix;
      acc_t* gr = s + kMatrix + kVector;
      if (b.gG != nullptr) {
        for (int k = 0; k < 9; ++k) gG[k] += static_cast<acc_t>(b.gG[row * 9 + k]);
      }
      if (b.gp != nullptr) {
        for (int k = 0; k < 3; ++k) gp[k] += static_cast<acc_t>(b.gp[row * 3 + k]);
      }
      acc_t rj[3], rq[3] = {0, 0, 0}, Lj[9], Gq[9], gL[9];
      load<scalar_t, acc_t, 3>(rn + j * 3, rj);
      if (b.gt != nullptr) {
        acc_t Gj[9], gt[3];
        load<scalar_t, acc_t, 9>(b.G + row * 9, Gj);
        load<scalar_t, acc_t, 3>(b.gt + row * 3, gt);
        fold_translation(Gj, rj, gt, gG, gp, gr);
      }
      const int64_t q = parents[j];
      if (q < 0) {
        backward_joint<acc_t>(nullptr, nullptr, rj, rq, gG, gp, gL, gr, nullptr, nullptr,
                              nullptr);
      } else {
        load<scalar_t, acc_t, 3>(rn + q * 3, rq);
        load<scalar_t, acc_t, 9>(b.L + row * 9, Lj);
        load<scalar_t, acc_t, 9>(b.G + (n * J + q) * 9, Gq);
        acc_t* sq = state + q * kBackwardState;
        backward_joint(Gq, Lj, rj, rq, gG, gp, gL, gr, sq, sq + kMatrix,
                       sq + kMatrix + kVector);
      }
      if (b.grad_L != nullptr) {
        for (int k = 0; k < 9; ++k) b.grad_L[row * 9 + k] = static_cast<scalar_t>(gL[k]);
      }
      emit_rest(n, j, gr);
    }
  }
}

template <typename scalar_t, typename acc_t>
void backward_samples(const Problem& p, at::IntArrayRef parents,
                      const BackwardPointers<scalar_t, acc_t>& b) {
  const int64_t J = p.J;
  if (b.rest_partials == nullptr) {
    at::parallel_for(0, p.N, sample_grain(J), [&](int64_t begin, int64_t end) {
      std::vector<acc_t> state(J * kBackwardState);
      backward_range(p, parents, b, begin, end, state.data(),
                     [&](int64_t n, int64_t j, const acc_t* gr) {
                       if (b.grad_rest == nullptr) return;
                       for (int k = 0; k < 3; ++k) {
                         b.grad_rest[(n * J + j) * 3 + k] = static_cast<scalar_t>(gr[k]);
                       }
                     });
    });
    return;
  }
  const int64_t chunks = ceil_div(p.N, kChunk);
  const int64_t chunk_grain = ceil_div(sample_grain(J), kChunk);
  at::parallel_for(0, chunks, chunk_grain, [&](int64_t first, int64_t last) {
    std::vector<acc_t> state(J * kBackwardState);
    for (int64_t c = first; c < last; ++c) {
      acc_t* partial = b.rest_partials + c * J * 3;
      std::fill(partial, partial + J * 3, acc_t(0));
      backward_range(p, parents, b, c * kChunk, std::min(p.N, (c + 1) * kChunk), state.data(),
                     [&](int64_t, int64_t j, const acc_t* gr) {
                       for (int k = 0; k < 3; ++k) partial[j * 3 + k] += gr[k];
                     });
    }
  });
}

void check_cpu(const char* op, const at::Tensor& x) {
  TORCH_CHECK_VALUE(x.device().is_cpu(), op, ": the CPU kernel got a tensor on ", x.device());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> forward_kinematics_cpu(
    const at::Tensor& local_rotations, const at::Tensor& rest_joints, at::IntArrayRef parents) {
  const char* op = "skelops::forward_kinematics";
  const Problem p = check_problem(op, local_rotations, rest_joints, parents);
  check_cpu(op, local_rotations);
  Outputs out = empty_outputs(p, local_rotations);
  if (p.N * p.J > 0) {
    const at::Tensor L = local_rotations.contiguous();
    const at::Tensor r = rest_joints.contiguous();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, L.scalar_type(),
                                    "forward_kinematics_cpu", [&] {
                                      forward_samples<scalar_t, at::opmath_type<scalar_t>>(
                                          p, L, r, parents, out);
                                    });
  }
  return {out.global_rotations, out.posed_joints, out.global_translations};
}

std::tuple<at::Tensor, at::Tensor> forward_kinematics_backward_cpu(
    const std::optional<at::Tensor>& grad_global_rotations,
    const std::optional<at::Tensor>& grad_posed_joints,
    const std::optional<at::Tensor>& grad_global_translations, const at::Tensor& local_rotations,
    const at::Tensor& rest_joints, at::IntArrayRef parents, const at::Tensor& global_rotations,
    std::array<bool, 2> output_mask) {
  const char* op = "skelops::forward_kinematics_backward";
  BackwardInputs in;
  const Problem p =
      check_backward_problem(op, grad_global_rotations, grad_posed_joints,
                             grad_global_translations, local_rotations, rest_joints, parents,
                             global_rotations, &in);
  check_cpu(op, local_rotations);
  at::Tensor grad_L =
      output_mask[0] ? at::empty(local_rotations.sizes(), in.local_rotations.options())
                     : unwanted_gradient(local_rotations);
  at::Tensor grad_rest = output_mask[1]
                             ? at::empty(rest_joints.sizes(), in.rest_joints.options())
                             : unwanted_gradient(rest_joints);
  if (!output_mask[0] && !output_mask[1]) return {grad_L, grad_rest};
  if (p.N * p.J == 0) {  // no sample: a shared rest gradient is a sum of nothing
    grad_rest.zero_();
    return {grad_L, grad_rest};
  }
  const bool sum_rest = output_mask[1] && p.shared_rest;
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, in.local_rotations.scalar_type(),
      "forward_kinematics_backward_cpu", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        auto data = [](const at::Tensor& t) {
          return t.defined() ? t.const_data_ptr<scalar_t>() : nullptr;
        };
        at::Tensor partials;
        if (sum_rest) {
          partials = at::empty({ceil_div(p.N, kChunk), p.J, 3},
                               in.rest_joints.options().dtype(c10::CppTypeToScalarType<acc_t>()));
        }
        const BackwardPointers<scalar_t, acc_t> b{
            data(in.grad_rotations),
            data(in.grad_positions),
            data(in.grad_translations),
            in.local_rotations.const_data_ptr<scalar_t>(),
            in.rest_joints.const_data_ptr<scalar_t>(),
            in.global_rotations.const_data_ptr<scalar_t>(),
            output_mask[0] ? grad_L.mutable_data_ptr<scalar_t>() : nullptr,
            output_mask[1] && !sum_rest ? grad_rest.mutable_data_ptr<scalar_t>() : nullptr,
            sum_rest ? partials.mutable_data_ptr<acc_t>() : nullptr};
        backward_samples<scalar_t, acc_t>(p, parents, b);
        if (sum_rest) {
          // The chunks' partials in chunk order: a fixed order whatever the thread count.
          const acc_t* part = partials.const_data_ptr<acc_t>();
          scalar_t* dst = grad_rest.mutable_data_ptr<scalar_t>();
          const int64_t chunks = partials.size(0);
          for (int64_t k = 0; k < p.J * 3; ++k) {
            acc_t sum = 0;
            for (int64_t c = 0; c < chunks; ++c) sum += part[c * p.J * 3 + k];
            dst[k] = static_cast<scalar_t>(sum);
          }
        }
      });
  return {grad_L, grad_rest};
}

}  // namespace

TORCH_LIBRARY_IMPL(skelops, CPU, m) {
  m.impl("forward_kinematics", &forward_kinematics_cpu);
  m.impl("forward_kinematics_backward", &forward_kinematics_backward_cpu);
}

}  // namespace skelops::forward_kinematics
