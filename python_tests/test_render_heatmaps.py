"""skelops.render_heatmaps: every backend against pyskl's loop (numpy) and the PyTorch
reference, gradients, opcheck, compile, autocast and bad input (../shared/GUIDE.md section 2).
Raw-op and launcher cases are in test_render_heatmaps_kernels.py and
test_render_heatmaps_triton_kernels.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import assert_close_scaled, skip_unless_triton

import skelops
from skelops import graphs, reference
from skelops.reference.pyskl_heatmaps import pyskl_heatmaps

CUDA = pytest.param(
    "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
)
# (backend, device): Triton runs under the CPU interpreter here, on small cases only.
BACKENDS = [
    ("reference", "cpu"),
    ("cpu", "cpu"),
    ("triton", "cpu"),
    pytest.param(("cuda", "cuda"), marks=CUDA.marks),
    pytest.param(("triton", "cuda"), marks=CUDA.marks),
]


def skip_unavailable(backend: str, device: str) -> None:
    if backend == "triton":
        skip_unless_triton(device)


def make_inputs(
    n: int,
    t: int,
    m: int,
    v: int,
    size: tuple[int, int],
    dtype: torch.dtype = torch.float64,
    device: str = "cpu",
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Keypoints spread over the canvas and 3 pixels beyond it, scores in [0, 1] with some
    below the threshold, one NaN coordinate and one pair of joints 0.4 pixel apart (a short
    limb when (0, 1) is a limb)."""
    g = torch.Generator().manual_seed(seed)
    height, width = size
    span = torch.tensor([width + 6.0, height + 6.0], dtype=torch.float64)
    keypoints = torch.rand(n, t, m, v, 2, generator=g, dtype=torch.float64) * span - 3.0
    scores = torch.rand(n, t, m, v, generator=g, dtype=torch.float64)
    scores[torch.rand(n, t, m, v, generator=g) < 0.15] = 0.0
    if v > 1:
        keypoints[0, 0, 0, 1] = keypoints[0, 0, 0, 0] + torch.tensor([0.3, -0.25])
    if t > 1 and v > 2:
        keypoints[0, 1, 0, 2, 0] = float("nan")
    return keypoints.to(device, dtype), scores.to(device, dtype)


def pyskl_batch(
    keypoints: torch.Tensor, scores: torch.Tensor, size, sigma: float, limbs
) -> torch.Tensor:
    """pyskl's loop per clip, as ``[N, C, T, H, W]``; a NaN keypoint (on which pyskl's ``int``
    raises) is given score 0, which draws nothing in both."""
    finite = torch.isfinite(keypoints).all(-1)
    k = torch.where(finite[..., None], keypoints, 0.0).float().cpu().numpy()
    s = torch.where(finite, scores, 0.0).float().cpu().numpy()
    clips = [
        pyskl_heatmaps(
            np.ascontiguousarray(k[i].transpose(1, 0, 2, 3)),
            np.ascontiguousarray(s[i].transpose(1, 0, 2)),
            size,
            sigma,
            None if limbs is None else np.asarray(limbs),
        ).transpose(1, 0, 2, 3)
        for i in range(k.shape[0])
    ]
    return torch.from_numpy(np.stack(clips))


LIMBS_5 = [(0, 1), (1, 2), (2, 3), (0, 4), (3, 4), (4, 4)]


@pytest.mark.parametrize("backend_device", BACKENDS, ids=str)
@pytest.mark.parametrize("mode", ["keypoint", "limb"])
def test_matches_pyskl_loop(backend_device, mode):
    """pyskl_window=True equals pyskl's numpy loop (float32 both)."""
    backend, device = backend_device
    skip_unavailable(backend, device)
    small = backend == "triton" and device == "cpu"
    n, t, size = (1, 2, (9, 13)) if small else (2, 4, (23, 31))
    keypoints, scores = make_inputs(n, t, 2, 17, size, torch.float32, device, seed=1)
    limbs = graphs.COCO_LIMBS if mode == "limb" else None
    out = skelops.render_heatmaps(
        keypoints, scores, size, 0.6, mode, limbs, pyskl_window=True, backend=backend
    )
    expected = pyskl_batch(keypoints, scores, size, 0.6, limbs)
    assert out.dtype == torch.float32 and out.shape == expected.shape
    torch.testing.assert_close(out.cpu(), expected, atol=2e-6, rtol=1e-5)


@pytest.mark.parametrize("backend_device", BACKENDS, ids=str)
@pytest.mark.parametrize("mode", ["keypoint", "limb"])
@pytest.mark.parametrize("pyskl_window", [False, True])
def test_matches_reference_float64(backend_device, mode, pyskl_window):
    backend, device = backend_device
    skip_unavailable(backend, device)
    small = backend == "triton" and device == "cpu"
    n, t, m, size = (1, 2, 3, (7, 11)) if small else (2, 3, 3, (13, 17))
    keypoints, scores = make_inputs(n, t, m, 5, size, torch.float64, device, seed=2)
    scores[0, 0, 1] = scores[0, 0, 0]
    keypoints[0, 0, 1] = keypoints[0, 0, 0]  # identical persons: ties keep the first
    limbs = LIMBS_5 if mode == "limb" else None
    kwargs = dict(size=size, sigma=0.9, mode=mode, limbs=limbs, pyskl_window=pyskl_window)
    out = skelops.render_heatmaps(keypoints, scores, backend=backend, **kwargs)
    expected = skelops.render_heatmaps(keypoints, scores, backend="reference", **kwargs)
    assert_close_scaled(out, expected, torch.float64)


def test_reference_full_gaussian_formula():
    """One keypoint, one limb: the values written out by hand."""
    keypoints = torch.tensor([[[[[2.25, 1.5], [6.5, 1.5]]]]], dtype=torch.float64)
    scores = torch.tensor([[[[0.8, 0.5]]]], dtype=torch.float64)
    sigma = 1.1
    y, x = torch.meshgrid(torch.arange(4.0), torch.arange(9.0), indexing="ij")
    y, x = y.double(), x.double()
    maps = reference.render_heatmaps(keypoints, scores, (4, 9), sigma)
    expected0 = 0.8 * torch.exp(-((x - 2.25) ** 2 + (y - 1.5) ** 2) / (2 * sigma**2))
    torch.testing.assert_close(maps[0, 0, 0], expected0)
    limb = reference.render_heatmaps(keypoints, scores, (4, 9), sigma, torch.tensor([[0, 1]]))
    distance2 = torch.where(
        x < 2.25,
        (x - 2.25) ** 2 + (y - 1.5) ** 2,
        torch.where(x > 6.5, (x - 6.5) ** 2 + (y - 1.5) ** 2, (y - 1.5) ** 2),
    )
    torch.testing.assert_close(limb[0, 0, 0], 0.5 * torch.exp(-distance2 / (2 * sigma**2)))


def test_validity_and_persons():
    """Below-threshold and NaN keypoints draw nothing; persons combine by the maximum; a limb
    needs both end points; a short limb is its start point's Gaussian with its score."""
    keypoints = torch.tensor(
        [[[[[3.0, 3.0], [3.2, 3.3], [8.0, 2.0]], [[3.0, 3.0], [float("nan"), 1.0], [1.0, 6.0]]]]],
        dtype=torch.float64,
    )
    scores = torch.tensor([[[[0.6, 0.3, 0.0009], [0.7, 0.9, 0.5]]]], dtype=torch.float64)
    maps = skelops.render_heatmaps(keypoints, scores, (8, 10), backend="reference")
    assert maps[0, 0, 0, 3, 3] == pytest.approx(0.7)  # the larger of the two persons
    assert maps[0, 2, 0].max() == pytest.approx(0.5)  # person 1's joint 2 at (1, 6)
    assert maps[0, 2, 0, 2, 8] < 1e-30  # person 0's joint 2 is below the threshold
    assert maps[0, 1].max() == pytest.approx(0.3 * np.exp(-(0.2**2 + 0.3**2) / 0.72))
    limbs = skelops.render_heatmaps(
        keypoints, scores, (8, 10), mode="limb", limbs=[(0, 1), (1, 2)], backend="reference"
    )
    # Person 0's limb (0, 1) is 0.36 pixel long: joint 0's Gaussian with joint 0's score (not
    # the smaller 0.3); person 1's has a NaN end and draws nothing.
    assert limbs[0, 0, 0, 3, 3] == pytest.approx(0.6)
    assert limbs[0, 1].abs().sum() == 0  # each person's limb (1, 2) has an invalid end


@pytest.mark.parametrize("backend_device", BACKENDS, ids=str)
@pytest.mark.parametrize("mode", ["keypoint", "limb"])
def test_gradients_match_reference(backend_device, mode):
    """Keypoint and score gradients against autograd through the reference (float64), with a
    non-contiguous incoming gradient."""
    backend, device = backend_device
    skip_unavailable(backend, device)
    size = (7, 9) if backend == "triton" and device == "cpu" else (12, 15)
    keypoints, scores = make_inputs(1, 2, 2, 5, size, torch.float64, device, seed=3)
    limbs = LIMBS_5 if mode == "limb" else None
    grads = []
    for b in (backend, "reference"):
        k = keypoints.clone().requires_grad_(True)
        s = scores.clone().requires_grad_(True)
        out = skelops.render_heatmaps(k, s, size, 0.8, mode, limbs, backend=b)
        weight = torch.linspace(-1, 2, out.numel(), dtype=out.dtype, device=device)
        weight = weight.view(out.shape[::-1]).permute(4, 3, 2, 1, 0)  # non-contiguous
        (out * weight).sum().backward()
        grads.append((torch.nan_to_num(k.grad), s.grad))
    for actual, expected in zip(grads[0], grads[1], strict=True):
        assert_close_scaled(actual, expected, torch.float64)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
@pytest.mark.parametrize("mode", ["keypoint", "limb"])
@pytest.mark.parametrize("pyskl_window", [False, True])
def test_gradcheck(backend, mode, pyskl_window):
    """Finite differences in float64: two persons far apart, scores away from the threshold
    and from each other (no argmax or min flips), segments longer than one pixel."""
    keypoints = torch.tensor(
        [[[[[2.3, 2.2], [5.6, 3.1], [3.4, 6.2]], [[11.4, 8.3], [9.1, 10.6], [12.2, 11.7]]]]],
        dtype=torch.float64,
        requires_grad=True,
    )
    scores = torch.tensor(
        [[[[0.9, 0.6, 0.75], [0.55, 0.8, 0.7]]]], dtype=torch.float64, requires_grad=True
    )
    limbs = [(0, 1), (1, 2), (2, 0)] if mode == "limb" else None

    def render(k, s):
        return skelops.render_heatmaps(
            k, s, (14, 15), 1.27, mode, limbs, pyskl_window=pyskl_window, backend=backend
        )

    assert torch.autograd.gradcheck(render, (keypoints, scores), eps=1e-6, atol=1e-6)


def test_use_score_false_and_defaults():
    keypoints, scores = make_inputs(1, 2, 1, 17, (16, 16), torch.float32, seed=4)
    scores.requires_grad_(True)
    maps = skelops.render_heatmaps(keypoints, scores, 16, use_score=False, backend="reference")
    ones = skelops.render_heatmaps(keypoints, None, 16, backend="reference")
    torch.testing.assert_close(maps, ones)
    limb_default = skelops.render_heatmaps(keypoints, scores, 16, mode="limb")
    limb_explicit = skelops.render_heatmaps(
        keypoints, scores, 16, mode="limb", limbs=graphs.COCO_LIMBS
    )
    torch.testing.assert_close(limb_default, limb_explicit)
    assert limb_default.shape == (1, 17, 2, 16, 16)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_output_dtype_and_channels_last(backend, dtype):
    keypoints, scores = make_inputs(2, 3, 2, 17, (10, 12), torch.float32, seed=5)
    expected = reference.render_heatmaps(
        keypoints, scores, (10, 12), 0.6, torch.tensor(graphs.COCO_LIMBS)
    )
    out = skelops.render_heatmaps(
        keypoints, scores, (10, 12), mode="limb", dtype=dtype, channels_last=True, backend=backend
    )
    assert out.dtype == dtype and out.shape == expected.shape
    assert out.is_contiguous(memory_format=torch.channels_last_3d)
    assert_close_scaled(out, expected, dtype)


@pytest.mark.parametrize("backend_device", BACKENDS, ids=str)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_gradients_with_half_output(backend_device, dtype):
    """float32 keypoints, half-precision maps: the kernels read the incoming gradient in the
    maps' dtype; the gradients equal the float64 reference's for the same upstream values."""
    backend, device = backend_device
    skip_unavailable(backend, device)
    keypoints, scores = make_inputs(1, 2, 2, 17, (9, 11), torch.float32, device, seed=9)
    k, s = keypoints.clone().requires_grad_(), scores.clone().requires_grad_()
    out = skelops.render_heatmaps(k, s, (9, 11), mode="limb", dtype=dtype, backend=backend)
    upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(1)).to(dtype)
    out.backward(upstream.to(device))
    k64, s64 = keypoints.double().requires_grad_(), scores.double().requires_grad_()
    limbs = torch.tensor(graphs.COCO_LIMBS, device=device)
    expected = reference.render_heatmaps(k64, s64, (9, 11), 0.6, limbs)
    expected.backward(upstream.double().to(device))
    assert_close_scaled(torch.nan_to_num(k.grad), torch.nan_to_num(k64.grad), torch.float32)
    assert_close_scaled(s.grad, s64.grad, torch.float32)


def test_autocast_output_dtype():
    keypoints, scores = make_inputs(1, 2, 1, 17, (8, 8), torch.float32, seed=6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = skelops.render_heatmaps(keypoints, scores, 8)
        ref = skelops.render_heatmaps(keypoints, scores, 8, backend="reference")
    assert out.dtype == torch.bfloat16 and ref.dtype == torch.bfloat16
    expected = reference.render_heatmaps(keypoints, scores, (8, 8))
    assert_close_scaled(out, expected, torch.bfloat16)


@pytest.mark.parametrize("mode", ["keypoint", "limb"])
def test_opcheck(mode):
    keypoints, scores = make_inputs(2, 2, 2, 5, (6, 7), torch.float64, seed=7)
    keypoints.requires_grad_(True)
    scores.requires_grad_(True)
    limbs = torch.tensor(LIMBS_5) if mode == "limb" else None
    for channels_last, dtype in ((False, None), (True, torch.float32)):
        torch.library.opcheck(
            torch.ops.skelops.render_heatmaps.default,
            (keypoints, scores, limbs, 6, 7, 0.8, False, channels_last, dtype),
        )


def test_compile_fullgraph():
    keypoints, scores = make_inputs(2, 3, 2, 17, (12, 12), torch.float32, seed=8)
    keypoints.requires_grad_(True)

    def loss(k, s):
        maps = skelops.render_heatmaps(k, s, (12, 12), mode="limb", channels_last=True)
        return (maps * maps).sum()

    compiled = torch.compile(loss, fullgraph=True, backend="aot_eager")
    eager_value = loss(keypoints, scores)
    (eager_grad,) = torch.autograd.grad(eager_value, keypoints)
    value = compiled(keypoints, scores)
    (grad,) = torch.autograd.grad(value, keypoints)
    torch.testing.assert_close(value, eager_value)
    torch.testing.assert_close(torch.nan_to_num(grad), torch.nan_to_num(eager_grad))


def test_keypoints_outside_canvas_and_no_persons():
    far = torch.full((1, 1, 1, 17, 2), 1e9)
    far[..., 0, :] = -1e30
    maps = skelops.render_heatmaps(far, torch.ones(1, 1, 1, 17), 8)
    assert maps.abs().sum() == 0
    nobody = skelops.render_heatmaps(torch.zeros(1, 2, 0, 17, 2), torch.zeros(1, 2, 0, 17), (5, 6))
    assert nobody.shape == (1, 17, 2, 5, 6) and nobody.abs().sum() == 0


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda k, s: skelops.render_heatmaps(k[0], s[0], 8), ValueError, "keypoints must be"),
        (lambda k, s: skelops.render_heatmaps(k[..., :1], s, 8), ValueError, r"\(x, y\) last"),
        (lambda k, s: skelops.render_heatmaps(k.long(), s, 8), TypeError, "floating"),
        (lambda k, s: skelops.render_heatmaps(k, s[..., :3], 8), ValueError, "scores must be"),
        (lambda k, s: skelops.render_heatmaps(k, s.double(), 8), TypeError, "scores must have"),
        (lambda k, s: skelops.render_heatmaps(k, s, (0, 8)), ValueError, "size must be at least"),
        (lambda k, s: skelops.render_heatmaps(k, s, (8,)), TypeError, "size must be"),
        (lambda k, s: skelops.render_heatmaps(k, s, 8, sigma=0.0), ValueError, "sigma must be"),
        (lambda k, s: skelops.render_heatmaps(k, s, 8, sigma=float("inf")), ValueError, "sigma"),
        (lambda k, s: skelops.render_heatmaps(k, s, 8, mode="bone"), ValueError, "mode must"),
        (
            lambda k, s: skelops.render_heatmaps(k, s, 8, mode="limb", limbs=[(0, 17)]),
            ValueError,
            r"limbs must index joints in \[0, V=17\)",
        ),
        (
            lambda k, s: skelops.render_heatmaps(k, s, 8, mode="limb", limbs=[(0, -1)]),
            ValueError,
            "limbs must index",
        ),
        (
            lambda k, s: skelops.render_heatmaps(k, s, 8, mode="limb", limbs=[(0, 1, 2)]),
            ValueError,
            r"limbs must be \[L, 2\]",
        ),
        (
            lambda k, s: skelops.render_heatmaps(k, s, 8, limbs=[(0, 1)]),
            ValueError,
            'mode="limb"',
        ),
        (
            lambda k, s: skelops.render_heatmaps(k[..., :5, :], s[..., :5], 8, mode="limb"),
            ValueError,
            "need V = 17",
        ),
        (lambda k, s: skelops.render_heatmaps(k[:0], s[:0], 8), ValueError, "N, T, V >= 1"),
        (lambda k, s: skelops.render_heatmaps(k, s, 8, dtype=torch.int32), TypeError, "dtype"),
        (lambda k, s: skelops.render_heatmaps(k, s, 8, backend="gpu"), ValueError, "backend"),
    ],
)
def test_bad_input(call, error, match):
    keypoints, scores = make_inputs(1, 2, 1, 17, (8, 8), torch.float32)
    with pytest.raises(error, match=match):
        call(keypoints, scores)


def test_raw_op_checks_limbs():
    """The compiled op checks the limb values itself (the wrapper skips it on a GPU)."""
    keypoints, scores = make_inputs(1, 1, 1, 4, (5, 5), torch.float32)
    with pytest.raises(ValueError, match=r"limbs must hold joint indices in \[0, V\) = \[0, 4\)"):
        torch.ops.skelops.render_heatmaps(
            keypoints, scores, torch.tensor([[0, 4]]), 5, 5, 0.6, False, False, None
        )
