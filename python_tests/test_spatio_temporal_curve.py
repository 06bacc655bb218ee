"""skelops.spatio_temporal_curve: every backend against the reference (outputs and the
per-transition statistics), gradients, opcheck, compile, autocast and bad input
(../shared/GUIDE.md section 2). Launcher-level Triton cases are in
test_spatio_temporal_curve_triton_kernels.py."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch
from helpers import assert_close_scaled, make_features, skip_unless_triton

import skelops
from skelops import graphs, reference
from skelops.reference.spatio_temporal_curve import curve_scale

CUDA = pytest.param(
    "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
)
ALL_DEVICES = ["cpu", CUDA]


@dataclass(frozen=True)
class Case:
    n: int
    c: int
    t: int
    v: int
    d: int | None  # key channels; None: the key is x itself
    length: int
    candidates: str | None = None  # None (all joints), "ring" (single-candidate rows), "ntu"
    layout: str = "contiguous"  # x's layout: or "channels_last" / "strided" (make_features)
    scale: float | None = None

    def __str__(self) -> str:
        key = "x" if self.d is None else f"D{self.d}"
        return (
            f"N{self.n}-C{self.c}-T{self.t}-V{self.v}-key{key}-L{self.length}-"
            f"cand{self.candidates}-{self.layout}"
        )


CASES = [
    Case(2, 3, 5, 7, 4, 2, scale=0.7),
    Case(2, 5, 6, 7, 3, 10, "ring", "channels_last"),  # length > T - 1
    Case(3, 4, 2, 1, 2, 1),  # T = 2, V = 1, length = 1
    Case(2, 6, 7, 25, None, 4, "ntu", "strided"),  # key = x, NTU 1-hop candidates
    Case(1, 37, 9, 7, 5, 3, "ring", "strided", scale=1.3),  # C > 32: two channel groups (CPU)
]
# Triton runs on small cases only: under the CPU interpreter it is slow.
TRITON_CASES = CASES[:3]


def candidate_mask(kind: str | None, v: int) -> torch.Tensor | None:
    """None, a ring (v -> v, v + 1) with rows 0 and 2 of one candidate each (0 -> 0 and
    2 -> V - 1), or the NTU joints within one hop."""
    if kind is None:
        return None
    if kind == "ntu":
        return graphs.hop_distance("ntu_stgcn") <= 1
    mask = torch.eye(v, dtype=torch.bool) | torch.eye(v, dtype=torch.bool).roll(1, dims=1)
    mask[0] = False
    mask[0, 0] = True
    mask[2] = False
    mask[2, v - 1] = True
    return mask


def sample_inputs(case: Case, dtype=torch.float64, device="cpu", requires_grad=False, seed=0):
    """x, key (None for key = x), candidates for ``case`` (fresh random values; x in the case's
    layout, key as a permuted view)."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype)

    x = make_features(rand, case.n, case.c, case.t, case.v, case.layout).to(device)
    key = None
    if case.d is not None:
        key = rand(case.n, case.t, case.v, case.d).permute(0, 3, 1, 2).to(device)
    cand = candidate_mask(case.candidates, case.v)
    cand = None if cand is None else cand.to(device)
    if requires_grad:
        x.requires_grad_(True)
        if key is not None:
            key.requires_grad_(True)
    return x, key, cand


def brute_force(x, length, key, candidates, scale):
    """Independent oracle: one Python loop per curve (tiny shapes only)."""
    key = x if key is None else key
    n, c, t, v = x.shape
    y = torch.zeros_like(x)
    for b in range(n):
        for t0 in range(t):
            for v0 in range(v):
                joint, weight = v0, 1.0
                y[b, :, t0, v0] = x[b, :, t0, v0]
                for i in range(1, min(length, t - 1 - t0) + 1):
                    s = scale * torch.einsum(
                        "d,dw->w", key[b, :, t0 + i - 1, joint], key[b, :, t0 + i]
                    )
                    if candidates is not None:
                        s = s.masked_fill(~candidates[joint], float("-inf"))
                    nxt = int(s.argmax())
                    weight = weight * s.softmax(0)[nxt]
                    joint = nxt
                    y[b, :, t0, v0] += weight * x[b, :, t0 + i, joint]
    return y


def reference_statistics(x, key, candidates, scale):
    """next_joint, log_prob, log_normalizer [N, T - 1, V] in float64 from the scores."""
    key = (x if key is None else key).detach().double().cpu()
    scores = torch.einsum("ndtv,ndtw->ntvw", key[:, :, :-1], key[:, :, 1:]) * scale
    if candidates is not None:
        scores = scores.masked_fill(~candidates.cpu(), float("-inf"))
    log_normalizer = scores.logsumexp(-1)
    return scores.argmax(-1), scores.max(-1).values - log_normalizer, log_normalizer


def scale_of(case: Case) -> float:
    return curve_scale(case.c if case.d is None else case.d, case.scale)


def run_op(backend: str, x, key, cand, length, scale):
    """The op behind ``backend``: (y, next_joint, log_prob, log_normalizer)."""
    op = (
        torch.ops.skelops.spatio_temporal_curve_triton
        if backend == "triton"
        else torch.ops.skelops.spatio_temporal_curve
    )
    return op(x, x if key is None else key, cand, length, scale)


def backend_for(backend: str, device: str) -> str:
    return device if backend == "compiled" else backend


# --- the reference itself ---------------------------------------------------------------------


@pytest.mark.parametrize("case", [CASES[0], CASES[1], CASES[2]], ids=str)
def test_reference_matches_brute_force(case):
    x, key, cand = sample_inputs(case, seed=11)
    s = scale_of(case)
    expected = brute_force(x, case.length, key, cand, s)
    torch.testing.assert_close(
        reference.spatio_temporal_curve(x, case.length, key, cand, s), expected
    )


# --- forward, statistics and backward of every backend vs the reference -----------------------

BACKEND_CASES = [("compiled", c) for c in CASES] + [("triton", c) for c in TRITON_CASES]


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("backend, case", BACKEND_CASES, ids=str)
def test_forward_statistics_backward(case, backend, device):
    backend = backend_for(backend, device)
    if backend == "triton":
        skip_unless_triton(device)
    s = scale_of(case)
    dtypes = (torch.float32,) if device == "cuda" else (torch.float64, torch.float32)
    for dtype in dtypes:
        x, key, cand = sample_inputs(case, dtype, device, requires_grad=True, seed=1)
        ref_x = x.detach().double().cpu().requires_grad_()
        ref_key = None if key is None else key.detach().double().cpu().requires_grad_()
        y = skelops.spatio_temporal_curve(x, case.length, key, cand, case.scale, backend=backend)
        y_ref = reference.spatio_temporal_curve(
            ref_x, case.length, ref_key, None if cand is None else cand.cpu(), s
        )
        assert y.dtype == dtype and y.device.type == device and y.is_contiguous()
        assert_close_scaled(y, y_ref, dtype)

        _, next_joint, log_prob, log_normalizer = run_op(
            backend, x.detach(), None if key is None else key.detach(), cand, case.length, s
        )
        ref_next, ref_log_prob, ref_log_normalizer = reference_statistics(x, key, cand, s)
        stats = torch.float64 if dtype == torch.float64 else torch.float32
        assert next_joint.dtype == torch.int32 and log_prob.dtype == stats
        assert torch.equal(next_joint.cpu().long(), ref_next)
        assert_close_scaled(log_prob, ref_log_prob, dtype)
        assert_close_scaled(log_normalizer, ref_log_normalizer, dtype)

        grad = torch.randn(
            y_ref.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2)
        )
        y.backward(grad.to(dtype).to(device))
        y_ref.backward(grad)
        assert x.grad is not None and x.grad.dtype == dtype
        assert_close_scaled(x.grad, ref_x.grad, dtype)
        if key is not None:
            assert key.grad is not None and key.grad.dtype == dtype
            assert_close_scaled(key.grad, ref_key.grad, dtype)
        # Not vacuous: with more than one candidate the key's gradient is of the size of x's
        # (with V = 1 every step has probability 1 and the key none).
        if key is not None and case.v > 1:
            assert ref_key.grad.abs().max() > 1e-2


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision(device, dtype):
    case = CASES[1]
    x, key, cand = sample_inputs(case, dtype, device, requires_grad=True, seed=3)
    y = skelops.spatio_temporal_curve(x, case.length, key, cand, backend=device)
    assert y.dtype == dtype
    exact_x, exact_key = x.detach().double().cpu().requires_grad_(), key.detach().double().cpu()
    exact_key.requires_grad_()
    exact = reference.spatio_temporal_curve(
        exact_x, case.length, exact_key, cand.cpu(), scale_of(case)
    )
    assert_close_scaled(y, exact, dtype)
    grad = torch.randn(exact.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    y.backward(grad.to(dtype).to(device))
    exact.backward(grad)
    assert x.grad.dtype == dtype and key.grad.dtype == dtype
    assert_close_scaled(x.grad, exact_x.grad, dtype)
    assert_close_scaled(key.grad, exact_key.grad, dtype)


@pytest.mark.parametrize("backend", ["cpu", "triton"])
def test_ties_take_the_lowest_joint(backend):
    if backend == "triton":
        skip_unless_triton("cpu")
    x, _, _ = sample_inputs(Case(2, 3, 4, 6, 3, 3), seed=5)
    # Small integers: every score is exact whatever the summation order, so ties are ties.
    key = torch.randint(-2, 3, (2, 3, 4, 6), generator=torch.Generator().manual_seed(5)).double()
    key[:, :, :, 4] = key[:, :, :, 1]  # joints 1 and 4 score alike from every joint
    s = 0.5
    _, next_joint, _, _ = run_op(backend, x, key, None, 3, s)
    ref_next, _, _ = reference_statistics(x, key, None, s)
    assert torch.equal(next_joint.long(), ref_next)
    assert (ref_next == 1).any() and not (ref_next == 4).any()  # ties happened, and went to 1
    y = skelops.spatio_temporal_curve(x, 3, key, scale=s, backend=backend)
    assert_close_scaled(y, reference.spatio_temporal_curve(x, 3, key, scale=s), torch.float64)


def test_nan_score_propagates_like_the_reference():
    x, key, _ = sample_inputs(Case(1, 2, 4, 5, 3, 2), torch.float32, seed=6)
    key = key.clone()
    key[0, 1, 2, 3] = float("nan")  # every score into (t=2, w=3) and out of it is NaN
    y, next_joint, _, _ = run_op("cpu", x, key, None, 2, 0.5)
    expected = reference.spatio_temporal_curve(x, 2, key, scale=0.5)
    ref_next, _, _ = reference_statistics(x, key, None, 0.5)
    assert torch.equal(next_joint.long(), ref_next)
    assert torch.equal(y.isnan(), expected.isnan()) and y.isnan().any()
    assert_close_scaled(y.nan_to_num(), expected.nan_to_num(), torch.float32)


def test_masked_gradients_match_and_are_skipped():
    case = CASES[1]
    x, key, cand = sample_inputs(case, seed=7)
    s = scale_of(case)
    _, *stats = torch.ops.skelops.spatio_temporal_curve(x, key, cand, case.length, s)
    grad = torch.randn(x.shape, dtype=torch.float64)
    args = (grad, x, key, cand, *stats, case.length, s)
    full = torch.ops.skelops.spatio_temporal_curve_backward(*args, [True, True])
    for i in range(2):
        part = torch.ops.skelops.spatio_temporal_curve_backward(*args, [j == i for j in range(2)])
        torch.testing.assert_close(part[i], full[i])
        assert part[1 - i].numel() == 0


def test_statistics_are_not_differentiable():
    x, key, cand = sample_inputs(CASES[0], requires_grad=True, seed=8)
    y, next_joint, log_prob, log_normalizer = torch.ops.skelops.spatio_temporal_curve(
        x, key, cand, 2, 0.5
    )
    assert y.requires_grad
    assert not (next_joint.requires_grad or log_prob.requires_grad or log_normalizer.requires_grad)


GRADCHECK_CASES = [
    Case(2, 2, 4, 3, 2, 2, scale=0.8),
    Case(1, 3, 3, 4, None, 5, "ring", "channels_last"),
    Case(2, 2, 2, 1, 3, 1),
]


@pytest.mark.parametrize("case", GRADCHECK_CASES, ids=str)
def test_gradcheck_float64(case):
    x, key, cand = sample_inputs(case, requires_grad=True, seed=9)
    inputs = [x] if key is None else [x, key]
    assert torch.autograd.gradcheck(
        lambda x, *k: skelops.spatio_temporal_curve(
            x, case.length, k[0] if k else None, cand, case.scale, backend="cpu"
        ),
        inputs,
    )


def test_gradcheck_triton_float64():
    skip_unless_triton("cpu")
    case = Case(1, 2, 3, 3, 2, 2, "ring", scale=0.8)
    x, key, cand = sample_inputs(case, requires_grad=True, seed=10)
    # fast_mode: a few directional derivatives instead of one per element (the interpreter
    # takes a fraction of a second per call).
    assert torch.autograd.gradcheck(
        lambda x, k: skelops.spatio_temporal_curve(
            x, case.length, k, cand, case.scale, backend="triton"
        ),
        [x, key],
        fast_mode=True,
    )


# --- torch.library.opcheck and torch.compile ---------------------------------------------------


@pytest.mark.parametrize("case", [CASES[0], CASES[1]], ids=str)
@pytest.mark.parametrize("requires_grad", [False, True])
def test_opcheck(case, requires_grad):
    x, key, cand = sample_inputs(case, torch.float32, requires_grad=requires_grad, seed=12)
    s = scale_of(case)
    key = x if key is None else key
    torch.library.opcheck(
        torch.ops.skelops.spatio_temporal_curve.default, (x, key, cand, case.length, s)
    )
    x, key = x.detach(), key.detach()
    _, *stats = torch.ops.skelops.spatio_temporal_curve(x, key, cand, case.length, s)
    grad = torch.randn(x.shape)
    for mask in ([True, True], [False, True]):
        torch.library.opcheck(
            torch.ops.skelops.spatio_temporal_curve_backward.default,
            (grad, x, key, cand, *stats, case.length, s, mask),
        )


def test_opcheck_triton_op():
    skip_unless_triton("cpu")
    x, key, cand = sample_inputs(Case(1, 2, 3, 5, 2, 2, "ring"), torch.float32, requires_grad=True)
    torch.library.opcheck(
        torch.ops.skelops.spatio_temporal_curve_triton.default,
        (x, key, cand, 2, 0.5),
        test_utils=("test_schema", "test_autograd_registration", "test_faketensor"),
    )


def test_compile_fullgraph_forward_backward():
    torch._dynamo.reset()
    case = CASES[1]
    x, key, cand = sample_inputs(case, torch.float32, requires_grad=True, seed=13)

    def model(x, key):
        return torch.tanh(skelops.spatio_temporal_curve(x, case.length, key, cand)).sum(dim=(2, 3))

    compiled = torch.compile(model, fullgraph=True)
    out = compiled(x, key)
    expected = model(x, key)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    out.sum().backward()
    grads = [x.grad.clone(), key.grad.clone()]
    x.grad = key.grad = None
    expected.sum().backward()
    torch.testing.assert_close(grads[0], x.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grads[1], key.grad, rtol=1e-5, atol=1e-5)


# --- autocast ----------------------------------------------------------------------------------


def test_autocast_cpu_runs_in_bfloat16():
    case = CASES[0]
    x, key, cand = sample_inputs(case, torch.float32, requires_grad=True, seed=14)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = skelops.spatio_temporal_curve(x, case.length, key, cand, case.scale)
    assert y.dtype == torch.bfloat16
    exact = reference.spatio_temporal_curve(
        x.detach().bfloat16().double(), case.length, key.detach().bfloat16().double(), cand,
        case.scale,
    )  # fmt: skip
    assert_close_scaled(y, exact, torch.bfloat16)
    y.float().sum().backward()
    assert x.grad.dtype == torch.float32 and key.grad.dtype == torch.float32


# --- the nn layer ------------------------------------------------------------------------------


def test_layer_uses_its_key_projection():
    torch.manual_seed(0)
    cand = graphs.hop_distance("ntu_stgcn") <= 1
    layer = skelops.nn.SpatioTemporalCurve(8, 3, key_channels=2, candidates=cand)
    x = torch.randn(2, 8, 5, 25)
    expected = reference.spatio_temporal_curve(x, 3, layer.key(x), cand, 2**-0.5)
    torch.testing.assert_close(layer(x), expected)


# --- bad input ---------------------------------------------------------------------------------


def _good():
    x, key, cand = sample_inputs(CASES[1], torch.float32, seed=15)
    return x, key, cand


@pytest.mark.parametrize(
    "mutate, error, match",
    [
        (lambda x, k, c: (x[0], 2, k, c), ValueError, r"x must be \[N, C, T, V\] \(4-D\)"),
        (lambda x, k, c: (x, 2, k[0], c), ValueError, r"key must be \[N, D, T, V\]"),
        (lambda x, k, c: (x, 2, k[:1], c), ValueError, r"key.shape\[0\] must be 2"),
        (lambda x, k, c: (x, 2, k[:, :, :3], c), ValueError, r"key.shape\[2\] must be 6"),
        (lambda x, k, c: (x, 2, k[..., :5], c), ValueError, r"key.shape\[3\] must be 7"),
        (lambda x, k, c: (x, 2, k[:, :0], c), ValueError, "key must have D >= 1"),
        (lambda x, k, c: (x[:, :, :1], 2, k[:, :, :1], c), ValueError, "T >= 2"),
        (lambda x, k, c: (x[:0], 2, k[:0], c), ValueError, "x must be non-empty"),
        (lambda x, k, c: (x.long(), 2, k, c), TypeError, "x must be a floating-point"),
        (lambda x, k, c: (x, 2, k.double(), c), TypeError, "key must have the same dtype"),
        (lambda x, k, c: (x, 2, k.to("meta"), c), ValueError, "key must be on the same device"),
        (lambda x, k, c: (x, 2, k, c.to("meta")), ValueError, "candidates must be on x's device"),
        (lambda x, k, c: (x, 2, k, c.int()), TypeError, "candidates must be a bool tensor"),
        (lambda x, k, c: (x, 2, k, c[:5, :5]), ValueError, r"candidates must be \[V, V\]"),
        (lambda x, k, c: (x, 2, k, c & ~c[:, :1]), ValueError, r"rows \[0, 6\] are empty"),
        (lambda x, k, c: (x, 0, k, c), ValueError, "length must be >= 1"),
        (lambda x, k, c: (x, 1.5, k, c), TypeError, "length must be an int"),
        (lambda x, k, c: (x.numpy(), 2, k, c), TypeError, "x must be a torch.Tensor"),
    ],
)
def test_bad_input_raises_clear_errors(mutate, error, match):
    with pytest.raises(error, match=match):
        skelops.spatio_temporal_curve(*mutate(*_good()))


def test_bad_scale_and_backend():
    x, key, cand = _good()
    with pytest.raises(ValueError, match="scale must be finite"):
        skelops.spatio_temporal_curve(x, 2, key, cand, scale=math.inf)
    with pytest.raises(ValueError, match="backend must be one of"):
        skelops.spatio_temporal_curve(x, 2, key, cand, backend="fast")
    with pytest.raises(ValueError, match=r"backend='cuda' is not available.*available for cpu"):
        skelops.spatio_temporal_curve(x, 2, key, cand, backend="cuda")


@pytest.mark.parametrize("device", ALL_DEVICES)
def test_direct_op_call_with_bad_input_raises_not_crashes(device):
    x, key, cand = (t.to(device) for t in _good())
    op = torch.ops.skelops.spatio_temporal_curve
    with pytest.raises(ValueError, match="x must be 4-D"):
        op(x[0], key, cand, 2, 0.5)
    with pytest.raises(ValueError, match="x must be non-empty"):
        op(x[:0], key[:0], cand, 2, 0.5)
    with pytest.raises(ValueError, match=r"key must be \[N, D, T, V\]"):
        op(x, key[:, :, :3], cand, 2, 0.5)
    with pytest.raises(TypeError, match="key dtype must be"):
        op(x, key.double(), cand, 2, 0.5)
    with pytest.raises(ValueError, match="length must be >= 1"):
        op(x, key, cand, 0, 0.5)
    with pytest.raises(ValueError, match="scale must be finite"):
        op(x, key, cand, 2, math.nan)
    with pytest.raises(ValueError, match="row 0 is all False"):
        op(x, key, cand & ~cand[:, :1], 2, 0.5)
    with pytest.raises(TypeError, match="candidates must be a bool tensor"):
        op(x, key, cand.float(), 2, 0.5)
    _, next_joint, log_prob, log_normalizer = op(x, key, cand, 2, 0.5)
    backward = torch.ops.skelops.spatio_temporal_curve_backward
    grad = torch.randn_like(x)
    with pytest.raises(ValueError, match="grad_out must be"):
        backward(
            grad[:, :2], x, key, cand, next_joint, log_prob, log_normalizer, 2, 0.5, [True, True]
        )
    with pytest.raises(TypeError, match="log_prob dtype must be"):
        backward(
            grad, x, key, cand, next_joint, log_prob.double(), log_normalizer, 2, 0.5, [True, True]
        )
    with pytest.raises(ValueError, match="next_joint must be"):
        backward(
            grad, x, key, cand, next_joint[:, :1], log_prob, log_normalizer, 2, 0.5, [True, True]
        )
    if device == "cpu":  # on a GPU the kernels clamp instead (a check would synchronise)
        with pytest.raises(IndexError, match="next_joint entries must be joints"):
            backward(
                grad, x, key, cand, next_joint + 7, log_prob, log_normalizer, 2, 0.5, [True, True]
            )
