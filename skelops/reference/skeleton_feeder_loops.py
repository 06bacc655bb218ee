"""CTR-GCN's per-sample training feeder run in a loop over a batch: the oracle for the batched
pipeline (:class:`skelops.data.SkeletonAugment`) and the baseline its benchmark times.

CTR-GCN (Chen et al., "Channel-wise Topology Refinement Graph Convolution for Skeleton-Based
Action Recognition", ICCV 2021; Uason-Chen/CTR-GCN ``feeders/feeder_ntu.py`` and
``feeders/tools.py``) prepares every training clip ``[C, T, V, M]`` on its own in a DataLoader
worker:

1. the valid frame count: frames whose coordinates sum to a non-zero value;
2. ``valid_crop_resize``: a crop ratio ``p ~ U(p_interval)``, a crop of
   ``min(max(floor(L p), 64), L)`` of the ``L`` valid frames at an offset
   ``~ randint(L - length + 1)``, resized to ``window`` frames by bilinear ``F.interpolate``
   (``align_corners=False``) of the crop seen as a ``[1, 1, C V M, length]`` image;
3. ``random_rot``: angles ``~ U(-theta, theta)`` about x, y and z, ``R = R_z R_y R_x`` stacked
   over the frames and applied by ``torch.matmul``;
4. for the bone stream, in numpy, each joint minus its parent (``bone_pairs.ntu_pairs``; a root
   is its own parent and gets a zero bone);

after which the DataLoader stacks the clips into a batch. This module does the same steps per
clip, written from that description (not copied). Two departures, neither of which changes the
work per clip: the five uniforms of a clip can be handed in (so the loop can be checked against
the batched pipeline drawing the same numbers), and a clip without valid frames gives zeros
where the official code would fail.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..graphs.layouts import Layout, get_layout

__all__ = ["feeder_clip", "feeder_loop"]

# Uniforms a clip consumes: crop ratio, crop offset, then the x, y and z angles.
DRAWS_PER_CLIP = 5


def _rotation_zyx(angles: Tensor) -> Tensor:
    """CTR-GCN's ``_rot`` for one clip: ``R_z R_y R_x`` of ``angles`` ``[3]`` as ``[3, 3]``."""
    cos, sin = angles.cos(), angles.sin()
    one, zero = torch.ones(()), torch.zeros(())
    rx = torch.stack(
        [
            torch.stack([one, zero, zero]),
            torch.stack([zero, cos[0], sin[0]]),
            torch.stack([zero, -sin[0], cos[0]]),
        ]
    )
    ry = torch.stack(
        [
            torch.stack([cos[1], zero, -sin[1]]),
            torch.stack([zero, one, zero]),
            torch.stack([sin[1], zero, cos[1]]),
        ]
    )
    rz = torch.stack(
        [
            torch.stack([cos[2], sin[2], zero]),
            torch.stack([-sin[2], cos[2], zero]),
            torch.stack([zero, zero, one]),
        ]
    )
    return rz @ ry @ rx


def feeder_clip(
    clip: np.ndarray,
    uniforms: np.ndarray,
    *,
    window: int = 64,
    p_interval: tuple[float, float] = (0.5, 1.0),
    theta: float = 0.3,
    parents: Sequence[int] | None = None,
    min_length: int = 64,
) -> np.ndarray:
    """One training clip through CTR-GCN's feeder (see the module docstring).

    Args:
        clip: ``[C, T, V, M]`` float32 (channels, frames, joints, persons), zero padding after
            the valid frames; not modified.
        uniforms: ``[5]`` numbers in ``[0, 1)``: crop ratio, crop offset, x, y, z angle.
        window: output frames.
        p_interval: ``(low, high)`` range of the crop ratio.
        theta: largest rotation angle in radians; 0 skips the rotation (the feeder's
            ``random_rot=False``).
        parents: parent joint of each joint for the bone stream; ``None`` keeps the joints.
        min_length: lower bound of the crop (CTR-GCN hard-codes 64).

    Returns:
        ``[C, window, V, M]`` float32.
    """
    channels, _, joints, persons = clip.shape
    valid = int(np.sum(clip.sum(0).sum(-1).sum(-1) != 0))
    if valid == 0:
        return np.zeros((channels, window, joints, persons), dtype=np.float32)
    low, high = p_interval
    ratio = uniforms[0] * (high - low) + low
    length = min(max(int(np.floor(valid * ratio)), min_length), valid)
    begin = int(np.floor(uniforms[1] * (valid - length + 1)))
    crop = torch.tensor(clip[:, begin : begin + length], dtype=torch.float32)
    # The official resize: one bilinear interpolation of a [C V M, length] image along its width.
    image = crop.permute(0, 2, 3, 1).reshape(channels * joints * persons, length)[None, None]
    image = F.interpolate(
        image, size=(channels * joints * persons, window), mode="bilinear", align_corners=False
    )
    data = image.view(channels, joints, persons, window).permute(0, 3, 1, 2).contiguous()
    if theta > 0:
        # CTR-GCN draws the angles as float32 (torch's uniform_ on a float tensor).
        angles = torch.tensor(theta * (2 * uniforms[2:5] - 1), dtype=torch.float32)
        rotation = _rotation_zyx(angles).expand(window, 3, 3)
        frames = data.permute(1, 0, 2, 3).reshape(window, channels, joints * persons)
        data = (rotation @ frames).view(window, channels, joints, persons).permute(1, 0, 2, 3)
    data = data.contiguous().numpy()
    if parents is None:
        return data
    bones = np.zeros_like(data)
    for joint, parent in enumerate(parents):
        bones[:, :, joint] = data[:, :, joint] - data[:, :, parent]
    return bones


def feeder_loop(
    x: Tensor | np.ndarray,
    *,
    window: int = 64,
    p_interval: tuple[float, float] = (0.5, 1.0),
    theta: float = 0.3,
    stream: str = "joint",
    layout: str | Layout = "ntu_stgcn",
    min_length: int = 64,
    uniforms: np.ndarray | Tensor | None = None,
    rng: np.random.Generator | None = None,
) -> Tensor:
    """A batch through CTR-GCN's per-clip feeder, one clip after the other, then stacked as the
    DataLoader's collate does.

    With ``uniforms`` row ``n`` holds clip ``n``'s draws; :class:`skelops.data.SkeletonAugment`
    (``scale = shear = 0``) consumes the same numbers as ``[N, 2]`` crop uniforms followed by
    ``[N, 3]`` angle uniforms from one generator, so
    ``uniforms = torch.cat([torch.rand(N, 2), torch.rand(N, 3)], 1)`` (float64, same seed)
    reproduces its output. Without them each clip draws its five numbers from ``rng`` as the
    feeder draws them in its worker.

    Args:
        x: ``[N, C, T, V, M]`` float32 clips (batch, channels, frames, joints, persons) on the
            CPU, zero padding after each clip's valid frames.
        window, p_interval, theta, min_length: as in :func:`feeder_clip`.
        stream: ``"joint"`` or ``"bone"`` (CTR-GCN's ``bone=True``).
        layout: the layout whose parents give the bones (CTR-GCN's ``ntu_pairs`` are those of
            ``"ntu_stgcn"``).
        uniforms: ``[N, 5]`` numbers in ``[0, 1)``, or ``None`` to draw them from ``rng``.
        rng: random source when ``uniforms`` is ``None`` (default: a fresh, unseeded one).

    Returns:
        ``[N, C, window, V, M]`` float32 on the CPU.
    """
    if isinstance(x, Tensor):
        if x.device.type != "cpu":
            raise ValueError(f"x must be on the CPU (the feeder's workers), got {x.device}")
        x = x.detach().numpy()
    if not isinstance(x, np.ndarray) or x.ndim != 5:
        raise ValueError(
            f"x must be a [N, C, T, V, M] array or tensor, got {getattr(x, 'shape', type(x))}"
        )
    if stream not in ("joint", "bone"):
        raise ValueError(f"stream must be 'joint' or 'bone', got {stream!r}")
    if isinstance(uniforms, Tensor):
        uniforms = uniforms.detach().cpu().numpy()
    if uniforms is not None and uniforms.shape != (x.shape[0], DRAWS_PER_CLIP):
        raise ValueError(
            f"uniforms must have shape ({x.shape[0]}, {DRAWS_PER_CLIP}), got {uniforms.shape}"
        )
    if uniforms is None and rng is None:
        rng = np.random.default_rng()
    parents = get_layout(layout).parents if stream == "bone" else None
    clips = [
        feeder_clip(
            np.array(x[n]),  # the feeder's own copy of the memory-mapped sample
            rng.random(DRAWS_PER_CLIP) if uniforms is None else uniforms[n],
            window=window,
            p_interval=p_interval,
            theta=theta,
            parents=parents,
            min_length=min_length,
        )
        for n in range(x.shape[0])
    ]
    return torch.from_numpy(np.stack(clips))
