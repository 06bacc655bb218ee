"""Plain PyTorch references: the definition of every skelops operator, the test oracle and the
fallback where no compiled or Triton kernel applies."""

from .forward_kinematics import forward_kinematics
from .graph_conv import graph_conv
from .linear_blend_skinning import linear_blend_skinning
from .multi_dilation_graph_conv import multi_dilation_graph_conv
from .partition_attention import partition_attention
from .project_points import project_points
from .render_heatmaps import render_heatmaps
from .rotations import axis_angle_to_matrix, dof_rotations
from .sparse_graph_conv import sparse_graph_conv
from .spatio_temporal_curve import spatio_temporal_curve

__all__ = [
    "axis_angle_to_matrix",
    "dof_rotations",
    "forward_kinematics",
    "graph_conv",
    "linear_blend_skinning",
    "multi_dilation_graph_conv",
    "partition_attention",
    "project_points",
    "render_heatmaps",
    "spatio_temporal_curve",
    "sparse_graph_conv",
]
