"""CascadeFormer: two-stage cascading transformers (Peng and Yilmaz, "CascadeFormer: A Family of
Two-stage Cascading Transformers for Skeleton-based Human Action Recognition", ICPR 2026,
arXiv 2509.00692).

Architecture read from the official code, YP4AIresearch/CascadeFormer,
``baseline/action_recognition/cascadeformer_1_{0,1,2}/joint/``: ``penn_action/`` (``main.py``,
``pretraining.py``, ``finetuning.py``), ``n_ucla/`` (``UCLA_main.py``, ``pretraining.py``,
``UCLA_finetuning.py``) and ``ntu_60_own/`` (``NTU_main.py``, ``NTU_pretraining.py``,
``finetuning.py``). The model uses no skeleton graph: a frame is the flat vector of its joints'
coordinates.

**Input.** Every module takes skeletons ``[N, C, T, V]`` (batch, channels, frames, joints),
``[N, C, T, V, M]`` with persons, or the official frame layout ``[N, T, V * C]`` (joint-major:
``index = v * C + c``, as the official ``[B, T, J, D]`` reshaped). With persons, the official
NTU code keeps one: the most active, ``argmax_m sum |x[n, :, :, :, m]|`` (:func:`main_person`).
``T`` may be anything up to ``max_frames``, the length of the learnt positional table (official
``POSITIONAL_UPPER_BOUND``: 1000 Penn Action, 2048 NW-UCLA, 64 NTU, whose feeder resamples
every clip to 64 frames). As the official code, no padding mask: zero-padded frames are tokens.

**Stage 1, masked pretraining** (:class:`CascadeFormerPretrainer`, official ``BaseT1``): a
frame embedding ``Linear(V * C, d)`` (``joint_embedding``) plus a learnt positional table
``[1, max_frames, d]`` (``trunc_normal(std=0.02)``; the Penn Action 1.0 script leaves it at
zero), the temporal transformer T1 (:class:`FrameEncoder`: post-norm layers with ReLU,
feed-forward 2048, dropout 0.1, as ``nn.TransformerEncoderLayer``'s defaults) and a linear
reconstruction head ``Linear(d, V * C)``. Before the frame embedding the variants insert:

* ``embedding="linear"``: nothing (CascadeFormer 1.0);
* ``"conv"``: per frame, ``Conv1d(C, C, 3, padding 1) -> ReLU -> Conv1d(C, C, 1)`` along the
  joints, the joints as the sequence (1.1, ``joint_conv``);
* ``"spatial_transformer"``: per frame, ``Linear(C, d)``, one encoder layer over the ``V`` joint
  tokens and ``Linear(d, C)`` (1.2, the Penn Action / NW-UCLA form; the NTU 1.2 script splits
  ``d`` over the joints instead, which is not reproduced).

Masking (official ``mask_random_global_joints``): per sample, ``max(1, int(ratio * T * V))``
joint slots (frame, joint), drawn uniformly without replacement over all ``T * V``, have every
coordinate set to 0; ``ratio`` 0.3. The loss is the squared error summed over the masked
slots' coordinates, divided by their number (:func:`masked_reconstruction_loss`).

**Stage 2, cascading fine-tuning** (:class:`CascadeFormer`): ``x1 = T1(x)`` (the pretrained
stage 1 without its reconstruction head), ``x2 = T2(x1)`` (a second encoder of T1's
configuration), a cross-attention with queries ``x1`` and keys/values ``x2``, mean pooling over
the frames and a classification head:

* Penn Action, NW-UCLA: cross-attention ``LayerNorm(x1 + Dropout(MHA(x1, x2, x2)))`` (dropout
  0.1, none on the attention weights), T2 dropout 0.1, head ``Linear(d, classes)``;
* NTU (``CrossAttentionWithFFN``): ``y = LayerNorm(x1 + Dropout(MHA(x1, x2, x2)))``, then
  ``LayerNorm(y + Dropout(FFN(y)))`` with ``FFN = Linear(d, d) -> ReLU -> Dropout ->
  Linear(d, d)``, every dropout (attention weights included) 0.2; T2 dropout 0.2; head
  ``LayerNorm -> Dropout(0.3) -> Linear(d, d) -> ReLU -> Dropout(0.3) -> Linear(d, classes)``.

The official ``main`` scripts fine-tune T1 too (``freezeT1 = False``); ``freeze_stage1=True``
gives their frozen option (T1 without gradients, kept in eval mode).

**Parameter counts** (``count_parameters`` of the fine-tuning model, as built by the presets,
all from CascadeFormer 1.0): T1 (frame embedding, positional table, encoder; *not* the
reconstruction head, unused after pretraining) + T2 + cross-attention + head, all trainable:
Penn Action 11,051,023 (13 joints, 2-D, d 256, 8 heads, 4 layers, table 1000, 15 classes),
NW-UCLA 11,326,730 (20 joints, 3-D, table 2048, 10 classes), NTU-60 cross-view 77,601,340
(25 joints, 3-D, d 512, 8 heads, 12 layers, table 64, 60 classes). Checked by building the
official modules. The pretrainer adds the reconstruction head (6,682 / 15,420 / 38,475).

**Official checkpoints.** :func:`load_official_state_dict` loads the state dicts the official
scripts save in ``action_checkpoints/``: ``*_pretrained.pt`` (``BaseT1`` with its
reconstruction head) into a :class:`CascadeFormerPretrainer`, and the fine-tuned
``*_finetuned_{T1,T2,cross_attn,head}.pt`` into a :class:`CascadeFormer` built with the
checkpoint's configuration (the 1.1 / 1.2 Penn Action scripts use a 2048-frame table)::

    import torch
    from skelops.models import create
    from skelops.models.cascadeformer import load_official_state_dict

    def official(name):
        return torch.load(f"action_checkpoints/Penn_{name}.pt", map_location="cpu")

    model = create("cascadeformer", "penn_action").eval()
    load_official_state_dict(
        model,
        t1=official("finetuned_T1"),
        t2=official("finetuned_T2"),
        cross_attn=official("finetuned_cross_attn"),
        head=official("finetuned_head"),
    )
    pretrainer = create("cascadeformer", "penn_action", stage="pretrain")
    load_official_state_dict(pretrainer, t1=official("pretrained"))

Attention runs through ``torch.nn.functional.scaled_dot_product_attention``; the encoder layer
and the multi-head attention keep ``nn.TransformerEncoderLayer``'s and
``nn.MultiheadAttention``'s parameter names and shapes (``self_attn.in_proj_weight``,
``linear1``, ``norm1``, ...), so their state dicts load into each other. Unlike
``nn.TransformerEncoder``, which deep-copies one layer, the layers start from independent
initialisations.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops._common import check_positive_int
from .registry import Preset, register_model

__all__ = [
    "CascadeFormer",
    "CascadeFormerPretrainer",
    "CrossAttention",
    "FrameEncoder",
    "MultiheadAttention",
    "TransformerEncoderLayer",
    "build_cascadeformer",
    "load_official_state_dict",
    "main_person",
    "masked_reconstruction_loss",
]

Embedding = Literal["linear", "conv", "spatial_transformer"]
_EMBEDDINGS = ("linear", "conv", "spatial_transformer")
_POSITION_STD = 0.02  # official trunc_normal_(std=0.02) of the positional table
MASK_RATIO = 0.3  # official mask_ratio of every main script


def _probability(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"{name} must be a float in [0, 1), got {value!r}")
    return float(value)


def _choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return str(value)


def main_person(x: Tensor) -> Tensor:
    """The most active person of ``x [N, C, T, V, M]``: ``[N, C, T, V]`` taken at
    ``argmax_m sum_{c, t, v} |x[n, c, t, v, m]|`` (the official NTU scripts' choice)."""
    if x.dim() != 5:
        raise ValueError(f"x must be [N, C, T, V, M], got shape {list(x.shape)}")
    index = x.abs().sum(dim=(1, 2, 3)).argmax(dim=-1)  # [N]
    index = index.view(-1, 1, 1, 1, 1).expand(*x.shape[:4], 1)
    return x.gather(4, index).squeeze(4)


def masked_reconstruction_loss(reconstruction: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean squared error over the masked joints only.

    Args:
        reconstruction, target: frames ``[N, T, V * C]`` (joint-major).
        mask: ``[N, T, V]`` booleans, True where a joint slot was masked.

    Returns the squared error summed over every coordinate of the masked slots, divided by the
    number of those coordinates (the official ``masked_loss.sum() / num_masked``)."""
    if reconstruction.shape != target.shape or reconstruction.dim() != 3:
        raise ValueError(
            "reconstruction and target must both be [N, T, V*C], got shapes "
            f"{list(reconstruction.shape)} and {list(target.shape)}"
        )
    n, t, features = target.shape
    if mask.dim() != 3 or mask.shape[:2] != (n, t) or not mask.shape[2] or features % mask.shape[2]:
        raise ValueError(
            f"mask must be [N, T, V] = [{n}, {t}, V] with V dividing {features}, "
            f"got shape {list(mask.shape)}"
        )
    channels = features // mask.shape[2]
    weights = mask.to(target.dtype).repeat_interleave(channels, dim=-1)
    squared = (reconstruction - target).square() * weights
    return squared.sum() / weights.sum().clamp_min(1.0)


class MultiheadAttention(nn.Module):
    """Multi-head attention on ``[N, L, d]`` sequences through
    ``torch.nn.functional.scaled_dot_product_attention``, with the parameters of
    ``nn.MultiheadAttention(d_model, num_heads, dropout, batch_first=True)`` (``in_proj_weight
    [3d, d]``, ``in_proj_bias``, ``out_proj``) and its initialisation."""

    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model must be a multiple of num_heads={num_heads}, got {d_model}")
        self.num_heads = num_heads
        self.dropout = _probability("dropout", dropout)
        self.in_proj_weight = nn.Parameter(torch.empty(3 * d_model, d_model))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * d_model))
        self.out_proj = nn.Linear(d_model, d_model)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def _heads(self, x: Tensor) -> Tensor:
        n, length, d = x.shape
        return x.view(n, length, self.num_heads, d // self.num_heads).transpose(1, 2)

    def forward(self, query: Tensor, key_value: Tensor | None = None) -> Tensor:
        """``query [N, Lq, d]``, ``key_value [N, Lk, d]`` (``None``: self-attention);
        returns ``[N, Lq, d]``."""
        d = query.shape[-1]
        if key_value is None:
            q, k, v = F.linear(query, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
        else:
            q = F.linear(query, self.in_proj_weight[:d], self.in_proj_bias[:d])
            k, v = F.linear(key_value, self.in_proj_weight[d:], self.in_proj_bias[d:]).chunk(
                2, dim=-1
            )
        out = F.scaled_dot_product_attention(
            self._heads(q),
            self._heads(k),
            self._heads(v),
            dropout_p=self.dropout if self.training else 0.0,
        )
        return self.out_proj(out.transpose(1, 2).flatten(2))


class TransformerEncoderLayer(nn.Module):
    """Post-norm encoder layer on ``[N, L, d]``: ``x = norm1(x + Dropout(SelfAttention(x)))``,
    then ``norm2(x + Dropout(linear2(Dropout(ReLU(linear1(x))))))``; the layout and defaults of
    ``nn.TransformerEncoderLayer(d_model, num_heads, batch_first=True)`` (feed-forward 2048,
    dropout 0.1 everywhere, attention weights included)."""

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        feedforward_dim: int = 2048,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.self_attn = MultiheadAttention(d_model, num_heads, dropout)
        self.linear1 = nn.Linear(d_model, feedforward_dim)
        self.linear2 = nn.Linear(feedforward_dim, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = self.norm1(x + self.dropout1(self.self_attn(x)))
        feedforward = self.linear2(self.dropout(F.relu(self.linear1(x))))
        return self.norm2(x + self.dropout2(feedforward))


class _TransformerEncoder(nn.Module):
    def __init__(
        self, d_model: int, num_heads: int, num_layers: int, feedforward_dim: int, dropout: float
    ):
        super().__init__()
        self.layers = nn.ModuleList(
            TransformerEncoderLayer(d_model, num_heads, feedforward_dim, dropout)
            for _ in range(num_layers)
        )

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class _JointConv(nn.Module):
    """CascadeFormer 1.1: 1-D convolutions along the joints of every frame, coordinates as
    channels."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.joint_conv = nn.Sequential(
            nn.Conv1d(in_channels, in_channels, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv1d(in_channels, in_channels, kernel_size=1),
        )

    def forward(self, joints: Tensor) -> Tensor:  # [N, T, V, C]
        n, t, v, c = joints.shape
        y = self.joint_conv(joints.reshape(n * t, v, c).transpose(1, 2))
        return y.transpose(1, 2).reshape(n, t, v, c)


class _SpatialTransformer(nn.Module):
    """CascadeFormer 1.2: one encoder layer over the joint tokens of every frame."""

    def __init__(
        self, in_channels: int, d_model: int, num_heads: int, feedforward_dim: int, dropout: float
    ):
        super().__init__()
        self.joint_embedding = nn.Linear(in_channels, d_model)
        self.encoder = _TransformerEncoder(d_model, num_heads, 1, feedforward_dim, dropout)
        self.output_proj = nn.Linear(d_model, in_channels)

    def forward(self, joints: Tensor) -> Tensor:  # [N, T, V, C]
        n, t, v, c = joints.shape
        y = self.encoder(self.joint_embedding(joints.reshape(n * t, v, c)))
        return self.output_proj(y).view(n, t, v, c)


class FrameEncoder(nn.Module):
    """T1, the temporal transformer of stage 1 without its reconstruction head: one token per
    frame (``[N, T, V * C] -> [N, T, d_model]``). Arguments: see :class:`CascadeFormer`."""

    def __init__(
        self,
        num_joints: int,
        in_channels: int,
        max_frames: int,
        d_model: int = 256,
        num_heads: int = 8,
        num_layers: int = 4,
        embedding: Embedding = "linear",
        feedforward_dim: int = 2048,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.num_joints = check_positive_int("num_joints", num_joints)
        self.in_channels = check_positive_int("in_channels", in_channels)
        self.max_frames = check_positive_int("max_frames", max_frames)
        d_model = check_positive_int("d_model", d_model)
        num_heads = check_positive_int("num_heads", num_heads)
        check_positive_int("num_layers", num_layers)
        check_positive_int("feedforward_dim", feedforward_dim)
        _probability("dropout", dropout)
        if d_model % num_heads:
            raise ValueError(f"d_model must be a multiple of num_heads={num_heads}, got {d_model}")
        self.embedding = _choice("embedding", embedding, _EMBEDDINGS)
        self.config = {
            "num_joints": num_joints,
            "in_channels": in_channels,
            "max_frames": max_frames,
            "d_model": d_model,
            "num_heads": num_heads,
            "num_layers": num_layers,
            "embedding": embedding,
            "feedforward_dim": feedforward_dim,
            "dropout": dropout,
        }
        self.joint_mixer: nn.Module | None = None
        if embedding == "conv":
            self.joint_mixer = _JointConv(in_channels)
        elif embedding == "spatial_transformer":
            self.joint_mixer = _SpatialTransformer(
                in_channels, d_model, num_heads, feedforward_dim, dropout
            )
        self.joint_embedding = nn.Linear(num_joints * in_channels, d_model)
        self.pos_embedding = nn.Parameter(torch.zeros(1, max_frames, d_model))
        nn.init.trunc_normal_(self.pos_embedding, std=_POSITION_STD)
        self.transformer_encoder = _TransformerEncoder(
            d_model, num_heads, num_layers, feedforward_dim, dropout
        )

    def _expected(self) -> str:
        v, c = self.num_joints, self.in_channels
        return (
            f"[N, {c}, T, {v}], [N, {c}, T, {v}, M] or the official [N, T, {v * c}] "
            f"(V*C, joint-major), with 1 <= T <= max_frames={self.max_frames}"
        )

    def check_input(self, x: Tensor) -> None:
        """Raise ``ValueError`` unless ``x`` is ``[N, C, T, V]``, ``[N, C, T, V, M]`` or
        ``[N, T, V * C]`` with this model's ``C``, ``V`` and ``1 <= T <= max_frames``."""
        v, c = self.num_joints, self.in_channels
        shape = list(x.shape)
        if x.dim() == 3:
            ok, frames = shape[2] == v * c, shape[1]
        elif x.dim() in (4, 5):
            ok, frames = shape[1] == c and shape[3] == v and shape[4:] != [0], shape[2]
        else:
            ok, frames = False, 0
        if not ok or not 1 <= frames <= self.max_frames:
            raise ValueError(f"x must be {self._expected()}; got shape {shape}")

    def to_frames(self, x: Tensor) -> Tensor:
        """Any accepted input (see :meth:`check_input`) as official frames ``[N, T, V * C]``,
        joint-major; ``[N, C, T, V, M]`` keeps the :func:`main_person`."""
        self.check_input(x)
        if x.dim() == 5:
            x = main_person(x)
        if x.dim() == 4:
            n, c, t, v = x.shape
            x = x.permute(0, 2, 3, 1).reshape(n, t, v * c)
        return x

    def forward(self, x: Tensor) -> Tensor:
        """``x``: any accepted input (see :meth:`check_input`); returns ``[N, T, d_model]``."""
        frames = self.to_frames(x)
        n, t, _ = frames.shape
        if self.joint_mixer is not None:
            joints = frames.reshape(n, t, self.num_joints, self.in_channels)
            frames = self.joint_mixer(joints).reshape(n, t, -1)
        tokens = self.joint_embedding(frames) + self.pos_embedding[:, :t]
        return self.transformer_encoder(tokens)


class CascadeFormerPretrainer(nn.Module):
    """Stage 1 of CascadeFormer: T1 (:class:`FrameEncoder`, attribute ``t1``) and a linear
    reconstruction head, trained to reconstruct masked joints (:meth:`pretraining_loss`).

    Takes the stage-1 arguments of :class:`CascadeFormer` (``num_joints``, ``in_channels``,
    ``max_frames``, ``d_model``, ``num_heads``, ``num_layers``, ``embedding``,
    ``feedforward_dim``, ``dropout``). Inputs: ``[N, C, T, V]``, ``[N, C, T, V, M]`` (the
    most active person kept) or the official ``[N, T, V * C]``.
    """

    def __init__(
        self,
        num_joints: int,
        in_channels: int,
        max_frames: int,
        d_model: int = 256,
        num_heads: int = 8,
        num_layers: int = 4,
        embedding: Embedding = "linear",
        feedforward_dim: int = 2048,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.t1 = FrameEncoder(
            num_joints,
            in_channels,
            max_frames,
            d_model,
            num_heads,
            num_layers,
            embedding,
            feedforward_dim,
            dropout,
        )
        self.reconstruction_head = nn.Linear(d_model, num_joints * in_channels)

    @property
    def config(self) -> dict[str, object]:
        """The constructor arguments."""
        return dict(self.t1.config)

    def forward(self, x: Tensor) -> Tensor:
        """Reconstructed frames ``[N, T, V * C]`` (joint-major) of ``x`` (any accepted input)."""
        return self.reconstruction_head(self.t1(x))

    def mask_joints(
        self, x: Tensor, ratio: float = MASK_RATIO, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Zero ``max(1, int(ratio * T * V))`` joint slots per sample, drawn uniformly without
        replacement over the ``T * V`` (frame, joint) slots (every person of a slot with
        ``[N, C, T, V, M]``).

        Args:
            x: ``[N, C, T, V]``, ``[N, C, T, V, M]`` or ``[N, T, V * C]``.
            ratio: fraction of the slots, in ``(0, 1]``.
            generator: random generator on ``x``'s device (``None``: the global one).

        Returns the masked copy of ``x`` (same layout) and the mask ``[N, T, V]``, True where
        masked."""
        self.t1.check_input(x)
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio <= 1:
            raise ValueError(f"ratio must be a float in (0, 1], got {ratio!r}")
        v, c = self.t1.num_joints, self.t1.in_channels
        n, t = x.shape[0], (x.shape[1] if x.dim() == 3 else x.shape[2])
        count = max(1, int(ratio * t * v))
        scores = torch.rand(n, t * v, generator=generator, device=x.device)
        chosen = scores.argsort(dim=1)[:, :count]
        mask = torch.zeros(n, t * v, dtype=torch.bool, device=x.device)
        mask = mask.scatter(1, chosen, True).view(n, t, v)
        if x.dim() == 3:
            spread = mask.repeat_interleave(c, dim=-1)
        elif x.dim() == 4:
            spread = mask[:, None]
        else:
            spread = mask[:, None, :, :, None]
        return x.masked_fill(spread, 0.0), mask

    def pretraining_loss(
        self,
        x: Tensor,
        ratio: float = MASK_RATIO,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """The stage-1 loss of ``x`` (any accepted input): mask joints (:meth:`mask_joints`,
        after keeping the main person), reconstruct, and take the mean squared error over the
        masked joints (:func:`masked_reconstruction_loss`)."""
        frames = self.t1.to_frames(x)
        masked, mask = self.mask_joints(frames, ratio, generator)
        return masked_reconstruction_loss(self(masked), frames, mask)


class CrossAttention(nn.Module):
    """Cross-attention of stage 2 on ``[N, T, d]``: ``y = norm1(q + Dropout(MHA(q, kv, kv)))``
    and, with ``feedforward=True`` (the NTU form), ``norm2(y + Dropout(FFN(y)))``,
    ``FFN = Linear(d, d) -> ReLU -> Dropout -> Linear(d, d)``. ``attention_dropout`` drops
    attention weights (official: 0 without the FFN, ``dropout`` with it)."""

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        dropout: float = 0.1,
        feedforward: bool = False,
        attention_dropout: float = 0.0,
    ):
        super().__init__()
        self.cross_attention = MultiheadAttention(d_model, num_heads, attention_dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.ffn: nn.Sequential | None = None
        if feedforward:
            self.ffn = nn.Sequential(
                nn.Linear(d_model, d_model),
                nn.ReLU(),
                nn.Dropout(dropout),
                nn.Linear(d_model, d_model),
            )
            self.norm2 = nn.LayerNorm(d_model)
            self.dropout2 = nn.Dropout(dropout)

    def forward(self, query: Tensor, key_value: Tensor) -> Tensor:
        """``query [N, Tq, d]`` (T1's tokens), ``key_value [N, Tk, d]`` (T2's); returns
        ``[N, Tq, d]``."""
        y = self.norm1(query + self.dropout1(self.cross_attention(query, key_value)))
        if self.ffn is None:
            return y
        return self.norm2(y + self.dropout2(self.ffn(y)))


_STAGE1_KEYS = (
    "num_joints",
    "in_channels",
    "max_frames",
    "d_model",
    "num_heads",
    "num_layers",
    "embedding",
    "feedforward_dim",
    "dropout",
)


class CascadeFormer(nn.Module):
    """CascadeFormer, the fine-tuning model (stage 2 over the pretrained stage 1); see the
    module docstring for the architecture and what the parameter counts include.

    Args:
        num_classes: classifier outputs.
        num_joints: ``V``.
        in_channels: ``C``, coordinates per joint (2 Penn Action, 3 NW-UCLA and NTU).
        max_frames: length of the positional table, the most frames an input may have.
        d_model, num_heads, num_layers: width, heads and depth of T1, and of T2.
        embedding: ``"linear"`` (1.0), ``"conv"`` (1.1) or ``"spatial_transformer"`` (1.2).
        feedforward_dim: feed-forward width of every encoder layer (official 2048).
        dropout: T1's dropout (official 0.1).
        t2_dropout: T2's dropout (0.1 Penn Action and NW-UCLA, 0.2 NTU).
        cross_attention: ``"plain"`` (Penn Action, NW-UCLA) or ``"ffn"`` (NTU; attention
            weights dropped too).
        cross_attention_dropout: its dropout (0.1 plain, 0.2 NTU).
        head: ``"linear"`` (Penn Action, NW-UCLA) or ``"mlp"`` (NTU: LayerNorm, Dropout,
            Linear, ReLU, Dropout, Linear).
        head_dropout: dropout of the ``"mlp"`` head (official 0.3).
        freeze_stage1: T1 gets no gradients and stays in eval mode (official ``freezeT1``;
            the published runs fine-tune it).
        stage1: a pretrained :class:`CascadeFormerPretrainer`, whose T1 weights are copied;
            its configuration must equal the stage-1 arguments here.

    ``forward(x)``: ``x [N, C, T, V]``, ``[N, C, T, V, M]`` (the most active person kept) or
    the official ``[N, T, V * C]``; returns logits ``[N, num_classes]``.
    """

    def __init__(
        self,
        num_classes: int,
        num_joints: int,
        in_channels: int,
        max_frames: int,
        d_model: int = 256,
        num_heads: int = 8,
        num_layers: int = 4,
        embedding: Embedding = "linear",
        feedforward_dim: int = 2048,
        dropout: float = 0.1,
        t2_dropout: float = 0.1,
        cross_attention: Literal["plain", "ffn"] = "plain",
        cross_attention_dropout: float = 0.1,
        head: Literal["linear", "mlp"] = "linear",
        head_dropout: float = 0.3,
        freeze_stage1: bool = False,
        stage1: CascadeFormerPretrainer | None = None,
    ):
        super().__init__()
        num_classes = check_positive_int("num_classes", num_classes)
        _choice("cross_attention", cross_attention, ("plain", "ffn"))
        _choice("head", head, ("linear", "mlp"))
        t2_dropout = _probability("t2_dropout", t2_dropout)
        cross_attention_dropout = _probability("cross_attention_dropout", cross_attention_dropout)
        head_dropout = _probability("head_dropout", head_dropout)
        self.t1 = FrameEncoder(
            num_joints,
            in_channels,
            max_frames,
            d_model,
            num_heads,
            num_layers,
            embedding,
            feedforward_dim,
            dropout,
        )
        self.t2 = _TransformerEncoder(d_model, num_heads, num_layers, feedforward_dim, t2_dropout)
        ffn = cross_attention == "ffn"
        self.cross_attn = CrossAttention(
            d_model,
            num_heads,
            cross_attention_dropout,
            feedforward=ffn,
            attention_dropout=cross_attention_dropout if ffn else 0.0,
        )
        if head == "linear":
            self.head: nn.Module = nn.Linear(d_model, num_classes)
        else:
            self.head = nn.Sequential(
                nn.LayerNorm(d_model),
                nn.Dropout(head_dropout),
                nn.Linear(d_model, d_model),
                nn.ReLU(),
                nn.Dropout(head_dropout),
                nn.Linear(d_model, num_classes),
            )
        if stage1 is not None:
            self.load_stage1(stage1)
        self.freeze_stage1 = bool(freeze_stage1)
        if self.freeze_stage1:
            self.t1.requires_grad_(False)
            self.t1.eval()

    @classmethod
    def from_pretrained(
        cls, stage1: CascadeFormerPretrainer, num_classes: int, **kwargs: object
    ) -> CascadeFormer:
        """A fine-tuning model with ``stage1``'s configuration and a copy of its T1 weights;
        ``kwargs``: the stage-2 arguments (``t2_dropout``, ``cross_attention``, ``head``,
        ...)."""
        clash = sorted(set(kwargs) & {*_STAGE1_KEYS, "stage1"})
        if clash:
            raise ValueError(f"kwargs must be stage-2 arguments only, got stage-1 ones {clash}")
        return cls(num_classes, **stage1.config, **kwargs, stage1=stage1)  # type: ignore[arg-type]

    def load_stage1(self, stage1: CascadeFormerPretrainer) -> None:
        """Copy the T1 weights of a pretrained ``stage1`` (same configuration) into this
        model."""
        if not isinstance(stage1, CascadeFormerPretrainer):
            raise TypeError(
                f"stage1 must be a CascadeFormerPretrainer, got {type(stage1).__name__}"
            )
        mismatch = {
            key: (value, stage1.config[key])
            for key, value in self.t1.config.items()
            if stage1.config[key] != value
        }
        if mismatch:
            details = ", ".join(
                f"{k}={here!r} here, {there!r} in stage1" for k, (here, there) in mismatch.items()
            )
            raise ValueError(f"stage1 must have this model's stage-1 configuration: {details}")
        self.t1.load_state_dict(stage1.t1.state_dict())

    def train(self, mode: bool = True) -> CascadeFormer:
        """As ``nn.Module.train``; a frozen T1 stays in eval mode, as the official
        ``t1.train(mode=t1_trainable)``."""
        super().train(mode)
        if self.freeze_stage1:
            self.t1.eval()
        return self

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``[N, num_classes]`` of ``x [N, C, T, V]``, ``[N, C, T, V, M]`` or
        ``[N, T, V * C]``."""
        x1 = self.t1(x)
        fused = self.cross_attn(x1, self.t2(x1))
        return self.head(fused.mean(dim=1))


# Official BaseT1 prefixes of the joint mixer: 1.1's ``joint_conv`` sits at the top level,
# 1.2's modules inside ``spatial_transformer``.
_OFFICIAL_MIXER_PREFIX = {"conv": "", "spatial_transformer": "spatial_transformer."}
_T1_HINT = (
    "build the model with the checkpoint's configuration (embedding 'linear' for 1.0, 'conv' "
    "for 1.1, 'spatial_transformer' for 1.2; num_layers, d_model, max_frames)"
)


def _official_t1_names(t1: FrameEncoder, penn_v10: bool) -> dict[str, str]:
    """Official ``BaseT1`` key -> key in ``t1``, reconstruction head excluded. ``penn_v10``:
    the Penn Action 1.0 script names the frame embedding ``embedding``."""
    names = {}
    for key in t1.state_dict():
        official = key
        if key.startswith("joint_mixer."):
            official = _OFFICIAL_MIXER_PREFIX[t1.embedding] + key.removeprefix("joint_mixer.")
        elif penn_v10 and key.startswith("joint_embedding."):
            official = key.removeprefix("joint_")
        names[official] = key
    return names


def _renamed(
    argument: str,
    state_dict: Mapping[str, Tensor],
    names: Mapping[str, str],
    ours: Mapping[str, Tensor],
    hint: str,
    ignored: frozenset[str] = frozenset(),
) -> dict[str, Tensor]:
    """``state_dict`` (official names) with this model's names, after checking that its keys
    are exactly ``names``' (``ignored`` ones dropped) and its shapes ``ours``'."""
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"{argument} must be a state dict, got {type(state_dict).__name__}")
    missing = sorted(set(names) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(names) - ignored)
    if missing or unexpected:
        raise ValueError(
            f"{argument} must hold exactly this model's official keys; missing {missing}, "
            f"unexpected {unexpected}: {hint}"
        )
    converted = {}
    for official, key in names.items():
        value = state_dict[official]
        if tuple(value.shape) != tuple(ours[key].shape):
            raise ValueError(
                f"{argument}[{official!r}] must have shape {list(ours[key].shape)} (this "
                f"model's {key}), got {list(value.shape)}: {hint}"
            )
        converted[key] = value
    return converted


def load_official_state_dict(
    model: CascadeFormer | CascadeFormerPretrainer,
    t1: Mapping[str, Tensor],
    t2: Mapping[str, Tensor] | None = None,
    cross_attn: Mapping[str, Tensor] | None = None,
    head: Mapping[str, Tensor] | None = None,
) -> CascadeFormer | CascadeFormerPretrainer:
    """Load the official checkpoints (YP4AIresearch/CascadeFormer: one state dict per module,
    saved with ``torch.save``) into ``model``, strictly; returns ``model``.

    The official ``main`` scripts save, in ``action_checkpoints/``:

    * after pretraining, ``{Penn,NUCLA,NTU_<split>/NTU}_pretrained.pt``: ``BaseT1`` (frame
      embedding, positional table, encoder and the reconstruction head);
    * after fine-tuning, ``*_finetuned_T1.pt`` (the same ``BaseT1``, fine-tuned; the Penn
      Action and NTU scripts write it only when T1 was trained, otherwise T1 is the
      pretrained file), ``*_finetuned_T2.pt`` (``BaseT2``), ``*_finetuned_cross_attn.pt``
      (``CrossAttention``, or ``CrossAttentionWithFFN`` for NTU) and ``*_finetuned_head.pt``
      (``GaitRecognitionHead``, or ``GaitRecognitionHeadMLP`` for NTU).

    Args:
        model: a :class:`CascadeFormer` (then ``t1``, ``t2``, ``cross_attn`` and ``head`` are
            all required) or a :class:`CascadeFormerPretrainer` (then only ``t1``, whose
            reconstruction head it loads), built with the checkpoint's configuration.
        t1: ``BaseT1`` state dict. Its ``reconstruction_head`` is dropped for a
            :class:`CascadeFormer`. The frame embedding may be named ``embedding`` (Penn
            Action 1.0) or ``joint_embedding`` (the others); 1.1's ``joint_conv`` and 1.2's
            ``spatial_transformer`` (the Penn Action / NW-UCLA form) map onto
            ``t1.joint_mixer``.
        t2: ``BaseT2`` state dict (``encoder.layers.*`` -> ``t2.layers.*``).
        cross_attn: ``CrossAttention`` (``cross_attention``, ``norm`` -> ``norm1``) with
            ``cross_attention="plain"``, ``CrossAttentionWithFFN`` (``cross_attention``,
            ``norm1``, ``ffn``, ``norm2``) with ``"ffn"``.
        head: ``GaitRecognitionHead`` (``fc`` -> ``head``) with ``head="linear"``,
            ``GaitRecognitionHeadMLP`` (``net.{0,2,5}`` -> ``head.{0,2,5}``) with ``"mlp"``.

    The official scripts use neither ``DataParallel`` nor ``torch.compile``: the keys carry no
    ``module.`` or ``_orig_mod.`` prefix, and none is accepted.

    Raises TypeError for a ``model`` of another class or an argument that is not a mapping;
    ValueError naming the argument and the keys for a missing or extra state dict, missing or
    unexpected keys, or a shape other than the model's.
    """
    if not isinstance(model, (CascadeFormer, CascadeFormerPretrainer)):
        raise TypeError(
            f"model must be a CascadeFormer or a CascadeFormerPretrainer, got "
            f"{type(model).__name__}"
        )
    ours = model.state_dict()
    penn_v10 = isinstance(t1, Mapping) and ("embedding.weight" in t1 or "embedding.bias" in t1)
    t1_names = {
        official: f"t1.{key}" for official, key in _official_t1_names(model.t1, penn_v10).items()
    }
    head_keys = frozenset(f"reconstruction_head.{k}" for k in ("weight", "bias"))
    stage2 = {"t2": t2, "cross_attn": cross_attn, "head": head}
    if isinstance(model, CascadeFormerPretrainer):
        extra = [name for name, value in stage2.items() if value is not None]
        if extra:
            raise ValueError(
                f"{', '.join(extra)} must be None for a CascadeFormerPretrainer (stage 1 has "
                "only T1 and its reconstruction head), got state dicts"
            )
        names = {**t1_names, **{key: key for key in head_keys}}
        model.load_state_dict(_renamed("t1", t1, names, ours, _T1_HINT), strict=True)
        return model
    missing = [name for name, value in stage2.items() if value is None]
    if missing:
        raise ValueError(
            f"{', '.join(missing)} must be given for a CascadeFormer (the official "
            "*_finetuned_{T2,cross_attn,head}.pt state dicts), got None"
        )
    plain = model.cross_attn.ffn is None
    converted = _renamed("t1", t1, t1_names, ours, _T1_HINT, ignored=head_keys)
    converted |= _renamed(
        "t2",
        t2,  # type: ignore[arg-type]
        {f"encoder.{key}": f"t2.{key}" for key in model.t2.state_dict()},
        ours,
        "build the model with the checkpoint's num_layers and d_model",
    )
    converted |= _renamed(
        "cross_attn",
        cross_attn,  # type: ignore[arg-type]
        {
            (key.replace("norm1.", "norm.", 1) if plain else key): f"cross_attn.{key}"
            for key in model.cross_attn.state_dict()
        },
        ours,
        "cross_attention='plain' loads the official CrossAttention (Penn Action, NW-UCLA), "
        "'ffn' CrossAttentionWithFFN (NTU)",
    )
    linear = isinstance(model.head, nn.Linear)
    converted |= _renamed(
        "head",
        head,  # type: ignore[arg-type]
        {f"{'fc' if linear else 'net'}.{key}": f"head.{key}" for key in model.head.state_dict()},
        ours,
        "head='linear' loads the official GaitRecognitionHead (Penn Action, NW-UCLA), 'mlp' "
        "GaitRecognitionHeadMLP (NTU), with the checkpoint's num_classes",
    )
    model.load_state_dict(converted, strict=True)
    return model


_NOT_STAGE1 = {
    "num_classes",
    "t2_dropout",
    "cross_attention",
    "cross_attention_dropout",
    "head",
    "head_dropout",
    "freeze_stage1",
    "stage1",
}


def _preset(num_classes: int, joints: int, channels: int, frames: int, **extra: object) -> dict:
    return {
        "num_classes": num_classes,
        "num_joints": joints,
        "in_channels": channels,
        "max_frames": frames,
        **extra,
    }


_NTU = {
    "d_model": 512,
    "num_layers": 12,
    "t2_dropout": 0.2,
    "cross_attention": "ffn",
    "cross_attention_dropout": 0.2,
    "head": "mlp",
    "head_dropout": 0.3,
}


@register_model(
    "cascadeformer",
    presets={
        "penn_action": Preset(
            kwargs=_preset(15, 13, 2, 1000),
            description="Penn Action, CascadeFormer 1.0: x [N, 2, T, 13] or [N, T, 26] "
            "(T <= 1000), d 256, 8 heads, 4 layers, plain cross-attention, linear head",
            parameter_count=11_051_023,
            reported_accuracy="94.66% (Peng and Yilmaz, arXiv 2509.00692, Table 1, Penn "
            "Action, top-1, CascadeFormer 1.0)",
        ),
        "nwucla": Preset(
            kwargs=_preset(10, 20, 3, 2048),
            description="Northwestern-UCLA, CascadeFormer 1.0: x [N, 3, T, 20] (T <= 2048), "
            "d 256, 8 heads, 4 layers, plain cross-attention, linear head",
            parameter_count=11_326_730,
            reported_accuracy="89.66% (Peng and Yilmaz, arXiv 2509.00692, Table 1, N-UCLA, "
            "top-1, CascadeFormer 1.0; 1.1 reaches 91.16%)",
        ),
        "ntu60": Preset(
            kwargs=_preset(60, 25, 3, 64, **_NTU),
            description="NTU RGB+D 60 cross-view, CascadeFormer 1.0: x [N, 3, 64, 25, 2] (most "
            "active person kept), d 512, 8 heads, 12 layers, cross-attention with FFN, "
            "LayerNorm + two-linear head",
            parameter_count=77_601_340,
            reported_accuracy="88.17% (Peng and Yilmaz, arXiv 2509.00692, Table 1, NTU RGB+D "
            "60 cross-view, top-1, CascadeFormer 1.0; cross-subject 81.01% with d 768, 16 "
            "heads, 16 layers)",
        ),
    },
    default_preset="ntu60",
    summary="CascadeFormer: masked-joint pretraining of a frame-token transformer, then a "
    "cascaded second transformer with cross-attention for classification",
)
def build_cascadeformer(
    stage: Literal["finetune", "pretrain"] = "finetune", **kwargs: object
) -> nn.Module:
    """Build the fine-tuning :class:`CascadeFormer` (``stage="finetune"``) or the stage-1
    :class:`CascadeFormerPretrainer` (``"pretrain"``; the stage-2 arguments are then
    dropped) from keyword arguments."""
    if stage == "pretrain":
        return CascadeFormerPretrainer(
            **{k: v for k, v in kwargs.items() if k not in _NOT_STAGE1}  # type: ignore[arg-type]
        )
    if stage != "finetune":
        raise ValueError(f"stage must be 'finetune' or 'pretrain', got {stage!r}")
    return CascadeFormer(**kwargs)  # type: ignore[arg-type]
