"""``skelops.linear_blend_skinning``: skinned mesh vertices from joint transforms, blended in
registers (no per-vertex matrix in memory), with dense or sparse skinning weights."""

from __future__ import annotations

import torch
from torch import Tensor

from .. import reference
from ._common import (
    check_same,
    check_tensor,
    fake_gradients,
    register_python_parts,
    resolve_backend,
    wanted_gradients,
)

__all__ = ["linear_blend_skinning", "skinning_weights_to_sparse"]

_INDEX_DTYPES = (torch.int32, torch.int64)
_FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
_ROW_SUM_TOLERANCE = 1e-4


def linear_blend_skinning(
    vertices: Tensor,
    weights: Tensor | tuple[Tensor, Tensor],
    rotations: Tensor,
    translations: Tensor | None = None,
    *,
    validate: bool = False,
    backend: str = "auto",
) -> Tensor:
    """Pose mesh vertices by linear blend skinning (SMPL's LBS).

    .. math::
        out[n, p] = \\sum_j W[p, j] \\, (R[n, j] \\, v[n, p] + t[n, j])

    ``(R[n, j], t[n, j])`` is joint ``j``'s rest-to-posed rigid transform ``x -> R x + t``
    (``forward_kinematics``' global rotations and translations). The blended 3 x 4 matrix of a
    vertex lives in registers only: unlike smplx's ``T = W @ A`` (``[N, P, 4, 4]``, 1.8 GB at
    batch 4096 for SMPL's 6,890 vertices), nothing per vertex is stored but the output. Dense
    weights are compressed to their non-zero entries per row (the C++ kernel) or have their
    zeros skipped (CUDA), so dense weights with few non-zeros per row cost what sparse ones
    do. A zero weight on a non-finite transform is not defined here: the C++ and Triton
    kernels multiply zero-padded entries in (a NaN spreads), the CUDA kernels skip them.

    Args:
        vertices: ``[N, P, 3]`` per-sample vertices, or ``[1, P, 3]`` / ``[P, 3]`` one rest mesh
            shared by every sample (its gradient is then summed over the batch).
        weights: skinning weights, one of
            a dense ``[P, J]`` tensor;
            a torch sparse COO or CSR ``[P, J]`` tensor (converted to the ``(values, indices)``
            form below with ``K`` = the largest number of stored entries in a row);
            a tuple ``(values [P, K], indices [P, K])``: each vertex's ``K`` influences, indices
            int32 or int64 joint numbers in ``[0, J)``, padding entries with weight 0 and any
            valid index (:func:`skinning_weights_to_sparse` makes it from a dense matrix).
        rotations: ``[N, J, 3, 3]``; or, when ``translations`` is None, ``[N, J, 4, 4]`` or
            ``[N, J, 3, 4]`` rigid transforms ``[R | t]`` (smplx's ``A``; a 4 x 4's last row is
            not read).
        translations: ``[N, J, 3]``, or None with 3 x 4 / 4 x 4 ``rotations``.
        validate: also check that the weights are non-negative and that every row sums to one
            within ``1e-4`` (a host synchronisation on a GPU), and that the indices are in range.
            Indices are always range-checked before any kernel reads them.
        backend: ``"auto"`` (C++ for CPU tensors, CUDA for CUDA tensors, then Triton, then the
            reference), ``"cpu"``, ``"cuda"``, ``"triton"`` or ``"reference"``.

    Returns:
        ``[N, P, 3]`` in the inputs' dtype (all floating inputs share one dtype: float32,
        float64, float16 or bfloat16). The math runs in float32 (float64 for float64). An empty
        batch (``N = 0``) gives an empty result.

    Gradients flow to vertices, weights (the values of a sparse form), rotations and
    translations; the backward is its own operator
    (``torch.ops.skelops.linear_blend_skinning_backward``), deterministic (fixed-order sums).
    Under ``torch.autocast`` the op runs in the autocast dtype (inputs and output; math in
    float32): it is bound by the bytes of vertices and output, which half precision halves.

    Raises:
        TypeError / ValueError: naming the argument, on a wrong type, rank, shape, dtype or
            device, indices out of range, an unavailable backend, or (``validate``) weights that
            are negative or whose rows do not sum to one.
    """
    if isinstance(vertices, Tensor) and vertices.dim() == 2:
        vertices = vertices.unsqueeze(0)
    values, indices = _weight_arrays(weights)
    rotations, translations = _split_transforms(rotations, translations)
    _check_arguments(vertices, values, indices, rotations, translations)
    if validate:
        _validate_weights(values, indices, rotations.shape[1])
    chosen = resolve_backend("linear_blend_skinning", backend, vertices.device)
    if chosen == "reference":
        if indices is not None:
            _check_index_values(indices, rotations.shape[1])
        return _reference(vertices, values, indices, rotations, translations)
    # The C++ operators check the index values themselves, the Triton ones in Python.
    op = (
        torch.ops.skelops.linear_blend_skinning_triton
        if chosen == "triton"
        else torch.ops.skelops.linear_blend_skinning
    )
    return op(vertices, values, indices, rotations, translations)


def skinning_weights_to_sparse(
    weights: Tensor, max_influences: int | None = None, tol: float = 0.0
) -> tuple[Tensor, Tensor]:
    """Dense skinning weights ``[P, J]`` as ``(values [P, K], indices [P, K])`` rows.

    A row keeps its entries with ``|w| > tol``, largest magnitude first; ``K`` is the largest
    count in a row, capped at ``max_influences`` (a row with more entries keeps its
    ``max_influences`` largest; the rest of its weight is dropped, not redistributed). Shorter
    rows are padded with weight 0 (and a valid index). Differentiable with respect to the kept
    values.

    Returns:
        ``values`` in ``weights``' dtype and ``indices`` int32 (what the kernels read), both
        ``[P, K]`` on ``weights``' device.
    """
    check_tensor("weights", weights, (2,), "[P, J]")
    if max_influences is not None and (
        isinstance(max_influences, bool)
        or not isinstance(max_influences, int)
        or max_influences < 1
    ):
        raise ValueError(f"max_influences must be an int >= 1 or None, got {max_influences!r}")
    if not tol >= 0.0:
        raise ValueError(f"tol must be >= 0, got {tol}")
    keep = weights.abs() > tol
    count = int(keep.sum(1).max()) if weights.numel() else 0
    if max_influences is not None:
        count = min(count, max_influences)
    # Kept entries by decreasing magnitude, then the dropped ones (stable: ties by joint).
    key = torch.where(keep, weights.abs(), -1.0)
    order = torch.sort(key, dim=1, descending=True, stable=True).indices[:, :count]
    values = torch.gather(weights, 1, order) * torch.gather(keep, 1, order)
    return values, order.to(torch.int32)


# --- argument handling ----------------------------------------------------------------------


def _weight_arrays(weights: object) -> tuple[Tensor, Tensor | None]:
    """``(values, indices)`` of any accepted weight form; indices None for dense weights."""
    if isinstance(weights, tuple):
        if len(weights) != 2:
            raise ValueError(
                f"weights given as a tuple must be (values [P, K], indices [P, K]), got "
                f"{len(weights)} items"
            )
        values, indices = weights
        check_tensor("weights values", values, (2,), "[P, K]")
        if not isinstance(indices, Tensor):
            raise TypeError(
                f"weight indices must be a torch.Tensor [P, K], got {type(indices).__name__}"
            )
        return values, indices
    if not isinstance(weights, Tensor):
        raise TypeError(
            "weights must be a torch.Tensor [P, J] (dense or sparse) or a tuple (values, "
            f"indices), got {type(weights).__name__}"
        )
    if weights.layout != torch.strided:
        return _sparse_to_rows(weights)
    return weights, None


def _sparse_to_rows(weights: Tensor) -> tuple[Tensor, Tensor]:
    """A torch sparse ``[P, J]`` matrix as ELL rows: ``K`` = the most stored entries in a row,
    shorter rows padded with weight 0 at joint 0."""
    if weights.dim() != 2:
        raise ValueError(f"sparse weights must be [P, J] (2-D), got shape {tuple(weights.shape)}")
    coo = (weights if weights.layout == torch.sparse_coo else weights.to_sparse_coo()).coalesce()
    rows, cols = coo.indices()
    stored = coo.values()
    num_rows = weights.shape[0]
    counts = torch.bincount(rows, minlength=num_rows)
    width = int(counts.max()) if rows.numel() else 0
    # coalesce() sorts the entries by row: an entry's slot is its rank within its row.
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(rows.numel(), device=rows.device) - starts[rows]
    values = stored.new_zeros((num_rows, width)).index_put((rows, slot), stored)
    indices = torch.zeros((num_rows, width), dtype=torch.int32, device=rows.device)
    indices = indices.index_put((rows, slot), cols.to(torch.int32))
    return values, indices


def _split_transforms(rotations: object, translations: object) -> tuple[Tensor, Tensor]:
    check_tensor("rotations", rotations, (4,), "[N, J, 3, 3] (or [N, J, 3 or 4, 4])")
    assert isinstance(rotations, Tensor)
    if translations is not None:
        return rotations, translations  # type: ignore[return-value]
    rows, cols = rotations.shape[2:]
    if cols != 4 or rows not in (3, 4):
        raise ValueError(
            "rotations must be [N, J, 4, 4] or [N, J, 3, 4] rigid transforms when translations "
            f"is None, got shape {tuple(rotations.shape)}"
        )
    return rotations[:, :, :3, :3], rotations[:, :, :3, 3]


def _check_arguments(
    vertices: Tensor,
    weights: Tensor,
    weight_indices: Tensor | None,
    rotations: Tensor,
    translations: Tensor,
) -> None:
    """Ranks, shapes, dtypes and devices (the C++ operators check the same)."""
    check_tensor("vertices", vertices, (3,), "[N, P, 3] or [1, P, 3]")
    if vertices.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"vertices must have dtype in {_FLOAT_DTYPES}, got {vertices.dtype}")
    check_tensor("weights", weights, (2,), "[P, J] or [P, K]")
    check_tensor("rotations", rotations, (4,), "[N, J, 3, 3]")
    check_tensor("translations", translations, (3,), "[N, J, 3]")
    check_same("weights", weights, "vertices", vertices)
    check_same("rotations", rotations, "vertices", vertices)
    check_same("translations", translations, "vertices", vertices)
    n, j = rotations.shape[:2]
    if rotations.shape[2:] != (3, 3):
        raise ValueError(f"rotations must be [N, J, 3, 3], got shape {tuple(rotations.shape)}")
    if translations.shape != (n, j, 3):
        raise ValueError(
            f"translations must be [N, J, 3] = [{n}, {j}, 3] (rotations' N and J), got shape "
            f"{tuple(translations.shape)}"
        )
    p = weights.shape[0]
    if vertices.shape[0] not in (n, 1) or vertices.shape[2] != 3:
        raise ValueError(
            f"vertices must be [N, P, 3] or [1, P, 3] with N = {n} (rotations.shape[0]), got "
            f"shape {tuple(vertices.shape)}"
        )
    if vertices.shape[1] != p:
        raise ValueError(
            f"vertices must have P = {p} vertices (weights.shape[0]), got shape "
            f"{tuple(vertices.shape)}"
        )
    if weight_indices is None:
        if weights.shape[1] != j:
            raise ValueError(
                f"dense weights must be [P, J] with J = {j} joints (rotations.shape[1]), got "
                f"shape {tuple(weights.shape)}"
            )
        return
    if weight_indices.dtype not in _INDEX_DTYPES:
        raise TypeError(f"weight_indices must be int32 or int64, got dtype {weight_indices.dtype}")
    if weight_indices.device != vertices.device:
        raise ValueError(
            f"weight_indices must be on vertices' device ({vertices.device}), got "
            f"{weight_indices.device}"
        )
    if weight_indices.shape != weights.shape:
        raise ValueError(
            f"weight_indices must have the weights' shape [P, K] = {list(weights.shape)}, got "
            f"{list(weight_indices.shape)}"
        )


def _check_index_values(weight_indices: Tensor, num_joints: int) -> None:
    """Indices in ``[0, J)`` (a host synchronisation for GPU tensors; skipped while compiling:
    the C++ operators check again)."""
    if weight_indices.numel() == 0 or torch.compiler.is_compiling():
        return
    low, high = int(weight_indices.min()), int(weight_indices.max())
    if low < 0 or high >= num_joints:
        raise ValueError(
            f"weight_indices must hold joint indices in [0, J={num_joints}), got values in "
            f"[{low}, {high}]"
        )


def _validate_weights(values: Tensor, indices: Tensor | None, num_joints: int) -> None:
    if indices is not None:
        _check_index_values(indices, num_joints)
    if values.numel() and bool((values < 0).any()):
        row, col = (int(i) for i in torch.nonzero(values < 0)[0])
        value = float(values[row, col])
        raise ValueError(f"weights must be non-negative, got weights[{row}, {col}] = {value:.6g}")
    if values.shape[0] == 0:
        return
    sums = values.double().sum(1)
    error = (sums - 1.0).abs()
    worst = int(error.argmax())
    if float(error[worst]) > _ROW_SUM_TOLERANCE:
        raise ValueError(
            f"weights rows must sum to 1 within {_ROW_SUM_TOLERANCE}: row {worst} sums to "
            f"{float(sums[worst]):.6g}"
        )


def _reference(
    vertices: Tensor,
    values: Tensor,
    indices: Tensor | None,
    rotations: Tensor,
    translations: Tensor,
) -> Tensor:
    """The reference, in the autocast dtype under ``torch.autocast`` like the kernels."""
    device_type = vertices.device.type
    if not torch.is_autocast_enabled(device_type):
        return reference.linear_blend_skinning(vertices, values, indices, rotations, translations)
    dtype = torch.get_autocast_dtype(device_type)
    with torch.autocast(device_type, enabled=False):
        return reference.linear_blend_skinning(
            vertices.to(dtype), values.to(dtype), indices, rotations.to(dtype),
            translations.to(dtype),
        )  # fmt: skip


# --- fake kernels, autograd, autocast -----------------------------------------------------------


def _fake_forward(
    vertices: Tensor,
    weights: Tensor,
    weight_indices: Tensor | None,
    rotations: Tensor,
    translations: Tensor,
) -> Tensor:
    _check_arguments(vertices, weights, weight_indices, rotations, translations)
    return vertices.new_empty((rotations.shape[0], weights.shape[0], 3))


def _fake_backward(
    grad_out: Tensor,
    vertices: Tensor,
    weights: Tensor,
    weight_indices: Tensor | None,
    rotations: Tensor,
    translations: Tensor,
    output_mask: list[bool],
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    _check_arguments(vertices, weights, weight_indices, rotations, translations)
    shapes = (vertices.shape, weights.shape, rotations.shape, translations.shape)
    return fake_gradients(vertices, output_mask, shapes)  # type: ignore[return-value]


def _setup_context(ctx, inputs, output) -> None:
    vertices, weights, weight_indices, rotations, translations = inputs
    needs = ctx.needs_input_grad
    ctx.save_for_backward(vertices, weights, weight_indices, rotations, translations)
    ctx.output_mask = [needs[0], needs[1], needs[3], needs[4]]


def _make_backward(backward_op):
    def backward(ctx, grad_out):
        vertices, weights, weight_indices, rotations, translations = ctx.saved_tensors
        grads = backward_op(
            grad_out, vertices, weights, weight_indices, rotations, translations, ctx.output_mask
        )
        grad_v, grad_w, grad_r, grad_t = wanted_gradients(grads, ctx.output_mask)
        return grad_v, grad_w, None, grad_r, grad_t

    return backward


register_python_parts(
    "linear_blend_skinning", _fake_forward, _fake_backward, _make_backward, _setup_context
)


# --- Triton backend as operators of its own ---------------------------------------------------


def _check_triton_arguments(
    vertices: Tensor,
    weights: Tensor,
    weight_indices: Tensor | None,
    rotations: Tensor,
    translations: Tensor,
) -> None:
    """What the Triton operators check when called directly (no C++ check stands behind)."""
    _check_arguments(vertices, weights, weight_indices, rotations, translations)
    if weight_indices is not None:
        _check_index_values(weight_indices, rotations.shape[1])


@torch.library.custom_op("skelops::linear_blend_skinning_triton", mutates_args=())
def _linear_blend_skinning_triton(
    vertices: Tensor,
    weights: Tensor,
    weight_indices: Tensor | None,
    rotations: Tensor,
    translations: Tensor,
) -> Tensor:
    from ..triton.linear_blend_skinning import linear_blend_skinning_forward

    _check_triton_arguments(vertices, weights, weight_indices, rotations, translations)
    return linear_blend_skinning_forward(vertices, weights, weight_indices, rotations, translations)


@torch.library.custom_op("skelops::linear_blend_skinning_triton_backward", mutates_args=())
def _linear_blend_skinning_triton_backward(
    grad_out: Tensor,
    vertices: Tensor,
    weights: Tensor,
    weight_indices: Tensor | None,
    rotations: Tensor,
    translations: Tensor,
    output_mask: list[bool],
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    from ..triton.linear_blend_skinning import linear_blend_skinning_backward

    _check_triton_arguments(vertices, weights, weight_indices, rotations, translations)
    n, p = rotations.shape[0], weights.shape[0]
    if grad_out.shape != (n, p, 3):
        raise ValueError(
            f"grad_out must be [N, P, 3] = [{n}, {p}, 3], got shape {tuple(grad_out.shape)}"
        )
    check_same("grad_out", grad_out, "vertices", vertices)
    return linear_blend_skinning_backward(
        grad_out, vertices, weights, weight_indices, rotations, translations, output_mask
    )


register_python_parts(
    "linear_blend_skinning_triton", _fake_forward, _fake_backward, _make_backward, _setup_context
)
