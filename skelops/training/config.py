"""Training configuration: a tree of dataclasses, read from YAML and overridden by dotted keys.

A config file mirrors the tree (every section and key optional)::

    task: classify            # or "pretrain" (CascadeFormer's stage 1: no labels)
    model: {name: stgcn, preset: ntu60, overrides: {num_classes: 10}}
    data: {source: synthetic, layout: ntu_stgcn, num_frames: 32, stream: joint}
    optim: {name: sgd, lr: 0.1, epochs: 10, batch_size: 32}
    eval: {clips: 1, flip: false}
    run: {output_dir: runs/example, seed: 0}

and ``--set optim.lr=0.05 data.num_frames=32`` overrides single keys (values are parsed as
YAML, then checked against the field's type).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "ModelConfig",
    "OptimConfig",
    "RunConfig",
    "TrainConfig",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "load_config",
]


class ConfigError(ValueError):
    """A bad configuration: unknown key, wrong type or value, missing file."""


@dataclasses.dataclass
class ModelConfig:
    """The model: ``skelops.models.create(name, preset, **overrides)``.

    ``init_stage1``: a pretraining checkpoint (``.safetensors`` of a ``task: pretrain`` run)
    whose stage 1 initialises a two-stage model (CascadeFormer's ``load_stage1``).
    """

    name: str = "stgcn"
    preset: str | None = None
    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
    init_stage1: str | None = None


@dataclasses.dataclass
class DataConfig:
    """The data.

    ``source``: ``synthetic`` (``skelops.data.synthetic.synthetic_actions``, train and
    validation drawn with different seeds) or a reader of ``skelops.data.readers.load_dataset``
    (``ntu``, ``pyskl``, ``openpose``, ``kinetics``) reading ``path`` with the split names
    ``train_split`` / ``val_split`` and the extra ``reader_kwargs``.

    Every clip is sampled to ``num_frames`` frames (pyskl's ``UniformSampleFrames``) and padded
    or cut to ``num_persons`` persons, giving ``[N, C, num_frames, V, num_persons]``.
    ``include_scores`` appends the readers' confidence scores as a last channel (ST-GCN's
    Kinetics input ``(x, y, score)``); ``channels`` is the synthetic data's (2 or 3).
    ``center`` moves the layout's centre joint of the first person, in the first frame where
    that person appears, to the origin (``skelops.data.transforms.center``).
    ``stream`` turns joints into the model's input (``skelops.data.transforms.to_stream``);
    ``layout`` names the skeleton (centre joint, bones, flip pairs).

    Augmentation (training only, ``skelops.data.transforms``, each off at 0): ``rotation``
    (max angle in degrees, converted to the radians of ``random_rotation``: CTR-GCN's 0.3 rad
    is about 17.2; about x, y and z for 3-D data, in the image plane for 2-D), ``scale`` (max
    relative change per axis, ``random_scale``), ``shear`` (max off-diagonal shear coefficient,
    ``random_shear`` applied to every clip), ``flip`` (probability of ``random_mirror``: ``x``
    reflected, left/right joints swapped). Rotation, scale and shear move only the coordinate
    channels; the score channel of ``include_scores`` is kept as it is.
    """

    source: Literal["synthetic", "ntu", "pyskl", "openpose", "kinetics"] = "synthetic"
    path: str | None = None
    train_split: str | None = "train"
    val_split: str | None = "val"
    reader_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    layout: str | None = "ntu_stgcn"
    num_frames: int = 64
    num_persons: int = 2
    channels: int = 3
    include_scores: bool = False
    center: bool = False
    stream: Literal["joint", "bone", "motion", "bone_motion"] = "joint"
    num_classes: int = 10
    train_samples: int = 512
    val_samples: int = 256
    noise: float = 0.02
    seed: int = 0
    rotation: float = 0.0
    scale: float = 0.0
    shear: float = 0.0
    flip: float = 0.0


@dataclasses.dataclass
class OptimConfig:
    """Optimisation. ``batch_size`` is the global batch (divided among the processes);
    ``lr`` warms up linearly over ``warmup_epochs`` and then follows a cosine to
    ``min_lr`` (per step). ``amp``: ``bf16`` (CPU and GPU) or ``fp16`` (GPU, with a
    gradient scaler). ``grad_clip``: maximum global gradient norm (0: none)."""

    name: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.1
    min_lr: float = 0.0
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 4e-4
    epochs: int = 10
    batch_size: int = 32
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    grad_clip: float = 0.0
    amp: Literal["none", "bf16", "fp16"] = "none"


@dataclasses.dataclass
class EvalConfig:
    """Test-time augmentation. ``clips``: uniform samplings per sequence; ``flip``: add the
    mirrored skeleton; scores are averaged over all views (``average``: of the softmax
    probabilities or of the logits)."""

    clips: int = 1
    flip: bool = False
    average: Literal["softmax", "logits"] = "softmax"
    batch_size: int = 64


@dataclasses.dataclass
class RunConfig:
    """Where and how: ``output_dir`` receives ``log.jsonl`` and checkpoints; ``device``
    ``auto`` is the local CUDA device when there is one. ``resume``: a ``.state.pt`` file
    or a run directory (its ``last`` checkpoint) to continue from. ``sync_bn`` converts
    BatchNorm to SyncBatchNorm in multi-process GPU runs."""

    output_dir: str = "runs/default"
    seed: int = 0
    device: str = "auto"
    resume: str | None = None
    log_every: int = 10
    checkpoint_every: int = 1
    progress: bool = True
    sync_bn: bool = False


@dataclasses.dataclass
class TrainConfig:
    """The whole configuration; ``task`` is ``classify`` (cross-entropy on labels) or
    ``pretrain`` (the model's own ``pretraining_loss``, no labels)."""

    task: Literal["classify", "pretrain"] = "classify"
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    run: RunConfig = dataclasses.field(default_factory=RunConfig)


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _describe(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_describe(a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return "null"
    if origin is dict:
        return "mapping"
    return getattr(annotation, "__name__", str(annotation))


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """``value`` checked against ``annotation`` (ints are accepted for floats)."""
    origin = typing.get_origin(annotation)
    if origin is Literal:
        if value in typing.get_args(annotation):
            return value
    elif origin in (typing.Union, types.UnionType):
        for option in typing.get_args(annotation):
            try:
                return _coerce(value, option, key)
            except ConfigError:
                continue
    elif annotation is type(None):
        if value is None:
            return None
    elif origin is dict:
        if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
            return dict(value)
    elif annotation is bool:
        if isinstance(value, bool):
            return value
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif annotation is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"{key} must be {_describe(annotation)}, got {value!r}")


def _valid_keys(cls: type) -> str:
    return ", ".join(f.name for f in dataclasses.fields(cls))


def _build(cls: type, values: Mapping[str, Any], prefix: str) -> Any:
    if not isinstance(values, Mapping):
        raise ConfigError(f"{prefix[:-1] or 'the config'} must be a mapping, got {values!r}")
    types_ = _field_types(cls)
    kwargs = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if key not in types_:
            where = f"section {prefix[:-1]!r}" if prefix else "the top level"
            raise ConfigError(f"unknown key {name!r}; valid keys of {where}: {_valid_keys(cls)}")
        annotation = types_[key]
        if dataclasses.is_dataclass(annotation):
            kwargs[key] = _build(annotation, value, f"{name}.")
        else:
            kwargs[key] = _coerce(value, annotation, name)
    config = cls(**kwargs)
    _validate(config, prefix)
    return config


_POSITIVE = {
    "DataConfig": ("num_frames", "num_persons", "channels", "num_classes", "train_samples"),
    "OptimConfig": ("lr", "epochs", "batch_size"),
    "EvalConfig": ("clips", "batch_size"),
    "RunConfig": ("log_every", "checkpoint_every"),
}
_NON_NEGATIVE = {
    "DataConfig": ("val_samples", "noise", "rotation", "scale", "shear"),
    "OptimConfig": ("min_lr", "momentum", "weight_decay", "warmup_epochs", "grad_clip"),
}


def _validate(config: Any, prefix: str) -> None:
    kind = type(config).__name__
    for name in _POSITIVE.get(kind, ()):
        if getattr(config, name) <= 0:
            raise ConfigError(f"{prefix}{name} must be > 0, got {getattr(config, name)!r}")
    for name in _NON_NEGATIVE.get(kind, ()):
        if getattr(config, name) < 0:
            raise ConfigError(f"{prefix}{name} must be >= 0, got {getattr(config, name)!r}")
    if isinstance(config, DataConfig) and not 0.0 <= config.flip <= 1.0:
        raise ConfigError(f"{prefix}flip must be a probability in [0, 1], got {config.flip!r}")
    if isinstance(config, OptimConfig) and not 0.0 <= config.label_smoothing < 1.0:
        raise ConfigError(
            f"{prefix}label_smoothing must be in [0, 1), got {config.label_smoothing!r}"
        )


def config_from_dict(values: Mapping[str, Any]) -> TrainConfig:
    """A checked :class:`TrainConfig` from nested mappings; raises :class:`ConfigError`."""
    return _build(TrainConfig, values, "")


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    """Nested plain dicts (YAML / JSON serialisable) of ``config``."""
    return dataclasses.asdict(config)


def _parse_override(item: str) -> tuple[list[str], Any]:
    import yaml

    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override must look like section.key=value, got {item!r}")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as error:
        raise ConfigError(f"override {item!r}: value is not valid YAML ({error})") from None
    return key.strip().split("."), value


def apply_overrides(values: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Set ``section.key=value`` items into the nested mapping ``values`` (in place, and
    returned). Keys below a mapping-valued field (``model.overrides.num_classes=5``) are
    free; everything else is checked when the config is built."""
    for item in overrides:
        path, value = _parse_override(item)
        node = values
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
            node = child
        node[path[-1]] = value
    return values


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a YAML config (``None``: the defaults), apply dotted ``overrides`` and check it.

    Raises :class:`ConfigError` naming the file, key and expected value on any problem."""
    import yaml

    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist")
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as error:
            raise ConfigError(f"config file {str(path)!r} is not valid YAML: {error}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(
                f"config file {str(path)!r} must hold a mapping, got {type(loaded).__name__}"
            )
        values = loaded or {}
    return config_from_dict(apply_overrides(values, overrides))
