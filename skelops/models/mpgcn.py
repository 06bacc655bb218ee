"""MP-GCN: Multi-person Panoramic GCN (Li, Chang, Li and Su, "Skeleton-based Group Activity
Recognition via Spatial-Temporal Panoramic Graph", ECCV 2024).

Reproduces the architecture of the official implementation, mgiant/MP-GCN (commit 341740a):
``src/model/MPGCN/nets.py`` (``MPGCN``, ``Input_Branch``, ``Basic_Block``, ``init_param``),
``src/model/MPGCN/blocks.py`` (``Spatial_Basic_Block``, ``SpatialGraphConv``,
``Temporal_MultiScale_Block``, ``TemporalConv``, ``ST_Person_Attention``), the graph
``src/dataset/graphs.py`` (:func:`skelops.graphs.mpgcn_adjacency`), the inputs
``src/dataset/utils.py`` (:func:`skelops.graphs.to_panoramic`,
:func:`skelops.graphs.jvbm_features`) and the configs ``config/volleyball/mpgcn.yaml`` and
``config/nba/mpgcn.yaml``:

- the persons of a clip (body keypoints plus ball, and net for NBA) are laid side by side as
  one panoramic graph (``V = 12 x 18 = 216`` on Volleyball, ``12 x 19 = 228`` on NBA) with
  inter-person links; the adjacency keeps MP-GCN's first three subsets (intra-person hop 0,
  intra-person hop 1, inter-person hop 1);
- four input branches J, V, B, M, each a ``BatchNorm2d`` and three blocks (C -> 64, 64 -> 64,
  64 -> 32); the branches are concatenated to 128 channels; the main stream is six blocks
  (128 -> 128 with temporal stride 2, 128, 128, 128 -> 256 with stride 2, 256, 256); global
  average pooling, the mean over the ``M`` panoramic samples, a linear classifier;
- every block is a spatial graph convolution, a multi-scale temporal convolution and the
  spatial-temporal person attention.

The spatial graph convolution runs through :func:`skelops.graph_conv` with the **sparse**
adjacency (per-subset CSR, :class:`skelops.graphs.SparseAdjacency`): the panoramic graph has
660 (Volleyball) or 696 (NBA) stored entries in its three ``V x V`` subsets, against 139,968 or
155,952 dense ones. The learnable edge importance keeps MP-GCN's dense ``[3, V, V]`` parameter
(it is most of the parameter count) but only its entries on the graph's edges are read: each
forward multiplies the stored values by ``importance[subset, source, target]``, which equals
the official ``A * edge`` (``A`` is zero elsewhere, so the other entries never influence the
output and get zero gradient in the official model too). ``sparse=False`` runs the same weights
with the dense ``A * importance``.

Quirks of the official code reproduced here (read from the source, not from the paper):

- the configs' ``model_args: dilation: [2, 3]`` is silently ignored: the temporal block's
  argument is called ``dilations`` (default ``[1, 2]``), so ``dilation`` lands in ``**kwargs``.
  The effective dilations are **1 and 2**, the default here (``dilations=(1, 2)``);
- ``kernel_size: [3, 2]``: temporal window 3 and ``max_graph_distance`` 2, i.e. ``A[:3]``;
- ``reduct_ratio`` of the person attention is 2 on Volleyball and 1 on NBA;
- the person attention pools over body parts: per person ``left_arm, right_arm, left_leg,
  right_leg, head, ball`` on Volleyball (``part='body'``, the graph's default: 72 parts), one
  part per person on NBA (``part: person``: 12 parts);
- the graph convolution's bias is added before aggregation (it is the bias of
  ``Conv2d(C_in, 3 * C_out, 1)``, followed by ``einsum('nkctv,kvw->nctw')``), so it is scaled by
  the column sums of ``A * importance``;
- the temporal block ends without a ReLU; the attention's ``relu(bn(x * att) + x)`` follows.

Parameter counts equal the official model's (counted by building it from the official code
with the official configs): 4,204,584 (Volleyball: 4 branches of 4 channels, 8 classes) and
4,921,241 (NBA: 4 branches of 6 channels, 9 classes); the official ``ST_Person_Attention``
also stores its part index and averaging matrix as frozen ``nn.Parameter`` s (not counted; here
buffers). With official weights copied in (:func:`load_official_state_dict`) the logits equal
the official model's in float64 (2e-14 of their magnitude, eval and train mode; the
train-mode gradients of the weights and edge importances to 1e-14).

Conventions: inputs are the official ``[N, I, C, T, V, M]`` (``I = 4`` branches in J, V, B, M
order, ``C`` channels per branch, ``T`` frames, ``V`` panoramic nodes, ``M`` panoramic samples,
1 in the official configs); adjacencies ``A[k, v, w]`` carry source node ``v`` to target node
``w`` (``y[..., w] = sum_v x[..., v] * A[k, v, w]``), as the official ``einsum``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from .. import graphs
from ..graphs import PanoramicGraph, SparseAdjacency
from ..ops import graph_conv
from .registry import Preset, register_model

__all__ = [
    "MPGCN",
    "MPGCNBlock",
    "MultiScaleTemporalConv",
    "PersonAttention",
    "SpatialGraphBlock",
    "load_official_state_dict",
    "part_assignment",
]

PartGrouping = Literal["body", "person"]

# (out_channels in units of base_channels / 2, temporal stride), nets.py MPGCN.__init__
_BRANCH_STAGES = ((2, 1), (2, 1), (1, 1))  # 64, 64, 32
_MAIN_STAGES = ((4, 2), (4, 1), (4, 1), (8, 2), (8, 1), (8, 1))  # 128/2, 128, 128, 256/2, ...


def _init_conv(conv: nn.Conv2d) -> None:
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


def _conv_bn(in_channels: int, out_channels: int, kernel: int = 1, **conv_kwargs) -> list:
    conv = nn.Conv2d(in_channels, out_channels, (kernel, 1), **conv_kwargs)
    _init_conv(conv)
    return [conv, nn.BatchNorm2d(out_channels)]


def part_assignment(graph: PanoramicGraph, parts: PartGrouping) -> tuple[tuple[int, ...], ...]:
    """The groups of panoramic nodes that MP-GCN's person attention pools over.

    ``"body"`` (``part='body'`` in ``src/dataset/graphs.py``): every person's layout parts, in
    layout order, person by person (Volleyball: 6 parts x 12 persons). ``"person"``
    (``part='person'``): one group per person (NBA: 12 groups). Every node must belong to exactly
    one group.
    """
    size = graph.nodes_per_person
    if parts == "body":
        if not graph.person.parts:
            raise ValueError(
                f"parts='body' needs a layout with parts; {graph.person.name!r} has none"
            )
        groups = tuple(
            tuple(p * size + j for j in joints)
            for p in range(graph.num_persons)
            for _, joints in graph.person.parts
        )
    elif parts == "person":
        groups = tuple(tuple(range(p * size, (p + 1) * size)) for p in range(graph.num_persons))
    else:
        raise ValueError(f"parts must be 'body' or 'person', got {parts!r}")
    covered = sorted(j for group in groups for j in group)
    if covered != list(range(graph.num_nodes)):
        raise ValueError(
            f"the {parts!r} parts of layout {graph.person.name!r} must cover every node exactly "
            "once (MP-GCN maps each node to one part)"
        )
    return groups


class SpatialGraphBlock(nn.Module):
    """MP-GCN's spatial block (official ``Spatial_Basic_Block`` + ``SpatialGraphConv``).

    ``relu(bn(graph_conv(x, W, A * importance, b)) + residual(x))``, with ``W`` ``[K, C_out,
    C_in]`` and ``b`` ``[K, C_out]`` (the official ``Conv2d(C_in, K * C_out, 1)`` reshaped; ``b``
    is added before aggregation, like that convolution's bias), ``importance`` the learnable
    ``[K, V, V]`` edge importance (ones) and the residual the identity, or ``Conv2d(1x1)`` +
    ``BatchNorm2d`` when the channels change.

    With ``sparse=True`` the adjacency is kept as per-subset CSR (rows = targets,
    :func:`skelops.graphs.to_sparse`); the entry indices ``(subset, source, target)`` are
    buffers, and each forward passes ``SparseAdjacency(values * importance[subset, source,
    target])`` to :func:`skelops.graph_conv`, so gradients reach the importance through the
    values. With ``sparse=False`` the dense ``A * importance`` is passed. Both compute the
    official function; the state dicts are the same (the graph buffers are not saved).

    Args:
        in_channels, out_channels: ``C_in``, ``C_out``.
        adjacency: ``[K, V, V]``, ``A[k, v, w]`` carrying source node ``v`` to target ``w``.
        edge_importance: learn the importance (the official ``edge_importance``); when False it
            is a frozen parameter of ones, as officially.
        sparse: sparse or dense graph convolution.
        backend: :func:`skelops.graph_conv` backend.

    Shapes: ``[N, C_in, T, V] -> [N, C_out, T, V]``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        adjacency: Tensor,
        *,
        edge_importance: bool = True,
        sparse: bool = True,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        subsets, num_nodes, _ = adjacency.shape
        self.num_nodes = num_nodes
        self.sparse = sparse
        self.backend = backend
        self.weight = nn.Parameter(torch.empty(subsets, out_channels, in_channels))
        self.bias = nn.Parameter(torch.zeros(subsets, out_channels))
        # kaiming_normal_(fan_out) of the official Conv2d(C_in, K * C_out, 1): fan_out = K * C_out
        nn.init.normal_(self.weight, 0.0, math.sqrt(2.0 / (subsets * out_channels)))
        self.edge_importance = nn.Parameter(
            torch.ones_like(adjacency), requires_grad=edge_importance
        )
        adjacency = adjacency.detach().clone()
        if sparse:
            csr = graphs.to_sparse(adjacency)
            subset, source, target = csr.entry_indices()
            self.register_buffer("crow_indices", csr.crow_indices, persistent=False)
            self.register_buffer("col_indices", csr.col_indices, persistent=False)
            self.register_buffer("adjacency_values", csr.values, persistent=False)
            self.register_buffer("entry_subset", subset, persistent=False)
            self.register_buffer("entry_source", source, persistent=False)
            self.register_buffer("entry_target", target, persistent=False)
        else:
            self.register_buffer("adjacency", adjacency, persistent=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.residual = (
            nn.Identity()
            if in_channels == out_channels
            else nn.Sequential(*_conv_bn(in_channels, out_channels))
        )

    def graph(self) -> Tensor | SparseAdjacency:
        """The adjacency times the edge importance: a :class:`~skelops.graphs.SparseAdjacency`
        (``sparse=True``) or a dense ``[K, V, V]`` tensor."""
        if not self.sparse:
            return self.adjacency * self.edge_importance
        importance = self.edge_importance[self.entry_subset, self.entry_source, self.entry_target]
        return SparseAdjacency(
            self.crow_indices,
            self.col_indices,
            self.adjacency_values * importance,
            self.num_nodes,
            validate=False,  # built by to_sparse
        )

    def dense_adjacency(self) -> Tensor:
        """The stored ``[K, V, V]`` adjacency (without the importance)."""
        if not self.sparse:
            return self.adjacency
        dense = self.adjacency_values.new_zeros(self.edge_importance.shape)
        dense[self.entry_subset, self.entry_source, self.entry_target] = self.adjacency_values
        return dense

    def forward(self, x: Tensor) -> Tensor:
        y = graph_conv(x, self.weight, self.graph(), self.bias, backend=self.backend)
        return torch.relu(self.bn(y) + self.residual(x))


class MultiScaleTemporalConv(nn.Module):
    """MP-GCN's temporal block (official ``Temporal_MultiScale_Block``).

    ``len(dilations) + 2`` branches of ``C / branches`` channels, concatenated: per dilation
    ``d``, ``Conv2d(1x1) -> BN -> ReLU -> Conv2d((kernel, 1), stride, dilation d) -> BN``; a
    ``Conv2d(1x1) -> BN -> ReLU -> MaxPool((3, 1), stride) -> BN`` branch; a strided
    ``Conv2d(1x1) -> BN`` branch. Plus the residual: the identity at stride 1, else a strided
    ``Conv2d(1x1) -> BN``. No activation at the end.

    The official configs pass ``dilation: [2, 3]``, which the official block ignores (its
    argument is ``dilations``); the effective, default dilations are ``(1, 2)``.

    Shapes: ``[N, C, T, V] -> [N, C, (T - 1) // stride + 1, V]``.
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        dilations: Sequence[int] = (1, 2),
    ) -> None:
        super().__init__()
        num_branches = len(dilations) + 2
        if channels % num_branches:
            raise ValueError(
                f"channels ({channels}) must be a multiple of the {num_branches} temporal branches"
            )
        width = channels // num_branches
        branches = []
        for dilation in dilations:
            padding = (kernel_size + (kernel_size - 1) * (dilation - 1) - 1) // 2
            down, down_bn = _conv_bn(channels, width)
            conv, conv_bn = _conv_bn(
                width,
                width,
                kernel_size,
                stride=(stride, 1),
                padding=(padding, 0),
                dilation=(dilation, 1),
            )
            branches.append(nn.Sequential(down, down_bn, nn.ReLU(), conv, conv_bn))
        down, down_bn = _conv_bn(channels, width)
        pool = nn.MaxPool2d((3, 1), stride=(stride, 1), padding=(1, 0))
        branches.append(nn.Sequential(down, down_bn, nn.ReLU(), pool, nn.BatchNorm2d(width)))
        branches.append(nn.Sequential(*_conv_bn(channels, width, stride=(stride, 1))))
        self.branches = nn.ModuleList(branches)
        self.residual = (
            nn.Identity()
            if stride == 1
            else nn.Sequential(*_conv_bn(channels, channels, stride=(stride, 1)))
        )

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([branch(x) for branch in self.branches], dim=1) + self.residual(x)


class PersonAttention(nn.Module):
    """MP-GCN's spatial-temporal person attention (official ``ST_Person_Attention``).

    Frame descriptors (mean over nodes, ``[N, C, T]``) and part descriptors (mean over frames,
    then over the nodes of each part, ``[N, C, P]``) go through one shared ``Conv2d(C, C / r,
    1) -> BN -> ReLU``; ``Conv2d(C / r, C, 1)`` + sigmoid gives a per-frame and a per-part gate;
    every node takes its part's gate. Output ``relu(bn(x * frame_gate * node_gate) + x)``.

    Args:
        channels: ``C``.
        parts: the node groups (each node in exactly one), see :func:`part_assignment`.
        reduction: ``r`` (the official ``reduct_ratio``).

    Shapes: ``[N, C, T, V] -> [N, C, T, V]``.
    """

    def __init__(self, channels: int, parts: Sequence[Sequence[int]], reduction: int) -> None:
        super().__init__()
        inner = channels // reduction
        if inner < 1:
            raise ValueError(f"reduction ({reduction}) must not exceed the channels ({channels})")
        num_nodes = sum(len(p) for p in parts)
        part_mean = torch.zeros(num_nodes, len(parts))
        part_of_node = torch.zeros(num_nodes, dtype=torch.long)
        for index, part in enumerate(parts):
            part_mean[list(part), index] = 1.0 / len(part)
            part_of_node[list(part)] = index
        self.num_parts = len(parts)
        self.register_buffer("part_mean", part_mean, persistent=False)  # [V, P]
        self.register_buffer("part_of_node", part_of_node, persistent=False)  # [V]
        self.squeeze = nn.Sequential(*_conv_bn(channels, inner), nn.ReLU())
        self.frame_gate = nn.Conv2d(inner, channels, 1)
        self.part_gate = nn.Conv2d(inner, channels, 1)
        _init_conv(self.frame_gate)
        _init_conv(self.part_gate)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: Tensor) -> Tensor:
        frames = x.shape[2]
        per_frame = x.mean(3, keepdim=True)  # [N, C, T, 1]
        per_part = (x.mean(2, keepdim=True) @ self.part_mean).transpose(2, 3)  # [N, C, P, 1]
        squeezed = self.squeeze(torch.cat((per_frame, per_part), dim=2))
        per_frame, per_part = torch.split(squeezed, [frames, self.num_parts], dim=2)
        frame_gate = self.frame_gate(per_frame).sigmoid()  # [N, C, T, 1]
        part_gate = self.part_gate(per_part.transpose(2, 3)).sigmoid()  # [N, C, 1, P]
        node_gate = part_gate.index_select(3, self.part_of_node)  # [N, C, 1, V]
        return torch.relu(self.bn(x * (frame_gate * node_gate)) + x)


class MPGCNBlock(nn.Module):
    """One MP-GCN block (official ``Basic_Block``): spatial graph block, multi-scale temporal
    block, person attention (or none with ``attention=False``, official ``use_att``).

    Shapes: ``[N, C_in, T, V] -> [N, C_out, (T - 1) // stride + 1, V]``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        adjacency: Tensor,
        parts: Sequence[Sequence[int]],
        *,
        stride: int = 1,
        reduction: int = 2,
        temporal_kernel_size: int = 3,
        dilations: Sequence[int] = (1, 2),
        attention: bool = True,
        edge_importance: bool = True,
        sparse: bool = True,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        self.gcn = SpatialGraphBlock(
            in_channels,
            out_channels,
            adjacency,
            edge_importance=edge_importance,
            sparse=sparse,
            backend=backend,
        )
        self.tcn = MultiScaleTemporalConv(out_channels, temporal_kernel_size, stride, dilations)
        self.attention = (
            PersonAttention(out_channels, parts, reduction) if attention else nn.Identity()
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.attention(self.tcn(self.gcn(x)))


class _InputBranch(nn.Module):
    """``BatchNorm2d(C)`` and three blocks (official ``Input_Branch``)."""

    def __init__(self, in_channels: int, blocks: list[MPGCNBlock]) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(in_channels)
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: Tensor) -> Tensor:
        x = self.bn(x)
        for block in self.blocks:
            x = block(x)
        return x


_PRESETS = {
    "volleyball": Preset(
        kwargs={
            "num_classes": 8,
            "graph": "coco_ball-12",
            "in_channels": 4,
            "parts": "body",
            "reduction": 2,
        },
        description="Volleyball (config/volleyball/mpgcn.yaml): 12 persons x (17 COCO keypoints "
        "+ ball) = 216 nodes, 2-D keypoints (4 channels per JVBM branch), T = 20 frames, 8 group "
        "activities; body-part attention, reduct_ratio 2",
        parameter_count=4_204_584,
        reported_accuracy="96.2 (MP-GCN, Li et al. ECCV 2024, Volleyball, group activity "
        "accuracy, top-1; as quoted by a secondary summary (emergentmind.com/articles/"
        "2407.19497), not checked against the paper's tables here)",
    ),
    "nba": Preset(
        kwargs={
            "num_classes": 9,
            "graph": "coco_ball_net-12",
            "in_channels": 6,
            "parts": "person",
            "reduction": 1,
        },
        description="NBA (config/nba/mpgcn.yaml): 12 persons x (17 COCO keypoints + ball + net) "
        "= 228 nodes, x, y, confidence (6 channels per JVBM branch), T = 72 frames, 9 group "
        "activities; person attention, reduct_ratio 1",
        parameter_count=4_921_241,
        reported_accuracy=None,
    ),
}


@register_model(
    "mpgcn",
    presets=_PRESETS,
    default_preset="volleyball",
    summary="MP-GCN (ECCV 2024): group activity recognition on a multi-person panoramic "
    "skeleton graph with sparse graph convolution, JVBM input branches and person attention",
)
class MPGCN(nn.Module):
    """MP-GCN (official ``src/model/MPGCN/nets.py`` ``MPGCN``).

    Args:
        num_classes: classifier outputs (8 Volleyball, 9 NBA).
        graph: the panoramic graph, a :class:`skelops.graphs.PanoramicGraph` or a name for
            :func:`skelops.graphs.panoramic_graph` (``"coco_ball-12"``: ``V = 216``,
            ``"coco_ball_net-12"``: ``V = 228``; ``"coco_ball-2"`` is a small 2-person graph).
        in_channels: ``C`` of each input branch (the official ``data_shape[1]``: twice the
            keypoint channels, 4 for 2-D keypoints, 6 for x, y, confidence).
        num_inputs: ``I``, the input branches (4: J, V, B, M).
        parts: node groups of the person attention, ``"body"`` or ``"person"``
            (:func:`part_assignment`).
        reduction: the person attention's ``reduct_ratio`` (2 Volleyball, 1 NBA).
        labeling: partition of :func:`skelops.graphs.mpgcn_adjacency` (``"intra-inter"``).
        max_graph_distance: the model keeps subsets ``A[:max_graph_distance + 1]`` (2).
        base_channels: width of the input branches (64 officially: blocks of 64, 64, 32; the
            main stream has ``num_inputs * base_channels / 2`` inputs and ``2 * base_channels``
            and ``4 * base_channels`` outputs). A multiple of 8; smaller values give small models
            for tests.
        temporal_kernel_size: the temporal window (3 in the official configs).
        dilations: of the temporal branches; ``(1, 2)`` is the official effective value (the
            configs' ``dilation: [2, 3]`` is ignored by the official code).
        attention: use the person attention (``use_att``).
        edge_importance: learn the edge importance.
        sparse: sparse (default) or dense graph convolution; the same weights give the same
            function.
        backend: :func:`skelops.graph_conv` backend (``"auto"``, ``"cpu"``, ``"cuda"``,
            ``"triton"``, ``"reference"``).

    Shapes:
        ``forward(x)``: the official input ``[N, I, C, T, V, M]`` (``M = 1`` in the official
        configs; :meth:`prepare_input` builds it from per-person skeletons) -> logits
        ``[N, num_classes]``. ``T`` is halved (rounded up) twice.

    The official ``forward`` returns ``(logits, feature)``; here :meth:`forward` returns the
    logits and :meth:`forward_features` the feature. The official ``adaptive=True`` option (a
    learnable ``A``; unused by the configs) is not reproduced.

    Initialisation follows the official ``init_param``: convolutions ``kaiming_normal_``
    (``fan_out``, ReLU) with zero biases, BatchNorms ones and zeros, the classifier
    ``N(0, 0.001)``, edge importance ones.
    """

    def __init__(
        self,
        num_classes: int = 8,
        graph: str | PanoramicGraph = "coco_ball-12",
        *,
        in_channels: int = 4,
        num_inputs: int = 4,
        parts: PartGrouping = "body",
        reduction: int = 2,
        labeling: Literal["intra-inter", "spatial", "distance"] = "intra-inter",
        max_graph_distance: int = 2,
        base_channels: int = 64,
        temporal_kernel_size: int = 3,
        dilations: Sequence[int] = (1, 2),
        attention: bool = True,
        edge_importance: bool = True,
        sparse: bool = True,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        for name, value in (
            ("num_classes", num_classes),
            ("in_channels", in_channels),
            ("num_inputs", num_inputs),
            ("reduction", reduction),
            ("base_channels", base_channels),
            ("temporal_kernel_size", temporal_kernel_size),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if base_channels % 8:
            raise ValueError(f"base_channels must be a multiple of 8, got {base_channels}")
        if temporal_kernel_size % 2 != 1:
            raise ValueError(f"temporal_kernel_size must be odd, got {temporal_kernel_size}")
        self.graph = graphs.panoramic_graph(graph) if isinstance(graph, str) else graph
        if not isinstance(self.graph, PanoramicGraph):
            raise TypeError(f"graph must be a PanoramicGraph or a name, got {type(graph).__name__}")
        adjacency = graphs.mpgcn_adjacency(self.graph, labeling)
        if not 0 <= max_graph_distance < adjacency.shape[0]:
            raise ValueError(
                f"max_graph_distance must be in [0, {adjacency.shape[0] - 1}], "
                f"got {max_graph_distance}"
            )
        adjacency = adjacency[: max_graph_distance + 1]
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.num_inputs = num_inputs
        self.num_nodes = self.graph.num_nodes
        self.sparse = sparse
        groups = part_assignment(self.graph, parts)
        half = base_channels // 2

        def block(c_in: int, c_out: int, stride: int) -> MPGCNBlock:
            return MPGCNBlock(
                c_in,
                c_out,
                adjacency,
                groups,
                stride=stride,
                reduction=reduction,
                temporal_kernel_size=temporal_kernel_size,
                dilations=dilations,
                attention=attention,
                edge_importance=edge_importance,
                sparse=sparse,
                backend=backend,
            )

        def stages(c_in: int, specs: tuple[tuple[int, int], ...]) -> list[MPGCNBlock]:
            blocks = []
            for width, stride in specs:
                blocks.append(block(c_in, width * half, stride))
                c_in = width * half
            return blocks

        self.input_branches = nn.ModuleList(
            _InputBranch(in_channels, stages(in_channels, _BRANCH_STAGES))
            for _ in range(num_inputs)
        )
        self.main_stream = nn.ModuleList(stages(num_inputs * half, _MAIN_STAGES))
        self.fc = nn.Linear(_MAIN_STAGES[-1][0] * half, num_classes)
        nn.init.normal_(self.fc.weight, 0.0, 0.001)
        nn.init.zeros_(self.fc.bias)

    def expected_shape(self) -> str:
        """The input shape this model takes, e.g. ``"[N, 4, 4, T, 216, M]"``."""
        return f"[N, {self.num_inputs}, {self.in_channels}, T, {self.num_nodes}, M]"

    def check_input(self, x: Tensor) -> None:
        """Raise ValueError unless x is ``[N, I, C, T, V, M]`` with this model's I, C, V."""
        if (
            not isinstance(x, Tensor)
            or x.dim() != 6
            or (x.shape[1], x.shape[2], x.shape[4])
            != (self.num_inputs, self.in_channels, self.num_nodes)
            or x.numel() == 0
        ):
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            persons, size = self.graph.num_persons, self.graph.nodes_per_person
            raise ValueError(
                f"x must be {self.expected_shape()} (N, T, M >= 1; {self.num_inputs} input "
                f"branches J, V, B, M of C={self.in_channels} channels; V={self.num_nodes} = "
                f"{persons} persons x {size} nodes of graph {self.graph.person.name}-{persons}), "
                f"got {got}"
            )

    def prepare_input(self, skeletons: Tensor) -> Tensor:
        """The official input from per-person skeletons.

        ``skeletons`` ``[N, C_kp, T, V_p, P]`` (each person's keypoints with the ball, and net,
        appended, as the official feeders build them) -> ``[N, 4, 2 * C_kp, T, P * V_p, 1]``:
        :func:`skelops.graphs.to_panoramic` then :func:`skelops.graphs.jvbm_features`
        (the official ``graph_processing`` and ``multi_input``).
        """
        persons, size = self.graph.num_persons, self.graph.nodes_per_person
        if (
            not isinstance(skeletons, Tensor)
            or skeletons.dim() != 5
            or tuple(skeletons.shape[3:]) != (size, persons)
        ):
            got = tuple(skeletons.shape) if isinstance(skeletons, Tensor) else type(skeletons)
            raise ValueError(
                f"skeletons must be [N, C, T, {size}, {persons}] ({persons} persons of {size} "
                f"nodes), got {got}"
            )
        return graphs.jvbm_features(graphs.to_panoramic(skeletons), self.graph)

    def forward_features(self, x: Tensor) -> Tensor:
        """The official ``feature`` output: x ``[N, I, C, T, V, M]`` -> ``[N, C', T', V, M]``."""
        self.check_input(x)
        n, _, c, t, v, m = x.shape
        streams = []
        for i, branch in enumerate(self.input_branches):
            xi = x[:, i].permute(0, 4, 1, 2, 3).reshape(n * m, c, t, v)
            streams.append(branch(xi))
        y = torch.cat(streams, dim=1)
        for block in self.main_stream:
            y = block(y)
        return y.view(n, m, *y.shape[1:]).permute(0, 2, 3, 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        """x ``[N, I, C, T, V, M]`` -> logits ``[N, num_classes]``."""
        features = self.forward_features(x)  # [N, C, T, V, M]
        return self.fc(features.mean(dim=(2, 3)).mean(dim=2))


# official key (after the block prefix) -> this model's, for the parts that are only renamed
_BLOCK_RENAMES = (
    (r"scn\.bn\.", "gcn.bn."),
    (r"scn\.residual\.", "gcn.residual."),
    (r"scn\.edge$", "gcn.edge_importance"),
    (r"tcn\.branches\.(\d+)\.3\.conv\.", r"tcn.branches.\1.3."),
    (r"tcn\.branches\.(\d+)\.3\.bn\.", r"tcn.branches.\1.4."),
    (r"tcn\.branches\.", "tcn.branches."),
    (r"tcn\.residual\.conv\.", "tcn.residual.0."),
    (r"tcn\.residual\.bn\.", "tcn.residual.1."),
    (r"att\.fcn\.", "attention.squeeze."),
    (r"att\.conv_t\.", "attention.frame_gate."),
    (r"att\.conv_v\.", "attention.part_gate."),
    (r"att\.bn\.", "attention.bn."),
)
_BRANCH_BN_KEY = re.compile(r"input_branches\.\d+\.bn\.\w+")
_BLOCK_KEY = re.compile(r"(input_branches\.\d+\.)layers(\.\d+\.)(.+)|(main_stream\.\d+\.)(.+)")


def load_official_state_dict(model: MPGCN, state_dict: Mapping[str, Tensor]) -> MPGCN:
    """Load an official MP-GCN state dict (``src/model/MPGCN/nets.py`` ``MPGCN``; checkpoints
    store it under ``'model'``) into ``model``, strictly.

    Mapping: ``input_branches.{i}.layers.{j}.*`` -> ``input_branches.{i}.blocks.{j}.*``;
    ``scn.conv.gcn.weight`` ``[K * C_out, C_in, 1, 1]`` -> ``gcn.weight`` ``[K, C_out, C_in]``
    and ``scn.conv.gcn.bias`` ``[K * C_out]`` -> ``gcn.bias`` ``[K, C_out]`` (row
    ``k * C_out + o`` is subset ``k``, channel ``o``); ``scn.edge`` -> ``gcn.edge_importance``;
    ``scn.{bn,residual}`` -> ``gcn.{bn,residual}``; the dilated temporal branches'
    ``3.conv``/``3.bn`` -> ``3``/``4``; ``tcn.residual.{conv,bn}`` -> ``tcn.residual.{0,1}``;
    ``att.{fcn,conv_t,conv_v,bn}`` -> ``attention.{squeeze,frame_gate,part_gate,bn}``;
    ``fcn`` -> ``fc``. The official graph tensors (``scn.A``, ``att.joints``, ``att.mat``) are
    not loaded but must equal the model's (build the model with the checkpoint's graph and
    parts). A ``module.`` prefix (``DataParallel``) is dropped.

    Returns ``model``. Raises ValueError on a graph mismatch, an unknown key or a wrong shape,
    RuntimeError (from ``load_state_dict``) on missing keys.
    """
    if not isinstance(model, MPGCN):
        raise TypeError(f"model must be an MPGCN, got {type(model).__name__}")
    modules = dict(model.named_modules())
    converted: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        key = key.removeprefix("module.")
        if key.startswith("fcn."):
            converted["fc." + key[len("fcn.") :]] = value
            continue
        if _BRANCH_BN_KEY.fullmatch(key):
            converted[key] = value
            continue
        match = _BLOCK_KEY.fullmatch(key)
        if match is None:
            raise ValueError(f"state_dict has an official key this model does not use: {key!r}")
        prefix = f"{match[1]}blocks{match[2]}" if match[1] else match[4]
        rest = match[3] if match[1] else match[5]
        block = modules.get(prefix.rstrip("."))
        if not isinstance(block, MPGCNBlock):
            raise ValueError(f"state_dict key {key!r} names a block the model does not have")
        if rest in ("scn.conv.gcn.weight", "scn.conv.gcn.bias"):
            target = block.gcn.weight if rest.endswith("weight") else block.gcn.bias
            if value.numel() != target.numel():
                raise ValueError(
                    f"state_dict[{key!r}] has shape {tuple(value.shape)}, the model's "
                    f"{tuple(target.shape)} (K, C_out[, C_in]) needs {target.numel()} entries"
                )
            converted[prefix + "gcn." + rest.rsplit(".", 1)[1]] = value.reshape(target.shape)
            continue
        if rest == "scn.A":
            _check_graph(key, value, block.gcn.dense_adjacency())
            continue
        if rest in ("att.joints", "att.mat"):
            if not isinstance(block.attention, PersonAttention):
                raise ValueError(f"state_dict has {key!r} but the model has no attention")
            ours = (
                block.attention.part_of_node
                if rest.endswith("joints")
                else block.attention.part_mean
            )
            _check_graph(key, value, ours)
            continue
        for pattern, replacement in _BLOCK_RENAMES:
            renamed, hits = re.subn(pattern, replacement, rest, count=1)
            if hits:
                converted[prefix + renamed] = value
                break
        else:
            raise ValueError(f"state_dict has an official key this model does not use: {key!r}")
    model.load_state_dict(converted, strict=True)
    return model


def _check_graph(key: str, value: Tensor, ours: Tensor) -> None:
    same = tuple(value.shape) == tuple(ours.shape) and (
        torch.allclose(value.to(ours), ours, atol=1e-6, rtol=0)
        if ours.is_floating_point()
        else torch.equal(value.to(ours), ours)
    )
    if not same:
        raise ValueError(
            f"state_dict[{key!r}] (shape {tuple(value.shape)}) differs from the model's graph "
            f"(shape {tuple(ours.shape)}); build the model with the checkpoint's graph and parts"
        )
