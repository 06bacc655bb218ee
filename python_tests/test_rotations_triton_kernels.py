"""Triton rotation launchers (skelops.triton.rotations) vs the PyTorch reference (float64
autograd for gradients).

Without a GPU the kernels run under Triton's interpreter (``TRITON_INTERPRET=1``, set below
before triton is imported) on CPU tensors, one program after another, so every shape here is
tiny. axis_angle ``[B, 3]`` -> ``[B, 3, 3]``; pose ``[N, D]``, axes ``[D, 3]`` (used as given),
dof_joints ``[D]`` -> ``[N, J, 3, 3]``.
"""

import math
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

pytest.importorskip("triton")

from helpers import assert_close_scaled, skip_unless_triton  # noqa: E402

from skelops.reference import rotations as ref  # noqa: E402
from skelops.triton import _common  # noqa: E402
from skelops.triton import rotations as tr  # noqa: E402

pytestmark = [pytest.mark.triton]

DEVICE = "cpu" if _common.INTERPRETED else "cuda"
EXACT = torch.float64 if _common.INTERPRETED else torch.float32
# Joints with 3, 0, 1, 2 DoFs and a last one with 0; oblique and non-unit axes.
DOF_JOINTS = [0, 0, 0, 2, 3, 3]
NUM_JOINTS = 5


@pytest.fixture(autouse=True)
def _needs_triton():
    skip_unless_triton(DEVICE)


def axis_angles(dtype=EXACT, seed=0):
    """Angles 0, 1e-9, 1e-4, just above and below the series bound, pi - 1e-6 and 3, plus
    random ones, along random directions."""
    g = torch.Generator().manual_seed(seed)
    direction = torch.randn(11, 3, generator=g, dtype=torch.float64)
    direction = direction / direction.norm(dim=-1, keepdim=True)
    angles = torch.tensor(
        [0.0, 1e-9, 1e-4, 0.0999, 0.1001, math.pi - 1e-6, 3.0, 0.5, 1.5, 2.5, 6.0],
        dtype=torch.float64,
    )
    return (direction * angles[:, None]).to(DEVICE, dtype)


def dof_inputs(n=3, dtype=EXACT, seed=1):
    g = torch.Generator().manual_seed(seed)
    pose = (torch.rand(n, 6, generator=g, dtype=torch.float64) * 2 - 1) * math.pi
    axes = torch.tensor(
        [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0494, 0.0366, 0.99810825], [0.0, 0.6, 0.8],
         [0.3, -0.4, 1.2], [0.0, 0.0, 1.0]],
        dtype=torch.float64,
    )  # fmt: skip
    return pose.to(DEVICE, dtype), axes.to(DEVICE, dtype)


@pytest.mark.parametrize("dtype", [EXACT, torch.float32], ids=str)
def test_axis_angle_forward(dtype):
    a = axis_angles(dtype)
    out = tr.axis_angle_to_matrix_forward(a)
    assert out.dtype == dtype and out.shape == (11, 3, 3) and out.is_contiguous()
    assert_close_scaled(out, ref.axis_angle_to_matrix(a.double().cpu()), dtype)
    strided = torch.zeros(11, 9, dtype=dtype, device=DEVICE)
    strided[:, 1::3] = a
    torch.testing.assert_close(tr.axis_angle_to_matrix_forward(strided[:, 1::3]), out)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_half_dtypes(dtype):
    a = axis_angles(dtype, seed=2)
    out = tr.axis_angle_to_matrix_forward(a)
    assert out.dtype == dtype
    assert_close_scaled(out, ref.axis_angle_to_matrix(a.double().cpu()), dtype)
    pose, axes = dof_inputs(dtype=dtype, seed=3)
    out = tr.dof_rotations_forward(pose, axes, DOF_JOINTS, NUM_JOINTS)
    assert out.dtype == dtype
    expected = ref.dof_rotations(pose.double().cpu(), axes.double().cpu(), DOF_JOINTS, NUM_JOINTS)
    assert_close_scaled(out, expected, dtype)


def test_axis_angle_backward():
    a = axis_angles(seed=4)
    upstream = torch.randn(
        11, 3, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64
    )
    grad = upstream.to(DEVICE, EXACT).transpose(-1, -2)  # non-contiguous
    out = tr.axis_angle_to_matrix_backward(grad, a)
    x = a.double().cpu().requires_grad_()
    (expected,) = torch.autograd.grad(ref.axis_angle_to_matrix(x), x, grad.double().cpu())
    assert out.dtype == EXACT and out.shape == (11, 3) and torch.isfinite(out).all()
    assert_close_scaled(out, expected, EXACT)


def test_dof_forward():
    pose, axes = dof_inputs()
    out = tr.dof_rotations_forward(pose, axes, DOF_JOINTS, NUM_JOINTS)
    expected = ref.dof_rotations(pose.double().cpu(), axes.double().cpu(), DOF_JOINTS, NUM_JOINTS)
    assert out.shape == (3, NUM_JOINTS, 3, 3) and out.dtype == EXACT
    assert_close_scaled(out, expected, EXACT)
    assert torch.equal(out[:, 1].cpu(), torch.eye(3, dtype=EXACT).expand(3, 3, 3))


@pytest.mark.parametrize("mask", [[True, True], [True, False], [False, True], [False, False]])
def test_dof_backward(mask):
    wide, axes = dof_inputs(n=4, seed=6)
    pose = wide[::2]  # non-contiguous
    upstream = torch.randn(NUM_JOINTS, 3, 3, 2, generator=torch.Generator().manual_seed(7))
    grad = upstream.double().permute(3, 0, 1, 2).to(DEVICE, EXACT)
    grad_pose, grad_axes = tr.dof_rotations_backward(grad, pose, axes, DOF_JOINTS, NUM_JOINTS, mask)
    p = pose.double().cpu().requires_grad_()
    a = axes.double().cpu().requires_grad_()
    expected = torch.autograd.grad(
        ref.dof_rotations(p, a, DOF_JOINTS, NUM_JOINTS), (p, a), grad.double().cpu()
    )
    for wanted, got, want in zip(mask, (grad_pose, grad_axes), expected, strict=True):
        if wanted:
            assert got.dtype == EXACT and got.shape == want.shape
            assert_close_scaled(got, want, EXACT)
        else:
            assert got.numel() == 0


def test_gradcheck_launchers():
    """Finite differences through the launchers (float64 under the interpreter)."""
    if EXACT != torch.float64:
        pytest.skip("float64 Triton kernels only run under the interpreter")

    class AxisAngle(torch.autograd.Function):
        @staticmethod
        def forward(ctx, a):
            ctx.save_for_backward(a)
            return tr.axis_angle_to_matrix_forward(a)

        @staticmethod
        def backward(ctx, grad):
            (a,) = ctx.saved_tensors
            return tr.axis_angle_to_matrix_backward(grad, a)

    class Dof(torch.autograd.Function):
        @staticmethod
        def forward(ctx, pose, axes):
            ctx.save_for_backward(pose, axes)
            return tr.dof_rotations_forward(pose, axes, DOF_JOINTS, NUM_JOINTS)

        @staticmethod
        def backward(ctx, grad):
            pose, axes = ctx.saved_tensors
            return tr.dof_rotations_backward(
                grad, pose, axes, DOF_JOINTS, NUM_JOINTS, ctx.needs_input_grad
            )

    a = axis_angles(seed=8)[[0, 2, 5, 6]].clone().requires_grad_()
    assert torch.autograd.gradcheck(AxisAngle.apply, (a,), eps=1e-6, atol=1e-8, fast_mode=True)
    pose, axes = dof_inputs(n=1, seed=9)
    assert torch.autograd.gradcheck(
        Dof.apply,
        (pose.requires_grad_(), axes.requires_grad_()),
        eps=1e-6,
        atol=1e-8,
        fast_mode=True,
    )


def test_empty_and_deterministic():
    empty = tr.axis_angle_to_matrix_forward(torch.zeros(0, 3, dtype=EXACT, device=DEVICE))
    assert empty.shape == (0, 3, 3)
    pose, axes = dof_inputs(n=2, seed=10)
    grads = tr.dof_rotations_backward(
        torch.zeros(0, NUM_JOINTS, 3, 3, dtype=EXACT, device=DEVICE), pose[:0], axes,
        DOF_JOINTS, NUM_JOINTS, [True, True],
    )  # fmt: skip
    assert grads[0].shape == (0, 6) and torch.equal(grads[1].cpu(), torch.zeros(6, 3, dtype=EXACT))
    grad = torch.randn(2, NUM_JOINTS, 3, 3, dtype=torch.float64).to(DEVICE, EXACT)
    first = tr.dof_rotations_backward(grad, pose, axes, DOF_JOINTS, NUM_JOINTS, [True, True])
    second = tr.dof_rotations_backward(grad, pose, axes, DOF_JOINTS, NUM_JOINTS, [True, True])
    assert all(torch.equal(x, y) for x, y in zip(first, second, strict=True))


def test_checks():
    with pytest.raises(TypeError, match="axis_angle must have dtype"):
        tr.axis_angle_to_matrix_forward(torch.zeros(2, 3, dtype=torch.int32, device=DEVICE))
    with pytest.raises(ValueError, match="output_mask must have 2 entries"):
        pose, axes = dof_inputs(n=1)
        tr.dof_rotations_backward(
            torch.zeros(1, NUM_JOINTS, 3, 3, dtype=EXACT, device=DEVICE), pose, axes,
            DOF_JOINTS, NUM_JOINTS, [True],
        )  # fmt: skip
