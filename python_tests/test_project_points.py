"""skelops.project_points and skelops.reprojection_loss: every backend against the PyTorch
reference and hand-written camera formulas, gradients, opcheck, compile, autocast,
determinism and bad input (../shared/GUIDE.md section 2). Triton launcher cases are in
test_project_points_triton_kernels.py."""

from __future__ import annotations

import pytest
import torch
from helpers import assert_close_scaled, skip_unless_triton

import skelops
from skelops import reference

CUDA_MARK = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
# (backend, device): Triton runs under the CPU interpreter here.
BACKENDS = [
    ("reference", "cpu"),
    ("cpu", "cpu"),
    ("triton", "cpu"),
    pytest.param(("cuda", "cuda"), marks=CUDA_MARK),
    pytest.param(("triton", "cuda"), marks=CUDA_MARK),
]
KERNEL_BACKENDS = BACKENDS[1:]
MODELS = ["pinhole", "weak_perspective"]
# Which extrinsics are given: rotation, translation.
EXTRINSICS = [(False, False), (True, False), (False, True), (True, True)]


def skip_unavailable(backend: str, device: str) -> None:
    if backend == "triton":
        skip_unless_triton(device)


def small_rotations(n: int, gen: torch.Generator) -> torch.Tensor:
    """Rotations of up to ~0.5 rad (matrix exponentials of skew matrices): depths stay
    positive for the points of make_inputs, away from the clamp."""
    w = (torch.rand(n, 3, generator=gen, dtype=torch.float64) - 0.5) * 0.6
    skew = torch.zeros(n, 3, 3, dtype=torch.float64)
    skew[:, 0, 1], skew[:, 0, 2], skew[:, 1, 2] = -w[:, 2], w[:, 1], -w[:, 0]
    return torch.linalg.matrix_exp(skew - skew.transpose(1, 2))


def make_inputs(
    n: int,
    p: int,
    model: str = "pinhole",
    rotation: bool = True,
    translation: bool = True,
    *,
    dtype: torch.dtype = torch.float64,
    device: str = "cpu",
    seed: int = 0,
) -> dict[str, torch.Tensor | None]:
    """points [N, P, 3] about 4 units in front of the camera, a camera of the model, small
    rotations and translations (or None)."""
    gen = torch.Generator().manual_seed(seed)
    points = torch.randn(n, p, 3, generator=gen, dtype=torch.float64).clamp(-2, 2) * 0.5
    points[..., 2] += 4.0
    if model == "pinhole":
        camera = torch.rand(n, 4, generator=gen, dtype=torch.float64) * 200
        camera[:, :2] += 400.0  # fx, fy
    else:
        camera = torch.rand(n, 3, generator=gen, dtype=torch.float64) * 0.4 - 0.2
        camera[:, 0] += 1.0  # s
    rot = small_rotations(n, gen) if rotation else None
    trans = (
        torch.rand(n, 3, generator=gen, dtype=torch.float64) * 0.4 - 0.2 if translation else None
    )
    out = {"points": points, "camera": camera, "rotation": rot, "translation": trans}
    return {k: None if v is None else v.to(device, dtype) for k, v in out.items()}


def project(inputs, model, backend, **kwargs):
    return skelops.project_points(
        inputs["points"],
        inputs["camera"],
        rotation=inputs["rotation"],
        translation=inputs["translation"],
        model=model,
        backend=backend,
        **kwargs,
    )


def expected_of(inputs, model, min_depth=1e-6):
    """The reference on float64 copies (on the CPU)."""
    cast = {k: None if v is None else v.detach().double().cpu() for k, v in inputs.items()}
    n = cast["points"].shape[0]
    flat = cast["points"].reshape(n, -1, 3) if n > 0 else cast["points"].reshape(0, 0, 3)
    out = reference.project_points(
        flat, cast["camera"], cast["rotation"], cast["translation"],
        model == "weak_perspective", min_depth,
    )  # fmt: skip
    return out.reshape(*cast["points"].shape[:-1], 2)


def grads_of(inputs, model, backend, upstream_dtype=None, **kwargs):
    """(value, gradients of every given input) for a random upstream gradient (rounded to
    ``upstream_dtype`` first when given)."""
    leaves = {
        k: None if v is None else v.detach().clone().requires_grad_(True) for k, v in inputs.items()
    }
    out = project(leaves, model, backend, **kwargs)
    gen = torch.Generator().manual_seed(1)
    upstream = torch.randn(out.shape, generator=gen, dtype=torch.float64)
    if upstream_dtype is not None:
        upstream = upstream.to(upstream_dtype)
    upstream = upstream.to(out)
    out.backward(upstream)
    return out, {k: v.grad for k, v in leaves.items() if v is not None}


# --- values ----------------------------------------------------------------------------------


@pytest.mark.parametrize("backend_device", BACKENDS, ids=str)
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("extrinsics", EXTRINSICS, ids=["none", "rotation", "translation", "both"])
def test_matches_reference_float64(backend_device, model, extrinsics):
    backend, device = backend_device
    skip_unavailable(backend, device)
    inputs = make_inputs(4, 17, model, *extrinsics, device=device, seed=2)
    out = project(inputs, model, backend)
    assert out.shape == (4, 17, 2) and out.dtype == torch.float64 and out.is_contiguous()
    assert_close_scaled(out, expected_of(inputs, model), torch.float64)


@pytest.mark.parametrize("backend_device", BACKENDS, ids=str)
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("n", [0, 1, 4])
@pytest.mark.parametrize("p", [1, 17, 100])
def test_sizes(backend_device, model, n, p):
    backend, device = backend_device
    skip_unavailable(backend, device)
    inputs = make_inputs(n, p, model, device=device, seed=3 + n + p)
    out, grads = grads_of(inputs, model, backend)
    assert out.shape == (n, p, 2)
    _, expected = grads_of(inputs, model, "reference")
    for name, grad in grads.items():
        assert grad.shape == inputs[name].shape, name
    if n == 0:
        return
    assert_close_scaled(out, expected_of(inputs, model), torch.float64)
    for name, grad in grads.items():
        assert_close_scaled(grad, expected[name], torch.float64)


@pytest.mark.parametrize("backend_device", BACKENDS, ids=str)
def test_non_contiguous_and_middle_dims(backend_device):
    """points [N, 2, 3, 3] as a permuted view, every other camera row, a transposed rotation
    and a strided translation; output [N, 2, 3, 2]."""
    backend, device = backend_device
    skip_unavailable(backend, device)
    base = make_inputs(3, 6, "pinhole", device=device, seed=4)
    points = base["points"].reshape(3, 2, 3, 3).transpose(1, 2).contiguous().transpose(1, 2)
    camera = torch.stack([base["camera"], base["camera"] * 2], dim=1)[:, 0]
    rotation = base["rotation"].transpose(1, 2).contiguous().transpose(1, 2)
    translation = torch.stack([base["translation"], -base["translation"]], dim=2)[..., 0]
    inputs = {"points": points, "camera": camera, "rotation": rotation, "translation": translation}
    for value in inputs.values():
        assert not value.is_contiguous()
    out = project(inputs, "pinhole", backend)
    assert out.shape == (3, 2, 3, 2)
    assert_close_scaled(out, expected_of(inputs, "pinhole"), torch.float64)
    _, grads = grads_of(inputs, "pinhole", backend)
    _, expected = grads_of(inputs, "pinhole", "reference")
    for name in inputs:
        assert_close_scaled(grads[name], expected[name], torch.float64)


@pytest.mark.parametrize("backend_device", BACKENDS, ids=str)
@pytest.mark.parametrize("model", MODELS)
def test_broadcast_camera_and_extrinsics(backend_device, model):
    """A camera [C], rotation [3, 3] and translation [3] shared by the batch equal their
    expanded copies; their gradients are the batch sums."""
    backend, device = backend_device
    skip_unavailable(backend, device)
    inputs = make_inputs(3, 5, model, device=device, seed=5)
    shared = {
        "points": inputs["points"],
        "camera": inputs["camera"][0],
        "rotation": inputs["rotation"][0],
        "translation": inputs["translation"][0],
    }
    expanded = {
        "points": inputs["points"],
        "camera": shared["camera"].expand(3, -1).clone(),
        "rotation": shared["rotation"].expand(3, 3, 3).clone(),
        "translation": shared["translation"].expand(3, 3).clone(),
    }
    out, grads = grads_of(shared, model, backend)
    out_expanded, grads_expanded = grads_of(expanded, model, "reference")
    assert_close_scaled(out, out_expanded, torch.float64)
    for name in ("camera", "rotation", "translation"):
        assert grads[name].shape == shared[name].shape
        assert_close_scaled(grads[name], grads_expanded[name].sum(0), torch.float64)
    assert_close_scaled(grads["points"], grads_expanded["points"], torch.float64)


def test_pinhole_matches_intrinsics_matrix():
    """u, v = (K X_c)[:2] / (K X_c)[2] with K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] and
    X_c = R X + t, written out here."""
    inputs = make_inputs(2, 9, "pinhole", seed=6)
    fx, fy, cx, cy = inputs["camera"].unbind(1)
    zero, one = torch.zeros_like(fx), torch.ones_like(fx)
    intrinsics = torch.stack(
        [
            torch.stack([fx, zero, cx], 1),
            torch.stack([zero, fy, cy], 1),
            torch.stack([zero, zero, one], 1),
        ],
        dim=1,
    )
    cam_points = torch.einsum("nij,npj->npi", inputs["rotation"], inputs["points"])
    cam_points = cam_points + inputs["translation"][:, None]
    homogeneous = torch.einsum("nij,npj->npi", intrinsics, cam_points)
    expected = homogeneous[..., :2] / homogeneous[..., 2:]
    for backend in ("reference", "cpu"):
        torch.testing.assert_close(project(inputs, "pinhole", backend), expected)


def test_weak_perspective_matches_hmr():
    """HMR's orthographic_projection: X_c[..., :2] + (tx, ty), scaled by s."""
    inputs = make_inputs(2, 9, "weak_perspective", seed=7)
    cam_points = (
        inputs["points"] @ inputs["rotation"].transpose(1, 2) + inputs["translation"][:, None]
    )
    camera = inputs["camera"][:, None, :]
    expected = camera[..., :1] * (cam_points[..., :2] + camera[..., 1:])
    for backend in ("reference", "cpu"):
        torch.testing.assert_close(project(inputs, "weak_perspective", backend), expected)


@pytest.mark.parametrize("backend_device", BACKENDS, ids=str)
def test_behind_camera_is_clamped(backend_device):
    """A point with z_c < min_depth is projected from z = min_depth and its depth gets no
    gradient; the points in front are unaffected."""
    backend, device = backend_device
    skip_unavailable(backend, device)
    min_depth = 0.5
    points = torch.tensor(
        [[[0.3, -0.2, -1.0], [0.1, 0.4, 0.25], [0.2, 0.1, 2.0]]], dtype=torch.float64
    ).to(device)
    camera = torch.tensor([[500.0, 450.0, 320.0, 240.0]], dtype=torch.float64, device=device)
    inputs = {"points": points, "camera": camera, "rotation": None, "translation": None}
    out, grads = grads_of(inputs, "pinhole", backend, min_depth=min_depth)
    expected_uv = torch.tensor(
        [[500 * 0.3 / 0.5 + 320, 450 * -0.2 / 0.5 + 240],
         [500 * 0.1 / 0.5 + 320, 450 * 0.4 / 0.5 + 240],
         [500 * 0.2 / 2.0 + 320, 450 * 0.1 / 2.0 + 240]],
        dtype=torch.float64,
    )  # fmt: skip
    torch.testing.assert_close(out[0].detach().cpu(), expected_uv)
    gz = grads["points"][0, :, 2].cpu()
    assert gz[0] == 0 and gz[1] == 0 and gz[2] != 0
    assert (grads["points"][0, :2, :2] != 0).all()
    _, expected = grads_of(inputs, "pinhole", "reference", min_depth=min_depth)
    for name, grad in grads.items():
        assert_close_scaled(grad, expected[name], torch.float64)


@pytest.mark.parametrize("backend_device", KERNEL_BACKENDS, ids=str)
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32], ids=str)
def test_low_precision_dtypes(backend_device, model, dtype):
    """Output and gradients in the inputs' dtype, computed in float32: within one rounding of
    the dtype of the float64 reference on the same (rounded) inputs."""
    backend, device = backend_device
    skip_unavailable(backend, device)
    inputs = make_inputs(2, 7, model, dtype=dtype, device=device, seed=8)
    out, grads = grads_of(inputs, model, backend, upstream_dtype=dtype)
    assert out.dtype == dtype
    rounded = {k: None if v is None else v.double() for k, v in inputs.items()}
    expected_out, expected = grads_of(rounded, model, "reference", upstream_dtype=dtype)
    assert_close_scaled(out, expected_out, dtype)
    for name, grad in grads.items():
        assert grad.dtype == dtype
        assert_close_scaled(grad, expected[name], dtype)


def test_autocast_runs_in_float32():
    inputs = make_inputs(2, 5, "pinhole", dtype=torch.float32, seed=9)
    expected = project(inputs, "pinhole", "cpu")
    half = {k: v.bfloat16() for k, v in inputs.items()}
    for backend in ("cpu", "reference"):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = project(inputs, "pinhole", backend)
            out_half = project(half, "pinhole", backend)
        assert out.dtype == torch.float32 and out_half.dtype == torch.float32
        torch.testing.assert_close(out, expected)
        assert_close_scaled(out_half, expected_of(half, "pinhole"), torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        raw = torch.ops.skelops.project_points(
            half["points"], half["camera"], half["rotation"], half["translation"], False, 1e-6
        )
    assert raw.dtype == torch.float32


@pytest.mark.parametrize("model", MODELS)
def test_gradcheck(model):
    inputs = make_inputs(2, 4, model, seed=10)
    leaves = [
        inputs[k].clone().requires_grad_(True)
        for k in ("points", "camera", "rotation", "translation")
    ]

    def fn(points, camera, rotation, translation):
        return skelops.project_points(
            points, camera, rotation=rotation, translation=translation, model=model, backend="cpu"
        )

    assert torch.autograd.gradcheck(fn, leaves)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("extrinsics", [(False, False), (True, True)], ids=["none", "both"])
def test_opcheck(model, extrinsics):
    inputs = make_inputs(2, 5, model, *extrinsics, seed=11)
    args = [None if v is None else v.requires_grad_(True) for v in inputs.values()]
    torch.library.opcheck(
        torch.ops.skelops.project_points.default,
        (*args, model == "weak_perspective", 1e-6),
    )


def test_compile_fullgraph():
    inputs = make_inputs(2, 5, "pinhole", dtype=torch.float32, seed=12)
    target = torch.rand(2, 5, 2) * 300 + 200
    points = inputs["points"].requires_grad_(True)

    def loss(points, camera, rotation, translation):
        uv = skelops.project_points(points, camera, rotation=rotation, translation=translation)
        return skelops.reprojection_loss(uv, target, robust_sigma=100.0)

    compiled = torch.compile(loss, fullgraph=True, backend="aot_eager")
    args = (points, inputs["camera"], inputs["rotation"], inputs["translation"])
    eager_value = loss(*args)
    (eager_grad,) = torch.autograd.grad(eager_value, points)
    value = compiled(*args)
    (grad,) = torch.autograd.grad(value, points)
    torch.testing.assert_close(value, eager_value)
    torch.testing.assert_close(grad, eager_grad)


def test_backward_deterministic_across_threads():
    """The per-sample sums over several CPU chunks give the same bits on 1 and 2 threads."""
    inputs = make_inputs(4, 20000, "pinhole", dtype=torch.float32, seed=13)
    threads = torch.get_num_threads()
    runs = []
    try:
        for count in (1, 2, 2):
            torch.set_num_threads(count)
            runs.append(grads_of(inputs, "pinhole", "cpu")[1])
    finally:
        torch.set_num_threads(threads)
    for run in runs[1:]:
        for name, grad in run.items():
            assert torch.equal(grad, runs[0][name]), name
    _, expected = grads_of({k: v.double() for k, v in inputs.items()}, "pinhole", "reference")
    for name, grad in runs[0].items():
        assert_close_scaled(grad, expected[name], torch.float32)


def test_output_mask_of_backward_op():
    inputs = make_inputs(2, 6, "pinhole", seed=14)
    args = list(inputs.values())
    grad = torch.randn(2, 6, 2, dtype=torch.float64)
    op = torch.ops.skelops.project_points_backward
    full = op(grad, *args, False, 1e-6, [True, True, True, True])
    for mask in ([True, False, False, False], [False, True, False, True], [False] * 4):
        part = op(grad, *args, False, 1e-6, mask)
        for wanted, got, expected in zip(mask, part, full, strict=True):
            if wanted:
                assert torch.equal(got, expected)
            else:
                assert got.numel() == 0
    absent = op(grad, args[0], args[1], None, None, False, 1e-6, [True] * 4)
    assert absent[2].numel() == 0 and absent[3].numel() == 0


# --- bad input -------------------------------------------------------------------------------


def _call(**overrides):
    inputs = make_inputs(2, 3, "pinhole", dtype=torch.float32)
    kwargs = {
        "points": inputs["points"],
        "camera": inputs["camera"],
        "rotation": inputs["rotation"],
        "translation": inputs["translation"],
    }
    kwargs.update(overrides)
    points, camera = kwargs.pop("points"), kwargs.pop("camera")
    return skelops.project_points(points, camera, **kwargs)


@pytest.mark.parametrize(
    "overrides, error, match",
    [
        ({"points": [[0.0, 0.0, 1.0]]}, TypeError, "points must be a torch.Tensor"),
        ({"points": torch.zeros(3)}, ValueError, r"points must be \[N, \*, 3\]"),
        ({"points": torch.zeros(2, 3, 2)}, ValueError, r"points must be \[N, \*, 3\]"),
        (
            {"points": torch.zeros(2, 3, 3, dtype=torch.int64)},
            TypeError,
            "points must be a floating",
        ),
        ({"camera": torch.zeros(2, 3)}, ValueError, r"camera must be \[N, 4\]"),
        ({"camera": torch.zeros(3, 4)}, ValueError, r"camera must be \[N, 4\] = \[2, 4\]"),
        ({"camera": torch.zeros(2, 2, 4)}, ValueError, "camera must be"),
        (
            {"camera": torch.zeros(2, 4, dtype=torch.float64)},
            TypeError,
            "camera must have the same dtype",
        ),
        (
            {"camera": torch.zeros(2, 4, device="meta")},
            ValueError,
            "camera must be on the same device",
        ),
        ({"rotation": torch.zeros(2, 3, 4)}, ValueError, r"rotation must be \[N, 3, 3\]"),
        ({"rotation": torch.zeros(3)}, ValueError, "rotation must be"),
        ({"rotation": torch.zeros(2, 3, 3, dtype=torch.float16)}, TypeError, "rotation must have"),
        ({"translation": torch.zeros(2, 2)}, ValueError, r"translation must be \[N, 3\]"),
        ({"translation": torch.zeros(2, 3).long()}, TypeError, "translation must be a floating"),
        ({"model": "orthographic"}, ValueError, "model must be one of"),
        ({"min_depth": 0.0}, ValueError, "min_depth must be finite and > 0"),
        ({"min_depth": float("nan")}, ValueError, "min_depth must be finite"),
        ({"min_depth": "1e-6"}, TypeError, "min_depth must be a float"),
        ({"backend": "gpu"}, ValueError, "backend must be one of"),
    ],
)
def test_bad_input(overrides, error, match):
    with pytest.raises(error, match=match):
        _call(**overrides)


def test_unavailable_backend():
    with pytest.raises(ValueError, match="backend='cuda' is not available"):
        _call(backend="cuda")


def test_raw_op_checks():
    """The compiled op checks its arguments itself (no out-of-bounds reads when called
    directly)."""
    inputs = make_inputs(2, 3, "pinhole", seed=15)
    points, camera, rotation, translation = inputs.values()
    op = torch.ops.skelops.project_points
    with pytest.raises(ValueError, match=r"camera must be \[N, 3\]"):
        op(points, camera, None, None, True, 1e-6)
    with pytest.raises(ValueError, match=r"rotation must be \[N, 3, 3\]"):
        op(points, camera, rotation[:1], None, False, 1e-6)
    with pytest.raises(ValueError, match=r"translation must be \[N, 3\]"):
        op(points, camera, None, translation[:, :2], False, 1e-6)
    with pytest.raises(ValueError, match=r"points must be \[N, P, 3\]"):
        op(points[..., :2], camera, None, None, False, 1e-6)
    with pytest.raises(TypeError, match="camera dtype must be points'"):
        op(points, camera.float(), None, None, False, 1e-6)
    with pytest.raises(ValueError, match="min_depth must be positive"):
        op(points, camera, None, None, False, -1.0)
    with pytest.raises(ValueError, match=r"grad must be \[N, P, 2\]"):
        torch.ops.skelops.project_points_backward(
            torch.zeros(2, 4, 2, dtype=torch.float64), points, camera, None, None, False, 1e-6,
            [True] * 4,
        )  # fmt: skip


# --- CUDA ------------------------------------------------------------------------------------


@CUDA_MARK
@pytest.mark.parametrize("model", MODELS)
def test_cuda_opcheck_and_determinism(model):
    inputs = make_inputs(3, 2500, model, dtype=torch.float32, device="cuda", seed=16)
    small = {k: v[:, :7].contiguous() if k == "points" else v for k, v in inputs.items()}
    torch.library.opcheck(
        torch.ops.skelops.project_points.default,
        (*[v.requires_grad_(True) for v in small.values()], model == "weak_perspective", 1e-6),
    )
    first = grads_of(inputs, model, "cuda")[1]
    second = grads_of(inputs, model, "cuda")[1]
    for name, grad in first.items():
        assert torch.equal(grad, second[name]), name
    _, expected = grads_of({k: v.double() for k, v in inputs.items()}, model, "reference")
    for name, grad in first.items():
        assert_close_scaled(grad, expected[name], torch.float32)


# --- reprojection_loss -----------------------------------------------------------------------


def loss_inputs(seed=20):
    gen = torch.Generator().manual_seed(seed)
    projected = torch.rand(2, 3, 5, 2, generator=gen, dtype=torch.float64) * 100
    target = projected + torch.randn(2, 3, 5, 2, generator=gen, dtype=torch.float64) * 5
    confidence = torch.rand(2, 3, 5, generator=gen, dtype=torch.float64)
    return projected, target, confidence


def test_loss_reductions():
    projected, target, confidence = loss_inputs()
    r = ((projected - target) ** 2).sum(-1)
    per_point = skelops.reprojection_loss(projected, target, confidence, reduction="none")
    torch.testing.assert_close(per_point, confidence * r)
    total = skelops.reprojection_loss(projected, target, confidence, reduction="sum")
    torch.testing.assert_close(total, (confidence * r).sum())
    mean = skelops.reprojection_loss(projected, target, confidence)
    torch.testing.assert_close(mean, (confidence * r).sum() / confidence.sum())
    torch.testing.assert_close(skelops.reprojection_loss(projected, target), r.mean())
    zero = skelops.reprojection_loss(projected, target, torch.zeros_like(confidence))
    assert zero.item() == 0


def test_loss_robust():
    projected, target, confidence = loss_inputs(21)
    sigma = 10.0
    r = ((projected - target) ** 2).sum(-1)
    gmof = sigma**2 * r / (sigma**2 + r)
    out = skelops.reprojection_loss(
        projected, target, confidence, reduction="none", robust_sigma=sigma
    )
    torch.testing.assert_close(out, confidence * gmof)
    assert (out <= confidence * sigma**2).all()


def test_loss_nan_target_with_zero_confidence():
    projected, target, confidence = loss_inputs(22)
    target[0, 1, 2] = float("nan")
    target[1, 0, 4, 0] = float("inf")
    confidence[0, 1, 2] = 0.0
    confidence[1, 0, 4] = 0.0
    for robust_sigma in (None, 10.0):
        leaf = projected.clone().requires_grad_(True)
        loss = skelops.reprojection_loss(leaf, target, confidence, robust_sigma=robust_sigma)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(leaf.grad).all()
        assert (leaf.grad[0, 1, 2] == 0).all() and (leaf.grad[1, 0, 4] == 0).all()
        clean = torch.where(confidence[..., None] > 0, target, projected)
        expected = skelops.reprojection_loss(
            projected, clean, confidence, robust_sigma=robust_sigma
        )
        torch.testing.assert_close(loss, expected)


def test_loss_gradient_flows_to_projected_only():
    projected, target, confidence = loss_inputs(23)
    leaves = [t.clone().requires_grad_(True) for t in (projected, target, confidence)]
    loss = skelops.reprojection_loss(*leaves, reduction="sum")
    loss.backward()
    assert leaves[1].grad is None and leaves[2].grad is None
    torch.testing.assert_close(leaves[0].grad, 2 * confidence[..., None] * (projected - target))


def test_loss_half_precision_in_float32():
    projected, target, confidence = loss_inputs(24)
    target = target + 300.0  # squared distances beyond float16's range (65504)
    out = skelops.reprojection_loss(projected.half(), target.half(), confidence.half())
    assert out.dtype == torch.float32 and torch.isfinite(out)
    expected = skelops.reprojection_loss(
        projected.half().double(), target.half().double(), confidence.half().double()
    )
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=0)


UV = torch.zeros(2, 3, 2)


@pytest.mark.parametrize(
    "args, kwargs, error, match",
    [
        ((torch.zeros(2, 3), torch.zeros(2, 3)), {}, ValueError, r"projected must be \[N, \*, 2\]"),
        ((torch.zeros(2), torch.zeros(2)), {}, ValueError, "projected must be"),
        (
            (torch.zeros(2, 2, dtype=torch.int64), torch.zeros(2, 2)),
            {},
            TypeError,
            "projected must be a floating",
        ),
        (
            (torch.zeros(2, 3, 2), torch.zeros(2, 4, 2)),
            {},
            ValueError,
            "target must have projected's shape",
        ),
        ((torch.zeros(2, 3, 2), torch.zeros(2, 6)), {}, ValueError, "target must be"),
        (
            (torch.zeros(2, 3, 2), torch.zeros(2, 3, 2, device="meta")),
            {},
            ValueError,
            "target must be on the same device",
        ),
        ((UV, UV, torch.zeros(2, 4)), {}, ValueError, r"confidence must be \[N, \*\] = \[2, 3\]"),
        ((UV, UV, torch.zeros(2, 3, 1)), {}, ValueError, "confidence must be"),
        ((UV, UV), {"reduction": "avg"}, ValueError, "reduction must be one of"),
        ((UV, UV), {"robust_sigma": 0.0}, ValueError, "robust_sigma must be"),
    ],
)
def test_loss_bad_input(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        skelops.reprojection_loss(*args, **kwargs)
