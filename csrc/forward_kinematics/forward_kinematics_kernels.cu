// CUDA kernels of skelops::forward_kinematics and skelops::forward_kinematics_backward
// (torch-free; launchers declared in forward_kinematics_kernels.cuh, per-joint math shared with
// the CPU loops in forward_kinematics_math.h).
//
// Floor. Per sample and joint the forward reads L (9) and r (3, once per batch when shared)
// values and writes G, p, t (15): at N = 65536, J = 24 in float32 that is 85 MB read and 94 MB
// written, ~55 us at an H100's ~3.35 TB/s; ~60 FLOPs per joint, 94 MFLOP: far below the
// memory time. The backward reads L, G and up to 15 gradient values and writes 12 per joint,
// plus its [J, 15, N] accumulators (re-read from L2 mostly for SMPL-sized batches).
//
// forward_kernel: one thread per sample walks its chain in one launch. The state of the joint
//   just done stays in registers, so a chain child (parents[j] == j - 1, most joints of a
//   skeleton) reads its parent from there; any other parent's G and p are read back from what
//   this thread wrote earlier (the outputs themselves for float32 / float64; a [J, 12, N]
//   acc_t workspace for 16-bit outputs, so that rounded values never feed the chain). The
//   outputs are written by plain stores and re-read by plain loads of the same thread (no
//   read-only cache path on them).
// backward_kernel: one thread per sample, joints in reverse; each joint's adjoints (gG, gp, gr)
//   live in the [J, 15, N] workspace (sample fastest: a warp's accesses are coalesced); a joint
//   completes its own (children came first), writes gL_j and gr_j, and adds its contributions
//   to its parent's. No atomics: two runs give the same bits; the shared rest_joints gradient
//   is summed over the batch by the caller (a fixed-order reduction).
#include "forward_kinematics_kernels.cuh"

#include "forward_kinematics_math.h"

#include <cstdint>
#include <type_traits>

namespace skelops::forward_kinematics {
namespace {

constexpr int kThreads = 128;

template <typename acc_t>
__device__ __forceinline__ acc_t to_acc(float v) {
  return v;
}
template <typename acc_t>
__device__ __forceinline__ acc_t to_acc(double v) {
  return v;
}
template <typename acc_t>
__device__ __forceinline__ acc_t to_acc(__half v) {
  return __half2float(v);
}
template <typename acc_t>
__device__ __forceinline__ acc_t to_acc(__nv_bfloat16 v) {
  return __bfloat162float(v);
}

template <typename scalar_t, typename acc_t>
__device__ __forceinline__ scalar_t from_acc(acc_t v) {
  if constexpr (std::is_same_v<scalar_t, __half>) {
    return __float2half_rn(v);
  } else if constexpr (std::is_same_v<scalar_t, __nv_bfloat16>) {
    return __float2bfloat16_rn(v);
  } else {
    return v;
  }
}

template <int Count, typename scalar_t, typename acc_t>
__device__ __forceinline__ void load(const scalar_t* src, acc_t* dst) {
  for (int k = 0; k < Count; ++k) dst[k] = to_acc<acc_t>(src[k]);
}

template <int Count, typename scalar_t, typename acc_t>
__device__ __forceinline__ void store(const acc_t* src, scalar_t* dst) {
  for (int k = 0; k < Count; ++k) dst[k] = from_acc<scalar_t>(src[k]);
}

__device__ __forceinline__ int parent_of(const ParentTable& parents, int64_t j) {
  return parents.large != nullptr ? parents.large[j] : parents.small[j];
}

template <typename scalar_t, typename acc_t, bool kStateInOutput>
__global__ void __launch_bounds__(kThreads)
    forward_kernel(const scalar_t* __restrict__ L, const scalar_t* __restrict__ r,
                   const ParentTable parents, Dims d, acc_t* state, scalar_t* G_out,
                   scalar_t* p_out, scalar_t* __restrict__ t_out) {
  const int64_t n = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (n >= d.N) return;
  const int64_t J = d.J, N = d.N;
  const scalar_t* rn = r + n * d.rest_stride;
  acc_t G[9], p[3];  // the joint just done, then the current one
  for (int64_t j = 0; j < J; ++j) {
    const int q = parent_of(parents, j);
    const int64_t row = n * J + j;
    acc_t Lj[9], rj[3], rq[3] = {0, 0, 0}, Gq[9], pq[3], t[3];
    load<9>(L + row * 9, Lj);
    load<3>(rn + j * 3, rj);
    if (q < 0) {
      forward_joint<acc_t>(nullptr, nullptr, Lj, rj, rq, G, p, t);
    } else {
      load<3>(rn + q * 3, rq);
      if (q == j - 1) {
        for (int k = 0; k < 9; ++k) Gq[k] = G[k];
        for (int k = 0; k < 3; ++k) pq[k] = p[k];
      } else if constexpr (kStateInOutput) {
        const int64_t parent_row = n * J + q;
        for (int k = 0; k < 9; ++k) Gq[k] = G_out[parent_row * 9 + k];
        for (int k = 0; k < 3; ++k) pq[k] = p_out[parent_row * 3 + k];
      } else {
        for (int k = 0; k < 9; ++k) Gq[k] = state[(q * kForwardState + k) * N + n];
        for (int k = 0; k < 3; ++k) pq[k] = state[(q * kForwardState + kMatrix + k) * N + n];
      }
      forward_joint(Gq, pq, Lj, rj, rq, G, p, t);
    }
    store<9>(G, G_out + row * 9);
    store<3>(p, p_out + row * 3);
    store<3>(t, t_out + row * 3);
    if constexpr (!kStateInOutput) {
      for (int k = 0; k < 9; ++k) state[(j * kForwardState + k) * N + n] = G[k];
      for (int k = 0; k < 3; ++k) state[(j * kForwardState + kMatrix + k) * N + n] = p[k];
    }
  }
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads)
    backward_kernel(const scalar_t* __restrict__ gG_in, const scalar_t* __restrict__ gp_in,
                    const scalar_t* __restrict__ gt_in, const scalar_t* __restrict__ L,
                    const scalar_t* __restrict__ r, const scalar_t* __restrict__ G,
                    const ParentTable parents, Dims d, acc_t* __restrict__ adjoints,
                    scalar_t* __restrict__ grad_L, acc_t* __restrict__ grad_rest) {
  const int64_t n = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (n >= d.N) return;
  const int64_t J = d.J, N = d.N;
  const scalar_t* rn = r + n * d.rest_stride;
  for (int64_t j = J - 1; j >= 0; --j) {
    const int64_t row = n * J + j;
    acc_t* own = adjoints + j * kBackwardState * N + n;
    acc_t s[kBackwardState];  // gG (9), gp (3), gr (3)
    for (int k = 0; k < kBackwardState; ++k) s[k] = own[k * N];
    acc_t* gG = s;
    acc_t* gp = s + kMatrix;
    acc_t* gr = s + kMatrix + kVector;
    if (gG_in != nullptr) {
      for (int k = 0; k < 9; ++k) gG[k] += to_acc<acc_t>(gG_in[row * 9 + k]);
    }
    if (gp_in != nullptr) {
      for (int k = 0; k < 3; ++k) gp[k] += to_acc<acc_t>(gp_in[row * 3 + k]);
    }
    acc_t rj[3], rq[3] = {0, 0, 0}, gL[9];
    load<3>(rn + j * 3, rj);
    if (gt_in != nullptr) {
      acc_t Gj[9], gt[3];
      load<9>(G + row * 9, Gj);
      load<3>(gt_in + row * 3, gt);
      fold_translation(Gj, rj, gt, gG, gp, gr);
    }
    const int q = parent_of(parents, j);
    if (q < 0) {
      backward_joint<acc_t>(nullptr, nullptr, rj, rq, gG, gp, gL, gr, nullptr, nullptr, nullptr);
    } else {
      acc_t Lj[9], Gq[9], sq[kBackwardState];
      load<3>(rn + q * 3, rq);
      load<9>(L + row * 9, Lj);
      load<9>(G + (n * J + q) * 9, Gq);
      acc_t* parent = adjoints + q * kBackwardState * N + n;
      for (int k = 0; k < kBackwardState; ++k) sq[k] = parent[k * N];
      backward_joint(Gq, Lj, rj, rq, gG, gp, gL, gr, sq, sq + kMatrix, sq + kMatrix + kVector);
      for (int k = 0; k < kBackwardState; ++k) parent[k * N] = sq[k];
    }
    if (grad_L != nullptr) store<9>(gL, grad_L + row * 9);
    if (grad_rest != nullptr) {
      for (int k = 0; k < 3; ++k) grad_rest[row * 3 + k] = gr[k];
    }
  }
}

unsigned blocks_for(int64_t n) { return static_cast<unsigned>((n + kThreads - 1) / kThreads); }

}  // namespace

template <typename scalar_t, typename acc_t>
cudaError_t launch_forward_kinematics_forward(const scalar_t* local_rotations,
                                              const scalar_t* rest_joints,
                                              const ParentTable& parents, Dims dims,
                                              acc_t* workspace, scalar_t* global_rotations,
                                              scalar_t* posed_joints,
                                              scalar_t* global_translations, cudaStream_t stream) {
  if (dims.N == 0 || dims.J == 0) return cudaSuccess;
  if ((dims.N + kThreads - 1) / kThreads > INT32_MAX) return cudaErrorInvalidConfiguration;
  constexpr bool kStateInOutput = std::is_same_v<scalar_t, acc_t>;
  forward_kernel<scalar_t, acc_t, kStateInOutput><<<blocks_for(dims.N), kThreads, 0, stream>>>(
      local_rotations, rest_joints, parents, dims, workspace, global_rotations, posed_joints,
      global_translations);
  return cudaGetLastError();
}

template <typename scalar_t, typename acc_t>
cudaError_t launch_forward_kinematics_backward(
    const scalar_t* grad_global_rotations, const scalar_t* grad_posed_joints,
    const scalar_t* grad_global_translations, const scalar_t* local_rotations,
    const scalar_t* rest_joints, const scalar_t* global_rotations, const ParentTable& parents,
    Dims dims, acc_t* workspace, scalar_t* grad_local_rotations, acc_t* grad_rest,
    cudaStream_t stream) {
  if (dims.N == 0 || dims.J == 0) return cudaSuccess;
  if (grad_local_rotations == nullptr && grad_rest == nullptr) return cudaSuccess;
  if ((dims.N + kThreads - 1) / kThreads > INT32_MAX) return cudaErrorInvalidConfiguration;
  const cudaError_t err = cudaMemsetAsync(
      workspace, 0, sizeof(acc_t) * static_cast<size_t>(backward_workspace_elems(dims)), stream);
  if (err != cudaSuccess) return err;
  backward_kernel<scalar_t, acc_t><<<blocks_for(dims.N), kThreads, 0, stream>>>(
      grad_global_rotations, grad_posed_joints, grad_global_translations, local_rotations,
      rest_joints, global_rotations, parents, dims, workspace, grad_local_rotations, grad_rest);
  return cudaGetLastError();
}

#define SKELOPS_INSTANTIATE_FORWARD_KINEMATICS(scalar_t, acc_t)                                  \
  template cudaError_t launch_forward_kinematics_forward<scalar_t, acc_t>(                      \
      const scalar_t*, const scalar_t*, const ParentTable&, Dims, acc_t*, scalar_t*, scalar_t*, \
      scalar_t*, cudaStream_t);                                                                 \
  template cudaError_t launch_forward_kinematics_backward<scalar_t, acc_t>(                     \
      const scalar_t*, const scalar_t*, const scalar_t*, const scalar_t*, const scalar_t*,      \
      const scalar_t*, const ParentTable&, Dims, acc_t*, scalar_t*, acc_t*, cudaStream_t);

SKELOPS_INSTANTIATE_FORWARD_KINEMATICS(float, float)
SKELOPS_INSTANTIATE_FORWARD_KINEMATICS(double, double)
SKELOPS_INSTANTIATE_FORWARD_KINEMATICS(__half, float)
SKELOPS_INSTANTIATE_FORWARD_KINEMATICS(__nv_bfloat16, float)

#undef SKELOPS_INSTANTIATE_FORWARD_KINEMATICS

}  // namespace skelops::forward_kinematics
