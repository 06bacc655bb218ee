"""HD-GCN: Hierarchically Decomposed Graph Convolutional Networks (Lee et al., ICCV 2023).

Reproduces the architecture of the official implementation, Jho-Yonsei/HD-GCN
(``model/HDGCN.py``, graph ``graph/ntu_rgb_d_hierarchy.py`` + ``graph/tools.py``, configs
``config/nturgbd-cross-subject/*.yaml`` and ``config/nturgbd120-cross-subject/*.yaml``, score
fusion ``ensemble.py``):

- data BatchNorm over ``M * V * C`` channels (in ``(m, v, c)`` order), then ten units
  (64, 64, 64, 64, 128/2, 128, 128, 256/2, 256, 256: channels / temporal stride), global
  average pooling over frames, joints and persons, and a linear classifier;
- each unit is an HD-Graph convolution followed by CTR-GCN's multi-scale temporal convolution
  (four branches of ``C / 4`` channels: kernel 5 with dilations 1 and 2, a max-pool branch and
  a strided 1x1 branch), plus the unit's residual;
- the HD-Graph convolution has one learnable ``[L, 3, V, V]`` adjacency per unit (``L = 6``
  hierarchy levels between the 7 groups of joints by hop distance from a centre of mass;
  subsets identity / forward / reverse, :func:`skelops.graphs.hdgcn_adjacency`). For every
  level a 1x1 convolution reduces to ``C / 4`` channels, three graph convolutions (one per
  subset, ``C / 4`` channels each) and an EdgeConv branch (k = 5 nearest joints in feature
  space, after averaging over frames) are concatenated to ``C`` channels; the levels are
  summed (first unit) or fused by the attention-guided hierarchy aggregation (A-HA: a
  per-level, per-channel sigmoid gate computed by an EdgeConv over level descriptors); a
  BatchNorm initialised to ``1e-6`` and the block's residual follow.

Which parts run through :func:`skelops.graph_conv`: every per-level, per-subset aggregation.
The official code aggregates with the learnable adjacency and then applies a 1x1 convolution
(``conv(einsum(x, A))``); both are linear and the bias is added after aggregation, so each
equals one ``graph_conv(x, W[None], A[None], b)`` with ``K = 1`` (the three subsets of a level
write separate channel blocks, so they are three calls, not one ``K = 3`` call). The
adjacency receives gradients through the operator. The EdgeConv, A-HA and temporal branches
are plain PyTorch, as in the official model.

Layout of the parameters: the official per-level modules of a block (six 1x1 down-projections
with BatchNorm, six EdgeConvs, eighteen per-subset BatchNorms) are stacked here into one
convolution / one grouped EdgeConv / one BatchNorm each (same functions, same counts, fewer
operator calls). :func:`load_official_state_dict` converts official checkpoints.

Conventions: inputs ``[N, C, T, V, M]``; adjacencies ``A[k, v, w]`` carry source joint ``v``
to target joint ``w`` (``y[..., w] = sum_v x[..., v] A[k, v, w]``), the transpose of the
official ``PA`` (which it multiplies as ``einsum('nctu,vu->nctv')``). Joints are 0-based: the
official centres of mass 21, 1, 2 (1-based) are ``center=20, 0, 1``.

Parameter counts equal the official model's (1,659,980 with 60 classes, 1,675,400 with 120,
for every centre of mass; checked by building the official model); with official weights
(:func:`load_official_state_dict`) the outputs agree with the official model to float32
rounding.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .. import graphs
from ..ops import graph_conv
from .registry import Preset, get_preset, register_model

__all__ = ["HDGCN", "HDGCNEnsemble", "ensemble_scores", "load_official_state_dict"]

_LAYOUT = "ntu_pyskl"  # HD-GCN's groups follow pyskl's hand edges (22, 23 one hop from 8)
_EDGE_NEIGHBOURS = 5  # EdgeConv k inside the HD-Graph convolution
_AHA_NEIGHBOURS = 3  # EdgeConv k over hierarchy levels inside A-HA
STAGES = (  # (out_channels in units of base_channels, temporal stride) of units 1..10
    (1, 1), (1, 1), (1, 1), (1, 1), (2, 2), (2, 1), (2, 1), (4, 2), (4, 1), (4, 1),
)  # fmt: skip


def init_conv(conv: nn.Conv2d) -> None:
    """HD-GCN's (CTR-GCN's) 1x1 convolution initialisation: Kaiming normal, fan-out, bias 0."""
    nn.init.kaiming_normal_(conv.weight, mode="fan_out")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


def _init_stacked_conv(conv: nn.Conv2d, out_per_level: int) -> None:
    # kaiming_normal_(fan_out) of each official per-level 1x1 Conv2d with out_per_level outputs
    nn.init.normal_(conv.weight, 0.0, math.sqrt(2.0 / out_per_level))
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


def init_bn(bn: nn.modules.batchnorm._BatchNorm, scale: float) -> None:
    """BatchNorm weight ``scale`` (1e-6 on graph convolutions, 1 elsewhere), bias 0."""
    nn.init.constant_(bn.weight, scale)
    nn.init.zeros_(bn.bias)


def unit_residual(
    in_channels: int, out_channels: int, stride: int, residual: bool
) -> nn.Module | None:
    """A unit's residual as HD-GCN builds it: none (``residual=False``, the first unit), the
    identity, or a strided 1x1 convolution with BatchNorm when the channels or frames change."""
    if not residual:
        return None
    if in_channels == out_channels and stride == 1:
        return nn.Identity()
    conv = nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=(stride, 1))
    bn = nn.BatchNorm2d(out_channels)
    init_conv(conv)
    init_bn(bn, 1.0)
    return nn.Sequential(conv, bn)


class UnitNetwork(nn.Module):
    """The frame HD-GCN-family models share (HD-GCN, STC-Net): argument checks, the data
    BatchNorm over ``M * V * C`` channels in HD-GCN's ``(m, v, c)`` order with the persons
    folded into the batch, ten units (:data:`STAGES`) made by ``make_unit(index, in_channels,
    out_channels, stride)``, average pooling over frames, joints and persons, dropout and a
    linear classifier. Inputs ``[N, C, T, V, M]``; ``min_frames`` is the shortest clip
    ``forward`` accepts (a subclass raises it when its units need more)."""

    def __init__(
        self,
        num_classes: int,
        layout: str | graphs.Layout,
        in_channels: int,
        num_persons: int,
        base_channels: int,
        dropout: float,
        make_unit: Callable[[int, int, int, int], nn.Module],
    ) -> None:
        super().__init__()
        for name, value in (
            ("num_classes", num_classes),
            ("in_channels", in_channels),
            ("num_persons", num_persons),
            ("base_channels", base_channels),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if base_channels % 4:
            raise ValueError(f"base_channels must be a multiple of 4, got {base_channels}")
        self.layout = graphs.get_layout(layout)
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.num_joints = self.layout.num_joints
        self.num_persons = num_persons
        self.min_frames = 1
        self.data_bn = nn.BatchNorm1d(num_persons * self.num_joints * in_channels)
        init_bn(self.data_bn, 1.0)
        units = []
        channels = in_channels
        for i, (width, stride) in enumerate(STAGES):
            units.append(make_unit(i, channels, width * base_channels, stride))
            channels = width * base_channels
        self.units = nn.ModuleList(units)
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.fc = nn.Linear(channels, num_classes)
        nn.init.normal_(self.fc.weight, 0.0, math.sqrt(2.0 / num_classes))

    def input_shape(self) -> str:
        return f"[N, {self.in_channels}, T, {self.num_joints}, {self.num_persons}]"

    def _check_input(self, x: Tensor) -> None:
        expected = (self.in_channels, self.num_joints, self.num_persons)
        if (
            not isinstance(x, Tensor)
            or x.dim() != 5
            or (x.shape[1], x.shape[3], x.shape[4]) != expected
            or x.shape[0] == 0
            or x.shape[2] == 0
        ):
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(
                f"x must be {self.input_shape()} (N, T >= 1; C={self.in_channels} "
                f"coordinates, V={self.num_joints} joints of layout {self.layout.name!r}, "
                f"M={self.num_persons} persons), got {got}"
            )
        if x.shape[2] < self.min_frames:
            raise ValueError(
                f"x must be {self.input_shape()} with T >= {self.min_frames} frames "
                f"({self._min_frames_reason()}), got T={x.shape[2]}"
            )

    def _min_frames_reason(self) -> str:
        return "the units' temporal strides"

    def forward(self, x: Tensor) -> Tensor:
        """x ``[N, C, T, V, M]`` -> scores ``[N, num_classes]``."""
        self._check_input(x)
        n, c, t, v, m = x.shape
        x = x.permute(0, 4, 3, 1, 2).reshape(n, m * v * c, t)
        x = self.data_bn(x)
        x = x.reshape(n, m, v, c, t).permute(0, 1, 3, 4, 2).reshape(n * m, c, t, v)
        for unit in self.units:
            x = unit(x)
        x = x.reshape(n, m, x.shape[1], -1).mean(3).mean(1)
        return self.fc(self.dropout(x))


class EdgeConv(nn.Module):
    """DGCNN-style edge convolution over the nodes of ``[N, G * C, V]`` (official ``EdgeConv``).

    For each node, its ``k`` nearest nodes in feature space (squared Euclidean distance; the node
    itself included) give edge features ``[x_j - x_i, x_i]``; a 1x1 convolution (no bias),
    BatchNorm and LeakyReLU(0.2) map them to ``C`` channels and the maximum over the ``k``
    neighbours is kept. ``groups = G`` independent EdgeConvs (own neighbours, own weights) run
    side by side on ``G`` blocks of ``C`` channels: the official model has one per hierarchy
    level, batched here as one grouped convolution (same function and parameters).
    """

    def __init__(self, channels: int, k: int, groups: int = 1) -> None:
        super().__init__()
        self.k = k
        self.groups = groups
        self.conv = nn.Conv2d(
            2 * channels * groups, channels * groups, kernel_size=1, groups=groups, bias=False
        )
        self.bn = nn.BatchNorm2d(channels * groups)
        self.act = nn.LeakyReLU(negative_slope=0.2)
        _init_stacked_conv(self.conv, channels)
        init_bn(self.bn, 1.0)

    def forward(self, x: Tensor) -> Tensor:
        """x ``[N, G * C, V]`` -> ``[N, G * C, V]``."""
        n, gc, v = x.shape
        x = x.reshape(n * self.groups, gc // self.groups, v)
        # The official distance expression, so that near-ties pick the same neighbours.
        inner = -2 * torch.matmul(x.transpose(2, 1), x)
        squared = torch.sum(x**2, dim=1, keepdim=True)
        neg_distance = -squared - inner - squared.transpose(2, 1)
        index = neg_distance.topk(k=self.k, dim=-1)[1]  # [N * G, V, k]
        nodes = x.transpose(1, 2)  # [N * G, V, C]
        batch = torch.arange(nodes.shape[0], device=x.device).view(-1, 1, 1)
        neighbours = nodes[batch, index]  # [N * G, V, k, C]
        centre = nodes.unsqueeze(2).expand_as(neighbours)
        edges = torch.cat((neighbours - centre, centre), dim=3).permute(0, 3, 1, 2)
        edges = edges.reshape(n, 2 * gc, v, self.k)
        return self.act(self.bn(self.conv(edges))).max(dim=-1)[0]


class HierarchyAggregation(nn.Module):
    """A-HA, the attention-guided hierarchy aggregation (official ``AHA``).

    The per-level features ``[N, C, L, T, V]`` are max-pooled over frames, reduced to ``C / 4``
    channels, averaged over the joints of each level (``G_i`` and ``G_{i+1}``), passed through an
    EdgeConv over the ``L`` levels (k = 3) and a 1x1 convolution back to ``C``; the sigmoid of
    that weighs each level before they are summed.
    """

    def __init__(self, channels: int, groups: Sequence[Sequence[int]], num_joints: int) -> None:
        super().__init__()
        inter = channels // 4
        levels = len(groups) - 1
        pooling = torch.zeros(levels, num_joints)
        for i in range(levels):
            members = list(groups[i]) + list(groups[i + 1])
            pooling[i, members] = 1.0 / len(members)
        # [L, V]: mean over each level's joints, derived from the groups (not state)
        self.register_buffer("level_pooling", pooling, persistent=False)
        self.down = nn.Sequential(
            nn.Conv2d(channels, inter, kernel_size=1), nn.BatchNorm2d(inter), nn.ReLU()
        )
        self.edge = EdgeConv(inter, _AHA_NEIGHBOURS)
        self.aggregate = nn.Conv1d(inter, channels, kernel_size=1)
        init_conv(self.down[0])
        init_bn(self.down[1], 1.0)

    def forward(self, x: Tensor) -> Tensor:
        """x ``[N, C, L, T, V]`` -> ``[N, C, T, V]``."""
        n, c, levels = x.shape[:3]
        summary = self.down(x.max(dim=3)[0])  # [N, C/4, L, V]
        summary = torch.einsum("nclv,lv->ncl", summary, self.level_pooling)
        gate = torch.sigmoid(self.aggregate(self.edge(summary))).view(n, c, levels, 1, 1)
        return (x * gate).sum(dim=2)


class HDGraphConv(nn.Module):
    """HD-Graph convolution block (official ``HD_Gconv``): ``[N, C_in, T, V] -> [N, C_out, T, V]``.

    For each of the ``L`` hierarchy levels, with ``I = C_out / 4``:
    ``x_l = ReLU(BN(conv1x1(x)))`` (``I`` channels); three graph convolutions of ``x_l``, one
    per subset of the level's adjacency, each ``I -> I`` with its own BatchNorm; and an EdgeConv
    (k = 5) of ``x_l`` averaged over frames, broadcast over frames; concatenated to ``C_out``.
    The levels are summed, or fused by A-HA; then BN (initialised to ``1e-6``), the block's
    residual and ReLU.

    The ``L`` per-level 1x1 convolutions (and BatchNorms) of ``x`` are one convolution to
    ``L * I`` channels, the ``L`` EdgeConvs one grouped EdgeConv, and the ``3 L`` per-subset
    BatchNorms one BatchNorm: the same functions and parameter counts as the official per-level
    modules, with fewer operator calls.

    Args:
        in_channels, out_channels: ``out_channels`` must be a multiple of 4.
        adjacency: ``[L, 3, V, V]`` initial HD-Graph (``A[l, k, v, w]``, source v -> target w);
            learnt, one copy per block.
        groups: the ``L + 1`` hierarchy groups (0-based joints), used by A-HA.
        attention: fuse the levels with A-HA; otherwise sum them.
        backend: :func:`skelops.graph_conv` backend.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        adjacency: Tensor,
        groups: Sequence[Sequence[int]],
        attention: bool,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        levels, subsets = adjacency.shape[:2]
        inter = out_channels // 4
        self.inter_channels = inter
        self.backend = backend
        self.adjacency = nn.Parameter(adjacency.detach().clone())
        self.down = nn.Sequential(
            nn.Conv2d(in_channels, levels * inter, kernel_size=1),
            nn.BatchNorm2d(levels * inter),
            nn.ReLU(),
        )
        # [L, K, C_out, C_in] and [L, K, C_out]: the official per-subset 1x1 convolutions
        self.weight = nn.Parameter(torch.empty(levels, subsets, inter, inter))
        self.bias = nn.Parameter(torch.zeros(levels, subsets, inter))
        self.subset_bn = nn.BatchNorm2d(levels * subsets * inter)
        self.edge = EdgeConv(inter, _EDGE_NEIGHBOURS, groups=levels)
        self.aggregation = (
            HierarchyAggregation(out_channels, groups, adjacency.shape[-1]) if attention else None
        )
        self.bn = nn.BatchNorm2d(out_channels)
        if in_channels != out_channels:
            self.residual = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1), nn.BatchNorm2d(out_channels)
            )
            init_conv(self.residual[0])
            init_bn(self.residual[1], 1.0)
        else:
            self.residual = nn.Identity()
        _init_stacked_conv(self.down[0], inter)
        init_bn(self.down[1], 1.0)
        nn.init.normal_(self.weight, 0.0, math.sqrt(2.0 / inter))
        init_bn(self.subset_bn, 1.0)
        init_bn(self.bn, 1e-6)

    def forward(self, x: Tensor) -> Tensor:
        levels, subsets = self.adjacency.shape[:2]
        inter = self.inter_channels
        x_down = self.down(x)  # [N, L * I, T, V]
        n, _, t, v = x_down.shape
        subset_outputs = [
            graph_conv(
                x_down[:, level * inter : (level + 1) * inter],
                self.weight[level, k : k + 1],
                self.adjacency[level, k : k + 1],
                self.bias[level, k],
                backend=self.backend,
            )
            for level in range(levels)
            for k in range(subsets)
        ]
        graph = self.subset_bn(torch.cat(subset_outputs, dim=1))
        edge = self.edge(x_down.mean(dim=2))  # [N, L * I, V]
        out = torch.cat(
            (
                graph.view(n, levels, subsets * inter, t, v),
                edge.view(n, levels, inter, 1, v).expand(-1, -1, -1, t, -1),
            ),
            dim=2,
        )  # [N, L, C_out, T, V]
        if self.aggregation is None:
            out = out.sum(dim=1)
        else:
            out = self.aggregation(out.transpose(1, 2))
        return torch.relu(self.bn(out) + self.residual(x))


def _init_temporal(module: nn.Module) -> None:
    # The official MultiScale_TemporalConv applies its weights_init to every submodule.
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            init_conv(m)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class MultiScaleTemporalConv(nn.Module):
    """CTR-GCN's multi-scale temporal convolution (official ``MultiScale_TemporalConv``,
    ``residual=False``): four branches of ``C / 4`` channels, concatenated.

    Branches: 1x1 conv-BN-ReLU then a ``(kernel, 1)`` convolution with dilation 1 or 2
    (with bias) and BN; 1x1 conv-BN-ReLU, ``(3, 1)`` max-pool and BN; a strided 1x1 conv and BN.
    """

    def __init__(
        self,
        channels: int,
        stride: int = 1,
        kernel_size: int = 5,
        dilations: Sequence[int] = (1, 2),
    ) -> None:
        super().__init__()
        branch = channels // (len(dilations) + 2)
        branches: list[nn.Module] = []
        for dilation in dilations:
            pad = (kernel_size + (kernel_size - 1) * (dilation - 1) - 1) // 2
            branches.append(
                nn.Sequential(
                    nn.Conv2d(channels, branch, kernel_size=1),
                    nn.BatchNorm2d(branch),
                    nn.ReLU(),
                    nn.Conv2d(
                        branch,
                        branch,
                        kernel_size=(kernel_size, 1),
                        padding=(pad, 0),
                        stride=(stride, 1),
                        dilation=(dilation, 1),
                    ),
                    nn.BatchNorm2d(branch),
                )
            )
        branches.append(
            nn.Sequential(
                nn.Conv2d(channels, branch, kernel_size=1),
                nn.BatchNorm2d(branch),
                nn.ReLU(),
                nn.MaxPool2d(kernel_size=(3, 1), stride=(stride, 1), padding=(1, 0)),
                nn.BatchNorm2d(branch),
            )
        )
        branches.append(
            nn.Sequential(
                nn.Conv2d(channels, branch, kernel_size=1, stride=(stride, 1)),
                nn.BatchNorm2d(branch),
            )
        )
        self.branches = nn.ModuleList(branches)
        _init_temporal(self)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([branch(x) for branch in self.branches], dim=1)


class HDGCNUnit(nn.Module):
    """One HD-GCN unit (official ``TCN_GCN_unit``): ``ReLU(tcn(gcn(x)) + residual(x))``.

    The residual is none (first unit), the identity, or a strided 1x1 convolution with BN.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        adjacency: Tensor,
        groups: Sequence[Sequence[int]],
        stride: int = 1,
        residual: bool = True,
        attention: bool = True,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        self.gcn = HDGraphConv(in_channels, out_channels, adjacency, groups, attention, backend)
        self.tcn = MultiScaleTemporalConv(out_channels, stride=stride)
        self.residual = unit_residual(in_channels, out_channels, stride, residual)

    def forward(self, x: Tensor) -> Tensor:
        y = self.tcn(self.gcn(x))
        return torch.relu(y if self.residual is None else y + self.residual(x))


_PRESETS = {
    "ntu60": Preset(
        kwargs={"num_classes": 60},
        description="NTU RGB+D 60, 25 joints, 2 persons; centre of mass joint 21 (center=20); "
        "pass center=0 or center=1 for the other two streams of the six-way ensemble",
        parameter_count=1_659_980,
        reported_accuracy="93.4 (HD-GCN, Lee et al. ICCV 2023, NTU RGB+D 60 X-Sub, top-1, "
        "six-way joint/bone ensemble over three centres of mass); X-View 97.2",
    ),
    "ntu120": Preset(
        kwargs={"num_classes": 120},
        description="NTU RGB+D 120, 25 joints, 2 persons; centre of mass joint 21 (center=20); "
        "pass center=0 or center=1 for the other two streams of the six-way ensemble",
        parameter_count=1_675_400,
        reported_accuracy="90.1 (HD-GCN, Lee et al. ICCV 2023, NTU RGB+D 120 X-Sub, top-1, "
        "six-way joint/bone ensemble over three centres of mass); X-Set 91.6",
    ),
}


@register_model(
    "hdgcn",
    presets=_PRESETS,
    default_preset="ntu60",
    summary="HD-GCN (ICCV 2023): hierarchically decomposed graph convolution with A-HA",
)
class HDGCN(UnitNetwork):
    """HD-GCN (official ``model.HDGCN.Model``).

    Args:
        num_classes: classifier outputs.
        center: 0-based centre-of-mass joint of the hierarchy; the official streams use NTU
            joints 21, 1, 2, i.e. ``20`` (default), ``0``, ``1``.
        layout: skeleton layout (:mod:`skelops.graphs`) of the hierarchy groups; the official
            groups are those of ``"ntu_pyskl"``. The layout must give at least 7 groups.
        in_channels: ``C`` (3 coordinates).
        num_persons: ``M``; the data BatchNorm spans ``M * V * C`` channels.
        base_channels: width of the first units (64 officially; must be a multiple of 4).
        dropout: dropout before the classifier (0 in the official configs).
        backend: :func:`skelops.graph_conv` backend of every graph convolution.

    Shapes:
        ``forward(x)``: ``[N, C, T, V, M]`` -> class scores ``[N, num_classes]``. ``T`` is
        halved (rounded up) twice inside the network; the official configs use ``T = 64``.
    """

    def __init__(
        self,
        num_classes: int = 60,
        center: int = 20,
        *,
        layout: str | graphs.Layout = _LAYOUT,
        in_channels: int = 3,
        num_persons: int = 2,
        base_channels: int = 64,
        dropout: float = 0.0,
        backend: str = "auto",
    ) -> None:
        layout = graphs.get_layout(layout)
        groups = graphs.hdgcn_groups(layout, center)
        adjacency = graphs.hdgcn_adjacency(layout, groups=groups)

        def make_unit(index: int, unit_in: int, unit_out: int, stride: int) -> nn.Module:
            return HDGCNUnit(
                unit_in,
                unit_out,
                adjacency,
                groups,
                stride=stride,
                residual=index > 0,
                attention=index > 0,
                backend=backend,
            )

        super().__init__(
            num_classes, layout, in_channels, num_persons, base_channels, dropout, make_unit
        )
        self.center = center
        self.groups = groups


_BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def load_official_state_dict(model: HDGCN, state_dict: Mapping[str, Tensor]) -> HDGCN:
    """Load an official HD-GCN checkpoint (``model.HDGCN.Model`` state dict) into ``model``.

    Per-level tensors are concatenated along the output channel (level-major, then subset) into
    the stacked modules, ``PA`` is transposed into ``adjacency`` (source v -> target w), the
    official ``TemporalConv.bias`` ``[1, C, 1, 1]`` becomes the temporal convolution's bias, and
    a ``module.`` prefix (``DataParallel``) is dropped. Build ``model`` with the checkpoint's
    classes and centre of mass (the config's ``CoM`` 21, 1, 2 is ``center=20, 0, 1``): A-HA's
    joint groups are not stored in the checkpoint. Loads strictly; an official key left unused
    raises.
    """
    source = {k.removeprefix("module."): v for k, v in state_dict.items()}
    used: set[str] = set()

    def take(key: str) -> Tensor:
        used.add(key)
        return source[key]

    def stacked(keys: Sequence[str]) -> Tensor:
        return torch.cat([take(k) for k in keys])

    def bn(dst: str, srcs: Sequence[str]) -> dict[str, Tensor]:
        out = {}
        for name in _BN_KEYS:
            keys = [f"{src}.{name}" for src in srcs]
            if name == "num_batches_tracked":
                out[f"{dst}.{name}"] = take(keys[0])
                used.update(keys)
            else:
                out[f"{dst}.{name}"] = stacked(keys)
        return out

    def conv(dst: str, src: str, bias: bool = True) -> dict[str, Tensor]:
        out = {f"{dst}.weight": take(f"{src}.weight")}
        if bias:
            out[f"{dst}.bias"] = take(f"{src}.bias")
        return out

    target = {**bn("data_bn", ["data_bn"]), **conv("fc", "fc")}
    for i, unit in enumerate(model.units):
        u, o = f"units.{i}", f"l{i + 1}"
        g, og = f"{u}.gcn", f"{o}.gcn1"
        levels, subsets = unit.gcn.adjacency.shape[:2]
        pairs = [(lv, k) for lv in range(levels) for k in range(subsets)]
        down = [f"{og}.conv_down.{lv}" for lv in range(levels)]
        edge = [f"{og}.conv.{lv}.{subsets}.conv" for lv in range(levels)]
        target[f"{g}.adjacency"] = take(f"{og}.PA").transpose(-1, -2)
        target[f"{g}.down.0.weight"] = stacked([f"{d}.0.weight" for d in down])
        target[f"{g}.down.0.bias"] = stacked([f"{d}.0.bias" for d in down])
        target.update(bn(f"{g}.down.1", [f"{d}.1" for d in down]))
        weights = [take(f"{og}.conv.{lv}.{k}.0.weight")[:, :, 0, 0] for lv, k in pairs]
        biases = [take(f"{og}.conv.{lv}.{k}.0.bias") for lv, k in pairs]
        target[f"{g}.weight"] = torch.stack(weights).unflatten(0, (levels, subsets))
        target[f"{g}.bias"] = torch.stack(biases).unflatten(0, (levels, subsets))
        target.update(bn(f"{g}.subset_bn", [f"{og}.conv.{lv}.{k}.1" for lv, k in pairs]))
        target[f"{g}.edge.conv.weight"] = stacked([f"{e}.0.weight" for e in edge])
        target.update(bn(f"{g}.edge.bn", [f"{e}.1" for e in edge]))
        if unit.gcn.aggregation is not None:
            a, oa = f"{g}.aggregation", f"{og}.aha"
            target.update(conv(f"{a}.down.0", f"{oa}.conv_down.0"))
            target.update(bn(f"{a}.down.1", [f"{oa}.conv_down.1"]))
            target.update(conv(f"{a}.edge.conv", f"{oa}.edge_conv.conv.0", bias=False))
            target.update(bn(f"{a}.edge.bn", [f"{oa}.edge_conv.conv.1"]))
            target.update(conv(f"{a}.aggregate", f"{oa}.aggregate"))
        target.update(bn(f"{g}.bn", [f"{og}.bn"]))
        if isinstance(unit.gcn.residual, nn.Sequential):
            target.update(conv(f"{g}.residual.0", f"{og}.down.0"))
            target.update(bn(f"{g}.residual.1", [f"{og}.down.1"]))
        t, ot = f"{u}.tcn.branches", f"{o}.tcn1.branches"
        for b in range(len(unit.tcn.branches)):
            target.update(conv(f"{t}.{b}.0", f"{ot}.{b}.0"))
            target.update(bn(f"{t}.{b}.1", [f"{ot}.{b}.1"]))
        for b in range(len(unit.tcn.branches) - 2):  # the dilated temporal branches
            target[f"{t}.{b}.3.weight"] = take(f"{ot}.{b}.3.conv.weight")
            target[f"{t}.{b}.3.bias"] = take(f"{ot}.{b}.3.bias").flatten()
            target.update(bn(f"{t}.{b}.4", [f"{ot}.{b}.3.bn"]))
        pool = len(unit.tcn.branches) - 2
        target.update(bn(f"{t}.{pool}.4", [f"{ot}.{pool}.4"]))
        if isinstance(unit.residual, nn.Sequential):
            target.update(conv(f"{u}.residual.0", f"{o}.residual.conv"))
            target.update(bn(f"{u}.residual.1", [f"{o}.residual.bn"]))
    # The official HD_Gconv also registers its last level's modules as ``conv_d``.
    unused = sorted(k for k in source if k not in used and ".gcn1.conv_d." not in k)
    if unused:
        raise ValueError(f"state_dict has official keys this model does not use: {unused[:8]}")
    model.load_state_dict(target, strict=True)
    return model


def ensemble_scores(scores: Sequence[Tensor]) -> Tensor:
    """HD-GCN's score fusion (official ``ensemble.py``): ``sum_s scores_s / ||scores_s||_2``.

    Each stream's ``[N, num_classes]`` scores (raw classifier outputs) are divided by their
    L2 norm over classes, per sample, and summed. As officially, an all-zero score row gives
    NaN.
    """
    if len(scores) == 0:
        raise ValueError("scores must hold at least one [N, num_classes] tensor, got none")
    shape = scores[0].shape
    for i, s in enumerate(scores):
        if s.dim() != 2 or s.shape != shape:
            raise ValueError(
                f"scores[{i}] must be [N, num_classes] like scores[0] {tuple(shape)}, "
                f"got {tuple(s.shape)}"
            )
    normalised = [s / torch.linalg.vector_norm(s, dim=-1, keepdim=True) for s in scores]
    return torch.stack(normalised).sum(dim=0)


class HDGCNEnsemble(nn.Module):
    """HD-GCN's six-way ensemble: joint and bone streams for each centre of mass.

    ``forward(x)`` takes joints ``[N, C, T, V, M]``, feeds them to the joint models and their
    bones (:func:`skelops.graphs.bone_stream`, the official ``feeders/bone_pairs.py`` pairs) to
    the bone models, and fuses the scores with :func:`ensemble_scores`.

    Args:
        joint_models: models fed joints (officially three, centres 20, 0, 1).
        bone_models: models fed bones (likewise).
        layout: layout whose bone parents define the bone stream.
    """

    def __init__(
        self,
        joint_models: Sequence[nn.Module],
        bone_models: Sequence[nn.Module],
        layout: str = _LAYOUT,
    ) -> None:
        super().__init__()
        if len(joint_models) + len(bone_models) == 0:
            raise ValueError("HDGCNEnsemble needs at least one model, got none")
        self.joint_models = nn.ModuleList(joint_models)
        self.bone_models = nn.ModuleList(bone_models)
        self.layout = layout

    @classmethod
    def from_preset(
        cls, preset: str = "ntu60", centers: Sequence[int] = (20, 0, 1), **overrides: Any
    ) -> HDGCNEnsemble:
        """Fresh models of an ``hdgcn`` preset, a joint and a bone model for each of
        ``centers`` (six with the default three centres of mass); ``overrides`` go to every
        model."""
        if "center" in overrides:
            raise ValueError("pass the centres of mass as centers=[...], not center=")
        kwargs = {**get_preset("hdgcn", preset).kwargs, **overrides}
        return cls(
            [HDGCN(center=c, **kwargs) for c in centers],
            [HDGCN(center=c, **kwargs) for c in centers],
            layout=kwargs.get("layout", _LAYOUT),
        )

    def forward(self, x: Tensor) -> Tensor:
        """x joints ``[N, C, T, V, M]`` -> fused scores ``[N, num_classes]``."""
        scores = [model(x) for model in self.joint_models]
        if len(self.bone_models):
            bones = graphs.bone_stream(x, self.layout)
            scores += [model(bones) for model in self.bone_models]
        return ensemble_scores(scores)
