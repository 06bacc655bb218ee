"""Ensem-NN: an ensemble of residual 1-D CNNs (Xu, Cheng, Wang, Xia, Liu and Tao, "Ensemble
One-Dimensional Convolution Neural Networks for Skeleton-Based Action Recognition", IEEE Signal
Processing Letters 25(7), 2018; arXiv:1801.02475).

Architecture read from the official Keras 2.1.4 code, cnnlstm/Ensem-NN:
``train_ordinary.py`` (``resnet``: the Base-Net), ``train_two_stream.py`` (``resnet_tem``,
``resnet_spa``, product fusion with ``L1``), ``train_hier.py`` (``depth_hier``: the Body-part
Net), ``train_attention.py`` (``res_atte``), ``train_differ.py`` (``resnet`` without the last
BatchNormalization), and the data scripts ``process_hierchical.py`` (body-part split) and
``process_h5_differ.py`` (frame differences). No graph convolution is involved.

**Input.** The official networks take ``[N, T, F]``: ``T = 300`` frames (zero-padded) of
``F = M * V * C = 2 * 25 * 3 = 150`` features, laid out person-major, then joint, then
coordinate (``index = m * V * C + v * C + c``). Every module here accepts that layout or the
library's ``[N, C, T, V, M]`` (batch, channels, frames, joints, persons), which
:func:`skeleton_to_frames` maps onto it. The frame count is fixed at construction, as in the
official ``Input(shape=(300, 150))``: the spatial stream convolves over the features with the
frames as channels. Official preprocessing, left to the data pipeline: the Base-Net,
two-stream and attention inputs have the training-set mean (0.5909 cross-subject, 0.5835
cross-view) subtracted from the frames before the first frame whose feature sum is not
positive; the body-part and frame-difference inputs are raw coordinates.

**Base-Net** (:class:`BaseNet1D`): ``Conv1D(64, 8)``, then nine layers
``Conv1D(k=8) -> BatchNorm -> ReLU -> Dropout`` with widths 64 x 3, 128 x 3, 256 x 3 (stride 2
on entering 128 and 256); after layers 3, 6 and 9 the input of the layer two before (layers
1, 4, 7) is added, through ``Conv1D(k=1, stride=2)`` where the width changes; then
BatchNorm -> ReLU, global average pooling over time and ``Dense(num_classes)``. Convolutions
pad like TensorFlow's ``"same"`` (the extra pad on the right, also for stride 2); BatchNorm
uses Keras' ``epsilon=1e-3, momentum=0.99`` (PyTorch ``momentum=0.01``). With F = 150 and 60
classes the Base-Net has **1,874,876** parameters, the figure named for it; Keras'
``count_params()`` says 1,878,076 because it also counts the 3,200 BatchNorm moving
means/variances, which are buffers here. All counts below were checked against a Keras 3 port
of the official definitions (trainable weights), which also served as a numerical oracle.

**Subnets** (all with NTU-60 counts):

* Two-stream (:class:`TwoStreamNet1D`, 3,826,552): a temporal Base-Net on ``[N, T, F]`` and a
  spatial Base-Net on the transpose ``[N, F, T]`` (features as the sequence, frames as
  channels); the two softmax outputs are multiplied and L1-normalised.
* Body-part (:class:`BodyPartNet1D`, 9,082,540): five Base-Nets (dropout 0.1), one per body
  part, each on ``[N, T, M * 6 * C] = [N, T, 36]`` (the part's joints, zero-padded to the
  largest part's six, person-major); product fusion as above. The official split
  (``process_hierchical.py``) in 0-based NTU joints: (8, 9, 10, 11, 24, 23),
  (4, 5, 6, 7, 22, 21), (16, 17, 18, 19), (12, 13, 14, 15), (0, 1, 20, 2, 3), i.e. the right
  arm, left arm, right leg, left leg and torso of ``get_layout("ntu_stgcn").parts`` in another
  order (the official names them leftup, rightup, leftdown, rightdown, middle); ``parts=`` a
  layout name takes that layout's groups instead (same counts on NTU).
* Attention (:class:`AttentionNet1D`, 2,138,257): a feature attention
  ``softmax_F(Dense(F)(tanh(Dense(2F)(x_t))))`` multiplies the input (the official hidden
  width is the literal 300, which is 2F = T on NTU; 2F is used here); the Base-Net in
  pre-activation order (``BatchNorm -> ReLU -> Dropout(0.1) -> Conv1D``, no final
  BatchNorm); after each residual sum a temporal attention ``Dense(1)(relu(Dense(2C)(y)))``
  computed from the residual branch ``y`` multiplies the sum. **The official softmax of that
  temporal attention runs over an axis of size one, so its weights are identically 1: a
  no-op** whose parameters (173,827) still count. ``temporal_attention="official"`` (default)
  keeps that behaviour; ``"frames"`` applies the softmax over the frames instead, scaled by
  the frame count so that uniform attention is the identity.
* Frame-difference (:class:`FrameDifferenceNet1D`, 1,874,364): the Base-Net (dropout 0.3,
  no final BatchNorm) on ``x[t] - x[t - 1]`` (zero at ``t = 0``), computed here from the
  coordinates (the official precomputes it over the zero-padded 300 frames).

**Ensemble** (:class:`Ensemble1D`, 16,921,713 on NTU-60, 17,060,493 on NTU-120): late fusion
of the four subnets, which the paper trains separately. The released code has no ensemble
script; ``fusion="product"`` (default) applies the rule the official code uses inside its
subnets (product of the softmax outputs, L1-normalised), ``"mean"`` averages the softmax
outputs.

**Outputs.** Every module returns logits ``z`` whose ``softmax(z)`` is the official output.
The product of softmax outputs, L1-normalised, equals the softmax of the summed logits, so the
product fusions return summed logits (exact, and stable where the product underflows); the
mean fusion returns ``log(mean_s softmax(z_s))``. Train with ``nn.CrossEntropyLoss`` on them,
as the official ``categorical_crossentropy`` on the probabilities; the official L1 kernel
regularisation (1e-4 on every convolution kernel) is :meth:`l1_penalty`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import graphs
from .registry import Preset, register_model

__all__ = [
    "OFFICIAL_NTU_PARTS",
    "AttentionNet1D",
    "BaseNet1D",
    "BodyPartNet1D",
    "Ensemble1D",
    "FrameDifferenceNet1D",
    "SamePadConv1d",
    "TwoStreamNet1D",
    "build_ensemble1d",
    "skeleton_to_frames",
]

# (stride, out_channels) of the nine layers after the stem; kernel 8 throughout
# (``config`` in train_ordinary.py). A residual joins after layers 3, 6 and 9 (``res_num``).
LAYER_SPECS: tuple[tuple[int, int], ...] = (
    (1, 64),
    (1, 64),
    (1, 64),
    (2, 128),
    (1, 128),
    (1, 128),
    (2, 256),
    (1, 256),
    (1, 256),
)
KERNEL_SIZE = 8
STEM_CHANNELS = 64
_RESIDUAL_AFTER = (2, 5, 8)
# Keras' BatchNormalization defaults: epsilon 1e-3, moving average 0.99 of the old value.
_BN_EPS = 1e-3
_BN_MOMENTUM = 0.01
_L1_WEIGHT = 1e-4

# process_hierchical.py: leftup, rightup, leftdown, rightdown, middle (1-based there).
OFFICIAL_NTU_PARTS: tuple[tuple[int, ...], ...] = (
    (8, 9, 10, 11, 24, 23),
    (4, 5, 6, 7, 22, 21),
    (16, 17, 18, 19),
    (12, 13, 14, 15),
    (0, 1, 20, 2, 3),
)


def skeleton_to_frames(x: Tensor) -> Tensor:
    """``[N, C, T, V, M]`` skeletons to the official ``[N, T, M * V * C]`` frame features
    (person-major, then joint, then coordinate: ``index = m * V * C + v * C + c``)."""
    if x.dim() != 5:
        raise ValueError(f"x must be [N, C, T, V, M], got shape {list(x.shape)}")
    n, c, t, v, m = x.shape
    return x.permute(0, 2, 4, 3, 1).reshape(n, t, m * v * c)


def _he_normal_(weight: Tensor) -> None:
    """Keras 2.1's ``he_normal``: normal(0, sqrt(2 / fan_in)) truncated at two deviations."""
    if weight.is_meta:
        return
    std = math.sqrt(2.0 / weight[0].numel())
    # redraw the tails, as TensorFlow's truncated_normal (nn.init.trunc_normal_'s inverse-CDF
    # sampling costs seconds on the 17M weights)
    with torch.no_grad():
        weight.normal_(0.0, std)
        tails = weight.abs() > 2 * std
        while tails.any():
            weight[tails] = torch.randn(int(tails.sum()), dtype=weight.dtype) * std
            tails = weight.abs() > 2 * std


def _keras_dense(in_features: int, out_features: int, he_normal: bool = False) -> nn.Linear:
    """``Dense`` with Keras' initialisation: glorot_uniform (or he_normal) kernel, zero bias."""
    layer = nn.Linear(in_features, out_features)
    if he_normal:
        _he_normal_(layer.weight)
    else:
        nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class SamePadConv1d(nn.Conv1d):
    """``Conv1d`` on ``[N, C, L]`` padded like Keras/TensorFlow ``padding="same"``: output
    length ``ceil(L / stride)``, total padding ``max((out - 1) * stride + k - L, 0)`` with the
    odd one on the right. He-normal kernel, zero bias, as the official ``Conv1D``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride)
        _he_normal_(self.weight)
        nn.init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        length = x.shape[-1]
        stride, kernel = self.stride[0], self.kernel_size[0]
        total = max((-(-length // stride) - 1) * stride + kernel - length, 0)
        if total:
            x = F.pad(x, (total // 2, total - total // 2))
        return super().forward(x)


class _TemporalAttention(nn.Module):
    """``Dense(2C, relu) -> Dense(1) -> softmax`` on ``[N, C, L]`` (train_attention.py).

    ``"official"``: softmax over the size-one last axis, so the weights are all 1;
    ``"frames"``: softmax over the ``L`` frames, times ``L``."""

    def __init__(self, channels: int, mode: Literal["official", "frames"]):
        super().__init__()
        self.hidden = _keras_dense(channels, 2 * channels)
        self.score = _keras_dense(2 * channels, 1)
        self.mode = mode

    def forward(self, branch: Tensor) -> Tensor:
        score = self.score(F.relu(self.hidden(branch.transpose(1, 2))))  # [N, L, 1]
        if self.mode == "official":
            weights = torch.softmax(score, dim=-1)
        else:
            weights = torch.softmax(score, dim=1) * score.shape[1]
        return weights.transpose(1, 2)  # [N, 1, L]


class _Layer(nn.Module):
    """Conv1D(k=8) with BatchNorm, ReLU and Dropout, after it (``"post"``, the Base-Net) or
    before it (``"pre"``, the attention net)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        dropout: float,
        order: Literal["post", "pre"],
    ):
        super().__init__()
        self.order = order
        self.conv = SamePadConv1d(in_channels, out_channels, KERNEL_SIZE, stride)
        norm_channels = out_channels if order == "post" else in_channels
        self.bn = nn.BatchNorm1d(norm_channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        if self.order == "post":
            return self.dropout(F.relu(self.bn(self.conv(x))))
        return self.conv(self.dropout(F.relu(self.bn(x))))


class BaseNet1D(nn.Module):
    """The residual 1-D CNN of Ensem-NN on ``[N, L, in_channels]`` sequences (channels last,
    as Keras' ``Conv1D``); returns logits ``[N, num_classes]``.

    Args:
        in_channels: features per step (150 on NTU: 2 persons x 25 joints x 3).
        num_classes: classes of the ``Dense`` head.
        dropout: after every ReLU (official: 0.0 Base-Net and two-stream, 0.1 body-part and
            attention, 0.3 frame-difference).
        order: ``"post"`` (``Conv -> BN -> ReLU -> Dropout``) or ``"pre"``
            (``BN -> ReLU -> Dropout -> Conv``, the attention net).
        final_norm: BatchNorm and ReLU before the pooling (not in the attention and
            frame-difference nets).
        temporal_attention: None, or the attention net's ``"official"`` / ``"frames"``
            attention after each residual sum (see :class:`AttentionNet1D`).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        dropout: float = 0.0,
        order: Literal["post", "pre"] = "post",
        final_norm: bool = True,
        temporal_attention: Literal["official", "frames"] | None = None,
    ):
        super().__init__()
        if order not in ("post", "pre"):
            raise ValueError(f"order must be 'post' or 'pre', got {order!r}")
        if temporal_attention not in (None, "official", "frames"):
            raise ValueError(
                f"temporal_attention must be None, 'official' or 'frames', got "
                f"{temporal_attention!r}"
            )
        self.in_channels = in_channels
        self.stem = SamePadConv1d(in_channels, STEM_CHANNELS, KERNEL_SIZE)
        layers, shortcuts, attentions = [], nn.ModuleDict(), nn.ModuleDict()
        widths = [STEM_CHANNELS] + [width for _, width in LAYER_SPECS]
        for i, (stride, width) in enumerate(LAYER_SPECS):
            layers.append(_Layer(widths[i], width, stride, dropout, order))
            if i in _RESIDUAL_AFTER:
                if widths[i - 2] != width:
                    shortcuts[str(i)] = SamePadConv1d(widths[i - 2], width, 1, stride=2)
                if temporal_attention is not None:
                    attentions[str(i)] = _TemporalAttention(width, temporal_attention)
        self.layers = nn.ModuleList(layers)
        self.shortcuts = shortcuts
        self.attentions = attentions
        self.final_norm = (
            nn.BatchNorm1d(widths[-1], eps=_BN_EPS, momentum=_BN_MOMENTUM) if final_norm else None
        )
        self.fc = _keras_dense(widths[-1], num_classes, he_normal=True)

    def forward(self, x: Tensor) -> Tensor:
        """``x``: ``[N, L, in_channels]``; returns logits ``[N, num_classes]``."""
        if x.dim() != 3 or x.shape[-1] != self.in_channels:
            raise ValueError(f"x must be [N, L, {self.in_channels}], got {list(x.shape)}")
        h = self.stem(x.transpose(1, 2))
        inputs: list[Tensor] = []
        for i, layer in enumerate(self.layers):
            inputs.append(h)
            branch = layer(h)
            if i not in _RESIDUAL_AFTER:
                h = branch
                continue
            residual = inputs[i - 2]
            if str(i) in self.shortcuts:
                residual = self.shortcuts[str(i)](residual)
            h = residual + branch
            if str(i) in self.attentions:
                # the weights come from the branch and scale the sum (train_attention.py)
                h = h * self.attentions[str(i)](branch)
        if self.final_norm is not None:
            h = F.relu(self.final_norm(h))
        return self.fc(h.mean(dim=-1))

    def l1_penalty(self) -> Tensor:
        """The official kernel regulariser: ``1e-4 * sum |W|`` over the convolution kernels."""
        return _l1_penalty(self)


def _l1_penalty(module: nn.Module) -> Tensor:
    kernels = [m.weight.abs().sum() for m in module.modules() if isinstance(m, SamePadConv1d)]
    return _L1_WEIGHT * torch.stack(kernels).sum()


class _SkeletonNet(nn.Module):
    """Shared input handling: the official ``[N, T, M * V * C]`` or ``[N, C, T, V, M]``."""

    def __init__(self, num_frames: int, layout: str, num_persons: int, in_channels: int):
        super().__init__()
        self.num_frames = num_frames
        self.layout = graphs.get_layout(layout)
        self.num_joints = self.layout.num_joints
        self.num_persons = num_persons
        self.in_channels = in_channels
        self.num_features = num_persons * self.num_joints * in_channels

    def frames(self, x: Tensor) -> Tensor:
        """Validate ``x`` and return it as ``[N, T, M * V * C]``."""
        t, f = self.num_frames, self.num_features
        c, v, m = self.in_channels, self.num_joints, self.num_persons
        if x.dim() == 3 and x.shape[1:] == (t, f):
            return x
        if x.dim() == 5 and x.shape[1:] == (c, t, v, m):
            return skeleton_to_frames(x)
        raise ValueError(
            f"x must be [N, {t}, {f}] (official: frames x persons*joints*channels) or "
            f"[N, {c}, {t}, {v}, {m}] ([N, C, T, V, M]) for this model (num_frames={t}, "
            f"{self.layout.name}: V={v} joints, M={m} persons, C={c} channels), "
            f"got {list(x.shape)}"
        )

    def l1_penalty(self) -> Tensor:
        """The official kernel regulariser: ``1e-4 * sum |W|`` over the convolution kernels."""
        return _l1_penalty(self)


class TwoStreamNet1D(_SkeletonNet):
    """Two-stream subnet (train_two_stream.py): temporal Base-Net on ``[N, T, F]``, spatial
    Base-Net on ``[N, F, T]``; product fusion, returned as summed logits ``[N, classes]``."""

    def __init__(
        self,
        num_classes: int,
        num_frames: int = 300,
        layout: str = "ntu_stgcn",
        num_persons: int = 2,
        in_channels: int = 3,
        dropout: float = 0.0,
    ):
        super().__init__(num_frames, layout, num_persons, in_channels)
        self.temporal = BaseNet1D(self.num_features, num_classes, dropout)
        self.spatial = BaseNet1D(num_frames, num_classes, dropout)

    def forward(self, x: Tensor) -> Tensor:
        """``x``: ``[N, T, M * V * C]`` or ``[N, C, T, V, M]``; returns logits."""
        x = self.frames(x)
        return self.temporal(x) + self.spatial(x.transpose(1, 2))


class BodyPartNet1D(_SkeletonNet):
    """Body-part subnet (train_hier.py): one Base-Net per body part on the part's joints,
    product fusion, returned as summed logits ``[N, classes]``.

    Args:
        parts: ``"official"`` (:data:`OFFICIAL_NTU_PARTS`, NTU's 25 joints only), a layout
            name (its ``parts``), or explicit 0-based joint groups. Each part's features are
            person-major, joint, coordinate, zero-padded to the largest part.
    """

    def __init__(
        self,
        num_classes: int,
        num_frames: int = 300,
        layout: str = "ntu_stgcn",
        num_persons: int = 2,
        in_channels: int = 3,
        parts: str | Sequence[Sequence[int]] = "official",
        dropout: float = 0.1,
    ):
        super().__init__(num_frames, layout, num_persons, in_channels)
        groups = self._resolve_parts(parts)
        self.parts = groups
        width = max(len(g) for g in groups)
        c, v = in_channels, self.num_joints
        # feature index of (part, m, j, c); the extra index num_features reads a zero
        index = torch.full((len(groups), num_persons * width * c), self.num_features)
        for p, group in enumerate(groups):
            for m in range(num_persons):
                for j, joint in enumerate(group):
                    for k in range(c):
                        index[p, (m * width + j) * c + k] = (m * v + joint) * c + k
        self.register_buffer("part_index", index, persistent=False)
        self.part_nets = nn.ModuleList(
            BaseNet1D(index.shape[1], num_classes, dropout) for _ in groups
        )

    def _resolve_parts(self, parts: str | Sequence[Sequence[int]]) -> tuple[tuple[int, ...], ...]:
        if parts == "official":
            if self.num_joints != 25:
                raise ValueError(
                    f"parts='official' is NTU's 25-joint split, but layout "
                    f"{self.layout.name!r} has {self.num_joints} joints; pass parts=<layout>"
                )
            groups = OFFICIAL_NTU_PARTS
        elif isinstance(parts, str):
            groups = tuple(joints for _, joints in graphs.get_layout(parts).parts)
        else:
            groups = tuple(tuple(int(j) for j in g) for g in parts)
        if not groups or any(not g for g in groups):
            raise ValueError(f"parts must be non-empty joint groups, got {groups}")
        for g in groups:
            if any(not 0 <= j < self.num_joints for j in g):
                raise ValueError(f"parts joint indices must be in [0, {self.num_joints}), got {g}")
        return groups

    def split_parts(self, x: Tensor) -> Tensor:
        """The official body-part input ``[N, P, T, M * max_part * C]`` (``[N, 5, 300, 36]``
        on NTU) from ``[N, T, M * V * C]`` or ``[N, C, T, V, M]``."""
        x = F.pad(self.frames(x), (0, 1))
        return x[:, :, self.part_index].permute(0, 2, 1, 3)

    def forward(self, x: Tensor) -> Tensor:
        """``x``: ``[N, T, M * V * C]`` or ``[N, C, T, V, M]``; returns logits."""
        parts = self.split_parts(x)
        return torch.stack([net(parts[:, p]) for p, net in enumerate(self.part_nets)]).sum(0)


class AttentionNet1D(_SkeletonNet):
    """Attention subnet (train_attention.py): feature attention on the input, then the
    pre-activation Base-Net with a temporal attention after each residual sum and no final
    BatchNorm; returns logits ``[N, classes]``.

    Args:
        temporal_attention: ``"official"`` (default) reproduces the official softmax over an
            axis of size one: the temporal weights are identically 1, a no-op, though the
            layers exist and are counted; ``"frames"`` is a working variant: softmax over
            the frames, times their number (uniform weights leave the features unchanged).
    """

    def __init__(
        self,
        num_classes: int,
        num_frames: int = 300,
        layout: str = "ntu_stgcn",
        num_persons: int = 2,
        in_channels: int = 3,
        temporal_attention: Literal["official", "frames"] = "official",
        dropout: float = 0.1,
    ):
        super().__init__(num_frames, layout, num_persons, in_channels)
        if temporal_attention not in ("official", "frames"):
            raise ValueError(
                f"temporal_attention must be 'official' or 'frames', got {temporal_attention!r}"
            )
        f = self.num_features
        self.feature_hidden = _keras_dense(f, 2 * f)
        self.feature_score = _keras_dense(2 * f, f)
        self.net = BaseNet1D(
            f,
            num_classes,
            dropout,
            order="pre",
            final_norm=False,
            temporal_attention=temporal_attention,
        )

    def forward(self, x: Tensor) -> Tensor:
        """``x``: ``[N, T, M * V * C]`` or ``[N, C, T, V, M]``; returns logits."""
        x = self.frames(x)
        weights = torch.softmax(self.feature_score(torch.tanh(self.feature_hidden(x))), dim=-1)
        return self.net(x * weights)


class FrameDifferenceNet1D(_SkeletonNet):
    """Frame-difference subnet (train_differ.py, process_h5_differ.py): the Base-Net without
    its final BatchNorm on ``x[t] - x[t - 1]`` (zero at ``t = 0``); returns logits."""

    def __init__(
        self,
        num_classes: int,
        num_frames: int = 300,
        layout: str = "ntu_stgcn",
        num_persons: int = 2,
        in_channels: int = 3,
        dropout: float = 0.3,
    ):
        super().__init__(num_frames, layout, num_persons, in_channels)
        self.net = BaseNet1D(self.num_features, num_classes, dropout, final_norm=False)

    def forward(self, x: Tensor) -> Tensor:
        """``x``: ``[N, T, M * V * C]`` or ``[N, C, T, V, M]`` coordinates; returns logits."""
        x = self.frames(x)
        return self.net(F.pad(x.diff(dim=1), (0, 0, 1, 0)))


class Ensemble1D(_SkeletonNet):
    """Ensem-NN: the two-stream, body-part, attention and frame-difference subnets, fused late.

    Args:
        num_classes: action classes.
        num_frames: frames per (zero-padded) sequence; fixed, as the spatial stream's input
            channels (official: 300).
        layout: skeleton layout name (its joint count V; NTU: ``"ntu_stgcn"``).
        num_persons: persons M (official: 2).
        in_channels: coordinates per joint C (official: 3).
        parts: body-part groups (:class:`BodyPartNet1D`).
        temporal_attention: the attention subnet's temporal attention (:class:`AttentionNet1D`).
        fusion: ``"product"`` (default; softmax outputs multiplied and L1-normalised, the rule
            of the official subnets) or ``"mean"`` (softmax outputs averaged).

    ``forward`` takes ``[N, T, M * V * C]`` or ``[N, C, T, V, M]`` and returns logits
    ``[N, num_classes]`` whose softmax is the fused score; :meth:`subnet_logits` gives each
    subnet's logits, for training them separately as the paper does.
    """

    def __init__(
        self,
        num_classes: int,
        num_frames: int = 300,
        layout: str = "ntu_stgcn",
        num_persons: int = 2,
        in_channels: int = 3,
        parts: str | Sequence[Sequence[int]] = "official",
        temporal_attention: Literal["official", "frames"] = "official",
        fusion: Literal["product", "mean"] = "product",
    ):
        super().__init__(num_frames, layout, num_persons, in_channels)
        if fusion not in ("product", "mean"):
            raise ValueError(f"fusion must be 'product' or 'mean', got {fusion!r}")
        self.fusion = fusion
        common = {
            "num_classes": num_classes,
            "num_frames": num_frames,
            "layout": layout,
            "num_persons": num_persons,
            "in_channels": in_channels,
        }
        self.two_stream = TwoStreamNet1D(**common)
        self.body_part = BodyPartNet1D(**common, parts=parts)
        self.attention = AttentionNet1D(**common, temporal_attention=temporal_attention)
        self.frame_difference = FrameDifferenceNet1D(**common)

    def subnet_logits(self, x: Tensor) -> dict[str, Tensor]:
        """Logits ``[N, num_classes]`` of each subnet, by name."""
        x = self.frames(x)
        return {
            "two_stream": self.two_stream(x),
            "body_part": self.body_part(x),
            "attention": self.attention(x),
            "frame_difference": self.frame_difference(x),
        }

    def forward(self, x: Tensor) -> Tensor:
        """``x``: ``[N, T, M * V * C]`` or ``[N, C, T, V, M]``; returns fused logits."""
        logits = torch.stack(list(self.subnet_logits(x).values()))
        if self.fusion == "product":
            return logits.sum(0)
        return torch.logsumexp(torch.log_softmax(logits, dim=-1), dim=0) - math.log(len(logits))


_SUBNETS: dict[str, type[nn.Module]] = {
    "ensemble": Ensemble1D,
    "two_stream": TwoStreamNet1D,
    "body_part": BodyPartNet1D,
    "attention": AttentionNet1D,
    "frame_difference": FrameDifferenceNet1D,
}


def _ntu_preset(num_classes: int) -> dict[str, object]:
    return {"num_classes": num_classes, "num_frames": 300, "layout": "ntu_stgcn"}


@register_model(
    "ensemble1d",
    presets={
        "ntu60": Preset(
            kwargs=_ntu_preset(60),
            description="NTU RGB+D 60 as in the official code: 300 frames x 150 features "
            "(2 persons, 25 joints, xyz), official body-part split. Subnets: two-stream "
            "3,826,552, body-part 9,082,540, attention 2,138,257, frame-difference 1,874,364; "
            "the Base-Net alone 1,874,876",
            parameter_count=16_921_713,
            reported_accuracy="85.1% (Xu et al., IEEE SPL 2018, NTU RGB+D 60, cross-subject, "
            "top-1)",
        ),
        "ntu120": Preset(
            kwargs=_ntu_preset(120),
            description="NTU RGB+D 120: the NTU-60 configuration with 120 classes (not in the "
            "paper)",
            parameter_count=17_060_493,
        ),
    },
    default_preset="ntu60",
    summary="Ensem-NN: ensemble of residual 1-D CNNs (two-stream, body-part, attention, "
    "frame-difference) over per-frame joint-coordinate vectors",
)
def build_ensemble1d(
    subnet: str = "ensemble",
    **kwargs: object,
) -> nn.Module:
    """Build Ensem-NN (``subnet="ensemble"``) or one of its parts: ``"two_stream"``,
    ``"body_part"``, ``"attention"``, ``"frame_difference"`` (each takes the keyword arguments
    of its class), or ``"base"``: the Base-Net :class:`BaseNet1D` on the frame features of
    ``num_classes``, ``layout``, ``num_persons`` and ``in_channels`` (``num_frames`` is then
    unused, the Base-Net takes any length)."""
    if subnet == "base":
        kwargs.pop("num_frames", None)
        layout = graphs.get_layout(str(kwargs.pop("layout", "ntu_stgcn")))
        features = int(kwargs.pop("num_persons", 2)) * layout.num_joints
        features *= int(kwargs.pop("in_channels", 3))
        return BaseNet1D(features, **kwargs)  # type: ignore[arg-type]
    if subnet not in _SUBNETS:
        raise ValueError(f"subnet must be one of {['base', *_SUBNETS]}, got {subnet!r}")
    return _SUBNETS[subnet](**kwargs)
