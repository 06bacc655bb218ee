"""The model registry: every model is built by name, with a dataset preset and overrides.

model = skelops.models.create("stgcn", preset="ntu60", num_classes=10)
skelops.models.list_models()          # ["stgcn", ...]
skelops.models.list_presets("stgcn")  # ["kinetics", "ntu120", "ntu60", ...]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from torch import nn


@dataclasses.dataclass(frozen=True)
class Preset:
    """Constructor arguments of a model for one dataset, and what the paper reports for it.

    ``parameter_count`` is the count a test pins (``None`` where none is pinned);
    ``reported_accuracy`` is free text quoting the paper (benchmark, split, top-1), for the
    README.
    """

    kwargs: dict[str, Any]
    description: str = ""
    parameter_count: int | None = None
    reported_accuracy: str | None = None


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable[..., nn.Module]
    presets: dict[str, Preset]
    default_preset: str
    summary: str


_MODELS: dict[str, ModelEntry] = {}


def register_model(
    name: str,
    presets: dict[str, Preset],
    default_preset: str,
    summary: str = "",
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a model class or factory under ``name``."""
    if default_preset not in presets:
        raise ValueError(
            f"default_preset {default_preset!r} is not among presets {sorted(presets)}"
        )

    def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MODELS and _MODELS[name].builder is not builder:
            raise ValueError(f"a model named {name!r} is already registered")
        _MODELS[name] = ModelEntry(name, builder, dict(presets), default_preset, summary)
        return builder

    return wrap


def _entry(name: str) -> ModelEntry:
    if name not in _MODELS:
        raise KeyError(f"unknown model {name!r}; registered models: {list_models()}")
    return _MODELS[name]


def create(name: str, preset: str | None = None, **overrides: Any) -> nn.Module:
    """Build model ``name`` with ``preset``'s arguments (its default preset when None),
    updated by ``overrides``."""
    entry = _entry(name)
    preset = entry.default_preset if preset is None else preset
    if preset not in entry.presets:
        raise KeyError(
            f"unknown preset {preset!r} for model {name!r}; presets: {list_presets(name)}"
        )
    return entry.builder(**{**entry.presets[preset].kwargs, **overrides})


def list_models() -> list[str]:
    """Names of the registered models."""
    return sorted(_MODELS)


def list_presets(name: str) -> list[str]:
    """Preset names of model ``name``."""
    return sorted(_entry(name).presets)


def get_preset(name: str, preset: str) -> Preset:
    """The :class:`Preset` ``preset`` of model ``name``."""
    entry = _entry(name)
    if preset not in entry.presets:
        raise KeyError(
            f"unknown preset {preset!r} for model {name!r}; presets: {list_presets(name)}"
        )
    return entry.presets[preset]


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
