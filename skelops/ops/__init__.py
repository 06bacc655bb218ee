"""Operator wrappers: argument checks, backend choice, fake kernels, autograd and autocast.

Each operator is ``torch.ops.skelops.<name>`` (compiled C++/CUDA kernels, with the backward
as an operator of its own) plus ``torch.ops.skelops.<name>_triton`` for the Triton kernels.
"""

from ._common import BACKENDS, available_backends
from .forward_kinematics import KinematicsResult, forward_kinematics
from .graph_conv import graph_conv
from .linear_blend_skinning import linear_blend_skinning, skinning_weights_to_sparse
from .multi_dilation_graph_conv import multi_dilation_graph_conv
from .partition_attention import partition_attention
from .project_points import project_points, reprojection_loss
from .render_heatmaps import render_heatmaps
from .rotations import axis_angle_to_matrix, dof_rotations
from .spatio_temporal_curve import spatio_temporal_curve

__all__ = [
    "BACKENDS",
    "available_backends",
    "axis_angle_to_matrix",
    "dof_rotations",
    "forward_kinematics",
    "KinematicsResult",
    "graph_conv",
    "linear_blend_skinning",
    "multi_dilation_graph_conv",
    "partition_attention",
    "project_points",
    "render_heatmaps",
    "skinning_weights_to_sparse",
    "reprojection_loss",
    "spatio_temporal_curve",
]
