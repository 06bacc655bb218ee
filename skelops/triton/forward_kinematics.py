"""Triton kernels for forward kinematics along a kinematic tree.

Conventions (skelops/reference/forward_kinematics.py is the definition): local_rotations
``L [N, J, 3, 3]``, rest_joints ``r [J, 3]`` (shared) or ``[N, J, 3]``, parents ``[J]`` with
``parents[j] < j`` (``-1``: a root). For j in order, ``q = parents[j]``:
``G_j = G_q L_j``, ``p_j = G_q (r_j - r_q) + p_q`` (root: ``L_j``, ``r_j``),
``t_j = p_j - G_j r_j``.

Kernels (math in float32, float64 for float64 inputs, which only the interpreter runs):

* ``_forward_kernel``: one program per block of ``BLOCK_N`` samples walks the joints in a
  runtime loop; a 3 x 3 matrix is 9 ``[BLOCK_N]`` vectors (one per entry), a point 3. Each
  joint's G and p are stored to float32 (float64) output buffers and the children re-load their
  parent's from there, so rounded half-precision values never feed the chain; the buffers are
  converted to the inputs' dtype at the end (no copy for float32). A ``tl.debug_barrier()``
  after each joint's stores orders them before the next joint's dependent loads.
* ``_backward_kernel``: the same blocks walk the joints in reverse. Each joint's adjoints
  (gG 9, gp 3, gr 3) live in a zeroed ``[J, 15, N]`` workspace (sample fastest: coalesced); a
  joint completes its own (its children, with larger indices, came first), writes ``gL_j``
  and ``gr_j`` (per sample), and adds its contributions to its parent's (a load-add-store by
  the one program that owns the sample: no atomics). A shared rest_joints gradient is the
  per-sample one summed over the batch by ``torch.sum`` (a fixed-order reduction).

Block sizes: 128 samples on 4 warps on a GPU (one sample per thread: the chain has no
parallelism inside a sample); 16 under the interpreter. The sample-major ``[N, J, 3, 3]``
loads and stores are strided by ``J * 9`` between threads; the rows of one sample fill their
cache lines over the joint loop. No GPU was available: the kernels have run under the
interpreter only, never timed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import triton
import triton.language as tl

from ._common import INTERPRETED, acc_dtypes, device_guard

__all__ = ["forward_kinematics_forward", "forward_kinematics_backward"]

_BLOCK_N = 16 if INTERPRETED else 128
_NUM_WARPS = 4
# gG (9), gp (3), gr (3) per joint and sample.
_ADJOINTS = 15


# --------------------------------------------------------------------------------------------
# Kernel helpers: a matrix is a 9-tuple of [BLOCK_N] vectors (row-major), a vector a 3-tuple.
# --------------------------------------------------------------------------------------------


@triton.jit
def _load_vec(ptr, base, stride, mask, ACC_DTYPE: tl.constexpr):
    return (
        tl.load(ptr + base, mask=mask, other=0.0).to(ACC_DTYPE),
        tl.load(ptr + base + stride, mask=mask, other=0.0).to(ACC_DTYPE),
        tl.load(ptr + base + 2 * stride, mask=mask, other=0.0).to(ACC_DTYPE),
    )


@triton.jit
def _load_mat(ptr, base, stride, mask, ACC_DTYPE: tl.constexpr):
    a = _load_vec(ptr, base, stride, mask, ACC_DTYPE)
    b = _load_vec(ptr, base + 3 * stride, stride, mask, ACC_DTYPE)
    c = _load_vec(ptr, base + 6 * stride, stride, mask, ACC_DTYPE)
    return (a[0], a[1], a[2], b[0], b[1], b[2], c[0], c[1], c[2])


@triton.jit
def _store_vec(ptr, base, stride, v, mask):
    tl.store(ptr + base, v[0], mask=mask)
    tl.store(ptr + base + stride, v[1], mask=mask)
    tl.store(ptr + base + 2 * stride, v[2], mask=mask)


@triton.jit
def _store_mat(ptr, base, stride, m, mask):
    _store_vec(ptr, base, stride, (m[0], m[1], m[2]), mask)
    _store_vec(ptr, base + 3 * stride, stride, (m[3], m[4], m[5]), mask)
    _store_vec(ptr, base + 6 * stride, stride, (m[6], m[7], m[8]), mask)


@triton.jit
def _mat_mul(a, b):
    """a b"""
    return (
        a[0] * b[0] + a[1] * b[3] + a[2] * b[6],
        a[0] * b[1] + a[1] * b[4] + a[2] * b[7],
        a[0] * b[2] + a[1] * b[5] + a[2] * b[8],
        a[3] * b[0] + a[4] * b[3] + a[5] * b[6],
        a[3] * b[1] + a[4] * b[4] + a[5] * b[7],
        a[3] * b[2] + a[4] * b[5] + a[5] * b[8],
        a[6] * b[0] + a[7] * b[3] + a[8] * b[6],
        a[6] * b[1] + a[7] * b[4] + a[8] * b[7],
        a[6] * b[2] + a[7] * b[5] + a[8] * b[8],
    )


@triton.jit
def _mat_t_mul(a, b):
    """a^T b"""
    return (
        a[0] * b[0] + a[3] * b[3] + a[6] * b[6],
        a[0] * b[1] + a[3] * b[4] + a[6] * b[7],
        a[0] * b[2] + a[3] * b[5] + a[6] * b[8],
        a[1] * b[0] + a[4] * b[3] + a[7] * b[6],
        a[1] * b[1] + a[4] * b[4] + a[7] * b[7],
        a[1] * b[2] + a[4] * b[5] + a[7] * b[8],
        a[2] * b[0] + a[5] * b[3] + a[8] * b[6],
        a[2] * b[1] + a[5] * b[4] + a[8] * b[7],
        a[2] * b[2] + a[5] * b[5] + a[8] * b[8],
    )


@triton.jit
def _mat_vec(a, x):
    """a x"""
    return (
        a[0] * x[0] + a[1] * x[1] + a[2] * x[2],
        a[3] * x[0] + a[4] * x[1] + a[5] * x[2],
        a[6] * x[0] + a[7] * x[1] + a[8] * x[2],
    )


@triton.jit
def _mat_t_vec(a, x):
    """a^T x"""
    return (
        a[0] * x[0] + a[3] * x[1] + a[6] * x[2],
        a[1] * x[0] + a[4] * x[1] + a[7] * x[2],
        a[2] * x[0] + a[5] * x[1] + a[8] * x[2],
    )


@triton.jit
def _add_outer(m, x, y):
    """m + x y^T"""
    return (
        m[0] + x[0] * y[0], m[1] + x[0] * y[1], m[2] + x[0] * y[2],
        m[3] + x[1] * y[0], m[4] + x[1] * y[1], m[5] + x[1] * y[2],
        m[6] + x[2] * y[0], m[7] + x[2] * y[1], m[8] + x[2] * y[2],
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------------


@triton.jit
def _forward_kernel(
    L_ptr, r_ptr, parents_ptr, G_ptr, p_ptr, t_ptr,
    N, J, rest_stride,
    BLOCK_N: tl.constexpr, ACC_DTYPE: tl.constexpr,
):  # fmt: skip
    n = tl.program_id(0).to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    ok = n < N
    rest = n * rest_stride
    for j in range(0, J):
        q = tl.load(parents_ptr + j)
        has_parent = q >= 0
        qc = tl.maximum(q, 0)
        row = n * J + j
        parent_row = n * J + qc
        on_parent = ok & has_parent
        local = _load_mat(L_ptr, row * 9, 1, ok, ACC_DTYPE)
        r_j = _load_vec(r_ptr, rest + j * 3, 1, ok, ACC_DTYPE)
        # A root reads zeros here; its own values are selected below.
        G_q = _load_mat(G_ptr, parent_row * 9, 1, on_parent, ACC_DTYPE)
        p_q = _load_vec(p_ptr, parent_row * 3, 1, on_parent, ACC_DTYPE)
        r_q = _load_vec(r_ptr, rest + qc * 3, 1, on_parent, ACC_DTYPE)
        chained = _mat_mul(G_q, local)
        moved = _mat_vec(G_q, (r_j[0] - r_q[0], r_j[1] - r_q[1], r_j[2] - r_q[2]))
        G = (
            tl.where(has_parent, chained[0], local[0]),
            tl.where(has_parent, chained[1], local[1]),
            tl.where(has_parent, chained[2], local[2]),
            tl.where(has_parent, chained[3], local[3]),
            tl.where(has_parent, chained[4], local[4]),
            tl.where(has_parent, chained[5], local[5]),
            tl.where(has_parent, chained[6], local[6]),
            tl.where(has_parent, chained[7], local[7]),
            tl.where(has_parent, chained[8], local[8]),
        )
        p = (
            tl.where(has_parent, moved[0] + p_q[0], r_j[0]),
            tl.where(has_parent, moved[1] + p_q[1], r_j[1]),
            tl.where(has_parent, moved[2] + p_q[2], r_j[2]),
        )
        rotated = _mat_vec(G, r_j)
        _store_mat(G_ptr, row * 9, 1, G, ok)
        _store_vec(p_ptr, row * 3, 1, p, ok)
        _store_vec(t_ptr, row * 3, 1, (p[0] - rotated[0], p[1] - rotated[1], p[2] - rotated[2]), ok)
        tl.debug_barrier()


@triton.jit
def _backward_kernel(
    gG_ptr, gp_ptr, gt_ptr, L_ptr, r_ptr, G_ptr, parents_ptr, adj_ptr, gL_ptr, gr_ptr,
    N, J, rest_stride,
    HAS_GG: tl.constexpr, HAS_GP: tl.constexpr, HAS_GT: tl.constexpr,
    WANT_L: tl.constexpr, WANT_REST: tl.constexpr,
    BLOCK_N: tl.constexpr, ACC_DTYPE: tl.constexpr,
):  # fmt: skip
    n = tl.program_id(0).to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    ok = n < N
    rest = n * rest_stride
    for step in range(0, J):
        j = J - 1 - step
        q = tl.load(parents_ptr + j)
        has_parent = q >= 0
        qc = tl.maximum(q, 0)
        on_parent = ok & has_parent
        row = n * J + j
        # The [J, 15, N] adjoints of joint j: gG at entries 0..8, gp 9..11, gr 12..14.
        own = j * 15 * N + n
        gG = _load_mat(adj_ptr, own, N, ok, ACC_DTYPE)
        gp = _load_vec(adj_ptr, own + 9 * N, N, ok, ACC_DTYPE)
        gr = _load_vec(adj_ptr, own + 12 * N, N, ok, ACC_DTYPE)
        if HAS_GG:
            incoming = _load_mat(gG_ptr, row * 9, 1, ok, ACC_DTYPE)
            gG = (
                gG[0] + incoming[0], gG[1] + incoming[1], gG[2] + incoming[2],
                gG[3] + incoming[3], gG[4] + incoming[4], gG[5] + incoming[5],
                gG[6] + incoming[6], gG[7] + incoming[7], gG[8] + incoming[8],
            )  # fmt: skip
        if HAS_GP:
            incoming_p = _load_vec(gp_ptr, row * 3, 1, ok, ACC_DTYPE)
            gp = (gp[0] + incoming_p[0], gp[1] + incoming_p[1], gp[2] + incoming_p[2])
        r_j = _load_vec(r_ptr, rest + j * 3, 1, ok, ACC_DTYPE)
        if HAS_GT:
            # t_j = p_j - G_j r_j: gp += gt, gG -= gt r_j^T, gr -= G_j^T gt.
            gt = _load_vec(gt_ptr, row * 3, 1, ok, ACC_DTYPE)
            G_j = _load_mat(G_ptr, row * 9, 1, ok, ACC_DTYPE)
            back = _mat_t_vec(G_j, gt)
            gp = (gp[0] + gt[0], gp[1] + gt[1], gp[2] + gt[2])
            gG = _add_outer(gG, (-gt[0], -gt[1], -gt[2]), r_j)
            gr = (gr[0] - back[0], gr[1] - back[1], gr[2] - back[2])
        local = _load_mat(L_ptr, row * 9, 1, on_parent, ACC_DTYPE)
        G_q = _load_mat(G_ptr, (n * J + qc) * 9, 1, on_parent, ACC_DTYPE)
        r_q = _load_vec(r_ptr, rest + qc * 3, 1, on_parent, ACC_DTYPE)
        # G_j = G_q L_j (root: L_j); p_j = G_q (r_j - r_q) + p_q (root: r_j).
        chained = _mat_t_mul(G_q, gG)
        gL = (
            tl.where(has_parent, chained[0], gG[0]),
            tl.where(has_parent, chained[1], gG[1]),
            tl.where(has_parent, chained[2], gG[2]),
            tl.where(has_parent, chained[3], gG[3]),
            tl.where(has_parent, chained[4], gG[4]),
            tl.where(has_parent, chained[5], gG[5]),
            tl.where(has_parent, chained[6], gG[6]),
            tl.where(has_parent, chained[7], gG[7]),
            tl.where(has_parent, chained[8], gG[8]),
        )
        d = _mat_t_vec(G_q, gp)
        gr = (
            gr[0] + tl.where(has_parent, d[0], gp[0]),
            gr[1] + tl.where(has_parent, d[1], gp[1]),
            gr[2] + tl.where(has_parent, d[2], gp[2]),
        )
        # The parent's adjoints: gG_q += gG L^T + gp (r_j - r_q)^T, gp_q += gp, gr_q -= d.
        parent = qc * 15 * N + n
        gG_q = _load_mat(adj_ptr, parent, N, on_parent, ACC_DTYPE)
        gp_q = _load_vec(adj_ptr, parent + 9 * N, N, on_parent, ACC_DTYPE)
        gr_q = _load_vec(adj_ptr, parent + 12 * N, N, on_parent, ACC_DTYPE)
        # gG L^T = (L gG^T)^T: entry (i, k) = sum_m gG[i, m] L[k, m].
        gGLt = (
            gG[0] * local[0] + gG[1] * local[1] + gG[2] * local[2],
            gG[0] * local[3] + gG[1] * local[4] + gG[2] * local[5],
            gG[0] * local[6] + gG[1] * local[7] + gG[2] * local[8],
            gG[3] * local[0] + gG[4] * local[1] + gG[5] * local[2],
            gG[3] * local[3] + gG[4] * local[4] + gG[5] * local[5],
            gG[3] * local[6] + gG[4] * local[7] + gG[5] * local[8],
            gG[6] * local[0] + gG[7] * local[1] + gG[8] * local[2],
            gG[6] * local[3] + gG[7] * local[4] + gG[8] * local[5],
            gG[6] * local[6] + gG[7] * local[7] + gG[8] * local[8],
        )
        bone = (r_j[0] - r_q[0], r_j[1] - r_q[1], r_j[2] - r_q[2])
        gG_q = _add_outer(
            (
                gG_q[0] + gGLt[0], gG_q[1] + gGLt[1], gG_q[2] + gGLt[2],
                gG_q[3] + gGLt[3], gG_q[4] + gGLt[4], gG_q[5] + gGLt[5],
                gG_q[6] + gGLt[6], gG_q[7] + gGLt[7], gG_q[8] + gGLt[8],
            ),
            gp, bone,
        )  # fmt: skip
        _store_mat(adj_ptr, parent, N, gG_q, on_parent)
        _store_vec(
            adj_ptr,
            parent + 9 * N,
            N,
            (gp_q[0] + gp[0], gp_q[1] + gp[1], gp_q[2] + gp[2]),
            on_parent,
        )
        _store_vec(
            adj_ptr, parent + 12 * N, N, (gr_q[0] - d[0], gr_q[1] - d[1], gr_q[2] - d[2]), on_parent
        )
        if WANT_L:
            _store_mat(gL_ptr, row * 9, 1, gL, ok)
        if WANT_REST:
            _store_vec(gr_ptr, row * 3, 1, gr, ok)
        tl.debug_barrier()


# --------------------------------------------------------------------------------------------
# Public launchers
# --------------------------------------------------------------------------------------------


def _interpreter_lacks_bf16(dtype: torch.dtype) -> bool:
    """The interpreter (triton <= 3.6) stores bfloat16 as uint16, so bfloat16 runs there in
    float32 (cast copies; the interpreter is a test tool). On a GPU the kernels read bfloat16."""
    return INTERPRETED and dtype == torch.bfloat16


def _parents_tensor(parents: Sequence[int], device: torch.device) -> torch.Tensor:
    return torch.tensor(list(parents), dtype=torch.int32, device=device)


def _rest_stride(rest_joints: torch.Tensor) -> int:
    return 0 if rest_joints.dim() == 2 else rest_joints.shape[1] * 3


def forward_kinematics_forward(
    local_rotations: torch.Tensor, rest_joints: torch.Tensor, parents: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Forward kinematics, Triton backend (the module docstring has the formulas).

    Args:
        local_rotations: ``[N, J, 3, 3]``, any strides; float32, float16 or bfloat16 (under the
            interpreter also float64).
        rest_joints: ``[J, 3]`` (shared) or ``[N, J, 3]``, local_rotations' dtype and device.
        parents: ``J`` ints, ``parents[j]`` in ``[-1, j)`` (not validated here).

    Returns:
        ``(global_rotations [N, J, 3, 3], posed_joints [N, J, 3], global_translations
        [N, J, 3])``, contiguous, in the inputs' dtype.
    """
    dtype = local_rotations.dtype
    if _interpreter_lacks_bf16(dtype):
        outputs = forward_kinematics_forward(local_rotations.float(), rest_joints.float(), parents)
        return tuple(o.to(dtype) for o in outputs)  # type: ignore[return-value]
    n, j = local_rotations.shape[:2]
    acc_torch, acc_tl = acc_dtypes(dtype)
    device = local_rotations.device
    rotations = torch.empty((n, j, 3, 3), dtype=acc_torch, device=device)
    positions = torch.empty((n, j, 3), dtype=acc_torch, device=device)
    translations = torch.empty((n, j, 3), dtype=acc_torch, device=device)
    if n * j > 0:
        local_rotations, rest_joints = local_rotations.contiguous(), rest_joints.contiguous()
        with device_guard(device):
            _forward_kernel[(triton.cdiv(n, _BLOCK_N),)](
                local_rotations, rest_joints, _parents_tensor(parents, device),
                rotations, positions, translations,
                n, j, _rest_stride(rest_joints),
                BLOCK_N=_BLOCK_N, ACC_DTYPE=acc_tl, num_warps=_NUM_WARPS,
            )  # fmt: skip
    return rotations.to(dtype), positions.to(dtype), translations.to(dtype)


def forward_kinematics_backward(
    grad_global_rotations: torch.Tensor | None,
    grad_posed_joints: torch.Tensor | None,
    grad_global_translations: torch.Tensor | None,
    local_rotations: torch.Tensor,
    rest_joints: torch.Tensor,
    parents: Sequence[int],
    global_rotations: torch.Tensor,
    output_mask: Sequence[bool],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of :func:`forward_kinematics_forward` for local_rotations and rest_joints.

    Args:
        grad_global_rotations, grad_posed_joints, grad_global_translations: the outputs'
            gradients (``[N, J, 3, 3]``, ``[N, J, 3]``, ``[N, J, 3]``, any strides and floating
            dtype), each None when absent (zero).
        local_rotations, rest_joints, parents: as in the forward.
        global_rotations: the forward's first output.
        output_mask: two bools selecting (grad_local_rotations, grad_rest_joints).

    Returns:
        ``(grad_local_rotations [N, J, 3, 3], grad_rest_joints)`` contiguous in the inputs'
        dtype, the latter of rest_joints' shape (a shared one's summed over the batch); one not
        asked for is an empty tensor (``torch.empty(0)``).
    """
    if len(output_mask) != 2:
        raise ValueError(f"output_mask must have 2 entries; got {len(output_mask)}")
    want_l, want_rest = (bool(wanted) for wanted in output_mask)
    dtype = local_rotations.dtype
    n, j = local_rotations.shape[:2]
    if global_rotations.shape != local_rotations.shape:
        raise ValueError(
            f"global_rotations must be [N, J, 3, 3] = {list(local_rotations.shape)}; got "
            f"{list(global_rotations.shape)}"
        )
    for name, grad, shape in (
        ("grad_global_rotations", grad_global_rotations, (n, j, 3, 3)),
        ("grad_posed_joints", grad_posed_joints, (n, j, 3)),
        ("grad_global_translations", grad_global_translations, (n, j, 3)),
    ):
        if grad is not None and tuple(grad.shape) != shape:
            raise ValueError(f"{name} must have shape {list(shape)}; got {list(grad.shape)}")
    compute = torch.float32 if _interpreter_lacks_bf16(dtype) else dtype
    acc_torch, acc_tl = acc_dtypes(compute)
    device = local_rotations.device

    def prepared(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t.to(compute).contiguous()

    grad_l = torch.empty((n, j, 3, 3) if want_l else (0,), dtype=acc_torch, device=device)
    grad_rest_samples = torch.zeros(
        (n, j, 3) if want_rest else (0,), dtype=acc_torch, device=device
    )
    if (want_l or want_rest) and n * j > 0:
        grads = [
            prepared(g)
            for g in (grad_global_rotations, grad_posed_joints, grad_global_translations)
        ]
        local, rest, rotations = (
            prepared(t) for t in (local_rotations, rest_joints, global_rotations)
        )
        adjoints = torch.zeros((j, _ADJOINTS, n), dtype=acc_torch, device=device)
        with device_guard(device):
            _backward_kernel[(triton.cdiv(n, _BLOCK_N),)](
                *(local if g is None else g for g in grads),
                local, rest, rotations, _parents_tensor(parents, device), adjoints,
                grad_l if want_l else adjoints, grad_rest_samples if want_rest else adjoints,
                n, j, _rest_stride(rest),
                HAS_GG=grads[0] is not None, HAS_GP=grads[1] is not None,
                HAS_GT=grads[2] is not None, WANT_L=want_l, WANT_REST=want_rest,
                BLOCK_N=_BLOCK_N, ACC_DTYPE=acc_tl, num_warps=_NUM_WARPS,
            )  # fmt: skip
    if want_rest:
        if rest_joints.dim() == 2:
            # A fixed-order reduction over the batch: deterministic.
            grad_rest = grad_rest_samples.sum(dim=0)
        else:
            grad_rest = grad_rest_samples
        grad_rest = grad_rest.to(dtype)
    else:
        grad_rest = torch.empty(0, dtype=dtype, device=device)
    # Distinct tensors: outputs of a torch.library custom op must not alias each other.
    return grad_l.to(dtype), grad_rest
