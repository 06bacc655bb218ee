"""Reference camera projection in plain PyTorch: the definition every project_points kernel
computes, the test oracle and the fallback."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["project_points"]


def project_points(
    points: Tensor,
    camera: Tensor,
    rotation: Tensor | None = None,
    translation: Tensor | None = None,
    weak_perspective: bool = False,
    min_depth: float = 1e-6,
) -> Tensor:
    """Project 3-D points into the image.

    With camera-frame points ``X_c = R X + t`` (``R = I``, ``t = 0`` when absent):

    * pinhole (``weak_perspective=False``), camera ``(fx, fy, cx, cy)``: with
      ``z = max(z_c, min_depth)``, ``u = fx x_c / z + cx`` and ``v = fy y_c / z + cy``. A point
      behind (or too close to) the camera is projected from the plane ``z = min_depth`` and its
      depth gets no gradient there (``torch.clamp``'s gradient: it passes iff
      ``z_c >= min_depth``).
    * weak perspective (HMR's ``orthographic_projection``, Kanazawa et al. CVPR 2018), camera
      ``(s, tx, ty)``: ``u = s (x_c + tx)``, ``v = s (y_c + ty)``; ``z_c`` is unused.

    Args:
        points: ``[N, P, 3]`` points of each sample.
        camera: ``[N, 4]`` (pinhole) or ``[N, 3]`` (weak perspective).
        rotation: ``[N, 3, 3]`` or None.
        translation: ``[N, 3]`` or None.
        weak_perspective: which camera model.
        min_depth: the smallest depth divided by (pinhole), ``> 0``.

    Returns:
        ``[N, P, 2]`` image coordinates ``(u, v)``, computed in the inputs' dtype.
    """
    cam_points = points if rotation is None else points @ rotation.transpose(-1, -2)
    if translation is not None:
        cam_points = cam_points + translation[:, None, :]
    x, y = cam_points[..., 0], cam_points[..., 1]
    if weak_perspective:
        scale, tx, ty = (camera[:, i, None] for i in range(3))
        u, v = scale * (x + tx), scale * (y + ty)
    else:
        fx, fy, cx, cy = (camera[:, i, None] for i in range(4))
        z = cam_points[..., 2].clamp(min=min_depth)
        u, v = fx * (x / z) + cx, fy * (y / z) + cy
    return torch.stack((u, v), dim=-1)
