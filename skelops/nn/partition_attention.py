"""SkateFormer's Skate-MSA branch as a layer: partitioned self-attention over channels-last
skeleton features, with the Skate-Type's relative-position bias."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..graphs import skate_type_partitions
from ..ops.partition_attention import partition_attention

__all__ = ["PartitionAttention"]

_BIAS_INIT_STD = 0.02  # SkateFormer (as Swin) draws the bias tables from trunc_normal(std=.02)


class PartitionAttention(nn.Module):
    """Multi-head self-attention within the partitions of one Skate-Type (SkateFormer, Do and
    Kim, ECCV 2024): one branch of its Skate-MSA.

    The input holds ``q, k, v`` side by side in the channels, ``(3, H, D)``-major as SkateFormer
    splits them; the tokens are the ``(frame, joint)`` pairs, and each attends to the tokens of
    its partition (:func:`skelops.graphs.skate_type_partitions`: ``W`` frames x ``J`` joints).
    Runs :func:`skelops.partition_attention`, which reads q, k and v as strided views of the
    input and writes the heads back channels-last: no permuted copies.

    The learnt bias ``relative_position_bias_table`` has SkateFormer's name and shape:
    ``[2W - 1, H]`` for types 1 and 3 (indexed by the frame offset of query and key in their
    window, shared over joint pairs: the paper's bias), ``[2W - 1, J, J, H]`` for types 2 and 4
    (frame offset and both joints' positions in their group).

    Args:
        skate_type: 1 (local frames x neighbouring joints), 2 (local x distant), 3 (global x
            neighbouring) or 4 (global x distant).
        partition_size: ``(W, J)``, frames and joints per partition; ``W`` must divide the
            input's ``T`` and ``J`` its ``V``.
        num_heads: ``H``.
        scale: score scale; ``None`` is ``1 / sqrt(D)`` (SkateFormer uses ``H ** -0.5``).
        attn_drop: dropout probability of the attention weights, in training mode only (the
            operator's counter-based mask, seeded from torch's generator: ``torch.manual_seed``
            reproduces it). The seed is drawn on the host, so ``torch.compile(fullgraph=True)``
            of a training step with ``attn_drop > 0`` fails there (without ``fullgraph`` the
            draw is a graph break); eval mode and ``attn_drop=0`` compile whole.
        bias: learn the relative-position bias table.
        backend: passed to :func:`skelops.partition_attention` (``"reference"`` for the PyTorch
            composition).

    Shapes:
        qkv ``[B, T, V, 3 * H * D]`` (channels-last, any strides with unit channel stride, such
        as a slice of a wider projection) -> ``[B, T, V, H * D]``.
    """

    def __init__(
        self,
        skate_type: int,
        partition_size: tuple[int, int],
        num_heads: int,
        *,
        scale: float | None = None,
        attn_drop: float = 0.0,
        bias: bool = True,
        backend: str = "auto",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if skate_type not in (1, 2, 3, 4):
            raise ValueError(f"skate_type must be 1, 2, 3 or 4, got {skate_type!r}")
        size = tuple(partition_size)
        if len(size) != 2 or not all(
            isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size
        ):
            raise ValueError(
                f"partition_size must be two positive ints (W frames, J joints), "
                f"got {partition_size!r}"
            )
        if isinstance(num_heads, bool) or not isinstance(num_heads, int) or num_heads < 1:
            raise ValueError(f"num_heads must be a positive int, got {num_heads!r}")
        if not 0.0 <= attn_drop < 1.0:
            raise ValueError(f"attn_drop must be in [0, 1), got {attn_drop!r}")
        self.skate_type = skate_type
        self.partition_size = size
        self.num_heads = num_heads
        self.scale = scale
        self.attn_drop = float(attn_drop)
        self.backend = backend
        window, group = size
        table_shape = (
            (2 * window - 1, num_heads)
            if skate_type in (1, 3)
            else (2 * window - 1, group, group, num_heads)
        )
        self.relative_position_bias_table = (
            nn.Parameter(torch.empty(table_shape, device=device, dtype=dtype)) if bias else None
        )
        # Index tensors per (T, V, device): built once, and the operator validates a GPU
        # partition only the first time it sees that tensor.
        self._partitions: dict[tuple[int, int, torch.device], tuple[Tensor, Tensor]] = {}
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Bias table from ``trunc_normal(std=0.02)`` truncated at +-2, as SkateFormer's."""
        if self.relative_position_bias_table is not None:
            nn.init.trunc_normal_(self.relative_position_bias_table, std=_BIAS_INIT_STD)

    def partitions(self, frames: int, joints: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """``(joint_partition [G, J], frame_partition [P, W])`` for ``T = frames``,
        ``V = joints``."""
        key = (frames, joints, device)
        if key not in self._partitions:
            self._partitions[key] = skate_type_partitions(
                self.skate_type, frames, joints, self.partition_size, device=device
            )
        return self._partitions[key]

    def forward(self, qkv: Tensor) -> Tensor:
        if qkv.dim() != 4 or qkv.shape[-1] % (3 * self.num_heads):
            raise ValueError(
                f"qkv must be [B, T, V, 3 * H * D] with H={self.num_heads}, "
                f"got shape {tuple(qkv.shape)}"
            )
        bsz, frames, joints, channels = qkv.shape
        head_dim = channels // (3 * self.num_heads)
        # [B, T, V, (3, H, D)] -> three [B, H, T, V, D] views
        q, k, v = qkv.view(bsz, frames, joints, 3, self.num_heads, head_dim).permute(
            3, 0, 4, 1, 2, 5
        )
        joint_partition, frame_partition = self.partitions(frames, joints, qkv.device)
        out = partition_attention(
            q,
            k,
            v,
            joint_partition,
            frame_partition,
            self.relative_position_bias_table,
            self.scale,
            self.attn_drop if self.training else 0.0,
            backend=self.backend,
        )
        return out.permute(0, 2, 3, 1, 4).reshape(bsz, frames, joints, self.num_heads * head_dim)

    def extra_repr(self) -> str:
        return (
            f"skate_type={self.skate_type}, partition_size={self.partition_size}, "
            f"num_heads={self.num_heads}, scale={self.scale}, attn_drop={self.attn_drop}, "
            f"bias={self.relative_position_bias_table is not None}, backend={self.backend!r}"
        )
