"""PoseC3D: 3-D CNN on stacked pose heatmaps (Duan, Zhao, Chen, Lin and Dai, "Revisiting
Skeleton-based Action Recognition", CVPR 2022, arXiv 2104.13586).

Reproduces the SlowOnly-R50 PoseC3D of the official implementation, kennymckormick/pyskl
(configs ``configs/posec3d/slowonly_r50_ntu60_xsub/joint.py`` and ``limb.py``, backbone
``pyskl/models/cnns/resnet3d.py`` through ``resnet3d_slowonly.py``, head
``pyskl/models/heads/simple_head.py`` ``I3DHead``, test-time averaging
``pyskl/models/recognizers/base.py`` ``average_clip`` and
``pyskl/datasets/pipelines/heatmap_related.py`` ``GeneratePoseTarget(double=True)``).
Submodule names follow pyskl's (mmcv ``ConvModule``: ``conv`` and ``bn``), so a pyskl
checkpoint's ``state_dict`` (``backbone.conv1.conv.weight``, ``backbone.layer1.0.conv1.bn.weight``,
``backbone.layer2.0.downsample.conv.weight``, ``cls_head.fc_cls.weight``, ...) loads with
``strict=True``.

Input: ``x [N, C, T, H, W]`` heatmap volumes (pyskl's ``NCTHW_Heatmap``: 17 keypoint or 17 limb
channels, 48 frames of 56 x 56 in training and 64 x 64 in testing in the configs), e.g. from
:func:`skelops.render_heatmaps`.

Architecture (``ResNet3dSlowOnly(in_channels=17, base_channels=32, num_stages=3,
stage_blocks=(4, 6, 3), conv1_stride=(1, 1), pool1_stride=(1, 1), inflate=(0, 1, 1),
spatial_strides=(2, 2, 2), temporal_strides=(1, 1, 2))`` on pyskl's ``ResNet3d`` depth 50):

- stem: ``Conv3d(17, 32, (1, 7, 7), stride 1, padding (0, 3, 3), bias=False)``, BN, ReLU
  (``ResNet3dSlowOnly``'s ``conv1_kernel=(1, 7, 7)``), then ``MaxPool3d((1, 3, 3), stride 1,
  padding (0, 1, 1))`` (``_make_stem_layer``: kernel ``(1, 3, 3)``, stride ``pool1_stride``);
- three stages of bottlenecks (expansion 4) of widths 32, 64, 128 (outputs 128, 256, 512),
  4, 6 and 3 blocks. A bottleneck is ``conv1`` 1x1x1 (``(3, 1, 1)`` with padding ``(1, 0, 0)``
  when inflated: pyskl's default ``inflate_style='3x1x1'``), ``conv2`` ``(1, 3, 3)`` carrying the
  block's stride ``(temporal, spatial, spatial)``, ``conv3`` 1x1x1 without ReLU, each a
  Conv3d without bias, BN and ReLU; the residual is the identity or, in each stage's first block,
  ``downsample``: a strided 1x1x1 Conv3d and BN (pyskl's ``advanced=False``); ReLU after the sum.
  ``inflate=(0, 1, 1)``: the bottlenecks of stages 2 and 3 have the temporal kernel 3;
- strides: spatial 2 in every stage (56 -> 28 -> 14 -> 7), temporal 2 in stage 3 only
  (48 -> 24 frames);
- head (``I3DHead``): global average pooling over ``T, H, W``, dropout 0.5, ``Linear(512,
  num_classes)``.

Initialisation as pyskl's: Conv3d Kaiming normal (fan-out, ReLU gain, mmcv's ``kaiming_init``),
BN weight 1 and bias 0, the last BN of every bottleneck (``conv3.bn``) zero
(``zero_init_residual=True``), the classifier normal with std 0.01 and bias 0.

Test-time averaging (:meth:`PoseC3D.predict`): pyskl's test pipeline samples 10 clips
(``UniformSampleFrames(num_clips=10)``) and renders each with ``double=True``: the heatmaps are
followed by their horizontal flip (width reversed, left/right channels swapped,
``heatmap[..., ::-1][:, indices]``); the recognizer then averages the softmax probabilities over
all clips and flips (``average_clips='prob'``).

Channels and flip pairs: keypoint heatmaps use the 17 COCO keypoints of
``skelops.graphs.get_layout("coco")`` and its flip pairs (pyskl's ``left_kp = [1, 3, ..., 15]``,
``right_kp = [2, 4, ..., 16]``). Limb heatmaps use the 17 COCO limbs in the channel order of
pyskl's limb config, :data:`skelops.graphs.COCO_LIMBS_POSEC3D` (render them with
``skelops.render_heatmaps(..., mode="limb", limbs=skelops.graphs.COCO_LIMBS_POSEC3D)``: the
op's default is ``GeneratePoseTarget``'s other order). Their flip pairs
(:data:`COCO_LIMB_FLIP_PAIRS`) follow from the keypoint flip
(:func:`skelops.graphs.limb_flip_permutation`: limb ``(a, b)`` becomes ``(flip(a), flip(b))``),
which gives exactly the config's ``left_limb = [0, 2, 3, 6, 7, 8, 12, 14]`` and
``right_limb = [1, 4, 5, 9, 10, 11, 13, 15]`` (not ``GeneratePoseTarget``'s default lists,
which the limb config overrides).

Size: 2,024,860 parameters for 60 classes (checked by building the model): 1,994,080 in the
backbone and ``512 * K + K`` in the classifier (2,055,640 for NTU-120). The keypoint and limb
models have the same size (17 input channels each).

Note: pyskl's ``slowonly_r50_ntu120_xsub/joint.py`` renders limbs in its train and val pipelines
(``with_kp=False, with_limb=True``) while its test pipeline renders keypoints; the architecture is
the same either way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import graphs
from ..ops._common import check_positive_int
from .registry import Preset, register_model

__all__ = ["COCO_LIMB_FLIP_PAIRS", "PoseC3D"]

_COCO = graphs.get_layout("coco")
# Limb channels swapped by a horizontal flip, as (i, j) with i < j, from the limb config's
# channel order (graphs.COCO_LIMBS_POSEC3D); hips-to-hips (16) maps onto itself.
COCO_LIMB_FLIP_PAIRS: tuple[tuple[int, int], ...] = tuple(
    (i, j)
    for i, j in enumerate(graphs.limb_flip_permutation(graphs.COCO_LIMBS_POSEC3D, _COCO))
    if i < j
)

_HEATMAPS = ("keypoint", "limb")


class ConvModule3d(nn.Module):
    """mmcv ``ConvModule`` as pyskl builds it: ``Conv3d`` without bias, ``BatchNorm3d`` and an
    optional ReLU; submodules ``conv`` and ``bn`` (pyskl's parameter names)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: tuple[int, int, int],
        stride: tuple[int, int, int] = (1, 1, 1),
        padding: tuple[int, int, int] = (0, 0, 0),
        relu: bool = True,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv3d(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False
        )
        self.bn = nn.BatchNorm3d(out_channels)
        self.relu = relu

    def forward(self, x: Tensor) -> Tensor:
        x = self.bn(self.conv(x))
        return F.relu(x) if self.relu else x


class Bottleneck3d(nn.Module):
    """pyskl's ``Bottleneck3d`` (expansion 4, ``inflate_style='3x1x1'``):
    ``ReLU(conv3(conv2(conv1(x))) + residual(x))``.

    Args:
        in_channels: input channels.
        planes: bottleneck width; the output has ``4 * planes`` channels.
        stride: ``(temporal, spatial)`` stride, carried by ``conv2``.
        downsample: the residual projection (or ``None`` for the identity).
        inflate: temporal kernel 3 in ``conv1`` (else 1).

    Shapes:
        ``[N, C_in, T, H, W]`` -> ``[N, 4 planes, T / s_t, H / s, W / s]`` (ceil).
    """

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        planes: int,
        stride: tuple[int, int] = (1, 1),
        downsample: nn.Module | None = None,
        inflate: bool = False,
    ) -> None:
        super().__init__()
        temporal_stride, spatial_stride = stride
        self.conv1 = ConvModule3d(
            in_channels,
            planes,
            (3, 1, 1) if inflate else (1, 1, 1),
            padding=(1, 0, 0) if inflate else (0, 0, 0),
        )
        self.conv2 = ConvModule3d(
            planes,
            planes,
            (1, 3, 3),
            stride=(temporal_stride, spatial_stride, spatial_stride),
            padding=(0, 1, 1),
        )
        self.conv3 = ConvModule3d(planes, planes * self.expansion, (1, 1, 1), relu=False)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(self.conv3(self.conv2(self.conv1(x))) + identity)


class ResNet3dSlowOnly(nn.Module):
    """pyskl's ``ResNet3dSlowOnly`` (``ResNet3d`` depth 50, stem kernel ``(1, 7, 7)``, stem and
    pool strides 1), with ``len(stage_blocks)`` stages of :class:`Bottleneck3d`.

    Args:
        in_channels: heatmap channels.
        base_channels: stem width and first stage's bottleneck width (doubled per stage).
        stage_blocks: bottlenecks per stage.
        inflate: per stage, whether its bottlenecks have the temporal kernel 3.
        spatial_strides, temporal_strides: per stage, of its first block.

    Shapes:
        ``[N, C, T, H, W]`` -> ``[N, 4 * base_channels * 2^(S-1), T', H', W']``.
    """

    def __init__(
        self,
        in_channels: int = 17,
        base_channels: int = 32,
        stage_blocks: Sequence[int] = (4, 6, 3),
        inflate: Sequence[bool] = (False, True, True),
        spatial_strides: Sequence[int] = (2, 2, 2),
        temporal_strides: Sequence[int] = (1, 1, 2),
    ) -> None:
        super().__init__()
        self.conv1 = ConvModule3d(in_channels, base_channels, (1, 7, 7), padding=(0, 3, 3))
        self.maxpool = nn.MaxPool3d(kernel_size=(1, 3, 3), stride=1, padding=(0, 1, 1))
        channels = base_channels
        self.num_stages = len(stage_blocks)
        for i, blocks in enumerate(stage_blocks):
            planes = base_channels * 2**i
            stride = (temporal_strides[i], spatial_strides[i])
            out_channels = planes * Bottleneck3d.expansion
            downsample = None
            # pyskl make_res_layer: project when the spatial stride or the width changes
            if spatial_strides[i] != 1 or channels != out_channels:
                downsample = ConvModule3d(
                    channels,
                    out_channels,
                    (1, 1, 1),
                    stride=(stride[0], stride[1], stride[1]),
                    relu=False,
                )
            layer = [Bottleneck3d(channels, planes, stride, downsample, bool(inflate[i]))]
            layer += [
                Bottleneck3d(out_channels, planes, (1, 1), None, bool(inflate[i]))
                for _ in range(1, blocks)
            ]
            self.add_module(f"layer{i + 1}", nn.Sequential(*layer))
            channels = out_channels
        self.out_channels = channels

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.conv1(x))
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return x


class I3DHead(nn.Module):
    """pyskl's ``I3DHead``: global average pooling, dropout and ``fc_cls``.

    Shapes:
        ``[N, C, T, H, W]`` -> ``[N, num_classes]``.
    """

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.5) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc_cls = nn.Linear(in_channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc_cls(self.dropout(x.mean(dim=(2, 3, 4))))


_PAPER = "PoseC3D (pyskl README, configs/posec3d)"
_PRESETS = {
    "ntu60": Preset(
        kwargs={"num_classes": 60, "heatmap": "keypoint"},
        description="NTU RGB+D 60, keypoint heatmaps: input [N, 17, 48, 56, 56] in training, "
        "[N, 17, 48, 64, 64] in testing (10 clips, flipped too); COCO-17 keypoints of HRNet",
        parameter_count=2_024_860,
        reported_accuracy=f"{_PAPER}: NTU-60 XSub top-1 93.7 (joint), 94.1 (joint + limb)",
    ),
    "ntu60_limb": Preset(
        kwargs={"num_classes": 60, "heatmap": "limb"},
        description="NTU RGB+D 60, limb heatmaps: input [N, 17, 48, 56, 56]; channel l is limb "
        "graphs.COCO_LIMBS_POSEC3D[l] (pyskl's limb config order, render with "
        "limbs=graphs.COCO_LIMBS_POSEC3D): (0,5) (0,6) (5,7) (7,9) (6,8) (8,10) (5,11) "
        "(11,13) (13,15) (6,12) (12,14) (14,16) (0,1) (0,2) (1,3) (2,4) (11,12); flip swaps "
        "limbs 0-1, 2-4, 3-5, 6-9, 7-10, 8-11, 12-13, 14-15",
        parameter_count=2_024_860,
        reported_accuracy=f"{_PAPER}: NTU-60 XSub top-1 93.4 (limb)",
    ),
    "ntu120": Preset(
        kwargs={"num_classes": 120, "heatmap": "keypoint"},
        description="NTU RGB+D 120, keypoint heatmaps: input [N, 17, 48, 56, 56]",
        parameter_count=2_055_640,
        reported_accuracy=f"{_PAPER}: NTU-120 XSub top-1 85.9 (joint), 86.7 (joint + limb)",
    ),
    "ntu120_limb": Preset(
        kwargs={"num_classes": 120, "heatmap": "limb"},
        description="NTU RGB+D 120, limb heatmaps (graphs.COCO_LIMBS_POSEC3D): input "
        "[N, 17, 48, 56, 56]",
        parameter_count=2_055_640,
        reported_accuracy=f"{_PAPER}: NTU-120 XSub top-1 85.9 (limb)",
    ),
}


@register_model(
    "posec3d",
    presets=_PRESETS,
    default_preset="ntu60",
    summary="PoseC3D (CVPR 2022): SlowOnly-R50 3-D CNN on keypoint or limb heatmap volumes",
)
class PoseC3D(nn.Module):
    """PoseC3D, SlowOnly-R50 as pyskl configures it (see the module docstring).

    Args:
        num_classes: classifier outputs.
        heatmap: ``"keypoint"`` (COCO-17 keypoints) or ``"limb"``
            (``graphs.COCO_LIMBS_POSEC3D``): what the input channels are; it gives the default
            ``flip_pairs``.
        in_channels: heatmap channels (17).
        flip_pairs: ``(left, right)`` channel pairs swapped by a horizontal flip
            (:meth:`predict`); ``None``: the COCO keypoint pairs or
            :data:`COCO_LIMB_FLIP_PAIRS` when ``in_channels == 17``, else no flip.
        base_channels: stem width (32).
        stage_blocks: bottlenecks per stage (4, 6, 3).
        inflate: per stage, temporal kernel 3 in its bottlenecks (0, 1, 1).
        spatial_strides: per stage (2, 2, 2).
        temporal_strides: per stage (1, 1, 2).
        dropout: before the classifier (0.5).

    Shapes:
        ``forward(x)``: ``[N, in_channels, T, H, W]`` -> class scores ``[N, num_classes]``;
        ``predict(clips, flip)``: ``[B, num_clips, in_channels, T, H, W]`` -> averaged
        probabilities ``[B, num_classes]``.

    Raises:
        ValueError: on a bad argument; ``forward`` / ``predict`` on a wrong input shape.
    """

    def __init__(
        self,
        num_classes: int = 60,
        *,
        heatmap: str = "keypoint",
        in_channels: int = 17,
        flip_pairs: Sequence[Sequence[int]] | None = None,
        base_channels: int = 32,
        stage_blocks: Sequence[int] = (4, 6, 3),
        inflate: Sequence[int] = (0, 1, 1),
        spatial_strides: Sequence[int] = (2, 2, 2),
        temporal_strides: Sequence[int] = (1, 1, 2),
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        check_positive_int("num_classes", num_classes)
        check_positive_int("in_channels", in_channels)
        check_positive_int("base_channels", base_channels)
        if heatmap not in _HEATMAPS:
            raise ValueError(f"heatmap must be one of {_HEATMAPS}, got {heatmap!r}")
        stage_blocks = tuple(stage_blocks)
        if not stage_blocks:
            raise ValueError("stage_blocks must name at least one stage, got ()")
        for i, blocks in enumerate(stage_blocks):
            check_positive_int(f"stage_blocks[{i}]", blocks)
        per_stage = {
            "inflate": tuple(inflate),
            "spatial_strides": tuple(spatial_strides),
            "temporal_strides": tuple(temporal_strides),
        }
        for name, values in per_stage.items():
            if len(values) != len(stage_blocks):
                raise ValueError(
                    f"{name} must have one entry per stage ({len(stage_blocks)}, as "
                    f"stage_blocks), got {values}"
                )
        for name in ("spatial_strides", "temporal_strides"):
            for i, stride in enumerate(per_stage[name]):
                check_positive_int(f"{name}[{i}]", stride)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")

        if flip_pairs is None and in_channels == 17:
            flip_pairs = _COCO.flip_pairs if heatmap == "keypoint" else COCO_LIMB_FLIP_PAIRS
        flip = list(range(in_channels))
        for pair in flip_pairs or ():
            if len(pair) != 2 or not all(0 <= int(c) < in_channels for c in pair):
                raise ValueError(
                    f"flip_pairs must hold (left, right) channel pairs in [0, {in_channels}), "
                    f"got {pair!r}"
                )
            left, right = int(pair[0]), int(pair[1])
            flip[left], flip[right] = right, left
        if sorted(flip) != list(range(in_channels)):
            raise ValueError(f"flip_pairs must not repeat a channel, got {flip_pairs}")

        self.num_classes = num_classes
        self.in_channels = in_channels
        self.heatmap = heatmap
        self.flip_pairs = tuple((int(a), int(b)) for a, b in flip_pairs or ())
        self.register_buffer("flip_index", torch.tensor(flip, dtype=torch.long), persistent=False)
        self.backbone = ResNet3dSlowOnly(
            in_channels,
            base_channels,
            stage_blocks,
            [bool(i) for i in per_stage["inflate"]],
            per_stage["spatial_strides"],
            per_stage["temporal_strides"],
        )
        self.cls_head = I3DHead(self.backbone.out_channels, num_classes, dropout)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm3d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        for module in self.modules():
            if isinstance(module, Bottleneck3d):  # pyskl zero_init_residual
                nn.init.zeros_(module.conv3.bn.weight)
        nn.init.normal_(self.cls_head.fc_cls.weight, 0.0, 0.01)
        nn.init.zeros_(self.cls_head.fc_cls.bias)

    def _check_volume(self, x: Tensor, name: str, leading: str, leading_dims: int) -> None:
        expected = f"[{leading}, {self.in_channels}, T, H, W]"
        if (
            x.dim() != leading_dims + 4
            or x.shape[leading_dims] != self.in_channels
            or math.prod(x.shape) == 0
        ):
            raise ValueError(
                f"{name} must be {expected} heatmap volumes (no empty dimension), got shape "
                f"{tuple(x.shape)}"
            )

    def forward(self, x: Tensor) -> Tensor:
        """Class scores (logits) ``[N, num_classes]`` of heatmap volumes
        ``x [N, in_channels, T, H, W]``."""
        self._check_volume(x, "x", "N", 1)
        return self.cls_head(self.backbone(x))

    def flip(self, x: Tensor) -> Tensor:
        """Horizontal flip of heatmap volumes ``[..., in_channels, T, H, W]``: width reversed
        and the left/right channels of ``flip_pairs`` swapped (pyskl's
        ``heatmap[..., ::-1][:, indices]``)."""
        return x.flip(-1).index_select(-4, self.flip_index)

    def predict(self, clips: Tensor, flip: bool = False) -> Tensor:
        """Test-time averaging as pyskl's ``average_clips='prob'``: the softmax probabilities
        averaged over the clips (and, with ``flip``, their horizontal flips as well, pyskl's
        ``GeneratePoseTarget(double=True)``).

        Args:
            clips: ``[B, num_clips, in_channels, T, H, W]``, the clips of each sample.
            flip: add the flipped copy of every clip (:meth:`flip`).

        Returns:
            ``[B, num_classes]`` probabilities. The module's train/eval mode is left as it is
            (pyskl tests in eval mode: call ``model.eval()`` first).
        """
        self._check_volume(clips, "clips", "B, num_clips", 2)
        batch, num_clips = clips.shape[:2]
        views = clips.flatten(0, 1)
        if flip:
            views = torch.cat([views, self.flip(views)])
        probs = self.forward(views).softmax(dim=-1)
        views_per_sample = 2 * num_clips if flip else num_clips
        if flip:  # [2 * B * K, C] -> [B, 2K, C]: originals first, then the flips
            probs = probs.view(2, batch, num_clips, -1).transpose(0, 1)
        return probs.reshape(batch, views_per_sample, -1).mean(dim=1)
