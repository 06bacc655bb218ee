"""Token partitions for partitioned self-attention (SkateFormer's Skate-Types).

A partition is an index tensor: ``joint_partition [G, J]`` lists the joints of each of ``G``
groups, ``frame_partition [P, W]`` the frames of each of ``P`` windows. Attention runs within
every (frame window x joint group) block of ``W * J`` tokens. The column of an index (its
position inside its group or window) is what SkateFormer's relative-position bias is indexed by.

SkateFormer (Do and Kim, ECCV 2024) combines two joint and two frame partitions into four
Skate-Types: neighbouring joints (consecutive body-part groups) or distant joints (the k-th joint
of every group), times local frames (windows of consecutive frames) or global frames (frames at
a stride of T / W).
"""

from __future__ import annotations

import torch

__all__ = ["frame_windows", "joint_groups", "skate_type_partitions"]

_JOINT_KINDS = ("neighbour", "distant")
_FRAME_KINDS = ("local", "global")


def _check_split(name: str, total: int, size: int, what: str) -> int:
    for arg, value in ((name, size), (what, total)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{arg} must be an int, got {type(value).__name__} ({value!r})")
    if size < 1 or total < 1 or total % size:
        raise ValueError(f"{name} must be >= 1 and divide {what}={total}, got {name}={size}")
    return total // size


def joint_groups(
    num_joints: int, group_size: int, kind: str = "neighbour", device=None
) -> torch.Tensor:
    """``[num_joints // group_size, group_size]`` int64 joint groups.

    ``"neighbour"``: group ``g`` is joints ``g * J .. g * J + J - 1`` (consecutive joints: with
    joints ordered by body part, whole parts). ``"distant"``: with ``G = num_joints // J``
    groups, group ``g`` is joints ``g, g + G, .., g + (J - 1) G`` (the g-th joint of every
    consecutive block of G joints).
    """
    groups = _check_split("group_size", num_joints, group_size, "num_joints")
    if kind not in _JOINT_KINDS:
        raise ValueError(f"kind must be one of {_JOINT_KINDS}, got {kind!r}")
    index = torch.arange(num_joints, device=device)
    if kind == "neighbour":
        return index.view(groups, group_size)
    return index.view(group_size, groups).t().contiguous()


def frame_windows(
    num_frames: int, window: int, kind: str = "local", device=None
) -> torch.Tensor:
    """``[num_frames // window, window]`` int64 frame windows.

    ``"local"``: window ``p`` is frames ``p * W .. p * W + W - 1``. ``"global"``: with
    ``P = num_frames // W`` windows, window ``p`` is frames ``p, p + P, .., p + (W - 1) P``
    (frames at stride ``T / W`` spanning the whole clip).
    """
    windows = _check_split("window", num_frames, window, "num_frames")
    if kind not in _FRAME_KINDS:
        raise ValueError(f"kind must be one of {_FRAME_KINDS}, got {kind!r}")
    index = torch.arange(num_frames, device=device)
    if kind == "local":
        return index.view(windows, window)
    return index.view(window, windows).t().contiguous()


def skate_type_partitions(
    skate_type: int,
    num_frames: int,
    num_joints: int,
    size: tuple[int, int],
    device=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(joint_partition, frame_partition)`` of SkateFormer's Skate-Type ``skate_type`` (1-4)
    with partition size ``(W, J)`` (frames, joints per partition), as its official
    ``type_<n>_partition`` functions arrange the tokens: 1 = local frames x neighbouring joints,
    2 = local x distant, 3 = global x neighbouring, 4 = global x distant.
    """
    if skate_type not in (1, 2, 3, 4):
        raise ValueError(f"skate_type must be 1, 2, 3 or 4, got {skate_type!r}")
    window, group = size
    joint_kind = "neighbour" if skate_type in (1, 3) else "distant"
    frame_kind = "local" if skate_type in (1, 2) else "global"
    return (
        joint_groups(num_joints, group, joint_kind, device),
        frame_windows(num_frames, window, frame_kind, device),
    )
