"""MP-GCN's panoramic multi-person graph (mgiant/MP-GCN, ``src/dataset/graphs.py``).

``P`` persons, each a copy of a person layout (body joints plus, for group activities, ball and
net nodes), are laid side by side: panoramic node ``p * V_p + j`` is joint ``j`` of person ``p``.
A few inter-person links join them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from .adjacency import (
    Normalization,
    check_float_dtype,
    check_int,
    partition_by_hop,
    spatial_split,
)
from .layouts import Layout, get_layout, hop_matrix, list_layouts

__all__ = ["PanoramicGraph", "mpgcn_adjacency", "panoramic_graph", "to_panoramic"]

InterLink = Literal["pairwise", "linear", "full", "star"]
_INTER_LINKS = ("pairwise", "linear", "full", "star")
_LABELINGS = ("intra-inter", "spatial", "distance")


@dataclass(frozen=True)
class PanoramicGraph:
    """``num_persons`` copies of ``person`` plus inter-person links.

    Attributes:
        person: the per-person layout (it must have a centre).
        num_persons: ``P``.
        inter_edges: inter-person links as pairs of panoramic node indices.
    """

    person: Layout
    num_persons: int
    inter_edges: tuple[tuple[int, int], ...]

    def __post_init__(self) -> None:
        if not isinstance(self.person, Layout):
            raise TypeError(f"person must be a Layout, got {type(self.person).__name__}")
        if self.person.center is None or self.person.base_layout is not None:
            raise ValueError(
                f"person layout {self.person.name!r} must have a centre joint and its own joints "
                "(no base_layout)"
            )
        check_int(self.num_persons, "num_persons", 1)
        edges = tuple((int(a), int(b)) for a, b in self.inter_edges)
        for a, b in edges:
            if not (0 <= a < self.num_nodes and 0 <= b < self.num_nodes) or a == b:
                raise ValueError(
                    f"inter_edges must link two distinct nodes in [0, {self.num_nodes}), "
                    f"got ({a}, {b})"
                )
        object.__setattr__(self, "inter_edges", edges)

    @property
    def nodes_per_person(self) -> int:
        """``V_p``, joints of one person."""
        return self.person.num_joints

    @property
    def num_nodes(self) -> int:
        """``V = P * V_p``."""
        return self.num_persons * self.nodes_per_person

    @property
    def intra_edges(self) -> tuple[tuple[int, int], ...]:
        """Every person's edges, in panoramic node indices."""
        size = self.nodes_per_person
        return tuple(
            (p * size + a, p * size + b)
            for p in range(self.num_persons)
            for a, b in self.person.edges
        )

    @property
    def edges(self) -> tuple[tuple[int, int], ...]:
        """Intra-person edges followed by the inter-person links."""
        return self.intra_edges + self.inter_edges

    @property
    def parents(self) -> tuple[int, ...]:
        """Bone parents of every node (each person's own, offset), for the bone stream."""
        if self.person.parents is None:
            raise ValueError(f"person layout {self.person.name!r} defines no bones")
        size = self.nodes_per_person
        return tuple(p * size + q for p in range(self.num_persons) for q in self.person.parents)

    @property
    def node_centers(self) -> tuple[int, ...]:
        """The centre node of every node's own person (MP-GCN's per-node ``center``)."""
        size = self.nodes_per_person
        return tuple(
            p * size + self.person.center for p in range(self.num_persons) for _ in range(size)
        )

    @property
    def person_index(self) -> torch.Tensor:
        """``[V]`` long tensor: the person each node belongs to."""
        return torch.arange(self.num_persons).repeat_interleave(self.nodes_per_person)


def _parse_name(name: str) -> tuple[str, int]:
    base, _, persons = name.rpartition("-")
    if not base or not persons.isdigit():
        raise ValueError(
            f"a panoramic graph name must read '<layout>-<persons>' (e.g. 'coco_ball-12'), "
            f"got {name!r}"
        )
    return base, int(persons)


def panoramic_graph(
    person: str | Layout = "coco_ball",
    num_persons: int = 12,
    inter_link: InterLink | None = "pairwise",
    *,
    link_joints: Sequence[int] = (0,),
    link_offset: int = 1,
    link_stride: int = 2,
) -> PanoramicGraph:
    """Build MP-GCN's panoramic graph.

    ``person`` may also be a full MP-GCN graph name, ``"<layout>-<persons>"``: ``"coco_ball-12"``
    (Volleyball, ``V = 216``) or ``"coco_ball_net-12"`` (NBA, ``V = 228``); ``num_persons`` is then
    read from it. The defaults are those of MP-GCN's Volleyball and NBA configs
    (``inter_link: pairwise, hop: 1, dilation: 2``, ``base`` 0, the nose).

    Inter-person links join the joints ``link_joints`` of two persons (MP-GCN's ``base``):

    - ``"pairwise"``: person ``i`` to ``i - link_offset`` for ``i`` in
      ``range(link_offset, P, link_stride)`` (MP-GCN's ``hop`` and ``dilation``); the defaults
      pair persons (1, 0), (3, 2), ...;
    - ``"linear"``: a chain ``i -> i - 1``; ``"full"``: every pair; ``"star"``: person 0 to all;
    - ``None``: no links (disconnected persons).

    Args:
        person: person layout, its name, or a panoramic graph name.
        num_persons: ``P >= 1``.
        inter_link: one of the above.
        link_joints: 0-based person joints that carry the links.
        link_offset, link_stride: of the ``"pairwise"`` links.
    """
    if isinstance(person, str) and person not in list_layouts():
        person, num_persons = _parse_name(person)
    layout = get_layout(person)
    check_int(num_persons, "num_persons", 1)
    check_int(link_offset, "link_offset", 1)
    check_int(link_stride, "link_stride", 1)
    if inter_link is not None and inter_link not in _INTER_LINKS:
        raise ValueError(f"inter_link must be one of {_INTER_LINKS} or None, got {inter_link!r}")
    joints = [check_int(j, "link_joints entry", 0) for j in link_joints]
    for j in joints:
        if j >= layout.num_joints:
            raise ValueError(f"link_joints entry must be in [0, {layout.num_joints}), got {j}")

    if inter_link == "pairwise":
        person_pairs = [(i, i - link_offset) for i in range(link_offset, num_persons, link_stride)]
    elif inter_link == "linear":
        person_pairs = [(i, i - 1) for i in range(1, num_persons)]
    elif inter_link == "full":
        person_pairs = [(i, j) for i in range(num_persons) for j in range(i + 1, num_persons)]
    elif inter_link == "star":
        person_pairs = [(0, i) for i in range(1, num_persons)]
    else:
        person_pairs = []
    size = layout.num_joints
    inter_edges = tuple((a * size + j, b * size + j) for j in joints for a, b in person_pairs)
    return PanoramicGraph(person=layout, num_persons=num_persons, inter_edges=inter_edges)


def mpgcn_adjacency(
    graph: str | PanoramicGraph = "coco_ball-12",
    labeling: Literal["intra-inter", "spatial", "distance"] = "intra-inter",
    *,
    max_hop: int = 10,
    normalization: Normalization = "column",
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """MP-GCN's partitioned adjacency of a panoramic graph, ``[K, V, V]``.

    As in MP-GCN, the binary adjacency of all node pairs within ``max_hop`` hops (default 10) is
    column-normalised first (every target divided by the number of nodes within ``max_hop`` of
    it, itself included), then split per hop:

    - ``"intra-inter"``: ``[intra hop 0, intra hop 1, inter hop 1, ..., intra hop H, inter hop
      H]``, ``K = 2 * max_hop + 1``; a pair is intra when both nodes belong to the same person.
      Needs at least two persons.
    - ``"spatial"``: ST-GCN's spatial configuration with each node's own person centre (MP-GCN's
      per-node ``center``); as in MP-GCN the distances to it are those of the hop matrix truncated
      at ``max_hop``. ``K = 2 * max_hop + 1``.
    - ``"distance"``: one subset per hop, ``K = max_hop + 1``.

    MP-GCN's model keeps the first ``max_graph_distance + 1`` subsets (``A[:3]`` for its default
    ``max_graph_distance=2``: intra hop 0, intra hop 1, inter hop 1). ``A[k, v, w]`` carries source
    node ``v`` to target node ``w``, as MP-GCN's ``einsum('nkctv,kvw->nctw')`` does.

    Args:
        graph: a :class:`PanoramicGraph` or a name for :func:`panoramic_graph` with its defaults
            (``"coco_ball-12"``: ``V = 216``, ``"coco_ball_net-12"``: ``V = 228``).
        labeling: one of the above.
        max_hop: largest hop linked (``>= 1``).
        normalization: see :func:`normalize_adjacency`; MP-GCN uses ``"column"``.
        dtype, device: of the returned tensor.
    """
    if isinstance(graph, str):
        graph = panoramic_graph(graph)
    if not isinstance(graph, PanoramicGraph):
        raise TypeError(f"graph must be a PanoramicGraph or a name, got {type(graph).__name__}")
    if labeling not in _LABELINGS:
        raise ValueError(f"labeling must be one of {_LABELINGS}, got {labeling!r}")
    check_int(max_hop, "max_hop", 1)
    check_float_dtype(dtype)

    hops = hop_matrix(graph.num_nodes, graph.edges)
    valid_hops = list(range(max_hop + 1))
    if labeling == "intra-inter":
        if graph.num_persons < 2:
            raise ValueError("labeling 'intra-inter' needs num_persons >= 2, got 1")
        person = graph.person_index
        same_person = person[:, None] == person[None, :]

        def split(mask: torch.Tensor, hop: int) -> list[torch.Tensor]:
            intra = mask & same_person
            return [intra] if hop == 0 else [intra, mask & ~same_person]

    elif labeling == "spatial":
        nodes = torch.arange(graph.num_nodes)
        center_distance = hops[nodes, torch.tensor(graph.node_centers)]
        center_distance[center_distance > max_hop] = float("inf")
        split = spatial_split(center_distance)
    else:

        def split(mask: torch.Tensor, hop: int) -> list[torch.Tensor]:
            return [mask]

    adjacency = partition_by_hop(hops, valid_hops, normalization, split)
    return adjacency.to(dtype=dtype, device=device)


def to_panoramic(x: torch.Tensor) -> torch.Tensor:
    """Lay the persons of ``[N, C, T, V_p, M]`` side by side: ``[N, C, T, M * V_p, 1]``.

    Node ``m * V_p + j`` of the result is joint ``j`` of person ``m`` (MP-GCN's
    ``graph_processing``, ``processing='default'``), matching :class:`PanoramicGraph`.
    """
    if x.dim() != 5:
        raise ValueError(f"x must be [N, C, T, V, M], got shape {tuple(x.shape)}")
    n, c, t, v, m = x.shape
    return x.permute(0, 1, 2, 4, 3).reshape(n, c, t, m * v, 1)
