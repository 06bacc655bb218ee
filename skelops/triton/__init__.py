"""Triton kernels. Imported lazily: triton is optional, and ``TRITON_INTERPRET=1`` (Triton's
CPU interpreter, used by the tests on machines without a GPU) must be set before it loads."""

from __future__ import annotations

import importlib.util
import os

import torch


def interpreter_enabled() -> bool:
    """Whether Triton runs under its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def is_available() -> bool:
    """Whether Triton kernels can run here: triton is installed and there is a CUDA device,
    or the interpreter is on."""
    if importlib.util.find_spec("triton") is None:
        return False
    return interpreter_enabled() or torch.cuda.is_available()


def supports_device(device: torch.device) -> bool:
    """Whether the Triton kernels can take tensors on ``device``."""
    if importlib.util.find_spec("triton") is None:
        return False
    return device.type == "cuda" or (device.type == "cpu" and interpreter_enabled())
