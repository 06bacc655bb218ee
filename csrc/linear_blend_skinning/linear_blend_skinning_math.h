// Per-vertex math of linear blend skinning shared by the CPU kernels and the CUDA kernels
// (torch-free; SKELOPS_HD makes every function __host__ __device__ under nvcc). The loops have
// constant trip counts: both compilers unroll them.
//
// A sample's joint transforms are packed [J, 12]: joint j's 3 x 4 matrix [R_j | t_j] row-major
// (a[r * 4 + c] = R_j[r, c] for c < 3, a[r * 4 + 3] = t_j[r]). A vertex with weights w_k on
// joints j_k is posed as
//   out = M [v; 1],   M = sum_k w_k a_{j_k}   (the 12 blended entries live in registers only).
// The backward, for the incoming gradient g of one output vertex:
//   d v        = M_R^T g                 (M_R: the rotation columns of M)
//   d w_k      = g . (a_{j_k} [v; 1])
//   d a_j[r, c] += w_k g[r] [v; 1][c]    for every k with j_k = j.
#pragma once

#include <skelops/common.h>

#include <cstdint>

namespace skelops::linear_blend_skinning {

constexpr int kTransform = 12;  // entries of a packed 3 x 4 transform

// m += w a over the 12 entries of a transform.
template <typename acc_t>
SKELOPS_HD void add_weighted_transform(acc_t* m, acc_t w, const acc_t* a) {
  for (int e = 0; e < kTransform; ++e) m[e] += w * a[e];
}

// out = M [x, y, z, 1].
template <typename acc_t>
SKELOPS_HD void apply_transform(const acc_t* m, acc_t x, acc_t y, acc_t z, acc_t* out) {
  for (int r = 0; r < 3; ++r) {
    out[r] = m[r * 4] * x + m[r * 4 + 1] * y + m[r * 4 + 2] * z + m[r * 4 + 3];
  }
}

// g . (a [x, y, z, 1]): the gradient of one weight.
template <typename acc_t>
SKELOPS_HD acc_t transformed_dot(const acc_t* a, acc_t x, acc_t y, acc_t z, acc_t g0, acc_t g1,
                                 acc_t g2) {
  return g0 * (a[0] * x + a[1] * y + a[2] * z + a[3]) +
         g1 * (a[4] * x + a[5] * y + a[6] * z + a[7]) +
         g2 * (a[8] * x + a[9] * y + a[10] * z + a[11]);
}

// gv += w R^T g, R the rotation part of transform a.
template <typename acc_t>
SKELOPS_HD void add_rotation_transpose(acc_t* gv, acc_t w, const acc_t* a, acc_t g0, acc_t g1,
                                       acc_t g2) {
  const acc_t wg0 = w * g0, wg1 = w * g1, wg2 = w * g2;
  for (int c = 0; c < 3; ++c) gv[c] += wg0 * a[c] + wg1 * a[4 + c] + wg2 * a[8 + c];
}

// Splits of a reduction of `length` items over `items_per_split`-sized pieces at least, so that
// (units already parallel) x splits reaches about `target` tasks. Depends on the shapes only,
// never on the thread count or the device: the fixed-order sums of the partials are then
// reproducible everywhere.
SKELOPS_HD int64_t split_count(int64_t parallel_units, int64_t target, int64_t length,
                               int64_t min_items_per_split) {
  const int64_t wanted = ceil_div(target, parallel_units > 0 ? parallel_units : 1);
  const int64_t most = ceil_div(length, min_items_per_split);
  int64_t splits = wanted < most ? wanted : most;
  return splits > 1 ? splits : 1;
}

}  // namespace skelops::linear_blend_skinning
