"""STC-Net's layers (skelops.nn.MultiDilationGraphConv, skelops.nn.SpatioTemporalCurve) and the
references of their operators against independent oracles: separate graph convolutions, and a
per-curve loop written from the definition."""

from __future__ import annotations

import pytest
import torch

import skelops
from skelops import graphs, reference


def curve_oracle(x, length, key, candidates, scale):
    """y of spatio_temporal_curve by walking every curve one step at a time."""
    n, c, t, v = x.shape
    y = torch.zeros_like(x)
    for b in range(n):
        for t0 in range(t):
            for v0 in range(v):
                joint, weight, total = v0, 1.0, x[b, :, t0, v0].clone()
                for i in range(1, min(length, t - 1 - t0) + 1):
                    frame = t0 + i - 1
                    scores = torch.full((v,), float("-inf"), dtype=x.dtype)
                    for w in range(v):
                        if candidates is None or candidates[joint, w]:
                            scores[w] = (
                                scale * (key[b, :, frame, joint] * key[b, :, frame + 1, w]).sum()
                            )
                    best = int(scores.argmax())
                    weight = weight * float(torch.softmax(scores, 0)[best])
                    joint = best
                    total += weight * x[b, :, t0 + i, joint]
                y[b, :, t0, v0] = total
    return y


@pytest.mark.parametrize("length", [1, 3, 9])
@pytest.mark.parametrize("masked", [False, True])
def test_curve_reference_matches_per_curve_walk(length, masked):
    g = torch.Generator().manual_seed(length + 10 * masked)
    x = torch.randn(2, 3, 5, 6, generator=g, dtype=torch.float64)
    key = torch.randn(2, 4, 5, 6, generator=g, dtype=torch.float64)
    candidates = None
    if masked:
        candidates = torch.rand(6, 6, generator=g) < 0.4
        candidates[torch.arange(6), (torch.arange(6) + 1) % 6] = True  # no empty row
    expected = curve_oracle(x, length, key, candidates, 0.7)
    actual = reference.spatio_temporal_curve(x, length, key, candidates, 0.7)
    torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)


def test_curve_reference_defaults_and_gradients():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 4, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    # key defaults to x, scale to 1 / sqrt(D)
    expected = curve_oracle(x.detach(), 2, x.detach(), None, 4**-0.5)
    torch.testing.assert_close(reference.spatio_temporal_curve(x, 2), expected)
    assert torch.autograd.gradcheck(lambda a: reference.spatio_temporal_curve(a, 2), (x,))


def test_multi_dilation_reference_equals_separate_graph_convs():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 4, 7, generator=g, dtype=torch.float64)
    weight = torch.randn(2, 5, 3, generator=g, dtype=torch.float64)
    adjacency = torch.randn(3, 2, 7, 7, generator=g, dtype=torch.float64)
    branches = [reference.graph_conv(x, weight, a) for a in adjacency]
    bias = torch.randn(15, generator=g, dtype=torch.float64)
    torch.testing.assert_close(
        reference.multi_dilation_graph_conv(x, weight, adjacency, bias[:5]),
        sum(branches) + bias[:5].view(1, 5, 1, 1),
    )
    torch.testing.assert_close(
        reference.multi_dilation_graph_conv(x, weight, adjacency, bias, concat=True),
        torch.cat(branches, 1) + bias.view(1, 15, 1, 1),
    )


@pytest.mark.parametrize("reduction", ["sum", "concat"])
def test_multi_dilation_layer(reduction):
    torch.manual_seed(0)
    adjacency = graphs.dilated_adjacency("ntu_stgcn", (1, 2), "spatial")
    layer = skelops.nn.MultiDilationGraphConv(3, 8, adjacency, reduction=reduction).double()
    x = torch.randn(2, 3, 6, 25, dtype=torch.float64, requires_grad=True)
    y = layer(x)
    expected = reference.multi_dilation_graph_conv(
        x, layer.weight, layer.adjacency, layer.bias, reduction == "concat"
    )
    assert y.shape == (2, 8 * (2 if reduction == "concat" else 1), 6, 25)
    torch.testing.assert_close(y, expected)
    y.square().sum().backward()
    assert layer.weight.grad is not None and layer.bias.grad is not None and x.grad is not None
    assert layer.adjacency.grad is None  # a buffer: the graph is fixed
    assert set(layer.state_dict()) == {"adjacency", "weight", "bias"}
    assert "dilations=2" in repr(layer)


def test_curve_layer():
    torch.manual_seed(0)
    candidates = graphs.hop_distance("ntu_stgcn") <= 1
    layer = skelops.nn.SpatioTemporalCurve(8, 3, key_channels=2, candidates=candidates).double()
    x = torch.randn(2, 8, 5, 25, dtype=torch.float64, requires_grad=True)
    y = layer(x)
    expected = reference.spatio_temporal_curve(x, 3, layer.key(x), candidates)
    torch.testing.assert_close(y, expected)
    y.square().sum().backward()
    assert layer.key.weight.grad is not None and layer.key.weight.grad.abs().sum() > 0
    assert torch.equal(layer.candidates, candidates)
    plain = skelops.nn.SpatioTemporalCurve(8, 2)  # scores on x itself, all joints
    assert plain.key is None and plain.candidates is None


def test_layers_reject_bad_arguments():
    adjacency = graphs.dilated_adjacency("ntu_stgcn", (1, 2))
    with pytest.raises(ValueError, match=r"\[D, K, V, V\]"):
        skelops.nn.MultiDilationGraphConv(3, 4, adjacency[0])
    with pytest.raises(ValueError, match="reduction"):
        skelops.nn.MultiDilationGraphConv(3, 4, adjacency, reduction="max")
    with pytest.raises(ValueError, match="out_channels"):
        skelops.nn.MultiDilationGraphConv(3, 0, adjacency)
    with pytest.raises(ValueError, match="length must be >= 1"):
        skelops.nn.SpatioTemporalCurve(4, 0)
    with pytest.raises(TypeError, match="length must be an int"):
        skelops.nn.SpatioTemporalCurve(4, 2.0)
    with pytest.raises(TypeError, match="candidates"):
        skelops.nn.SpatioTemporalCurve(4, 2, candidates=torch.ones(25, 25))
    with pytest.raises(ValueError, match="T >= 2"):
        skelops.spatio_temporal_curve(torch.randn(1, 4, 1, 25), 2, backend="reference")
