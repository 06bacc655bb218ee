// Per-element math of partitioned self-attention shared by the C++ CPU loops and the CUDA
// kernels (the Python reference, skelops/reference/partition_attention.py, defines the same).
//
// Tokens are (frame, joint) pairs of q, k, v [B, H, T, V, D]. Partition (p, g) holds the
// N = W * J tokens (frame_partition[p, a], joint_partition[g, i]), numbered n = a * J + i
// (window position major). For a query x and a key y of one partition:
//   s_xy = scale * <q_x, k_y> + bias(x, y),  o_x = sum_y keep_xy / (1 - p) * softmax_y(s_x.) v_y
// bias: none; kFrameOffset: table [2W - 1, H] at [a_x - a_y + W - 1, h]; kFrameJointOffset:
// table [2W - 1, J, J, H] at [a_x - a_y + W - 1, i_x, i_y, h].
// Dropout: probability (x, y) of batch b, head h is kept when
//   mix32(mix32(key ^ hi(e)) ^ lo(e)) >= threshold,  e = (((b * H + h) * T + t_x) * V + u_x) * N + n_y
// with key = dropout_seed_key(seed) and threshold = min(floor(p * 2^32), 2^32 - 1).
#pragma once

#include <skelops/common.h>

#include <cstdint>

namespace skelops::partition_attention {

enum BiasKind : int32_t { kNoBias = 0, kFrameOffset = 1, kFrameJointOffset = 2 };

// "lowbias32", a 32-bit integer finaliser found by C. Wellons' hash-prospector.
SKELOPS_HD uint32_t mix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x21f0aaadu;
  x ^= x >> 15;
  x *= 0x735a2d97u;
  x ^= x >> 15;
  return x;
}

// The per-call 32-bit key of a 64-bit dropout seed (computed once on the host).
SKELOPS_HD uint32_t dropout_seed_key(uint64_t seed) {
  return mix32(mix32(static_cast<uint32_t>(seed) ^ 0x9e3779b9u) ^
               static_cast<uint32_t>(seed >> 32));
}

// floor(p * 2^32) clamped to 2^32 - 1: hashes below it are dropped.
inline uint32_t dropout_threshold(double p) {
  const double scaled = p * 4294967296.0;
  return scaled >= 4294967295.0 ? 0xffffffffu : static_cast<uint32_t>(scaled);
}

// The hash of element e (see above); kept when >= the threshold.
SKELOPS_HD uint32_t dropout_bits(uint32_t key, uint64_t element) {
  return mix32(mix32(key ^ static_cast<uint32_t>(element >> 32)) ^ static_cast<uint32_t>(element));
}

// Dropout element number e of probability (x, y): query x = (frame t_x, joint u_x) of batch b,
// head h, and key y at position n_y of its partition of N tokens.
SKELOPS_HD uint64_t dropout_element(int64_t H, int64_t T, int64_t V, int64_t N, int64_t b,
                                    int64_t h, int64_t t_x, int64_t u_x, int64_t n_y) {
  return static_cast<uint64_t>(((b * H + h) * T + t_x) * V + u_x) * static_cast<uint64_t>(N) +
         static_cast<uint64_t>(n_y);
}

// Offset of bias(x, y) of head h in the table (BiasKind kFrameOffset / kFrameJointOffset);
// a_* are window positions, i_* group positions.
SKELOPS_HD int64_t bias_offset(int32_t kind, int64_t W, int64_t J, int64_t H, int64_t h,
                               int64_t a_x, int64_t i_x, int64_t a_y, int64_t i_y) {
  const int64_t frame = a_x - a_y + W - 1;
  return kind == kFrameOffset ? frame * H + h : ((frame * J + i_x) * J + i_y) * H + h;
}

}  // namespace skelops::partition_attention
