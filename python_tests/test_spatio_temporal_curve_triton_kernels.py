"""Triton spatio-temporal-curve launchers vs a float64 PyTorch reference.

Without a GPU the kernels run under Triton's interpreter (``TRITON_INTERPRET=1``, set below
before triton is imported) on CPU tensors, so every shape here is tiny. x is ``[N, C, T, V]``,
key ``[N, D, T, V]``; ``candidates[v, w]`` lets joint w of frame t + 1 follow joint v of frame t.
"""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

pytest.importorskip("triton")

from skelops import reference  # noqa: E402
from skelops.triton import _common  # noqa: E402
from skelops.triton import spatio_temporal_curve as stc  # noqa: E402

pytestmark = pytest.mark.triton

DEVICE = "cpu" if _common.INTERPRETED else "cuda"
DTYPES = [torch.float32, torch.bfloat16, torch.float16] + (
    [torch.float64] if _common.INTERPRETED else []
)
TOLERANCE = {torch.float64: 1e-10, torch.float32: 2e-5, torch.float16: 4e-3, torch.bfloat16: 3e-2}


def make_inputs(n, c, t, v, d, *, dtype=torch.float32, strided=False, seed=0):
    """x, key, grad_out rounded to ``dtype`` (the reference sees exactly these values);
    ``strided`` makes all three permuted/sliced views."""
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64).to(DEVICE, dtype)

    if strided:
        x = randn(n, t, v, 2 * c).permute(0, 3, 1, 2)[:, ::2]
        key = randn(n, v, d, t).permute(0, 2, 3, 1)
        grad_out = randn(n, c, v, t).transpose(2, 3)
        assert not (x.is_contiguous() or key.is_contiguous() or grad_out.is_contiguous())
    else:
        x, key, grad_out = randn(n, c, t, v), randn(n, d, t, v), randn(n, c, t, v)
    return x, key, grad_out


def one_candidate_rows(v):
    """Joint u may step to u and u + 1, except rows 0 and 2 with one candidate each."""
    mask = torch.eye(v, dtype=torch.bool) | torch.eye(v, dtype=torch.bool).roll(1, dims=1)
    mask[0] = False
    mask[0, 0] = True
    mask[2] = False
    mask[2, v - 1] = True
    return mask.to(DEVICE)


def check_against_reference(x, key, grad_out, candidates, length, scale, dtype):
    y, next_joint, log_prob, log_normalizer = stc.spatio_temporal_curve_forward(
        x, key, candidates, length, scale
    )
    grad_x, grad_key = stc.spatio_temporal_curve_backward(
        grad_out, x, key, candidates, next_joint, log_prob, log_normalizer, length, scale,
        [True, True],
    )  # fmt: skip
    xr = x.detach().double().cpu().requires_grad_()
    kr = key.detach().double().cpu().requires_grad_()
    cand = None if candidates is None else candidates.cpu()
    y_ref = reference.spatio_temporal_curve(xr, length, kr, cand, scale)
    y_ref.backward(grad_out.double().cpu())
    scores = torch.einsum("ndtv,ndtw->ntvw", kr[:, :, :-1], kr[:, :, 1:]).detach() * scale
    if cand is not None:
        scores = scores.masked_fill(~cand, float("-inf"))
    tol = TOLERANCE[dtype]

    def close(actual, expected):
        err = (actual.double().cpu() - expected).abs().max().item()
        assert err <= tol * max(expected.abs().max().item(), 1e-12), err

    assert y.dtype == dtype and y.is_contiguous() and grad_x.dtype == dtype
    assert next_joint.dtype == torch.int32
    assert torch.equal(next_joint.long().cpu(), scores.argmax(-1))
    close(log_normalizer, scores.logsumexp(-1))
    close(log_prob, scores.max(-1).values - scores.logsumexp(-1))
    close(y, y_ref.detach())
    close(grad_x, xr.grad)
    close(grad_key, kr.grad)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_forward_backward_strided_with_candidates(dtype):
    x, key, grad_out = make_inputs(2, 3, 5, 6, 4, dtype=dtype, strided=True, seed=1)
    check_against_reference(x, key, grad_out, one_candidate_rows(6), 3, 0.6, dtype)


@pytest.mark.parametrize(
    "n, c, t, v, d, length",
    [(2, 2, 2, 1, 3, 1), (1, 3, 4, 5, 2, 9), (1, 17, 3, 17, 17, 2)],
    ids=["T2-V1-L1", "L>T-1", "C17-V17-D17"],
)
def test_edge_shapes(n, c, t, v, d, length):
    dtype = torch.float64 if _common.INTERPRETED else torch.float32
    x, key, grad_out = make_inputs(n, c, t, v, d, dtype=dtype, seed=2)
    check_against_reference(x, key, grad_out, None, length, 0.8, dtype)


def test_output_mask():
    x, key, grad_out = make_inputs(1, 2, 3, 4, 2, seed=3)
    _, *stats = stc.spatio_temporal_curve_forward(x, key, None, 2, 0.5)
    full = stc.spatio_temporal_curve_backward(grad_out, x, key, None, *stats, 2, 0.5, [True, True])
    for mask in ([True, False], [False, True]):
        part = stc.spatio_temporal_curve_backward(grad_out, x, key, None, *stats, 2, 0.5, mask)
        for wanted, got, expected in zip(mask, part, full, strict=True):
            if wanted:
                torch.testing.assert_close(got, expected)
            else:
                assert got.numel() == 0
    none = stc.spatio_temporal_curve_backward(grad_out, x, key, None, *stats, 2, 0.5, [False] * 2)
    assert none[0].numel() == none[1].numel() == 0


def test_out_of_range_next_joint_is_clamped_not_read_out_of_bounds():
    x, key, grad_out = make_inputs(1, 2, 3, 4, 2, seed=4)
    _, next_joint, log_prob, log_normalizer = stc.spatio_temporal_curve_forward(
        x, key, None, 2, 0.5
    )
    bad = next_joint + 100
    grad_x, grad_key = stc.spatio_temporal_curve_backward(
        grad_out, x, key, None, bad, log_prob, log_normalizer, 2, 0.5, [True, True]
    )
    assert grad_x.isfinite().all() and grad_key.isfinite().all()


def test_rejects_what_it_cannot_run():
    x, key, _ = make_inputs(1, 2, 3, 4, 2)
    with pytest.raises(ValueError, match="V <= 128"):
        big = torch.zeros(1, 1, 2, 129, device=DEVICE)
        stc.spatio_temporal_curve_forward(big, big, None, 1, 1.0)
    with pytest.raises(TypeError, match="key must have the dtype of x"):
        stc.spatio_temporal_curve_forward(x, key.half(), None, 1, 1.0)
    with pytest.raises(ValueError, match="candidates must be"):
        stc.spatio_temporal_curve_forward(x, key, torch.ones(3, 3, dtype=torch.bool), 1, 1.0)
    with pytest.raises(ValueError, match="T >= 2"):
        stc.spatio_temporal_curve_forward(x[:, :, :1], key[:, :, :1], None, 1, 1.0)
