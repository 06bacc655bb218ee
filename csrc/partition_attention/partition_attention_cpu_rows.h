// The per-partition-head work of the CPU kernels (partition_attention_cpu.cpp), on scratch the
// caller has gathered: the arguments here, the loops in partition_attention_cpu_rows_impl.h.
// The loops are compiled twice: for the build's baseline ISA, and (float only, x86-64 compilers
// that accept -mavx2 -mfma) for AVX2 + FMA in partition_attention_avx2_cpu.cpp, which the CPU
// kernels call where the running CPU has both. This header is torch-free so that nothing the
// AVX2 translation unit instantiates can be shared with (and picked by the linker for) the
// baseline code.
#pragma once

#include <cstdint>

namespace skelops::partition_attention {

// Dropout of one partition-head: probability (x, y) is kept when its hash of element number
// row_base[x] + y is >= threshold (partition_attention_math.h); row_base null: no dropout.
struct RowDropout {
  const uint64_t* row_base = nullptr;
  uint32_t key = 0, threshold = 0;
};

// One partition-head of the forward over N tokens: qs [N, D] (q times the score scale), kt and
// vt [D, N], bias [N, N] score rows or null; writes out [N, D] and lse [N]. row: N scratch.
template <typename acc_t>
struct ForwardRows {
  int64_t N, D;
  const acc_t *qs, *kt, *vt, *bias;
  RowDropout dropout;
  acc_t keep_scale;
  acc_t *out, *lse, *row;
};

// One partition-head of the backward: qs, kt, vt, bias as in the forward, dos and os [N, D]
// (dO and O), lse [N]; writes dq [N, D] (if want_q), dkt and dvt [D, N] (if want_k / want_v)
// and adds dS into dbias [N, N] (if not null). di, prob, dprob, dscore, keep: N scratch each.
template <typename acc_t>
struct BackwardRows {
  int64_t N, D;
  acc_t scale, keep_scale;
  const acc_t *qs, *kt, *vt, *bias, *dos, *os, *lse;
  RowDropout dropout;
  bool want_q, want_k, want_v;
  acc_t *dq, *dkt, *dvt, *dbias;
  acc_t *di, *prob, *dprob, *dscore, *keep;
};

#if defined(SKELOPS_WITH_AVX2)
namespace avx2 {
void forward_rows(const ForwardRows<float>& a);
void backward_rows(const BackwardRows<float>& a);
}  // namespace avx2
#endif

}  // namespace skelops::partition_attention
