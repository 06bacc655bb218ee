"""The body-model code users run today, re-implemented as benchmark baselines and oracles.

- smplx (Pavlakos et al., CVPR 2019; ``smplx/lbs.py``): ``batch_rodrigues`` turns axis-angle
  vectors into matrices (adding 1e-8 to the angle), ``batch_rigid_transform`` builds a 4x4
  transform per joint and walks the kinematic chain with one batched ``matmul`` per joint in a
  Python loop, then subtracts each joint's rotated rest position (``rel_transforms``); ``lbs``
  blends the 4x4 transforms per vertex (``T = W @ A``: ``[N, P, 4, 4]``, 1.8 GB at batch 4096
  for SMPL's 6,890 vertices in float32) and applies them to the homogeneous vertices.
- SKEL (Keller et al., SIGGRAPH Asia 2023; ``skel/osim_rot.py``, ``skel/skel_model.py``): each
  joint's rotation is a product of single-axis rotations, built in a Python loop over the
  joints and, within a joint, over its degrees of freedom (``Rp = R_i @ Rp``); the chain is then
  walked like smplx's.

Written here from those descriptions (not copied) with the same structure and the same number
of operators per joint, so that benchmarks compare against what those loops cost.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "skel_style_dof_rotations",
    "smplx_style_forward_kinematics",
    "smplx_style_rodrigues",
    "smplx_style_skinning",
    "transform_matrices",
]


def smplx_style_rodrigues(axis_angle: Tensor) -> Tensor:
    """``[B, 3] -> [B, 3, 3]`` as smplx's ``batch_rodrigues`` computes it (angle + 1e-8)."""
    angle = torch.norm(axis_angle + 1e-8, dim=1, keepdim=True)
    direction = axis_angle / angle
    cos = torch.unsqueeze(torch.cos(angle), dim=1)
    sin = torch.unsqueeze(torch.sin(angle), dim=1)
    rx, ry, rz = torch.split(direction, 1, dim=1)
    zeros = torch.zeros((axis_angle.shape[0], 1), dtype=axis_angle.dtype, device=axis_angle.device)
    skew = torch.cat([zeros, -rz, ry, rz, zeros, -rx, -ry, rx, zeros], dim=1).view(-1, 3, 3)
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device).unsqueeze(0)
    return eye + sin * skew + (1 - cos) * torch.bmm(skew, skew)


def transform_matrices(rotation: Tensor, translation: Tensor) -> Tensor:
    """``[B, 3, 3]``, ``[B, 3, 1]`` -> ``[B, 4, 4]`` homogeneous transforms."""
    top = torch.cat([rotation, translation], dim=2)
    bottom = torch.nn.functional.pad(
        translation.new_zeros(translation.shape[0], 1, 3), (0, 1), value=1
    )
    return torch.cat([top, bottom], dim=1)


def smplx_style_forward_kinematics(
    rotations: Tensor, rest_joints: Tensor, parents: Sequence[int]
) -> tuple[Tensor, Tensor]:
    """smplx's ``batch_rigid_transform``: rotations ``[N, J, 3, 3]``, rest joints
    ``[N, J, 3]``, parents (root first, ``parents[0] = -1``) -> (posed joints ``[N, J, 3]``,
    relative transforms ``[N, J, 4, 4]`` = ``[G_j | p_j - G_j r_j]``)."""
    batch, joints = rotations.shape[:2]
    rest = rest_joints.unsqueeze(-1)
    relative = rest.clone()
    relative[:, 1:] -= rest[:, list(parents[1:])]
    local = transform_matrices(rotations.reshape(-1, 3, 3), relative.reshape(-1, 3, 1)).reshape(
        batch, joints, 4, 4
    )
    chain = [local[:, 0]]
    for j in range(1, joints):
        chain.append(torch.matmul(chain[parents[j]], local[:, j]))
    transforms = torch.stack(chain, dim=1)
    posed = transforms[:, :, :3, 3]
    rest_homogeneous = torch.nn.functional.pad(rest, (0, 0, 0, 1))
    rotated_rest = torch.matmul(transforms, rest_homogeneous)
    relative_transforms = transforms - torch.nn.functional.pad(rotated_rest, (3, 0))
    return posed, relative_transforms


def smplx_style_skinning(vertices: Tensor, weights: Tensor, transforms: Tensor) -> Tensor:
    """smplx's ``lbs`` skinning step: vertices ``[N, P, 3]``, dense weights ``[P, J]``,
    transforms ``[N, J, 4, 4]`` -> ``[N, P, 3]``, through the per-vertex ``[N, P, 4, 4]``
    matrices."""
    batch, joints = transforms.shape[:2]
    blended = torch.matmul(
        weights.unsqueeze(0).expand(batch, -1, -1), transforms.view(batch, joints, 16)
    )
    blended = blended.view(batch, -1, 4, 4)
    ones = vertices.new_ones(*vertices.shape[:2], 1)
    homogeneous = torch.cat([vertices, ones], dim=2).expand(batch, -1, -1)
    posed = torch.matmul(blended, homogeneous.unsqueeze(-1))
    return posed[:, :, :3, 0]


def skel_style_dof_rotations(
    pose: Tensor, joint_axes: Sequence[Sequence[Sequence[float]]]
) -> Tensor:
    """SKEL's ``pose_params_to_rot``: pose ``[N, D]`` -> ``[N, J, 3, 3]``, a Python loop over
    joints and, within each, over its axes (each DoF's rotation left-multiplied, one
    axis-angle conversion per DoF as SKEL's ``CustomJoint.q_to_rot`` does)."""
    batch = pose.shape[0]
    eye = torch.eye(3, dtype=pose.dtype, device=pose.device)
    rotations = eye.expand(batch, len(joint_axes), 3, 3).clone()
    start = 0
    for j, axes in enumerate(joint_axes):
        current = eye.expand(batch, 3, 3)
        for i, axis in enumerate(axes):
            direction = torch.tensor(axis, dtype=pose.dtype, device=pose.device)
            current = torch.matmul(
                smplx_style_rodrigues(pose[:, start + i : start + i + 1] * direction), current
            )
        rotations[:, j] = current
        start += len(axes)
    return rotations
