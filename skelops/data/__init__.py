"""Data pipelines on tensors: batched 2D pose augmentations for heatmap-based models."""

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
    "HeatmapPipeline",
    "flip_channels",
    "gather_frames",
    "horizontal_flip",
    "pose_compact",
    "random_resized_crop",
    "resize_keypoints",
    "uniform_sample_frames",
]
