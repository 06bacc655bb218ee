"""pyskl's heatmap loop re-implemented in numpy: the oracle for pyskl's exact semantics and the
baseline the benchmark times.

The loop draws, for every frame, person and keypoint (or limb), the Gaussian inside pyskl's
3-sigma window with numpy and keeps the running maximum, as ``GeneratePoseTarget``
(kennymckormick/pyskl, ``pyskl/datasets/pipelines/heatmap_related.py``) does in a data
worker. The code is written here from that description (window bounds truncated by ``int``,
``d2_ab < 1`` drawing the start point, ``EPS = 1e-3``), not copied.
"""

from __future__ import annotations

import numpy as np

__all__ = ["pyskl_heatmaps"]

_EPS = 1e-3


def _window(low: float, high: float, sigma: float, extent: int) -> np.ndarray:
    return np.arange(
        max(int(low - 3 * sigma), 0), min(int(high + 3 * sigma) + 1, extent), 1, np.float32
    )


def _draw_point(plane: np.ndarray, center: np.ndarray, value: float, sigma: float) -> None:
    height, width = plane.shape
    xs = _window(center[0], center[0], sigma, width)
    ys = _window(center[1], center[1], sigma, height)
    if xs.size == 0 or ys.size == 0:
        return
    ys = ys[:, None]
    patch = np.exp(-((xs - center[0]) ** 2 + (ys - center[1]) ** 2) / 2 / sigma**2) * value
    rows, cols = slice(int(ys[0, 0]), int(ys[-1, 0]) + 1), slice(int(xs[0]), int(xs[-1]) + 1)
    np.maximum(plane[rows, cols], patch, out=plane[rows, cols])


def _draw_limb(
    plane: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    start_value: float,
    end_value: float,
    sigma: float,
) -> None:
    value = min(start_value, end_value)
    if value < _EPS:
        return
    height, width = plane.shape
    xs = _window(min(start[0], end[0]), max(start[0], end[0]), sigma, width)
    ys = _window(min(start[1], end[1]), max(start[1], end[1]), sigma, height)
    if xs.size == 0 or ys.size == 0:
        return
    ys = ys[:, None]
    d2_start = (xs - start[0]) ** 2 + (ys - start[1]) ** 2
    d2_end = (xs - end[0]) ** 2 + (ys - end[1]) ** 2
    d2_ab = (start[0] - end[0]) ** 2 + (start[1] - end[1]) ** 2
    if d2_ab < 1:
        _draw_point(plane, start, start_value, sigma)
        return
    along = (d2_start - d2_end + d2_ab) / 2.0 / d2_ab
    foot_x = start[0] + along * (end[0] - start[0])
    foot_y = start[1] + along * (end[1] - start[1])
    d2_line = (xs - foot_x) ** 2 + (ys - foot_y) ** 2
    d2 = np.where(along <= 0, d2_start, np.where(along >= 1, d2_end, d2_line))
    patch = np.exp(-d2 / 2.0 / sigma**2) * value
    rows, cols = slice(int(ys[0, 0]), int(ys[-1, 0]) + 1), slice(int(xs[0]), int(xs[-1]) + 1)
    np.maximum(plane[rows, cols], patch, out=plane[rows, cols])


def pyskl_heatmaps(
    keypoints: np.ndarray,
    scores: np.ndarray | None,
    size: tuple[int, int],
    sigma: float = 0.6,
    limbs: np.ndarray | None = None,
) -> np.ndarray:
    """One clip as pyskl draws it.

    Args:
        keypoints: ``[M, T, V, 2]`` float32 (persons, frames, joints, (x, y)), pyskl's layout.
        scores: ``[M, T, V]`` or ``None`` (all ones: pyskl's ``use_score=False``).
        size: ``(H, W)``.
        sigma: Gaussian standard deviation.
        limbs: ``[L, 2]`` joint pairs for limb maps, ``None`` for keypoint maps.

    Returns:
        ``[T, C, H, W]`` float32, pyskl's output before ``FormatShape``.
    """
    persons, frames, joints, _ = keypoints.shape
    if scores is None:
        scores = np.ones(keypoints.shape[:-1], np.float32)
    height, width = size
    channels = joints if limbs is None else len(limbs)
    out = np.zeros((frames, channels, height, width), np.float32)
    for t in range(frames):
        points, values = keypoints[:, t], scores[:, t]
        if limbs is None:
            for v in range(joints):
                for m in range(persons):
                    if values[m, v] < _EPS:
                        continue
                    _draw_point(out[t, v], points[m, v], values[m, v], sigma)
        else:
            for index, (a, b) in enumerate(limbs):
                for m in range(persons):
                    _draw_limb(
                        out[t, index], points[m, a], points[m, b], values[m, a], values[m, b], sigma
                    )
    return out
