"""Gate-Shift-Pose (Bianchi and Lanz, "Gate-Shift-Pose: Enhancing Action Recognition in Sports
with Skeleton Information", WACV Workshops 2025, arXiv 2503.04470) on Gate-Shift-Fuse
(Sudhakaran, Escalera and Lanz, "Gate-Shift-Fuse for Video Action Recognition", TPAMI 2023,
arXiv 2203.08897).

Sources: the official code of both, EdoWhite/Gate-Shift-Pose (``gsf.py``,
``backbones/resnetGSFModels.py``, ``models.py`` ``VideoModel`` and
``VideoModelLateFusionAttention``, ``poseModel.py`` ``PoseModelFast``, ``utils/dataset.py``
``generate_pose_heatmap``, ``main.py``, ``README.md``) and swathikirans/GSF (``gsf.py``, identical
to GSP's, and ``backbones/resnetGSFModels.py``), and the paper's project page
(edowhite.github.io/Gate-Shift-Pose). Parameter names follow the official modules (``base_model``,
``gsf.conv3D``, ``pose_model.fc1``, ``attention_layer``, ``feature_refinement_layer``,
``new_fc``), so official checkpoints map onto this model name for name. Checked once, outside
the test suite, by running the official ``gsf.GSF`` and ``resnetGSFModels`` ``resnet50`` /
``resnet18`` on CPU: their state dicts load into :class:`GateShiftFuse` / :class:`GSFResNet`
(``"resnet50"`` / ``"resnet34"``, see 2. below) with ``strict=True`` and the outputs agree in
float64 (GSF to 1e-14).

**GSF module** (:class:`GateShiftFuse`, official ``gsf.GSF``) on ``x [B * S, C_block, H, W]``
(segments ``S`` of ``B`` clips, segment-major within a clip). It acts on the first
``C = int(C_block * gsf_ch_ratio / 100)`` channels (rounded up to even; 100 in GSP, i.e. all),
the rest pass through:

1. gate: ``g = tanh(Conv3d(C, 2, 3x3x3, groups=2)(ReLU(BN3d(x))))`` over ``[B, C, S, H, W]``,
   one gate map per channel half;
2. gated halves ``y_i = g_i * x_i`` and residuals ``r_i = x_i - y_i``;
3. shift: ``y_1`` moves one segment earlier (``y_1'[t] = y_1[t + 1]``, the last segment gets
   zeros) and ``y_2`` one segment later (``y_2'[t] = y_2[t - 1]``, the first gets zeros);
4. fuse: per half, the spatial means of ``y_i'`` and ``r_i`` (two ``[C / 2, S]`` maps) go
   through ``Conv2d(2, 1, 3x3)`` over (channel, segment) and a sigmoid, giving ``w_i [C / 2,
   S]``; ``out_i = w_i * y_i' + (1 - w_i) * r_i``;
5. interleave: each half's channels ``[a_0..a_{C/4-1}, b_0..b_{C/4-1}]`` are reordered
   ``[a_0, b_0, a_1, b_1, ...]`` (hence ``C % 4 == 0``) and the halves concatenated.

Parameters: ``27 C + 2`` (grouped 3-D convolution), ``2 C`` (BN), ``2 * 19`` (fusion
convolutions): **29 C + 40** per module.

**Backbones** (own code after torchvision's ResNet, which the official ``resnetGSFModels.py``
copies): ResNet-18 (``BasicBlock``, 2-2-2-2), ResNet-34 (``BasicBlock``, 3-4-6-3) or ResNet-50
(``Bottleneck`` v1.5, 3-4-6-3), one GSF per residual block on the output of the block's last
convolution, before its last BN (``conv2`` of a basic block, ``conv3`` of a bottleneck), so
``C`` is the block's output width. Stem: ``Conv2d(C_in, 64, 7, stride 2)``, BN, ReLU, max-pool
3 / 2. Global average pooling; dropout 0.5 (the official ``base_model.fc`` replaced by
``Dropout``). Initialisation as the official: Conv2d (the GSF fusion convolutions too) Kaiming
normal fan-out, BN 1 / 0, the grouped Conv3d PyTorch's default, no zero-init of the last BN. The
paper starts from ImageNet weights (torchvision checkpoints; for 4 input channels the pretrained
``conv1`` fills channels 0-2 and the fourth is Kaiming-initialised): the backbone's parameter
names are torchvision's, so such a checkpoint loads with ``strict=False`` (``fc`` and the GSF
modules missing).

**Fusion** (``fusion``):

- ``"none"``: the RGB-only GSF baseline (official ``VideoModel``, 3 channels);
- ``"early"``: a fourth input channel, the sum over the 17 joints of Gaussian keypoint
  heatmaps rendered at the frame's size (:func:`skelops.render_heatmaps`, ``mode="keypoint"``)
  and clipped to ``[0, 1]`` (official ``generate_pose_heatmap``: sum, then ``np.clip``), so
  ``conv1`` has 4 input channels; then ``Linear(F, num_classes)`` (``new_fc``, normal std 0.001);
- ``"late"`` (official ``VideoModelLateFusionAttention``, the one its README trains): a pose MLP
  on the 34 coordinates of each segment's frame, ``34 -> 64 -> 128 -> 128`` with ReLU after the
  first two layers (``PoseModelFast``); the backbone feature (``F`` = 512 or 2048, after the
  dropout) and the pose feature each L2-normalised, concatenated (``D = F + 128``), a multi-head
  attention layer (4 heads, dropout 0.5) over that one token, the refinement MLP
  ``D -> D / 2 -> D / 4``, each ``Linear, BatchNorm1d, ReLU, Dropout(0.5)``, and
  ``Linear(D / 4, num_classes)``. With a single token the attention's softmax is 1: the layer
  computes ``out_proj(v_proj(z))`` (its dropout drops the whole token), and its query/key
  projections get no gradient; it is kept for the official parameters and names.

TSN consensus: the per-segment logits are averaged over the ``S`` segments.

Inputs: ``frames [B, S, 3, H, W]`` (one frame per segment, normalised by the caller; the
official pipeline uses ImageNet mean/std at 224 x 224), ``keypoints [B, S, 17, 2]`` (COCO-17
``(x, y)`` of one person, pixel coordinates of the frame, official YOLO-pose output;
``[17, 2]`` flattened row-major to 34 for the MLP, unnormalised as in the official code),
``scores [B, S, 17]`` optional (early fusion: heatmap amplitude; a score below 1e-3 draws
nothing, which is how a missing keypoint is left out, as the official skips ``(0, 0)``).

Choices and departures:

1. Heatmaps are rendered from float coordinates (the official truncates to ints and stamps a
   ``6 sigma + 1`` window) with :func:`skelops.render_heatmaps`, differentiable, at the model
   input's size. ``heatmap_sigma`` is in input pixels: the official draws sigma 10 on
   360 x 640 frames which are then scaled by 256 / 360 and cropped to 224, i.e. about 7.1 input
   pixels (the ``frfs`` preset's value); the official also quantises the heatmap to 8 bits.
2. The official ``resnet18`` of GSP's ``resnetGSFModels.py`` builds ``BasicBlock`` with
   ``[3, 4, 6, 3]`` blocks, i.e. a ResNet-34 (ImageNet ResNet-18 weights loaded with
   ``strict=False`` fill only its first two blocks per stage). ``backbone="resnet18"`` here is
   the true ResNet-18 (2-2-2-2) the paper names; ``backbone="resnet34"`` is what the official
   code built.
3. The segments per clip are read from the input (GSF has no parameter that depends on ``S``);
   the official fixes ``num_segments`` at construction.

Sizes (built and counted; the tests pin them), ``K = num_classes = 2``:

==========  =======  ==================  ==============  ===========  ===========
backbone    fusion   ResNet (no GSF)     GSF (modules)   heads        total
==========  =======  ==================  ==============  ===========  ===========
resnet18    none     11,176,512          56,000 (8)      1,026        11,233,538
resnet18    early    11,179,648          56,000 (8)      1,026        11,236,674
resnet18    late     11,176,512          56,000 (8)      1,925,794    13,158,306
resnet34    early    21,287,808          110,144 (16)    1,026        21,398,978
resnet50    none     23,508,032          438,656 (16)    4,098        23,950,786
resnet50    early    23,511,168          438,656 (16)    4,098        23,953,922
resnet50    late     23,508,032          438,656 (16)    21,941,026   45,887,714
==========  =======  ==================  ==============  ===========  ===========

ResNet (no GSF): torchvision's ResNet without ``fc`` (11,176,512 / 21,284,672 / 23,508,032);
early fusion adds ``64 * 7 * 7 = 3,136`` for the fourth ``conv1`` channel. GSF:
``sum over blocks (29 C + 40)``: ResNet-18 ``29 * 1,920 + 8 * 40``, ResNet-50
``29 * 15,104 + 16 * 40``. Heads: ``(F + 1) K`` for none/early (``F`` = 512 or 2048); late, with
``D = F + 128`` (640 or 2,176): pose MLP 27,072, attention ``4 D^2 + 4 D``, refinement
``D^2 / 2 + D^2 / 8 + 3 D / 2 + 3 D / 4`` (BN included), classifier ``(D / 4 + 1) K``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .registry import Preset, register_model

__all__ = ["GateShiftFuse", "GateShiftPose", "GSFResNet"]

_BACKBONES = {  # block type, blocks per stage
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
}
_FUSIONS = ("none", "early", "late")
_NUM_JOINTS = 17  # COCO-17 (the official YOLO-pose keypoints)
_POSE_DIM = 128  # PoseModelFast feature_dim


def _shift_segments(x: Tensor, step: int) -> Tensor:
    """``out[:, :, t] = x[:, :, t + step]`` along dim 2, zero where ``t + step`` is outside."""
    out = torch.zeros_like(x)
    frames = x.shape[2]
    if abs(step) >= frames:
        return out
    if step > 0:
        out[:, :, : frames - step] = x[:, :, step:]
    else:
        out[:, :, -step:] = x[:, :, : frames + step]
    return out


class GateShiftFuse(nn.Module):
    """The Gate-Shift-Fuse module (official ``gsf.GSF``; see the module docstring).

    Args:
        channels: channels of the block output it is inserted on.
        gsf_ch_ratio: percentage of the channels it acts on (100: all);
            ``C = int(channels * gsf_ch_ratio / 100)``, rounded up to even, must be a multiple
            of 4.

    Shapes:
        ``forward(x, num_segments)``: ``[B * S, channels, H, W]`` -> same, ``S = num_segments``
        consecutive entries per clip.

    Parameters: ``29 C + 40``.
    """

    def __init__(self, channels: int, gsf_ch_ratio: float = 100.0) -> None:
        super().__init__()
        if not 0 < gsf_ch_ratio <= 100:
            raise ValueError(f"gsf_ch_ratio must be in (0, 100], got {gsf_ch_ratio}")
        fused = int(channels * gsf_ch_ratio / 100)
        fused += fused % 2
        if fused < 4 or fused % 4 != 0:
            raise ValueError(
                f"GSF needs a multiple of 4 fused channels (two halves, each interleaved in "
                f"pairs), got {fused} from channels={channels} and gsf_ch_ratio={gsf_ch_ratio}"
            )
        self.channels = channels
        self.fused_channels = fused
        self.conv3D = nn.Conv3d(fused, 2, 3, padding=1, groups=2)
        self.bn = nn.BatchNorm3d(fused)
        self.channel_conv1 = nn.Conv2d(2, 1, 3, padding=1)
        self.channel_conv2 = nn.Conv2d(2, 1, 3, padding=1)

    @staticmethod
    def _fuse(shifted: Tensor, residual: Tensor, conv: nn.Conv2d) -> Tensor:
        # spatial means [B, C/2, S] of both, as a 2-channel [C/2, S] image
        pooled = torch.stack([shifted.mean(dim=(3, 4)), residual.mean(dim=(3, 4))], dim=1)
        weight = torch.sigmoid(conv(pooled))[:, 0, :, :, None, None]
        return shifted * weight + residual * (1 - weight)

    @staticmethod
    def _interleave(x: Tensor) -> Tensor:
        b, c, *rest = x.shape
        return x.view(b, 2, c // 2, *rest).transpose(1, 2).reshape(b, c, *rest)

    def forward(self, x: Tensor, num_segments: int) -> Tensor:
        n, channels, height, width = x.shape
        c = self.fused_channels
        clip = x[:, :c].reshape(n // num_segments, num_segments, c, height, width)
        clip = clip.transpose(1, 2)  # [B, C, S, H, W]
        gate = torch.tanh(self.conv3D(F.relu(self.bn(clip))))
        half = c // 2
        x1, x2 = clip[:, :half], clip[:, half:]
        y1, y2 = gate[:, :1] * x1, gate[:, 1:] * x2
        out1 = self._fuse(_shift_segments(y1, 1), x1 - y1, self.channel_conv1)
        out2 = self._fuse(_shift_segments(y2, -1), x2 - y2, self.channel_conv2)
        out = torch.cat([self._interleave(out1), self._interleave(out2)], dim=1)
        out = out.transpose(1, 2).reshape(n, c, height, width)
        return torch.cat([out, x[:, c:]], dim=1)


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def _conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """ResNet basic block with GSF on ``conv2``'s output, before ``bn2`` (GSP's
    ``BasicBlock``): ``ReLU(bn2(gsf(conv2(ReLU(bn1(conv1(x)))))) + residual(x))``."""

    expansion = 1

    def __init__(
        self,
        in_channels: int,
        planes: int,
        stride: int,
        downsample: nn.Module | None,
        gsf_ch_ratio: float,
    ) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_channels, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.gsf = GateShiftFuse(planes, gsf_ch_ratio)

    def forward(self, x: Tensor, num_segments: int) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.gsf(self.conv2(out), num_segments))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck (stride in ``conv2``) with GSF on ``conv3``'s output, before
    ``bn3`` (GSF's ``Bottleneck``)."""

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        planes: int,
        stride: int,
        downsample: nn.Module | None,
        gsf_ch_ratio: float,
    ) -> None:
        super().__init__()
        self.conv1 = _conv1x1(in_channels, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.downsample = downsample
        self.gsf = GateShiftFuse(planes * self.expansion, gsf_ch_ratio)

    def forward(self, x: Tensor, num_segments: int) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.gsf(self.conv3(out), num_segments))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


class _Stage(nn.Sequential):
    def forward(self, x: Tensor, num_segments: int) -> Tensor:  # type: ignore[override]
        for block in self:
            x = block(x, num_segments)
        return x


class GSFResNet(nn.Module):
    """ResNet-18/34/50 with one GSF per residual block (torchvision's parameter names).

    Args:
        backbone: ``"resnet18"``, ``"resnet34"`` or ``"resnet50"``.
        in_channels: input channels of ``conv1`` (3 RGB, 4 with the pose heatmap).
        gsf_ch_ratio: of every :class:`GateShiftFuse`.

    Shapes:
        ``forward(x, num_segments)``: ``[B * S, in_channels, H, W]`` -> pooled features
        ``[B * S, out_channels]`` (512 or 2048).
    """

    def __init__(
        self, backbone: str = "resnet50", in_channels: int = 3, gsf_ch_ratio: float = 100.0
    ) -> None:
        super().__init__()
        if backbone not in _BACKBONES:
            raise ValueError(f"backbone must be one of {sorted(_BACKBONES)}, got {backbone!r}")
        kind, stage_blocks = _BACKBONES[backbone]
        block = BasicBlock if kind == "basic" else Bottleneck
        self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        channels = 64
        for i, blocks in enumerate(stage_blocks):
            planes = 64 * 2**i
            stride = 1 if i == 0 else 2
            downsample = None
            if stride != 1 or channels != planes * block.expansion:
                downsample = nn.Sequential(
                    _conv1x1(channels, planes * block.expansion, stride),
                    nn.BatchNorm2d(planes * block.expansion),
                )
            layer = [block(channels, planes, stride, downsample, gsf_ch_ratio)]
            channels = planes * block.expansion
            layer += [block(channels, planes, 1, None, gsf_ch_ratio) for _ in range(1, blocks)]
            self.add_module(f"layer{i + 1}", _Stage(*layer))
        self.out_channels = channels
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor, num_segments: int) -> Tensor:
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        for i in range(4):
            x = getattr(self, f"layer{i + 1}")(x, num_segments)
        return x.mean(dim=(2, 3))


class PoseMLP(nn.Module):
    """Official ``PoseModelFast``: ``fc3(ReLU(fc2(ReLU(fc1(p)))))``, ``34 -> 64 -> 128 -> 128``.

    Shapes: ``[N, 2 V]`` -> ``[N, 128]``.
    """

    def __init__(self, num_joints: int = _NUM_JOINTS, feature_dim: int = _POSE_DIM) -> None:
        super().__init__()
        self.fc1 = nn.Linear(2 * num_joints, 64)
        self.fc2 = nn.Linear(64, 128)
        self.fc3 = nn.Linear(128, feature_dim)

    def forward(self, p: Tensor) -> Tensor:
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(p)))))


def _refinement(dim: int, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in (dim // 2, dim // 4):
        layers += [nn.Linear(dim, width), nn.BatchNorm1d(width), nn.ReLU(), nn.Dropout(dropout)]
        dim = width
    return nn.Sequential(*layers)


_PRESETS = {
    "frfs": Preset(
        kwargs={
            "num_classes": 2,
            "backbone": "resnet50",
            "fusion": "early",
            "heatmap_sigma": 7.1,
        },
        description="FR-FS figure-skating falls (417 videos: 276 falls, 141 non-falls; 2 "
        "classes, official main.py num_class=2): input 32 segments of [3, 224, 224] frames and "
        "COCO-17 keypoints [32, 17, 2]; ResNet-50, early fusion (the paper's best). "
        "backbone='resnet18' and fusion='late' give the other three configurations",
        parameter_count=23_953_922,
        reported_accuracy="Gate-Shift-Pose (WACVW 2025, README / project page): FR-FS accuracy "
        "98.08 (ResNet-50, early fusion, 32 segments); 87.02 (R50 late), 81.25 (R18 early), "
        "95.19 (R18 late); RGB-only GSF 81.73 (R50), 67.79 (R18)",
    ),
}


@register_model(
    "gateshiftpose",
    presets=_PRESETS,
    default_preset="frfs",
    summary="Gate-Shift-Pose (WACVW 2025): GSF ResNet with early or late pose fusion",
)
class GateShiftPose(nn.Module):
    """Gate-Shift-Pose: a GSF ResNet over TSN segments with pose fused early (a summed heatmap
    channel) or late (pose MLP, attention and refinement); see the module docstring.

    Args:
        num_classes: classifier outputs (2 for FR-FS).
        backbone: ``"resnet18"``, ``"resnet34"`` or ``"resnet50"``.
        fusion: ``"early"``, ``"late"`` or ``"none"`` (RGB-only GSF).
        num_joints: keypoints per frame (17).
        gsf_ch_ratio: percentage of each block's channels that its GSF acts on (100).
        dropout: after the backbone's pooling, in the attention and the refinement (0.5).
        heatmap_sigma: Gaussian sigma of the early-fusion heatmaps, input pixels.
        attention_heads: heads of the late-fusion attention (4).

    Shapes:
        ``forward(frames, keypoints, scores)``: ``frames [B, S, 3, H, W]``, ``keypoints
        [B, S, num_joints, 2]`` (``None`` with ``fusion="none"``), ``scores [B, S, num_joints]``
        or ``None`` (early fusion only) -> segment-averaged logits ``[B, num_classes]``.

    Raises:
        ValueError: on a bad argument; ``forward`` on wrong input shapes.
    """

    def __init__(
        self,
        num_classes: int = 2,
        *,
        backbone: str = "resnet50",
        fusion: str = "early",
        num_joints: int = _NUM_JOINTS,
        gsf_ch_ratio: float = 100.0,
        dropout: float = 0.5,
        heatmap_sigma: float = 7.1,
        attention_heads: int = 4,
    ) -> None:
        super().__init__()
        for name, value in (
            ("num_classes", num_classes),
            ("num_joints", num_joints),
            ("attention_heads", attention_heads),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if fusion not in _FUSIONS:
            raise ValueError(f"fusion must be one of {_FUSIONS}, got {fusion!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if not heatmap_sigma > 0:
            raise ValueError(f"heatmap_sigma must be > 0, got {heatmap_sigma}")
        self.num_classes = num_classes
        self.fusion = fusion
        self.num_joints = num_joints
        self.heatmap_sigma = float(heatmap_sigma)
        self.base_model = GSFResNet(backbone, 4 if fusion == "early" else 3, gsf_ch_ratio)
        self.dropout = nn.Dropout(dropout)
        features = self.base_model.out_channels
        if fusion == "late":
            dim = features + _POSE_DIM
            if dim % attention_heads != 0 or dim % 4 != 0:
                raise ValueError(
                    f"attention_heads must divide the fused width {dim} (and 4 must), got "
                    f"attention_heads={attention_heads}"
                )
            self.pose_model = PoseMLP(num_joints)
            self.attention_layer = nn.MultiheadAttention(dim, attention_heads, dropout=dropout)
            self.feature_refinement_layer = _refinement(dim, dropout)
            self.new_fc = nn.Linear(dim // 4, num_classes)
        else:
            self.new_fc = nn.Linear(features, num_classes)
            nn.init.normal_(self.new_fc.weight, 0.0, 0.001)
            nn.init.zeros_(self.new_fc.bias)

    def _check_inputs(
        self, frames: Tensor, keypoints: Tensor | None, scores: Tensor | None
    ) -> None:
        if frames.dim() != 5 or frames.shape[2] != 3 or 0 in frames.shape:
            raise ValueError(
                f"frames must be [B, S, 3, H, W] (no empty dimension), got shape "
                f"{tuple(frames.shape)}"
            )
        b, s = frames.shape[:2]
        if self.fusion == "none":
            if keypoints is not None or scores is not None:
                raise ValueError("keypoints and scores must be None with fusion='none'")
            return
        expected = (b, s, self.num_joints, 2)
        if keypoints is None or tuple(keypoints.shape) != expected:
            got = None if keypoints is None else tuple(keypoints.shape)
            raise ValueError(
                f"keypoints must be [B, S, {self.num_joints}, 2] = {expected} (frames' B, S), "
                f"got {got}"
            )
        if scores is not None:
            if self.fusion == "late":
                raise ValueError(
                    "scores must be None with fusion='late' (the pose MLP sees coordinates only)"
                )
            if tuple(scores.shape) != expected[:3]:
                raise ValueError(
                    f"scores must be [B, S, {self.num_joints}] = {expected[:3]}, got "
                    f"{tuple(scores.shape)}"
                )

    def pose_heatmap(
        self, keypoints: Tensor, size: tuple[int, int], scores: Tensor | None = None
    ) -> Tensor:
        """The early-fusion channel ``[B, S, H, W]``: keypoint heatmaps of ``keypoints
        [B, S, V, 2]`` (pixel ``(x, y)``) at ``size = (H, W)``, summed over the joints and
        clipped to ``[0, 1]``."""
        from ..ops.render_heatmaps import render_heatmaps

        heatmaps = render_heatmaps(
            keypoints.unsqueeze(2),  # one person: [N = B, T = S, M = 1, V, 2]
            None if scores is None else scores.unsqueeze(2),
            size=size,
            sigma=self.heatmap_sigma,
            mode="keypoint",
            dtype=keypoints.dtype,
        )  # [B, V, S, H, W]
        return heatmaps.sum(dim=1).clamp(max=1.0)

    def forward(
        self, frames: Tensor, keypoints: Tensor | None = None, scores: Tensor | None = None
    ) -> Tensor:
        """Segment-averaged class scores ``[B, num_classes]`` (shapes: see the class)."""
        self._check_inputs(frames, keypoints, scores)
        b, s, _, h, w = frames.shape
        x = frames
        if self.fusion == "early":
            heatmap = self.pose_heatmap(keypoints, (h, w), scores).to(frames.dtype)
            x = torch.cat([frames, heatmap.unsqueeze(2)], dim=2)
        features = self.dropout(self.base_model(x.flatten(0, 1), s))  # [B * S, F]
        if self.fusion == "late":
            pose = self.pose_model(keypoints.reshape(b * s, 2 * self.num_joints))
            fused = torch.cat([F.normalize(features, dim=1), F.normalize(pose, dim=1)], dim=1)
            token = fused.unsqueeze(0)  # one token per segment: [1, B * S, D]
            attended = self.attention_layer(token, token, token, need_weights=False)[0][0]
            features = self.feature_refinement_layer(attended)
        return self.new_fc(features).view(b, s, -1).mean(dim=1)
