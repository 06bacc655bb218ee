"""Self-supervised re-projection: recover joint angles and a camera from 2-D evidence alone.

Self-supervised motion capture (Tung et al., "Self-supervised Learning of Motion Capture",
NeurIPS 2017) trains a pose regressor without 3-D labels by posing a body model, projecting
its keypoints into the image and comparing them (and their heatmaps) with 2-D detections,
back-propagating through the projection. This example runs the inner loop of that idea with
skelops' operators, every step differentiable and batched:

    DoF angles -> dof_rotations -> forward_kinematics -> project_points -> render_heatmaps

Targets come from a known pose and camera (the shipped ``stick`` skeleton, 25 biomechanical
DoFs, its COCO-17 keypoints); the fit starts from the rest pose and a wrong camera (focal
length and position) and minimises the confidence-weighted re-projection error of the
keypoints plus the squared difference of their rendered heatmaps.

Run: ``python examples/reprojection.py`` (prints the error before and after).
"""

from __future__ import annotations

import argparse
import math

import torch

import skelops
from skelops.nn import KinematicSkeleton

# World: y up, the body facing +z. The camera stands on the +z side looking back at it:
# camera x = world x, camera y (image down) = -world y, camera z (depth) = -world z.
CAMERA_ROTATION = torch.diag(torch.tensor([1.0, -1.0, -1.0]))


def make_problem(batch: int, size: int, generator: torch.Generator) -> dict:
    """Random true poses and cameras, and the wrong starting point of the fit."""
    skeleton = KinematicSkeleton.from_tree("stick")
    dofs = skeleton.pose_shape[0]
    true_pose = 0.5 * (2 * torch.rand(batch, dofs, generator=generator) - 1)
    true_focal = size * (1.6 + 0.4 * torch.rand(batch, generator=generator))
    true_translation = torch.stack(
        [
            0.2 * (2 * torch.rand(batch, generator=generator) - 1),
            0.95 + 0.1 * torch.rand(batch, generator=generator),
            3.6 + 0.8 * torch.rand(batch, generator=generator),
        ],
        dim=1,
    )
    return {
        "skeleton": skeleton,
        "true_pose": true_pose,
        "true_focal": true_focal,
        "true_translation": true_translation,
        "start_pose": torch.zeros(batch, dofs),
        "start_focal": torch.full((batch,), 1.4 * size),
        "start_translation": torch.tensor([0.0, 0.9, 4.5]).repeat(batch, 1),
    }


def project(skeleton, pose, focal, translation, size):
    """COCO-17 keypoints ``[N, 17, 2]`` in pixels of a ``size x size`` image."""
    joints = skeleton(pose).joints
    keypoints = skeleton.keypoints(joints, "coco17")
    centre = torch.full_like(focal, (size - 1) / 2)
    camera = torch.stack([focal, focal, centre, centre], dim=1)
    rotation = CAMERA_ROTATION.to(pose.dtype).expand(pose.shape[0], 3, 3)
    return skelops.project_points(keypoints, camera, rotation=rotation, translation=translation)


def heatmaps(keypoints, size, sigma):
    """``[N, 17, 1, size, size]`` keypoint heatmaps of one frame per sample."""
    return skelops.render_heatmaps(keypoints[:, None, None], None, size, sigma)


def fit(
    steps: int = 300,
    batch: int = 4,
    size: int = 64,
    sigma: float = 2.0,
    heatmap_weight: float = 20.0,
    seed: int = 0,
    verbose: bool = False,
) -> dict:
    """Fit joint angles, focal length and camera position to 2-D targets.

    Returns the mean keypoint error in pixels and the heatmap mean squared error before and
    after, and the per-sample final keypoint errors.
    """
    generator = torch.Generator().manual_seed(seed)
    problem = make_problem(batch, size, generator)
    skeleton = problem["skeleton"]
    with torch.no_grad():
        target = project(
            skeleton, problem["true_pose"], problem["true_focal"], problem["true_translation"],
            size,
        )  # fmt: skip
        target_maps = heatmaps(target, size, sigma)
    confidence = torch.ones(target.shape[:-1])

    pose = problem["start_pose"].clone().requires_grad_()
    log_focal = problem["start_focal"].log().requires_grad_()
    translation = problem["start_translation"].clone().requires_grad_()
    optimizer = torch.optim.Adam(
        [
            {"params": [pose], "lr": 0.05},
            {"params": [log_focal], "lr": 0.02},
            {"params": [translation], "lr": 0.02},
        ]
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)

    def errors():
        with torch.no_grad():
            keypoints = project(skeleton, pose, log_focal.exp(), translation, size)
            pixel = (keypoints - target).norm(dim=-1).mean(dim=-1)
            maps = ((heatmaps(keypoints, size, sigma) - target_maps) ** 2).mean()
        return pixel, float(maps)

    start_pixel, start_maps = errors()
    for step in range(steps):
        optimizer.zero_grad()
        keypoints = project(skeleton, pose, log_focal.exp(), translation, size)
        loss = skelops.reprojection_loss(keypoints, target, confidence)
        maps = heatmaps(keypoints, size, sigma)
        loss = loss + heatmap_weight * size * size * ((maps - target_maps) ** 2).mean()
        loss.backward()
        optimizer.step()
        scheduler.step()
        if verbose and (step % 50 == 0 or step == steps - 1):
            print(f"step {step:4d}  loss {loss.item():10.4f}")
    end_pixel, end_maps = errors()
    return {
        "keypoint_error_px_start": float(start_pixel.mean()),
        "keypoint_error_px_end": float(end_pixel.mean()),
        "keypoint_error_px_end_per_sample": [float(e) for e in end_pixel],
        "heatmap_mse_start": start_maps,
        "heatmap_mse_end": end_maps,
        "focal_error_end": float((log_focal.detach().exp() - problem["true_focal"]).abs().max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    result = fit(steps=args.steps, batch=args.batch, seed=args.seed, verbose=True)
    start, end = result["keypoint_error_px_start"], result["keypoint_error_px_end"]
    print(f"keypoint error: {start:.3f} px -> {end:.4f} px ({start / max(end, 1e-12):.0f}x lower)")
    print(f"heatmap MSE:    {result['heatmap_mse_start']:.3e} -> {result['heatmap_mse_end']:.3e}")
    if not math.isfinite(end):
        raise SystemExit("the fit diverged")


if __name__ == "__main__":
    main()
