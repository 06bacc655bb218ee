"""Training and evaluation of :mod:`skelops.models` (``skelops train`` / ``skelops eval``):
YAML configs with dotted overrides, SGD / AdamW with warm-up and cosine, label smoothing,
mixed precision, gradient clipping, safetensors checkpoints with exact resume, multi-clip and
flip test-time augmentation, score fusion, and DDP under ``torchrun``.

Skeleton tensors are ``[N, C, T, V, M]`` (batch, channels, frames, joints, persons).
"""

from .checkpoint import load_model_weights, load_training_state, save_checkpoint
from .config import (
    ConfigError,
    DataConfig,
    EvalConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    TrainConfig,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_config,
)
from .loop import (
    TrainResult,
    build_model,
    evaluate,
    fuse_scores,
    learning_rate,
    predict,
    topk_accuracy,
    train,
)

__all__ = [
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "ModelConfig",
    "OptimConfig",
    "RunConfig",
    "TrainConfig",
    "TrainResult",
    "apply_overrides",
    "build_model",
    "config_from_dict",
    "config_to_dict",
    "evaluate",
    "fuse_scores",
    "learning_rate",
    "load_config",
    "load_model_weights",
    "load_training_state",
    "predict",
    "save_checkpoint",
    "topk_accuracy",
    "train",
]
