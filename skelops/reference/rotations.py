"""Reference rotation operators (axis-angle to matrix, SKEL-style single-axis DoFs to joint
rotations), as plain PyTorch compositions; the definition every kernel computes, and its
fallback."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["axis_angle_to_matrix", "dof_rotations", "SERIES_BOUND"]

# theta^2 below which sin(t) / t and (1 - cos t) / t^2 come from their Taylor series (five
# terms, truncation below 1e-17), so that the value and the gradient are exact and finite at 0.
SERIES_BOUND = 0.01


def _series(t2: Tensor, coefficients: Sequence[float]) -> Tensor:
    """sum_n coefficients[n] t2^n (Horner)."""
    out = torch.full_like(t2, coefficients[-1])
    for c in reversed(coefficients[:-1]):
        out = out * t2 + c
    return out


def _cross_matrix(v: Tensor) -> Tensor:
    """[v]x ``[..., 3, 3]`` of ``v [..., 3]``: [v]x u = v x u."""
    x, y, z = v.unbind(-1)
    zero = torch.zeros_like(x)
    rows = (
        torch.stack([zero, -z, y], -1),
        torch.stack([z, zero, -x], -1),
        torch.stack([-y, x, zero], -1),
    )
    return torch.stack(rows, -2)


def _rodrigues(v: Tensor, sin_part: Tensor, one_minus_cos_part: Tensor) -> Tensor:
    """I + sin_part [v]x + one_minus_cos_part [v]x^2 for ``v [..., 3]`` and per-row scalars."""
    k = _cross_matrix(v)
    eye = torch.eye(3, dtype=v.dtype, device=v.device)
    return eye + sin_part[..., None, None] * k + one_minus_cos_part[..., None, None] * (k @ k)


def axis_angle_to_matrix(axis_angle: Tensor) -> Tensor:
    """Rodrigues' formula: ``[..., 3]`` axis-angle vectors -> ``[..., 3, 3]`` rotation matrices.

    For ``a = theta k`` (``theta = |a|``, ``|k| = 1``) and ``K = [a]x``:

    ``R = I + A(theta) K + B(theta) K^2``, ``A = sin(t) / t``, ``B = (1 - cos t) / t^2``,

    i.e. ``R = I + sin(theta) [k]x + (1 - cos theta) [k]x^2``, the rotation by ``theta`` about
    ``k`` (right-handed, acting on column vectors). ``A`` and ``B`` are Taylor series in ``t^2``
    below ``t^2 = SERIES_BOUND`` (the norm's square root is never taken there), so ``R`` and its
    autograd gradient are exact and finite at ``a = 0`` (smplx instead adds 1e-8 to the norm).
    """
    t2 = (axis_angle * axis_angle).sum(-1)
    small = t2 < SERIES_BOUND
    # Outside the series' range only: the masked branch must not see t = 0 (NaN gradients).
    t = torch.where(small, torch.ones_like(t2), t2).sqrt()
    a_series = _series(t2, [1.0, -1 / 6, 1 / 120, -1 / 5040, 1 / 362880])
    b_series = _series(t2, [0.5, -1 / 24, 1 / 720, -1 / 40320, 1 / 3628800])
    a_closed = torch.sin(t) / t
    b_closed = 2 * torch.sin(0.5 * t) ** 2 / (t * t)
    a = torch.where(small, a_series, a_closed)
    b = torch.where(small, b_series, b_closed)
    return _rodrigues(axis_angle, a, b)


def dof_rotations(pose: Tensor, axes: Tensor, dof_joints: Sequence[int], num_joints: int) -> Tensor:
    """Joint rotations from single-axis degrees of freedom (SKEL's biomechanical joints).

    Args:
        pose: ``[N, D]`` angles (radians).
        axes: ``[D, 3]`` fixed axes, used as given (the matrices are rotations for unit axes).
        dof_joints: ``D`` non-decreasing joint indices in ``[0, num_joints)``.
        num_joints: ``J``.

    Returns:
        ``[N, J, 3, 3]``: DoF ``d`` gives ``M_d = I + sin(q_d) [a_d]x + (1 - cos q_d) [a_d]x^2``;
        joint ``j`` with DoFs ``d_1 < ... < d_k`` gets ``M_{d_k} @ ... @ M_{d_1}`` (a later DoF on
        the left, as SKEL's ``CustomJoint.q_to_rot``), a joint without DoFs the identity.
    """
    n = pose.shape[0]
    per_dof = _rodrigues(axes.expand(n, -1, -1), torch.sin(pose), 2 * torch.sin(0.5 * pose) ** 2)
    eye = torch.eye(3, dtype=pose.dtype, device=pose.device).expand(n, 3, 3)
    joints = [eye] * num_joints
    for d, j in enumerate(dof_joints):
        joints[j] = per_dof[:, d] @ joints[j]
    if num_joints == 0:
        return pose.new_empty((n, 0, 3, 3))
    return torch.stack(joints, 1)
