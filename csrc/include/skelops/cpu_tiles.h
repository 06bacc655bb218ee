// CPU building blocks shared by the skelops C++ kernels: row-major GEMMs on the BLAS of the
// running torch, strided tile loads/stores through cache-resident scratch, and tile sizing.
#pragma once

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <c10/util/Exception.h>
#include <skelops/common.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

namespace skelops::cpu {

// BLAS of the running torch: libtorch_cpu exports MKL's Fortran GEMMs on x86 builds. They
// are bound weakly, so a torch without them still loads skelops and takes the at::mm path.
extern "C" {
void sgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k,
            const float* alpha, const float* a, const int* lda, const float* b, const int* ldb,
            const float* beta, float* c, const int* ldc) __attribute__((weak));
void dgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k,
            const double* alpha, const double* a, const int* lda, const double* b, const int* ldb,
            const double* beta, double* c, const int* ldc) __attribute__((weak));

// MKL's thread count for the calling thread only (weak, like the GEMMs).
int mkl_set_num_threads_local_(const int* threads) __attribute__((weak));
}

// Keeps BLAS on the calling thread while in scope. skelops' GEMMs are tile-sized and already
// run inside at::parallel_for: letting MKL thread them as well oversubscribes the cores (on
// 2 cores the curve op's transition pass ran 1.4x slower with two threads than with one).
struct SequentialBlas {
  int previous = -1;
  SequentialBlas() {
    if (mkl_set_num_threads_local_ != nullptr) {
      const int one = 1;
      previous = mkl_set_num_threads_local_(&one);
    }
  }
  ~SequentialBlas() {
    if (previous >= 0) mkl_set_num_threads_local_(&previous);  // 0: the global setting again
  }
  SequentialBlas(const SequentialBlas&) = delete;
  SequentialBlas& operator=(const SequentialBlas&) = delete;
};

template <typename T>
inline void blas_gemm(const char* ta, const char* tb, const int* m, const int* n, const int* k,
               const T* alpha, const T* a, const int* lda, const T* b, const int* ldb,
               const T* beta, T* c, const int* ldc) {
  if constexpr (std::is_same_v<T, float>) {
    sgemm_(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  } else {
    dgemm_(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  }
}

template <typename T>
inline bool have_blas() {
  if constexpr (std::is_same_v<T, float>) {
    return sgemm_ != nullptr;
  } else {
    return dgemm_ != nullptr;
  }
}

// Row-major C[m, n] = op(A)[m, k] @ op(B)[k, n] + beta * C, where op transposes an operand
// stored as [k, m] (resp. [n, k]); lda/ldb/ldc are row strides. Column-major BLAS computes
// C^T = op(B)^T op(A)^T.
template <typename T>
inline void gemm_rm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const T* a, int64_t lda,
             const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  if (have_blas<T>()) {
    const int mi = static_cast<int>(m), ni = static_cast<int>(n), ki = static_cast<int>(k);
    const int la = static_cast<int>(lda), lb = static_cast<int>(ldb), lc = static_cast<int>(ldc);
    const T one(1);
    blas_gemm<T>(trans_b ? "T" : "N", trans_a ? "T" : "N", &ni, &mi, &ki, &one, b, &lb, a, &la,
                 &beta, c, &lc);
    return;
  }
  const auto opts = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
  auto view = [&](const T* ptr, int64_t rows, int64_t cols, int64_t ld, bool trans) {
    at::Tensor t = at::from_blob(const_cast<T*>(ptr), {trans ? cols : rows, trans ? rows : cols},
                                 {ld, 1}, opts);
    return trans ? t.t() : t;
  };
  at::Tensor out = at::from_blob(c, {m, n}, {ldc, 1}, opts);
  at::addmm_out(out, out, view(a, m, k, lda, trans_a), view(b, k, n, ldb, trans_b), beta, 1);
}

// BLAS takes 32-bit sizes; tiles are small, but row strides span whole samples.
inline void check_blas_range(const char* op, int64_t elements_per_sample) {
  TORCH_CHECK_VALUE(elements_per_sample < (int64_t{1} << 31), op,
                    ": one sample of x or of the output has ", elements_per_sample,
                    " elements; the CPU kernel supports fewer than 2^31");
}

// Copies src[c, t, v] (strided; c < C, t < tl, v < V) into dst[(c * tl + t) * V + v].
template <typename src_t, typename dst_t>
void load_tile(const src_t* src, int64_t sc, int64_t st, int64_t sv, int64_t C, int64_t tl,
               int64_t V, dst_t* dst) {
  for (int64_t c = 0; c < C; ++c) {
    for (int64_t t = 0; t < tl; ++t) {
      const src_t* row = src + c * sc + t * st;
      dst_t* out = dst + (c * tl + t) * V;
      if (sv == 1) {
        for (int64_t v = 0; v < V; ++v) out[v] = static_cast<dst_t>(row[v]);
      } else {
        for (int64_t v = 0; v < V; ++v) out[v] = static_cast<dst_t>(row[v * sv]);
      }
    }
  }
}

// Writes src[(c * tl + t) * V + v] (+ bias[c, v]) into dst[c, t, v] of a contiguous
// [C, T, V] sample.
template <typename src_t, typename dst_t>
void store_tile(const src_t* src, const src_t* bias /* [C, V] or null */, int64_t C, int64_t tl,
                int64_t T, int64_t V, dst_t* dst) {
  for (int64_t c = 0; c < C; ++c) {
    for (int64_t t = 0; t < tl; ++t) {
      const src_t* in = src + (c * tl + t) * V;
      dst_t* out = dst + (c * T + t) * V;
      if (bias != nullptr) {
        const src_t* b = bias + c * V;
        for (int64_t v = 0; v < V; ++v) out[v] = static_cast<dst_t>(in[v] + b[v]);
      } else {
        for (int64_t v = 0; v < V; ++v) out[v] = static_cast<dst_t>(in[v]);
      }
    }
  }
}

// Copies src[c, t, v] (strided; c < C, t < tl, v < V) transposed into the joint-major
// dst[(t * V + v) * C + c], so that channel runs are contiguous.
template <typename src_t, typename dst_t>
void load_tile_transposed(const src_t* src, int64_t sc, int64_t st, int64_t sv, int64_t C,
                          int64_t tl, int64_t V, dst_t* dst) {
  for (int64_t c = 0; c < C; ++c) {
    for (int64_t t = 0; t < tl; ++t) {
      const src_t* row = src + c * sc + t * st;
      dst_t* out = dst + t * V * C + c;
      for (int64_t v = 0; v < V; ++v) out[v * C] = static_cast<dst_t>(row[v * sv]);
    }
  }
}

// Writes the joint-major src[(t * V + v) * C + c] (+ bias[c, v]) into dst[c, t, v] of a
// contiguous [C, T, V] sample.
template <typename src_t, typename dst_t>
void store_tile_transposed(const src_t* src, const src_t* bias /* [C, V] or null */, int64_t C,
                           int64_t tl, int64_t T, int64_t V, dst_t* dst) {
  for (int64_t c = 0; c < C; ++c) {
    for (int64_t t = 0; t < tl; ++t) {
      const src_t* in = src + t * V * C + c;
      dst_t* out = dst + (c * T + t) * V;
      if (bias != nullptr) {
        const src_t* b = bias + c * V;
        for (int64_t v = 0; v < V; ++v) out[v] = static_cast<dst_t>(in[v * C] + b[v]);
      } else {
        for (int64_t v = 0; v < V; ++v) out[v] = static_cast<dst_t>(in[v * C]);
      }
    }
  }
}

// Per-thread scratch, taken from torch's CPU allocator so that memory profiles count it.
template <typename T>
struct Scratch {
  at::Tensor storage;
  T* ptr = nullptr;
  explicit Scratch(int64_t elems)
      : storage(at::empty({std::max<int64_t>(elems, 1)},
                          at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value))),
        ptr(storage.data_ptr<T>()) {}
  T* data() { return ptr; }
};

// Frames per tile: the tile's scratch should stay in a core's L2, and there should be a few
// tiles per thread for load balance.
inline int64_t frames_per_tile(int64_t N, int64_t T, int64_t scratch_elems_per_frame,
                               int64_t elem_bytes) {
  // Half of a 1 MiB L2: measured best among 64 KiB .. 1 MiB on the 2-core EPYC CI machine.
  constexpr int64_t kScratchBudgetBytes = 512 * 1024;
  int64_t tb = std::max<int64_t>(1, kScratchBudgetBytes / (scratch_elems_per_frame * elem_bytes));
  tb = std::min(tb, T);
  const int64_t want_tiles = 4 * static_cast<int64_t>(at::get_num_threads());
  while (tb > 1 && N * ceil_div(T, tb) < want_tiles) tb = ceil_div(tb, 2);
  return tb;
}

}  // namespace skelops::cpu
