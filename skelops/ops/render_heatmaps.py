"""``skelops.render_heatmaps``: PoseC3D's keypoint and limb heatmaps drawn on the device,
differentiable with respect to the keypoints and their scores."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from .. import reference
from ..graphs.limbs import COCO_LIMBS
from ._common import (
    _LIBRARY,
    check_same,
    check_tensor,
    fake_gradients,
    register_python_parts,
    resolve_backend,
    wanted_gradients,
)

__all__ = ["render_heatmaps"]

_MODES = ("keypoint", "limb")
_OUTPUT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def render_heatmaps(
    keypoints: Tensor,
    scores: Tensor | None = None,
    size: int | Sequence[int] = (64, 64),
    sigma: float = 0.6,
    mode: str = "keypoint",
    limbs: Tensor | Sequence[Sequence[int]] | None = None,
    use_score: bool = True,
    pyskl_window: bool = False,
    channels_last: bool = False,
    dtype: torch.dtype | None = None,
    backend: str = "auto",
) -> Tensor:
    """Draw keypoint or limb Gaussians, PoseC3D's pseudo heatmaps, for a batch of clips.

    The semantics are those of pyskl's ``GeneratePoseTarget``: pixel ``(i, j)`` has centre
    ``(x, y) = (j, i)``; a keypoint draws ``s * exp(-((x - x_k)^2 + (y - y_k)^2) / (2 sigma^2))``
    into its joint's channel; a limb ``(a, b)`` draws ``min(s_a, s_b) * exp(-d^2 / (2 sigma^2))``
    with ``d`` the distance to the segment (a segment shorter than one pixel draws ``a``'s point
    Gaussian with ``s_a``, as pyskl does); persons are combined by the maximum. A keypoint with
    a score below ``1e-3``, or a non-finite coordinate or score, draws nothing (a limb needs
    both ends). Keypoints outside the canvas are valid: what of their Gaussian falls inside is
    drawn. The full Gaussian is drawn (zero where ``d^2 / (2 sigma^2) > 104``, below float32's
    smallest subnormal; float32 kernels may also flush values below float32's smallest normal
    number, ``1.2e-38`` times the peak, to zero, as GPUs' fast ``exp`` does);
    ``pyskl_window=True`` cuts it to pyskl's integer 3-sigma windows instead, reproducing pyskl
    exactly (see :func:`skelops.reference.render_heatmaps`: the cut
    drops tails up to about 1.1% of the peak and makes the maps' coordinate gradients jump at
    the window borders).

    Gradients reach ``keypoints`` and ``scores`` (a pixel's gradient goes to the first person
    attaining its maximum); ``use_score=False`` draws every keypoint with peak 1 (pyskl's
    ``use_score=False``: the score threshold then never applies) and gives ``scores`` no
    gradient.

    Args:
        keypoints: ``[N, T, M, V, 2]`` (clips, frames, persons, joints, (x, y)) in heatmap pixel
            coordinates, floating point.
        scores: ``[N, T, M, V]`` confidences in keypoints' dtype and device, or ``None`` (ones).
        size: ``(H, W)`` of the maps, or one int for a square.
        sigma: Gaussian standard deviation in pixels, ``> 0``.
        mode: ``"keypoint"`` (one channel per joint) or ``"limb"`` (one per limb).
        limbs: limb mode's ``[L, 2]`` joint pairs (tensor or sequence); default pyskl's COCO-17
            limbs (``skelops.graphs.COCO_LIMBS``, needs ``V = 17``). PoseC3D's limb checkpoints
            use the order of ``skelops.graphs.COCO_LIMBS_POSEC3D``.
        use_score: scale each Gaussian by its score (pyskl's default).
        pyskl_window: pyskl's exact 3-sigma windows instead of the full Gaussian.
        channels_last: return a ``channels_last_3d`` tensor (same shape, channels fastest in
            memory), the layout a channels-last 3-D CNN reads.
        dtype: output dtype (float32, float64, float16 or bfloat16); keypoints' dtype when
            ``None`` (the autocast dtype under ``torch.autocast``). The math runs in float32
            (float64 for float64 keypoints).
        backend: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"triton"`` or ``"reference"``.

    Returns:
        ``[N, V, T, H, W]`` (keypoint mode) or ``[N, L, T, H, W]`` (limb mode), pyskl's
        ``NCTHW_Heatmap`` layout for a batch of clips.

    Raises:
        TypeError / ValueError: a wrong rank, shape, dtype or device, an empty clip batch, a
            size below 1, ``sigma <= 0`` or non-finite, an unknown mode, limbs out of range, or
            an unavailable backend.
    """
    height, width = _check_size(size)
    sigma = _check_sigma(sigma)
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    _check_keypoints(keypoints)
    if scores is not None and use_score:
        _check_scores(scores, keypoints)
        score_grad = True
    else:
        if scores is not None:
            _check_scores(scores, keypoints)
        scores = keypoints.new_ones(keypoints.shape[:-1])
        score_grad = False
    limb_tensor = _limb_tensor(mode, limbs, keypoints)
    if dtype is not None and dtype not in _OUTPUT_DTYPES:
        raise TypeError(f"dtype must be one of {_OUTPUT_DTYPES} or None, got {dtype}")
    chosen = resolve_backend("render_heatmaps", backend, keypoints.device)
    if chosen == "reference":
        out = reference.render_heatmaps(
            keypoints, scores, (height, width), sigma, limb_tensor, pyskl_window
        )
        out_dtype = dtype if dtype is not None else _autocast_dtype(keypoints)
        out = out.to(out_dtype if out_dtype is not None else keypoints.dtype)
        if channels_last:
            out = out.contiguous(memory_format=torch.channels_last_3d)
        return out
    op = (
        torch.ops.skelops.render_heatmaps_triton
        if chosen == "triton"
        else torch.ops.skelops.render_heatmaps
    )
    if not score_grad:
        scores = scores.detach()
    return op(
        keypoints, scores, limb_tensor, height, width, sigma, pyskl_window, channels_last, dtype
    )


def _autocast_dtype(keypoints: Tensor) -> torch.dtype | None:
    device_type = keypoints.device.type
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return None


def _check_size(size: object) -> tuple[int, int]:
    pair = (size, size) if isinstance(size, int) and not isinstance(size, bool) else size
    if (
        not isinstance(pair, Sequence)
        or len(pair) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in pair)
    ):
        raise TypeError(f"size must be an int or a pair of ints (H, W), got {size!r}")
    height, width = pair
    if height < 1 or width < 1:
        raise ValueError(f"size must be at least 1 x 1 (H, W), got {tuple(pair)}")
    return height, width


def _check_sigma(sigma: object) -> float:
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)):
        raise TypeError(f"sigma must be a float > 0, got {type(sigma).__name__}")
    if not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be finite and > 0 (pixels), got {sigma}")
    return float(sigma)


def _check_keypoints(keypoints: Tensor) -> None:
    check_tensor("keypoints", keypoints, (5,), "[N, T, M, V, 2]")
    n, t, _, v, xy = keypoints.shape
    if xy != 2:
        raise ValueError(
            "keypoints must be [N, T, M, V, 2] with (x, y) last, got shape "
            f"{tuple(keypoints.shape)}"
        )
    if n == 0 or t == 0 or v == 0:
        raise ValueError(
            "keypoints must have N, T, V >= 1 (clips, frames, joints; M = 0 persons is allowed), "
            f"got shape {tuple(keypoints.shape)}"
        )


def _check_scores(scores: Tensor, keypoints: Tensor) -> None:
    check_tensor("scores", scores, (4,), "[N, T, M, V]")
    check_same("scores", scores, "keypoints", keypoints)
    if scores.shape != keypoints.shape[:-1]:
        raise ValueError(
            f"scores must be [N, T, M, V]={list(keypoints.shape[:-1])} (keypoints' first four "
            f"dimensions), got {list(scores.shape)}"
        )


def _limb_tensor(
    mode: str,
    limbs: Tensor | Sequence[Sequence[int]] | None,
    keypoints: Tensor,
    check_gpu_values: bool = False,
) -> Tensor | None:
    joints = keypoints.shape[3]
    if mode == "keypoint":
        if limbs is not None:
            raise ValueError('limbs are only drawn in mode="limb"; got limbs with mode="keypoint"')
        return None
    if limbs is None:
        if joints != 17:
            raise ValueError(
                f"limbs default to the COCO-17 limbs, which need V = 17 joints; got V = {joints}: "
                "pass limbs"
            )
        limbs = COCO_LIMBS
    if isinstance(limbs, Tensor):
        if limbs.is_floating_point() or limbs.dtype == torch.bool or limbs.is_complex():
            raise TypeError(f"limbs must be an integer tensor, got dtype {limbs.dtype}")
        if limbs.device != keypoints.device:
            raise ValueError(
                f"limbs must be on keypoints' device ({keypoints.device}), got {limbs.device}"
            )
        tensor = limbs.long()
    else:
        try:
            tensor = torch.tensor([list(pair) for pair in limbs], dtype=torch.long)
        except (TypeError, ValueError) as error:
            raise TypeError(f"limbs must be [L, 2] integer joint pairs: {error}") from None
        tensor = tensor.to(keypoints.device)
    if tensor.dim() != 2 or tensor.shape[1] != 2 or tensor.shape[0] == 0:
        raise ValueError(f"limbs must be [L, 2] joint pairs with L >= 1, got {tuple(tensor.shape)}")
    # The CUDA op checks a GPU tensor's values itself, once per tensor version (no host sync
    # per call); the Triton operators call this with check_gpu_values.
    if (tensor.device.type == "cpu" or check_gpu_values) and not torch.compiler.is_compiling():
        low, high = int(tensor.min()), int(tensor.max())
        if low < 0 or high >= joints:
            raise ValueError(
                f"limbs must index joints in [0, V={joints}), got values in [{low}, {high}]"
            )
    return tensor


def _check_op_arguments(
    keypoints: Tensor, scores: Tensor, limbs: Tensor | None, height: int, width: int, sigma: float
) -> None:
    """What the Triton operators check when called directly (the C++ ones check the same)."""
    _check_keypoints(keypoints)
    _check_scores(scores, keypoints)
    _check_size((height, width))
    _check_sigma(sigma)
    if limbs is not None:
        _limb_tensor("limb", limbs, keypoints, check_gpu_values=True)


# --- fake kernels, autograd, autocast -----------------------------------------------------------


def _fake_forward(
    keypoints: Tensor,
    scores: Tensor,
    limbs: Tensor | None,
    height: int,
    width: int,
    sigma: float,
    pyskl_window: bool,
    channels_last: bool,
    dtype: torch.dtype | None,
) -> Tensor:
    n, t, _, v, _ = keypoints.shape
    channels = v if limbs is None else limbs.shape[0]
    memory_format = torch.channels_last_3d if channels_last else torch.contiguous_format
    return keypoints.new_empty(
        (n, channels, t, height, width),
        dtype=keypoints.dtype if dtype is None else dtype,
    ).contiguous(memory_format=memory_format)


def _fake_backward(
    grad: Tensor,
    keypoints: Tensor,
    scores: Tensor,
    limbs: Tensor | None,
    sigma: float,
    pyskl_window: bool,
    output_mask: list[bool],
) -> tuple[Tensor, Tensor]:
    return fake_gradients(keypoints, output_mask, (keypoints.shape, scores.shape))  # type: ignore[return-value]


def _setup_context(ctx, inputs, output) -> None:
    keypoints, scores, limbs, _height, _width, sigma, pyskl_window, _cl, _dtype = inputs
    ctx.save_for_backward(keypoints, scores, limbs)
    ctx.sigma, ctx.pyskl_window = sigma, pyskl_window
    ctx.output_mask = list(ctx.needs_input_grad[:2])


def _make_backward(backward_op):
    def backward(ctx, grad):
        keypoints, scores, limbs = ctx.saved_tensors
        # The kernels read the gradient in its own dtype (the output's, which may differ from
        # the keypoints'): no converted copy of it.
        grads = backward_op(
            grad,
            keypoints,
            scores,
            limbs,
            ctx.sigma,
            ctx.pyskl_window,
            ctx.output_mask,
        )
        return (*wanted_gradients(grads, ctx.output_mask), *([None] * 7))

    return backward


def _register_autocast(op: str) -> None:
    """Under ``torch.autocast`` the maps come out in the autocast dtype (when no dtype is
    given); the keypoints stay as they are, since half-precision pixel coordinates would move
    the Gaussians (bfloat16 keeps 8 bits: a 0.25-pixel step at x = 64)."""
    overload = getattr(torch.ops.skelops, op).default
    for device_type in ("cpu", "cuda"):
        key = "Autocast" + torch._C._dispatch_key_for_device(device_type)
        keyset = torch._C.DispatchKeySet(getattr(torch._C.DispatchKey, key))

        def kernel(_keyset, *args, _device_type=device_type, _exclude=keyset):
            *rest, dtype = args
            if dtype is None:
                dtype = torch.get_autocast_dtype(_device_type)
            with torch._C._ExcludeDispatchKeyGuard(_exclude):
                return overload(*rest, dtype)

        _LIBRARY.impl(op, kernel, key, with_keyset=True)


def _register(op: str) -> None:
    register_python_parts(
        op, _fake_forward, _fake_backward, _make_backward, _setup_context, _register_autocast
    )


_register("render_heatmaps")


# --- Triton backend as operators of its own ---------------------------------------------------


@torch.library.custom_op("skelops::render_heatmaps_triton", mutates_args=())
def _render_heatmaps_triton(
    keypoints: Tensor,
    scores: Tensor,
    limbs: Tensor | None,
    height: int,
    width: int,
    sigma: float,
    pyskl_window: bool,
    channels_last: bool,
    dtype: torch.dtype | None,
) -> Tensor:
    from ..triton.render_heatmaps import render_heatmaps_forward

    _check_op_arguments(keypoints, scores, limbs, height, width, sigma)
    return render_heatmaps_forward(
        keypoints, scores, limbs, height, width, sigma, pyskl_window, channels_last, dtype
    )


@torch.library.custom_op("skelops::render_heatmaps_triton_backward", mutates_args=())
def _render_heatmaps_triton_backward(
    grad: Tensor,
    keypoints: Tensor,
    scores: Tensor,
    limbs: Tensor | None,
    sigma: float,
    pyskl_window: bool,
    output_mask: list[bool],
) -> tuple[Tensor, Tensor]:
    from ..triton.render_heatmaps import render_heatmaps_backward

    _check_op_arguments(keypoints, scores, limbs, grad.shape[3], grad.shape[4], sigma)
    return render_heatmaps_backward(
        grad, keypoints, scores, limbs, sigma, pyskl_window, output_mask
    )


_register("render_heatmaps_triton")
