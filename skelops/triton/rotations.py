"""Triton kernels for axis_angle_to_matrix and dof_rotations (and their backwards).

Conventions (skelops/reference/rotations.py is the definition; the formulas and the backward
walk are those of csrc/rotations/rotations_math.h): axis_angle ``[B, 3]`` -> ``[B, 3, 3]``
with ``R = I + A [a]x + B [a]x^2`` (``A = sin t / t``, ``B = (1 - cos t) / t^2``, Taylor series
in ``t^2`` below ``SERIES_BOUND``); pose ``[N, D]``, axes ``[D, 3]`` used as given,
``joint_begin [J + 1]`` (the DoFs of joint j are ``joint_begin[j] .. joint_begin[j + 1] - 1``)
-> ``[N, J, 3, 3]`` with ``R_j = M_{last} ... M_{first}``.

Kernels (math in float32, float64 for float64 inputs, which only the interpreter runs):

* ``_axis_angle_kernel`` / ``_axis_angle_backward_kernel``: one program per ``BLOCK``
  rotations; each entry of the 3 x 3 matrices is a ``[BLOCK]`` vector in registers.
* ``_dof_kernel``: one program per (block of ``BLOCK`` samples, joint): the joint's DoFs are a
  loop with run-time bounds; per DoF its angle column is loaded, its axis is three scalars.
* ``_dof_backward_kernel``: same grid; walks the joint's DoFs from the last, carrying
  ``H = (M_last ... M_{i+1})^T G`` and recomputing the prefix ``M_{i-1} ... M_first`` per DoF
  (k <= 3 in SKEL). It writes the pose gradient (one writer per element) and the block's sum
  of the axes-gradient contributions (``tl.sum`` over its samples) into ``[blocks, D, 3]``
  partials, summed over the blocks by ``torch.sum`` afterwards: no atomics, deterministic.

All are bound by memory and launch latency (12 values per rotation moved, tens of FLOPs); a
block of 256 rotations on 4 warps is two rotations per thread. No GPU was available: the
kernels have run under the interpreter only, never timed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import triton
import triton.language as tl

from ..reference.rotations import SERIES_BOUND
from ._common import INTERPRETED, acc_dtypes, device_guard, supported_dtypes

__all__ = [
    "axis_angle_to_matrix_forward",
    "axis_angle_to_matrix_backward",
    "dof_rotations_forward",
    "dof_rotations_backward",
]

_BLOCK = 256
_WARPS = 4


@triton.jit
def _poly(t2, c0, c1, c2, c3, c4):
    return c0 + t2 * (c1 + t2 * (c2 + t2 * (c3 + t2 * c4)))


@triton.jit
def _rodrigues(x, y, z, t2, a, b):
    """The 9 entries (row-major) of I + a [v]x + b (v v^T - t2 I) for v = (x, y, z)."""
    c = 1.0 - b * t2
    bxy = b * x * y
    bxz = b * x * z
    byz = b * y * z
    return (
        c + b * x * x, bxy - a * z, bxz + a * y,
        bxy + a * z, c + b * y * y, byz - a * x,
        bxz - a * y, byz + a * x, c + b * z * z,
    )  # fmt: skip


@triton.jit
def _coefficients(t2, SERIES: tl.constexpr):
    """A, B, C = A'/t, D = B'/t of Rodrigues' formula (rotations_math.h)."""
    small = t2 < SERIES
    t2_safe = tl.where(small, 1.0, t2)
    t = tl.sqrt(t2_safe)
    half = tl.sin(0.5 * t)
    a_closed = tl.sin(t) / t
    b_closed = 2.0 * half * half / t2_safe
    c_closed = (tl.cos(t) - a_closed) / t2_safe
    d_closed = (a_closed - 2.0 * b_closed) / t2_safe
    a = tl.where(small, _poly(t2, 1.0, -1.0 / 6, 1.0 / 120, -1.0 / 5040, 1.0 / 362880), a_closed)
    b = tl.where(small, _poly(t2, 0.5, -1.0 / 24, 1.0 / 720, -1.0 / 40320, 1.0 / 3628800), b_closed)
    c = tl.where(
        small, _poly(t2, -1.0 / 3, 1.0 / 30, -1.0 / 840, 1.0 / 45360, -1.0 / 3991680), c_closed
    )
    d = tl.where(
        small, _poly(t2, -1.0 / 12, 1.0 / 180, -1.0 / 6720, 1.0 / 453600, -1.0 / 47900160), d_closed
    )
    return a, b, c, d


@triton.jit
def _gradient_terms(g0, g1, g2, g3, g4, g5, g6, g7, g8, x, y, z):
    """w (the skew part of G), G v + G^T v, tr G and v^T G v for v = (x, y, z)."""
    ga0 = g0 * x + g1 * y + g2 * z
    ga1 = g3 * x + g4 * y + g5 * z
    ga2 = g6 * x + g7 * y + g8 * z
    s0 = ga0 + g0 * x + g3 * y + g6 * z
    s1 = ga1 + g1 * x + g4 * y + g7 * z
    s2 = ga2 + g2 * x + g5 * y + g8 * z
    trace = g0 + g4 + g8
    aga = x * ga0 + y * ga1 + z * ga2
    return g7 - g5, g2 - g6, g3 - g1, s0, s1, s2, trace, aga


@triton.jit
def _dof_matrix(ax, ay, az, q):
    half = tl.sin(0.5 * q)
    return _rodrigues(ax, ay, az, ax * ax + ay * ay + az * az, tl.sin(q), 2.0 * half * half)


@triton.jit
def _matmul(a0, a1, a2, a3, a4, a5, a6, a7, a8, b0, b1, b2, b3, b4, b5, b6, b7, b8):
    """A B (row-major 3 x 3)."""
    return (
        a0 * b0 + a1 * b3 + a2 * b6, a0 * b1 + a1 * b4 + a2 * b7, a0 * b2 + a1 * b5 + a2 * b8,
        a3 * b0 + a4 * b3 + a5 * b6, a3 * b1 + a4 * b4 + a5 * b7, a3 * b2 + a4 * b5 + a5 * b8,
        a6 * b0 + a7 * b3 + a8 * b6, a6 * b1 + a7 * b4 + a8 * b7, a6 * b2 + a7 * b5 + a8 * b8,
    )  # fmt: skip


@triton.jit
def _load_axis(axes_ptr, d, ACC: tl.constexpr):
    return (
        tl.load(axes_ptr + 3 * d).to(ACC),
        tl.load(axes_ptr + 3 * d + 1).to(ACC),
        tl.load(axes_ptr + 3 * d + 2).to(ACC),
    )


@triton.jit
def _prefix(pose_ptr, axes_ptr, rows, ok, sp_n, sp_d, begin, end, BLOCK: tl.constexpr,
            ACC: tl.constexpr):  # fmt: skip
    """M_{end-1} ... M_begin per sample (the identity when end == begin)."""
    one = tl.full([BLOCK], 1.0, ACC)
    zero = tl.zeros([BLOCK], ACC)
    r0, r1, r2, r3, r4, r5, r6, r7, r8 = one, zero, zero, zero, one, zero, zero, zero, one
    for d in range(begin, end):
        ax, ay, az = _load_axis(axes_ptr, d, ACC)
        q = tl.load(pose_ptr + rows * sp_n + d * sp_d, mask=ok, other=0.0).to(ACC)
        m0, m1, m2, m3, m4, m5, m6, m7, m8 = _dof_matrix(ax, ay, az, q)
        r0, r1, r2, r3, r4, r5, r6, r7, r8 = _matmul(
            m0, m1, m2, m3, m4, m5, m6, m7, m8, r0, r1, r2, r3, r4, r5, r6, r7, r8
        )
    return r0, r1, r2, r3, r4, r5, r6, r7, r8


@triton.jit
def _axis_angle_kernel(
    a_ptr, out_ptr, B, sa_b, sa_c,
    SERIES: tl.constexpr, BLOCK: tl.constexpr, ACC: tl.constexpr,
):  # fmt: skip
    rows = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    ok = rows < B
    x = tl.load(a_ptr + rows * sa_b, mask=ok, other=0.0).to(ACC)
    y = tl.load(a_ptr + rows * sa_b + sa_c, mask=ok, other=0.0).to(ACC)
    z = tl.load(a_ptr + rows * sa_b + 2 * sa_c, mask=ok, other=0.0).to(ACC)
    t2 = x * x + y * y + z * z
    a, b, _, _ = _coefficients(t2, SERIES)
    r = _rodrigues(x, y, z, t2, a, b)
    out = out_ptr + rows * 9
    for k in tl.static_range(9):
        tl.store(out + k, r[k].to(out_ptr.dtype.element_ty), mask=ok)


@triton.jit
def _axis_angle_backward_kernel(
    g_ptr, a_ptr, out_ptr, B, sg_b, sg_i, sg_j, sa_b, sa_c,
    SERIES: tl.constexpr, BLOCK: tl.constexpr, ACC: tl.constexpr,
):  # fmt: skip
    rows = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    ok = rows < B
    x = tl.load(a_ptr + rows * sa_b, mask=ok, other=0.0).to(ACC)
    y = tl.load(a_ptr + rows * sa_b + sa_c, mask=ok, other=0.0).to(ACC)
    z = tl.load(a_ptr + rows * sa_b + 2 * sa_c, mask=ok, other=0.0).to(ACC)
    g = g_ptr + rows * sg_b
    g0 = tl.load(g, mask=ok, other=0.0).to(ACC)
    g1 = tl.load(g + sg_j, mask=ok, other=0.0).to(ACC)
    g2 = tl.load(g + 2 * sg_j, mask=ok, other=0.0).to(ACC)
    g3 = tl.load(g + sg_i, mask=ok, other=0.0).to(ACC)
    g4 = tl.load(g + sg_i + sg_j, mask=ok, other=0.0).to(ACC)
    g5 = tl.load(g + sg_i + 2 * sg_j, mask=ok, other=0.0).to(ACC)
    g6 = tl.load(g + 2 * sg_i, mask=ok, other=0.0).to(ACC)
    g7 = tl.load(g + 2 * sg_i + sg_j, mask=ok, other=0.0).to(ACC)
    g8 = tl.load(g + 2 * sg_i + 2 * sg_j, mask=ok, other=0.0).to(ACC)
    t2 = x * x + y * y + z * z
    a, b, c, d = _coefficients(t2, SERIES)
    w0, w1, w2, s0, s1, s2, trace, aga = _gradient_terms(
        g0, g1, g2, g3, g4, g5, g6, g7, g8, x, y, z
    )
    radial = c * (x * w0 + y * w1 + z * w2) + d * (aga - t2 * trace)
    out = out_ptr + rows * 3
    dt = out_ptr.dtype.element_ty
    tl.store(out, (a * w0 + radial * x + b * (s0 - 2.0 * trace * x)).to(dt), mask=ok)
    tl.store(out + 1, (a * w1 + radial * y + b * (s1 - 2.0 * trace * y)).to(dt), mask=ok)
    tl.store(out + 2, (a * w2 + radial * z + b * (s2 - 2.0 * trace * z)).to(dt), mask=ok)


@triton.jit
def _dof_kernel(
    pose_ptr, axes_ptr, begin_ptr, out_ptr, N, J, sp_n, sp_d,
    BLOCK: tl.constexpr, ACC: tl.constexpr,
):  # fmt: skip
    j = tl.program_id(1)
    rows = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    ok = rows < N
    begin = tl.load(begin_ptr + j)
    end = tl.load(begin_ptr + j + 1)
    r = _prefix(pose_ptr, axes_ptr, rows, ok, sp_n, sp_d, begin, end, BLOCK, ACC)
    out = out_ptr + (rows * J + j) * 9
    for k in tl.static_range(9):
        tl.store(out + k, r[k].to(out_ptr.dtype.element_ty), mask=ok)


@triton.jit
def _dof_backward_kernel(
    g_ptr, pose_ptr, axes_ptr, begin_ptr, grad_pose_ptr, partials_ptr,
    N, D, sg_n, sg_j, sg_r, sg_c, sp_n, sp_d,
    WANT_POSE: tl.constexpr, WANT_AXES: tl.constexpr, BLOCK: tl.constexpr, ACC: tl.constexpr,
):  # fmt: skip
    j = tl.program_id(1)
    block = tl.program_id(0)
    rows = block * BLOCK + tl.arange(0, BLOCK)
    ok = rows < N
    begin = tl.load(begin_ptr + j)
    end = tl.load(begin_ptr + j + 1)
    g = g_ptr + rows * sg_n + j * sg_j
    h0 = tl.load(g, mask=ok, other=0.0).to(ACC)
    h1 = tl.load(g + sg_c, mask=ok, other=0.0).to(ACC)
    h2 = tl.load(g + 2 * sg_c, mask=ok, other=0.0).to(ACC)
    h3 = tl.load(g + sg_r, mask=ok, other=0.0).to(ACC)
    h4 = tl.load(g + sg_r + sg_c, mask=ok, other=0.0).to(ACC)
    h5 = tl.load(g + sg_r + 2 * sg_c, mask=ok, other=0.0).to(ACC)
    h6 = tl.load(g + 2 * sg_r, mask=ok, other=0.0).to(ACC)
    h7 = tl.load(g + 2 * sg_r + sg_c, mask=ok, other=0.0).to(ACC)
    h8 = tl.load(g + 2 * sg_r + 2 * sg_c, mask=ok, other=0.0).to(ACC)
    for step in range(0, end - begin):
        i = end - 1 - step
        p0, p1, p2, p3, p4, p5, p6, p7, p8 = _prefix(
            pose_ptr, axes_ptr, rows, ok, sp_n, sp_d, begin, i, BLOCK, ACC
        )
        # dL/dM_i = H P^T
        m0, m1, m2, m3, m4, m5, m6, m7, m8 = _matmul(
            h0, h1, h2, h3, h4, h5, h6, h7, h8, p0, p3, p6, p1, p4, p7, p2, p5, p8
        )
        ax, ay, az = _load_axis(axes_ptr, i, ACC)
        q = tl.load(pose_ptr + rows * sp_n + i * sp_d, mask=ok, other=0.0).to(ACC)
        s = tl.sin(q)
        half = tl.sin(0.5 * q)
        one_minus_cos = 2.0 * half * half
        w0, w1, w2, s0, s1, s2, trace, aga = _gradient_terms(
            m0, m1, m2, m3, m4, m5, m6, m7, m8, ax, ay, az
        )
        if WANT_POSE:
            a2 = ax * ax + ay * ay + az * az
            dq = tl.cos(q) * (ax * w0 + ay * w1 + az * w2) + s * (aga - a2 * trace)
            tl.store(grad_pose_ptr + rows * D + i, dq.to(grad_pose_ptr.dtype.element_ty), mask=ok)
        if WANT_AXES:
            da0 = tl.where(ok, s * w0 + one_minus_cos * (s0 - 2.0 * trace * ax), 0.0)
            da1 = tl.where(ok, s * w1 + one_minus_cos * (s1 - 2.0 * trace * ay), 0.0)
            da2 = tl.where(ok, s * w2 + one_minus_cos * (s2 - 2.0 * trace * az), 0.0)
            dst = partials_ptr + (block * D + i) * 3
            tl.store(dst, tl.sum(da0, axis=0))
            tl.store(dst + 1, tl.sum(da1, axis=0))
            tl.store(dst + 2, tl.sum(da2, axis=0))
        # H <- M_i^T H
        n0, n1, n2, n3, n4, n5, n6, n7, n8 = _rodrigues(
            ax, ay, az, ax * ax + ay * ay + az * az, s, one_minus_cos
        )
        h0, h1, h2, h3, h4, h5, h6, h7, h8 = _matmul(
            n0, n3, n6, n1, n4, n7, n2, n5, n8, h0, h1, h2, h3, h4, h5, h6, h7, h8
        )


# --------------------------------------------------------------------------------------------
# Host side
# --------------------------------------------------------------------------------------------


def _check_device_dtype(x: torch.Tensor, name: str) -> None:
    """What only the Triton kernels require; shapes, dtypes and devices are checked by the
    operators (skelops/ops/rotations.py) before they call the launchers."""
    if x.dtype not in supported_dtypes():
        names = ", ".join(str(d) for d in supported_dtypes())
        raise TypeError(f"{name} must have dtype in ({names}); got {x.dtype}")
    if x.device.type != "cuda" and not INTERPRETED:
        raise ValueError(
            "the Triton rotation kernels need CUDA tensors (or TRITON_INTERPRET=1 set before "
            f"triton is imported); got {name} on {x.device}"
        )


def _interpreter_lacks_bf16(dtype: torch.dtype) -> bool:
    # The interpreter (triton <= 3.6) stores bfloat16 as uint16: bfloat16 runs there through
    # float32 copies (see _common.interpreter_lacks). On a GPU the kernels read and write it.
    return INTERPRETED and dtype == torch.bfloat16


def _joint_begin(dof_joints: Sequence[int], num_joints: int, device: torch.device) -> torch.Tensor:
    counts = torch.bincount(torch.tensor(list(dof_joints), dtype=torch.int64), minlength=num_joints)
    begin = torch.zeros(num_joints + 1, dtype=torch.int64)
    begin[1:] = counts[:num_joints].cumsum(0)
    return begin.to(device, non_blocking=True)


def axis_angle_to_matrix_forward(axis_angle: torch.Tensor) -> torch.Tensor:
    """``[B, 3]`` (any strides) -> ``[B, 3, 3]`` contiguous in axis_angle's dtype."""
    _check_device_dtype(axis_angle, "axis_angle")
    if _interpreter_lacks_bf16(axis_angle.dtype):
        return axis_angle_to_matrix_forward(axis_angle.float()).to(axis_angle.dtype)
    b = axis_angle.shape[0]
    out = torch.empty((b, 3, 3), dtype=axis_angle.dtype, device=axis_angle.device)
    if b == 0:
        return out
    _, acc = acc_dtypes(axis_angle.dtype)
    with device_guard(axis_angle.device):
        _axis_angle_kernel[(triton.cdiv(b, _BLOCK),)](
            axis_angle, out, b, axis_angle.stride(0), axis_angle.stride(1),
            SERIES=SERIES_BOUND, BLOCK=_BLOCK, ACC=acc, num_warps=_WARPS,
        )  # fmt: skip
    return out


def axis_angle_to_matrix_backward(grad: torch.Tensor, axis_angle: torch.Tensor) -> torch.Tensor:
    """``dL/d axis_angle [B, 3]`` (contiguous, axis_angle's dtype) from grad ``[B, 3, 3]`` (any
    strides, axis_angle's dtype)."""
    _check_device_dtype(axis_angle, "axis_angle")
    if _interpreter_lacks_bf16(axis_angle.dtype):
        out = axis_angle_to_matrix_backward(grad.float(), axis_angle.float())
        return out.to(axis_angle.dtype)
    b = axis_angle.shape[0]
    out = torch.empty((b, 3), dtype=axis_angle.dtype, device=axis_angle.device)
    if b == 0:
        return out
    _, acc = acc_dtypes(axis_angle.dtype)
    with device_guard(axis_angle.device):
        _axis_angle_backward_kernel[(triton.cdiv(b, _BLOCK),)](
            grad, axis_angle, out, b, *grad.stride(), *axis_angle.stride(),
            SERIES=SERIES_BOUND, BLOCK=_BLOCK, ACC=acc, num_warps=_WARPS,
        )  # fmt: skip
    return out


def dof_rotations_forward(
    pose: torch.Tensor, axes: torch.Tensor, dof_joints: Sequence[int], num_joints: int
) -> torch.Tensor:
    """``pose [N, D]``, ``axes [D, 3]`` (pose's dtype and device, used as given), ``dof_joints``
    (checked by the operator) -> ``[N, num_joints, 3, 3]`` contiguous in pose's dtype."""
    _check_device_dtype(pose, "pose")
    if _interpreter_lacks_bf16(pose.dtype):
        out = dof_rotations_forward(pose.float(), axes.float(), dof_joints, num_joints)
        return out.to(pose.dtype)
    n = pose.shape[0]
    out = torch.empty((n, num_joints, 3, 3), dtype=pose.dtype, device=pose.device)
    if out.numel() == 0:
        return out
    acc_torch, acc = acc_dtypes(pose.dtype)
    axes_acc = axes.to(acc_torch).contiguous()
    begin = _joint_begin(dof_joints, num_joints, pose.device)
    with device_guard(pose.device):
        _dof_kernel[(triton.cdiv(n, _BLOCK), num_joints)](
            pose, axes_acc, begin, out, n, num_joints, *pose.stride(),
            BLOCK=_BLOCK, ACC=acc, num_warps=_WARPS,
        )  # fmt: skip
    return out


def dof_rotations_backward(
    grad: torch.Tensor,
    pose: torch.Tensor,
    axes: torch.Tensor,
    dof_joints: Sequence[int],
    num_joints: int,
    output_mask: Sequence[bool],
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(grad_pose [N, D], grad_axes [D, 3])`` in pose's dtype from grad ``[N, J, 3, 3]`` (any
    strides); one not asked for by ``output_mask`` is an empty tensor."""
    _check_device_dtype(pose, "pose")
    if len(output_mask) != 2:
        raise ValueError(f"output_mask must have 2 entries; got {len(output_mask)}")
    want_pose, want_axes = (bool(m) for m in output_mask)
    if _interpreter_lacks_bf16(pose.dtype):
        grads = dof_rotations_backward(
            grad.float(), pose.float(), axes.float(), dof_joints, num_joints, output_mask
        )
        return tuple(g.to(pose.dtype) for g in grads)  # type: ignore[return-value]
    n, d = pose.shape
    options = dict(dtype=pose.dtype, device=pose.device)
    # Distinct empties: outputs of a torch.library custom op must not alias each other.
    grad_pose = torch.empty((n, d) if want_pose else (0,), **options)
    acc_torch, acc = acc_dtypes(pose.dtype)
    blocks = triton.cdiv(n, _BLOCK)
    partials = torch.zeros((blocks, d, 3), dtype=acc_torch, device=pose.device)
    if (want_pose or want_axes) and n * d > 0:
        axes_acc = axes.to(acc_torch).contiguous()
        begin = _joint_begin(dof_joints, num_joints, pose.device)
        with device_guard(pose.device):
            _dof_backward_kernel[(blocks, num_joints)](
                grad, pose, axes_acc, begin, grad_pose, partials, n, d,
                *grad.stride(), *pose.stride(),
                WANT_POSE=want_pose, WANT_AXES=want_axes, BLOCK=_BLOCK, ACC=acc,
                num_warps=_WARPS,
            )  # fmt: skip
    grad_axes = partials.sum(0).to(pose.dtype) if want_axes else torch.empty((0,), **options)
    return grad_pose, grad_axes
