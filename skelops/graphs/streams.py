"""Input streams of multi-stream models: joint, bone, motion and MP-GCN's JVBM features.

All functions take skeleton tensors ``[N, C, T, V]`` or ``[N, C, T, V, M]`` (batch, channels,
frames, joints, persons); the joint axis is dim 3 in both.
"""

from __future__ import annotations

import torch

from .layouts import Layout, get_layout
from .mpgcn import PanoramicGraph

__all__ = ["bone_stream", "jvbm_features", "motion_stream", "select_joints"]

_JOINT_DIM = 3
_BONE_ANGLE_EPS = 1e-4  # MP-GCN adds it to the bone length before the arccos


def _check_skeleton(x: torch.Tensor, joints: int | None = None, what: str = "x") -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() not in (4, 5):
        raise ValueError(
            f"{what} must be [N, C, T, V] or [N, C, T, V, M], got shape {tuple(x.shape)}"
        )
    if joints is not None and x.shape[_JOINT_DIM] != joints:
        raise ValueError(f"{what} must have V = {joints} joints (dim 3), got {x.shape[_JOINT_DIM]}")


def _gather_joints(x: torch.Tensor, indices: tuple[int, ...]) -> torch.Tensor:
    return x.index_select(_JOINT_DIM, torch.tensor(indices, device=x.device))


def select_joints(x: torch.Tensor, layout: str | Layout) -> torch.Tensor:
    """Gather a subset layout's joints from a tensor of its base layout.

    For ``"ntu_skateformer"``: ``[N, C, T, 25, M]`` NTU joints become the 24 joints in
    SkateFormer's six 4-joint groups (its feeder's ``data[:, :, new_idx]``).
    """
    layout = get_layout(layout)
    if layout.base_indices is None:
        raise ValueError(f"layout {layout.name!r} is not a subset of another layout")
    _check_skeleton(x, get_layout(layout.base_layout).num_joints)
    return _gather_joints(x, layout.base_indices)


def bone_stream(x: torch.Tensor, layout: str | Layout | PanoramicGraph) -> torch.Tensor:
    """Bones ``x[..., v, :] - x[..., parent(v), :]`` with the layout's bone pairs.

    A root (its own parent) gets a zero bone, as in the 2s-AGCN / CTR-GCN / pyskl feeders. For a
    subset layout (``base_layout`` set) ``x`` holds the base layout's joints; bones are taken on
    them and then the subset is selected (SkateFormer's ``j2b`` before its partition). A
    :class:`PanoramicGraph` uses every person's own bones.

    Returns:
        A tensor shaped like ``x`` (with the subset's ``V`` for a subset layout).
    """
    if isinstance(layout, PanoramicGraph):
        parents, subset = layout.parents, None
    else:
        layout = get_layout(layout)
        if layout.parents is None:
            raise ValueError(f"layout {layout.name!r} defines no bones (parents is None)")
        parents, subset = layout.parents, layout.base_indices
    _check_skeleton(x, len(parents))
    bones = x - _gather_joints(x, parents)
    return bones if subset is None else _gather_joints(bones, subset)


def motion_stream(x: torch.Tensor) -> torch.Tensor:
    """Frame differences ``x[:, :, t + 1] - x[:, :, t]``, the last frame zero.

    Joint motion is ``motion_stream(x)``, bone motion ``motion_stream(bone_stream(x, layout))``
    (2s-AGCN / CTR-GCN ``vel``, pyskl ``ToMotion``).
    """
    _check_skeleton(x)
    motion = torch.zeros_like(x)
    motion[:, :, :-1] = x[:, :, 1:] - x[:, :, :-1]
    return motion


def _frame_steps(x: torch.Tensor) -> torch.Tensor:
    # MP-GCN fills both steps for t < T - 2 only, so the last two frames stay zero in both.
    steps = torch.zeros((x.shape[0], 2 * x.shape[1]) + x.shape[2:], dtype=x.dtype, device=x.device)
    frames, channels = x.shape[2], x.shape[1]
    if frames > 2:
        steps[:, :channels, : frames - 2] = x[:, :, 1 : frames - 1] - x[:, :, : frames - 2]
        steps[:, channels:, : frames - 2] = x[:, :, 2:] - x[:, :, : frames - 2]
    return steps


def jvbm_features(x: torch.Tensor, graph: str | Layout | PanoramicGraph) -> torch.Tensor:
    """MP-GCN's four input branches J, V, B, M (``multi_input`` with ``inputs='JVBM'``).

    With ``C`` input channels each branch has ``2C`` channels:

    - J: the joint, then its position relative to its person's centre joint;
    - V: velocity over one frame, ``x[t + 1] - x[t]``, then over two, ``x[t + 2] - x[t]``;
    - B: the bone ``x[v] - x[parent(v)]``, then its angle to each axis,
      ``arccos(bone_c / (|bone| + 1e-4))`` (so a zero bone reads ``pi / 2``);
    - M: bone motion over one and two frames.

    As in MP-GCN the last two frames of V and M are zero.

    Args:
        x: ``[N, C, T, V]`` or ``[N, C, T, V, M]``; for a panoramic graph, the output of
            :func:`~skelops.graphs.to_panoramic`.
        graph: a layout (centre and bone parents) or a :class:`PanoramicGraph` (each node's own
            person centre and bones).

    Returns:
        ``[N, 4, 2C, T, V]`` or ``[N, 4, 2C, T, V, M]``, branches in J, V, B, M order.
    """
    if isinstance(graph, PanoramicGraph):
        centers, parents = graph.node_centers, graph.parents
    else:
        layout = get_layout(graph)
        if layout.center is None or layout.parents is None or layout.base_layout is not None:
            raise ValueError(
                f"jvbm_features needs a layout with a centre and its own bone parents; "
                f"{layout.name!r} does not have them"
            )
        centers, parents = (layout.center,) * layout.num_joints, layout.parents
    _check_skeleton(x, len(parents))

    joint = torch.cat((x, x - _gather_joints(x, centers)), dim=1)
    bone = x - _gather_joints(x, parents)
    length = bone.pow(2).sum(dim=1, keepdim=True).sqrt() + _BONE_ANGLE_EPS
    bone_with_angle = torch.cat((bone, torch.arccos(bone / length)), dim=1)
    return torch.stack((joint, _frame_steps(x), bone_with_angle, _frame_steps(bone)), dim=1)
