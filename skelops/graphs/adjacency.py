"""Hop distances, partition strategies, normalisations and dilated kernels.

Every adjacency here is ``A[k, v, w]``: subset ``k`` carries source joint ``v`` to target joint
``w``, ``y[..., w] = sum_v x[..., v] * A[k, v, w]`` (ST-GCN's ``einsum('nkctv,kvw->nctw')``).
Sources that write ``A @ x`` (CTR-GCN, HD-GCN: ``A[target, source]``) are transposed into this
convention.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch

from .layouts import Layout, get_layout, hop_matrix

__all__ = [
    "build_adjacency",
    "dilated_adjacency",
    "hop_distance",
    "normalize_adjacency",
]

Strategy = Literal["uniform", "distance", "spatial", "inward_outward"]
Normalization = Literal["column", "row", "symmetric", "none"]

_STGCN_STRATEGIES = ("uniform", "distance", "spatial")
_STRATEGIES = (*_STGCN_STRATEGIES, "inward_outward")
_NORMALIZATIONS = ("column", "row", "symmetric", "none")


def check_int(value: object, what: str, minimum: int) -> int:
    """``value`` as an int ``>= minimum``, else a TypeError/ValueError naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, got {type(value).__name__} ({value!r})")
    if value < minimum:
        raise ValueError(f"{what} must be >= {minimum}, got {value}")
    return value


def check_float_dtype(dtype: torch.dtype) -> torch.dtype:
    """``dtype`` if it is a floating-point torch dtype, else a TypeError."""
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
    return dtype


def hop_distance(
    layout: str | Layout,
    max_hop: int | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Hop (shortest-path) distances between the joints of ``layout``.

    Args:
        layout: a layout or its registered name.
        max_hop: distances above it become ``inf``, as in ST-GCN's ``get_hop_distance``;
            ``None`` keeps every finite distance.
        dtype, device: of the returned tensor.

    Returns:
        ``[V, V]`` symmetric tensor; ``inf`` marks joints out of reach (or beyond ``max_hop``).
    """
    layout = get_layout(layout)
    hops = hop_matrix(layout.num_joints, layout.edges)
    if max_hop is not None:
        check_int(max_hop, "max_hop", 0)
        hops[hops > max_hop] = float("inf")
    return hops.to(dtype=check_float_dtype(dtype), device=device)


def normalize_adjacency(adjacency: torch.Tensor, normalization: Normalization) -> torch.Tensor:
    """Normalise ``[..., V, V]`` adjacencies ``A[..., v, w]`` (source ``v``, target ``w``).

    Args:
        adjacency: one or a stack of square matrices in the ``A[v, w]`` convention.
        normalization:
            ``"column"``: divide by the target's in-degree, ``A[v, w] / sum_v' A[v', w]``, so
            every target averages its sources (ST-GCN's ``normalize_digraph``, which computes
            ``A D^-1`` with ``D`` the column sums);
            ``"row"``: divide by the source's out-degree, ``A[v, w] / sum_w' A[v, w']``
            (CTR-GCN's and HD-GCN's ``normalize_digraph``, read in this convention);
            ``"symmetric"``: ``D_out^-1/2 A D_in^-1/2``, i.e. ``D^-1/2 A D^-1/2`` for a symmetric
            ``A``;
            ``"none"``: unchanged.
            Joints of zero degree keep zero entries.

    Returns:
        A tensor of the same shape and dtype.
    """
    if normalization not in _NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {_NORMALIZATIONS}, got {normalization!r}")
    if adjacency.dim() < 2 or adjacency.shape[-1] != adjacency.shape[-2]:
        raise ValueError(f"adjacency must be [..., V, V], got shape {tuple(adjacency.shape)}")
    if normalization == "none":
        return adjacency

    def inverse(degree: torch.Tensor, power: float) -> torch.Tensor:
        return torch.where(degree > 0, degree.pow(-power), torch.zeros_like(degree))

    in_degree = adjacency.sum(dim=-2, keepdim=True)
    out_degree = adjacency.sum(dim=-1, keepdim=True)
    if normalization == "column":
        return adjacency * inverse(in_degree, 1.0)
    if normalization == "row":
        return adjacency * inverse(out_degree, 1.0)
    return adjacency * inverse(out_degree, 0.5) * inverse(in_degree, 0.5)


Split = Callable[[torch.Tensor, int], list[torch.Tensor]]


def hop_union(hops: torch.Tensor, valid_hops: Sequence[int]) -> torch.Tensor:
    """Binary ``[V, V]`` adjacency of the joint pairs whose hop distance is in ``valid_hops``."""
    return torch.isin(hops, torch.tensor(valid_hops, dtype=hops.dtype)).to(hops.dtype)


def partition_by_hop(
    hops: torch.Tensor, valid_hops: Sequence[int], normalization: Normalization, split: Split
) -> torch.Tensor:
    """ST-GCN-style partition: normalise the union of all valid hops, then split each hop.

    ``split(mask, hop)`` turns the boolean ``[V, V]`` mask of joint pairs ``hop`` apart into the
    masks of that hop's subsets. Returns ``[K, V, V]`` float64.
    """
    normalized = normalize_adjacency(hop_union(hops, valid_hops), normalization)
    subsets = [normalized * mask for hop in valid_hops for mask in split(hops == hop, hop)]
    return torch.stack(subsets)


def spatial_split(center_distance: torch.Tensor) -> Split:
    """ST-GCN's spatial configuration, from each joint's distance to its centre.

    Hop 0 gives the root (self) subset; every other hop gives two subsets: sources at least as
    far from the centre as the target (ST-GCN's ``a_root + a_close``) and sources nearer the
    centre than the target (``a_further``). ``inf == inf`` counts as "as far", which is what
    makes ST-GCN's truncated distances put far-away joints in the first subset.
    """
    source = center_distance[:, None]
    target = center_distance[None, :]

    def split(mask: torch.Tensor, hop: int) -> list[torch.Tensor]:
        if hop == 0:
            return [mask]
        return [mask & (source >= target), mask & (source < target)]

    return split


def _inward_outward(layout: Layout, normalization: Normalization) -> torch.Tensor:
    inward = torch.zeros(layout.num_joints, layout.num_joints, dtype=torch.float64)
    for child, parent in layout.edges:
        inward[child, parent] = 1
    identity = torch.eye(layout.num_joints, dtype=torch.float64)
    return torch.stack(
        (
            identity,
            normalize_adjacency(inward, normalization),
            normalize_adjacency(inward.T.contiguous(), normalization),
        )
    )


def build_adjacency(
    layout: str | Layout,
    strategy: Strategy = "spatial",
    *,
    max_hop: int = 1,
    dilation: int = 1,
    normalization: Normalization | None = None,
    legacy_stgcn: bool = False,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Partitioned adjacency ``[K, V, V]`` of a layout.

    ``A[k, v, w]`` carries source joint ``v`` to target joint ``w`` in subset ``k``:
    ``y[..., w] = sum_v x[..., v] * A[k, v, w]``.

    Strategies (ST-GCN, yysijie/st-gcn ``net/utils/graph.py``; the valid hops are
    ``range(0, max_hop + 1, dilation)``, and the union of all of them is normalised before it is
    split, as ST-GCN does):

    - ``"uniform"``: one subset, ``K = 1``.
    - ``"distance"``: one subset per valid hop.
    - ``"spatial"``: hop 0 (self), then per further hop two subsets: sources at least as far
      from ``layout.center`` as the target, and sources nearer to it. ``K = 2 * hops - 1``.
      Needs a centre.
    - ``"inward_outward"``: CTR-GCN's graph (Uason-Chen/CTR-GCN ``graph/tools.py``
      ``get_spatial_graph``, also pyskl's ``spatial`` mode): identity, inward (``edges`` as
      listed, child to parent) and outward (parent to child), each directed subset normalised on
      its own and the identity left as is; ``K = 3``. With the default ``"row"`` normalisation
      it equals the transpose of CTR-GCN's ``Graph().A``, which CTR-GCN applies as
      ``A[target, source]``. pyskl's GCNs apply the very same matrices as ``A[source, target]``;
      that reading equals ``normalization="column"`` with subsets 1 and 2 swapped
      (``A[[0, 2, 1]]``). Takes no ``max_hop`` or ``dilation`` (they must stay 1).

    Args:
        layout: a layout or its registered name.
        strategy: one of the above.
        max_hop: largest hop distance linked (``>= 0``).
        dilation: step between the linked hops (``>= 1``).
        normalization: ``"column"``, ``"row"``, ``"symmetric"`` or ``"none"`` (see
            :func:`normalize_adjacency`). ``None`` picks the official one: ``"column"`` for the
            ST-GCN strategies, ``"row"`` for ``"inward_outward"``.
        legacy_stgcn: reproduce ST-GCN's spatial partition exactly, quirk included: its
            distances to the centre come from the hop matrix truncated at ``max_hop``, so every
            joint further than ``max_hop`` from the centre counts as being at the same (infinite)
            distance and lands in the first subset. On NTU with ``max_hop=1`` this gives 40
            non-zeros in subset 1 and 8 in subset 2, against 24/24 with true distances. Only
            valid with ``strategy="spatial"``.
        dtype, device: of the returned tensor (float32 by default).

    Returns:
        ``[K, V, V]`` tensor.
    """
    layout = get_layout(layout)
    if strategy not in _STRATEGIES:
        raise ValueError(f"strategy must be one of {_STRATEGIES}, got {strategy!r}")
    check_int(max_hop, "max_hop", 0)
    check_int(dilation, "dilation", 1)
    check_float_dtype(dtype)
    if legacy_stgcn and strategy != "spatial":
        raise ValueError(f"legacy_stgcn=True only applies to strategy 'spatial', got {strategy!r}")
    if normalization is None:
        normalization = "row" if strategy == "inward_outward" else "column"

    if strategy == "inward_outward":
        if max_hop != 1 or dilation != 1:
            raise ValueError(
                "strategy 'inward_outward' links direct edges only: max_hop and dilation must be "
                f"1, got max_hop={max_hop}, dilation={dilation}"
            )
        adjacency = _inward_outward(layout, normalization)
        return adjacency.to(dtype=dtype, device=device)

    hops = hop_matrix(layout.num_joints, layout.edges)
    valid_hops = list(range(0, max_hop + 1, dilation))
    if strategy == "uniform":
        adjacency = normalize_adjacency(hop_union(hops, valid_hops), normalization)[None]
    elif strategy == "distance":
        adjacency = partition_by_hop(hops, valid_hops, normalization, lambda mask, hop: [mask])
    else:
        if layout.center is None:
            raise ValueError(
                f"strategy 'spatial' needs a centre joint, but layout {layout.name!r} has none"
            )
        center_distance = hops[:, layout.center].clone()
        if legacy_stgcn:
            center_distance[center_distance > max_hop] = float("inf")
        adjacency = partition_by_hop(
            hops, valid_hops, normalization, spatial_split(center_distance)
        )
    return adjacency.to(dtype=dtype, device=device)


def dilated_adjacency(
    layout: str | Layout,
    dilations: Sequence[int],
    strategy: Literal["uniform", "distance", "spatial"] = "spatial",
    *,
    normalization: Normalization | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Dilated kernels for graph convolution (STC-Net's DK-GC), ``[D, K, V, V]``.

    For each dilation ``d`` the kernel links every joint to itself and to the joints exactly
    ``d`` hops away, partitioned and normalised as :func:`build_adjacency` does with
    ``max_hop=d, dilation=d`` (so ``d = 1`` is the ordinary one-hop kernel). Every dilation has
    the same ``K`` subsets, so one set of ``K`` subset weights serves all of them: the receptive
    field grows with no extra parameters. ``A[i, k, v, w]`` carries source ``v`` to target ``w``
    in subset ``k`` of dilation ``dilations[i]``.

    Args:
        layout: a layout or its registered name.
        dilations: hop distances, each ``>= 1`` and at most the layout's diameter (the largest
            hop distance between two of its joints): a larger one would link no joint pair.
        strategy: ``"uniform"``, ``"distance"`` or ``"spatial"``.
        normalization: as in :func:`build_adjacency` (default ``"column"``).
        dtype, device: of the returned tensor.
    """
    if isinstance(dilations, int) or not isinstance(dilations, Sequence) or not dilations:
        raise TypeError(f"dilations must be a non-empty sequence of ints, got {dilations!r}")
    if strategy not in _STGCN_STRATEGIES:
        raise ValueError(f"strategy must be one of {_STGCN_STRATEGIES}, got {strategy!r}")
    layout = get_layout(layout)
    hops = hop_distance(layout)
    diameter = int(hops[torch.isfinite(hops)].max())
    for i, d in enumerate(dilations):
        check_int(d, f"dilations[{i}]", 1)
        if d > diameter:
            raise ValueError(
                f"dilations[{i}]={d} exceeds the diameter of layout {layout.name!r} "
                f"({diameter} hops): no two of its joints are {d} hops apart"
            )
    return torch.stack(
        [
            build_adjacency(
                layout,
                strategy,
                max_hop=d,
                dilation=d,
                normalization=normalization,
                dtype=dtype,
                device=device,
            )
            for d in dilations
        ]
    )
