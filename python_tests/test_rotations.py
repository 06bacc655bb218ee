"""skelops.rotations: axis_angle_to_matrix and dof_rotations on every backend against the
reference, the closed form, torch.linalg.matrix_exp and a SKEL-style Python loop; gradients,
opcheck, compile, dtypes, autocast, determinism and bad input; the plain-PyTorch conversions
and DofTable (../shared/GUIDE.md section 2). Triton launcher cases are in
test_rotations_triton_kernels.py."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import assert_close_scaled, skip_unless_triton

import skelops
from skelops import reference, rotations
from skelops.rotations import DofTable

CUDA_MARKS = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
# (backend, device): Triton runs under the CPU interpreter here, on small cases only.
BACKENDS = [
    ("reference", "cpu"),
    ("cpu", "cpu"),
    ("triton", "cpu"),
    pytest.param(("cuda", "cuda"), marks=CUDA_MARKS),
    pytest.param(("triton", "cuda"), marks=CUDA_MARKS),
]
ANGLES = [0.0, 1e-9, 1e-4, 0.05, 0.1, 0.2, math.pi - 1e-6, 3.0]
OBLIQUE = [0.0494, 0.0366, 0.99810825]


def skip_unavailable(backend: str, device: str, dtype: torch.dtype | None = None) -> None:
    if backend == "triton":
        skip_unless_triton(device)
        if device == "cuda" and dtype == torch.float64:
            pytest.skip("float64 Triton kernels run under the interpreter only")


def skew(v: torch.Tensor) -> torch.Tensor:
    x, y, z = v.unbind(-1)
    zero = torch.zeros_like(x)
    return torch.stack(
        [
            torch.stack([zero, -z, y], -1),
            torch.stack([z, zero, -x], -1),
            torch.stack([-y, x, zero], -1),
        ],
        -2,
    )


def random_directions(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(n, 3, generator=g, dtype=torch.float64)
    return v / v.norm(dim=-1, keepdim=True)


def axis_angles(seed: int = 0) -> torch.Tensor:
    """[len(ANGLES) * 3, 3]: every test angle along three random directions."""
    directions = random_directions(3 * len(ANGLES), seed)
    angles = torch.tensor(ANGLES, dtype=torch.float64).repeat_interleave(3)
    return directions * angles[:, None]


def closed_form(a: torch.Tensor) -> torch.Tensor:
    """I + sin t [k]x + (1 - cos t) [k]x^2 with k = a / t, identity at t = 0."""
    t = a.norm(dim=-1)
    k = a / torch.where(t > 0, t, 1.0)[:, None]
    kx = skew(k)
    eye = torch.eye(3, dtype=a.dtype)
    return eye + torch.sin(t)[:, None, None] * kx + (1 - torch.cos(t))[:, None, None] * kx @ kx


# --- axis_angle_to_matrix -------------------------------------------------------------------


@pytest.mark.parametrize("backend_device", BACKENDS, ids=str)
def test_axis_angle_matches_closed_form_and_matrix_exp(backend_device):
    backend, device = backend_device
    skip_unavailable(backend, device, torch.float64)
    a = axis_angles()
    out = skelops.rotations.axis_angle_to_matrix(a.to(device), backend=backend).cpu()
    assert out.dtype == torch.float64 and out.shape == (a.shape[0], 3, 3)
    torch.testing.assert_close(out, closed_form(a), atol=1e-14, rtol=0)
    torch.testing.assert_close(out, torch.linalg.matrix_exp(skew(a)), atol=1e-14, rtol=0)
    assert torch.equal(out[:3], torch.eye(3, dtype=torch.float64).expand(3, 3, 3))
    eye = torch.eye(3, dtype=torch.float64)
    torch.testing.assert_close(out @ out.transpose(-1, -2), eye.expand_as(out), atol=1e-14, rtol=0)
    torch.testing.assert_close(torch.linalg.det(out), torch.ones(out.shape[0], dtype=out.dtype))


@pytest.mark.parametrize("backend_device", BACKENDS, ids=str)
def test_axis_angle_gradient_matches_matrix_exp(backend_device):
    """Finite and equal to matrix_exp's autograd at 0 exactly, at tiny and at large angles,
    with a non-contiguous input and upstream gradient."""
    backend, device = backend_device
    skip_unavailable(backend, device, torch.float64)
    base = axis_angles(seed=1)
    wide = torch.zeros(base.shape[0], 6, dtype=torch.float64)
    wide[:, ::2] = base
    upstream = torch.randn(base.shape[0], 3, 3, generator=torch.Generator().manual_seed(2))
    upstream = upstream.double().transpose(-1, -2)  # non-contiguous
    a = wide.to(device).requires_grad_()
    view = a[:, ::2]
    assert not view.is_contiguous()
    out = skelops.rotations.axis_angle_to_matrix(view, backend=backend)
    (grad,) = torch.autograd.grad(out, a, upstream.to(device))
    e = base.clone().requires_grad_()
    (expected,) = torch.autograd.grad(torch.linalg.matrix_exp(skew(e)), e, upstream)
    assert torch.isfinite(grad).all()
    torch.testing.assert_close(grad[:, ::2].cpu(), expected, atol=1e-12, rtol=0)
    assert grad[:, 1::2].abs().max() == 0


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_axis_angle_gradcheck(backend):
    a = axis_angles(seed=3)[::2].clone().requires_grad_()
    a.data[0] = 0.0  # exactly zero (finite differences straddle it)

    def f(x):
        return skelops.rotations.axis_angle_to_matrix(x, backend=backend)

    assert torch.autograd.gradcheck(f, (a,), eps=1e-6, atol=1e-8)


def test_axis_angle_batch_shapes_and_empty():
    a = torch.randn(2, 4, 5, 3, dtype=torch.float64)
    out = skelops.rotations.axis_angle_to_matrix(a)
    assert out.shape == (2, 4, 5, 3, 3)
    torch.testing.assert_close(out, reference.axis_angle_to_matrix(a), atol=1e-14, rtol=0)
    one = skelops.rotations.axis_angle_to_matrix(a[0, 0, 0])
    assert one.shape == (3, 3)
    for backend in ("cpu", "reference"):
        empty = torch.zeros(2, 0, 3, requires_grad=True)
        out = skelops.rotations.axis_angle_to_matrix(empty, backend=backend)
        assert out.shape == (2, 0, 3, 3)
        out.sum().backward()
        assert empty.grad.shape == (2, 0, 3)


@pytest.mark.parametrize("backend_device", BACKENDS, ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_axis_angle_dtypes(backend_device, dtype):
    backend, device = backend_device
    skip_unavailable(backend, device)
    a = (torch.randn(37, 3, generator=torch.Generator().manual_seed(4)) * 1.5).to(dtype)
    a[0] = 0
    out = skelops.rotations.axis_angle_to_matrix(a.to(device), backend=backend)
    assert out.dtype == dtype
    expected = reference.axis_angle_to_matrix(a.double())
    assert_close_scaled(out, expected, dtype)
    if dtype == torch.float32:  # and the gradient
        x = a.clone().to(device).requires_grad_()
        weight = torch.randn(37, 3, 3, generator=torch.Generator().manual_seed(5))
        out = skelops.rotations.axis_angle_to_matrix(x, backend=backend)
        out.pow(2).mul(weight.to(device)).sum().backward()
        x64 = a.double().requires_grad_()
        reference.axis_angle_to_matrix(x64).pow(2).mul(weight.double()).sum().backward()
        assert_close_scaled(x.grad, x64.grad, torch.float32)


@pytest.mark.parametrize("backend", ["cpu", "reference", "triton"])
def test_axis_angle_autocast_runs_in_float32(backend):
    skip_unavailable(backend, "cpu")
    a = torch.randn(6, 3, generator=torch.Generator().manual_seed(5)).to(torch.bfloat16)
    a.requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = skelops.rotations.axis_angle_to_matrix(a, backend=backend)
    assert out.dtype == torch.float32
    expected = reference.axis_angle_to_matrix(a.detach().double())
    assert_close_scaled(out, expected, torch.float32)
    out.sum().backward()
    assert a.grad.dtype == torch.bfloat16 and torch.isfinite(a.grad.float()).all()


def test_axis_angle_opcheck():
    a = axis_angles(seed=6)[::3].clone().requires_grad_()
    torch.library.opcheck(torch.ops.skelops.axis_angle_to_matrix.default, (a,))
    grad = torch.randn(a.shape[0], 3, 3, dtype=torch.float64)
    torch.library.opcheck(
        torch.ops.skelops.axis_angle_to_matrix_backward.default, (grad, a.detach())
    )


# --- dof_rotations ----------------------------------------------------------------------------


def skel_like_table(seed: int = 0) -> tuple[torch.Tensor, tuple[int, ...], int]:
    """D = 46 DoFs over 24 joints: joints of 0, 1, 2 and 3 DoFs, coordinate and oblique axes
    (SKEL's knee axis [0.0494, 0.0366, 0.99810825] among them)."""
    counts = [3, 3, 1, 2, 3, 1, 0, 3, 2, 1, 3, 1, 2, 3, 2, 1, 0, 3, 2, 2, 3, 1, 2, 2]
    assert len(counts) == 24 and sum(counts) == 46
    g = torch.Generator().manual_seed(seed)
    axes = []
    coordinate = torch.eye(3, dtype=torch.float64)
    for j, count in enumerate(counts):
        for k in range(count):
            if (j + k) % 3 == 0:
                oblique = torch.tensor(OBLIQUE, dtype=torch.float64)
                axes.append(oblique / oblique.norm())
            elif (j + k) % 3 == 1:
                axes.append(coordinate[(j + k) % 3])
            else:
                v = torch.randn(3, generator=g, dtype=torch.float64)
                axes.append(v / v.norm())
    dof_joints = tuple(j for j, count in enumerate(counts) for _ in range(count))
    return torch.stack(axes), dof_joints, 24


def skel_loop(pose: torch.Tensor, axes: torch.Tensor, dof_joints, num_joints) -> torch.Tensor:
    """SKEL's CustomJoint.q_to_rot per joint, per DoF in Python: Rp = Rp_i @ Rp, with each
    single-axis rotation from matrix_exp (independent of the Rodrigues code under test)."""
    n = pose.shape[0]
    out = torch.eye(3, dtype=pose.dtype).repeat(n, num_joints, 1, 1)
    for j in range(num_joints):
        rp = torch.eye(3, dtype=pose.dtype).repeat(n, 1, 1)
        for d, joint in enumerate(dof_joints):
            if joint == j:
                rp_i = torch.linalg.matrix_exp(skew(pose[:, d, None] * axes[d]))
                rp = rp_i @ rp
        out[:, j] = rp
    return out


def random_pose(n: int, d: int, seed: int, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return ((torch.rand(n, d, generator=g, dtype=torch.float64) * 2 - 1) * math.pi).to(dtype)


@pytest.mark.parametrize("backend_device", BACKENDS, ids=str)
def test_dof_rotations_matches_skel_loop(backend_device):
    backend, device = backend_device
    skip_unavailable(backend, device, torch.float64)
    axes, dof_joints, num_joints = skel_like_table()
    n = 3 if backend == "triton" and device == "cpu" else 7
    pose = random_pose(n, 46, seed=1)
    pose[0, :4] = 0.0
    expected = skel_loop(pose, axes, dof_joints, num_joints)
    out = skelops.rotations.dof_rotations(
        pose.to(device), axes.to(device), dof_joints, num_joints, backend=backend
    )
    assert out.shape == (n, 24, 3, 3) and out.dtype == torch.float64
    torch.testing.assert_close(out.cpu(), expected, atol=1e-13, rtol=0)
    eye = torch.eye(3, dtype=torch.float64)
    torch.testing.assert_close(out[:, 6].cpu(), eye.expand(n, 3, 3))  # 0 DoFs: identity
    torch.testing.assert_close(torch.linalg.det(out.cpu()), torch.ones(n, 24, dtype=out.dtype))


@pytest.mark.parametrize("backend_device", BACKENDS, ids=str)
def test_dof_rotations_gradients_match_reference(backend_device):
    """pose and axes gradients against autograd through the reference, with a non-contiguous
    pose, non-unit axes (the raw op uses them as given) and a non-contiguous upstream grad."""
    backend, device = backend_device
    skip_unavailable(backend, device, torch.float64)
    if backend == "reference":
        pytest.skip("the reference is the oracle")
    axes, dof_joints, num_joints = skel_like_table(seed=2)
    axes = axes[:9] * torch.linspace(0.7, 1.3, 9, dtype=torch.float64)[:, None]
    dof_joints, num_joints = dof_joints[:9], 5
    n = 3 if backend == "triton" and device == "cpu" else 70
    pose_wide = random_pose(n, 18, seed=3)
    upstream = torch.randn(num_joints, 3, 3, n, generator=torch.Generator().manual_seed(4))
    upstream = upstream.double().permute(3, 0, 1, 2)
    grads = []
    for b in (backend, "reference"):
        p = pose_wide.clone().to(device).requires_grad_()
        a = axes.clone().to(device).requires_grad_()
        if b == "reference":
            out = reference.dof_rotations(p[:, ::2], a, dof_joints, num_joints)
        else:
            op = (
                torch.ops.skelops.dof_rotations_triton
                if b == "triton"
                else torch.ops.skelops.dof_rotations
            )
            out = op(p[:, ::2], a, list(dof_joints), num_joints)
        grads.append(torch.autograd.grad(out, (p, a), upstream.to(device)))
    for actual, expected in zip(grads[0], grads[1], strict=True):
        assert expected.abs().max() > 0.1
        assert_close_scaled(actual, expected, torch.float64)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_dof_rotations_gradcheck(backend):
    axes = torch.tensor(
        [[1.0, 0.0, 0.0], [0.0, 0.8, 0.6], OBLIQUE, [0.6, 0.0, 0.8], [0.0, 0.0, 1.0]],
        dtype=torch.float64,
    )
    axes = axes * torch.tensor([[1.0], [1.2], [0.9], [1.0], [1.1]], dtype=torch.float64)
    axes.requires_grad_()
    pose = random_pose(2, 5, seed=5).requires_grad_()
    dof_joints = [0, 0, 0, 2, 2]  # joint 1 has none, joint 3 none

    def f(p, a):
        if backend == "reference":
            return reference.dof_rotations(p, a, dof_joints, 4)
        return torch.ops.skelops.dof_rotations(p, a, dof_joints, 4)

    assert torch.autograd.gradcheck(f, (pose, axes), eps=1e-6, atol=1e-8)


def test_dof_rotations_normalises_axes_and_batches():
    axes, dof_joints, num_joints = skel_like_table(seed=6)
    pose = random_pose(6, 46, seed=7).view(2, 3, 46)
    out = skelops.rotations.dof_rotations(pose, axes * 2.5, dof_joints, num_joints)
    assert out.shape == (2, 3, 24, 3, 3)
    expected = reference.dof_rotations(pose.reshape(6, 46), axes, dof_joints, num_joints)
    torch.testing.assert_close(out.reshape(6, 24, 3, 3), expected, atol=1e-14, rtol=0)
    # The axes' gradient is that of the direction: orthogonal to the axis.
    scaled = (axes * 2.5).requires_grad_()
    skelops.rotations.dof_rotations(pose, scaled, dof_joints, num_joints).pow(3).sum().backward()
    radial = (scaled.grad * axes).sum(-1)
    assert radial.abs().max() < 1e-12 and scaled.grad.abs().max() > 1e-3


def test_dof_rotations_empty_and_degenerate():
    axes, dof_joints, num_joints = skel_like_table()
    for backend in ("cpu", "reference"):
        pose = torch.zeros(0, 46, dtype=torch.float64, requires_grad=True)
        a = axes.clone().requires_grad_()
        out = skelops.rotations.dof_rotations(pose, a, dof_joints, num_joints, backend=backend)
        assert out.shape == (0, 24, 3, 3)
        out.sum().backward()
        assert pose.grad.shape == (0, 46) and torch.equal(a.grad, torch.zeros_like(axes))
    # No DoFs at all: every joint is the identity; no joints: an empty result.
    out = skelops.rotations.dof_rotations(torch.zeros(2, 0), torch.zeros(0, 3), [], 3)
    torch.testing.assert_close(out, torch.eye(3).expand(2, 3, 3, 3))
    assert skelops.rotations.dof_rotations(torch.zeros(2, 0), torch.zeros(0, 3), [], 0).shape == (
        2, 0, 3, 3,
    )  # fmt: skip


@pytest.mark.parametrize("backend_device", BACKENDS, ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_dof_rotations_dtypes(backend_device, dtype):
    backend, device = backend_device
    skip_unavailable(backend, device)
    axes, dof_joints, num_joints = skel_like_table(seed=8)
    n = 2 if backend == "triton" and device == "cpu" else 9
    pose = random_pose(n, 46, seed=9, dtype=dtype)
    out = skelops.rotations.dof_rotations(
        pose.to(device), axes.to(device, dtype), dof_joints, num_joints, backend=backend
    )
    assert out.dtype == dtype
    # The inputs rounded to dtype, then float64 math.
    axes_rounded = axes.to(dtype).double()
    unit = axes_rounded / axes_rounded.norm(dim=-1, keepdim=True)
    expected = reference.dof_rotations(pose.double(), unit, dof_joints, num_joints)
    assert_close_scaled(out, expected, dtype)


@pytest.mark.parametrize("backend", ["cpu", "reference", "triton"])
def test_dof_rotations_autocast_runs_in_float32(backend):
    skip_unavailable(backend, "cpu")
    axes, dof_joints, num_joints = skel_like_table(seed=10)
    pose = random_pose(2, 46, seed=11, dtype=torch.bfloat16).requires_grad_()
    table = DofTable(axes, dof_joints, num_joints)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = table.rotations(pose, backend=backend)
    assert out.dtype == torch.float32
    expected = reference.dof_rotations(
        pose.detach().double(), axes.to(torch.bfloat16).double(), dof_joints, num_joints
    )
    # bfloat16 axes are not unit any more; float32 math on them.
    assert_close_scaled(out, expected, torch.float32)
    out.sum().backward()
    assert pose.grad.dtype == torch.bfloat16


def test_dof_backward_deterministic_across_thread_counts():
    axes, dof_joints, num_joints = skel_like_table(seed=12)
    pose = random_pose(1000, 46, seed=13, dtype=torch.float32)
    grad = torch.randn(1000, 24, 3, 3, generator=torch.Generator().manual_seed(14))
    threads = torch.get_num_threads()
    results = []
    try:
        for count in (1, 2, 1):
            torch.set_num_threads(count)
            results.append(
                torch.ops.skelops.dof_rotations_backward(
                    grad, pose, axes.float(), list(dof_joints), num_joints, [True, True]
                )
            )
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        assert torch.equal(other[0], results[0][0]) and torch.equal(other[1], results[0][1])
    p64 = pose.double().requires_grad_()
    a64 = axes.clone().requires_grad_()
    expected = torch.autograd.grad(
        reference.dof_rotations(p64, a64, dof_joints, 24), (p64, a64), grad.double()
    )
    assert_close_scaled(results[0][0], expected[0], torch.float32)
    torch.testing.assert_close(results[0][1].double(), expected[1], rtol=1e-5, atol=1e-3)


def test_dof_backward_output_mask():
    axes, dof_joints, num_joints = skel_like_table(seed=15)
    pose = random_pose(3, 46, seed=16)
    grad = torch.randn(3, 24, 3, 3, dtype=torch.float64)
    full = torch.ops.skelops.dof_rotations_backward(
        grad, pose, axes, list(dof_joints), num_joints, [True, True]
    )
    for mask in ([True, False], [False, True], [False, False]):
        part = torch.ops.skelops.dof_rotations_backward(
            grad, pose, axes, list(dof_joints), num_joints, mask
        )
        for wanted, got, want in zip(mask, part, full, strict=True):
            assert torch.equal(got, want) if wanted else got.numel() == 0


def test_dof_opcheck():
    axes, dof_joints, num_joints = skel_like_table(seed=17)
    axes, dof_joints = axes[:7], list(dof_joints[:7])
    pose = random_pose(3, 7, seed=18).requires_grad_()
    a = axes.clone().requires_grad_()
    torch.library.opcheck(torch.ops.skelops.dof_rotations.default, (pose, a, dof_joints, 4))
    grad = torch.randn(3, 4, 3, 3, dtype=torch.float64)
    torch.library.opcheck(
        torch.ops.skelops.dof_rotations_backward.default,
        (grad, pose.detach(), axes, dof_joints, 4, [True, True]),
    )


def test_compile_fullgraph():
    axes, dof_joints, num_joints = skel_like_table(seed=19)
    table = DofTable(axes.float(), dof_joints, num_joints)

    def loss(pose, axis_angle, a):
        r = table.rotations(pose) @ skelops.rotations.axis_angle_to_matrix(axis_angle)
        r = r + skelops.rotations.dof_rotations(pose, a, dof_joints, num_joints)
        return (r * r.sum(-1, keepdim=True)).sum()

    pose = random_pose(4, 46, seed=20, dtype=torch.float32).requires_grad_()
    axis_angle = torch.randn(4, 24, 3, requires_grad=True)
    a = axes.float().requires_grad_()
    compiled = torch.compile(loss, fullgraph=True, backend="aot_eager")
    eager = loss(pose, axis_angle, a)
    eager_grads = torch.autograd.grad(eager, (pose, axis_angle, a))
    value = compiled(pose, axis_angle, a)
    grads = torch.autograd.grad(value, (pose, axis_angle, a))
    torch.testing.assert_close(value, eager)
    for got, want in zip(grads, eager_grads, strict=True):
        torch.testing.assert_close(got, want)


# --- bad input --------------------------------------------------------------------------------


def _dof_call(**overrides):
    axes, dof_joints, num_joints = skel_like_table()
    args = dict(pose=torch.zeros(2, 46, dtype=torch.float64), axes=axes, dof_joints=dof_joints,
                num_joints=num_joints)  # fmt: skip
    args.update(overrides)
    return lambda: skelops.rotations.dof_rotations(**args)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: skelops.rotations.axis_angle_to_matrix([0.0, 0.0, 1.0]), TypeError, "axis_angle"),
        (
            lambda: skelops.rotations.axis_angle_to_matrix(torch.zeros(4, 2)),
            ValueError,
            r"axis_angle must be \[\.\.\., 3\]",
        ),
        (
            lambda: skelops.rotations.axis_angle_to_matrix(torch.zeros(())),
            ValueError,
            "axis_angle must be",
        ),
        (
            lambda: skelops.rotations.axis_angle_to_matrix(torch.zeros(4, 3, dtype=torch.int64)),
            TypeError,
            "floating",
        ),
        (
            lambda: skelops.rotations.axis_angle_to_matrix(torch.zeros(4, 3), backend="gpu"),
            ValueError,
            "backend",
        ),
        (
            lambda: skelops.rotations.axis_angle_to_matrix(torch.zeros(4, 3), backend="cuda"),
            ValueError,
            "backend='cuda' is not available",
        ),
        (_dof_call(pose=torch.zeros(())), ValueError, "pose must be"),
        (_dof_call(pose=torch.zeros(2, 46, dtype=torch.int32)), TypeError, "pose must be a float"),
        (
            _dof_call(pose=torch.zeros(2, 45, dtype=torch.float64)),
            ValueError,
            r"axes must be \[D, 3\] = \[45, 3\]",
        ),
        (_dof_call(axes=torch.zeros(46, 3)), TypeError, "axes must have the same dtype"),
        (
            _dof_call(axes=torch.zeros(46, 3, dtype=torch.float64, device="meta")),
            ValueError,
            "axes must be on the same device",
        ),
        (_dof_call(axes=torch.zeros(46, 3, 1, dtype=torch.float64)), ValueError, "axes must be"),
        (
            _dof_call(axes=torch.zeros(46, 3, dtype=torch.float64)),
            ValueError,
            r"axes must be non-zero, got axes\[0\]",
        ),
        (_dof_call(dof_joints=(0,) * 45), ValueError, "dof_joints must have D = 46 entries"),
        (
            _dof_call(dof_joints=torch.zeros(46, dtype=torch.int64)),
            TypeError,
            "dof_joints must be a sequence",
        ),
        (_dof_call(dof_joints=(0.0,) * 46), TypeError, "dof_joints must be a sequence of ints"),
        (
            _dof_call(dof_joints=(0,) * 45 + (24,)),
            ValueError,
            r"dof_joints must hold joint indices in \[0, num_joints\) = \[0, 24\), "
            r"got dof_joints\[45\] = 24",
        ),
        (_dof_call(dof_joints=(-1,) + (0,) * 45), ValueError, r"dof_joints\[0\] = -1"),
        (
            _dof_call(dof_joints=(1, 0) + (2,) * 44),
            ValueError,
            r"non-decreasing, got dof_joints\[0\] = 1 > dof_joints\[1\] = 0",
        ),
        (_dof_call(num_joints=-1), ValueError, "num_joints must be >= 0"),
        (_dof_call(num_joints=24.0), TypeError, "num_joints must be an int"),
    ],
)
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize(
    "call, error, match",
    [
        (
            lambda: torch.ops.skelops.axis_angle_to_matrix(torch.zeros(4, 3, 1)),
            ValueError,
            r"axis_angle must be \[B, 3\]",
        ),
        (
            lambda: torch.ops.skelops.axis_angle_to_matrix(torch.zeros(4, 3, dtype=torch.int32)),
            TypeError,
            "axis_angle must be float32",
        ),
        (
            lambda: torch.ops.skelops.axis_angle_to_matrix_backward(
                torch.zeros(4, 3, 3), torch.zeros(5, 3)
            ),
            ValueError,
            r"grad must be \[B, 3, 3\] = \[5, 3, 3\]",
        ),
        (
            lambda: torch.ops.skelops.axis_angle_to_matrix_backward(
                torch.zeros(5, 3, 3), torch.zeros(5, 3).double()
            ),
            TypeError,
            "grad dtype",
        ),
        (
            lambda: torch.ops.skelops.dof_rotations(
                torch.zeros(2, 3), torch.ones(3, 3), [0, 1, 3], 3
            ),
            ValueError,
            r"dof_joints must hold joint indices in \[0, num_joints\) = \[0, 3\), "
            r"got dof_joints\[2\] = 3",
        ),
        (
            lambda: torch.ops.skelops.dof_rotations(
                torch.zeros(2, 3), torch.ones(3, 3), [0, 2, 1], 3
            ),
            ValueError,
            "non-decreasing",
        ),
        (
            lambda: torch.ops.skelops.dof_rotations(torch.zeros(2, 3), torch.ones(3, 3), [0, 1], 3),
            ValueError,
            "dof_joints must have D = 3",
        ),
        (
            lambda: torch.ops.skelops.dof_rotations(
                torch.zeros(2, 3), torch.ones(2, 3), [0, 1, 1], 3
            ),
            ValueError,
            r"axes must be \[D, 3\] = \[3, 3\]",
        ),
        (
            lambda: torch.ops.skelops.dof_rotations(
                torch.zeros(2, 3), torch.ones(3, 3).double(), [0, 1, 1], 3
            ),
            TypeError,
            "axes dtype",
        ),
        (
            lambda: torch.ops.skelops.dof_rotations(
                torch.zeros(2, 3), torch.ones(3, 3), [0, 1, 1], -2
            ),
            ValueError,
            "num_joints must be >= 0",
        ),
        (
            lambda: torch.ops.skelops.dof_rotations_backward(
                torch.zeros(2, 2, 3, 3),
                torch.zeros(2, 3),
                torch.ones(3, 3),
                [0, 1, 1],
                3,
                [True, True],
            ),
            ValueError,
            r"grad must be \[N, num_joints, 3, 3\] = \[2, 3, 3, 3\]",
        ),
    ],
)
def test_raw_op_checks(call, error, match):
    """The compiled ops check their arguments themselves (direct calls never read out of
    bounds)."""
    with pytest.raises(error, match=match):
        call()


# --- plain-PyTorch conversions ------------------------------------------------------------------


def test_matrix_to_axis_angle_round_trip():
    directions = random_directions(40, seed=21)
    angles = torch.cat(
        [
            torch.tensor(
                [0.0, 1e-12, 1e-7, 1e-3, math.pi - 1e-3, math.pi - 1e-6, math.pi - 1e-9],
                dtype=torch.float64,
            ),
            torch.rand(33, generator=torch.Generator().manual_seed(22), dtype=torch.float64)
            * math.pi,
        ]
    ).double()
    a = directions * angles[:, None]
    matrices = reference.axis_angle_to_matrix(a)
    back = rotations.matrix_to_axis_angle(matrices)
    assert back.shape == (40, 3)
    assert (back.norm(dim=-1) <= math.pi + 1e-12).all()
    far = angles < math.pi - 1e-4
    torch.testing.assert_close(back[far], a[far], atol=1e-12, rtol=0)
    # Near pi the axis' sign of an almost-pi rotation is determined: still the same vector;
    # compare the rotations (the conditioning of the axis there is 1 / sin(angle)).
    torch.testing.assert_close(reference.axis_angle_to_matrix(back), matrices, atol=1e-12, rtol=0)
    near = ~far
    cosine = (back[near] * a[near]).sum(-1) / (back[near].norm(dim=-1) * a[near].norm(dim=-1))
    assert (cosine > 1 - 1e-6).all()
    # Exactly pi: either sign is the rotation.
    half_turn = rotations.matrix_to_axis_angle(torch.diag(torch.tensor([1.0, -1.0, -1.0])))
    assert torch.allclose(half_turn.abs(), torch.tensor([math.pi, 0.0, 0.0]), atol=1e-6)
    # Batch shapes and gradients.
    m = matrices.view(4, 10, 3, 3)[:, 1:].clone().requires_grad_()
    rotations.matrix_to_axis_angle(m).sum().backward()
    assert torch.isfinite(m.grad).all()


def test_rotation_6d_round_trip_and_orthonormalisation():
    matrices = reference.axis_angle_to_matrix(random_directions(20, seed=23) * 2.0)
    six = rotations.matrix_to_rotation_6d(matrices)
    assert six.shape == (20, 6)
    torch.testing.assert_close(six[:, :3], matrices[:, 0])  # rows (pytorch3d convention)
    torch.testing.assert_close(rotations.rotation_6d_to_matrix(six), matrices)
    x = torch.randn(5, 7, 6, generator=torch.Generator().manual_seed(24), dtype=torch.float64)
    r = rotations.rotation_6d_to_matrix(x)
    assert r.shape == (5, 7, 3, 3)
    eye = torch.eye(3, dtype=torch.float64)
    torch.testing.assert_close(r @ r.transpose(-1, -2), eye.expand_as(r))
    torch.testing.assert_close(torch.linalg.det(r), torch.ones(5, 7, dtype=r.dtype))
    first = x[..., :3] / x[..., :3].norm(dim=-1, keepdim=True)
    torch.testing.assert_close(r[..., 0, :], first)
    # The second row lies in the plane of the two inputs, on a2's side of b1.
    assert ((r[..., 1, :] * x[..., 3:]).sum(-1) > 0).all()
    torch.testing.assert_close((r[..., 2, :] * x[..., 3:]).sum(-1), torch.zeros(5, 7).double())
    with pytest.raises(ValueError, match=r"x must be \[\.\.\., 6\]"):
        rotations.rotation_6d_to_matrix(torch.zeros(3, 5))
    with pytest.raises(ValueError, match=r"matrix must be \[\.\.\., 3, 3\]"):
        rotations.matrix_to_rotation_6d(torch.zeros(3, 2, 3))


@pytest.mark.parametrize("convention", ["XYZ", "ZYX", "YXZ", "XZX", "ZXZ"])
def test_euler_angles_are_composed_single_axis_rotations(convention):
    angles = torch.randn(6, 3, generator=torch.Generator().manual_seed(25), dtype=torch.float64)
    out = rotations.euler_angles_to_matrix(angles, convention)
    basis = {"X": 0, "Y": 1, "Z": 2}
    expected = torch.eye(3, dtype=torch.float64).expand(6, 3, 3)
    for k, axis in enumerate(convention):
        unit = torch.zeros(3, dtype=torch.float64)
        unit[basis[axis]] = 1.0
        expected = expected @ torch.linalg.matrix_exp(skew(angles[:, k, None] * unit))
    torch.testing.assert_close(out, expected)
    single = rotations.euler_angles_to_matrix(torch.tensor([0.0, 0.0, 0.3]), "XYZ")
    c, s = math.cos(0.3), math.sin(0.3)
    torch.testing.assert_close(single[:2, :2], torch.tensor([[c, -s], [s, c]]))
    for bad in ("XXY", "XY", "ABC", "xyz"):
        with pytest.raises(ValueError, match="convention must be"):
            rotations.euler_angles_to_matrix(angles, bad)
    with pytest.raises(ValueError, match=r"angles must be \[\.\.\., 3\]"):
        rotations.euler_angles_to_matrix(angles[:, :2])


# --- DofTable -----------------------------------------------------------------------------------


def test_dof_table_from_joints_rotations_and_clamp():
    joints = [[[1, 0, 0], [0, 1, 0], [0, 0, 1]], [], [OBLIQUE], [[0, 0, 2.0], [1, 0, 0]]]
    limits = [[-1.0, 1.0], [float("nan"), 0.5], [-0.2, float("nan")], [0.0, 2.0], [-3.0, 3.0],
              [float("nan"), float("nan")]]  # fmt: skip
    names = ("hip_x", "hip_y", "hip_z", "knee", "ankle_z", "ankle_x")
    table = DofTable.from_joints(joints, names=names, limits=limits)
    assert table.num_dofs == 6 and table.num_joints == 4 and table.dof_joints == (0, 0, 0, 2, 3, 3)
    assert table.axes.dtype == torch.float64 and table.names == names
    torch.testing.assert_close(table.axes[4], torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
    pose = random_pose(5, 6, seed=26, dtype=torch.float32)
    out = table.rotations(pose)
    expected = skel_loop(pose.double(), table.axes, table.dof_joints, 4)
    assert out.dtype == torch.float32 and out.shape == (5, 4, 3, 3)
    assert_close_scaled(out, expected, torch.float32)
    assert len(table._device_axes) == 1
    table.rotations(pose.double())
    table.rotations(pose)
    assert len(table._device_axes) == 2  # cached per (device, dtype)
    clamped = table.clamp(torch.full((2, 6), 5.0, dtype=torch.float64))
    assert clamped[0].tolist() == [1.0, 0.5, 5.0, 2.0, 3.0, 5.0]
    low = table.clamp(torch.full((6,), -5.0, dtype=torch.float64))
    assert low.tolist() == [-1.0, -5.0, -0.2, 0.0, -3.0, -5.0]
    unlimited = DofTable.from_joints(joints)
    assert unlimited.clamp(pose) is pose
    with pytest.raises(ValueError, match=r"pose must be \[\.\.\., D\] with D = 6"):
        table.clamp(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="norm 0.0"):
        DofTable.from_joints([[[0, 0, 0]]])


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(axes=torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.1]])), ValueError,
         r"axes must be unit vectors .* \|axes\[1\]\| = 1.00498756 for DoF 1 \('b'\)"),
        (dict(axes=torch.eye(3)[:2, :2]), ValueError, r"axes must be \[D, 3\]"),
        (dict(axes=torch.eye(3, dtype=torch.int64)[:2]), TypeError, "axes must be a floating"),
        (dict(dof_joints=(1, 0)), ValueError, "non-decreasing"),
        (dict(dof_joints=(0, 3)), ValueError, r"joint indices in \[0, num_joints\) = \[0, 3\)"),
        (dict(dof_joints=(0,)), ValueError, "dof_joints must have D = 2 entries"),
        (dict(num_joints=-1), ValueError, "num_joints must be >= 0"),
        (dict(names=("a",)), ValueError, "names must be D = 2 strings"),
        (dict(limits=torch.zeros(2, 3)), ValueError, r"limits must be \[D, 2\] = \[2, 2\]"),
        (dict(limits=torch.tensor([[0.0, 1.0], [1.0, -1.0]])), ValueError, "lower <= upper"),
    ],
)  # fmt: skip
def test_dof_table_validation(kwargs, error, match):
    args = dict(axes=torch.eye(3)[:2], dof_joints=(0, 2), num_joints=3, names=("a", "b"))
    args.update(kwargs)
    with pytest.raises(error, match=match):
        DofTable(**args)


def test_dof_table_accepts_skel_axes():
    """SKEL's oblique axes are unit within 1e-9: accepted as they are."""
    table = DofTable(torch.tensor([OBLIQUE]), (0,), 1)
    assert table.num_dofs == 1
    with pytest.raises(ValueError, match=r"pose must be \[\.\.\., D\] with D = 1"):
        table.rotations(torch.zeros(3, 2))


# --- CUDA (runs when a GPU is lent) ---------------------------------------------------------------


@CUDA_MARKS
def test_cuda_opcheck_and_determinism():
    axes, dof_joints, num_joints = skel_like_table(seed=27)
    pose = random_pose(3000, 46, seed=28, dtype=torch.float32).cuda().requires_grad_()
    a = axes.float().cuda().requires_grad_()
    torch.library.opcheck(
        torch.ops.skelops.dof_rotations.default, (pose[:5], a, list(dof_joints), num_joints)
    )
    aa = torch.randn(5, 3, device="cuda", requires_grad=True)
    torch.library.opcheck(torch.ops.skelops.axis_angle_to_matrix.default, (aa,))
    grad = torch.randn(3000, 24, 3, 3, device="cuda")
    runs = [
        torch.ops.skelops.dof_rotations_backward(
            grad, pose.detach(), a.detach(), list(dof_joints), num_joints, [True, True]
        )
        for _ in range(2)
    ]
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])
    cpu = torch.ops.skelops.dof_rotations_backward(
        grad.cpu(), pose.detach().cpu(), a.detach().cpu(), list(dof_joints), num_joints,
        [True, True],
    )  # fmt: skip
    torch.testing.assert_close(runs[0][0].cpu(), cpu[0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(runs[0][1].cpu(), cpu[1], rtol=1e-4, atol=1e-2)


@CUDA_MARKS
def test_triton_opcheck_on_gpu():
    skip_unless_triton("cuda")
    aa = torch.randn(5, 3, device="cuda", requires_grad=True)
    torch.library.opcheck(torch.ops.skelops.axis_angle_to_matrix_triton.default, (aa,))
    axes, dof_joints, num_joints = skel_like_table(seed=29)
    pose = random_pose(3, 46, seed=30, dtype=torch.float32).cuda().requires_grad_()
    a = axes.float().cuda().requires_grad_()
    torch.library.opcheck(
        torch.ops.skelops.dof_rotations_triton.default, (pose, a, list(dof_joints), num_joints)
    )
