"""``skelops.partition_attention``: self-attention within (frame window x joint group)
partitions (SkateFormer's Skate-MSA), fused: no permuted copies, no score matrix in memory."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .. import reference
from ..reference.partition_attention import attention_scale
from ._common import (
    check_same,
    check_tensor,
    fake_gradients,
    register_python_parts,
    resolve_backend,
    stats_dtype,
    wanted_gradients,
)

__all__ = ["empty_like_layout", "layout_like", "partition_attention"]


def partition_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    joint_partition: Tensor,
    frame_partition: Tensor,
    bias: Tensor | None = None,
    scale: float | None = None,
    dropout_p: float = 0.0,
    seed: int | None = None,
    backend: str = "auto",
) -> Tensor:
    """Self-attention of every (frame, joint) token with the tokens of its partition.

    ``frame_partition [P, W]`` splits the T frames into P windows of W frames and
    ``joint_partition [G, J]`` the V joints into G groups of J joints (each a permutation of
    ``range(T)`` / ``range(V)``, see :func:`skelops.graphs.frame_windows`,
    :func:`skelops.graphs.joint_groups` and :func:`skelops.graphs.skate_type_partitions`).
    Partition ``(p, g)`` is the ``N = W * J`` tokens ``(frame_partition[p, a],
    joint_partition[g, i])``; each query attends to the keys of its partition only:

    .. math::
        s_{xy} = \\text{scale}\\,\\langle q_x, k_y\\rangle + B_h(x, y),\\qquad
        o_x = \\sum_y \\frac{m_{xy}}{1 - p}\\,\\mathrm{softmax}_y(s_{x\\cdot})_y\\, v_y

    ``B`` is SkateFormer's relative-position bias, gathered from ``bias`` inside the kernels:
    ``[2W - 1, H]`` indexes it by the frame offset of query and key in their window (Skate-Types
    1 and 3, shared over joint pairs), ``[2W - 1, J, J, H]`` by the frame offset and both
    joints' positions in their group (types 2 and 4). ``m`` is the dropout mask: a
    counter-based hash of ``seed`` and the element (see
    :func:`skelops.reference.partition_attention.partition_attention`), identical on every
    backend and thread count, so a seed reproduces a run and the backward needs no stored mask.

    Args:
        q, k, v: ``[B, H, T, V, D]`` (batch, heads, frames, joints, head dim), one dtype and
            device, any strides (e.g. heads sliced from a channels-last projection).
        joint_partition: ``[G, J]`` int32/int64 joint groups, each joint once.
        frame_partition: ``[P, W]`` int32/int64 frame windows, each frame once.
        bias: ``None``, ``[2W - 1, H]`` or ``[2W - 1, J, J, H]`` (q's dtype); it gets a
            gradient.
        scale: score scale, ``1 / sqrt(D)`` when ``None`` (SkateFormer uses
            ``heads ** -0.5``).
        dropout_p: probability of dropping an attention probability, ``0 <= p < 1``.
        seed: dropout seed; ``None`` draws one from torch's default generator (so
            ``torch.manual_seed`` reproduces the masks). Under ``torch.compile`` pass it, or the
            draw breaks the graph.
        backend: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"triton"`` or ``"reference"``.

    Returns:
        ``[B, H, T, V, D]`` in q's dtype and memory layout (:func:`layout_like`).

    Gradients reach q, k, v and bias. The compiled and Triton backends run
    ``torch.ops.skelops.partition_attention`` (``..._triton``), whose second output is the
    per-query log-sum-exp ``[B, H, T, V]`` (float32; float64 for float64 inputs) the backward
    reuses. Under ``torch.autocast`` the kernels run in the autocast dtype and accumulate in
    fp32. The CUDA and Triton kernels take up to 1024 tokens per partition and head dims up to
    64.

    Raises:
        TypeError / ValueError: wrong rank, shape, dtype or device; a partition whose size does
            not match T or V, or that repeats or misses an index or leaves the range; a bias
            table of the wrong size; ``dropout_p`` outside ``[0, 1)``; a non-finite scale; an
            unavailable backend.
    """
    _check_arguments(q, k, v, joint_partition, frame_partition, bias, dropout_p, False)
    s = attention_scale(q.shape[-1], scale)
    if not math.isfinite(s):
        raise ValueError(f"scale must be finite, got {s}")
    seed = _resolve_seed(seed, dropout_p)
    chosen = resolve_backend("partition_attention", backend, q.device)
    if chosen == "reference":
        # The compiled and Triton operators check the partitions' values themselves (once per
        # index tensor on a GPU); only the reference needs the check here.
        _check_partition_values(q, joint_partition, frame_partition)
        return reference.partition_attention(
            q, k, v, joint_partition, frame_partition, bias, s, dropout_p, seed
        )
    op = (
        torch.ops.skelops.partition_attention_triton
        if chosen == "triton"
        else torch.ops.skelops.partition_attention
    )
    return op(q, k, v, joint_partition, frame_partition, bias, s, float(dropout_p), seed)[0]


def _resolve_seed(seed: int | None, dropout_p: float) -> int:
    if seed is None:
        if dropout_p == 0:
            return 0
        return int(torch.randint(0, 2**62, (), dtype=torch.int64).item())
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int or None, got {type(seed).__name__} ({seed!r})")
    if not -(2**63) <= seed < 2**63:
        raise ValueError(f"seed must fit in int64, got {seed}")
    return seed


def layout_like(t: Tensor) -> tuple[int, ...]:
    """Strides of a dense tensor of ``t``'s shape with ``t``'s dimension order (larger stride
    first, ties in dimension order): the layout of the operator's output and gradients (the
    C++ ``empty_like_layout``)."""
    order = sorted(range(t.dim()), key=lambda d: -t.stride(d))
    strides = [0] * t.dim()
    step = 1
    for d in reversed(order):
        strides[d] = step
        step *= max(t.shape[d], 1)
    return tuple(strides)


def empty_like_layout(t: Tensor) -> Tensor:
    """An uninitialised dense tensor of ``t``'s shape, dtype and device in ``t``'s memory
    layout (:func:`layout_like`): how every backend allocates the output and gradients."""
    return t.new_empty_strided(t.shape, layout_like(t))


# --- argument checks ---------------------------------------------------------------------------


def _check_arguments(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    joint_partition: Tensor,
    frame_partition: Tensor,
    bias: Tensor | None,
    dropout_p: float,
    check_values: bool = True,
) -> None:
    """Ranks, shapes, dtypes, devices and ``dropout_p``; with ``check_values`` (not for fake
    tensors, nor while compiling) also that the partitions are permutations."""
    check_tensor("q", q, (5,), "[B, H, T, V, D]")
    for name, t in (("k", k), ("v", v)):
        check_tensor(name, t, (5,), "[B, H, T, V, D]")
        check_same(name, t, "q", q)
        if t.shape != q.shape:
            raise ValueError(f"{name} must have q's shape {tuple(q.shape)}, got {tuple(t.shape)}")
    if q.numel() == 0:
        raise ValueError(f"q must be non-empty [B, H, T, V, D], got shape {tuple(q.shape)}")
    _, heads, frames, joints, _ = q.shape
    _check_partition("joint_partition", joint_partition, q, joints, "V", "[G, J]")
    _check_partition("frame_partition", frame_partition, q, frames, "T", "[P, W]")
    window, group = frame_partition.shape[1], joint_partition.shape[1]
    if bias is not None:
        check_tensor("bias", bias, (2, 4), "[2W - 1, H] or [2W - 1, J, J, H]")
        check_same("bias", bias, "q", q)
        allowed = ((2 * window - 1, heads), (2 * window - 1, group, group, heads))
        if tuple(bias.shape) not in allowed:
            raise ValueError(
                f"bias must be [2W - 1, H]={list(allowed[0])} or [2W - 1, J, J, H]="
                f"{list(allowed[1])} (W={window} frames per window, J={group} joints per group, "
                f"H={heads} heads), got {tuple(bias.shape)}"
            )
    if isinstance(dropout_p, bool) or not isinstance(dropout_p, (int, float)):
        raise TypeError(f"dropout_p must be a float in [0, 1), got {type(dropout_p).__name__}")
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p must be in [0, 1), got {dropout_p}")
    if check_values:
        _check_partition_values(q, joint_partition, frame_partition)


def _check_partition(
    name: str,
    partition: Tensor,
    q: Tensor,
    total: int,
    what: str,
    shape_hint: str,
) -> None:
    check_tensor(name, partition, (2,), f"{shape_hint} index tensor", floating=False)
    if partition.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"{name} must be int32 or int64, got dtype {partition.dtype}")
    if partition.device != q.device:
        raise ValueError(f"{name} must be on q's device ({q.device}), got {partition.device}")
    rows, cols = partition.shape
    if rows * cols != total or total == 0:
        raise ValueError(
            f"{name} {shape_hint} must split the {what}={total} indices into equal parts "
            f"(rows x cols == {what}), got shape {tuple(partition.shape)}"
        )


def _check_partition_values(q: Tensor, joint_partition: Tensor, frame_partition: Tensor) -> None:
    """Each partition a permutation (reads the values: not while compiling)."""
    if not torch.compiler.is_compiling():
        _check_permutation("joint_partition", joint_partition, q.shape[3])
        _check_permutation("frame_partition", frame_partition, q.shape[2])


# Partitions already validated on a GPU (same tensor, same version): a training loop passes the
# same index tensors every step, and reading them back would synchronise the device each time.
_checked_on_device: dict[tuple[int, int, int], torch.Tensor] = {}


def _check_permutation(name: str, partition: Tensor, total: int) -> None:
    cacheable = partition.device.type != "cpu" and not partition.is_inference()
    if cacheable:
        key = (id(partition), partition._version, total)
        if _checked_on_device.get(key) is partition:
            return
    flat = partition.flatten().cpu().long()
    bad = (flat < 0) | (flat >= total)
    if bool(bad.any()):
        position = int(bad.nonzero()[0])
        raise ValueError(
            f"{name} values must be in [0, {total}), got {int(flat[position])} at flat position "
            f"{position}"
        )
    counts = torch.bincount(flat, minlength=total)
    if bool((counts != 1).any()):
        repeated = (counts > 1).nonzero().flatten().tolist()
        raise ValueError(f"{name} must hold every index once; repeated: {repeated}")
    if cacheable:
        if len(_checked_on_device) >= 64:
            _checked_on_device.clear()
        _checked_on_device[key] = partition


# --- fake kernels (shapes for torch.compile / meta tensors) -----------------------------------


def _fake_forward(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    joint_partition: Tensor,
    frame_partition: Tensor,
    bias: Tensor | None,
    scale: float,
    dropout_p: float,
    seed: int,
) -> tuple[Tensor, Tensor]:
    _check_arguments(q, k, v, joint_partition, frame_partition, bias, dropout_p, False)
    return empty_like_layout(q), q.new_empty(q.shape[:4], dtype=stats_dtype(q.dtype))


def _fake_backward(
    grad_out: Tensor,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    out: Tensor,
    lse: Tensor,
    joint_partition: Tensor,
    frame_partition: Tensor,
    bias: Tensor | None,
    scale: float,
    dropout_p: float,
    seed: int,
    output_mask: list[bool],
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    _check_arguments(q, k, v, joint_partition, frame_partition, bias, dropout_p, False)
    grads = [
        empty_like_layout(t) if wanted else q.new_empty(0)
        for t, wanted in zip((q, k, v), output_mask[:3], strict=True)
    ]
    (dbias,) = fake_gradients(q, output_mask[3:], (None if bias is None else bias.shape,))
    return (*grads, dbias)  # type: ignore[return-value]


# --- autograd --------------------------------------------------------------------------------


def _setup_context(ctx, inputs, output) -> None:
    q, k, v, joint_partition, frame_partition, bias, scale, dropout_p, seed = inputs
    out, lse = output
    ctx.mark_non_differentiable(lse)
    ctx.save_for_backward(q, k, v, out, lse, joint_partition, frame_partition, bias)
    ctx.scale, ctx.dropout_p, ctx.seed = scale, dropout_p, seed
    wanted = ctx.needs_input_grad
    ctx.output_mask = [wanted[0], wanted[1], wanted[2], bias is not None and wanted[5]]


def _make_backward(backward_op):
    def backward(ctx, grad_out, _grad_lse):
        q, k, v, out, lse, joint_partition, frame_partition, bias = ctx.saved_tensors
        grads = backward_op(
            grad_out,
            q,
            k,
            v,
            out,
            lse,
            joint_partition,
            frame_partition,
            bias,
            ctx.scale,
            ctx.dropout_p,
            ctx.seed,
            ctx.output_mask,
        )
        dq, dk, dv, dbias = wanted_gradients(grads, ctx.output_mask)
        return dq, dk, dv, None, None, dbias, None, None, None

    return backward


register_python_parts(
    "partition_attention", _fake_forward, _fake_backward, _make_backward, _setup_context
)


# --- Triton backend as operators of its own ---------------------------------------------------


@torch.library.custom_op("skelops::partition_attention_triton", mutates_args=())
def _partition_attention_triton(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    joint_partition: Tensor,
    frame_partition: Tensor,
    bias: Tensor | None,
    scale: float,
    dropout_p: float,
    seed: int,
) -> tuple[Tensor, Tensor]:
    from ..triton.partition_attention import partition_attention_forward

    _check_arguments(q, k, v, joint_partition, frame_partition, bias, dropout_p)
    return partition_attention_forward(
        q, k, v, joint_partition, frame_partition, bias, scale, dropout_p, seed
    )


@torch.library.custom_op("skelops::partition_attention_triton_backward", mutates_args=())
def _partition_attention_triton_backward(
    grad_out: Tensor,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    out: Tensor,
    lse: Tensor,
    joint_partition: Tensor,
    frame_partition: Tensor,
    bias: Tensor | None,
    scale: float,
    dropout_p: float,
    seed: int,
    output_mask: list[bool],
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    from ..triton.partition_attention import partition_attention_backward

    _check_arguments(q, k, v, joint_partition, frame_partition, bias, dropout_p, False)
    return partition_attention_backward(
        grad_out, q, k, v, out, lse, joint_partition, frame_partition, bias, scale, dropout_p,
        seed, output_mask,
    )  # fmt: skip


register_python_parts(
    "partition_attention_triton", _fake_forward, _fake_backward, _make_backward, _setup_context
)
