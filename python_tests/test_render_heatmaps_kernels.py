"""The raw operators torch.ops.skelops.render_heatmaps / render_heatmaps_backward (C++ CPU and
CUDA kernels) against the PyTorch reference and pyskl's numpy loop: both modes, both window
modes, both output layouts, every output dtype, gradients, determinism and bad input. The
Python wrapper's tests are in test_render_heatmaps.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import outputs_per_cpu_isa

import skelops  # noqa: F401  (loads the operators)
from skelops.reference.pyskl_heatmaps import pyskl_heatmaps
from skelops.reference.render_heatmaps import render_heatmaps as reference

CUDA = pytest.param(
    "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
)
DEVICES = ["cpu", CUDA]

LIMBS_5 = torch.tensor([[0, 1], [1, 2], [2, 3], [3, 4], [4, 0], [1, 3], [2, 2]])
COCO_LIMBS = torch.tensor(
    [
        (0, 1), (0, 2), (1, 3), (2, 4), (0, 5), (5, 7), (7, 9), (0, 6), (6, 8), (8, 10),
        (5, 11), (11, 13), (13, 15), (6, 12), (12, 14), (14, 16), (11, 12),
    ]
)  # fmt: skip
TOLERANCES = {
    torch.float64: dict(atol=1e-12, rtol=1e-12),
    torch.float32: dict(atol=1e-6, rtol=1e-5),
    torch.float16: dict(atol=1e-3, rtol=1e-3),
    torch.bfloat16: dict(atol=8e-3, rtol=8e-3),
}


def make_inputs(n=2, t=3, m=3, v=5, size=(7, 11), dtype=torch.float64, seed=0, device="cpu"):
    """Keypoints partly outside the canvas, zero / tiny / NaN scores, a NaN coordinate, a limb
    shorter than one pixel, and a person identical to another (ties)."""
    height, width = size
    g = torch.Generator().manual_seed(seed)
    scale = torch.tensor([width + 6.0, height + 6.0], dtype=torch.float64)
    keypoints = torch.rand(n, t, m, v, 2, generator=g, dtype=torch.float64) * scale - 3
    scores = torch.rand(n, t, m, v, generator=g, dtype=torch.float64)
    scores[0, 0, 0, 0] = 0.0
    scores[0, 1, 0, 1] = 5e-4  # below pyskl's threshold
    keypoints[0, 1, min(1, m - 1), 2, 0] = float("nan")
    scores[-1, -1, 0, -1] = float("nan")
    keypoints[0, 0, 0, 1] = keypoints[0, 0, 0, 0] + 0.3  # limb (0, 1) shorter than a pixel
    if m >= 3:
        keypoints[-1, :, 2] = keypoints[-1, :, 1]
        scores[-1, :, 2] = scores[-1, :, 1]
    return keypoints.to(device, dtype), scores.to(device, dtype)


def render(keypoints, scores, limbs, size, sigma, window, channels_last=False, dtype=None):
    return torch.ops.skelops.render_heatmaps(
        keypoints, scores, limbs, size[0], size[1], sigma, window, channels_last, dtype
    )


def backward(grad, keypoints, scores, limbs, sigma, window, mask=(True, True)):
    return torch.ops.skelops.render_heatmaps_backward(
        grad, keypoints, scores, limbs, sigma, window, list(mask)
    )


def limbs_for(mode, device):
    return None if mode == "keypoint" else LIMBS_5.to(device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode", ["keypoint", "limb"])
@pytest.mark.parametrize("window", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
def test_forward_matches_reference_float64(device, mode, window, channels_last):
    size, sigma = (7, 11), 0.8
    keypoints, scores = make_inputs(device=device)
    limbs = limbs_for(mode, device)
    out = render(keypoints, scores, limbs, size, sigma, window, channels_last)
    expected = reference(keypoints, scores, size, sigma, limbs, window)
    assert out.shape == expected.shape and out.dtype == torch.float64
    if channels_last:
        assert out.is_contiguous(memory_format=torch.channels_last_3d)
    else:
        assert out.is_contiguous()
    torch.testing.assert_close(out, expected, **TOLERANCES[torch.float64])
    assert (out > 0).sum() > 0


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode", ["keypoint", "limb"])
@pytest.mark.parametrize("out_dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True])
def test_forward_output_dtypes(device, mode, out_dtype, channels_last):
    """float32 keypoints (computed in float32) written in every output dtype."""
    size, sigma = (9, 13), 1.1
    keypoints, scores = make_inputs(size=size, dtype=torch.float32, seed=1, device=device)
    limbs = limbs_for(mode, device)
    out = render(keypoints, scores, limbs, size, sigma, False, channels_last, out_dtype)
    assert out.dtype == out_dtype
    expected = reference(keypoints.double(), scores.double(), size, sigma, limbs, False)
    tolerance = TOLERANCES[torch.float32 if out_dtype == torch.float64 else out_dtype]
    torch.testing.assert_close(out.double(), expected, **tolerance)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("in_dtype", [torch.float16, torch.bfloat16])
def test_reduced_precision_inputs(device, in_dtype):
    """16-bit keypoints are computed in float32 and written in their dtype by default."""
    size, sigma = (9, 13), 1.1
    keypoints, scores = make_inputs(size=size, dtype=in_dtype, seed=2, device=device)
    for limbs in (None, LIMBS_5.to(device)):
        out = render(keypoints, scores, limbs, size, sigma, False)
        assert out.dtype == in_dtype
        expected = reference(keypoints.float(), scores.float(), size, sigma, limbs, False)
        torch.testing.assert_close(out.float(), expected, **TOLERANCES[in_dtype])
        grads = backward(torch.ones_like(out), keypoints, scores, limbs, sigma, False)
        assert grads[0].dtype == in_dtype and grads[1].dtype == in_dtype


@pytest.mark.parametrize("mode", ["keypoint", "limb"])
@pytest.mark.parametrize("persons", [1, 2])
def test_matches_pyskl_loop(mode, persons):
    """pyskl_window=True in float32 against the numpy loop, at a realistic size."""
    n, t, v, size, sigma = 2, 4, 17, (64, 56), 0.6
    g = np.random.default_rng(3)
    centre = g.uniform(12, 44, (n, t, persons, 1, 2))
    keypoints = (centre + g.normal(0, 9, (n, t, persons, v, 2))).astype(np.float32)
    scores = g.uniform(0, 1, (n, t, persons, v)).astype(np.float32)
    scores[g.uniform(size=scores.shape) < 0.1] = 0
    limbs = None if mode == "keypoint" else COCO_LIMBS
    out = render(torch.from_numpy(keypoints), torch.from_numpy(scores), limbs, size, sigma, True)
    oracle = np.stack(
        [
            pyskl_heatmaps(
                keypoints[i].transpose(1, 0, 2, 3),
                scores[i].transpose(1, 0, 2),
                size,
                sigma,
                None if limbs is None else limbs.numpy(),
            ).transpose(1, 0, 2, 3)
            for i in range(n)
        ]
    )
    torch.testing.assert_close(out, torch.from_numpy(oracle), atol=3e-6, rtol=1e-5)


def reference_gradients(keypoints, scores, limbs, size, sigma, window, grad):
    k = keypoints.detach().clone().requires_grad_(True)
    s = scores.detach().clone().requires_grad_(True)
    reference(k, s, size, sigma, limbs, window).backward(grad)
    return k.grad, s.grad


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode", ["keypoint", "limb"])
@pytest.mark.parametrize("window", [False, True])
def test_backward_matches_autograd(device, mode, window):
    size, sigma = (7, 11), 0.8
    keypoints, scores = make_inputs(device=device)
    limbs = limbs_for(mode, device)
    out = render(keypoints, scores, limbs, size, sigma, window)
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(4), dtype=out.dtype)
    grad = grad.to(device)
    expected_k, expected_s = reference_gradients(
        keypoints, scores, limbs, size, sigma, window, grad
    )
    grad_k, grad_s = backward(grad, keypoints, scores, limbs, sigma, window)
    torch.testing.assert_close(grad_k, expected_k, atol=1e-11, rtol=1e-10)
    torch.testing.assert_close(grad_s, expected_s, atol=1e-11, rtol=1e-10)
    # The duplicated person (index 2, a copy of 1) gets nothing: ties go to the first.
    assert grad_k[-1, :, 2].abs().max() == 0 and grad_s[-1, :, 2].abs().max() == 0
    assert grad_k[-1, :, 1].abs().max() > 0


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mask", [(True, False), (False, True), (False, False)])
def test_backward_output_mask(device, mask):
    size, sigma = (7, 11), 0.8
    keypoints, scores = make_inputs(device=device)
    limbs = LIMBS_5.to(device)
    grad = torch.rand(2, len(LIMBS_5), 3, *size, dtype=torch.float64, device=device)
    full = backward(grad, keypoints, scores, limbs, sigma, False)
    grads = backward(grad, keypoints, scores, limbs, sigma, False, mask)
    for want, got, expected in zip(mask, grads, full, strict=True):
        if want:
            assert torch.equal(got, expected)
        else:
            assert got.numel() == 0


@pytest.mark.parametrize("device", DEVICES)
def test_backward_reads_grad_strides(device):
    sigma = 0.8
    keypoints, scores = make_inputs(device=device)
    grad = torch.rand(2, 3, 5, 11, 7, dtype=torch.float64, device=device).permute(0, 2, 1, 4, 3)
    assert not grad.is_contiguous()
    strided = backward(grad, keypoints, scores, None, sigma, False)
    dense = backward(grad.contiguous(), keypoints, scores, None, sigma, False)
    assert all(torch.equal(a, b) for a, b in zip(strided, dense, strict=True))


@pytest.mark.parametrize("mode", ["keypoint", "limb"])
def test_backward_finite_differences(mode):
    """A few central differences of <grad, out> in float64 (full mode: smooth)."""
    size, sigma = (9, 12), 1.3
    keypoints, scores = make_inputs(n=1, t=2, m=2, size=size, seed=5)
    scores = scores.nan_to_num(0.5).clamp(min=0.2)
    keypoints = keypoints.nan_to_num(4.0)
    keypoints[0, 0, 0, 1] += 2.0  # no short limb: a smooth function of every coordinate
    limbs = None if mode == "keypoint" else LIMBS_5[:5]
    grad = torch.rand(
        1, 5, 2, *size, dtype=torch.float64, generator=torch.Generator().manual_seed(6)
    )
    grad_k, grad_s = backward(grad, keypoints, scores, limbs, sigma, False)

    def loss(k, s):
        return (render(k, s, limbs, size, sigma, False) * grad).sum().item()

    eps = 1e-6
    for index in [(0, 0, 0, 2, 0), (0, 0, 1, 3, 1), (0, 0, 0, 4, 1)]:
        plus, minus = keypoints.clone(), keypoints.clone()
        plus[index] += eps
        minus[index] -= eps
        numeric = (loss(plus, scores) - loss(minus, scores)) / (2 * eps)
        assert numeric == pytest.approx(grad_k[index].item(), rel=1e-5, abs=1e-8)
    for index in [(0, 0, 0, 2), (0, 0, 1, 4)]:
        plus, minus = scores.clone(), scores.clone()
        plus[index] += eps
        minus[index] -= eps
        numeric = (loss(keypoints, plus) - loss(keypoints, minus)) / (2 * eps)
        assert numeric == pytest.approx(grad_s[index].item(), rel=1e-5, abs=1e-8)


@pytest.mark.parametrize("mode", ["keypoint", "limb"])
def test_deterministic_across_runs_and_threads(mode):
    size, sigma = (32, 32), 0.9
    keypoints, scores = make_inputs(n=3, t=8, m=3, v=17, size=size, dtype=torch.float32, seed=7)
    limbs = None if mode == "keypoint" else COCO_LIMBS
    grad = torch.rand(3, 17, 8, *size, generator=torch.Generator().manual_seed(8))
    threads = torch.get_num_threads()
    results = []
    try:
        for count in (1, 2, 2):
            torch.set_num_threads(count)
            out = render(keypoints, scores, limbs, size, sigma, False)
            results.append((out, *backward(grad, keypoints, scores, limbs, sigma, False)))
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        assert all(torch.equal(a, b) for a, b in zip(results[0], other, strict=True))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("channels_last", [False, True])
def test_no_persons(device, channels_last):
    keypoints = torch.empty(2, 3, 0, 5, 2, device=device)
    scores = torch.empty(2, 3, 0, 5, device=device)
    out = render(keypoints, scores, LIMBS_5.to(device), (6, 4), 0.6, False, channels_last)
    assert out.shape == (2, len(LIMBS_5), 3, 6, 4) and torch.equal(out, torch.zeros_like(out))
    grad_k, grad_s = backward(
        torch.ones_like(out), keypoints, scores, LIMBS_5.to(device), 0.6, False
    )
    assert grad_k.shape == keypoints.shape and grad_s.shape == scores.shape


KEYPOINTS_SHAPE = r"keypoints must be \[N, T, M, V, 2\]"


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (dict(keypoints=torch.zeros(2, 3, 2, 5)), ValueError, KEYPOINTS_SHAPE),
        (dict(keypoints=torch.zeros(2, 3, 2, 5, 3)), ValueError, KEYPOINTS_SHAPE),
        (dict(scores=torch.zeros(2, 3, 2, 4)), ValueError, r"scores must be \[N, T, M, V\]"),
        (dict(scores=torch.zeros(2, 3, 2, 5, dtype=torch.float64)), TypeError, "scores dtype"),
        (dict(keypoints=torch.zeros(2, 3, 2, 5, 2).int()), TypeError, "keypoints must be float"),
        (dict(limbs=torch.tensor([[0, 5]])), ValueError, r"limbs\[0, 1\] = 5"),
        (dict(limbs=torch.tensor([[-1, 2]])), ValueError, r"limbs\[0, 0\] = -1"),
        (dict(limbs=torch.tensor([0, 1])), ValueError, r"limbs must be \[L, 2\]"),
        (dict(limbs=torch.tensor([[0.0, 1.0]])), TypeError, "limbs must be an int64 or int32"),
        (dict(sigma=0.0), ValueError, "sigma must be positive"),
        (dict(sigma=float("nan")), ValueError, "sigma must be positive"),
        (dict(height=0), ValueError, "height and width must be >= 1"),
        (dict(dtype=torch.int64), TypeError, "dtype must be float32"),
    ],
)  # fmt: skip
def test_bad_inputs(change, error, match):
    args = dict(
        keypoints=torch.zeros(2, 3, 2, 5, 2),
        scores=torch.zeros(2, 3, 2, 5),
        limbs=None,
        height=4,
        width=6,
        sigma=0.6,
        dtype=None,
    )
    args.update(change)
    with pytest.raises(error, match=match):
        torch.ops.skelops.render_heatmaps(
            args["keypoints"], args["scores"], args["limbs"], args["height"], args["width"],
            args["sigma"], False, False, args["dtype"],
        )  # fmt: skip


def test_bad_backward_inputs():
    keypoints, scores = torch.zeros(2, 3, 2, 5, 2), torch.zeros(2, 3, 2, 5)
    with pytest.raises(
        ValueError, match=r"grad must be \[N, C, T, H, W\] with \[N, C, T\] = \[2, 5, 3\]"
    ):
        backward(torch.zeros(2, 4, 3, 6, 6), keypoints, scores, None, 0.6, False)
    with pytest.raises(ValueError, match="height and width must be >= 1"):
        backward(torch.zeros(2, 5, 3, 0, 6), keypoints, scores, None, 0.6, False)
    with pytest.raises(ValueError, match=r"limbs\[1, 0\] = 7"):
        backward(
            torch.zeros(2, 2, 3, 6, 6),
            keypoints,
            scores,
            torch.tensor([[0, 1], [7, 1]]),
            0.6,
            False,
        )


_ISA_RENDER = """
import sys, torch, skelops
g = torch.Generator().manual_seed(5)
keypoints = torch.rand(2, 4, 2, 17, 2, generator=g) * torch.tensor([50.0, 42.0]) - 5.0
scores = torch.rand(2, 4, 2, 17, generator=g)
limbs = torch.tensor({limbs})
outs = {{}}
for mode in ("keypoint", "limb"):
    for window in (False, True):
        for channels_last in (False, True):
            outs[mode, window, channels_last] = torch.ops.skelops.render_heatmaps(
                keypoints, scores, limbs if mode == "limb" else None, 32, 40, 0.6, window,
                channels_last, None).contiguous()
torch.save(outs, sys.argv[1])
"""


def test_cpu_baseline_loops_match_the_default_isa(tmp_path):
    """The float drawing loops run on AVX2 + FMA where the CPU has them; SKELOPS_CPU_ISA=baseline
    forces the portable loops (chosen once per process, hence subprocesses), which must agree
    within float32's tolerance (FMA contraction rounds differently)."""
    script = _ISA_RENDER.format(limbs=COCO_LIMBS.tolist())
    results = outputs_per_cpu_isa(script, tmp_path)
    for key, base in results["baseline"].items():
        assert base.abs().max() > 0.1, key
        torch.testing.assert_close(results["default"][key], base, **TOLERANCES[torch.float32])
