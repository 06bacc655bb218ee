"""``skelops.multi_dilation_graph_conv``: one graph convolution over several dilated kernels
(STC-Net's DK-GC), reading x once and mixing its channels once."""

from __future__ import annotations

import torch
from torch import Tensor

from .. import reference
from ._common import (
    check_dim,
    check_same,
    check_tensor,
    fake_gradients,
    register_python_parts,
    resolve_backend,
    save_x_if_needed,
    saved_x,
    wanted_gradients,
)

__all__ = ["multi_dilation_graph_conv"]

_REDUCTIONS = ("sum", "concat")


def multi_dilation_graph_conv(
    x: Tensor,
    weight: Tensor,
    adjacency: Tensor,
    bias: Tensor | None = None,
    reduction: str = "sum",
    backend: str = "auto",
) -> Tensor:
    """Graph convolution over ``D`` dilated kernels with one shared channel mix.

    With ``Z[n, k, o, t, v] = sum_c W[k, o, c] x[n, c, t, v]``:

    .. math::
        \\text{sum:}\\quad y[n, o, t, w] = \\sum_d \\sum_k \\sum_v Z[n, k, o, t, v]\\,
        A[d, k, v, w] + b[o]

        \\text{concat:}\\quad y[n, d C_{out} + o, t, w] = \\sum_k \\sum_v Z[n, k, o, t, v]\\,
        A[d, k, v, w] + b[d C_{out} + o]

    Equal to calling :func:`skelops.graph_conv` once per dilation and summing or concatenating
    the results (``skelops.reference.multi_dilation_graph_conv``), but x is read once and its
    channels are mixed once for all dilations.

    Args:
        x: ``[N, C_in, T, V]`` (batch, channels, frames, joints); any strides.
        weight: ``[K, C_out, C_in]``, the channel mix of each subset ``k``, shared by every
            dilation (dilated kernels add no parameters).
        adjacency: ``[D, K, V, V]``; ``A[d, k, v, w]`` carries source joint ``v`` to target joint
            ``w`` in subset ``k`` of dilation ``d`` (``skelops.graphs.dilated_adjacency``).
        bias: ``None`` or one value per output channel, ``[C_out]`` (sum) or ``[D * C_out]``
            (concat), added after aggregation.
        reduction: ``"sum"`` or ``"concat"`` (branches along channels, dilation-major).
        backend: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"triton"`` or ``"reference"``.

    Returns:
        ``[N, C_out, T, V]`` (sum) or ``[N, D * C_out, T, V]`` (concat), contiguous, x's dtype.

    Gradients flow to x, weight, adjacency and bias; the backward is its own operator
    (``torch.ops.skelops.multi_dilation_graph_conv_backward``). Under ``torch.autocast`` the
    kernels run in the autocast dtype and accumulate in fp32.

    Raises:
        TypeError / ValueError: on a wrong rank, shape, dtype, device, an empty tensor, an
            unknown reduction or an unavailable backend.
    """
    concat = _check_reduction(reduction)
    _check_arguments(x, weight, adjacency, bias, concat)
    chosen = resolve_backend("multi_dilation_graph_conv", backend, x.device)
    if chosen == "reference":
        return reference.multi_dilation_graph_conv(x, weight, adjacency, bias, concat)
    if chosen == "triton":
        return torch.ops.skelops.multi_dilation_graph_conv_triton(
            x, weight, adjacency, bias, concat
        )
    return torch.ops.skelops.multi_dilation_graph_conv(x, weight, adjacency, bias, concat)


def _check_reduction(reduction: object) -> bool:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    return reduction == "concat"


def _check_arguments(
    x: Tensor, weight: Tensor, adjacency: Tensor, bias: Tensor | None, concat: bool
) -> None:
    check_tensor("x", x, (4,), "[N, C_in, T, V]")
    check_tensor("weight", weight, (3,), "[K, C_out, C_in]")
    check_tensor("adjacency", adjacency, (4,), "[D, K, V, V]")
    check_same("weight", weight, "x", x)
    check_same("adjacency", adjacency, "x", x)
    if x.numel() == 0:
        raise ValueError(f"x must be non-empty [N, C_in, T, V], got shape {tuple(x.shape)}")
    if weight.numel() == 0:
        raise ValueError(f"weight must be non-empty [K, C_out, C_in], got {tuple(weight.shape)}")
    v = x.shape[3]
    k, c_out, c_in = weight.shape
    check_dim("weight.shape[2]", c_in, x.shape[1], "C_in, x.shape[1]")
    d, a_k, a_v, a_w = adjacency.shape
    if d == 0:
        raise ValueError("adjacency must hold at least one dilation ([D, K, V, V] with D >= 1)")
    check_dim("adjacency.shape[1]", a_k, k, "K, weight.shape[0]")
    if (a_v, a_w) != (v, v):
        raise ValueError(
            f"adjacency must be [D, K, V, V] with V={v} (x.shape[3]), got {a_v} x {a_w}"
        )
    if bias is not None:
        check_tensor("bias", bias, (1,), "[C_out] (sum) or [D * C_out] (concat)")
        check_same("bias", bias, "x", x)
        expected = d * c_out if concat else c_out
        check_dim("bias.shape[0]", bias.shape[0], expected, "D * C_out" if concat else "C_out")


# --- fake kernels (shapes for torch.compile / meta tensors) -----------------------------------


def _fake_forward(
    x: Tensor, weight: Tensor, adjacency: Tensor, bias: Tensor | None = None, concat: bool = False
) -> Tensor:
    _check_arguments(x, weight, adjacency, bias, concat)
    n, _, t, v = x.shape
    channels = weight.shape[1] * (adjacency.shape[0] if concat else 1)
    return x.new_empty((n, channels, t, v))


def _fake_backward(
    grad_out: Tensor,
    x: Tensor,
    weight: Tensor,
    adjacency: Tensor,
    bias: Tensor | None,
    concat: bool,
    output_mask: list[bool],
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    _check_arguments(x, weight, adjacency, bias, concat)
    shapes = (x.shape, weight.shape, adjacency.shape, bias.shape if bias is not None else None)
    return fake_gradients(x, output_mask, shapes)  # type: ignore[return-value]


# --- autograd --------------------------------------------------------------------------------


def _setup_context(ctx, inputs, output) -> None:
    x, weight, adjacency, bias, concat = inputs
    need_x, need_w, need_a, need_b = ctx.needs_input_grad[:4]
    ctx.save_for_backward(save_x_if_needed(ctx, x, need_w or need_a), weight, adjacency, bias)
    ctx.concat = concat
    ctx.output_mask = [need_x, need_w, need_a, bias is not None and need_b]


def _make_backward(backward_op):
    def backward(ctx, grad_out):
        x, weight, adjacency, bias = ctx.saved_tensors
        grads = backward_op(
            grad_out, saved_x(ctx, x), weight, adjacency, bias, ctx.concat, ctx.output_mask
        )
        return (*wanted_gradients(grads, ctx.output_mask), None)

    return backward


register_python_parts(
    "multi_dilation_graph_conv", _fake_forward, _fake_backward, _make_backward, _setup_context
)


# --- Triton backend as operators of its own ---------------------------------------------------


@torch.library.custom_op("skelops::multi_dilation_graph_conv_triton", mutates_args=())
def _multi_dilation_graph_conv_triton(
    x: Tensor, weight: Tensor, adjacency: Tensor, bias: Tensor | None, concat: bool
) -> Tensor:
    from ..triton.multi_dilation_graph_conv import multi_dilation_graph_conv_forward

    return multi_dilation_graph_conv_forward(x, weight, adjacency, bias, concat)


@torch.library.custom_op("skelops::multi_dilation_graph_conv_triton_backward", mutates_args=())
def _multi_dilation_graph_conv_triton_backward(
    grad_out: Tensor,
    x: Tensor,
    weight: Tensor,
    adjacency: Tensor,
    bias: Tensor | None,
    concat: bool,
    output_mask: list[bool],
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    from ..triton.multi_dilation_graph_conv import multi_dilation_graph_conv_backward

    return multi_dilation_graph_conv_backward(
        grad_out, x, weight, adjacency, bias, concat, output_mask
    )


register_python_parts(
    "multi_dilation_graph_conv_triton",
    _fake_forward,
    _fake_backward,
    _make_backward,
    _setup_context,
)
