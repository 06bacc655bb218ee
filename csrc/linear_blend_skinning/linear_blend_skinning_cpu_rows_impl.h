// The per-vertex loops of linear_blend_skinning_cpu_rows.h, defined in namespace
// skelops::linear_blend_skinning::SKELOPS_LINEAR_BLEND_SKINNING_ISA: included once per
// instruction set by the translation unit compiled for it (hence no include guard):
// linear_blend_skinning_cpu.cpp (baseline, every dtype) and linear_blend_skinning_avx2_cpu.cpp
// (AVX2 + FMA, float32). Everything here is torch-free and calls no library function, so that
// the AVX2 copy shares no weak symbol with the baseline one.
//
// Every influence of a row is blended, zero-padded ones included: a multiply by a zero weight
// costs less than the mispredicted branch that skipping it takes on rows of 1-4 influences.
// The 12 or 16 entries of a transform are contiguous multiply-adds on vectors (SSE2: 3-4
// registers, AVX2: 2), and rows of K = 4 (SMPL's, and what dense weights compress to) get a
// fully unrolled copy.
#include "linear_blend_skinning/linear_blend_skinning_cpu_rows.h"

#include <cstdint>

#ifndef SKELOPS_LINEAR_BLEND_SKINNING_ISA
#error "define SKELOPS_LINEAR_BLEND_SKINNING_ISA before including this file"
#endif

namespace skelops::linear_blend_skinning::SKELOPS_LINEAR_BLEND_SKINNING_ISA {

// GCC / Clang vector extensions, written out because the compilers' own vectorisation of the
// scalar loops gathers across influences (4 strided loads per vector) instead of running along
// a transform's contiguous entries. 8-wide vectors only where the target has 256-bit registers
// (kWide): elsewhere GCC lowers a scalar times an 8-wide vector through the stack, where each
// broadcast then stalls on store forwarding (~6x slower than 4-wide vectors on SSE2).
#if defined(__AVX__)
constexpr bool kWide = true;
#else
constexpr bool kWide = false;
#endif

template <typename T>
struct Vectors {
  typedef T v4 __attribute__((vector_size(4 * sizeof(T))));
  typedef T v8 __attribute__((vector_size(8 * sizeof(T))));
};

// The helpers take and give vectors by reference and are always inlined: a vector wider than
// the target's registers (4 doubles on SSE2) passed by value would go through memory (a
// different ABI, -Wpsabi).
template <typename V, typename T>
__attribute__((always_inline)) inline void load(V& v, const T* src) {
  __builtin_memcpy(&v, src, sizeof(V));
}

template <typename V, typename T>
__attribute__((always_inline)) inline void add_to(T* dst, const V& v) {
  V d;
  __builtin_memcpy(&d, dst, sizeof(V));
  d += v;
  __builtin_memcpy(dst, &d, sizeof(V));
}

// out = the sum of the two 4-wide halves of an 8-wide vector.
template <typename T>
__attribute__((always_inline)) inline void sum_halves(const typename Vectors<T>::v8& v,
                                                      typename Vectors<T>::v4& out) {
  typename Vectors<T>::v4 hi;
  __builtin_memcpy(&out, &v, sizeof(out));
  __builtin_memcpy(&hi, reinterpret_cast<const char*>(&v) + sizeof(out), sizeof(hi));
  out += hi;
}

template <int kFixedK, typename scalar_t, typename acc_t>
inline void forward_rows_k(const ForwardRows<scalar_t, acc_t>& a) {
  using v4 = typename Vectors<acc_t>::v4;
  using v8 = typename Vectors<acc_t>::v8;
  const int64_t K = kFixedK > 0 ? kFixedK : a.K;
  for (int64_t v = a.v0; v < a.v1; ++v) {
    const acc_t* w = a.values + v * K;
    const int32_t* joint = a.indices + v * K;
    const scalar_t* src = a.vertices + v * 3;
    const acc_t x = static_cast<acc_t>(src[0]), y = static_cast<acc_t>(src[1]),
                z = static_cast<acc_t>(src[2]);
    v4 posed;  // lane 3 is padding
    if constexpr (kWide) {
      v8 m01 = {}, m23 = {};  // columns 0 and 1, columns 2 and 3 (t)
      for (int64_t k = 0; k < K; ++k) {
        const acc_t* t = a.columns + int64_t{joint[k]} * kColumnTransform;
        const acc_t wk = w[k];
        v8 t01, t23;
        load(t01, t);
        load(t23, t + 8);
        m01 += wk * t01;
        m23 += wk * t23;
      }
      const v8 xy = {x, x, x, x, y, y, y, y}, z1 = {z, z, z, z, 1, 1, 1, 1};
      sum_halves<acc_t>(m01 * xy + m23 * z1, posed);
    } else {
      v4 m0 = {}, m1 = {}, m2 = {}, m3 = {};  // the columns
      for (int64_t k = 0; k < K; ++k) {
        const acc_t* t = a.columns + int64_t{joint[k]} * kColumnTransform;
        const acc_t wk = w[k];
        v4 t0, t1, t2, t3;
        load(t0, t);
        load(t1, t + 4);
        load(t2, t + 8);
        load(t3, t + 12);
        m0 += wk * t0;
        m1 += wk * t1;
        m2 += wk * t2;
        m3 += wk * t3;
      }
      posed = m0 * x + m1 * y + m2 * z + m3;
    }
    scalar_t* dst = a.out + v * 3;
    for (int r = 0; r < 3; ++r) dst[r] = static_cast<scalar_t>(posed[r]);
  }
}

template <typename scalar_t, typename acc_t>
inline void forward_rows_impl(const ForwardRows<scalar_t, acc_t>& a) {
  if (a.K == 4) {
    forward_rows_k<4>(a);
  } else {
    forward_rows_k<0>(a);
  }
}

// g (x) [v; 1] is formed once per vertex (o[r * 4 + c] = g[r] [v; 1][c]: rows 0 and 1 in one
// 8-wide vector, row 2 in a 4-wide one), so that each influence adds w o to its joint's 12
// contiguous entries.
template <int kFixedK, bool kJoints, bool kVertices, typename scalar_t, typename acc_t>
inline void joint_rows_k(const JointRows<scalar_t, acc_t>& a) {
  using v4 = typename Vectors<acc_t>::v4;
  using v8 = typename Vectors<acc_t>::v8;
  const int64_t K = kFixedK > 0 ? kFixedK : a.K;
  constexpr int kT = 12;
  for (int64_t v = a.v0; v < a.v1; ++v) {
    const acc_t* w = a.values + v * K;
    const int32_t* joint = a.indices + v * K;
    const scalar_t* gsrc = a.grad_out + v * 3;
    const acc_t g0 = static_cast<acc_t>(gsrc[0]), g1 = static_cast<acc_t>(gsrc[1]),
                g2 = static_cast<acc_t>(gsrc[2]);
    acc_t x = 0, y = 0, z = 0;
    if constexpr (kJoints) {
      const scalar_t* src = a.vertices + v * 3;
      x = static_cast<acc_t>(src[0]);
      y = static_cast<acc_t>(src[1]);
      z = static_cast<acc_t>(src[2]);
    }
    const v4 h = {x, y, z, 1};
    v4 gv = {};  // lane 3 is padding
    if constexpr (kWide) {
      const v8 g01 = {g0, g0, g0, g0, g1, g1, g1, g1}, hh = {x, y, z, 1, x, y, z, 1};
      const v8 o01 = g01 * hh;  // rows 0 and 1 of g (x) [v; 1]
      const v4 o2 = g2 * h;
      v8 m01 = {};
      v4 m2 = {};
      for (int64_t k = 0; k < K; ++k) {
        const int64_t j = joint[k];
        const acc_t wk = w[k];
        if constexpr (kJoints) {
          acc_t* aj = a.acc + j * kT;
          add_to<v8>(aj, wk * o01);
          add_to<v4>(aj + 8, wk * o2);
        }
        if constexpr (kVertices) {
          const acc_t* t = a.transforms + j * kT;
          v8 t01;
          v4 t2;
          load(t01, t);
          load(t2, t + 8);
          m01 += wk * t01;
          m2 += wk * t2;
        }
      }
      if constexpr (kVertices) {
        sum_halves<acc_t>(g01 * m01, gv);
        gv += g2 * m2;
      }
    } else {
      const v4 o0 = g0 * h, o1 = g1 * h, o2 = g2 * h;  // the rows of g (x) [v; 1]
      v4 m0 = {}, m1 = {}, m2 = {};
      for (int64_t k = 0; k < K; ++k) {
        const int64_t j = joint[k];
        const acc_t wk = w[k];
        if constexpr (kJoints) {
          acc_t* aj = a.acc + j * kT;
          add_to<v4>(aj, wk * o0);
          add_to<v4>(aj + 4, wk * o1);
          add_to<v4>(aj + 8, wk * o2);
        }
        if constexpr (kVertices) {
          const acc_t* t = a.transforms + j * kT;
          v4 t0, t1, t2;
          load(t0, t);
          load(t1, t + 4);
          load(t2, t + 8);
          m0 += wk * t0;
          m1 += wk * t1;
          m2 += wk * t2;
        }
      }
      if constexpr (kVertices) gv = g0 * m0 + g1 * m1 + g2 * m2;
    }
    if constexpr (kVertices) {
      scalar_t* dst = a.grad_vertices + v * 3;
      for (int c = 0; c < 3; ++c) dst[c] = static_cast<scalar_t>(gv[c]);
    }
  }
}

template <bool kJoints, bool kVertices, typename scalar_t, typename acc_t>
inline void joint_rows_masked(const JointRows<scalar_t, acc_t>& a) {
  if (a.K == 4) {
    joint_rows_k<4, kJoints, kVertices>(a);
  } else {
    joint_rows_k<0, kJoints, kVertices>(a);
  }
}

template <typename scalar_t, typename acc_t>
inline void joint_rows_impl(const JointRows<scalar_t, acc_t>& a) {
  if (a.acc != nullptr && a.grad_vertices != nullptr) {
    joint_rows_masked<true, true>(a);
  } else if (a.acc != nullptr) {
    joint_rows_masked<true, false>(a);
  } else if (a.grad_vertices != nullptr) {
    joint_rows_masked<false, true>(a);
  }
}

}  // namespace skelops::linear_blend_skinning::SKELOPS_LINEAR_BLEND_SKINNING_ISA
