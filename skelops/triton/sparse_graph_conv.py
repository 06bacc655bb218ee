"""Triton kernels for sparse graph convolution (adjacency stored as per-subset CSR).

Conventions: skeleton tensors are ``[N, C, T, V]`` (batch, channels, frames, joints); the
adjacency ``A[k, v, w]`` carries source joint ``v`` to target joint ``w`` and is stored as CSR
with rows indexed by the TARGET (:class:`skelops.graphs.SparseAdjacency`): row ``(k, w)`` holds
the entries ``j`` in ``[crow[k, w], crow[k, w + 1])`` (global offsets), ``col[j]`` is the source
and ``values[j] = A[k, col[j], w]``. The weight is ``W[k, o, c]``, ``[K, C_out, C_in]``::

    y[n, o, t, w] = sum_k sum_{j in row(k, w)} values[j] sum_c W[k, o, c] x[n, c, t, col[j]]
                    + bias term

Design (aggregate first, then mix channels, over non-empty rows only). Frames of all samples
are flattened to ``NT = N * T`` columns (a frame ``nt`` is ``(nt // T, nt % T)``, any strides),
so no frame block is wasted on a ragged ``T``. All index work is done once per CSR structure
with torch ops of static shapes (no host synchronisation) and cached while the index tensors
live unchanged (:func:`_structure`); ``values`` may change between calls.

* ``_sparse_gather_mix_kernel`` (forward, and ``dx``): one program per (block of ``BLOCK_T = 4``
  frames, tile of ``BLOCK_J = 16`` targets, block of up to 128 output channels). The targets
  are visited in the order of their *subset signature* (the set of subsets ``k`` whose row
  ``(k, w)`` is non-empty, sorted descending as a bitmask), so targets with rare subsets share
  tiles: MP-GCN's inter-person subset (12 non-empty rows of 216) costs one tile of 16 targets
  instead of nearly every tile (464 GEMM columns per frame at V = 216 against the floor of
  444). Per tile a short list holds the subsets with any non-empty row and their largest
  degree there; for each listed ``k`` and block of input channels the program gathers
  ``U^T[(nt, w), c] = sum_{j in row(k, w)} values[j] x[n, c, t, col[j]]`` in registers (one
  masked load per degree) and accumulates ``U^T @ W_k^T[c-block, o-block]`` with ``tl.dot``
  into ``acc[(nt, w), o]``; the epilogue adds the bias term and stores ``y`` at the tile's
  targets. GEMM work is ``2 C_in C_out`` per frame and per (tile slot, listed subset), close
  to the floor ``2 C_in C_out sum_k |R_k|``; neither the ``K * C_out`` channel-mixed
  intermediate nor a gathered copy of x reaches global memory. ``dx`` is the same kernel on
  ``grad_out`` with ``W^T`` (a strided view) and the transposed CSR (rows = sources;
  ``values`` permuted to its order)::

      dx[n, c, t, v] = sum_k sum_{j: col[j] = v, j in row(k, w)} values[j]
                       sum_o W[k, o, c] dY[n, o, t, w]

* ``_sparse_dweight_kernel``: ``dW[k, o, c] = sum_{n,t,w} dY[n, o, t, w] u[n, k, c, t, w]``
  with ``u`` the gathered aggregate above. Targets are compacted per subset (non-empty rows
  first), so a program owns (subset ``k``, tile of 16 of its non-empty rows, o-block, c-block,
  split of the frame blocks); tiles past ``|R_k|`` exit at once. Per frame block it gathers
  ``u^T[(nt, w), c]`` and ``dY^T[(nt, w), o]`` and accumulates ``dY @ u^T``; fp32 atomics add
  the per-program partial into a zeroed ``[K, C_out, C_in]`` buffer.
* ``_sparse_dvalues_kernel``: ``d values[j] = sum_{n,c,t} x[n, c, t, col[j]] h[n, k, c, t, w]``
  with ``h_k = W_k^T dY``. Columns are (frame, entry) pairs: a program owns a tile of 16
  entries of one subset (entries are stored subset by subset), a block of input channels and
  a split of the frame blocks; per frame block it computes ``h^T[(nt, j), c] = sum over
  o-blocks dY^T[(nt, w_j), o] @ W_k[o, c]`` with ``tl.dot``, multiplies by the gathered
  ``x[n, c, t, col[j]]``, reduces over channels and frames in registers, and adds one partial
  per entry with fp32 atomics. (Entry columns cost ``nnz_k / |R_k|`` times the GEMM of row
  columns, 1.5x for MP-GCN, but need no per-degree register state.)
* Bias parts (the bias term of the forward, ``d bias`` and the ``[K, C_out]`` bias's share of
  ``d values``) are small torch computations in the launchers.

Every gathered or scattered tile is laid out columns first, ``[(frame, target or entry),
channel]``: Triton gives a load whose addresses it cannot analyse threads along its first
dimension, which for these tiles is the memory-contiguous joint axis (coalesced gathers of x
and dY and stores of y) and keeps per-column state (addresses, degrees) at one or two
registers per thread. On sm_90 and newer, launches cap registers at 128 (two 8-warp programs
per SM); see the note on block sizes.

Accumulation is fp32 (fp64 for fp64 inputs under the interpreter); outputs are in x's dtype.
``tl.dot`` precision is pinned per dtype by :func:`skelops.triton._common.dot_precision`:
``"ieee"`` for float32 unless ``torch.backends.cuda.matmul.allow_tf32`` is set (then ``"tf32"``),
so float32 results match torch's own matmul policy; 16-bit inputs run on tensor cores with fp32
accumulation. Every ``tl.dot`` dimension is at least 16 (the GPU minimum; the interpreter would
accept less): tiles hold 16 targets or entries and channel blocks are at least 16, with masks.
Under the interpreter bfloat16 runs in float32, as in :mod:`skelops.triton.graph_conv` (the
import of :mod:`skelops.triton._common` also installs its interpreter fix for numpy >= 2.4).
"""

from __future__ import annotations

from functools import cached_property

import torch
import triton
import triton.language as tl
from torch.utils.weak import WeakIdKeyDictionary

from ._common import (
    INTERPRETED,
    Blocks,
    acc_dtypes,
    clamp_pow2,
    device_guard,
    dot_kwargs,
    interpreter_lacks,
    next_pow2,
    split_rows,
    upcast,
)

__all__ = ["sparse_graph_conv_forward", "sparse_graph_conv_backward"]

# Targets per tile (forward, dx, dW) and entries per tile (d values): the smallest tl.dot
# dimension, and fine-grained enough that a subset with few non-empty rows costs few columns.
_TILE = 16

# Bits of the subset-signature sort key (an int64 bitmask); subsets beyond these only lose
# tile sharing, never correctness.
_SIGNATURE_BITS = 62


# --------------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------------


@triton.jit
def _gather_sources(
    x_cols, sx_v, sx_c, col_ptr, val_ptr, begin, deg, max_deg, row_ok, c_idx, c_ok,
    ROWS: tl.constexpr, BLOCK_C: tl.constexpr, ACC_DTYPE: tl.constexpr,
):  # fmt: skip
    """U[r, c] = sum_e A_e x[src_e, c] over the stored entries of each row's target: row r reads
    ``deg[r]`` entries from ``begin[r]`` (``max_deg`` the block's largest), at ``x_cols[r]``."""
    u_t = tl.zeros([ROWS, BLOCK_C], dtype=ACC_DTYPE)
    for d in range(0, max_deg):
        e_ok = row_ok & (d < deg)
        src = tl.load(col_ptr + begin + d, mask=e_ok, other=0)
        a = tl.load(val_ptr + begin + d, mask=e_ok, other=0.0).to(ACC_DTYPE)
        xv = tl.load(
            (x_cols + src * sx_v)[:, None] + c_idx[None, :] * sx_c,
            mask=e_ok[:, None] & c_ok[None, :],
            other=0.0,
        )
        u_t += xv.to(ACC_DTYPE) * a[:, None]
    return u_t


@triton.jit
def _sparse_gather_mix_kernel(
    x_ptr, w_ptr, row_start_ptr, col_ptr, val_ptr,
    order_ptr, tile_k_ptr, tile_deg_ptr, tile_nk_ptr, bias_ptr, y_ptr,
    C_in, C_out, T, V, NT, K,
    sx_n, sx_c, sx_t, sx_v,
    sw_k, sw_o, sw_c,
    sb_o, sb_w,
    sy_n, sy_o, sy_t, sy_w,
    num_o_blocks, num_tiles,
    BLOCK_O: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_T: tl.constexpr,
    BLOCK_J: tl.constexpr, HAS_BIAS: tl.constexpr,
    PRECISION: tl.constexpr, ACC_DTYPE: tl.constexpr,
):  # fmt: skip
    """y[n, o, t, w] = sum_k sum_{j in row(k, w)} val[j] sum_c W[k, o, c] x[n, c, t, col[j]]
    (+ bias[o, w]) for the targets w of one tile, one block of frames and output channels.

    ``row_start_ptr``: ``[K * V + 1]``, row ``(k, w)`` is ``[row_start[k V + w], row_start[k V +
    w + 1])``. ``order_ptr``: ``[V]`` targets in tile order. ``tile_k/deg_ptr``: ``[tiles, K]``,
    the first ``tile_nk[tile]`` entries list the subsets with non-empty rows in the tile and
    their largest degree there. ``bias_ptr``: the bias term ``[C_out, V]`` (any strides).
    Output-channel blocks, then tiles, vary fastest: neighbouring programs read the same
    frames of x, from L2.
    """
    pid = tl.program_id(0)
    o_block = pid % num_o_blocks
    rest = pid // num_o_blocks
    tile = rest % num_tiles
    nt_block = rest // num_tiles

    dtype = w_ptr.dtype.element_ty
    # Columns are (frame, tile slot) pairs, frame-major.
    cols = tl.arange(0, BLOCK_T * BLOCK_J)
    slot = tile * BLOCK_J + cols % BLOCK_J
    nt = nt_block * BLOCK_T + cols // BLOCK_J
    col_ok = (slot < V) & (nt < NT)
    target = tl.load(order_ptr + slot, mask=col_ok, other=0)
    n = (nt // T).to(tl.int64)
    t = nt % T
    x_cols = x_ptr + n * sx_n + t * sx_t
    o_idx = o_block * BLOCK_O + tl.arange(0, BLOCK_O)
    o_ok = o_idx < C_out
    c_off = tl.arange(0, BLOCK_C)

    acc = tl.zeros([BLOCK_T * BLOCK_J, BLOCK_O], dtype=ACC_DTYPE)
    num_k = tl.load(tile_nk_ptr + tile)
    for i in range(0, num_k):
        k = tl.load(tile_k_ptr + tile * K + i)
        max_deg = tl.load(tile_deg_ptr + tile * K + i)
        rows = row_start_ptr + k * V + target
        begin = tl.load(rows, mask=col_ok, other=0)
        deg = tl.load(rows + 1, mask=col_ok, other=0) - begin
        for c0 in range(0, C_in, BLOCK_C):
            c_idx = c0 + c_off
            c_ok = c_idx < C_in
            u_t = _gather_sources(
                x_cols, sx_v, sx_c, col_ptr, val_ptr, begin, deg, max_deg, col_ok, c_idx, c_ok,
                BLOCK_T * BLOCK_J, BLOCK_C, ACC_DTYPE,
            )  # fmt: skip
            w_t = tl.load(  # W_k^T tile: [c, o]
                w_ptr + k * sw_k + c_idx[:, None] * sw_c + o_idx[None, :] * sw_o,
                mask=c_ok[:, None] & o_ok[None, :],
                other=0.0,
            )
            acc = tl.dot(u_t.to(dtype), w_t, acc, input_precision=PRECISION, out_dtype=ACC_DTYPE)

    out_ok = col_ok[:, None] & o_ok[None, :]
    if HAS_BIAS:
        acc += tl.load(
            bias_ptr + target[:, None] * sb_w + o_idx[None, :] * sb_o, mask=out_ok, other=0.0
        ).to(ACC_DTYPE)
    y_ptrs = y_ptr + (n * sy_n + t * sy_t + target * sy_w)[:, None] + o_idx[None, :] * sy_o
    tl.store(y_ptrs, acc.to(y_ptr.dtype.element_ty), mask=out_ok)


@triton.jit
def _sparse_dweight_kernel(
    x_ptr, g_ptr, row_start_ptr, col_ptr, val_ptr,
    rows_ptr, row_count_ptr, tile_deg_ptr, dw_ptr,
    C_in, C_out, T, V, NT, K,
    sx_n, sx_c, sx_t, sx_v,
    sg_n, sg_o, sg_t, sg_w,
    num_o_blocks, num_c_blocks, num_tiles, num_nt_blocks, nt_blocks_per_split,
    BLOCK_O: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_T: tl.constexpr,
    BLOCK_J: tl.constexpr, PRECISION: tl.constexpr, ACC_DTYPE: tl.constexpr,
):  # fmt: skip
    """dW[k, o, c] += sum over this split's frames and this tile's rows (k, w) of
    dY[n, o, t, w] * sum_{j in row(k, w)} val[j] x[n, c, t, col[j]].

    ``rows_ptr``: ``[K, V]`` targets per subset, non-empty rows first (``row_count[k]`` of
    them); ``tile_deg_ptr``: ``[K, tiles]`` largest degree per tile (0: nothing to do).
    ``dw_ptr``: zeroed contiguous ``[K, C_out, C_in]`` buffer in the accumulation dtype.
    """
    pid = tl.program_id(0)
    o_block = pid % num_o_blocks
    rest = pid // num_o_blocks
    c_block = rest % num_c_blocks
    rest = rest // num_c_blocks
    tile = rest % num_tiles
    rest = rest // num_tiles
    k = rest % K
    split = rest // K

    dtype = x_ptr.dtype.element_ty
    # Columns are (frame, row slot) pairs, frame-major.
    q = tl.arange(0, BLOCK_T * BLOCK_J)
    slot = tile * BLOCK_J + q % BLOCK_J
    slot_ok = slot < tl.load(row_count_ptr + k)
    target = tl.load(rows_ptr + k * V + slot, mask=slot_ok, other=0)
    rows = row_start_ptr + k * V + target
    begin = tl.load(rows, mask=slot_ok, other=0)
    deg = tl.load(rows + 1, mask=slot_ok, other=0) - begin
    max_deg = tl.load(tile_deg_ptr + k * num_tiles + tile)
    o_idx = o_block * BLOCK_O + tl.arange(0, BLOCK_O)
    o_ok = o_idx < C_out
    c_idx = c_block * BLOCK_C + tl.arange(0, BLOCK_C)
    c_ok = c_idx < C_in

    acc = tl.zeros([BLOCK_O, BLOCK_C], dtype=ACC_DTYPE)
    b_begin = split * nt_blocks_per_split
    b_end = tl.minimum(b_begin + nt_blocks_per_split, num_nt_blocks)
    b_end = tl.where(max_deg > 0, b_end, b_begin)
    for b in range(b_begin, b_end):
        nt = b * BLOCK_T + q // BLOCK_J
        ok = slot_ok & (nt < NT)
        n = (nt // T).to(tl.int64)
        t = nt % T
        g_t = tl.load(
            (g_ptr + n * sg_n + t * sg_t + target * sg_w)[:, None] + o_idx[None, :] * sg_o,
            mask=ok[:, None] & o_ok[None, :],
            other=0.0,
        )
        x_cols = x_ptr + n * sx_n + t * sx_t
        u_t = _gather_sources(
            x_cols, sx_v, sx_c, col_ptr, val_ptr, begin, deg, max_deg, ok, c_idx, c_ok,
            BLOCK_T * BLOCK_J, BLOCK_C, ACC_DTYPE,
        )  # fmt: skip
        acc = tl.dot(
            tl.trans(g_t), u_t.to(dtype), acc, input_precision=PRECISION, out_dtype=ACC_DTYPE
        )

    dw_ptrs = dw_ptr + k * C_out * C_in + o_idx[:, None] * C_in + c_idx[None, :]
    tl.atomic_add(dw_ptrs, acc, mask=o_ok[:, None] & c_ok[None, :] & (max_deg > 0), sem="relaxed")


@triton.jit
def _sparse_dvalues_kernel(
    x_ptr, g_ptr, w_ptr, col_ptr, entry_target_ptr,
    item_k_ptr, item_begin_ptr, item_end_ptr, dv_ptr,
    C_in, C_out, T, NT,
    sx_n, sx_c, sx_t, sx_v,
    sg_n, sg_o, sg_t, sg_w,
    sw_k, sw_o, sw_c,
    num_c_blocks, num_items, num_nt_blocks, nt_blocks_per_split,
    BLOCK_O: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_T: tl.constexpr,
    BLOCK_J: tl.constexpr, PRECISION: tl.constexpr, ACC_DTYPE: tl.constexpr,
):  # fmt: skip
    """dval[j] += sum over this split's frames and this c-block of
    x[n, c, t, col[j]] * sum_o W[k, o, c] dY[n, o, t, w_j] for the entries j of one item.

    Item ``i`` is the entries ``[item_begin[i], item_end[i])`` (at most ``BLOCK_J``, all of
    subset ``item_k[i]``; empty for padding items); ``entry_target_ptr``: ``[nnz]`` target w_j.
    ``dv_ptr``: zeroed ``[nnz]`` buffer in the accumulation dtype.
    """
    pid = tl.program_id(0)
    c_block = pid % num_c_blocks
    rest = pid // num_c_blocks
    item = rest % num_items
    split = rest // num_items

    k = tl.load(item_k_ptr + item)
    e_begin = tl.load(item_begin_ptr + item)
    e_end = tl.load(item_end_ptr + item)
    # Columns are (frame, entry slot) pairs, frame-major.
    q = tl.arange(0, BLOCK_T * BLOCK_J)
    entry = e_begin + q % BLOCK_J
    entry_ok = entry < e_end
    src = tl.load(col_ptr + entry, mask=entry_ok, other=0)
    target = tl.load(entry_target_ptr + entry, mask=entry_ok, other=0)
    c_idx = c_block * BLOCK_C + tl.arange(0, BLOCK_C)
    c_ok = c_idx < C_in
    o_off = tl.arange(0, BLOCK_O)

    acc = tl.zeros([BLOCK_J], dtype=ACC_DTYPE)
    b_begin = split * nt_blocks_per_split
    b_end = tl.minimum(b_begin + nt_blocks_per_split, num_nt_blocks)
    b_end = tl.where(e_begin < e_end, b_end, b_begin)
    for b in range(b_begin, b_end):
        nt = b * BLOCK_T + q // BLOCK_J
        ok = entry_ok & (nt < NT)
        n = (nt // T).to(tl.int64)
        t = nt % T
        g_cols = g_ptr + n * sg_n + t * sg_t + target * sg_w
        h_t = tl.zeros([BLOCK_T * BLOCK_J, BLOCK_C], dtype=ACC_DTYPE)
        for o0 in range(0, C_out, BLOCK_O):
            o_idx = o0 + o_off
            o_ok = o_idx < C_out
            g_t = tl.load(
                g_cols[:, None] + o_idx[None, :] * sg_o,
                mask=ok[:, None] & o_ok[None, :],
                other=0.0,
            )
            w_k = tl.load(
                w_ptr + k * sw_k + o_idx[:, None] * sw_o + c_idx[None, :] * sw_c,
                mask=o_ok[:, None] & c_ok[None, :],
                other=0.0,
            )
            h_t = tl.dot(g_t, w_k, h_t, input_precision=PRECISION, out_dtype=ACC_DTYPE)
        xv = tl.load(
            (x_ptr + n * sx_n + t * sx_t + src * sx_v)[:, None] + c_idx[None, :] * sx_c,
            mask=ok[:, None] & c_ok[None, :],
            other=0.0,
        )
        per_col = tl.sum(xv.to(ACC_DTYPE) * h_t, axis=1)
        acc += tl.sum(tl.reshape(per_col, [BLOCK_T, BLOCK_J]), axis=0)

    slots = e_begin + tl.arange(0, BLOCK_J)
    tl.atomic_add(dv_ptr + slots, acc, mask=slots < e_end, sem="relaxed")


# --------------------------------------------------------------------------------------------
# CSR structure: index arrays derived once per (crow, col) with torch ops
# --------------------------------------------------------------------------------------------


class _TargetTiles:
    """Targets in subset-signature order, cut into tiles of ``_TILE``, with each tile's list of
    subsets that have a non-empty row in it (forward and dx)."""

    def __init__(self, degrees: torch.Tensor) -> None:
        k, v = degrees.shape
        device = degrees.device
        nonempty = degrees > 0
        bits = min(k, _SIGNATURE_BITS)
        weights = torch.pow(2, torch.arange(bits - 1, -1, -1, device=device, dtype=torch.int64))
        signature = (nonempty[:bits].to(torch.int64) * weights[:, None]).sum(0)
        order = torch.sort(signature, descending=True, stable=True).indices
        self.num_tiles = triton.cdiv(v, _TILE)
        by_tile = degrees.new_zeros((k, self.num_tiles * _TILE))
        by_tile[:, :v] = degrees[:, order]
        tile_deg = by_tile.view(k, self.num_tiles, _TILE).amax(2).t()  # [tiles, K]
        active = tile_deg > 0
        k_order = torch.sort((~active).to(torch.int8), dim=1, stable=True).indices
        self.order = order.to(torch.int32)
        self.tile_k = k_order.to(torch.int32).contiguous()
        self.tile_deg = tile_deg.gather(1, k_order).to(torch.int32).contiguous()
        self.tile_nk = active.sum(1).to(torch.int32)


class _RowTiles:
    """Per subset, the targets with non-empty rows first, cut into tiles of ``_TILE`` (dW)."""

    def __init__(self, degrees: torch.Tensor) -> None:
        k, v = degrees.shape
        nonempty = degrees > 0
        rows = torch.sort((~nonempty).to(torch.int8), dim=1, stable=True).indices
        self.num_tiles = triton.cdiv(v, _TILE)
        by_tile = degrees.new_zeros((k, self.num_tiles * _TILE))
        by_tile[:, :v] = degrees.gather(1, rows)
        self.rows = rows.to(torch.int32).contiguous()
        self.row_count = nonempty.sum(1).to(torch.int32)
        self.tile_deg = by_tile.view(k, self.num_tiles, _TILE).amax(2).to(torch.int32)


class _EntryItems:
    """Tiles of up to ``_TILE`` consecutive entries of one subset (d values). The count is the
    static bound ``cdiv(nnz, _TILE) + K``; padding items are empty."""

    def __init__(self, row_start: torch.Tensor, k: int, v: int, nnz: int) -> None:
        device = row_start.device
        subset_start = row_start[torch.arange(k + 1, device=device) * v].long()  # [K + 1]
        tiles = (subset_start[1:] - subset_start[:-1] + _TILE - 1) // _TILE
        tiles_end = tiles.cumsum(0)
        self.num_items = triton.cdiv(nnz, _TILE) + k
        item = torch.arange(self.num_items, device=device)
        subset = torch.searchsorted(tiles_end, item, right=True)
        valid = subset < k
        subset = subset.clamp(max=k - 1)
        begin = subset_start[subset] + (item - (tiles_end - tiles)[subset]) * _TILE
        end = torch.minimum(begin + _TILE, subset_start[subset + 1])
        self.item_k = torch.where(valid, subset, 0).to(torch.int32)
        self.item_begin = torch.where(valid, begin, 0).to(torch.int32)
        self.item_end = torch.where(valid, end, 0).to(torch.int32)


class _Csr:
    """A per-subset CSR (rows = targets) as the kernels read it, plus derived index arrays.

    ``row_start``: ``[K * V + 1]`` int32, row ``(k, w)`` is ``[row_start[k V + w],
    row_start[k V + w + 1])`` (``crow[k, V] == crow[k + 1, 0]`` makes the flat form exact);
    ``col``: ``[nnz]`` int32 sources.
    """

    def __init__(self, row_start: torch.Tensor, col: torch.Tensor, k: int, v: int) -> None:
        self.row_start, self.col, self.k, self.v = row_start, col, k, v
        self.nnz = col.numel()

    @classmethod
    def from_crow(cls, crow: torch.Tensor, col: torch.Tensor, v: int) -> _Csr:
        if col.numel() >= 2**31:
            raise ValueError(f"the Triton kernels index entries with int32; got nnz={col.numel()}")
        row_start = torch.cat((crow[:, :-1].reshape(-1), crow[-1, -1:])).to(torch.int32)
        return cls(row_start.contiguous(), col.to(torch.int32).contiguous(), crow.shape[0], v)

    @cached_property
    def degrees(self) -> torch.Tensor:
        return (self.row_start[1:] - self.row_start[:-1]).view(self.k, self.v)

    @cached_property
    def entry_row(self) -> torch.Tensor:
        """``[nnz]`` int64 ``k * V + w`` of each entry's row."""
        rows = torch.arange(self.k * self.v, device=self.col.device)
        return torch.repeat_interleave(rows, self.degrees.reshape(-1).long(), output_size=self.nnz)

    @cached_property
    def entry_target(self) -> torch.Tensor:
        return (self.entry_row % self.v).to(torch.int32)

    @cached_property
    def target_tiles(self) -> _TargetTiles:
        return _TargetTiles(self.degrees)

    @cached_property
    def row_tiles(self) -> _RowTiles:
        return _RowTiles(self.degrees)

    @cached_property
    def entry_items(self) -> _EntryItems:
        return _EntryItems(self.row_start, self.k, self.v, self.nnz)

    @cached_property
    def transposed(self) -> tuple[_Csr, torch.Tensor]:
        """The CSR with rows = sources (for dx) and the permutation of entries into it (stable:
        within a row the targets stay increasing)."""
        subset = self.entry_row // self.v
        key = subset * self.v + self.col.long()
        perm = torch.sort(key, stable=True).indices
        counts = torch.zeros(self.k * self.v, dtype=torch.int64, device=key.device)
        counts.index_add_(0, key, torch.ones_like(key))
        row_start = torch.cat((counts.new_zeros(1), counts.cumsum(0))).to(torch.int32)
        col = self.entry_target[perm].contiguous()
        return _Csr(row_start, col, self.k, self.v), perm

    def row_sums(self, values: torch.Tensor, acc_dtype: torch.dtype) -> torch.Tensor:
        """``r[k, w] = sum_{j in row(k, w)} values[j]``: ``[K, V]``."""
        sums = torch.zeros(self.k * self.v, dtype=acc_dtype, device=values.device)
        return sums.index_add_(0, self.entry_row, values.to(acc_dtype)).view(self.k, self.v)


# Derived structures per live crow tensor, valid while crow and col are the same tensors at the
# same versions (in-place edits bump them): training loops reuse one adjacency every step, and
# rebuilding costs a dozen small launches.
_structures: WeakIdKeyDictionary = WeakIdKeyDictionary()


def _structure(crow: torch.Tensor, col: torch.Tensor, v: int) -> _Csr:
    cacheable = not (crow.is_inference() or col.is_inference())
    if cacheable:
        key = (crow._version, col._version, v)
        hit = _structures.get(crow)
        if hit is not None and hit[0] is col and hit[1] == key:
            return hit[2]
    csr = _Csr.from_crow(crow, col, v)
    if cacheable:
        _structures[crow] = (col, key, csr)
    return csr


# --------------------------------------------------------------------------------------------
# Launch helpers
# --------------------------------------------------------------------------------------------

# Block sizes and register cap, chosen by compiling every kernel for sm_90 offline (triton 3.6,
# `ptxas -v`): unbounded, ptxas spends up to 255 registers on hoisted gather addresses, which
# leaves one 8-warp program per SM to hide the latency of the dependent index -> x loads. Capped
# at 128 registers (two 8-warp programs per SM) these blocks do not spill for fp32 (ieee and
# tf32), fp16 and bf16 (at most 4 bytes on one fp32 tf32 shape); 64 x 64 dW blocks, 4 warps
# for [64, 32] gathers, or BLOCK_C = 32 in fp32 with BLOCK_O = 128 spilled hundreds of bytes.
_MAX_REGISTERS = 128
_COLUMNS = 64  # (frame, slot) columns per tile: BLOCK_T = 4 frames of 16 slots


def _frames_per_tile(nt: int) -> int:
    return max(1, min(next_pow2(nt), _COLUMNS // _TILE))


def _warps(*tile_widths: int) -> int:
    return 8 if _COLUMNS * max(tile_widths) >= 2048 else 4


def _gather_mix_blocks(c_in: int, c_out: int, nt: int, dtype: torch.dtype) -> Blocks:
    """acc [64, BLOCK_O] (C_out <= 128 in one block, so each gathered U feeds every output
    channel); per (subset, channel block) U^T [64, BLOCK_C] and W_k^T [BLOCK_C, BLOCK_O]."""
    block_o = clamp_pow2(c_out, 16, 128)
    block_c = 16 if (c_in <= 16 or dtype in (torch.float32, torch.float64)) else 32
    return Blocks(block_o, block_c, _frames_per_tile(nt), _TILE, _warps(block_o, block_c))


def _dweight_blocks(c_in: int, c_out: int, nt: int) -> Blocks:
    """acc [BLOCK_O, BLOCK_C]; per frame block dY^T [64, BLOCK_O] and u^T [64, BLOCK_C]."""
    block_o = clamp_pow2(c_out, 16, 64)
    block_c = clamp_pow2(c_in, 16, 32)
    return Blocks(block_o, block_c, _frames_per_tile(nt), _TILE, _warps(block_o, block_c))


def _dvalues_blocks(c_in: int, c_out: int, nt: int) -> Blocks:
    """h^T [64, BLOCK_C] from dY^T [64, BLOCK_O] @ W_k [BLOCK_O, BLOCK_C] per o-block."""
    block_o = clamp_pow2(c_out, 16, 64)
    block_c = clamp_pow2(c_in, 16, 64)
    return Blocks(block_o, block_c, _frames_per_tile(nt), _TILE, _warps(block_o, block_c))


def _launch_options(blocks: Blocks, device: torch.device) -> dict[str, int]:
    options = blocks.launch_kwargs()
    # Validated on sm_90 only: on sm_80 the same cap spilled up to ~140 bytes.
    if not INTERPRETED and torch.cuda.get_device_capability(device)[0] >= 9:
        options["maxnreg"] = _MAX_REGISTERS
    return options


def _launch_gather_mix(
    x: torch.Tensor,
    weight: torch.Tensor,
    csr: _Csr,
    values: torch.Tensor,
    bias_term: torch.Tensor | None,
) -> torch.Tensor:
    """y[n,o,t,w] = sum_k sum_{j in row(k,w)} values[j] sum_c weight[k,o,c] x[n,c,t,col[j]]
    + bias_term[o, w]; x and weight may be any strided views (dx passes W^T)."""
    n, c_in, t, v = x.shape
    k, c_out, _ = weight.shape
    y = torch.empty((n, c_out, t, v), device=x.device, dtype=x.dtype)
    if y.numel() == 0:
        return y
    if csr.nnz == 0:
        y.zero_()
        if bias_term is not None:
            y += bias_term[None, :, None, :].to(y.dtype)
        return y

    nt = n * t
    blocks = _gather_mix_blocks(c_in, c_out, nt, x.dtype)
    tiles = csr.target_tiles
    num_o_blocks = triton.cdiv(c_out, blocks.block_o)
    if bias_term is not None:
        bias_arg, (sb_o, sb_w) = bias_term, bias_term.stride()
    else:
        bias_arg, sb_o, sb_w = y, 0, 0
    grid = (triton.cdiv(nt, blocks.block_t) * tiles.num_tiles * num_o_blocks,)
    with device_guard(x.device):
        _sparse_gather_mix_kernel[grid](
            x, weight, csr.row_start, csr.col, values,
            tiles.order, tiles.tile_k, tiles.tile_deg, tiles.tile_nk, bias_arg, y,
            c_in, c_out, t, v, nt, k,
            *x.stride(),
            *weight.stride(),
            sb_o, sb_w,
            *y.stride(),
            num_o_blocks, tiles.num_tiles,
            HAS_BIAS=bias_term is not None, **dot_kwargs(x.dtype),
            **_launch_options(blocks, x.device),
        )  # fmt: skip
    return y


def _launch_dweight(
    x: torch.Tensor, grad_out: torch.Tensor, csr: _Csr, values: torch.Tensor
) -> torch.Tensor:
    """dW[k, o, c] = sum_{n,t,w} dY[n,o,t,w] u[n,k,c,t,w] as a [K, C_out, C_in] acc buffer."""
    n, c_in, t, v = x.shape
    c_out = grad_out.shape[1]
    acc_torch, _ = acc_dtypes(x.dtype)
    dw = torch.zeros((csr.k, c_out, c_in), device=x.device, dtype=acc_torch)
    nt = n * t
    blocks = _dweight_blocks(c_in, c_out, nt)
    tiles = csr.row_tiles
    num_o_blocks = triton.cdiv(c_out, blocks.block_o)
    num_c_blocks = triton.cdiv(c_in, blocks.block_c)
    num_nt_blocks = triton.cdiv(nt, blocks.block_t)
    base = csr.k * tiles.num_tiles * num_o_blocks * num_c_blocks
    per_split, num_splits = split_rows(num_nt_blocks, base, x.device)
    with device_guard(x.device):
        _sparse_dweight_kernel[(base * num_splits,)](
            x, grad_out, csr.row_start, csr.col, values,
            tiles.rows, tiles.row_count, tiles.tile_deg, dw,
            c_in, c_out, t, v, nt, csr.k,
            *x.stride(),
            *grad_out.stride(),
            num_o_blocks, num_c_blocks, tiles.num_tiles, num_nt_blocks, per_split,
            **dot_kwargs(x.dtype),
            **_launch_options(blocks, x.device),
        )  # fmt: skip
    return dw


def _launch_dvalues(
    x: torch.Tensor, grad_out: torch.Tensor, weight: torch.Tensor, csr: _Csr
) -> torch.Tensor:
    """d values[j] = sum_{n,c,t} x[n,c,t,col[j]] (W_k^T dY)[n,c,t,w_j] as a [nnz] acc buffer."""
    n, c_in, t, _ = x.shape
    c_out = grad_out.shape[1]
    acc_torch, _ = acc_dtypes(x.dtype)
    dv = torch.zeros(csr.nnz, device=x.device, dtype=acc_torch)
    nt = n * t
    blocks = _dvalues_blocks(c_in, c_out, nt)
    items = csr.entry_items
    num_c_blocks = triton.cdiv(c_in, blocks.block_c)
    num_nt_blocks = triton.cdiv(nt, blocks.block_t)
    base = items.num_items * num_c_blocks
    per_split, num_splits = split_rows(num_nt_blocks, base, x.device)
    with device_guard(x.device):
        _sparse_dvalues_kernel[(base * num_splits,)](
            x, grad_out, weight, csr.col, csr.entry_target,
            items.item_k, items.item_begin, items.item_end, dv,
            c_in, c_out, t, nt,
            *x.stride(),
            *grad_out.stride(),
            *weight.stride(),
            num_c_blocks, items.num_items, num_nt_blocks, per_split,
            **dot_kwargs(x.dtype),
            **_launch_options(blocks, x.device),
        )  # fmt: skip
    return dv


# --------------------------------------------------------------------------------------------
# Public launchers
# --------------------------------------------------------------------------------------------


def sparse_graph_conv_forward(
    x: torch.Tensor,
    weight: torch.Tensor,
    crow_indices: torch.Tensor,
    col_indices: torch.Tensor,
    values: torch.Tensor,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sparse graph convolution, Triton backend (see the module docstring).

    ``y[n, o, t, w] = sum_k sum_{j in row(k, w)} values[j] sum_c W[k, o, c] x[n, c, t, col[j]]
    + bias term``

    The caller (``skelops::sparse_graph_conv_triton``) has checked shapes, dtypes, devices and
    the CSR structure.

    Args:
        x: ``[N, C_in, T, V]``, any strides; float32, float16 or bfloat16 (under the
            interpreter also float64, and bfloat16 is computed in float32 there).
        weight: ``[K, C_out, C_in]``, dtype of x.
        crow_indices: ``[K, V + 1]`` int32 or int64 global row offsets, rows = targets.
        col_indices: ``[nnz]`` sources, dtype of ``crow_indices``.
        values: ``[nnz]`` ``A[k, col[j], w]``, dtype of x.
        bias: None; ``[C_out]``, added after aggregation; or ``[K, C_out]``, before
            aggregation, contributing ``sum_k bias[k, o] * r[k, w]`` with the row sums ``r``.

    Returns:
        ``y``: contiguous ``[N, C_out, T, V]`` in the dtype of x (accumulated in fp32).
    """
    if interpreter_lacks(x.dtype):
        x32, weight32, values32, bias32 = upcast(x, weight, values, bias)
        y = sparse_graph_conv_forward(x32, weight32, crow_indices, col_indices, values32, bias32)
        return y.to(x.dtype)
    v = x.shape[3]
    c_out = weight.shape[1]
    acc_torch, _ = acc_dtypes(x.dtype)
    csr = _structure(crow_indices, col_indices, v)
    values = values.contiguous()  # the kernels index entries directly
    bias_term = None
    if bias is not None and bias.dim() == 1:
        bias_term = bias.to(acc_torch)[:, None].expand(c_out, v)
    elif bias is not None:
        bias_term = torch.einsum("ko,kw->ow", bias.to(acc_torch), csr.row_sums(values, acc_torch))
    return _launch_gather_mix(x, weight, csr, values, bias_term)


def sparse_graph_conv_backward(
    grad_out: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    crow_indices: torch.Tensor,
    col_indices: torch.Tensor,
    values: torch.Tensor,
    bias: torch.Tensor | None,
    output_mask: list[bool],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of :func:`sparse_graph_conv_forward`.

    With ``dY = grad_out`` (``[N, C_out, T, V]``, any strides), ``h_k = W_k^T dY`` and
    ``u[n, k, c, t, w] = sum_{j in row(k, w)} values[j] x[n, c, t, col[j]]``::

        dx[n, c, t, v]  = sum_k sum_{(w, j): col[j] = v, j in row(k, w)} values[j] h[n,k,c,t,w]
        dW[k, o, c]     = sum_{n,t,w} dY[n, o, t, w] u[n, k, c, t, w]
        dvalues[j]      = sum_{n,c,t} x[n, c, t, col[j]] h[n, k, c, t, w]  (j in row(k, w))
                          + sum_o bias[k, o] S[o, w]                       ([K, C_out] bias)
        dbias[o]        = sum_w S[o, w]                                    ([C_out] bias)
        dbias[k, o]     = sum_w S[o, w] r[k, w]                            ([K, C_out] bias)

    with ``S[o, w] = sum_{n,t} dY[n, o, t, w]`` and the row sums ``r[k, w]``. x is not read
    unless dW or dvalues is asked for (it may be a zero-stride stand-in then).

    Args:
        output_mask: four bools selecting (dx, dweight, dvalues, dbias).

    Returns:
        ``(dx, dweight, dvalues, dbias)``, dx contiguous, each in its input's dtype; a gradient
        that is masked out, or dbias when bias is None, is ``x.new_empty(0)``.
    """
    if interpreter_lacks(x.dtype):
        g32, x32, weight32, values32, bias32 = upcast(grad_out, x, weight, values, bias)
        grads = sparse_graph_conv_backward(
            g32, x32, weight32, crow_indices, col_indices, values32, bias32, output_mask
        )
        return tuple(g.to(x.dtype) for g in grads)  # type: ignore[return-value]
    n, c_in, t, v = x.shape
    acc_torch, _ = acc_dtypes(x.dtype)
    want_x, want_w, want_values, want_bias = (bool(m) for m in output_mask)
    want_bias = want_bias and bias is not None
    csr = _structure(crow_indices, col_indices, v)
    values = values.contiguous()  # the kernels index entries directly
    has_work = csr.nnz > 0 and grad_out.numel() > 0

    # Distinct empties: outputs of a torch.library custom op must not alias each other.
    dx, dw, dvalues, dbias = (x.new_empty(0) for _ in range(4))
    if want_x:
        if has_work:
            csr_t, perm = csr.transposed
            dx = _launch_gather_mix(grad_out, weight.transpose(1, 2), csr_t, values[perm], None)
        else:
            dx = torch.zeros((n, c_in, t, v), device=x.device, dtype=x.dtype)
    if want_w:
        if has_work:
            dw = _launch_dweight(x, grad_out, csr, values).to(weight.dtype)
        else:
            dw = torch.zeros_like(weight, memory_format=torch.contiguous_format)

    bias_before = bias is not None and bias.dim() == 2
    dy_sum = None
    if want_bias or (want_values and bias_before):
        dy_sum = grad_out.sum(dim=(0, 2), dtype=acc_torch)  # S: [C_out, V]
    if want_values:
        if has_work:
            dv = _launch_dvalues(x, grad_out, weight, csr)
        else:
            dv = torch.zeros(csr.nnz, device=x.device, dtype=acc_torch)
        if bias_before and csr.nnz > 0:
            share = torch.einsum("ko,ow->kw", bias.to(acc_torch), dy_sum).reshape(-1)
            dv += share[csr.entry_row]
        dvalues = dv.to(values.dtype)
    if want_bias:
        if bias.dim() == 1:
            db = dy_sum.sum(dim=1)
        else:
            db = torch.einsum("ow,kw->ko", dy_sum, csr.row_sums(values, acc_torch))
        dbias = db.to(bias.dtype)
    return dx, dw, dvalues, dbias
