"""skelops.partition_attention: the reference against a per-query loop, every backend against
the reference (outputs, log-sum-exp, gradients, with dropout), layouts, reproducible dropout,
gradcheck, opcheck, compile, autocast and bad input (../shared/GUIDE.md section 2).
Launcher-level Triton cases are in test_partition_attention_triton_kernels.py."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import pytest
import torch
from helpers import assert_close_scaled, skip_unless_triton

import skelops
from skelops import graphs, reference
from skelops.ops.partition_attention import layout_like
from skelops.reference.partition_attention import dropout_keep, partition_bias

CUDA = pytest.param(
    "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
)
ALL_DEVICES = ["cpu", CUDA]


@dataclass(frozen=True)
class Case:
    b: int
    h: int
    t: int
    v: int
    d: int
    window: int  # W frames per window
    group: int  # J joints per group
    skate_type: int  # 1-4: (local | global frames) x (neighbouring | distant joints)
    bias: str | None = None  # None, "frame" ([2W - 1, H]) or "frame_joint" ([2W - 1, J, J, H])
    dropout_p: float = 0.0
    layout: str = "contiguous"  # or "projection": heads sliced from a [B, T, V, 3 H D] tensor
    scale: float | None = None

    def __str__(self) -> str:
        return (
            f"B{self.b}-H{self.h}-T{self.t}-V{self.v}-D{self.d}-W{self.window}-J{self.group}-"
            f"type{self.skate_type}-bias{self.bias}-p{self.dropout_p}-{self.layout}"
        )


CASES = [
    Case(2, 3, 6, 10, 5, 3, 5, 1, "frame", scale=0.7),
    Case(2, 2, 8, 12, 3, 4, 3, 2, "frame_joint", 0.3, "projection"),
    Case(1, 2, 6, 6, 1, 2, 2, 3, None, 0.5),  # D = 1
    Case(2, 4, 8, 12, 6, 4, 6, 4, "frame_joint", 0.0, "projection", 0.5),  # SkateFormer-like
    Case(1, 1, 5, 7, 4, 5, 7, 1, "frame"),  # one partition: plain attention over all tokens
    Case(3, 1, 4, 4, 2, 1, 1, 2, "frame_joint"),  # single-token partitions
]
TRITON_CASES = CASES[:3]


def partitions(case: Case, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    return graphs.skate_type_partitions(
        case.skate_type, case.t, case.v, (case.window, case.group), device
    )


def sample_inputs(case: Case, dtype=torch.float64, device="cpu", requires_grad=False, seed=0):
    """q, k, v, bias for ``case`` (fresh random values in the case's layout)."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype).to(device)

    b, h, t, v, d = case.b, case.h, case.t, case.v, case.d
    if case.layout == "projection":
        qkv = rand(b, t, v, 3, h, d).permute(3, 0, 4, 1, 2, 5)  # [3, B, H, T, V, D] views
        q, k, vv = qkv.unbind(0)
        assert not q.is_contiguous()
    else:
        q, k, vv = rand(b, h, t, v, d), rand(b, h, t, v, d), rand(b, h, t, v, d)
    bias = None
    if case.bias == "frame":
        bias = rand(2 * case.window - 1, h)
    elif case.bias == "frame_joint":
        bias = rand(2 * case.window - 1, case.group, case.group, h)
    tensors = [q, k, vv] + ([] if bias is None else [bias])
    if requires_grad:
        tensors = [t_.detach().requires_grad_() for t_ in tensors]
    return (*tensors[:3], tensors[3] if bias is not None else None)


def brute_force(q, k, v, joint_partition, frame_partition, bias, scale, dropout_p, seed):
    """Independent oracle: one Python loop per query over the keys of its partition."""
    b_, h_, t_, v_, _ = q.shape
    window, group = frame_partition.shape[1], joint_partition.shape[1]
    n = window * group
    out = torch.zeros_like(q)
    for frames in frame_partition.tolist():
        for joints in joint_partition.tolist():
            tokens = [(a, i, frames[a], joints[i]) for a in range(window) for i in range(group)]
            for b in range(b_):
                for h in range(h_):
                    for a, i, t, u in tokens:
                        scores = torch.stack(
                            [
                                scale * (q[b, h, t, u] * k[b, h, ty, uy]).sum()
                                for _, _, ty, uy in tokens
                            ]
                        )
                        if bias is not None:
                            scores = scores + torch.stack(
                                [
                                    bias[a - ay + window - 1, h]
                                    if bias.dim() == 2
                                    else bias[a - ay + window - 1, i, iy, h]
                                    for ay, iy, _, _ in tokens
                                ]
                            )
                        probs = scores.softmax(0)
                        if dropout_p > 0:
                            element = (((b * h_ + h) * t_ + t) * v_ + u) * n + torch.arange(n)
                            probs = probs * dropout_keep(seed, element, dropout_p) / (1 - dropout_p)
                        out[b, h, t, u] = sum(
                            probs[m] * v[b, h, ty, uy] for m, (_, _, ty, uy) in enumerate(tokens)
                        )
    return out


def run_op(backend: str, *args):
    """The op behind ``backend``: (out, lse)."""
    op = (
        torch.ops.skelops.partition_attention_triton
        if backend == "triton"
        else torch.ops.skelops.partition_attention
    )
    return op(*args)


def scale_of(case: Case) -> float:
    return case.d**-0.5 if case.scale is None else case.scale


# --- the reference itself ---------------------------------------------------------------------


@pytest.mark.parametrize("case", [CASES[0], CASES[1], CASES[2]], ids=str)
def test_reference_matches_brute_force(case):
    q, k, v, bias = sample_inputs(case, seed=11)
    jp, fp = partitions(case)
    expected = brute_force(q, k, v, jp, fp, bias, scale_of(case), case.dropout_p, 5)
    actual = reference.partition_attention(q, k, v, jp, fp, bias, case.scale, case.dropout_p, 5)
    torch.testing.assert_close(actual, expected)


def test_partition_bias_layout():
    """[2W - 1, J, J, H] at (frame offset, query's and key's group positions)."""
    table = torch.arange(5 * 3 * 3 * 2).view(5, 3, 3, 2).double()
    full = partition_bias(table, 3, 3)  # [H, N, N], token n = a * J + i
    assert full[1, 2 * 3 + 0, 0 * 3 + 2].item() == table[2 - 0 + 2, 0, 2, 1].item()
    frame = partition_bias(table[:, 0, 0], 3, 3)
    assert frame[0, 1 * 3 + 2, 2 * 3 + 1].item() == table[1 - 2 + 2, 0, 0, 0].item()


def test_dropout_mask_statistics():
    element = torch.arange(200_000, dtype=torch.int64)
    for p in (0.1, 0.5):
        kept = dropout_keep(123, element, p).double().mean().item()
        assert abs(kept - (1 - p)) < 0.005
    # Another seed draws another mask.
    assert not torch.equal(dropout_keep(1, element, 0.5), dropout_keep(2, element, 0.5))


# --- forward, log-sum-exp and backward of every backend vs the reference -----------------------

BACKEND_CASES = [("compiled", c) for c in CASES] + [("triton", c) for c in TRITON_CASES]


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("backend, case", BACKEND_CASES, ids=str)
def test_forward_backward(case, backend, device):
    backend = device if backend == "compiled" else backend
    if backend == "triton":
        skip_unless_triton(device)
    dtypes = (torch.float32,) if device == "cuda" else (torch.float64, torch.float32)
    jp, fp = partitions(case, device)
    for dtype in dtypes:
        q, k, v, bias = sample_inputs(case, dtype, device, requires_grad=True, seed=1)
        exact = [
            None if t is None else t.detach().double().cpu().requires_grad_()
            for t in (q, k, v, bias)
        ]
        out = skelops.partition_attention(
            q, k, v, jp, fp, bias, case.scale, case.dropout_p, seed=7, backend=backend
        )
        ref, ref_lse = reference.partition_attention(
            *exact[:3], jp.cpu(), fp.cpu(), exact[3], case.scale, case.dropout_p, 7, return_lse=True
        )
        assert out.dtype == dtype and out.device.type == device
        assert out.stride() == layout_like(q)
        assert_close_scaled(out, ref, dtype)
        _, lse = run_op(
            backend, q.detach(), k.detach(), v.detach(), jp, fp,
            None if bias is None else bias.detach(), scale_of(case), case.dropout_p, 7,
        )  # fmt: skip
        assert lse.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
        assert_close_scaled(lse, ref_lse, dtype)

        grad = torch.randn(
            ref.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2)
        )
        out.backward(grad.to(dtype).to(device))
        ref.backward(grad)
        for name, t, e in zip("qkvb", (q, k, v, bias), exact, strict=True):
            if t is None:
                continue
            assert t.grad is not None and t.grad.dtype == dtype, name
            assert_close_scaled(t.grad, e.grad, dtype)
        # Not vacuous: the gradients are of the size of the inputs (a query alone in its
        # partition has probability 1 whatever its score: no q gradient).
        assert exact[2].grad.abs().max() > 1e-2
        if case.window * case.group > 1:
            assert exact[0].grad.abs().max() > 1e-2


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision(device, dtype):
    case = CASES[3]
    jp, fp = partitions(case, device)
    q, k, v, bias = sample_inputs(case, dtype, device, requires_grad=True, seed=3)
    out = skelops.partition_attention(q, k, v, jp, fp, bias, case.scale, backend=device)
    assert out.dtype == dtype
    exact = [t.detach().double().cpu().requires_grad_() for t in (q, k, v, bias)]
    ref = reference.partition_attention(*exact[:3], jp.cpu(), fp.cpu(), exact[3], case.scale)
    assert_close_scaled(out, ref, dtype)
    grad = torch.randn(ref.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    out.backward(grad.to(dtype).to(device))
    ref.backward(grad)
    for t, e in zip((q, k, v, bias), exact, strict=True):
        assert t.grad.dtype == dtype
        assert_close_scaled(t.grad, e.grad, dtype)


def test_masked_gradients_match_and_are_skipped():
    case = CASES[1]
    jp, fp = partitions(case)
    q, k, v, bias = sample_inputs(case, seed=7)
    s = scale_of(case)
    out, lse = torch.ops.skelops.partition_attention(q, k, v, jp, fp, bias, s, 0.3, 9)
    grad = torch.randn(q.shape, dtype=torch.float64)
    args = (grad, q, k, v, out, lse, jp, fp, bias, s, 0.3, 9)
    full = torch.ops.skelops.partition_attention_backward(*args, [True] * 4)
    # The gradients keep q's, k's and v's layouts (heads sliced from one projection here; a
    # leaf's .grad would be re-laid out by autograd).
    for t, g in zip((q, k, v), full[:3], strict=True):
        assert not t.is_contiguous() and g.stride() == layout_like(t)
    for i in range(4):
        part = torch.ops.skelops.partition_attention_backward(*args, [j == i for j in range(4)])
        torch.testing.assert_close(part[i], full[i])
        assert all(part[j].numel() == 0 for j in range(4) if j != i)
    # No bias: no bias gradient even when asked for.
    out, lse = torch.ops.skelops.partition_attention(q, k, v, jp, fp, None, s, 0.0, 0)
    grads = torch.ops.skelops.partition_attention_backward(
        grad, q, k, v, out, lse, jp, fp, None, s, 0.0, 0, [True] * 4
    )
    assert grads[3].numel() == 0


def test_lse_is_not_differentiable():
    case = CASES[0]
    jp, fp = partitions(case)
    q, k, v, bias = sample_inputs(case, requires_grad=True, seed=8)
    out, lse = torch.ops.skelops.partition_attention(q, k, v, jp, fp, bias, 0.5, 0.0, 0)
    assert out.requires_grad and not lse.requires_grad


# --- dropout -----------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_dropout_is_reproducible(backend):
    case = CASES[1]
    jp, fp = partitions(case)
    q, k, v, bias = sample_inputs(case, seed=16)

    def run(seed):
        return skelops.partition_attention(
            q, k, v, jp, fp, bias, dropout_p=0.5, seed=seed, backend=backend
        )

    assert torch.equal(run(3), run(3))
    assert not torch.equal(run(3), run(4))
    torch.manual_seed(0)
    first = run(None)
    torch.manual_seed(0)
    assert torch.equal(first, run(None))
    plain = skelops.partition_attention(q, k, v, jp, fp, bias, backend=backend)
    assert not torch.equal(first, plain)


def test_cpu_results_do_not_depend_on_the_thread_count():
    case = Case(4, 2, 8, 12, 3, 4, 6, 2, "frame_joint", 0.2)
    jp, fp = partitions(case)
    q, k, v, bias = sample_inputs(case, torch.float32, seed=17)
    s = scale_of(case)
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            out, lse = torch.ops.skelops.partition_attention(q, k, v, jp, fp, bias, s, 0.2, 1)
            grads = torch.ops.skelops.partition_attention_backward(
                torch.ones_like(out), q, k, v, out, lse, jp, fp, bias, s, 0.2, 1, [True] * 4
            )
            results.append((out, *grads))
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(*results, strict=True):
        assert torch.equal(a, b)


# --- gradcheck ---------------------------------------------------------------------------------

GRADCHECK_CASES = [
    Case(1, 2, 4, 4, 2, 2, 2, 1, "frame", scale=0.8),
    Case(2, 1, 4, 6, 3, 2, 3, 4, "frame_joint", 0.4, "projection"),
]


@pytest.mark.parametrize("case", GRADCHECK_CASES, ids=str)
def test_gradcheck_float64(case):
    jp, fp = partitions(case)
    q, k, v, bias = sample_inputs(case, requires_grad=True, seed=9)
    assert torch.autograd.gradcheck(
        lambda q, k, v, b: skelops.partition_attention(
            q, k, v, jp, fp, b, case.scale, case.dropout_p, seed=3, backend="cpu"
        ),
        [q, k, v, bias],
    )


def test_gradcheck_triton_float64():
    skip_unless_triton("cpu")
    case = GRADCHECK_CASES[1]
    jp, fp = partitions(case)
    q, k, v, bias = sample_inputs(case, requires_grad=True, seed=10)
    # fast_mode: a few directional derivatives (the interpreter is slow).
    assert torch.autograd.gradcheck(
        lambda q, k, v, b: skelops.partition_attention(
            q, k, v, jp, fp, b, case.scale, case.dropout_p, seed=3, backend="triton"
        ),
        [q, k, v, bias],
        fast_mode=True,
    )


# --- torch.library.opcheck and torch.compile ---------------------------------------------------


@pytest.mark.parametrize("case", [CASES[0], CASES[1]], ids=str)
@pytest.mark.parametrize("requires_grad", [False, True])
def test_opcheck(case, requires_grad):
    jp, fp = partitions(case)
    q, k, v, bias = sample_inputs(case, torch.float32, requires_grad=requires_grad, seed=12)
    s = scale_of(case)
    args = (q, k, v, jp, fp, bias, s, case.dropout_p, 5)
    torch.library.opcheck(torch.ops.skelops.partition_attention.default, args)
    q, k, v, bias = (t.detach() for t in (q, k, v, bias))
    out, lse = torch.ops.skelops.partition_attention(q, k, v, jp, fp, bias, s, case.dropout_p, 5)
    grad = torch.randn(q.shape)
    for mask in ([True, True, True, True], [False, True, False, True]):
        torch.library.opcheck(
            torch.ops.skelops.partition_attention_backward.default,
            (grad, q, k, v, out, lse, jp, fp, bias, s, case.dropout_p, 5, mask),
        )


def test_opcheck_triton_op():
    skip_unless_triton("cpu")
    case = CASES[2]
    jp, fp = partitions(case)
    q, k, v, _ = sample_inputs(case, torch.float32, requires_grad=True)
    torch.library.opcheck(
        torch.ops.skelops.partition_attention_triton.default,
        (q, k, v, jp, fp, None, 0.5, 0.0, 0),
        test_utils=("test_schema", "test_autograd_registration", "test_faketensor"),
    )


def test_compile_fullgraph_forward_backward():
    torch._dynamo.reset()
    case = CASES[3]
    jp, fp = partitions(case)
    q, k, v, bias = sample_inputs(case, torch.float32, requires_grad=True, seed=13)

    def model(q, k, v, bias):
        out = skelops.partition_attention(q, k, v, jp, fp, bias, 0.5, 0.2, seed=11)
        return torch.tanh(out).sum(dim=(2, 3))

    compiled = torch.compile(model, fullgraph=True)
    out = compiled(q, k, v, bias)
    expected = model(q, k, v, bias)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    out.sum().backward()
    grads = [t.grad.clone() for t in (q, k, v, bias)]
    for t in (q, k, v, bias):
        t.grad = None
    expected.sum().backward()
    for got, t in zip(grads, (q, k, v, bias), strict=True):
        torch.testing.assert_close(got, t.grad, rtol=1e-5, atol=1e-5)


# --- autocast ----------------------------------------------------------------------------------


def test_autocast_cpu_runs_in_bfloat16():
    case = CASES[0]
    jp, fp = partitions(case)
    q, k, v, bias = sample_inputs(case, torch.float32, requires_grad=True, seed=14)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = skelops.partition_attention(q, k, v, jp, fp, bias, case.scale)
    assert out.dtype == torch.bfloat16
    exact = reference.partition_attention(
        *(t.detach().bfloat16().double() for t in (q, k, v)), jp, fp,
        bias.detach().bfloat16().double(), case.scale,
    )  # fmt: skip
    assert_close_scaled(out, exact, torch.bfloat16)
    out.float().sum().backward()
    assert q.grad.dtype == torch.float32 and bias.grad.dtype == torch.float32


# --- bad input ---------------------------------------------------------------------------------


def _good():
    case = CASES[3]
    jp, fp = partitions(case)
    q, k, v, bias = sample_inputs(case, torch.float32, seed=15)
    return q, k, v, jp, fp, bias


def _with(**changes):
    args = dict(
        zip(("q", "k", "v", "joint_partition", "frame_partition", "bias"), _good(), strict=True)
    )
    args.update(changes)
    return args


BAD = {
    "q rank": (_with(q=torch.randn(2, 4, 8, 12)), ValueError, "q must be"),
    "k shape": (_with(k=torch.randn(2, 4, 8, 12, 5)), ValueError, "k must have q's shape"),
    "v dtype": (
        _with(v=torch.randn(2, 4, 8, 12, 6, dtype=torch.float64)),
        TypeError,
        "v must have the same dtype",
    ),
    "int q": (
        _with(q=torch.ones(2, 4, 8, 12, 6, dtype=torch.int32)),
        TypeError,
        "q must be a floating",
    ),
    "empty": (
        _with(
            q=torch.randn(0, 4, 8, 12, 6),
            k=torch.randn(0, 4, 8, 12, 6),
            v=torch.randn(0, 4, 8, 12, 6),
        ),
        ValueError,
        "non-empty",
    ),
    "joint groups do not divide V": (
        _with(joint_partition=torch.arange(10).view(2, 5)),
        ValueError,
        "joint_partition",
    ),
    "frames do not divide T": (
        _with(frame_partition=torch.arange(6).view(2, 3)),
        ValueError,
        "frame_partition",
    ),
    "joint out of range": (
        _with(joint_partition=torch.tensor([[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 12]])),
        ValueError,
        "values must be in",
    ),
    "negative frame": (
        _with(frame_partition=torch.tensor([[0, 1, 2, -1], [4, 5, 6, 7]])),
        ValueError,
        "values must be in",
    ),
    "repeated joint": (
        _with(joint_partition=torch.tensor([[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 10]])),
        ValueError,
        "every index once",
    ),
    "float partition": (
        _with(frame_partition=torch.arange(8.0).view(2, 4)),
        TypeError,
        "int32 or int64",
    ),
    "partition rank": (
        _with(frame_partition=torch.arange(8)),
        ValueError,
        "frame_partition must be",
    ),
    "bias size": (_with(bias=torch.randn(7, 6, 6, 3)), ValueError, "bias must be"),
    "bias heads": (_with(bias=torch.randn(7, 3)), ValueError, "bias must be"),
    "bias dtype": (
        _with(bias=torch.randn(7, 4, dtype=torch.float64)),
        TypeError,
        "bias must have the same dtype",
    ),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_input_raises(name):
    args, error, match = BAD[name]
    with pytest.raises(error, match=match):
        skelops.partition_attention(**args)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"dropout_p": 1.0}, ValueError, "dropout_p"),
        ({"dropout_p": -0.1}, ValueError, "dropout_p"),
        ({"seed": 1.5, "dropout_p": 0.1}, TypeError, "seed"),
        ({"scale": float("nan")}, ValueError, "scale"),
        ({"backend": "tpu"}, ValueError, "backend"),
    ],
)
def test_bad_arguments_raise(kwargs, error, match):
    with pytest.raises(error, match=match):
        skelops.partition_attention(*_good(), **kwargs)


@pytest.mark.parametrize(
    "index, match",
    [
        ("joint", "joint_partition values must be in"),
        ("frame", "frame_partition must hold every index once"),
    ],
)
def test_compiled_op_checks_values_itself(index, match):
    """The C++ op validates the partitions too (a direct call never reads out of bounds)."""
    q, k, v, jp, fp, bias = _good()
    if index == "joint":
        jp = jp.clone()
        jp[0, 0] = 99
    else:
        fp = fp.clone()
        fp[0, 1] = fp[0, 0]
    with pytest.raises(ValueError, match=match):
        torch.ops.skelops.partition_attention(q, k, v, jp, fp, bias, 0.5, 0.0, 0)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: graphs.frame_windows(64, 12), "window must be >= 1 and divide num_frames=64"),
        (lambda: graphs.joint_groups(48, 5), "group_size must be >= 1 and divide num_joints=48"),
        (lambda: graphs.joint_groups(48, 8, "far"), "kind must be one of"),
        (lambda: graphs.frame_windows(64, 8, "middle"), "kind must be one of"),
        (lambda: graphs.skate_type_partitions(5, 64, 48, (8, 8)), "skate_type must be"),
        (lambda: graphs.skate_type_partitions(1, 60, 48, (8, 8)), "divide num_frames=60"),
    ],
)
def test_partition_sizes_that_do_not_divide_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()


_BASELINE_CHECK = """
import torch, skelops
from skelops import graphs, reference
torch.manual_seed(0)
jp, fp = graphs.skate_type_partitions(2, 8, 12, (4, 6))
q, k, v = (torch.randn(2, 3, 8, 12, 6, requires_grad=True) for _ in range(3))
bias = torch.randn(7, 6, 6, 3, requires_grad=True)
out = skelops.partition_attention(q, k, v, jp, fp, bias, 0.5, 0.3, seed=4, backend="cpu")
exact = [t.detach().double().requires_grad_() for t in (q, k, v, bias)]
ref = reference.partition_attention(*exact[:3], jp, fp, exact[3], 0.5, 0.3, 4)
grad = torch.randn(ref.shape, dtype=torch.float64)
out.backward(grad.float())
ref.backward(grad)
errors = [(out.double() - ref).abs().max().item()]
errors += [(t.grad.double() - e.grad).abs().max().item() for t, e in zip((q, k, v, bias), exact)]
assert max(errors) < 1e-4, errors
print("ok", max(errors))
"""


def test_cpu_baseline_loops_match_the_reference():
    """The float kernels run AVX2 + FMA loops where the CPU has them; SKELOPS_CPU_ISA=baseline
    forces the portable loops (chosen once per process, hence a subprocess)."""
    env = dict(os.environ, SKELOPS_CPU_ISA="baseline")
    result = subprocess.run(
        [sys.executable, "-c", _BASELINE_CHECK],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0 and result.stdout.startswith("ok"), result.stderr


@pytest.mark.parametrize("name", ["joint out of range", "negative frame", "repeated joint"])
def test_reference_backend_checks_partition_values(name):
    """The wrapper checks the values itself only for the reference (the operators do it)."""
    args, error, match = BAD[name]
    with pytest.raises(error, match=match):
        skelops.partition_attention(**args, backend="reference")
