"""Triton render_heatmaps launchers vs the PyTorch reference (float64 autograd for gradients).

Without a GPU the kernels run under Triton's interpreter (``TRITON_INTERPRET=1``, set below
before triton is imported) on CPU tensors, one program after another, so every shape here is
tiny. keypoints are ``[N, T, M, V, 2]`` (x, y) pixel coordinates, scores ``[N, T, M, V]``, the
maps ``[N, C, T, H, W]``; pixel (i, j) has centre (x, y) = (j, i).
"""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

pytest.importorskip("triton")

from helpers import assert_close_scaled, skip_unless_triton  # noqa: E402

from skelops.reference.render_heatmaps import render_heatmaps  # noqa: E402
from skelops.triton import _common  # noqa: E402
from skelops.triton import render_heatmaps as rh  # noqa: E402

pytestmark = [
    pytest.mark.triton,
    # Huge (finite) coordinates overflow float32 squares on purpose, as in the reference.
    pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning"),
]

DEVICE = "cpu" if _common.INTERPRETED else "cuda"
EXACT = torch.float64 if _common.INTERPRETED else torch.float32
HEIGHT, WIDTH = 7, 9
SIGMA = 0.6
# Includes a limb from a joint to itself (always short) and limbs sharing joints.
LIMBS = [[0, 1], [1, 2], [2, 3], [3, 4], [0, 4], [2, 2]]
MODES = ["keypoint", "limb"]
ALL_GRADS = [True, True]


@pytest.fixture(autouse=True)
def _needs_triton():
    skip_unless_triton(DEVICE)


def limbs_for(mode):
    return None if mode == "keypoint" else torch.tensor(LIMBS, device=DEVICE)


def make_inputs(n=1, t=2, m=3, v=5, *, dtype=torch.float64, seed=0):
    """keypoints / scores rounded to ``dtype`` with the edge cases every test sees: points
    partly outside the canvas, a zero score, a score just below the 1e-3 threshold, a NaN
    coordinate, an infinite score, a huge finite coordinate, a limb shorter than one pixel,
    a limb with equal end-point scores, and person 1 of frame 1 identical to person 0 (ties)."""
    gen = torch.Generator().manual_seed(seed)
    span = torch.tensor([WIDTH + 6.0, HEIGHT + 6.0], dtype=torch.float64)
    keypoints = torch.rand(n, t, m, v, 2, generator=gen, dtype=torch.float64) * span - 3.0
    scores = torch.rand(n, t, m, v, generator=gen, dtype=torch.float64) * 0.9 + 0.1
    scores[0, 0, 0, 1] = 0.0
    keypoints[0, 0, m - 1, 0, 0] = 1e30
    scores[0, 0, m - 1, v - 1] = float("inf")
    if v >= 5:  # limb (2, 3) shorter than a pixel, limb (3, 4) with equal scores
        offset = torch.tensor([0.4, -0.5], dtype=torch.float64)
        keypoints[0, 0, 0, 3] = keypoints[0, 0, 0, 2] + offset
        scores[0, 0, 0, 3] = scores[0, 0, 0, 4]
    if m >= 2:
        scores[0, 0, 1, 0] = 0.9e-3
        keypoints[0, 0, 1, 2, 1] = float("nan")
        keypoints[0, t - 1, 1] = keypoints[0, t - 1, 0]
        scores[0, t - 1, 1] = scores[0, t - 1, 0]
    return keypoints.to(DEVICE, dtype), scores.to(DEVICE, dtype)


def reference(keypoints, scores, mode, pyskl_window):
    limbs = limbs_for(mode)
    return render_heatmaps(
        keypoints, scores, (HEIGHT, WIDTH), SIGMA, None if limbs is None else limbs.cpu(),
        pyskl_window,
    )  # fmt: skip


def forward(keypoints, scores, mode, pyskl_window, channels_last=False, dtype=None):
    return rh.render_heatmaps_forward(
        keypoints, scores, limbs_for(mode), HEIGHT, WIDTH, SIGMA, pyskl_window, channels_last,
        dtype,
    )  # fmt: skip


def backward(grad, keypoints, scores, mode, pyskl_window, output_mask=ALL_GRADS):
    return rh.render_heatmaps_backward(
        grad, keypoints, scores, limbs_for(mode), SIGMA, pyskl_window, output_mask
    )


def reference_grads(keypoints, scores, grad, mode, pyskl_window):
    kp = keypoints.detach().double().cpu().requires_grad_()
    sc = scores.detach().double().cpu().requires_grad_()
    reference(kp, sc, mode, pyskl_window).backward(grad.double().cpu())
    return kp.grad, sc.grad


def random_grad(shape, layout, seed=1):
    """grad ``[N, C, T, H, W]``: contiguous, channels-last (a permuted view) or every other
    column of a wider map."""
    gen = torch.Generator().manual_seed(seed)
    n, c, t, h, w = shape

    def randn(*s):
        return torch.randn(*s, generator=gen, dtype=torch.float64).to(DEVICE, EXACT)

    if layout == "channels_last":
        grad = randn(n, t, h, w, c).permute(0, 4, 1, 2, 3)
    elif layout == "strided":
        grad = randn(n, c, t, h, 2 * w)[..., ::2]
    else:
        grad = randn(n, c, t, h, w)
    assert grad.is_contiguous() == (layout == "contiguous")
    return grad


@pytest.mark.parametrize("dtype", [EXACT, torch.float32], ids=str)
@pytest.mark.parametrize("pyskl_window", [False, True], ids=["full", "window"])
@pytest.mark.parametrize("mode", MODES)
def test_forward_matches_reference(mode, pyskl_window, dtype):
    keypoints, scores = make_inputs(dtype=dtype)
    expected = reference(keypoints.cpu(), scores.cpu(), mode, pyskl_window)
    assert expected.abs().max() > 0.5
    for channels_last in (False, True):
        out = forward(keypoints, scores, mode, pyskl_window, channels_last)
        assert out.dtype == dtype and out.shape == expected.shape
        layout = torch.channels_last_3d if channels_last else torch.contiguous_format
        assert out.is_contiguous(memory_format=layout)
        assert_close_scaled(out, expected, dtype)
        # Exactly zero where the reference is: cut-offs, windows and invalid points agree.
        assert torch.equal(out.cpu() == 0, expected == 0)


@pytest.mark.parametrize("out_dtype", [torch.float16, torch.bfloat16, torch.float64], ids=str)
def test_output_dtype(out_dtype):
    keypoints, scores = make_inputs(dtype=torch.float32, seed=2)
    for mode in MODES:
        expected = reference(keypoints.cpu(), scores.cpu(), mode, False).to(out_dtype)
        out = forward(keypoints, scores, mode, False, channels_last=True, dtype=out_dtype)
        assert out.dtype == out_dtype
        assert out.is_contiguous(memory_format=torch.channels_last_3d)
        # The math runs in float32 whatever the output dtype.
        assert_close_scaled(
            out, expected, torch.float32 if out_dtype == torch.float64 else out_dtype
        )


@pytest.mark.parametrize("in_dtype", [torch.float16, torch.bfloat16], ids=str)
def test_half_inputs_computed_in_float32(in_dtype):
    keypoints, scores = make_inputs(dtype=in_dtype, seed=3)
    expected = reference(keypoints.cpu().float(), scores.cpu().float(), "limb", True)
    out = forward(keypoints, scores, "limb", True)
    assert out.dtype == in_dtype
    assert_close_scaled(out, expected.to(in_dtype), in_dtype)


@pytest.mark.parametrize(
    "mode, pyskl_window, layout",
    [
        ("keypoint", False, "channels_last"),
        ("keypoint", True, "strided"),
        ("limb", False, "strided"),
        ("limb", True, "channels_last"),
    ],
)
def test_backward_matches_autograd(mode, pyskl_window, layout):
    keypoints, scores = make_inputs(m=2, dtype=EXACT, seed=4)
    channels = len(LIMBS) if mode == "limb" else keypoints.shape[3]
    grad = random_grad((1, channels, 2, HEIGHT, WIDTH), layout)
    expected_kp, expected_sc = reference_grads(keypoints, scores, grad, mode, pyskl_window)
    assert expected_kp.abs().max() > 0.1 and expected_sc.abs().max() > 0.1
    grad_kp, grad_sc = backward(grad, keypoints, scores, mode, pyskl_window)
    assert grad_kp.dtype == grad_sc.dtype == EXACT
    assert grad_kp.is_contiguous() and grad_sc.is_contiguous()
    assert_close_scaled(grad_kp, expected_kp, EXACT)
    assert_close_scaled(grad_sc, expected_sc, EXACT)
    # Ties: person 1 of frame 1 copies person 0 and gets nothing.
    assert grad_kp[0, 1, 1].abs().max() == 0 and grad_sc[0, 1, 1].abs().max() == 0


def test_backward_float32():
    keypoints, scores = make_inputs(m=2, dtype=torch.float32, seed=5)
    grad = random_grad((1, len(LIMBS), 2, HEIGHT, WIDTH), "contiguous").float()
    expected_kp, expected_sc = reference_grads(keypoints, scores, grad, "limb", False)
    grad_kp, grad_sc = backward(grad, keypoints, scores, "limb", False)
    assert grad_kp.dtype == grad_sc.dtype == torch.float32
    # Sums over pixels with cancellation: looser than one float32 rounding.
    torch.testing.assert_close(grad_kp.double().cpu(), expected_kp, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(grad_sc.double().cpu(), expected_sc, rtol=1e-4, atol=1e-4)


def test_output_mask():
    keypoints, scores = make_inputs(t=1, m=2, v=3, dtype=EXACT, seed=6)
    grad = random_grad((1, 3, 1, HEIGHT, WIDTH), "contiguous")
    full = backward(grad, keypoints, scores, "keypoint", False)
    for mask in ([True, False], [False, True], [False, False]):
        part = backward(grad, keypoints, scores, "keypoint", False, mask)
        for wanted, got, expected in zip(mask, part, full, strict=True):
            if wanted:
                assert torch.equal(got, expected)
            else:
                assert got.numel() == 0 and got.dtype == EXACT


def test_deterministic():
    keypoints, scores = make_inputs(t=1, m=2, dtype=torch.float32, seed=7)
    grad = random_grad((1, len(LIMBS), 1, HEIGHT, WIDTH), "strided").float()
    runs = [
        (forward(keypoints, scores, "limb", False, True),)
        + backward(grad, keypoints, scores, "limb", False)
        for _ in range(2)
    ]
    for first, second in zip(*runs, strict=True):
        assert torch.equal(first, second)


def test_small_blocks_cover_every_path(monkeypatch):
    """Blocks smaller than a plane, tiles smaller than a box and two person sweeps: blocks that
    no person touches (skipped), boxes spanning tiles, M > persons per sweep."""
    monkeypatch.setattr(rh, "_FORWARD_BLOCK", 32)
    monkeypatch.setattr(rh, "_backward_tile", lambda sigma, pyskl_window: (4, 8))
    monkeypatch.setattr(rh, "_PERSONS_PER_SWEEP", 2)
    keypoints, scores = make_inputs(t=1, m=3, v=3, dtype=EXACT, seed=8)
    keypoints[..., 0] = keypoints[..., 0] * 2  # spread over a wider map
    width = 2 * WIDTH
    limbs = torch.tensor([[0, 1], [2, 1]], device=DEVICE)
    for lm, channels_last in ((None, False), (limbs, True)):
        kp = keypoints.detach().cpu().requires_grad_()
        sc = scores.detach().cpu().requires_grad_()
        expected = render_heatmaps(kp, sc, (HEIGHT, width), SIGMA, None if lm is None else lm.cpu())
        grad = random_grad(tuple(expected.shape), "contiguous", seed=9)
        expected.backward(grad.cpu())
        out = rh.render_heatmaps_forward(
            keypoints, scores, lm, HEIGHT, width, SIGMA, False, channels_last, None
        )
        assert_close_scaled(out, expected, EXACT)
        grad_kp, grad_sc = rh.render_heatmaps_backward(
            grad, keypoints, scores, lm, SIGMA, False, ALL_GRADS
        )
        assert_close_scaled(grad_kp, kp.grad, EXACT)
        assert_close_scaled(grad_sc, sc.grad, EXACT)


def test_no_persons():
    keypoints, scores = make_inputs(m=1, dtype=EXACT)
    keypoints, scores = keypoints[:, :, :0], scores[:, :, :0]
    for mode in MODES:
        out = forward(keypoints, scores, mode, False, channels_last=mode == "limb")
        assert out.shape[2:] == (2, HEIGHT, WIDTH) and not out.any()
        grad = torch.ones_like(out)
        grad_kp, grad_sc = backward(grad, keypoints, scores, mode, False)
        assert grad_kp.shape == (1, 2, 0, 5, 2) and grad_sc.shape == (1, 2, 0, 5)


def test_rejects_bad_inputs():
    """The Triton operators check their arguments (the launchers only what is theirs)."""
    keypoints, scores = make_inputs(m=1, dtype=EXACT)
    op = torch.ops.skelops.render_heatmaps_triton
    with pytest.raises(ValueError, match="keypoints must be"):
        op(scores, scores, None, 4, 4, 1.0, False, False, None)
    with pytest.raises(ValueError, match="scores must be"):
        op(keypoints, scores[:, :1], None, 4, 4, 1.0, False, False, None)
    with pytest.raises(TypeError, match="scores must have the same dtype"):
        op(keypoints, scores.half(), None, 4, 4, 1.0, False, False, None)
    with pytest.raises(TypeError, match="limbs must be an integer tensor"):
        op(keypoints, scores, torch.zeros(2, 2, device=DEVICE), 4, 4, 1.0, False, False, None)
    with pytest.raises(ValueError, match=r"limbs must index joints in \[0, V=5\)"):
        op(keypoints, scores, torch.tensor([[0, 5]], device=DEVICE), 4, 4, 1.0, False, False, None)
    with pytest.raises(ValueError, match="sigma"):
        op(keypoints, scores, None, 4, 4, 0.0, False, False, None)
    with pytest.raises(ValueError, match="grad must be"):
        rh.render_heatmaps_backward(
            torch.zeros(1, 3, 2, 4, 4, device=DEVICE, dtype=EXACT), keypoints, scores, None,
            1.0, False, ALL_GRADS,
        )  # fmt: skip
