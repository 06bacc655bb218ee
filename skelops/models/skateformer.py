"""SkateFormer: Skeletal-Temporal Transformer (Do and Kim, "SkateFormer: Skeletal-Temporal
Transformer for Human Action Recognition", ECCV 2024, arXiv 2403.09508).

Reproduces the architecture of the official implementation, KAIST-VICLab/SkateFormer
(``model/SkateFormer.py``, configs ``config/train/*/SkateFormer_j.yaml``, feeders
``feeders/feeder_ntu.py``, ``feeders/feeder_ucla.py``, ``feeders/tools.py``), on
:func:`skelops.partition_attention` for the Skate-MSA. Parameter names and shapes are the
official ones (:func:`load_official_state_dict` loads an official checkpoint), and the parameter
counts equal the official model's (3,616,083 / 3,627,663 / 1,925,921 for ``ntu60`` /
``ntu120`` / ``nwucla``, checked by building it).

Input ``x [N, C, T, V, M]`` with the joints in SkateFormer's order (its feeders'
``partition=True``: :func:`skelops.graphs.skate_joint_order`; NTU: 24 joints in six 4-joint body
parts, spine_shoulder dropped; NW-UCLA: 20 joints in five), plus ``index_t [N, T]``, each frame's
position in the original clip normalised to ``[-1, 1)`` (the feeders' ``2 * t / length - 1``;
``None``: ``2 * arange(T) / T - 1``, the frames taken as the whole clip). Raw 25-joint NTU input
is accepted too and reordered inside.

Architecture (C: channels of a stage, H: heads):

- persons concatenated along the joints, person-major (``V' = M * V`` tokens per frame: 48 for
  NTU, 20 for NW-UCLA); stem of 1x1 convolutions ``3 -> 6 -> 9 -> embed_dim`` with GELU between;
- Skate-Embedding (official ``index_t=True``): the sinusoidal encoding (Transformer-style,
  ``sin`` on even and ``cos`` on odd channels, base 10000) of ``index_t`` times a learnt
  ``[embed_dim, V']`` matrix ``joint_person_embedding``, added to every (frame, joint) token;
- four stages of depths (2, 2, 2, 2) and channels (96, 192, 192, 192) (``embed_dim`` 96, the
  first stage's width: the official model requires them equal); the
  first block of stages 2-4 starts with ``Conv2d(C_in, C_out, (7, 1), stride (2, 1))`` and
  BatchNorm (temporal stride 2: 64 -> 32 -> 16 -> 8 frames);
- block (:class:`SkateFormerBlock`): ``x + DropPath(Linear(C, C)(concat(branches(Linear(C,
  2C)(LayerNorm(x))))))``, then ``x + DropPath(MLP(LayerNorm(x)))`` (GELU, hidden
  ``mlp_ratio * C``). The ``2C`` mapped channels split into ``C / 2`` for convolutions and
  ``3C / 2`` for attention:

  * G-Conv, ``C / 4`` channels in ``H / 4`` chunks, each mixed over the joints by its own learnt
    ``[V', V']`` matrix (``gconv[i, v, u]`` carries joint ``u`` to joint ``v``:
    ``y[..., v] = sum_u x[..., u] gconv[i, v, u]``, the transpose of skelops' ``A[k, v, w]``
    convention, kept as the official parameter);
  * T-Conv, ``C / 4`` channels, ``Conv2d(C / 4, C / 4, (7, 1), groups H / 4)``;
  * Skate-MSA, four :class:`skelops.nn.PartitionAttention` branches of ``3C / 8`` channels each
    (``(q, k, v) x H / 8 heads x C / H``), Skate-Types 1-4 (local frames x neighbouring joints,
    local x distant, global x neighbouring, global x distant) with partition sizes
    ``(W, J)`` (8, 8), (8, 12), (8, 8), (8, 12) for NTU and (8, 4), (8, 5), (8, 4), (8, 5) for
    NW-UCLA; scale ``(H / 8) ** -0.5`` (0.5: the official ``num_heads ** -0.5`` of a branch);
- average pooling over frames and tokens, dropout (``head_drop``, 0) and a linear classifier.

Training settings of the official configs kept as defaults: ``attn_drop`` 0.5 (dropout of the
attention weights), ``drop_path`` 0.2 (stochastic depth rising linearly from 0 over the eight
blocks), ``head_drop`` 0, ``mlp_ratio`` 4 (NTU) / 1 (NW-UCLA). Initialisation as the official:
``trunc_normal(std=0.02)`` for the bias tables, the G-Conv matrices and the Skate-Embedding,
PyTorch's defaults elsewhere. :meth:`SkateFormer.no_weight_decay` names the bias tables, which
the official AdamW excludes from weight decay.

Choices where this model departs from, or narrows, the official code:

1. **Relative-position bias of Skate-Types 1 and 3.** The operator adds the bias the paper
   describes: for types 1/3 the ``[2W - 1, H]`` table indexed by the *frame* offset of query and
   key inside their window, shared over joint pairs. The official code indexes that table by
   ``(n mod W)`` of the query's and key's token numbers ``n = a * J + i`` (a ``repeat`` with one
   dimension too many), which for the (8, 8) and (8, 4) sizes is the offset of the in-group
   *joint* positions (NW-UCLA, ``J = 4``: ``(a * 4 + i) mod 8``, joint and frame parity mixed).
   Types 2/4 (``[2W - 1, J, J, H]``, frame offset and both joint positions) and the token
   partitions of all four types equal the official ones. So an official checkpoint loads and
   every tensor has its official meaning except the types 1/3 tables, which are read as
   frame-offset biases: outputs differ from the official model's by that bias alone (with the
   types 1/3 tables zeroed, both models agree to float rounding).
2. Only the official configs' options: ``index_t=True`` (the alternative learnt
   ``[1, C, T, V']`` embedding is not built), average pooling, relative bias on, ``drop`` 0
   (no dropout after the projection or in the MLP).
3. Between blocks the features stay channels-last ``[N, T, V', C]`` (the official code permutes
   to ``[N, C, T, V']`` and back around every block); the stride-2 convolutions read a permuted
   view.

Conventions: skeleton tensors ``[N, C, T, V, M]``; adjacency-like matrices in skelops carry
source joint ``v`` to target ``w`` (``y[..., w] = sum_v x[..., v] A[k, v, w]``), see the G-Conv
note above for the one official matrix stored the other way round.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from .. import graphs
from ..nn import PartitionAttention
from ..ops._common import check_positive_int
from .registry import Preset, register_model

__all__ = ["SkateFormer", "SkateFormerBlock", "load_official_state_dict"]

_NTU_LAYOUT = "ntu_pyskl"  # the base of the ntu_skateformer layout; ntu_stgcn orders joints alike
_NTU_SIZES = ((8, 8), (8, 12), (8, 8), (8, 12))
_UCLA_SIZES = ((8, 4), (8, 5), (8, 4), (8, 5))
_SKATE_TYPES = 4
_INIT_STD = 0.02  # official trunc_normal_(std=.02) of the tables, G-Conv and embedding
_POSITION_BASE = 10000.0  # base of the sinusoidal frame-index encoding


class DropPath(nn.Module):
    """Stochastic depth: in training, zero a residual branch for a random ``p`` of the samples
    and scale the others by ``1 / (1 - p)``; the identity in eval mode."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = float(p)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class FeedForward(nn.Module):
    """``fc2(GELU(fc1(x)))`` over the last dimension (timm's ``Mlp`` names, no dropout)."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(channels, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SkateFormerBlock(nn.Module):
    """One SkateFormer block on channels-last features (G-Conv, T-Conv and the four Skate-MSA
    branches on a shared projection, then the MLP; see the module docstring).

    Args:
        channels: ``C``, a multiple of ``num_heads``.
        num_tokens: ``V'``, joints times persons.
        num_heads: ``H``, a multiple of 8: ``H / 4`` G-Conv chunks and T-Conv groups, ``H / 8``
            heads per Skate-Type.
        partition_sizes: ``(W, J)`` of Skate-Types 1-4.
        kernel_size: temporal kernel of the T-Conv (odd).
        mlp_ratio: hidden width of the MLP over ``C``.
        attn_drop: dropout of the attention weights (training only).
        drop_path: stochastic-depth probability of both residual branches.
        backend: backend of :func:`skelops.partition_attention`.

    Shapes:
        ``[N, T, V', C]`` -> ``[N, T, V', C]``; every ``W`` divides ``T``, every ``J`` ``V'``.
    """

    def __init__(
        self,
        channels: int,
        num_tokens: int,
        num_heads: int,
        partition_sizes: Sequence[tuple[int, int]],
        *,
        kernel_size: int = 7,
        mlp_ratio: float = 4.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        conv_groups = num_heads // 4
        type_heads = num_heads // (2 * _SKATE_TYPES)
        self.channels = channels
        self.norm_1 = nn.LayerNorm(channels)
        self.mapping = nn.Linear(channels, 2 * channels)
        self.gconv = nn.Parameter(torch.empty(conv_groups, num_tokens, num_tokens))
        nn.init.trunc_normal_(self.gconv, std=_INIT_STD)
        self.tconv = nn.Conv2d(
            channels // 4,
            channels // 4,
            kernel_size=(kernel_size, 1),
            padding=((kernel_size - 1) // 2, 0),
            groups=conv_groups,
        )
        self.attention = nn.ModuleList(
            PartitionAttention(
                skate_type,
                size,
                type_heads,
                scale=type_heads**-0.5,
                attn_drop=attn_drop,
                backend=backend,
            )
            for skate_type, size in enumerate(partition_sizes, start=1)
        )
        self.proj = nn.Linear(channels, channels)
        self.drop_path = DropPath(drop_path)
        self.norm_2 = nn.LayerNorm(channels)
        self.mlp = FeedForward(channels, int(mlp_ratio * channels))

    def forward(self, x: Tensor) -> Tensor:
        quarter = self.channels // 4
        mapped = self.mapping(self.norm_1(x))  # [N, T, V', 2C]
        gconv_in = mapped[..., :quarter]
        tconv_in = mapped[..., quarter : 2 * quarter]
        attention_in = mapped[..., 2 * quarter :].chunk(_SKATE_TYPES, dim=-1)

        n, t, v, _ = gconv_in.shape
        chunks = self.gconv.shape[0]
        gconv_out = torch.einsum(
            "gvu,ntugc->ntvgc", self.gconv, gconv_in.reshape(n, t, v, chunks, -1)
        ).reshape(n, t, v, quarter)
        # The permuted view is channels-last memory, which Conv2d takes without a copy.
        tconv_out = self.tconv(tconv_in.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        branches = [gconv_out, tconv_out]
        branches += [attend(qkv) for attend, qkv in zip(self.attention, attention_in, strict=True)]

        x = x + self.drop_path(self.proj(torch.cat(branches, dim=-1)))
        return x + self.drop_path(self.mlp(self.norm_2(x)))


class TemporalDownsample(nn.Module):
    """``BN(Conv2d(C_in, C_out, (k, 1), stride (2, 1)))``: halves the frames (rounding up)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 7) -> None:
        super().__init__()
        self.reduction = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size=(kernel_size, 1),
            stride=(2, 1),
            padding=((kernel_size - 1) // 2, 0),
        )
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        """``[N, T, V', C_in]`` -> ``[N, ceil(T / 2), V', C_out]`` (channels-last)."""
        return self.bn(self.reduction(x.permute(0, 3, 1, 2))).permute(0, 2, 3, 1)


class _StageBlock(nn.Module):
    """A block with the optional downsampling before it (official ``SkateFormerBlockDS``;
    its attribute names keep the official parameter names)."""

    def __init__(self, downsample: TemporalDownsample | None, block: SkateFormerBlock) -> None:
        super().__init__()
        self.downsample = downsample
        self.transformer = block

    def forward(self, x: Tensor) -> Tensor:
        if self.downsample is not None:
            x = self.downsample(x)
        return self.transformer(x)


class _Stage(nn.Module):
    def __init__(self, blocks: Sequence[_StageBlock]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        return x


# The paper's result tables could not be read with this project's tools (only its abstract and
# introduction came back), and the official README shows results as an image: no accuracy is
# quoted rather than one from memory.
_NOT_RETRIEVED = "not retrieved (the paper's tables were not readable here)"
_NTU_INPUT = (
    "x [N, 3, 64, 24, 2] in SkateFormer's joint order (or 25 raw NTU joints), index_t [N, 64]; "
    "partition sizes (8, 8), (8, 12), (8, 8), (8, 12)"
)
_PRESETS = {
    f"ntu{classes}": Preset(
        kwargs={"num_classes": classes},
        description=f"NTU RGB+D {classes}: {_NTU_INPUT}",
        parameter_count=count,
        reported_accuracy=_NOT_RETRIEVED,
    )
    for classes, count in ((60, 3_616_083), (120, 3_627_663))
}
_PRESETS |= {
    "nwucla": Preset(
        kwargs={
            "num_classes": 10,
            "layout": "nw_ucla",
            "num_persons": 1,
            "partition_sizes": _UCLA_SIZES,
            "mlp_ratio": 1.0,
        },
        description="Northwestern-UCLA: x [N, 3, 64, 20, 1] in SkateFormer's joint order "
        "(graphs.skate_joint_order('nw_ucla')), index_t [N, 64]; partition sizes (8, 4), "
        "(8, 5), (8, 4), (8, 5), mlp_ratio 1",
        parameter_count=1_925_921,
        reported_accuracy=_NOT_RETRIEVED,
    ),
}


@register_model(
    "skateformer",
    presets=_PRESETS,
    default_preset="ntu60",
    summary="SkateFormer (ECCV 2024): partition-specific skeletal-temporal attention",
)
class SkateFormer(nn.Module):
    """SkateFormer (design, official correspondence and the Skate-Type 1/3 bias note: see the
    module docstring).

    Args:
        num_classes: classifier outputs.
        layout: skeleton layout of the dataset, ``"ntu_pyskl"`` / ``"ntu_stgcn"`` (NTU, 24 of
            25 joints used) or ``"nw_ucla"``; it fixes SkateFormer's joint order
            (:func:`skelops.graphs.skate_joint_order`).
        num_persons: ``M``, concatenated along the joints.
        in_channels: ``C`` (3 coordinates).
        depths: blocks per stage.
        channels: width of each stage, multiples of ``num_heads``; ``channels[0]`` (even) is
            also the width of the stem and the Skate-Embedding (official ``embed_dim``, which
            must equal it: the first stage has no projection).
        num_heads: ``H`` of every block, a multiple of 8 (``H / 8`` heads per Skate-Type).
        partition_sizes: ``(W, J)`` (frames, tokens per partition) of Skate-Types 1-4; each
            ``J`` divides ``M * V``.
        kernel_size: temporal kernel of the T-Conv and the downsampling convolutions (odd).
        mlp_ratio: MLP hidden width over ``C``.
        attn_drop: dropout of the attention weights.
        drop_path: stochastic depth of the last block (0 for the first, linear in between).
        head_drop: dropout before the classifier.
        backend: backend of every :func:`skelops.partition_attention`
            (``"reference"`` for the PyTorch composition).

    Shapes:
        ``forward(x, index_t=None)``: ``x [N, C, T, V, M]`` with ``V`` SkateFormer's joints
        (24 NTU, 20 NW-UCLA) or, for NTU, the 25 raw joints; ``index_t [N, T]`` or ``None``
        -> class scores ``[N, num_classes]``. Every stage's frame count must be a multiple of
        every ``W``: ``T`` a multiple of 64 with the official sizes (64 in the official
        configs).

    Raises:
        ValueError: on an inconsistent configuration (head count, channel widths, partition
            sizes); ``forward`` on a wrong input shape or frame count.
    """

    def __init__(
        self,
        num_classes: int = 60,
        *,
        layout: str | graphs.Layout = _NTU_LAYOUT,
        num_persons: int = 2,
        in_channels: int = 3,
        depths: Sequence[int] = (2, 2, 2, 2),
        channels: Sequence[int] = (96, 192, 192, 192),
        num_heads: int = 32,
        partition_sizes: Sequence[tuple[int, int]] = _NTU_SIZES,
        kernel_size: int = 7,
        mlp_ratio: float = 4.0,
        attn_drop: float = 0.5,
        drop_path: float = 0.2,
        head_drop: float = 0.0,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        for name, value in (
            ("num_classes", num_classes),
            ("num_persons", num_persons),
            ("in_channels", in_channels),
            ("kernel_size", kernel_size),
        ):
            check_positive_int(name, value)
        depths, channels = tuple(depths), tuple(channels)
        if not depths or len(depths) != len(channels):
            raise ValueError(
                f"depths and channels must be non-empty and of one length, got depths={depths}, "
                f"channels={channels}"
            )
        for i, depth in enumerate(depths):
            check_positive_int(f"depths[{i}]", depth)
        if check_positive_int("num_heads", num_heads) % (2 * _SKATE_TYPES):
            raise ValueError(
                f"num_heads must be a multiple of {2 * _SKATE_TYPES} (H / 8 heads per "
                f"Skate-Type), got {num_heads}"
            )
        for i, width in enumerate(channels):
            if check_positive_int(f"channels[{i}]", width) % num_heads:
                raise ValueError(
                    f"channels[{i}] must be a multiple of num_heads={num_heads}, got {width}"
                )
        embed_dim = channels[0]
        if embed_dim % 2:
            raise ValueError(
                f"channels[0] must be even (the Skate-Embedding's sin/cos pairs), got {embed_dim}"
            )
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.layout = graphs.get_layout(layout)
        self.joint_order = graphs.skate_joint_order(self.layout)
        self.num_joints = len(self.joint_order)
        num_tokens = num_persons * self.num_joints
        sizes = tuple(tuple(size) for size in partition_sizes)
        if len(sizes) != _SKATE_TYPES or any(
            len(s) != 2 or isinstance(s[1], bool) or not isinstance(s[1], int) or s[1] <= 0
            or num_tokens % s[1]
            for s in sizes
        ):  # fmt: skip
            raise ValueError(
                f"partition_sizes must be four (W, J) pairs with J dividing M * V = {num_tokens} "
                f"tokens per frame, got {partition_sizes!r}"
            )
        self.num_classes = num_classes
        self.num_persons = num_persons
        self.in_channels = in_channels
        self.embed_dim = embed_dim
        self.partition_sizes = sizes

        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 2 * in_channels, kernel_size=1),
            nn.GELU(),
            nn.Conv2d(2 * in_channels, 3 * in_channels, kernel_size=1),
            nn.GELU(),
            nn.Conv2d(3 * in_channels, embed_dim, kernel_size=1),
        )
        self.joint_person_embedding = nn.Parameter(torch.empty(embed_dim, num_tokens))
        nn.init.trunc_normal_(self.joint_person_embedding, std=_INIT_STD)

        drop_rates = torch.linspace(0.0, drop_path, sum(depths)).tolist()
        stages = []
        width = embed_dim
        for stage, (depth, out_width) in enumerate(zip(depths, channels, strict=True)):
            blocks = []
            for index in range(depth):
                downsample = (
                    TemporalDownsample(width, out_width, kernel_size)
                    if stage > 0 and index == 0
                    else None
                )
                block = SkateFormerBlock(
                    out_width,
                    num_tokens,
                    num_heads,
                    sizes,
                    kernel_size=kernel_size,
                    mlp_ratio=mlp_ratio,
                    attn_drop=attn_drop,
                    drop_path=drop_rates[sum(depths[:stage]) + index],
                    backend=backend,
                )
                blocks.append(_StageBlock(downsample, block))
                width = out_width
            stages.append(_Stage(blocks))
        self.stages = nn.ModuleList(stages)
        self.dropout = nn.Dropout(head_drop) if head_drop else nn.Identity()
        self.head = nn.Linear(width, num_classes)

    def input_shape(self) -> str:
        return f"[N, {self.in_channels}, T, {self.num_joints}, {self.num_persons}]"

    def no_weight_decay(self) -> set[str]:
        """Names of the relative-position bias tables, which the official AdamW does not decay."""
        return {n for n, _ in self.named_parameters() if "relative_position_bias_table" in n}

    def _check_frames(self, frames: int) -> None:
        windows = sorted({w for w, _ in self.partition_sizes})
        per_stage = [frames]
        for _ in self.stages[1:]:
            per_stage.append((per_stage[-1] + 1) // 2)
        if any(t % w for t in per_stage for w in windows):
            multiple = math.lcm(*windows) * 2 ** (len(self.stages) - 1)
            raise ValueError(
                f"x must have T frames that every stage (T = {per_stage} after the stride-2 "
                f"convolutions) splits into windows of W = {windows} frames (T a multiple of "
                f"{multiple}), got T={frames}"
            )

    def _check_input(self, x: Tensor) -> None:
        raw = self.layout.num_joints
        joints = (self.num_joints,) if raw == self.num_joints else (self.num_joints, raw)
        if (
            not isinstance(x, Tensor)
            or x.dim() != 5
            or x.shape[1] != self.in_channels
            or x.shape[3] not in joints
            or x.shape[4] != self.num_persons
            or x.shape[0] == 0
        ):
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            also = f" (or the layout's {raw} joints)" if len(joints) == 2 else ""
            raise ValueError(
                f"x must be {self.input_shape()}{also}: C={self.in_channels} coordinates, "
                f"V={self.num_joints} joints in SkateFormer's order for layout "
                f"{self.layout.name!r}, M={self.num_persons} persons; got {got}"
            )
        self._check_frames(x.shape[2])

    def forward(self, x: Tensor, index_t: Tensor | None = None) -> Tensor:
        """x ``[N, C, T, V, M]`` (and ``index_t [N, T]``) -> scores ``[N, num_classes]``."""
        self._check_input(x)
        if x.shape[3] != self.num_joints:
            x = x[:, :, :, self.joint_order]
        n, c, t, v, m = x.shape
        if index_t is None:
            index_t = torch.arange(t, device=x.device, dtype=x.dtype) * (2.0 / t) - 1.0
            index_t = index_t.expand(n, t)
        elif tuple(index_t.shape) != (n, t):
            raise ValueError(
                f"index_t must be [N, T] = [{n}, {t}] (normalised frame indices), "
                f"got {tuple(index_t.shape)}"
            )
        tokens = self.stem(x.permute(0, 1, 2, 4, 3).reshape(n, c, t, m * v))
        tokens = tokens.permute(0, 2, 3, 1) + self._skate_embedding(index_t.to(x.dtype))
        for stage in self.stages:
            tokens = stage(tokens)
        return self.head(self.dropout(tokens.mean(dim=(1, 2))))

    def _skate_embedding(self, index_t: Tensor) -> Tensor:
        """``[N, T]`` frame indices -> ``[N, T, V', E]`` (channels-last) embedding."""
        half = torch.arange(0, self.embed_dim, 2, device=index_t.device, dtype=index_t.dtype)
        frequency = torch.exp(half * (-math.log(_POSITION_BASE) / self.embed_dim))
        angle = index_t[..., None] * frequency  # [N, T, E / 2]
        encoding = torch.stack((angle.sin(), angle.cos()), dim=-1).flatten(-2)  # sin, cos, ...
        return torch.einsum("ntc,cv->ntvc", encoding, self.joint_person_embedding)


def load_official_state_dict(model: SkateFormer, state_dict: Mapping[str, Tensor]) -> SkateFormer:
    """Load an official SkateFormer checkpoint (``model.SkateFormer.SkateFormer`` state dict,
    ``index_t=True``) into ``model`` strictly.

    The names and shapes are the official ones; a ``module.`` prefix (``DataParallel``) and the
    official ``relative_position_index`` buffers (the operator computes the offsets) are dropped.
    Build ``model`` with the checkpoint's configuration (the matching preset). The Skate-Type 1/3
    bias tables are then read as frame-offset biases (the paper's; see the module docstring),
    not as the official code's joint-position ones.
    """
    source = {
        key.removeprefix("module."): value
        for key, value in state_dict.items()
        if not key.endswith(".relative_position_index")
    }
    model.load_state_dict(source)
    return model
