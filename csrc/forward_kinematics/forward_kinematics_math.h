// Per-joint math of forward kinematics shared by the C++ CPU loops and the CUDA kernels
// (torch-free; every matrix is a row-major 3 x 3 array of 9 values, every vector 3 values).
//
// Convention: local_rotations L [N, J, 3, 3], rest_joints r [J, 3] (shared) or [N, J, 3],
// parents [J] with parents[j] < j (-1: a root). For j in order, q = parents[j]:
//   G_j = G_q L_j                      (root: G_j = L_j)
//   p_j = G_q (r_j - r_q) + p_q        (root: p_j = r_j)
//   t_j = p_j - G_j r_j                (x -> G_j x + t_j maps the rest pose to the posed one)
//
// Backward (adjoints gG, gp, gt of the three outputs): first the translation is folded into
// the other two, gp_j += gt_j, gG_j -= gt_j r_j^T, gr_j -= G_j^T gt_j; then for j = J-1 .. 0
// (children, whose indices are larger, have already added to their parent's adjoints):
//   gL_j = G_q^T gG_j                   (root: gG_j)
//   gG_q += gG_j L_j^T + gp_j (r_j - r_q)^T,   gp_q += gp_j
//   gr_j += G_q^T gp_j, gr_q -= G_q^T gp_j     (root: gr_j += gp_j)
// Loops have constant trip counts (3 or 9): both compilers unroll them fully at -O3.
#pragma once

#include <skelops/common.h>
#include <skelops/mat3.h>

namespace skelops::forward_kinematics {

constexpr int kMatrix = 9;
constexpr int kVector = 3;
// A joint's forward state: G (9), p (3).
constexpr int kForwardState = kMatrix + kVector;
// A joint's backward accumulators: gG (9), gp (3), gr (3).
constexpr int kBackwardState = kMatrix + 2 * kVector;

// One joint of the forward. Gq / pq: the parent's state, null for a root (rq is then unused).
template <typename T>
SKELOPS_HD void forward_joint(const T* Gq, const T* pq, const T* L, const T* rj, const T* rq,
                              T* G, T* p, T* t) {
  if (Gq == nullptr) {
    for (int k = 0; k < kMatrix; ++k) G[k] = L[k];
    for (int k = 0; k < kVector; ++k) p[k] = rj[k];
  } else {
    mat3::mul(Gq, L, G);
    const T bone[3] = {rj[0] - rq[0], rj[1] - rq[1], rj[2] - rq[2]};
    mat3::vec(Gq, bone, p);
    for (int k = 0; k < kVector; ++k) p[k] += pq[k];
  }
  T moved[3];
  mat3::vec(G, rj, moved);
  for (int k = 0; k < kVector; ++k) t[k] = p[k] - moved[k];
}

// gp += gt, gG -= gt r^T, gr -= G^T gt: the translation's adjoint moved onto G, p and r.
template <typename T>
SKELOPS_HD void fold_translation(const T* G, const T* rj, const T* gt, T* gG, T* gp, T* gr) {
  T back[3];
  mat3::t_vec(G, gt, back);
  for (int i = 0; i < 3; ++i) {
    gp[i] += gt[i];
    gr[i] -= back[i];
    for (int k = 0; k < 3; ++k) gG[i * 3 + k] -= gt[i] * rj[k];
  }
}

// One joint of the backward, its adjoints gG, gp (complete: own and children's) given.
// Root (Gq null): gL = gG, gr += gp. Otherwise gL = Gq^T gG and the parent's adjoints gGq, gpq,
// grq receive this joint's contributions.
template <typename T>
SKELOPS_HD void backward_joint(const T* Gq, const T* L, const T* rj, const T* rq, const T* gG,
                               const T* gp, T* gL, T* gr, T* gGq, T* gpq, T* grq) {
  if (Gq == nullptr) {
    for (int k = 0; k < kMatrix; ++k) gL[k] = gG[k];
    for (int k = 0; k < kVector; ++k) gr[k] += gp[k];
    return;
  }
  mat3::mul_tn(Gq, gG, gL);  // gL = Gq^T gG
  const T bone[3] = {rj[0] - rq[0], rj[1] - rq[1], rj[2] - rq[2]};
  T gG_Lt[9];
  mat3::mul_nt(gG, L, gG_Lt);
  // gGq += gG L^T + gp bone^T
  for (int i = 0; i < 3; ++i) {
    for (int k = 0; k < 3; ++k) gGq[i * 3 + k] += gG_Lt[i * 3 + k] + gp[i] * bone[k];
  }
  T d[3];
  mat3::t_vec(Gq, gp, d);
  for (int k = 0; k < kVector; ++k) {
    gpq[k] += gp[k];
    gr[k] += d[k];
    grq[k] -= d[k];
  }
}

}  // namespace skelops::forward_kinematics
