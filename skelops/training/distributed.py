"""Process groups for multi-process training under ``torchrun`` (``torch.distributed``).

``torchrun --nproc_per_node 2 -m skelops.cli train ...`` sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`setup` then joins the group with
NCCL on CUDA and Gloo on the CPU. Without those variables everything runs in one process.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import torch
import torch.distributed as dist

__all__ = [
    "DistributedContext",
    "all_gather_objects",
    "all_reduce_sum",
    "available_backends",
    "select_device",
    "setup",
    "teardown",
]


@dataclasses.dataclass(frozen=True)
class DistributedContext:
    """This process's place in the job: ``rank`` of ``world_size``, on ``device``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        """Rank 0, the one process that writes logs and checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """More than one process."""
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {text!r}") from None


def select_device(requested: str, local_rank: int = 0) -> torch.device:
    """``requested`` (``auto``, ``cpu``, ``cuda``, ``cuda:i``) as a device; ``auto`` and a
    bare ``cuda`` take this process's local GPU when there is one."""
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        return torch.device("cpu")
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise ValueError(
            f"run.device must be 'auto', 'cpu' or 'cuda[:i]', got {requested!r}"
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"run.device is {requested!r} but no CUDA device is available")
        if device.index is None:
            device = torch.device("cuda", local_rank % torch.cuda.device_count())
    return device


def setup(device: str = "auto") -> DistributedContext:
    """Join the ``torchrun`` process group if the environment describes one (NCCL on CUDA,
    Gloo on the CPU), pick this process's device and return the context."""
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    target = select_device(device, local_rank)
    if target.type == "cuda":
        torch.cuda.set_device(target)
    if world_size <= 1:
        return DistributedContext(device=target)
    initialized_here = False
    if not dist.is_initialized():
        backend = "nccl" if target.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
        initialized_here = True
    return DistributedContext(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=local_rank,
        device=target,
        initialized_here=initialized_here,
    )


def teardown(context: DistributedContext) -> None:
    """Leave the process group if :func:`setup` joined it."""
    if context.initialized_here and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: list[float], context: DistributedContext) -> list[float]:
    """The sums over all processes of ``values`` (float64, so counts stay exact)."""
    if not context.distributed:
        return list(values)
    # NCCL reduces device tensors only; Gloo takes CPU ones.
    tensor = torch.tensor(values, dtype=torch.float64, device=context.device)
    dist.all_reduce(tensor)
    return tensor.cpu().tolist()


def all_gather_objects(value: Any, context: DistributedContext) -> list[Any]:
    """Every process's ``value``, in rank order."""
    if not context.distributed:
        return [value]
    gathered: list[Any] = [None] * context.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def available_backends() -> dict[str, bool]:
    """Which ``torch.distributed`` backends this torch provides."""
    if not dist.is_available():
        return {"gloo": False, "nccl": False, "mpi": False}
    return {
        "gloo": dist.is_gloo_available(),
        "nccl": dist.is_nccl_available(),
        "mpi": dist.is_mpi_available(),
    }
