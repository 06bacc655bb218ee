"""Triton project_points launchers vs the PyTorch reference (float64 autograd for gradients).

Without a GPU the kernels run under Triton's interpreter (``TRITON_INTERPRET=1``, set below
before triton is imported) on CPU tensors, one program after another, so every shape here is
small. points ``[N, P, 3]``, camera ``[N, 4]`` (fx, fy, cx, cy) or ``[N, 3]`` (s, tx, ty),
rotation ``[N, 3, 3]``, translation ``[N, 3]``, output ``[N, P, 2]``.
"""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

pytest.importorskip("triton")

from helpers import assert_close_scaled, skip_unless_triton  # noqa: E402

from skelops.reference.project_points import project_points  # noqa: E402
from skelops.triton import _common  # noqa: E402
from skelops.triton import project_points as pp  # noqa: E402

pytestmark = pytest.mark.triton

DEVICE = "cpu" if _common.INTERPRETED else "cuda"
EXACT = torch.float64 if _common.INTERPRETED else torch.float32
MIN_DEPTH = 0.5
ALL_GRADS = [True, True, True, True]


@pytest.fixture(autouse=True)
def _needs_triton():
    skip_unless_triton(DEVICE)


def make_inputs(n=2, p=5, weak=False, *, dtype=EXACT, seed=0):
    """points about 3 units in front of the camera with one behind it (z_c < MIN_DEPTH) in
    sample 0, a rotation and a translation per sample."""
    gen = torch.Generator().manual_seed(seed)
    points = torch.rand(n, p, 3, generator=gen, dtype=torch.float64) * 2 - 1
    points[..., 2] += 3.0
    points[0, 0, 2] = -2.0
    camera = torch.rand(n, 3 if weak else 4, generator=gen, dtype=torch.float64) + 0.5
    if not weak:
        camera[:, :2] *= 400.0
    angle = torch.rand(n, generator=gen, dtype=torch.float64) * 0.5
    cos, sin, zero, one = angle.cos(), angle.sin(), torch.zeros(n), torch.ones(n)
    rotation = torch.stack(
        [torch.stack([cos, zero, sin], 1), torch.stack([zero, one, zero], 1),
         torch.stack([-sin, zero, cos], 1)],
        dim=1,
    )  # fmt: skip
    translation = torch.rand(n, 3, generator=gen, dtype=torch.float64) * 0.2
    return [t.to(DEVICE, dtype) for t in (points, camera, rotation, translation)]


def reference_grads(inputs, grad, weak, present=(True, True)):
    leaves = [t.detach().double().cpu().requires_grad_(True) for t in inputs]
    rotation = leaves[2] if present[0] else None
    translation = leaves[3] if present[1] else None
    out = project_points(leaves[0], leaves[1], rotation, translation, weak, MIN_DEPTH)
    out.backward(grad.double().cpu())
    return out.detach(), [leaf.grad for leaf in leaves]


@pytest.mark.parametrize("weak", [False, True], ids=["pinhole", "weak"])
@pytest.mark.parametrize("present", [(True, True), (False, False), (True, False), (False, True)])
def test_forward_and_backward_match_reference(weak, present):
    points, camera, rotation, translation = make_inputs(weak=weak, seed=1)
    rotation_arg = rotation if present[0] else None
    translation_arg = translation if present[1] else None
    out = pp.project_points_forward(points, camera, rotation_arg, translation_arg, weak, MIN_DEPTH)
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(2)).to(out)
    expected, expected_grads = reference_grads(
        (points, camera, rotation, translation), grad, weak, present
    )
    assert out.dtype == EXACT and out.is_contiguous()
    assert_close_scaled(out, expected, EXACT)
    grads = pp.project_points_backward(
        grad, points, camera, rotation_arg, translation_arg, weak, MIN_DEPTH, ALL_GRADS
    )
    for wanted, got, want in zip((True, True, *present), grads, expected_grads, strict=True):
        if wanted:
            assert got.dtype == EXACT and got.is_contiguous()
            assert_close_scaled(got, want, EXACT)
        else:
            assert got.numel() == 0
    if not weak and not present[0]:  # the point behind the camera: no depth gradient
        assert grads[0][0, 0, 2] == 0 and (grads[0][0, 0, :2] != 0).all()


def test_strided_and_broadcast_inputs():
    """Stride-0 (broadcast) camera and extrinsics, a permuted points view and a strided grad
    are read in place."""
    points, camera, rotation, translation = make_inputs(n=3, p=6, seed=3)
    points = points.transpose(0, 1).contiguous().transpose(0, 1)
    shared = [
        camera[:1].expand(3, -1),
        rotation[:1].expand(3, -1, -1),
        translation[:1].expand(3, -1),
    ]
    grad = torch.randn(3, 6, 4, generator=torch.Generator().manual_seed(4)).to(points)[..., ::2]
    assert not points.is_contiguous() and not grad.is_contiguous()
    out = pp.project_points_forward(points, *shared, False, MIN_DEPTH)
    expected, expected_grads = reference_grads((points, *shared), grad, False)
    assert_close_scaled(out, expected, EXACT)
    grads = pp.project_points_backward(grad, points, *shared, False, MIN_DEPTH, ALL_GRADS)
    for got, want in zip(grads, expected_grads, strict=True):
        assert_close_scaled(got, want, EXACT)


def test_several_blocks_per_sample(monkeypatch):
    """P larger than a block: the per-sample sums add the blocks' partials."""
    monkeypatch.setattr(pp, "_MAX_BLOCK", 16)
    points, camera, rotation, translation = make_inputs(n=2, p=37, seed=5)
    grad = torch.randn(2, 37, 2, generator=torch.Generator().manual_seed(6)).to(points)
    out = pp.project_points_forward(points, camera, rotation, translation, False, MIN_DEPTH)
    expected, expected_grads = reference_grads((points, camera, rotation, translation), grad, False)
    assert_close_scaled(out, expected, EXACT)
    grads = pp.project_points_backward(
        grad, points, camera, rotation, translation, False, MIN_DEPTH, ALL_GRADS
    )
    for got, want in zip(grads, expected_grads, strict=True):
        assert_close_scaled(got, want, EXACT)


@pytest.mark.parametrize("weak", [False, True], ids=["pinhole", "weak"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_low_precision_computed_in_float32(dtype, weak):
    inputs = make_inputs(weak=weak, dtype=dtype, seed=7)
    out = pp.project_points_forward(*inputs, weak, MIN_DEPTH)
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(8)).to(dtype)
    expected, expected_grads = reference_grads(inputs, grad, weak)
    assert out.dtype == dtype
    assert_close_scaled(out, expected, dtype)
    grads = pp.project_points_backward(grad, *inputs, weak, MIN_DEPTH, ALL_GRADS)
    for got, want in zip(grads, expected_grads, strict=True):
        assert got.dtype == dtype
        assert_close_scaled(got, want, dtype)


def test_output_mask_and_determinism():
    inputs = make_inputs(seed=9)
    grad = torch.randn(2, 5, 2, generator=torch.Generator().manual_seed(10)).to(inputs[0])
    full = pp.project_points_backward(grad, *inputs, False, MIN_DEPTH, ALL_GRADS)
    again = pp.project_points_backward(grad, *inputs, False, MIN_DEPTH, ALL_GRADS)
    for first, second in zip(full, again, strict=True):
        assert torch.equal(first, second)
    for mask in ([True, False, False, False], [False, True, True, False], [False] * 4):
        part = pp.project_points_backward(grad, *inputs, False, MIN_DEPTH, mask)
        for wanted, got, expected in zip(mask, part, full, strict=True):
            if wanted:
                assert torch.equal(got, expected)
            else:
                assert got.numel() == 0


def test_empty():
    points, camera, rotation, translation = make_inputs(seed=11)
    for n, p in ((0, 5), (2, 0)):
        args = (points[:n, :p], camera[:n], rotation[:n], translation[:n])
        out = pp.project_points_forward(*args, False, MIN_DEPTH)
        assert out.shape == (n, p, 2)
        grads = pp.project_points_backward(
            torch.zeros(n, p, 2, dtype=EXACT, device=DEVICE), *args, False, MIN_DEPTH, ALL_GRADS
        )
        assert [tuple(g.shape) for g in grads] == [(n, p, 3), (n, 4), (n, 3, 3), (n, 3)]
        assert all((g == 0).all() for g in grads[1:])


def test_gradcheck_launchers():
    if EXACT != torch.float64:
        pytest.skip("gradcheck needs float64, which only the interpreter runs")
    inputs = make_inputs(n=1, p=3, seed=12)
    inputs[0][0, 0, 2] = 3.0  # away from the clamp's kink
    inputs = [t.requires_grad_(True) for t in inputs]

    def fn(points, camera, rotation, translation):
        return torch.ops.skelops.project_points_triton(
            points, camera, rotation, translation, False, MIN_DEPTH
        )

    assert torch.autograd.gradcheck(fn, inputs)


def test_rejects_bad_inputs():
    """The Triton operators check their arguments (the launchers only what is theirs)."""
    points, camera, rotation, translation = make_inputs(seed=13)
    op = torch.ops.skelops.project_points_triton
    with pytest.raises(ValueError, match=r"points must be \[N, P, 3\]"):
        op(points[..., :2], camera, None, None, False, MIN_DEPTH)
    with pytest.raises(ValueError, match=r"camera must be \[2, 3\]"):
        op(points, camera, None, None, True, MIN_DEPTH)
    with pytest.raises(ValueError, match=r"rotation must be \[2, 3, 3\]"):
        op(points, camera, rotation[:1], None, False, MIN_DEPTH)
    with pytest.raises(TypeError, match="translation must have the same dtype"):
        op(points, camera, None, translation.half(), False, MIN_DEPTH)
    with pytest.raises(ValueError, match="min_depth"):
        op(points, camera, None, None, False, 0.0)
    with pytest.raises(ValueError, match=r"grad must be \[N, P, 2\]"):
        pp.project_points_backward(
            torch.zeros(2, 4, 2, dtype=EXACT, device=DEVICE), points, camera, None, None, False,
            MIN_DEPTH, ALL_GRADS,
        )  # fmt: skip
