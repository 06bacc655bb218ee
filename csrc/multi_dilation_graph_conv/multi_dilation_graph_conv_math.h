// Decisions and index maps of multi-dilation graph convolution shared by the C++ CPU loops and
// the CUDA kernels / glue, so that every backend takes the same computation order.
//
// Convention: x[n, c, t, v], weight[k, o, c] shared by the D dilations, adjacency[d, k, v, w]
// carries source joint v to target joint w; the concat output holds branch d in channels
// d * C_out .. (d + 1) * C_out - 1.
#pragma once

#include <skelops/common.h>

#include <cstdint>

namespace skelops::multi_dilation_graph_conv {

SKELOPS_HD int64_t branch_channel(int64_t d, int64_t o, int64_t C_out) { return d * C_out + o; }

// Concat forward (and, by the same count, the weight gradient): whether mixing channels once,
// Z_k = W_k x, then aggregating Z per dilation costs fewer FLOPs than aggregating x per
// dilation and mixing each result. Per output position and subset, up to a common factor:
//   mix once:        C_out * C_in + D * C_out * V
//   aggregate first: D * (C_in * V + C_in * C_out)
// Mixing once wins whenever C_in >= C_out; aggregating first wins for narrow inputs
// (C_in = 3 joint coordinates into 64 channels).
SKELOPS_HD bool mix_once_is_cheaper(int64_t C_in, int64_t C_out, int64_t V, int64_t D) {
  return C_out * C_in + D * C_out * V <= D * (C_in * V + C_in * C_out);
}

// Concat backward: the output side computes H_k = sum_d dY_d A[d, k]^T once (dX = W^T H,
// dW_k = H_k x^T) and recomputes Z for dA[d, k] = Z_k^T dY_d:
//   3 * C_out * C_in + 2 * D * C_out * V;
// the input side runs graph_conv's backward per dilation (G = W^T dY_d, then dX, dA, and
// dW from x A[d, k]): D * (2 * C_in * C_out + 3 * C_in * V).
SKELOPS_HD bool backward_on_output_side(int64_t C_in, int64_t C_out, int64_t V, int64_t D) {
  return 3 * C_out * C_in + 2 * D * C_out * V <= D * (2 * C_in * C_out + 3 * C_in * V);
}

}  // namespace skelops::multi_dilation_graph_conv
