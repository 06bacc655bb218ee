"""Triton partition-attention launchers vs the float64 PyTorch reference.

Without a GPU the kernels run under Triton's interpreter (``TRITON_INTERPRET=1``, set below
before triton is imported) on CPU tensors, one program after another, so every shape here is
tiny. q, k, v are ``[B, H, T, V, D]``; a partition is (frame window x joint group), ``N = W * J``
tokens; the reference draws the same dropout mask, so dropout runs are compared exactly too.
"""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

pytest.importorskip("triton")

import triton  # noqa: E402
import triton.language as tl  # noqa: E402
from helpers import assert_close_scaled, skip_unless_triton  # noqa: E402

from skelops.graphs import frame_windows, joint_groups, skate_type_partitions  # noqa: E402
from skelops.ops.partition_attention import empty_like_layout  # noqa: E402
from skelops.reference.partition_attention import (  # noqa: E402
    dropout_keep,
    dropout_seed_key,
    dropout_threshold,
    partition_attention,
)
from skelops.triton import _common  # noqa: E402
from skelops.triton import partition_attention as pa  # noqa: E402

pytestmark = pytest.mark.triton

DEVICE = "cpu" if _common.INTERPRETED else "cuda"
EXACT = torch.float64 if _common.INTERPRETED else torch.float32
ALL_GRADS = [True, True, True, True]


@pytest.fixture(autouse=True)
def _needs_triton():
    skip_unless_triton(DEVICE)


def make_qkv(b, h, t, v, d, *, dtype=torch.float64, layout="contiguous", seed=0):
    """q, k, v and grad_out rounded to ``dtype``, in a memory layout: ``"contiguous"``;
    ``"heads"``: q, k, v are the three slices of one ``[B, T, V, 3, H, D]`` projection viewed as
    ``[B, H, T, V, D]`` (heads sliced out of a channels-last tensor), grad_out a transposed
    view; ``"head_dim_outer"``: all four permuted views with D the outermost dimension."""
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64).to(DEVICE, dtype)

    if layout == "heads":
        q, k, v_ = randn(b, t, v, 3, h, d).permute(3, 0, 4, 1, 2, 5).unbind(0)
        grad_out = randn(b, h, v, t, d).transpose(2, 3)
    elif layout == "head_dim_outer":
        q, k, v_, grad_out = (randn(d, b, h, t, v).permute(1, 2, 3, 4, 0) for _ in range(4))
    else:
        q, k, v_, grad_out = (randn(b, h, t, v, d) for _ in range(4))
    if d > 1:
        assert q.is_contiguous() == grad_out.is_contiguous() == (layout == "contiguous")
    return q, k, v_, grad_out


def make_bias(kind, window, group, heads, dtype, seed=1):
    gen = torch.Generator().manual_seed(seed)
    shape = {"none": None, "frame": (2 * window - 1, heads),
             "frame_joint": (2 * window - 1, group, group, heads)}[kind]  # fmt: skip
    if shape is None:
        return None
    return torch.randn(*shape, generator=gen, dtype=torch.float64).to(DEVICE, dtype)


def reference_run(q, k, v, grad_out, joint_partition, frame_partition, bias, scale, p, seed):
    """out, lse and the four gradients of the reference, in float64 on the CPU."""
    leaves = [x.detach().double().cpu().requires_grad_() for x in (q, k, v)]
    bias_leaf = None if bias is None else bias.detach().double().cpu().requires_grad_()
    out, lse = partition_attention(
        *leaves, joint_partition.cpu(), frame_partition.cpu(), bias_leaf, scale, p, seed,
        return_lse=True,
    )  # fmt: skip
    out.backward(grad_out.double().cpu())
    grads = [x.grad for x in leaves] + [None if bias_leaf is None else bias_leaf.grad]
    return out.detach(), lse.detach(), grads


def stride_order(t):
    return sorted(range(t.dim()), key=lambda dim: -t.stride(dim))


def is_dense(t):
    """No gaps, no overlaps: in stride order, every stride is the product of the sizes after."""
    step = 1
    for dim in reversed(stride_order(t)):
        if t.size(dim) > 1 and t.stride(dim) != step:
            return False
        step *= t.size(dim)
    return True


def check_against_reference(
    q, k, v, grad_out, joint_partition, frame_partition, bias, scale, p, seed, dtype
):
    out, lse = pa.partition_attention_forward(
        q, k, v, joint_partition, frame_partition, bias, scale, p, seed
    )
    grads = pa.partition_attention_backward(
        grad_out, q, k, v, out, lse, joint_partition, frame_partition, bias, scale, p, seed,
        ALL_GRADS,
    )  # fmt: skip
    out_ref, lse_ref, grads_ref = reference_run(
        q, k, v, grad_out, joint_partition, frame_partition, bias, scale, p, seed
    )
    assert out.dtype == dtype and lse.dtype == _common.acc_dtypes(dtype)[0]
    assert lse.is_contiguous() and is_dense(out)
    assert stride_order(out) == stride_order(q)
    assert_close_scaled(out, out_ref, dtype)
    assert_close_scaled(lse, lse_ref, dtype)
    for grad, expected, like in zip(grads, grads_ref, (q, k, v, bias), strict=True):
        if like is None:
            assert grad.numel() == 0
            continue
        assert grad.dtype == dtype
        if like is not bias:
            assert stride_order(grad) == stride_order(like)
        assert_close_scaled(grad, expected, dtype)


@pytest.mark.parametrize(
    "bias_kind, dropout_p, skate_type, seed",
    [
        ("none", 0.0, 1, 0),
        ("none", 0.4, 2, 123),
        ("frame", 0.0, 3, 0),
        ("frame", 0.4, 4, -5),
        ("frame_joint", 0.0, 2, 0),
        ("frame_joint", 0.4, 3, 2**40 + 3),
    ],
)
def test_matches_reference_heads_layout(bias_kind, dropout_p, skate_type, seed):
    b, h, t, v, d, window, group = 1, 2, 4, 6, 3, 2, 3
    q, k, v_, grad_out = make_qkv(b, h, t, v, d, dtype=EXACT, layout="heads", seed=seed % 97)
    joint_partition, frame_partition = skate_type_partitions(
        skate_type, t, v, (window, group), device=DEVICE
    )
    bias = make_bias(bias_kind, window, group, h, EXACT)
    check_against_reference(
        q, k, v_, grad_out, joint_partition, frame_partition, bias, 0.7, dropout_p, seed, EXACT
    )


@pytest.mark.parametrize("bias_kind, dropout_p", [("none", 0.0), ("frame_joint", 0.4)])
def test_matches_reference_float32(bias_kind, dropout_p):
    b, h, t, v, d, window, group = 2, 1, 4, 4, 4, 2, 2
    q, k, v_, grad_out = make_qkv(b, h, t, v, d, dtype=torch.float32, seed=7)
    joint_partition, frame_partition = skate_type_partitions(1, t, v, (window, group), DEVICE)
    bias = make_bias(bias_kind, window, group, h, torch.float32)
    check_against_reference(
        q, k, v_, grad_out, joint_partition, frame_partition, bias, 0.5, dropout_p, 9,
        torch.float32,
    )  # fmt: skip


@pytest.mark.parametrize(
    "t, v, d, window, group, bias_kind",
    [(3, 5, 5, 3, 5, "frame_joint"), (4, 3, 1, 2, 3, "frame"), (5, 13, 2, 5, 13, "frame")],
    ids=["W3-J5-D5", "D1", "N65-five-query-blocks"],
)
def test_odd_sizes(t, v, d, window, group, bias_kind):
    # int32 global windows x distant groups, D the outermost dimension in memory; N = 65 pads
    # to 128 keys, walked in query blocks of 16.
    q, k, v_, grad_out = make_qkv(1, 1, t, v, d, dtype=EXACT, layout="head_dim_outer", seed=3)
    joint_partition = joint_groups(v, group, "distant", DEVICE).int()
    frame_partition = frame_windows(t, window, "global", DEVICE).int()
    bias = make_bias(bias_kind, window, group, 1, EXACT)
    check_against_reference(
        q, k, v_, grad_out, joint_partition, frame_partition, bias, 1.3, 0.3, 11, EXACT
    )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_half_precision(dtype):
    b, h, t, v, d, window, group = 1, 2, 4, 4, 6, 2, 2
    q, k, v_, grad_out = make_qkv(b, h, t, v, d, dtype=dtype, layout="heads", seed=5)
    joint_partition, frame_partition = skate_type_partitions(4, t, v, (window, group), DEVICE)
    bias = make_bias("frame", window, group, h, dtype)
    check_against_reference(
        q, k, v_, grad_out, joint_partition, frame_partition, bias, 0.4, 0.25, 8, dtype
    )


@triton.jit
def _keep_mask_kernel(rows_ptr, keep_ptr, N, seed_key, threshold, BLOCK_N: tl.constexpr):
    """keep[r, key] of the kernels' dropout for the given int64 row numbers."""
    r = tl.arange(0, 1)
    rows = tl.load(rows_ptr + tl.program_id(0) + r)
    keys = tl.arange(0, BLOCK_N)
    keep = pa._keep_mask(rows, keys, N, seed_key, threshold)
    tl.store(keep_ptr + (tl.program_id(0) + r)[:, None] * N + keys[None, :], keep.to(tl.int8),
             mask=keys[None, :] < N)  # fmt: skip


def test_keep_mask_is_the_reference_hash_across_32_bit_words():
    """Rows whose elements ``row * N + key`` straddle a multiple of 2**32 (the low word's
    carry), or lie far above it; seeds above 2**32 and negative."""
    n = 10
    boundary = [(m << 32) // n for m in (1, 2, 5, 123456)]
    rows = torch.tensor(
        [0, 1, 2**20] + [x + delta for x in boundary for delta in (-1, 0, 1)],
        dtype=torch.int64, device=DEVICE,
    )  # fmt: skip
    for seed, p in ((0, 0.5), (2**33 + 17, 0.1), (-1, 0.9)):
        keep = torch.empty(rows.numel(), n, dtype=torch.int8, device=DEVICE)
        _keep_mask_kernel[(rows.numel(),)](
            rows, keep, n, dropout_seed_key(seed), dropout_threshold(p), BLOCK_N=16
        )
        element = rows.cpu()[:, None] * n + torch.arange(n)
        assert torch.equal(keep.cpu().bool(), dropout_keep(seed, element, p))


def test_output_mask():
    b, h, t, v, d, window, group = 1, 1, 4, 4, 3, 2, 2
    q, k, v_, grad_out = make_qkv(b, h, t, v, d, dtype=EXACT, seed=2)
    joint_partition, frame_partition = skate_type_partitions(2, t, v, (window, group), DEVICE)
    bias = make_bias("frame_joint", window, group, h, EXACT)
    args = (joint_partition, frame_partition, bias, 0.6, 0.3, 4)
    out, lse = pa.partition_attention_forward(q, k, v_, *args)
    full = pa.partition_attention_backward(grad_out, q, k, v_, out, lse, *args, ALL_GRADS)
    masks = ([True, False, False, False], [False, True, False, True],
             [False, False, True, False], [False] * 4)  # fmt: skip
    for mask in masks:
        part = pa.partition_attention_backward(grad_out, q, k, v_, out, lse, *args, mask)
        for index, (wanted, got, expected) in enumerate(zip(mask, part, full, strict=True)):
            if wanted:
                # dq, dk, dv have one writer each: bitwise equal. dbias sums with atomics,
                # in no fixed order on a GPU.
                exact = index < 3 or _common.INTERPRETED
                torch.testing.assert_close(
                    got, expected, **({"rtol": 0, "atol": 0} if exact else {})
                )
            else:
                assert got.numel() == 0 and got.dtype == q.dtype
    no_bias = pa.partition_attention_backward(
        grad_out, q, k, v_, out, lse, joint_partition, frame_partition, None, 0.6, 0.3, 4,
        ALL_GRADS,
    )  # fmt: skip
    assert no_bias[3].numel() == 0


def test_out_of_range_partition_is_clamped_not_read_out_of_bounds():
    q, k, v_, grad_out = make_qkv(1, 1, 2, 4, 2, dtype=EXACT, seed=6)
    joint_partition = torch.tensor([[0, 1], [2, 1000]], device=DEVICE)
    frame_partition = torch.tensor([[-7, 1]], device=DEVICE)
    args = (joint_partition, frame_partition, None, 1.0, 0.0, 0)
    out, lse = pa.partition_attention_forward(q, k, v_, *args)
    grads = pa.partition_attention_backward(grad_out, q, k, v_, out, lse, *args, ALL_GRADS)
    # Frame -7 clamps to frame 0 and joint 1000 to joint 3, so every token is still written.
    assert out.isfinite().all() and lse.isfinite().all()
    assert all(g.isfinite().all() for g in grads[:3])


def test_empty_like_layout_orders_dims_by_stride_ties_in_dim_order():
    """The layout rule the Triton launchers (and every backend) allocate outputs by."""
    heads = torch.empty(2, 5, 3, 3, 4, 6).permute(3, 0, 4, 1, 2, 5)[1]  # [B, H, T, V, D]
    out = empty_like_layout(heads)
    assert out.shape == heads.shape and is_dense(out)
    assert out.stride() == (5 * 3 * 4 * 6, 6, 3 * 4 * 6, 4 * 6, 1)
    # size-1 dimensions tie with their neighbours' strides: dimension order decides.
    ones = torch.empty(1, 1, 2, 1, 3)
    assert empty_like_layout(ones).stride() == ones.stride()


def test_rejects_what_it_cannot_run():
    q, k, v_, _ = make_qkv(1, 1, 4, 4, 2, dtype=torch.float32)
    jp, fp = skate_type_partitions(1, 4, 4, (2, 2), DEVICE)
    with pytest.raises(ValueError, match=r"N = W \* J <= 1024"):
        big = torch.zeros(1, 1, 33, 32, 2, device=DEVICE)
        pa.partition_attention_forward(
            big, big, big, joint_groups(32, 32, device=DEVICE),
            frame_windows(33, 33, device=DEVICE), None, 1.0, 0.0, 0,
        )  # fmt: skip
    with pytest.raises(ValueError, match="D <= 64"):
        wide = torch.zeros(1, 1, 4, 4, 65, device=DEVICE)
        pa.partition_attention_forward(wide, wide, wide, jp, fp, None, 1.0, 0.0, 0)
    with pytest.raises(TypeError, match="k must have q's dtype"):
        pa.partition_attention_forward(q, k.double(), v_, jp, fp, None, 1.0, 0.0, 0)
    with pytest.raises(ValueError, match=r"bias must be \[2W - 1, H\]"):
        pa.partition_attention_forward(q, k, v_, jp, fp, torch.zeros(4, 1), 1.0, 0.0, 0)
    with pytest.raises(ValueError, match="frame_partition must be 2-D with T = 4"):
        pa.partition_attention_forward(q, k, v_, jp, fp[:1], None, 1.0, 0.0, 0)
    with pytest.raises(ValueError, match=r"dropout_p must be in \[0, 1\)"):
        pa.partition_attention_forward(q, k, v_, jp, fp, None, 1.0, 1.0, 0)
    out, lse = pa.partition_attention_forward(q, k, v_, jp, fp, None, 1.0, 0.0, 0)
    with pytest.raises(ValueError, match="lse must be"):
        pa.partition_attention_backward(
            out, q, k, v_, out, lse.double(), jp, fp, None, 1.0, 0.0, 0, ALL_GRADS
        )
    with pytest.raises(ValueError, match="output_mask must have 4 entries"):
        pa.partition_attention_backward(out, q, k, v_, out, lse, jp, fp, None, 1.0, 0.0, 0, [True])
