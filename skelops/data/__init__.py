"""Data on tensors: batched 2D pose augmentations for heatmap-based models, and NTU RGB+D's
class names with the zero-shot seen/unseen splits."""

from .ntu_classes import (
    NTU60_CLASS_NAMES,
    NTU120_CLASS_NAMES,
    OFFICIAL_UNSEEN_CLASSES,
    ZeroShotSplit,
    make_zero_shot_split,
    ntu_class_names,
    zero_shot_split,
)
from .pose2d import (
    HeatmapPipeline,
    flip_channels,
    gather_frames,
    horizontal_flip,
    pose_compact,
    random_resized_crop,
    resize_keypoints,
    uniform_sample_frames,
)

__all__ = [
    "NTU120_CLASS_NAMES",
    "NTU60_CLASS_NAMES",
    "OFFICIAL_UNSEEN_CLASSES",
    "HeatmapPipeline",
    "ZeroShotSplit",
    "flip_channels",
    "gather_frames",
    "horizontal_flip",
    "make_zero_shot_split",
    "ntu_class_names",
    "pose_compact",
    "random_resized_crop",
    "resize_keypoints",
    "uniform_sample_frames",
    "zero_shot_split",
]
