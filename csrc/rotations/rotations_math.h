// Per-rotation math of skelops::axis_angle_to_matrix and skelops::dof_rotations (and their
// backwards), shared by the CPU kernels and the CUDA kernels (SKELOPS_HD: host and device).
// T is the math type: float (float32 / float16 / bfloat16 inputs) or double. Matrices are 3 x 3
// row-major arrays of 9 values.
//
// Axis-angle (Rodrigues): a = theta k with |k| = 1, K = [a]x (the cross-product matrix),
//   R = I + A(theta) K + B(theta) K^2,  A = sin(t) / t,  B = (1 - cos t) / t^2,
//   K^2 = a a^T - t^2 I.
// A and B are even functions of t; they, and the derivatives' C = A'(t) / t and
// D = B'(t) / t, are evaluated as Taylor series in t^2 below t^2 = kSeriesBound, so that R and
// its gradient are exact and finite at a = 0 (no epsilon added to the norm). Above it:
// A = sin t / t, B = 2 sin^2(t / 2) / t^2 (no cancellation), C = (cos t - A) / t^2,
// D = (A - 2 B) / t^2 (cancellation of at most ~300x at the bound, a relative error below
// 1e-13 in double and 2e-5 in float, on terms that the gradient scales by t^2 <= 0.01).
// Gradient, for G = dL/dR and w = (G21 - G12, G02 - G20, G10 - G01) (<G, [v]x> = v . w):
//   dL/da = A w + a (C (a . w) + D (a^T G a - t^2 tr G)) + B (G a + G^T a - 2 tr(G) a).
//
// Single-axis DoF (SKEL's CustomJoint): M(a, q) = I + sin(q) K + (1 - cos q) K^2 with the axis a
// used as given (a rotation when |a| = 1), K^2 = a a^T - (a . a) I:
//   dL/dq = cos(q) (a . w) + sin(q) (a^T G a - (a . a) tr G),
//   dL/da = sin(q) w + (1 - cos q) (G a + G^T a - 2 tr(G) a).
// A joint with DoFs s..e-1 has R = M_{e-1} ... M_s (identity when e = s). Its backward walks the
// DoFs from the last: with H_i = (M_{e-1} ... M_{i+1})^T G (H_{e-1} = G, H_{i-1} = M_i^T H_i)
// and P_i = M_{i-1} ... M_s, dL/dM_i = H_i P_i^T. P_i is recomputed for every i (O(k^2) 3 x 3
// products for k DoFs: k <= 3 in SKEL, one extra product), so nothing per DoF is stored.
#pragma once

#include <skelops/common.h>
#include <skelops/mat3.h>

#include <cmath>
#include <cstdint>

namespace skelops::rotations {

// t^2 below which A, B, C, D come from their series (5 terms: truncation below 1e-17).
constexpr double kSeriesBound = 0.01;

template <typename T>
struct AxisAngleCoefficients {
  T A, B, C, D;
};

template <typename T>
SKELOPS_HD AxisAngleCoefficients<T> axis_angle_coefficients(T t2, bool with_derivatives) {
  AxisAngleCoefficients<T> k{};
  if (t2 < T(kSeriesBound)) {
    // sin t / t = sum (-1)^n t^2n / (2n+1)!, (1 - cos t) / t^2 = sum (-1)^n t^2n / (2n+2)!,
    // and their derivatives divided by t.
    k.A = T(1) + t2 * (T(-1.0 / 6) + t2 * (T(1.0 / 120) + t2 * (T(-1.0 / 5040) +
                                                                 t2 * T(1.0 / 362880))));
    k.B = T(0.5) + t2 * (T(-1.0 / 24) + t2 * (T(1.0 / 720) + t2 * (T(-1.0 / 40320) +
                                                                    t2 * T(1.0 / 3628800))));
    if (with_derivatives) {
      k.C = T(-1.0 / 3) + t2 * (T(1.0 / 30) + t2 * (T(-1.0 / 840) + t2 * (T(1.0 / 45360) +
                                                                         t2 * T(-1.0 / 3991680))));
      k.D = T(-1.0 / 12) + t2 * (T(1.0 / 180) + t2 * (T(-1.0 / 6720) + t2 * (T(1.0 / 453600) +
                                                                          t2 * T(-1.0 / 47900160))));
    }
    return k;
  }
  using std::cos;
  using std::sin;
  using std::sqrt;
  const T t = sqrt(t2);
  const T s = sin(t), half = sin(T(0.5) * t);
  k.A = s / t;
  k.B = T(2) * half * half / t2;
  if (with_derivatives) {
    k.C = (cos(t) - k.A) / t2;
    k.D = (k.A - T(2) * k.B) / t2;
  }
  return k;
}

// R = I + A [a]x + B (a a^T - t^2 I), t^2 = a . a.
template <typename T>
SKELOPS_HD void rotation_from_coefficients(T x, T y, T z, T t2, T A, T B, T* R) {
  const T c = T(1) - B * t2;  // cos(theta), also for a non-unit DoF axis's (a . a)
  const T bxy = B * x * y, bxz = B * x * z, byz = B * y * z;
  R[0] = c + B * x * x;
  R[1] = bxy - A * z;
  R[2] = bxz + A * y;
  R[3] = bxy + A * z;
  R[4] = c + B * y * y;
  R[5] = byz - A * x;
  R[6] = bxz - A * y;
  R[7] = byz + A * x;
  R[8] = c + B * z * z;
}

template <typename T>
SKELOPS_HD void axis_angle_matrix(T x, T y, T z, T* R) {
  const T t2 = x * x + y * y + z * z;
  const AxisAngleCoefficients<T> k = axis_angle_coefficients(t2, false);
  rotation_from_coefficients(x, y, z, t2, k.A, k.B, R);
}

// The pieces of <G, dR/da> every Rodrigues-form gradient needs: w (the skew part of G),
// G a + G^T a, tr G and a^T G a.
template <typename T>
struct GradientTerms {
  T w[3];
  T sym[3];  // G a + G^T a
  T trace;
  T aGa;
};

template <typename T>
SKELOPS_HD GradientTerms<T> gradient_terms(const T* G, T x, T y, T z) {
  GradientTerms<T> g;
  g.w[0] = G[7] - G[5];
  g.w[1] = G[2] - G[6];
  g.w[2] = G[3] - G[1];
  const T ga0 = G[0] * x + G[1] * y + G[2] * z;
  const T ga1 = G[3] * x + G[4] * y + G[5] * z;
  const T ga2 = G[6] * x + G[7] * y + G[8] * z;
  g.sym[0] = ga0 + G[0] * x + G[3] * y + G[6] * z;
  g.sym[1] = ga1 + G[1] * x + G[4] * y + G[7] * z;
  g.sym[2] = ga2 + G[2] * x + G[5] * y + G[8] * z;
  g.trace = G[0] + G[4] + G[8];
  g.aGa = x * ga0 + y * ga1 + z * ga2;
  return g;
}

// dL/da of R = axis_angle_matrix(a) for G = dL/dR.
template <typename T>
SKELOPS_HD void axis_angle_matrix_grad(T x, T y, T z, const T* G, T* grad) {
  const T t2 = x * x + y * y + z * z;
  const AxisAngleCoefficients<T> k = axis_angle_coefficients(t2, true);
  const GradientTerms<T> g = gradient_terms(G, x, y, z);
  const T a_dot_w = x * g.w[0] + y * g.w[1] + z * g.w[2];
  const T radial = k.C * a_dot_w + k.D * (g.aGa - t2 * g.trace);
  const T a[3] = {x, y, z};
  for (int c = 0; c < 3; ++c) {
    grad[c] = k.A * g.w[c] + radial * a[c] + k.B * (g.sym[c] - T(2) * g.trace * a[c]);
  }
}

// M(a, q) = I + sin(q) [a]x + (1 - cos q) [a]x^2.
template <typename T>
SKELOPS_HD void dof_matrix(const T* a, T q, T* M) {
  using std::cos;
  using std::sin;
  const T s = sin(q), half = sin(T(0.5) * q);
  const T one_minus_cos = T(2) * half * half;  // no cancellation for small q
  rotation_from_coefficients(a[0], a[1], a[2], a[0] * a[0] + a[1] * a[1] + a[2] * a[2], s,
                             one_minus_cos, M);
}

// dL/dq and dL/da of M(a, q) for G = dL/dM.
template <typename T>
SKELOPS_HD void dof_matrix_grad(const T* a, T q, const T* G, T* grad_q, T* grad_a) {
  using std::cos;
  using std::sin;
  const T s = sin(q), c = cos(q), half = sin(T(0.5) * q);
  const T one_minus_cos = T(2) * half * half;
  const GradientTerms<T> g = gradient_terms(G, a[0], a[1], a[2]);
  const T a2 = a[0] * a[0] + a[1] * a[1] + a[2] * a[2];
  *grad_q = c * (a[0] * g.w[0] + a[1] * g.w[1] + a[2] * g.w[2]) + s * (g.aGa - a2 * g.trace);
  for (int k = 0; k < 3; ++k) {
    grad_a[k] = s * g.w[k] + one_minus_cos * (g.sym[k] - T(2) * g.trace * a[k]);
  }
}

// R = M_{end-1} ... M_begin, M_d = dof_matrix(axes + 3 d, angle(d)); the identity when
// begin == end. axes: [D, 3] contiguous; angle(d) returns DoF d's angle in T.
template <typename T, typename Angle>
SKELOPS_HD void joint_rotation(const T* axes, int64_t begin, int64_t end, const Angle& angle,
                               T* R) {
  if (begin == end) {
    mat3::identity(R);
    return;
  }
  dof_matrix(axes + 3 * begin, angle(begin), R);
  for (int64_t d = begin + 1; d < end; ++d) {
    T M[9], prev[9];
    dof_matrix(axes + 3 * d, angle(d), M);
    for (int k = 0; k < 9; ++k) prev[k] = R[k];
    mat3::mul(M, prev, R);
  }
}

// The backward of joint_rotation for G = dL/dR: emit(d, grad_q, grad_a) once per DoF d
// (grad_a: T[3]), from the last DoF to the first (see the header comment).
template <typename T, typename Angle, typename Emit>
SKELOPS_HD void joint_rotation_backward(const T* axes, int64_t begin, int64_t end,
                                        const Angle& angle, const T* G, const Emit& emit) {
  T H[9];
  for (int k = 0; k < 9; ++k) H[k] = G[k];
  for (int64_t i = end - 1; i >= begin; --i) {
    T P[9], Gm[9];
    joint_rotation(axes, begin, i, angle, P);
    mat3::mul_nt(H, P, Gm);
    const T q = angle(i);
    T grad_q, grad_a[3];
    dof_matrix_grad(axes + 3 * i, q, Gm, &grad_q, grad_a);
    emit(i, grad_q, grad_a);
    if (i > begin) {
      T M[9], next[9];
      dof_matrix(axes + 3 * i, q, M);
      mat3::mul_tn(M, H, next);
      for (int k = 0; k < 9; ++k) H[k] = next[k];
    }
  }
}

}  // namespace skelops::rotations
