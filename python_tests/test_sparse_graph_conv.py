"""skelops.graph_conv with a sparse adjacency (torch.ops.skelops.sparse_graph_conv): every
backend against the dense op's reference for the same matrix, gradients (x, weight, bias and
the stored values), opcheck, compile, autocast, block-diagonal input and bad input
(../shared/GUIDE.md section 2)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from helpers import DEVICES, assert_close_scaled, make_features, skip_unless_triton

import skelops
from skelops import graphs, reference


@dataclass(frozen=True)
class Case:
    n: int
    c_in: int
    c_out: int
    t: int
    v: int
    k: int
    density: float = 0.2
    bias: str | None = None  # None, "after" ([C_out]) or "before" ([K, C_out])
    layout: str = "contiguous"  # or "channels_last" (permuted view) or "strided" (sliced T)
    empty_subset: bool = False  # subset 1 has no entries
    isolated: bool = True  # targets 0 and V - 1 have no sources in any subset
    index_dtype: torch.dtype = torch.int64

    def __str__(self) -> str:
        return (
            f"N{self.n}-C{self.c_in}x{self.c_out}-T{self.t}-V{self.v}-K{self.k}-d{self.density}-"
            f"b{self.bias}-{self.layout}-e{int(self.empty_subset)}-{self.index_dtype}"
        )


CASES = [
    Case(2, 3, 5, 4, 7, 3, bias="before", empty_subset=True),
    Case(3, 6, 4, 5, 25, 2, bias="after", layout="channels_last", index_dtype=torch.int32),
    Case(1, 4, 4, 3, 1, 1, density=1.0, isolated=False),
    Case(2, 5, 9, 6, 18, 3, bias="before", layout="strided"),
    Case(2, 7, 3, 2, 40, 2, density=0.05, bias="after"),
    Case(1, 3, 5, 2, 1024, 3, density=0.002, bias="before", index_dtype=torch.int32),
]


def random_adjacency(case: Case, generator: torch.Generator) -> torch.Tensor:
    """Dense ``[K, V, V]`` with about ``density`` of its entries non-zero, a full subset 0
    diagonal (self links, as partitioned graphs have), an empty subset 1 and isolated targets
    when the case asks."""
    k, v = case.k, case.v
    keep = torch.rand(k, v, v, generator=generator) < case.density
    keep[0] |= torch.eye(v, dtype=torch.bool)
    if case.isolated and v > 1:
        keep[:, :, 0] = keep[:, :, v - 1] = False
    if case.empty_subset and k > 1:
        keep[1] = False
    values = torch.rand(k, v, v, generator=generator, dtype=torch.float64) + 0.5
    return torch.where(keep, values, torch.zeros((), dtype=torch.float64))


def sample_inputs(case: Case, dtype=torch.float64, device="cpu", requires_grad=False, seed=0):
    """x, weight, dense adjacency, bias, and the adjacency's SparseAdjacency (whose values are
    a leaf of their own when requires_grad)."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype)

    x = make_features(rand, case.n, case.c_in, case.t, case.v, case.layout)
    weight = rand(case.k, case.c_out, case.c_in)
    dense = random_adjacency(case, g).to(dtype)
    bias = {"after": lambda: rand(case.c_out), "before": lambda: rand(case.k, case.c_out)}.get(
        case.bias, lambda: None
    )()
    x, weight, dense = x.to(device), weight.to(device), dense.to(device)
    bias = None if bias is None else bias.to(device)
    sparse = graphs.to_sparse(dense, index_dtype=case.index_dtype)
    if requires_grad:
        for t in (x, weight, bias):
            if t is not None:
                t.requires_grad_(True)
        sparse = sparse.with_values(sparse.values.clone().requires_grad_(True))
    return x, weight, dense, bias, sparse


def backends_for(device: str) -> list[str]:
    return ["cpu", "triton", "reference"] if device == "cpu" else ["cuda", "triton", "reference"]


def _skip_unsupported(backend: str, device: str, dtype: torch.dtype) -> None:
    if backend == "triton":
        skip_unless_triton(device)
    if backend == "cuda" and dtype == torch.float64:
        pytest.skip("the CUDA kernels take float32/float16/bfloat16")


def _as_dense_gradient(sparse: graphs.SparseAdjacency, dense_grad: torch.Tensor) -> torch.Tensor:
    """The dense op's adjacency gradient at the stored entries, in storage order."""
    subset, source, target = sparse.entry_indices()
    return dense_grad[subset, source, target]


# --- the reference itself ---------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES[:4], ids=str)
def test_reference_equals_dense_reference(case):
    x, w, dense, b, sparse = sample_inputs(case, seed=1)
    expected = reference.graph_conv(x, w, dense, b)
    actual = reference.sparse_graph_conv(
        x, w, sparse.crow_indices, sparse.col_indices, sparse.values, b
    )
    assert_close_scaled(actual, expected, torch.float64)


# --- every backend against the dense op ---------------------------------------------------------


# Triton runs the cases up to V = 40: the interpreter is too slow for V = 1024 (its own test
# file covers multi-tile graphs).
BACKEND_CASES = [("compiled", c) for c in CASES] + [("triton", c) for c in CASES if c.v <= 40]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend, case", BACKEND_CASES, ids=str)
def test_forward_backward_float64_and_float32(case, backend, device):
    backend = backends_for(device)[0] if backend == "compiled" else backend
    for dtype in (torch.float64, torch.float32):
        if backend == "cuda" and dtype == torch.float64:
            continue
        _skip_unsupported(backend, device, dtype)
        x, w, dense, b, sparse = sample_inputs(case, dtype, device, requires_grad=True, seed=2)
        ref = [t.detach().double().cpu().requires_grad_() for t in (x, w, dense)]
        ref_b = None if b is None else b.detach().double().cpu().requires_grad_()
        y = skelops.graph_conv(x, w, sparse, b, backend=backend)
        y_ref = reference.graph_conv(*ref, ref_b)
        assert y.dtype == dtype and y.device.type == device and y.is_contiguous()
        assert_close_scaled(y, y_ref, dtype)
        grad = torch.randn(y.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
        y.backward(grad.to(dtype).to(device))
        y_ref.backward(grad)
        assert_close_scaled(x.grad, ref[0].grad, dtype)
        assert_close_scaled(w.grad, ref[1].grad, dtype)
        assert_close_scaled(sparse.values.grad, _as_dense_gradient(sparse, ref[2].grad), dtype)
        if b is not None:
            assert_close_scaled(b.grad, ref_b.grad, dtype)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision(device, dtype):
    case = CASES[3]
    x, w, dense, b, sparse = sample_inputs(case, dtype, device, requires_grad=True, seed=4)
    y = skelops.graph_conv(x, w, sparse, b, backend=backends_for(device)[0])
    assert y.dtype == dtype
    exact = reference.graph_conv(*(t.detach().double().cpu() for t in (x, w, dense, b)))
    assert_close_scaled(y, exact, dtype)
    y.float().square().sum().backward()
    for t in (x, w, b, sparse.values):
        assert t.grad is not None and t.grad.dtype == dtype


def test_no_entries_at_all():
    """nnz == 0: only the bias remains (a bias before aggregation is scaled by empty rows)."""
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 6, 3, dtype=torch.float64, requires_grad=True)
    sparse = graphs.to_sparse(torch.zeros(2, 5, 5, dtype=torch.float64))
    assert sparse.nnz == 0
    for b in (torch.randn(6, dtype=torch.float64), torch.randn(2, 6, dtype=torch.float64)):
        b.requires_grad_(True)
        y = skelops.graph_conv(x, w, sparse, b, backend="cpu")
        expected = b.detach().view(1, 6, 1, 1) if b.dim() == 1 else torch.zeros(())
        torch.testing.assert_close(y, expected.expand_as(y).to(y.dtype))
        y.sum().backward()
        assert torch.equal(x.grad, torch.zeros_like(x)) and torch.equal(w.grad, torch.zeros_like(w))
        assert torch.equal(b.grad, torch.full_like(b, 2 * 4 * 5) if b.dim() == 1 else b.grad * 0)
        x.grad = w.grad = None


def test_block_diagonal_adjacency_gives_the_dense_result_and_gradients():
    dense = graphs.mpgcn_adjacency("coco_ball-12")[:3].double()
    blocks = graphs.to_block_diagonal(dense, 12)
    blocks = graphs.BlockDiagonalAdjacency(
        blocks.blocks.clone().requires_grad_(),
        blocks.link_subsets,
        blocks.link_sources,
        blocks.link_targets,
        blocks.link_values.clone().requires_grad_(),
    )
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 3, 2, 216, generator=g, dtype=torch.float64)
    w = torch.randn(3, 4, 3, generator=g, dtype=torch.float64)
    dense_leaf = dense.clone().requires_grad_()
    y = skelops.graph_conv(x, w, blocks)
    y_ref = reference.graph_conv(x, w, dense_leaf)
    assert_close_scaled(y, y_ref, torch.float64)
    grad = torch.randn(y.shape, generator=g, dtype=torch.float64)
    y.backward(grad)
    y_ref.backward(grad)
    # the links' gradient is the dense gradient at the links; block entries that are stored
    # (non-zero) get the dense gradient, the zero ones none
    expected_links = dense_leaf.grad[blocks.link_subsets, blocks.link_sources, blocks.link_targets]
    assert_close_scaled(blocks.link_values.grad, expected_links, torch.float64)
    block_grad = torch.stack(
        [dense_leaf.grad[:, p * 18 : (p + 1) * 18, p * 18 : (p + 1) * 18] for p in range(12)], 1
    )
    stored = blocks.blocks.detach() != 0
    assert_close_scaled(blocks.blocks.grad[stored], block_grad[stored], torch.float64)
    assert torch.equal(blocks.blocks.grad[~stored], torch.zeros_like(block_grad[~stored]))


def test_mpgcn_graphs_match_the_dense_op():
    for name in ("coco_ball-12", "coco_ball_net-12"):
        dense = graphs.mpgcn_adjacency(name)[:3]
        x = torch.randn(2, 8, 3, dense.shape[-1])
        w = torch.randn(3, 16, 8) / 8**0.5
        b = torch.randn(3, 16)
        expected = skelops.graph_conv(x, w, dense, b)
        assert_close_scaled(skelops.graph_conv(x, w, graphs.to_sparse(dense), b), expected,
                            torch.float32)  # fmt: skip


def test_masked_gradients_match_and_are_skipped():
    case = CASES[0]
    x, w, _, b, sparse = sample_inputs(case, seed=6)
    args = (x, w, sparse.crow_indices, sparse.col_indices, sparse.values, b)
    grad = torch.randn(case.n, case.c_out, case.t, case.v, dtype=torch.float64)
    backward = torch.ops.skelops.sparse_graph_conv_backward
    full = backward(grad, *args, [True, True, True, True])
    for i in range(4):
        mask = [j == i for j in range(4)]
        part = backward(grad, *args, mask)
        for j in range(4):
            if j == i:
                torch.testing.assert_close(part[j], full[j])
            else:
                assert part[j].numel() == 0


def test_only_x_requires_grad_saves_no_x():
    x, w, dense, b, sparse = sample_inputs(CASES[0], seed=7)
    x.requires_grad_(True)
    y = skelops.graph_conv(x, w, sparse, b)
    assert y.grad_fn is not None
    y.sum().backward()
    xr = x.detach().clone().requires_grad_()
    reference.graph_conv(xr, w, dense, b).sum().backward()
    torch.testing.assert_close(x.grad, xr.grad)


GRADCHECK_CASES = [
    Case(2, 2, 3, 2, 4, 2, density=0.5, bias="before"),
    Case(1, 2, 2, 3, 5, 3, density=0.4, bias="after", layout="channels_last", empty_subset=True),
]


@pytest.mark.parametrize("case", GRADCHECK_CASES, ids=str)
def test_gradcheck_float64(case):
    x, w, _, b, sparse = sample_inputs(case, requires_grad=True, seed=8)

    def fn(x, w, values, b):
        return skelops.graph_conv(x, w, sparse.with_values(values), b, backend="cpu")

    assert torch.autograd.gradcheck(fn, (x, w, sparse.values, b))


def test_gradcheck_triton_float64():
    skip_unless_triton("cpu")
    x, w, _, b, sparse = sample_inputs(
        Case(1, 2, 3, 2, 4, 2, density=0.5, bias="before"), requires_grad=True, seed=9
    )

    def fn(x, w, values, b):
        return skelops.graph_conv(x, w, sparse.with_values(values), b, backend="triton")

    assert torch.autograd.gradcheck(fn, (x, w, sparse.values, b))


# --- torch.library.opcheck and torch.compile ---------------------------------------------------


@pytest.mark.parametrize("case", CASES[:3], ids=str)
@pytest.mark.parametrize("requires_grad", [False, True])
def test_opcheck(case, requires_grad):
    x, w, _, b, sparse = sample_inputs(case, torch.float32, requires_grad=requires_grad, seed=10)
    args = (x, w, sparse.crow_indices, sparse.col_indices, sparse.values, b)
    torch.library.opcheck(torch.ops.skelops.sparse_graph_conv.default, args)
    plain = tuple(None if t is None else t.detach() for t in args)
    grad = torch.randn(case.n, case.c_out, case.t, case.v)
    for mask in ([True, True, True, b is not None], [True, False, False, False]):
        torch.library.opcheck(
            torch.ops.skelops.sparse_graph_conv_backward.default, (grad, *plain, mask)
        )


def test_opcheck_triton_op():
    skip_unless_triton("cpu")
    x, w, _, b, sparse = sample_inputs(
        Case(1, 2, 3, 2, 5, 2, bias="after"), torch.float32, requires_grad=True, seed=11
    )
    torch.library.opcheck(
        torch.ops.skelops.sparse_graph_conv_triton.default,
        (x, w, sparse.crow_indices, sparse.col_indices, sparse.values, b),
        test_utils=("test_schema", "test_autograd_registration", "test_faketensor"),
    )


def test_compile_fullgraph_forward_backward():
    torch._dynamo.reset()
    case = Case(2, 4, 6, 5, 9, 3, bias="before")
    x, w, _, b, sparse = sample_inputs(case, torch.float32, requires_grad=True, seed=12)
    importance = torch.rand(sparse.nnz, requires_grad=True)

    def model(x):
        adjacency = sparse.with_values(sparse.values * importance)
        return torch.relu(skelops.graph_conv(x, w, adjacency, b)).mean(dim=(2, 3))

    compiled = torch.compile(model, fullgraph=True)
    out = compiled(x)
    expected = model(x)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    leaves = (x, w, b, importance, sparse.values)
    grads = torch.autograd.grad(out.sum(), leaves)
    expected_grads = torch.autograd.grad(expected.sum(), leaves)
    for g, e in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-5)


# --- autocast and NaN ----------------------------------------------------------------------------


def test_autocast_cpu_runs_in_bfloat16():
    x, w, dense, b, sparse = sample_inputs(CASES[0], torch.float32, requires_grad=True, seed=13)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = skelops.graph_conv(x, w, sparse, b)
    assert y.dtype == torch.bfloat16
    exact = reference.graph_conv(*(t.detach().double() for t in (x, w, dense, b)))
    assert_close_scaled(y, exact, torch.bfloat16)
    y.float().sum().backward()
    assert x.grad.dtype == torch.float32 and sparse.values.grad.dtype == torch.float32


def test_non_finite_values_travel_only_along_stored_entries():
    """Unlike the dense op (where 0 * NaN reaches every target), a NaN in x reaches exactly
    the targets that have its joint as a source, as with torch.sparse."""
    case = Case(2, 3, 4, 3, 8, 2, density=0.3, isolated=False)
    x, w, dense, _, sparse = sample_inputs(case, torch.float32, seed=14)
    x = x.clone()
    x[1, 0, 2, 3] = float("nan")
    y = skelops.graph_conv(x, w, sparse)
    reached = (dense[:, 3, :] != 0).any(0)  # targets w fed by joint 3 in some subset
    assert torch.equal(y[1, :, 2, :].isnan().all(0), reached)
    assert not y[1, :, 2, ~reached].isnan().any() and not y[0].isnan().any()
    args = (x, w, sparse.crow_indices, sparse.col_indices, sparse.values)
    torch.testing.assert_close(y, reference.sparse_graph_conv(*args), equal_nan=True)
    dense_y = reference.graph_conv(x, w, dense)
    finite = torch.isfinite(dense_y)
    torch.testing.assert_close(y[finite], dense_y[finite])


# --- bad input ---------------------------------------------------------------------------------


def _good():
    x, w, _, b, sparse = sample_inputs(Case(2, 3, 4, 3, 6, 2, density=0.5, bias="after"), seed=15)
    return x, w, sparse, b


def _with(sparse, **changes):
    fields = {
        "crow_indices": sparse.crow_indices,
        "col_indices": sparse.col_indices,
        "values": sparse.values,
        "num_nodes": sparse.num_nodes,
        "validate": False,  # hand the op an unchecked structure: it must check it itself
        **changes,
    }
    return graphs.SparseAdjacency(**fields)


def _out_of_range(s):
    col = s.col_indices.clone()
    col[-1] = 6
    return _with(s, col_indices=col)


def _negative(s):
    col = s.col_indices.clone()
    col[0] = -1
    return _with(s, col_indices=col)


def _unsorted(s):
    crow, col = s.crow_indices, s.col_indices.clone()
    row = next(
        (int(crow.flatten()[i]), int(crow.flatten()[i + 1]))
        for i in range(crow.numel() - 1)
        if crow.flatten()[i + 1] - crow.flatten()[i] >= 2
    )
    col[row[0]], col[row[0] + 1] = col[row[0] + 1].clone(), col[row[0]].clone()
    return _with(s, col_indices=col)


def _crow_past_nnz(s):
    crow = s.crow_indices.clone()
    crow[-1, -1] += 3
    return _with(s, crow_indices=crow)


def _crow_decreasing(s):
    crow = s.crow_indices.clone()
    crow[0, 2] = crow[0, 4] + 1
    return _with(s, crow_indices=crow)


BAD = [
    (lambda x, w, s, b: (x, w, _out_of_range(s), b), IndexError, r"col_indices\[\d+\] = 6 .*V=6"),
    (lambda x, w, s, b: (x, w, _negative(s), b), IndexError, r"col_indices\[0\] = -1"),
    (lambda x, w, s, b: (x, w, _unsorted(s), b), ValueError, "strictly increasing"),
    (lambda x, w, s, b: (x, w, _crow_past_nnz(s), b), ValueError, "nnz"),
    (lambda x, w, s, b: (x, w, _crow_decreasing(s), b), ValueError, "non-decreasing"),
    (
        lambda x, w, s, b: (x, w, _with(s, values=s.values.float()), b),
        TypeError,
        r"adjacency.values must have the same dtype as x \(torch.float64\)",
    ),
    (
        lambda x, w, s, b: (x, w, _with(s, values=s.values.to("meta")), b),
        ValueError,
        "adjacency.values must be on the same device as x",
    ),
    (
        lambda x, w, s, b: (x[..., :5], w, s, b),
        ValueError,
        r"crow_indices must be \[K, V \+ 1\] = \[2, 6\].*6 nodes",
    ),
    (
        lambda x, w, s, b: (x, w[:1], s, b),
        ValueError,
        r"crow_indices must be \[K, V \+ 1\] = \[1, 7\].*2 subsets",
    ),
    (
        lambda x, w, s, b: (x, w, _with(s, col_indices=s.col_indices.int()), b),
        TypeError,
        "share a dtype",
    ),
    (
        lambda x, w, s, b: (x, w, _with(s, col_indices=s.col_indices.double()), b),
        TypeError,
        "int32 or int64",
    ),
    (lambda x, w, s, b: (x[:0], w, s, b), ValueError, "non-empty"),
    (lambda x, w, s, b: (x, w, s, b[:2]), ValueError, r"bias must be \[C_out\]=\[4\]"),
    (lambda x, w, s, b: (x, w, s.values, b), ValueError, r"\[K, V, V\]"),
    (lambda x, w, s, b: (x, w, "graph", b), TypeError, "SparseAdjacency"),
]


@pytest.mark.parametrize("backend", ["cpu", "reference"])
@pytest.mark.parametrize("mutate, error, match", BAD)
def test_bad_input_raises_clear_errors(mutate, error, match, backend):
    with pytest.raises(error, match=match):
        skelops.graph_conv(*mutate(*_good()), backend=backend)


@pytest.mark.parametrize("mutate, error, match", BAD[:5])
def test_bad_structure_is_refused_when_built(mutate, error, match):
    bad = mutate(*_good())[2]
    with pytest.raises(error, match=match):
        graphs.SparseAdjacency(bad.crow_indices, bad.col_indices, bad.values, bad.num_nodes)


@pytest.mark.parametrize("mutate", [m for m, _, _ in BAD[:5]])
def test_direct_op_call_with_bad_structure_raises_not_crashes(mutate):
    x, w, s, b = mutate(*_good())
    args = (x, w, s.crow_indices, s.col_indices, s.values, b)
    with pytest.raises((IndexError, ValueError), match="skelops::sparse_graph_conv"):
        torch.ops.skelops.sparse_graph_conv(*args)
    grad = torch.zeros(2, 4, 3, 6, dtype=torch.float64)
    with pytest.raises((IndexError, ValueError), match="skelops::sparse_graph_conv_backward"):
        torch.ops.skelops.sparse_graph_conv_backward(grad, *args, [True, True, True, True])


def test_in_place_edit_of_the_structure_is_checked_again():
    x, w, s, b = _good()
    skelops.graph_conv(x, w, s, b)
    s.col_indices[-1] = 99
    with pytest.raises(IndexError, match="99"):
        skelops.graph_conv(x, w, s, b)


# --- the nn layer ------------------------------------------------------------------------------


def test_sparse_graphconv_layer_equals_the_dense_layer_and_reloads_its_structure():
    adjacency = graphs.mpgcn_adjacency("coco_ball-2")[:3]
    dense = skelops.nn.GraphConv(4, 6, adjacency, edge_importance=True)
    sparse = skelops.nn.GraphConv(4, 6, adjacency, edge_importance=True, sparse=True)
    with torch.no_grad():
        dense.edge_importance.uniform_(0.5, 1.5)
    sparse.load_state_dict(dense.state_dict())
    assert set(sparse.state_dict()) == set(dense.state_dict())
    x = torch.randn(2, 4, 3, adjacency.shape[-1], requires_grad=True)
    y, y_dense = sparse(x), dense(x)
    torch.testing.assert_close(y, y_dense)
    y.square().sum().backward()
    grads = [t.grad.clone() for t in (x, sparse.weight, sparse.edge_importance)]
    x.grad = None
    y_dense.square().sum().backward()
    for g, t in zip(grads, (x, dense.weight, dense.edge_importance), strict=True):
        torch.testing.assert_close(g, t.grad)
    # another graph loaded into the layer: its structure follows
    other = skelops.nn.GraphConv(4, 6, graphs.mpgcn_adjacency("coco_ball-2", "spatial")[:3])
    sparse.load_state_dict({**other.state_dict(), "edge_importance": sparse.edge_importance})
    torch.testing.assert_close(
        sparse(x), skelops.graph_conv(x, sparse.weight, sparse.effective_adjacency(), sparse.bias)
    )
    with pytest.raises(ValueError, match="sparse GraphConv uses its stored graph"):
        sparse(x, adjacency)
