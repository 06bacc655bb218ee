"""skelops.linear_blend_skinning: every backend against the PyTorch reference and smplx's
formulation, gradients, gradcheck, opcheck, compile, autocast, determinism and bad input
(../shared/GUIDE.md section 2). Launcher-level Triton cases are in
test_linear_blend_skinning_triton_kernels.py.

vertices [N or 1, P, 3], weights [P, J] dense or (values [P, K], indices [P, K]), rotations
[N, J, 3, 3], translations [N, J, 3]; out[n, p] = sum_j W[p, j] (R[n, j] v[n, p] + t[n, j]).
"""

from __future__ import annotations

import itertools

import pytest
import torch
from helpers import assert_close_scaled, outputs_per_cpu_isa, skip_unless_triton

import skelops
from skelops import reference

CUDA_MARK = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
# (backend, device): Triton runs under the CPU interpreter here, on small cases only.
BACKENDS = [
    ("reference", "cpu"),
    ("cpu", "cpu"),
    ("triton", "cpu"),
    pytest.param(("cuda", "cuda"), marks=CUDA_MARK),
    pytest.param(("triton", "cuda"), marks=CUDA_MARK),
]
# (N, P, J, K, shared vertices, sparse weights)
CASES = [
    (3, 7, 5, 4, False, False),
    (3, 7, 5, 4, True, True),
    (1, 130, 24, 4, True, False),
    (3, 130, 24, 4, False, True),
    (1, 1, 1, 1, False, True),
    (3, 130, 1, 1, True, False),
    (0, 7, 5, 4, True, True),
    (0, 7, 5, 4, False, False),
]


def assert_close(actual, expected, dtype):
    """assert_close_scaled, also for empty tensors (then only the shapes)."""
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    if expected.numel():
        assert_close_scaled(actual, expected, dtype)


def skip_unavailable(backend: str, device: str) -> None:
    if backend == "triton":
        skip_unless_triton(device)


def random_rotations(shape, generator, dtype=torch.float64):
    q, _ = torch.linalg.qr(torch.randn(*shape, 3, 3, generator=generator, dtype=torch.float64))
    return q.to(dtype).contiguous()


def make_inputs(n, p, j, k, shared, sparse, dtype=torch.float64, device="cpu", seed=0):
    """vertices, weights (a dense [P, J] with ~4 non-zeros per row, rows summing to one, or a
    (values, indices) pair with a padding entry of weight 0), rotations, translations."""
    gen = torch.Generator().manual_seed(seed)
    vertices = torch.randn(1 if shared else n, p, 3, generator=gen, dtype=torch.float64)
    rotations = random_rotations((n, j), gen)
    translations = torch.randn(n, j, 3, generator=gen, dtype=torch.float64)
    if sparse:
        values = torch.rand(p, k, generator=gen, dtype=torch.float64) + 0.1
        indices = torch.randint(0, j, (p, k), generator=gen, dtype=torch.int64)
        if k > 1:
            values[0, -1] = 0.0  # padding
        values = values / values.sum(1, keepdim=True)
        weights = (values.to(device, dtype), indices.to(device))
    else:
        keep = torch.rand(p, j, generator=gen) < min(1.0, 4.0 / j)
        keep[:, 0] = True
        dense = torch.rand(p, j, generator=gen, dtype=torch.float64) * keep
        weights = (dense / dense.sum(1, keepdim=True)).to(device, dtype)
    return (
        vertices.to(device, dtype),
        weights,
        rotations.to(device, dtype),
        translations.to(device, dtype),
    )


def split_weights(weights):
    return (weights, None) if isinstance(weights, torch.Tensor) else weights


def reference_of(vertices, weights, rotations, translations):
    values, indices = split_weights(weights)
    return reference.linear_blend_skinning(vertices, values, indices, rotations, translations)


@pytest.mark.parametrize("backend_device", BACKENDS, ids=str)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_matches_reference_float64(backend_device, case):
    backend, device = backend_device
    skip_unavailable(backend, device)
    vertices, weights, rotations, translations = make_inputs(*case, device=device, seed=1)
    out = skelops.linear_blend_skinning(vertices, weights, rotations, translations, backend=backend)
    expected = reference_of(vertices, weights, rotations, translations)
    assert out.shape == (case[0], case[1], 3) and out.dtype == torch.float64
    assert_close(out, expected, torch.float64)


@pytest.mark.parametrize("shared, sparse", list(itertools.product([False, True], repeat=2)))
def test_cpu_every_size(shared, sparse):
    """The C++ kernel on every combination of the sizes of the task (fast: no interpreter)."""
    for n, p, j, k in itertools.product((0, 1, 3), (1, 7, 130), (1, 5, 24), (1, 4)):
        inputs = make_inputs(n, p, j, k, shared, sparse, seed=n + p + j + k)
        out = skelops.linear_blend_skinning(*inputs, backend="cpu")
        assert_close(out, reference_of(*inputs), torch.float64)


@pytest.mark.parametrize("backend_device", BACKENDS, ids=str)
def test_non_contiguous_views(backend_device):
    backend, device = backend_device
    skip_unavailable(backend, device)
    gen = torch.Generator().manual_seed(2)
    n, p, j = 3, 11, 6
    vertices = torch.randn(n, 3, p, generator=gen, dtype=torch.float64).to(device).transpose(1, 2)
    weights = torch.rand(p, 2 * j, generator=gen, dtype=torch.float64).to(device)[:, ::2]
    rotations = random_rotations((n, j), gen).to(device).transpose(-1, -2)
    translations = torch.randn(n, 3, j, generator=gen, dtype=torch.float64).to(device).mT
    assert not any(t.is_contiguous() for t in (vertices, weights, rotations, translations))
    out = skelops.linear_blend_skinning(vertices, weights, rotations, translations, backend=backend)
    expected = reference_of(vertices, weights, rotations, translations)
    assert_close(out, expected, torch.float64)


@pytest.mark.parametrize("backend_device", BACKENDS, ids=str)
@pytest.mark.parametrize("case", [c for c in CASES if c[0] > 0][:4] + [CASES[6]], ids=str)
def test_gradients_match_reference(backend_device, case):
    backend, device = backend_device
    skip_unavailable(backend, device)
    vertices, weights, rotations, translations = make_inputs(*case, device=device, seed=3)
    values, indices = split_weights(weights)
    grads = []
    for b in (backend, "reference"):
        leaves = [
            t.clone().requires_grad_(True) for t in (vertices, values, rotations, translations)
        ]
        w = leaves[1] if indices is None else (leaves[1], indices)
        out = skelops.linear_blend_skinning(leaves[0], w, leaves[2], leaves[3], backend=b)
        upstream = torch.linspace(-1, 2, out.numel(), dtype=out.dtype, device=device)
        (out * upstream.view(out.shape)).sum().backward()
        grads.append([t.grad for t in leaves])
    for actual, expected in zip(*grads, strict=True):
        assert actual is not None and actual.shape == expected.shape
        assert_close(actual, expected, torch.float64)


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("shared", [False, True])
def test_gradcheck(shared, sparse):
    vertices, weights, rotations, translations = make_inputs(2, 5, 3, 2, shared, sparse, seed=4)
    values, indices = split_weights(weights)

    def skin(v, w, r, t):
        return skelops.linear_blend_skinning(
            v, w if indices is None else (w, indices), r, t, backend="cpu"
        )

    inputs = [t.requires_grad_(True) for t in (vertices, values, rotations, translations)]
    assert torch.autograd.gradcheck(skin, inputs)


def test_dense_with_many_zeros_matches_sparse():
    """SMPL-like dense weights (24 joints, at most 4 non-zeros per row) equal their sparse form,
    forward and backward."""
    vertices, weights, rotations, translations = make_inputs(3, 130, 24, 4, True, False, seed=5)
    assert (weights != 0).sum(1).max() <= 12 and (weights == 0).float().mean() > 0.6
    values, indices = skelops.skinning_weights_to_sparse(weights)
    assert indices.dtype == torch.int32 and values.shape[1] == (weights != 0).sum(1).max()
    dense_out = skelops.linear_blend_skinning(vertices, weights, rotations, translations)
    sparse_out = skelops.linear_blend_skinning(vertices, (values, indices), rotations, translations)
    assert_close(sparse_out, dense_out, torch.float64)
    rot = rotations.clone().requires_grad_(True)
    skelops.linear_blend_skinning(vertices, weights, rot, translations).sum().backward()
    rot_sparse = rotations.clone().requires_grad_(True)
    skelops.linear_blend_skinning(
        vertices, (values, indices), rot_sparse, translations
    ).sum().backward()
    assert_close(rot_sparse.grad, rot.grad, torch.float64)


def test_skinning_weights_to_sparse_truncation():
    weights = torch.tensor([[0.5, 0.0, 0.3, 0.2], [0.0, 1.0, 0.0, 0.0]], dtype=torch.float64)
    values, indices = skelops.skinning_weights_to_sparse(weights)
    assert values.tolist() == [[0.5, 0.3, 0.2], [1.0, 0.0, 0.0]]
    assert indices[0].tolist() == [0, 2, 3] and indices[1, 0] == 1
    values, indices = skelops.skinning_weights_to_sparse(weights, max_influences=2, tol=0.25)
    assert values.tolist() == [[0.5, 0.3], [1.0, 0.0]] and indices[0].tolist() == [0, 2]
    with pytest.raises(ValueError, match="max_influences"):
        skelops.skinning_weights_to_sparse(weights, max_influences=0)


@pytest.mark.parametrize("layout", ["coo", "csr"])
def test_torch_sparse_weights(layout):
    vertices, weights, rotations, translations = make_inputs(2, 9, 6, 4, False, False, seed=6)
    sparse = weights.to_sparse() if layout == "coo" else weights.to_sparse_csr()
    out = skelops.linear_blend_skinning(vertices, sparse, rotations, translations)
    expected = reference_of(vertices, weights, rotations, translations)
    assert_close(out, expected, torch.float64)


@pytest.mark.parametrize("rows", [3, 4])
def test_rigid_transform_input_and_smplx_formulation(rows):
    """[N, J, 4, 4] / [N, J, 3, 4] transforms, checked against smplx's lbs: T = W @ A as
    [N, P, 4, 4], then T @ [v, 1]."""
    vertices, weights, rotations, translations = make_inputs(3, 130, 24, 4, False, False, seed=7)
    n, j = rotations.shape[:2]
    transforms = torch.zeros(n, j, 4, 4, dtype=torch.float64)
    transforms[..., :3, :3] = rotations
    transforms[..., :3, 3] = translations
    transforms[..., 3, 3] = 1.0
    # smplx.lbs.lbs, inline:
    big_t = torch.matmul(weights, transforms.view(n, j, 16)).view(n, -1, 4, 4)
    homogeneous = torch.cat([vertices, torch.ones_like(vertices[..., :1])], dim=2)
    expected = torch.matmul(big_t, homogeneous.unsqueeze(-1))[:, :, :3, 0]
    out = skelops.linear_blend_skinning(vertices, weights, transforms[:, :, :rows])
    assert_close(out, expected, torch.float64)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_low_precision_dtypes(backend, dtype):
    vertices, weights, rotations, translations = make_inputs(3, 130, 24, 4, True, True, seed=8)
    expected = reference_of(vertices, weights, rotations, translations)
    values, indices = weights
    cast = [t.to(dtype) for t in (vertices, values, rotations, translations)]
    out = skelops.linear_blend_skinning(
        cast[0], (cast[1], indices), cast[2], cast[3], backend=backend
    )
    assert out.dtype == dtype
    # The inputs are rounded to dtype, the math is float32: a few roundings of dtype.
    assert_close(out, expected, dtype)


def test_autocast():
    vertices, weights, rotations, translations = make_inputs(2, 7, 5, 4, True, False, torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = skelops.linear_blend_skinning(vertices, weights, rotations, translations)
        ref = skelops.linear_blend_skinning(
            vertices, weights, rotations, translations, backend="reference"
        )
    assert out.dtype == torch.bfloat16 and ref.dtype == torch.bfloat16
    expected = reference_of(vertices, weights, rotations, translations)
    assert_close(out, expected, torch.bfloat16)
    assert_close(ref, expected, torch.bfloat16)


@pytest.mark.parametrize(
    ("shared", "mask"),
    [(True, [True] * 4), (False, [True, False, True, True])],
    ids=["shared-all", "per-sample-fused"],
)
def test_backward_deterministic_across_thread_counts(shared, mask):
    """Splits > 1 on both reduction sides (N = 40 samples, P = 3000 vertices); per-sample
    vertices without weight gradients take the pass that fuses the vertex gradients into the
    joint side."""
    inputs = make_inputs(40, 3000, 24, 4, shared, False, torch.float32, seed=9)
    values, _ = split_weights(inputs[1])
    grad = torch.randn(40, 3000, 3, generator=torch.Generator().manual_seed(0))
    threads = torch.get_num_threads()
    results = []
    try:
        for count in (1, 2):
            torch.set_num_threads(count)
            results.append(
                torch.ops.skelops.linear_blend_skinning_backward(
                    grad, inputs[0], values, None, inputs[2], inputs[3], mask
                )
            )
    finally:
        torch.set_num_threads(threads)
    for first, second in zip(*results, strict=True):
        assert torch.equal(first, second)


_ISA_SKINNING = """
import sys, torch, skelops
g = torch.Generator().manual_seed(3)
outs = {}
for shared in (False, True):
    for k in (4, 3):
        vertices = torch.randn(1 if shared else 5, 700, 3, generator=g)
        values = torch.rand(700, k, generator=g) + 0.1
        values[::7, -1] = 0.0
        indices = torch.randint(0, 24, (700, k), generator=g, dtype=torch.int32)
        rotations = torch.randn(5, 24, 3, 3, generator=g)
        translations = torch.randn(5, 24, 3, generator=g)
        grad = torch.randn(5, 700, 3, generator=g)
        args = (vertices, values, indices, rotations, translations)
        outs[shared, k, "forward"] = torch.ops.skelops.linear_blend_skinning(*args)
        for mask in ([True] * 4, [True, False, True, True], [True, False, False, False],
                     [False, False, True, True]):
            grads = torch.ops.skelops.linear_blend_skinning_backward(grad, *args, mask)
            for name, t in zip("vwrt", grads):
                outs[shared, k, str(mask), name] = t
torch.save(outs, sys.argv[1])
"""


def test_cpu_baseline_loops_match_the_default_isa(tmp_path):
    """The float32 vertex loops run on AVX2 + FMA where the CPU has them; SKELOPS_CPU_ISA=baseline
    forces the portable loops (chosen once per process, hence subprocesses), which must agree
    within float32's tolerance (FMA contraction rounds differently). Rows of K = 4 and of
    another K take different copies of the loops."""
    results = outputs_per_cpu_isa(_ISA_SKINNING, tmp_path)
    for key, base in results["baseline"].items():
        if base.numel():
            assert base.abs().max() > 0.1, key
        assert_close(results["default"][key], base, torch.float32)


@pytest.mark.parametrize("sparse", [False, True])
def test_opcheck(sparse):
    vertices, weights, rotations, translations = make_inputs(3, 7, 5, 4, True, sparse, seed=10)
    values, indices = split_weights(weights)
    for t in (vertices, values, rotations, translations):
        t.requires_grad_(True)
    torch.library.opcheck(
        torch.ops.skelops.linear_blend_skinning.default,
        (vertices, values, indices, rotations, translations),
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("sparse", [False, True])
def test_opcheck_cuda(sparse):
    vertices, weights, rotations, translations = make_inputs(
        3, 300, 24, 4, True, sparse, torch.float32, "cuda", seed=11
    )
    values, indices = split_weights(weights)
    for t in (vertices, values, rotations, translations):
        t.requires_grad_(True)
    torch.library.opcheck(
        torch.ops.skelops.linear_blend_skinning.default,
        (vertices, values, indices, rotations, translations),
    )


def test_compile_fullgraph():
    vertices, weights, rotations, translations = make_inputs(
        2, 20, 5, 3, False, True, torch.float32
    )
    values, indices = weights
    rotations.requires_grad_(True)

    def loss(v, w, r, t):
        out = skelops.linear_blend_skinning(v, (w, indices), r, t)
        return (out * out).sum()

    compiled = torch.compile(loss, fullgraph=True, backend="aot_eager")
    eager_value = loss(vertices, values, rotations, translations)
    (eager_grad,) = torch.autograd.grad(eager_value, rotations)
    value = compiled(vertices, values, rotations, translations)
    (grad,) = torch.autograd.grad(value, rotations)
    torch.testing.assert_close(value, eager_value)
    torch.testing.assert_close(grad, eager_grad)


def test_empty_batch_and_unbatched_mesh():
    vertices, weights, rotations, translations = make_inputs(0, 7, 5, 4, True, True, seed=12)
    values, indices = weights
    v = vertices[0].clone().requires_grad_(True)  # [P, 3]: one shared mesh
    w = values.clone().requires_grad_(True)
    out = skelops.linear_blend_skinning(v, (w, indices), rotations, translations)
    assert out.shape == (0, 7, 3)
    out.sum().backward()
    assert v.grad.shape == (7, 3) and not v.grad.any() and not w.grad.any()


def test_validate():
    vertices, weights, rotations, translations = make_inputs(2, 7, 5, 4, False, False, seed=13)
    skelops.linear_blend_skinning(vertices, weights, rotations, translations, validate=True)
    bad = weights.clone()
    bad[4] *= 0.9
    with pytest.raises(ValueError, match=r"weights rows must sum to 1 .*row 4 sums to 0\.9"):
        skelops.linear_blend_skinning(vertices, bad, rotations, translations, validate=True)
    bad = weights.clone()
    bad[2, 0] = -0.5
    bad[2, 1] += 1.5 - bad[2].sum()
    with pytest.raises(ValueError, match=r"weights must be non-negative, got weights\[2, 0\]"):
        skelops.linear_blend_skinning(vertices, bad, rotations, translations, validate=True)
    values, indices = skelops.skinning_weights_to_sparse(weights)
    skelops.linear_blend_skinning(
        vertices, (values, indices), rotations, translations, validate=True
    )
    indices = indices.clone()
    indices[3, 0] = 5
    for validate in (True, False):
        for backend in ("cpu", "reference"):
            with pytest.raises(
                ValueError, match=r"weight_indices must hold joint indices in \[0, J"
            ):
                skelops.linear_blend_skinning(
                    vertices, (values, indices), rotations, translations, validate=validate,
                    backend=backend,
                )  # fmt: skip


def test_raw_op_checks_indices():
    """The compiled op checks the index values itself (no out-of-bounds reads)."""
    vertices, (values, indices), rotations, translations = make_inputs(1, 7, 5, 4, True, True)
    indices = indices.clone()
    indices[6, 3] = -1
    with pytest.raises(ValueError, match=r"weight_indices\[6, 3\] = -1"):
        torch.ops.skelops.linear_blend_skinning(vertices, values, indices, rotations, translations)
    with pytest.raises(ValueError, match="dense weights must be"):
        torch.ops.skelops.linear_blend_skinning(vertices, values, None, rotations, translations)


def _bad_cases():
    v, w, r, t = make_inputs(2, 7, 5, 4, False, False, torch.float32)
    values, indices = skelops.skinning_weights_to_sparse(w)
    return [
        ((v[0, 0], w, r, t), ValueError, "vertices must be"),
        ((v[..., :2], w, r, t), ValueError, "vertices must be"),
        ((v.long(), w, r, t), TypeError, "vertices must be a floating"),
        ((v[:, :6], w, r, t), ValueError, r"vertices must have P = 7"),
        ((torch.cat([v, v]), w, r, t), ValueError, r"vertices must be \[N, P, 3\] or \[1, P, 3\]"),
        ((v, w[:, :4], r, t), ValueError, r"dense weights must be \[P, J\] with J = 5"),
        ((v, w[0], r, t), ValueError, "weights must be"),
        ((v, w.double(), r, t), TypeError, "weights must have the same dtype"),
        ((v, w, r[..., :2], t), ValueError, "rotations must be"),
        ((v, w, r[0], t), ValueError, "rotations must be"),
        ((v, w, r.double(), t), TypeError, "rotations must have the same dtype"),
        ((v, w, r, t[:, :4]), ValueError, "translations must be"),
        ((v, w, r, None), ValueError, r"rotations must be \[N, J, 4, 4\] or \[N, J, 3, 4\]"),
        ((v, w, r, t.half()), TypeError, "translations must have the same dtype"),
        ((v, (values, indices.float()), r, t), TypeError, "weight_indices must be int32 or int64"),
        ((v, (values, indices[:, :1]), r, t), ValueError, "weight_indices must have the weights"),
        ((v, (values, indices, indices), r, t), ValueError, "tuple must be"),
        ((v, [w], r, t), TypeError, "weights must be a torch.Tensor"),
        ((v, w, r, t, "gpu"), ValueError, "backend"),
    ]


@pytest.mark.parametrize("index", range(len(_bad_cases())))
def test_bad_input(index):
    args, error, match = _bad_cases()[index]
    *tensors, backend = args if len(args) == 5 else (*args, "auto")
    with pytest.raises(error, match=match):
        skelops.linear_blend_skinning(*tensors, backend=backend)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_device_mismatch():
    v, w, r, t = make_inputs(2, 7, 5, 4, False, False, torch.float32, "cuda")
    with pytest.raises(ValueError, match="rotations must be on the same device"):
        skelops.linear_blend_skinning(v, w, r.cpu(), t)
    values, indices = skelops.skinning_weights_to_sparse(w)
    with pytest.raises(ValueError, match="weight_indices must be on vertices' device"):
        skelops.linear_blend_skinning(v, (values, indices.cpu()), r, t)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_cuda_large_against_reference(dtype):
    """Many blocks, splits on every reduction, shared and per-sample meshes, both weight forms."""
    for shared, sparse in itertools.product([False, True], repeat=2):
        inputs = make_inputs(37, 6890, 24, 4, shared, sparse, torch.float64, "cuda", seed=14)
        values, indices = split_weights(inputs[1])
        leaves = [
            t.to(dtype).requires_grad_(True) for t in (inputs[0], values, inputs[2], inputs[3])
        ]
        w = leaves[1] if indices is None else (leaves[1], indices)
        out = skelops.linear_blend_skinning(leaves[0], w, leaves[2], leaves[3], backend="cuda")
        expected = reference_of(*inputs)
        assert out.dtype == dtype
        assert_close(out.float(), expected, dtype)
        out.float().square().sum().backward()
        ref_leaves = [
            t.clone().requires_grad_(True) for t in (inputs[0], values, inputs[2], inputs[3])
        ]
        reference.linear_blend_skinning(
            ref_leaves[0], ref_leaves[1], indices, ref_leaves[2], ref_leaves[3]
        ).square().sum().backward()
        for actual, ref in zip(leaves, ref_leaves, strict=True):
            # Sums over thousands of vertices or samples: one dtype rounding per term.
            torch.testing.assert_close(
                actual.grad.double(),
                ref.grad,
                rtol=0,
                atol=50 * TOL_SUM[dtype] * ref.grad.abs().max().item(),
            )


TOL_SUM = {torch.float32: 2e-6, torch.float16: 1e-3, torch.bfloat16: 8e-3}
