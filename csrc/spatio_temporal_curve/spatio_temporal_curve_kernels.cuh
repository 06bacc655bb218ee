// Torch-free launchers of the CUDA kernels of skelops::spatio_temporal_curve and its backward
// (defined in spatio_temporal_curve_kernels.cu, instantiated for float, __half and
// __nv_bfloat16; fp32 accumulation, fp32 transition statistics).
//
// Convention: x[n, c, t, v], key[n, d, t, v]; transition t (t < T - 1) scores joint v of frame
// t against candidate w of frame t + 1 (see spatio_temporal_curve_math.h):
//   s_t(v, w) = scale * sum_d key[n, d, t, v] key[n, d, t + 1, w]
//   y[n, c, t, v] = sum_{i <= min(L, T - 1 - t)} pi_i x[n, c, t + i, p_i]
//
// Strides are in elements and may be anything; candidates is a contiguous [V, V] bool mask
// (every row with a True) or null for all joints. Every launcher enqueues on `stream` and
// returns the first failing call's error or cudaGetLastError(), which the caller must check.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace skelops::spatio_temporal_curve {

// The kernels stage rows of V scores in shared memory (at most 48 KB, without opt-in).
constexpr int64_t kMaxCudaJoints = 1024;

struct Dims {
  int64_t N, C, T, V, D;
  int64_t steps;  // min(length, T - 1)
};

// Strides of a [N, C, T, V] tensor (x, grad_out) or of key [N, D, T, V].
struct FrameStrides {
  int64_t n, c, t, v;
};

// Elements of each [N, T, V, steps + 1] curve table of the backward's workspace.
inline int64_t curve_table_size(const Dims& d) { return d.N * d.T * d.V * (d.steps + 1); }

// The backward's scratch (fp32 / int32, contiguous), allocated by the caller:
//   joints, weights, arrivals: curve_table_size(d) each; through: curve_table_size(d) when the
//   key gradient is asked for (else unused); arrival_offsets: N * (T * V + 1);
//   log_prob_grad: N * (T - 1) * V when the key gradient is asked for.
struct BackwardWorkspace {
  int32_t* joints;           // p_i of the curve from (n, t, v): [N, T, V, steps + 1]
  float* weights;            // pi_i
  int32_t* arrival_offsets;  // per sample, per (t', w): where its arrivals start
  int32_t* arrivals;         // per sample: table entries (t, v, i) with t + i = t', p_i = w
  float* through;            // G_i = sum_{i' >= i} pi_i' h_i'  (d loss / d log pi through step i)
  float* log_prob_grad;      // R[n, t', u] = d loss / d log_prob[n, t', u]
};

// y [N, C, T, V] (contiguous) and the transition statistics next_joint, log_prob,
// log_normalizer [N, T - 1, V] (contiguous).
template <typename scalar_t>
cudaError_t launch_spatio_temporal_curve_forward(const scalar_t* x, FrameStrides x_strides,
                                                 const scalar_t* key, FrameStrides key_strides,
                                                 const bool* candidates, float scale, Dims dims,
                                                 scalar_t* y, int32_t* next_joint,
                                                 float* log_prob, float* log_normalizer,
                                                 cudaStream_t stream);

// grad_x [N, C, T, V] and grad_key [N, D, T, V] (contiguous; each only when asked for) from
// grad_out and the forward's statistics (contiguous). Out-of-range next joints (possible only
// from a direct call: checking them would need a device synchronisation) are clamped into
// [0, V), so they never index out of bounds.
template <typename scalar_t>
cudaError_t launch_spatio_temporal_curve_backward(
    const scalar_t* grad_out, FrameStrides grad_out_strides, const scalar_t* x,
    FrameStrides x_strides, const scalar_t* key, FrameStrides key_strides, const bool* candidates,
    const int32_t* next_joint, const float* log_prob, const float* log_normalizer, float scale,
    Dims dims, BackwardWorkspace workspace, scalar_t* grad_x, scalar_t* grad_key,
    cudaStream_t stream);

}  // namespace skelops::spatio_temporal_curve
