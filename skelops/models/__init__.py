"""Models of the field's key papers, built on skelops operators and registered by name.

Build one with :func:`create`, e.g. ``skelops.models.create("stgcn", preset="ntu60")``.
"""

from . import ensemble1d, hdgcn, mans, mpgcn, skateformer, stcnet, stgcn  # noqa: F401  (registers)
from .mpgcn import MPGCN
from .registry import (
    Preset,
    count_parameters,
    create,
    get_preset,
    list_models,
    list_presets,
    register_model,
)
from .skateformer import SkateFormer
from .stcnet import STCNet

__all__ = [
    "MPGCN",
    "Preset",
    "STCNet",
    "SkateFormer",
    "count_parameters",
    "create",
    "get_preset",
    "list_models",
    "list_presets",
    "register_model",
]
