"""Triton kernels for spatio-temporal curves (STC-Net's STC module).

Conventions: x ``[N, C, T, V]`` and key ``[N, D, T, V]`` (batch, channels, frames, joints);
``candidates[v, w]`` lets joint ``w`` of frame ``t + 1`` follow joint ``v`` of frame ``t``.
Transition ``t < T - 1`` scores ``s_t(v, w) = scale * <key[n, :, t, v], key[n, :, t + 1, w]>``
over the candidates; ``next_t(v)`` is the argmax (lowest ``w`` on ties), ``log_normalizer`` the
log-sum-exp, ``log_prob = s_t(v, next_t(v)) - log_normalizer``. The curve from ``(t, v)`` visits
``p_0 = v, p_i = next_{t+i-1}(p_{i-1})`` for ``i <= L_t = min(length, T - 1 - t)`` with weights
``pi_i = exp(sum_{j <= i} log_prob_{t+j-1}(p_{j-1}))``::

    y[n, c, t, v] = sum_{i=0..L_t} pi_i x[n, c, t + i, p_i]

Kernels (all accumulate in fp32, or fp64 for fp64 inputs under the interpreter; deterministic,
no atomics):

* ``_transitions_kernel``: one program per (sample, frame pair): the ``[V, V]`` scores are one
  ``tl.dot`` over key-channel blocks held in registers, reduced per row to (next joint,
  log-probability, log-normaliser). They never reach global memory.
* ``_curves_kernel``: one program per (sample, channel block, block of positions (t, v)):
  walks the curves of its positions once and gathers ``y`` for its channels. With
  ``STORE_TABLE`` (the backward) it writes the curves, ``p_i`` and ``pi_i``, to a
  ``[N, T, V, L + 1]`` table instead.
* ``_grad_x_kernel``: one program per (sample, frame ``t'``, channel block):
  ``dx[c, t', w] = sum_i sum_v pi_i(t' - i, v) 1[p_i(t' - i, v) = w] g[c, t' - i, v]``, the
  indicator as a ``[V, V]`` matrix, so the scatter of the forward's gather is a ``tl.dot``.
* ``_through_kernel``: one program per (sample, block of positions):
  ``h_i = sum_c g[c, t, v] x[c, t + i, p_i]`` and ``G_i = sum_{i' >= i} pi_i' h_i'`` (the gradient
  of the curve's log-weight through step ``i``), steps taken last to first.
* ``_log_prob_grad_kernel``: one program per (sample, frame ``t' < T - 1``):
  ``R[t', u] = sum_{i, v: p_i(t' - i, v) = u} G_{i+1}(t' - i, v)``, the gradient of
  ``log_prob_{t'}(u)`` (indicator matrices again).
* ``_key_grad_kernel``: one program per (sample, frame ``t``, key-channel block): recomputes the
  scores of transitions ``t`` and ``t - 1``,
  ``dS = scale * R[u] (1[w = next(u)] - softmax_w s(u, w))`` on the candidates, and
  ``dkey[:, t, :] = key[:, t + 1, :] dS_t^T + key[:, t - 1, :] dS_{t-1}`` (two ``tl.dot``).

Every ``tl.dot`` runs in the accumulation dtype with ``input_precision="ieee"``: the argmax must
not change with tf32 rounding, and the other products are small. Dimensions are at least 16
(the GPU minimum; the interpreter accepts less): joints are padded to ``BLOCK_V >= 16``, channel
blocks are at least 16, with masks. The curve length is a compile-time constant (one kernel per
length; models use one or two). Joint rows live in registers, so ``V <= 128``.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import (
    acc_dtypes,
    check_tensors,
    clamp_pow2,
    device_guard,
    interpreter_lacks,
    next_pow2,
    upcast,
)

__all__ = ["spatio_temporal_curve_forward", "spatio_temporal_curve_backward"]

# [BLOCK_V, BLOCK_V] score and indicator tiles are held in registers.
_MAX_JOINTS = 128
_BLOCK_POSITIONS = 64
_BLOCK_CHANNELS = 16


# --------------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------------


@triton.jit
def _frame_pair_scores(
    key_base, sk_d, sk_t, sk_v, D, V, t_from, valid,
    BLOCK_V: tl.constexpr, BLOCK_D: tl.constexpr, ACC_DTYPE: tl.constexpr,
):  # fmt: skip
    """Unscaled scores [BLOCK_V, BLOCK_V] of frame t_from against frame t_from + 1 of one
    sample (zero where ``valid`` is False or outside V)."""
    j = tl.arange(0, BLOCK_V)
    dd = tl.arange(0, BLOCK_D)
    scores = tl.zeros([BLOCK_V, BLOCK_V], dtype=ACC_DTYPE)
    for d0 in range(0, D, BLOCK_D):
        d_ok = (d0 + dd) < D
        a = tl.load(  # [u, d] of frame t_from
            key_base + (d0 + dd)[None, :] * sk_d + t_from * sk_t + j[:, None] * sk_v,
            mask=valid & (j[:, None] < V) & d_ok[None, :],
            other=0.0,
        ).to(ACC_DTYPE)
        b = tl.load(  # [d, w] of frame t_from + 1
            key_base + (d0 + dd)[:, None] * sk_d + (t_from + 1) * sk_t + j[None, :] * sk_v,
            mask=valid & d_ok[:, None] & (j[None, :] < V),
            other=0.0,
        ).to(ACC_DTYPE)
        scores = tl.dot(a, b, scores, input_precision="ieee", out_dtype=ACC_DTYPE)
    return scores


@triton.jit
def _candidate_mask(cand_ptr, V, HAS_CANDIDATES: tl.constexpr, BLOCK_V: tl.constexpr):
    """[BLOCK_V, BLOCK_V] bool: (u, w) is a candidate pair within V."""
    j = tl.arange(0, BLOCK_V)
    inside = (j[:, None] < V) & (j[None, :] < V)
    if HAS_CANDIDATES:
        inside = inside & (
            tl.load(cand_ptr + j[:, None] * V + j[None, :], mask=inside, other=0) != 0
        )
    return inside


@triton.jit
def _transitions_kernel(
    key_ptr, cand_ptr, next_ptr, log_prob_ptr, log_norm_ptr,
    scale_ptr, D, T, V,
    sk_n, sk_d, sk_t, sk_v,
    HAS_CANDIDATES: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_D: tl.constexpr,
    ACC_DTYPE: tl.constexpr,
):  # fmt: skip
    """next_joint, log_prob, log_normalizer [N, T - 1, V] (contiguous) of one frame pair."""
    pid = tl.program_id(0)
    t = pid % (T - 1)
    n = (pid // (T - 1)).to(tl.int64)
    j = tl.arange(0, BLOCK_V)
    scale = tl.load(scale_ptr)
    scores = _frame_pair_scores(
        key_ptr + n * sk_n, sk_d, sk_t, sk_v, D, V, t, True, BLOCK_V, BLOCK_D, ACC_DTYPE
    )
    valid = _candidate_mask(cand_ptr, V, HAS_CANDIDATES, BLOCK_V)
    masked = tl.where(valid, scores * scale, float("-inf"))
    best = tl.max(masked, axis=1)
    row_ok = j < V
    best = tl.where(row_ok, best, 0.0)
    # Lowest joint among the maxima; a row with no candidate (rejected by the wrapper) keeps
    # an in-range joint.
    chosen = tl.min(tl.where(valid & (masked == best[:, None]), j[None, :], BLOCK_V), axis=1)
    chosen = tl.where(chosen < V, chosen, j)
    total = tl.sum(tl.where(valid, tl.exp(masked - best[:, None]), 0.0), axis=1)
    log_sum = tl.log(tl.where(row_ok, total, 1.0))
    out = n * (T - 1) * V + t * V + j
    tl.store(next_ptr + out, chosen.to(tl.int32), mask=row_ok)
    tl.store(log_prob_ptr + out, -log_sum, mask=row_ok)  # s(u, next) - (max + log sum)
    tl.store(log_norm_ptr + out, best + log_sum, mask=row_ok)


@triton.jit
def _curves_kernel(
    x_ptr, next_ptr, log_prob_ptr, y_ptr, joints_ptr, weights_ptr,
    C, T, V,
    sx_n, sx_c, sx_t, sx_v,
    num_c_blocks, num_p_blocks,
    STEPS: tl.constexpr, STORE_TABLE: tl.constexpr,
    BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr, ACC_DTYPE: tl.constexpr,
):  # fmt: skip
    """y[n, c, t, v] = sum_i pi_i x[n, c, t + i, p_i] (contiguous y) for a block of channels and
    positions p = t * V + v; or, with STORE_TABLE, the curves' p_i / pi_i into
    [N, T, V, STEPS + 1] tables."""
    pid = tl.program_id(0)
    p_block = pid % num_p_blocks
    rest = pid // num_p_blocks
    c_block = rest % num_c_blocks
    n = (rest // num_c_blocks).to(tl.int64)
    pos = p_block * BLOCK_P + tl.arange(0, BLOCK_P)
    pos_ok = pos < T * V
    t = pos // V
    v = pos % V
    steps = tl.minimum(STEPS, T - 1 - t)
    cs = c_block * BLOCK_C + tl.arange(0, BLOCK_C)
    c_ok = cs < C
    x_rows = x_ptr + n * sx_n + cs[:, None] * sx_c
    if STORE_TABLE:
        table = (n * T * V + pos) * (STEPS + 1)
        tl.store(joints_ptr + table, v, mask=pos_ok)
        tl.store(weights_ptr + table, tl.full([BLOCK_P], 1.0, ACC_DTYPE), mask=pos_ok)
    else:
        acc = tl.load(
            x_rows + t[None, :] * sx_t + v[None, :] * sx_v,
            mask=c_ok[:, None] & pos_ok[None, :],
            other=0.0,
        ).to(ACC_DTYPE)
    stats = next_ptr + n * (T - 1) * V
    joint = v
    log_weight = tl.zeros([BLOCK_P], dtype=ACC_DTYPE)
    for i in range(1, STEPS + 1):
        active = pos_ok & (i <= steps)
        at = (t + i - 1) * V + joint
        log_weight += tl.load(log_prob_ptr + n * (T - 1) * V + at, mask=active, other=0.0)
        # Clamped: a direct backward call may pass any next_joint (checking it would need a
        # device synchronisation); the forward's are joints already.
        joint = tl.minimum(tl.maximum(tl.load(stats + at, mask=active, other=0), 0), V - 1)
        weight = tl.where(active, tl.exp(log_weight), 0.0)
        if STORE_TABLE:
            table = (n * T * V + pos) * (STEPS + 1) + i
            tl.store(joints_ptr + table, joint, mask=active)
            tl.store(weights_ptr + table, weight, mask=active)
        else:
            met = tl.load(
                x_rows + (t + i)[None, :] * sx_t + joint[None, :] * sx_v,
                mask=c_ok[:, None] & active[None, :],
                other=0.0,
            ).to(ACC_DTYPE)
            acc += weight[None, :] * met
    if not STORE_TABLE:
        y_ptrs = y_ptr + (n * C + cs[:, None]) * T * V + pos[None, :]
        tl.store(y_ptrs, acc.to(y_ptr.dtype.element_ty), mask=c_ok[:, None] & pos_ok[None, :])


@triton.jit
def _grad_x_kernel(
    g_ptr, joints_ptr, weights_ptr, dx_ptr,
    C, T, V,
    sg_n, sg_c, sg_t, sg_v,
    num_c_blocks,
    STEPS: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_V: tl.constexpr,
    ACC_DTYPE: tl.constexpr,
):  # fmt: skip
    """dx[n, c, t', w] for a block of channels of one frame (contiguous dx)."""
    pid = tl.program_id(0)
    c_block = pid % num_c_blocks
    rest = pid // num_c_blocks
    t_to = rest % T
    n = (rest // T).to(tl.int64)
    j = tl.arange(0, BLOCK_V)
    cs = c_block * BLOCK_C + tl.arange(0, BLOCK_C)
    c_ok = cs < C
    acc = tl.zeros([BLOCK_C, BLOCK_V], dtype=ACC_DTYPE)
    for i in range(0, STEPS + 1):
        t = t_to - i  # the curves from frame t are at t' after i steps
        active = (t >= 0) & (j < V)
        entry = ((n * T + t) * V + j) * (STEPS + 1) + i
        arrive = tl.load(joints_ptr + entry, mask=active, other=-1)
        weight = tl.load(weights_ptr + entry, mask=active, other=0.0)
        # spread[v, w] = pi_i(t, v) where p_i(t, v) = w
        spread = tl.where(arrive[:, None] == j[None, :], weight[:, None], 0.0).to(ACC_DTYPE)
        g = tl.load(
            g_ptr + n * sg_n + cs[:, None] * sg_c + t * sg_t + j[None, :] * sg_v,
            mask=c_ok[:, None] & active[None, :],
            other=0.0,
        ).to(ACC_DTYPE)
        acc = tl.dot(g, spread, acc, input_precision="ieee", out_dtype=ACC_DTYPE)
    dx_ptrs = dx_ptr + ((n * C + cs[:, None]) * T + t_to) * V + j[None, :]
    tl.store(dx_ptrs, acc.to(dx_ptr.dtype.element_ty), mask=c_ok[:, None] & (j[None, :] < V))


@triton.jit
def _through_kernel(
    g_ptr, x_ptr, joints_ptr, weights_ptr, through_ptr,
    C, T, V,
    sg_n, sg_c, sg_t, sg_v,
    sx_n, sx_c, sx_t, sx_v,
    num_p_blocks,
    STEPS: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr,
    ACC_DTYPE: tl.constexpr,
):  # fmt: skip
    """through[n, t, v, i] = G_i = sum_{i' >= i} pi_i' h_i' for 1 <= i <= L_t."""
    pid = tl.program_id(0)
    p_block = pid % num_p_blocks
    n = (pid // num_p_blocks).to(tl.int64)
    pos = p_block * BLOCK_P + tl.arange(0, BLOCK_P)
    pos_ok = pos < T * V
    t = pos // V
    v = pos % V
    steps = tl.minimum(STEPS, T - 1 - t)
    c_off = tl.arange(0, BLOCK_C)
    table = (n * T * V + pos) * (STEPS + 1)
    through = tl.zeros([BLOCK_P], dtype=ACC_DTYPE)
    for k in range(0, STEPS):
        i = STEPS - k
        active = pos_ok & (i <= steps)
        joint = tl.load(joints_ptr + table + i, mask=active, other=0)
        h = tl.zeros([BLOCK_P], dtype=ACC_DTYPE)
        for c0 in range(0, C, BLOCK_C):
            c_ok = (c0 + c_off) < C
            both = c_ok[:, None] & active[None, :]
            g = tl.load(
                g_ptr
                + n * sg_n
                + (c0 + c_off)[:, None] * sg_c
                + t[None, :] * sg_t
                + v[None, :] * sg_v,
                mask=both,
                other=0.0,
            ).to(ACC_DTYPE)
            met = tl.load(
                x_ptr
                + n * sx_n
                + (c0 + c_off)[:, None] * sx_c
                + (t + i)[None, :] * sx_t
                + joint[None, :] * sx_v,
                mask=both,
                other=0.0,
            ).to(ACC_DTYPE)
            h += tl.sum(g * met, axis=0)
        through += tl.load(weights_ptr + table + i, mask=active, other=0.0) * h
        tl.store(through_ptr + table + i, through, mask=active)


@triton.jit
def _log_prob_grad_kernel(
    joints_ptr, through_ptr, r_ptr,
    T, V,
    STEPS: tl.constexpr, BLOCK_V: tl.constexpr, ACC_DTYPE: tl.constexpr,
):  # fmt: skip
    """R[n, t', u] (contiguous [N, T - 1, V]) for one frame t' < T - 1."""
    pid = tl.program_id(0)
    t_from = pid % (T - 1)
    n = (pid // (T - 1)).to(tl.int64)
    j = tl.arange(0, BLOCK_V)
    r = tl.zeros([BLOCK_V], dtype=ACC_DTYPE)
    for i in range(0, STEPS):
        t = t_from - i  # curves from frame t reach t' at step i and leave it by step i + 1
        active = (t >= 0) & (j < V)
        entry = ((n * T + t) * V + j) * (STEPS + 1) + i
        arrive = tl.load(joints_ptr + entry, mask=active, other=-1)
        through = tl.load(through_ptr + entry + 1, mask=active, other=0.0)
        r += tl.sum(tl.where(arrive[None, :] == j[:, None], through[None, :], 0.0), axis=1)
    tl.store(r_ptr + n * (T - 1) * V + t_from * V + j, r, mask=j < V)


@triton.jit
def _score_grads(
    key_base, sk_d, sk_t, sk_v, cand_ptr, next_ptr, log_norm_ptr, r_ptr,
    D, T, V, scale, n, t_from, valid,
    HAS_CANDIDATES: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_D: tl.constexpr,
    ACC_DTYPE: tl.constexpr,
):  # fmt: skip
    """dS[u, w] = scale * d loss / d s(u, w) of transition t_from (zero unless ``valid``)."""
    j = tl.arange(0, BLOCK_V)
    scores = _frame_pair_scores(
        key_base, sk_d, sk_t, sk_v, D, V, t_from, valid, BLOCK_V, BLOCK_D, ACC_DTYPE
    )
    pair_ok = _candidate_mask(cand_ptr, V, HAS_CANDIDATES, BLOCK_V) & valid
    row = n * (T - 1) * V + t_from * V + j
    row_ok = valid & (j < V)
    r = tl.load(r_ptr + row, mask=row_ok, other=0.0)
    chosen = tl.load(next_ptr + row, mask=row_ok, other=-1)
    log_norm = tl.load(log_norm_ptr + row, mask=row_ok, other=0.0)
    softmax = tl.exp(tl.where(pair_ok, scores * scale - log_norm[:, None], float("-inf")))
    hit = tl.where(chosen[:, None] == j[None, :], 1.0, 0.0)
    return tl.where(pair_ok, (scale * r[:, None]) * (hit - softmax), 0.0).to(ACC_DTYPE)


@triton.jit
def _key_grad_kernel(
    key_ptr, cand_ptr, next_ptr, log_norm_ptr, r_ptr, dkey_ptr,
    scale_ptr, D, T, V,
    sk_n, sk_d, sk_t, sk_v,
    num_d_blocks,
    HAS_CANDIDATES: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_D: tl.constexpr,
    ACC_DTYPE: tl.constexpr,
):  # fmt: skip
    """dkey[n, d, t, :] for a block of key channels of one frame (contiguous dkey)."""
    pid = tl.program_id(0)
    d_block = pid % num_d_blocks
    rest = pid // num_d_blocks
    t = rest % T
    n = (rest // T).to(tl.int64)
    key_base = key_ptr + n * sk_n
    scale = tl.load(scale_ptr)
    j = tl.arange(0, BLOCK_V)
    ds = d_block * BLOCK_D + tl.arange(0, BLOCK_D)
    d_ok = ds < D
    leaves = t < T - 1  # frame t is the source of transition t ...
    reached = t > 0  # ... and the target of transition t - 1
    ds_out = _score_grads(
        key_base, sk_d, sk_t, sk_v, cand_ptr, next_ptr, log_norm_ptr, r_ptr,
        D, T, V, scale, n, t, leaves, HAS_CANDIDATES, BLOCK_V, BLOCK_D, ACC_DTYPE,
    )  # fmt: skip
    ds_in = _score_grads(
        key_base, sk_d, sk_t, sk_v, cand_ptr, next_ptr, log_norm_ptr, r_ptr,
        D, T, V, scale, n, t - 1, reached, HAS_CANDIDATES, BLOCK_V, BLOCK_D, ACC_DTYPE,
    )  # fmt: skip
    after = tl.load(
        key_base + ds[:, None] * sk_d + (t + 1) * sk_t + j[None, :] * sk_v,
        mask=leaves & d_ok[:, None] & (j[None, :] < V),
        other=0.0,
    ).to(ACC_DTYPE)
    before = tl.load(
        key_base + ds[:, None] * sk_d + (t - 1) * sk_t + j[None, :] * sk_v,
        mask=reached & d_ok[:, None] & (j[None, :] < V),
        other=0.0,
    ).to(ACC_DTYPE)
    acc = tl.dot(after, tl.trans(ds_out), input_precision="ieee", out_dtype=ACC_DTYPE)
    acc = tl.dot(before, ds_in, acc, input_precision="ieee", out_dtype=ACC_DTYPE)
    dkey_ptrs = dkey_ptr + ((n * D + ds[:, None]) * T + t) * V + j[None, :]
    tl.store(dkey_ptrs, acc.to(dkey_ptr.dtype.element_ty), mask=d_ok[:, None] & (j[None, :] < V))


# --------------------------------------------------------------------------------------------
# Launch helpers
# --------------------------------------------------------------------------------------------


def _joint_block(v: int) -> int:
    return max(16, next_pow2(v))


def _key_block(d: int) -> int:
    return clamp_pow2(d, 16, 64)


def _warps(block_v: int) -> int:
    # [BLOCK_V, BLOCK_V] fp32 tiles live in registers: spread the larger ones over 8 warps.
    return 4 if block_v <= 32 else 8


def _mask_arg(candidates: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    # int8 [V, V]: Triton loads bool pointers as int1 on some versions, int8 everywhere.
    return like if candidates is None else candidates.to(torch.int8).contiguous()


def _scale_arg(scale: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    # A Python float kernel argument is fp32; float64 runs (interpreter) need the exact scale.
    return torch.full((1,), scale, dtype=dtype, device=device)


def _check_inputs(
    x: torch.Tensor, key: torch.Tensor, candidates: torch.Tensor | None, length: int
) -> None:
    if x.dim() != 4 or key.dim() != 4:
        raise ValueError(
            f"x and key must be [N, C, T, V] and [N, D, T, V]; got shapes {tuple(x.shape)} and "
            f"{tuple(key.shape)}"
        )
    n, c, t, v = x.shape
    if x.numel() == 0 or t < 2:
        raise ValueError(f"x must be non-empty with T >= 2; got shape {tuple(x.shape)}")
    if key.shape[1] == 0 or (key.shape[0], key.shape[2], key.shape[3]) != (n, t, v):
        raise ValueError(f"key must be [N, D >= 1, T, V] = [{n}, D, {t}, {v}]; got {key.shape}")
    if v > _MAX_JOINTS:
        raise ValueError(f"the Triton kernels support V <= {_MAX_JOINTS} joints; got V={v}")
    if length < 1:
        raise ValueError(f"length must be >= 1; got {length}")
    check_tensors("spatio_temporal_curve", x, key=key)
    if candidates is not None and (
        candidates.dtype != torch.bool
        or tuple(candidates.shape) != (v, v)
        or candidates.device != x.device
    ):
        raise ValueError(
            f"candidates must be a [V, V] = [{v}, {v}] bool tensor on {x.device}; got "
            f"{candidates.dtype} {tuple(candidates.shape)} on {candidates.device}"
        )


def _curve_launch(
    x: torch.Tensor,
    next_joint: torch.Tensor,
    log_prob: torch.Tensor,
    steps: int,
    out: torch.Tensor | None,
    table: tuple[torch.Tensor, torch.Tensor] | None,
) -> None:
    """Runs _curves_kernel: the aggregation into ``out`` or the curve ``table``."""
    n, c, t, v = x.shape
    _, acc_tl = acc_dtypes(x.dtype)
    num_p_blocks = triton.cdiv(t * v, _BLOCK_POSITIONS)
    num_c_blocks = 1 if table is not None else triton.cdiv(c, _BLOCK_CHANNELS)
    joints, weights = table if table is not None else (next_joint, log_prob)
    with device_guard(x.device):
        _curves_kernel[(n * num_c_blocks * num_p_blocks,)](
            x, next_joint, log_prob, out if out is not None else x, joints, weights,
            c, t, v,
            *x.stride(),
            num_c_blocks, num_p_blocks,
            STEPS=steps, STORE_TABLE=table is not None,
            BLOCK_C=_BLOCK_CHANNELS, BLOCK_P=_BLOCK_POSITIONS, ACC_DTYPE=acc_tl,
        )  # fmt: skip


# --------------------------------------------------------------------------------------------
# Public launchers
# --------------------------------------------------------------------------------------------


def spatio_temporal_curve_forward(
    x: torch.Tensor,
    key: torch.Tensor,
    candidates: torch.Tensor | None,
    length: int,
    scale: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Spatio-temporal curves, Triton backend (the module docstring has the formulas).

    Args:
        x: ``[N, C, T, V]``, any strides; float32, float16 or bfloat16 (under the interpreter
            also float64, and bfloat16 is computed in float32 there). ``T >= 2``, ``V <= 128``.
        key: ``[N, D, T, V]``, x's dtype and device, any strides.
        candidates: ``[V, V]`` bool (every row with a True) or None for all joints.
        length: steps along each curve, ``>= 1``.
        scale: affinity scale.

    Returns:
        ``(y, next_joint, log_prob, log_normalizer)``: ``y`` contiguous ``[N, C, T, V]`` in x's
        dtype; per transition ``[N, T - 1, V]``: int32, and the accumulation dtype (float32;
        float64 for float64 inputs).
    """
    _check_inputs(x, key, candidates, length)
    if interpreter_lacks(x.dtype):
        y, *stats = spatio_temporal_curve_forward(*upcast(x, key), candidates, length, scale)
        return (y.to(x.dtype), *stats)
    n, c, t, v = x.shape
    d = key.shape[1]
    acc_torch, acc_tl = acc_dtypes(x.dtype)
    steps = min(length, t - 1)
    next_joint = torch.empty((n, t - 1, v), device=x.device, dtype=torch.int32)
    log_prob = torch.empty((n, t - 1, v), device=x.device, dtype=acc_torch)
    log_normalizer = torch.empty_like(log_prob)
    with device_guard(x.device):
        _transitions_kernel[(n * (t - 1),)](
            key, _mask_arg(candidates, key), next_joint, log_prob, log_normalizer,
            _scale_arg(scale, acc_torch, x.device), d, t, v,
            *key.stride(),
            HAS_CANDIDATES=candidates is not None, BLOCK_V=_joint_block(v),
            BLOCK_D=_key_block(d), ACC_DTYPE=acc_tl, num_warps=_warps(_joint_block(v)),
        )  # fmt: skip
    y = torch.empty((n, c, t, v), device=x.device, dtype=x.dtype)
    _curve_launch(x, next_joint, log_prob, steps, y, None)
    return y, next_joint, log_prob, log_normalizer


def spatio_temporal_curve_backward(
    grad_out: torch.Tensor,
    x: torch.Tensor,
    key: torch.Tensor,
    candidates: torch.Tensor | None,
    next_joint: torch.Tensor,
    log_prob: torch.Tensor,
    log_normalizer: torch.Tensor,
    length: int,
    scale: float,
    output_mask: list[bool],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of :func:`spatio_temporal_curve_forward` for x and key.

    With ``g = grad_out`` (any strides) and the forward's statistics: ``dx`` gathers ``pi_i g``
    over the curves that meet each node; ``dkey`` follows from the gradient ``R`` of each
    chosen step's log-probability through the softmax of its row (see the module docstring).

    Args:
        output_mask: two bools selecting (dx, dkey).

    Returns:
        ``(dx, dkey)`` contiguous, in x's dtype; a masked-out one is ``x.new_empty(0)``.
    """
    _check_inputs(x, key, candidates, length)
    if len(output_mask) != 2:
        raise ValueError(f"output_mask must have 2 entries; got {len(output_mask)}")
    n, c, t, v = x.shape
    d = key.shape[1]
    if tuple(grad_out.shape) != (n, c, t, v) or grad_out.dtype != x.dtype:
        raise ValueError(
            f"grad_out must be [N, C, T, V] = {[n, c, t, v]} of x's dtype; got "
            f"{tuple(grad_out.shape)} {grad_out.dtype}"
        )
    acc_torch, acc_tl = acc_dtypes(x.dtype)
    for name, stat, dtype in (
        ("next_joint", next_joint, torch.int32),
        ("log_prob", log_prob, acc_torch),
        ("log_normalizer", log_normalizer, acc_torch),
    ):
        if tuple(stat.shape) != (n, t - 1, v) or stat.dtype != dtype or stat.device != x.device:
            raise ValueError(
                f"{name} must be [N, T - 1, V] = {[n, t - 1, v]} {dtype} on {x.device}; got "
                f"{tuple(stat.shape)} {stat.dtype} on {stat.device}"
            )
    want_dx, want_dkey = (bool(m) for m in output_mask)
    if interpreter_lacks(x.dtype):
        grads = spatio_temporal_curve_backward(
            *upcast(grad_out, x, key), candidates, next_joint, log_prob, log_normalizer,
            length, scale, output_mask,
        )  # fmt: skip
        return tuple(g.to(x.dtype) for g in grads)  # type: ignore[return-value]

    # Distinct empties: outputs of a torch.library custom op must not alias each other.
    dx, dkey = x.new_empty(0), x.new_empty(0)
    if not (want_dx or want_dkey):
        return dx, dkey
    steps = min(length, t - 1)
    next_joint, log_prob = next_joint.contiguous(), log_prob.contiguous()
    joints = torch.empty((n, t, v, steps + 1), device=x.device, dtype=torch.int32)
    weights = torch.empty((n, t, v, steps + 1), device=x.device, dtype=acc_torch)
    _curve_launch(x, next_joint, log_prob, steps, None, (joints, weights))
    block_v = _joint_block(v)
    with device_guard(x.device):
        if want_dx:
            dx = torch.empty((n, c, t, v), device=x.device, dtype=x.dtype)
            num_c_blocks = triton.cdiv(c, _BLOCK_CHANNELS)
            _grad_x_kernel[(n * t * num_c_blocks,)](
                grad_out, joints, weights, dx,
                c, t, v,
                *grad_out.stride(),
                num_c_blocks,
                STEPS=steps, BLOCK_C=_BLOCK_CHANNELS, BLOCK_V=block_v, ACC_DTYPE=acc_tl,
                num_warps=_warps(block_v),
            )  # fmt: skip
        if want_dkey:
            through = torch.zeros((n, t, v, steps + 1), device=x.device, dtype=acc_torch)
            num_p_blocks = triton.cdiv(t * v, _BLOCK_POSITIONS)
            _through_kernel[(n * num_p_blocks,)](
                grad_out, x, joints, weights, through,
                c, t, v,
                *grad_out.stride(),
                *x.stride(),
                num_p_blocks,
                STEPS=steps, BLOCK_C=_BLOCK_CHANNELS, BLOCK_P=_BLOCK_POSITIONS,
                ACC_DTYPE=acc_tl,
            )  # fmt: skip
            r = torch.empty((n, t - 1, v), device=x.device, dtype=acc_torch)
            _log_prob_grad_kernel[(n * (t - 1),)](
                joints, through, r, t, v, STEPS=steps, BLOCK_V=block_v, ACC_DTYPE=acc_tl,
                num_warps=_warps(block_v),
            )  # fmt: skip
            dkey = torch.empty((n, d, t, v), device=x.device, dtype=x.dtype)
            block_d = _key_block(d)
            num_d_blocks = triton.cdiv(d, block_d)
            _key_grad_kernel[(n * t * num_d_blocks,)](
                key, _mask_arg(candidates, key), next_joint, log_normalizer.contiguous(), r,
                dkey,
                _scale_arg(scale, acc_torch, x.device), d, t, v,
                *key.stride(),
                num_d_blocks,
                HAS_CANDIDATES=candidates is not None, BLOCK_V=block_v, BLOCK_D=block_d,
                ACC_DTYPE=acc_tl, num_warps=_warps(block_v),
            )  # fmt: skip
    return dx, dkey
