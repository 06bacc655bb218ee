"""STC-Net: Spatio-Temporal Curve Network (Lee, Lee, Cho, Woo, Jang and Lee, "Leveraging
Spatio-Temporal Dependency for Skeleton-Based Action Recognition", ICCV 2023, arXiv 2212.04761).

The authors released no code (github Jho-Yonsei/STC-Net holds only a README), and the paper's
method section could not be retrieved here: only its abstract and introduction, and the caption
of its Figure 4 as a secondary summary quotes it ("overall architecture of the model (a) and the
spatial (b) and temporal modules (c)"). The
model below is designed from those, on the backbone of the same authors' HD-GCN
(:mod:`skelops.models.hdgcn`, Jho-Yonsei/HD-GCN), and every choice the paper leaves open is
listed here. Nothing in it is checked against the paper's numbers: the parameter counts are
ours, not official.

Architecture (input ``[N, C, T, V, M]`` as HD-GCN's):

- data BatchNorm over ``M * V * C`` channels in HD-GCN's ``(m, v, c)`` order, persons folded into
  the batch;
- ten units, HD-GCN's layout (:data:`skelops.models.hdgcn.STAGES`: 64 x 4, 128 x 3, 256 x 3
  channels with ``base_channels = 64``, temporal stride 2 at units 5 and 8), each
  ``ReLU(tcn(curve(gcn(x))) + residual(x))``: a DK-GC block, the STC branch and HD-GCN's
  (CTR-GCN's) multi-scale temporal convolution; the unit residual is none in unit 1, the
  identity, or a strided 1x1 convolution with BN, as in HD-GCN;
- global average pooling over frames, joints and persons, dropout (0 by default) and a linear
  classifier, as in HD-GCN.

**DK-GC** (each unit's graph convolution): :class:`skelops.nn.MultiDilationGraphConv` over
``skelops.graphs.dilated_adjacency(layout, dilations, "spatial")`` with ``reduction="sum"``:
one channel mix ``W [K = 3, C_out, C_in]`` (and one bias) shared by every dilation, aggregated
with the spatial-partition kernel of each dilation (the joints exactly ``d`` hops apart,
ST-GCN's spatial split by distance to the layout's centre, column-normalised) and the branches
summed. That is the paper's "large receptive field without any additional parameters": the
receptive field of the largest dilation at the cost, in parameters, of one graph convolution.
Then BN (initialised to ``1e-6``, as HD-GCN's and CTR-GCN's graph convolutions), the block's
residual (identity, or 1x1 convolution and BN when the channels change) and ReLU.

Choices the paper leaves open (or that could not be read):

1. Dilations ``(1, 2)`` by default: the one-hop kernel plus the joints two hops apart (a
   dilation above the layout's diameter links no joints and raises).
2. The kernels are fixed (a buffer), not learnt: a learnable adjacency per dilation would add
   ``D * K * V * V`` parameters per unit, against "no additional parameters". Hence the layer
   :class:`~skelops.nn.MultiDilationGraphConv`, not the functional op with a parameter.
3. The branches are summed, not concatenated (concatenation widens the output, hence the next
   layer's parameters).
4. The weights are initialised as HD-GCN initialises its 1x1 convolutions (Kaiming normal,
   fan-out of the equivalent ``Conv2d(C_in, K * C_out, 1)``), the bias to zero.
5. Layout: ``"ntu_pyskl"`` for NTU (HD-GCN's: pyskl's hand edges), ``"nw_ucla"`` for NW-UCLA.

**STC** (spatio-temporal curves): :class:`skelops.nn.SpatioTemporalCurve` with a learned key
(1x1 convolution to ``C / 4`` channels), the joints within one hop (and the joint itself) as the
candidates of each step, curves of ``curve_length = 4`` steps. It is a residual branch,
``h + BN(Conv1x1(stc(h)))`` with the BN weight initialised to zero, so that training starts
from the backbone and the branch grows in as it helps.

6. Placement: after the graph convolution of **every** unit, before its temporal convolution
   (``stc_units`` picks others). The abstract applies the module "between every adjacent frame"
   and presents it, with DK-GC, as one of the network's two elements; Figure 4 splits a unit
   into a spatial and a temporal module. Between the two, the curves see spatially aggregated
   features at the unit's full frame rate, and the temporal convolution that follows extends
   along the curves instead of along each joint's own trajectory only. Every unit, not some:
   the zero-initialised branch leaves the function unchanged at the start, and which units need
   it is an ablation the paper may have run but we cannot read. It costs 332,256 parameters and
   0.95 of the 4.26 GFLOPs (``ntu60``), mostly the output projections; ``stc_units`` trades
   them away.
7. Candidates within one hop: a curve follows the body from frame to frame (a joint, or a
   neighbour it may hand its motion to); all joints would let curves jump across the body.
8. The key is a 1x1 convolution to ``C / 4`` channels (as HD-GCN's reductions), the affinity
   scale ``1 / sqrt(C / 4)``; the curve's steps are weighted by the greedy path's probability
   (:func:`skelops.spatio_temporal_curve` defines the op).
9. The branch's output projection (1x1 convolution with bias, then BN) lets the summed curve
   features be re-weighted per channel before they join the backbone; no ReLU after the sum
   (the temporal convolution that follows starts with 1x1 convolutions).

Frames: curves link adjacent frames, so the STC of every unit must see ``T >= 2`` frames. A unit
after ``s`` stride-2 units sees ``ceil(T / 2^s)`` frames, so with STC in every unit the input
needs ``T >= 5`` (:attr:`STCNet.min_frames`); ``forward`` checks it.

Size (ours: no official code exists to compare with; the tests pin the counts). FLOPs per
sample on the official input, counted by ``torch.utils.flop_counter.FlopCounterMode`` with
``backend="reference"`` (the custom operators are opaque to the counter; the reference
composition is the same math). The counter reports 2 FLOPs per multiply-accumulate (MAC) and
counts only convolutions and matrix products (not element-wise operations, softmax, gathers or
pooling); GMACs = GFLOPs / 2.

==========  ==================  ==========  ===============  =====================
preset      input per sample    parameters  GFLOPs (GMACs)   of which STC
==========  ==================  ==========  ===============  =====================
``ntu60``   ``[3, 64, 25, 2]``  1,521,672   4.26 (2.13)      332,256 / 0.95 GFLOPs
``ntu120``  ``[3, 64, 25, 2]``  1,537,092   4.26 (2.13)      332,256 / 0.95 GFLOPs
``nwucla``  ``[3, 52, 20, 1]``  1,508,642   1.36 (0.68)      332,256 / 0.31 GFLOPs
==========  ==================  ==========  ===============  =====================

The backbone alone (``stc_units=()``, DK-GC and the temporal convolutions) has 1,189,416
parameters and 3.32 GFLOPs (1.66 GMACs) on ``ntu60``. The same counter gives HD-GCN
(:mod:`skelops.models.hdgcn`, 1,659,980 parameters) 3.65 GFLOPs (1.82 GMACs): STC-Net here
costs about 1.17 times HD-GCN's compute with 0.92 times its parameters. The STC-Net paper's
own table of parameters and FLOPs could not be retrieved, so these are not compared with it.

Conventions: skeleton tensors ``[N, C, T, V]`` / ``[N, C, T, V, M]``; adjacencies ``A[k, v, w]``
carry source joint ``v`` to target joint ``w`` (``y[..., w] = sum_v x[..., v] A[k, v, w]``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .. import graphs
from ..nn import MultiDilationGraphConv, SpatioTemporalCurve
from .hdgcn import (
    STAGES,
    MultiScaleTemporalConv,
    UnitNetwork,
    init_bn,
    init_conv,
    unit_residual,
)
from .registry import Preset, register_model

__all__ = ["STCNet"]

_NTU_LAYOUT = "ntu_pyskl"  # HD-GCN's NTU layout (pyskl's hand edges)
_GCN_BN_INIT = 1e-6  # HD-GCN / CTR-GCN initialise the graph convolution's BN this small


class DilatedGraphConvBlock(nn.Module):
    """DK-GC block: ``ReLU(BN(multi_dilation_graph_conv(x)) + residual(x))``.

    Args:
        in_channels, out_channels: ``C_in``, ``C_out``.
        adjacency: ``[D, K, V, V]`` dilated kernels, ``A[d, k, v, w]`` source ``v`` -> target
            ``w`` (:func:`skelops.graphs.dilated_adjacency`); fixed.
        backend: of :func:`skelops.multi_dilation_graph_conv`.

    Shapes:
        ``[N, C_in, T, V]`` -> ``[N, C_out, T, V]``.
    """

    def __init__(
        self, in_channels: int, out_channels: int, adjacency: Tensor, backend: str = "auto"
    ) -> None:
        super().__init__()
        self.conv = MultiDilationGraphConv(
            in_channels, out_channels, adjacency, reduction="sum", backend=backend
        )
        subsets = adjacency.shape[1]
        # Kaiming normal, fan-out, of the equivalent Conv2d(C_in, K * C_out, 1) (HD-GCN's init)
        nn.init.normal_(self.conv.weight, 0.0, math.sqrt(2.0 / (subsets * out_channels)))
        nn.init.zeros_(self.conv.bias)
        self.bn = nn.BatchNorm2d(out_channels)
        init_bn(self.bn, _GCN_BN_INIT)
        self.residual = unit_residual(in_channels, out_channels, stride=1, residual=True)

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.bn(self.conv(x)) + self.residual(x))


class CurveBranch(nn.Module):
    """STC residual branch: ``x + BN(Conv1x1(spatio_temporal_curve(x)))``.

    The curves are scored on a learned key (1x1 convolution to ``C / 4`` channels) and step to
    the joints allowed by ``candidates``; the BN weight starts at zero, so the branch starts as
    the identity.

    Args:
        channels: ``C``.
        length: steps along each curve (``>= 1``).
        candidates: ``[V, V]`` bool, ``candidates[v, w]``: joint ``w`` of the next frame may
            follow joint ``v``.
        backend: of :func:`skelops.spatio_temporal_curve`.

    Shapes:
        ``[N, C, T, V]`` -> ``[N, C, T, V]``, ``T >= 2``.
    """

    def __init__(
        self, channels: int, length: int, candidates: Tensor, backend: str = "auto"
    ) -> None:
        super().__init__()
        self.curve = SpatioTemporalCurve(
            channels,
            length,
            key_channels=channels // 4,
            candidates=candidates,
            backend=backend,
        )
        self.project = nn.Conv2d(channels, channels, kernel_size=1)
        self.bn = nn.BatchNorm2d(channels)
        init_conv(self.curve.key)
        init_conv(self.project)
        init_bn(self.bn, 0.0)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.bn(self.project(self.curve(x)))


class STCNetUnit(nn.Module):
    """One unit: ``ReLU(tcn(curve(gcn(x))) + residual(x))``; ``curve`` is the identity in a
    unit without STC. The residual is none, the identity, or a strided 1x1 convolution with BN.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        adjacency: Tensor,
        candidates: Tensor | None,
        curve_length: int,
        stride: int = 1,
        residual: bool = True,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        self.gcn = DilatedGraphConvBlock(in_channels, out_channels, adjacency, backend)
        self.curve = (
            nn.Identity()
            if candidates is None
            else CurveBranch(out_channels, curve_length, candidates, backend)
        )
        self.tcn = MultiScaleTemporalConv(out_channels, stride=stride)
        self.residual = unit_residual(in_channels, out_channels, stride, residual)

    def forward(self, x: Tensor) -> Tensor:
        y = self.tcn(self.curve(self.gcn(x)))
        return torch.relu(y if self.residual is None else y + self.residual(x))


_PAPER = "STC-Net, Lee et al. ICCV 2023"
_NOT_RETRIEVED = (
    f"not retrieved ({_PAPER}: only the abstract and introduction were readable; the abstract "
    "claims state-of-the-art results on four benchmarks without numbers)"
)
_PRESETS = {
    "ntu60": Preset(
        kwargs={"num_classes": 60},
        description="NTU RGB+D 60: input [N, 3, 64, 25, 2] (64 frames as HD-GCN's configs), "
        "layout ntu_pyskl",
        parameter_count=1_521_672,
        reported_accuracy=_NOT_RETRIEVED,
    ),
    "ntu120": Preset(
        kwargs={"num_classes": 120},
        description="NTU RGB+D 120: input [N, 3, 64, 25, 2], layout ntu_pyskl",
        parameter_count=1_537_092,
        reported_accuracy=_NOT_RETRIEVED,
    ),
    "nwucla": Preset(
        kwargs={"num_classes": 10, "layout": "nw_ucla", "num_persons": 1},
        description="Northwestern-UCLA: input [N, 3, 52, 20, 1] (HD-GCN's feeders/feeder_ucla.py: "
        "52 frames, one person, 20 joints), layout nw_ucla",
        parameter_count=1_508_642,
        reported_accuracy=_NOT_RETRIEVED,
    ),
}


@register_model(
    "stcnet",
    presets=_PRESETS,
    default_preset="ntu60",
    summary="STC-Net (ICCV 2023): dilated-kernel graph convolution and spatio-temporal curves",
)
class STCNet(UnitNetwork):
    """STC-Net on the HD-GCN backbone (design: see the module docstring).

    Args:
        num_classes: classifier outputs.
        layout: skeleton layout (:mod:`skelops.graphs`); it gives ``V``, the dilated kernels
            and the STC candidates. Needs a centre joint (spatial partition).
        dilations: hop distances of the DK-GC kernels, distinct, each ``>= 1`` and at most the
            layout's diameter.
        curve_length: steps along each spatio-temporal curve, ``>= 1``.
        stc_units: 0-based indices of the units with an STC branch (all ten by default).
        in_channels: ``C`` (3 coordinates).
        num_persons: ``M``; the data BatchNorm spans ``M * V * C`` channels.
        base_channels: width of the first units (64; a multiple of 4).
        dropout: dropout before the classifier.
        backend: backend of every :func:`skelops.multi_dilation_graph_conv` and
            :func:`skelops.spatio_temporal_curve` (``"reference"`` for the PyTorch compositions,
            e.g. to count FLOPs).

    Shapes:
        ``forward(x)``: ``[N, C, T, V, M]`` -> class scores ``[N, num_classes]``;
        ``T >= min_frames`` (5 with STC in every unit).

    Raises:
        ValueError: on a bad argument (curve length < 1, a dilation above the layout's
            diameter, ...); ``forward`` on a wrong input shape or too few frames.
    """

    def __init__(
        self,
        num_classes: int = 60,
        *,
        layout: str | graphs.Layout = _NTU_LAYOUT,
        dilations: Sequence[int] = (1, 2),
        curve_length: int = 4,
        stc_units: Sequence[int] = tuple(range(len(STAGES))),
        in_channels: int = 3,
        num_persons: int = 2,
        base_channels: int = 64,
        dropout: float = 0.0,
        backend: str = "auto",
    ) -> None:
        if isinstance(curve_length, bool) or not isinstance(curve_length, int):
            raise ValueError(f"curve_length must be an int >= 1, got {curve_length!r}")
        if curve_length < 1:
            raise ValueError(
                f"curve_length must be >= 1 (steps along each spatio-temporal curve), "
                f"got {curve_length}"
            )
        stc_units = tuple(stc_units)
        if any(
            isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(STAGES)
            for i in stc_units
        ):
            raise ValueError(
                f"stc_units must hold unit indices in [0, {len(STAGES) - 1}], got {stc_units}"
            )
        if isinstance(dilations, Sequence) and len(set(dilations)) != len(dilations):
            raise ValueError(f"dilations must be distinct, got {tuple(dilations)}")
        layout = graphs.get_layout(layout)
        # raises for a dilation < 1 or above the layout's diameter, naming both
        adjacency = graphs.dilated_adjacency(layout, dilations, "spatial")
        candidates = graphs.hop_distance(layout) <= 1

        def make_unit(index: int, unit_in: int, unit_out: int, stride: int) -> nn.Module:
            return STCNetUnit(
                unit_in,
                unit_out,
                adjacency,
                candidates if index in stc_units else None,
                curve_length,
                stride=stride,
                residual=index > 0,
                backend=backend,
            )

        super().__init__(
            num_classes, layout, in_channels, num_persons, base_channels, dropout, make_unit
        )
        self.dilations = tuple(dilations)
        self.curve_length = curve_length
        self.stc_units = stc_units
        # A unit after s stride-2 units sees ceil(T / 2^s) frames; its curves need 2.
        frames_divisor = 1
        for i, (_, stride) in enumerate(STAGES):
            if i in stc_units:
                self.min_frames = max(self.min_frames, frames_divisor + 1)
            frames_divisor *= stride

    def _min_frames_reason(self) -> str:
        return (
            f"spatio-temporal curves link adjacent frames, and the STC of units "
            f"{list(self.stc_units)} sees T divided by the temporal strides before it"
        )
