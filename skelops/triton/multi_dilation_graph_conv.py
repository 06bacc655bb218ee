"""Triton kernels for multi-dilation graph convolution (STC-Net's DK-GC).

Conventions: x ``[N, C_in, T, V]`` (batch, channels, frames, joints), weight ``W[k, o, c]``
``[K, C_out, C_in]`` shared by every dilation, adjacency ``A[d, k, v, w]`` ``[D, K, V, V]``
carrying source joint ``v`` to target joint ``w`` in subset ``k`` of dilation ``d``. With
``Z[n, k, o, t, v] = sum_c W[k, o, c] x[n, c, t, v]``::

    sum:    y[n, o, t, w]             = sum_d sum_k sum_v Z[n, k, o, t, v] A[d, k, v, w] + b[o]
    concat: y[n, d * C_out + o, t, w] = sum_k sum_v Z[n, k, o, t, v] A[d, k, v, w]
                                        + b[d * C_out + o]

The sum reduction is graph convolution with ``A_sum[k] = sum_d A[d, k]``: it runs the
:mod:`skelops.triton.graph_conv` kernels, and the gradient of ``A_sum`` reaches every dilation.

The concat reduction mixes the channels once for all dilations. Its tiles index the dilations
and target joints together as columns ``(d, w)`` (``BLOCK_D`` dilations of ``BLOCK_J`` joints),
so that one ``tl.dot`` aggregates into, or reduces over, every dilation:

* ``_concat_fwd_kernel``: per (sample, block of output channels, block of frames, tile of
  target joints, group of dilations): for each k, ``Z_k = W_k @ x`` (``[BLOCK_O, BLOCK_T *
  BLOCK_J]``, reshaped to rows ``(o, t)``), then ``acc[(o, t), (d, w)] += Z_k @ A[:, k]``.
* dx and dW run graph_conv's kernels with D branches (as the CUDA side's ``Branches``):
  ``H_k[(o, t), v] = sum_{(d, w)} dY[(o, t), (d, w)] A[d, k, v, w]`` (every dilation summed by
  the dot), then ``dx += W_k^T @ H_k`` and ``dW[k, o, c] = sum_{n, t, v} H_k[n, o, t, v]
  x[n, c, t, v]``.
* ``_concat_dadjacency_kernel``: ``dA[d, k, v, w] = sum_{n, o, t} Z_k[n, o, t, v]
  dY[n, d * C_out + o, t, w]``, ``Z_k`` recomputed once per row for every dilation.

The reductions (dW, dA) split their rows over programs and add with fp32 atomics. Every
``tl.dot`` dimension is at least 16 (joints padded to ``BLOCK_J >= 16``, channel blocks >= 16).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import (
    Blocks,
    acc_dtypes,
    channel_mix,
    check_tensors,
    clamp_pow2,
    device_guard,
    dot_kwargs,
    interpreter_lacks,
    joint_tile,
    joint_warps,
    next_pow2,
    split_rows,
    upcast,
)
from .graph_conv import graph_conv_backward, graph_conv_forward, launch_aggregate, launch_dweight

__all__ = ["multi_dilation_graph_conv_forward", "multi_dilation_graph_conv_backward"]


# --------------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------------


@triton.jit
def _concat_fwd_kernel(
    x_ptr, w_ptr, a_ptr, bias_ptr, y_ptr,
    C_in, C_out, T, V, K, D,
    sx_n, sx_c, sx_t, sx_v,
    sw_k, sw_o, sw_c,
    sa_d, sa_k, sa_v, sa_w,
    sy_n, sy_c, sy_t, sy_w,
    num_o_blocks, num_w_tiles, num_d_groups, num_t_blocks,
    BLOCK_O: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_T: tl.constexpr,
    BLOCK_J: tl.constexpr, BLOCK_D: tl.constexpr, HAS_BIAS: tl.constexpr,
    PRECISION: tl.constexpr, ACC_DTYPE: tl.constexpr,
):  # fmt: skip
    """y[n, d C_out + o, t, w] = sum_{k, v} (W_k x)[n, o, t, v] A[d, k, v, w] + bias[d C_out + o].

    Output-channel blocks vary fastest so neighbouring programs share the x tile in L2.
    """
    pid = tl.program_id(0)
    o_block = pid % num_o_blocks
    rest = pid // num_o_blocks
    w_tile = rest % num_w_tiles
    rest = rest // num_w_tiles
    d_group = rest % num_d_groups
    rest = rest // num_d_groups
    t_block = rest % num_t_blocks
    n = (rest // num_t_blocks).to(tl.int64)

    dtype = w_ptr.dtype.element_ty
    j = tl.arange(0, BLOCK_J)
    o_idx = o_block * BLOCK_O + tl.arange(0, BLOCK_O)
    t0 = t_block * BLOCK_T
    # Columns of the mix are (frame, source joint) pairs, frame-major, so that Z reshapes to
    # rows (o, t) x columns v.
    q = tl.arange(0, BLOCK_T * BLOCK_J)
    q_t = t0 + q // BLOCK_J
    q_j = q % BLOCK_J
    # Columns of the aggregation are (dilation, target joint) pairs, dilation-major.
    dw = tl.arange(0, BLOCK_D * BLOCK_J)
    col_d = d_group * BLOCK_D + dw // BLOCK_J
    col_w = w_tile * BLOCK_J + dw % BLOCK_J

    x_base = x_ptr + n * sx_n
    acc = tl.zeros([BLOCK_O * BLOCK_T, BLOCK_D * BLOCK_J], dtype=ACC_DTYPE)
    for k in range(0, K):
        for v0 in range(0, V, BLOCK_J):
            z = channel_mix(  # W_k x: [o, (t, v)]
                w_ptr + k * sw_k, o_idx, x_base + q_t * sx_t + (v0 + q_j) * sx_v,
                (q_t < T) & ((v0 + q_j) < V), C_out, C_in, sw_o, sw_c, sx_c,
                BLOCK_O, BLOCK_C, BLOCK_T * BLOCK_J, PRECISION, ACC_DTYPE,
            )  # fmt: skip
            z = tl.reshape(z.to(dtype), [BLOCK_O * BLOCK_T, BLOCK_J])
            a_tile = tl.load(  # [v, (d, w)]
                a_ptr
                + col_d[None, :] * sa_d
                + k * sa_k
                + (v0 + j)[:, None] * sa_v
                + col_w[None, :] * sa_w,
                mask=((v0 + j)[:, None] < V) & (col_d[None, :] < D) & (col_w[None, :] < V),
                other=0.0,
            )
            acc = tl.dot(z, a_tile, acc, input_precision=PRECISION, out_dtype=ACC_DTYPE)

    rows = tl.arange(0, BLOCK_O * BLOCK_T)
    row_o = o_block * BLOCK_O + rows // BLOCK_T
    row_t = t0 + rows % BLOCK_T
    channel = col_d[None, :] * C_out + row_o[:, None]
    out_ok = (
        (row_o[:, None] < C_out)
        & (row_t[:, None] < T)
        & (col_d[None, :] < D)
        & (col_w[None, :] < V)
    )
    if HAS_BIAS:
        acc += tl.load(bias_ptr + channel, mask=out_ok, other=0.0).to(ACC_DTYPE)
    y_ptrs = y_ptr + n * sy_n + channel * sy_c + row_t[:, None] * sy_t + col_w[None, :] * sy_w
    tl.store(y_ptrs, acc.to(y_ptr.dtype.element_ty), mask=out_ok)


@triton.jit
def _concat_dadjacency_kernel(
    x_ptr, dy_ptr, w_ptr, da_ptr,
    C_in, C_out, T, V, K, D,
    sx_n, sx_c, sx_t, sx_v,
    sd_n, sd_c, sd_t, sd_w,
    sw_k, sw_o, sw_c,
    num_v_tiles, num_w_tiles, num_d_groups, num_t_blocks, rows_total, rows_per_split,
    BLOCK_O: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_T: tl.constexpr,
    BLOCK_J: tl.constexpr, BLOCK_D: tl.constexpr,
    PRECISION: tl.constexpr, ACC_DTYPE: tl.constexpr,
):  # fmt: skip
    """dA[d, k, v, w] += sum over this split's rows of Z_k[n, o, t, v] dY[n, d C_out + o, t, w].

    ``da_ptr`` is a zeroed contiguous ``[D, K, V, V]`` buffer in the accumulation dtype.
    """
    pid = tl.program_id(0)
    v_tile = pid % num_v_tiles
    rest = pid // num_v_tiles
    w_tile = rest % num_w_tiles
    rest = rest // num_w_tiles
    d_group = rest % num_d_groups
    rest = rest // num_d_groups
    k = rest % K
    split = rest // K

    dtype = x_ptr.dtype.element_ty
    v_idx = v_tile * BLOCK_J + tl.arange(0, BLOCK_J)
    o_off = tl.arange(0, BLOCK_O)
    q = tl.arange(0, BLOCK_T * BLOCK_J)
    q_dt = q // BLOCK_J
    q_v = v_tile * BLOCK_J + q % BLOCK_J
    rows = tl.arange(0, BLOCK_O * BLOCK_T)
    row_dt = rows % BLOCK_T
    dw = tl.arange(0, BLOCK_D * BLOCK_J)
    col_d = d_group * BLOCK_D + dw // BLOCK_J
    col_w = w_tile * BLOCK_J + dw % BLOCK_J
    col_ok = (col_d < D) & (col_w < V)

    acc = tl.zeros([BLOCK_J, BLOCK_D * BLOCK_J], dtype=ACC_DTYPE)
    row_start = split * rows_per_split
    row_end = tl.minimum(row_start + rows_per_split, rows_total)
    for r in range(row_start, row_end):
        n = (r // num_t_blocks).to(tl.int64)
        t0 = (r % num_t_blocks) * BLOCK_T
        x_base = x_ptr + n * sx_n
        for o0 in range(0, C_out, BLOCK_O):
            z = channel_mix(  # W_k x: [o, (t, v)]
                w_ptr + k * sw_k, o0 + o_off, x_base + (t0 + q_dt) * sx_t + q_v * sx_v,
                ((t0 + q_dt) < T) & (q_v < V), C_out, C_in, sw_o, sw_c, sx_c,
                BLOCK_O, BLOCK_C, BLOCK_T * BLOCK_J, PRECISION, ACC_DTYPE,
            )  # fmt: skip
            z_t = tl.trans(tl.reshape(z.to(dtype), [BLOCK_O * BLOCK_T, BLOCK_J]))  # [v, (o, t)]
            row_o = o0 + rows // BLOCK_T
            row_t = t0 + row_dt
            dy = tl.load(  # [(o, t), (d, w)]
                dy_ptr
                + n * sd_n
                + (col_d[None, :] * C_out + row_o[:, None]) * sd_c
                + row_t[:, None] * sd_t
                + col_w[None, :] * sd_w,
                mask=(row_o[:, None] < C_out) & (row_t[:, None] < T) & col_ok[None, :],
                other=0.0,
            )
            acc = tl.dot(z_t, dy, acc, input_precision=PRECISION, out_dtype=ACC_DTYPE)

    da_ptrs = (
        da_ptr + ((col_d[None, :].to(tl.int64) * K + k) * V + v_idx[:, None]) * V + col_w[None, :]
    )
    tl.atomic_add(da_ptrs, acc, mask=(v_idx[:, None] < V) & col_ok[None, :], sem="relaxed")


# --------------------------------------------------------------------------------------------
# Launch helpers
# --------------------------------------------------------------------------------------------

# The (dilation, joint) columns of a tile: at most this many, so the [(o, t), (d, w)] tiles
# stay the size of graph_conv's [o, (t, w)] ones; more dilations take more program groups.
_MAX_DILATION_COLUMNS = 128


def _blocks(c_in: int, c_out: int, t: int, v: int, d: int) -> Blocks:
    """Tiles [(o, t), (d, w)] of at most 64 x 128 (V = 25, D = 2: 32 channels x 2 frames by
    2 dilations x 32 joints), channel blocks of 16-32."""
    block_j = joint_tile(v)
    block_d = max(1, min(next_pow2(d), _MAX_DILATION_COLUMNS // block_j))
    block_t = max(1, min(next_pow2(t), 64 // block_j))
    block_o = clamp_pow2(c_out, 16, 32)
    block_c = clamp_pow2(c_in, 16, 32)
    warps = joint_warps(block_t, block_j)
    return Blocks(block_o, block_c, block_t, block_j, warps, block_d=block_d)


def _check_inputs(
    x: torch.Tensor,
    weight: torch.Tensor,
    adjacency: torch.Tensor,
    bias: torch.Tensor | None,
    concat: bool,
) -> None:
    if x.dim() != 4 or weight.dim() != 3 or adjacency.dim() != 4:
        raise ValueError(
            "x, weight and adjacency must be [N, C_in, T, V], [K, C_out, C_in] and "
            f"[D, K, V, V]; got {tuple(x.shape)}, {tuple(weight.shape)}, {tuple(adjacency.shape)}"
        )
    _, c_in, _, v = x.shape
    k, c_out, w_c_in = weight.shape
    d = adjacency.shape[0]
    if w_c_in != c_in or tuple(adjacency.shape[1:]) != (k, v, v) or d == 0:
        raise ValueError(
            f"weight must be [K, C_out, {c_in}] and adjacency [D >= 1, K, {v}, {v}]; got "
            f"{tuple(weight.shape)} and {tuple(adjacency.shape)}"
        )
    expected_bias = (d * c_out,) if concat else (c_out,)
    if bias is not None and tuple(bias.shape) != expected_bias:
        raise ValueError(f"bias must be None or {list(expected_bias)}; got {tuple(bias.shape)}")
    check_tensors("multi_dilation_graph_conv", x, weight=weight, adjacency=adjacency, bias=bias)


def _summed_adjacency(adjacency: torch.Tensor) -> torch.Tensor:
    acc_torch, _ = acc_dtypes(adjacency.dtype)
    return adjacency.sum(dim=0, dtype=acc_torch).to(adjacency.dtype)


def _launch_forward(
    x: torch.Tensor, weight: torch.Tensor, adjacency: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """The concat forward: ``[N, D * C_out, T, V]`` in x's dtype."""
    n, c_in, t, v = x.shape
    k, c_out, _ = weight.shape
    d = adjacency.shape[0]
    y = torch.empty((n, d * c_out, t, v), device=x.device, dtype=x.dtype)
    blocks = _blocks(c_in, c_out, t, v, d)
    num_o_blocks = triton.cdiv(c_out, blocks.block_o)
    num_w_tiles = triton.cdiv(v, blocks.block_j)
    num_d_groups = triton.cdiv(d, blocks.block_d)
    num_t_blocks = triton.cdiv(t, blocks.block_t)
    grid = (n * num_t_blocks * num_d_groups * num_w_tiles * num_o_blocks,)
    with device_guard(x.device):
        _concat_fwd_kernel[grid](
            x, weight, adjacency, y if bias is None else bias, y,
            c_in, c_out, t, v, k, d,
            *x.stride(),
            *weight.stride(),
            *adjacency.stride(),
            *y.stride(),
            num_o_blocks, num_w_tiles, num_d_groups, num_t_blocks,
            HAS_BIAS=bias is not None,
            **dot_kwargs(x.dtype),
            **blocks.launch_kwargs(),
        )  # fmt: skip
    return y


def _launch_dx(
    grad_out: torch.Tensor, weight: torch.Tensor, adjacency: torch.Tensor
) -> torch.Tensor:
    """dx = sum_k W_k^T H_k, H_k = sum_d dY_d A[d, k]^T: graph_conv's aggregation kernel over D
    branches (grad_out's dilation-major channel groups), with transposed views of W and A."""
    _, c_out, c_in = weight.shape
    _, _, t, v = grad_out.shape
    blocks = _blocks(c_in, c_out, t, v, adjacency.shape[0])
    # The output tile is [c, (t, v)], reduced over (o, t) rows of at most 32 channels: graph_conv's
    # kernel calls x's channels BLOCK_O (16-64 here) and grad_out's BLOCK_C.
    blocks = blocks._replace(block_o=clamp_pow2(c_in, 16, 64), block_c=blocks.block_o)
    return launch_aggregate(
        grad_out,
        weight.transpose(1, 2),
        adjacency.transpose(-1, -2),
        None,
        branched=True,
        blocks=blocks,
    )


def _launch_dadjacency(
    grad_out: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, adjacency: torch.Tensor
) -> torch.Tensor:
    """The concat dA as a ``[D, K, V, V]`` buffer in the accumulation dtype."""
    n, c_in, t, v = x.shape
    k, c_out, _ = weight.shape
    d = adjacency.shape[0]
    acc_torch, _ = acc_dtypes(x.dtype)
    da = torch.zeros((d, k, v, v), device=x.device, dtype=acc_torch)
    blocks = _blocks(c_in, c_out, t, v, d)
    num_j_tiles = triton.cdiv(v, blocks.block_j)
    num_d_groups = triton.cdiv(d, blocks.block_d)
    num_t_blocks = triton.cdiv(t, blocks.block_t)
    rows = n * num_t_blocks
    base = k * num_d_groups * num_j_tiles * num_j_tiles
    rows_per_split, num_splits = split_rows(rows, base, x.device)
    with device_guard(x.device):
        _concat_dadjacency_kernel[(base * num_splits,)](
            x, grad_out, weight, da,
            c_in, c_out, t, v, k, d,
            *x.stride(),
            *grad_out.stride(),
            *weight.stride(),
            num_j_tiles, num_j_tiles, num_d_groups, num_t_blocks, rows, rows_per_split,
            **dot_kwargs(x.dtype),
            **blocks.launch_kwargs(),
        )  # fmt: skip
    return da


# --------------------------------------------------------------------------------------------
# Public launchers
# --------------------------------------------------------------------------------------------


def multi_dilation_graph_conv_forward(
    x: torch.Tensor,
    weight: torch.Tensor,
    adjacency: torch.Tensor,
    bias: torch.Tensor | None = None,
    concat: bool = False,
) -> torch.Tensor:
    """Multi-dilation graph convolution, Triton backend.

    Args:
        x: ``[N, C_in, T, V]``, any strides; float32, float16 or bfloat16 (under the
            interpreter also float64, and bfloat16 is computed in float32 there).
        weight: ``[K, C_out, C_in]``, dtype of x, shared by every dilation.
        adjacency: ``[D, K, V, V]``, dtype of x; ``A[d, k, v, w]`` carries source joint v to
            target joint w in subset k of dilation d.
        bias: None, or ``[C_out]`` (sum) / ``[D * C_out]`` (concat), added after aggregation.
        concat: concatenate the dilation branches along channels (dilation-major) instead of
            summing them.

    Returns:
        contiguous ``[N, C_out, T, V]`` (sum) or ``[N, D * C_out, T, V]`` (concat) in the dtype
        of x (accumulated in fp32).
    """
    _check_inputs(x, weight, adjacency, bias, concat)
    if not concat:
        return graph_conv_forward(x, weight, _summed_adjacency(adjacency), bias)
    if interpreter_lacks(x.dtype):
        return _launch_forward(*upcast(x, weight, adjacency, bias)).to(x.dtype)
    return _launch_forward(x, weight, adjacency, bias)


def multi_dilation_graph_conv_backward(
    grad_out: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    adjacency: torch.Tensor,
    bias: torch.Tensor | None,
    concat: bool,
    output_mask: list[bool],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of :func:`multi_dilation_graph_conv_forward`.

    Concat, with ``dY_d = grad_out[:, d * C_out : (d + 1) * C_out]`` and
    ``H_k = sum_d dY_d A[d, k]^T`` (over target joints)::

        dx[n, c, t, v]   = sum_k sum_o W[k, o, c] H_k[n, o, t, v]
        dW[k, o, c]      = sum_{n, t, v} H_k[n, o, t, v] x[n, c, t, v]
        dA[d, k, v, w]   = sum_{n, o, t} (W_k x)[n, o, t, v] dY_d[n, o, t, w]
        dbias[d C_out + o] = sum_{n, t, w} dY_d[n, o, t, w]

    Sum: graph_conv's gradients for ``A_sum = sum_d A[d]``, with ``dA[d] = dA_sum`` for every d.

    Args:
        output_mask: four bools selecting (dx, dweight, dadjacency, dbias).

    Returns:
        ``(dx, dweight, dadjacency, dbias)`` shaped and typed like their inputs; a gradient
        that is masked out, or dbias when bias is None, is ``x.new_empty(0)``.
    """
    _check_inputs(x, weight, adjacency, bias, concat)
    if len(output_mask) != 4:
        raise ValueError(f"output_mask must have 4 entries; got {len(output_mask)}")
    n, c_in, t, v = x.shape
    k, c_out, _ = weight.shape
    d = adjacency.shape[0]
    expected = (n, d * c_out if concat else c_out, t, v)
    if tuple(grad_out.shape) != expected:
        raise ValueError(f"grad_out must be {list(expected)}; got {tuple(grad_out.shape)}")
    if grad_out.dtype != x.dtype or grad_out.device != x.device:
        raise TypeError(
            f"grad_out must match x in dtype and device ({x.dtype}, {x.device}); got "
            f"({grad_out.dtype}, {grad_out.device})"
        )
    want_dx, want_dw, want_da, want_db = (bool(m) for m in output_mask)
    if not concat:
        dx, dw, da_sum, db = graph_conv_backward(
            grad_out, x, weight, _summed_adjacency(adjacency), bias, output_mask
        )
        da = da_sum.expand(d, k, v, v).contiguous() if want_da else da_sum
        return dx, dw, da, db
    if interpreter_lacks(x.dtype):
        grads = multi_dilation_graph_conv_backward(
            *upcast(grad_out, x, weight, adjacency, bias), concat=True, output_mask=output_mask
        )
        return tuple(g.to(x.dtype) for g in grads)  # type: ignore[return-value]

    acc_torch, _ = acc_dtypes(x.dtype)
    # Distinct empties: outputs of a torch.library custom op must not alias each other.
    dx, dw, da, db = (x.new_empty(0) for _ in range(4))
    if want_dx:
        dx = _launch_dx(grad_out, weight, adjacency)
    if want_dw:
        # dW: the [(o, t), (d, w)] dY tiles of _blocks, with x's channels in blocks of 16-64.
        blocks = _blocks(c_in, c_out, t, v, d)._replace(block_c=clamp_pow2(c_in, 16, 64))
        dw = launch_dweight(x, grad_out, adjacency, k, branched=True, blocks=blocks)
        dw = dw.to(weight.dtype)
    if want_da:
        da = _launch_dadjacency(grad_out, x, weight, adjacency).to(adjacency.dtype)
    if want_db and bias is not None:
        db = grad_out.sum(dim=(0, 2, 3), dtype=acc_torch).to(bias.dtype)
    return dx, dw, da, db
