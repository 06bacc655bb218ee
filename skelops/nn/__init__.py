"""Drop-in ``torch.nn`` layers built on skelops operators."""

from .graph_conv import GraphConv

__all__ = ["GraphConv"]
