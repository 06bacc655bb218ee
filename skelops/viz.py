"""Look at pose heatmaps: a PNG grid of skeletons and the heatmaps PoseC3D sees.

:func:`save_heatmap_png` writes, for a few frames of a pose sequence, one column per frame and
one row per panel: the skeleton drawn with lines (left limbs blue, right limbs red, the rest
green, joints white), the sum of the keypoint heatmaps and, optionally, the sum of the limb
heatmaps (both from :func:`skelops.render_heatmaps`, shown with a black-red-yellow-white colour
map). The PNG is encoded here with :mod:`zlib` and :mod:`struct`, so neither Pillow nor
matplotlib is needed.
"""

from __future__ import annotations

import math
import os
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from .data.pose2d import pose_compact, resize_keypoints
from .graphs.layouts import Layout, get_layout
from .graphs.limbs import COCO_LIMBS

__all__ = [
    "GRID_BORDER",
    "apply_colormap",
    "encode_png",
    "heatmap_grid",
    "load_pose_npz",
    "save_heatmap_png",
    "synthetic_skeleton",
]

# Pixels of background between (and around) the cells of the grid.
GRID_BORDER = 2
_BACKGROUND = 40
# Black -> purple -> red -> orange -> pale yellow, evenly spaced over [0, 1].
_COLORMAP_ANCHORS = (
    (0, 0, 0),
    (70, 20, 120),
    (200, 40, 70),
    (250, 150, 20),
    (255, 250, 190),
)
_LEFT_COLOR, _RIGHT_COLOR, _CENTER_COLOR, _JOINT_COLOR = (
    (60, 150, 255),
    (255, 80, 70),
    (90, 220, 90),
    (255, 255, 255),
)
_SCORE_THRESHOLD = 1e-3  # as the renderer: lower scores are missing keypoints


def encode_png(image: Tensor) -> bytes:
    """PNG bytes of an 8-bit image ``[H, W]`` (grey) or ``[H, W, 3]`` (RGB), unfiltered rows."""
    if not isinstance(image, Tensor):
        raise TypeError(f"image must be a torch.Tensor, got {type(image).__name__}")
    if image.dtype != torch.uint8:
        raise TypeError(f"image must be uint8, got {image.dtype}")
    if image.dim() == 2:
        color_type = 0
    elif image.dim() == 3 and image.shape[2] == 3:
        color_type = 2
    else:
        raise ValueError(f"image must be [H, W] or [H, W, 3], got shape {tuple(image.shape)}")
    height, width = image.shape[0], image.shape[1]
    if height == 0 or width == 0:
        raise ValueError(f"image must not be empty, got shape {tuple(image.shape)}")
    rows = image.detach().cpu().contiguous().reshape(height, -1)
    filtered = torch.cat([torch.zeros(height, 1, dtype=torch.uint8), rows], dim=1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(filtered.numpy().tobytes(), 6))
        + chunk(b"IEND", b"")
    )


def apply_colormap(values: Tensor) -> Tensor:
    """uint8 RGB ``[..., 3]`` of ``values`` clamped to ``[0, 1]`` (0 black, 1 pale yellow)."""
    anchors = torch.tensor(_COLORMAP_ANCHORS, dtype=torch.float32, device=values.device)
    position = values.detach().float().nan_to_num(0.0).clamp(0, 1) * (len(anchors) - 1)
    lower = position.floor().long().clamp(max=len(anchors) - 2)
    weight = (position - lower)[..., None]
    color = anchors[lower] * (1 - weight) + anchors[lower + 1] * weight
    return color.round().to(torch.uint8)


def _as_sequence(keypoints: Tensor, scores: Tensor | None) -> tuple[Tensor, Tensor]:
    """``[M, T, V, 2]`` keypoints and ``[M, T, V]`` scores (ones when absent)."""
    if not isinstance(keypoints, Tensor):
        raise TypeError(f"keypoints must be a torch.Tensor, got {type(keypoints).__name__}")
    if keypoints.dim() == 3:
        keypoints = keypoints.unsqueeze(0)
    if keypoints.dim() != 4 or keypoints.shape[-1] != 2:
        raise ValueError(
            f"keypoints must be [T, V, 2] or [M, T, V, 2], got shape {tuple(keypoints.shape)}"
        )
    if keypoints.shape[1] == 0:
        raise ValueError("keypoints must hold at least one frame")
    keypoints = keypoints.float()
    if scores is None:
        return keypoints, torch.ones(keypoints.shape[:-1], device=keypoints.device)
    if not isinstance(scores, Tensor):
        raise TypeError(f"scores must be a torch.Tensor, got {type(scores).__name__}")
    if scores.dim() == 2:
        scores = scores.unsqueeze(0)
    if scores.shape != keypoints.shape[:-1]:
        raise ValueError(
            f"scores must have shape {tuple(keypoints.shape[:-1])}, got {tuple(scores.shape)}"
        )
    return keypoints, scores.float().to(keypoints.device)


def _frame_indices(frames: int | Sequence[int] | None, total: int) -> list[int]:
    if frames is None:
        frames = min(total, 8)
    if isinstance(frames, int) and not isinstance(frames, bool):
        if frames <= 0:
            raise ValueError(f"frames must be a positive count or a list of indices, got {frames}")
        count = min(frames, total)
        return [round(i * (total - 1) / max(count - 1, 1)) for i in range(count)]
    chosen = [int(f) for f in frames]
    if not chosen or any(not 0 <= f < total for f in chosen):
        raise ValueError(f"frames must be indices in [0, {total}), got {list(frames)}")
    return chosen


def _draw_skeleton(
    points: Tensor,
    scores: Tensor,
    limbs: Sequence[tuple[int, int]],
    colors: Tensor,
    height: int,
    width: int,
) -> Tensor:
    """Lines and joint dots of ``points [M, V, 2]`` on a black ``[height, width, 3]`` canvas."""
    canvas = torch.zeros(height, width, 3, dtype=torch.uint8)
    valid = torch.isfinite(points).all(-1) & (scores >= _SCORE_THRESHOLD)  # [M, V]
    if limbs:
        pairs = torch.tensor(limbs, dtype=torch.long)
        start, end = points[:, pairs[:, 0]], points[:, pairs[:, 1]]  # [M, L, 2]
        both = valid[:, pairs[:, 0]] & valid[:, pairs[:, 1]]
        start = torch.where(both[..., None], start, 0.0)
        end = torch.where(both[..., None], end, 0.0)
        span = (end - start).abs().amax().clamp(max=4 * (height + width)).item()
        steps = torch.linspace(0, 1, int(math.ceil(span)) * 2 + 2)  # [S]
        line = start[..., None, :] + steps[:, None] * (end - start)[..., None, :]  # [M, L, S, 2]
        pixel = line.round().long()
        inside = (
            both[..., None]
            & (pixel[..., 0] >= 0)
            & (pixel[..., 0] < width)
            & (pixel[..., 1] >= 0)
            & (pixel[..., 1] < height)
        )
        color = colors[None, :, None, :].expand(pixel.shape[:-1] + (3,))
        canvas[pixel[..., 1][inside], pixel[..., 0][inside]] = color[inside]
    dots = points.round().long()[valid]  # [J, 2]
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            x, y = dots[:, 0] + dx, dots[:, 1] + dy
            inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
            canvas[y[inside], x[inside]] = torch.tensor(_JOINT_COLOR, dtype=torch.uint8)
    return canvas


def _limb_colors(layout: Layout, limbs: Sequence[tuple[int, int]]) -> Tensor:
    left = {a for a, _ in layout.flip_pairs}
    right = {b for _, b in layout.flip_pairs}
    colors = []
    for a, b in limbs:
        on_left, on_right = bool({a, b} & left), bool({a, b} & right)
        if on_left != on_right:
            colors.append(_LEFT_COLOR if on_left else _RIGHT_COLOR)
        else:
            colors.append(_CENTER_COLOR)
    return torch.tensor(colors, dtype=torch.uint8).reshape(-1, 3)


def heatmap_grid(
    keypoints: Tensor,
    scores: Tensor | None = None,
    *,
    layout: str | Layout = "coco",
    size: tuple[int, int] = (64, 64),
    frames: int | Sequence[int] | None = None,
    sigma: float = 0.6,
    limbs: Sequence[Sequence[int]] | None = None,
    with_limbs: bool = True,
    fit: bool = True,
    image_shape: Sequence[int] | None = None,
    upscale: int = 4,
    backend: str = "auto",
) -> Tensor:
    """The grid image of :func:`save_heatmap_png` as a uint8 ``[rows, cols, 3]`` tensor.

    Cell ``(r, c)`` (panel ``r``: 0 skeleton, 1 keypoint heatmaps, 2 limb heatmaps; column
    ``c``: the ``c``-th chosen frame) covers rows ``GRID_BORDER + r * (H * upscale +
    GRID_BORDER)`` onwards and columns likewise with ``W``; heatmap pixel ``(i, j)`` fills
    the ``upscale x upscale`` block at ``(i * upscale, j * upscale)`` of its cell.

    Args:
        keypoints: ``[T, V, 2]`` or ``[M, T, V, 2]`` ``(x, y)`` (pyskl's ``keypoint`` layout).
        scores: ``[T, V]`` / ``[M, T, V]`` (pyskl's ``keypoint_score``), or ``None`` (ones).
        layout: skeleton layout (limb colours; its edges are the default limbs except for
            COCO, which uses pyskl's :data:`skelops.graphs.COCO_LIMBS`).
        size: heatmap ``(H, W)``.
        frames: how many evenly spaced frames (default up to 8), or their indices.
        sigma: Gaussian width in heatmap pixels.
        limbs: joint pairs to draw and render.
        with_limbs: add the limb heatmap row.
        fit: map the keypoints to the heatmap as PoseC3D's val pipeline does (``PoseCompact``
            then ``Resize(size)`` over the whole sequence); ``False``: they are heatmap pixels.
        image_shape: ``(height, width)`` of the source images (only matters to ``fit`` when the
            pose spans fewer than 10 pixels); default the keypoints' extent.
        upscale: cell pixels per heatmap pixel.
        backend: :func:`skelops.render_heatmaps`'s backend.
    """
    from . import render_heatmaps  # the package imports this module first

    layout = get_layout(layout)
    points, point_scores = _as_sequence(keypoints, scores)
    if points.shape[2] != layout.num_joints:
        raise ValueError(
            f"keypoints have {points.shape[2]} joints but layout {layout.name!r} has "
            f"{layout.num_joints}"
        )
    if len(size) != 2 or any(isinstance(s, bool) or not isinstance(s, int) or s <= 0 for s in size):
        raise ValueError(f"size must be a (height, width) pair of positive ints, got {size!r}")
    if isinstance(upscale, bool) or not isinstance(upscale, int) or upscale <= 0:
        raise ValueError(f"upscale must be a positive int, got {upscale!r}")
    if limbs is None:
        limbs = COCO_LIMBS if layout.name == "coco" else layout.edges
    limbs = [(int(a), int(b)) for a, b in limbs]
    if any(not (0 <= j < layout.num_joints) for pair in limbs for j in pair):
        raise ValueError(f"limbs must index the {layout.num_joints} joints, got {limbs}")
    chosen = _frame_indices(frames, points.shape[1])
    height, width = size

    # [1, T, M, V, 2], as the augmentations and the renderer take them.
    batch = points.permute(1, 0, 2, 3).unsqueeze(0).cpu()
    batch_scores = point_scores.permute(1, 0, 2).unsqueeze(0).cpu()
    if fit:
        if image_shape is None:
            seen = batch[torch.isfinite(batch)]
            extent = math.ceil(seen.max().item()) + 1 if seen.numel() else 1
            image_shape = (max(extent, 1), max(extent, 1))
        batch, shape = pose_compact(batch, image_shape)
        batch, _ = resize_keypoints(batch, shape, size, keep_ratio=False)
    batch = batch[:, chosen]
    batch_scores = batch_scores[:, chosen]

    options = dict(size=size, sigma=sigma, backend=backend)
    panels = [render_heatmaps(batch, batch_scores, **options)[0].sum(0)]
    limb_tensor = torch.tensor(limbs, dtype=torch.long).reshape(-1, 2)
    if with_limbs and limbs:
        limb_maps = render_heatmaps(batch, batch_scores, mode="limb", limbs=limb_tensor, **options)
        panels.append(limb_maps[0].sum(0))
    cell_h, cell_w = height * upscale, width * upscale
    rows, cols = 1 + len(panels), len(chosen)
    image = torch.full(
        (
            GRID_BORDER + rows * (cell_h + GRID_BORDER),
            GRID_BORDER + cols * (cell_w + GRID_BORDER),
            3,
        ),
        _BACKGROUND,
        dtype=torch.uint8,
    )
    colors = _limb_colors(layout, limbs)
    # Heatmap pixel j covers cell pixels j * upscale ... j * upscale + upscale - 1.
    centred = batch[0] * upscale + (upscale - 1) / 2
    for c in range(cols):
        x0 = GRID_BORDER + c * (cell_w + GRID_BORDER)
        cells = [_draw_skeleton(centred[c], batch_scores[0, c], limbs, colors, cell_h, cell_w)]
        for panel in panels:
            big = panel[c].repeat_interleave(upscale, 0).repeat_interleave(upscale, 1)
            cells.append(apply_colormap(big))
        for r, cell in enumerate(cells):
            y0 = GRID_BORDER + r * (cell_h + GRID_BORDER)
            image[y0 : y0 + cell_h, x0 : x0 + cell_w] = cell
    return image


def save_heatmap_png(
    path: str | os.PathLike,
    keypoints: Tensor,
    scores: Tensor | None = None,
    **options,
) -> Path:
    """Write the grid of :func:`heatmap_grid` (same arguments) as a PNG; returns the path."""
    image = heatmap_grid(keypoints, scores, **options)
    path = Path(path)
    path.write_bytes(encode_png(image))
    return path


def synthetic_skeleton(num_frames: int = 32, *, num_persons: int = 1) -> tuple[Tensor, Tensor]:
    """A COCO-17 figure walking across a 256 x 256 image and waving its right arm.

    Returns ``(keypoints [M, T, 17, 2], scores [M, T, 17])`` in pyskl's layout (image
    pixels, scores 1); person ``m`` is offset by ``60 m`` pixels.
    """
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames <= 0:
        raise ValueError(f"num_frames must be a positive int, got {num_frames!r}")
    phase = torch.linspace(0, 2 * math.pi, num_frames + 1)[:-1]  # [T]
    swing, wave = 12 * torch.sin(phase), 0.9 * torch.sin(2 * phase)
    hip_x = 90 + 70 * phase / (2 * math.pi)
    zero = torch.zeros_like(phase)
    # (x, y) relative to the pelvis centre, per joint, varying with the phase.
    offsets = [
        (zero, zero - 110),  # nose
        (zero + 5, zero - 115),  # left_eye
        (zero - 5, zero - 115),  # right_eye
        (zero + 10, zero - 112),  # left_ear
        (zero - 10, zero - 112),  # right_ear
        (zero + 22, zero - 85),  # left_shoulder
        (zero - 22, zero - 85),  # right_shoulder
        (zero + 28 - swing / 2, zero - 55),  # left_elbow
        (zero - 42, zero - 100 - 10 * wave),  # right_elbow
        (zero + 30 - swing, zero - 28),  # left_wrist
        (zero - 50 + 25 * wave.abs(), zero - 125 - 15 * wave),  # right_wrist
        (zero + 14, zero),  # left_hip
        (zero - 14, zero),  # right_hip
        (zero + 14 + swing, zero + 40),  # left_knee
        (zero - 14 - swing, zero + 40),  # right_knee
        (zero + 14 + 2 * swing, zero + 80),  # left_ankle
        (zero - 14 - 2 * swing, zero + 80),  # right_ankle
    ]
    figure = torch.stack([torch.stack([dx + hip_x, dy + 140], dim=-1) for dx, dy in offsets], 1)
    people = [figure + torch.tensor([60.0 * m, 0.0]) for m in range(num_persons)]
    keypoints = torch.stack(people)  # [M, T, 17, 2]
    return keypoints, torch.ones(keypoints.shape[:-1])


def load_pose_npz(path: str | os.PathLike) -> tuple[Tensor, Tensor | None, tuple[int, int] | None]:
    """Read a pose sequence stored as pyskl stores one annotation, in an ``.npz``.

    Keys: ``keypoint`` ``[M, T, V, 2]`` (or ``[T, V, 2]``) float ``(x, y)`` image pixels;
    optional ``keypoint_score`` ``[M, T, V]`` (or ``[T, V]``); optional ``img_shape``
    ``(height, width)``. Returns ``(keypoints, scores or None, image_shape or None)``.
    """
    import numpy as np

    with np.load(path, allow_pickle=False) as data:
        if "keypoint" not in data.files:
            raise KeyError(f"{path} has no 'keypoint' array (keys: {', '.join(data.files)})")
        keypoints = torch.from_numpy(np.asarray(data["keypoint"], dtype=np.float32))
        scores = None
        if "keypoint_score" in data.files:
            scores = torch.from_numpy(np.asarray(data["keypoint_score"], dtype=np.float32))
        image_shape = None
        if "img_shape" in data.files:
            h, w = (int(v) for v in np.asarray(data["img_shape"]).reshape(-1)[:2])
            image_shape = (h, w)
    return keypoints, scores, image_shape
