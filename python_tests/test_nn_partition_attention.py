"""SkateFormer's Skate-MSA branch (``skelops.nn.PartitionAttention``) against a per-partition
oracle written from the Skate-Type definitions (the official ``type_<n>_partition`` token
orders and the paper's relative-position bias), plus its parameters, caching, dropout and bad
inputs."""

from __future__ import annotations

import pytest
import torch

import skelops
from skelops.nn import PartitionAttention

pytestmark = pytest.mark.usefixtures("one_thread")


def branch_oracle(qkv, skate_type, window, group, heads, scale, table):
    """``[B, T, V, 3 * H * D] -> [B, T, V, H * D]`` one partition at a time."""
    bsz, frames, joints, width = qkv.shape
    head_dim = width // (3 * heads)
    q, k, v = qkv.reshape(bsz, frames, joints, 3, heads, head_dim).unbind(3)  # [B, T, V, H, D]
    windows, groups = frames // window, joints // group
    local, neighbour = skate_type in (1, 2), skate_type in (1, 3)
    out = torch.zeros_like(q)
    for p in range(windows):
        for g in range(groups):
            # token n = a * J + i: frame position a in the window, joint position i in the group
            tokens = [(a, i) for a in range(window) for i in range(group)]
            t = torch.tensor([p * window + a if local else a * windows + p for a, _ in tokens])
            u = torch.tensor([g * group + i if neighbour else i * groups + g for _, i in tokens])
            scores = torch.einsum("bnhd,bmhd->bhnm", q[:, t, u], k[:, t, u]) * scale
            if table is not None:
                bias = torch.stack(
                    [
                        torch.stack(
                            [
                                table[a - b + window - 1]
                                if table.dim() == 2
                                else table[a - b + window - 1, i, j]
                                for b, j in tokens
                            ]
                        )
                        for a, i in tokens
                    ]
                )  # [N, N, H]
                scores = scores + bias.permute(2, 0, 1)
            out[:, t, u] = torch.einsum("bhnm,bmhd->bnhd", scores.softmax(-1), v[:, t, u])
    return out.reshape(bsz, frames, joints, heads * head_dim)


@pytest.mark.parametrize(
    ("skate_type", "size", "table_shape"),
    [
        (1, (4, 3), (7, 2)),
        (2, (4, 4), (7, 4, 4, 2)),
        (3, (2, 6), (3, 2)),
        (4, (2, 3), (3, 3, 3, 2)),
    ],
)
@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_matches_partition_oracle(skate_type, size, table_shape, backend):
    torch.manual_seed(skate_type)
    layer = PartitionAttention(skate_type, size, 2, scale=0.7, backend=backend).double()
    assert layer.relative_position_bias_table.shape == table_shape
    with torch.no_grad():
        layer.relative_position_bias_table.normal_()  # large enough to matter
    # the branch's q, k, v as a slice of a wider channels-last projection, as in SkateFormer
    wide = torch.randn(2, 8, 12, 40, dtype=torch.float64)
    qkv = wide[..., 4:22]  # 3 x 2 heads x 3
    expected = branch_oracle(qkv, skate_type, *size, 2, 0.7, layer.relative_position_bias_table)
    torch.testing.assert_close(layer(qkv), expected, rtol=1e-12, atol=1e-12)


def test_without_bias_and_default_scale():
    torch.manual_seed(0)
    layer = PartitionAttention(2, (2, 3), 3, bias=False).double()
    assert layer.relative_position_bias_table is None
    assert not list(layer.parameters())
    qkv = torch.randn(1, 4, 6, 3 * 3 * 4, dtype=torch.float64)
    expected = branch_oracle(qkv, 2, 2, 3, 3, 4**-0.5, None)
    torch.testing.assert_close(layer(qkv), expected, rtol=1e-12, atol=1e-12)


def test_bias_table_initialisation():
    torch.manual_seed(0)
    table = PartitionAttention(2, (8, 12), 4).relative_position_bias_table
    assert table.shape == (15, 12, 12, 4)
    assert 0.015 < table.std().item() < 0.025  # trunc_normal(std=0.02), as the official
    assert table.abs().max().item() <= 2.0


def test_gradients_reach_input_and_table():
    torch.manual_seed(1)
    layer = PartitionAttention(1, (2, 2), 2, backend="reference").double()
    qkv = torch.randn(2, 4, 4, 12, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, table: layer(x),
        (qkv, layer.relative_position_bias_table),
    )
    layer(qkv).sum().backward()
    assert layer.relative_position_bias_table.grad.abs().sum() > 0


def test_partitions_cached_per_shape():
    layer = PartitionAttention(3, (2, 4), 1)
    first = layer.partitions(8, 12, torch.device("cpu"))
    assert layer.partitions(8, 12, torch.device("cpu"))[0] is first[0]
    joints, frames = layer.partitions(4, 12, torch.device("cpu"))
    assert torch.equal(frames, torch.tensor([[0, 2], [1, 3]]))  # global frames: stride T / W
    expected = skelops.graphs.skate_type_partitions(3, 8, 12, (2, 4))
    assert all(torch.equal(a, b) for a, b in zip(first, expected, strict=True))


def test_dropout_in_training_only():
    torch.manual_seed(2)
    layer = PartitionAttention(2, (2, 3), 2, attn_drop=0.5)
    qkv = torch.randn(2, 4, 6, 12)
    layer.eval()
    torch.testing.assert_close(layer(qkv), layer(qkv), rtol=0, atol=0)
    without = layer(qkv)
    layer.train()
    torch.manual_seed(5)
    first = layer(qkv)
    torch.manual_seed(5)
    torch.testing.assert_close(layer(qkv), first, rtol=0, atol=0)  # the seed is drawn from torch
    assert not torch.allclose(first, without)
    assert not torch.allclose(layer(qkv), first)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="skate_type must be 1, 2, 3 or 4, got 5"):
        PartitionAttention(5, (2, 2), 1)
    with pytest.raises(ValueError, match="partition_size must be two positive ints"):
        PartitionAttention(1, (2, 0), 1)
    with pytest.raises(ValueError, match="num_heads must be a positive int"):
        PartitionAttention(1, (2, 2), 0)
    with pytest.raises(ValueError, match=r"attn_drop must be in \[0, 1\)"):
        PartitionAttention(1, (2, 2), 1, attn_drop=1.0)
    layer = PartitionAttention(1, (2, 2), 2)
    with pytest.raises(ValueError, match=r"qkv must be \[B, T, V, 3 \* H \* D\] with H=2"):
        layer(torch.randn(1, 4, 4, 8))
    with pytest.raises(ValueError, match="window must be >= 1 and divide num_frames=5"):
        layer(torch.randn(1, 5, 4, 6))  # W = 2 does not divide T = 5
