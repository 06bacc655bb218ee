"""Triton multi-dilation graph-convolution launchers vs a float64 PyTorch reference.

Without a GPU the kernels run under Triton's interpreter (``TRITON_INTERPRET=1``, set below
before triton is imported) on CPU tensors, so every shape here is tiny. The concat cases cover
the tile edges of the kernels: several joint tiles (V > 64), several dilation groups (D * 32
joint columns > 128), several channel blocks, ragged frame blocks and strided views.
Adjacency convention: ``A[d, k, v, w]`` carries source joint v to target joint w.
"""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

pytest.importorskip("triton")

from skelops import reference  # noqa: E402
from skelops.triton import _common  # noqa: E402
from skelops.triton import multi_dilation_graph_conv as mdgc  # noqa: E402

pytestmark = pytest.mark.triton

DEVICE = "cpu" if _common.INTERPRETED else "cuda"
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-4, torch.float16: 2e-2, torch.bfloat16: 4e-2}


def make_inputs(n, c_in, c_out, t, v, k, d, *, concat, bias, dtype, strided, seed=0):
    """Random x, weight, adjacency, bias, grad_out; ``strided`` makes x and grad_out
    permuted/sliced views and W, A transposed views."""
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape):
        # Drawn in float64 on the CPU, then rounded: the reference sees exactly these values.
        return torch.randn(*shape, generator=gen, dtype=torch.float64).to(DEVICE, dtype)

    channels = d * c_out if concat else c_out
    if strided:
        x = randn(n, t, v + 2, 2 * c_in).permute(0, 3, 1, 2)[:, ::2, :, 1 : v + 1]
        grad_out = randn(n, channels, v, t).transpose(2, 3)
        weight = randn(k, c_in, c_out).transpose(1, 2)
        adjacency = randn(k, d, v, v).transpose(0, 1).transpose(2, 3)
        assert not x.is_contiguous() and not grad_out.is_contiguous()
    else:
        x = randn(n, c_in, t, v)
        grad_out = randn(n, channels, t, v)
        weight = randn(k, c_out, c_in)
        adjacency = randn(d, k, v, v)
    return x, weight, adjacency, randn(channels) if bias else None, grad_out


def check(
    n, c_in, c_out, t, v, k, d, *, concat=True, bias=True, dtype=torch.float32, strided=False
):
    x, weight, adjacency, b, grad_out = make_inputs(
        n, c_in, c_out, t, v, k, d, concat=concat, bias=bias, dtype=dtype, strided=strided
    )
    tol = TOLERANCE[dtype]
    y = mdgc.multi_dilation_graph_conv_forward(x, weight, adjacency, b, concat)
    channels = d * c_out if concat else c_out
    assert y.dtype == dtype and y.is_contiguous() and y.shape == (n, channels, t, v)

    inputs = (x, weight, adjacency, b)
    leaves = [None if u is None else u.detach().cpu().double().requires_grad_() for u in inputs]
    y_ref = reference.multi_dilation_graph_conv(*leaves, concat=concat)
    _assert_close(y, y_ref, tol, "y")
    wanted = [u for u in leaves if u is not None]
    grads_ref = torch.autograd.grad(y_ref, wanted, grad_out.cpu().double())
    grads = mdgc.multi_dilation_graph_conv_backward(
        grad_out, x, weight, adjacency, b, concat, [True] * 4
    )
    names = ("dx", "dweight", "dadjacency", "dbias")
    # zip stops at the reference's gradients: without a bias there is no d bias to compare
    for name, got, want, inp in zip(names, grads, grads_ref, inputs, strict=False):
        assert got.dtype == inp.dtype and got.shape == inp.shape, name
        _assert_close(got, want, tol, name)
    if b is None:
        assert grads[3].numel() == 0


def _assert_close(actual, expected, tol, what):
    expected = expected.detach().double().cpu()
    scale = max(1.0, expected.abs().max().item())
    torch.testing.assert_close(
        actual.double().cpu(), expected, rtol=tol, atol=tol * scale, msg=what
    )


CASES = {
    "odd": dict(n=2, c_in=3, c_out=5, t=3, v=7, k=3, d=2),
    "ntu_joints": dict(n=1, c_in=3, c_out=4, t=2, v=25, k=3, d=2, strided=True),
    # Several channel blocks (BLOCK_C = 32 / 64, BLOCK_O = 32) and ragged frame blocks.
    "multi_block": dict(n=1, c_in=35, c_out=33, t=3, v=7, k=2, d=2),
    # V > 64: two joint tiles (the looped v / w paths of every kernel).
    "two_joint_tiles": dict(n=1, c_in=2, c_out=3, t=1, v=70, k=1, d=2),
    # D = 5 dilations of 32-joint tiles: two dilation groups of BLOCK_D = 4.
    "dilation_groups": dict(n=1, c_in=2, c_out=3, t=2, v=20, k=2, d=5, bias=False),
    "sum_strided": dict(n=2, c_in=3, c_out=4, t=2, v=7, k=2, d=3, concat=False, strided=True),
}


@pytest.mark.parametrize("case", list(CASES), ids=str)
def test_matches_reference_float32(case):
    check(**CASES[case])


@pytest.mark.skipif(not _common.INTERPRETED, reason="float64 runs under the interpreter only")
@pytest.mark.parametrize("concat", [False, True])
def test_matches_reference_float64(concat):
    check(**{**CASES["odd"], "concat": concat}, dtype=torch.float64)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_half_precision(dtype):
    # Under the interpreter bfloat16 is computed in float32 (its tl.dot cannot multiply
    # bfloat16); float16 runs the 16-bit path, which bfloat16 shares on a GPU.
    check(n=2, c_in=5, c_out=6, t=3, v=7, k=3, d=2, dtype=dtype, strided=True)


def test_masked_and_missing_gradients_are_empty():
    x, weight, adjacency, b, grad_out = make_inputs(
        1, 2, 3, 2, 5, 2, 2, concat=True, bias=True, dtype=torch.float32, strided=False
    )
    full = mdgc.multi_dilation_graph_conv_backward(
        grad_out, x, weight, adjacency, b, True, [True] * 4
    )
    for i in range(4):
        part = mdgc.multi_dilation_graph_conv_backward(
            grad_out, x, weight, adjacency, b, True, [j == i for j in range(4)]
        )
        for j in range(4):
            assert part[j].numel() == (full[j].numel() if j == i else 0)
    with pytest.raises(ValueError, match=r"grad_out must be \[1, 6, 2, 5\]"):
        mdgc.multi_dilation_graph_conv_backward(
            grad_out[:, :3], x, weight, adjacency, b, True, [True] * 4
        )
    with pytest.raises(ValueError, match=r"bias must be None or \[3\]"):
        mdgc.multi_dilation_graph_conv_forward(x, weight, adjacency, b, False)
