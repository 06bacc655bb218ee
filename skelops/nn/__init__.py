"""Drop-in ``torch.nn`` layers built on skelops operators."""

from .graph_conv import GraphConv
from .partition_attention import PartitionAttention
from .stc import MultiDilationGraphConv, SpatioTemporalCurve

__all__ = ["GraphConv", "MultiDilationGraphConv", "PartitionAttention", "SpatioTemporalCurve"]
