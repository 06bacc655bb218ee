"""Reference pose heatmap rendering (PoseC3D's pseudo heatmaps), as a vectorised PyTorch
composition; the definition every kernel computes, and its fallback."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["SCORE_THRESHOLD", "EXPONENT_CUTOFF", "render_heatmaps"]

# pyskl's GeneratePoseTarget skips keypoints whose score is below this (its EPS).
SCORE_THRESHOLD = 1e-3
# Beyond d^2 / (2 sigma^2) = 104 a Gaussian of peak <= 1 is below 2^-149, fp32's smallest
# subnormal: the full Gaussian is defined as zero there (in every dtype), which lets the kernels
# skip the pixels outside that disc without changing a float32 result.
EXPONENT_CUTOFF = 104.0
# Coordinates are clamped to this before pyskl's integer window bounds are taken, so a huge
# (but finite) coordinate still gives an empty window instead of an integer overflow.
_WINDOW_CLAMP = float(1 << 24)


def _valid(points: Tensor, scores: Tensor) -> Tensor:
    finite = torch.isfinite(points).all(-1) & torch.isfinite(scores)
    return finite & (scores >= SCORE_THRESHOLD)


def _window_bounds(low: Tensor, high: Tensor, sigma: float, extent: int) -> tuple[Tensor, Tensor]:
    """pyskl's window ``[max(int(low - 3 sigma), 0), min(int(high + 3 sigma) + 1, extent))``
    with ``int`` truncating toward zero (as Python's ``int`` of a float)."""
    start = torch.trunc((low - 3 * sigma).clamp(-_WINDOW_CLAMP, _WINDOW_CLAMP)).clamp(min=0)
    end = (torch.trunc((high + 3 * sigma).clamp(-_WINDOW_CLAMP, _WINDOW_CLAMP)) + 1).clamp(
        max=extent
    )
    return start, end


def _in_window(
    grid_x: Tensor, grid_y: Tensor, low: Tensor, high: Tensor, sigma: float, size: tuple[int, int]
) -> Tensor:
    """Mask ``[..., H, W]`` of the pixels inside the window of the box ``low..high``
    (``[..., 2]`` corners)."""
    height, width = size
    start_x, end_x = _window_bounds(low[..., 0], high[..., 0], sigma, width)
    start_y, end_y = _window_bounds(low[..., 1], high[..., 1], sigma, height)
    in_x = (grid_x >= start_x[..., None, None]) & (grid_x < end_x[..., None, None])
    in_y = (grid_y >= start_y[..., None, None]) & (grid_y < end_y[..., None, None])
    return in_x & in_y


def _draw(
    distance2: Tensor,
    peak: Tensor,
    valid: Tensor,
    low: Tensor,
    high: Tensor,
    sigma: float,
    size: tuple[int, int],
    pyskl_window: bool,
    grid_x: Tensor,
    grid_y: Tensor,
) -> Tensor:
    """``peak * exp(-distance2 / (2 sigma^2))`` ``[..., H, W]`` where drawn: inside the cut-off
    (or pyskl's window of the box ``low..high``), for valid primitives; 0 elsewhere."""
    exponent = distance2 / (2.0 * sigma * sigma)
    gaussian = torch.exp(-exponent)
    if pyskl_window:
        inside = _in_window(grid_x, grid_y, low, high, sigma, size)
    else:
        inside = exponent <= EXPONENT_CUTOFF
    keep = inside & valid[..., None, None]
    return torch.where(keep, peak[..., None, None] * gaussian, torch.zeros_like(gaussian))


def _keypoint_values(
    points: Tensor,
    scores: Tensor,
    sigma: float,
    size: tuple[int, int],
    pyskl_window: bool,
    grid_x: Tensor,
    grid_y: Tensor,
) -> Tensor:
    """One person: ``points [N, T, C, 2]``, ``scores [N, T, C]`` -> ``[N, T, C, H, W]``."""
    valid = _valid(points, scores)
    safe = torch.where(valid[..., None], points, torch.zeros_like(points))
    dx = grid_x - safe[..., 0, None, None]
    dy = grid_y - safe[..., 1, None, None]
    return _draw(
        dx * dx + dy * dy, scores, valid, safe, safe, sigma, size, pyskl_window, grid_x, grid_y
    )


def _limb_values(
    starts: Tensor,
    ends: Tensor,
    start_scores: Tensor,
    end_scores: Tensor,
    sigma: float,
    size: tuple[int, int],
    pyskl_window: bool,
    grid_x: Tensor,
    grid_y: Tensor,
) -> Tensor:
    """One person: end points ``[N, T, L, 2]`` and their scores ``[N, T, L]`` ->
    ``[N, T, L, H, W]``."""
    valid = _valid(starts, start_scores) & _valid(ends, end_scores)
    zero = torch.zeros_like(starts)
    a = torch.where(valid[..., None], starts, zero)
    b = torch.where(valid[..., None], ends, zero)
    u = b - a
    length2 = (u * u).sum(-1)
    # pyskl draws a segment shorter than one pixel as the start point's Gaussian, with the
    # start's score; otherwise the value is the smaller end-point score (ties: the start's).
    short = length2 < 1.0
    peak = torch.where(short | (start_scores <= end_scores), start_scores, end_scores).where(
        valid, torch.zeros_like(start_scores)
    )
    wx = grid_x - a[..., 0, None, None]
    wy = grid_y - a[..., 1, None, None]
    safe_length2 = torch.where(short, torch.ones_like(length2), length2)
    along = (wx * u[..., 0, None, None] + wy * u[..., 1, None, None]) / safe_length2[
        ..., None, None
    ]
    along = along.clamp(0.0, 1.0)
    along = torch.where(short[..., None, None], torch.zeros_like(along), along)
    rx = wx - along * u[..., 0, None, None]
    ry = wy - along * u[..., 1, None, None]
    short_box = short[..., None]
    low = torch.where(short_box, a, torch.minimum(a, b))
    high = torch.where(short_box, a, torch.maximum(a, b))
    return _draw(
        rx * rx + ry * ry, peak, valid, low, high, sigma, size, pyskl_window, grid_x, grid_y
    )


def render_heatmaps(
    keypoints: Tensor,
    scores: Tensor,
    size: tuple[int, int],
    sigma: float = 0.6,
    limbs: Tensor | None = None,
    pyskl_window: bool = False,
) -> Tensor:
    """Render keypoint or limb Gaussians, PoseC3D's pseudo heatmaps (pyskl GeneratePoseTarget).

    Pixel ``(i, j)`` of an ``H x W`` map has centre ``(x, y) = (j, i)`` in the keypoints'
    coordinates. Keypoint mode (``limbs=None``), channel ``v``:

    .. math::
        h[n, v, t, i, j] = \\max_m s_{ntmv} \\exp\\left(-\\frac{(j - x_{ntmv})^2
        + (i - y_{ntmv})^2}{2\\sigma^2}\\right)

    Limb mode, channel ``l`` for the limb ``(a, b) = limbs[l]``: the Gaussian of the distance
    ``d`` from the pixel to the segment ``p_a p_b`` (projection clamped to the end points),
    times ``min(s_a, s_b)``; a segment shorter than one pixel (``|p_b - p_a|^2 < 1``) is drawn as
    the Gaussian of ``p_a`` times ``s_a``, as pyskl does. Persons are combined by the maximum
    (0 where nobody contributes); the gradient of a pixel goes to the first person attaining
    it. A keypoint with a non-finite coordinate or score, or a score below ``1e-3``, contributes
    nothing (a limb needs both of its end points). The Gaussian is zero where
    ``d^2 / (2 sigma^2) > 104`` (below float32's smallest subnormal).

    ``pyskl_window=True`` reproduces pyskl exactly: each Gaussian is drawn only inside the
    window ``[max(int(lo - 3 sigma), 0), min(int(hi + 3 sigma) + 1, size))`` on each axis
    (``lo``/``hi`` the keypoint's coordinate, or the limb's bounding box), ``int`` truncating
    toward zero, and is zero outside it. That cuts the Gaussian where it is still about
    ``exp(-4.5) = 1.1%`` of its peak (less after the truncation), so the maps have a visible
    square edge and their coordinate gradient jumps at window borders; the default full
    Gaussian is smooth.

    Args:
        keypoints: ``[N, T, M, V, 2]`` (clips, frames, persons, joints, (x, y)), floating.
        scores: ``[N, T, M, V]``, keypoints' dtype.
        size: ``(H, W)``.
        sigma: Gaussian standard deviation in pixels.
        limbs: ``[L, 2]`` integer joint pairs (limb mode), or ``None`` (keypoint mode).
        pyskl_window: see above.

    Returns:
        ``[N, C, T, H, W]`` (``C = V`` or ``L``) in the keypoints' dtype.
    """
    height, width = size
    n, t, m, v, _ = keypoints.shape
    channels = v if limbs is None else limbs.shape[0]
    options = dict(dtype=keypoints.dtype, device=keypoints.device)
    grid_x = torch.arange(width, **options).view(1, width)
    grid_y = torch.arange(height, **options).view(height, 1)
    out = torch.zeros(n, t, channels, height, width, **options)
    for person in range(m):
        points, person_scores = keypoints[:, :, person], scores[:, :, person]
        if limbs is None:
            values = _keypoint_values(
                points, person_scores, sigma, size, pyskl_window, grid_x, grid_y
            )
        else:
            starts, ends = points[:, :, limbs[:, 0]], points[:, :, limbs[:, 1]]
            values = _limb_values(
                starts,
                ends,
                person_scores[:, :, limbs[:, 0]],
                person_scores[:, :, limbs[:, 1]],
                sigma,
                size,
                pyskl_window,
                grid_x,
                grid_y,
            )
        # Strictly greater: on a tie the earlier person keeps the pixel (and its gradient).
        out = torch.where(values > out, values, out)
    return out.permute(0, 2, 1, 3, 4)
