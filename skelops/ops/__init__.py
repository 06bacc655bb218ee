"""Operator wrappers: argument checks, backend choice, fake kernels, autograd and autocast.

Each operator is ``torch.ops.skelops.<name>`` (compiled C++/CUDA kernels, with the backward
as an operator of its own) plus ``torch.ops.skelops.<name>_triton`` for the Triton kernels.
"""

from ._common import BACKENDS, available_backends
from .graph_conv import graph_conv

__all__ = ["BACKENDS", "available_backends", "graph_conv"]
