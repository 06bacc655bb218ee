"""ST-GCN (skelops.models.stgcn): parameter counts, shapes, training, compile, backends, and the
conversion of official (yysijie/st-gcn) state dicts.

The literals below were read off the official model (``net/st_gcn.py`` ``Model`` built with the
configs of ``config/st_gcn/*/train.yaml``); the official code is not needed to run this file.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import adam_losses

import skelops.models.stgcn as stgcn
from skelops import graphs, models

# Official parameter counts (sum of numel over Model(...).parameters()).
OFFICIAL_COUNTS = {
    "ntu60": 3_098_832,
    "ntu120": 3_114_252,
    "kinetics": 3_177_140,
    "ntu60_two_stream": 6_197_664,  # net/st_gcn_twostream.py: two NTU-60 models
}
# Official per-module counts: st_gcn_networks.{i} (gcn.conv, tcn, residual), then
# edge_importance.{i} (one [K, V, V] mask per block), data_bn and fcn.
OFFICIAL_BLOCKS = (37952, 49664, 49664, 49664, 181632, 197632, 197632, 723712, 788480, 788480)
OFFICIAL_GROUPS = {
    "ntu60": {"data_bn": 150, "edge_importance": 1875, "fcn": 15420},
    "ntu120": {"data_bn": 150, "edge_importance": 1875, "fcn": 30840},
    "kinetics": {"data_bn": 108, "edge_importance": 972, "fcn": 102800},
}
# Non-zeros per subset of the official Graph(layout, "spatial").A.
OFFICIAL_NONZEROS = {"ntu_stgcn": [25, 40, 8], "openpose18": [18, 25, 9]}
# (C_in, C_out, stride) of the official blocks; a residual conv where they change.
BLOCK_SHAPES = [
    (3, 64, 1),
    (64, 64, 1),
    (64, 64, 1),
    (64, 64, 1),
    (64, 128, 2),
    (128, 128, 1),
    (128, 128, 1),
    (128, 256, 2),
    (256, 256, 1),
    (256, 256, 1),
]


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _ntu_input(n: int = 2, t: int = 8, m: int = 2, v: int = 25) -> torch.Tensor:
    return torch.randn(n, 3, t, v, m, generator=torch.Generator().manual_seed(1))


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ntu60() -> stgcn.STGCN:
    torch.manual_seed(0)
    return models.create("stgcn", preset="ntu60")


def test_registered():
    assert "stgcn" in models.list_models()
    assert set(models.list_presets("stgcn")) == set(OFFICIAL_COUNTS)


@pytest.mark.parametrize("preset", sorted(OFFICIAL_COUNTS))
def test_parameter_count(preset):
    model = models.create("stgcn", preset=preset)
    assert models.count_parameters(model) == OFFICIAL_COUNTS[preset]
    assert models.get_preset("stgcn", preset).parameter_count == OFFICIAL_COUNTS[preset]


@pytest.mark.parametrize("preset", sorted(OFFICIAL_GROUPS))
def test_parameter_count_per_module(preset):
    model = models.create("stgcn", preset=preset)
    groups = OFFICIAL_GROUPS[preset]
    assert _count(model.data_bn) == groups["data_bn"]
    assert _count(model.fcn) == groups["fcn"]
    # Here each block's GraphConv holds its own edge-importance mask.
    assert [_count(block) for block in model.blocks] == [
        official + groups["edge_importance"] for official in OFFICIAL_BLOCKS
    ]


@pytest.mark.parametrize("layout", sorted(OFFICIAL_NONZEROS))
def test_graph_is_official_spatial_partition(layout):
    model = stgcn.STGCN(layout=layout)
    expected = graphs.build_adjacency(layout, "spatial", legacy_stgcn=True)
    for block in model.blocks:
        assert torch.equal(block.gcn.adjacency, expected)
    assert (expected != 0).sum(dim=(1, 2)).tolist() == OFFICIAL_NONZEROS[layout]


def test_architecture(ntu60):
    residuals = [block.residual for block in ntu60.blocks]
    assert residuals[0] is None
    for index, (c_in, c_out, stride) in enumerate(BLOCK_SHAPES[1:], start=1):
        if c_in == c_out and stride == 1:
            assert isinstance(residuals[index], torch.nn.Identity)
        else:
            assert residuals[index][0].stride == (stride, 1)
    assert [block.tcn[4].p for block in ntu60.blocks] == [0.0] + [0.5] * 9
    assert [block.tcn[2].kernel_size for block in ntu60.blocks] == [(9, 1)] * 10


def test_forward_shapes(ntu60):
    ntu60.eval()
    with torch.no_grad():
        assert ntu60(_ntu_input()).shape == (2, 60)
        assert ntu60(_ntu_input(n=1, t=5, m=1)).shape == (1, 60)
        kinetics = models.create("stgcn", preset="kinetics").eval()
        assert kinetics(_ntu_input(n=1, v=18)).shape == (1, 400)


def test_two_stream_fusion_rules():
    torch.manual_seed(0)
    model = models.create("stgcn", preset="ntu60_two_stream").eval()
    assert isinstance(model, stgcn.TwoStreamSTGCN)
    x = _ntu_input()
    assert model.motion == "official"  # the preset is the official two-stream model
    with torch.no_grad():
        joint = model.joint_stream(x)
        official_motion = model.motion_stream(stgcn.official_motion(x))
        torch.testing.assert_close(model(x), joint + official_motion)
        model.fusion = "softmax"
        torch.testing.assert_close(model(x), joint.softmax(1) + official_motion.softmax(1))
        model.motion = "difference"
        motion = model.motion_stream(graphs.motion_stream(x))
        torch.testing.assert_close(model(x), joint.softmax(1) + motion.softmax(1))


def test_official_motion_formula():
    x = torch.tensor([0.0, 1.0, 4.0, 9.0, 16.0]).view(1, 1, 5, 1, 1)
    # x[t] - (x[t-1] + x[t+1]) / 2, zero on the first and last frame
    assert stgcn.official_motion(x).flatten().tolist() == [0.0, -1.0, -1.0, -1.0, 0.0]


def test_training_steps_reduce_loss():
    torch.manual_seed(0)
    model = models.create("stgcn", preset="ntu60").train()
    x = _ntu_input(n=4, t=8)
    target = torch.tensor([0, 1, 2, 3])
    losses = adam_losses(model, x, target, lr=1e-3)
    assert losses[-1] < losses[0], losses


def test_reference_backend_matches_default(ntu60):
    reference = models.create("stgcn", preset="ntu60", backend="reference")
    reference.load_state_dict(ntu60.state_dict())
    ntu60.eval()
    reference.eval()
    assert all(block.gcn.backend == "reference" for block in reference.blocks)
    x = _ntu_input()
    with torch.no_grad():
        expected = reference(x)
        torch.testing.assert_close(ntu60(x), expected, rtol=1e-5, atol=1e-5 * expected.abs().max())


def test_torch_compile_fullgraph(ntu60):
    ntu60.eval()
    x = _ntu_input(n=1, t=4)
    compiled = torch.compile(ntu60, fullgraph=True)
    with torch.no_grad():
        expected = ntu60(x)
        torch.testing.assert_close(compiled(x), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "shape",
    [(2, 3, 8, 18, 2), (2, 2, 8, 25, 2), (2, 3, 8, 25), (0, 3, 8, 25, 2)],
    ids=["joints", "channels", "rank", "empty"],
)
def test_bad_input_raises(ntu60, shape):
    with pytest.raises(ValueError, match=r"x must be a non-empty \[N, 3, T, 25, M\]"):
        ntu60(torch.randn(shape))


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="x must be a non-empty"):
        models.create("stgcn", preset="ntu60_two_stream")(torch.randn(1, 3, 4, 18, 2))
    with pytest.raises(ValueError, match="streams must be"):
        models.create("stgcn", streams=("motion",))
    with pytest.raises(ValueError, match="motion must be"):
        models.create("stgcn", preset="ntu60_two_stream", motion="bone")
    with pytest.raises(ValueError, match="fusion must be"):
        models.create("stgcn", preset="ntu60_two_stream", fusion="max")


# --- custom block structures -----------------------------------------------------------------


def _expected_count(blocks, num_classes: int, channels: int = 3, joints: int = 25) -> int:
    """Parameters of an ST-GCN with ``blocks`` (K = 3 subsets, temporal kernel 9), by formula."""
    total = 2 * channels * joints  # data_bn
    c_in = channels
    for index, (c_out, stride) in enumerate(blocks):
        total += 3 * c_out * c_in + 3 * c_out + 3 * joints * joints  # gcn, bias, edge importance
        total += 2 * c_out + 9 * c_out * c_out + c_out + 2 * c_out  # tcn: BN, conv, BN
        if index > 0 and (c_in != c_out or stride != 1):
            total += c_in * c_out + c_out + 2 * c_out  # residual conv + BN
        c_in = c_out
    return total + c_in * num_classes + num_classes  # fcn


SMALL_BLOCKS = [(16, 1), (32, 2), (32, 1)]


def test_default_blocks_are_official(ntu60):
    assert ntu60.block_specs == stgcn.BLOCK_SPECS
    assert [(c_out, s) for _, c_out, s in BLOCK_SHAPES] == list(stgcn.BLOCK_SPECS)
    # the formula reproduces the official count, so it can vouch for other block lists
    assert _expected_count(stgcn.BLOCK_SPECS, 60) == OFFICIAL_COUNTS["ntu60"]


@pytest.mark.parametrize(
    "blocks",
    [SMALL_BLOCKS, [[8, 1]], [(16, 2), (16, 1), (24, 1), (24, 3)]],
    ids=["small", "one_block", "lists_and_strides"],
)
def test_custom_blocks_shapes_and_count(blocks):
    torch.manual_seed(0)
    model = models.create("stgcn", preset="ntu60", num_classes=5, blocks=blocks).eval()
    assert model.block_specs == tuple(tuple(spec) for spec in blocks)
    assert models.count_parameters(model) == _expected_count(blocks, 5)
    assert [block.tcn[2].out_channels for block in model.blocks] == [c for c, _ in blocks]
    assert [block.tcn[2].stride for block in model.blocks] == [(s, 1) for _, s in blocks]
    assert model.fcn.in_channels == blocks[-1][0]
    assert model.blocks[0].residual is None
    x = _ntu_input(n=3, t=9)
    with torch.no_grad():
        features = x.permute(0, 4, 1, 2, 3).reshape(6, 3, 9, 25)
        for block, (c_out, stride) in zip(model.blocks, blocks, strict=True):
            t = features.shape[2]
            features = block(features)
            assert features.shape == (6, c_out, (t - 1) // stride + 1, 25)
        assert model(x).shape == (3, 5)


def test_custom_blocks_train_and_reach_both_streams():
    torch.manual_seed(0)
    model = models.create("stgcn", preset="ntu60", num_classes=4, blocks=SMALL_BLOCKS).train()
    losses = adam_losses(model, _ntu_input(n=4, t=8), torch.tensor([0, 1, 2, 3]), lr=1e-2)
    assert losses[-1] < losses[0], losses
    two_stream = models.create("stgcn", preset="ntu60_two_stream", blocks=SMALL_BLOCKS)
    for stream in (two_stream.joint_stream, two_stream.motion_stream):
        assert stream.block_specs == tuple(SMALL_BLOCKS)
    assert models.count_parameters(two_stream) == 2 * _expected_count(SMALL_BLOCKS, 60)


@pytest.mark.parametrize(
    ("blocks", "message"),
    [
        ([], r"blocks must be a non-empty sequence of \(out_channels, stride\) pairs, got \[\]"),
        ("64", "blocks must be a non-empty sequence of .* got '64'"),
        (64, "blocks must be a non-empty sequence of .* got 64"),
        (
            [(16, 1), (32,)],
            r"blocks\[1\] must be an \(out_channels, stride\) pair of positive "
            r"ints, got \(32,\)",
        ),
        ([(16, 1, 1)], r"blocks\[0\] must be .* got \(16, 1, 1\)"),
        ([(16, 0)], r"blocks\[0\] must be .* got \(16, 0\)"),
        ([(16, 1), (-32, 1)], r"blocks\[1\] must be .* got \(-32, 1\)"),
        ([(16.0, 1)], r"blocks\[0\] must be .* got \(16.0, 1\)"),
        ([(True, 1)], r"blocks\[0\] must be .* got \(True, 1\)"),
        (["ab"], r"blocks\[0\] must be .* got 'ab'"),
    ],
    ids=[
        "empty",
        "string",
        "int",
        "short",
        "long",
        "zero_stride",
        "negative",
        "float",
        "bool",
        "str",
    ],
)
def test_bad_blocks_raise(blocks, message):
    with pytest.raises(ValueError, match=message):
        models.create("stgcn", preset="ntu60", blocks=blocks)


# --- official state dict conversion -----------------------------------------------------------


def _official_state_dict(num_classes: int = 60, layout: str = "ntu_stgcn") -> dict:
    """A synthetic state dict with the official key names and shapes (net/st_gcn.py Model,
    K = 3 subsets), every entry filled with distinct values."""
    generator = torch.Generator().manual_seed(7)
    num_joints = graphs.get_layout(layout).num_joints

    def values(*shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=generator)

    def batch_norm(prefix: str, channels: int) -> dict:
        return {
            f"{prefix}.weight": values(channels),
            f"{prefix}.bias": values(channels),
            f"{prefix}.running_mean": values(channels),
            f"{prefix}.running_var": values(channels).abs() + 0.5,
            f"{prefix}.num_batches_tracked": torch.tensor(3),
        }

    state = {"A": graphs.build_adjacency(layout, "spatial", legacy_stgcn=True)}
    state.update(batch_norm("data_bn", 3 * num_joints))
    for index, (c_in, c_out, stride) in enumerate(BLOCK_SHAPES):
        prefix = f"st_gcn_networks.{index}"
        state[f"{prefix}.gcn.conv.weight"] = values(3 * c_out, c_in, 1, 1)
        state[f"{prefix}.gcn.conv.bias"] = values(3 * c_out)
        state.update(batch_norm(f"{prefix}.tcn.0", c_out))
        state[f"{prefix}.tcn.2.weight"] = values(c_out, c_out, 9, 1)
        state[f"{prefix}.tcn.2.bias"] = values(c_out)
        state.update(batch_norm(f"{prefix}.tcn.3", c_out))
        if index > 0 and (c_in != c_out or stride != 1):  # block 0 has no residual
            state[f"{prefix}.residual.0.weight"] = values(c_out, c_in, 1, 1)
            state[f"{prefix}.residual.0.bias"] = values(c_out)
            state.update(batch_norm(f"{prefix}.residual.1", c_out))
    for index in range(len(BLOCK_SHAPES)):
        state[f"edge_importance.{index}"] = values(3, num_joints, num_joints)
    state["fcn.weight"] = values(num_classes, 256, 1, 1)
    state["fcn.bias"] = values(num_classes)
    return state


def test_load_official_state_dict_reshapes():
    official = _official_state_dict()
    model = stgcn.load_official_state_dict(stgcn.STGCN(), official)
    for index, (_, c_out, _) in enumerate(BLOCK_SHAPES):
        gcn = model.blocks[index].gcn
        conv_weight = official[f"st_gcn_networks.{index}.gcn.conv.weight"]
        conv_bias = official[f"st_gcn_networks.{index}.gcn.conv.bias"]
        for k in range(3):
            # row k * C_out + o of the 1x1 convolution is subset k, output channel o
            assert torch.equal(gcn.weight[k], conv_weight[k * c_out : (k + 1) * c_out, :, 0, 0])
            assert torch.equal(gcn.bias[k], conv_bias[k * c_out : (k + 1) * c_out])
        assert torch.equal(gcn.edge_importance, official[f"edge_importance.{index}"])
        tcn_weight = official[f"st_gcn_networks.{index}.tcn.2.weight"]
        assert torch.equal(model.blocks[index].tcn[2].weight, tcn_weight)
    assert torch.equal(
        model.blocks[4].residual[1].running_var,
        official["st_gcn_networks.4.residual.1.running_var"],
    )
    assert torch.equal(model.data_bn.running_mean, official["data_bn.running_mean"])
    assert torch.equal(model.fcn.weight, official["fcn.weight"])


def test_converted_graph_conv_equals_conv1x1_einsum():
    official = _official_state_dict()
    model = stgcn.load_official_state_dict(stgcn.STGCN(), official)
    gcn = model.blocks[1].gcn
    x = torch.randn(2, 64, 5, 25)
    # ST-GCN's ConvTemporalGraphical with the official parameters
    y = F.conv2d(
        x,
        official["st_gcn_networks.1.gcn.conv.weight"],
        official["st_gcn_networks.1.gcn.conv.bias"],
    )
    adjacency = official["A"] * official["edge_importance.1"]
    expected = torch.einsum("nkctv,kvw->nctw", y.view(2, 3, 64, 5, 25), adjacency)
    with torch.no_grad():
        torch.testing.assert_close(gcn(x), expected, rtol=1e-4, atol=1e-4)


def test_load_official_state_dict_two_stream_and_prefix():
    single = _official_state_dict()
    two_stream = {f"origin_stream.{k}": v for k, v in single.items()}
    two_stream.update(
        {f"module.motion_stream.{k}": v if k == "A" else 2 * v for k, v in single.items()}
    )
    model = models.create("stgcn", preset="ntu60_two_stream")
    stgcn.load_official_state_dict(model, two_stream)
    assert torch.equal(model.joint_stream.fcn.bias, single["fcn.bias"])
    assert torch.equal(model.motion_stream.fcn.bias, 2 * single["fcn.bias"])


def test_load_official_state_dict_errors():
    official = _official_state_dict()
    bad_shape = dict(official)
    bad_shape["st_gcn_networks.2.gcn.conv.weight"] = torch.zeros(192, 32, 1, 1)
    with pytest.raises(ValueError, match=r"must be \(192, 64, 1, 1\)"):
        stgcn.load_official_state_dict(stgcn.STGCN(), bad_shape)
    with pytest.raises(ValueError, match="differs from the model's adjacency"):
        stgcn.load_official_state_dict(stgcn.STGCN(layout="openpose18"), official)
    with pytest.raises(ValueError, match="differs from the model's adjacency"):
        stgcn.load_official_state_dict(stgcn.STGCN(legacy_stgcn=False), official)
    with pytest.raises(RuntimeError, match="fcn"):
        stgcn.load_official_state_dict(
            stgcn.STGCN(), {k: v for k, v in official.items() if k != "fcn.bias"}
        )
