"""Reference linear blend skinning: plain PyTorch, differentiable by autograd, the definition
of ``skelops.linear_blend_skinning``."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["dense_weights", "linear_blend_skinning"]


def dense_weights(weights: Tensor, weight_indices: Tensor | None, num_joints: int) -> Tensor:
    """The dense ``[P, J]`` weight matrix: ``weights`` itself, or the sparse ("ELL") rows
    ``weights [P, K]`` scattered to the columns ``weight_indices [P, K]`` (entries of one row
    that share a joint add up). Differentiable with respect to ``weights``."""
    if weight_indices is None:
        return weights
    dense = weights.new_zeros((weights.shape[0], num_joints))
    return dense.scatter_add(1, weight_indices.long(), weights)


def linear_blend_skinning(
    vertices: Tensor,
    weights: Tensor,
    weight_indices: Tensor | None,
    rotations: Tensor,
    translations: Tensor,
) -> Tensor:
    """Linear blend skinning.

    .. math::
        out[n, p] = \\sum_j W[p, j] \\, (R[n, j] \\, v[n, p] + t[n, j])

    Args:
        vertices: ``[N, P, 3]`` per sample, or ``[1, P, 3]`` one rest mesh for every sample.
        weights: ``[P, J]`` dense, or ``[P, K]`` values of the sparse rows when
            ``weight_indices`` is given.
        weight_indices: ``None`` (dense weights) or ``[P, K]`` integer joint indices in
            ``[0, J)``; padding entries carry weight 0 and any valid index.
        rotations: ``[N, J, 3, 3]`` and translations ``[N, J, 3]``: the rest-to-posed rigid
            transforms ``x -> R_j x + t_j`` of the joints.

    Returns:
        ``[N, P, 3]`` in the inputs' dtype; computed in float32 for 16-bit inputs.
    """
    dtype = vertices.dtype
    acc = torch.promote_types(dtype, torch.float32)
    num_joints = rotations.shape[1]
    w = dense_weights(weights.to(acc), weight_indices, num_joints)
    v = vertices.to(acc).expand(rotations.shape[0], -1, -1)
    rotated = torch.einsum("pj,njab,npb->npa", w, rotations.to(acc), v)
    translated = torch.einsum("pj,nja->npa", w, translations.to(acc))
    return (rotated + translated).to(dtype)
