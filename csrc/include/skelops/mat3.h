// Row-major 3 x 3 matrix products shared by the per-element math of the kinematic operators
// (forward_kinematics, rotations), on the host and the device (SKELOPS_HD). The output must
// not alias an input.
#pragma once

#include <skelops/common.h>

namespace skelops::mat3 {

// C = A B
template <typename T>
SKELOPS_HD void mul(const T* A, const T* B, T* C) {
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 3; ++j) {
      C[i * 3 + j] = A[i * 3] * B[j] + A[i * 3 + 1] * B[3 + j] + A[i * 3 + 2] * B[6 + j];
    }
  }
}

// C = A B^T
template <typename T>
SKELOPS_HD void mul_nt(const T* A, const T* B, T* C) {
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 3; ++j) {
      C[i * 3 + j] =
          A[i * 3] * B[j * 3] + A[i * 3 + 1] * B[j * 3 + 1] + A[i * 3 + 2] * B[j * 3 + 2];
    }
  }
}

// C = A^T B
template <typename T>
SKELOPS_HD void mul_tn(const T* A, const T* B, T* C) {
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 3; ++j) {
      C[i * 3 + j] = A[i] * B[j] + A[3 + i] * B[3 + j] + A[6 + i] * B[6 + j];
    }
  }
}

// y = A x
template <typename T>
SKELOPS_HD void vec(const T* A, const T* x, T* y) {
  for (int i = 0; i < 3; ++i) y[i] = A[i * 3] * x[0] + A[i * 3 + 1] * x[1] + A[i * 3 + 2] * x[2];
}

// y = A^T x
template <typename T>
SKELOPS_HD void t_vec(const T* A, const T* x, T* y) {
  for (int i = 0; i < 3; ++i) y[i] = A[i] * x[0] + A[3 + i] * x[1] + A[6 + i] * x[2];
}

template <typename T>
SKELOPS_HD void identity(T* R) {
  for (int k = 0; k < 9; ++k) R[k] = (k % 4 == 0) ? T(1) : T(0);
}

}  // namespace skelops::mat3
