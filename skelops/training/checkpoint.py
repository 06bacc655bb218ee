"""Checkpoints: the model's weights as safetensors, the training state beside them.

``<stem>.safetensors`` holds the model's state dict (``torch.save`` to ``<stem>.pt`` when the
``safetensors`` package is missing) with the run's config as JSON metadata; ``<stem>.state.pt``
holds the optimizer, scaler, epoch, step and random states, made of tensors and plain Python
values only so that it loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = [
    "load_model_weights",
    "load_training_state",
    "model_weights_path",
    "resolve_resume",
    "save_checkpoint",
]

STATE_SUFFIX = ".state.pt"


def _has_safetensors() -> bool:
    try:
        import safetensors.torch  # noqa: F401
    except ImportError:
        return False
    return True


def model_weights_path(directory: str | Path, stem: str) -> Path:
    """Where :func:`save_checkpoint` writes ``stem``'s weights in ``directory``."""
    suffix = ".safetensors" if _has_safetensors() else ".pt"
    return Path(directory) / f"{stem}{suffix}"


def save_checkpoint(
    directory: str | Path,
    stem: str,
    model: nn.Module,
    state: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
) -> Path:
    """Write ``model``'s weights (and ``state``, if given) as ``stem`` in ``directory``;
    returns the weights' path. Files are written under a temporary name and renamed, so an
    interrupted save leaves the previous checkpoint intact."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # clone(): safetensors refuses tensors that share storage (e.g. one adjacency buffer
    # registered in several blocks).
    weights = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    path = model_weights_path(directory, stem)
    partial = path.with_name(path.name + ".partial")
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        metadata = {"format": "pt"}
        if config is not None:
            metadata["skelops_config"] = json.dumps(config)
        save_file(weights, str(partial), metadata=metadata)
    else:
        torch.save(weights, partial)
    partial.replace(path)
    if state is not None:
        state_path = directory / f"{stem}{STATE_SUFFIX}"
        partial_state = state_path.with_name(state_path.name + ".partial")
        torch.save(state, partial_state)
        partial_state.replace(state_path)
    return path


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    if path.suffix == ".safetensors":
        if not _has_safetensors():
            raise RuntimeError(
                f"checkpoint {str(path)!r} is a safetensors file; install the safetensors package"
            )
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)


def load_model_weights(model: nn.Module, path: str | Path) -> None:
    """Load weights saved by :func:`save_checkpoint` (``.safetensors`` or ``.pt``) into
    ``model``; every key must match."""
    path = Path(path)
    weights = _read_weights(path)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"checkpoint {str(path)!r} does not fit the model: missing keys {missing[:5]}"
            f"{'...' if len(missing) > 5 else ''}, unexpected keys {unexpected[:5]}"
            f"{'...' if len(unexpected) > 5 else ''} (was it saved with another model config?)"
        )
    for key, value in weights.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise ValueError(
                f"checkpoint {str(path)!r}: {key} has shape {tuple(value.shape)}, the model "
                f"expects {tuple(expected[key].shape)}"
            )
    model.load_state_dict(weights)


def load_training_state(path: str | Path) -> dict[str, Any]:
    """The training state saved beside a checkpoint's weights, loaded with
    ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training state {str(path)!r} does not exist")
    return torch.load(path, map_location="cpu", weights_only=True)


def resolve_resume(target: str | Path) -> tuple[Path, Path]:
    """``(weights, state)`` paths of a resume target: a run directory (its ``last``
    checkpoint), a ``.state.pt`` file or a weights file."""
    target = Path(target)
    if target.is_dir():
        target = target / f"last{STATE_SUFFIX}"
    name = target.name
    if name.endswith(STATE_SUFFIX):
        stem = name[: -len(STATE_SUFFIX)]
        state = target
    else:
        stem = target.stem
        state = target.with_name(stem + STATE_SUFFIX)
    candidates = [target.with_name(stem + s) for s in (".safetensors", ".pt")]
    weights = next((c for c in candidates if c.is_file()), candidates[0])
    for path in (weights, state):
        if not path.is_file():
            raise FileNotFoundError(f"cannot resume from {str(target)!r}: {str(path)!r} is missing")
    return weights, state
