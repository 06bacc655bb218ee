"""Batched 2D pose augmentations feeding :func:`skelops.render_heatmaps` (PoseC3D's input).

Every function works on a whole batch of clips at once with tensor operations, on whatever
device the tensors live on, so the augmentations of a PoseC3D training step can run on the GPU
next to the heatmap rendering instead of in numpy data workers. The semantics are those of the
pyskl pipelines (kennymckormick/pyskl, ``pyskl/datasets/pipelines``): ``UniformSampleFrames``
(``sampling.py``), ``PoseDecode``, and ``PoseCompact``, ``Resize``, ``RandomResizedCrop``,
``Flip`` (``augmentations.py``), chained by :class:`HeatmapPipeline` as the configs
``configs/posec3d/slowonly_r50_ntu60_xsub/{joint,limb}.py`` chain them.

Conventions:
    * keypoints ``[N, T, M, V, 2]``: clips, frames, persons, joints, ``(x, y)`` in pixels of the
      clip's image; pixel ``(i, j)`` has centre ``(x, y) = (j, i)``. scores ``[N, T, M, V]``.
    * image shapes ``[N, 2]`` integer ``(height, width)`` per clip (pyskl's ``img_shape``).
    * A missing keypoint is stored as pyskl stores it: coordinates ``(0, 0)`` and score 0. As in
      pyskl, ``pose_compact`` and ``flip`` leave a zero coordinate alone, and the renderer
      ignores scores below ``1e-3``, so missing keypoints stay harmless through the chain.
    * Randomness comes from an optional ``torch.Generator``; the random numbers are drawn on the
      generator's device (CPU when none is given) in float64 and then moved to the data, so a
      CPU generator with a fixed seed gives the same augmentation on every device. Each
      function documents what it draws, in order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..graphs.layouts import Layout, get_layout
from ..graphs.limbs import COCO_LIMBS_POSEC3D, limb_flip_permutation
from ..ops._common import check_tensor

__all__ = [
    "HeatmapPipeline",
    "flip_channels",
    "gather_frames",
    "horizontal_flip",
    "pose_compact",
    "random_resized_crop",
    "resize_keypoints",
    "uniform_sample_frames",
]


# --------------------------------------------------------------------------------------------
# argument checks and random numbers


def _check_keypoints(keypoints: object, name: str = "keypoints") -> Tensor:
    keypoints = check_tensor(name, keypoints, (5,), "[N, T, M, V, 2]")
    if keypoints.shape[-1] != 2:
        raise ValueError(f"{name} must end in 2 coordinates (x, y), got {tuple(keypoints.shape)}")
    return keypoints


def _check_scores(scores: Tensor | None, keypoints: Tensor) -> Tensor | None:
    if scores is None:
        return None
    scores = check_tensor("scores", scores, (4,), "[N, T, M, V]", floating=False)
    if scores.shape != keypoints.shape[:-1]:
        raise ValueError(
            f"scores must have shape {tuple(keypoints.shape[:-1])} (keypoints without the last "
            f"dimension), got {tuple(scores.shape)}"
        )
    return scores


def _image_shape(image_shape: Tensor | Sequence[int], batch: int, device: torch.device) -> Tensor:
    """``[N, 2]`` int64 ``(height, width)`` on ``device``; a pair is broadcast to every clip."""
    if isinstance(image_shape, Tensor):
        shape = image_shape
    else:
        try:
            shape = torch.as_tensor(image_shape)
        except (TypeError, ValueError, RuntimeError) as error:
            raise TypeError(
                f"image_shape must be a (height, width) pair or an [N, 2] tensor, got "
                f"{image_shape!r}"
            ) from error
    if shape.is_floating_point() or shape.is_complex() or shape.dtype == torch.bool:
        raise TypeError(f"image_shape must hold integers, got {shape.dtype}")
    if shape.dim() == 1:
        shape = shape.unsqueeze(0).expand(batch, -1)
    if shape.dim() != 2 or shape.shape != (batch, 2):
        raise ValueError(
            f"image_shape must be (height, width) or [N={batch}, 2], got shape {tuple(shape.shape)}"
        )
    shape = shape.to(device=device, dtype=torch.int64)
    if bool((shape <= 0).any()):
        raise ValueError(f"image_shape must be positive, got {shape.tolist()}")
    return shape


def _uniform(
    shape: Sequence[int], generator: torch.Generator | None, device: torch.device
) -> Tensor:
    """Float64 uniforms in ``[0, 1)``, drawn on the generator's device, moved to ``device``."""
    draw_device = generator.device if generator is not None else torch.device("cpu")
    values = torch.rand(tuple(shape), generator=generator, device=draw_device, dtype=torch.float64)
    return values.to(device)


def _randint_below(uniform: Tensor, upper: Tensor) -> Tensor:
    """``floor(uniform * upper)`` as int64 in ``[0, upper)`` (``upper >= 1``)."""
    upper = upper.to(torch.float64)
    value = torch.floor(uniform * upper).clamp(max=upper - 1).clamp(min=0)
    return value.to(torch.int64)


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r})")
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return value


def _range_pair(value: object, name: str) -> tuple[float, float]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = (value, value)
    if not isinstance(value, Sequence) or len(value) != 2:
        raise TypeError(f"{name} must be a number or a (low, high) pair, got {value!r}")
    low, high = (float(v) for v in value)
    if not low <= high:
        raise ValueError(f"{name} must satisfy low <= high, got {value!r}")
    return low, high


# --------------------------------------------------------------------------------------------
# frame sampling


def uniform_sample_frames(
    lengths: Tensor,
    clip_len: int,
    num_clips: int = 1,
    *,
    train: bool = True,
    p_interval: float | tuple[float, float] = 1.0,
    seed: int = 255,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Frame indices of pyskl's ``UniformSampleFrames`` for a batch of clips of given lengths.

    For each clip of ``L = lengths[n]`` frames and each of its ``num_clips`` samples, a window of
    ``F = max(int(r * L), 1)`` frames, ``r ~ U(p_interval)``, starts at a random offset
    ``o ~ randint(L - F + 1)``, and ``clip_len`` indices are taken from it:

    * ``F < clip_len``: consecutive frames from a start ``s`` (train: ``s ~ randint(F)``;
      test: ``s = k`` if ``F < num_clips`` else ``k * F // num_clips`` for sample ``k``);
      indices past the clip wrap around (``mod L``), i.e. the clip loops.
    * ``clip_len <= F < 2 clip_len``: ``arange(clip_len)`` plus the cumulative count of
      ``F - clip_len`` distinct positions chosen at random among ``clip_len + 1``.
    * ``F >= 2 clip_len``: ``F`` is cut into ``clip_len`` segments at ``i * F // clip_len``
      and one frame is drawn uniformly from each.

    All indices are shifted by ``o`` and taken modulo ``L``. In test mode (``train=False``)
    pyskl reseeds numpy with ``seed`` for every video, so the indices depend on the length
    alone; here the random numbers come from a CPU generator seeded with ``seed`` and are
    shared by all clips of the batch, which keeps that property (the numbers differ from
    numpy's). ``generator`` is only used in train mode.

    Draws: one ``[N, num_clips, clip_len + 4]`` uniform block (``[1, ...]`` from the seeded
    generator in test mode): column 0 the window ratio, 1 the window offset, 2 the start,
    3.. the subset keys (first ``clip_len + 1``) or the segment offsets (first ``clip_len``).

    Args:
        lengths: ``[N]`` integer frame counts, each >= 1.
        clip_len: frames per sample.
        num_clips: samples per clip.
        train: random (train) or seeded (test) sampling.
        p_interval: the window ratio ``r``, a number or a ``(low, high)`` range in ``(0, 1]``.
        seed: the test-mode seed (pyskl's default 255).
        generator: the train-mode random source.

    Returns:
        ``[N, num_clips, clip_len]`` int64 frame indices in ``[0, lengths[n])``, on the device of
        ``lengths``.
    """
    lengths = check_tensor("lengths", lengths, (1,), "[N]", floating=False)
    if lengths.is_floating_point() or lengths.dtype == torch.bool:
        raise TypeError(f"lengths must hold integers, got {lengths.dtype}")
    clip_len = _positive_int(clip_len, "clip_len")
    num_clips = _positive_int(num_clips, "num_clips")
    low, high = _range_pair(p_interval, "p_interval")
    if not 0.0 < low <= high <= 1.0:
        raise ValueError(f"p_interval must lie in (0, 1], got {p_interval!r}")
    if lengths.numel() and bool((lengths < 1).any()):
        raise ValueError(f"lengths must be >= 1, got {lengths.tolist()}")

    device = lengths.device
    batch = lengths.shape[0]
    if train:
        u = _uniform((batch, num_clips, clip_len + 4), generator, device)
    else:
        seeded = torch.Generator().manual_seed(seed)
        u = _uniform((1, num_clips, clip_len + 4), seeded, device).expand(batch, -1, -1)

    total = lengths.to(torch.int64)[:, None]  # [N, 1]
    ratio = u[..., 0] * (high - low) + low
    window = torch.floor(ratio * total.to(torch.float64)).to(torch.int64).clamp(min=1)
    offset = _randint_below(u[..., 1], total - window + 1)  # [N, K]

    positions = torch.arange(clip_len, device=device)  # [clip_len]
    window_ = window[..., None]
    # F < clip_len: a looped run of consecutive frames.
    if train:
        start = _randint_below(u[..., 2], window)
    else:
        sample = torch.arange(num_clips, device=device)[None, :]
        start = torch.where(window < num_clips, sample, sample * window // num_clips)
    short = start[..., None] + positions
    # clip_len <= F < 2 clip_len: a random (F - clip_len)-subset of clip_len + 1 gaps.
    keys = u[..., 3 : 3 + clip_len + 1]
    rank = keys.argsort(dim=-1).argsort(dim=-1)
    chosen = (rank < (window_ - clip_len)).to(torch.int64)
    medium = positions + chosen.cumsum(-1)[..., :clip_len]
    # F >= 2 clip_len: one frame per segment.
    bounds = torch.arange(clip_len + 1, device=device) * window_ // clip_len
    long = bounds[..., :-1] + _randint_below(u[..., 3 : 3 + clip_len], bounds.diff(dim=-1))

    indices = torch.where(
        window_ < clip_len, short, torch.where(window_ < 2 * clip_len, medium, long)
    )
    return (indices + offset[..., None]) % total[..., None]


def gather_frames(values: Tensor, indices: Tensor) -> Tensor:
    """Frames ``indices`` of every clip (pyskl's ``PoseDecode``), samples concatenated.

    Args:
        values: ``[N, T, ...]`` per-frame data (keypoints ``[N, T, M, V, 2]``, scores
            ``[N, T, M, V]``).
        indices: ``[N, K, L]`` (or ``[N, L]``) int64 frame indices, e.g. from
            :func:`uniform_sample_frames`.

    Returns:
        ``[N, K * L, ...]``: sample ``k`` occupies frames ``k * L`` to ``(k + 1) * L - 1``.
    """
    if not isinstance(values, Tensor) or values.dim() < 2:
        raise ValueError("values must be a tensor [N, T, ...] with at least 2 dimensions")
    if not isinstance(indices, Tensor) or indices.dim() not in (2, 3):
        raise ValueError("indices must be a tensor [N, K, L] or [N, L]")
    if indices.is_floating_point():
        raise TypeError(f"indices must hold integers, got {indices.dtype}")
    if indices.shape[0] != values.shape[0]:
        raise ValueError(f"indices has {indices.shape[0]} clips but values has {values.shape[0]}")
    flat = indices.reshape(indices.shape[0], -1).to(device=values.device, dtype=torch.int64)
    if flat.numel() and bool(((flat < 0) | (flat >= values.shape[1])).any()):
        raise ValueError(f"indices must lie in [0, {values.shape[1]}) (values' frames)")
    index = flat.reshape(flat.shape + (1,) * (values.dim() - 2)).expand(
        (-1, -1) + tuple(values.shape[2:])
    )
    return values.gather(1, index)


# --------------------------------------------------------------------------------------------
# geometric transforms


def pose_compact(
    keypoints: Tensor,
    image_shape: Tensor | Sequence[int],
    *,
    padding: float = 0.25,
    threshold: float = 10,
    hw_ratio: float | tuple[float, float] | None = 1.0,
    allow_imgpad: bool = True,
) -> tuple[Tensor, Tensor]:
    """Crop every clip to the padded box around its keypoints (pyskl's ``PoseCompact``).

    Per clip, over all its frames, persons and joints: NaN coordinates become 0; the tight box
    spans the non-zero x and the non-zero y coordinates (each axis on its own, as pyskl; a zero
    coordinate is "missing"); if it is narrower or lower than ``threshold`` pixels the clip is
    left unchanged. Otherwise the box is widened about its centre by ``1 + padding``, then
    grown to the aspect ``hw_ratio`` (``half_h = max(r0 * half_w, half_h)``, then
    ``half_w = max(half_h / r1, half_w)``), its corners truncated toward zero (clamped to the
    image first unless ``allow_imgpad``), the non-zero coordinates shifted by the top-left
    corner, and the image shape becomes the box's. Scores are not read (pyskl does not).
    The box arithmetic runs in float64.

    Args:
        keypoints: ``[N, T, M, V, 2]``.
        image_shape: ``[N, 2]`` or one ``(height, width)`` for all clips.
        padding: relative padding, >= 0.
        threshold: minimum box width and height (pixels) for a clip to be compacted.
        hw_ratio: ``None``, a height/width ratio, or a ``(min, max)`` pair.
        allow_imgpad: let the box extend beyond the image.

    Returns:
        ``(keypoints, image_shape)``: the shifted keypoints (keypoints' dtype) and the new
        ``[N, 2]`` int64 ``(height, width)``.
    """
    keypoints = _check_keypoints(keypoints)
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    ratio = None if hw_ratio is None else _range_pair(hw_ratio, "hw_ratio")
    if ratio is not None and ratio[0] <= 0:
        raise ValueError(f"hw_ratio must be positive, got {hw_ratio!r}")
    batch = keypoints.shape[0]
    shape = _image_shape(image_shape, batch, keypoints.device)

    keypoints = torch.nan_to_num(keypoints, nan=0.0, posinf=math.inf, neginf=-math.inf)
    coords = keypoints.to(torch.float64).reshape(batch, -1, 2)
    present = coords != 0
    low = torch.where(present, coords, math.inf).amin(dim=1)  # [N, 2] (x, y)
    high = torch.where(present, coords, -math.inf).amax(dim=1)
    extent = high - low
    compact = (extent >= threshold).all(dim=1)  # -inf extent (no keypoint) fails too

    safe_low = torch.where(compact[:, None], low, 0.0)
    safe_high = torch.where(compact[:, None], high, 0.0)
    center = (safe_low + safe_high) / 2
    half_w, half_h = ((safe_high - safe_low) / 2 * (1 + padding)).unbind(-1)
    if ratio is not None:
        half_h = torch.maximum(ratio[0] * half_w, half_h)
        half_w = torch.maximum(half_h / ratio[1], half_w)
    half = torch.stack([half_w, half_h], dim=-1)
    box_low, box_high = center - half, center + half
    if not allow_imgpad:
        size_xy = shape.flip(-1).to(torch.float64)
        box_low = box_low.clamp(min=0.0)
        box_high = torch.minimum(box_high, size_xy)
    box_low, box_high = torch.trunc(box_low), torch.trunc(box_high)

    shift = torch.where(compact[:, None], box_low, 0.0).to(keypoints.dtype)  # [N, 2]
    shift = shift.view(batch, 1, 1, 1, 2)
    moved = torch.where(keypoints != 0, keypoints - shift, keypoints)
    new_shape = (box_high - box_low).flip(-1).to(torch.int64)
    new_shape = torch.where(compact[:, None], new_shape, shape)
    return moved, new_shape


def _rescale_size(shape: Tensor, scale: float | tuple[float, float]) -> Tensor:
    """mmcv's ``rescale_size`` for ``[N, 2]`` ``(h, w)``: the keep-ratio target size."""
    hw = shape.to(torch.float64)
    if isinstance(scale, tuple):
        long_edge, short_edge = max(scale), min(scale)
        if short_edge == -1:  # pyskl: (-1, s) bounds the short edge only
            long_edge, short_edge = math.inf, long_edge
        factor = torch.minimum(long_edge / hw.amax(-1), short_edge / hw.amin(-1))[:, None]
    else:
        factor = torch.full_like(hw[:, :1], float(scale))
    return torch.floor(hw * factor + 0.5).to(torch.int64)


def resize_keypoints(
    keypoints: Tensor,
    image_shape: Tensor | Sequence[int],
    scale: float | tuple[float, float],
    *,
    keep_ratio: bool = True,
) -> tuple[Tensor, Tensor]:
    """Rescale keypoints with their images (pyskl's ``Resize``).

    With ``keep_ratio`` the new size is mmcv's ``rescale_size``: a number scales both sides;
    a pair bounds the long side by its larger and the short side by its smaller entry (a
    ``-1`` leaves the long side free, so ``(-1, 64)`` makes the short side 64), sizes rounded
    as ``int(s * f + 0.5)``. Without it ``scale`` is the new ``(height, width)``. The
    coordinates are multiplied by ``(new_w / w, new_h / h)``.

    Note pyskl's ``scale`` tuple reads ``(width, height)`` when ``keep_ratio=False``; here it is
    ``(height, width)`` like every size in skelops (the same for the square sizes of the
    PoseC3D configs).

    Args:
        keypoints: ``[N, T, M, V, 2]``.
        image_shape: ``[N, 2]`` or one ``(height, width)``.
        scale: see above.
        keep_ratio: see above.

    Returns:
        ``(keypoints, image_shape)``, the new shape ``[N, 2]`` int64.
    """
    keypoints = _check_keypoints(keypoints)
    batch = keypoints.shape[0]
    shape = _image_shape(image_shape, batch, keypoints.device)
    if isinstance(scale, Sequence) and not isinstance(scale, str):
        if len(scale) != 2:
            raise ValueError(f"scale must be a number or a pair, got {scale!r}")
        scale = tuple(float(s) for s in scale)
        if keep_ratio:
            if max(scale) <= 0 or (min(scale) <= 0 and min(scale) != -1):
                raise ValueError(f"scale must be positive (or -1 for a free side), got {scale!r}")
        elif min(scale) <= 0 or any(s != int(s) for s in scale):
            raise ValueError(f"scale must be a positive (height, width) pair, got {scale!r}")
    elif isinstance(scale, (int, float)) and not isinstance(scale, bool):
        if not keep_ratio:
            raise TypeError("scale must be a (height, width) pair when keep_ratio=False")
        if scale <= 0:
            raise ValueError(f"scale must be positive, got {scale}")
    else:
        raise TypeError(f"scale must be a number or a pair, got {scale!r}")

    if keep_ratio:
        new_shape = _rescale_size(shape, scale)
    else:
        new_shape = torch.tensor([scale], dtype=torch.int64, device=shape.device).expand(batch, 2)
    factor = (new_shape.to(torch.float64) / shape.to(torch.float64)).flip(-1)  # (x, y)
    factor = factor.to(keypoints.dtype).view(batch, 1, 1, 1, 2)
    return keypoints * factor, new_shape.contiguous()


def random_resized_crop(
    keypoints: Tensor,
    image_shape: Tensor | Sequence[int],
    *,
    area_range: tuple[float, float] = (0.08, 1.0),
    aspect_ratio_range: tuple[float, float] = (3 / 4, 4 / 3),
    max_attempts: int = 10,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """A random box per clip, keypoints moved into it (pyskl's ``RandomResizedCrop``).

    For each clip of size ``h x w``, ``max_attempts`` candidates are drawn: aspect
    ``a = exp(U(log a0, log a1))``, area ``A = U(area_range) * h * w``, box
    ``round(sqrt(A a)) x round(sqrt(A / a))`` (width x height, round half to even as numpy).
    The first candidate that fits is placed at a uniform integer offset (both ends included);
    if none fits, the centred ``min(h, w)`` square is used. All keypoints (zero ones too, as
    pyskl) are shifted by the box's top-left corner; the image shape becomes the box's.

    Draws: one ``[N, 2 * max_attempts + 2]`` uniform block: aspect ratios, areas, then the x
    and y offsets.

    Returns:
        ``(keypoints, image_shape, boxes)``: boxes ``[N, 4]`` int64 ``(left, top, right,
        bottom)`` in the input image.
    """
    keypoints = _check_keypoints(keypoints)
    area_low, area_high = _range_pair(area_range, "area_range")
    if not 0.0 < area_low <= area_high <= 1.0:
        raise ValueError(f"area_range must satisfy 0 < low <= high <= 1, got {area_range!r}")
    ratio_low, ratio_high = _range_pair(aspect_ratio_range, "aspect_ratio_range")
    if not 0.0 < ratio_low:
        raise ValueError(f"aspect_ratio_range must be positive, got {aspect_ratio_range!r}")
    attempts = _positive_int(max_attempts, "max_attempts")
    batch = keypoints.shape[0]
    shape = _image_shape(image_shape, batch, keypoints.device)
    height, width = shape.unbind(-1)

    u = _uniform((batch, 2 * attempts + 2), generator, keypoints.device)
    log_low, log_high = math.log(ratio_low), math.log(ratio_high)
    aspect = torch.exp(log_low + u[:, :attempts] * (log_high - log_low))
    area = (area_low + u[:, attempts : 2 * attempts] * (area_high - area_low)) * (
        height * width
    ).to(torch.float64)[:, None]
    crop_w = torch.round(torch.sqrt(area * aspect)).to(torch.int64)
    crop_h = torch.round(torch.sqrt(area / aspect)).to(torch.int64)
    fits = (crop_h <= height[:, None]) & (crop_w <= width[:, None])
    first = fits.to(torch.int64).argmax(dim=1, keepdim=True)  # first True (0 when none)
    crop_w, crop_h = crop_w.gather(1, first)[:, 0], crop_h.gather(1, first)[:, 0]
    left = _randint_below(u[:, 2 * attempts], width - crop_w + 1)
    top = _randint_below(u[:, 2 * attempts + 1], height - crop_h + 1)

    side = torch.minimum(height, width)
    found = fits.any(dim=1)
    crop_w = torch.where(found, crop_w, side)
    crop_h = torch.where(found, crop_h, side)
    left = torch.where(found, left, (width - side) // 2)
    top = torch.where(found, top, (height - side) // 2)

    corner = torch.stack([left, top], dim=-1).to(keypoints.dtype).view(batch, 1, 1, 1, 2)
    boxes = torch.stack([left, top, left + crop_w, top + crop_h], dim=-1)
    return keypoints - corner, torch.stack([crop_h, crop_w], dim=-1), boxes


def _flip_permutation(layout: str | Layout | Sequence[int], num_joints: int) -> list[int]:
    if isinstance(layout, (str, Layout)):
        perm = list(get_layout(layout).flip_permutation)
    else:
        perm = [int(j) for j in layout]
    if sorted(perm) != list(range(num_joints)):
        raise ValueError(
            f"layout must give a flip permutation of the {num_joints} joints, got {perm}"
        )
    return perm


def horizontal_flip(
    keypoints: Tensor,
    image_shape: Tensor | Sequence[int],
    scores: Tensor | None = None,
    *,
    layout: str | Layout | Sequence[int] = "coco",
    flip_ratio: float = 0.5,
    flip: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor | None, Tensor]:
    """Mirror a random subset of the clips left to right (pyskl's ``Flip`` on keypoints).

    A flipped clip has every non-zero x replaced by ``W - x`` (``W`` its image width; pyskl's
    formula, not ``W - 1 - x``, and a zero x stays 0 as a missing keypoint) and its left and
    right joints swapped, scores too.

    Draws: ``[N]`` uniforms (clip ``n`` flips when ``u[n] < flip_ratio``), unless ``flip`` is
    given.

    Args:
        keypoints: ``[N, T, M, V, 2]``.
        image_shape: ``[N, 2]`` or one ``(height, width)``.
        scores: ``[N, T, M, V]`` or ``None``.
        layout: a layout (name) whose ``flip_permutation`` swaps the joints, or the permutation.
        flip_ratio: probability of flipping a clip.
        flip: ``[N]`` bool, which clips to flip (overrides the random draw).
        generator: random source.

    Returns:
        ``(keypoints, scores, flipped)``, ``flipped`` the ``[N]`` bool decisions.
    """
    keypoints = _check_keypoints(keypoints)
    scores = _check_scores(scores, keypoints)
    if not 0.0 <= flip_ratio <= 1.0:
        raise ValueError(f"flip_ratio must lie in [0, 1], got {flip_ratio}")
    batch, num_joints = keypoints.shape[0], keypoints.shape[3]
    perm = _flip_permutation(layout, num_joints)
    shape = _image_shape(image_shape, batch, keypoints.device)
    if flip is None:
        flip = _uniform((batch,), generator, keypoints.device) < flip_ratio
    else:
        flip = check_tensor("flip", flip, (1,), "[N]", floating=False).to(
            device=keypoints.device, dtype=torch.bool
        )
        if flip.shape[0] != batch:
            raise ValueError(f"flip must have {batch} entries, got {flip.shape[0]}")

    index = torch.tensor(perm, device=keypoints.device)
    mirrored = keypoints.index_select(3, index)
    x = mirrored[..., 0]
    width = shape[:, 1].to(keypoints.dtype).view(batch, 1, 1, 1)
    mirrored = torch.stack([torch.where(x != 0, width - x, x), mirrored[..., 1]], dim=-1)
    chosen = flip.view(batch, 1, 1, 1, 1)
    keypoints = torch.where(chosen, mirrored, keypoints)
    if scores is not None:
        scores = torch.where(chosen[..., 0], scores.index_select(3, index), scores)
    return keypoints, scores, flip


def flip_channels(
    layout: str | Layout = "coco",
    mode: str = "keypoint",
    limbs: Sequence[Sequence[int]] | None = None,
) -> list[int]:
    """Channel permutation of a mirrored heatmap volume, ``flipped = maps[:, perm]`` (pyskl's
    ``left_kp``/``right_kp`` or ``left_limb``/``right_limb`` swap of ``GeneratePoseTarget``
    with ``double=True``): the layout's flip permutation in keypoint mode, in limb mode
    :func:`skelops.graphs.limb_flip_permutation` of ``limbs``."""
    if mode == "keypoint":
        return list(get_layout(layout).flip_permutation)
    if mode != "limb":
        raise ValueError(f"mode must be 'keypoint' or 'limb', got {mode!r}")
    if limbs is None:
        raise ValueError("limbs must be given in limb mode")
    return list(limb_flip_permutation(limbs, layout))


# --------------------------------------------------------------------------------------------
# the PoseC3D pipelines


@dataclass
class HeatmapPipeline:
    """PoseC3D's data pipeline, batched: raw keypoints to heatmap volumes.

    ``split="train"`` follows ``train_pipeline`` of ``configs/posec3d/slowonly_r50_ntu60_xsub``:
    ``UniformSampleFrames(clip_len)`` -> ``PoseCompact(hw_ratio=1, allow_imgpad=True)`` ->
    ``Resize((-1, 64))`` -> ``RandomResizedCrop(area_range=(0.56, 1))`` ->
    ``Resize(size, keep_ratio=False)`` -> ``Flip(0.5)`` -> ``GeneratePoseTarget``.
    ``"val"`` and ``"test"``: test-mode sampling of ``num_clips`` samples (1 for val, 10 for
    test unless given) -> ``PoseCompact`` -> ``Resize(size, keep_ratio=False)`` ->
    ``GeneratePoseTarget`` (``double=True`` for test: every volume also mirrored, with the
    channel swap of :func:`flip_channels`).

    Args:
        split: ``"train"``, ``"val"`` or ``"test"``.
        clip_len: frames per sample (48 in the configs).
        size: heatmap ``(H, W)``; default ``(56, 56)`` for train, ``(64, 64)`` otherwise.
        mode: ``"keypoint"`` (channels = joints) or ``"limb"`` (channels = limbs).
        layout: skeleton layout (flip pairs; its edges are the default limbs except for COCO).
        limbs: limb mode's joint pairs; for ``"coco"`` the limb configs' order by default,
            :data:`skelops.graphs.COCO_LIMBS_POSEC3D`.
        num_clips: samples per clip; default 1 (train/val) or 10 (test).
        double: also output the mirrored volumes; default ``split == "test"``.
        sigma, use_score, pyskl_window, backend: passed to :func:`skelops.render_heatmaps`
            (``pyskl_window=True`` for pyskl's exact truncated windows).
        p_interval: window ratio of the sampling (1 in the PoseC3D configs).
        short_side: the ``Resize((-1, short_side))`` before the crop (train).
        area_range, aspect_ratio_range: the random crop's (train).
        flip_ratio: probability of a flip (train).
        padding, threshold: ``PoseCompact``'s.
        seed: test-mode sampling seed.

    Call it with ``(keypoints, scores, lengths, image_shape, generator=None)``:
    ``keypoints [N, T_max, M, V, 2]`` in image pixels; ``scores [N, T_max, M, V]`` or ``None``;
    ``lengths [N]``, the valid frames of each clip, or ``None`` for all ``T_max``;
    ``image_shape`` ``[N, 2]`` or one ``(height, width)``. It returns
    ``[N, C, clip_len, H, W]`` when there is one view per clip, else
    ``[N, views, C, clip_len, H, W]`` with ``views = num_clips * (2 if double else 1)``, ordered
    as pyskl's ``FormatShape('NCTHW_Heatmap')``: all samples, then all their mirrors.
    """

    split: str = "train"
    clip_len: int = 48
    size: tuple[int, int] | None = None
    mode: str = "keypoint"
    layout: str | Layout = "coco"
    limbs: Sequence[Sequence[int]] | None = None
    num_clips: int | None = None
    double: bool | None = None
    sigma: float = 0.6
    use_score: bool = True
    pyskl_window: bool = False
    backend: str = "auto"
    p_interval: float | tuple[float, float] = 1.0
    short_side: int = 64
    area_range: tuple[float, float] = (0.56, 1.0)
    aspect_ratio_range: tuple[float, float] = (3 / 4, 4 / 3)
    flip_ratio: float = 0.5
    padding: float = 0.25
    threshold: float = 10
    seed: int = 255

    def __post_init__(self) -> None:
        if self.split not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test', got {self.split!r}")
        if self.mode not in ("keypoint", "limb"):
            raise ValueError(f"mode must be 'keypoint' or 'limb', got {self.mode!r}")
        _positive_int(self.clip_len, "clip_len")
        if self.size is None:
            self.size = (56, 56) if self.split == "train" else (64, 64)
        if len(self.size) != 2:
            raise ValueError(f"size must be (height, width), got {self.size!r}")
        self.size = (_positive_int(self.size[0], "size[0]"), _positive_int(self.size[1], "size[1]"))
        if self.num_clips is None:
            self.num_clips = 10 if self.split == "test" else 1
        _positive_int(self.num_clips, "num_clips")
        if self.double is None:
            self.double = self.split == "test"
        layout = get_layout(self.layout)
        if self.mode == "limb" and self.limbs is None:
            self.limbs = COCO_LIMBS_POSEC3D if layout.name == "coco" else layout.edges
        if self.limbs is not None:
            self.limbs = tuple((int(a), int(b)) for a, b in self.limbs)
        _range_pair(self.area_range, "area_range")
        self._channels = flip_channels(layout, self.mode, self.limbs) if self.double else None

    def __call__(
        self,
        keypoints: Tensor,
        scores: Tensor | None,
        lengths: Tensor | None,
        image_shape: Tensor | Sequence[int],
        generator: torch.Generator | None = None,
    ) -> Tensor:
        from .. import render_heatmaps  # the package imports this module first

        keypoints = _check_keypoints(keypoints)
        scores = _check_scores(scores, keypoints)
        batch, frames, _, num_joints, _ = keypoints.shape
        if lengths is None:
            lengths = torch.full((batch,), frames, dtype=torch.int64, device=keypoints.device)
        lengths = check_tensor("lengths", lengths, (1,), "[N]", floating=False)
        if lengths.shape[0] != batch or bool((lengths > frames).any()):
            raise ValueError(
                f"lengths must hold {batch} frame counts <= T_max={frames}, got {lengths.tolist()}"
            )
        train = self.split == "train"
        indices = uniform_sample_frames(
            lengths.to(keypoints.device),
            self.clip_len,
            self.num_clips,
            train=train,
            p_interval=self.p_interval,
            seed=self.seed,
            generator=generator,
        )
        keypoints = gather_frames(keypoints, indices)
        if scores is not None:
            scores = gather_frames(scores, indices)
        keypoints, shape = pose_compact(
            keypoints,
            image_shape,
            padding=self.padding,
            threshold=self.threshold,
            hw_ratio=1.0,
            allow_imgpad=True,
        )
        if train:
            keypoints, shape = resize_keypoints(keypoints, shape, (-1, self.short_side))
            keypoints, shape, _ = random_resized_crop(
                keypoints,
                shape,
                area_range=self.area_range,
                aspect_ratio_range=self.aspect_ratio_range,
                generator=generator,
            )
        keypoints, shape = resize_keypoints(keypoints, shape, self.size, keep_ratio=False)
        if train:
            keypoints, scores, _ = horizontal_flip(
                keypoints,
                shape,
                scores,
                layout=self.layout,
                flip_ratio=self.flip_ratio,
                generator=generator,
            )
        limbs = None
        if self.mode == "limb":
            limbs = torch.tensor(self.limbs, dtype=torch.int64, device=keypoints.device)
        heatmaps = render_heatmaps(
            keypoints,
            scores,
            size=self.size,
            sigma=self.sigma,
            mode=self.mode,
            limbs=limbs,
            use_score=self.use_score,
            pyskl_window=self.pyskl_window,
            backend=self.backend,
        )  # [N, C, K * L, H, W]
        channels, height, width = heatmaps.shape[1], heatmaps.shape[3], heatmaps.shape[4]
        views = heatmaps.view(batch, channels, self.num_clips, self.clip_len, height, width)
        views = views.permute(0, 2, 1, 3, 4, 5)
        if self.double:
            index = torch.tensor(self._channels, device=heatmaps.device)
            views = torch.cat([views, views.flip(-1).index_select(2, index)], dim=1)
        if views.shape[1] == 1:
            return views[:, 0]
        return views
