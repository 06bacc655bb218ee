"""skelops.forward_kinematics: every backend against the reference (and the reference against
smplx's 4 x 4 chain), gradients, gradcheck, opcheck, compile, dtypes, autocast, determinism and
bad input (../shared/GUIDE.md section 2). Launcher-level Triton cases are in
test_forward_kinematics_triton_kernels.py."""

from __future__ import annotations

import pytest
import torch
from helpers import assert_close_scaled, skip_unless_triton

import skelops
from skelops import reference
from skelops.ops.forward_kinematics import (
    KinematicsResult,
    check_parents,
    check_rotation_matrices,
    topological_order,
)

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

# SMPL's 24-joint tree (depth 8), a 40-joint chain, a forest with two roots whose joint 6 hangs
# off joint 0 after the second tree (a parent that is not the previous joint), one joint.
SMPL = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21]
CHAIN = [-1, *range(39)]
FOREST = [-1, 0, 1, -1, 3, 3, 0]
SINGLE = [-1]
TREES = {"smpl": SMPL, "chain40": CHAIN, "forest": FOREST, "single": SINGLE}

# (backend, device) pairs of the compiled kernels; Triton (the CPU interpreter is slow) has
# its own, smaller cases.
COMPILED = [("cpu", "cpu"), pytest.param(("cuda", "cuda"), marks=CUDA)]
TRITON = [("triton", "cpu"), pytest.param(("triton", "cuda"), marks=CUDA)]


def random_rotations(*shape: int, dtype=torch.float64, seed: int = 0) -> torch.Tensor:
    """Uniformly random rotations ``[*shape, 3, 3]`` (QR of Gaussian matrices, det +1)."""
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(*shape, 3, 3, generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)
    q = q * torch.linalg.det(q).sign()[..., None, None]
    return q.to(dtype)


def make_inputs(
    batch: tuple[int, ...],
    parents: list[int],
    shared: bool,
    dtype=torch.float64,
    device="cpu",
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed + 1)
    j = len(parents)
    rotations = random_rotations(*batch, j, seed=seed)
    rest_shape = (j, 3) if shared else (*batch, j, 3)
    rest = torch.randn(rest_shape, generator=g, dtype=torch.float64)
    return rotations.to(device, dtype), rest.to(device, dtype)


def skip_unavailable(backend: str, device: str) -> None:
    if backend == "triton":
        skip_unless_triton(device)


def smplx_chain(rotations, rest, parents):
    """smplx's batch_rigid_transform written inline: 4 x 4 transforms [R_j | r_j - r_q]
    chained by matrix products; posed joints are the chained translations and the skinning
    transforms subtract G_j r_j."""
    *batch, j, _, _ = rotations.shape
    rest = rest.expand(*batch, j, 3)
    relative = rest.clone()
    for k, q in enumerate(parents):
        if q >= 0:
            relative[..., k, :] = rest[..., k, :] - rest[..., q, :]
    bottom = torch.zeros(*batch, j, 1, 4, dtype=rotations.dtype)
    bottom[..., 3] = 1
    local = torch.cat([torch.cat([rotations, relative.unsqueeze(-1)], -1), bottom], -2)
    chain = []
    for k, q in enumerate(parents):
        chain.append(local[..., k, :, :] if q < 0 else chain[q] @ local[..., k, :, :])
    transforms = torch.stack(chain, dim=-3)
    posed = transforms[..., :3, 3]
    homogeneous = torch.cat([rest, torch.zeros(*batch, j, 1, dtype=rest.dtype)], -1)
    moved = (transforms @ homogeneous.unsqueeze(-1)).squeeze(-1)
    relative_transforms = transforms - torch.nn.functional.pad(moved.unsqueeze(-1), (3, 0))
    return transforms[..., :3, :3], posed, relative_transforms[..., :3, 3]


@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("shared", [True, False])
def test_reference_matches_smplx_4x4_chain(tree, shared):
    parents = TREES[tree]
    rotations, rest = make_inputs((2, 3), parents, shared, seed=3)
    expected = smplx_chain(rotations, rest, parents)
    out = reference.forward_kinematics(rotations, rest, parents)
    for actual, wanted in zip(out, expected, strict=True):
        torch.testing.assert_close(actual, wanted, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend_device", COMPILED, ids=str)
@pytest.mark.parametrize("tree", TREES)
@pytest.mark.parametrize("batch", [0, 1, 5, 33])
@pytest.mark.parametrize("shared", [True, False])
def test_compiled_matches_reference(backend_device, tree, batch, shared):
    backend, device = backend_device
    parents = TREES[tree]
    rotations, rest = make_inputs((batch,), parents, shared, device=device, seed=batch)
    out = skelops.forward_kinematics(rotations, rest, parents, backend=backend)
    expected = reference.forward_kinematics(rotations, rest, parents)
    assert isinstance(out, KinematicsResult)
    for actual, wanted in zip(out, expected, strict=True):
        assert actual.shape == wanted.shape and actual.dtype == torch.float64
        if batch > 0:
            assert_close_scaled(actual, wanted, torch.float64)


@pytest.mark.parametrize("backend_device", TRITON, ids=str)
@pytest.mark.parametrize("tree, batch", [("forest", 5), ("single", 1), ("forest", 0)])
@pytest.mark.parametrize("shared", [True, False])
def test_triton_matches_reference(backend_device, tree, batch, shared):
    backend, device = backend_device
    skip_unavailable(backend, device)
    parents = TREES[tree]
    rotations, rest = make_inputs((batch,), parents, shared, device=device, seed=7)
    out = skelops.forward_kinematics(rotations, rest, parents, backend=backend)
    expected = reference.forward_kinematics(rotations, rest, parents)
    for actual, wanted in zip(out, expected, strict=True):
        assert actual.shape == wanted.shape
        if batch > 0:
            assert_close_scaled(actual, wanted, torch.float64)


@pytest.mark.parametrize("backend_device", [*COMPILED, *TRITON], ids=str)
def test_non_contiguous_views_and_batch_dims(backend_device):
    """Transposed and sliced inputs with two leading batch dimensions."""
    backend, device = backend_device
    skip_unavailable(backend, device)
    parents = FOREST
    j = len(parents)
    # [J, 2, 3, 3, 3] storage viewed as [2, 3, J, 3, 3] with transposed matrices.
    base = random_rotations(j, 2, 3, seed=11).to(device)
    rotations = base.permute(1, 2, 0, 4, 3)
    rest = torch.randn(2, 3, j, 6, dtype=torch.float64, device=device)[..., ::2]
    assert not rotations.is_contiguous() and not rest.is_contiguous()
    out = skelops.forward_kinematics(rotations, rest, parents, backend=backend)
    expected = reference.forward_kinematics(rotations.contiguous(), rest.contiguous(), parents)
    assert out.global_rotations.shape == (2, 3, j, 3, 3)
    assert out.posed_joints.shape == out.global_translations.shape == (2, 3, j, 3)
    for actual, wanted in zip(out, expected, strict=True):
        assert_close_scaled(actual, wanted, torch.float64)
    shared = torch.randn(j, 5, dtype=torch.float64, device=device)[:, 1:4]
    out = skelops.forward_kinematics(rotations, shared, parents, backend=backend)
    expected = reference.forward_kinematics(rotations, shared, parents)
    for actual, wanted in zip(out, expected, strict=True):
        assert_close_scaled(actual, wanted, torch.float64)


def gradients(backend, rotations, rest, parents, used, weights):
    r = rotations.clone().requires_grad_(True)
    x = rest.clone().requires_grad_(True)
    out = skelops.forward_kinematics(r, x, parents, backend=backend)
    loss = sum((out[i] * weights[i]).sum() for i in used)
    return torch.autograd.grad(loss, (r, x), allow_unused=True, materialize_grads=True)


USED = [(0, 1, 2), (1,), (2,), (0,), (0, 2)]


@pytest.mark.parametrize("backend_device", [*COMPILED, *TRITON], ids=str)
@pytest.mark.parametrize("shared", [True, False])
def test_gradients_match_reference(backend_device, shared):
    """Gradients against autograd through the reference, for several subsets of the outputs
    (the others' gradients arrive as None)."""
    backend, device = backend_device
    skip_unavailable(backend, device)
    small = backend == "triton" and device == "cpu"
    parents, batch = (FOREST, 3) if small else (SMPL, 9)
    rotations, rest = make_inputs((batch,), parents, shared, device=device, seed=5)
    g = torch.Generator().manual_seed(2)
    expected_shapes = reference.forward_kinematics(rotations, rest, parents)
    weights = [torch.randn(o.shape, generator=g, dtype=o.dtype).to(device) for o in expected_shapes]
    for used in USED[:2] if small else USED:
        actual = gradients(backend, rotations, rest, parents, used, weights)
        expected = gradients("reference", rotations, rest, parents, used, weights)
        for a, e in zip(actual, expected, strict=True):
            assert a.shape == e.shape
            assert_close_scaled(a, e, torch.float64)


@pytest.mark.parametrize("shared", [True, False])
def test_gradcheck(shared):
    rotations, rest = make_inputs((3,), FOREST, shared, seed=9)
    rotations.requires_grad_(True)
    rest.requires_grad_(True)

    def run(r, x):
        return tuple(skelops.forward_kinematics(r, x, FOREST, backend="cpu"))

    assert torch.autograd.gradcheck(run, (rotations, rest))


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
@pytest.mark.parametrize("shared", [True, False])
def test_opcheck(device, shared):
    rotations, rest = make_inputs((4,), FOREST, shared, device=device, seed=12)
    rotations.requires_grad_(True)
    rest.requires_grad_(True)
    torch.library.opcheck(torch.ops.skelops.forward_kinematics.default, (rotations, rest, FOREST))


def test_opcheck_backward_op():
    rotations, rest = make_inputs((3,), FOREST, True, seed=13)
    rotations_out = reference.forward_kinematics(rotations, rest, FOREST)[0]
    grad = torch.randn(3, len(FOREST), 3, dtype=torch.float64)
    for mask in ([True, True], [False, True], [True, False]):
        torch.library.opcheck(
            torch.ops.skelops.forward_kinematics_backward.default,
            (None, grad, grad.clone(), rotations, rest, FOREST, rotations_out, mask),
        )


def test_compile_fullgraph():
    rotations, rest = make_inputs((4,), SMPL, True, dtype=torch.float32, seed=14)
    rotations.requires_grad_(True)
    rest.requires_grad_(True)

    def loss(r, x):
        out = skelops.forward_kinematics(r, x, SMPL)
        return (out.posed_joints**2).sum() + out.global_translations.sum()

    compiled = torch.compile(loss, fullgraph=True, backend="aot_eager")
    eager_value = loss(rotations, rest)
    eager_grads = torch.autograd.grad(eager_value, (rotations, rest))
    value = compiled(rotations, rest)
    grads = torch.autograd.grad(value, (rotations, rest))
    torch.testing.assert_close(value, eager_value)
    for a, e in zip(grads, eager_grads, strict=True):
        torch.testing.assert_close(a, e)


@pytest.mark.parametrize("backend_device", [*COMPILED, *TRITON], ids=str)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_low_precision_vs_float64(backend_device, dtype):
    """Outputs and gradients in dtype against the float64 reference on the same (rounded)
    inputs: the kernels chain in float32 and round once."""
    backend, device = backend_device
    skip_unavailable(backend, device)
    small = backend == "triton" and device == "cpu"
    parents, batch = (FOREST, 2) if small else (CHAIN, 6)
    rotations, rest = make_inputs((batch,), parents, False, dtype=dtype, device=device, seed=15)
    r = rotations.clone().requires_grad_(True)
    x = rest.clone().requires_grad_(True)
    out = skelops.forward_kinematics(r, x, parents, backend=backend)
    r64 = rotations.double().requires_grad_(True)
    x64 = rest.double().requires_grad_(True)
    expected = reference.forward_kinematics(r64, x64, parents)
    for actual, wanted in zip(out, expected, strict=True):
        assert actual.dtype == dtype
        assert_close_scaled(actual, wanted, dtype)
    upstream = torch.randn(out.posed_joints.shape, generator=torch.Generator().manual_seed(3))
    upstream = upstream.to(device, dtype)
    out.posed_joints.backward(upstream)
    expected[1].backward(upstream.double())
    assert r.grad.dtype == dtype and x.grad.dtype == dtype
    assert_close_scaled(r.grad, r64.grad, dtype)
    assert_close_scaled(x.grad, x64.grad, dtype)


@pytest.mark.parametrize("backend", ["cpu", "reference"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_autocast_runs_in_float32(backend, dtype):
    rotations, rest = make_inputs((3,), SMPL, True, dtype=dtype, seed=16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = skelops.forward_kinematics(rotations, rest, SMPL, backend=backend)
    expected = reference.forward_kinematics(rotations.double(), rest.double(), SMPL)
    for actual, wanted in zip(out, expected, strict=True):
        assert actual.dtype == torch.float32
        assert_close_scaled(actual, wanted, torch.float32)


def test_backward_deterministic_across_thread_counts():
    """The shared rest_joints gradient is a batch sum in a fixed order: the bits do not
    depend on the number of threads (several chunks of the CPU kernel's fixed chunking)."""
    rotations, rest = make_inputs((301,), SMPL, True, dtype=torch.float32, seed=17)
    g = torch.Generator().manual_seed(4)
    weights = [torch.randn(301, 24, *s, generator=g) for s in ((3, 3), (3,), (3,))]
    threads = torch.get_num_threads()
    results = []
    try:
        for count in (1, 2, 1):
            torch.set_num_threads(count)
            results.append(gradients("cpu", rotations, rest, SMPL, (0, 1, 2), weights))
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            assert torch.equal(a, b)
    expected = gradients("reference", rotations.double(), rest.double(), SMPL, (0, 1, 2),
                         [w.double() for w in weights])  # fmt: skip
    assert_close_scaled(results[0][1], expected[1], torch.float32)


def test_empty_batch_gradients():
    rotations, rest = make_inputs((0,), SMPL, True, seed=18)
    r = rotations.requires_grad_(True)
    x = rest.clone().requires_grad_(True)
    out = skelops.forward_kinematics(r, x, SMPL, backend="cpu")
    assert out.global_rotations.shape == (0, 24, 3, 3)
    out.posed_joints.sum().backward()
    assert r.grad.shape == (0, 24, 3, 3)
    assert torch.equal(x.grad, torch.zeros(24, 3, dtype=torch.float64))


@pytest.mark.parametrize("backend_device", COMPILED, ids=str)
def test_more_joints_than_the_parameter_table(backend_device):
    """A 300-joint tree (CUDA passes parents through a device array above 256 joints)."""
    backend, device = backend_device
    parents = [-1, *range(149), -1, *(150 + k // 2 for k in range(149))]
    rotations, rest = make_inputs((3,), parents, False, device=device, seed=19)
    out = skelops.forward_kinematics(rotations, rest, parents, backend=backend)
    expected = reference.forward_kinematics(rotations, rest, parents)
    for actual, wanted in zip(out, expected, strict=True):
        assert_close_scaled(actual, wanted, torch.float64)
    grads = gradients(backend, rotations, rest, parents, (0, 1, 2), [o.detach() for o in out])
    wanted = gradients("reference", rotations, rest, parents, (0, 1, 2), list(expected))
    for a, e in zip(grads, wanted, strict=True):
        assert_close_scaled(a, e, torch.float64)


def test_check_parents_and_topological_order():
    assert check_parents(SMPL, 24) == tuple(SMPL)
    assert check_parents(torch.tensor(FOREST)) == tuple(FOREST)
    unordered = [3, -1, 1, -1, 2, 0]
    with pytest.raises(ValueError, match="topologically ordered.*topological_order"):
        check_parents(unordered)
    order = topological_order(unordered)
    assert sorted(order) == list(range(6))
    position = {old: new for new, old in enumerate(order)}
    assert all(position[q] < position[j] for j, q in enumerate(unordered) if q >= 0)
    assert topological_order(SMPL) == list(range(24))
    new_parents = [-1 if unordered[o] < 0 else position[unordered[o]] for o in order]
    rotations, rest = make_inputs((2,), unordered, True, seed=20)
    out = skelops.forward_kinematics(rotations[:, order], rest[order], new_parents)
    # The unordered tree's definition, evaluated joint by joint in the reordered sequence.
    expected = reference.forward_kinematics(rotations[:, order], rest[order], new_parents)
    for actual, wanted in zip(out, expected, strict=True):
        torch.testing.assert_close(actual, wanted)
    global_rotations = {}
    for o in order:  # G in the original numbering, from its definition
        q = unordered[o]
        global_rotations[o] = rotations[:, o] if q < 0 else global_rotations[q] @ rotations[:, o]
    for new, o in enumerate(order):
        torch.testing.assert_close(out.global_rotations[:, new], global_rotations[o])
    with pytest.raises(ValueError, match=r"cycle through joints \[2, 4, 3\]"):
        topological_order([-1, 0, 4, 2, 3])


def test_check_rotation_matrices():
    rotations = random_rotations(2, 3, seed=21)
    check_rotation_matrices(rotations, "R")
    bad = rotations.clone()
    bad[1, 2] *= 1.01
    with pytest.raises(ValueError, match=r"R must be rotation matrices.*R\[1, 2\]"):
        check_rotation_matrices(bad, "R")
    reflection = rotations.clone()
    reflection[0, 1, 0] *= -1  # orthonormal, determinant -1
    with pytest.raises(ValueError, match=r"R\[0, 1\], deviates by 2"):
        check_rotation_matrices(reflection, "R")
    rest = torch.zeros(3, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="local_rotations must be rotation matrices"):
        skelops.forward_kinematics(bad, rest, [-1, 0, 1], validate=True)
    out = skelops.forward_kinematics(rotations, rest, [-1, 0, 1], validate=True)
    assert out.posed_joints.shape == (2, 3, 3)


SIX = [-1, 0, 1, 1, 3, 0]


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda r, x: skelops.forward_kinematics(r.tolist(), x, SIX), TypeError, "torch.Tensor"),
        (lambda r, x: skelops.forward_kinematics(r[0, 0], x, SIX), ValueError, "local_rotations"),
        (lambda r, x: skelops.forward_kinematics(r[..., :2], x, SIX), ValueError, r"J, 3, 3\]"),
        (lambda r, x: skelops.forward_kinematics(r.int(), x, SIX), TypeError, "local_rotations"),
        (
            lambda r, x: skelops.forward_kinematics(r, x[0, 0], SIX),
            ValueError,
            "rest_joints must be",
        ),
        (lambda r, x: skelops.forward_kinematics(r, x[:, :2], SIX), ValueError, "rest_joints"),
        (
            lambda r, x: skelops.forward_kinematics(r, x[:, :5], SIX),
            ValueError,
            "rest_joints",
        ),
        (
            lambda r, x: skelops.forward_kinematics(r, torch.cat([x, x]), SIX),
            ValueError,
            r"rest_joints must be \[J, 3\] = \[6, 3\] or \[\*batch, J, 3\] = \[2, 6, 3\]",
        ),
        (lambda r, x: skelops.forward_kinematics(r, x.float(), SIX), TypeError, "rest_joints"),
        (
            lambda r, x: skelops.forward_kinematics(r, x.to("meta"), SIX),
            ValueError,
            "rest_joints must be on the same device",
        ),
        (
            lambda r, x: skelops.forward_kinematics(r, x, SIX[:5]),
            ValueError,
            r"parents must have one entry per joint \(6 joints\), got 5",
        ),
        (
            lambda r, x: skelops.forward_kinematics(r, x, [-1, 0, 1, 1, 3, 9]),
            ValueError,
            r"parents\[5\] = 9 is out of range for 6 joints",
        ),
        (
            lambda r, x: skelops.forward_kinematics(r, x, [-1, 0, -2, 1, 3, 0]),
            ValueError,
            r"parents\[2\] = -2 is out of range",
        ),
        (
            lambda r, x: skelops.forward_kinematics(r, x, [-1, 0, 4, 2, 3, 0]),
            ValueError,
            r"parents form a cycle through joints \[2, 4, 3\]",
        ),
        (
            lambda r, x: skelops.forward_kinematics(r, x, [-1, 0, 1, 1, 5, 0]),
            ValueError,
            r"topologically ordered.*parents\[4\] = 5",
        ),
        (
            lambda r, x: skelops.forward_kinematics(r, x, torch.tensor(SIX).float()),
            TypeError,
            "parents must be an integer tensor",
        ),
        (
            lambda r, x: skelops.forward_kinematics(r, x, [-1, 0.0, 1, 1, 3, 0]),
            TypeError,
            "parents must hold ints",
        ),
        (lambda r, x: skelops.forward_kinematics(r, x, SIX, backend="gpu"), ValueError, "backend"),
        (
            lambda r, x: skelops.forward_kinematics(r, x, SIX, backend="cuda"),
            ValueError,
            "not available",
        ),
    ],
)
def test_bad_input(call, error, match):
    rotations, rest = make_inputs((2,), SIX, False, seed=22)
    with pytest.raises(error, match=match):
        call(rotations, rest)


def test_raw_ops_check_their_arguments():
    """The compiled ops check parents and shapes themselves (no out-of-bounds reads)."""
    rotations, rest = make_inputs((2,), SIX, True, seed=23)
    op = torch.ops.skelops.forward_kinematics
    with pytest.raises(ValueError, match=r"parents\[3\] = 3"):
        op(rotations, rest, [-1, 0, 1, 3, 3, 0])
    with pytest.raises(ValueError, match=r"parents\[0\] = -2"):
        op(rotations, rest, [-2, 0, 1, 1, 3, 0])
    with pytest.raises(ValueError, match="one entry per joint"):
        op(rotations, rest, SIX[:4])
    with pytest.raises(ValueError, match="rest_joints must be"):
        op(rotations, rest[:5], SIX)
    with pytest.raises(ValueError, match="local_rotations must be"):
        op(rotations[..., :2], rest, SIX)
    global_rotations = op(rotations, rest, SIX)[0]
    backward = torch.ops.skelops.forward_kinematics_backward
    with pytest.raises(ValueError, match="grad_posed_joints must have shape"):
        backward(None, rest, None, rotations, rest, SIX, global_rotations, [True, True])
    with pytest.raises(ValueError, match="global_rotations must be"):
        backward(None, None, None, rotations, rest, SIX, global_rotations[:1], [True, True])
