"""Shared test helpers: devices, per-dtype tolerances, comparisons."""

from __future__ import annotations

import pytest
import torch

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

# Relative to the largest magnitude of the expected tensor.
TOLERANCE = {
    torch.float64: 1e-10,
    torch.float32: 2e-5,
    torch.float16: 4e-3,
    torch.bfloat16: 3e-2,
}


def assert_close_scaled(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype) -> None:
    """``|actual - expected| <= tol(dtype) * max|expected|`` elementwise, in float64."""
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    a, e = actual.detach().double().cpu(), expected.detach().double().cpu()
    scale = max(e.abs().max().item(), 1e-12)
    err = (a - e).abs().max().item()
    assert err <= TOLERANCE[dtype] * scale, (
        f"max error {err:.3g} > {TOLERANCE[dtype]} * {scale:.3g}"
    )


def triton_usable(device: str) -> bool:
    from skelops import triton as skelops_triton

    return skelops_triton.supports_device(torch.device(device))


def skip_unless_triton(device: str) -> None:
    pytest.importorskip("triton")
    if not triton_usable(device):
        pytest.skip("Triton needs a CUDA device or TRITON_INTERPRET=1")


def adam_losses(
    model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor, lr: float, steps: int = 5
) -> list[float]:
    """Cross-entropy losses of ``steps`` Adam steps of ``model`` on one fixed batch."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), target)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def make_features(rand, n: int, c: int, t: int, v: int, layout: str) -> torch.Tensor:
    """x ``[N, C, T, V]`` from ``rand(*shape)`` in a memory layout: ``"contiguous"``,
    ``"channels_last"`` (a permuted view) or ``"strided"`` (every other frame of a longer T)."""
    if layout == "channels_last":
        x = rand(n, t, v, c).permute(0, 3, 1, 2)
    elif layout == "strided":
        x = rand(n, c, 2 * t, v)[:, :, ::2]
    else:
        x = rand(n, c, t, v)
    assert x.is_contiguous() == (layout == "contiguous")
    return x


def outputs_per_cpu_isa(script: str, tmp_path) -> dict[str, dict]:
    """Runs ``script`` (which saves a dict of tensors with ``torch.save`` to ``sys.argv[1]``) in
    two subprocesses: with the portable CPU loops forced (``SKELOPS_CPU_ISA=baseline``) and
    with the run-time choice (AVX2 + FMA where the CPU has them). The choice is made once per
    process, hence the subprocesses. Returns ``{"baseline": ..., "default": ...}`` with the same
    keys in both."""
    import os
    import subprocess
    import sys

    results = {}
    for isa in ("baseline", "default"):
        env = dict(os.environ)
        env.pop("SKELOPS_CPU_ISA", None)
        if isa == "baseline":
            env["SKELOPS_CPU_ISA"] = "baseline"
        path = tmp_path / f"{isa}.pt"
        run = subprocess.run(
            [sys.executable, "-c", script, str(path)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, run.stderr
        results[isa] = torch.load(path)
    assert results["baseline"].keys() == results["default"].keys()
    return results


# A CascadeFormer small enough for training tests (no BatchNorm: DDP runs equal one process).
TINY_CASCADEFORMER = {
    "num_classes": 4,
    "d_model": 16,
    "num_heads": 2,
    "num_layers": 1,
    "feedforward_dim": 32,
    "max_frames": 16,
}
