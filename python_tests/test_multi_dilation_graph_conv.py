"""skelops.multi_dilation_graph_conv: every backend against an independent oracle (graph
convolution once per dilation), gradients, opcheck, compile, autocast, the nn layer and bad
input (../shared/GUIDE.md section 2). The Triton launchers' own cases are in
test_multi_dilation_graph_conv_triton_kernels.py."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from helpers import assert_close_scaled, make_features, skip_unless_triton

import skelops
from skelops import reference

REDUCTIONS = ["sum", "concat"]
DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
    ),
]


@dataclass(frozen=True)
class Case:
    n: int
    c_in: int
    c_out: int
    t: int
    v: int
    k: int
    d: int
    bias: bool = True
    layout: str = "contiguous"  # or "channels_last" (permuted view) or "strided" (sliced T)

    def __str__(self) -> str:
        return (
            f"N{self.n}-C{self.c_in}x{self.c_out}-T{self.t}-V{self.v}-K{self.k}-D{self.d}-"
            f"b{int(self.bias)}-{self.layout}"
        )


# The CPU kernel and the CUDA glue choose their order by FLOP count: C_in >= C_out mixes the
# channels once (and runs the backward on the output side); a narrow C_in aggregates x per
# dilation first (and runs graph_conv's backward per dilation).
CASES = [
    Case(2, 3, 5, 5, 7, 3, 2),  # odd sizes; aggregate first forward, output-side backward
    Case(2, 7, 3, 5, 7, 2, 3, layout="channels_last"),  # mix once, output side
    Case(2, 3, 16, 4, 7, 3, 2, bias=False, layout="strided"),  # aggregate first, input side
    Case(1, 4, 4, 3, 1, 1, 1),  # one joint, one subset, one dilation
    Case(2, 16, 16, 6, 25, 3, 2, layout="strided"),  # the NTU graph's size, mix once
]
SMALL_CASES = CASES[:2]


def sample_inputs(case, reduction, dtype=torch.float64, device="cpu", requires_grad=False, seed=0):
    """x, weight, adjacency, bias (fresh random values; x in the case's layout)."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype)

    x = make_features(rand, case.n, case.c_in, case.t, case.v, case.layout)
    weight = rand(case.k, case.c_out, case.c_in)
    adjacency = rand(case.d, case.k, case.v, case.v)
    channels = case.c_out * (case.d if reduction == "concat" else 1)
    bias = rand(channels) if case.bias else None
    tensors = [None if t is None else t.to(device) for t in (x, weight, adjacency, bias)]
    if requires_grad:
        for t in tensors:
            if t is not None:
                t.requires_grad_(True)
    return tensors


def per_dilation_oracle(x, weight, adjacency, bias, reduction):
    """Independent oracle: graph convolution (skelops.reference.graph_conv) once per dilation,
    the branches summed or concatenated, the bias added once."""
    branches = [reference.graph_conv(x, weight, a) for a in adjacency.unbind(0)]
    y = torch.cat(branches, dim=1) if reduction == "concat" else torch.stack(branches).sum(0)
    return y if bias is None else y + bias.view(1, -1, 1, 1)


def compiled_backend(device: str) -> str:
    return "cpu" if device == "cpu" else "cuda"


# --- the reference itself ---------------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", CASES[:3], ids=str)
def test_reference_matches_elementwise_definition(case, reduction):
    x, w, a, b = sample_inputs(case, reduction)
    y = torch.einsum("koc,nctv,dkvw->ndotw", w, x, a)
    y = y.flatten(1, 2) if reduction == "concat" else y.sum(1)
    if b is not None:
        y = y + b.view(1, -1, 1, 1)
    expected = reference.multi_dilation_graph_conv(x, w, a, b, concat=reduction == "concat")
    torch.testing.assert_close(expected, y)
    torch.testing.assert_close(per_dilation_oracle(x, w, a, b, reduction), y)


# --- forward and backward of every backend vs the oracle ----------------------------------------


# Triton runs on the small cases only: under the CPU interpreter it is slow.
BACKEND_CASES = (
    [("compiled", c) for c in CASES]
    + [("reference", c) for c in SMALL_CASES]
    + [("triton", c) for c in SMALL_CASES]
)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("backend, case", BACKEND_CASES, ids=str)
def test_forward_backward_float64_and_float32(case, backend, reduction, device):
    backend = compiled_backend(device) if backend == "compiled" else backend
    if backend == "triton":
        skip_unless_triton(device)
    for dtype in (torch.float64, torch.float32):
        if backend == "cuda" and dtype == torch.float64:
            continue  # the CUDA kernels take float32/float16/bfloat16
        inputs = sample_inputs(case, reduction, dtype, device, requires_grad=True, seed=1)
        leaves = [None if t is None else t.detach().double().cpu().requires_grad_() for t in inputs]
        y = skelops.multi_dilation_graph_conv(*inputs, reduction=reduction, backend=backend)
        y_ref = per_dilation_oracle(*leaves, reduction)
        assert y.dtype == dtype and y.device.type == device and y.is_contiguous()
        assert_close_scaled(y, y_ref, dtype)
        grad = torch.randn(
            y_ref.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2)
        )
        y.backward(grad.to(dtype).to(device))
        y_ref.backward(grad)
        for name, t, r in zip(("x", "weight", "adjacency", "bias"), inputs, leaves, strict=True):
            if t is not None:
                assert t.grad is not None and t.grad.shape == t.shape, name
                assert_close_scaled(t.grad, r.grad, dtype)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_compiled(device, reduction, dtype):
    # Triton's 16-bit paths are in test_multi_dilation_graph_conv_triton_kernels.py.
    for case in (CASES[1], CASES[2]):  # both computation orders
        inputs = sample_inputs(case, reduction, dtype, device, requires_grad=True, seed=3)
        y = skelops.multi_dilation_graph_conv(
            *inputs, reduction=reduction, backend=compiled_backend(device)
        )
        assert y.dtype == dtype
        leaves = [None if t is None else t.detach().double().cpu().requires_grad_() for t in inputs]
        y_ref = per_dilation_oracle(*leaves, reduction)
        assert_close_scaled(y, y_ref, dtype)
        grad = torch.randn(y_ref.shape, dtype=torch.float64)
        y.backward(grad.to(dtype).to(device))
        y_ref.backward(grad)
        for t, r in zip(inputs, leaves, strict=True):
            if t is not None:
                assert t.grad.dtype == dtype
                assert_close_scaled(t.grad, r.grad, dtype)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_masked_gradients_match_and_are_skipped(reduction):
    for case in (CASES[0], CASES[2]):  # output-side and input-side concat backward
        x, w, a, b = sample_inputs(case, reduction, seed=4)
        if b is None:
            b = torch.randn(case.c_out * (case.d if reduction == "concat" else 1), dtype=x.dtype)
        channels = b.shape[0]
        grad = torch.randn(case.n, channels, case.t, case.v, dtype=torch.float64)
        op = torch.ops.skelops.multi_dilation_graph_conv_backward
        concat = reduction == "concat"
        full = op(grad, x, w, a, b, concat, [True, True, True, True])
        for i in range(4):
            part = op(grad, x, w, a, b, concat, [j == i for j in range(4)])
            for j in range(4):
                if j == i:
                    torch.testing.assert_close(part[j], full[j])
                else:
                    assert part[j].numel() == 0


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_only_x_requires_grad_saves_no_x(reduction):
    x, w, a, b = sample_inputs(CASES[1], reduction, seed=5)
    x.requires_grad_(True)
    y = skelops.multi_dilation_graph_conv(x, w, a, b, reduction=reduction)
    y.sum().backward()
    xr = x.detach().clone().requires_grad_()
    per_dilation_oracle(xr, w, a, b, reduction).sum().backward()
    torch.testing.assert_close(x.grad, xr.grad)


GRADCHECK_CASES = [
    Case(2, 2, 3, 2, 4, 2, 2),
    Case(1, 3, 2, 3, 5, 1, 3, layout="channels_last"),
]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", GRADCHECK_CASES, ids=str)
def test_gradcheck_float64(case, reduction):
    inputs = sample_inputs(case, reduction, requires_grad=True, seed=6)
    assert torch.autograd.gradcheck(
        lambda x, w, a, b: skelops.multi_dilation_graph_conv(
            x, w, a, b, reduction=reduction, backend="cpu"
        ),
        inputs,
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradcheck_triton_float64(reduction):
    skip_unless_triton("cpu")
    inputs = sample_inputs(Case(1, 2, 3, 2, 3, 2, 2), reduction, requires_grad=True, seed=7)
    # fast_mode (random projections of the Jacobian): the interpreter runs every call slowly.
    assert torch.autograd.gradcheck(
        lambda x, w, a, b: skelops.multi_dilation_graph_conv(
            x, w, a, b, reduction=reduction, backend="triton"
        ),
        inputs,
        fast_mode=True,
    )


# --- torch.library.opcheck and torch.compile ---------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", CASES[:3], ids=str)
def test_opcheck(case, reduction):
    concat = reduction == "concat"
    inputs = sample_inputs(case, reduction, torch.float32, requires_grad=True, seed=8)
    torch.library.opcheck(torch.ops.skelops.multi_dilation_graph_conv.default, (*inputs, concat))
    x, w, a, b = [None if t is None else t.detach() for t in inputs]
    channels = case.c_out * (case.d if concat else 1)
    grad = torch.randn(case.n, channels, case.t, case.v)
    for mask in ([True, True, True, b is not None], [True, False, False, False]):
        torch.library.opcheck(
            torch.ops.skelops.multi_dilation_graph_conv_backward.default,
            (grad, x, w, a, b, concat, mask),
        )


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_opcheck_triton_op(reduction):
    skip_unless_triton("cpu")
    inputs = sample_inputs(Case(1, 2, 3, 2, 5, 2, 2), reduction, torch.float32, requires_grad=True)
    torch.library.opcheck(
        torch.ops.skelops.multi_dilation_graph_conv_triton.default,
        (*inputs, reduction == "concat"),
        test_utils=("test_schema", "test_autograd_registration", "test_faketensor"),
    )


def test_compile_fullgraph_forward_backward():
    torch._dynamo.reset()
    case = Case(2, 4, 6, 5, 7, 3, 2)
    x, w, a, b = sample_inputs(case, "concat", torch.float32, requires_grad=True, seed=9)
    layer = skelops.nn.MultiDilationGraphConv(4, 6, a.detach(), reduction="sum")

    def model(x):
        y = skelops.multi_dilation_graph_conv(x, w, a, b, reduction="concat")
        return torch.relu(layer(x)).mean(dim=(2, 3)) + y.square().mean()

    compiled = torch.compile(model, fullgraph=True)
    out = compiled(x)
    expected = model(x)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    out.sum().backward()
    leaves = (x, w, a, b, layer.weight)
    grads = [t.grad.clone() for t in leaves]
    for t in leaves:
        t.grad = None
    expected.sum().backward()
    for g, t in zip(grads, leaves, strict=True):
        torch.testing.assert_close(g, t.grad, rtol=1e-5, atol=1e-5)


# --- autocast ----------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_autocast_cpu_runs_in_bfloat16(reduction):
    x, w, a, b = sample_inputs(CASES[0], reduction, torch.float32, requires_grad=True, seed=10)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = skelops.multi_dilation_graph_conv(x, w, a, b, reduction=reduction)
    assert y.dtype == torch.bfloat16
    exact = per_dilation_oracle(*(t.detach().double() for t in (x, w, a, b)), reduction)
    assert_close_scaled(y, exact, torch.bfloat16)
    y.float().sum().backward()
    assert all(t.grad is not None and t.grad.dtype == torch.float32 for t in (x, w, a, b))


# --- the nn layer ------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_layer_matches_functional_and_counts_parameters(reduction):
    torch.manual_seed(11)
    adjacency = skelops.graphs.dilated_adjacency("ntu_stgcn", (1, 2), "spatial")
    d, k, v, _ = adjacency.shape
    layer = skelops.nn.MultiDilationGraphConv(3, 8, adjacency, reduction=reduction)
    channels = 8 * (d if reduction == "concat" else 1)
    assert sum(p.numel() for p in layer.parameters()) == k * 8 * 3 + channels
    x = torch.randn(2, 3, 4, v)
    y = layer(x)
    assert y.shape == (2, channels, 4, v)
    expected = reference.multi_dilation_graph_conv(
        x, layer.weight, adjacency, layer.bias, concat=reduction == "concat"
    )
    torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-5)


# --- bad input ---------------------------------------------------------------------------------


def _good(reduction="sum"):
    return sample_inputs(CASES[0], reduction, torch.float32, seed=12)  # C 3 -> 5, V 7, K 3, D 2


@pytest.mark.parametrize(
    "mutate, error, match",
    [
        (lambda x, w, a, b: (x[0], w, a, b), ValueError, r"x must be \[N, C_in, T, V\] \(4-D\)"),
        (lambda x, w, a, b: (x, w[0], a, b), ValueError, r"weight must be \[K, C_out, C_in\]"),
        (lambda x, w, a, b: (x, w, a[0], b), ValueError, r"adjacency must be \[D, K, V, V\]"),
        (lambda x, w, a, b: (x, w[:, :, :2], a, b), ValueError, r"weight.shape\[2\] must be 3"),
        (lambda x, w, a, b: (x, w[:2], a, b), ValueError, r"adjacency.shape\[1\] must be 2"),
        (lambda x, w, a, b: (x, w, a[:, :, :5, :5], b), ValueError, "with V=7"),
        (lambda x, w, a, b: (x, w, a[:0], b), ValueError, "at least one dilation"),
        (lambda x, w, a, b: (x, w, a, b[:2]), ValueError, r"bias.shape\[0\] must be 5 \(C_out\)"),
        (lambda x, w, a, b: (x, w, a, b[None]), ValueError, r"bias must be \[C_out\]"),
        (lambda x, w, a, b: (x.long(), w, a, b), TypeError, "x must be a floating-point"),
        (lambda x, w, a, b: (x, w, a.double(), b), TypeError, "adjacency must have the same dtype"),
        (lambda x, w, a, b: (x, w, a, b.double()), TypeError, "bias must have the same dtype"),
        (
            lambda x, w, a, b: (x, w, a.to("meta"), b),
            ValueError,
            "adjacency must be on the same device",
        ),
        (lambda x, w, a, b: (x[:0], w, a, b), ValueError, "x must be non-empty"),
        (lambda x, w, a, b: (x, w[:, :0], a, b), ValueError, "weight must be non-empty"),
        (lambda x, w, a, b: (x.numpy(), w, a, b), TypeError, "x must be a torch.Tensor"),
    ],
)
def test_bad_input_raises_clear_errors(mutate, error, match):
    with pytest.raises(error, match=match):
        skelops.multi_dilation_graph_conv(*mutate(*_good()))


def test_bad_reduction_backend_and_concat_bias():
    x, w, a, b = _good()
    with pytest.raises(ValueError, match="reduction must be one of"):
        skelops.multi_dilation_graph_conv(x, w, a, b, reduction="mean")
    with pytest.raises(ValueError, match=r"bias.shape\[0\] must be 10 \(D \* C_out\)"):
        skelops.multi_dilation_graph_conv(x, w, a, b, reduction="concat")
    with pytest.raises(ValueError, match="backend must be one of"):
        skelops.multi_dilation_graph_conv(x, w, a, b, backend="fast")
    with pytest.raises(ValueError, match=r"backend='cuda' is not available.*available for cpu"):
        skelops.multi_dilation_graph_conv(x, w, a, b, backend="cuda")


@pytest.mark.parametrize("concat", [False, True])
def test_direct_op_call_with_bad_input_raises_not_crashes(concat):
    x, w, a, _ = _good()
    b = torch.randn(10 if concat else 5)
    op = torch.ops.skelops.multi_dilation_graph_conv
    with pytest.raises(ValueError, match="adjacency must have K=3"):
        op(x, w, a[:, :2], b, concat)
    with pytest.raises(ValueError, match="adjacency must be 4-D"):
        op(x, w, a[0], b, concat)
    with pytest.raises(ValueError, match="at least one dilation"):
        op(x, w, a[:0], b, concat)
    with pytest.raises(ValueError, match=r"adjacency must be \[D, K, V, V\] with V=7"):
        op(x, w, a[..., :6], b, concat)
    with pytest.raises(ValueError, match="x must be non-empty"):
        op(x[:0], w, a, b, concat)
    with pytest.raises(ValueError, match="weight.shape\\[2\\] must equal C_in=3"):
        op(x, w[..., :2], a, b, concat)
    with pytest.raises(TypeError, match="must share one dtype"):
        op(x, w.double(), a, b, concat)
    with pytest.raises(TypeError, match="x must be a floating-point"):
        op(x.int(), w.int(), a.int(), None, concat)
    expected_bias = r"\[D \* C_out\]=\[10\]" if concat else r"\[C_out\]=\[5\]"
    with pytest.raises(ValueError, match="bias must be " + expected_bias):
        op(x, w, a, b[:4], concat)
    grad = torch.randn(2, 5, 5, 6)
    backward = torch.ops.skelops.multi_dilation_graph_conv_backward
    with pytest.raises(ValueError, match="grad_out must be"):
        backward(grad, x, w, a, b, concat, [True, True, True, True])
    with pytest.raises(TypeError, match="grad_out dtype must be"):
        backward(torch.randn(2, b.shape[0], 5, 7).double(), x, w, a, b, concat, [True] * 4)
