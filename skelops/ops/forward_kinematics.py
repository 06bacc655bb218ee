"""``skelops.forward_kinematics``: global rotations, posed joints and skinning transforms of a
kinematic tree (smplx's ``batch_rigid_transform`` without 4 x 4 matrices), with its backward
as an operator of its own."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from .. import reference
from ._common import (
    check_same,
    check_tensor,
    fake_gradients,
    float32_if_half,
    register_autocast_float32,
    register_python_parts,
    resolve_backend,
    wanted_gradients,
)

__all__ = [
    "KinematicsResult",
    "check_parents",
    "check_rotation_matrices",
    "forward_kinematics",
    "topological_order",
]

_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


class KinematicsResult(NamedTuple):
    """The outputs of :func:`forward_kinematics` (``*`` the leading batch dimensions)."""

    global_rotations: Tensor  # [*, J, 3, 3]
    posed_joints: Tensor  # [*, J, 3]
    global_translations: Tensor  # [*, J, 3]


def forward_kinematics(
    local_rotations: Tensor,
    rest_joints: Tensor,
    parents: Sequence[int] | Tensor,
    *,
    validate: bool = False,
    backend: str = "auto",
) -> KinematicsResult:
    """Forward kinematics along a kinematic tree.

    For ``j = 0 .. J-1`` with ``q = parents[j]``:

    .. math::
        G_j = G_q L_j, \\quad p_j = G_q (r_j - r_q) + p_q, \\quad t_j = p_j - G_j r_j

    (a root, ``q = -1``: ``G_j = L_j``, ``p_j = r_j``). ``x -> G_j x + t_j`` maps a rest-pose
    point attached to joint ``j`` to its posed position: smplx's ``rel_transforms``
    ``A_j = [G_j | t_j]``, what linear blend skinning applies. Equal to
    ``skelops.reference.forward_kinematics``.

    Args:
        local_rotations: ``[*batch, J, 3, 3]``: joint ``j``'s rotation relative to its parent
            (a root's: relative to the world). Any strides; float32, float64, float16 or
            bfloat16.
        rest_joints: ``[J, 3]`` shared by the batch, or ``[*batch, J, 3]``: the joints'
            positions in the rest pose; local_rotations' dtype and device.
        parents: ``J`` ints (or a tensor of them, read on the host): ``-1`` for a root (several
            roots allowed), else the parent's index, which must be smaller than ``j``; reorder
            a tree that is not with :func:`topological_order`.
        validate: also check that local_rotations are rotation matrices (orthonormal,
            determinant +1, within 1e-4): one device synchronisation.
        backend: ``"auto"`` (C++ for CPU tensors, CUDA for GPU ones; then Triton; then the
            reference), or one of ``"cpu"``, ``"cuda"``, ``"triton"``, ``"reference"``.

    Returns:
        :class:`KinematicsResult` ``(global_rotations [*batch, J, 3, 3], posed_joints
        [*batch, J, 3], global_translations [*batch, J, 3])`` in the inputs' dtype. An empty
        batch gives empty outputs.

    Gradients flow to local_rotations and rest_joints (a shared one's summed over the batch in
    a fixed order: deterministic); outputs that take no part in the loss cost nothing in the
    backward. The math runs in float32 (float64 for float64 inputs). Under ``torch.autocast``
    the op runs in float32 (float16 / bfloat16 inputs are cast up) and returns float32: the
    rotations are chained up to the tree's depth, and half-precision products would drift off
    the rotation group along the chain, while the op moves a few dozen values per joint, so
    half precision would save little time.

    Raises:
        TypeError / ValueError: a wrong rank, shape, dtype or device, parents out of range,
            cyclic or not topologically ordered, non-rotations (``validate=True``), or an
            unavailable backend.
    """
    batch, num_joints = _check_inputs(local_rotations, rest_joints)
    parent_list = list(check_parents(parents, num_joints))
    if validate:
        check_rotation_matrices(local_rotations, "local_rotations")
    chosen = resolve_backend("forward_kinematics", backend, local_rotations.device)
    if chosen == "reference":
        return KinematicsResult(*_reference(local_rotations, rest_joints, parent_list))
    samples = math.prod(batch)
    flat_rotations = local_rotations.reshape(samples, num_joints, 3, 3)
    flat_rest = (
        rest_joints if rest_joints.dim() == 2 else rest_joints.reshape(samples, num_joints, 3)
    )
    op = (
        torch.ops.skelops.forward_kinematics_triton
        if chosen == "triton"
        else torch.ops.skelops.forward_kinematics
    )
    rotations, positions, translations = op(flat_rotations, flat_rest, parent_list)
    return KinematicsResult(
        rotations.view(*batch, num_joints, 3, 3),
        positions.view(*batch, num_joints, 3),
        translations.view(*batch, num_joints, 3),
    )


def _reference(
    local_rotations: Tensor, rest_joints: Tensor, parents: list[int]
) -> tuple[Tensor, Tensor, Tensor]:
    """The reference under the op's autocast policy (float32, see forward_kinematics)."""
    device_type = local_rotations.device.type
    if not torch.is_autocast_enabled(device_type):
        return reference.forward_kinematics(local_rotations, rest_joints, parents)
    local_rotations, rest_joints = (float32_if_half(t) for t in (local_rotations, rest_joints))
    with torch.autocast(device_type, enabled=False):
        return reference.forward_kinematics(local_rotations, rest_joints, parents)


def _check_inputs(local_rotations: Tensor, rest_joints: Tensor) -> tuple[torch.Size, int]:
    """Ranks, shapes, dtypes and devices; returns (batch shape, J)."""
    if not isinstance(local_rotations, Tensor):
        raise TypeError(
            "local_rotations must be a torch.Tensor [*batch, J, 3, 3], got "
            f"{type(local_rotations).__name__}"
        )
    if local_rotations.dim() < 3 or local_rotations.shape[-2:] != (3, 3):
        raise ValueError(
            "local_rotations must be [*batch, J, 3, 3] (at least 3-D, 3 x 3 matrices last), got "
            f"shape {tuple(local_rotations.shape)}"
        )
    if local_rotations.dtype not in _DTYPES:
        raise TypeError(
            "local_rotations must be float32, float64, float16 or bfloat16, got dtype "
            f"{local_rotations.dtype}"
        )
    batch, num_joints = local_rotations.shape[:-3], local_rotations.shape[-3]
    ranks = tuple(sorted({2, len(batch) + 2}))
    check_tensor("rest_joints", rest_joints, ranks, "[J, 3] or [*batch, J, 3]")
    check_same("rest_joints", rest_joints, "local_rotations", local_rotations)
    expected = (
        (num_joints, 3) if rest_joints.dim() == 2 else (*batch, num_joints, 3)
    )  # [J, 3] is shared even when batch is empty
    if tuple(rest_joints.shape) != tuple(expected):
        raise ValueError(
            f"rest_joints must be [J, 3] = [{num_joints}, 3] or [*batch, J, 3] = "
            f"{[*batch, num_joints, 3]} (local_rotations' batch and J), got "
            f"{list(rest_joints.shape)}"
        )
    return batch, num_joints


def check_parents(
    parents: Sequence[int] | Tensor, num_joints: int | None = None
) -> tuple[int, ...]:
    """Check a kinematic tree's parent list and return it as a tuple of ints.

    Args:
        parents: ``J`` ints, or an integer tensor (converted with ``.tolist()``, a host copy):
            ``-1`` for a root, else the parent joint's index.
        num_joints: the J it must have (None: any).

    Returns:
        ``tuple(parents)``.

    Raises:
        TypeError: a non-integer entry or tensor.
        ValueError: a wrong length, an index out of range, a cycle (named by its joints), or a
            valid tree that is not topologically ordered (``parents[j] < j``); the latter says
            to reorder with :func:`topological_order`.
    """
    values = _parent_ints(parents)
    if num_joints is not None and len(values) != num_joints:
        raise ValueError(
            f"parents must have one entry per joint ({num_joints} joints), got {len(values)}"
        )
    _check_range_and_cycles(values)
    unordered = [j for j, q in enumerate(values) if q >= j]
    if unordered:
        j = unordered[0]
        raise ValueError(
            "parents must be topologically ordered (parents[j] < j); reorder the joints with "
            f"skelops.ops.forward_kinematics.topological_order: parents[{j}] = {values[j]}"
        )
    return values


def topological_order(parents: Sequence[int] | Tensor) -> list[int]:
    """A permutation of the joints that puts every parent before its children.

    Joints keep their relative order where the tree allows it (a joint is moved only after
    its not-yet-placed ancestors). To use it, reorder the joints and renumber the parents:
    ``order = topological_order(parents)``, ``position = {old: new for new, old in
    enumerate(order)}``, ``new_parents = [-1 if parents[o] < 0 else position[parents[o]]
    for o in order]``, ``local_rotations[..., order, :, :]``, ``rest_joints[..., order, :]``.

    Raises:
        TypeError / ValueError: as :func:`check_parents` for non-integers, indices out of range
            and cycles.
    """
    values = _parent_ints(parents)
    _check_range_and_cycles(values)
    placed = [False] * len(values)
    order: list[int] = []
    for j in range(len(values)):
        pending = []
        node = j
        while node >= 0 and not placed[node]:
            pending.append(node)
            node = values[node]
        for node in reversed(pending):
            placed[node] = True
            order.append(node)
    return order


def _parent_ints(parents: Sequence[int] | Tensor) -> tuple[int, ...]:
    if isinstance(parents, Tensor):
        if parents.is_floating_point() or parents.is_complex() or parents.dtype == torch.bool:
            raise TypeError(f"parents must be an integer tensor, got dtype {parents.dtype}")
        if parents.dim() != 1:
            raise ValueError(f"parents must be 1-D [J], got shape {tuple(parents.shape)}")
        return tuple(int(q) for q in parents.tolist())
    if isinstance(parents, (str, bytes)) or not isinstance(parents, Sequence):
        raise TypeError(f"parents must be a sequence of ints or a tensor, got {parents!r}")
    bad = [q for q in parents if isinstance(q, bool) or not isinstance(q, int)]
    if bad:
        raise TypeError(f"parents must hold ints, got {bad[0]!r} ({type(bad[0]).__name__})")
    return tuple(int(q) for q in parents)


def _check_range_and_cycles(values: tuple[int, ...]) -> None:
    count = len(values)
    for j, q in enumerate(values):
        if not -1 <= q < count:
            raise ValueError(f"parents[{j}] = {q} is out of range for {count} joints")
    # Walk up from every joint; a walk that meets itself closes a cycle. 0: unseen,
    # 1: on the current walk, 2: known to reach a root.
    state = [0] * count
    for start in range(count):
        path = []
        node = start
        while node >= 0 and state[node] == 0:
            state[node] = 1
            path.append(node)
            node = values[node]
        if node >= 0 and state[node] == 1:
            cycle = path[path.index(node) :]
            first = cycle.index(min(cycle))
            cycle = cycle[first:] + cycle[:first]
            raise ValueError(f"parents form a cycle through joints {cycle}")
        for visited in path:
            state[visited] = 2


def check_rotation_matrices(rotations: Tensor, name: str, atol: float = 1e-4) -> None:
    """Raise ValueError naming ``name`` unless every ``[..., 3, 3]`` matrix of ``rotations``
    is a rotation: ``|R R^T - I| <= atol`` elementwise and ``|det R - 1| <= atol``.

    Computed in float64 (float32 would itself round at ~1e-7); one device synchronisation.
    """
    if rotations.numel() == 0:
        return
    r = rotations.detach().double()
    identity = torch.eye(3, dtype=r.dtype, device=r.device)
    orthogonality = (r @ r.transpose(-1, -2) - identity).abs().amax(dim=(-1, -2))
    determinant = (torch.linalg.det(r) - 1.0).abs()
    deviation = torch.maximum(orthogonality, determinant).nan_to_num(float("inf"))
    worst = deviation.reshape(-1).max(dim=0)
    value, index = float(worst.values), int(worst.indices)
    if value > atol:
        where = list(torch.unravel_index(torch.tensor(index), tuple(rotations.shape[:-2])))
        raise ValueError(
            f"{name} must be rotation matrices (orthonormal, determinant +1, within {atol}); "
            f"the worst, {name}[{', '.join(str(int(i)) for i in where)}], deviates by {value:.3g}"
        )


# --- fake kernels, autograd, autocast -----------------------------------------------------------


def _fake_forward(
    local_rotations: Tensor, rest_joints: Tensor, parents: list[int]
) -> tuple[Tensor, Tensor, Tensor]:
    n, j = local_rotations.shape[:2]
    return (
        local_rotations.new_empty((n, j, 3, 3)),
        local_rotations.new_empty((n, j, 3)),
        local_rotations.new_empty((n, j, 3)),
    )


def _fake_backward(
    grad_global_rotations: Tensor | None,
    grad_posed_joints: Tensor | None,
    grad_global_translations: Tensor | None,
    local_rotations: Tensor,
    rest_joints: Tensor,
    parents: list[int],
    global_rotations: Tensor,
    output_mask: list[bool],
) -> tuple[Tensor, Tensor]:
    shapes = (local_rotations.shape, rest_joints.shape)
    return fake_gradients(local_rotations, output_mask, shapes)  # type: ignore[return-value]


def _setup_context(ctx, inputs, output) -> None:
    local_rotations, rest_joints, parents = inputs
    ctx.save_for_backward(local_rotations, rest_joints, output[0])
    ctx.parents = parents
    ctx.output_mask = list(ctx.needs_input_grad[:2])
    # An output outside the loss then arrives as None, which the backward op reads as zero
    # without a zero-filled tensor being made and read.
    ctx.set_materialize_grads(False)


def _make_backward(backward_op):
    def backward(ctx, grad_rotations, grad_positions, grad_translations):
        local_rotations, rest_joints, global_rotations = ctx.saved_tensors
        grads = backward_op(
            grad_rotations,
            grad_positions,
            grad_translations,
            local_rotations,
            rest_joints,
            ctx.parents,
            global_rotations,
            ctx.output_mask,
        )
        return (*wanted_gradients(grads, ctx.output_mask), None)

    return backward


def _register(op: str) -> None:
    register_python_parts(
        op, _fake_forward, _fake_backward, _make_backward, _setup_context, register_autocast_float32
    )


_register("forward_kinematics")


# --- Triton backend as operators of its own ---------------------------------------------------


def _check_op_arguments(local_rotations: Tensor, rest_joints: Tensor, parents: list[int]) -> None:
    """What the Triton operators check when called directly (the C++ ones check the same)."""
    if local_rotations.dim() != 4:
        raise ValueError(
            f"local_rotations must be [N, J, 3, 3], got shape {tuple(local_rotations.shape)}"
        )
    if rest_joints.dim() not in (2, 3):
        raise ValueError(
            f"rest_joints must be [J, 3] or [N, J, 3], got shape {tuple(rest_joints.shape)}"
        )
    _check_inputs(local_rotations, rest_joints)
    check_parents(parents, local_rotations.shape[1])


@torch.library.custom_op("skelops::forward_kinematics_triton", mutates_args=())
def _forward_kinematics_triton(
    local_rotations: Tensor, rest_joints: Tensor, parents: list[int]
) -> tuple[Tensor, Tensor, Tensor]:
    from ..triton.forward_kinematics import forward_kinematics_forward

    _check_op_arguments(local_rotations, rest_joints, parents)
    return forward_kinematics_forward(local_rotations, rest_joints, parents)


@torch.library.custom_op("skelops::forward_kinematics_triton_backward", mutates_args=())
def _forward_kinematics_triton_backward(
    grad_global_rotations: Tensor | None,
    grad_posed_joints: Tensor | None,
    grad_global_translations: Tensor | None,
    local_rotations: Tensor,
    rest_joints: Tensor,
    parents: list[int],
    global_rotations: Tensor,
    output_mask: list[bool],
) -> tuple[Tensor, Tensor]:
    from ..triton.forward_kinematics import forward_kinematics_backward

    _check_op_arguments(local_rotations, rest_joints, parents)
    return forward_kinematics_backward(
        grad_global_rotations,
        grad_posed_joints,
        grad_global_translations,
        local_rotations,
        rest_joints,
        parents,
        global_rotations,
        output_mask,
    )


_register("forward_kinematics_triton")
