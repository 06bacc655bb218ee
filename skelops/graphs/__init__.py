"""Skeleton layouts and graph construction for skeleton-based action recognition.

Layouts (joints, edges, centre, bone parents, flip pairs, body parts) are data, registered by
name; builders turn them into adjacency tensors ``A[k, v, w]`` in which subset ``k`` carries
source joint ``v`` to target joint ``w``: ``y[..., w] = sum_v x[..., v] * A[k, v, w]``.
Skeleton tensors are ``[N, C, T, V]`` or ``[N, C, T, V, M]``.
"""

from __future__ import annotations

from .adjacency import build_adjacency, dilated_adjacency, hop_distance, normalize_adjacency
from .hdgcn import hdgcn_adjacency, hdgcn_groups
from .kinematic_trees import (
    KinematicTree,
    get_kinematic_tree,
    list_kinematic_trees,
    tree_depth,
)
from .layouts import Layout, get_layout, list_layouts, register_layout
from .limbs import COCO_LIMBS, COCO_LIMBS_POSEC3D, limb_flip_permutation
from .mpgcn import PanoramicGraph, mpgcn_adjacency, panoramic_graph, to_panoramic
from .partitions import frame_windows, joint_groups, skate_joint_order, skate_type_partitions
from .sparse import (
    BlockDiagonalAdjacency,
    SparseAdjacency,
    check_csr,
    to_block_diagonal,
    to_sparse,
)
from .streams import bone_stream, jvbm_features, motion_stream, select_joints

__all__ = [
    "COCO_LIMBS",
    "COCO_LIMBS_POSEC3D",
    "BlockDiagonalAdjacency",
    "KinematicTree",
    "Layout",
    "PanoramicGraph",
    "SparseAdjacency",
    "bone_stream",
    "build_adjacency",
    "dilated_adjacency",
    "frame_windows",
    "get_kinematic_tree",
    "get_layout",
    "hdgcn_adjacency",
    "hdgcn_groups",
    "hop_distance",
    "joint_groups",
    "jvbm_features",
    "limb_flip_permutation",
    "list_kinematic_trees",
    "list_layouts",
    "motion_stream",
    "mpgcn_adjacency",
    "normalize_adjacency",
    "panoramic_graph",
    "register_layout",
    "select_joints",
    "skate_joint_order",
    "skate_type_partitions",
    "check_csr",
    "to_block_diagonal",
    "to_panoramic",
    "to_sparse",
    "tree_depth",
]
