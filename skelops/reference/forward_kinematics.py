"""Reference forward kinematics along a kinematic tree, as smplx's ``batch_rigid_transform``
computes it, without the 4 x 4 matrices."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def forward_kinematics(
    local_rotations: torch.Tensor,
    rest_joints: torch.Tensor,
    parents: Sequence[int] | torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Global rotations, posed joints and rest-to-posed translations of a kinematic tree.

    For ``j = 0 .. J-1`` with ``q = parents[j]``:

    .. math::
        G_j = G_q L_j, \\quad p_j = G_q (r_j - r_q) + p_q, \\quad t_j = p_j - G_j r_j

    (a root, ``q = -1``: ``G_j = L_j``, ``p_j = r_j``). ``x -> G_j x + t_j`` is the rigid
    transform carrying a rest-pose point attached to joint ``j`` to the posed one: smplx's
    ``rel_transforms`` ``A_j = [G_j | t_j]``.

    A readable loop over joints in plain PyTorch, differentiable by autograd: the definition of
    ``skelops.forward_kinematics`` and its test oracle.

    Args:
        local_rotations: ``[*batch, J, 3, 3]``, joint ``j``'s rotation relative to its parent.
        rest_joints: ``[J, 3]`` (shared by the batch) or ``[*batch, J, 3]``, the joint positions
            in the rest pose.
        parents: ``J`` ints (or a tensor of them), ``parents[j] < j``, ``-1`` for a root
            (several roots allowed).

    Returns:
        ``(global_rotations [*batch, J, 3, 3], posed_joints [*batch, J, 3],
        global_translations [*batch, J, 3])``.
    """
    parent_list = [int(q) for q in (parents.tolist() if torch.is_tensor(parents) else parents)]
    batch = local_rotations.shape[:-3]
    num_joints = local_rotations.shape[-3]
    if len(parent_list) != num_joints:
        raise ValueError(f"parents must have J = {num_joints} entries, got {len(parent_list)}")
    rest = rest_joints.expand(*batch, num_joints, 3)
    rotations: list[torch.Tensor] = []
    positions: list[torch.Tensor] = []
    translations: list[torch.Tensor] = []
    for j, q in enumerate(parent_list):
        if not -1 <= q < j:
            raise ValueError(f"parents[{j}] = {q}: parents must satisfy -1 <= parents[j] < j")
        local = local_rotations[..., j, :, :]
        r_j = rest[..., j, :]
        if q < 0:
            rotation, position = local, r_j
        else:
            rotation = rotations[q] @ local
            bone = r_j - rest[..., q, :]
            position = (rotations[q] @ bone.unsqueeze(-1)).squeeze(-1) + positions[q]
        rotations.append(rotation)
        positions.append(position)
        translations.append(position - (rotation @ r_j.unsqueeze(-1)).squeeze(-1))
    if num_joints == 0:
        empty = local_rotations.new_empty(*batch, 0, 3)
        return local_rotations.clone(), empty, empty.clone()
    return (
        torch.stack(rotations, dim=-3),
        torch.stack(positions, dim=-2),
        torch.stack(translations, dim=-2),
    )
