"""render_heatmaps benchmark cases: skelops backends vs the vectorised PyTorch reference and
pyskl's numpy loop (PoseC3D's data-worker preprocessing).

Shapes of the issue: N = 32 clips of T = 48 frames, COCO-17 keypoints (V = 17), M = 1 and 2
persons, 56 x 56 and 64 x 64 maps, keypoint and limb modes (pyskl's 17 COCO limbs), sigma 0.6,
float32. The poses are a standing COCO-17 skeleton about 80% of the canvas high, jittered per
frame (each person's own offset; the two persons overlap partly), scores in [0.3, 1], as
pyskl's pipeline hands them to ``GeneratePoseTarget`` after PoseCompact and resizing.

Candidates: every skelops backend of the device with all threads (``subject``); on the CPU
also the C++ kernel on one thread, in its default full-Gaussian mode and with
``pyskl_window=True`` (the work the numpy loop does); the vectorised reference
(``skelops.reference.render_heatmaps``, ``reference``); and on the CPU pyskl's loop in numpy
on one thread (``skelops.reference.pyskl_heatmaps``, one call per clip, forward only:
``alternative``).

Floor (:func:`floors`): the output write, ``N C T H W`` elements, dominates (the keypoints are
``N T M V 3`` numbers); the Gaussians' arithmetic is a few operations per pixel of the
Gaussians' supports, far below the CPU's or GPU's compute peak, so no FLOPs are counted.
Forward+backward adds reading the incoming gradient (the same size); the keypoint gradients
are again small.
"""

from __future__ import annotations

import numpy as np
import torch

from .. import graphs, reference
from ..ops import render_heatmaps
from ..ops._common import available_backends
from ..reference.pyskl_heatmaps import pyskl_heatmaps
from .harness import Candidate, Case, register

N, T, V = 32, 48, 17
PERSONS = (1, 2)
SIZES = (56, 64)
SIGMA = 0.6
# A standing person in COCO-17 order, (x, y) as fractions of its box.
_TEMPLATE = (
    (0.50, 0.08), (0.53, 0.06), (0.47, 0.06), (0.56, 0.08), (0.44, 0.08),
    (0.62, 0.24), (0.38, 0.24), (0.68, 0.41), (0.32, 0.41), (0.70, 0.56), (0.30, 0.56),
    (0.57, 0.57), (0.43, 0.57), (0.58, 0.76), (0.42, 0.76), (0.58, 0.95), (0.42, 0.95),
)  # fmt: skip


def floors(size: int, channels: int, persons: int) -> dict:
    """Bytes the op must move (see the module docstring), float32."""
    output = N * channels * T * size * size * 4
    keypoints = N * T * persons * V * 3 * 4
    return {
        "flops_fwd": 0.0,
        "flops_fwdbwd": 0.0,
        "bytes_fwd": output + keypoints,
        "bytes_fwdbwd": 2 * output + 2 * keypoints,
    }


def poses(persons: int, size: int, device: str, generator: torch.Generator) -> list[torch.Tensor]:
    """Keypoints ``[N, T, M, V, 2]`` and scores ``[N, T, M, V]`` (see the module docstring)."""
    template = torch.tensor(_TEMPLATE) * (0.8 * size)
    offsets = torch.tensor([[0.1, 0.1]]) * size
    if persons == 2:
        offsets = torch.tensor([[-0.1, 0.1], [0.3, 0.1]]) * size
    walk = torch.randn(N, 1, persons, 1, 2, generator=generator) * 0.05 * size
    drift = torch.linspace(0, 1, T).view(1, T, 1, 1, 1) * walk
    jitter = torch.randn(N, T, persons, V, 2, generator=generator) * 0.6
    keypoints = template + offsets.view(1, 1, persons, 1, 2) + drift + jitter
    scores = 0.3 + 0.7 * torch.rand(N, T, persons, V, generator=generator)
    return [keypoints.to(device), scores.to(device)]


@register("render_heatmaps")
def cases(device: str) -> list[Case]:
    kind = "cuda" if device.startswith("cuda") else "cpu"
    limbs = torch.tensor(graphs.COCO_LIMBS)
    out = []
    for mode in ("keypoint", "limb"):
        channels = V if mode == "keypoint" else len(graphs.COCO_LIMBS)
        for persons in PERSONS:
            for size in SIZES:
                generator = torch.Generator().manual_seed(size * 10 + persons)

                def make_inputs(persons=persons, size=size, generator=generator):
                    keypoints, scores = poses(persons, size, device, generator)
                    return [keypoints.requires_grad_(), scores.requires_grad_()]

                subjects = [
                    Candidate(f"skelops[{b}]", _backend(b, size, mode), "subject")
                    for b in available_backends("render_heatmaps", torch.device(device))
                    if b != "reference"
                ]
                if kind == "cpu" and subjects:
                    subjects += [
                        Candidate("skelops[cpu] 1 thread", _backend("cpu", size, mode), "subject",
                                  threads=1),
                        Candidate("skelops[cpu] pyskl_window 1 thread",
                                  _backend("cpu", size, mode, pyskl_window=True), "subject",
                                  threads=1),
                    ]  # fmt: skip
                candidates = [
                    *subjects,
                    Candidate(
                        "reference (vectorised PyTorch)",
                        _reference(size, None if mode == "keypoint" else limbs.to(device)),
                        "reference",
                        # seconds to tens of seconds per call on the CPU: one round there
                        rounds=None if kind == "cuda" else 1,
                    ),
                ]
                if kind == "cpu":
                    candidates.append(
                        Candidate(
                            "pyskl loop (numpy) 1 thread",
                            _numpy_loop(size, None if mode == "keypoint" else limbs.numpy()),
                            "alternative",
                            forward_only=True,
                            threads=1,
                        )
                    )
                out.append(
                    Case(
                        op="render_heatmaps",
                        shape=f"N{N} T{T} M{persons} V{V} {size}x{size} {mode}",
                        dtype=torch.float32,
                        device=device,
                        make_inputs=make_inputs,
                        candidates=candidates,
                        note=f"sigma {SIGMA}; {mode} maps ({channels} channels)",
                        rounds=3,
                        warmup_calls=1,
                        **floors(size, channels, persons),
                    )
                )
    return out


def _backend(name: str, size: int, mode: str, pyskl_window: bool = False):
    def run(keypoints, scores):
        return render_heatmaps(
            keypoints, scores, size, SIGMA, mode, pyskl_window=pyskl_window, backend=name
        )

    return run


def _reference(size: int, limbs: torch.Tensor | None):
    def run(keypoints, scores):
        return reference.render_heatmaps(keypoints, scores, (size, size), SIGMA, limbs)

    return run


def _numpy_loop(size: int, limbs: np.ndarray | None):
    """pyskl's per-clip loop; inputs handed over in pyskl's per-clip ``[M, T, V, 2]`` layout."""

    def run(keypoints, scores):
        k = np.ascontiguousarray(keypoints.detach().permute(0, 2, 1, 3, 4).numpy())
        s = np.ascontiguousarray(scores.detach().permute(0, 2, 1, 3).numpy())
        return [pyskl_heatmaps(k[i], s[i], (size, size), SIGMA, limbs) for i in range(len(k))]

    return run
