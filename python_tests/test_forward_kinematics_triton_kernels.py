"""Triton forward_kinematics launchers vs the PyTorch reference (float64 autograd for
gradients).

Without a GPU the kernels run under Triton's interpreter (``TRITON_INTERPRET=1``, set below
before triton is imported) on CPU tensors, one program after another, so every shape here is
tiny (a block is 16 samples there: 17 samples take two programs, one of them masked).
local_rotations are ``[N, J, 3, 3]``, rest_joints ``[J, 3]`` or ``[N, J, 3]``, parents ``[J]``
with ``parents[j] < j``.
"""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

pytest.importorskip("triton")

from helpers import assert_close_scaled, skip_unless_triton  # noqa: E402

from skelops.reference.forward_kinematics import forward_kinematics  # noqa: E402
from skelops.triton import _common  # noqa: E402
from skelops.triton import forward_kinematics as fk  # noqa: E402

pytestmark = [pytest.mark.triton]

DEVICE = "cpu" if _common.INTERPRETED else "cuda"
EXACT = torch.float64 if _common.INTERPRETED else torch.float32
# Two roots; joint 5 hangs off joint 0 after the second tree (not the previous joint).
FOREST = [-1, 0, 1, -1, 3, 0]
TREES = {"forest": FOREST, "single": [-1], "chain": [-1, 0, 1, 2]}


@pytest.fixture(autouse=True)
def _needs_triton():
    skip_unless_triton(DEVICE)


def make_inputs(n, parents, shared, dtype=EXACT, seed=0):
    g = torch.Generator().manual_seed(seed)
    j = len(parents)
    q, r = torch.linalg.qr(torch.randn(n, j, 3, 3, generator=g, dtype=torch.float64))
    rotations = q * torch.linalg.det(q).sign()[..., None, None]
    rest = torch.randn((j, 3) if shared else (n, j, 3), generator=g, dtype=torch.float64)
    return rotations.to(DEVICE, dtype), rest.to(DEVICE, dtype)


def reference_gradients(rotations, rest, parents, grads):
    r = rotations.double().requires_grad_(True)
    x = rest.double().requires_grad_(True)
    outs = forward_kinematics(r, x, parents)
    pairs = [(o, g.double()) for o, g in zip(outs, grads, strict=True) if g is not None]
    return torch.autograd.grad(
        [o for o, _ in pairs],
        (r, x),
        [g for _, g in pairs],
        allow_unused=True,
        materialize_grads=True,
    )


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("n", [0, 3, 17])
@pytest.mark.parametrize("shared", [True, False])
def test_forward_matches_reference(tree, n, shared):
    parents = TREES[tree]
    rotations, rest = make_inputs(n, parents, shared, seed=n)
    out = fk.forward_kinematics_forward(rotations, rest, parents)
    expected = forward_kinematics(rotations, rest, parents)
    for actual, wanted in zip(out, expected, strict=True):
        assert actual.shape == wanted.shape and actual.dtype == EXACT
        assert actual.is_contiguous()
        if n > 0:
            assert_close_scaled(actual, wanted, EXACT)


@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("present", [(True, True, True), (False, True, False), (True, False, True)])
def test_backward_matches_reference(shared, present):
    """Absent incoming gradients (None) count as zero; the incoming ones are strided views."""
    parents = FOREST
    n, j = 17, len(parents)
    rotations, rest = make_inputs(n, parents, shared, seed=1)
    global_rotations = fk.forward_kinematics_forward(rotations, rest, parents)[0]
    g = torch.Generator().manual_seed(2)

    def strided(shape):  # a non-contiguous [n, j, ...] view
        return torch.randn(shape, generator=g, dtype=torch.float64).to(DEVICE, EXACT)

    views = (
        strided((n, j, 3, 3)).mT,
        strided((j, 3, n)).permute(2, 0, 1),
        strided((n, j, 6))[..., ::2],
    )
    grads = [view if wanted else None for view, wanted in zip(views, present, strict=True)]
    assert all(t is None or not t.is_contiguous() for t in grads)
    grad_l, grad_rest = fk.forward_kinematics_backward(
        *grads, rotations, rest, parents, global_rotations, [True, True]
    )
    expected_l, expected_rest = reference_gradients(rotations, rest, parents, grads)
    assert grad_l.shape == (n, j, 3, 3) and grad_rest.shape == rest.shape
    assert_close_scaled(grad_l, expected_l, EXACT)
    assert_close_scaled(grad_rest, expected_rest, EXACT)


@pytest.mark.parametrize("mask", [[True, False], [False, True], [False, False]])
def test_backward_output_mask(mask):
    parents = TREES["chain"]
    rotations, rest = make_inputs(3, parents, True, seed=3)
    global_rotations = fk.forward_kinematics_forward(rotations, rest, parents)[0]
    grad_p = torch.randn(3, 4, 3, dtype=torch.float64).to(DEVICE, EXACT)
    grads = (None, grad_p, None)
    grad_l, grad_rest = fk.forward_kinematics_backward(
        *grads, rotations, rest, parents, global_rotations, mask
    )
    expected = reference_gradients(rotations, rest, parents, grads)
    for wanted, actual, reference in zip(mask, (grad_l, grad_rest), expected, strict=True):
        if wanted:
            assert_close_scaled(actual, reference, EXACT)
        else:
            assert actual.shape == (0,)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_low_precision(dtype):
    """16-bit inputs chain in float32 and are rounded once; vs the float64 reference on the
    same rounded inputs."""
    parents = FOREST
    rotations, rest = make_inputs(5, parents, False, dtype=dtype, seed=4)
    out = fk.forward_kinematics_forward(rotations, rest, parents)
    expected = forward_kinematics(rotations.double(), rest.double(), parents)
    for actual, wanted in zip(out, expected, strict=True):
        assert actual.dtype == dtype
        assert_close_scaled(actual, wanted, dtype)
    grad_t = torch.randn(5, 6, 3, dtype=torch.float64).to(DEVICE, dtype)
    grads = (None, None, grad_t)
    grad_l, grad_rest = fk.forward_kinematics_backward(
        *grads, rotations, rest, parents, out[0], [True, True]
    )
    # The backward reads the rounded global rotations, as the compiled kernels do.
    expected_l, expected_rest = reference_gradients(rotations, rest, parents, grads)
    assert grad_l.dtype == dtype and grad_rest.dtype == dtype
    assert_close_scaled(grad_l, expected_l, dtype)
    assert_close_scaled(grad_rest, expected_rest, dtype)


def test_backward_is_deterministic():
    parents = TREES["chain"]
    rotations, rest = make_inputs(3, parents, True, seed=5)
    out = fk.forward_kinematics_forward(rotations, rest, parents)
    grads = [torch.randn_like(o) for o in out]
    first = fk.forward_kinematics_backward(*grads, rotations, rest, parents, out[0], [True, True])
    second = fk.forward_kinematics_backward(*grads, rotations, rest, parents, out[0], [True, True])
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b)


@pytest.mark.skipif(not _common.INTERPRETED, reason="float64 runs under the interpreter only")
def test_gradcheck_through_the_triton_op():
    """Finite differences through torch.ops.skelops.forward_kinematics_triton (its autograd
    calls the Triton backward op); fast mode (random projections): the full Jacobian would
    take a backward launch per output element under the interpreter."""
    import skelops  # noqa: F401  (registers the op)

    parents = [-1, 0, -1]
    rotations, rest = make_inputs(2, parents, True, seed=6)
    rotations.requires_grad_(True)
    rest.requires_grad_(True)

    def run(r, x):
        return tuple(torch.ops.skelops.forward_kinematics_triton(r, x, parents))

    assert torch.autograd.gradcheck(run, (rotations, rest), fast_mode=True)
