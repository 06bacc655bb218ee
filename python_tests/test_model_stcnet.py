"""STC-Net (``skelops.models.stcnet``): parameter counts, shapes, the DK-GC kernels and STC
candidates, training, backends, ``torch.compile`` and bad inputs.

No official implementation exists (the authors released none): the pinned parameter counts are
this implementation's own, not the paper's.
"""

from __future__ import annotations

import pytest
import torch
from helpers import adam_losses, assert_close_scaled

import skelops.models.stcnet as stcnet
from skelops import graphs
from skelops.models import count_parameters, create, get_preset, list_presets

# Ours (no official code to compare with): the backbone plus 332,256 STC parameters.
COUNTS = {"ntu60": 1_521_672, "ntu120": 1_537_092, "nwucla": 1_508_642}
STC_PARAMETERS = 332_256
INPUTS = {"ntu60": (3, 25, 2), "ntu120": (3, 25, 2), "nwucla": (3, 20, 1)}  # C, V, M


pytestmark = pytest.mark.usefixtures("one_thread")


def _tiny(**overrides) -> stcnet.STCNet:
    return create("stcnet", "ntu60", **{"base_channels": 8, "num_classes": 5, **overrides})


def _with_live_branches(model: torch.nn.Module) -> torch.nn.Module:
    """Lift the small BN initialisations (1e-6 on the graph convolutions, 0 on the STC
    branches), so that every graph convolution and curve changes the output."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
    return model


def test_presets_registered() -> None:
    assert list_presets("stcnet") == ["ntu120", "ntu60", "nwucla"]
    for name, count in COUNTS.items():
        preset = get_preset("stcnet", name)
        assert preset.parameter_count == count
        assert preset.reported_accuracy.startswith("not retrieved")


@pytest.mark.parametrize("preset", sorted(COUNTS))
def test_parameter_counts(preset: str) -> None:
    model = create("stcnet", preset)
    assert count_parameters(model) == COUNTS[preset]
    backbone = create("stcnet", preset, stc_units=())
    assert count_parameters(model) - count_parameters(backbone) == STC_PARAMETERS


def test_dilated_kernels_add_no_parameters() -> None:
    one = count_parameters(create("stcnet", "ntu60", dilations=(1,)))
    assert count_parameters(create("stcnet", "ntu60", dilations=(1, 2, 3))) == one
    assert one == COUNTS["ntu60"]


def test_graphs_and_candidates() -> None:
    model = _tiny()
    expected = graphs.dilated_adjacency("ntu_pyskl", (1, 2), "spatial")
    near = graphs.hop_distance("ntu_pyskl") <= 1
    for unit in model.units:
        assert torch.equal(unit.gcn.conv.adjacency, expected)
        assert unit.gcn.conv.reduction == "sum"
        assert torch.equal(unit.curve.curve.candidates, near)
        assert unit.curve.curve.length == 4
        assert unit.curve.curve.key.out_channels == unit.gcn.conv.out_channels // 4
    ucla = create("stcnet", "nwucla", base_channels=8)
    assert ucla.units[0].gcn.conv.adjacency.shape == (2, 3, 20, 20)


@pytest.mark.parametrize("preset", sorted(COUNTS))
def test_forward_shape_official_input(preset: str) -> None:
    model = create("stcnet", preset).eval()
    c, v, m = INPUTS[preset]
    with torch.no_grad():
        y = model(torch.randn(2, c, 8, v, m))
    assert y.shape == (2, model.num_classes)
    assert torch.isfinite(y).all()


def test_curve_branches_start_as_identity() -> None:
    """The STC branches' BN weight starts at zero: at initialisation the model computes its
    backbone (same weights without the branches)."""
    torch.manual_seed(0)
    model = _tiny().eval()
    backbone = _tiny(stc_units=()).eval()
    missing, unexpected = backbone.load_state_dict(model.state_dict(), strict=False)
    assert not missing and all(".curve." in key for key in unexpected) and unexpected
    x = torch.randn(2, 3, 8, 25, 2)
    with torch.no_grad():
        torch.testing.assert_close(model(x), backbone(x), rtol=0, atol=0)


def test_reference_backend_matches_default() -> None:
    torch.manual_seed(0)
    # float64: ten units of train-mode BatchNorm amplify float32 rounding beyond a float32
    # tolerance, which would hide nothing but make the comparison loose
    model = _with_live_branches(_tiny(base_channels=16)).double()
    reference = _tiny(base_channels=16, backend="reference").double()
    reference.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 8, 25, 2, dtype=torch.float64)
    with torch.no_grad():  # train mode: batch statistics keep the activations normalised
        assert_close_scaled(model.train()(x), reference.train()(x), torch.float64)


def test_training_steps_reduce_loss() -> None:
    torch.manual_seed(0)
    model = _tiny(base_channels=16, num_classes=10).train()
    x = torch.randn(4, 3, 8, 25, 2)
    target = torch.tensor([1, 3, 5, 7])
    losses = adam_losses(model, x, target, lr=1e-3)
    assert losses[-1] < losses[0], losses
    branch = model.units[4].curve
    assert branch.bn.weight.abs().sum() > 0  # the STC branches grow in from zero
    assert branch.curve.key.weight.grad.abs().sum() > 0  # the curves' key is learnt


def test_compile_fullgraph_matches_eager() -> None:
    """The whole model as one graph, traced through AOTAutograd (fake kernels of the operators
    once auto picks them). Inductor's cold build of the whole model takes about 95 s on a loaded
    2-core CPU; one unit goes through inductor below."""
    torch.manual_seed(0)
    model = _with_live_branches(_tiny()).eval()
    x = torch.randn(1, 3, 6, 25, 2)
    with torch.no_grad():
        expected = model(x)
        compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
        assert_close_scaled(compiled(x), expected, torch.float32)


def test_compile_unit_inductor_fullgraph() -> None:
    torch.manual_seed(0)
    unit = _with_live_branches(_tiny()).units[1].eval()
    x = torch.randn(2, 8, 5, 25)
    with torch.no_grad():
        expected = unit(x)
        assert_close_scaled(torch.compile(unit, fullgraph=True)(x), expected, torch.float32)


@pytest.mark.parametrize(
    ("preset", "shape", "message"),
    [
        ("ntu60", (2, 3, 8, 25), r"x must be \[N, 3, T, 25, 2\]"),
        ("ntu60", (2, 2, 8, 25, 2), r"x must be \[N, 3, T, 25, 2\]"),
        ("ntu60", (2, 3, 8, 20, 1), r"x must be \[N, 3, T, 25, 2\]"),
        ("ntu60", (0, 3, 8, 25, 2), r"x must be \[N, 3, T, 25, 2\]"),
        ("nwucla", (2, 3, 8, 25, 2), r"x must be \[N, 3, T, 20, 1\]"),
        ("ntu60", (2, 3, 1, 25, 2), r"T >= 5 frames .* got T=1"),
        ("ntu60", (2, 3, 4, 25, 2), r"T >= 5 frames .* got T=4"),
    ],
)
def test_bad_input_raises(preset: str, shape: tuple[int, ...], message: str) -> None:
    model = create("stcnet", preset, base_channels=8)
    with pytest.raises(ValueError, match=message):
        model(torch.randn(shape))


def test_too_few_frames_follows_curve_placement() -> None:
    # STC in unit 1 only: its curves see the input's frames, so T >= 2.
    model = _tiny(stc_units=(0,))
    assert model.min_frames == 2
    with pytest.raises(ValueError, match=r"T >= 2 frames .* got T=1"):
        model(torch.randn(1, 3, 1, 25, 2))
    assert model(torch.randn(1, 3, 2, 25, 2)).shape == (1, 5)
    assert _tiny(stc_units=(5, 6)).min_frames == 3


def test_bad_constructor_arguments_raise() -> None:
    with pytest.raises(ValueError, match="curve_length must be >= 1 .* got 0"):
        create("stcnet", "ntu60", curve_length=0)
    with pytest.raises(ValueError, match="curve_length must be an int"):
        create("stcnet", "ntu60", curve_length=2.0)
    with pytest.raises(ValueError, match=r"dilations\[1\]=12 exceeds .* 'ntu_pyskl' \(11 hops\)"):
        create("stcnet", "ntu60", dilations=(1, 12))
    with pytest.raises(ValueError, match=r"dilations\[0\]=11 exceeds .* 'nw_ucla' \(10 hops\)"):
        create("stcnet", "nwucla", dilations=(11,))
    with pytest.raises(ValueError, match="dilations must be distinct"):
        create("stcnet", "ntu60", dilations=(1, 1))
    with pytest.raises(ValueError, match="stc_units"):
        create("stcnet", "ntu60", stc_units=(10,))
    with pytest.raises(ValueError, match="base_channels must be a multiple of 4"):
        create("stcnet", "ntu60", base_channels=10)
    with pytest.raises(ValueError, match="num_classes"):
        create("stcnet", "ntu60", num_classes=0)
