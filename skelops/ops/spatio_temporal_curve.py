"""``skelops.spatio_temporal_curve``: features aggregated along greedy spatio-temporal curves
(STC-Net's STC module), without materialising the frame-to-frame affinities."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .. import reference
from ..reference.spatio_temporal_curve import curve_scale
from ._common import (
    check_dim,
    check_same,
    check_tensor,
    fake_gradients,
    register_python_parts,
    resolve_backend,
    stats_dtype,
    wanted_gradients,
)

__all__ = ["spatio_temporal_curve"]


def spatio_temporal_curve(
    x: Tensor,
    length: int,
    key: Tensor | None = None,
    candidates: Tensor | None = None,
    scale: float | None = None,
    backend: str = "auto",
) -> Tensor:
    """Aggregate each node's features along a greedy curve through the following frames.

    For node ``v`` at frame ``t`` the curve scores every candidate ``w`` of frame ``t + 1`` by
    ``s_t(v, w) = scale * <key[n, :, t, v], key[n, :, t + 1, w]>``, steps to the best one
    (lowest index on ties), and repeats ``length`` times (fewer near the end of the clip).
    Each step is weighted by the softmax probability of the connection it takes (over the
    candidates), multiplied along the curve (the greedy path's probability):

    .. math::
        y[n, c, t, v] = \\sum_{i=0}^{\\min(L, T-1-t)} \\pi_i\\, x[n, c, t + i, p_i],\\quad
        \\pi_0 = 1,\\ \\pi_i = \\pi_{i-1} P_{t+i-1}(p_{i-1} \\to p_i)

    The path is not differentiable (an argmax); the weights are, so gradients reach x (through
    the features met) and key (through the scores of every candidate on the path). The kernels
    never write the ``[N, T - 1, V, V]`` affinities: they keep, per (sample, frame, joint), the
    chosen next joint and two log-probabilities for the backward.

    Args:
        x: ``[N, C, T, V]`` features (batch, channels, frames, joints); ``T >= 2``.
        length: steps along each curve, ``>= 1``.
        key: ``[N, D, T, V]`` embedding that scores connections (x's dtype and device); ``x``
            when ``None``.
        candidates: ``[V, V]`` bool: ``candidates[v, w]`` lets joint ``w`` of the next frame
            follow joint ``v`` (e.g. joints within a hop radius,
            ``skelops.graphs.hop_distance(layout) <= r``); each row needs a True. ``None``: all.
        scale: affinity scale, ``1 / sqrt(D)`` when ``None``.
        backend: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"triton"`` or ``"reference"``.

    Returns:
        ``[N, C, T, V]``, contiguous, in x's dtype.

    The compiled and Triton backends run ``torch.ops.skelops.spatio_temporal_curve`` (or
    ``..._triton``), whose other outputs are the per-transition statistics the backward reuses:
    ``next_joint [N, T - 1, V]`` int32 and ``log_prob``, ``log_normalizer [N, T - 1, V]`` in the
    accumulation dtype (float32; float64 for float64 inputs); they are not differentiable.
    Under ``torch.autocast`` the kernels run in the autocast dtype and accumulate in fp32.
    The CUDA kernels take up to 1024 joints, the Triton ones 128. On the compiled backends a NaN
    score makes its row's argmax the first NaN (as ``torch.argmax``) and the curves through it
    NaN.

    Raises:
        TypeError / ValueError: on a wrong rank, shape, dtype or device, ``length < 1``,
            ``T < 2``, a non-finite scale, a candidate row with no True, or an unavailable
            backend.
    """
    key = x if key is None else key
    _check_arguments(x, key, candidates, length, check_values=False)
    s = curve_scale(key.shape[1], scale)
    if not math.isfinite(s):
        raise ValueError(f"scale must be finite, got {s}")
    chosen = resolve_backend("spatio_temporal_curve", backend, x.device)
    # On a GPU the CUDA glue checks the candidate rows once per tensor version and the Triton op
    # checks them itself: checking here too would synchronise the device on every call.
    if candidates is not None and (x.device.type != "cuda" or chosen == "reference"):
        _check_candidate_rows(candidates)
    if chosen == "reference":
        return reference.spatio_temporal_curve(x, length, key, candidates, s)
    op = (
        torch.ops.skelops.spatio_temporal_curve_triton
        if chosen == "triton"
        else torch.ops.skelops.spatio_temporal_curve
    )
    return op(x, key, candidates, length, s)[0]


def check_length(length: object) -> int:
    """``length`` as a curve length: an int ``>= 1`` (TypeError / ValueError otherwise)."""
    if isinstance(length, bool) or not isinstance(length, int):
        raise TypeError(f"length must be an int >= 1, got {type(length).__name__} ({length!r})")
    if length < 1:
        raise ValueError(f"length must be >= 1 (steps along each curve), got {length}")
    return length


def _check_arguments(
    x: Tensor, key: Tensor, candidates: Tensor | None, length: int, check_values: bool = True
) -> None:
    """Ranks, shapes, dtypes, devices and ``length``; with ``check_values`` (not for fake
    tensors, nor while compiling) also that every candidate row has a True."""
    check_length(length)
    check_tensor("x", x, (4,), "[N, C, T, V]")
    check_tensor("key", key, (4,), "[N, D, T, V]")
    check_same("key", key, "x", x)
    n, c, t, v = x.shape
    if x.numel() == 0:
        raise ValueError(f"x must be non-empty [N, C, T, V], got shape {tuple(x.shape)}")
    if t < 2:
        raise ValueError(f"x must have T >= 2 frames (curves link adjacent frames), got T={t}")
    check_dim("key.shape[0]", key.shape[0], n, "N, x.shape[0]")
    if key.shape[1] == 0:
        raise ValueError(f"key must have D >= 1 channels, got shape {tuple(key.shape)}")
    check_dim("key.shape[2]", key.shape[2], t, "T, x.shape[2]")
    check_dim("key.shape[3]", key.shape[3], v, "V, x.shape[3]")
    if candidates is not None:
        check_tensor("candidates", candidates, (2,), "[V, V] bool", floating=False)
        if candidates.dtype != torch.bool:
            raise TypeError(f"candidates must be a bool tensor, got dtype {candidates.dtype}")
        if candidates.device != x.device:
            raise ValueError(
                f"candidates must be on x's device ({x.device}), got {candidates.device}"
            )
        if tuple(candidates.shape) != (v, v):
            raise ValueError(f"candidates must be [V, V]=[{v}, {v}], got {tuple(candidates.shape)}")
        if check_values:
            _check_candidate_rows(candidates)


def _check_candidate_rows(candidates: Tensor) -> None:
    """Every joint needs a candidate (not checked while compiling: it reads the values)."""
    if not torch.compiler.is_compiling() and not bool(candidates.any(1).all()):
        empty = (~candidates.any(1)).nonzero().flatten().tolist()
        raise ValueError(f"candidates must give every joint a candidate; rows {empty} are empty")


# --- fake kernels (shapes for torch.compile / meta tensors) -----------------------------------


def _fake_forward(
    x: Tensor, key: Tensor, candidates: Tensor | None, length: int, scale: float
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    _check_arguments(x, key, candidates, length, check_values=False)
    n, _, t, v = x.shape
    transitions = (n, t - 1, v)
    stats = stats_dtype(x.dtype)
    return (
        x.new_empty(x.shape),
        x.new_empty(transitions, dtype=torch.int32),
        x.new_empty(transitions, dtype=stats),
        x.new_empty(transitions, dtype=stats),
    )


def _fake_backward(
    grad_out: Tensor,
    x: Tensor,
    key: Tensor,
    candidates: Tensor | None,
    next_joint: Tensor,
    log_prob: Tensor,
    log_normalizer: Tensor,
    length: int,
    scale: float,
    output_mask: list[bool],
) -> tuple[Tensor, Tensor]:
    _check_arguments(x, key, candidates, length, check_values=False)
    return fake_gradients(x, output_mask, (x.shape, key.shape))  # type: ignore[return-value]


# --- autograd --------------------------------------------------------------------------------


def _setup_context(ctx, inputs, output) -> None:
    x, key, candidates, length, scale = inputs
    _, next_joint, log_prob, log_normalizer = output
    # The backward op takes no gradient for the statistics: say so rather than drop one.
    ctx.mark_non_differentiable(next_joint, log_prob, log_normalizer)
    ctx.save_for_backward(x, key, candidates, next_joint, log_prob, log_normalizer)
    ctx.length, ctx.scale = length, scale
    ctx.output_mask = list(ctx.needs_input_grad[:2])


def _make_backward(backward_op):
    def backward(ctx, grad_out, _grad_next, _grad_log_prob, _grad_log_normalizer):
        x, key, candidates, next_joint, log_prob, log_normalizer = ctx.saved_tensors
        grads = backward_op(
            grad_out,
            x,
            key,
            candidates,
            next_joint,
            log_prob,
            log_normalizer,
            ctx.length,
            ctx.scale,
            ctx.output_mask,
        )
        return (*wanted_gradients(grads, ctx.output_mask), None, None, None)

    return backward


register_python_parts(
    "spatio_temporal_curve", _fake_forward, _fake_backward, _make_backward, _setup_context
)


# --- Triton backend as operators of its own ---------------------------------------------------


@torch.library.custom_op("skelops::spatio_temporal_curve_triton", mutates_args=())
def _spatio_temporal_curve_triton(
    x: Tensor, key: Tensor, candidates: Tensor | None, length: int, scale: float
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    from ..triton.spatio_temporal_curve import spatio_temporal_curve_forward

    # Direct calls get the wrapper's checks (on a GPU the candidate-row check synchronises).
    _check_arguments(x, key, candidates, length)
    return spatio_temporal_curve_forward(x, key, candidates, length, scale)


@torch.library.custom_op("skelops::spatio_temporal_curve_triton_backward", mutates_args=())
def _spatio_temporal_curve_triton_backward(
    grad_out: Tensor,
    x: Tensor,
    key: Tensor,
    candidates: Tensor | None,
    next_joint: Tensor,
    log_prob: Tensor,
    log_normalizer: Tensor,
    length: int,
    scale: float,
    output_mask: list[bool],
) -> tuple[Tensor, Tensor]:
    from ..triton.spatio_temporal_curve import spatio_temporal_curve_backward

    _check_arguments(x, key, candidates, length, check_values=False)
    return spatio_temporal_curve_backward(
        grad_out, x, key, candidates, next_joint, log_prob, log_normalizer, length, scale,
        output_mask,
    )  # fmt: skip


register_python_parts(
    "spatio_temporal_curve_triton", _fake_forward, _fake_backward, _make_backward, _setup_context
)
