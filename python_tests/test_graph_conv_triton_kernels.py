"""Triton graph-convolution launchers vs a float64 PyTorch reference.

Without a GPU the kernels run under Triton's interpreter (``TRITON_INTERPRET=1``, set below
before triton is imported) on CPU tensors, so every shape here is tiny.
Adjacency convention: ``A[k, v, w]`` carries source joint v to target joint w.
"""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

pytest.importorskip("triton")

from skelops.triton import _common  # noqa: E402
from skelops.triton import graph_conv as gc  # noqa: E402

pytestmark = pytest.mark.triton

DEVICE = "cpu" if _common.INTERPRETED else "cuda"
FLOAT_DTYPES = [torch.float32] + ([torch.float64] if _common.INTERPRETED else [])
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-4, torch.float16: 2e-2, torch.bfloat16: 4e-2}


def reference(x, weight, adjacency, bias=None):
    """conv1x1 + einsum: y[n,o,t,w] = sum_{k,c,v} W[k,o,c] x[n,c,t,v] A[n|.,k,v,w] + bias."""
    z = torch.einsum("koc,nctv->nkotv", weight, x)
    if bias is not None and bias.dim() == 2:
        z = z + bias[None, :, :, None, None]
    pattern = "nkotv,kvw->notw" if adjacency.dim() == 3 else "nkotv,nkvw->notw"
    y = torch.einsum(pattern, z, adjacency)
    if bias is not None and bias.dim() == 1:
        y = y + bias[None, :, None, None]
    return y


def make_inputs(
    n,
    c_in,
    c_out,
    t,
    v,
    k,
    *,
    per_sample=False,
    bias=None,
    dtype=torch.float32,
    strided=False,
    seed=0,
):
    """Random inputs; ``bias`` is None, "out" ([C_out]) or "partition" ([K, C_out]).

    ``strided`` makes x and grad_out permuted/sliced views and W, A transposed views.
    """
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape):
        # Drawn in float64 on the CPU, then rounded: the reference sees exactly these values.
        return torch.randn(*shape, generator=gen, dtype=torch.float64).to(DEVICE, dtype)

    if strided:
        x = randn(n, t, v + 2, 2 * c_in).permute(0, 3, 1, 2)[:, ::2, :, 1 : v + 1]
        grad_out = randn(n, c_out, v, t).transpose(2, 3)
        weight = randn(k, c_in, c_out).transpose(1, 2)
        a_shape = (n, k, v, v) if per_sample else (k, v, v)
        adjacency = randn(*a_shape).transpose(-1, -2)
    else:
        x = randn(n, c_in, t, v)
        grad_out = randn(n, c_out, t, v)
        weight = randn(k, c_out, c_in)
        adjacency = randn(*((n, k, v, v) if per_sample else (k, v, v)))
    b = {None: None, "out": lambda: randn(c_out), "partition": lambda: randn(k, c_out)}[bias]
    b = b() if b is not None else None
    if strided:
        assert not x.is_contiguous() and not grad_out.is_contiguous()
    return [x, weight, adjacency, b, grad_out]


def assert_close(actual, expected, tol, what):
    expected = expected.detach().double().cpu()
    actual = actual.double().cpu()
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    scale = max(1.0, expected.abs().max().item()) if expected.numel() else 1.0
    torch.testing.assert_close(actual, expected, rtol=tol, atol=tol * scale, msg=what)


def check(n, c_in, c_out, t, v, k, *, dtype=torch.float32, **kwargs):
    x, weight, adjacency, bias, grad_out = make_inputs(
        n, c_in, c_out, t, v, k, dtype=dtype, **kwargs
    )
    tol = TOLERANCE[dtype]

    y = gc.graph_conv_forward(x, weight, adjacency, bias)
    assert y.dtype == dtype and y.is_contiguous() and y.shape == (n, c_out, t, v)

    leaves = [u.detach().cpu().double().requires_grad_() for u in (x, weight, adjacency)]
    bias64 = None if bias is None else bias.detach().cpu().double().requires_grad_()
    y_ref = reference(*leaves, bias64)
    assert_close(y, y_ref, tol, "y")

    grads_ref = torch.autograd.grad(
        y_ref, leaves + ([bias64] if bias is not None else []), grad_out.cpu().double()
    )
    grads = gc.graph_conv_backward(grad_out, x, weight, adjacency, bias, [True] * 4)
    names = ["dx", "dweight", "dadjacency", "dbias"]
    inputs = (x, weight, adjacency, bias)
    for name, got, want, inp in zip(names, grads, grads_ref, inputs, strict=False):
        assert got.dtype == inp.dtype and got.shape == inp.shape, name
        assert_close(got, want, tol, name)
    if bias is None:
        assert grads[3].numel() == 0


CASES = {
    "base": dict(n=2, c_in=3, c_out=5, t=3, v=7, k=3),
    "bias_out": dict(n=2, c_in=3, c_out=5, t=3, v=7, k=3, bias="out"),
    "bias_partition": dict(n=2, c_in=3, c_out=5, t=3, v=7, k=3, bias="partition"),
    "per_sample": dict(n=2, c_in=3, c_out=5, t=3, v=7, k=3, per_sample=True),
    "per_sample_bias_partition": dict(
        n=2, c_in=3, c_out=5, t=3, v=7, k=3, per_sample=True, bias="partition"
    ),
    "per_sample_bias_out": dict(n=2, c_in=3, c_out=5, t=3, v=7, k=2, per_sample=True, bias="out"),
    "v25": dict(n=2, c_in=3, c_out=5, t=2, v=25, k=3, bias="partition"),
    "v1": dict(n=2, c_in=3, c_out=5, t=3, v=1, k=1, bias="partition"),
    # Several channel blocks (BLOCK_C = 16, BLOCK_O = 64) and ragged frame blocks (BLOCK_T = 8).
    "multi_block": dict(n=2, c_in=33, c_out=70, t=9, v=7, k=2, bias="out"),
    # V > 64: two joint tiles, the looped (not SINGLE_TILE) path.
    "two_joint_tiles": dict(n=1, c_in=2, c_out=3, t=1, v=70, k=2, bias="partition"),
    "strided": dict(n=2, c_in=3, c_out=5, t=3, v=7, k=3, bias="partition", strided=True),
    "strided_per_sample": dict(
        n=2, c_in=3, c_out=5, t=3, v=25, k=2, per_sample=True, bias="out", strided=True
    ),
}


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("case", list(CASES), ids=str)
def test_matches_reference(case, dtype):
    check(dtype=dtype, **CASES[case])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_half_precision(dtype):
    # Under the interpreter bfloat16 is computed in float32 (its tl.dot cannot multiply
    # bfloat16); float16 runs the 16-bit path, which bfloat16 shares on a GPU.
    check(n=2, c_in=5, c_out=6, t=3, v=7, k=3, dtype=dtype, bias="partition", per_sample=True)


def test_output_mask_and_missing_bias():
    x, weight, adjacency, bias, grad_out = make_inputs(2, 3, 5, 3, 7, 3, bias="out")
    dx, dw, da, db = gc.graph_conv_backward(
        grad_out, x, weight, adjacency, bias, [False, True, False, False]
    )
    assert dx.numel() == 0 and da.numel() == 0 and db.numel() == 0
    assert dw.shape == weight.shape
    *_, db = gc.graph_conv_backward(grad_out, x, weight, adjacency, None, [False] * 3 + [True])
    assert db.numel() == 0


def test_expanded_grad_out():
    # y.sum().backward() hands the backward an all-zero-stride grad_out.
    x, weight, adjacency, bias, _ = make_inputs(2, 3, 5, 3, 7, 3, bias="partition")
    grad_out = torch.ones((), dtype=x.dtype, device=x.device).expand(2, 5, 3, 7)
    leaves = [u.detach().cpu().double().requires_grad_() for u in (x, weight, adjacency, bias)]
    expected = torch.autograd.grad(reference(*leaves).sum(), leaves)
    grads = gc.graph_conv_backward(grad_out, x, weight, adjacency, bias, [True] * 4)
    for name, got, want in zip(
        ["dx", "dweight", "dadjacency", "dbias"], grads, expected, strict=True
    ):
        assert_close(got, want, TOLERANCE[x.dtype], name)


def test_fp32_dot_precision_follows_torch():
    previous = torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = False
        assert _common.dot_precision(torch.float32) == "ieee"
        torch.backends.cuda.matmul.allow_tf32 = True
        assert _common.dot_precision(torch.float32) == "tf32"
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous


def test_empty_batch():
    x, weight, adjacency, bias, grad_out = make_inputs(0, 3, 5, 3, 7, 3, bias="partition")
    y = gc.graph_conv_forward(x, weight, adjacency, bias)
    assert y.shape == (0, 5, 3, 7)
    dx, dw, da, db = gc.graph_conv_backward(grad_out, x, weight, adjacency, bias, [True] * 4)
    assert dx.shape == x.shape
    for got, inp in ((dw, weight), (da, adjacency), (db, bias)):
        assert got.shape == inp.shape and not got.any()


def test_bad_inputs_raise():
    x, weight, adjacency, bias, _ = make_inputs(2, 3, 5, 3, 7, 3)
    with pytest.raises(ValueError, match="x must be"):
        gc.graph_conv_forward(x[0], weight, adjacency)
    with pytest.raises(ValueError, match="weight must be"):
        gc.graph_conv_forward(x, weight[:, :, :2], adjacency)
    with pytest.raises(ValueError, match="adjacency must be"):
        gc.graph_conv_forward(x, weight, adjacency[:, :6])
    with pytest.raises(ValueError, match="bias must be"):
        gc.graph_conv_forward(x, weight, adjacency, torch.zeros(4, device=x.device))
    with pytest.raises(TypeError, match="weight must have the dtype of x"):
        gc.graph_conv_forward(x, weight.half(), adjacency)
    with pytest.raises(TypeError, match="x must have dtype"):
        gc.graph_conv_forward(x.int(), weight.int(), adjacency.int())
