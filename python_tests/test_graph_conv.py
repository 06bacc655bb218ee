"""skelops.graph_conv: every backend against the reference, gradients, opcheck, compile,
autocast, the nn layer and bad input (../shared/GUIDE.md section 2)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from helpers import DEVICES, assert_close_scaled, make_features, skip_unless_triton

import skelops
from skelops import reference


@dataclass(frozen=True)
class Case:
    n: int
    c_in: int
    c_out: int
    t: int
    v: int
    k: int
    per_sample: bool = False
    bias: str | None = None  # None, "after" ([C_out]) or "before" ([K, C_out])
    layout: str = "contiguous"  # or "channels_last" (permuted view) or "strided" (sliced T)

    def __str__(self) -> str:
        a = "A[N]" if self.per_sample else "A"
        return (
            f"N{self.n}-C{self.c_in}x{self.c_out}-T{self.t}-V{self.v}-K{self.k}-{a}-"
            f"b{self.bias}-{self.layout}"
        )


CASES = [
    Case(2, 3, 5, 4, 7, 3, bias="before"),
    Case(3, 6, 4, 5, 25, 2, per_sample=True, bias="after", layout="channels_last"),
    Case(1, 4, 4, 3, 1, 1),
    Case(2, 5, 9, 6, 18, 3, per_sample=True, bias="before", layout="strided"),
    Case(2, 7, 3, 2, 10, 2, bias="after"),  # C_in > C_out: the channels-first order on CPU
    Case(2, 16, 24, 13, 25, 3, bias="before", layout="strided"),
]
SMALL_CASES = CASES[:3]


def sample_inputs(case: Case, dtype=torch.float64, device="cpu", requires_grad=False, seed=0):
    """x, weight, adjacency, bias for ``case`` (fresh random values; x in the case's layout)."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype)

    x = make_features(rand, case.n, case.c_in, case.t, case.v, case.layout)
    weight = rand(case.k, case.c_out, case.c_in)
    a_shape = (case.n, case.k, case.v, case.v) if case.per_sample else (case.k, case.v, case.v)
    adjacency = rand(*a_shape)
    bias = None
    if case.bias == "after":
        bias = rand(case.c_out)
    elif case.bias == "before":
        bias = rand(case.k, case.c_out)
    tensors = [x, weight, adjacency, bias]
    tensors = [None if t is None else t.to(device) for t in tensors]
    if case.layout != "contiguous":
        assert not tensors[0].is_contiguous()
    if requires_grad:
        for t in tensors:
            if t is not None:
                t.requires_grad_(True)
    return tensors


def stgcn_conv_einsum(x, weight, adjacency, bias):
    """Independent oracle, written as ST-GCN writes it (conv1x1, view, einsum)."""
    n, _, t, v = x.shape
    k, c_out, c_in = weight.shape
    b = bias.reshape(-1) if bias is not None and bias.dim() == 2 else None
    z = F.conv2d(x, weight.reshape(k * c_out, c_in, 1, 1), b).view(n, k, c_out, t, v)
    eq = "nkctv,kvw->nctw" if adjacency.dim() == 3 else "nkctv,nkvw->nctw"
    y = torch.einsum(eq, z, adjacency)
    return y + bias.view(1, -1, 1, 1) if bias is not None and bias.dim() == 1 else y


def backends_for(device: str) -> list[str]:
    return ["cpu", "triton"] if device == "cpu" else ["cuda", "triton"]


def _skip_unsupported(backend: str, device: str, dtype: torch.dtype) -> None:
    if backend == "triton":
        skip_unless_triton(device)
    if backend == "cuda" and dtype == torch.float64:
        pytest.skip("the CUDA kernels take float32/float16/bfloat16")


# --- the reference itself ---------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=str)
def test_reference_matches_elementwise_definition(case):
    x, w, a, b = sample_inputs(case)
    per_sample = a if a.dim() == 4 else a.expand(case.n, *a.shape)
    expected = torch.einsum("koc,nctv,nkvw->notw", w, x, per_sample)
    if b is not None and b.dim() == 2:
        expected = expected + torch.einsum("ko,nkvw->now", b, per_sample)[:, :, None, :]
    elif b is not None:
        expected = expected + b.view(1, -1, 1, 1)
    torch.testing.assert_close(reference.graph_conv(x, w, a, b), expected)
    torch.testing.assert_close(stgcn_conv_einsum(x, w, a, b), expected)


# --- forward and backward of every backend vs the reference -----------------------------------


# Triton runs on the small cases only: under the CPU interpreter it is slow.
BACKEND_CASES = [("compiled", c) for c in CASES] + [("triton", c) for c in SMALL_CASES]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend, case", BACKEND_CASES, ids=lambda p: str(p))
def test_forward_backward_float64_and_float32(case, backend, device):
    backend = backends_for(device)[0] if backend == "compiled" else backend
    for dtype in (torch.float64, torch.float32):
        if backend == "cuda" and dtype == torch.float64:
            continue
        _skip_unsupported(backend, device, dtype)
        inputs = sample_inputs(case, dtype, device, requires_grad=True, seed=1)
        ref_inputs = [
            None if t is None else t.detach().double().cpu().requires_grad_() for t in inputs
        ]
        y = skelops.graph_conv(*inputs, backend=backend)
        y_ref = stgcn_conv_einsum(*ref_inputs)
        assert y.dtype == dtype and y.device.type == device and y.is_contiguous()
        assert_close_scaled(y, y_ref, dtype)
        grad = torch.randn(
            y_ref.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2)
        )
        y.backward(grad.to(dtype).to(device))
        y_ref.backward(grad)
        for name, t, r in zip(
            ("x", "weight", "adjacency", "bias"), inputs, ref_inputs, strict=True
        ):
            if t is not None:
                assert t.grad is not None, name
                assert_close_scaled(t.grad, r.grad, dtype)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision(device, dtype):
    case = CASES[1]
    for backend in backends_for(device):
        if backend == "triton":
            continue  # Triton's low precision is tested in test_graph_conv_triton_kernels.py
        inputs = sample_inputs(case, dtype, device, requires_grad=True, seed=3)
        y = skelops.graph_conv(*inputs, backend=backend)
        assert y.dtype == dtype
        exact = stgcn_conv_einsum(*[t.detach().double().cpu() for t in inputs])
        assert_close_scaled(y, exact, dtype)
        y.float().square().sum().backward()
        assert all(t.grad is not None and t.grad.dtype == dtype for t in inputs if t is not None)


def test_masked_gradients_match_and_are_skipped():
    case = CASES[0]
    x, w, a, b = sample_inputs(case, seed=4)
    grad = torch.randn(case.n, case.c_out, case.t, case.v, dtype=torch.float64)
    full = torch.ops.skelops.graph_conv_backward(grad, x, w, a, b, [True, True, True, True])
    for i in range(4):
        mask = [j == i for j in range(4)]
        part = torch.ops.skelops.graph_conv_backward(grad, x, w, a, b, mask)
        for j in range(4):
            if j == i:
                torch.testing.assert_close(part[j], full[j])
            else:
                assert part[j].numel() == 0


def test_only_x_requires_grad_saves_no_x():
    x, w, a, b = sample_inputs(CASES[0], requires_grad=False, seed=5)
    w.requires_grad_(False)
    x.requires_grad_(True)
    y = skelops.graph_conv(x, w, a, b)
    y.sum().backward()
    xr = x.detach().clone().requires_grad_()
    stgcn_conv_einsum(xr, w, a, b).sum().backward()
    torch.testing.assert_close(x.grad, xr.grad)


GRADCHECK_CASES = [
    Case(2, 2, 3, 2, 4, 2, bias="before"),
    Case(2, 3, 2, 2, 3, 2, per_sample=True, bias="before", layout="strided"),
    Case(1, 2, 2, 3, 5, 1, bias="after", layout="channels_last"),
]


@pytest.mark.parametrize("case", GRADCHECK_CASES, ids=str)
def test_gradcheck_float64(case):
    inputs = sample_inputs(case, requires_grad=True, seed=6)
    args = [t for t in inputs]
    assert torch.autograd.gradcheck(
        lambda x, w, a, *rest: skelops.graph_conv(
            x, w, a, rest[0] if rest else None, backend="cpu"
        ),
        [t for t in args if t is not None],
    )


def test_gradcheck_triton_float64():
    skip_unless_triton("cpu")
    inputs = sample_inputs(Case(1, 2, 3, 2, 4, 2, bias="before"), requires_grad=True, seed=7)
    assert torch.autograd.gradcheck(
        lambda x, w, a, b: skelops.graph_conv(x, w, a, b, backend="triton"), inputs
    )


# --- torch.library.opcheck and torch.compile ---------------------------------------------------


@pytest.mark.parametrize("case", CASES[:3], ids=str)
@pytest.mark.parametrize("requires_grad", [False, True])
def test_opcheck(case, requires_grad):
    inputs = sample_inputs(case, torch.float32, requires_grad=requires_grad, seed=8)
    torch.library.opcheck(torch.ops.skelops.graph_conv.default, tuple(inputs))
    x, w, a, b = [None if t is None else t.detach() for t in inputs]
    grad = torch.randn(case.n, case.c_out, case.t, case.v)
    for mask in ([True, True, True, b is not None], [True, False, False, False]):
        torch.library.opcheck(
            torch.ops.skelops.graph_conv_backward.default, (grad, x, w, a, b, mask)
        )


def test_opcheck_triton_op():
    skip_unless_triton("cpu")
    inputs = sample_inputs(Case(1, 2, 3, 2, 5, 2, bias="after"), torch.float32, requires_grad=True)
    torch.library.opcheck(
        torch.ops.skelops.graph_conv_triton.default,
        tuple(inputs),
        test_utils=("test_schema", "test_autograd_registration", "test_faketensor"),
    )


def test_compile_fullgraph_forward_backward():
    torch._dynamo.reset()
    case = Case(2, 4, 6, 5, 7, 3, bias="before")
    x, w, a, b = sample_inputs(case, torch.float32, requires_grad=True, seed=9)
    layer = skelops.nn.GraphConv(4, 6, a.detach(), edge_importance=True)

    def model(x):
        return torch.relu(layer(x)).mean(dim=(2, 3)) + skelops.graph_conv(x, w, a, b).sum()

    compiled = torch.compile(model, fullgraph=True)
    out = compiled(x)
    expected = model(x)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    out.sum().backward()
    grads = [x.grad.clone(), w.grad.clone(), layer.weight.grad.clone()]
    for t in (x, w, layer.weight):
        t.grad = None
    expected.sum().backward()
    for g, t in zip(grads, (x, w, layer.weight), strict=True):
        torch.testing.assert_close(g, t.grad, rtol=1e-5, atol=1e-5)


# --- autocast ----------------------------------------------------------------------------------


def test_autocast_cpu_runs_in_bfloat16():
    x, w, a, b = sample_inputs(CASES[0], torch.float32, requires_grad=True, seed=10)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = skelops.graph_conv(x, w, a, b)
    assert y.dtype == torch.bfloat16
    assert_close_scaled(
        y, stgcn_conv_einsum(x.double(), w.double(), a.double(), b.double()), torch.bfloat16
    )
    y.float().sum().backward()
    assert x.grad.dtype == torch.float32 and w.grad.dtype == torch.float32


# --- NaN policy --------------------------------------------------------------------------------


def test_nan_propagates_like_the_reference():
    x, w, a, b = sample_inputs(CASES[0], torch.float32, seed=11)
    x = x.clone()
    x[1, 0, 2, 3] = float("nan")
    y = skelops.graph_conv(x, w, a, b)
    expected = stgcn_conv_einsum(x, w, a, b)
    assert torch.equal(y.isnan(), expected.isnan())
    assert y[1, :, 2, :].isnan().all() and not y[0].isnan().any()


# --- the nn layer ------------------------------------------------------------------------------


def test_graphconv_equals_stgcn_conv_temporal_graphical():
    torch.manual_seed(0)
    k, c_in, c_out, v = 3, 6, 10, 25
    adjacency = torch.rand(k, v, v)
    conv = torch.nn.Conv2d(c_in, k * c_out, 1)
    layer = skelops.nn.GraphConv(c_in, c_out, adjacency).load_conv1x1(conv)
    assert sum(p.numel() for p in layer.parameters()) == sum(p.numel() for p in conv.parameters())
    x = torch.randn(4, c_in, 9, v)
    expected = torch.einsum("nkctv,kvw->nctw", conv(x).view(4, k, c_out, 9, v), adjacency)
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)


def test_graphconv_edge_importance_and_forward_adjacency():
    torch.manual_seed(1)
    adjacency = torch.rand(2, 7, 7)
    layer = skelops.nn.GraphConv(
        3, 4, adjacency, edge_importance=True, bias_before_aggregation=False
    )
    with torch.no_grad():
        layer.edge_importance.uniform_(0.5, 1.5)
    x = torch.randn(2, 3, 5, 7)
    expected = reference.graph_conv(x, layer.weight, adjacency * layer.edge_importance, layer.bias)
    torch.testing.assert_close(layer(x), expected)
    per_sample = torch.rand(2, 2, 7, 7)
    expected = reference.graph_conv(x, layer.weight, per_sample * layer.edge_importance, layer.bias)
    torch.testing.assert_close(layer(x, per_sample), expected)
    layer(x).sum().backward()
    assert layer.edge_importance.grad is not None and layer.bias.grad.shape == (4,)
    state = layer.state_dict()
    assert set(state) == {"adjacency", "weight", "bias", "edge_importance"}


def test_graphconv_rejects_bad_construction():
    with pytest.raises(ValueError, match="adjacency must be"):
        skelops.nn.GraphConv(3, 4, torch.rand(7, 7))
    with pytest.raises(ValueError, match="in_channels"):
        skelops.nn.GraphConv(0, 4, torch.rand(1, 7, 7))
    layer = skelops.nn.GraphConv(3, 4, torch.rand(2, 7, 7), bias_before_aggregation=False)
    with pytest.raises(ValueError, match="bias_before_aggregation"):
        layer.load_conv1x1(torch.nn.Conv2d(3, 8, 1))


# --- bad input ---------------------------------------------------------------------------------


def _good():
    return sample_inputs(CASES[0], torch.float32, seed=12)


@pytest.mark.parametrize(
    "mutate, error, match",
    [
        (lambda x, w, a, b: (x[0], w, a, b), ValueError, r"x must be \[N, C_in, T, V\] \(4-D\)"),
        (lambda x, w, a, b: (x, w[0], a, b), ValueError, r"weight must be \[K, C_out, C_in\]"),
        (lambda x, w, a, b: (x, w, a[0], b), ValueError, "adjacency must be"),
        (lambda x, w, a, b: (x, w[:, :, :2], a, b), ValueError, r"weight.shape\[2\] must be 3"),
        (lambda x, w, a, b: (x, w[:2], a, b[:2]), ValueError, r"adjacency.shape\[-3\] must be 2"),
        (lambda x, w, a, b: (x, w, a[:, :5, :5], b), ValueError, "V x V with V=7"),
        (lambda x, w, a, b: (x, w, a.expand(3, 3, 7, 7), b), ValueError, r"adjacency.shape\[0\]"),
        (lambda x, w, a, b: (x, w, a, b[:, :2]), ValueError, r"bias must be \[C_out\]=\[5\]"),
        (lambda x, w, a, b: (x.long(), w, a, b), TypeError, "x must be a floating-point"),
        (lambda x, w, a, b: (x, w.double(), a, b), TypeError, "weight must have the same dtype"),
        (
            lambda x, w, a, b: (x, w, a.to("meta"), b),
            ValueError,
            "adjacency must be on the same device",
        ),
        (lambda x, w, a, b: (x[:0], w, a, b), ValueError, "x must be non-empty"),
        (lambda x, w, a, b: (x.numpy(), w, a, b), TypeError, "x must be a torch.Tensor"),
    ],
)
def test_bad_input_raises_clear_errors(mutate, error, match):
    with pytest.raises(error, match=match):
        skelops.graph_conv(*mutate(*_good()))


def test_bad_backend_names_the_available_ones():
    x, w, a, b = _good()
    with pytest.raises(ValueError, match="backend must be one of"):
        skelops.graph_conv(x, w, a, b, backend="fast")
    with pytest.raises(ValueError, match=r"backend='cuda' is not available.*available for cpu"):
        skelops.graph_conv(x, w, a, b, backend="cuda")


def test_direct_op_call_with_bad_input_raises_not_crashes():
    x, w, a, b = _good()
    with pytest.raises(ValueError, match="adjacency must have K=3"):
        torch.ops.skelops.graph_conv(x, w, a[:2], b)
    with pytest.raises(ValueError, match="x must be non-empty"):
        torch.ops.skelops.graph_conv(x[:0], w, a, b)
    with pytest.raises(TypeError, match="must share one dtype"):
        torch.ops.skelops.graph_conv(x, w.double(), a, b)
    grad = torch.randn(2, 5, 4, 6)
    with pytest.raises(ValueError, match="grad_out must be"):
        torch.ops.skelops.graph_conv_backward(grad, x, w, a, b, [True, True, True, True])
