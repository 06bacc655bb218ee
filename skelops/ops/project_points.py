"""``skelops.project_points`` (pinhole and weak-perspective camera projection of 3-D points,
differentiable with respect to points, camera and extrinsics) and ``skelops.reprojection_loss``
(the 2-D keypoint loss of SMPLify / HMR-style fitting)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .. import reference
from ._common import (
    check_same,
    check_tensor,
    fake_gradients,
    float32_if_half,
    register_autocast_float32,
    register_python_parts,
    resolve_backend,
    wanted_gradients,
)

__all__ = ["project_points", "reprojection_loss"]

# Camera entries per model.
_MODELS = {"pinhole": 4, "weak_perspective": 3}
_REDUCTIONS = ("mean", "sum", "none")
# Floor of the confidence sum that "mean" divides by (all-zero confidences give a zero loss).
_MEAN_EPS = 1e-8


def project_points(
    points: Tensor,
    camera: Tensor,
    *,
    rotation: Tensor | None = None,
    translation: Tensor | None = None,
    model: str = "pinhole",
    min_depth: float = 1e-6,
    backend: str = "auto",
) -> Tensor:
    """Project 3-D points into the image of a pinhole or weak-perspective camera.

    With camera-frame points ``X_c = R X + t`` (``R = I``, ``t = 0`` when not given):

    * ``model="pinhole"``, camera ``(fx, fy, cx, cy)`` (pixels):
      ``u = fx x_c / z + cx``, ``v = fy y_c / z + cy`` with ``z = max(z_c, min_depth)``.
      Points behind the camera (or closer than ``min_depth``) are pinned to the plane
      ``z = min_depth``: finite values, and no gradient through their depth there (the
      gradients of ``x_c``, ``y_c`` and of the camera still flow).
    * ``model="weak_perspective"``, camera ``(s, tx, ty)``: ``u = s (x_c + tx)``,
      ``v = s (y_c + ty)``: HMR's ``orthographic_projection`` (Kanazawa et al., CVPR 2018);
      ``z_c`` is ignored.

    Gradients flow to points, camera, rotation and translation; the backward is its own
    operator (``torch.ops.skelops.project_points_backward``) whose per-sample sums (camera,
    rotation, translation) have a fixed order: the same bits on every run and thread count.
    A camera or extrinsics given once (``[C]``, ``[3, 3]``, ``[3]``) is broadcast over the batch
    by ``expand``, so its gradient is the sum over the batch.

    Under ``torch.autocast`` the projection runs in float32 (float16 / bfloat16 inputs are cast
    to float32, and the result is float32): a perspective divide in half precision loses the
    sub-pixel precision keypoint losses need (float16 keeps 11 bits: a 0.25-pixel step at
    u = 1000). Outside autocast the math runs in float32 for float16 / bfloat16 inputs (float64
    for float64) and the result has the inputs' dtype.

    Args:
        points: ``[N, *, 3]`` (any middle dimensions, ``P`` points in all), floating point.
        camera: ``[N, C]`` per sample or ``[C]`` shared, ``C = 4`` for ``"pinhole"`` and 3 for
            ``"weak_perspective"``; points' dtype and device.
        rotation: ``[N, 3, 3]`` or ``[3, 3]``, or None (identity).
        translation: ``[N, 3]`` or ``[3]``, or None (zero).
        model: ``"pinhole"`` or ``"weak_perspective"``.
        min_depth: the depth clamp of the pinhole model, finite and ``> 0``.
        backend: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"triton"`` or ``"reference"``.

    Returns:
        ``[N, *, 2]`` image coordinates ``(u, v)``, contiguous.

    Raises:
        TypeError / ValueError: a wrong type, rank, shape, dtype or device, an unknown model,
            a bad ``min_depth`` or an unavailable backend.
    """
    weak = _check_model(model)
    min_depth = _check_min_depth(min_depth)
    if not isinstance(points, Tensor):
        raise TypeError(f"points must be a torch.Tensor [N, *, 3], got {type(points).__name__}")
    autocast = _autocast_enabled(points)
    points, camera, rotation, translation = (
        float32_if_half(t) if autocast else t for t in (points, camera, rotation, translation)
    )
    n, p = _check_points(points)
    camera_size = _MODELS[model]
    camera = _broadcast("camera", camera, (camera_size,), n, points, f"[N, {camera_size}]")
    if rotation is not None:
        rotation = _broadcast("rotation", rotation, (3, 3), n, points, "[N, 3, 3]")
    if translation is not None:
        translation = _broadcast("translation", translation, (3,), n, points, "[N, 3]")
    flat = points.reshape(n, p, 3)
    chosen = resolve_backend("project_points", backend, points.device)
    if chosen == "reference":
        with torch.autocast(points.device.type, enabled=False):
            out = reference.project_points(flat, camera, rotation, translation, weak, min_depth)
    else:
        op = (
            torch.ops.skelops.project_points_triton
            if chosen == "triton"
            else torch.ops.skelops.project_points
        )
        out = op(flat, camera, rotation, translation, weak, min_depth)
    return out.reshape(*points.shape[:-1], 2)


def reprojection_loss(
    projected: Tensor,
    target: Tensor,
    confidence: Tensor | None = None,
    *,
    reduction: str = "mean",
    robust_sigma: float | None = None,
) -> Tensor:
    """Confidence-weighted 2-D keypoint loss between projected points and detections.

    Per point ``r = ||projected - target||^2``, or with ``robust_sigma`` the Geman-McClure
    ``rho(r) = sigma^2 r / (sigma^2 + r)`` (SMPLify's ``GMoF``, which caps an outlier's cost at
    ``sigma^2``); each is weighted by its confidence ``c``:

    * ``"none"``: ``c * rho`` per point, ``[N, *]``;
    * ``"sum"``: ``sum(c * rho)``;
    * ``"mean"``: ``sum(c * rho) / max(sum(c), 1e-8)`` (the confidence-weighted mean; with
      ``confidence=None`` the plain mean over points).

    A point with zero confidence contributes nothing, even if its target is NaN or infinite
    (missing detections): it is masked with ``torch.where`` before any arithmetic, so neither
    the loss nor the gradient of ``projected`` sees its target. The target and the confidences
    are data: the loss is differentiated with respect to ``projected`` only (they are used
    detached). float16 / bfloat16 inputs are computed in float32 (a squared distance of 256
    pixels overflows float16) and give a float32 loss.

    Args:
        projected: ``[N, *, 2]`` predicted image points (e.g. :func:`project_points`).
        target: ``[N, *, 2]``, projected's shape and device, floating point.
        confidence: ``[N, *]`` non-negative weights (projected's leading dimensions and
            device), or None (ones).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        robust_sigma: the Geman-McClure scale in pixels (finite, ``> 0``), or None for the
            squared distance.

    Returns:
        A scalar (``"mean"``, ``"sum"``) or ``[N, *]`` (``"none"``).

    Raises:
        TypeError / ValueError: a wrong type, shape, or device, an unknown reduction or a bad
            ``robust_sigma``.
    """
    if not isinstance(projected, Tensor):
        raise TypeError(
            f"projected must be a torch.Tensor [N, *, 2], got {type(projected).__name__}"
        )
    if projected.dim() < 2 or projected.shape[-1] != 2:
        raise ValueError(
            "projected must be [N, *, 2] (at least 2-D, (u, v) last), got shape "
            f"{tuple(projected.shape)}"
        )
    if not projected.is_floating_point():
        raise TypeError(f"projected must be a floating-point tensor, got dtype {projected.dtype}")
    check_tensor("target", target, (projected.dim(),), f"[N, *, 2] = {list(projected.shape)}")
    _check_device("target", target, projected)
    if target.shape != projected.shape:
        raise ValueError(
            f"target must have projected's shape {list(projected.shape)}, got {list(target.shape)}"
        )
    if confidence is not None:
        leading = list(projected.shape[:-1])
        check_tensor("confidence", confidence, (projected.dim() - 1,), f"[N, *] = {leading}")
        _check_device("confidence", confidence, projected)
        if list(confidence.shape) != leading:
            raise ValueError(
                f"confidence must be [N, *] = {leading} (projected's shape without the last "
                f"dimension), got {list(confidence.shape)}"
            )
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    if robust_sigma is not None and (
        isinstance(robust_sigma, bool)
        or not isinstance(robust_sigma, (int, float))
        or not (math.isfinite(robust_sigma) and robust_sigma > 0)
    ):
        raise ValueError(f"robust_sigma must be None or a finite float > 0, got {robust_sigma!r}")
    dtype = torch.promote_types(projected.dtype, torch.float32)
    diff = projected.to(dtype) - target.detach().to(dtype)
    weights = None
    if confidence is not None:
        weights = confidence.detach().to(dtype)
        # Masked before squaring: the gradient of a NaN target's point is 0, not 0 * NaN.
        diff = torch.where((weights > 0)[..., None], diff, 0.0)
    residual = diff.square().sum(-1)
    if robust_sigma is not None:
        sigma2 = float(robust_sigma) ** 2
        residual = sigma2 * residual / (sigma2 + residual)
    per_point = residual if weights is None else weights * residual
    if reduction == "none":
        return per_point
    total = per_point.sum()
    if reduction == "sum":
        return total
    count = weights.sum() if weights is not None else total.new_tensor(float(per_point.numel()))
    return total / count.clamp_min(_MEAN_EPS)


# --- argument checks -------------------------------------------------------------------------


def _check_model(model: object) -> bool:
    """True for the weak-perspective model."""
    if model not in _MODELS:
        raise ValueError(f"model must be one of {tuple(_MODELS)}, got {model!r}")
    return model == "weak_perspective"


def _check_min_depth(min_depth: object) -> float:
    if isinstance(min_depth, bool) or not isinstance(min_depth, (int, float)):
        raise TypeError(f"min_depth must be a float > 0, got {type(min_depth).__name__}")
    if not (math.isfinite(min_depth) and min_depth > 0):
        raise ValueError(f"min_depth must be finite and > 0, got {min_depth}")
    return float(min_depth)


def _check_device(name: str, value: Tensor, like: Tensor) -> None:
    if value.device != like.device:
        raise ValueError(
            f"{name} must be on the same device as projected ({like.device}), got {value.device}"
        )


def _check_points(points: Tensor) -> tuple[int, int]:
    """``(N, P)`` of points ``[N, *, 3]``."""
    if points.dim() < 2 or points.shape[-1] != 3:
        raise ValueError(
            f"points must be [N, *, 3] (at least 2-D, (x, y, z) last), got shape "
            f"{tuple(points.shape)}"
        )
    if not points.is_floating_point():
        raise TypeError(f"points must be a floating-point tensor, got dtype {points.dtype}")
    return points.shape[0], math.prod(points.shape[1:-1])


def _broadcast(
    name: str, value: object, entry: tuple[int, ...], n: int, points: Tensor, hint: str
) -> Tensor:
    """``value`` (``[N, *entry]`` or ``entry``) checked against points and expanded to
    ``[N, *entry]`` (a view: autograd sums a shared value's gradient over the batch)."""
    shape_hint = f"{hint} or {list(entry)}"
    check_tensor(name, value, (len(entry), len(entry) + 1), shape_hint)
    check_same(name, value, "points", points)
    shape = tuple(value.shape)
    if shape == entry:
        return value.expand(n, *entry)
    if shape != (n, *entry):
        raise ValueError(
            f"{name} must be {hint} = {[n, *entry]} or {list(entry)}, got {list(shape)}"
        )
    return value


def _autocast_enabled(points: Tensor) -> bool:
    return points.device.type in ("cpu", "cuda") and torch.is_autocast_enabled(points.device.type)


def _check_op_arguments(
    points: Tensor,
    camera: Tensor,
    rotation: Tensor | None,
    translation: Tensor | None,
    weak_perspective: bool,
    min_depth: float,
) -> None:
    """What the operators require of their (flattened, broadcast) arguments: the fake kernels
    and the Triton operators check it here, the C++ kernels check the same."""
    check_tensor("points", points, (3,), "[N, P, 3]")
    if points.shape[2] != 3:
        raise ValueError(f"points must be [N, P, 3], got shape {tuple(points.shape)}")
    n = points.shape[0]
    camera_size = 3 if weak_perspective else 4
    for name, value, entry in (
        ("camera", camera, (camera_size,)),
        ("rotation", rotation, (3, 3)),
        ("translation", translation, (3,)),
    ):
        if value is None:
            continue
        check_tensor(name, value, (len(entry) + 1,), f"[N, {', '.join(map(str, entry))}]")
        check_same(name, value, "points", points)
        if tuple(value.shape) != (n, *entry):
            raise ValueError(f"{name} must be {[n, *entry]}, got {list(value.shape)}")
    _check_min_depth(min_depth)


# --- fake kernels, autograd, autocast -----------------------------------------------------------


def _fake_forward(
    points: Tensor,
    camera: Tensor,
    rotation: Tensor | None,
    translation: Tensor | None,
    weak_perspective: bool,
    min_depth: float,
) -> Tensor:
    _check_op_arguments(points, camera, rotation, translation, weak_perspective, min_depth)
    return points.new_empty((points.shape[0], points.shape[1], 2))


def _fake_backward(
    grad: Tensor,
    points: Tensor,
    camera: Tensor,
    rotation: Tensor | None,
    translation: Tensor | None,
    weak_perspective: bool,
    min_depth: float,
    output_mask: list[bool],
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    _check_op_arguments(points, camera, rotation, translation, weak_perspective, min_depth)
    shapes = (
        points.shape,
        camera.shape,
        None if rotation is None else rotation.shape,
        None if translation is None else translation.shape,
    )
    return fake_gradients(points, output_mask, shapes)  # type: ignore[return-value]


def _setup_context(ctx, inputs, output) -> None:
    points, camera, rotation, translation, weak_perspective, min_depth = inputs
    ctx.save_for_backward(points, camera, rotation, translation)
    ctx.weak_perspective, ctx.min_depth = weak_perspective, min_depth
    need = ctx.needs_input_grad
    ctx.output_mask = [
        need[0],
        need[1],
        rotation is not None and need[2],
        translation is not None and need[3],
    ]


def _make_backward(backward_op):
    def backward(ctx, grad):
        points, camera, rotation, translation = ctx.saved_tensors
        grads = backward_op(
            grad.to(points.dtype),
            points,
            camera,
            rotation,
            translation,
            ctx.weak_perspective,
            ctx.min_depth,
            ctx.output_mask,
        )
        return (*wanted_gradients(grads, ctx.output_mask), None, None)

    return backward


def _register(op: str) -> None:
    register_python_parts(
        op, _fake_forward, _fake_backward, _make_backward, _setup_context, register_autocast_float32
    )


_register("project_points")


# --- Triton backend as operators of its own ---------------------------------------------------


@torch.library.custom_op("skelops::project_points_triton", mutates_args=())
def _project_points_triton(
    points: Tensor,
    camera: Tensor,
    rotation: Tensor | None,
    translation: Tensor | None,
    weak_perspective: bool,
    min_depth: float,
) -> Tensor:
    from ..triton.project_points import project_points_forward

    _check_op_arguments(points, camera, rotation, translation, weak_perspective, min_depth)
    return project_points_forward(
        points, camera, rotation, translation, weak_perspective, min_depth
    )


@torch.library.custom_op("skelops::project_points_triton_backward", mutates_args=())
def _project_points_triton_backward(
    grad: Tensor,
    points: Tensor,
    camera: Tensor,
    rotation: Tensor | None,
    translation: Tensor | None,
    weak_perspective: bool,
    min_depth: float,
    output_mask: list[bool],
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    from ..triton.project_points import project_points_backward

    _check_op_arguments(points, camera, rotation, translation, weak_perspective, min_depth)
    return project_points_backward(
        grad, points, camera, rotation, translation, weak_perspective, min_depth, output_mask
    )


_register("project_points_triton")
