"""Reference partitioned self-attention (SkateFormer's Skate-MSA), as a plain PyTorch
composition: tokens gathered into partitions, full score matrices, softmax, dropout, scatter."""

from __future__ import annotations

import math

import torch

__all__ = [
    "attention_scale",
    "dropout_keep",
    "dropout_threshold",
    "partition_attention",
    "partition_bias",
]

_MASK32 = 0xFFFFFFFF
# Constants of the 32-bit integer hash ("lowbias32", found by C. Wellons' hash-prospector) and
# the golden-ratio word that separates the seed from zero.
_MIX_MUL1 = 0x21F0AAAD
_MIX_MUL2 = 0x735A2D97
_SEED_SALT = 0x9E3779B9


def attention_scale(head_dim: int, scale: float | None) -> float:
    """The score scale: ``scale``, or ``1 / sqrt(D)`` for head dimension ``D``."""
    return 1.0 / math.sqrt(head_dim) if scale is None else float(scale)


def _mul32(x: torch.Tensor | int, constant: int) -> torch.Tensor | int:
    """``x * constant mod 2**32`` for ``0 <= x < 2**32`` without int64 overflow."""
    low, high = x & 0xFFFF, x >> 16
    return (low * constant + (((high * constant) & 0xFFFF) << 16)) & _MASK32


def _mix32(x):
    """The 32-bit finaliser every backend applies (C++/CUDA: ``skelops::mix32``)."""
    x = x ^ (x >> 16)
    x = _mul32(x, _MIX_MUL1)
    x = x ^ (x >> 15)
    x = _mul32(x, _MIX_MUL2)
    return x ^ (x >> 15)


def dropout_seed_key(seed: int) -> int:
    """The per-call 32-bit key derived from a 64-bit ``seed``."""
    seed &= (1 << 64) - 1
    return _mix32(_mix32((seed & _MASK32) ^ _SEED_SALT) ^ (seed >> 32))


def dropout_threshold(dropout_p: float) -> int:
    """A probability is dropped when its 32-bit hash is below ``floor(p * 2**32)``."""
    return min(int(dropout_p * 4294967296.0), _MASK32)


def dropout_keep(seed: int, element: torch.Tensor, dropout_p: float) -> torch.Tensor:
    """Bool keep mask of the attention probabilities numbered ``element`` (int64, see
    :func:`partition_attention`): ``mix32(mix32(key ^ hi) ^ lo) >= floor(p * 2**32)`` with
    ``key = dropout_seed_key(seed)`` and ``hi, lo`` the high and low 32-bit words of the
    element number. A counter-based hash: every backend draws the same mask for a seed."""
    key = dropout_seed_key(seed)
    bits = _mix32(_mix32((element >> 32) ^ key) ^ (element & _MASK32))
    return bits >= dropout_threshold(dropout_p)


def partition_bias(bias: torch.Tensor, window: int, group: int) -> torch.Tensor:
    """The ``[H, N, N]`` additive score bias (``N = W * J``, tokens ordered window-position
    major) from SkateFormer's relative-position table.

    ``bias [2W - 1, H]``: indexed by the frame offset only (Skate-Types 1 and 3, shared over
    joint pairs), ``B[h, (a, i), (b, j)] = bias[a - b + W - 1, h]``. ``bias [2W - 1, J, J, H]``:
    by the frame offset and both joints' in-group positions (types 2 and 4),
    ``B[h, (a, i), (b, j)] = bias[a - b + W - 1, i, j, h]``; ``a, b`` are the query's and key's
    positions in their frame window, ``i, j`` in their joint group.
    """
    positions = torch.arange(window, device=bias.device)
    offset = positions[:, None] - positions[None, :] + window - 1  # [W(a), W(b)]
    heads = bias.shape[-1]
    if bias.dim() == 2:
        table = bias[offset]  # [a, b, H]
        table = table[:, None, :, None, :].expand(window, group, window, group, heads)
    else:
        table = bias[offset].permute(0, 2, 1, 3, 4)  # [a, b, i, j, H] -> [a, i, b, j, H]
    n = window * group
    return table.reshape(n, n, heads).permute(2, 0, 1)


def _token_order(joint_partition: torch.Tensor, frame_partition: torch.Tensor) -> torch.Tensor:
    """int64 ``[P * G * W * J]``: the flat token ``t * V + u`` of every partition slot, in the
    order ``(p, g, a, i)`` (partition major, window position major inside a partition)."""
    num_joints = joint_partition.numel()
    t = frame_partition[:, None, :, None]  # [P, 1, W, 1]
    u = joint_partition[None, :, None, :]  # [1, G, 1, J]
    return (t * num_joints + u).reshape(-1).long()


def _gather_partitions(
    x: torch.Tensor, order: torch.Tensor, blocks: tuple[int, ...]
) -> torch.Tensor:
    """``[B, H, T, V, D] -> [B, H, P, G, W * J, D]``: one gather of the tokens in ``order``."""
    b, h, t, v, d = x.shape
    return x.reshape(b, h, t * v, d).index_select(2, order).view(b, h, *blocks, d)


def partition_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    joint_partition: torch.Tensor,
    frame_partition: torch.Tensor,
    bias: torch.Tensor | None = None,
    scale: float | None = None,
    dropout_p: float = 0.0,
    seed: int = 0,
    return_lse: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Self-attention within every (frame window x joint group) partition.

    Tokens are the (frame, joint) pairs of ``q, k, v [B, H, T, V, D]``. ``frame_partition
    [P, W]`` holds the frames of each window and ``joint_partition [G, J]`` the joints of each
    group, each a permutation of ``range(T)`` / ``range(V)`` laid out as a matrix. Partition
    ``(p, g)`` is the ``N = W * J`` tokens ``(frame_partition[p, a], joint_partition[g, i])``;
    for a query token ``x = (t, u)`` in it and the keys ``y`` of its partition:

    .. math::
        s_{xy} = \\text{scale}\\, \\langle q_x, k_y\\rangle + B_h(x, y),\\qquad
        o_x = \\sum_y \\frac{m_{xy}}{1 - p}\\, \\mathrm{softmax}_y(s_{x\\cdot})_y\\, v_y

    with ``B`` from :func:`partition_bias` (zero without ``bias``) and ``m`` the dropout keep
    mask (all ones when ``dropout_p == 0``). The mask of probability ``(x, y)`` for batch
    ``b``, head ``h`` is :func:`dropout_keep` of element number
    ``(((b * H + h) * T + t) * V + u) * N + (a_y * J + i_y)`` (``a_y, i_y``: the key's
    positions in its window and group), so it depends on the seed and the token, never on the
    backend or the thread count.

    Args:
        q, k, v: ``[B, H, T, V, D]`` (batch, heads, frames, joints, head dim).
        joint_partition: ``[G, J]`` integer joint groups (``G * J == V``, each joint once).
        frame_partition: ``[P, W]`` integer frame windows (``P * W == T``, each frame once).
        bias: ``None``, ``[2W - 1, H]`` or ``[2W - 1, J, J, H]`` relative-position table.
        scale: score scale, ``1 / sqrt(D)`` when ``None``.
        dropout_p: probability of dropping an attention probability, ``0 <= p < 1``.
        seed: the dropout seed.
        return_lse: also return the ``[B, H, T, V]`` log-sum-exp of each query's scores.

    Returns:
        ``[B, H, T, V, D]`` (and the log-sum-exp with ``return_lse``).

    This materialises the gathered tokens and the ``[B, H, P, G, N, N]`` scores (and the
    ``N x N`` dropout mask): what the fused kernels avoid.
    """
    bsz, heads, frames, joints, head_dim = q.shape
    window, group = frame_partition.shape[1], joint_partition.shape[1]
    s = attention_scale(head_dim, scale)
    num_windows, num_groups = frame_partition.shape[0], joint_partition.shape[0]
    blocks = (num_windows, num_groups, window * group)
    order = _token_order(joint_partition.to(q.device), frame_partition.to(q.device))
    qp, kp, vp = (_gather_partitions(x, order, blocks) for x in (q, k, v))
    scores = torch.matmul(qp * s, kp.transpose(-1, -2))  # [B, H, P, G, N, N]
    if bias is not None:
        scores = scores + partition_bias(bias, window, group)[None, :, None, None].to(scores)
    lse = torch.logsumexp(scores, dim=-1)
    probs = torch.exp(scores - lse[..., None])
    if dropout_p > 0:
        element = _dropout_elements(bsz, heads, frames * joints, order, blocks)
        keep = dropout_keep(seed, element, dropout_p)
        probs = probs * keep / (1.0 - dropout_p)
    out_blocks = torch.matmul(probs, vp)  # [B, H, P, G, N, D]
    # Back to [B, H, T, V]: every token's slot in the partition order (its rank).
    rank = torch.argsort(order)
    out = out_blocks.reshape(bsz, heads, -1, head_dim).index_select(2, rank)
    out = out.view(bsz, heads, frames, joints, head_dim)
    if not return_lse:
        return out
    lse_tokens = lse.reshape(bsz, heads, -1).index_select(2, rank)
    return out, lse_tokens.view(bsz, heads, frames, joints)


def _dropout_elements(
    bsz: int, heads: int, tokens: int, order: torch.Tensor, blocks: tuple[int, int, int]
) -> torch.Tensor:
    """int64 ``[B, H, P, G, N, N]`` element numbers of the attention probabilities
    (``tokens = T * V``; ``order`` from :func:`_token_order`)."""
    n = blocks[-1]
    row = torch.arange(bsz * heads, device=order.device, dtype=torch.int64).view(
        bsz, heads, 1, 1, 1
    )
    query = row * tokens + order.view(blocks)  # [B, H, P, G, N]: (b * H + h) * T * V + t * V + u
    return query[..., None] * n + torch.arange(n, device=order.device, dtype=torch.int64)
