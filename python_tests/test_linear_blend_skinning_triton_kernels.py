"""Triton linear_blend_skinning launchers vs the PyTorch reference (float64 autograd for
gradients).

Without a GPU the kernels run under Triton's interpreter (``TRITON_INTERPRET=1``, set below
before triton is imported) on CPU tensors, one program after another, so every shape here is
tiny. vertices ``[N or 1, P, 3]``, weights ``[P, J]`` or ``[P, K]`` + indices, rotations
``[N, J, 3, 3]``, translations ``[N, J, 3]``.
"""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

pytest.importorskip("triton")

from helpers import assert_close_scaled, skip_unless_triton  # noqa: E402

from skelops.reference.linear_blend_skinning import linear_blend_skinning  # noqa: E402
from skelops.triton import _common  # noqa: E402
from skelops.triton import linear_blend_skinning as lbs  # noqa: E402

pytestmark = pytest.mark.triton

DEVICE = "cpu" if _common.INTERPRETED else "cuda"
EXACT = torch.float64 if _common.INTERPRETED else torch.float32
ALL = [True, True, True, True]


@pytest.fixture(autouse=True)
def _needs_triton():
    skip_unless_triton(DEVICE)


def make_inputs(n=3, p=21, j=5, k=3, *, shared=False, sparse=True, dtype=EXACT, seed=0):
    gen = torch.Generator().manual_seed(seed)
    vertices = torch.randn(1 if shared else n, p, 3, generator=gen, dtype=torch.float64)
    rotations = torch.randn(n, j, 3, 3, generator=gen, dtype=torch.float64)
    translations = torch.randn(n, j, 3, generator=gen, dtype=torch.float64)
    if sparse:
        weights = torch.rand(p, k, generator=gen, dtype=torch.float64)
        weights[0, 0] = 0.0
        indices = torch.randint(0, j, (p, k), generator=gen, dtype=torch.int32)
        indices[1, :] = 0  # one joint twice in a row
    else:
        weights = torch.rand(p, j, generator=gen, dtype=torch.float64)
        weights[torch.rand(p, j, generator=gen) < 0.5] = 0.0
        indices = None
    tensors = [t.to(DEVICE, dtype) for t in (vertices, weights, rotations, translations)]
    return tensors[0], tensors[1], None if indices is None else indices.to(DEVICE), *tensors[2:]


def reference_and_grads(vertices, weights, indices, rotations, translations, grad):
    leaves = [
        t.detach().double().cpu().requires_grad_()
        for t in (vertices, weights, rotations, translations)
    ]
    idx = None if indices is None else indices.cpu()
    out = linear_blend_skinning(leaves[0], leaves[1], idx, leaves[2], leaves[3])
    out.backward(grad.double().cpu())
    return out, [t.grad for t in leaves]


CASES = [
    dict(shared=False, sparse=True),
    dict(shared=True, sparse=True),
    dict(shared=False, sparse=False),
    dict(shared=True, sparse=False),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_forward_backward_match_reference(case, monkeypatch):
    # Small blocks: several vertex blocks per sample, several joint tiles, splits on both sides.
    monkeypatch.setattr(lbs, "_FORWARD_BLOCK", 16)
    monkeypatch.setattr(lbs, "_JOINT_BLOCK_P", 16)
    monkeypatch.setattr(lbs, "_MAX_JOINT_TILE", 16)
    monkeypatch.setattr(lbs, "_MAX_VERTEX_TILE", 64)
    monkeypatch.setattr(lbs, "_MIN_SAMPLES_PER_SPLIT", 1)
    inputs = make_inputs(n=3, p=37, j=18, k=3, **case, seed=1)
    grad = torch.randn(3, 37, 3, generator=torch.Generator().manual_seed(2), dtype=EXACT).to(DEVICE)
    expected, expected_grads = reference_and_grads(*inputs, grad)
    out = lbs.linear_blend_skinning_forward(*inputs)
    assert out.dtype == EXACT and out.shape == (3, 37, 3)
    assert_close_scaled(out, expected, EXACT)
    grads = lbs.linear_blend_skinning_backward(grad, *inputs, ALL)
    for actual, ref, like in zip(
        grads, expected_grads, (inputs[0], inputs[1], inputs[3], inputs[4]), strict=True
    ):
        assert actual.shape == like.shape and actual.dtype == EXACT
        assert_close_scaled(actual, ref, EXACT)


def test_output_mask_and_determinism():
    inputs = make_inputs(shared=True, seed=3)
    grad = torch.randn(3, 21, 3, generator=torch.Generator().manual_seed(4), dtype=EXACT).to(DEVICE)
    full = lbs.linear_blend_skinning_backward(grad, *inputs, ALL)
    again = lbs.linear_blend_skinning_backward(grad, *inputs, ALL)
    for first, second in zip(full, again, strict=True):
        assert torch.equal(first, second)
    for mask in ([True, False, False, True], [False, True, True, False], [False] * 4):
        part = lbs.linear_blend_skinning_backward(grad, *inputs, mask)
        for wanted, got, expected in zip(mask, part, full, strict=True):
            if wanted:
                assert torch.equal(got, expected)
            else:
                assert got.numel() == 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_low_precision(dtype):
    inputs = make_inputs(dtype=dtype, seed=5)
    grad = torch.randn(3, 21, 3, generator=torch.Generator().manual_seed(6)).to(DEVICE, dtype)
    expected, expected_grads = reference_and_grads(*inputs, grad)
    out = lbs.linear_blend_skinning_forward(*inputs)
    assert out.dtype == dtype
    assert_close_scaled(out, expected, dtype)
    grads = lbs.linear_blend_skinning_backward(grad, *inputs, ALL)
    for actual, ref in zip(grads, expected_grads, strict=True):
        assert actual.dtype == dtype
        assert_close_scaled(actual, ref, dtype)


def test_empty():
    vertices, weights, indices, rotations, translations = make_inputs(n=0, shared=True)
    out = lbs.linear_blend_skinning_forward(vertices, weights, indices, rotations, translations)
    assert out.shape == (0, 21, 3)
    grads = lbs.linear_blend_skinning_backward(
        out, vertices, weights, indices, rotations, translations, ALL
    )
    assert grads[0].shape == (1, 21, 3) and not grads[0].any() and not grads[1].any()
    assert grads[2].shape == (0, 5, 3, 3) and grads[3].shape == (0, 5, 3)


def test_gradcheck_triton_op():
    inputs = list(make_inputs(n=2, p=4, j=3, k=2, shared=True, seed=7))
    indices = inputs.pop(2)
    for t in inputs:
        t.requires_grad_(True)

    def skin(v, w, r, t):
        return torch.ops.skelops.linear_blend_skinning_triton(v, w, indices, r, t)

    assert torch.autograd.gradcheck(skin, inputs)


def test_op_rejects_bad_input():
    vertices, weights, indices, rotations, translations = make_inputs()
    op = torch.ops.skelops.linear_blend_skinning_triton
    bad = indices.clone()
    bad[2, 1] = 5
    with pytest.raises(ValueError, match=r"weight_indices must hold joint indices in \[0, J=5\)"):
        op(vertices, weights, bad, rotations, translations)
    with pytest.raises(ValueError, match="vertices must have P = 21"):
        op(vertices[:, :3], weights, indices, rotations, translations)
    with pytest.raises(ValueError, match="dense weights must be"):
        op(vertices, weights, None, rotations, translations)
    with pytest.raises(ValueError, match="grad_out must be"):
        torch.ops.skelops.linear_blend_skinning_triton_backward(
            vertices[:, :2], vertices, weights, indices, rotations, translations, ALL
        )
