"""MANs: Memory Attention Networks (Xie et al., "Memory Attention Networks for Skeleton-based
Action Recognition", IJCAI 2018).

Read from the official Keras demo, github.com/memory-attention-networks/MANs: ``MANs_9.py`` (the
demo model), ``MANs_densenet161.py`` (the DenseNet-161 variant), ``process_data.py`` (the view
normalisation and the skeleton image) and ``train_MANs.py``. Architecture, not code, is
reproduced here.

The model works on a *skeleton image*: one row per frame, one column per joint of each person
(person-major: person 0's 25 joints, then person 1's), one channel per coordinate (x, y, z). The
demo's image is 50 x 50 x 3: ``T = 50`` frames, ``2 x 25 = 50`` columns.

* **TARM**, Temporal Attention Recalibration Module, one per coordinate channel: the ``[T, F]``
  plane is embedded per frame (Dense ``F -> H``); a bidirectional GRU (``H`` units, directions
  summed) reads it; a frame attention (mean over the ``H`` features of the embedding, Dense
  ``T -> int(T / 16)`` + ReLU, Dense ``-> T`` + sigmoid, i.e. squeeze-and-excitation over frames)
  weights each frame of the GRU output; Dense ``H -> F`` maps it back and is added to the plane
  (residual).
* **STCM**, Spatio-Temporal Convolution Module: a CNN on the recalibrated ``[3, T, F]`` image.
  The demo uses a two-stage pre-activation ResNet (``ResnetBuilder.build_resnet_18`` with
  repetitions ``[2, 2]``, i.e. basic blocks of 64 and 128 filters, after a 5x5/2 stem of 64 with
  no max pooling),
  ``backbone="resnet"`` here; ``backbone="densenet161"`` is the paper's DenseNet-161 variant on
  a 224 x 224 image.

Parameter counts: the official demo (``MANs_9.MANs_model()``, 60 classes) counts 856,117 trainable
parameters (including the frame attention's two Dense layers, 3 x 353, which the demo builds inside
a Keras ``Lambda``; batch-norm moving statistics are not trainable). This model counts **857,269**:
PyTorch's ``nn.GRU`` keeps two bias vectors per gate (``bias_ih`` and ``bias_hh``) where Keras
2.0.8's GRU keeps one, so each GRU direction carries ``3 * 64 = 192`` more, ``3 channels x 2
directions x 192 = 1,152`` in all (``857,269 - 1,152 = 856,117``). Beyond the bias, the Keras 2.0.8
GRU (``reset_after=False``) applies the reset gate to the hidden state *before* the recurrent
product and uses ``hard_sigmoid`` gates, whereas ``nn.GRU`` applies it after (``r * (W_hn h +
b_hn)``) and uses the logistic sigmoid; the demo's ``recurrent_dropout=0.5`` has no ``nn.GRU``
counterpart and is not reproduced (its input ``dropout=0.5`` is, as variational dropout: one mask
per sequence, shared across frames, gates and both directions, where Keras draws one per gate and
direction). Other quirks kept: Keras ``"same"`` padding (the extra row/column of an even-sized
stride-2 convolution goes to the bottom/right), Keras batch-norm settings (``epsilon=1e-3``,
momentum 0.99; DenseNet ``epsilon=1.1e-5``) and Keras initialisers (TARM and ResNet). The model
returns logits; the demo ends in a softmax. The official L2 weight decay (1e-4 on the convolutions
and GRU input kernels) belongs to the optimiser.

``torch.compile(model, fullgraph=True)`` needs ``torch._dynamo.config.allow_rnn = True``
(Dynamo does not trace ``nn.GRU`` by default; it then unrolls the GRU over the frames, which
makes compiling slow); without ``fullgraph`` the GRUs run eagerly behind graph breaks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..graphs import get_layout
from .registry import Preset, register_model

__all__ = [
    "MANs",
    "DenseNetSTCM",
    "ResNetSTCM",
    "TemporalAttentionRecalibration",
    "fit_frames",
    "preprocess",
    "skeleton_image",
    "view_normalize",
]

# Keras BatchNormalization keeps ``moving = 0.99 * moving + 0.01 * batch``; PyTorch's momentum is
# the weight of the batch statistic.
_KERAS_BN_MOMENTUM = 0.01
_KERAS_BN_EPS = 1e-3
# MANs_densenet161.py: BatchNormalization(epsilon=1.1e-5) (the Caffe DenseNet port's value).
_DENSENET_BN_EPS = 1.1e-5

# process_data.py: the torso joints whose principal axis is the new z axis.
_TORSO_JOINTS = (
    "spine_base",
    "spine_mid",
    "left_shoulder",
    "right_shoulder",
    "left_hip",
    "right_hip",
    "spine_shoulder",
)


# --------------------------------------------------------------------------------------------
# Preprocessing (process_data.py)
# --------------------------------------------------------------------------------------------


def view_normalize(skeletons: Tensor, layout: str = "ntu_stgcn") -> Tensor:
    """The official view normalisation of ``process_data.py``: a body-centred frame per person.

    For each person slot ``m``, at the first frame in which it appears (any non-zero joint):

    * the origin is the midpoint of the two hips;
    * the new z axis is the first principal axis (PCA, as scikit-learn signs it: the torso joint
      farthest along the axis has a positive projection) of the 7 torso joints (spine base, spine
      middle, both shoulders, both hips, spine shoulder), i.e. the spine direction;
    * y = (left hip - right hip) x z and x = y x z complete an orthonormal frame.

    Every frame of that person is then expressed in its frame (``R^T (p - origin)``); frames in
    which the person is absent stay zero. Finally each axis's sign is fixed for the whole sample
    from person 0: z is flipped when the left shoulder's z in frame 0 is negative (so z points
    up), y when either foot is on average behind its ankle (so y points forward), x when the
    right hip is on average left of the left hip (so x points to the right).

    This removes the camera's position and viewing direction (translation and rotation), not the
    body size. Computed in float64 (as the official NumPy code), returned in the input's dtype.
    The slots are taken as the official code takes the body order within each frame (its slot 1
    is the second body listed); frames that had more than two bodies, which the official code
    leaves zero, must already be zero.

    Args:
        skeletons: ``[N, 3, T, V, M]`` joint coordinates (x, y, z), zero where a person is absent.
        layout: name of the :mod:`skelops.graphs` layout giving the joint names (the NTU RGB+D
            order by default).

    Returns:
        ``[N, 3, T, V, M]`` view-normalised coordinates.
    """
    joints = get_layout(layout)
    if skeletons.dim() != 5 or skeletons.shape[1] != 3 or skeletons.shape[3] != joints.num_joints:
        raise ValueError(
            f"skeletons must be [N, 3, T, {joints.num_joints}, M] (layout {layout!r}), "
            f"got {tuple(skeletons.shape)}"
        )
    index = {name: i for i, name in enumerate(joints.joint_names)}
    needed = (*_TORSO_JOINTS, "left_ankle", "left_foot", "right_ankle", "right_foot")
    missing = [name for name in needed if name not in index]
    if missing:
        raise ValueError(f"layout {layout!r} lacks the joints {missing} view_normalize needs")

    num, _, frames, num_joints, persons = skeletons.shape
    points = skeletons.to(torch.float64).permute(0, 4, 2, 3, 1)  # [N, M, T, V, 3]
    present = (points != 0).flatten(-2).any(-1)  # [N, M, T]
    first = present.to(torch.int8).argmax(-1)  # first frame of each person (0 if never)
    reference = points.gather(
        2, first[:, :, None, None, None].expand(num, persons, 1, num_joints, 3)
    ).squeeze(2)  # [N, M, V, 3]

    left_hip, right_hip = (
        reference[..., index["left_hip"], :],
        reference[..., index["right_hip"], :],
    )
    origin = (left_hip + right_hip) / 2
    torso = reference[..., [index[name] for name in _TORSO_JOINTS], :]
    centred = torso - torso.mean(-2, keepdim=True)
    axis_z = torch.linalg.svd(centred, full_matrices=False).Vh[..., 0, :]
    projection = (centred * axis_z[..., None, :]).sum(-1)
    farthest = projection.gather(-1, projection.abs().argmax(-1, keepdim=True))
    axis_z = torch.where(farthest < 0, -axis_z, axis_z)
    axis_y = torch.linalg.cross(left_hip - right_hip, axis_z, dim=-1)
    axis_x = torch.linalg.cross(axis_y, axis_z, dim=-1)
    basis = torch.stack([axis_x, axis_y, axis_z], dim=-2)  # rows: the new axes
    basis = basis / basis.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)

    local = torch.einsum("nmij,nmtvj->nmtvi", basis, points - origin[:, :, None, None, :])
    local = torch.where(present[..., None, None], local, torch.zeros_like(local))
    coords = local.permute(0, 4, 2, 3, 1)  # [N, 3, T, V, M]

    first_person = coords[..., 0]  # [N, 3, T, V]
    mean_y = first_person[:, 1].mean(1)
    mean_x = first_person[:, 0].mean(1)
    flip_z = first_person[:, 2, 0, index["left_shoulder"]] < 0
    flip_y = (mean_y[:, index["left_foot"]] - mean_y[:, index["left_ankle"]] < 0) | (
        mean_y[:, index["right_foot"]] - mean_y[:, index["right_ankle"]] < 0
    )
    flip_x = mean_x[:, index["right_hip"]] - mean_x[:, index["left_hip"]] < 0
    signs = 1 - 2 * torch.stack([flip_x, flip_y, flip_z], dim=1).to(torch.float64)
    return (coords * signs[:, :, None, None, None]).to(skeletons.dtype)


def fit_frames(x: Tensor, num_frames: int) -> Tensor:
    """Bring the frame axis (dim 2 of ``[N, C, T, ...]``) to ``num_frames`` as the official code
    does: a shorter sequence is zero-padded on both sides (``(num_frames - T) // 2`` frames
    before), a longer one is sampled at ``floor(linspace(0, T - 1, num_frames))``.

    Pass only a sequence's valid frames (the official code reads the true length from the
    skeleton file), e.g. one sample at a time for a batch padded to a common length.
    """
    if x.dim() < 3:
        raise ValueError(f"x must be [N, C, T, ...], got {tuple(x.shape)}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    frames = x.shape[2]
    if frames <= num_frames:
        before = (num_frames - frames) // 2
        pad = [0, 0] * (x.dim() - 3) + [before, num_frames - frames - before]
        return F.pad(x, pad)
    # numpy.linspace(0, T - 1, n, dtype=int): i * ((T - 1) / (n - 1)), floored, last = T - 1.
    step = (frames - 1) / (num_frames - 1) if num_frames > 1 else 0.0
    index = (torch.arange(num_frames, dtype=torch.float64) * step).floor().long()
    index[-1] = frames - 1 if num_frames > 1 else 0
    return x.index_select(2, index.to(x.device))


def skeleton_image(x: Tensor, num_columns: int) -> Tensor:
    """``[N, C, T, V, M] -> [N, C, T, num_columns]``: the official skeleton image. Column
    ``m * V + v`` holds joint ``v`` of person ``m``; the ``M * V`` columns are centred with zero
    columns (``(num_columns - M * V) // 2`` on the left), as ``process_data.py`` pads them."""
    if x.dim() != 5:
        raise ValueError(f"x must be [N, C, T, V, M], got {tuple(x.shape)}")
    num, channels, frames, joints, persons = x.shape
    used = joints * persons
    if used > num_columns:
        raise ValueError(
            f"num_columns must be >= V * M = {joints} * {persons} = {used}, got {num_columns}"
        )
    columns = x.permute(0, 1, 2, 4, 3).reshape(num, channels, frames, used)
    left = (num_columns - used) // 2
    return F.pad(columns, (left, num_columns - used - left))


def preprocess(
    skeletons: Tensor, num_frames: int = 50, num_columns: int = 50, layout: str = "ntu_stgcn"
) -> Tensor:
    """The official input pipeline: :func:`view_normalize`, :func:`fit_frames`,
    :func:`skeleton_image`. ``[N, 3, T, V, M] -> [N, 3, num_frames, num_columns]`` (the demo's
    ``50 x 50``; the DenseNet-161 variant's ``224 x 224``). As the official code does it once
    per sample, the sequences of a batch must share their length ``T``."""
    normalised = view_normalize(skeletons, layout)
    return skeleton_image(fit_frames(normalised, num_frames), num_columns)


# --------------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------------


def _keras_he_normal_(weight: Tensor) -> None:
    """Keras 2.0.8 ``he_normal``: truncated normal (2 std), std ``sqrt(2 / fan_in)``."""
    fan_in = weight[0].numel()
    std = math.sqrt(2.0 / fan_in)
    nn.init.trunc_normal_(weight, std=std, a=-2 * std, b=2 * std)


def _keras_dense(in_features: int, out_features: int) -> nn.Linear:
    """A Keras ``Dense`` with its default ``glorot_uniform`` kernel and zero bias."""
    layer = nn.Linear(in_features, out_features)
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class _SameConv2d(nn.Conv2d):
    """``Conv2D(padding="same")`` of TensorFlow: total padding ``max((ceil(s / stride) - 1) *
    stride + k - s, 0)``, the odd row/column at the bottom/right."""

    def forward(self, x: Tensor) -> Tensor:
        pads = []
        for size, kernel, stride in zip(
            reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride), strict=True
        ):
            total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


class TemporalAttentionRecalibration(nn.Module):
    """TARM for one coordinate channel (``MANs_9.py``, ``TARM()`` and ``attention()``).

    ``x [N, T, F]`` (frames x columns) ->  ``x + Dense_{H->F}(BiGRU(e) * a)`` with
    ``e = Dense_{F->H}(x)``, the bidirectional GRU's directions summed, and the frame attention
    ``a = sigmoid(Dense_{T/r->T}(relu(Dense_{T->T/r}(mean_H(e)))))`` (one weight per frame,
    broadcast over the ``H`` features; ``T/r`` is ``int(T / reduction)``). The attention reads
    the embedding ``e``, not the GRU output.

    Args:
        num_frames: ``T`` (the attention's dense layers run over frames, so ``T`` is fixed).
        num_features: ``F``, columns of the skeleton image.
        hidden_size: ``H``, GRU units (64 in the demo, 128 in the DenseNet-161 variant).
        reduction: attention reduction (16).
        gru_dropout: variational dropout on the GRU input (0.5 in the demo).
    """

    def __init__(
        self,
        num_frames: int,
        num_features: int,
        hidden_size: int = 64,
        reduction: int = 16,
        gru_dropout: float = 0.5,
    ) -> None:
        super().__init__()
        squeezed = int(num_frames / reduction)
        if squeezed < 1:
            raise ValueError(
                f"num_frames must be >= reduction ({reduction}) so that the frame attention has "
                f"int(num_frames / reduction) >= 1 units, got num_frames={num_frames}"
            )
        if not 0.0 <= gru_dropout < 1.0:
            raise ValueError(f"gru_dropout must be in [0, 1), got {gru_dropout}")
        self.hidden_size = hidden_size
        self.gru_dropout = gru_dropout
        self.embed = _keras_dense(num_features, hidden_size)
        self.gru = nn.GRU(hidden_size, hidden_size, batch_first=True, bidirectional=True)
        for name, parameter in self.gru.named_parameters():
            # Keras: orthogonal kernel and recurrent kernel (each over all three gates), zero bias.
            if name.startswith("weight"):
                nn.init.orthogonal_(parameter)
            else:
                nn.init.zeros_(parameter)
        self.squeeze = _keras_dense(num_frames, squeezed)
        self.excite = _keras_dense(squeezed, num_frames)
        self.project = _keras_dense(hidden_size, num_features)

    def forward(self, x: Tensor) -> Tensor:
        """``[N, T, F] -> [N, T, F]``."""
        embedded = self.embed(x)
        gru_input = embedded
        if self.training and self.gru_dropout > 0:
            mask = embedded.new_ones(embedded.shape[0], 1, embedded.shape[2])
            gru_input = embedded * F.dropout(mask, self.gru_dropout, training=True)
        both, _ = self.gru(gru_input)
        memory = both[..., : self.hidden_size] + both[..., self.hidden_size :]
        weights = torch.sigmoid(self.excite(F.relu(self.squeeze(embedded.mean(-1)))))
        return x + self.project(memory * weights.unsqueeze(-1))


class _PreActBasicBlock(nn.Module):
    """``basic_block`` of ``MANs_9.py``: (BN-ReLU)-conv3x3-BN-ReLU-conv3x3 plus a shortcut, a 1x1
    strided convolution of the block input where the shape changes. The first block of the
    first stage skips the leading BN-ReLU (the stem just applied one)."""

    def __init__(self, in_channels: int, channels: int, stride: int, preactivate: bool) -> None:
        super().__init__()
        self.preact = (
            nn.Sequential(
                nn.BatchNorm2d(in_channels, eps=_KERAS_BN_EPS, momentum=_KERAS_BN_MOMENTUM),
                nn.ReLU(),
            )
            if preactivate
            else nn.Identity()
        )
        self.conv1 = _SameConv2d(in_channels, channels, 3, stride)
        self.norm2 = nn.BatchNorm2d(channels, eps=_KERAS_BN_EPS, momentum=_KERAS_BN_MOMENTUM)
        self.conv2 = _SameConv2d(channels, channels, 3, 1)
        self.shortcut = (
            nn.Conv2d(in_channels, channels, 1, stride)
            if stride > 1 or in_channels != channels
            else nn.Identity()
        )

    def forward(self, x: Tensor) -> Tensor:
        residual = self.conv2(F.relu(self.norm2(self.conv1(self.preact(x)))))
        return self.shortcut(x) + residual


class ResNetSTCM(nn.Module):
    """The demo's STCM (``ResnetBuilder.build`` with ``basic_block`` and repetitions ``[2, 2]``):
    a 5x5/2 convolution (64) + BN + ReLU, then pre-activation basic blocks in stages of 64, 128,
    ... filters (each later stage starts with stride 2), BN + ReLU, global average pooling and a
    linear classifier. All convolutions have biases and Keras ``"same"`` padding.

    ``[N, C, T, F] -> [N, num_classes]`` logits.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        stem_channels: int = 64,
        repetitions: Sequence[int] = (2, 2),
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            _SameConv2d(in_channels, stem_channels, 5, 2),
            nn.BatchNorm2d(stem_channels, eps=_KERAS_BN_EPS, momentum=_KERAS_BN_MOMENTUM),
            nn.ReLU(),
        )
        blocks = []
        channels = stem_channels
        for stage, count in enumerate(repetitions):
            width = stem_channels * 2**stage
            for i in range(count):
                first_of_net = stage == 0 and i == 0
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(_PreActBasicBlock(channels, width, stride, not first_of_net))
                channels = width
        self.blocks = nn.Sequential(*blocks)
        self.head_norm = nn.BatchNorm2d(channels, eps=_KERAS_BN_EPS, momentum=_KERAS_BN_MOMENTUM)
        self.classifier = nn.Linear(channels, num_classes)
        self.num_features = channels
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                _keras_he_normal_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        features = F.relu(self.head_norm(self.blocks(self.stem(x))))
        return self.classifier(features.mean((-2, -1)))


class _DenseLayer(nn.Module):
    def __init__(self, in_channels: int, growth_rate: int, bn_size: int) -> None:
        super().__init__()
        inner = bn_size * growth_rate
        self.norm1 = nn.BatchNorm2d(in_channels, eps=_DENSENET_BN_EPS, momentum=_KERAS_BN_MOMENTUM)
        self.conv1 = nn.Conv2d(in_channels, inner, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(inner, eps=_DENSENET_BN_EPS, momentum=_KERAS_BN_MOMENTUM)
        self.conv2 = nn.Conv2d(inner, growth_rate, 3, padding=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        new = self.conv2(F.relu(self.norm2(self.conv1(F.relu(self.norm1(x))))))
        return torch.cat([x, new], dim=1)


class DenseNetSTCM(nn.Module):
    """DenseNet STCM (``MANs_densenet161.py``), DenseNet-161 by default: growth rate 48, dense
    blocks of (6, 12, 36, 24) BN-ReLU-conv1x1(``bn_size * growth``)-BN-ReLU-conv3x3(growth)
    layers, 96 stem features (7x7/2 convolution, BN, ReLU, 3x3/2 max pooling), transitions that
    halve the channels (BN-ReLU-conv1x1, 2x2 average pooling), a final BN-ReLU, global average
    pooling and a linear classifier. Convolutions have no bias.

    This is torchvision's DenseNet-161 layer for layer (26,472,000 feature parameters; 28,681,000
    with its 1000-way classifier), initialised as torchvision does. Differences from the official
    Keras variant: it loads ImageNet DenseNet-161 weights (none are shipped here), and its
    Caffe-ported blocks put a ``Scale`` layer (a second per-channel gamma/beta) after every batch
    norm, which only re-parametrises the batch norm's own affine transform and is left out.
    By formula, the official variant (60 classes, Keras GRUs) has 27,389,286 trainable parameters
    without those ``Scale`` layers and 27,609,222 with them (2 x 109,968 batch-norm channels);
    ``MANs(backbone="densenet161")`` has 27,391,590 (2,304 more: the second GRU biases).

    ``[N, C, H, W] -> [N, num_classes]`` logits.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        growth_rate: int = 48,
        block_config: Sequence[int] = (6, 12, 36, 24),
        num_init_features: int = 96,
        bn_size: int = 4,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, num_init_features, 7, 2, 3, bias=False),
            nn.BatchNorm2d(num_init_features, eps=_DENSENET_BN_EPS, momentum=_KERAS_BN_MOMENTUM),
            nn.ReLU(),
            nn.MaxPool2d(3, 2, 1),
        ]
        channels = num_init_features
        for i, count in enumerate(block_config):
            for _ in range(count):
                layers.append(_DenseLayer(channels, growth_rate, bn_size))
                channels += growth_rate
            if i != len(block_config) - 1:
                layers += [
                    nn.BatchNorm2d(channels, eps=_DENSENET_BN_EPS, momentum=_KERAS_BN_MOMENTUM),
                    nn.ReLU(),
                    nn.Conv2d(channels, channels // 2, 1, bias=False),
                    nn.AvgPool2d(2, 2),
                ]
                channels //= 2
        layers += [
            nn.BatchNorm2d(channels, eps=_DENSENET_BN_EPS, momentum=_KERAS_BN_MOMENTUM),
            nn.ReLU(),
        ]
        self.features = nn.Sequential(*layers)
        self.classifier = _keras_dense(channels, num_classes)
        self.num_features = channels
        for module in self.features.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x).mean((-2, -1)))


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------

# Per backbone: image frames, image columns, GRU units, GRU input dropout.
_BACKBONE_DEFAULTS = {
    "resnet": (50, 50, 64, 0.5),  # MANs_9.py
    "densenet161": (224, 224, 128, 0.0),  # MANs_densenet161.py
}


@register_model(
    "mans",
    presets={
        "ntu60": Preset(
            kwargs={"num_classes": 60},
            description="NTU RGB+D 60, the official Keras demo (50 x 50 skeleton image, "
            "two-stage ResNet STCM)",
            parameter_count=857_269,
            reported_accuracy="82.67 (cross-subject) / 93.22 (cross-view) top-1 on NTU RGB+D 60 "
            "(Xie et al., IJCAI 2018; MANs with the DenseNet-161 STCM)",
        ),
        "ntu120": Preset(
            kwargs={"num_classes": 120},
            description="NTU RGB+D 120, the demo's architecture with a 120-way classifier",
            parameter_count=865_009,
        ),
    },
    default_preset="ntu60",
    summary="Memory Attention Networks: per-coordinate temporal attention recalibration "
    "(BiGRU + frame attention) and a CNN on the skeleton image (Xie et al., IJCAI 2018)",
)
class MANs(nn.Module):
    """Memory Attention Networks (Xie et al., IJCAI 2018): TARM + STCM on the skeleton image.

    Input, any of:

    * ``[N, C, T, F]``: the skeleton image, channels first (what :func:`preprocess` returns);
      ``C = 3`` coordinates, ``T = num_frames`` rows, ``F = num_columns`` columns holding joint
      ``v`` of person ``m`` at ``pad + m * V + v`` (``pad = (F - V * M) // 2``, 0 in the demo);
    * ``[N, T, F, C]``: the same, channels last, as the official Keras demo takes it
      (``[N, 50, 50, 3]``); recognised by shape (channels first wins if ``C == T == F``);
    * ``[N, C, T, V, M]``: the library's skeleton format, laid out as the image by
      :func:`skeleton_image`; ``T`` must already be ``num_frames``.

    The view normalisation and frame fitting of the official pipeline are data preprocessing
    (:func:`preprocess`), not part of the model. Returns logits ``[N, num_classes]``.

    Parameters: 857,269 for ``ntu60`` (the Keras demo's 856,117 plus the 1,152 second GRU biases
    of ``nn.GRU``, see the module docstring), 865,009 for ``ntu120``; 27,391,590 with
    ``backbone="densenet161"`` and 60 classes (a torchvision-style DenseNet-161, 26,472,000
    feature parameters, i.e. torchvision's 28,681,000 less its 1000-way classifier; TARM with
    128 GRU units on 224 x 224).

    Args:
        num_classes: number of action classes.
        backbone: ``"resnet"`` (the demo's two-stage ResNet, 50 x 50 image) or ``"densenet161"``
            (the paper's DenseNet-161 variant, 224 x 224 image).
        num_frames: image rows ``T`` (default per backbone: 50 / 224).
        num_columns: image columns ``F`` (default: ``V * M`` = 50 for ``resnet``, 224 for
            ``densenet161``).
        hidden_size: TARM GRU units (default per backbone: 64 / 128).
        gru_dropout: TARM GRU input dropout (default per backbone: 0.5 / 0.0).
        attention_reduction: frame-attention reduction (16).
        in_channels: coordinates per joint (3).
        num_joints: ``V`` of the ``[N, C, T, V, M]`` input (25).
        num_persons: ``M`` of the ``[N, C, T, V, M]`` input (2).
    """

    def __init__(
        self,
        num_classes: int = 60,
        backbone: str = "resnet",
        num_frames: int | None = None,
        num_columns: int | None = None,
        hidden_size: int | None = None,
        gru_dropout: float | None = None,
        attention_reduction: int = 16,
        in_channels: int = 3,
        num_joints: int = 25,
        num_persons: int = 2,
    ) -> None:
        super().__init__()
        if backbone not in _BACKBONE_DEFAULTS:
            raise ValueError(
                f"backbone must be one of {sorted(_BACKBONE_DEFAULTS)}, got {backbone!r}"
            )
        frames, columns, hidden, dropout = _BACKBONE_DEFAULTS[backbone]
        if backbone == "resnet":
            columns = num_joints * num_persons
        self.num_frames = frames if num_frames is None else num_frames
        self.num_columns = columns if num_columns is None else num_columns
        self.in_channels = in_channels
        self.num_joints = num_joints
        self.num_persons = num_persons
        if num_joints * num_persons > self.num_columns:
            raise ValueError(
                f"num_columns must be >= num_joints * num_persons = {num_joints * num_persons}, "
                f"got {self.num_columns}"
            )
        self.tarm = nn.ModuleList(
            TemporalAttentionRecalibration(
                self.num_frames,
                self.num_columns,
                hidden if hidden_size is None else hidden_size,
                attention_reduction,
                dropout if gru_dropout is None else gru_dropout,
            )
            for _ in range(in_channels)
        )
        self.stcm: nn.Module = (
            ResNetSTCM(num_classes, in_channels)
            if backbone == "resnet"
            else DenseNetSTCM(num_classes, in_channels)
        )

    def _expected(self) -> str:
        c, t, f = self.in_channels, self.num_frames, self.num_columns
        v, m = self.num_joints, self.num_persons
        return (
            f"[N, {c}, {t}, {f}] (skeleton image: {c} coordinates, T={t} frames, {f} columns "
            f"for {m} persons x {v} joints), [N, {t}, {f}, {c}] (the same, channels last) or "
            f"[N, {c}, {t}, {v}, {m}]"
        )

    def to_image(self, x: Tensor) -> Tensor:
        """Any accepted input -> the channels-first skeleton image ``[N, C, T, F]``."""
        c, t, f = self.in_channels, self.num_frames, self.num_columns
        if x.dim() == 5 and tuple(x.shape[1:]) == (c, t, self.num_joints, self.num_persons):
            return skeleton_image(x, f)
        if x.dim() == 4 and tuple(x.shape[1:]) == (c, t, f):
            return x
        if x.dim() == 4 and tuple(x.shape[1:]) == (t, f, c):
            return x.permute(0, 3, 1, 2)
        raise ValueError(f"x must be {self._expected()}, got {tuple(x.shape)}")

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``[N, num_classes]`` of ``x`` (see the class docstring for the formats)."""
        image = self.to_image(x)
        recalibrated = torch.stack([tarm(image[:, i]) for i, tarm in enumerate(self.tarm)], dim=1)
        return self.stcm(recalibrated)
