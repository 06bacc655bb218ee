"""Models of the field's key papers, built on skelops operators and registered by name.

Build one with :func:`create`, e.g. ``skelops.models.create("stgcn", preset="ntu60")``.
"""

from . import (  # noqa: F401  (registers)
    cascadeformer,
    ensemble1d,
    gateshiftpose,
    hdgcn,
    mans,
    mpgcn,
    posec3d,
    sadvae,
    skateformer,
    stcnet,
    stgcn,
)
from .cascadeformer import CascadeFormer, CascadeFormerPretrainer
from .gateshiftpose import GateShiftPose
from .mpgcn import MPGCN
from .posec3d import PoseC3D
from .registry import (
    Preset,
    count_parameters,
    create,
    get_preset,
    list_models,
    list_presets,
    register_model,
)
from .sadvae import SADVAE
from .skateformer import SkateFormer
from .stcnet import STCNet

__all__ = [
    "CascadeFormer",
    "CascadeFormerPretrainer",
    "GateShiftPose",
    "MPGCN",
    "PoseC3D",
    "Preset",
    "SADVAE",
    "STCNet",
    "SkateFormer",
    "count_parameters",
    "create",
    "get_preset",
    "list_models",
    "list_presets",
    "register_model",
]
