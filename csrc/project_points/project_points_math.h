// Per-point math of project_points shared by the C++ CPU loops and the CUDA kernels (torch-free).
//
// One sample n: points X [P, 3], extrinsics R (row-major 3 x 3; the identity when absent) and t
// (zero when absent), camera k: pinhole (fx, fy, cx, cy) or weak perspective (s, tx, ty).
//   X_c = R X + t
//   pinhole:           z = max(z_c, min_depth), (u, v) = (fx x_c / z + cx, fy y_c / z + cy)
//   weak perspective:  (u, v) = s (x_c + tx, y_c + ty)   (z_c unused; HMR's projection)
// A point with z_c < min_depth is projected from the plane z = min_depth and its z_c gets no
// gradient (the clamp's gradient: z_c passes it iff z_c >= min_depth, as torch.clamp's does).
// NaN propagates: a NaN z_c is not clamped.
//
// Backward per point, from (gu, gv) = dL/d(u, v):
//   pinhole:  a = gu fx / z, b = gv fy / z;
//             dX_c = (a, b, -(a x_c + b y_c) / z, the last only if z_c >= min_depth);
//             dk = (gu x_c / z, gv y_c / z, gu, gv)
//   weak:     dX_c = (gu s, gv s, 0); dk = (gu (x_c + tx) + gv (y_c + ty), gu s, gv s)
//   dX = R^T dX_c, and the sample's sums dR += dX_c X^T, dt += dX_c, dk += dk (kSlots slots).
#pragma once

#include <skelops/common.h>

namespace skelops::project_points {

// Per-sample reduction slots: camera [0, 4) (weak perspective uses 3), rotation [4, 13)
// (row-major), translation [13, 16).
constexpr int kCameraSlot = 0;
constexpr int kRotationSlot = 4;
constexpr int kTranslationSlot = 13;
constexpr int kSlots = 16;

template <typename acc_t>
struct Sample {
  acc_t r[9];  // row-major R, the identity when absent
  acc_t t[3];  // zero when absent
  acc_t k[4];  // (fx, fy, cx, cy) or (s, tx, ty, 0)
};

// A sample's parameters from its rows of camera [C], rotation [9] and translation [3] (either
// may be null); load(ptr, i) converts element i to acc_t.
template <typename acc_t, typename scalar_t, typename Load>
SKELOPS_HD Sample<acc_t> load_sample(const scalar_t* camera, int camera_size,
                                     const scalar_t* rotation, const scalar_t* translation,
                                     Load load) {
  Sample<acc_t> s;
  for (int i = 0; i < 9; ++i) {
    s.r[i] = rotation != nullptr ? load(rotation, i) : acc_t(i % 4 == 0 ? 1 : 0);
  }
  for (int i = 0; i < 3; ++i) s.t[i] = translation != nullptr ? load(translation, i) : acc_t(0);
  for (int i = 0; i < 4; ++i) s.k[i] = i < camera_size ? load(camera, i) : acc_t(0);
  return s;
}

template <typename acc_t>
SKELOPS_HD void to_camera(const Sample<acc_t>& s, acc_t x, acc_t y, acc_t z, acc_t* c) {
  c[0] = s.r[0] * x + s.r[1] * y + s.r[2] * z + s.t[0];
  c[1] = s.r[3] * x + s.r[4] * y + s.r[5] * z + s.t[1];
  c[2] = s.r[6] * x + s.r[7] * y + s.r[8] * z + s.t[2];
}

// The clamped depth; a NaN z_c stays NaN (as torch.clamp).
template <typename acc_t>
SKELOPS_HD acc_t clamp_depth(acc_t z, acc_t min_depth) {
  return z < min_depth ? min_depth : z;
}

template <bool kWeak, typename acc_t>
SKELOPS_HD void project_point(const Sample<acc_t>& s, acc_t min_depth, acc_t x, acc_t y, acc_t z,
                              acc_t* u, acc_t* v) {
  acc_t c[3];
  to_camera(s, x, y, z, c);
  if constexpr (kWeak) {
    *u = s.k[0] * (c[0] + s.k[1]);
    *v = s.k[0] * (c[1] + s.k[2]);
  } else {
    const acc_t inv = acc_t(1) / clamp_depth(c[2], min_depth);
    *u = s.k[0] * (c[0] * inv) + s.k[2];
    *v = s.k[1] * (c[1] * inv) + s.k[3];
  }
}

template <typename acc_t>
struct PointGrad {
  acc_t point[3];      // dL/dX
  acc_t cam_point[3];  // dL/dX_c (the rotation's and translation's per-point terms)
  acc_t camera[4];
};

template <bool kWeak, typename acc_t>
SKELOPS_HD PointGrad<acc_t> point_grad(const Sample<acc_t>& s, acc_t min_depth, acc_t x, acc_t y,
                                       acc_t z, acc_t gu, acc_t gv) {
  acc_t c[3];
  to_camera(s, x, y, z, c);
  PointGrad<acc_t> g;
  if constexpr (kWeak) {
    const acc_t scale = s.k[0];
    g.cam_point[0] = gu * scale;
    g.cam_point[1] = gv * scale;
    g.cam_point[2] = acc_t(0);
    g.camera[0] = gu * (c[0] + s.k[1]) + gv * (c[1] + s.k[2]);
    g.camera[1] = gu * scale;
    g.camera[2] = gv * scale;
    g.camera[3] = acc_t(0);
  } else {
    const acc_t inv = acc_t(1) / clamp_depth(c[2], min_depth);
    const acc_t xn = c[0] * inv, yn = c[1] * inv;
    const acc_t a = gu * s.k[0] * inv, b = gv * s.k[1] * inv;
    g.cam_point[0] = a;
    g.cam_point[1] = b;
    g.cam_point[2] = c[2] >= min_depth ? -(a * xn + b * yn) : acc_t(0);
    g.camera[0] = gu * xn;
    g.camera[1] = gv * yn;
    g.camera[2] = gu;
    g.camera[3] = gv;
  }
  const acc_t* d = g.cam_point;
  g.point[0] = s.r[0] * d[0] + s.r[3] * d[1] + s.r[6] * d[2];
  g.point[1] = s.r[1] * d[0] + s.r[4] * d[1] + s.r[7] * d[2];
  g.point[2] = s.r[2] * d[0] + s.r[5] * d[1] + s.r[8] * d[2];
  return g;
}

// The point's terms of the sample's sums, slot by slot (see kSlots).
template <typename acc_t>
SKELOPS_HD acc_t slot_term(const PointGrad<acc_t>& g, acc_t x, acc_t y, acc_t z, int slot) {
  if (slot < kRotationSlot) return g.camera[slot];
  if (slot < kTranslationSlot) {
    const int i = (slot - kRotationSlot) / 3, j = (slot - kRotationSlot) % 3;
    return g.cam_point[i] * (j == 0 ? x : (j == 1 ? y : z));
  }
  return g.cam_point[slot - kTranslationSlot];
}

}  // namespace skelops::project_points
