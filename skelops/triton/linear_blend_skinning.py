"""Triton kernels for linear blend skinning.

Conventions (skelops/reference/linear_blend_skinning.py is the definition): vertices
``[N or 1, P, 3]``, weights ``[P, J]`` dense or ``[P, K]`` with joint indices ``[P, K]``,
transforms packed per sample as ``[J, 12]`` 3 x 4 matrices ``[R | t]`` (row-major; built here in
the accumulation dtype, small), ``out[n, p] = M [v; 1]`` with ``M = sum_k w_k A[n, j_k]``.
Math in float32 (float64 for float64 inputs, which only the interpreter runs). Tiles are
``[rows, 16]`` with the 12 transform entries in the first columns (``e = 4 r + c``).

Kernels:

* ``_forward_kernel``: one program per (sample, block of vertices); per influence a ``[BLOCK_P,
  16]`` gather of the joints' transforms is blended in registers, then applied.
* ``_vertex_side_kernel``: one program per (block of vertices, range of samples): per sample
  the ``[BLOCK_P, BLOCK_K]`` influences' transforms are gathered once and give the weight
  gradients ``g . (A_j [v; 1])`` and the vertex gradient ``sum_k w_k R_j^T g`` (stored per sample,
  or summed over the range for a shared mesh). Partials ``[splits, P, .]`` are summed by torch
  in split order.
* ``_joint_side_kernel``: one program per (sample, tile of joints, range of vertices):
  ``dA[j, e] += sum_p S[p, j] C[p, e]`` with ``S`` the tile's weights (dense, or the sparse rows
  expanded by comparing indices) and ``C[p, 4 r + c] = g[r] [v; 1][c]``, one ``tl.dot`` per block
  of vertices (``ieee`` precision: the sums need float32, not tf32). Partials
  ``[splits, N, J, 12]`` are summed by torch in split order.

Deterministic: fixed-order sums, no atomics. The splits depend on the shapes only. No GPU was
available: these kernels have run under the interpreter only, never timed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import triton
import triton.language as tl

from ._common import INTERPRETED, acc_dtypes, clamp_pow2, device_guard, interpreter_lacks, next_pow2

_FORWARD_BLOCK = 128
_JOINT_BLOCK_P = 64
_MAX_JOINT_TILE = 64
_MAX_VERTEX_TILE = 2048  # BLOCK_P * BLOCK_K of the vertex-side kernel
_TARGET_PROGRAMS = 1024  # programs a GPU launch aims at; split counts follow from it
_MIN_SAMPLES_PER_SPLIT = 16


@triton.jit
def _homogeneous_tile(x, y, z, col):
    """[BLOCK_P, 16]: column e holds [x, y, z, 1][e % 4]."""
    c = (col % 4)[None, :]
    return tl.where(
        c == 0, x[:, None], tl.where(c == 1, y[:, None], tl.where(c == 2, z[:, None], 1.0))
    )


@triton.jit
def _forward_kernel(
    v_ptr, w_ptr, idx_ptr, a_ptr, out_ptr,
    P, J, K, v_sample_stride,
    DENSE: tl.constexpr, BLOCK_P: tl.constexpr, ACC_DTYPE: tl.constexpr,
):  # fmt: skip
    n = tl.program_id(1).to(tl.int64)
    p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    ok = p < P
    col = tl.arange(0, 16)
    col_ok = col < 12
    a_n = a_ptr + n * J * 12
    m = tl.zeros([BLOCK_P, 16], dtype=ACC_DTYPE)
    for k in range(K):
        w = tl.load(w_ptr + p * K + k, mask=ok, other=0.0).to(ACC_DTYPE)
        if DENSE:
            j = tl.zeros([BLOCK_P], dtype=tl.int32) + k
        else:
            j = tl.load(idx_ptr + p * K + k, mask=ok, other=0)
        a = tl.load(
            a_n + j[:, None] * 12 + col[None, :], mask=ok[:, None] & col_ok[None, :], other=0.0
        )
        m += w[:, None] * a
    v = v_ptr + n * v_sample_stride + p * 3
    x = tl.load(v, mask=ok, other=0.0).to(ACC_DTYPE)
    y = tl.load(v + 1, mask=ok, other=0.0).to(ACC_DTYPE)
    z = tl.load(v + 2, mask=ok, other=0.0).to(ACC_DTYPE)
    posed = m * _homogeneous_tile(x, y, z, col)
    row = (col // 4)[None, :]
    out = out_ptr + (n * P + p) * 3
    out_ty = out_ptr.dtype.element_ty
    tl.store(out, tl.sum(tl.where(row == 0, posed, 0.0), axis=1).to(out_ty), mask=ok)
    tl.store(out + 1, tl.sum(tl.where(row == 1, posed, 0.0), axis=1).to(out_ty), mask=ok)
    tl.store(out + 2, tl.sum(tl.where(row == 2, posed, 0.0), axis=1).to(out_ty), mask=ok)


@triton.jit
def _vertex_side_kernel(
    g_ptr, v_ptr, w_ptr, idx_ptr, a_ptr, gw_ptr, gv_ptr,
    N, P, J, K, v_sample_stride, samples_per_split,
    DENSE: tl.constexpr, WANT_W: tl.constexpr, WANT_V: tl.constexpr, SHARED: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_K: tl.constexpr, ACC_DTYPE: tl.constexpr,
):  # fmt: skip
    """Weight gradient partials gw [splits, P, K]; vertex gradients gv [N, P, 3] (per sample,
    in the output dtype) or partials [splits, P, 3] (SHARED)."""
    s = tl.program_id(1)
    p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    k = tl.arange(0, BLOCK_K)
    ok = p < P
    ok2 = ok[:, None] & (k < K)[None, :]
    entry = p[:, None] * K + k[None, :]
    if DENSE:
        j = tl.zeros([BLOCK_P, BLOCK_K], dtype=tl.int32) + k[None, :]
    else:
        j = tl.load(idx_ptr + entry, mask=ok2, other=0)
    w = tl.load(w_ptr + entry, mask=ok2, other=0.0).to(ACC_DTYPE)
    gw = tl.zeros([BLOCK_P, BLOCK_K], dtype=ACC_DTYPE)
    gv0 = tl.zeros([BLOCK_P], dtype=ACC_DTYPE)
    gv1 = tl.zeros([BLOCK_P], dtype=ACC_DTYPE)
    gv2 = tl.zeros([BLOCK_P], dtype=ACC_DTYPE)
    n0 = s * samples_per_split
    n1 = tl.minimum(n0 + samples_per_split, N)
    # Row pointers of sample n0 (int64 offsets), advanced by one sample per iteration.
    first = n0.to(tl.int64)
    gp = g_ptr + first * P * 3 + p * 3
    vp = v_ptr + first * v_sample_stride + p * 3
    a_n = a_ptr + first * J * 12
    gv_n = gv_ptr + first * P * 3 + p * 3
    for _ in range(n0, n1):
        g0 = tl.load(gp, mask=ok, other=0.0).to(ACC_DTYPE)[:, None]
        g1 = tl.load(gp + 1, mask=ok, other=0.0).to(ACC_DTYPE)[:, None]
        g2 = tl.load(gp + 2, mask=ok, other=0.0).to(ACC_DTYPE)[:, None]
        a = a_n + j * 12
        a00 = tl.load(a + 0, mask=ok2, other=0.0)
        a01 = tl.load(a + 1, mask=ok2, other=0.0)
        a02 = tl.load(a + 2, mask=ok2, other=0.0)
        a10 = tl.load(a + 4, mask=ok2, other=0.0)
        a11 = tl.load(a + 5, mask=ok2, other=0.0)
        a12 = tl.load(a + 6, mask=ok2, other=0.0)
        a20 = tl.load(a + 8, mask=ok2, other=0.0)
        a21 = tl.load(a + 9, mask=ok2, other=0.0)
        a22 = tl.load(a + 10, mask=ok2, other=0.0)
        if WANT_W:
            x = tl.load(vp, mask=ok, other=0.0).to(ACC_DTYPE)[:, None]
            y = tl.load(vp + 1, mask=ok, other=0.0).to(ACC_DTYPE)[:, None]
            z = tl.load(vp + 2, mask=ok, other=0.0).to(ACC_DTYPE)[:, None]
            t0 = tl.load(a + 3, mask=ok2, other=0.0)
            t1 = tl.load(a + 7, mask=ok2, other=0.0)
            t2 = tl.load(a + 11, mask=ok2, other=0.0)
            gw += g0 * (a00 * x + a01 * y + a02 * z + t0)
            gw += g1 * (a10 * x + a11 * y + a12 * z + t1)
            gw += g2 * (a20 * x + a21 * y + a22 * z + t2)
        if WANT_V:
            d0 = tl.sum(w * (g0 * a00 + g1 * a10 + g2 * a20), axis=1)
            d1 = tl.sum(w * (g0 * a01 + g1 * a11 + g2 * a21), axis=1)
            d2 = tl.sum(w * (g0 * a02 + g1 * a12 + g2 * a22), axis=1)
            if SHARED:
                gv0 += d0
                gv1 += d1
                gv2 += d2
            else:
                out_ty = gv_ptr.dtype.element_ty
                tl.store(gv_n, d0.to(out_ty), mask=ok)
                tl.store(gv_n + 1, d1.to(out_ty), mask=ok)
                tl.store(gv_n + 2, d2.to(out_ty), mask=ok)
        gp += P * 3
        vp += v_sample_stride
        a_n += J * 12
        gv_n += P * 3
    if WANT_W:
        tl.store(gw_ptr + s.to(tl.int64) * P * K + entry, gw, mask=ok2)
    if WANT_V and SHARED:
        out = gv_ptr + (s.to(tl.int64) * P + p) * 3
        tl.store(out, gv0, mask=ok)
        tl.store(out + 1, gv1, mask=ok)
        tl.store(out + 2, gv2, mask=ok)


@triton.jit
def _joint_side_kernel(
    g_ptr, v_ptr, w_ptr, idx_ptr, part_ptr,
    N, P, J, K, v_sample_stride, vertices_per_split,
    DENSE: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_J: tl.constexpr,
    ACC_DTYPE: tl.constexpr,
):  # fmt: skip
    """Partials [splits, N, J, 12] of dA[n, j, 4 r + c] = sum_p W[p, j] g[n, p, r] [v; 1][c]."""
    n = tl.program_id(0).to(tl.int64)
    j = tl.program_id(1) * BLOCK_J + tl.arange(0, BLOCK_J)
    s = tl.program_id(2)
    j_ok = j < J
    col = tl.arange(0, 16)
    row = (col // 4)[None, :]
    acc = tl.zeros([BLOCK_J, 16], dtype=ACC_DTYPE)
    p0 = s * vertices_per_split
    p1 = tl.minimum(p0 + vertices_per_split, P)
    for start in range(p0, p1, BLOCK_P):
        p = start + tl.arange(0, BLOCK_P)
        ok = p < p1
        gp = g_ptr + (n * P + p) * 3
        g0 = tl.load(gp, mask=ok, other=0.0).to(ACC_DTYPE)
        g1 = tl.load(gp + 1, mask=ok, other=0.0).to(ACC_DTYPE)
        g2 = tl.load(gp + 2, mask=ok, other=0.0).to(ACC_DTYPE)
        vp = v_ptr + n * v_sample_stride + p * 3
        x = tl.load(vp, mask=ok, other=0.0).to(ACC_DTYPE)
        y = tl.load(vp + 1, mask=ok, other=0.0).to(ACC_DTYPE)
        z = tl.load(vp + 2, mask=ok, other=0.0).to(ACC_DTYPE)
        g_tile = tl.where(
            row == 0,
            g0[:, None],
            tl.where(row == 1, g1[:, None], tl.where(row == 2, g2[:, None], 0.0)),
        )
        c = g_tile * _homogeneous_tile(x, y, z, col)
        if DENSE:
            weights = tl.load(
                w_ptr + p[:, None] * J + j[None, :], mask=ok[:, None] & j_ok[None, :], other=0.0
            ).to(ACC_DTYPE)
        else:
            weights = tl.zeros([BLOCK_P, BLOCK_J], dtype=ACC_DTYPE)
            for k in range(K):
                wk = tl.load(w_ptr + p * K + k, mask=ok, other=0.0).to(ACC_DTYPE)
                jk = tl.load(idx_ptr + p * K + k, mask=ok, other=-1)
                weights += tl.where(jk[:, None] == j[None, :], wk[:, None], 0.0)
        acc = tl.dot(tl.trans(weights), c, acc, input_precision="ieee", out_dtype=ACC_DTYPE)
    out = part_ptr + ((s.to(tl.int64) * N + n) * J + j[:, None]) * 12 + col[None, :]
    tl.store(out, acc, mask=j_ok[:, None] & (col < 12)[None, :])


def _splits(parallel_programs: int, length: int, min_per_split: int) -> int:
    """Splits of a reduction of ``length`` items: shapes only, so that the fixed-order sums
    reproduce on every device; under the interpreter (programs run one by one) at most 2, to
    exercise the partial sums."""
    target = 2 * parallel_programs if INTERPRETED else _TARGET_PROGRAMS
    wanted = triton.cdiv(target, max(1, parallel_programs))
    return max(1, min(wanted, triton.cdiv(length, min_per_split)))


def _pack_transforms(rotations: torch.Tensor, translations: torch.Tensor) -> torch.Tensor:
    acc = acc_dtypes(rotations.dtype)[0]
    return torch.cat([rotations.to(acc), translations.to(acc)[..., None]], -1).contiguous()


def _float32_if_bf16(t: torch.Tensor) -> torch.Tensor:
    return t.float() if t.dtype == torch.bfloat16 else t


def linear_blend_skinning_forward(
    vertices: torch.Tensor,
    weights: torch.Tensor,
    weight_indices: torch.Tensor | None,
    rotations: torch.Tensor,
    translations: torch.Tensor,
) -> torch.Tensor:
    """Linear blend skinning, Triton backend (the module docstring has the formula).

    Args:
        vertices: ``[N or 1, P, 3]``; weights ``[P, J]`` (dense) or ``[P, K]`` with
            weight_indices ``[P, K]`` int32/int64 in ``[0, J)`` (not checked here: the operator
            checks them); rotations ``[N, J, 3, 3]``; translations ``[N, J, 3]``. One floating
            dtype, any strides.

    Returns:
        ``[N, P, 3]`` contiguous, in the inputs' dtype.
    """
    if interpreter_lacks(vertices.dtype):
        out = linear_blend_skinning_forward(
            *(_float32_if_bf16(t) for t in (vertices, weights)), weight_indices,
            _float32_if_bf16(rotations), _float32_if_bf16(translations),
        )  # fmt: skip
        return out.to(vertices.dtype)
    n, j = rotations.shape[:2]
    p, k = weights.shape
    out = torch.empty((n, p, 3), dtype=vertices.dtype, device=vertices.device)
    if out.numel() == 0 or k == 0:
        return out.zero_()
    _, acc_tl = acc_dtypes(vertices.dtype)
    vertices = vertices.contiguous()
    dense = weight_indices is None
    weights = weights.contiguous()
    indices = weights if dense else weight_indices.to(torch.int32).contiguous()
    with device_guard(vertices.device):
        _forward_kernel[(triton.cdiv(p, _FORWARD_BLOCK), n)](
            vertices, weights, indices,
            _pack_transforms(rotations, translations), out,
            p, j, k, 0 if vertices.shape[0] != n else p * 3,
            DENSE=dense, BLOCK_P=_FORWARD_BLOCK, ACC_DTYPE=acc_tl,
        )  # fmt: skip
    return out


def linear_blend_skinning_backward(
    grad_out: torch.Tensor,
    vertices: torch.Tensor,
    weights: torch.Tensor,
    weight_indices: torch.Tensor | None,
    rotations: torch.Tensor,
    translations: torch.Tensor,
    output_mask: Sequence[bool],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of :func:`linear_blend_skinning_forward` for (vertices, weights, rotations,
    translations) as ``output_mask`` asks, in the inputs' dtype and shapes (the vertex gradient
    summed over the batch for a shared ``[1, P, 3]`` mesh); one not asked for is an empty
    tensor. ``grad_out`` is ``[N, P, 3]`` in the inputs' dtype, any strides."""
    if len(output_mask) != 4:
        raise ValueError(f"output_mask must have 4 entries; got {len(output_mask)}")
    want_v, want_w, want_r, want_t = (bool(m) for m in output_mask)
    if interpreter_lacks(vertices.dtype):
        grads = linear_blend_skinning_backward(
            *(_float32_if_bf16(t) for t in (grad_out, vertices, weights)), weight_indices,
            _float32_if_bf16(rotations), _float32_if_bf16(translations), output_mask,
        )  # fmt: skip
        return tuple(g.to(vertices.dtype) for g in grads)  # type: ignore[return-value]
    n, j = rotations.shape[:2]
    p, k = weights.shape
    dtype, device = vertices.dtype, vertices.device
    shared = vertices.shape[0] != n
    trivial = n * p * k == 0

    def gradient(wanted: bool, shape: Sequence[int]) -> torch.Tensor:
        # Distinct tensors: outputs of a torch.library custom op must not alias each other.
        if not wanted:
            return torch.empty(0, dtype=dtype, device=device)
        return torch.zeros(shape, dtype=dtype, device=device) if trivial else None  # type: ignore[return-value]

    grad_v = gradient(want_v, vertices.shape)
    grad_w = gradient(want_w, weights.shape)
    grad_r = gradient(want_r, rotations.shape)
    grad_t = gradient(want_t, translations.shape)
    if trivial:
        return grad_v, grad_w, grad_r, grad_t
    acc_torch, acc_tl = acc_dtypes(dtype)
    dense = weight_indices is None
    grad_out, vertices, weights = grad_out.contiguous(), vertices.contiguous(), weights.contiguous()
    indices = weights if dense else weight_indices.to(torch.int32).contiguous()
    transforms = _pack_transforms(rotations, translations)
    v_stride = 0 if shared else p * 3
    with device_guard(device):
        if want_v or want_w:
            block_k = next_pow2(k)
            block_p = max(16, min(128, _MAX_VERTEX_TILE // block_k))
            vertex_blocks = triton.cdiv(p, block_p)
            reduce_v = want_v and shared
            splits = (
                _splits(vertex_blocks, n, _MIN_SAMPLES_PER_SPLIT) if (want_w or reduce_v) else 1
            )
            samples_per_split = triton.cdiv(n, splits)
            # What a kernel does not write is passed as a placeholder (the transforms).
            part_w = transforms
            if want_w:
                part_w = torch.empty((splits, p, k), dtype=acc_torch, device=device)
            out_v = transforms
            if want_v:
                out_v = torch.empty(
                    (splits, p, 3) if shared else (n, p, 3),
                    dtype=acc_torch if shared else dtype,
                    device=device,
                )
            _vertex_side_kernel[(vertex_blocks, splits)](
                grad_out, vertices, weights, indices, transforms, part_w, out_v,
                n, p, j, k, v_stride, samples_per_split,
                DENSE=dense, WANT_W=want_w, WANT_V=want_v, SHARED=shared,
                BLOCK_P=block_p, BLOCK_K=block_k, ACC_DTYPE=acc_tl,
            )  # fmt: skip
            if want_w:
                grad_w = part_w.sum(0).to(dtype)
            if want_v:
                grad_v = out_v.sum(0, keepdim=True).to(dtype) if shared else out_v
        if want_r or want_t:
            block_j = clamp_pow2(j, 16, _MAX_JOINT_TILE)
            joint_tiles = triton.cdiv(j, block_j)
            splits = _splits(n * joint_tiles, p, _JOINT_BLOCK_P)
            vertices_per_split = (
                triton.cdiv(triton.cdiv(p, splits), _JOINT_BLOCK_P) * _JOINT_BLOCK_P
            )
            splits = triton.cdiv(p, vertices_per_split)
            part = torch.empty((splits, n, j, 12), dtype=acc_torch, device=device)
            _joint_side_kernel[(n, joint_tiles, splits)](
                grad_out, vertices, weights, indices, part,
                n, p, j, k, v_stride, vertices_per_split,
                DENSE=dense, BLOCK_P=_JOINT_BLOCK_P, BLOCK_J=block_j, ACC_DTYPE=acc_tl,
            )  # fmt: skip
            grad_transforms = part.sum(0).view(n, j, 3, 4)
            if want_r:
                grad_r = grad_transforms[..., :3].to(dtype).contiguous()
            if want_t:
                grad_t = grad_transforms[..., 3].to(dtype).contiguous()
    return grad_v, grad_w, grad_r, grad_t
