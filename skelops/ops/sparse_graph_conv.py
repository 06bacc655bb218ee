"""Sparse graph convolution: ``skelops.graph_conv`` for adjacencies stored as per-subset CSR
(:class:`skelops.graphs.SparseAdjacency`) or as diagonal blocks plus links
(:class:`skelops.graphs.BlockDiagonalAdjacency`)."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.weak import WeakIdKeyDictionary

from .. import reference
from ..graphs.sparse import BlockDiagonalAdjacency, SparseAdjacency, check_csr
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

__all__ = ["sparse_graph_conv"]

SparseForm = SparseAdjacency | BlockDiagonalAdjacency


def sparse_graph_conv(
    x: Tensor,
    weight: Tensor,
    adjacency: SparseForm,
    bias: Tensor | None = None,
    backend: str = "auto",
) -> Tensor:
    """``skelops.graph_conv`` with a sparse adjacency; see :func:`skelops.graph_conv`.

    Work and memory scale with the stored entries ``nnz`` rather than ``K * V * V``: the
    kernels gather the features of each target's sources, then mix channels over only the
    (subset, target) rows that hold entries. Gradients flow to x, weight, bias and the stored
    values (``adjacency.values``, or the blocks and link values of a block-diagonal adjacency).
    """
    if isinstance(adjacency, BlockDiagonalAdjacency):
        adjacency = adjacency.to_sparse()
    if not isinstance(adjacency, SparseAdjacency):
        raise TypeError(
            "adjacency must be a torch.Tensor ([K, V, V] or [N, K, V, V]), a "
            "skelops.graphs.SparseAdjacency or a skelops.graphs.BlockDiagonalAdjacency, "
            f"got {type(adjacency).__name__}"
        )
    crow, col, values = adjacency.crow_indices, adjacency.col_indices, adjacency.values
    _check_arguments(x, weight, crow, col, values, bias)
    chosen = resolve_backend("sparse_graph_conv", backend, x.device)
    if chosen == "reference":
        if not torch.compiler.is_compiling():
            check_structure(crow, col, x.shape[3], values.numel())
        return reference.sparse_graph_conv(x, weight, crow, col, values, bias)
    if chosen == "triton":
        return torch.ops.skelops.sparse_graph_conv_triton(x, weight, crow, col, values, bias)
    return torch.ops.skelops.sparse_graph_conv(x, weight, crow, col, values, bias)


def _check_arguments(
    x: Tensor,
    weight: Tensor,
    crow: Tensor,
    col: Tensor,
    values: Tensor,
    bias: Tensor | None,
) -> None:
    """Shapes, dtypes and devices (the CSR content is checked by the kernels' callers)."""
    check_tensor("x", x, (4,), "[N, C_in, T, V]")
    check_tensor("weight", weight, (3,), "[K, C_out, C_in]")
    check_tensor("adjacency.values", values, (1,), "[nnz]")
    check_tensor("adjacency.crow_indices", crow, (2,), "[K, V + 1]", floating=False)
    check_tensor("adjacency.col_indices", col, (1,), "[nnz]", floating=False)
    check_same("weight", weight, "x", x)
    check_same("adjacency.values", values, "x", x)
    for name, t in (("adjacency.crow_indices", crow), ("adjacency.col_indices", col)):
        if t.dtype not in (torch.int32, torch.int64):
            raise TypeError(f"{name} must be int32 or int64, got {t.dtype}")
        if t.device != x.device:
            raise ValueError(f"{name} must be on the same device as x ({x.device}), got {t.device}")
    if crow.dtype != col.dtype:
        raise TypeError(
            f"adjacency.crow_indices and col_indices must share a dtype, got {crow.dtype} and "
            f"{col.dtype}"
        )
    _, _, _, v, k, _ = check_features_weight_bias(x, weight, bias)
    if tuple(crow.shape) != (k, v + 1):
        raise ValueError(
            f"adjacency.crow_indices must be [K, V + 1] = [{k}, {v + 1}] (K = weight.shape[0], "
            f"V = x.shape[3]), got {tuple(crow.shape)}: the adjacency has "
            f"{crow.shape[-1] - 1} nodes and {crow.shape[0]} subsets"
        )
    check_dim("adjacency.col_indices.shape[0]", col.shape[0], values.shape[0], "nnz")


# Index tensors whose CSR content was checked, with their versions then (in-place edits bump
# them), so that the Triton and reference paths read GPU indices back once, not per call.
_checked: WeakIdKeyDictionary = WeakIdKeyDictionary()


def check_structure(crow: Tensor, col: Tensor, num_nodes: int, nnz: int) -> None:
    """:func:`skelops.graphs.check_csr`, remembered per live (crow, col) pair and version."""
    key = (col, crow._version, col._version, num_nodes) if not crow.is_inference() else None
    if key is not None and crow.device.type != "cpu":
        seen = _checked.get(crow)
        if seen is not None and seen[0] is col and seen[1:] == key[1:]:
            return
    check_csr(crow, col, num_nodes, nnz)
    if key is not None and crow.device.type != "cpu":
        _checked[crow] = key


# --- fake kernels ----------------------------------------------------------------------------


def _fake_forward(
    x: Tensor,
    weight: Tensor,
    crow_indices: Tensor,
    col_indices: Tensor,
    values: Tensor,
    bias: Tensor | None = None,
) -> Tensor:
    _check_arguments(x, weight, crow_indices, col_indices, values, bias)
    n, _, t, v = x.shape
    return x.new_empty((n, weight.shape[1], t, v))


def _fake_backward(
    grad_out: Tensor,
    x: Tensor,
    weight: Tensor,
    crow_indices: Tensor,
    col_indices: Tensor,
    values: Tensor,
    bias: Tensor | None,
    output_mask: list[bool],
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    _check_arguments(x, weight, crow_indices, col_indices, values, bias)
    shapes = (x.shape, weight.shape, values.shape, bias.shape if bias is not None else None)
    return fake_gradients(x, output_mask, shapes)  # type: ignore[return-value]


# --- autograd --------------------------------------------------------------------------------


def _setup_context(ctx, inputs, output) -> None:
    x, weight, crow, col, values, bias = inputs
    need_x, need_w, _, _, need_values, need_b = ctx.needs_input_grad[:6]
    # x is read only by dW and d values
    x_saved = save_x_if_needed(ctx, x, need_w or need_values)
    ctx.save_for_backward(x_saved, weight, crow, col, values, bias)
    ctx.output_mask = [need_x, need_w, need_values, bias is not None and need_b]


def _make_backward(backward_op):
    def backward(ctx, grad_out):
        x, weight, crow, col, values, bias = ctx.saved_tensors
        x = saved_x(ctx, x)
        grads = backward_op(grad_out, x, weight, crow, col, values, bias, ctx.output_mask)
        gx, gw, gvalues, gb = wanted_gradients(grads, ctx.output_mask)
        return gx, gw, None, None, gvalues, gb

    return backward


register_python_parts(
    "sparse_graph_conv", _fake_forward, _fake_backward, _make_backward, _setup_context
)


# --- Triton backend as operators of its own ---------------------------------------------------


def _check_triton_dtype(x: Tensor) -> None:
    from ..triton._common import supported_dtypes

    if x.dtype not in supported_dtypes():
        names = ", ".join(str(d) for d in supported_dtypes())
        raise TypeError(f"the Triton kernels take x of dtype {names} here, got {x.dtype}")


@torch.library.custom_op("skelops::sparse_graph_conv_triton", mutates_args=())
def _sparse_graph_conv_triton(
    x: Tensor,
    weight: Tensor,
    crow_indices: Tensor,
    col_indices: Tensor,
    values: Tensor,
    bias: Tensor | None,
) -> Tensor:
    from ..triton.sparse_graph_conv import sparse_graph_conv_forward

    _check_triton_dtype(x)
    check_structure(crow_indices, col_indices, x.shape[3], values.numel())
    return sparse_graph_conv_forward(x, weight, crow_indices, col_indices, values, bias)


@torch.library.custom_op("skelops::sparse_graph_conv_triton_backward", mutates_args=())
def _sparse_graph_conv_triton_backward(
    grad_out: Tensor,
    x: Tensor,
    weight: Tensor,
    crow_indices: Tensor,
    col_indices: Tensor,
    values: Tensor,
    bias: Tensor | None,
    output_mask: list[bool],
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    from ..triton.sparse_graph_conv import sparse_graph_conv_backward

    _check_triton_dtype(x)
    check_structure(crow_indices, col_indices, x.shape[3], values.numel())
    return sparse_graph_conv_backward(
        grad_out, x, weight, crow_indices, col_indices, values, bias, output_mask
    )


register_python_parts(
    "sparse_graph_conv_triton", _fake_forward, _fake_backward, _make_backward, _setup_context
)
