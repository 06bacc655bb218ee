"""Batched skeleton transforms for GCN-style training, on the device of the data.

Every function takes a whole batch ``x`` ``[N, C, T, V, M]`` (batch, channels, frames, joints,
persons) and works with tensor operations on its device, so a training step can augment on the
GPU instead of in per-sample numpy data workers. The semantics are those of the official feeders,
cited per function: CTR-GCN (Uason-Chen/CTR-GCN ``feeders/tools.py``), pyskl
(kennymckormick/pyskl ``pyskl/datasets/pipelines``), SkateFormer (KAIST-VICLab/SkateFormer
``feeders/tools.py``) and 2s-AGCN's data preparation (lshiwjx/2s-AGCN ``data_gen``).

Conventions:
    * A zero joint (all channels 0) is missing, a zero person absent, and the frames after a
      clip's last non-zero frame are padding, as in the NTU / pyskl arrays. Linear transforms
      keep zeros zero; :func:`center` re-zeroes missing joints as the official code does.
    * Randomness comes from an optional ``torch.Generator``; random numbers are drawn on the
      generator's device (CPU when none is given) in float64 and then moved to the data, so a
      CPU generator with a fixed seed gives the same augmentation on every device. Each random
      function documents what it draws.
    * ``generator`` may instead be a sequence of ``N`` generators, one per clip: row ``n`` of
      the draws then comes from ``generator[n]``, the numbers that clip would get from that
      generator alone. Randomness keyed to the sample (e.g. by dataset index) makes a batch's
      augmentation independent of how the batch is split over processes. Only the draws loop
      over the clips; the transform itself stays batched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..graphs.layouts import Layout, get_layout
from ..graphs.streams import bone_stream, motion_stream
from ..ops._common import check_tensor
from .pose2d import _positive_int, _range_pair, _uniform, uniform_sample_frames

__all__ = [
    "SkeletonAugment",
    "center",
    "collate_sequences",
    "mirror",
    "pad_persons",
    "person_energy",
    "random_mirror",
    "random_rotation",
    "random_scale",
    "random_shear",
    "select_persons",
    "to_stream",
    "uniform_sample",
    "valid_crop_resize",
    "valid_lengths",
    "view_normalize",
]

STREAMS = ("joint", "bone", "motion", "bone_motion")


def _check_x(x: object, name: str = "x") -> Tensor:
    return check_tensor(name, x, (5,), "[N, C, T, V, M]")


def _check_lengths(lengths: Tensor | None, x: Tensor) -> Tensor:
    if lengths is None:
        return valid_lengths(x)
    lengths = check_tensor("lengths", lengths, (1,), "[N]", floating=False)
    if lengths.is_floating_point() or lengths.dtype == torch.bool:
        raise TypeError(f"lengths must hold integers, got {lengths.dtype}")
    if lengths.shape[0] != x.shape[0]:
        raise ValueError(f"lengths must have N = {x.shape[0]} entries, got {lengths.shape[0]}")
    if lengths.numel() and bool(((lengths < 0) | (lengths > x.shape[2])).any()):
        raise ValueError(f"lengths must lie in [0, T = {x.shape[2]}], got {lengths.tolist()}")
    return lengths.to(device=x.device, dtype=torch.int64)


def _check_joint(value: object, name: str, num_joints: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r})")
    if not 0 <= value < num_joints:
        raise ValueError(f"{name} must be a joint index in [0, {num_joints}), got {value}")
    return value


def _check_generator(
    generator: object, batch: int
) -> torch.Generator | Sequence[torch.Generator] | None:
    """``generator`` as given, after checking that a sequence holds one generator per clip."""
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    if not isinstance(generator, Sequence) or not all(
        isinstance(g, torch.Generator) for g in generator
    ):
        raise TypeError(
            "generator must be a torch.Generator, a sequence of them or None, got "
            f"{type(generator).__name__}"
        )
    if len(generator) != batch:
        raise ValueError(
            f"generator must hold one generator per clip (N = {batch}), got {len(generator)}"
        )
    return generator


def _draw(
    shape: Sequence[int],
    generator: torch.Generator | Sequence[torch.Generator] | None,
    device: torch.device,
) -> Tensor:
    """Float64 uniforms ``[N, ...]`` in ``[0, 1)`` on ``device``: one block from a single
    generator, or row ``n`` from ``generator[n]`` (checked by :func:`_check_generator`)."""
    if generator is None or isinstance(generator, torch.Generator):
        return _uniform(shape, generator, device)
    if not generator:
        return torch.empty(tuple(shape), dtype=torch.float64, device=device)
    return torch.cat([_uniform((1, *shape[1:]), g, device) for g in generator])


def _apply_matrices(x: Tensor, matrices: Tensor) -> Tensor:
    """``x'[n, :, t, v, m] = matrices[n] @ x[n, :, t, v, m]`` for ``matrices`` ``[N, C, C]``."""
    return torch.einsum("nij,njtvm->nitvm", matrices.to(x.dtype), x)


# --------------------------------------------------------------------------------------------
# frames


def valid_lengths(x: Tensor) -> Tensor:
    """``[N]`` int64 number of valid frames of each clip: frames with any non-zero value.

    CTR-GCN's feeders count the frames whose coordinate sum is non-zero and take that many from
    the start; "any non-zero" differs only when the coordinates of a frame cancel exactly.
    """
    x = _check_x(x)
    return (x != 0).any(dim=4).any(dim=3).any(dim=1).sum(dim=1)


def valid_crop_resize(
    x: Tensor,
    window: int,
    p_interval: float | tuple[float, float] = (0.5, 1.0),
    *,
    min_length: int = 64,
    lengths: Tensor | None = None,
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
) -> Tensor:
    """Crop each clip's valid frames and resize them to ``window`` (CTR-GCN's
    ``valid_crop_resize``).

    With ``L`` valid frames (the first ``L`` frames, see :func:`valid_lengths`):

    * ``p_interval`` one number ``p`` (CTR-GCN's test setting, e.g. 0.95): the centre crop
      ``[b, L - b)`` with ``b = int((1 - p) * L / 2)``;
    * a pair ``(low, high)`` (training, e.g. ``(0.5, 1)``): ``p ~ U(low, high)``, a crop of
      ``min(max(floor(L p), min_length), L)`` frames at an offset ``~ randint(L - length + 1)``.

    The crop is then linearly interpolated to ``window`` frames with ``align_corners=False``
    (CTR-GCN's bilinear ``F.interpolate`` over frames). A clip without valid frames stays zero.

    Draws: ``[N, 2]`` uniforms (ratio, offset), only for a pair.

    Args:
        x: ``[N, C, T, V, M]``.
        window: output frames.
        p_interval: see above, in ``(0, 1]``.
        min_length: lower bound of a random crop (CTR-GCN hard-codes 64, SkateFormer's
            ``thres``).
        lengths: ``[N]`` valid frames per clip; default :func:`valid_lengths`.
        generator: random source, or one per clip.

    Returns:
        ``[N, C, window, V, M]``.
    """
    x = _check_x(x)
    generator = _check_generator(generator, x.shape[0])
    window = _positive_int(window, "window")
    min_length = _positive_int(min_length, "min_length")
    lengths = _check_lengths(lengths, x)
    random_crop = not isinstance(p_interval, (int, float))
    low, high = _range_pair(p_interval, "p_interval")
    if not 0.0 < low <= high <= 1.0:
        raise ValueError(f"p_interval must lie in (0, 1], got {p_interval!r}")

    total = lengths.to(torch.float64)
    if random_crop:
        u = _draw((x.shape[0], 2), generator, x.device)
        ratio = u[:, 0] * (high - low) + low
        crop = torch.floor(total * ratio).clamp(min=min_length)
        crop = torch.minimum(crop, total)
        begin = torch.floor(u[:, 1] * (total - crop + 1)).clamp(max=total - crop)
    else:
        begin = torch.floor((1 - low) * total / 2)
        crop = total - 2 * begin
    crop = crop.clamp(min=1)

    # PyTorch's linear source index with align_corners=False, per clip.
    position = torch.arange(window, dtype=torch.float64, device=x.device)
    source = ((position + 0.5) * (crop / window)[:, None] - 0.5).clamp(min=0)  # [N, window]
    first = torch.floor(source).clamp(max=(crop - 1)[:, None])
    weight = (source - first).clamp(max=1.0)
    second = torch.minimum(first + 1, (crop - 1)[:, None])
    first = (first + begin[:, None]).to(torch.int64)
    second = (second + begin[:, None]).to(torch.int64)

    def frames(index: Tensor) -> Tensor:
        index = index.clamp(max=x.shape[2] - 1)[:, None, :, None, None].expand(
            -1, x.shape[1], -1, x.shape[3], x.shape[4]
        )
        return x.gather(2, index)

    weight = weight.to(x.dtype)[:, None, :, None, None]
    resized = frames(first) * (1 - weight) + frames(second) * weight
    return torch.where((lengths > 0)[:, None, None, None, None], resized, 0.0)


def uniform_sample(
    x: Tensor,
    clip_len: int,
    num_clips: int = 1,
    *,
    train: bool = True,
    p_interval: float | tuple[float, float] = 1.0,
    seed: int = 255,
    lengths: Tensor | None = None,
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
) -> Tensor:
    """pyskl's ``UniformSampleFrames`` + ``PoseDecode`` on a batch: ``clip_len`` frames of each
    clip's valid part, ``num_clips`` times (see
    :func:`skelops.data.uniform_sample_frames` for the sampling and what it draws).

    A clip without valid frames gives zero frames.

    Args:
        x: ``[N, C, T, V, M]``.
        clip_len: frames per sample.
        num_clips: samples per clip (pyskl's test-time multi-clip).
        train: random (train) or seeded, length-determined (test) sampling.
        p_interval, seed: as in :func:`skelops.data.uniform_sample_frames`.
        lengths: ``[N]`` valid frames per clip; default :func:`valid_lengths`.
        generator: train-mode random source, or one per clip.

    Returns:
        ``[N * num_clips, C, clip_len, V, M]``, the samples of clip ``n`` in rows
        ``n * num_clips`` to ``(n + 1) * num_clips - 1``.
    """
    x = _check_x(x)
    generator = _check_generator(generator, x.shape[0])
    lengths = _check_lengths(lengths, x).clamp(min=1)

    def sample(lengths: Tensor, generator: torch.Generator | None) -> Tensor:
        return uniform_sample_frames(
            lengths,
            clip_len,
            num_clips,
            train=train,
            p_interval=p_interval,
            seed=seed,
            generator=generator,
        )

    if generator is None or isinstance(generator, torch.Generator) or not train:
        indices = sample(lengths, generator if train else None)
    else:
        indices = torch.cat(
            [sample(lengths[n : n + 1], g) for n, g in enumerate(generator)]
        )  # [N, num_clips, clip_len]
    n, c, _, v, m = x.shape
    index = indices.reshape(n, 1, -1, 1, 1).expand(-1, c, -1, v, m)
    sampled = x.gather(2, index).reshape(n, c, num_clips, clip_len, v, m)
    return sampled.transpose(1, 2).reshape(n * num_clips, c, clip_len, v, m)


# --------------------------------------------------------------------------------------------
# geometry


def _rotation_xyz(angles: Tensor) -> Tensor:
    """CTR-GCN's ``_rot``: ``R = R_z R_y R_x`` with its sign conventions, ``[N, 3]`` -> ``[N, 3,
    3]``."""
    cos, sin = angles.cos().unbind(-1), angles.sin().unbind(-1)
    one, zero = torch.ones_like(angles[:, 0]), torch.zeros_like(angles[:, 0])

    def matrix(rows: tuple[tuple[Tensor, ...], ...]) -> Tensor:
        return torch.stack([torch.stack(row, -1) for row in rows], -2)

    rx = matrix(((one, zero, zero), (zero, cos[0], sin[0]), (zero, -sin[0], cos[0])))
    ry = matrix(((cos[1], zero, -sin[1]), (zero, one, zero), (sin[1], zero, cos[1])))
    rz = matrix(((cos[2], sin[2], zero), (-sin[2], cos[2], zero), (zero, zero, one)))
    return rz @ ry @ rx


def random_rotation(
    x: Tensor,
    theta: float = 0.3,
    *,
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
) -> Tensor:
    """Rotate each clip by random angles (CTR-GCN's ``random_rot``, pyskl's ``RandomRot``).

    3-D (``C = 3``): angles ``~ U(-theta, theta)`` about x, y and z, ``R = R_z R_y R_x`` in
    CTR-GCN's convention, the same for all frames and persons of a clip. 2-D (``C = 2``): one
    angle ``~ U(-theta, theta)``, ``[[cos, -sin], [sin, cos]]`` (pyskl's 2-D matrix; pyskl draws
    ``uniform(-theta)``, i.e. from ``[-theta, 1)``, which reads as a slip).

    Draws: ``[N, C]`` uniforms ``u`` (``[N, 1]`` for 2-D), angles ``theta * (2 u - 1)``.

    Args:
        x: ``[N, C, T, V, M]`` coordinates, ``C`` 2 or 3.
        theta: largest angle in radians, >= 0.
        generator: random source, or one per clip.

    Returns:
        The rotated ``x``.
    """
    x = _check_x(x)
    generator = _check_generator(generator, x.shape[0])
    if x.shape[1] not in (2, 3):
        raise ValueError(f"x must have C = 2 or 3 coordinate channels, got {x.shape[1]}")
    if not theta >= 0:
        raise ValueError(f"theta must be >= 0, got {theta!r}")
    if x.shape[1] == 3:
        angles = theta * (2 * _draw((x.shape[0], 3), generator, x.device) - 1)
        return _apply_matrices(x, _rotation_xyz(angles))
    angle = theta * (2 * _draw((x.shape[0],), generator, x.device) - 1)
    cos, sin = angle.cos(), angle.sin()
    matrices = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    return _apply_matrices(x, matrices)


def random_scale(
    x: Tensor,
    scale: float | Sequence[float] = 0.2,
    *,
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
) -> Tensor:
    """Scale each channel of each clip by ``1 + U(-1, 1) * scale`` (pyskl's ``RandomScale``;
    SkateFormer's ``scale`` with ``p = 1``).

    Draws: ``[N, C]`` uniforms ``u``, factors ``1 + (2 u - 1) * scale``.

    Args:
        x: ``[N, C, T, V, M]``.
        scale: one number for every channel or one per channel, each >= 0.
        generator: random source, or one per clip.
    """
    x = _check_x(x)
    generator = _check_generator(generator, x.shape[0])
    channels = x.shape[1]
    if isinstance(scale, (int, float)) and not isinstance(scale, bool):
        scale = (float(scale),) * channels
    scale = tuple(float(s) for s in scale)
    if len(scale) != channels:
        raise ValueError(f"scale must have one entry per channel (C = {channels}), got {scale}")
    if min(scale) < 0:
        raise ValueError(f"scale must be >= 0, got {scale}")
    limits = torch.tensor(scale, dtype=torch.float64, device=x.device)
    factor = 1 + (2 * _draw((x.shape[0], channels), generator, x.device) - 1) * limits
    return x * factor.to(x.dtype)[:, :, None, None, None]


def random_shear(
    x: Tensor,
    shear: float = 0.5,
    p: float = 0.5,
    *,
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
) -> Tensor:
    """Shear each clip with probability ``p`` (SkateFormer's / AimCLR's ``shear``).

    A sheared clip is multiplied by ``S = I + E``, ``E`` zero on the diagonal and ``U(-shear,
    shear)`` off it: ``x' = S x`` per frame, joint and person.

    Draws: ``[N, 1 + C (C - 1)]`` uniforms: the decision (``u < p`` shears), then the
    off-diagonal entries in row-major order.

    Args:
        x: ``[N, C, T, V, M]`` coordinates.
        shear: largest off-diagonal magnitude, >= 0.
        p: probability of shearing a clip.
        generator: random source, or one per clip.
    """
    x = _check_x(x)
    generator = _check_generator(generator, x.shape[0])
    if not shear >= 0:
        raise ValueError(f"shear must be >= 0, got {shear!r}")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be a probability in [0, 1], got {p!r}")
    n, c = x.shape[:2]
    u = _draw((n, 1 + c * (c - 1)), generator, x.device)
    off_diagonal = ~torch.eye(c, dtype=torch.bool, device=x.device)
    matrices = torch.eye(c, dtype=torch.float64, device=x.device).repeat(n, 1, 1)
    entries = shear * (2 * u[:, 1:] - 1) * (u[:, :1] < p)
    matrices[:, off_diagonal] += entries
    return _apply_matrices(x, matrices)


def _first_valid_frame(x: Tensor, person: int) -> tuple[Tensor, Tensor]:
    """``([N] index of the first frame where ``person`` has a non-zero joint, [N] bool any)``."""
    present = (x[..., person] != 0).any(dim=3).any(dim=1)  # [N, T]
    return present.to(torch.int64).argmax(dim=1), present.any(dim=1)


def center(x: Tensor, joint: int = 1, *, person: int = 0) -> Tensor:
    """Move each clip's origin to ``joint`` of ``person`` in its first valid frame.

    CTR-GCN's ``seq_translation`` (``data/ntu/seq_transformation.py``) and pyskl's
    ``PreNormalize3D(align_center=True)`` take NTU's joint 2 (``spine_mid``, index 1) of the
    first actor's first non-empty frame and re-zero the missing joints afterwards; so does this
    function: a joint whose channels are all zero stays zero. A clip where ``person`` never
    appears is returned unchanged.

    Args:
        x: ``[N, C, T, V, M]``.
        joint: the origin joint (index into ``V``).
        person: the person whose joint is the origin (index into ``M``).
    """
    x = _check_x(x)
    joint = _check_joint(joint, "joint", x.shape[3])
    person = _check_joint(person, "person", x.shape[4])
    frame, found = _first_valid_frame(x, person)
    batch = torch.arange(x.shape[0], device=x.device)
    origin = x[batch, :, frame, joint, person]  # [N, C]
    origin = torch.where(found[:, None], origin, 0.0)
    present = (x != 0).any(dim=1, keepdim=True)
    return torch.where(present, x - origin[:, :, None, None, None], 0.0)


def _mirror_permutation(layout: str | Layout, num_joints: int) -> list[int]:
    skeleton = get_layout(layout)
    if not skeleton.flip_pairs:
        raise ValueError(
            f"layout {skeleton.name!r} has no left/right joint pairs (flip_pairs), so it cannot "
            f"be mirrored"
        )
    if skeleton.num_joints != num_joints:
        raise ValueError(
            f"x must have V = {skeleton.num_joints} joints for layout {skeleton.name!r}, got "
            f"{num_joints}"
        )
    return list(skeleton.flip_permutation)


def mirror(x: Tensor, layout: str | Layout) -> Tensor:
    """Mirror each clip horizontally: channel 0 (``x``) reflected about the clip's mean ``x``
    over its present joints, and the layout's left and right joints (``flip_pairs``) swapped.

    The reflection about the clip's own mean keeps the body where it was, so centred and
    uncentred data both stay in range (pyskl's 2-D ``Flip`` reflects about the image width
    instead, which 3-D or normalised coordinates do not have). Mirroring twice gives ``x``
    back; absent joints (all channels zero) stay zero; channels other than 0 (``y``, ``z``,
    scores) only follow the joint swap.

    Args:
        x: ``[N, C, T, V, M]``.
        layout: the skeleton layout (name or :class:`skelops.graphs.Layout`) with
            ``flip_pairs``.
    """
    x = _check_x(x)
    permutation = _mirror_permutation(layout, x.shape[3])
    present = x.ne(0).any(dim=1, keepdim=True)  # [N, 1, T, V, M]
    count = present.flatten(1).sum(dim=1).clamp(min=1)
    middle = (x[:, :1] * present).flatten(1).sum(dim=1) / count  # [N]
    reflected = torch.where(present[:, 0], 2 * middle.view(-1, 1, 1, 1) - x[:, 0], x[:, 0])
    return torch.cat((reflected[:, None], x[:, 1:]), dim=1)[:, :, :, permutation]


def random_mirror(
    x: Tensor,
    layout: str | Layout,
    p: float = 0.5,
    *,
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
) -> Tensor:
    """:func:`mirror` each clip with probability ``p``.

    Draws: ``[N]`` uniforms ``u``; clip ``n`` is mirrored when ``u[n] < p``.

    Args:
        x: ``[N, C, T, V, M]``.
        layout: the skeleton layout with ``flip_pairs``.
        p: probability of mirroring a clip.
        generator: random source, or one per clip.
    """
    x = _check_x(x)
    generator = _check_generator(generator, x.shape[0])
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be a probability in [0, 1], got {p!r}")
    chosen = _draw((x.shape[0],), generator, x.device) < p
    return torch.where(chosen[:, None, None, None, None], mirror(x, layout), x)


def _align_rotation(vector: Tensor, target: Tensor) -> Tensor:
    """``[N, 3, 3]`` rotations about ``vector x target`` by their angle, turning ``vector``
    ``[N, 3]`` onto the direction ``target`` ``[3]``; the identity where pyskl's
    ``rotation_matrix`` / ``angle_between`` return it (a zero vector or axis)."""
    target = target.to(vector)
    axis = torch.linalg.cross(vector, target.expand_as(vector))
    norm = vector.norm(dim=-1)
    cos = (vector @ target / norm.clamp(min=1e-12)).clamp(-1.0, 1.0)
    angle = torch.arccos(cos)
    identity = (vector.abs().sum(-1) < 1e-6) | (axis.abs().sum(-1) < 1e-6) | (angle.abs() < 1e-6)
    unit = axis / axis.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    zero = torch.zeros_like(unit[:, 0])
    k = torch.stack(
        [
            torch.stack([zero, -unit[:, 2], unit[:, 1]], -1),
            torch.stack([unit[:, 2], zero, -unit[:, 0]], -1),
            torch.stack([-unit[:, 1], unit[:, 0], zero], -1),
        ],
        -2,
    )
    sin, cos = angle.sin()[:, None, None], angle.cos()[:, None, None]
    eye = torch.eye(3, dtype=vector.dtype, device=vector.device)
    rotation = eye + sin * k + (1 - cos) * (k @ k)
    return torch.where(identity[:, None, None], eye, rotation)


def view_normalize(
    x: Tensor,
    spine: tuple[int, int] = (0, 1),
    shoulders: tuple[int, int] = (8, 4),
    *,
    person: int = 0,
) -> Tensor:
    """Rotate each clip into a body-centred view (2s-AGCN's ``pre_normalization``, pyskl's
    ``PreNormalize3D(align_spine=True)``).

    In the first valid frame of ``person``: first the rotation about ``a x z`` turns the spine
    vector ``a = x[spine[1]] - x[spine[0]]`` (NTU: spine_base to spine_mid) onto the ``z`` axis;
    then the rotation about ``b x x`` turns the shoulder vector ``b = x[shoulders[0]] -
    x[shoulders[1]]`` (NTU: right to left shoulder), as it is after the first rotation, onto the
    ``x`` axis. Both rotations act on every frame and person. As in the official code the second
    rotation may tilt the spine off ``z`` when the shoulders are not perpendicular to it; a zero
    vector or an already aligned one gives no rotation. Apply :func:`center` first to rotate
    about the body (the official order).

    Args:
        x: ``[N, 3, T, V, M]`` 3-D coordinates.
        spine: ``(bottom, top)`` joints.
        shoulders: ``(right, left)`` joints.
        person: the person that defines the view.
    """
    x = _check_x(x)
    if x.shape[1] != 3:
        raise ValueError(f"x must have C = 3 coordinate channels, got {x.shape[1]}")
    num_joints = x.shape[3]
    for name, pair in (("spine", spine), ("shoulders", shoulders)):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise TypeError(f"{name} must be a pair of joint indices, got {pair!r}")
        for k, joint in enumerate(pair):
            _check_joint(joint, f"{name}[{k}]", num_joints)
    person = _check_joint(person, "person", x.shape[4])
    frame, _ = _first_valid_frame(x, person)
    batch = torch.arange(x.shape[0], device=x.device)
    reference = x[batch, :, frame, :, person].to(torch.float64)  # [N, 3, V]

    def vector(pair: tuple[int, int], points: Tensor) -> Tensor:
        return points[:, :, pair[1]] - points[:, :, pair[0]]

    to_z = _align_rotation(vector(spine, reference), torch.tensor([0.0, 0.0, 1.0]))
    reference = to_z @ reference
    right_to_left = -vector(shoulders, reference)  # x[right] - x[left], pyskl's order
    to_x = _align_rotation(right_to_left, torch.tensor([1.0, 0.0, 0.0]))
    return _apply_matrices(x, to_x @ to_z)


# --------------------------------------------------------------------------------------------
# persons and streams


def person_energy(x: Tensor) -> Tensor:
    """``[N, M]`` motion energy of each person (2s-AGCN's ``get_nonzero_std``): over the frames
    where the person has a non-zero joint, the standard deviation of each coordinate over
    frames and joints, summed over channels; 0 for an absent person."""
    x = _check_x(x)
    frames = (x != 0).any(dim=3).any(dim=1)  # [N, T, M]
    mask = frames[:, None, :, None, :].to(x.dtype)
    count = (frames.sum(dim=1) * x.shape[3]).to(x.dtype)[:, None]  # [N, 1, M]
    mean = (x * mask).sum(dim=(2, 3)) / count.clamp(min=1)  # [N, C, M]
    variance = ((x - mean[:, :, None, None]) ** 2 * mask).sum(dim=(2, 3)) / count.clamp(min=1)
    return variance.sqrt().sum(dim=1)


def pad_persons(x: Tensor, num_persons: int) -> Tensor:
    """Keep the first ``num_persons`` persons, padding with zero persons (pyskl's
    ``FormatGCNInput(mode='zero')``)."""
    x = _check_x(x)
    num_persons = _positive_int(num_persons, "num_persons")
    if x.shape[4] >= num_persons:
        return x[..., :num_persons]
    return torch.nn.functional.pad(x, (0, num_persons - x.shape[4]))


def select_persons(x: Tensor, num_persons: int) -> Tensor:
    """The ``num_persons`` most active persons of each clip, most active first, padded with zero
    persons (2s-AGCN's ``read_xyz``: ``energy.argsort()[::-1][:max_body]``, ties in input
    order). Activity is :func:`person_energy`."""
    x = _check_x(x)
    num_persons = _positive_int(num_persons, "num_persons")
    order = person_energy(x).sort(dim=1, descending=True, stable=True).indices
    order = order[:, :num_persons]
    n, c, t, v = x.shape[:4]
    selected = x.gather(4, order[:, None, None, None, :].expand(n, c, t, v, -1))
    return pad_persons(selected, num_persons)


def to_stream(x: Tensor, stream: str, layout: str | Layout | None = "ntu_stgcn") -> Tensor:
    """One input stream of a multi-stream model: ``"joint"`` (``x``), ``"bone"``, ``"motion"``
    or ``"bone_motion"``, with :func:`skelops.graphs.bone_stream` and
    :func:`skelops.graphs.motion_stream` (CTR-GCN's ``bone`` / ``vel`` feeder options).
    ``layout`` gives the bones; only the bone streams need it."""
    x = _check_x(x)
    if stream not in STREAMS:
        raise ValueError(f"stream must be one of {STREAMS}, got {stream!r}")
    if layout is None and stream in ("bone", "bone_motion"):
        raise ValueError(f"stream {stream!r} needs a layout (for the bones), got None")
    if stream in ("bone", "bone_motion"):
        x = bone_stream(x, layout)
    if stream in ("motion", "bone_motion"):
        x = motion_stream(x)
    return x


def collate_sequences(
    sequences: Sequence[Tensor | np.ndarray],
    num_frames: int,
    num_persons: int,
    *,
    temporal: str = "resize",
    train: bool = False,
    p_interval: float | tuple[float, float] = 1.0,
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """Batch skeleton sequences of different lengths and person counts.

    The sequences are zero-padded into one tensor, the ``num_persons`` most active persons of
    each are kept (:func:`select_persons`; zero persons pad), and each sequence's ``T_i`` frames
    become ``num_frames``:

    * ``temporal="resize"``: :func:`valid_crop_resize` (CTR-GCN). With the default
      ``p_interval=1.0`` the whole sequence is resized, deterministically; a pair crops at
      random (training).
    * ``temporal="uniform"``: :func:`uniform_sample` (pyskl), seeded when ``train=False``.

    Args:
        sequences: ``[C, T_i, V, M_i]`` tensors (or arrays), same ``C`` and ``V``.
        num_frames: output frames.
        num_persons: output persons.
        temporal: ``"resize"`` or ``"uniform"``.
        train: random (True) or deterministic (False) uniform sampling.
        p_interval: crop ratio, see :func:`valid_crop_resize` / :func:`uniform_sample`.
        generator: random source, or one per sequence.
        device: output device (default: the first sequence's).
        dtype: output dtype (default: the first sequence's if floating, else float32).

    Returns:
        ``[N, C, num_frames, V, num_persons]``.
    """
    if isinstance(sequences, (Tensor, np.ndarray)) or not isinstance(sequences, Sequence):
        raise TypeError(
            f"sequences must be a sequence of [C, T, V, M] tensors, got {type(sequences).__name__}"
        )
    if len(sequences) == 0:
        raise ValueError("sequences must not be empty")
    num_frames = _positive_int(num_frames, "num_frames")
    num_persons = _positive_int(num_persons, "num_persons")
    if temporal not in ("resize", "uniform"):
        raise ValueError(f"temporal must be 'resize' or 'uniform', got {temporal!r}")
    tensors = []
    for i, sequence in enumerate(sequences):
        if isinstance(sequence, np.ndarray):
            sequence = torch.from_numpy(sequence)
        sequence = check_tensor(f"sequences[{i}]", sequence, (4,), "[C, T, V, M]", floating=False)
        if sequence.shape[1] == 0 or sequence.shape[3] == 0:
            raise ValueError(
                f"sequences[{i}] must have at least one frame and one person, got shape "
                f"{tuple(sequence.shape)}"
            )
        first = tensors[0] if tensors else sequence
        for dim, what in ((0, "C"), (2, "V")):
            if sequence.shape[dim] != first.shape[dim]:
                raise ValueError(
                    f"sequences[{i}] must have {what} = {first.shape[dim]} like sequences[0], "
                    f"got shape {tuple(sequence.shape)}"
                )
        tensors.append(sequence)
    if device is None:
        device = tensors[0].device
    if dtype is None:
        dtype = tensors[0].dtype if tensors[0].is_floating_point() else torch.float32
    c, _, v, _ = tensors[0].shape
    longest = max(s.shape[1] for s in tensors)
    most = max(s.shape[3] for s in tensors)
    batch = torch.zeros(len(tensors), c, longest, v, most, dtype=dtype, device=device)
    for i, sequence in enumerate(tensors):
        batch[i, :, : sequence.shape[1], :, : sequence.shape[3]] = sequence.to(device, dtype)
    lengths = torch.tensor([s.shape[1] for s in tensors], device=device)
    batch = select_persons(batch, num_persons)
    if temporal == "resize":
        return valid_crop_resize(
            batch, num_frames, p_interval, min_length=1, lengths=lengths, generator=generator
        )
    return uniform_sample(
        batch,
        num_frames,
        train=train,
        p_interval=p_interval,
        lengths=lengths,
        generator=generator,
    )


# --------------------------------------------------------------------------------------------
# pipeline


@dataclass
class SkeletonAugment:
    """A CTR-GCN-style GCN input pipeline on batches ``[N, C, T, V, M]``, on their device.

    Training (``train=True``): :func:`valid_crop_resize` to ``window`` frames with
    ``p_interval``, then :func:`random_rotation` (``rotation``), :func:`random_scale`
    (``scale``), :func:`random_shear` (``shear`` with probability ``shear_p``), each skipped
    when 0, and the input ``stream`` (:func:`to_stream`). Evaluation (``train=False``): the
    centre crop with ``eval_p_interval`` (CTR-GCN tests with 0.95) resized to ``window``, and
    the stream. ``window=None`` keeps the frames as they are.

    Example::

        augment = SkeletonAugment(window=64, rotation=0.3, p_interval=(0.5, 1))
        x = augment(x.cuda(), generator=generator)          # training batch
        x_eval = augment(x_eval.cuda(), train=False)
    """

    window: int | None = 64
    p_interval: tuple[float, float] = (0.5, 1.0)
    eval_p_interval: float = 1.0
    min_length: int = 64
    rotation: float = 0.3
    scale: float = 0.0
    shear: float = 0.0
    shear_p: float = 0.5
    stream: str = "joint"
    layout: str | Layout = "ntu_stgcn"

    def __post_init__(self) -> None:
        if self.window is not None:
            _positive_int(self.window, "window")
        if self.stream not in STREAMS:
            raise ValueError(f"stream must be one of {STREAMS}, got {self.stream!r}")
        for name in ("rotation", "scale", "shear"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")

    def __call__(
        self,
        x: Tensor,
        *,
        train: bool = True,
        generator: torch.Generator | Sequence[torch.Generator] | None = None,
    ) -> Tensor:
        """Transform a batch ``x`` ``[N, C, T, V, M]``; returns ``[N, C, window, V, M]``.
        ``generator``: one random source, or one per clip (see the module docstring)."""
        x = _check_x(x)
        if self.window is not None:
            p_interval = tuple(self.p_interval) if train else self.eval_p_interval
            x = valid_crop_resize(
                x, self.window, p_interval, min_length=self.min_length, generator=generator
            )
        if train:
            if self.rotation > 0:
                x = random_rotation(x, self.rotation, generator=generator)
            if self.scale > 0:
                x = random_scale(x, self.scale, generator=generator)
            if self.shear > 0:
                x = random_shear(x, self.shear, self.shear_p, generator=generator)
        return to_stream(x, self.stream, self.layout)
