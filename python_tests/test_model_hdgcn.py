"""HD-GCN (``skelops.models.hdgcn``): parameter counts, shapes, graph orientation, training,
backends, ``torch.compile`` and the six-way ensemble.

Parameter counts and outputs were checked against the official implementation
(Jho-Yonsei/HD-GCN ``model/HDGCN.py``) with its weights copied in; these tests pin the counts
and re-derive the per-level formula from the official expression.
"""

from __future__ import annotations

import pytest
import torch
from helpers import adam_losses, assert_close_scaled

import skelops.models.hdgcn as hdgcn
from skelops import graphs
from skelops.models import count_parameters, create, get_preset, list_presets

OFFICIAL_COUNTS = {"ntu60": 1_659_980, "ntu120": 1_675_400}


pytestmark = pytest.mark.usefixtures("one_thread")


def _tiny(**overrides) -> hdgcn.HDGCN:
    kwargs = {"base_channels": 8, "num_classes": 5, **overrides}
    return create("hdgcn", "ntu60", **kwargs)


def _load_same(model: torch.nn.Module, **overrides) -> torch.nn.Module:
    twin = create("hdgcn", "ntu60", **overrides)
    twin.load_state_dict(model.state_dict())
    return twin


def test_presets_registered() -> None:
    assert list_presets("hdgcn") == ["ntu120", "ntu60"]
    for name, count in OFFICIAL_COUNTS.items():
        assert get_preset("hdgcn", name).parameter_count == count


@pytest.mark.parametrize("preset", sorted(OFFICIAL_COUNTS))
def test_parameter_count_matches_official(preset: str) -> None:
    assert count_parameters(create("hdgcn", preset)) == OFFICIAL_COUNTS[preset]


def test_parameter_count_independent_of_center() -> None:
    # The three centres of mass change the groups, not the sizes.
    assert count_parameters(create("hdgcn", "ntu60", center=1)) == OFFICIAL_COUNTS["ntu60"]


@pytest.mark.parametrize("center", [20, 0, 1])
def test_initial_graph_is_hdgcn_adjacency(center: int) -> None:
    model = _tiny(center=center)
    expected = graphs.hdgcn_adjacency("ntu_pyskl", center=center)
    assert model.groups == graphs.hdgcn_groups("ntu_pyskl", center)
    for unit in model.units:
        torch.testing.assert_close(unit.gcn.adjacency.detach(), expected, rtol=0, atol=0)
    # Level 0, forward subset: the centre of mass is a source, group 1 its targets.
    assert (expected[0, 1, center, list(model.groups[1])] > 0).all()


def test_graph_convolution_equals_official_expression() -> None:
    """Each subset is the official ``conv1x1(einsum('nctu,vu->nctv', x, PA))``."""
    torch.manual_seed(0)
    gcn = _tiny().units[1].gcn.eval()
    with torch.no_grad():
        gcn.adjacency.add_(0.1 * torch.randn_like(gcn.adjacency))
        x = torch.randn(2, 8, 6, 25)
        x_down = gcn.down(x)
        inter = gcn.inter_channels
        official_pa = gcn.adjacency.transpose(-1, -2)  # official PA[l, k, target, source]
        expected = []
        for level in range(official_pa.shape[0]):
            x_level = x_down[:, level * inter : (level + 1) * inter]
            for k in range(official_pa.shape[1]):
                z = torch.einsum("nctu,vu->nctv", x_level, official_pa[level, k])
                w, b = gcn.weight[level, k], gcn.bias[level, k]
                expected.append(torch.einsum("oc,nctv->notv", w, z) + b[:, None, None])
        ours = [
            hdgcn.graph_conv(
                x_down[:, level * inter : (level + 1) * inter],
                gcn.weight[level, k : k + 1],
                gcn.adjacency[level, k : k + 1],
                gcn.bias[level, k],
            )
            for level in range(official_pa.shape[0])
            for k in range(official_pa.shape[1])
        ]
    for a, e in zip(ours, expected, strict=True):
        assert_close_scaled(a, e, torch.float32)


def test_forward_shape_official_input() -> None:
    model = create("hdgcn", "ntu120").eval()
    with torch.no_grad():
        y = model(torch.randn(2, 3, 8, 25, 2))
    assert y.shape == (2, 120)
    assert torch.isfinite(y).all()


def test_reference_backend_matches_default() -> None:
    torch.manual_seed(0)
    model = create("hdgcn", "ntu60")
    with torch.no_grad():  # lift the 1e-6 BN init, so that the graph branches matter
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
    reference = _load_same(model, backend="reference")
    x = torch.randn(2, 3, 8, 25, 2)
    with torch.no_grad():  # batch statistics keep the activations normalised
        assert_close_scaled(model.train()(x), reference.train()(x), torch.float32)


def test_training_steps_reduce_loss() -> None:
    torch.manual_seed(0)
    model = create("hdgcn", "ntu60", base_channels=16, num_classes=10).train()
    x = torch.randn(4, 3, 8, 25, 2)
    target = torch.tensor([1, 3, 5, 7])
    losses = adam_losses(model, x, target, lr=1e-3)
    assert model.units[3].gcn.adjacency.grad is not None  # the HD-Graph is learnt
    assert losses[-1] < losses[0], losses


def test_compile_graph_block_inductor_fullgraph() -> None:
    """An HD-Graph block with A-HA (18 graph convolutions, the EdgeConvs, the attention)
    through inductor. The whole model is captured as one graph below; its inductor build
    takes minutes on CPU (the opt-in slow test)."""
    torch.manual_seed(0)
    block = _tiny().units[1].gcn.eval()
    x = torch.randn(2, 8, 4, 25)
    with torch.no_grad():
        assert_close_scaled(torch.compile(block, fullgraph=True)(x), block(x), torch.float32)


def test_compile_model_captures_one_graph() -> None:
    torch.manual_seed(0)
    model = _tiny().eval()
    x = torch.randn(1, 3, 4, 25, 2)
    with torch.no_grad():
        compiled = torch.compile(model, fullgraph=True, backend="eager")
        torch.testing.assert_close(compiled(x), model(x))


def test_compile_model_inductor_fullgraph() -> None:
    # The whole model through inductor (about 2-3 minutes cold on 2 CPU cores).
    torch.manual_seed(0)
    model = _tiny().eval()
    x = torch.randn(1, 3, 4, 25, 2)
    with torch.no_grad():
        assert_close_scaled(torch.compile(model, fullgraph=True)(x), model(x), torch.float32)


@pytest.mark.parametrize(
    "shape",
    [(2, 3, 8, 25), (2, 2, 8, 25, 2), (2, 3, 8, 24, 2), (2, 3, 8, 25, 1), (0, 3, 8, 25, 2)],
)
def test_bad_input_raises(shape: tuple[int, ...]) -> None:
    model = _tiny()
    with pytest.raises(ValueError, match=r"x must be \[N, 3, T, 25, 2\]"):
        model(torch.randn(shape))


def test_bad_constructor_arguments_raise() -> None:
    with pytest.raises(ValueError, match="base_channels must be a multiple of 4"):
        create("hdgcn", "ntu60", base_channels=10)
    with pytest.raises(ValueError, match="num_classes"):
        create("hdgcn", "ntu60", num_classes=0)


def test_ensemble_scores_is_official_l2_fusion() -> None:
    torch.manual_seed(0)
    scores = [torch.randn(3, 7) for _ in range(6)]
    expected = sum(s / s.norm(dim=1, keepdim=True) for s in scores)
    torch.testing.assert_close(hdgcn.ensemble_scores(scores), expected)
    with pytest.raises(ValueError, match="scores"):
        hdgcn.ensemble_scores([])
    with pytest.raises(ValueError, match=r"scores\[1\]"):
        hdgcn.ensemble_scores([torch.randn(3, 7), torch.randn(3, 6)])


def test_six_way_ensemble_uses_joints_and_bones() -> None:
    torch.manual_seed(0)
    ensemble = hdgcn.HDGCNEnsemble.from_preset("ntu60", base_channels=4, num_classes=5).eval()
    assert [m.center for m in ensemble.joint_models] == [20, 0, 1]
    assert [m.center for m in ensemble.bone_models] == [20, 0, 1]
    x = torch.randn(2, 3, 4, 25, 2)
    bones = graphs.bone_stream(x, "ntu_pyskl")
    with torch.no_grad():
        fused = ensemble(x)
        scores = [m(x) for m in ensemble.joint_models] + [m(bones) for m in ensemble.bone_models]
    assert fused.shape == (2, 5)
    torch.testing.assert_close(fused, hdgcn.ensemble_scores(scores))
    with pytest.raises(ValueError, match="centers="):
        hdgcn.HDGCNEnsemble.from_preset("ntu60", center=0)


def _official_state_dict(model: hdgcn.HDGCN) -> dict[str, torch.Tensor]:
    """``model``'s weights under the official ``model.HDGCN.Model`` keys and shapes (the layout
    the converter was checked against with the official code), with a ``module.`` prefix."""
    sd = model.state_dict()
    out: dict[str, torch.Tensor] = {}

    def bn(dsts: list[str], src: str) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            for dst, chunk in zip(dsts, sd[f"{src}.{name}"].chunk(len(dsts)), strict=True):
                out[f"{dst}.{name}"] = chunk
        for dst in dsts:
            out[f"{dst}.num_batches_tracked"] = sd[f"{src}.num_batches_tracked"]

    def conv(dst: str, src: str) -> None:
        out[f"{dst}.weight"], out[f"{dst}.bias"] = sd[f"{src}.weight"], sd[f"{src}.bias"]

    bn(["data_bn"], "data_bn")
    conv("fc", "fc")
    for i, unit in enumerate(model.units):
        u, o, g, og = f"units.{i}", f"l{i + 1}", f"units.{i}.gcn", f"l{i + 1}.gcn1"
        out[f"{og}.PA"] = sd[f"{g}.adjacency"].transpose(-1, -2)
        for lv in range(6):
            out[f"{og}.conv_down.{lv}.0.weight"] = sd[f"{g}.down.0.weight"].chunk(6)[lv]
            out[f"{og}.conv_down.{lv}.0.bias"] = sd[f"{g}.down.0.bias"].chunk(6)[lv]
            out[f"{og}.conv.{lv}.3.conv.0.weight"] = sd[f"{g}.edge.conv.weight"].chunk(6)[lv]
            for k in range(3):
                out[f"{og}.conv.{lv}.{k}.0.weight"] = sd[f"{g}.weight"][lv, k, :, :, None, None]
                out[f"{og}.conv.{lv}.{k}.0.bias"] = sd[f"{g}.bias"][lv, k]
        bn([f"{og}.conv_down.{lv}.1" for lv in range(6)], f"{g}.down.1")
        bn([f"{og}.conv.{lv}.3.conv.1" for lv in range(6)], f"{g}.edge.bn")
        bn([f"{og}.conv.{p // 3}.{p % 3}.1" for p in range(18)], f"{g}.subset_bn")
        if unit.gcn.aggregation is not None:
            a, oa = f"{g}.aggregation", f"{og}.aha"
            conv(f"{oa}.conv_down.0", f"{a}.down.0")
            bn([f"{oa}.conv_down.1"], f"{a}.down.1")
            out[f"{oa}.edge_conv.conv.0.weight"] = sd[f"{a}.edge.conv.weight"]
            bn([f"{oa}.edge_conv.conv.1"], f"{a}.edge.bn")
            conv(f"{oa}.aggregate", f"{a}.aggregate")
        bn([f"{og}.bn"], f"{g}.bn")
        if isinstance(unit.gcn.residual, torch.nn.Sequential):
            conv(f"{og}.down.0", f"{g}.residual.0")
            bn([f"{og}.down.1"], f"{g}.residual.1")
        t, ot = f"{u}.tcn.branches", f"{o}.tcn1.branches"
        for b in range(4):
            conv(f"{ot}.{b}.0", f"{t}.{b}.0")
            bn([f"{ot}.{b}.1"], f"{t}.{b}.1")
        for b in range(2):
            out[f"{ot}.{b}.3.conv.weight"] = sd[f"{t}.{b}.3.weight"]
            out[f"{ot}.{b}.3.bias"] = sd[f"{t}.{b}.3.bias"].view(1, -1, 1, 1)
            bn([f"{ot}.{b}.3.bn"], f"{t}.{b}.4")
        bn([f"{ot}.2.4"], f"{t}.2.4")
        if isinstance(unit.residual, torch.nn.Sequential):
            conv(f"{o}.residual.conv", f"{u}.residual.0")
            bn([f"{o}.residual.bn"], f"{u}.residual.1")
    return {f"module.{k}": v.clone() for k, v in out.items()}


def test_load_official_state_dict() -> None:
    torch.manual_seed(0)
    model = _tiny(center=1)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    official = _official_state_dict(model)
    assert len(official) == 2747  # the official keys, less its duplicate `conv_d` aliases
    loaded = hdgcn.load_official_state_dict(_tiny(center=1), official)
    x = torch.randn(2, 3, 4, 25, 2)
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(x), model.eval()(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match="does not use"):
        hdgcn.load_official_state_dict(_tiny(center=1), {**official, "extra.weight": x})
