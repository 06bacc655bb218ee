"""Triton kernels for fused graph convolution (the spatial block of ST-GCN).

Conventions: skeleton tensors are ``[N, C, T, V]`` (batch, channels, frames, joints); the
adjacency ``A[k, v, w]`` carries source joint ``v`` to target joint ``w`` (``y[..., w] =
sum_v x[..., v] * A[k, v, w]``), shared ``[K, V, V]`` or per sample ``[N, K, V, V]``; the weight
is ``W[k, o, c]``, ``[K, C_out, C_in]``.

Forward::

    y[n, o, t, w] = sum_k sum_c sum_v W[k, o, c] * x[n, c, t, v] * A[n|., k, v, w] + bias term

where the bias term is ``bias[o]`` for a ``[C_out]`` bias (added after aggregation) or
``sum_k bias[k, o] * sum_v A[n|., k, v, w]`` for a ``[K, C_out]`` bias (ST-GCN's 1x1-conv bias,
added before aggregation, hence scaled by the column sums of ``A``).

Kernels (all accumulate in fp32, or fp64 for fp64 inputs under the interpreter):

* ``_graph_conv_fwd_kernel``: one program per (sample n, block of output channels, block of
  frames, tile of target joints). For each block of input channels it loads
  ``x[BLOCK_C * BLOCK_T, BLOCK_J]`` once and, for each k, computes ``Z = x @ A_k`` (joint
  aggregation, ``[BLOCK_C * BLOCK_T, BLOCK_J]``), reshapes it to ``[BLOCK_C, BLOCK_T * BLOCK_J]``
  and accumulates ``W_k[BLOCK_O, BLOCK_C] @ Z`` into ``acc[BLOCK_O, BLOCK_T * BLOCK_J]``. The
  ``K * C_out * T * V`` intermediate of ``conv1x1 + einsum`` never reaches global memory. The same
  kernel computes ``dx`` from ``grad_out`` with transposed views of ``W`` and ``A`` (strides only).
* ``_graph_conv_dweight_kernel``:
  ``dW[k, o, c] = sum_{n,t,v} (dY A_k^T)[n, o, t, v] x[n, c, t, v]``,
  one program per (k, block of o, block of c, split of the (n, frame-block) rows), fp32 atomics.
* ``_graph_conv_dadjacency_kernel``:
  ``dA[k, v, w] = sum_{n,c,t} x[n, c, t, v] (W_k^T dY)[n, c, t, w]``,
  one program per (k, tile of v, tile of w, split of the rows[, sample when A is per sample]).

The forward and dW kernels also take D branches (``BLOCK_D`` of them per tile, as the CUDA
kernels' ``Branches``): x's channels then hold D dilation-major groups, each aggregated by its
own adjacency and summed, which is multi_dilation_graph_conv's concat dx and dW. graph_conv
launches them with ``BLOCK_D = 1`` and D = 1 (a constant once Triton specialises it), which
compile the branch offsets away.
The joint-aggregation and channel-mix loops are :mod:`skelops.triton._common`'s
``aggregate`` and ``channel_mix``.

Every ``tl.dot`` dimension is at least 16 (the GPU minimum; the interpreter would accept less):
joints are padded to ``BLOCK_J >= 16`` and channel blocks are at least 16, with masks.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import (
    Blocks,
    acc_dtypes,
    aggregate,
    channel_mix,
    check_tensors,
    clamp_pow2,
    device_guard,
    dot_kwargs,
    dot_precision,
    interpreter_lacks,
    joint_tile,
    joint_warps,
    next_pow2,
    split_rows,
    upcast,
)

__all__ = ["graph_conv_forward", "graph_conv_backward"]


# --------------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------------


@triton.jit
def _graph_conv_fwd_kernel(
    x_ptr, w_ptr, a_ptr, bias_ptr, y_ptr,
    C_in, C_out, T, V, K, D,
    sx_n, sx_c, sx_t, sx_v,
    sw_k, sw_o, sw_c,
    sa_n, sa_d, sa_k, sa_v, sa_w,
    sb_n, sb_o, sb_w,
    sy_n, sy_o, sy_t, sy_w,
    num_o_blocks, num_w_tiles, num_t_blocks,
    BLOCK_O: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_T: tl.constexpr,
    BLOCK_J: tl.constexpr, BLOCK_D: tl.constexpr, SINGLE_TILE: tl.constexpr,
    HAS_BIAS: tl.constexpr, PRECISION: tl.constexpr, ACC_DTYPE: tl.constexpr,
):  # fmt: skip
    """y[n, o, t, w] = sum_{d,k,c,v} W[k, o, c] x[n, d C_in + c, t, v] A[n|d|., k, v, w]
    + bias[n|., o, w].

    D = 1 for graph_conv; D > 1 (multi_dilation_graph_conv's concat dx) sums D branches, x's
    dilation-major channel groups, each aggregated by its own adjacency. ``bias_ptr`` is the bias
    term already folded to ``[N|1, C_out, V]`` (any strides). Output-channel blocks vary fastest
    so neighbouring programs share the x tile in L2.
    """
    pid = tl.program_id(0)
    o_block = pid % num_o_blocks
    rest = pid // num_o_blocks
    w_tile = rest % num_w_tiles
    rest = rest // num_w_tiles
    t_block = rest % num_t_blocks
    n = (rest // num_t_blocks).to(tl.int64)

    dtype = w_ptr.dtype.element_ty
    w_idx = w_tile * BLOCK_J + tl.arange(0, BLOCK_J)
    o_idx = o_block * BLOCK_O + tl.arange(0, BLOCK_O)
    c_off = tl.arange(0, BLOCK_C)
    # Rows of the x tile are (channel, frame) pairs, channel-major, so that the aggregated tile
    # [BLOCK_C * BLOCK_T, BLOCK_J] reshapes to [BLOCK_C, BLOCK_T * BLOCK_J] for the channel mix.
    rows = tl.arange(0, BLOCK_C * BLOCK_T)
    row_c = rows // BLOCK_T
    row_t = t_block * BLOCK_T + rows % BLOCK_T
    # Accumulator columns are (frame, joint) pairs, frame-major.
    cols = tl.arange(0, BLOCK_T * BLOCK_J)
    col_t = t_block * BLOCK_T + cols // BLOCK_J
    col_w = w_tile * BLOCK_J + cols % BLOCK_J

    x_base = x_ptr + n * sx_n
    a_base = a_ptr + n * sa_n
    acc = tl.zeros([BLOCK_O, BLOCK_T * BLOCK_J], dtype=ACC_DTYPE)
    # One flat loop over (channel block, k), k fastest: with a single joint tile it is the
    # innermost loop, so the compiler can prefetch the next x / A_k / W_k tiles (num_stages);
    # the x tile repeats for K consecutive iterations and comes from L1/L2.
    for i in range(0, tl.cdiv(C_in, BLOCK_C) * K):
        c0 = (i // K) * BLOCK_C
        k = i % K
        z = aggregate(
            x_base + (c0 + row_c) * sx_c + row_t * sx_t, ((c0 + row_c) < C_in) & (row_t < T),
            a_base + k * sa_k, w_idx, C_in, V, D, sx_c, sx_v, sa_d, sa_v, sa_w,
            BLOCK_C * BLOCK_T, BLOCK_J, BLOCK_D, SINGLE_TILE, PRECISION, ACC_DTYPE,
        )  # fmt: skip
        z = tl.reshape(z.to(dtype), [BLOCK_C, BLOCK_T * BLOCK_J])
        w_tile_k = tl.load(
            w_ptr + k * sw_k + o_idx[:, None] * sw_o + (c0 + c_off)[None, :] * sw_c,
            mask=(o_idx[:, None] < C_out) & ((c0 + c_off)[None, :] < C_in),
            other=0.0,
        )
        acc = tl.dot(w_tile_k, z, acc, input_precision=PRECISION, out_dtype=ACC_DTYPE)

    out_ok = (o_idx[:, None] < C_out) & (col_t[None, :] < T) & (col_w[None, :] < V)
    if HAS_BIAS:
        acc += tl.load(
            bias_ptr + n * sb_n + o_idx[:, None] * sb_o + col_w[None, :] * sb_w,
            mask=out_ok,
            other=0.0,
        ).to(ACC_DTYPE)
    y_ptrs = (
        y_ptr + n * sy_n + o_idx[:, None] * sy_o + col_t[None, :] * sy_t + col_w[None, :] * sy_w
    )
    tl.store(y_ptrs, acc.to(y_ptr.dtype.element_ty), mask=out_ok)


@triton.jit
def _graph_conv_dweight_kernel(
    x_ptr, dy_ptr, a_ptr, dw_ptr,
    C_in, C_out, T, V, D,
    sx_n, sx_c, sx_t, sx_v,
    sd_n, sd_o, sd_t, sd_w,
    sa_n, sa_d, sa_k, sa_v, sa_w,
    num_o_blocks, num_c_blocks, num_t_blocks, K, rows_total, rows_per_split,
    BLOCK_O: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_T: tl.constexpr,
    BLOCK_J: tl.constexpr, BLOCK_D: tl.constexpr,
    PRECISION: tl.constexpr, ACC_DTYPE: tl.constexpr,
):  # fmt: skip
    """dW[k, o, c] += sum over this split's (n, frame-block) rows of H_k[n, o, t, v] x[n, c, t, v],
    ``H_k = sum_d dY_d A[n|d|., k]^T`` (D = 1 for graph_conv; D > 1 for the dilation-major
    channel groups of multi_dilation_graph_conv's concat output).

    ``dw_ptr`` is a zeroed contiguous ``[K, C_out, C_in]`` buffer in the accumulation dtype.
    """
    pid = tl.program_id(0)
    o_block = pid % num_o_blocks
    rest = pid // num_o_blocks
    c_block = rest % num_c_blocks
    rest = rest // num_c_blocks
    k = rest % K
    split = rest // K

    dtype = x_ptr.dtype.element_ty
    j = tl.arange(0, BLOCK_J)
    o_idx = o_block * BLOCK_O + tl.arange(0, BLOCK_O)
    c_idx = c_block * BLOCK_C + tl.arange(0, BLOCK_C)
    # Rows of the dY tile are (out channel, frame) pairs, channel-major.
    rows = tl.arange(0, BLOCK_O * BLOCK_T)
    row_o = o_block * BLOCK_O + rows // BLOCK_T
    row_dt = rows % BLOCK_T
    # Rows of the transposed x tile are (frame, joint) pairs, frame-major, matching the columns
    # of the reshaped H_k tile.
    q = tl.arange(0, BLOCK_T * BLOCK_J)
    q_dt = q // BLOCK_J
    q_v = q % BLOCK_J

    acc = tl.zeros([BLOCK_O, BLOCK_C], dtype=ACC_DTYPE)
    row_start = split * rows_per_split
    row_end = tl.minimum(row_start + rows_per_split, rows_total)
    for r in range(row_start, row_end):
        n = (r // num_t_blocks).to(tl.int64)
        t0 = (r % num_t_blocks) * BLOCK_T
        dy_rows = dy_ptr + n * sd_n + row_o * sd_o + (t0 + row_dt) * sd_t
        dy_row_ok = (row_o < C_out) & (t0 + row_dt < T)
        a_base = a_ptr + n * sa_n + k * sa_k
        x_base = x_ptr + n * sx_n
        for v0 in range(0, V, BLOCK_J):
            # A^T: the target joints w of dY are the aggregated ones, v the kept ones.
            p = aggregate(
                dy_rows, dy_row_ok, a_base, v0 + j, C_out, V, D, sd_o, sd_w, sa_d, sa_w, sa_v,
                BLOCK_O * BLOCK_T, BLOCK_J, BLOCK_D, False, PRECISION, ACC_DTYPE,
            )  # fmt: skip
            p = tl.reshape(p.to(dtype), [BLOCK_O, BLOCK_T * BLOCK_J])
            x_t = tl.load(  # x^T tile: [(t, v), c]
                x_base
                + (t0 + q_dt)[:, None] * sx_t
                + (v0 + q_v)[:, None] * sx_v
                + c_idx[None, :] * sx_c,
                mask=((t0 + q_dt)[:, None] < T)
                & ((v0 + q_v)[:, None] < V)
                & (c_idx[None, :] < C_in),
                other=0.0,
            )
            acc = tl.dot(p, x_t, acc, input_precision=PRECISION, out_dtype=ACC_DTYPE)

    dw_ptrs = dw_ptr + k * C_out * C_in + o_idx[:, None] * C_in + c_idx[None, :]
    tl.atomic_add(
        dw_ptrs, acc, mask=(o_idx[:, None] < C_out) & (c_idx[None, :] < C_in), sem="relaxed"
    )


@triton.jit
def _graph_conv_dadjacency_kernel(
    x_ptr, dy_ptr, w_ptr, da_ptr,
    C_in, C_out, T, V,
    sx_n, sx_c, sx_t, sx_v,
    sd_n, sd_o, sd_t, sd_w,
    sw_k, sw_o, sw_c,
    num_v_tiles, num_w_tiles, K, num_splits, num_t_blocks, rows_total, rows_per_split,
    BLOCK_O: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_T: tl.constexpr,
    BLOCK_J: tl.constexpr, PRECISION: tl.constexpr, ACC_DTYPE: tl.constexpr,
):  # fmt: skip
    """dA[g, k, v, w] += sum over this split's rows of x[n, c, t, v] (W_k^T dY)[n, c, t, w].

    ``da_ptr`` is a zeroed contiguous ``[G, K, V, V]`` buffer in the accumulation dtype. For a
    shared adjacency G = 1 and the rows run over all (n, frame-block) pairs; for a per-sample
    adjacency G = N, group g is sample g and the rows run over its frame blocks only.
    """
    pid = tl.program_id(0)
    v_tile = pid % num_v_tiles
    rest = pid // num_v_tiles
    w_tile = rest % num_w_tiles
    rest = rest // num_w_tiles
    k = rest % K
    rest = rest // K
    split = rest % num_splits
    group = rest // num_splits

    dtype = x_ptr.dtype.element_ty
    j = tl.arange(0, BLOCK_J)
    v_idx = v_tile * BLOCK_J + j
    w_idx = w_tile * BLOCK_J + j
    c_off = tl.arange(0, BLOCK_C)
    # Columns of the dY tile are (frame, joint) pairs, frame-major.
    cols = tl.arange(0, BLOCK_T * BLOCK_J)
    col_dt = cols // BLOCK_J
    col_w = w_tile * BLOCK_J + cols % BLOCK_J
    # Columns of the transposed x tile are (channel, frame) pairs, channel-major, matching the
    # rows of the reshaped W_k^T dY tile.
    m = tl.arange(0, BLOCK_C * BLOCK_T)
    m_c = m // BLOCK_T
    m_dt = m % BLOCK_T

    acc = tl.zeros([BLOCK_J, BLOCK_J], dtype=ACC_DTYPE)
    row_start = split * rows_per_split
    row_end = tl.minimum(row_start + rows_per_split, rows_total)
    for r in range(row_start, row_end):
        n = (group + r // num_t_blocks).to(tl.int64)
        t0 = (r % num_t_blocks) * BLOCK_T
        dy_cols = dy_ptr + n * sd_n + (t0 + col_dt) * sd_t + col_w * sd_w
        dy_col_ok = (t0 + col_dt < T) & (col_w < V)
        x_base = x_ptr + n * sx_n
        for c0 in range(0, C_in, BLOCK_C):
            g = channel_mix(  # W_k^T dY: [c, (t, w)]
                w_ptr + k * sw_k, c0 + c_off, dy_cols, dy_col_ok, C_in, C_out, sw_c, sw_o, sd_o,
                BLOCK_C, BLOCK_O, BLOCK_T * BLOCK_J, PRECISION, ACC_DTYPE,
            )  # fmt: skip
            g = tl.reshape(g.to(dtype), [BLOCK_C * BLOCK_T, BLOCK_J])
            x_t = tl.load(  # x^T tile: [v, (c, t)]
                x_base
                + v_idx[:, None] * sx_v
                + (c0 + m_c)[None, :] * sx_c
                + (t0 + m_dt)[None, :] * sx_t,
                mask=(v_idx[:, None] < V)
                & ((c0 + m_c)[None, :] < C_in)
                & ((t0 + m_dt)[None, :] < T),
                other=0.0,
            )
            acc = tl.dot(x_t, g, acc, input_precision=PRECISION, out_dtype=ACC_DTYPE)

    da_ptrs = da_ptr + (group.to(tl.int64) * K + k) * V * V + v_idx[:, None] * V + w_idx[None, :]
    tl.atomic_add(da_ptrs, acc, mask=(v_idx[:, None] < V) & (w_idx[None, :] < V), sem="relaxed")


# --------------------------------------------------------------------------------------------
# Launch helpers
# --------------------------------------------------------------------------------------------


# Block sizes below were chosen by compiling for sm_90 offline and reading `ptxas -v`: with
# them nothing spills (beyond a few bytes on tiny shapes) for fp32 (ieee and tf32), fp16 and
# bf16 at V = 1, 7, 17, 25, 33, 64, 100 and 1024. Four warps, or BLOCK_C = 32 on the fp32 FMA
# ("ieee") path, fell off a cliff into local memory (kilobytes of spills).


def _aggregate_blocks(c_in: int, c_out: int, t: int, v: int, precision: str) -> Blocks:
    """Forward / dx: acc [BLOCK_O, BLOCK_T * BLOCK_J] with BLOCK_T * BLOCK_J = 128 where T
    allows (V = 25: 4 frames of 32 padded joints); larger graphs loop over 64-joint tiles."""
    block_j = joint_tile(v)
    block_t = max(1, min(next_pow2(t), 128 // block_j))
    block_c = 16 if (c_in <= 16 or precision == "ieee") else 32
    block_o = clamp_pow2(c_out, 16, 64)
    # Two stages let the flat (channel block, k) loop prefetch its tiles on the tensor-core
    # paths; on the fp32 FMA ("ieee") path they made ptxas spill, so it keeps one.
    num_stages = 1 if precision == "ieee" else 2
    warps = joint_warps(block_t, block_j)
    return Blocks(block_o, block_c, block_t, block_j, warps, num_stages, block_d=1)


def _reduction_blocks(c_in: int, c_out: int, t: int, v: int) -> Blocks:
    """dW: acc [BLOCK_O, BLOCK_C]; per row the dY A_k^T tile is [BLOCK_O * BLOCK_T, BLOCK_J].
    dA: acc [BLOCK_J, BLOCK_J]; per row the W_k^T dY tile is [BLOCK_C, BLOCK_T * BLOCK_J].

    One stage: the innermost loops (joint tiles for dW, C_out / BLOCK_O for dA) usually run
    once or a few times, nothing to pipeline."""
    block_j = joint_tile(v)
    block_t = max(1, min(next_pow2(t), 64 // block_j))
    block_o = clamp_pow2(c_out, 16, 64)
    block_c = clamp_pow2(c_in, 16, 64)
    return Blocks(block_o, block_c, block_t, block_j, joint_warps(block_t, block_j), block_d=1)


def _check_inputs(
    x: torch.Tensor, weight: torch.Tensor, adjacency: torch.Tensor, bias: torch.Tensor | None
) -> bool:
    """Validate shapes, dtypes and devices; return whether the adjacency is per sample."""
    if x.dim() != 4:
        raise ValueError(f"x must be [N, C_in, T, V]; got shape {tuple(x.shape)}")
    n, c_in, _, v = x.shape
    if weight.dim() != 3 or weight.shape[2] != c_in:
        raise ValueError(
            f"weight must be [K, C_out, C_in] with C_in={c_in}; got shape {tuple(weight.shape)}"
        )
    k, c_out, _ = weight.shape
    if adjacency.dim() == 3:
        expected_a: tuple[int, ...] = (k, v, v)
    elif adjacency.dim() == 4:
        expected_a = (n, k, v, v)
    else:
        expected_a = ()
    if tuple(adjacency.shape) != expected_a:
        raise ValueError(
            f"adjacency must be [K, V, V] = [{k}, {v}, {v}] or [N, K, V, V] = [{n}, {k}, {v}, {v}];"
            f" got shape {tuple(adjacency.shape)}"
        )
    if bias is not None and tuple(bias.shape) not in ((c_out,), (k, c_out)):
        raise ValueError(
            f"bias must be None, [C_out] = [{c_out}] or [K, C_out] = [{k}, {c_out}]; got shape "
            f"{tuple(bias.shape)}"
        )
    if bias is not None and not bias.is_floating_point():
        raise TypeError(f"bias must be a floating-point tensor; got {bias.dtype}")
    check_tensors("graph_conv", x, weight=weight, adjacency=adjacency)
    if bias is not None and bias.device != x.device:
        # The bias may have its own floating dtype (it is folded in the accumulation dtype).
        raise ValueError(f"bias must be on the device of x ({x.device}); got {bias.device}")
    return adjacency.dim() == 4


def _column_sums(adjacency: torch.Tensor, acc_dtype: torch.dtype) -> torch.Tensor:
    """sum_v A[n|., k, v, w]: [K, V] or [N, K, V]."""
    return adjacency.sum(dim=-2, dtype=acc_dtype)


def _bias_term(bias: torch.Tensor, adjacency: torch.Tensor, acc_dtype: torch.dtype) -> torch.Tensor:
    """The bias contribution to y as a [N|1, C_out, V] tensor (possibly an expanded view)."""
    v = adjacency.shape[-1]
    if bias.dim() == 1:
        return bias.to(acc_dtype)[None, :, None].expand(1, bias.shape[0], v)
    colsum = _column_sums(adjacency, acc_dtype)
    bias = bias.to(acc_dtype)
    if adjacency.dim() == 4:
        return torch.einsum("ko,nkw->now", bias, colsum)
    return torch.einsum("ko,kw->ow", bias, colsum)[None]


def _adjacency_strides(adjacency: torch.Tensor, branched: bool) -> tuple[int, ...]:
    """(sa_n, sa_d, sa_k, sa_v, sa_w) of a [K, V, V], per-sample [N, K, V, V] or, ``branched``,
    [D, K, V, V] adjacency; the strides of the axes it lacks are 0."""
    sa = adjacency.stride()
    if adjacency.dim() == 3:
        return (0, 0, *sa)
    return (0, *sa) if branched else (sa[0], 0, *sa[1:])


def launch_aggregate(
    x: torch.Tensor,
    weight: torch.Tensor,
    adjacency: torch.Tensor,
    bias_term: torch.Tensor | None,
    *,
    branched: bool = False,
    blocks: Blocks | None = None,
) -> torch.Tensor:
    """y[n,o,t,w] = sum_{d,k,c,v} weight[k,o,c] x[n,d C+c,t,v] adjacency[n|d|.,k,v,w] + bias_term.

    Runs ``_graph_conv_fwd_kernel``: graph_conv's forward and dx, and with ``branched``
    multi_dilation_graph_conv's concat dx (the CUDA side's ``Branches``).

    Args:
        x: ``[N, D * C, T, V]`` with ``C = weight.shape[2]`` (D = 1 unless ``branched``).
        weight: ``[K, C_out, C]``.
        adjacency: ``[K, V, V]``, per sample ``[N, K, V, V]``, or with ``branched`` one per
            branch, ``[D, K, V, V]``.
        bias_term: None or ``[N|1, C_out, V]`` in the accumulation dtype.
        branched: whether adjacency's leading axis holds the branches of x's channels.
        blocks: block sizes (``block_d`` set); graph_conv's own by default.

    All tensors may be arbitrary strided views (dx passes transposed views of W and A).
    Returns a contiguous ``[N, C_out, T, V]`` tensor in x's dtype.
    """
    n, _, t, v = x.shape
    k, c_out, c_in = weight.shape
    d = adjacency.shape[0] if branched else 1
    y = torch.empty((n, c_out, t, v), device=x.device, dtype=x.dtype)
    if y.numel() == 0:
        return y
    if x.numel() == 0 or weight.numel() == 0:
        y.zero_()
        if bias_term is not None:
            y += bias_term[:, :, None, :].to(y.dtype)
        return y

    if blocks is None:
        blocks = _aggregate_blocks(c_in, c_out, t, v, dot_precision(x.dtype))
    num_w_tiles = triton.cdiv(v, blocks.block_j)
    num_o_blocks = triton.cdiv(c_out, blocks.block_o)
    num_t_blocks = triton.cdiv(t, blocks.block_t)
    if bias_term is not None:
        bias_arg = bias_term
        sb = bias_term.stride()
        sb_n = sb[0] if bias_term.shape[0] > 1 else 0
        sb_o, sb_w = sb[1], sb[2]
    else:
        bias_arg, sb_n, sb_o, sb_w = y, 0, 0, 0

    grid = (n * num_t_blocks * num_w_tiles * num_o_blocks,)
    with device_guard(x.device):
        _graph_conv_fwd_kernel[grid](
            x, weight, adjacency, bias_arg, y,
            c_in, c_out, t, v, k, d,
            *x.stride(),
            *weight.stride(),
            *_adjacency_strides(adjacency, branched),
            sb_n, sb_o, sb_w,
            *y.stride(),
            num_o_blocks, num_w_tiles, num_t_blocks,
            # The loop-free path is for one branch of one joint tile (graph_conv's flat loop,
            # pipelined in two stages); branched, it took more registers than the loops (sm_90).
            SINGLE_TILE=num_w_tiles == 1 and d == 1,
            HAS_BIAS=bias_term is not None,
            **dot_kwargs(x.dtype),
            **blocks.launch_kwargs(),
        )  # fmt: skip
    return y


def launch_dweight(
    x: torch.Tensor,
    grad_out: torch.Tensor,
    adjacency: torch.Tensor,
    k: int,
    *,
    branched: bool = False,
    blocks: Blocks | None = None,
) -> torch.Tensor:
    """dW[k, o, c] = sum_{n,t,v} H_k[n,o,t,v] x[n,c,t,v], ``H_k = sum_d dY_d A[n|d|., k]^T``.

    Runs ``_graph_conv_dweight_kernel``: graph_conv's dW, and with ``branched``
    multi_dilation_graph_conv's concat dW, ``dY_d`` then being grad_out's d-th group of C_out
    channels and adjacency ``[D, K, V, V]``.

    Returns a ``[K, C_out, C_in]`` buffer in the accumulation dtype.
    """
    n, c_in, t, v = x.shape
    d = adjacency.shape[0] if branched else 1
    c_out = grad_out.shape[1] // d
    acc_torch, _ = acc_dtypes(x.dtype)
    dw = torch.zeros((k, c_out, c_in), device=x.device, dtype=acc_torch)
    if blocks is None:
        blocks = _reduction_blocks(c_in, c_out, t, v)
    num_o_blocks = triton.cdiv(c_out, blocks.block_o)
    num_c_blocks = triton.cdiv(c_in, blocks.block_c)
    num_t_blocks = triton.cdiv(t, blocks.block_t)
    rows = n * num_t_blocks
    base = k * num_o_blocks * num_c_blocks
    rows_per_split, num_splits = split_rows(rows, base, x.device)

    grid = (base * num_splits,)
    with device_guard(x.device):
        _graph_conv_dweight_kernel[grid](
            x, grad_out, adjacency, dw,
            c_in, c_out, t, v, d,
            *x.stride(),
            *grad_out.stride(),
            *_adjacency_strides(adjacency, branched),
            num_o_blocks, num_c_blocks, num_t_blocks, k, rows, rows_per_split,
            **dot_kwargs(x.dtype),
            **blocks.launch_kwargs(),
        )  # fmt: skip
    return dw


def _launch_dadjacency(
    x: torch.Tensor, grad_out: torch.Tensor, weight: torch.Tensor, per_sample: bool
) -> torch.Tensor:
    """dA[k, v, w] = sum_{n,c,t} x[n,c,t,v] (W_k^T dY)[n,c,t,w] as a [N|1, K, V, V] acc buffer."""
    n, c_in, t, v = x.shape
    k, c_out, _ = weight.shape
    acc_torch, _ = acc_dtypes(x.dtype)
    groups = n if per_sample else 1
    da = torch.zeros((groups, k, v, v), device=x.device, dtype=acc_torch)
    blocks = _reduction_blocks(c_in, c_out, t, v)._replace(block_d=None)
    num_j_tiles = triton.cdiv(v, blocks.block_j)
    num_t_blocks = triton.cdiv(t, blocks.block_t)
    rows = (1 if per_sample else n) * num_t_blocks
    base = groups * k * num_j_tiles * num_j_tiles
    rows_per_split, num_splits = split_rows(rows, base, x.device)

    grid = (base * num_splits,)
    with device_guard(x.device):
        _graph_conv_dadjacency_kernel[grid](
            x, grad_out, weight, da,
            c_in, c_out, t, v,
            *x.stride(),
            *grad_out.stride(),
            *weight.stride(),
            num_j_tiles, num_j_tiles, k, num_splits, num_t_blocks, rows, rows_per_split,
            **dot_kwargs(x.dtype),
            **blocks.launch_kwargs(),
        )  # fmt: skip
    return da


# --------------------------------------------------------------------------------------------
# Public launchers
# --------------------------------------------------------------------------------------------


def graph_conv_forward(
    x: torch.Tensor,
    weight: torch.Tensor,
    adjacency: torch.Tensor,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Fused graph convolution, Triton backend.

    ``y[n, o, t, w] = sum_k sum_c sum_v W[k, o, c] * x[n, c, t, v] * A[n|., k, v, w] + bias term``

    Args:
        x: ``[N, C_in, T, V]``, any strides; float32, float16 or bfloat16 (under the
            interpreter also float64, and bfloat16 is computed in float32 there).
        weight: ``[K, C_out, C_in]``, dtype of x.
        adjacency: ``[K, V, V]`` or per sample ``[N, K, V, V]``, dtype of x; ``A[k, v, w]``
            carries source joint v to target joint w.
        bias: None; ``[C_out]``, added after aggregation; or ``[K, C_out]``, the bias of the
            per-partition 1x1 convolution before aggregation, contributing
            ``sum_k bias[k, o] * sum_v A[n|., k, v, w]``.

    Returns:
        ``y``: contiguous ``[N, C_out, T, V]`` in the dtype of x (accumulated in fp32).
    """
    _check_inputs(x, weight, adjacency, bias)
    if interpreter_lacks(x.dtype):
        y = graph_conv_forward(*upcast(x, weight, adjacency, bias))
        return y.to(x.dtype)
    acc_torch, _ = acc_dtypes(x.dtype)
    bias_term = None if bias is None else _bias_term(bias, adjacency, acc_torch)
    return launch_aggregate(x, weight, adjacency, bias_term)


def graph_conv_backward(
    grad_out: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    adjacency: torch.Tensor,
    bias: torch.Tensor | None,
    output_mask: list[bool],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of :func:`graph_conv_forward`.

    With ``dY = grad_out`` (``[N, C_out, T, V]``, any strides) and ``A[n|., k, v, w]`` (source v
    to target w)::

        dx[n, c, t, v] = sum_k sum_o W[k, o, c] sum_w A[k, v, w] dY[n, o, t, w]
        dW[k, o, c]    = sum_{n,t,w} dY[n, o, t, w] (x A_k)[n, c, t, w]
        dA[k, v, w]    = sum_{n,c,t} x[n, c, t, v] (W_k^T dY)[n, c, t, w]   (no sum over n when
                         A is per sample) + sum_{n,t,o} bias[k, o] dY[n, o, t, w] for a
                         [K, C_out] bias
        dbias[o]       = sum_{n,t,w} dY[n, o, t, w]                          ([C_out] bias)
        dbias[k, o]    = sum_{n,t,w} dY[n, o, t, w] sum_v A[n|., k, v, w]    ([K, C_out] bias)

    ``dx`` runs the forward kernel on dY with transposed views of W and A (no copies).

    Args:
        output_mask: four bools selecting (dx, dweight, dadjacency, dbias).

    Returns:
        ``(dx, dweight, dadjacency, dbias)`` shaped and typed like their inputs; a gradient
        that is masked out, or dbias when bias is None, is ``x.new_empty(0)``.
    """
    per_sample = _check_inputs(x, weight, adjacency, bias)
    if len(output_mask) != 4:
        raise ValueError(f"output_mask must have 4 entries; got {len(output_mask)}")
    n, _, t, v = x.shape
    k, c_out, c_in = weight.shape
    if tuple(grad_out.shape) != (n, c_out, t, v):
        raise ValueError(
            f"grad_out must be [N, C_out, T, V] = {[n, c_out, t, v]}; got {tuple(grad_out.shape)}"
        )
    if grad_out.dtype != x.dtype or grad_out.device != x.device:
        raise TypeError(
            f"grad_out must match x in dtype and device ({x.dtype}, {x.device}); got "
            f"({grad_out.dtype}, {grad_out.device})"
        )
    if interpreter_lacks(x.dtype):
        grads = graph_conv_backward(
            *upcast(grad_out, x, weight, adjacency, bias), output_mask=output_mask
        )
        dtypes = (x.dtype, weight.dtype, adjacency.dtype, x.dtype if bias is None else bias.dtype)
        return tuple(g.to(d if g.numel() else x.dtype) for g, d in zip(grads, dtypes, strict=True))
    want_dx, want_dw, want_da, want_db = (bool(m) for m in output_mask)
    want_db = want_db and bias is not None
    acc_torch, _ = acc_dtypes(x.dtype)
    has_work = grad_out.numel() > 0 and x.numel() > 0 and weight.numel() > 0

    # Distinct empties: outputs of a torch.library custom op must not alias each other.
    dx, dw, da, db = (x.new_empty(0) for _ in range(4))
    if want_dx:
        dx = launch_aggregate(grad_out, weight.transpose(1, 2), adjacency.transpose(-1, -2), None)
    if want_dw:
        if has_work:
            dw = launch_dweight(x, grad_out, adjacency, k).to(weight.dtype)
        else:
            dw = torch.zeros_like(weight, memory_format=torch.contiguous_format)

    bias_before = bias is not None and bias.dim() == 2
    dy_sum = None
    if want_db or (want_da and bias_before):
        dy_sum = grad_out.sum(dim=2, dtype=acc_torch)  # [N, C_out, V]

    if want_da:
        if has_work:
            da_acc = _launch_dadjacency(x, grad_out, weight, per_sample)
        else:
            da_acc = torch.zeros(
                (n if per_sample else 1, k, v, v), device=x.device, dtype=acc_torch
            )
        if bias_before:
            b = bias.to(acc_torch)
            if per_sample:
                da_acc += torch.einsum("now,ko->nkw", dy_sum, b)[:, :, None, :]
            else:
                da_acc += torch.einsum("ow,ko->kw", dy_sum.sum(0), b)[None, :, None, :]
        da = (da_acc if per_sample else da_acc[0]).to(adjacency.dtype)

    if want_db:
        if bias.dim() == 1:
            db = dy_sum.sum(dim=(0, 2))
        elif per_sample:
            db = torch.einsum("now,nkw->ko", dy_sum, _column_sums(adjacency, acc_torch))
        else:
            db = torch.einsum("ow,kw->ko", dy_sum.sum(0), _column_sums(adjacency, acc_torch))
        db = db.to(bias.dtype)
    return dx, dw, da, db
