"""Triton kernels for camera projection (skelops.project_points).

Conventions (skelops/reference/project_points.py is the definition): points ``[N, P, 3]``,
camera ``[N, 4]`` pinhole ``(fx, fy, cx, cy)`` or ``[N, 3]`` weak perspective ``(s, tx, ty)``,
optional rotation ``[N, 3, 3]`` and translation ``[N, 3]`` (``X_c = R X + t``), output
``[N, P, 2]``. Pinhole: ``z = max(z_c, min_depth)``, ``(fx x_c / z + cx, fy y_c / z + cy)``,
no depth gradient where ``z_c < min_depth``; weak perspective: ``s (x_c + tx, y_c + ty)``.

Kernels (math in float32, float64 for float64 inputs, which only the interpreter runs), every
tensor read with its strides (a broadcast camera or extrinsics is a stride-0 view, never
copied):

* ``_forward_kernel``: one program per (sample, block of ``BLOCK`` points): the sample's
  parameters are scalars, the points a vector; one coalesced store of the block's ``(u, v)``.
* ``_backward_kernel``: the same programs; each writes its points' gradients and, when the
  camera, rotation or translation gradient is asked for, its block's 16 sums (``tl.sum``: a
  fixed tree) into partials ``[N, blocks, 16]`` (camera 4, rotation 9 row-major, translation
  3); the launcher adds each sample's blocks with ``torch.sum`` (a deterministic reduction).

No atomics: repeated runs are bitwise equal. ``BLOCK`` is the next power of two of P between 16
and 1024 (4 warps at 1024: 8 points per thread); bandwidth-bound, not tuned: no GPU was
available, the kernels have run under the interpreter only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import triton
import triton.language as tl

from ._common import INTERPRETED, acc_dtypes, clamp_pow2, device_guard, supported_dtypes

__all__ = ["project_points_forward", "project_points_backward"]

_MAX_BLOCK = 1024
_SLOTS = 16  # per-sample sums: camera [0, 4), rotation [4, 13), translation [13, 16)


# --------------------------------------------------------------------------------------------
# Kernel helpers
# --------------------------------------------------------------------------------------------


@triton.jit
def _rotation(rot_ptr, n, s_n, s_i, s_j, ACC: tl.constexpr):
    """R[n] row-major, as 9 scalars."""
    base = rot_ptr + n * s_n
    r00 = tl.load(base).to(ACC)
    r01 = tl.load(base + s_j).to(ACC)
    r02 = tl.load(base + 2 * s_j).to(ACC)
    r10 = tl.load(base + s_i).to(ACC)
    r11 = tl.load(base + s_i + s_j).to(ACC)
    r12 = tl.load(base + s_i + 2 * s_j).to(ACC)
    r20 = tl.load(base + 2 * s_i).to(ACC)
    r21 = tl.load(base + 2 * s_i + s_j).to(ACC)
    r22 = tl.load(base + 2 * s_i + 2 * s_j).to(ACC)
    return r00, r01, r02, r10, r11, r12, r20, r21, r22


@triton.jit
def _load_points(points_ptr, n, i, ok, s_n, s_p, s_c, ACC: tl.constexpr):
    base = points_ptr + n * s_n + i * s_p
    x = tl.load(base, mask=ok, other=0.0).to(ACC)
    y = tl.load(base + s_c, mask=ok, other=0.0).to(ACC)
    # Masked lanes get depth 1: finite values that are never stored (no overflow on the cast).
    z = tl.load(base + 2 * s_c, mask=ok, other=1.0).to(ACC)
    return x, y, z


@triton.jit
def _to_camera(
    x, y, z, rot_ptr, trans_ptr, n,
    sr_n, sr_i, sr_j, st_n, st_i,
    HAS_ROTATION: tl.constexpr, HAS_TRANSLATION: tl.constexpr, ACC: tl.constexpr,
):  # fmt: skip
    """X_c = R X + t (R = I, t = 0 when absent)."""
    if HAS_ROTATION:
        r00, r01, r02, r10, r11, r12, r20, r21, r22 = _rotation(rot_ptr, n, sr_n, sr_i, sr_j, ACC)
        xc = r00 * x + r01 * y + r02 * z
        yc = r10 * x + r11 * y + r12 * z
        zc = r20 * x + r21 * y + r22 * z
    else:
        xc, yc, zc = x, y, z
    if HAS_TRANSLATION:
        t = trans_ptr + n * st_n
        xc += tl.load(t).to(ACC)
        yc += tl.load(t + st_i).to(ACC)
        zc += tl.load(t + 2 * st_i).to(ACC)
    return xc, yc, zc


@triton.jit
def _forward_kernel(
    points_ptr, cam_ptr, rot_ptr, trans_ptr, depth_ptr, out_ptr,
    P, num_blocks,
    sp_n, sp_p, sp_c, sc_n, sc_c, sr_n, sr_i, sr_j, st_n, st_i,
    WEAK: tl.constexpr, HAS_ROTATION: tl.constexpr, HAS_TRANSLATION: tl.constexpr,
    BLOCK: tl.constexpr, ACC: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0)
    n = (pid // num_blocks).to(tl.int64)
    i = (pid % num_blocks) * BLOCK + tl.arange(0, BLOCK)
    ok = i < P
    x, y, z = _load_points(points_ptr, n, i, ok, sp_n, sp_p, sp_c, ACC)
    xc, yc, zc = _to_camera(
        x, y, z, rot_ptr, trans_ptr, n, sr_n, sr_i, sr_j, st_n, st_i,
        HAS_ROTATION, HAS_TRANSLATION, ACC,
    )  # fmt: skip
    cam = cam_ptr + n * sc_n
    if WEAK:
        scale = tl.load(cam).to(ACC)
        u = scale * (xc + tl.load(cam + sc_c).to(ACC))
        v = scale * (yc + tl.load(cam + 2 * sc_c).to(ACC))
    else:
        min_depth = tl.load(depth_ptr)
        inv = 1.0 / tl.where(zc < min_depth, min_depth, zc)  # NaN stays NaN, as torch.clamp
        u = tl.load(cam).to(ACC) * (xc * inv) + tl.load(cam + 2 * sc_c).to(ACC)
        v = tl.load(cam + sc_c).to(ACC) * (yc * inv) + tl.load(cam + 3 * sc_c).to(ACC)
    out = out_ptr + (n * P + i) * 2
    out_ty = out_ptr.dtype.element_ty
    tl.store(out, u.to(out_ty), mask=ok)
    tl.store(out + 1, v.to(out_ty), mask=ok)


@triton.jit
def _backward_kernel(
    grad_ptr, points_ptr, cam_ptr, rot_ptr, trans_ptr, depth_ptr, grad_points_ptr, part_ptr,
    P, num_blocks,
    sg_n, sg_p, sg_c, sp_n, sp_p, sp_c, sc_n, sc_c, sr_n, sr_i, sr_j, st_n, st_i,
    WEAK: tl.constexpr, HAS_ROTATION: tl.constexpr, HAS_TRANSLATION: tl.constexpr,
    WANT_POINTS: tl.constexpr, WANT_SUMS: tl.constexpr, BLOCK: tl.constexpr, ACC: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0)
    n = (pid // num_blocks).to(tl.int64)
    i = (pid % num_blocks) * BLOCK + tl.arange(0, BLOCK)
    ok = i < P
    x, y, z = _load_points(points_ptr, n, i, ok, sp_n, sp_p, sp_c, ACC)
    g = grad_ptr + n * sg_n + i * sg_p
    gu = tl.load(g, mask=ok, other=0.0).to(ACC)  # masked points: zero gradient, zero terms
    gv = tl.load(g + sg_c, mask=ok, other=0.0).to(ACC)
    xc, yc, zc = _to_camera(
        x, y, z, rot_ptr, trans_ptr, n, sr_n, sr_i, sr_j, st_n, st_i,
        HAS_ROTATION, HAS_TRANSLATION, ACC,
    )  # fmt: skip
    cam = cam_ptr + n * sc_n
    if WEAK:
        scale = tl.load(cam).to(ACC)
        dxc = gu * scale
        dyc = gv * scale
        dzc = tl.zeros_like(dxc)
        dk0 = gu * (xc + tl.load(cam + sc_c).to(ACC)) + gv * (yc + tl.load(cam + 2 * sc_c).to(ACC))
        dk1 = dxc
        dk2 = dyc
        dk3 = tl.zeros_like(dxc)
    else:
        min_depth = tl.load(depth_ptr)
        inv = 1.0 / tl.where(zc < min_depth, min_depth, zc)
        xn = xc * inv
        yn = yc * inv
        dxc = gu * tl.load(cam).to(ACC) * inv
        dyc = gv * tl.load(cam + sc_c).to(ACC) * inv
        # The clamp passes the depth gradient iff z_c >= min_depth (torch.clamp's rule).
        dzc = tl.where(zc >= min_depth, -(dxc * xn + dyc * yn), 0.0)
        dk0 = gu * xn
        dk1 = gv * yn
        dk2 = gu
        dk3 = gv
    if HAS_ROTATION:
        r00, r01, r02, r10, r11, r12, r20, r21, r22 = _rotation(rot_ptr, n, sr_n, sr_i, sr_j, ACC)
        dx = r00 * dxc + r10 * dyc + r20 * dzc
        dy = r01 * dxc + r11 * dyc + r21 * dzc
        dz = r02 * dxc + r12 * dyc + r22 * dzc
    else:
        dx, dy, dz = dxc, dyc, dzc
    if WANT_POINTS:
        gp = grad_points_ptr + (n * P + i) * 3
        gp_ty = grad_points_ptr.dtype.element_ty
        tl.store(gp, dx.to(gp_ty), mask=ok)
        tl.store(gp + 1, dy.to(gp_ty), mask=ok)
        tl.store(gp + 2, dz.to(gp_ty), mask=ok)
    if WANT_SUMS:
        part = part_ptr + pid.to(tl.int64) * 16
        tl.store(part + 0, tl.sum(dk0, axis=0))
        tl.store(part + 1, tl.sum(dk1, axis=0))
        tl.store(part + 2, tl.sum(dk2, axis=0))
        tl.store(part + 3, tl.sum(dk3, axis=0))
        tl.store(part + 4, tl.sum(dxc * x, axis=0))
        tl.store(part + 5, tl.sum(dxc * y, axis=0))
        tl.store(part + 6, tl.sum(dxc * z, axis=0))
        tl.store(part + 7, tl.sum(dyc * x, axis=0))
        tl.store(part + 8, tl.sum(dyc * y, axis=0))
        tl.store(part + 9, tl.sum(dyc * z, axis=0))
        tl.store(part + 10, tl.sum(dzc * x, axis=0))
        tl.store(part + 11, tl.sum(dzc * y, axis=0))
        tl.store(part + 12, tl.sum(dzc * z, axis=0))
        tl.store(part + 13, tl.sum(dxc, axis=0))
        tl.store(part + 14, tl.sum(dyc, axis=0))
        tl.store(part + 15, tl.sum(dzc, axis=0))


# --------------------------------------------------------------------------------------------
# Launch helpers
# --------------------------------------------------------------------------------------------


def _check_inputs(points: torch.Tensor) -> None:
    """What only the Triton kernels require; shapes, dtypes and devices are checked by the
    operators (skelops/ops/project_points.py) before they call the launchers."""
    if points.dtype not in supported_dtypes():
        names = ", ".join(str(d) for d in supported_dtypes())
        raise TypeError(f"points must have dtype in ({names}); got {points.dtype}")
    if points.device.type != "cuda" and not INTERPRETED:
        raise ValueError(
            "the Triton project_points kernels need CUDA tensors (or TRITON_INTERPRET=1 set "
            f"before triton is imported); got points on {points.device}"
        )


def _interpreter_lacks_bf16(dtype: torch.dtype) -> bool:
    # The interpreter (triton <= 3.6) stores bfloat16 as uint16: bfloat16 runs there through
    # float32 copies (see _common.interpreter_lacks). On a GPU the kernels read and write it.
    return INTERPRETED and dtype == torch.bfloat16


def _float32(*tensors: torch.Tensor | None) -> list[torch.Tensor | None]:
    return [None if t is None else t.float() for t in tensors]


def _layout(P: int) -> tuple[int, int, int]:
    """(BLOCK, blocks per sample, num_warps)."""
    block = clamp_pow2(P, 16, _MAX_BLOCK)
    return block, triton.cdiv(P, block), max(1, min(4, block // 256))


def _strides(t: torch.Tensor | None, rank: int) -> tuple[int, ...]:
    return tuple(t.stride()) if t is not None else (0,) * rank


def _min_depth(min_depth: float, points: torch.Tensor) -> torch.Tensor:
    # A tensor in the math dtype: a scalar argument would be rounded to float32.
    return torch.full((1,), min_depth, dtype=acc_dtypes(points.dtype)[0], device=points.device)


# --------------------------------------------------------------------------------------------
# Public launchers
# --------------------------------------------------------------------------------------------


def project_points_forward(
    points: torch.Tensor,
    camera: torch.Tensor,
    rotation: torch.Tensor | None,
    translation: torch.Tensor | None,
    weak_perspective: bool,
    min_depth: float,
) -> torch.Tensor:
    """Projected points ``[N, P, 2]`` (contiguous, points' dtype), Triton backend (the module
    docstring has the formulas).

    Args:
        points: ``[N, P, 3]``, any strides; float32, float16 or bfloat16 (under the interpreter
            also float64).
        camera: ``[N, 4]`` (pinhole) or ``[N, 3]`` (weak perspective), points' dtype.
        rotation: ``[N, 3, 3]`` or None; translation: ``[N, 3]`` or None.
        weak_perspective: the camera model.
        min_depth: the pinhole depth clamp, ``> 0``.
    """
    _check_inputs(points)
    if _interpreter_lacks_bf16(points.dtype):
        out = project_points_forward(
            *_float32(points, camera, rotation, translation), weak_perspective, min_depth
        )
        return out.to(points.dtype)
    n, p, _ = points.shape
    out = torch.empty((n, p, 2), dtype=points.dtype, device=points.device)
    if out.numel() == 0:
        return out
    block, num_blocks, num_warps = _layout(p)
    with device_guard(points.device):
        _forward_kernel[(n * num_blocks,)](
            points, camera, points if rotation is None else rotation,
            points if translation is None else translation, _min_depth(min_depth, points), out,
            p, num_blocks,
            *points.stride(), *camera.stride(), *_strides(rotation, 3), *_strides(translation, 2),
            WEAK=bool(weak_perspective), HAS_ROTATION=rotation is not None,
            HAS_TRANSLATION=translation is not None, BLOCK=block,
            ACC=acc_dtypes(points.dtype)[1], num_warps=num_warps,
        )  # fmt: skip
    return out


def project_points_backward(
    grad: torch.Tensor,
    points: torch.Tensor,
    camera: torch.Tensor,
    rotation: torch.Tensor | None,
    translation: torch.Tensor | None,
    weak_perspective: bool,
    min_depth: float,
    output_mask: Sequence[bool],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of :func:`project_points_forward` for points, camera, rotation, translation.

    Args:
        grad: ``[N, P, 2]``, any strides, points' dtype.
        points, camera, rotation, translation, weak_perspective, min_depth: as in the forward.
        output_mask: four bools selecting the gradients.

    Returns:
        ``(grad_points [N, P, 3], grad_camera [N, C], grad_rotation [N, 3, 3],
        grad_translation [N, 3])``, contiguous, in points' dtype; one not asked for, or of an
        absent rotation / translation, is an empty tensor.
    """
    _check_inputs(points)
    if len(output_mask) != 4:
        raise ValueError(f"output_mask must have 4 entries; got {len(output_mask)}")
    n, p, _ = points.shape
    if tuple(grad.shape) != (n, p, 2):
        raise ValueError(f"grad must be [N, P, 2] = {[n, p, 2]}; got shape {tuple(grad.shape)}")
    if grad.dtype != points.dtype or grad.device != points.device:
        raise ValueError(
            f"grad must have points' dtype and device ({points.dtype} on {points.device}); got "
            f"{grad.dtype} on {grad.device}"
        )
    if _interpreter_lacks_bf16(points.dtype):
        grads = project_points_backward(
            *_float32(grad, points, camera, rotation, translation), weak_perspective, min_depth,
            output_mask,
        )  # fmt: skip
        return tuple(g.to(points.dtype) for g in grads)  # type: ignore[return-value]
    want_points, want_camera = bool(output_mask[0]), bool(output_mask[1])
    want_rotation = bool(output_mask[2]) and rotation is not None
    want_translation = bool(output_mask[3]) and translation is not None
    want_sums = want_camera or want_rotation or want_translation
    options = dict(dtype=points.dtype, device=points.device)
    # Distinct empties: outputs of a torch.library custom op must not alias each other.
    grad_points = torch.empty((n, p, 3) if want_points else (0,), **options)
    sums = torch.zeros((n, _SLOTS), dtype=acc_dtypes(points.dtype)[0], device=points.device)
    if n * p > 0 and (want_points or want_sums):
        block, num_blocks, num_warps = _layout(p)
        partials = torch.empty(
            (n, num_blocks, _SLOTS) if want_sums else (0,), dtype=sums.dtype, device=points.device
        )
        with device_guard(points.device):
            _backward_kernel[(n * num_blocks,)](
                grad, points, camera, points if rotation is None else rotation,
                points if translation is None else translation, _min_depth(min_depth, points),
                grad_points if want_points else points, partials if want_sums else sums,
                p, num_blocks,
                *grad.stride(), *points.stride(), *camera.stride(), *_strides(rotation, 3),
                *_strides(translation, 2),
                WEAK=bool(weak_perspective), HAS_ROTATION=rotation is not None,
                HAS_TRANSLATION=translation is not None, WANT_POINTS=want_points,
                WANT_SUMS=want_sums, BLOCK=block, ACC=acc_dtypes(points.dtype)[1],
                num_warps=num_warps,
            )  # fmt: skip
        if want_sums:
            sums = partials.sum(dim=1)
    camera_size = camera.shape[1]

    def finish(wanted: bool, first: int, shape: tuple[int, ...]) -> torch.Tensor:
        if not wanted:
            return torch.empty((0,), **options)
        size = math.prod(shape)
        return sums[:, first : first + size].to(points.dtype, copy=True).reshape(n, *shape)

    return (
        grad_points,
        finish(want_camera, 0, (camera_size,)),
        finish(want_rotation, 4, (3, 3)),
        finish(want_translation, 13, (3,)),
    )
