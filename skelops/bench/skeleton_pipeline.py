"""skeleton_pipeline benchmark cases: the batched training-input pipeline
(:class:`skelops.data.SkeletonAugment`) vs CTR-GCN's per-clip feeder loop.

What users run today: CTR-GCN (Uason-Chen/CTR-GCN ``feeders/feeder_ntu.py`` and
``feeders/tools.py``) prepares each clip in a DataLoader worker, on the CPU: the valid frame
count, ``valid_crop_resize`` to 64 frames with ``p_interval = [0.5, 1]`` (an ``F.interpolate``
per clip), ``random_rot`` with ``theta = 0.3`` (a matmul per clip) and, for the bone stream, the
bone differences in numpy; the DataLoader stacks the clips
(``skelops.reference.skeleton_feeder_loops``).

Shapes: NTU-like batches ``[N, 3, 300, 25, 2]`` (batch, channels, frames, joints, persons) of
:func:`skelops.data.synthetic_actions` skeletons, each clip's valid part cut to a random length
of 60-300 frames with zero padding after (the zero person slots and padding of the NTU arrays),
``N`` 64 (CTR-GCN's training batch) and 256, joint and bone streams, float32.

Candidates: ``SkeletonAugment(window=64, p_interval=(0.5, 1), rotation=0.3, stream=...)`` on the
whole batch on the case's device with all threads (``subject``), on the CPU also on one thread;
the feeder loop (``reference``), which always runs on the CPU on one thread, as in a
DataLoader worker (PyTorch gives each worker one thread): on a CUDA case it reads a host copy
of the batch and its output stays on the host; host-device copies are timed for neither. Both
are forward-only (a data pipeline has no backward). One loop call is one worker's work for a
batch: with ``W`` workers the loop's wall time per batch is up to ``W`` times lower, at the cost
of ``W`` cores.

Floor: reading the input batch and writing the output batch; the arithmetic (a few operations
per output element) is negligible.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from ..data import SkeletonAugment
from ..data.synthetic import synthetic_actions
from ..reference.skeleton_feeder_loops import feeder_loop
from .harness import Candidate, Case, register

BATCH_SIZES = (64, 256)
FRAMES, JOINTS, PERSONS = 300, 25, 2
WINDOW = 64
P_INTERVAL = (0.5, 1.0)
ROTATION = 0.3
STREAMS = ("joint", "bone")


def floors(batch: int, frames: int) -> dict:
    """Bytes the pipeline must move (see the module docstring), float32."""
    moved = batch * 3 * (frames + WINDOW) * JOINTS * PERSONS * 4
    return {"flops_fwd": 0.0, "flops_fwdbwd": 0.0, "bytes_fwd": moved, "bytes_fwdbwd": moved}


@functools.cache
def _motions(batch: int, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The synthetic clips of a batch size and their valid lengths, computed once (seconds for
    a large batch)."""
    x, _ = synthetic_actions(batch, num_frames=frames, num_persons=PERSONS, seed=batch)
    return x, (x != 0).any(dim=4).any(dim=3).any(dim=1).sum(dim=1)


def clips(batch: int, frames: int, generator: torch.Generator) -> torch.Tensor:
    """``[batch, 3, frames, 25, 2]`` clips whose valid parts end at random lengths between
    ``frames // 5`` and the synthetic clip's own length (60-300 frames for 300)."""
    x, own = _motions(batch, frames)
    shortest = frames // 5
    lengths = shortest + (torch.rand(batch, generator=generator) * (own - shortest + 1)).long()
    keep = torch.arange(frames)[None, :] < lengths[:, None]
    return x * keep[:, None, :, None, None]


@register("skeleton_pipeline")
def cases(
    device: str,
    *,
    batch_sizes: tuple[int, ...] = BATCH_SIZES,
    frames: int = FRAMES,
    p_interval: tuple[float, float] = P_INTERVAL,
    rotation: float = ROTATION,
) -> list[Case]:
    """The cases on ``device``; the keyword arguments shrink them for tests (or make the crop
    deterministic, ``p_interval=(1, 1)`` and ``rotation=0``, to compare the candidates)."""
    on_cuda = device.startswith("cuda")
    out = []
    for batch in batch_sizes:
        for stream in STREAMS:
            generator = torch.Generator().manual_seed(batch)

            def make_inputs(batch=batch, generator=generator):
                host = clips(batch, frames, generator)
                # On a CUDA case the loop reads the host copy, as a DataLoader worker would.
                return [host.to(device), host] if on_cuda else [host]

            augment = SkeletonAugment(
                window=WINDOW, p_interval=p_interval, rotation=rotation, stream=stream
            )
            name = f"skelops[{'cuda' if on_cuda else 'cpu'}]"
            subjects = [Candidate(name, _batched(augment, device), "subject", forward_only=True)]
            if not on_cuda:
                subjects.append(
                    Candidate(
                        f"{name} 1 thread",
                        _batched(augment, device),
                        "subject",
                        forward_only=True,
                        threads=1,
                    )
                )
            loop = Candidate(
                "CTR-GCN feeder loop (cpu) 1 thread",
                _loop(stream, p_interval, rotation, seed=batch, pin_one_thread=on_cuda),
                "reference",
                forward_only=True,
                threads=1,
            )
            out.append(
                Case(
                    op="skeleton_pipeline",
                    shape=f"N{batch} C3 T{frames} V{JOINTS} M{PERSONS} -> T{WINDOW} {stream}",
                    dtype=torch.float32,
                    device=device,
                    make_inputs=make_inputs,
                    candidates=[*subjects, loop],
                    note=(
                        f"valid_crop_resize p_interval {p_interval}, random_rot {rotation}, "
                        f"{stream} stream; the loop runs per clip on the CPU on one thread "
                        "(one DataLoader worker) in every case, host-device copies untimed"
                    ),
                    rounds=3,
                    warmup_calls=1,
                    **floors(batch, frames),
                )
            )
    return out


def _batched(augment: SkeletonAugment, device: str):
    # A generator on the data's device: the draws need no host-device copy.
    generator = torch.Generator(device).manual_seed(0)

    def run(x, *host):
        return augment(x, generator=generator)

    return run


def _loop(
    stream: str, p_interval: tuple[float, float], rotation: float, seed: int, pin_one_thread: bool
):
    rng = np.random.default_rng(seed)

    def loop(x: torch.Tensor) -> torch.Tensor:
        return feeder_loop(
            x, window=WINDOW, p_interval=p_interval, theta=rotation, stream=stream, rng=rng
        )

    def run(x, *host):
        if not pin_one_thread:
            return loop(host[0] if host else x)
        # The harness sets the threads of CPU timers only; a CUDA case's timer would give the
        # loop every core, which one DataLoader worker does not have.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return loop(host[0] if host else x)
        finally:
            torch.set_num_threads(threads)

    return run
