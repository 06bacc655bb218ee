"""Rotation representations for body models (SMPL's axis-angle, SKEL's single-axis DoFs, 6-D,
Euler angles) and their conversions to 3 x 3 matrices.

Every matrix rotates column vectors (``x' = R x``), right-handed, angles in radians.

:func:`axis_angle_to_matrix` and :func:`dof_rotations` are skelops operators (C++ / CUDA /
Triton kernels, one launch per call, with their own backward). The other conversions are plain
PyTorch compositions of a handful of elementwise operations, which need no kernels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from .ops._common import check_tensor
from .ops.rotations import (
    _check_dof_arguments,
    axis_angle_to_matrix,
    check_dof_joints,
    dof_rotations,
    run_dof_rotations,
)

__all__ = [
    "DofTable",
    "axis_angle_to_matrix",
    "dof_rotations",
    "euler_angles_to_matrix",
    "matrix_to_axis_angle",
    "matrix_to_rotation_6d",
    "rotation_6d_to_matrix",
]

# |axis| may differ from 1 by this much in a DofTable.
_UNIT_TOLERANCE = 1e-6


def _check_matrices(matrix: object) -> Tensor:
    check_tensor("matrix", matrix, range(2, 65), "[..., 3, 3]")
    assert isinstance(matrix, Tensor)
    if matrix.shape[-2:] != (3, 3):
        raise ValueError(f"matrix must be [..., 3, 3], got shape {tuple(matrix.shape)}")
    return matrix


def _matrix_to_quaternion(matrix: Tensor) -> Tensor:
    """Unit quaternions ``(w, x, y, z)`` with ``w >= 0`` of rotation matrices ``[..., 3, 3]``.

    Each of the four ways to read a quaternion off the matrix divides by one of
    ``4 w^2, 4 x^2, 4 y^2, 4 z^2`` (``1 + m00 + m11 + m22`` etc.); the one with the largest
    divisor is taken (``>= 1`` since the four sum to 4), which keeps it accurate at every angle,
    near pi included.
    """
    m = matrix.unbind(-1)
    m00, m10, m20 = m[0].unbind(-1)
    m01, m11, m21 = m[1].unbind(-1)
    m02, m12, m22 = m[2].unbind(-1)
    four_squares = torch.stack(
        [
            1 + m00 + m11 + m22,
            1 + m00 - m11 - m22,
            1 - m00 + m11 - m22,
            1 - m00 - m11 + m22,
        ],
        -1,
    )
    # Candidate k, times 4 q_k: row k of the symmetric/antisymmetric sums.
    candidates = torch.stack(
        [
            torch.stack([four_squares[..., 0], m21 - m12, m02 - m20, m10 - m01], -1),
            torch.stack([m21 - m12, four_squares[..., 1], m10 + m01, m02 + m20], -1),
            torch.stack([m02 - m20, m10 + m01, four_squares[..., 2], m12 + m21], -1),
            torch.stack([m10 - m01, m20 + m02, m21 + m12, four_squares[..., 3]], -1),
        ],
        -2,
    )
    best = four_squares.argmax(-1, keepdim=True)
    # 2 |q_k| = sqrt(4 q_k^2) >= 1 for the best k: no division by zero.
    scale = 2 * four_squares.gather(-1, best).clamp(min=1.0).sqrt()
    chosen = candidates.gather(-2, best[..., None].expand(*best.shape[:-1], 1, 4)).squeeze(-2)
    quaternion = chosen / scale
    return torch.where(quaternion[..., :1] < 0, -quaternion, quaternion)


def matrix_to_axis_angle(matrix: Tensor) -> Tensor:
    """Axis-angle vectors ``[..., 3]`` of rotation matrices ``[..., 3, 3]`` (plain PyTorch).

    The inverse of :func:`axis_angle_to_matrix` with the angle ``|a|`` in ``[0, pi]``. Computed
    through the unit quaternion ``(w, v)`` (``w >= 0``, read off the matrix with the best
    conditioned of the four formulas): ``angle = 2 atan2(|v|, w)``, ``a = v angle / |v|``
    (``2 v / w`` for ``|v| < 1e-6``), accurate near ``pi`` as well as near 0. At exactly ``pi``
    both ``a`` and ``-a`` are correct; either may be returned. Differentiable.

    Raises:
        TypeError / ValueError: a non-floating tensor, or one not ``[..., 3, 3]``.
    """
    quaternion = _matrix_to_quaternion(_check_matrices(matrix))
    w, v = quaternion[..., 0], quaternion[..., 1:]
    n = torch.linalg.vector_norm(v, dim=-1)
    small = n < 1e-6
    n_safe = torch.where(small, torch.ones_like(n), n)
    # 2 atan2(n, w) / n -> 2 / w as n -> 0 (w -> 1); the next term is O(n^2 / w^3).
    ratio = torch.where(small, 2 / w, 2 * torch.atan2(n_safe, w) / n_safe)
    return v * ratio[..., None]


def rotation_6d_to_matrix(x: Tensor) -> Tensor:
    """The continuous 6-D rotation representation (Zhou et al., CVPR 2019) to matrices.

    Convention: pytorch3d's, which reads the 6 values as the first two ROWS of ``R``
    (``x[..., :3]`` row 0, ``x[..., 3:]`` row 1; Zhou et al. write columns, i.e. this is their
    map applied to ``R^T``): ``b1 = a1 / |a1|``, ``b2 = normalise(a2 - (b1 . a2) b1)``,
    ``b3 = b1 x b2``, ``R = [b1; b2; b3]`` (rows). Gram-Schmidt, so any pair of independent
    3-vectors gives a rotation. Plain PyTorch.

    Args:
        x: ``[..., 6]`` floating point.

    Returns:
        ``[..., 3, 3]``.
    """
    check_tensor("x", x, range(1, 65), "[..., 6]")
    if x.shape[-1] != 6:
        raise ValueError(f"x must be [..., 6], got shape {tuple(x.shape)}")
    a1, a2 = x[..., :3], x[..., 3:]
    b1 = F.normalize(a1, dim=-1)
    b2 = F.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    b3 = torch.linalg.cross(b1, b2, dim=-1)
    return torch.stack((b1, b2, b3), dim=-2)


def matrix_to_rotation_6d(matrix: Tensor) -> Tensor:
    """The inverse of :func:`rotation_6d_to_matrix`: the first two rows of ``R`` (pytorch3d's
    convention), ``[..., 3, 3]`` -> ``[..., 6]``. Plain PyTorch."""
    matrix = _check_matrices(matrix)
    return matrix[..., :2, :].reshape(*matrix.shape[:-2], 6)


def _single_axis(axis: str, angle: Tensor) -> Tensor:
    cos, sin = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(angle), torch.zeros_like(angle)
    if axis == "X":
        rows = ((one, zero, zero), (zero, cos, -sin), (zero, sin, cos))
    elif axis == "Y":
        rows = ((cos, zero, sin), (zero, one, zero), (-sin, zero, cos))
    else:
        rows = ((cos, -sin, zero), (sin, cos, zero), (zero, zero, one))
    return torch.stack([torch.stack(row, -1) for row in rows], -2)


def euler_angles_to_matrix(angles: Tensor, convention: str = "XYZ") -> Tensor:
    """Intrinsic Euler angles to matrices: ``R = R_a(angles[..., 0]) R_b(angles[..., 1])
    R_c(angles[..., 2])`` for ``convention = "abc"`` (pytorch3d's and SKEL's utils' convention;
    ``R_X``, ``R_Y``, ``R_Z`` the right-handed rotations about the coordinate axes). Plain
    PyTorch.

    Args:
        angles: ``[..., 3]`` radians, floating point.
        convention: three letters of ``"XYZ"``, no two consecutive ones equal (e.g. ``"XYZ"``,
            ``"ZYX"``, ``"ZXZ"``).

    Returns:
        ``[..., 3, 3]``.
    """
    check_tensor("angles", angles, range(1, 65), "[..., 3]")
    if angles.shape[-1] != 3:
        raise ValueError(f"angles must be [..., 3], got shape {tuple(angles.shape)}")
    if (
        not isinstance(convention, str)
        or len(convention) != 3
        or any(c not in "XYZ" for c in convention)
        or convention[0] == convention[1]
        or convention[1] == convention[2]
    ):
        raise ValueError(
            'convention must be three of "X", "Y", "Z" without two consecutive equal, got '
            f"{convention!r}"
        )
    first, second, third = (
        _single_axis(axis, angle) for axis, angle in zip(convention, angles.unbind(-1), strict=True)
    )
    return first @ second @ third


@dataclass(frozen=True, eq=False)
class DofTable:
    """A joint description table: which joint each DoF rotates, about which fixed axis.

    DoF ``d`` rotates joint ``dof_joints[d]`` by the angle ``pose[..., d]`` about ``axes[d]``;
    a joint's DoFs compose with the later one on the left (see :func:`dof_rotations`).

    Attributes:
        axes: ``[D, 3]`` unit axes (stored as float64 on the CPU; :meth:`rotations` moves a copy
            to the pose's device and dtype, cached per (device, dtype)).
        dof_joints: ``D`` non-decreasing joint indices in ``[0, num_joints)``.
        num_joints: ``J``.
        names: ``D`` DoF names, or None.
        limits: ``[D, 2]`` (lower, upper) radians, NaN for no limit, or None.

    Raises:
        TypeError / ValueError (on construction): axes not ``[D, 3]`` or not of unit norm
        (within 1e-6; the message names the DoF), dof_joints decreasing, out of range or of the
        wrong length, names of the wrong length, limits not ``[D, 2]`` or with lower > upper.
    """

    axes: Tensor
    dof_joints: tuple[int, ...]
    num_joints: int
    names: tuple[str, ...] | None = None
    limits: Tensor | None = None
    _device_axes: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        check_tensor("axes", self.axes, (2,), "[D, 3]")
        if self.axes.shape[1] != 3:
            raise ValueError(f"axes must be [D, 3], got shape {tuple(self.axes.shape)}")
        axes = self.axes.detach().to("cpu", torch.float64).contiguous()
        num_dofs = axes.shape[0]
        if isinstance(self.num_joints, bool) or not isinstance(self.num_joints, int):
            raise TypeError(f"num_joints must be an int, got {type(self.num_joints).__name__}")
        if self.num_joints < 0:
            raise ValueError(f"num_joints must be >= 0, got {self.num_joints}")
        joints = check_dof_joints(self.dof_joints, num_dofs, self.num_joints)
        names = None
        if self.names is not None:
            names = tuple(self.names)
            if len(names) != num_dofs or not all(isinstance(n, str) for n in names):
                raise ValueError(
                    f"names must be D = {num_dofs} strings (one per DoF), got {len(names)} "
                    f"entries: {names!r}"
                )
        norms = torch.linalg.vector_norm(axes, dim=-1)
        for d in range(num_dofs):
            if not abs(norms[d].item() - 1.0) <= _UNIT_TOLERANCE:
                label = f"DoF {d}" + (f" ({names[d]!r})" if names is not None else "")
                raise ValueError(
                    f"axes must be unit vectors (|axis| within {_UNIT_TOLERANCE} of 1), got "
                    f"|axes[{d}]| = {norms[d].item():.9g} for {label}"
                )
        limits = None
        if self.limits is not None:
            check_tensor("limits", self.limits, (2,), "[D, 2]")
            limits = self.limits.detach().to("cpu", torch.float64).contiguous()
            if tuple(limits.shape) != (num_dofs, 2):
                raise ValueError(
                    f"limits must be [D, 2] = [{num_dofs}, 2] (lower, upper), got "
                    f"{tuple(limits.shape)}"
                )
            inverted = limits[:, 0] > limits[:, 1]  # False where either is NaN
            if bool(inverted.any()):
                d = int(torch.nonzero(inverted)[0, 0])
                raise ValueError(
                    f"limits must have lower <= upper, got limits[{d}] = {limits[d].tolist()}"
                )
        object.__setattr__(self, "axes", axes)
        object.__setattr__(self, "dof_joints", joints)
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "limits", limits)

    @property
    def num_dofs(self) -> int:
        """``D``, the number of degrees of freedom."""
        return len(self.dof_joints)

    @classmethod
    def from_joints(
        cls,
        joints: Sequence[Sequence[Sequence[float]]],
        names: Sequence[str] | None = None,
        limits: Tensor | Sequence[Sequence[float]] | None = None,
    ) -> DofTable:
        """A table from per-joint axis lists: ``joints[j]`` holds the axes of joint ``j``'s
        DoFs in order (possibly none). The axes are normalised here (a zero axis raises)."""
        axes: list[list[float]] = []
        dof_joints: list[int] = []
        for j, joint_axes in enumerate(joints):
            for axis in joint_axes:
                values = [float(v) for v in axis]
                if len(values) != 3:
                    raise ValueError(f"joints[{j}] axes must have 3 values, got {values}")
                norm = math.sqrt(sum(v * v for v in values))
                if norm == 0 or not math.isfinite(norm):
                    raise ValueError(
                        f"joints[{j}] has an axis of norm {norm} (DoF {len(axes)}): axes must "
                        "be non-zero and finite"
                    )
                axes.append([v / norm for v in values])
                dof_joints.append(j)
        limit_tensor = None
        if limits is not None:
            limit_tensor = torch.as_tensor(limits, dtype=torch.float64)
        return cls(
            axes=torch.tensor(axes, dtype=torch.float64).reshape(len(axes), 3),
            dof_joints=tuple(dof_joints),
            num_joints=len(joints),
            names=None if names is None else tuple(names),
            limits=limit_tensor,
        )

    def _check_pose(self, pose: Tensor) -> None:
        check_tensor("pose", pose, range(1, 65), "[..., D]")
        if pose.shape[-1] != self.num_dofs:
            raise ValueError(
                f"pose must be [..., D] with D = {self.num_dofs}, got shape {tuple(pose.shape)}"
            )

    def _axes_like(self, pose: Tensor) -> Tensor:
        key = (pose.device, pose.dtype)
        axes = self._device_axes.get(key)
        if axes is None:
            axes = self.axes.to(pose.device, pose.dtype)
            self._device_axes[key] = axes
        return axes

    def rotations(self, pose: Tensor, *, backend: str = "auto") -> Tensor:
        """Joint rotations ``[..., J, 3, 3]`` of ``pose [..., D]`` (see :func:`dof_rotations`;
        the axes, validated on construction, are used as they are)."""
        self._check_pose(pose)
        axes = self._axes_like(pose)
        _check_dof_arguments(pose, axes, self.dof_joints, self.num_joints, pose.shape[-1])
        return run_dof_rotations(pose, axes, self.dof_joints, self.num_joints, backend)

    def clamp(self, pose: Tensor) -> Tensor:
        """``pose [..., D]`` clamped to the limits (differentiable; unlimited where NaN, and
        unchanged when the table has no limits)."""
        self._check_pose(pose)
        if self.limits is None:
            return pose
        limits = self.limits.to(pose.device, pose.dtype)
        lower = torch.where(limits[:, 0].isnan(), -math.inf, limits[:, 0])
        upper = torch.where(limits[:, 1].isnan(), math.inf, limits[:, 1])
        return torch.clamp(pose, min=lower, max=upper)
