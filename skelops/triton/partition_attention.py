"""Triton kernels for partitioned self-attention (SkateFormer's Skate-MSA).

Conventions (skelops/reference/partition_attention.py is the definition): q, k, v
``[B, H, T, V, D]`` with any strides; partition ``(p, g)`` holds the ``N = W * J`` tokens
``(frame_partition[p, a], joint_partition[g, i])``, numbered ``n = a * J + i``. For a query x and
a key y of one partition ``s_xy = scale <q_x, k_y> + bias(x, y)``, ``lse_x = logsumexp_y s_xy``,
``P_xy = exp(s_xy - lse_x)`` and ``out_x = sum_y P_xy keep_xy / (1 - p) v_y``, with ``keep`` the
counter-based hash mask of the reference (element ``e = row(x) * N + n_y``,
``row(x) = ((b * H + h) * T + t_x) * V + u_x``).

Kernels, one program per (batch, head, frame window, joint group):

* ``_forward_kernel``: gathers the partition's keys and values once (``[BLOCK_N, BLOCK_D]``,
  through the partition indices and the tensors' strides: no permuted copies), then walks the
  queries in blocks of ``BLOCK_M`` rows. A block's scores cover every key of the partition, so
  the softmax is exact in one pass (no online rescaling); it writes out and lse.
* ``_backward_kernel``: the same walk recomputes ``P`` from lse and, FlashAttention-style, forms
  ``Di = <dO_x, O_x>``, ``dS = P (dP - Di)`` and writes each query block's dq directly while dk
  and dv accumulate in registers over the blocks. Every token lies in exactly one partition, so
  dq, dk, dv have a single writer and need no zero-initialisation or atomics. dbias is the only
  quantity shared across programs: ``tl.atomic_add`` into a float32 (float64) buffer, so its
  summation order, and its last bits, are not deterministic on a GPU.

Products: ``tl.dot`` with the head dimension zero-padded to 16 (the smallest reduction a GPU
dot takes; tokens are padded to a power of two >= 16) rather than a broadcast-multiply-sum over
D. The broadcast form holds ``[BLOCK_M, BLOCK_N, BLOCK_D]`` products in registers, and four of
the seven products (``P v``, ``P^T dO``, ``dS k``, ``dS^T q``) reduce over the tokens, where it
would reduce across threads; a dot does both kinds. The zero padding is exact but not free:
with D = 6 a dot does 16 / 6 of the needed multiply-adds. float16 / bfloat16 run on tensor
cores, where that is cheap, with ``P`` and ``dS`` rounded to the input dtype for the second
products (the usual FlashAttention trade). float32 uses ``input_precision="ieee"`` (FMA units):
tf32 would lose about three decimal digits of the scores, and ``"tf32x3"``, which keeps them,
doubled the registers and spilled in the backward when compiled for sm_90. Softmax statistics
and every accumulation are float32 (float64 for float64 inputs, which only the interpreter
runs).

Block sizes (chosen from register counts of offline sm_90 compiles, not from timings): query
blocks of 16 rows, the forward on 4 warps, the backward, with four ``[16, BLOCK_N]`` tiles next
to the resident k, v, dk and dv, on 8. Larger query blocks made the backward spill.

Limits: ``N = W * J <= 1024`` and ``D <= 64``. Keys and values stay in registers, so large
``N * D`` spills to local memory: correct but slow, and slow to compile (at N = 1024, D = 64 the
sm_90 build spills tens of KB per thread; float32 took minutes). SkateFormer's N = 64 / 96,
D = 3 / 6 are far below. The wrapper validates that the partitions are permutations (that
needs their values on the host); the kernels clamp the indices, so a bad partition cannot read
or write out of bounds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import triton
import triton.language as tl

from ..ops.partition_attention import empty_like_layout
from ..reference.partition_attention import dropout_seed_key, dropout_threshold
from ._common import (
    INTERPRETED,
    acc_dtypes,
    device_guard,
    interpreter_lacks,
    next_pow2,
    supported_dtypes,
    upcast,
)

__all__ = ["partition_attention_forward", "partition_attention_backward"]

_MAX_TOKENS = 1024
_MAX_HEAD_DIM = 64
_MIN_DOT = 16
_QUERY_BLOCK = 16
_FORWARD_WARPS = 4
_BACKWARD_WARPS = 8

# Bias kinds (csrc/partition_attention/partition_attention_math.h: BiasKind).
_NO_BIAS, _FRAME_OFFSET, _FRAME_JOINT_OFFSET = 0, 1, 2


# --------------------------------------------------------------------------------------------
# Kernel helpers
# --------------------------------------------------------------------------------------------


@triton.jit
def _mix32(x):
    """The reference's 32-bit finaliser on uint32 (products wrap mod 2**32, shifts are
    logical)."""
    x = x ^ (x >> 16)
    x = x * 0x21F0AAAD
    x = x ^ (x >> 15)
    x = x * 0x735A2D97
    return x ^ (x >> 15)


@triton.jit
def _keep_mask(rows, keys, N, seed_key, threshold):
    """[BLOCK_M, BLOCK_N] bool: probability (row, key) survives dropout. ``rows`` are the
    queries' int64 token numbers ``((b * H + h) * T + t) * V + u``, ``keys`` the keys' numbers
    inside the partition; ``seed_key`` and ``threshold`` are the reference's uint32 values,
    passed as integers.

    The element number ``rows * N + keys`` is split into 32-bit words per row, with the carry
    of the low word per element: the tile then holds only 32-bit values, and the inner hash of
    the high word is taken per row (two candidates) instead of per element."""
    first = rows * N
    first_low = first.to(tl.uint32)
    first_high = (first >> 32).to(tl.uint32)
    low = first_low[:, None] + keys[None, :].to(tl.uint32)
    carry = low < first_low[:, None]
    key = seed_key.to(tl.uint32)
    inner = tl.where(
        carry, _mix32(key ^ (first_high + 1))[:, None], _mix32(key ^ first_high)[:, None]
    )
    return _mix32(inner ^ low) >= threshold.to(tl.uint32)


@triton.jit
def _partition_tokens(frame_ptr, joint_ptr, p, g, first, T, V, W, J, BLOCK: tl.constexpr):
    """Tokens ``first .. first + BLOCK - 1`` of partition (p, g): their window and group
    positions, frames and joints (int64) and whether they exist (``n < W * J``)."""
    n = first + tl.arange(0, BLOCK)
    valid = n < W * J
    a = n // J
    i = n % J
    frame = tl.load(frame_ptr + p * W + a, mask=valid, other=0)
    joint = tl.load(joint_ptr + g * J + i, mask=valid, other=0)
    frame = tl.minimum(tl.maximum(frame, 0), T - 1).to(tl.int64)
    joint = tl.minimum(tl.maximum(joint, 0), V - 1).to(tl.int64)
    return n, a, i, frame, joint, valid


@triton.jit
def _token_offsets(frame, joint, s_t, s_v):
    return frame * s_t + joint * s_v


@triton.jit
def _load_tokens(base, offsets, valid, d, D, s_d):
    """[BLOCK, BLOCK_D] rows of the tokens at ``offsets`` (zero outside the tokens and D)."""
    return tl.load(
        base + offsets[:, None] + (d * s_d)[None, :],
        mask=valid[:, None] & (d[None, :] < D),
        other=0.0,
    )


@triton.jit
def _partition_keys(
    k_ptr, v_ptr, frame_ptr, joint_ptr, b64, h64, p, g, T, V, W, J, D, d,
    sk_b, sk_h, sk_t, sk_v, sk_d, sv_b, sv_h, sv_t, sv_v, sv_d, BLOCK_N: tl.constexpr,
):  # fmt: skip
    """Every key token of partition (p, g) of (b, h) with its k and v rows ([BLOCK_N, BLOCK_D],
    zero where padded): what the forward and backward programs start from."""
    key_n, a_y, i_y, t_y, u_y, valid_y = _partition_tokens(
        frame_ptr, joint_ptr, p, g, 0, T, V, W, J, BLOCK_N
    )
    k = _load_tokens(
        k_ptr + b64 * sk_b + h64 * sk_h, _token_offsets(t_y, u_y, sk_t, sk_v), valid_y,
        d, D, sk_d,
    )  # fmt: skip
    v = _load_tokens(
        v_ptr + b64 * sv_b + h64 * sv_h, _token_offsets(t_y, u_y, sv_t, sv_v), valid_y,
        d, D, sv_d,
    )  # fmt: skip
    return key_n, a_y, i_y, t_y, u_y, valid_y, k, v


@triton.jit
def _store_tokens(base, offsets, valid, d, D, s_d, values):
    tl.store(
        base + offsets[:, None] + (d * s_d)[None, :],
        values.to(base.dtype.element_ty),
        mask=valid[:, None] & (d[None, :] < D),
    )


@triton.jit
def _bias_offsets(a_x, i_x, a_y, i_y, h, W, J, H, BIAS_KIND: tl.constexpr):
    """[BLOCK_M, BLOCK_N] offsets of bias(x, y) of head h in the contiguous table."""
    frame = a_x[:, None] - a_y[None, :] + W - 1
    if BIAS_KIND == 1:
        return frame * H + h
    return ((frame * J + i_x[:, None]) * J + i_y[None, :]) * H + h


@triton.jit
def _scores(
    q, k, scale, bias_ptr, a_x, i_x, a_y, i_y, valid_x, valid_y, h, W, J, H,
    BIAS_KIND: tl.constexpr, ACC_DTYPE: tl.constexpr,
):  # fmt: skip
    """[BLOCK_M, BLOCK_N] scores, -inf at the padding keys (rows of padding queries are
    finite: their q is zero and their bias is not read)."""
    s = tl.dot(q, tl.trans(k), input_precision="ieee", out_dtype=ACC_DTYPE) * scale
    if BIAS_KIND != 0:
        offsets = _bias_offsets(a_x, i_x, a_y, i_y, h, W, J, H, BIAS_KIND)
        pair_ok = valid_x[:, None] & valid_y[None, :]
        s += tl.load(bias_ptr + offsets, mask=pair_ok, other=0.0).to(ACC_DTYPE)
    return tl.where(valid_y[None, :], s, float("-inf"))


@triton.jit
def _program_coordinates(H, P, G):
    """(b, h, p, g) of this program; the joint groups of one (b, h) are neighbours, so
    consecutive programs read nearby memory."""
    pid = tl.program_id(0)
    g = pid % G
    rest = pid // G
    p = rest % P
    rest = rest // P
    return rest // H, rest % H, p, g


# --------------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------------


@triton.jit(do_not_specialize=["seed_key", "threshold"])
def _forward_kernel(
    q_ptr, k_ptr, v_ptr, out_ptr, lse_ptr, joint_ptr, frame_ptr, bias_ptr, factors_ptr,
    seed_key, threshold,
    H, T, V, D, P, W, G, J,
    sq_b, sq_h, sq_t, sq_v, sq_d,
    sk_b, sk_h, sk_t, sk_v, sk_d,
    sv_b, sv_h, sv_t, sv_v, sv_d,
    so_b, so_h, so_t, so_v, so_d,
    BIAS_KIND: tl.constexpr, DROPOUT: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    ACC_DTYPE: tl.constexpr,
):  # fmt: skip
    """out (any strides) and lse (contiguous [B, H, T, V]) of one partition's queries."""
    b, h, p, g = _program_coordinates(H, P, G)
    b64 = b.to(tl.int64)
    h64 = h.to(tl.int64)
    N = W * J
    scale = tl.load(factors_ptr)
    keep_scale = tl.load(factors_ptr + 1)
    d = tl.arange(0, BLOCK_D)

    key_n, a_y, i_y, t_y, u_y, valid_y, k, v = _partition_keys(
        k_ptr, v_ptr, frame_ptr, joint_ptr, b64, h64, p, g, T, V, W, J, D, d,
        sk_b, sk_h, sk_t, sk_v, sk_d, sv_b, sv_h, sv_t, sv_v, sv_d, BLOCK_N,
    )  # fmt: skip

    for first in range(0, N, BLOCK_M):
        _, a_x, i_x, t_x, u_x, valid_x = _partition_tokens(
            frame_ptr, joint_ptr, p, g, first, T, V, W, J, BLOCK_M
        )
        q = _load_tokens(
            q_ptr + b64 * sq_b + h64 * sq_h, _token_offsets(t_x, u_x, sq_t, sq_v), valid_x,
            d, D, sq_d,
        )  # fmt: skip
        s = _scores(
            q, k, scale, bias_ptr, a_x, i_x, a_y, i_y, valid_x, valid_y, h, W, J, H,
            BIAS_KIND, ACC_DTYPE,
        )  # fmt: skip
        row_max = tl.max(s, axis=1)
        e = tl.exp(s - row_max[:, None])
        total = tl.sum(e, axis=1)
        probs = e * (1.0 / total)[:, None]
        rows = ((b64 * H + h) * T + t_x) * V + u_x
        if DROPOUT:
            keep = _keep_mask(rows, key_n, N, seed_key, threshold)
            probs = tl.where(keep, probs * keep_scale, 0.0)
        out = tl.dot(probs.to(v.dtype), v, input_precision="ieee", out_dtype=ACC_DTYPE)
        _store_tokens(
            out_ptr + b64 * so_b + h64 * so_h, _token_offsets(t_x, u_x, so_t, so_v), valid_x,
            d, D, so_d, out,
        )  # fmt: skip
        tl.store(lse_ptr + rows, row_max + tl.log(total), mask=valid_x)


@triton.jit(do_not_specialize=["seed_key", "threshold"])
def _backward_kernel(
    do_ptr, q_ptr, k_ptr, v_ptr, out_ptr, lse_ptr, joint_ptr, frame_ptr, bias_ptr,
    factors_ptr, dq_ptr, dk_ptr, dv_ptr, dbias_ptr,
    seed_key, threshold,
    H, T, V, D, P, W, G, J,
    sdo_b, sdo_h, sdo_t, sdo_v, sdo_d,
    sq_b, sq_h, sq_t, sq_v, sq_d,
    sk_b, sk_h, sk_t, sk_v, sk_d,
    sv_b, sv_h, sv_t, sv_v, sv_d,
    so_b, so_h, so_t, so_v, so_d,
    sdq_b, sdq_h, sdq_t, sdq_v, sdq_d,
    sdk_b, sdk_h, sdk_t, sdk_v, sdk_d,
    sdv_b, sdv_h, sdv_t, sdv_v, sdv_d,
    BIAS_KIND: tl.constexpr, DROPOUT: tl.constexpr,
    WANT_DQ: tl.constexpr, WANT_DK: tl.constexpr, WANT_DV: tl.constexpr,
    WANT_DBIAS: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    ACC_DTYPE: tl.constexpr,
):  # fmt: skip
    """The requested gradients of one partition (dq, dk, dv any strides; dbias accumulated
    into a contiguous buffer of the accumulation dtype)."""
    NEED_DS: tl.constexpr = WANT_DQ or WANT_DK or WANT_DBIAS
    b, h, p, g = _program_coordinates(H, P, G)
    b64 = b.to(tl.int64)
    h64 = h.to(tl.int64)
    N = W * J
    scale = tl.load(factors_ptr)
    keep_scale = tl.load(factors_ptr + 1)
    d = tl.arange(0, BLOCK_D)

    key_n, a_y, i_y, t_y, u_y, valid_y, k, v = _partition_keys(
        k_ptr, v_ptr, frame_ptr, joint_ptr, b64, h64, p, g, T, V, W, J, D, d,
        sk_b, sk_h, sk_t, sk_v, sk_d, sv_b, sv_h, sv_t, sv_v, sv_d, BLOCK_N,
    )  # fmt: skip
    dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=ACC_DTYPE)
    dv = tl.zeros([BLOCK_N, BLOCK_D], dtype=ACC_DTYPE)

    for first in range(0, N, BLOCK_M):
        _, a_x, i_x, t_x, u_x, valid_x = _partition_tokens(
            frame_ptr, joint_ptr, p, g, first, T, V, W, J, BLOCK_M
        )
        q = _load_tokens(
            q_ptr + b64 * sq_b + h64 * sq_h, _token_offsets(t_x, u_x, sq_t, sq_v), valid_x,
            d, D, sq_d,
        )  # fmt: skip
        grad = _load_tokens(
            do_ptr + b64 * sdo_b + h64 * sdo_h, _token_offsets(t_x, u_x, sdo_t, sdo_v),
            valid_x, d, D, sdo_d,
        )  # fmt: skip
        rows = ((b64 * H + h) * T + t_x) * V + u_x
        # +inf at the padding queries makes their P exactly zero, so they add nothing below.
        lse = tl.load(lse_ptr + rows, mask=valid_x, other=float("inf"))
        s = _scores(
            q, k, scale, bias_ptr, a_x, i_x, a_y, i_y, valid_x, valid_y, h, W, J, H,
            BIAS_KIND, ACC_DTYPE,
        )  # fmt: skip
        probs = tl.exp(s - lse[:, None])
        if DROPOUT:
            keep = _keep_mask(rows, key_n, N, seed_key, threshold)
            kept = tl.where(keep, probs * keep_scale, 0.0)
        else:
            kept = probs
        if WANT_DV:
            dv = tl.dot(
                tl.trans(kept.to(grad.dtype)), grad, dv, input_precision="ieee",
                out_dtype=ACC_DTYPE,
            )  # fmt: skip
        if NEED_DS:
            out = _load_tokens(
                out_ptr + b64 * so_b + h64 * so_h, _token_offsets(t_x, u_x, so_t, so_v),
                valid_x, d, D, so_d,
            ).to(ACC_DTYPE)  # fmt: skip
            delta = tl.sum(grad.to(ACC_DTYPE) * out, axis=1)
            dp = tl.dot(grad, tl.trans(v), input_precision="ieee", out_dtype=ACC_DTYPE)
            if DROPOUT:
                dp = tl.where(keep, dp * keep_scale, 0.0)
            ds = probs * (dp - delta[:, None])
            if WANT_DQ:
                dq = tl.dot(ds.to(k.dtype), k, input_precision="ieee", out_dtype=ACC_DTYPE)
                _store_tokens(
                    dq_ptr + b64 * sdq_b + h64 * sdq_h, _token_offsets(t_x, u_x, sdq_t, sdq_v),
                    valid_x, d, D, sdq_d, dq * scale,
                )  # fmt: skip
            if WANT_DK:
                dk = tl.dot(
                    tl.trans(ds.to(q.dtype)), q, dk, input_precision="ieee", out_dtype=ACC_DTYPE
                )
            if WANT_DBIAS:
                if BIAS_KIND == 1:
                    # 2W - 1 distinct entries per head: sum the tile per frame offset first, or
                    # every program's whole tile would queue on the same few addresses.
                    frame = a_x[:, None] - a_y[None, :] + W - 1
                    for offset in range(0, 2 * W - 1):
                        tl.atomic_add(
                            dbias_ptr + offset * H + h,
                            tl.sum(tl.where(frame == offset, ds, 0.0)),
                            sem="relaxed",
                        )
                else:
                    tl.atomic_add(
                        dbias_ptr + _bias_offsets(a_x, i_x, a_y, i_y, h, W, J, H, BIAS_KIND),
                        ds,
                        mask=valid_x[:, None] & valid_y[None, :],
                        sem="relaxed",
                    )

    if WANT_DK:
        _store_tokens(
            dk_ptr + b64 * sdk_b + h64 * sdk_h, _token_offsets(t_y, u_y, sdk_t, sdk_v), valid_y,
            d, D, sdk_d, dk * scale,
        )  # fmt: skip
    if WANT_DV:
        _store_tokens(
            dv_ptr + b64 * sdv_b + h64 * sdv_h, _token_offsets(t_y, u_y, sdv_t, sdv_v), valid_y,
            d, D, sdv_d, dv,
        )  # fmt: skip


# --------------------------------------------------------------------------------------------
# Launch helpers
# --------------------------------------------------------------------------------------------


class _Problem:
    """Sizes of one call and the launch parameters derived from them."""

    def __init__(
        self,
        q: torch.Tensor,
        joint_partition: torch.Tensor,
        frame_partition: torch.Tensor,
        bias: torch.Tensor | None,
    ) -> None:
        self.B, self.H, self.T, self.V, self.D = q.shape
        self.G, self.J = joint_partition.shape
        self.P, self.W = frame_partition.shape
        if bias is None:
            self.bias_kind = _NO_BIAS
        else:
            self.bias_kind = _FRAME_OFFSET if bias.dim() == 2 else _FRAME_JOINT_OFFSET
        self.block_n = max(_MIN_DOT, next_pow2(self.W * self.J))
        self.block_d = max(_MIN_DOT, next_pow2(self.D))

    @property
    def grid(self) -> tuple[int]:
        return (self.B * self.H * self.P * self.G,)

    def sizes(self) -> tuple[int, ...]:
        return (self.H, self.T, self.V, self.D, self.P, self.W, self.G, self.J)

    def constexprs(self, dtype: torch.dtype, dropout_p: float) -> dict[str, object]:
        return {
            "BIAS_KIND": self.bias_kind,
            "DROPOUT": dropout_p > 0,
            "BLOCK_M": _QUERY_BLOCK,
            "BLOCK_N": self.block_n,
            "BLOCK_D": self.block_d,
            "ACC_DTYPE": acc_dtypes(dtype)[1],
        }


def _cast_like(grad: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A gradient computed in float32 in ``like``'s dtype and layout (empty stays empty)."""
    if grad.numel() == 0:
        return grad.to(like.dtype)
    return empty_like_layout(like).copy_(grad)


def _factors(scale: float, dropout_p: float, dtype: torch.dtype, device: torch.device):
    # [scale, 1 / (1 - p)] as a tensor: a Python float kernel argument would be float32, and
    # the float64 runs need them exact. Fills, not a host copy: nothing to synchronise.
    factors = torch.empty(2, dtype=dtype, device=device)
    factors[0] = scale
    factors[1] = 1.0 / (1.0 - dropout_p)
    return factors


def _dropout_args(dropout_p: float, seed: int) -> tuple[int, int]:
    if dropout_p <= 0:
        return 0, 0
    return dropout_seed_key(int(seed)), dropout_threshold(dropout_p)


def _partition_arg(partition: torch.Tensor) -> torch.Tensor:
    return partition.to(torch.int32).contiguous()


def _check_same(name: str, t: torch.Tensor, q: torch.Tensor, shape: Sequence[int]) -> None:
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {list(shape)}; got {list(t.shape)}")
    if t.dtype != q.dtype:
        raise TypeError(f"{name} must have q's dtype ({q.dtype}); got {t.dtype}")
    if t.device != q.device:
        raise ValueError(f"{name} must be on q's device ({q.device}); got {t.device}")


def _check_problem(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    joint_partition: torch.Tensor,
    frame_partition: torch.Tensor,
    bias: torch.Tensor | None,
    scale: float,
    dropout_p: float,
) -> _Problem:
    """The checks that need no device synchronisation (the partitions' values are the
    wrapper's to validate)."""
    if q.dim() != 5 or q.numel() == 0:
        raise ValueError(f"q must be a non-empty [B, H, T, V, D] tensor; got {list(q.shape)}")
    if q.dtype not in supported_dtypes():
        names = ", ".join(str(dt) for dt in supported_dtypes())
        raise TypeError(f"q must have dtype in ({names}); got {q.dtype}")
    if q.device.type != "cuda" and not INTERPRETED:
        raise ValueError(
            "the Triton partition_attention kernels need CUDA tensors (or TRITON_INTERPRET=1 "
            f"set before triton is imported); got q on {q.device}"
        )
    _check_same("k", k, q, q.shape)
    _check_same("v", v, q, q.shape)
    _, heads, frames, joints, head_dim = q.shape
    for name, partition, total, what in (
        ("joint_partition", joint_partition, joints, "V"),
        ("frame_partition", frame_partition, frames, "T"),
    ):
        if partition.dim() != 2 or partition.numel() != total:
            raise ValueError(
                f"{name} must be 2-D with {what} = {total} entries; got {list(partition.shape)}"
            )
        if partition.dtype not in (torch.int32, torch.int64):
            raise TypeError(f"{name} must be int32 or int64; got {partition.dtype}")
        if partition.device != q.device:
            raise ValueError(f"{name} must be on q's device ({q.device}); got {partition.device}")
    group, window = joint_partition.shape[1], frame_partition.shape[1]
    if window * group > _MAX_TOKENS:
        raise ValueError(
            f"joint_partition / frame_partition: the Triton kernels support N = W * J <= "
            f"{_MAX_TOKENS} tokens per partition; got W={window}, J={group} (N={window * group})"
        )
    if head_dim > _MAX_HEAD_DIM:
        raise ValueError(
            f"q: the Triton kernels support a head dimension D <= {_MAX_HEAD_DIM}; got D={head_dim}"
        )
    if bias is not None:
        frame_only = (2 * window - 1, heads)
        frame_joint = (2 * window - 1, group, group, heads)
        if tuple(bias.shape) not in (frame_only, frame_joint):
            raise ValueError(
                f"bias must be [2W - 1, H] = {list(frame_only)} or [2W - 1, J, J, H] = "
                f"{list(frame_joint)}; got {list(bias.shape)}"
            )
        _check_same("bias", bias, q, bias.shape)
    if not math.isfinite(scale):
        raise ValueError(f"scale must be finite; got {scale}")
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p must be in [0, 1); got {dropout_p}")
    return _Problem(q, joint_partition, frame_partition, bias)


def _strides(*tensors: torch.Tensor) -> list[int]:
    return [s for t in tensors for s in t.stride()]


# --------------------------------------------------------------------------------------------
# Public launchers
# --------------------------------------------------------------------------------------------


def partition_attention_forward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    joint_partition: torch.Tensor,
    frame_partition: torch.Tensor,
    bias: torch.Tensor | None,
    scale: float,
    dropout_p: float,
    seed: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Self-attention within every (frame window x joint group) partition, Triton backend.

    Args:
        q, k, v: ``[B, H, T, V, D]``, one dtype and device, any strides; float32, float16 or
            bfloat16 (under the interpreter also float64; bfloat16 is computed in float32
            there). ``D <= 64``.
        joint_partition: ``[G, J]`` int32/int64, a permutation of ``range(V)``.
        frame_partition: ``[P, W]`` int32/int64, a permutation of ``range(T)``;
            ``W * J <= 1024``.
        bias: None, ``[2W - 1, H]`` or ``[2W - 1, J, J, H]`` in q's dtype.
        scale: the score scale.
        dropout_p: probability of dropping an attention probability, ``0 <= p < 1``.
        seed: the dropout seed (the mask is the reference's for the same seed).

    Returns:
        ``(out, lse)``: out ``[B, H, T, V, D]`` in q's dtype and memory layout (dense), lse
        ``[B, H, T, V]`` contiguous in float32 (float64 for float64 inputs).
    """
    problem = _check_problem(q, k, v, joint_partition, frame_partition, bias, scale, dropout_p)
    if interpreter_lacks(q.dtype):
        out32, lse = partition_attention_forward(
            *upcast(q, k, v), joint_partition, frame_partition, *upcast(bias), scale, dropout_p,
            seed,
        )  # fmt: skip
        return empty_like_layout(q).copy_(out32), lse
    acc_torch, _ = acc_dtypes(q.dtype)
    out = empty_like_layout(q)
    lse = torch.empty(q.shape[:4], dtype=acc_torch, device=q.device)
    bias_arg = q if bias is None else bias.contiguous()
    with device_guard(q.device):
        _forward_kernel[problem.grid](
            q, k, v, out, lse, _partition_arg(joint_partition), _partition_arg(frame_partition),
            bias_arg, _factors(scale, dropout_p, acc_torch, q.device),
            *_dropout_args(dropout_p, seed),
            *problem.sizes(),
            *_strides(q, k, v, out),
            **problem.constexprs(q.dtype, dropout_p), num_warps=_FORWARD_WARPS,
        )  # fmt: skip
    return out, lse


def partition_attention_backward(
    grad_out: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    lse: torch.Tensor,
    joint_partition: torch.Tensor,
    frame_partition: torch.Tensor,
    bias: torch.Tensor | None,
    scale: float,
    dropout_p: float,
    seed: int,
    output_mask: Sequence[bool],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of :func:`partition_attention_forward` from its saved ``out`` and ``lse``.

    ``P = exp(s - lse)`` is recomputed; with ``Di = <dO_x, O_x>``, ``dP = keep / (1 - p) dO v^T``
    and ``dS = P (dP - Di)``: ``dv = (P keep / (1 - p))^T dO``, ``dq = scale dS k``,
    ``dk = scale dS^T q`` and dbias sums dS per table entry over batches, partitions and token
    pairs.

    Args:
        grad_out, out: q's shape, dtype and device, any strides.
        lse: ``[B, H, T, V]`` float32 (float64 for float64 inputs), as the forward returns it.
        output_mask: four bools selecting (dq, dk, dv, dbias).
        The other arguments are the forward's.

    Returns:
        ``(dq, dk, dv, dbias)``: dq, dk, dv in the dtype and memory layout of q, k, v; dbias
        contiguous in bias's shape and dtype (its summation order is not deterministic on a
        GPU: float atomics). A gradient not asked for, and dbias without a bias, is
        ``q.new_empty(0)``.
    """
    problem = _check_problem(q, k, v, joint_partition, frame_partition, bias, scale, dropout_p)
    _check_same("grad_out", grad_out, q, q.shape)
    _check_same("out", out, q, q.shape)
    acc_torch, _ = acc_dtypes(q.dtype)
    if tuple(lse.shape) != tuple(q.shape[:4]) or lse.dtype != acc_torch or lse.device != q.device:
        raise ValueError(
            f"lse must be [B, H, T, V] = {list(q.shape[:4])} {acc_torch} on {q.device} (as the "
            f"forward returns it); got {list(lse.shape)} {lse.dtype} on {lse.device}"
        )
    if len(output_mask) != 4:
        raise ValueError(f"output_mask must have 4 entries; got {len(output_mask)}")
    want_dq, want_dk, want_dv, want_dbias = (bool(m) for m in output_mask)
    want_dbias = want_dbias and bias is not None
    if interpreter_lacks(q.dtype):
        grads = partition_attention_backward(
            *upcast(grad_out, q, k, v, out), lse, joint_partition, frame_partition,
            *upcast(bias), scale, dropout_p, seed, output_mask,
        )  # fmt: skip
        dq, dk, dv, dbias = grads
        return _cast_like(dq, q), _cast_like(dk, k), _cast_like(dv, v), dbias.to(q.dtype)

    # Distinct empties: outputs of a torch.library custom op must not alias each other.
    dq, dk, dv, dbias = (q.new_empty(0) for _ in range(4))
    if not (want_dq or want_dk or want_dv or want_dbias):
        return dq, dk, dv, dbias
    if want_dq:
        dq = empty_like_layout(q)
    if want_dk:
        dk = empty_like_layout(k)
    if want_dv:
        dv = empty_like_layout(v)
    dbias_acc = torch.zeros(bias.shape, dtype=acc_torch, device=q.device) if want_dbias else q
    bias_arg = q if bias is None else bias.contiguous()
    with device_guard(q.device):
        _backward_kernel[problem.grid](
            grad_out, q, k, v, out, lse.contiguous(), _partition_arg(joint_partition),
            _partition_arg(frame_partition), bias_arg,
            _factors(scale, dropout_p, acc_torch, q.device),
            dq if want_dq else q, dk if want_dk else k, dv if want_dv else v, dbias_acc,
            *_dropout_args(dropout_p, seed),
            *problem.sizes(),
            *_strides(grad_out, q, k, v, out),
            *_strides(dq if want_dq else q, dk if want_dk else k, dv if want_dv else v),
            WANT_DQ=want_dq, WANT_DK=want_dk, WANT_DV=want_dv, WANT_DBIAS=want_dbias,
            **problem.constexprs(q.dtype, dropout_p), num_warps=_BACKWARD_WARPS,
        )  # fmt: skip
    if want_dbias:
        dbias = dbias_acc.to(bias.dtype)
    return dq, dk, dv, dbias
