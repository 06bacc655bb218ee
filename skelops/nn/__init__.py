"""Drop-in ``torch.nn`` layers built on skelops operators."""

from .graph_conv import GraphConv
from .kinematics import KinematicSkeleton, SkeletonPose
from .partition_attention import PartitionAttention
from .stc import MultiDilationGraphConv, SpatioTemporalCurve

__all__ = [
    "GraphConv",
    "KinematicSkeleton",
    "MultiDilationGraphConv",
    "PartitionAttention",
    "SkeletonPose",
    "SpatioTemporalCurve",
]
