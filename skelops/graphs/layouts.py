"""Skeleton layouts: joints, edges, centre, bone parents, flip pairs and body parts.

A :class:`Layout` is validated on construction; :func:`register_layout` adds one to the registry
that :func:`get_layout` and every builder of :mod:`skelops.graphs` read by name.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import torch

from ._builtin import builtin_layouts

__all__ = ["Layout", "get_layout", "list_layouts", "register_layout"]

_LEFT, _RIGHT = "left_", "right_"


def _as_index(value: object, what: str, upper: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, got {type(value).__name__} ({value!r})")
    if not 0 <= value < upper:
        raise ValueError(f"{what} must be in [0, {upper}), got {value}")
    return value


def _as_pairs(pairs: Iterable[Sequence[int]], what: str, upper: int) -> tuple[tuple[int, int], ...]:
    result = []
    for i, pair in enumerate(pairs):
        if len(pair) != 2:
            raise ValueError(f"{what}[{i}] must be a pair of joint indices, got {pair!r}")
        result.append(
            (
                _as_index(pair[0], f"{what}[{i}][0]", upper),
                _as_index(pair[1], f"{what}[{i}][1]", upper),
            )
        )
    return tuple(result)


def hop_matrix(num_nodes: int, edges: Iterable[tuple[int, int]]) -> torch.Tensor:
    """Exact shortest-path hop counts ``[V, V]`` (float64, ``inf`` where unreachable)."""
    neighbours: list[list[int]] = [[] for _ in range(num_nodes)]
    for a, b in edges:
        neighbours[a].append(b)
        neighbours[b].append(a)
    inf = float("inf")
    rows = []
    for start in range(num_nodes):
        row = [inf] * num_nodes
        row[start] = 0.0
        queue = deque([start])
        while queue:
            node = queue.popleft()
            for n in neighbours[node]:
                if row[n] == inf:
                    row[n] = row[node] + 1
                    queue.append(n)
        rows.append(row)
    return torch.tensor(rows, dtype=torch.float64).reshape(num_nodes, num_nodes)


def _flip_pairs_from_names(joint_names: Sequence[str]) -> tuple[tuple[int, int], ...]:
    index = {name: i for i, name in enumerate(joint_names)}
    return tuple(
        (i, index[_RIGHT + name[len(_LEFT) :]])
        for i, name in enumerate(joint_names)
        if name.startswith(_LEFT) and _RIGHT + name[len(_LEFT) :] in index
    )


@dataclass(frozen=True)
class Layout:
    """A skeleton layout. All joint indices are 0-based.

    Attributes:
        name: registry name.
        joint_names: one name per joint; ``left_*``/``right_*`` names give the default flip pairs.
        edges: undirected bones as ``(child, parent)`` pairs, pointing toward ``center``. Graph
            builders turn them into adjacencies ``A[k, v, w]`` that carry source joint ``v`` to
            target joint ``w``: ``y[..., w] = sum_v x[..., v] * A[k, v, w]``.
        center: centre joint of the spatial partition, or ``None`` for a layout without one
            (it then needs not be connected, and centre-based strategies refuse it).
        parents: bone stream definition, ``bone[v] = x[v] - x[parents[v]]``; a root is its own
            parent (zero bone). ``None`` when the layout defines no bones.
        flip_pairs: ``(left, right)`` joint pairs swapped by a horizontal flip.
        parts: named body-part groups, in order, as ``(name, joints)`` pairs.
        base_layout: for a layout that re-orders a subset of another one (SkateFormer's NTU
            ordering), the name of that layout; joint ``i`` here is joint ``base_indices[i]``
            there. ``parents`` then index the *base* layout, because bones are taken before the
            joints are selected (a selected joint's parent may be dropped).
        base_indices: see ``base_layout``.
    """

    name: str
    joint_names: tuple[str, ...]
    edges: tuple[tuple[int, int], ...]
    center: int | None = None
    parents: tuple[int, ...] | None = None
    flip_pairs: tuple[tuple[int, int], ...] | None = None
    parts: tuple[tuple[str, tuple[int, ...]], ...] = field(default=())
    base_layout: str | None = None
    base_indices: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty string, got {self.name!r}")
        names = tuple(self.joint_names)
        if not names or not all(isinstance(n, str) and n for n in names):
            raise ValueError(f"joint_names must be non-empty strings, got {names!r}")
        if len(set(names)) != len(names):
            duplicates = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"joint_names must be unique, got duplicates {duplicates}")
        num_joints = len(names)
        object.__setattr__(self, "joint_names", names)

        edges = _as_pairs(self.edges, "edges", num_joints)
        seen: set[frozenset[int]] = set()
        for i, (a, b) in enumerate(edges):
            if a == b:
                raise ValueError(f"edges[{i}] is a self-loop ({a}, {b}); self-links are implicit")
            if frozenset((a, b)) in seen:
                raise ValueError(f"edges[{i}] = ({a}, {b}) is listed twice")
            seen.add(frozenset((a, b)))
        object.__setattr__(self, "edges", edges)

        if self.center is not None:
            _as_index(self.center, "center", num_joints)
            to_center = hop_matrix(num_joints, edges)[self.center]
            unreached = torch.nonzero(torch.isinf(to_center)).flatten().tolist()
            if unreached:
                raise ValueError(
                    f"layout {self.name!r} must be connected to its center {self.center}, but "
                    f"joints {unreached} cannot be reached from it"
                )

        self._init_base(num_joints)
        self._init_parents()

        flip = self.flip_pairs
        flip = (
            _flip_pairs_from_names(names)
            if flip is None
            else _as_pairs(flip, "flip_pairs", num_joints)
        )
        flat = [j for pair in flip for j in pair]
        if len(set(flat)) != len(flat):
            raise ValueError(f"flip_pairs must not repeat a joint, got {flip}")
        object.__setattr__(self, "flip_pairs", flip)

        parts = self.parts.items() if isinstance(self.parts, Mapping) else self.parts
        checked_parts = tuple(
            (str(part), tuple(_as_index(j, f"parts[{part!r}]", num_joints) for j in joints))
            for part, joints in parts
        )
        if len({p for p, _ in checked_parts}) != len(checked_parts):
            raise ValueError(f"part names must be unique, got {[p for p, _ in checked_parts]}")
        object.__setattr__(self, "parts", checked_parts)

    def _init_base(self, num_joints: int) -> None:
        if (self.base_layout is None) != (self.base_indices is None):
            raise ValueError("base_layout and base_indices must be given together")
        if self.base_indices is None:
            return
        base_joints = get_layout(self.base_layout).num_joints
        indices = tuple(
            _as_index(i, f"base_indices[{k}]", base_joints) for k, i in enumerate(self.base_indices)
        )
        if len(indices) != num_joints or len(set(indices)) != num_joints:
            raise ValueError(
                f"base_indices must hold {num_joints} distinct joints of {self.base_layout!r}, "
                f"got {indices}"
            )
        object.__setattr__(self, "base_indices", indices)

    def _init_parents(self) -> None:
        if self.parents is None:
            return
        size = self.bone_source_joints
        parents = tuple(_as_index(p, f"parents[{v}]", size) for v, p in enumerate(self.parents))
        if len(parents) != size:
            raise ValueError(f"parents must have {size} entries, got {len(parents)}")
        for start in range(size):
            chain = {start}
            joint = start
            while parents[joint] != joint:
                joint = parents[joint]
                if joint in chain:
                    raise ValueError(f"parents form a cycle through joint {joint}")
                chain.add(joint)
        object.__setattr__(self, "parents", parents)

    @property
    def num_joints(self) -> int:
        """Number of joints ``V``."""
        return len(self.joint_names)

    @property
    def bone_source_joints(self) -> int:
        """Joints of the tensors the bone stream reads: the base layout's for a subset layout."""
        if self.base_layout is None:
            return self.num_joints
        return get_layout(self.base_layout).num_joints

    @property
    def bone_pairs(self) -> tuple[tuple[int, int], ...]:
        """``(joint, parent)`` pairs of the bone stream, roots included (as ``(r, r)``)."""
        if self.parents is None:
            raise ValueError(f"layout {self.name!r} defines no bones (parents is None)")
        return tuple(enumerate(self.parents))

    @property
    def flip_permutation(self) -> tuple[int, ...]:
        """Joint permutation of a horizontal flip: ``x_flipped = x[..., perm, :]``."""
        perm = list(range(self.num_joints))
        for left, right in self.flip_pairs:
            perm[left], perm[right] = right, left
        return tuple(perm)

    def part(self, name: str) -> tuple[int, ...]:
        """Joints of the body part ``name``."""
        for part, joints in self.parts:
            if part == name:
                return joints
        raise KeyError(f"layout {self.name!r} has no part {name!r}; parts: {self.part_names}")

    @property
    def part_names(self) -> tuple[str, ...]:
        """Names of the body parts, in order."""
        return tuple(p for p, _ in self.parts)


_REGISTRY: dict[str, Layout] = {}


def register_layout(
    name: str,
    edges: Iterable[Sequence[int]],
    center: int | None = None,
    *,
    num_joints: int | None = None,
    joint_names: Sequence[str] | None = None,
    parents: Sequence[int] | None = None,
    flip_pairs: Iterable[Sequence[int]] | None = None,
    parts: Mapping[str, Sequence[int]] | None = None,
    edges_one_based: bool = False,
    overwrite: bool = False,
) -> Layout:
    """Validate a layout and register it under ``name``.

    Args:
        name: registry name; re-using a name raises unless ``overwrite=True``.
        edges: bones as ``(child, parent)`` pairs, 0-based unless ``edges_one_based=True`` (only
            the edges are then read 1-based; ``center``, ``parents``, ``flip_pairs`` and ``parts``
            stay 0-based).
        center: centre joint; when given, every joint must be reachable from it.
        num_joints: number of joints; defaults to ``len(joint_names)``, else to the largest edge
            index plus one.
        joint_names: defaults to ``joint_0``, ``joint_1``, ...
        parents: bone parents (see :class:`Layout`); ``None`` for no bone stream.
        flip_pairs: ``(left, right)`` pairs; defaults to the ``left_*``/``right_*`` names.
        parts: named joint groups.
        edges_one_based: read ``edges`` as 1-based.
        overwrite: replace an existing layout of the same name.

    Returns:
        The registered :class:`Layout`. Raises ``ValueError``/``TypeError`` on invalid input
        (index out of range, disconnected graph with a centre, duplicate or self-loop edge, ...).
    """
    if not overwrite and name in _REGISTRY:
        raise ValueError(f"a layout named {name!r} is already registered; pass overwrite=True")
    edge_list = [tuple(e) for e in edges]
    if edges_one_based:
        for i, pair in enumerate(edge_list):
            if any(isinstance(j, int) and j < 1 for j in pair):
                raise ValueError(f"edges[{i}] = {pair} is not 1-based (edges_one_based=True)")
        edge_list = [tuple(j - 1 for j in pair) for pair in edge_list]
    if joint_names is None:
        if num_joints is None:
            num_joints = 1 + max((j for pair in edge_list for j in pair), default=-1)
        joint_names = [f"joint_{i}" for i in range(num_joints)]
    elif num_joints is not None and num_joints != len(joint_names):
        raise ValueError(
            f"num_joints ({num_joints}) does not match len(joint_names) ({len(joint_names)})"
        )
    layout = Layout(
        name=name,
        joint_names=tuple(joint_names),
        edges=tuple(edge_list),
        center=center,
        parents=None if parents is None else tuple(parents),
        flip_pairs=None if flip_pairs is None else tuple(tuple(p) for p in flip_pairs),
        parts=tuple((k, tuple(v)) for k, v in (parts or {}).items()),
    )
    _REGISTRY[name] = layout
    return layout


def get_layout(layout: str | Layout) -> Layout:
    """The registered layout called ``layout`` (a :class:`Layout` is returned as is)."""
    if isinstance(layout, Layout):
        return layout
    if not isinstance(layout, str):
        raise TypeError(f"layout must be a name or a Layout, got {type(layout).__name__}")
    try:
        return _REGISTRY[layout]
    except KeyError:
        raise KeyError(
            f"unknown layout {layout!r}; registered layouts: {', '.join(list_layouts())}"
        ) from None


def list_layouts() -> tuple[str, ...]:
    """Names of the registered layouts, sorted."""
    return tuple(sorted(_REGISTRY))


def _register_builtins() -> None:
    # In order: a subset layout validates against its already registered base.
    for spec in builtin_layouts():
        _REGISTRY[spec["name"]] = Layout(**spec)


_register_builtins()
