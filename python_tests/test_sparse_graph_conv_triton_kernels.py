"""Triton sparse graph-convolution launchers vs the float64 PyTorch reference.

Without a GPU the kernels run under Triton's interpreter (``TRITON_INTERPRET=1``, set by
conftest before triton is imported) on CPU tensors, so every shape here is tiny. The launchers
are called directly: ``torch.library.wrap_triton`` raises under the interpreter on older torch.
Adjacency convention: ``A[k, v, w]`` carries source joint v to target joint w; the CSR rows are
the targets (``skelops.graphs.SparseAdjacency``).
"""

from __future__ import annotations

import itertools

import pytest
import torch
from helpers import assert_close_scaled, skip_unless_triton

from skelops.graphs import to_sparse
from skelops.reference import sparse_graph_conv as reference
from skelops.triton import interpreter_enabled

pytestmark = pytest.mark.triton

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
INTERPRETED = interpreter_enabled()
# Under the interpreter float64 runs too, and bfloat16 is computed in float32 (its tl.dot
# cannot multiply bfloat16) while float16 runs the 16-bit path, which bfloat16 shares on a GPU.
INTERPRETER_DTYPES = [torch.float64, torch.float32, torch.bfloat16, torch.float16]
DTYPES = INTERPRETER_DTYPES if INTERPRETED else [torch.float32, torch.float16, torch.bfloat16]
BIASES = [None, "after", "before"]


@pytest.fixture(scope="module")
def sg():
    skip_unless_triton(DEVICE)
    from skelops.triton import sparse_graph_conv

    return sparse_graph_conv


def make_adjacency(v, k, *, seed=0, density=0.25, empty_subsets=(), empty_targets=(), links=None):
    """A random float64 ``[K, V, V]`` adjacency ``A[k, source, target]`` (zeros not stored).

    ``empty_targets`` get degree-0 rows in every subset; ``links`` (subset -> [(source,
    target)]) replaces a subset by a few entries, like MP-GCN's inter-person links.
    """
    gen = torch.Generator().manual_seed(seed)
    mask = torch.rand(k, v, v, generator=gen) < density
    for s in empty_subsets:
        mask[s] = False
    for s, pairs in (links or {}).items():
        mask[s] = False
        for src, dst in pairs:
            mask[s, src, dst] = True
    for w in empty_targets:
        mask[:, :, w] = False
    values = torch.rand(k, v, v, generator=gen, dtype=torch.float64) + 0.5
    return values * torch.where(torch.rand(k, v, v, generator=gen) < 0.5, -1.0, 1.0) * mask


def make_inputs(
    n, c_in, c_out, t, dense, *, bias, dtype, index_dtype=torch.int64, strided=False, seed=1
):
    """x, weight, (crow, col, values), bias, grad_out on DEVICE in ``dtype``.

    ``strided`` makes x a permuted, sliced view, weight a transposed view and grad_out a
    transposed view.
    """
    gen = torch.Generator().manual_seed(seed)
    k, v, _ = dense.shape

    def randn(*shape):
        # Drawn in float64 on the CPU, then rounded: the reference sees exactly these values.
        return torch.randn(*shape, generator=gen, dtype=torch.float64).to(DEVICE, dtype)

    if strided:
        x = randn(n, t, v + 2, 2 * c_in).permute(0, 3, 1, 2)[:, ::2, :, 1 : v + 1]
        weight = randn(k, c_in, c_out).transpose(1, 2)
        grad_out = randn(n, c_out, v, t).transpose(2, 3)
        assert not (x.is_contiguous() or grad_out.is_contiguous() or weight.is_contiguous())
    else:
        x = randn(n, c_in, t, v)
        weight = randn(k, c_out, c_in)
        grad_out = randn(n, c_out, t, v)
    adjacency = to_sparse(dense, index_dtype=index_dtype)
    csr = (
        adjacency.crow_indices.to(DEVICE),
        adjacency.col_indices.to(DEVICE),
        adjacency.values.to(DEVICE, dtype),
    )
    b = {None: None, "after": lambda: randn(c_out), "before": lambda: randn(k, c_out)}[bias]
    return x, weight, csr, b() if b is not None else None, grad_out


def reference_forward(x, weight, csr, bias=None):
    crow, col, values = (u.cpu() for u in csr)
    b = None if bias is None else bias.cpu().double()
    return reference(x.cpu().double(), weight.cpu().double(), crow, col, values.double(), b)


def reference_outputs(x, weight, csr, bias, grad_out):
    """y and (dx, dweight, dvalues, dbias) of the reference in float64 on the CPU."""
    crow, col, values = (u.cpu() for u in csr)
    leaves = [u.detach().cpu().double().requires_grad_() for u in (x, weight, values)]
    if bias is not None:
        leaves.append(bias.detach().cpu().double().requires_grad_())
    y = reference(
        leaves[0], leaves[1], crow, col, leaves[2], leaves[3] if bias is not None else None
    )
    grads = torch.autograd.grad(y, leaves, grad_out.detach().cpu().double())
    return y.detach(), list(grads) + [None] * (4 - len(grads))


def check(sg, x, weight, csr, bias, grad_out, masks=((True,) * 4,)):
    dtype = x.dtype
    y_ref, grads_ref = reference_outputs(x, weight, csr, bias, grad_out)
    y = sg.sparse_graph_conv_forward(x, weight, *csr, bias)
    assert y.dtype == dtype and y.is_contiguous() and y.shape == y_ref.shape
    assert_close_scaled(y, y_ref, dtype)

    inputs = (x, weight, csr[2], bias)
    names = ("dx", "dweight", "dvalues", "dbias")
    for mask in masks:
        grads = sg.sparse_graph_conv_backward(grad_out, x, weight, *csr, bias, list(mask))
        assert len(grads) == 4
        for name, wanted, got, want, inp in zip(names, mask, grads, grads_ref, inputs, strict=True):
            if not wanted or inp is None:
                assert got.numel() == 0 and got.dtype == dtype, f"{name} should be empty"
                continue
            assert got.shape == inp.shape and got.dtype == inp.dtype, name
            if name == "dx":
                assert got.is_contiguous()
            if want.numel():  # dvalues of a graph without entries is [0]
                assert_close_scaled(got, want, dtype)


# Odd sizes: degree-0 targets, an empty subset, and a subset of two links.
ODD = dict(n=2, c_in=5, c_out=7, t=5)


def odd_graph(seed=0):
    return make_adjacency(
        11, 3, seed=seed, empty_subsets=(1,), empty_targets=(0, 6), links={2: [(3, 9), (9, 3)]}
    )


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("bias", BIASES, ids=str)
def test_odd_sizes(sg, bias, dtype):
    index_dtype = torch.int32 if bias == "after" else torch.int64
    inputs = make_inputs(**ODD, dense=odd_graph(), bias=bias, dtype=dtype, index_dtype=index_dtype)
    check(sg, *inputs)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_strided_inputs(sg, dtype):
    dense = odd_graph(seed=3)
    check(sg, *make_inputs(**ODD, dense=dense, bias="before", dtype=dtype, strided=True))


@pytest.mark.parametrize("dtype", DTYPES[:2], ids=str)
def test_many_tiles(sg, dtype):
    """V = 70: five 16-target tiles; a diagonal subset, a random one with a row of degree 11
    (several degree steps) and a subset of three links (sorted into one tile of targets)."""
    v = 70
    dense = make_adjacency(v, 3, seed=5, density=0.04, links={2: [(1, 40), (40, 1), (69, 2)]})
    dense[0] = torch.diag(torch.linspace(0.5, 1.5, v, dtype=torch.float64))
    dense[1, 30:39, 7] = torch.linspace(-1.0, 1.0, 9, dtype=torch.float64) + 0.05
    dense[:, :, 11] = 0.0  # a degree-0 target
    inputs = make_inputs(1, 3, 4, 2, dense, bias="before", dtype=dtype, index_dtype=torch.int32)
    check(sg, *inputs)


def test_many_channel_blocks(sg):
    """C_in = 33, C_out = 130: several channel blocks in every kernel (two output blocks in
    the forward, three input blocks in dx's output...)."""
    dense = make_adjacency(5, 2, seed=9, density=0.4, empty_targets=(2,))
    check(sg, *make_inputs(1, 33, 130, 2, dense, bias="after", dtype=torch.float32))


@pytest.mark.parametrize("bias", BIASES, ids=str)
def test_no_entries(sg, bias):
    dense = torch.zeros(2, 9, 9, dtype=torch.float64)
    inputs = make_inputs(**ODD, dense=dense, bias=bias, dtype=torch.float32)
    assert inputs[2][2].numel() == 0
    check(sg, *inputs)


def test_output_masks(sg):
    inputs = make_inputs(**ODD, dense=odd_graph(seed=7), bias="before", dtype=torch.float32)
    masks = [m for m in itertools.product((False, True), repeat=4) if sum(m) == 1]
    masks += [(False, True, True, False), (True, False, False, True), (False,) * 4]
    check(sg, *inputs, masks=masks)


def test_missing_bias_gives_empty_dbias(sg):
    x, weight, csr, _, grad_out = make_inputs(
        **ODD, dense=odd_graph(), bias=None, dtype=torch.float32
    )
    *_, dbias = sg.sparse_graph_conv_backward(grad_out, x, weight, *csr, None, [True] * 4)
    assert dbias.numel() == 0


def test_x_stand_in_is_not_read(sg):
    """With dweight and dvalues not asked for, x may be a zero-stride stand-in (here NaN)."""
    x, weight, csr, bias, grad_out = make_inputs(
        **ODD, dense=odd_graph(), bias="after", dtype=torch.float32
    )
    stand_in = torch.full((), float("nan"), device=DEVICE).expand(x.shape)
    _, grads_ref = reference_outputs(x, weight, csr, bias, grad_out)
    dx, dw, dvalues, dbias = sg.sparse_graph_conv_backward(
        grad_out, stand_in, weight, *csr, bias, [True, False, False, True]
    )
    assert dw.numel() == 0 and dvalues.numel() == 0
    assert_close_scaled(dx, grads_ref[0], torch.float32)
    assert_close_scaled(dbias, grads_ref[3], torch.float32)


def test_expanded_grad_out(sg):
    # y.sum().backward() hands the backward an all-zero-stride grad_out.
    x, weight, csr, bias, _ = make_inputs(
        **ODD, dense=odd_graph(), bias="before", dtype=torch.float32
    )
    grad_out = torch.ones((), device=DEVICE).expand(ODD["n"], ODD["c_out"], ODD["t"], 11)
    check(sg, x, weight, csr, bias, grad_out)


def test_structure_cache_follows_in_place_edits(sg):
    """The derived index arrays are cached per (crow, col); editing them in place must not
    reuse the old ones."""
    dense = odd_graph(seed=11)
    first, second = to_sparse(dense), to_sparse(dense.roll(1, dims=2))  # targets moved by one
    assert not torch.equal(first.crow_indices, second.crow_indices)
    x, weight, *_ = make_inputs(**ODD, dense=dense, bias=None, dtype=torch.float32)
    crow, col = first.crow_indices.clone().to(DEVICE), first.col_indices.clone().to(DEVICE)
    for adjacency in (first, second):
        crow.copy_(adjacency.crow_indices)
        col.copy_(adjacency.col_indices)
        csr = (crow, col, adjacency.values.to(DEVICE, torch.float32))
        y = sg.sparse_graph_conv_forward(x, weight, *csr)
        assert_close_scaled(y, reference_forward(x, weight, csr), torch.float32)
