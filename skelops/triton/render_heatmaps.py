"""Triton kernels for pose heatmap rendering (PoseC3D's pseudo heatmaps, pyskl's
GeneratePoseTarget).

Conventions (skelops/reference/render_heatmaps.py is the definition): keypoints
``[N, T, M, V, 2]`` (x, y) and scores ``[N, T, M, V]``; the maps ``[N, C, T, H, W]`` with
``C = V`` (keypoint mode) or ``C = L`` (limb mode, ``limbs [L, 2]``); pixel ``(i, j)`` has centre
``(x, y) = (j, i)``. A person's value at a pixel is ``peak * G`` with ``G = exp(-e)``,
``e = d^2 / (2 sigma^2)`` (``d`` the distance to the keypoint or to the limb's segment) and
``peak`` the score (the smaller end-point score of a limb, the start's on ties or for a limb
shorter than one pixel); it is zero outside pyskl's window (``pyskl_window``) or where
``e > 104`` (full Gaussian). Persons combine by the maximum from 0, strictly greater wins, so a
pixel's gradient goes to the first person attaining a positive maximum.

Kernels (math in float32, float64 for float64 inputs, which only the interpreter runs):

* ``_forward_kernel``: one program per block of ``BLOCK`` output elements of one (clip, frame):
  contiguous output: ``BLOCK`` pixels of one channel plane (the channel, hence the joints and
  scores of each person, is a scalar); channels_last_3d: ``BLOCK`` consecutive (pixel, channel)
  elements, channel fastest, as they lie in memory (the per-channel joints are gathered from the
  small keypoint tensor). Either way the store is one coalesced run. It loops over the persons;
  a person whose box (pyskl's window, or the bounding box of the ``e <= 104`` region, clamped to
  the canvas) misses every element of the block costs a few integer compares, no ``exp``.
  Every element is written (zeros outside all boxes): the output needs no zero fill.
* ``_backward_kernel``: one program per (clip, frame, channel) plane. It takes the union of the
  persons' boxes and walks only that rectangle in ``[BLOCK_Y, BLOCK_X]`` tiles, reading the
  gradient with its strides (other pixels carry no gradient and are never read). Per tile:
  pass 1 finds each pixel's winning person, pass 2 recomputes each person's values and sums its
  pixels' contributions with ``tl.sum`` into per-person registers (``BLOCK_M`` persons at a
  time; more persons take further sweeps). It writes per-(plane, person) partials
  ``[N, T, C, M, K]`` (keypoint: d/dx, d/dy without the ``1 / sigma^2`` factor, d/dscore;
  limb: the same for start and end point, the peak's gradient on the score it came from).
* ``_gather_kernel``: one program per (clip, frame, person) sums the partials of each joint in a
  fixed order (limb by limb, start before end point) and writes the gradients in the inputs'
  dtype. Keypoint mode is a transpose.

Deterministic: every sum has a fixed order (``tl.sum`` over a tile, tiles in order, limbs in
order); no atomics, so repeated runs are bitwise equal.

Block sizes: forward 1024 elements, on 4 warps (8 per thread; a 64 x 64 map is four programs
per channel plane) or, channels_last_3d (per-element joint parameters), 8 warps; with H, W
multiples of 4 the stores compile to 128-bit ``st.global.v4``. Backward tiles sized to one
keypoint's box (``2 sigma sqrt(208) + 1`` pixels, ``6 sigma + 2`` for pyskl windows; 32 x 32
for sigma = 0.6 in full mode, 8 x 16 with windows), 4 elements per thread; persons 4 at a
time. Chosen by arithmetic and offline sm_90 compiles (``triton.compile`` for
``GPUTarget("cuda", 90, 32)``: every variant builds, no spills, at most ~110 registers);
no GPU was available, so the kernels have run under the interpreter only, never timed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import triton
import triton.language as tl

from ..reference.render_heatmaps import EXPONENT_CUTOFF, SCORE_THRESHOLD
from ._common import (
    INTERPRETED,
    acc_dtypes,
    clamp_pow2,
    device_guard,
    next_pow2,
    supported_dtypes,
)

__all__ = ["render_heatmaps_forward", "render_heatmaps_backward"]

_FORWARD_BLOCK = 1024
_FORWARD_WARPS = 4
# channels_last_3d gathers each element's joint parameters (limb mode: about a dozen values per
# element): 4 elements per thread instead of 8 keep an sm_90 build near 110 registers (225 on 4).
_FORWARD_WARPS_CHANNELS_LAST = 8
# Backward tiles: at most _MAX_TILE x _MAX_TILE, else sized to the box of one keypoint.
_MAX_TILE = 32
_PERSONS_PER_SWEEP = 4
_MAX_JOINT_BLOCK = 128
_OUTPUT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
# Partials per (plane, person): keypoint (dx, dy, ds); limb (dax, day, dbx, dby, dsa, dsb).
_KEYPOINT_PARTIALS = 3
_LIMB_PARTIALS = 6


# --------------------------------------------------------------------------------------------
# Kernel helpers (elementwise: the person's parameters may be scalars or per-element vectors)
# --------------------------------------------------------------------------------------------


@triton.jit
def _load_point(kp_ptr, sc_ptr, index, ACC_DTYPE: tl.constexpr):
    """x, y, score of keypoint ``index`` (flat over [N, T, M, V])."""
    x = tl.load(kp_ptr + index * 2).to(ACC_DTYPE)
    y = tl.load(kp_ptr + index * 2 + 1).to(ACC_DTYPE)
    s = tl.load(sc_ptr + index).to(ACC_DTYPE)
    return x, y, s


@triton.jit
def _load_point_if(kp_ptr, sc_ptr, index, present, ACC_DTYPE: tl.constexpr):
    """As _load_point where ``present``; zeros elsewhere, which read as an invalid keypoint
    (score below the threshold)."""
    x = tl.load(kp_ptr + index * 2, mask=present, other=0.0).to(ACC_DTYPE)
    y = tl.load(kp_ptr + index * 2 + 1, mask=present, other=0.0).to(ACC_DTYPE)
    s = tl.load(sc_ptr + index, mask=present, other=0.0).to(ACC_DTYPE)
    return x, y, s


@triton.jit
def _is_valid(x, y, s, threshold):
    """Finite coordinates and score, score >= threshold (NaN fails every compare)."""
    inf = float("inf")
    return (tl.abs(x) < inf) & (tl.abs(y) < inf) & (tl.abs(s) < inf) & (s >= threshold)


@triton.jit
def _span(lo, hi, extent, three_sigma, radius, PYSKL: tl.constexpr):
    """Inclusive pixel range ``[first, last]`` (int32) on one axis of the box ``lo..hi``.

    PYSKL: pyskl's window ``[max(int(lo - 3 sigma), 0), min(int(hi + 3 sigma) + 1, extent))``,
    ``int`` truncating toward zero after clamping to +-2^24 (float-to-int conversion truncates).
    Otherwise the pixels within ``radius`` (the distance at ``e = 104``, a hair larger so that
    rounding cannot drop a pixel with ``e <= 104``); the clamp to ``[-1, extent]`` keeps huge
    coordinates in int32."""
    if PYSKL:
        first = tl.minimum(tl.maximum(lo - three_sigma, -16777216.0), 16777216.0).to(tl.int32)
        last = tl.minimum(tl.maximum(hi + three_sigma, -16777216.0), 16777216.0).to(tl.int32)
        first = tl.maximum(first, 0)
        last = tl.minimum(last + 1, extent) - 1
    else:
        first = tl.ceil(tl.minimum(tl.maximum(lo - radius, -1.0), extent)).to(tl.int32)
        last = tl.floor(tl.minimum(tl.maximum(hi + radius, -1.0), extent)).to(tl.int32)
        first = tl.maximum(first, 0)
        last = tl.minimum(last, extent - 1)
    return first, last


@triton.jit
def _in_box(col, row, x0, x1, y0, y1):
    return (col >= x0) & (col <= x1) & (row >= y0) & (row <= y1)


@triton.jit
def _keypoint_setup(x, y, s, W, H, threshold, three_sigma, radius, PYSKL: tl.constexpr):
    """Safe coordinates and score (0 when invalid) and the box; an invalid keypoint has an
    empty box (x0 = W, x1 = -1)."""
    valid = _is_valid(x, y, s, threshold)
    x = tl.where(valid, x, 0.0)
    y = tl.where(valid, y, 0.0)
    s = tl.where(valid, s, 0.0)
    x0, x1 = _span(x, x, W, three_sigma, radius, PYSKL)
    y0, y1 = _span(y, y, H, three_sigma, radius, PYSKL)
    x0 = tl.where(valid, x0, W)
    x1 = tl.where(valid, x1, -1)
    return x, y, s, x0, x1, y0, y1


@triton.jit
def _keypoint_value(col, row, x, y, s, x0, x1, y0, y1, two_sigma2, PYSKL: tl.constexpr):
    """(value, G, dx, dy) at the pixels (col, row): ``dx = col - x``, value ``s G`` inside."""
    dx = col.to(x.dtype) - x
    dy = row.to(x.dtype) - y
    exponent = (dx * dx + dy * dy) / two_sigma2
    gauss = tl.exp(-exponent)
    inside = _in_box(col, row, x0, x1, y0, y1)
    if not PYSKL:
        inside = inside & (exponent <= 104.0)
    return tl.where(inside, s * gauss, 0.0), gauss, dx, dy


@triton.jit
def _limb_setup(ax, ay, sa, bx, by, sb, W, H, threshold, three_sigma, radius, PYSKL: tl.constexpr):
    """Safe start point a, direction u = b - a, the divisor of the projection, whether the
    limb is short (|u|^2 < 1: drawn as a's Gaussian), its peak (0 when invalid), whether the
    peak is a's score, and the box (empty when invalid)."""
    valid = _is_valid(ax, ay, sa, threshold) & _is_valid(bx, by, sb, threshold)
    ax = tl.where(valid, ax, 0.0)
    ay = tl.where(valid, ay, 0.0)
    bx = tl.where(valid, bx, 0.0)
    by = tl.where(valid, by, 0.0)
    ux = bx - ax
    uy = by - ay
    length2 = ux * ux + uy * uy
    short = length2 < 1.0
    peak_is_a = short | (sa <= sb)
    peak = tl.where(valid, tl.where(peak_is_a, sa, sb), 0.0)
    safe_length2 = tl.where(short, 1.0, length2)
    lo_x = tl.minimum(ax, bx)
    hi_x = tl.maximum(ax, bx)
    lo_y = tl.minimum(ay, by)
    hi_y = tl.maximum(ay, by)
    if PYSKL:  # pyskl's window of a short limb is the start point's
        lo_x = tl.where(short, ax, lo_x)
        hi_x = tl.where(short, ax, hi_x)
        lo_y = tl.where(short, ay, lo_y)
        hi_y = tl.where(short, ay, hi_y)
    x0, x1 = _span(lo_x, hi_x, W, three_sigma, radius, PYSKL)
    y0, y1 = _span(lo_y, hi_y, H, three_sigma, radius, PYSKL)
    x0 = tl.where(valid, x0, W)
    x1 = tl.where(valid, x1, -1)
    return ax, ay, ux, uy, safe_length2, short, peak, peak_is_a, x0, x1, y0, y1


@triton.jit
def _limb_value(
    col, row, ax, ay, ux, uy, safe_length2, short, peak, x0, x1, y0, y1, two_sigma2,
    PYSKL: tl.constexpr,
):  # fmt: skip
    """(value, G, c, rx, ry): c the projection coefficient clamped to [0, 1] (0 for a short
    limb), r = p - a - c u the offset from the segment."""
    wx = col.to(ax.dtype) - ax
    wy = row.to(ax.dtype) - ay
    along = (wx * ux + wy * uy) / safe_length2
    # Clamped with compares, as torch.clamp: a NaN (inf / inf for huge coordinates) stays NaN
    # and its value then never wins the maximum.
    along = tl.where(along < 0.0, 0.0, tl.where(along > 1.0, 1.0, along))
    along = tl.where(short, 0.0, along)
    rx = wx - along * ux
    ry = wy - along * uy
    exponent = (rx * rx + ry * ry) / two_sigma2
    gauss = tl.exp(-exponent)
    inside = _in_box(col, row, x0, x1, y0, y1)
    if not PYSKL:
        inside = inside & (exponent <= 104.0)
    return tl.where(inside, peak * gauss, 0.0), gauss, along, rx, ry


@triton.jit
def _constants(const_ptr, two_sigma2, three_sigma, radius, threshold, CONST_TENSOR: tl.constexpr):
    """The scalar constants: kernel arguments (fp32), or loaded from a float64 tensor (a Python
    float argument is fp32; float64 runs need them exact)."""
    if CONST_TENSOR:
        two_sigma2 = tl.load(const_ptr + 0)
        three_sigma = tl.load(const_ptr + 1)
        radius = tl.load(const_ptr + 2)
        threshold = tl.load(const_ptr + 3)
    return two_sigma2, three_sigma, radius, threshold


@triton.jit
def _limb_joints(limbs_ptr, c, V):
    """Start and end joints of limb c, clamped into [0, V) (the op validates them; the clamp
    only keeps a bad direct call from reading out of bounds)."""
    a = tl.load(limbs_ptr + c * 2).to(tl.int32)
    b = tl.load(limbs_ptr + c * 2 + 1).to(tl.int32)
    a = tl.minimum(tl.maximum(a, 0), V - 1)
    b = tl.minimum(tl.maximum(b, 0), V - 1)
    return a, b


# --------------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------------


@triton.jit
def _forward_kernel(
    kp_ptr, sc_ptr, limbs_ptr, out_ptr, const_ptr,
    two_sigma2, three_sigma, radius, threshold,
    T, M, V, C, H, W,
    so_n, so_c, so_t,
    num_blocks,
    LIMB: tl.constexpr, PYSKL: tl.constexpr, CHANNELS_LAST: tl.constexpr,
    CONST_TENSOR: tl.constexpr, BLOCK: tl.constexpr, ACC_DTYPE: tl.constexpr,
):  # fmt: skip
    """out[n, c, t, i, j] for BLOCK elements of one (n, t): pixels of one channel plane, or
    (CHANNELS_LAST) consecutive (pixel, channel) pairs, channel fastest."""
    pid = tl.program_id(0)
    block = pid % num_blocks
    offs = block * BLOCK + tl.arange(0, BLOCK)
    if CHANNELS_LAST:
        nt = (pid // num_blocks).to(tl.int64)
        ok = offs < H * W * C
        c = offs % C
        pixel = offs // C
    else:
        rest = pid // num_blocks
        c = rest % C
        nt = (rest // C).to(tl.int64)
        ok = offs < H * W
        pixel = offs
    row = pixel // W
    col = pixel % W
    n = nt // T
    t = nt % T
    two_sigma2, three_sigma, radius, threshold = _constants(
        const_ptr, two_sigma2, three_sigma, radius, threshold, CONST_TENSOR
    )
    if LIMB:
        joint_a, joint_b = _limb_joints(limbs_ptr, c, V)
    else:
        joint_a = c
    best = tl.zeros([BLOCK], dtype=ACC_DTYPE)
    for m in range(0, M):
        person = (nt * M + m) * V
        if LIMB:
            ax, ay, sa = _load_point(kp_ptr, sc_ptr, person + joint_a, ACC_DTYPE)
            bx, by, sb = _load_point(kp_ptr, sc_ptr, person + joint_b, ACC_DTYPE)
            ax, ay, ux, uy, length2, short, peak, peak_is_a, x0, x1, y0, y1 = _limb_setup(
                ax, ay, sa, bx, by, sb, W, H, threshold, three_sigma, radius, PYSKL
            )
        else:
            x, y, s = _load_point(kp_ptr, sc_ptr, person + joint_a, ACC_DTYPE)
            x, y, s, x0, x1, y0, y1 = _keypoint_setup(
                x, y, s, W, H, threshold, three_sigma, radius, PYSKL
            )
        touched = ok & _in_box(col, row, x0, x1, y0, y1)
        if tl.max(touched.to(tl.int32), axis=0) > 0:
            if LIMB:
                value = _limb_value(
                    col, row, ax, ay, ux, uy, length2, short, peak, x0, x1, y0, y1,
                    two_sigma2, PYSKL,
                )[0]  # fmt: skip
            else:
                value = _keypoint_value(col, row, x, y, s, x0, x1, y0, y1, two_sigma2, PYSKL)[0]
            # Strictly greater (a NaN never wins): the earlier person keeps ties.
            best = tl.where(value > best, value, best)
    # The launcher's layouts: a block is one run of memory (channels_last_3d: (pixel, channel)
    # pairs, channel fastest; contiguous: pixels of a channel plane), so the store vectorises.
    if CHANNELS_LAST:
        out = out_ptr + n * so_n + t * so_t + offs
    else:
        out = out_ptr + n * so_n + c.to(tl.int64) * so_c + t * so_t + offs
    tl.store(out, best.to(out_ptr.dtype.element_ty), mask=ok)


@triton.jit
def _backward_kernel(
    grad_ptr, kp_ptr, sc_ptr, limbs_ptr, part_ptr, const_ptr,
    two_sigma2, three_sigma, radius, threshold,
    T, M, V, C, H, W,
    sg_n, sg_c, sg_t, sg_h, sg_w,
    LIMB: tl.constexpr, PYSKL: tl.constexpr, CONST_TENSOR: tl.constexpr,
    BLOCK_Y: tl.constexpr, BLOCK_X: tl.constexpr, BLOCK_M: tl.constexpr,
    NUM_PARTIALS: tl.constexpr, ACC_DTYPE: tl.constexpr,
):  # fmt: skip
    """partials[n, t, c, m, :] of one (n, t, c) plane (contiguous [N, T, C, M, K])."""
    pid = tl.program_id(0)
    c = pid % C
    nt = (pid // C).to(tl.int64)
    n = nt // T
    t = nt % T
    two_sigma2, three_sigma, radius, threshold = _constants(
        const_ptr, two_sigma2, three_sigma, radius, threshold, CONST_TENSOR
    )
    if LIMB:
        joint_a, joint_b = _limb_joints(limbs_ptr, c, V)
    else:
        joint_a = c
        joint_b = c

    # The union of the persons' (non-empty) boxes: nothing outside it has a gradient.
    # Tensors from the start (W or H may arrive as constexpr 1): they are loop-carried.
    box_x0 = tl.zeros([], dtype=tl.int32) + W
    box_x1 = tl.full([], -1, dtype=tl.int32)
    box_y0 = tl.zeros([], dtype=tl.int32) + H
    box_y1 = tl.full([], -1, dtype=tl.int32)
    for m in range(0, M):
        person = (nt * M + m) * V
        if LIMB:
            ax, ay, sa = _load_point(kp_ptr, sc_ptr, person + joint_a, ACC_DTYPE)
            bx, by, sb = _load_point(kp_ptr, sc_ptr, person + joint_b, ACC_DTYPE)
            ax, ay, ux, uy, length2, short, peak, peak_is_a, x0, x1, y0, y1 = _limb_setup(
                ax, ay, sa, bx, by, sb, W, H, threshold, three_sigma, radius, PYSKL
            )
        else:
            x, y, s = _load_point(kp_ptr, sc_ptr, person + joint_a, ACC_DTYPE)
            x, y, s, x0, x1, y0, y1 = _keypoint_setup(
                x, y, s, W, H, threshold, three_sigma, radius, PYSKL
            )
        nonempty = (x0 <= x1) & (y0 <= y1)
        box_x0 = tl.where(nonempty, tl.minimum(box_x0, x0), box_x0)
        box_x1 = tl.where(nonempty, tl.maximum(box_x1, x1), box_x1)
        box_y0 = tl.where(nonempty, tl.minimum(box_y0, y0), box_y0)
        box_y1 = tl.where(nonempty, tl.maximum(box_y1, y1), box_y1)

    grad_base = grad_ptr + n * sg_n + c.to(tl.int64) * sg_c + t * sg_t
    tile_rows = tl.arange(0, BLOCK_Y)[:, None]
    tile_cols = tl.arange(0, BLOCK_X)[None, :]
    slots = tl.arange(0, BLOCK_M)
    part_base = part_ptr + (nt * C + c) * M * NUM_PARTIALS
    for m0 in range(0, M, BLOCK_M):
        acc0 = tl.zeros([BLOCK_M], dtype=ACC_DTYPE)
        acc1 = tl.zeros([BLOCK_M], dtype=ACC_DTYPE)
        acc2 = tl.zeros([BLOCK_M], dtype=ACC_DTYPE)
        acc3 = tl.zeros([BLOCK_M], dtype=ACC_DTYPE)
        acc4 = tl.zeros([BLOCK_M], dtype=ACC_DTYPE)
        acc5 = tl.zeros([BLOCK_M], dtype=ACC_DTYPE)
        for ty in range(box_y0, box_y1 + 1, BLOCK_Y):
            for tx in range(box_x0, box_x1 + 1, BLOCK_X):
                row = ty + tile_rows
                col = tx + tile_cols
                tile_ok = (row <= box_y1) & (col <= box_x1)
                g_ptrs = grad_base + row * sg_h + col * sg_w
                g = tl.load(g_ptrs, mask=tile_ok, other=0.0).to(ACC_DTYPE)
                # Pass 1: the winner of each pixel (-1: nobody, the maximum is 0).
                best = tl.zeros([BLOCK_Y, BLOCK_X], dtype=ACC_DTYPE)
                winner = tl.full([BLOCK_Y, BLOCK_X], -1, dtype=tl.int32)
                for m in range(0, M):
                    person = (nt * M + m) * V
                    if LIMB:
                        ax, ay, sa = _load_point(kp_ptr, sc_ptr, person + joint_a, ACC_DTYPE)
                        bx, by, sb = _load_point(kp_ptr, sc_ptr, person + joint_b, ACC_DTYPE)
                        ax, ay, ux, uy, length2, short, peak, peak_is_a, x0, x1, y0, y1 = (
                            _limb_setup(
                                ax, ay, sa, bx, by, sb, W, H, threshold, three_sigma, radius, PYSKL
                            )
                        )
                        value = _limb_value(
                            col, row, ax, ay, ux, uy, length2, short, peak, x0, x1, y0, y1,
                            two_sigma2, PYSKL,
                        )[0]  # fmt: skip
                    else:
                        x, y, s = _load_point(kp_ptr, sc_ptr, person + joint_a, ACC_DTYPE)
                        x, y, s, x0, x1, y0, y1 = _keypoint_setup(
                            x, y, s, W, H, threshold, three_sigma, radius, PYSKL
                        )
                        value = _keypoint_value(
                            col, row, x, y, s, x0, x1, y0, y1, two_sigma2, PYSKL
                        )[0]
                    take = value > best
                    best = tl.where(take, value, best)
                    winner = tl.where(take, m, winner)
                # Pass 2: each person of this sweep sums its winning pixels' contributions.
                for j in range(0, BLOCK_M):
                    m = m0 + j
                    present = m < M
                    person = (nt * M + m) * V
                    wins = tile_ok & (winner == m)
                    if LIMB:
                        ax, ay, sa = _load_point_if(
                            kp_ptr, sc_ptr, person + joint_a, present, ACC_DTYPE
                        )
                        bx, by, sb = _load_point_if(
                            kp_ptr, sc_ptr, person + joint_b, present, ACC_DTYPE
                        )
                        ax, ay, ux, uy, length2, short, peak, peak_is_a, x0, x1, y0, y1 = (
                            _limb_setup(
                                ax, ay, sa, bx, by, sb, W, H, threshold, three_sigma, radius,
                                PYSKL,
                            )
                        )  # fmt: skip
                        value, gauss, along, rx, ry = _limb_value(
                            col, row, ax, ay, ux, uy, length2, short, peak, x0, x1, y0, y1,
                            two_sigma2, PYSKL,
                        )  # fmt: skip
                        gv = g * value
                        near = gv * (1.0 - along)
                        far = gv * along
                        d_ax = tl.sum(tl.where(wins, near * rx, 0.0))
                        d_ay = tl.sum(tl.where(wins, near * ry, 0.0))
                        d_bx = tl.sum(tl.where(wins, far * rx, 0.0))
                        d_by = tl.sum(tl.where(wins, far * ry, 0.0))
                        d_peak = tl.sum(tl.where(wins, g * gauss, 0.0))
                        here = slots == j
                        acc0 = tl.where(here, acc0 + d_ax, acc0)
                        acc1 = tl.where(here, acc1 + d_ay, acc1)
                        acc2 = tl.where(here, acc2 + d_bx, acc2)
                        acc3 = tl.where(here, acc3 + d_by, acc3)
                        acc4 = tl.where(here, acc4 + tl.where(peak_is_a, d_peak, 0.0), acc4)
                        acc5 = tl.where(here, acc5 + tl.where(peak_is_a, 0.0, d_peak), acc5)
                    else:
                        x, y, s = _load_point_if(
                            kp_ptr, sc_ptr, person + joint_a, present, ACC_DTYPE
                        )
                        x, y, s, x0, x1, y0, y1 = _keypoint_setup(
                            x, y, s, W, H, threshold, three_sigma, radius, PYSKL
                        )
                        value, gauss, dx, dy = _keypoint_value(
                            col, row, x, y, s, x0, x1, y0, y1, two_sigma2, PYSKL
                        )
                        gv = g * value
                        d_x = tl.sum(tl.where(wins, gv * dx, 0.0))
                        d_y = tl.sum(tl.where(wins, gv * dy, 0.0))
                        d_s = tl.sum(tl.where(wins, g * gauss, 0.0))
                        here = slots == j
                        acc0 = tl.where(here, acc0 + d_x, acc0)
                        acc1 = tl.where(here, acc1 + d_y, acc1)
                        acc2 = tl.where(here, acc2 + d_s, acc2)
        slot_ok = (m0 + slots) < M
        part = part_base + (m0 + slots) * NUM_PARTIALS
        tl.store(part + 0, acc0, mask=slot_ok)
        tl.store(part + 1, acc1, mask=slot_ok)
        tl.store(part + 2, acc2, mask=slot_ok)
        if LIMB:
            tl.store(part + 3, acc3, mask=slot_ok)
            tl.store(part + 4, acc4, mask=slot_ok)
            tl.store(part + 5, acc5, mask=slot_ok)


@triton.jit
def _gather_kernel(
    part_ptr, limbs_ptr, grad_kp_ptr, grad_sc_ptr, coord_scale_ptr,
    M, V, C,
    LIMB: tl.constexpr, WANT_KEYPOINTS: tl.constexpr, WANT_SCORES: tl.constexpr,
    NUM_PARTIALS: tl.constexpr, BLOCK_V: tl.constexpr,
):  # fmt: skip
    """grad_keypoints[n, t, m, :, :] and grad_scores[n, t, m, :] (contiguous) from the partials
    of one (n, t, m): keypoint mode reads its joint's plane; limb mode adds, limb by limb, the
    start point's then the end point's partials."""
    pid = tl.program_id(0)
    m = pid % M
    nt = (pid // M).to(tl.int64)
    coord_scale = tl.load(coord_scale_ptr)  # 1 / sigma^2 in the accumulation dtype
    for v0 in range(0, V, BLOCK_V):
        v = v0 + tl.arange(0, BLOCK_V)
        v_ok = v < V
        if LIMB:
            gx = tl.zeros([BLOCK_V], dtype=coord_scale.dtype)
            gy = tl.zeros([BLOCK_V], dtype=coord_scale.dtype)
            gs = tl.zeros([BLOCK_V], dtype=coord_scale.dtype)
            for limb in range(0, C):
                joint_a, joint_b = _limb_joints(limbs_ptr, limb, V)
                part = part_ptr + ((nt * C + limb) * M + m) * NUM_PARTIALS
                at_a = v == joint_a
                at_b = v == joint_b
                gx = tl.where(at_a, gx + tl.load(part + 0), gx)
                gy = tl.where(at_a, gy + tl.load(part + 1), gy)
                gs = tl.where(at_a, gs + tl.load(part + 4), gs)
                gx = tl.where(at_b, gx + tl.load(part + 2), gx)
                gy = tl.where(at_b, gy + tl.load(part + 3), gy)
                gs = tl.where(at_b, gs + tl.load(part + 5), gs)
        else:
            part = part_ptr + ((nt * C + v) * M + m) * NUM_PARTIALS
            gx = tl.load(part + 0, mask=v_ok, other=0.0)
            gy = tl.load(part + 1, mask=v_ok, other=0.0)
            gs = tl.load(part + 2, mask=v_ok, other=0.0)
        out = (nt * M + m) * V + v
        if WANT_KEYPOINTS:
            kp_ty = grad_kp_ptr.dtype.element_ty
            tl.store(grad_kp_ptr + out * 2, (gx * coord_scale).to(kp_ty), mask=v_ok)
            tl.store(grad_kp_ptr + out * 2 + 1, (gy * coord_scale).to(kp_ty), mask=v_ok)
        if WANT_SCORES:
            tl.store(grad_sc_ptr + out, gs.to(grad_sc_ptr.dtype.element_ty), mask=v_ok)


# --------------------------------------------------------------------------------------------
# Launch helpers
# --------------------------------------------------------------------------------------------


def _check_inputs(
    keypoints: torch.Tensor, scores: torch.Tensor, limbs: torch.Tensor | None, sigma: float
) -> None:
    """What only the Triton kernels require; shapes, dtypes, devices, limbs and sigma are
    checked by the operators (skelops/ops/render_heatmaps.py) before they call the launchers."""
    if keypoints.dtype not in supported_dtypes():
        names = ", ".join(str(d) for d in supported_dtypes())
        raise TypeError(f"keypoints must have dtype in ({names}); got {keypoints.dtype}")
    if keypoints.device.type != "cuda" and not INTERPRETED:
        raise ValueError(
            "the Triton render_heatmaps kernels need CUDA tensors (or TRITON_INTERPRET=1 set "
            f"before triton is imported); got keypoints on {keypoints.device}"
        )


def _interpreter_lacks_bf16(*dtypes: torch.dtype) -> bool:
    # The interpreter (triton <= 3.6) stores bfloat16 as uint16: bfloat16 runs there through
    # float32 copies (see _common.interpreter_lacks). On a GPU the kernels read and write it.
    return INTERPRETED and torch.bfloat16 in dtypes


def _float32_if_bf16(t: torch.Tensor) -> torch.Tensor:
    return t.float() if t.dtype == torch.bfloat16 else t


def _limb_arg(limbs: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    return like if limbs is None else limbs.to(torch.int64).contiguous()


def _scalar_args(sigma: float, dtype: torch.dtype, device: torch.device) -> dict[str, object]:
    """The kernels' constants, rounded to the math dtype as the reference rounds them: scalar
    arguments (fp32) for float32 math, a float64 tensor for float64 math."""
    two_sigma2 = 2.0 * sigma * sigma
    values = {
        "two_sigma2": two_sigma2,
        "three_sigma": 3.0 * sigma,
        # Distance at e = 104, with a relative margin far above float32 rounding.
        "radius": math.sqrt(EXPONENT_CUTOFF * two_sigma2) * (1.0 + 1e-5),
        "threshold": SCORE_THRESHOLD,
    }
    const_tensor = dtype == torch.float64
    const = (
        torch.tensor(list(values.values()), dtype=torch.float64, device=device)
        if const_tensor
        else None
    )
    return {**values, "const_ptr": const, "CONST_TENSOR": const_tensor}


def _backward_tile(sigma: float, pyskl_window: bool) -> tuple[int, int]:
    """[rows, columns] of a backward tile: the box of one keypoint (pyskl: ``6 sigma + 2``
    pixels; full: ``2 sigma sqrt(208) + 1``) in one tile up to 32 x 32, 4 elements per thread
    (rows of >= 16 contiguous gradient elements). Limb boxes are longer: they take more tiles."""
    extent = 6.0 * sigma + 2.0 if pyskl_window else 2.0 * sigma * math.sqrt(208.0) + 1.0
    extent = math.ceil(extent)
    return clamp_pow2(extent, 8, _MAX_TILE), clamp_pow2(extent, 16, _MAX_TILE)


def _coord_scale(sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    # d/dk exp(-|p - k|^2 / (2 sigma^2)) = G (p - k) * 2 / (2 sigma^2).
    return torch.full((1,), 2.0 / (2.0 * sigma * sigma), dtype=dtype, device=device)


# --------------------------------------------------------------------------------------------
# Public launchers
# --------------------------------------------------------------------------------------------


def render_heatmaps_forward(
    keypoints: torch.Tensor,
    scores: torch.Tensor,
    limbs: torch.Tensor | None,
    height: int,
    width: int,
    sigma: float,
    pyskl_window: bool,
    channels_last: bool,
    dtype: torch.dtype | None,
) -> torch.Tensor:
    """Keypoint or limb heatmaps, Triton backend (the module docstring has the formulas).

    Args:
        keypoints: ``[N, T, M, V, 2]`` pixel coordinates (x, y), any strides; float32, float16
            or bfloat16 (under the interpreter also float64). Math in float32 (float64 for
            float64).
        scores: ``[N, T, M, V]``, keypoints' dtype and device.
        limbs: ``[L, 2]`` integer joint pairs in ``[0, V)`` (limb mode; not validated here, out
            of range joints are clamped) or None (keypoint mode).
        height, width: the map size, ``>= 1``.
        sigma: Gaussian standard deviation in pixels, positive.
        pyskl_window: pyskl's truncated 3-sigma windows instead of the full Gaussian.
        channels_last: allocate the output channels_last_3d (channel fastest in memory).
        dtype: output dtype (float32, float64, float16, bfloat16); None for keypoints' dtype.

    Returns:
        ``[N, C, T, H, W]`` (``C = V`` or ``L``), contiguous or channels_last_3d.
    """
    _check_inputs(keypoints, scores, limbs, sigma)
    if height < 1 or width < 1:
        raise ValueError(f"height and width must be >= 1; got {height} x {width}")
    out_dtype = keypoints.dtype if dtype is None else dtype
    if out_dtype not in _OUTPUT_DTYPES:
        raise TypeError(f"dtype must be one of {_OUTPUT_DTYPES} or None; got {out_dtype}")
    if _interpreter_lacks_bf16(keypoints.dtype, out_dtype):
        out = render_heatmaps_forward(
            _float32_if_bf16(keypoints), _float32_if_bf16(scores), limbs, height, width, sigma,
            pyskl_window, channels_last,
            torch.float32 if out_dtype == torch.bfloat16 else out_dtype,
        )  # fmt: skip
        return out.to(out_dtype)  # preserve_format keeps channels_last_3d
    n, t, m, v, _ = keypoints.shape
    c = v if limbs is None else limbs.shape[0]
    memory_format = torch.channels_last_3d if channels_last else torch.contiguous_format
    out = torch.empty(
        (n, c, t, height, width), dtype=out_dtype, device=keypoints.device,
        memory_format=memory_format,
    )  # fmt: skip
    if out.numel() == 0:
        return out
    keypoints, scores = keypoints.contiguous(), scores.contiguous()
    _, acc_tl = acc_dtypes(keypoints.dtype)
    consts = _scalar_args(sigma, keypoints.dtype, keypoints.device)
    if consts["const_ptr"] is None:
        consts["const_ptr"] = keypoints
    elements = height * width * c if channels_last else height * width
    num_blocks = triton.cdiv(elements, _FORWARD_BLOCK)
    programs = n * t * num_blocks * (1 if channels_last else c)
    with device_guard(keypoints.device):
        _forward_kernel[(programs,)](
            keypoints, scores, _limb_arg(limbs, keypoints), out, consts["const_ptr"],
            consts["two_sigma2"], consts["three_sigma"], consts["radius"], consts["threshold"],
            t, m, v, c, height, width,
            out.stride(0), out.stride(1), out.stride(2),
            num_blocks,
            LIMB=limbs is not None, PYSKL=bool(pyskl_window), CHANNELS_LAST=bool(channels_last),
            CONST_TENSOR=consts["CONST_TENSOR"], BLOCK=_FORWARD_BLOCK, ACC_DTYPE=acc_tl,
            num_warps=_FORWARD_WARPS_CHANNELS_LAST if channels_last else _FORWARD_WARPS,
        )  # fmt: skip
    return out


def render_heatmaps_backward(
    grad: torch.Tensor,
    keypoints: torch.Tensor,
    scores: torch.Tensor,
    limbs: torch.Tensor | None,
    sigma: float,
    pyskl_window: bool,
    output_mask: Sequence[bool],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of :func:`render_heatmaps_forward` for keypoints and scores.

    Each pixel's gradient ``g`` goes to the first person attaining its (positive) maximum
    ``v = peak G``: keypoint ``d/dk = g v (p - k) / sigma^2``, ``d/ds = g G``; limb
    ``d/da = g v (1 - c) r / sigma^2``, ``d/db = g v c r / sigma^2``, ``d/dpeak = g G`` to the
    score the peak came from (a short limb: as keypoint a). Sums are deterministic.

    Args:
        grad: ``[N, C, T, H, W]``, any strides, any floating dtype (read with its strides; only
            the pixels inside the persons' boxes are read).
        keypoints, scores, limbs, sigma, pyskl_window: as in the forward.
        output_mask: two bools selecting (grad_keypoints, grad_scores).

    Returns:
        ``(grad_keypoints [N, T, M, V, 2], grad_scores [N, T, M, V])`` contiguous in the
        inputs' dtype; one not asked for is an empty tensor (``torch.empty(0)``).
    """
    _check_inputs(keypoints, scores, limbs, sigma)
    if len(output_mask) != 2:
        raise ValueError(f"output_mask must have 2 entries; got {len(output_mask)}")
    want_kp, want_sc = (bool(wanted) for wanted in output_mask)
    n, t, m, v, _ = keypoints.shape
    c = v if limbs is None else limbs.shape[0]
    if grad.dim() != 5 or (grad.shape[0], grad.shape[1], grad.shape[2]) != (n, c, t):
        raise ValueError(
            f"grad must be [N, C, T, H, W] with [N, C, T] = {[n, c, t]}; got shape "
            f"{tuple(grad.shape)}"
        )
    if not grad.is_floating_point() or grad.device != keypoints.device:
        raise ValueError(
            f"grad must be a floating tensor on {keypoints.device}; got {grad.dtype} on "
            f"{grad.device}"
        )
    if _interpreter_lacks_bf16(keypoints.dtype, grad.dtype):
        grads = render_heatmaps_backward(
            _float32_if_bf16(grad), _float32_if_bf16(keypoints), _float32_if_bf16(scores),
            limbs, sigma, pyskl_window, output_mask,
        )  # fmt: skip
        return tuple(g.to(keypoints.dtype) for g in grads)  # type: ignore[return-value]
    height, width = grad.shape[3], grad.shape[4]
    options = dict(dtype=keypoints.dtype, device=keypoints.device)
    # Distinct empties: outputs of a torch.library custom op must not alias each other.
    grad_kp = torch.empty((n, t, m, v, 2) if want_kp else (0,), **options)
    grad_sc = torch.empty((n, t, m, v) if want_sc else (0,), **options)
    if not (want_kp or want_sc) or n * t * m * v == 0:
        return grad_kp, grad_sc
    if c == 0 or height * width == 0:
        grad_kp.zero_()
        grad_sc.zero_()
        return grad_kp, grad_sc
    keypoints, scores = keypoints.contiguous(), scores.contiguous()
    acc_torch, acc_tl = acc_dtypes(keypoints.dtype)
    consts = _scalar_args(sigma, keypoints.dtype, keypoints.device)
    if consts["const_ptr"] is None:
        consts["const_ptr"] = keypoints
    num_partials = _KEYPOINT_PARTIALS if limbs is None else _LIMB_PARTIALS
    partials = torch.empty((n, t, c, m, num_partials), dtype=acc_torch, device=keypoints.device)
    limb_arg = _limb_arg(limbs, keypoints)
    tile_y, tile_x = _backward_tile(sigma, pyskl_window)
    with device_guard(keypoints.device):
        _backward_kernel[(n * t * c,)](
            grad, keypoints, scores, limb_arg, partials, consts["const_ptr"],
            consts["two_sigma2"], consts["three_sigma"], consts["radius"], consts["threshold"],
            t, m, v, c, height, width,
            *grad.stride(),
            LIMB=limbs is not None, PYSKL=bool(pyskl_window), CONST_TENSOR=consts["CONST_TENSOR"],
            BLOCK_Y=tile_y, BLOCK_X=tile_x, BLOCK_M=min(_PERSONS_PER_SWEEP, next_pow2(m)),
            NUM_PARTIALS=num_partials, ACC_DTYPE=acc_tl, num_warps=max(1, tile_y * tile_x // 128),
        )  # fmt: skip
        block_v = min(next_pow2(v), _MAX_JOINT_BLOCK)
        _gather_kernel[(n * t * m,)](
            partials, limb_arg, grad_kp if want_kp else partials,
            grad_sc if want_sc else partials, _coord_scale(sigma, acc_torch, keypoints.device),
            m, v, c,
            LIMB=limbs is not None, WANT_KEYPOINTS=want_kp, WANT_SCORES=want_sc,
            NUM_PARTIALS=num_partials, BLOCK_V=block_v, num_warps=1 if block_v <= 32 else 4,
        )  # fmt: skip
    return grad_kp, grad_sc
