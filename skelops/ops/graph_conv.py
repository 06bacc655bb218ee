"""``skelops.graph_conv``: fused spatio-temporal graph convolution."""

from __future__ import annotations

import torch
from torch import Tensor

from .. import reference
from ._common import (
    check_dim,
    check_features_weight_bias,
    check_same,
    check_tensor,
    fake_gradients,
    register_python_parts,
    resolve_backend,
    save_x_if_needed,
    saved_x,
    wanted_gradients,
)
from .sparse_graph_conv import SparseForm, sparse_graph_conv

__all__ = ["graph_conv"]


def graph_conv(
    x: Tensor,
    weight: Tensor,
    adjacency: Tensor | SparseForm,
    bias: Tensor | None = None,
    backend: str = "auto",
) -> Tensor:
    """Spatio-temporal graph convolution without the ``K * C_out`` intermediate.

    .. math::
        y[n, o, t, w] = \\sum_k \\sum_c \\sum_v W[k, o, c]\\, x[n, c, t, v]\\, A[k, v, w] + b

    Equal to ST-GCN's ``Conv2d(C_in, K * C_out, 1)`` followed by
    ``einsum('nkctv,kvw->nctw')`` for the same parameters (``skelops.reference.graph_conv``).

    Args:
        x: ``[N, C_in, T, V]`` (batch, channels, frames, joints); any strides.
        weight: ``[K, C_out, C_in]``: the channel mix of each adjacency subset ``k``.
        adjacency: ``[K, V, V]`` shared, or ``[N, K, V, V]`` per sample (adaptive graphs).
            ``A[k, v, w]`` carries source joint ``v`` to target joint ``w``. Or a sparse
            form from ``skelops.graphs`` of a shared ``[K, V, V]`` adjacency: a
            :class:`~skelops.graphs.SparseAdjacency` (per-subset CSR, ``to_sparse(A)``) or a
            :class:`~skelops.graphs.BlockDiagonalAdjacency` (``to_block_diagonal(A, P)``);
            the result is the dense op's for the same matrix, at a cost that scales with the
            stored entries (``torch.ops.skelops.sparse_graph_conv``). Gradients then go to the
            stored values (block entries that are zero are not stored and get none).
        bias: ``None``; ``[C_out]``, added after aggregation; or ``[K, C_out]``, added before
            aggregation like the bias of ST-GCN's 1x1 convolution (so scaled by the column sums
            ``sum_v A[k, v, w]``).
        backend: ``"auto"`` (the compiled kernel of the tensors' device: C++ on CPU, CUDA on
            GPU; then Triton; then the reference), or one of ``"cpu"``, ``"cuda"``,
            ``"triton"``, ``"reference"`` to force it.

    Returns:
        ``[N, C_out, T, V]``, contiguous, in x's dtype.

    Gradients flow to x, weight, adjacency and bias; the backward is its own operator
    (``torch.ops.skelops.graph_conv_backward``) and saves only inputs. Under ``torch.autocast``
    the compiled and Triton kernels run in the autocast dtype and accumulate in fp32.

    NaN/Inf policy: no check is made. Values propagate through the dense arithmetic exactly as
    in the reference: a NaN in ``x[n, :, t, :]`` makes ``y[n, :, t, :]`` NaN (it meets every
    entry of A, zeros included), and a NaN in ``A[k]`` or ``W[k]`` spreads to every output.

    Raises:
        TypeError / ValueError: on a wrong rank, shape, dtype (integer, or mismatched between
            arguments), device, an empty tensor, or an unavailable backend.
    """
    if not isinstance(adjacency, Tensor):
        return sparse_graph_conv(x, weight, adjacency, bias, backend)
    _check_arguments(x, weight, adjacency, bias)
    chosen = resolve_backend("graph_conv", backend, x.device)
    if chosen == "reference":
        return reference.graph_conv(x, weight, adjacency, bias)
    if chosen == "triton":
        return torch.ops.skelops.graph_conv_triton(x, weight, adjacency, bias)
    return torch.ops.skelops.graph_conv(x, weight, adjacency, bias)


def _check_arguments(x: Tensor, weight: Tensor, adjacency: Tensor, bias: Tensor | None) -> None:
    check_tensor("x", x, (4,), "[N, C_in, T, V]")
    check_tensor("weight", weight, (3,), "[K, C_out, C_in]")
    check_tensor("adjacency", adjacency, (3, 4), "[K, V, V] or [N, K, V, V]")
    check_same("weight", weight, "x", x)
    check_same("adjacency", adjacency, "x", x)
    n, _, _, v, k, _ = check_features_weight_bias(x, weight, bias)
    if adjacency.dim() == 4:
        check_dim("adjacency.shape[0]", adjacency.shape[0], n, "N, x.shape[0], for per-sample A")
    a_k, a_v, a_w = adjacency.shape[-3:]
    check_dim("adjacency.shape[-3]", a_k, k, "K, weight.shape[0]")
    if (a_v, a_w) != (v, v):
        raise ValueError(f"adjacency must be V x V with V={v} (x.shape[3]), got {a_v} x {a_w}")


# --- fake kernels (shapes for torch.compile / meta tensors) -----------------------------------


def _fake_forward(
    x: Tensor, weight: Tensor, adjacency: Tensor, bias: Tensor | None = None
) -> Tensor:
    _check_arguments(x, weight, adjacency, bias)
    n, _, t, v = x.shape
    return x.new_empty((n, weight.shape[1], t, v))


def _fake_backward(
    grad_out: Tensor,
    x: Tensor,
    weight: Tensor,
    adjacency: Tensor,
    bias: Tensor | None,
    output_mask: list[bool],
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    _check_arguments(x, weight, adjacency, bias)
    shapes = (x.shape, weight.shape, adjacency.shape, bias.shape if bias is not None else None)
    return fake_gradients(x, output_mask, shapes)  # type: ignore[return-value]


# --- autograd --------------------------------------------------------------------------------


def _setup_context(ctx, inputs, output) -> None:
    x, weight, adjacency, bias = inputs
    need_x, need_w, need_a, need_b = ctx.needs_input_grad[:4]
    # x is read only by dW and dA
    ctx.save_for_backward(save_x_if_needed(ctx, x, need_w or need_a), weight, adjacency, bias)
    ctx.output_mask = [need_x, need_w, need_a, bias is not None and need_b]


def _make_backward(backward_op):
    def backward(ctx, grad_out):
        x, weight, adjacency, bias = ctx.saved_tensors
        grads = backward_op(grad_out, saved_x(ctx, x), weight, adjacency, bias, ctx.output_mask)
        return wanted_gradients(grads, ctx.output_mask)

    return backward


register_python_parts("graph_conv", _fake_forward, _fake_backward, _make_backward, _setup_context)


# --- Triton backend as operators of its own ---------------------------------------------------


@torch.library.custom_op("skelops::graph_conv_triton", mutates_args=())
def _graph_conv_triton(x: Tensor, weight: Tensor, adjacency: Tensor, bias: Tensor | None) -> Tensor:
    from ..triton.graph_conv import graph_conv_forward

    return graph_conv_forward(x, weight, adjacency, bias)


@torch.library.custom_op("skelops::graph_conv_triton_backward", mutates_args=())
def _graph_conv_triton_backward(
    grad_out: Tensor,
    x: Tensor,
    weight: Tensor,
    adjacency: Tensor,
    bias: Tensor | None,
    output_mask: list[bool],
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    from ..triton.graph_conv import graph_conv_backward

    return graph_conv_backward(grad_out, x, weight, adjacency, bias, output_mask)


register_python_parts(
    "graph_conv_triton", _fake_forward, _fake_backward, _make_backward, _setup_context
)
