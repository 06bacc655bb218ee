"""Plain PyTorch references: the definition of every skelops operator, the test oracle and the
fallback where no compiled or Triton kernel applies."""

from .graph_conv import graph_conv
from .sparse_graph_conv import sparse_graph_conv

__all__ = ["graph_conv", "sparse_graph_conv"]
