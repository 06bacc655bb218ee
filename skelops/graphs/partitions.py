"""Token partitions for partitioned self-attention (SkateFormer's Skate-Types).

A partition is an index tensor: ``joint_partition [G, J]`` lists the joints of each of ``G``
groups, ``frame_partition [P, W]`` the frames of each of ``P`` windows. Attention runs within
every (frame window x joint group) block of ``W * J`` tokens. The column of an index (its
position inside its group or window) is what SkateFormer's relative-position bias is indexed by.

SkateFormer (Do and Kim, ECCV 2024) combines two joint and two frame partitions into four
Skate-Types: neighbouring joints (consecutive body-part groups) or distant joints (the k-th joint
of every group), times local frames (windows of consecutive frames) or global frames (frames at
a stride of T / W).

Its neighbouring-joint groups are only body parts when the joints are ordered part by part:
:func:`skate_joint_order` gives that order for the layouts SkateFormer was trained on.
"""

from __future__ import annotations

import torch

from .layouts import Layout, get_layout

__all__ = ["frame_windows", "joint_groups", "skate_joint_order", "skate_type_partitions"]

# SkateFormer's NW-UCLA feeder (feeders/feeder_ucla.py, ``partition=True``), 1-based Kinect v1
# joints in five 4-joint groups. The feeder calls them right arm, left arm, right leg, left leg
# and torso; by the Kinect names they are the left arm, right arm, left leg, right leg.
_UCLA_SKATE_GROUPS_ONE_BASED = ((5, 6, 7, 8), (9, 10, 11, 12), (13, 14, 15, 16), (17, 18, 19, 20),
                                (2, 3, 1, 4))  # fmt: skip
# 25-joint NTU layouts share the dataset's joint order; their SkateFormer order is the
# ``ntu_skateformer`` layout's selection (joint 21, spine_shoulder, dropped).
_NTU_LAYOUTS = ("ntu_stgcn", "ntu_pyskl")

_JOINT_KINDS = ("neighbour", "distant")
_FRAME_KINDS = ("local", "global")


def _split(
    total: int, size: int, kind: str, names: tuple[str, str], kinds: tuple[str, str], device
) -> torch.Tensor:
    """``range(total)`` as ``[total // size, size]``: consecutive runs for ``kinds[0]``, runs at
    stride ``total // size`` for ``kinds[1]``; ``names``: the size and total arguments."""
    size_name, total_name = names
    for arg, value in ((size_name, size), (total_name, total)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{arg} must be an int, got {type(value).__name__} ({value!r})")
    if size < 1 or total < 1 or total % size:
        raise ValueError(
            f"{size_name} must be >= 1 and divide {total_name}={total}, got {size_name}={size}"
        )
    if kind not in kinds:
        raise ValueError(f"kind must be one of {kinds}, got {kind!r}")
    index = torch.arange(total, device=device)
    if kind == kinds[0]:
        return index.view(total // size, size)
    return index.view(size, total // size).t().contiguous()


def joint_groups(
    num_joints: int, group_size: int, kind: str = "neighbour", device=None
) -> torch.Tensor:
    """``[num_joints // group_size, group_size]`` int64 joint groups.

    ``"neighbour"``: group ``g`` is joints ``g * J .. g * J + J - 1`` (consecutive joints: with
    joints ordered by body part, whole parts). ``"distant"``: with ``G = num_joints // J``
    groups, group ``g`` is joints ``g, g + G, .., g + (J - 1) G`` (the g-th joint of every
    consecutive block of G joints).
    """
    names = ("group_size", "num_joints")
    return _split(num_joints, group_size, kind, names, _JOINT_KINDS, device)


def frame_windows(num_frames: int, window: int, kind: str = "local", device=None) -> torch.Tensor:
    """``[num_frames // window, window]`` int64 frame windows.

    ``"local"``: window ``p`` is frames ``p * W .. p * W + W - 1``. ``"global"``: with
    ``P = num_frames // W`` windows, window ``p`` is frames ``p, p + P, .., p + (W - 1) P``
    (frames at stride ``T / W`` spanning the whole clip).
    """
    return _split(num_frames, window, kind, ("window", "num_frames"), _FRAME_KINDS, device)


def skate_joint_order(layout: str | Layout) -> list[int]:
    """0-based joints of ``layout``, in the order SkateFormer's feeders put them: whole body parts
    of 4 joints one after the other, so that its neighbouring-joint groups are body parts.

    ``x[:, :, :, skate_joint_order(layout)]`` turns ``[N, C, T, V, M]`` input in the layout's
    order into SkateFormer's. ``"ntu_stgcn"`` / ``"ntu_pyskl"`` (25 NTU joints): 24 joints in six
    groups (the feeder's arms with their hand joints, legs, shoulders and elbows, spine and head;
    spine_shoulder dropped), the ``"ntu_skateformer"`` layout's joints. ``"nw_ucla"`` (20 Kinect
    v1 joints): all 20 in five groups (arms, legs, torso).
    """
    name = get_layout(layout).name
    if name in _NTU_LAYOUTS:
        return list(get_layout("ntu_skateformer").base_indices)
    if name == "nw_ucla":
        return [joint - 1 for group in _UCLA_SKATE_GROUPS_ONE_BASED for joint in group]
    raise ValueError(
        f"layout must be one of {[*_NTU_LAYOUTS, 'nw_ucla']} (SkateFormer's joint orders), "
        f"got {name!r}"
    )


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
