"""skelops: fused operators, layers and models for skeleton-based action recognition."""

from __future__ import annotations

import torch as _torch  # noqa: F401  (libtorch must be loaded before the extension)

from ._loader import load_extension as _load_extension

_C = _load_extension()

__version__ = "0.1.0"

from . import data, graphs, models, nn, ops, reference, rotations  # noqa: E402  (after the extension registered ops)
from .ops import (  # noqa: E402
    forward_kinematics,
    graph_conv,
    linear_blend_skinning,
    multi_dilation_graph_conv,
    partition_attention,
    project_points,
    render_heatmaps,
    reprojection_loss,
    skinning_weights_to_sparse,
    spatio_temporal_curve,
)

__all__ = [
    "build_info",
    "data",
    "forward_kinematics",
    "graph_conv",
    "graphs",
    "linear_blend_skinning",
    "models",
    "multi_dilation_graph_conv",
    "nn",
    "ops",
    "partition_attention",
    "project_points",
    "reference",
    "render_heatmaps",
    "rotations",
    "skinning_weights_to_sparse",
    "reprojection_loss",
    "spatio_temporal_curve",
]


def build_info() -> dict:
    """What the compiled extension was built with.

    Returns a dict with ``torch_version`` (the torch it was compiled against), ``backends``
    (compiled-in C++/CUDA backends, e.g. ``["cpu", "cuda"]``), ``cuda_version``, ``cuda_archs``
    (e.g. ``["sm_80", "sm_90"]``), ``compiler``, and ``triton`` (whether the Triton kernels can
    run here: on a CUDA device, or on the CPU under ``TRITON_INTERPRET=1``).
    """
    info = dict(_C.build_info())
    info["triton"] = _triton_available()
    return info


def _triton_available() -> bool:
    from .triton import is_available

    return is_available()
