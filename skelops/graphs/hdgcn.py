"""HD-GCN's hierarchically decomposed graph (Jho-Yonsei/HD-GCN, ``graph/tools.py``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .adjacency import check_float_dtype, check_int
from .layouts import Layout, get_layout, hop_matrix

__all__ = ["hdgcn_adjacency", "hdgcn_groups"]


def hdgcn_groups(
    layout: str | Layout = "ntu_pyskl", center: int = 20, num_groups: int = 7
) -> tuple[tuple[int, ...], ...]:
    """Hierarchy groups ``G_0 .. G_{num_groups-1}`` of HD-GCN: joints by hop distance from a centre.

    ``G_i`` holds the joints ``i`` hops from ``center``; the last group also takes every joint
    further away. On ``"ntu_pyskl"`` this reproduces HD-GCN's hand-written ``get_groups`` for its
    three centres of mass, NTU joints 21, 1 and 2 (1-based), i.e. ``center=20``, ``0`` and ``1``:
    HD-GCN's groups follow the pyskl hand edges (22 and 23 both one hop from 8).

    Args:
        layout: a layout or its registered name; it must be connected to ``center``.
        center: 0-based centre-of-mass joint.
        num_groups: number of groups (``>= 2``).

    Returns:
        ``num_groups`` tuples of sorted 0-based joint indices.
    """
    layout = get_layout(layout)
    check_int(num_groups, "num_groups", 2)
    check_int(center, "center", 0)
    if center >= layout.num_joints:
        raise ValueError(f"center must be in [0, {layout.num_joints}), got {center}")
    distance = hop_matrix(layout.num_joints, layout.edges)[center]
    if torch.isinf(distance).any():
        unreached = torch.nonzero(torch.isinf(distance)).flatten().tolist()
        raise ValueError(
            f"layout {layout.name!r} must be connected to center {center}; joints {unreached} "
            "cannot be reached"
        )
    depth = int(distance.max())
    if depth + 1 < num_groups:
        raise ValueError(
            f"num_groups must be at most {depth + 1} (hops from center {center} on "
            f"{layout.name!r}, plus one), got {num_groups}"
        )
    level = distance.clamp(max=num_groups - 1).long().tolist()
    return tuple(
        tuple(j for j in range(layout.num_joints) if level[j] == g) for g in range(num_groups)
    )


def hdgcn_adjacency(
    layout: str | Layout = "ntu_pyskl",
    center: int = 20,
    groups: Sequence[Sequence[int]] | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """HD-GCN's hierarchically decomposed adjacency, ``[L, 3, V, V]`` with ``L = len(groups) - 1``.

    For layer ``i`` (between groups ``G_i`` and ``G_{i+1}``) the three subsets are:

    0. the identity on ``G_i`` and ``G_{i+1}`` (not normalised);
    1. forward ``G_i -> G_{i+1}``: every joint of ``G_i`` to every joint of ``G_{i+1}``;
    2. reverse ``G_{i+1} -> G_i``.

    Subsets 1 and 2 are normalised by the source's out-degree, as HD-GCN's ``normalize_digraph``
    does on its ``A[target, source]`` matrices: ``A[i, 1, v, w] = 1 / |G_{i+1}|`` and
    ``A[i, 2, v, w] = 1 / |G_i|``. Here ``A[i, k, v, w]`` carries source ``v`` to target ``w``
    (the transpose of HD-GCN's ``Graph().A``). With the NTU defaults the shape is
    ``[6, 3, 25, 25]``.

    Args:
        layout: a layout or its registered name.
        center: 0-based centre of mass used to build the groups (HD-GCN's ``CoM`` 21, 1, 2 are
            ``20``, ``0``, ``1``); ignored when ``groups`` is given.
        groups: explicit hierarchy, disjoint non-empty lists of 0-based joints (at least two);
            defaults to ``hdgcn_groups(layout, center)``.
        dtype, device: of the returned tensor.
    """
    layout = get_layout(layout)
    check_float_dtype(dtype)
    if groups is None:
        groups = hdgcn_groups(layout, center)
    groups = [list(g) for g in groups]
    if len(groups) < 2 or not all(groups):
        raise ValueError(f"groups must be at least two non-empty joint lists, got {groups}")
    flat = [j for g in groups for j in g]
    for j in flat:
        check_int(j, "groups joint", 0)
        if j >= layout.num_joints:
            raise ValueError(f"groups joint must be in [0, {layout.num_joints}), got {j}")
    if len(set(flat)) != len(flat):
        raise ValueError(f"groups must be disjoint, got {groups}")

    size = layout.num_joints
    layers = []
    for lower, upper in zip(groups[:-1], groups[1:], strict=False):
        identity = torch.zeros(size, size, dtype=torch.float64)
        identity[lower + upper, lower + upper] = 1
        forward = torch.zeros(size, size, dtype=torch.float64)
        forward[torch.tensor(lower)[:, None], torch.tensor(upper)[None, :]] = 1 / len(upper)
        reverse = torch.zeros(size, size, dtype=torch.float64)
        reverse[torch.tensor(upper)[:, None], torch.tensor(lower)[None, :]] = 1 / len(lower)
        layers.append(torch.stack((identity, forward, reverse)))
    return torch.stack(layers).to(dtype=dtype, device=device)
