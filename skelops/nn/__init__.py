"""Drop-in ``torch.nn`` layers built on skelops operators."""

from .graph_conv import GraphConv
from .stc import MultiDilationGraphConv, SpatioTemporalCurve

__all__ = ["GraphConv", "MultiDilationGraphConv", "SpatioTemporalCurve"]
