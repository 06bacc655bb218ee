"""``skelops.axis_angle_to_matrix`` and ``skelops.dof_rotations``: batched rotation matrices
(Rodrigues' formula, SKEL-style single-axis degrees of freedom), each one fused kernel launch
per call, differentiable."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence

import torch
from torch import Tensor

from .. import reference
from ._common import (
    check_same,
    check_tensor,
    fake_gradients,
    register_autocast_float32,
    register_python_parts,
    resolve_backend,
    wanted_gradients,
)

__all__ = ["axis_angle_to_matrix", "dof_rotations"]

_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def axis_angle_to_matrix(axis_angle: Tensor, *, backend: str = "auto") -> Tensor:
    """Rotation matrices of axis-angle vectors (Rodrigues' formula), exact at zero.

    For ``a = theta k`` (``theta = |a|`` radians, ``k`` the unit axis):
    ``R = I + sin(theta) [k]x + (1 - cos theta) [k]x^2``, computed as
    ``I + A(theta) [a]x + B(theta) [a]x^2`` with ``A = sin(t) / t`` and
    ``B = (1 - cos t) / t^2`` taken from their Taylor series for ``theta^2 < 0.01``: the value
    and the gradient are exact and finite at ``a = 0`` (smplx adds 1e-8 to the norm instead).
    ``R`` rotates column vectors (``x' = R x``), right-handed.

    Args:
        axis_angle: ``[..., 3]`` float32, float64, float16 or bfloat16, any strides.
        backend: ``"auto"`` (the compiled kernel of the tensor's device), ``"cpu"``,
            ``"cuda"``, ``"triton"`` or ``"reference"``.

    Returns:
        ``[..., 3, 3]`` contiguous, in axis_angle's dtype. The math runs in float32 (float64 for
        float64 inputs). Under ``torch.autocast`` float16 / bfloat16 inputs are computed, and
        returned, in float32: a rotation's entries in bfloat16 (8 bits) are off by up to 0.4%,
        which products along a kinematic chain compound, and the op is far too small for lower
        precision to save time.

    Raises:
        TypeError / ValueError: a non-tensor, a last dimension other than 3, an unsupported
            dtype, or an unavailable backend.
    """
    _check_axis_angle(axis_angle, "[..., 3]")
    chosen = resolve_backend("axis_angle_to_matrix", backend, axis_angle.device)
    flat = axis_angle.reshape(-1, 3)
    if chosen == "reference":
        with _reference_precision(axis_angle) as (cast, out_dtype):
            out = reference.axis_angle_to_matrix(cast(flat)).to(out_dtype)
    elif chosen == "triton":
        out = torch.ops.skelops.axis_angle_to_matrix_triton(flat)
    else:
        out = torch.ops.skelops.axis_angle_to_matrix(flat)
    return out.reshape(*axis_angle.shape[:-1], 3, 3)


def dof_rotations(
    pose: Tensor,
    axes: Tensor,
    dof_joints: Sequence[int],
    num_joints: int,
    *,
    backend: str = "auto",
) -> Tensor:
    """Joint rotations from single-axis degrees of freedom (SKEL's biomechanical joints).

    DoF ``d`` rotates by ``q_d`` about the unit axis ``u_d = axes[d] / |axes[d]|``:
    ``M_d = I + sin(q_d) [u_d]x + (1 - cos q_d) [u_d]x^2``. Joint ``j`` with DoFs
    ``d_1 < ... < d_k`` gets ``R_j = M_{d_k} @ ... @ M_{d_1}`` (a later DoF on the left, as
    SKEL's ``CustomJoint.q_to_rot``); a joint without DoFs the identity. All joints of all
    samples are one kernel launch (SKEL loops over joints and DoFs in Python).

    The axes are normalised here (differentiably: their gradient is that of the direction);
    ``torch.ops.skelops.dof_rotations`` itself uses them as given. A zero axis raises for CPU
    tensors and gives NaN rotations on a GPU (checking it there would synchronise).
    :class:`skelops.rotations.DofTable` validates its axes once instead.

    Args:
        pose: ``[..., D]`` angles in radians, float32, float64, float16 or bfloat16, any strides.
        axes: ``[D, 3]`` in pose's dtype and device.
        dof_joints: ``D`` non-decreasing joint indices in ``[0, num_joints)``.
        num_joints: ``J >= 0``.
        backend: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"triton"`` or ``"reference"``.

    Returns:
        ``[..., J, 3, 3]`` contiguous, in pose's dtype (float32 under ``torch.autocast`` for
        float16 / bfloat16 inputs; see :func:`axis_angle_to_matrix`). Math in float32 (float64
        for float64). Gradients flow to pose and axes (the latter summed over the batch in a
        fixed order: deterministic).

    Raises:
        TypeError / ValueError: wrong ranks, shapes, dtypes or devices, dof_joints of the wrong
            length, decreasing or out of range, a zero axis (CPU), or an unavailable backend.
    """
    check_tensor("pose", pose, range(1, 65), "[..., D]")
    joints = _check_dof_arguments(pose, axes, dof_joints, num_joints, pose.shape[-1])
    if axes.device.type == "cpu" and not torch.compiler.is_compiling():
        norms = torch.linalg.vector_norm(axes.detach(), dim=-1)
        if bool((norms == 0).any()):
            index = int(torch.nonzero(norms == 0)[0, 0])
            raise ValueError(f"axes must be non-zero, got axes[{index}] = 0")
    unit = axes / torch.linalg.vector_norm(axes, dim=-1, keepdim=True)
    return run_dof_rotations(pose, unit, joints, num_joints, backend)


def run_dof_rotations(
    pose: Tensor, axes: Tensor, dof_joints: tuple[int, ...], num_joints: int, backend: str
) -> Tensor:
    """:func:`dof_rotations` on checked arguments with the axes used as given (no
    normalisation): ``pose [..., D]`` -> ``[..., J, 3, 3]``."""
    chosen = resolve_backend("dof_rotations", backend, pose.device)
    flat = pose.reshape(math.prod(pose.shape[:-1]), pose.shape[-1])
    joints = list(dof_joints)
    if chosen == "reference":
        with _reference_precision(pose) as (cast, out_dtype):
            out = reference.dof_rotations(cast(flat), cast(axes), joints, num_joints).to(out_dtype)
    elif chosen == "triton":
        out = torch.ops.skelops.dof_rotations_triton(flat, axes, joints, num_joints)
    else:
        out = torch.ops.skelops.dof_rotations(flat, axes, joints, num_joints)
    return out.reshape(*pose.shape[:-1], num_joints, 3, 3)


# --- argument checks (the wrappers, the Triton operators and the fake kernels) -----------------


def _check_axis_angle(axis_angle: object, hint: str, ndims: Sequence[int] = range(1, 65)) -> None:
    check_tensor("axis_angle", axis_angle, ndims, hint)
    assert isinstance(axis_angle, Tensor)
    if axis_angle.shape[-1] != 3:
        raise ValueError(
            f"axis_angle must be {hint} with 3 values last, got shape {tuple(axis_angle.shape)}"
        )
    if axis_angle.dtype not in _DTYPES:
        raise TypeError(f"axis_angle must have dtype in {_DTYPES}, got {axis_angle.dtype}")


def _check_dof_arguments(
    pose: Tensor, axes: object, dof_joints: object, num_joints: object, num_dofs: int
) -> tuple[int, ...]:
    """Checks of axes, dof_joints and num_joints against pose (rank already checked) with
    ``num_dofs = D``; returns dof_joints as a tuple of ints."""
    if pose.dtype not in _DTYPES:
        raise TypeError(f"pose must have dtype in {_DTYPES}, got {pose.dtype}")
    check_tensor("axes", axes, (2,), "[D, 3]")
    assert isinstance(axes, Tensor)
    check_same("axes", axes, "pose", pose)
    if tuple(axes.shape) != (num_dofs, 3):
        raise ValueError(
            f"axes must be [D, 3] = [{num_dofs}, 3] (D = pose.shape[-1]), got {tuple(axes.shape)}"
        )
    if isinstance(num_joints, bool) or not isinstance(num_joints, int):
        raise TypeError(f"num_joints must be an int, got {type(num_joints).__name__}")
    if num_joints < 0:
        raise ValueError(f"num_joints must be >= 0, got {num_joints}")
    return check_dof_joints(dof_joints, num_dofs, num_joints)


def check_dof_joints(dof_joints: object, num_dofs: int, num_joints: int) -> tuple[int, ...]:
    """dof_joints as a tuple of ``num_dofs`` non-decreasing ints in ``[0, num_joints)``."""
    if isinstance(dof_joints, Tensor) or not isinstance(dof_joints, Sequence):
        raise TypeError(f"dof_joints must be a sequence of ints, got {type(dof_joints).__name__}")
    joints = tuple(dof_joints)
    if not all(isinstance(j, int) and not isinstance(j, bool) for j in joints):
        raise TypeError(f"dof_joints must be a sequence of ints, got {joints!r}")
    if len(joints) != num_dofs:
        raise ValueError(
            f"dof_joints must have D = {num_dofs} entries (pose.shape[-1]), got {len(joints)}"
        )
    for d, j in enumerate(joints):
        if not 0 <= j < num_joints:
            raise ValueError(
                f"dof_joints must hold joint indices in [0, num_joints) = [0, {num_joints}), "
                f"got dof_joints[{d}] = {j}"
            )
        if d > 0 and j < joints[d - 1]:
            raise ValueError(
                f"dof_joints must be non-decreasing, got dof_joints[{d - 1}] = {joints[d - 1]} "
                f"> dof_joints[{d}] = {j}"
            )
    return joints


def _check_dof_op(pose: Tensor, axes: Tensor, dof_joints: Sequence[int], num_joints: int) -> None:
    check_tensor("pose", pose, (2,), "[N, D]")
    _check_dof_arguments(pose, axes, dof_joints, num_joints, pose.shape[1])


def _check_grad(grad: Tensor, like: Tensor, like_name: str, shape: tuple[int, ...]) -> None:
    check_tensor("grad", grad, (len(shape),), str(list(shape)))
    check_same("grad", grad, like_name, like)
    if tuple(grad.shape) != shape:
        raise ValueError(f"grad must have shape {list(shape)}, got {tuple(grad.shape)}")


# --- autocast: float32, not the autocast dtype ---------------------------------------------------


def _low_precision(value: object, device_type: str) -> bool:
    return (
        isinstance(value, Tensor)
        and value.dtype in (torch.float16, torch.bfloat16)
        and value.device.type == device_type
    )


@contextlib.contextmanager
def _reference_precision(like: Tensor):
    """The reference backend computes as the kernels do: float16 / bfloat16 inputs on float32
    copies, the result in the input dtype, or under autocast in float32 (with autocast off, so
    that its matrix products stay float32). Yields (cast, output dtype)."""
    device_type = like.device.type
    autocasting = device_type in ("cpu", "cuda") and torch.is_autocast_enabled(device_type)
    low = _low_precision(like, device_type)
    out_dtype = torch.float32 if autocasting and low else like.dtype

    def cast(t: Tensor) -> Tensor:
        return t.float() if _low_precision(t, device_type) else t

    guard = torch.autocast(device_type, enabled=False) if autocasting else contextlib.nullcontext()
    with guard:
        yield cast, out_dtype


# --- fake kernels -------------------------------------------------------------------------------


def _fake_axis_angle(axis_angle: Tensor) -> Tensor:
    _check_axis_angle(axis_angle, "[B, 3]", (2,))
    return axis_angle.new_empty((axis_angle.shape[0], 3, 3))


def _fake_axis_angle_backward(grad: Tensor, axis_angle: Tensor) -> Tensor:
    _check_axis_angle(axis_angle, "[B, 3]", (2,))
    _check_grad(grad, axis_angle, "axis_angle", (axis_angle.shape[0], 3, 3))
    return axis_angle.new_empty(axis_angle.shape)


def _fake_dof(pose: Tensor, axes: Tensor, dof_joints: list[int], num_joints: int) -> Tensor:
    _check_dof_op(pose, axes, dof_joints, num_joints)
    return pose.new_empty((pose.shape[0], num_joints, 3, 3))


def _fake_dof_backward(
    grad: Tensor,
    pose: Tensor,
    axes: Tensor,
    dof_joints: list[int],
    num_joints: int,
    output_mask: list[bool],
) -> tuple[Tensor, Tensor]:
    _check_dof_op(pose, axes, dof_joints, num_joints)
    _check_grad(grad, pose, "pose", (pose.shape[0], num_joints, 3, 3))
    return fake_gradients(pose, output_mask, (pose.shape, axes.shape))  # type: ignore[return-value]


# --- autograd -----------------------------------------------------------------------------------


def _setup_axis_angle(ctx, inputs, output) -> None:
    (axis_angle,) = inputs
    ctx.save_for_backward(axis_angle)


def _make_axis_angle_backward(backward_op):
    def backward(ctx, grad):
        (axis_angle,) = ctx.saved_tensors
        return backward_op(grad, axis_angle)

    return backward


def _setup_dof(ctx, inputs, output) -> None:
    pose, axes, dof_joints, num_joints = inputs
    ctx.save_for_backward(pose, axes)
    ctx.dof_joints, ctx.num_joints = list(dof_joints), num_joints
    ctx.output_mask = list(ctx.needs_input_grad[:2])


def _make_dof_backward(backward_op):
    def backward(ctx, grad):
        pose, axes = ctx.saved_tensors
        grads = backward_op(grad, pose, axes, ctx.dof_joints, ctx.num_joints, ctx.output_mask)
        return (*wanted_gradients(grads, ctx.output_mask), None, None)

    return backward


def _register(axis_angle_op: str, dof_op: str) -> None:
    for op, fake, fake_backward, make_backward, setup in (
        (axis_angle_op, _fake_axis_angle, _fake_axis_angle_backward, _make_axis_angle_backward,
         _setup_axis_angle),
        (dof_op, _fake_dof, _fake_dof_backward, _make_dof_backward, _setup_dof),
    ):  # fmt: skip
        register_python_parts(
            op, fake, fake_backward, make_backward, setup, register_autocast_float32
        )


_register("axis_angle_to_matrix", "dof_rotations")


# --- Triton backend as operators of its own ---------------------------------------------------


@torch.library.custom_op("skelops::axis_angle_to_matrix_triton", mutates_args=())
def _axis_angle_to_matrix_triton(axis_angle: Tensor) -> Tensor:
    from ..triton.rotations import axis_angle_to_matrix_forward

    _check_axis_angle(axis_angle, "[B, 3]", (2,))
    return axis_angle_to_matrix_forward(axis_angle)


@torch.library.custom_op("skelops::axis_angle_to_matrix_triton_backward", mutates_args=())
def _axis_angle_to_matrix_triton_backward(grad: Tensor, axis_angle: Tensor) -> Tensor:
    from ..triton.rotations import axis_angle_to_matrix_backward

    _check_axis_angle(axis_angle, "[B, 3]", (2,))
    _check_grad(grad, axis_angle, "axis_angle", (axis_angle.shape[0], 3, 3))
    return axis_angle_to_matrix_backward(grad, axis_angle)


@torch.library.custom_op("skelops::dof_rotations_triton", mutates_args=())
def _dof_rotations_triton(
    pose: Tensor, axes: Tensor, dof_joints: list[int], num_joints: int
) -> Tensor:
    from ..triton.rotations import dof_rotations_forward

    _check_dof_op(pose, axes, dof_joints, num_joints)
    return dof_rotations_forward(pose, axes, dof_joints, num_joints)


@torch.library.custom_op("skelops::dof_rotations_triton_backward", mutates_args=())
def _dof_rotations_triton_backward(
    grad: Tensor,
    pose: Tensor,
    axes: Tensor,
    dof_joints: list[int],
    num_joints: int,
    output_mask: list[bool],
) -> tuple[Tensor, Tensor]:
    from ..triton.rotations import dof_rotations_backward

    _check_dof_op(pose, axes, dof_joints, num_joints)
    _check_grad(grad, pose, "pose", (pose.shape[0], num_joints, 3, 3))
    return dof_rotations_backward(grad, pose, axes, dof_joints, num_joints, output_mask)


_register("axis_angle_to_matrix_triton", "dof_rotations_triton")
