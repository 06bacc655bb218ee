"""Models of the field's key papers, built on skelops operators and registered by name.

Build one with :func:`create`, e.g. ``skelops.models.create("stgcn", preset="ntu60")``.
"""

from . import ensemble1d, hdgcn, mans, mpgcn, stcnet, stgcn  # noqa: F401  (importing registers)
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
from .stcnet import STCNet

__all__ = [
    "MPGCN",
    "Preset",
    "STCNet",
    "count_parameters",
    "create",
    "get_preset",
    "list_models",
    "list_presets",
    "register_model",
]
