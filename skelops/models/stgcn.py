"""ST-GCN: spatial temporal graph convolutional networks (Yan, Xiong and Lin, AAAI 2018).

Architecture read from the official code, yysijie/st-gcn: ``net/st_gcn.py`` (``Model``,
``st_gcn``), ``net/utils/tgcn.py`` (``ConvTemporalGraphical``), ``net/utils/graph.py``
(``Graph``), ``net/st_gcn_twostream.py`` (two streams), the training initialisation in
``processor/recognition.py`` (``weights_init``) and the configs
``config/st_gcn/ntu-xsub/train.yaml``, ``config/st_gcn/kinetics-skeleton/train.yaml`` and
``config/st_gcn.twostream/ntu-xsub/train.yaml``.

Conventions: skeleton tensors are ``[N, C, T, V, M]`` (batch, channels, frames, joints,
persons); an adjacency ``A[k, v, w]`` carries source joint ``v`` to target joint ``w``
(``y[..., w] = sum_v x[..., v] * A[k, v, w]``), as in ST-GCN's
``einsum('nkctv,kvw->nctw')``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from .. import graphs
from ..nn import GraphConv
from .registry import Preset, register_model

__all__ = [
    "BLOCK_SPECS",
    "STGCN",
    "STGCNBlock",
    "TwoStreamSTGCN",
    "build_stgcn",
    "load_official_state_dict",
]

# (out_channels, temporal stride) of the ten blocks, net/st_gcn.py Model.__init__.
BLOCK_SPECS: tuple[tuple[int, int], ...] = (
    (64, 1),
    (64, 1),
    (64, 1),
    (64, 1),
    (128, 2),
    (128, 1),
    (128, 1),
    (256, 2),
    (256, 1),
    (256, 1),
)


class STGCNBlock(nn.Module):
    """One ST-GCN unit (``st_gcn`` in ``net/st_gcn.py``).

    ``relu(tcn(gcn(x)) + residual(x))`` where ``gcn`` is the spatial graph convolution
    (ST-GCN's ``ConvTemporalGraphical``: ``Conv2d(C_in, K * C_out, 1)`` then
    ``einsum('nkctv,kvw->nctw')``, here the fused :class:`skelops.nn.GraphConv` with its
    ``[K, C_out]`` bias added before aggregation and the ``[K, V, V]`` edge-importance mask),
    and ``tcn`` is ``BatchNorm2d, ReLU, Conv2d((kt, 1), stride (s, 1), padding ((kt-1)/2, 0)),
    BatchNorm2d, Dropout``. The residual is absent (``residual=False``), the identity when
    channels and stride are unchanged, else ``Conv2d(C_in, C_out, 1, stride (s, 1))`` +
    ``BatchNorm2d``.

    Args:
        in_channels: ``C_in``.
        out_channels: ``C_out``.
        adjacency: ``[K, V, V]``, ``A[k, v, w]`` carrying source joint ``v`` to target ``w``.
        stride: temporal stride of the temporal convolution (and of the residual).
        dropout: dropout probability after the temporal convolution's BatchNorm.
        residual: use a residual connection.
        temporal_kernel_size: odd temporal kernel size (9 in ST-GCN).
        edge_importance: learn ST-GCN's ``[K, V, V]`` edge-importance mask.
        backend: graph-convolution backend (see :func:`skelops.graph_conv`).

    Shapes: ``[N, C_in, T, V] -> [N, C_out, (T - 1) // stride + 1, V]``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        adjacency: Tensor,
        *,
        stride: int = 1,
        dropout: float = 0.0,
        residual: bool = True,
        temporal_kernel_size: int = 9,
        edge_importance: bool = True,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        if temporal_kernel_size % 2 != 1:
            raise ValueError(f"temporal_kernel_size must be odd, got {temporal_kernel_size}")
        padding = (temporal_kernel_size - 1) // 2
        self.gcn = GraphConv(
            in_channels,
            out_channels,
            adjacency,
            bias=True,
            bias_before_aggregation=True,
            edge_importance=edge_importance,
            backend=backend,
        )
        self.tcn = nn.Sequential(
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
            nn.Conv2d(
                out_channels,
                out_channels,
                (temporal_kernel_size, 1),
                (stride, 1),
                (padding, 0),
            ),
            nn.BatchNorm2d(out_channels),
            nn.Dropout(dropout),
        )
        self.residual: nn.Module | None
        if not residual:
            self.residual = None
        elif in_channels == out_channels and stride == 1:
            self.residual = nn.Identity()
        else:
            self.residual = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=(stride, 1)),
                nn.BatchNorm2d(out_channels),
            )
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        y = self.tcn(self.gcn(x))
        if self.residual is not None:
            y = y + self.residual(x)
        return self.relu(y)


def _check_block_specs(blocks: Sequence[Sequence[int]]) -> tuple[tuple[int, int], ...]:
    """``blocks`` as a tuple of ``(out_channels, stride)`` pairs of positive ints, or ValueError."""

    def positive_int(value: object) -> bool:
        # bool is an int subclass, but True as a channel count is a mistake.
        return isinstance(value, int) and not isinstance(value, bool) and value > 0

    if isinstance(blocks, (str, bytes)) or not isinstance(blocks, Sequence) or not blocks:
        raise ValueError(
            f"blocks must be a non-empty sequence of (out_channels, stride) pairs, got {blocks!r}"
        )
    specs = []
    for index, spec in enumerate(blocks):
        if (
            not isinstance(spec, Sequence)
            or isinstance(spec, (str, bytes))
            or len(spec) != 2
            or not all(positive_int(value) for value in spec)
        ):
            raise ValueError(
                f"blocks[{index}] must be an (out_channels, stride) pair of positive ints, "
                f"got {spec!r}"
            )
        specs.append((spec[0], spec[1]))
    return tuple(specs)


class STGCN(nn.Module):
    """ST-GCN classifier (``Model`` in yysijie/st-gcn ``net/st_gcn.py``).

    Input normalisation by ``BatchNorm1d(C * V)`` over the ``[N * M, V * C, T]`` view (so the
    statistics are per joint and channel, shared by the persons), the :class:`STGCNBlock` of
    ``blocks`` (officially ten: 3 -> 64, 64 x 3, 128 with stride 2, 128 x 2, 256 with stride 2,
    256 x 2; temporal kernel 9; the first block has no residual and no dropout, as the official
    code drops ``dropout`` from its arguments), average pooling over frames and joints, the mean
    over persons, and a ``Conv2d(C_last, num_classes, 1)`` head (``C_last`` = 256). Each block
    has its own ``[K, V, V]`` edge-importance mask (official ``edge_importance[i]``, kept here in
    ``blocks[i].gcn.edge_importance``).

    The default graph is the official spatial partition, including its quirk:
    ``graphs.build_adjacency(layout, "spatial", legacy_stgcn=True)`` equals the official
    ``Graph(layout, "spatial").A`` exactly for ``ntu_stgcn`` (``ntu-rgb+d``) and
    ``openpose18`` (``openpose``); checked against the official code.

    Parameter counts equal the official model's (built and counted with the official code):
    3,098,832 (NTU-60), 3,114,252 (NTU-120), 3,177,140 (Kinetics, 18 joints and 400 classes);
    :func:`load_official_state_dict` loads official weights, and the outputs then match the
    official model to float rounding.

    Parameters are initialised as the official training does (``processor/recognition.py``
    ``weights_init``): convolution weights ``N(0, 0.02)`` (the graph convolution's included) with
    zero biases, BatchNorm weights ``N(1, 0.02)`` with zero biases, edge importance ones.

    Args:
        num_classes: number of classes (60 NTU-60, 120 NTU-120, 400 Kinetics).
        in_channels: ``C`` of the input (3: x, y, z or x, y, score).
        layout: skeleton layout name in :mod:`skelops.graphs`.
        strategy: partition strategy (``"spatial"`` in all official configs).
        legacy_stgcn: reproduce the official spatial partition exactly.
        dropout: dropout probability of blocks 2 to 10 (0.5 for NTU, 0 for Kinetics).
        edge_importance: learn the edge-importance masks.
        temporal_kernel_size: odd temporal kernel size.
        backend: graph-convolution backend (``"auto"``, ``"cpu"``, ``"cuda"``, ``"triton"``,
            ``"reference"``).
        blocks: ``(out_channels, temporal_stride)`` of each block, in order; the default
            :data:`BLOCK_SPECS` is the official network. A shorter or narrower list builds a
            small ST-GCN of the same design (the first block without residual or dropout, the
            head on the last block's channels), e.g. ``[(16, 1), (32, 2), (32, 1)]`` for
            quick experiments and tests; the presets keep the official blocks.

    Shapes: ``forward(x)``: x ``[N, C, T, V, M]`` -> logits ``[N, num_classes]``.
    """

    def __init__(
        self,
        num_classes: int = 60,
        in_channels: int = 3,
        *,
        layout: str = "ntu_stgcn",
        strategy: str = "spatial",
        legacy_stgcn: bool = True,
        dropout: float = 0.5,
        edge_importance: bool = True,
        temporal_kernel_size: int = 9,
        backend: str = "auto",
        blocks: Sequence[Sequence[int]] = BLOCK_SPECS,
    ) -> None:
        super().__init__()
        for name, value in (("num_classes", num_classes), ("in_channels", in_channels)):
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.block_specs = _check_block_specs(blocks)
        adjacency = graphs.build_adjacency(layout, strategy, legacy_stgcn=legacy_stgcn)
        self.layout = layout
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.num_joints = adjacency.shape[-1]
        self.data_bn = nn.BatchNorm1d(in_channels * self.num_joints)
        layers = []
        channels = in_channels
        for index, (out_channels, stride) in enumerate(self.block_specs):
            layers.append(
                STGCNBlock(
                    channels,
                    out_channels,
                    adjacency,
                    stride=stride,
                    dropout=0.0 if index == 0 else dropout,
                    residual=index != 0,
                    temporal_kernel_size=temporal_kernel_size,
                    edge_importance=edge_importance,
                    backend=backend,
                )
            )
            channels = out_channels
        self.blocks = nn.ModuleList(layers)
        self.fcn = nn.Conv2d(channels, num_classes, kernel_size=1)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The official training initialisation (``weights_init``, processor/recognition.py)."""
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, GraphConv)):
                module.weight.normal_(0.0, 0.02)
                if module.bias is not None:
                    module.bias.zero_()
                if isinstance(module, GraphConv) and module.edge_importance is not None:
                    module.edge_importance.fill_(1.0)
            elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
                module.reset_running_stats()
                module.weight.normal_(1.0, 0.02)
                module.bias.zero_()

    def check_input(self, x: Tensor) -> None:
        """Raise ValueError unless x is ``[N, C, T, V, M]`` with this model's C and V."""
        expected = f"[N, {self.in_channels}, T, {self.num_joints}, M]"
        if not isinstance(x, Tensor):
            raise ValueError(f"x must be a tensor {expected}, got {type(x).__name__}")
        if (
            x.dim() != 5
            or x.shape[1] != self.in_channels
            or x.shape[3] != self.num_joints
            or x.numel() == 0
        ):
            raise ValueError(
                f"x must be a non-empty {expected} tensor for layout {self.layout!r} "
                f"(C={self.in_channels} channels, V={self.num_joints} joints), "
                f"got {tuple(x.shape)}"
            )

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        n, c, t, v, m = x.shape
        # data_bn normalises each (joint, channel) pair, with the persons folded into the batch.
        x = x.permute(0, 4, 3, 1, 2).reshape(n * m, v * c, t)
        x = self.data_bn(x)
        x = x.view(n, m, v, c, t).permute(0, 1, 3, 4, 2).reshape(n * m, c, t, v)
        for block in self.blocks:
            x = block(x)
        x = x.mean(dim=(2, 3)).view(n, m, -1).mean(dim=1)
        return self.fcn(x[:, :, None, None]).flatten(1)


def official_motion(x: Tensor) -> Tensor:
    """The motion input of the official two-stream model (``net/st_gcn_twostream.py``):
    ``x[t] - (x[t - 1] + x[t + 1]) / 2`` for ``0 < t < T - 1``, zero on the first and last
    frames (a negated half second difference). x: ``[N, C, T, V, M]``."""
    motion = torch.zeros_like(x)
    motion[:, :, 1:-1] = x[:, :, 1:-1] - 0.5 * x[:, :, 2:] - 0.5 * x[:, :, :-2]
    return motion


class TwoStreamSTGCN(nn.Module):
    """Two ST-GCNs of the same configuration, one on joints and one on their motion.

    The scores are fused by summation: ``fusion="logits"`` returns
    ``joint_stream(x) + motion_stream(motion(x))``, the official rule
    (``net/st_gcn_twostream.py``), and trains with cross-entropy as one model;
    ``fusion="softmax"`` returns ``softmax(joint logits) + softmax(motion logits)`` (a score in
    ``[0, 2]`` per class, for late-fusion evaluation of separately trained streams).

    ``motion="difference"`` (default) feeds :func:`skelops.graphs.motion_stream`,
    ``x[t + 1] - x[t]`` with the last frame zero; ``motion="official"`` feeds the official
    model's ``x[t] - (x[t - 1] + x[t + 1]) / 2`` (see :func:`official_motion`), which makes the
    whole model equal to the official two-stream one.

    Args:
        motion: ``"difference"`` or ``"official"``.
        fusion: ``"logits"`` or ``"softmax"``.
        **kwargs: :class:`STGCN` arguments, shared by both streams.

    Shapes: ``forward(x)``: x ``[N, C, T, V, M]`` -> ``[N, num_classes]``.
    """

    def __init__(
        self,
        *,
        motion: Literal["difference", "official"] = "difference",
        fusion: Literal["logits", "softmax"] = "logits",
        **kwargs,
    ) -> None:
        super().__init__()
        if motion not in ("difference", "official"):
            raise ValueError(f"motion must be 'difference' or 'official', got {motion!r}")
        if fusion not in ("logits", "softmax"):
            raise ValueError(f"fusion must be 'logits' or 'softmax', got {fusion!r}")
        self.motion = motion
        self.fusion = fusion
        self.joint_stream = STGCN(**kwargs)
        self.motion_stream = STGCN(**kwargs)

    def forward(self, x: Tensor) -> Tensor:
        self.joint_stream.check_input(x)
        motion = graphs.motion_stream(x) if self.motion == "difference" else official_motion(x)
        joint_scores, motion_scores = self.joint_stream(x), self.motion_stream(motion)
        if self.fusion == "softmax":
            return joint_scores.softmax(dim=1) + motion_scores.softmax(dim=1)
        return joint_scores + motion_scores


@register_model(
    "stgcn",
    presets={
        "ntu60": Preset(
            kwargs={"num_classes": 60, "layout": "ntu_stgcn", "dropout": 0.5},
            description="NTU RGB+D 60 (config/st_gcn/ntu-xsub/train.yaml): 25 joints, "
            "official spatial partition, dropout 0.5",
            parameter_count=3_098_832,
            reported_accuracy="81.5% (Yan et al., AAAI 2018, NTU RGB+D 60, cross-subject, "
            "top-1; 88.3% cross-view)",
        ),
        "ntu120": Preset(
            kwargs={"num_classes": 120, "layout": "ntu_stgcn", "dropout": 0.5},
            description="NTU RGB+D 120: the NTU-60 configuration with 120 classes",
            parameter_count=3_114_252,
            reported_accuracy=None,
        ),
        "kinetics": Preset(
            kwargs={"num_classes": 400, "layout": "openpose18", "dropout": 0.0},
            description="Kinetics-skeleton (config/st_gcn/kinetics-skeleton/train.yaml): "
            "OpenPose 18 joints (x, y, score), 400 classes, no dropout",
            parameter_count=3_177_140,
            reported_accuracy="30.7% (Yan et al., AAAI 2018, Kinetics-skeleton, validation, "
            "top-1; 52.8% top-5)",
        ),
        "ntu60_two_stream": Preset(
            kwargs={
                "num_classes": 60,
                "layout": "ntu_stgcn",
                "dropout": 0.5,
                "streams": ("joint", "motion"),
                "motion": "official",
            },
            description="NTU RGB+D 60 joint + motion streams as the official two-stream model "
            "(motion x[t] - (x[t-1] + x[t+1]) / 2, logits summed; "
            "config/st_gcn.twostream/ntu-xsub/train.yaml)",
            parameter_count=6_197_664,
            reported_accuracy=None,
        ),
    },
    default_preset="ntu60",
    summary="ST-GCN (Yan et al., AAAI 2018): ten spatial-temporal graph convolution blocks "
    "on a partitioned skeleton graph with learned edge importance",
)
def build_stgcn(
    *,
    streams: Sequence[str] = ("joint",),
    **kwargs,
) -> STGCN | TwoStreamSTGCN:
    """Build :class:`STGCN` (``streams=("joint",)``) or :class:`TwoStreamSTGCN`
    (``streams=("joint", "motion")``, accepting ``motion=`` and ``fusion=``); other keyword
    arguments go to :class:`STGCN`."""
    streams = tuple(streams)
    if streams == ("joint",):
        return STGCN(**kwargs)
    if streams == ("joint", "motion"):
        return TwoStreamSTGCN(**kwargs)
    raise ValueError(f"streams must be ('joint',) or ('joint', 'motion'), got {streams}")


_BLOCK_KEY = re.compile(r"st_gcn_networks\.(\d+)\.(.+)")
_IMPORTANCE_KEY = re.compile(r"edge_importance\.(\d+)")


def _convert_stream(model: STGCN, state_dict: Mapping[str, Tensor], prefix: str) -> dict:
    """Official keys (under ``prefix``) -> this model's keys, GraphConv weights reshaped."""
    target = model.state_dict()
    converted: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        if not key.startswith(prefix):
            continue
        name = key[len(prefix) :]
        if name == "A":
            adjacency = target["blocks.0.gcn.adjacency"]
            if tuple(value.shape) != tuple(adjacency.shape) or not torch.allclose(
                value.to(adjacency), adjacency, atol=1e-6
            ):
                raise ValueError(
                    f"state_dict[{key!r}] (shape {tuple(value.shape)}) differs from the "
                    f"model's adjacency (shape {tuple(adjacency.shape)}, layout "
                    f"{model.layout!r}); build the model with the checkpoint's graph"
                )
            continue
        if match := _IMPORTANCE_KEY.fullmatch(name):
            name = f"blocks.{match[1]}.gcn.edge_importance"
        elif match := _BLOCK_KEY.fullmatch(name):
            index, rest = match[1], match[2]
            if rest in ("gcn.conv.weight", "gcn.conv.bias"):
                new_name = f"blocks.{index}.gcn.{rest.rsplit('.', 1)[1]}"
                if new_name not in target:
                    raise ValueError(f"unexpected key {key!r}: the model has no {new_name!r}")
                k, c_out = target[new_name].shape[:2]
                if rest.endswith("weight"):
                    c_in = target[new_name].shape[2]
                    expected = (k * c_out, c_in, 1, 1)
                else:
                    expected = (k * c_out,)
                if tuple(value.shape) != expected:
                    raise ValueError(
                        f"state_dict[{key!r}] must be {expected} (K={k}, C_out={c_out}), "
                        f"got {tuple(value.shape)}"
                    )
                value = value.reshape(target[new_name].shape)
                name = new_name
            else:
                name = f"blocks.{index}.{rest}"
        converted[name] = value
    # The official model keeps one adjacency buffer; GraphConv keeps one per block.
    for name, value in target.items():
        if name.endswith(".gcn.adjacency"):
            converted[name] = value
    return converted


def load_official_state_dict(
    model: STGCN | TwoStreamSTGCN, state_dict: Mapping[str, Tensor]
) -> STGCN | TwoStreamSTGCN:
    """Load a state dict of the official ST-GCN (``net/st_gcn.py`` ``Model``, or
    ``net/st_gcn_twostream.py`` with ``origin_stream.`` / ``motion_stream.`` keys) into
    ``model``, strictly.

    Mapping: ``st_gcn_networks.{i}.gcn.conv.weight`` ``[K * C_out, C_in, 1, 1]`` ->
    ``blocks.{i}.gcn.weight`` ``[K, C_out, C_in]`` and ``...gcn.conv.bias`` ``[K * C_out]`` ->
    ``blocks.{i}.gcn.bias`` ``[K, C_out]`` (row ``k * C_out + o`` is subset ``k``, channel
    ``o``); ``edge_importance.{i}`` -> ``blocks.{i}.gcn.edge_importance``;
    ``st_gcn_networks.{i}.{tcn,residual}.*`` -> ``blocks.{i}.{tcn,residual}.*``; ``data_bn.*``
    and ``fcn.*`` unchanged. The official buffer ``A`` must equal the model's adjacency. A
    ``module.`` prefix (``nn.DataParallel`` checkpoints) is stripped.

    Returns ``model``. Raises ValueError on a shape or graph mismatch, RuntimeError (from
    ``load_state_dict``) on missing or unexpected keys.
    """
    state_dict = {
        (key[len("module.") :] if key.startswith("module.") else key): value
        for key, value in state_dict.items()
    }
    if isinstance(model, TwoStreamSTGCN):
        # The official two-stream model calls its joint stream ``origin_stream``.
        streams = {"joint_stream": "origin_stream.", "motion_stream": "motion_stream."}
        converted = {}
        for stream, official_prefix in streams.items():
            stream_state = _convert_stream(getattr(model, stream), state_dict, official_prefix)
            converted.update({f"{stream}.{k}": v for k, v in stream_state.items()})
        known = tuple(streams.values())
    elif isinstance(model, STGCN):
        converted = _convert_stream(model, state_dict, "")
        known = ("",)
    else:
        raise TypeError(f"model must be an STGCN or TwoStreamSTGCN, got {type(model).__name__}")
    unknown = [key for key in state_dict if not key.startswith(known)]
    if unknown:
        raise RuntimeError(f"unexpected keys in state_dict: {unknown}")
    model.load_state_dict(converted, strict=True)
    return model
