"""SkateFormer (``skelops.models.skateformer``): parameter counts, official parameter names and
input format, raw NTU input, the default frame index, the attention backend against the
reference, official checkpoints, training, ``torch.compile`` and bad inputs.

The pinned counts are the official model's (KAIST-VICLab/SkateFormer ``model/SkateFormer.py``
built with the ``config/train/*/SkateFormer_j.yaml`` arguments). Everything but the counts and
one forward of the real preset runs on a tiny configuration.
"""

from __future__ import annotations

import pytest
import torch
from helpers import adam_losses, assert_close_scaled

import skelops.models.skateformer as skateformer
from skelops import graphs
from skelops.models import count_parameters, create, get_preset, list_presets
from skelops.ops import available_backends

COUNTS = {"ntu60": 3_616_083, "ntu120": 3_627_663, "nwucla": 1_925_921}
# Tiny: 2 heads per Skate-Type, head dims 1 and 2, windows of 4 frames (T a multiple of 8).
TINY = {
    "depths": (1, 1),
    "channels": (16, 32),
    "num_heads": 16,
    "partition_sizes": ((4, 8), (4, 12), (4, 8), (4, 12)),
    "num_classes": 5,
}

# The C++ kernel, else the reference: never Triton's interpreter, which "auto" would pick in a
# build without the C++ kernel and which takes minutes for one forward of the model.
_CPU_BACKENDS = available_backends("partition_attention", torch.device("cpu"))
BACKEND = "cpu" if "cpu" in _CPU_BACKENDS else "reference"

pytestmark = pytest.mark.usefixtures("one_thread")


def _tiny(**overrides) -> skateformer.SkateFormer:
    return create("skateformer", "ntu60", **{**TINY, "backend": BACKEND, **overrides})


def _with_large_tables(model: torch.nn.Module) -> torch.nn.Module:
    """Bias tables, G-Conv matrices and embedding well above their 0.02 initialisation, so that
    a wrong index into any of them shows."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if any(k in name for k in ("relative_position", "gconv", "joint_person")):
                p.normal_(0.0, 0.5)
    return model


def test_presets_registered() -> None:
    assert list_presets("skateformer") == ["ntu120", "ntu60", "nwucla"]
    for name, count in COUNTS.items():
        preset = get_preset("skateformer", name)
        assert preset.parameter_count == count
        assert preset.reported_accuracy.startswith("not retrieved")


@pytest.mark.parametrize("preset", sorted(COUNTS))
def test_parameter_counts(preset: str) -> None:
    assert count_parameters(create("skateformer", preset)) == COUNTS[preset]


def test_official_names_and_shapes() -> None:
    model = create("skateformer", "ntu60")
    params = dict(model.named_parameters())
    block = "stages.1.blocks.0"
    expected = {
        "stem.0.weight": (6, 3, 1, 1),
        "stem.4.weight": (96, 9, 1, 1),
        "joint_person_embedding": (96, 48),
        f"{block}.downsample.reduction.weight": (192, 96, 7, 1),
        f"{block}.downsample.bn.weight": (192,),
        f"{block}.transformer.mapping.weight": (384, 192),
        f"{block}.transformer.gconv": (8, 48, 48),
        f"{block}.transformer.tconv.weight": (48, 6, 7, 1),
        f"{block}.transformer.attention.0.relative_position_bias_table": (15, 4),
        f"{block}.transformer.attention.1.relative_position_bias_table": (15, 12, 12, 4),
        f"{block}.transformer.attention.2.relative_position_bias_table": (15, 4),
        f"{block}.transformer.attention.3.relative_position_bias_table": (15, 12, 12, 4),
        f"{block}.transformer.proj.weight": (192, 192),
        f"{block}.transformer.mlp.fc1.weight": (768, 192),
        f"{block}.transformer.mlp.fc2.weight": (192, 768),
        "head.weight": (60, 192),
    }
    for name, shape in expected.items():
        assert params[name].shape == shape, name
    assert "stages.0.blocks.0.downsample.reduction.weight" not in params
    assert len(model.no_weight_decay()) == 4 * 8
    attention = model.stages[0].blocks[1].transformer.attention
    assert [a.scale for a in attention] == [0.5] * 4  # (32 / 8) ** -0.5
    assert [a.partition_size for a in attention] == [(8, 8), (8, 12), (8, 8), (8, 12)]
    assert [a.backend for a in attention] == ["auto"] * 4
    drop = [b.transformer.drop_path.p for s in model.stages for b in s.blocks]
    torch.testing.assert_close(torch.tensor(drop), torch.linspace(0, 0.2, 8))


def test_forward_real_preset_official_input() -> None:
    model = create("skateformer", "ntu60", backend=BACKEND).eval()
    index_t = torch.linspace(-1, 0.9, 64)[None]
    with torch.no_grad():
        y = model(torch.randn(1, 3, 64, 24, 2), index_t)
    assert y.shape == (1, 60)
    assert torch.isfinite(y).all()


def test_nwucla_tiny_forward() -> None:
    sizes = ((4, 4), (4, 5), (4, 4), (4, 5))
    model = create(
        "skateformer", "nwucla", **{**TINY, "partition_sizes": sizes, "backend": BACKEND}
    ).eval()
    assert model.num_joints == 20
    with torch.no_grad():
        assert model(torch.randn(2, 3, 8, 20, 1)).shape == (2, 5)


def test_skate_joint_order() -> None:
    # the feeders' new_idx (1-based), feeder_ntu.py and feeder_ucla.py with partition=True
    ntu = [7, 8, 22, 23, 11, 12, 24, 25, 13, 14, 15, 16, 17, 18, 19, 20, 5, 9, 6, 10, 2, 3, 1, 4]
    ucla = [*range(5, 21), 2, 3, 1, 4]
    assert graphs.skate_joint_order("ntu_stgcn") == [j - 1 for j in ntu]
    assert graphs.skate_joint_order(graphs.get_layout("ntu_pyskl")) == [j - 1 for j in ntu]
    assert graphs.skate_joint_order("nw_ucla") == [j - 1 for j in ucla]
    with pytest.raises(ValueError, match=r"layout must be one of .* got 'ut_kinect'"):
        graphs.skate_joint_order("ut_kinect")


def test_raw_ntu_joints_are_reordered() -> None:
    torch.manual_seed(0)
    model = _with_large_tables(_tiny()).eval()
    raw = torch.randn(2, 3, 8, 25, 2)
    order = graphs.skate_joint_order("ntu_stgcn")
    assert order == list(graphs.get_layout("ntu_skateformer").base_indices)
    with torch.no_grad():
        torch.testing.assert_close(model(raw), model(raw[:, :, :, order]), rtol=0, atol=0)


def test_default_frame_index() -> None:
    torch.manual_seed(0)
    model = _with_large_tables(_tiny()).eval()
    x = torch.randn(2, 3, 8, 24, 2)
    index_t = (2 * torch.arange(8) / 8 - 1).expand(2, 8)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x, index_t), rtol=0, atol=0)
        assert not torch.allclose(model(x), model(x, index_t.flip(1)))


def test_backend_matches_reference() -> None:
    """The same weights through the operator's kernel and through its PyTorch reference."""
    torch.manual_seed(0)
    model = _with_large_tables(_tiny()).double().eval()
    reference = _tiny(backend="reference").double().eval()
    reference.load_state_dict(model.state_dict())
    assert all(
        a.backend == "reference"
        for a in reference.modules()
        if hasattr(a, "relative_position_bias_table")
    )
    x = torch.randn(2, 3, 16, 24, 2, dtype=torch.float64)
    index_t = torch.sort(torch.rand(2, 16, dtype=torch.float64) * 2 - 1).values
    with torch.no_grad():
        assert_close_scaled(model(x, index_t), reference(x, index_t), torch.float64)


def test_load_official_state_dict() -> None:
    """Official checkpoints carry a ``module.`` prefix (DataParallel) and the
    ``relative_position_index`` buffers, which the operator does not need."""
    torch.manual_seed(0)
    source = _with_large_tables(_tiny()).eval()
    official = {f"module.{k}": v for k, v in source.state_dict().items()}
    for name, module in source.named_modules():
        if hasattr(module, "relative_position_bias_table"):
            window = module.partition_size[0]
            official[f"module.{name}.relative_position_index"] = torch.zeros(window, window)
    model = skateformer.load_official_state_dict(_tiny().eval(), official)
    x = torch.randn(1, 3, 8, 24, 2)
    with torch.no_grad():
        torch.testing.assert_close(model(x), source(x), rtol=0, atol=0)
    official["module.joint_person_temporal_embedding"] = torch.zeros(1)
    with pytest.raises(RuntimeError, match="joint_person_temporal_embedding"):
        skateformer.load_official_state_dict(_tiny(), official)


def test_training_steps_reduce_loss() -> None:
    torch.manual_seed(0)
    model = _tiny(num_classes=10).train()  # attention dropout 0.5 and drop-path 0.2 active
    x = torch.randn(4, 3, 8, 24, 2)
    target = torch.tensor([1, 3, 5, 7])
    losses = adam_losses(model, x, target, lr=3e-3, steps=8)
    assert losses[-1] < losses[0], losses
    tables = [p for n, p in model.named_parameters() if "relative_position_bias_table" in n]
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in tables)


def test_compile_fullgraph_matches_eager() -> None:
    """The whole model as one graph through AOTAutograd (eval mode: no dropout seed to draw)."""
    torch.manual_seed(0)
    model = _with_large_tables(_tiny()).eval()
    x = torch.randn(1, 3, 8, 24, 2)
    with torch.no_grad():
        expected = model(x)
        compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
        assert_close_scaled(compiled(x), expected, torch.float32)


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((2, 3, 8, 24), r"x must be \[N, 3, T, 24, 2\] \(or the layout's 25 joints\)"),
        ((2, 2, 8, 24, 2), r"x must be \[N, 3, T, 24, 2\]"),
        ((2, 3, 8, 20, 2), r"x must be \[N, 3, T, 24, 2\]"),
        ((2, 3, 8, 24, 1), r"x must be \[N, 3, T, 24, 2\]"),
        ((0, 3, 8, 24, 2), r"x must be \[N, 3, T, 24, 2\]"),
        ((2, 3, 12, 24, 2), r"T = \[12, 6\] .* W = \[4\] .* multiple of 8\), got T=12"),
    ],
)
def test_bad_input_raises(shape: tuple[int, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _tiny()(torch.randn(shape))


def test_bad_frame_index_raises() -> None:
    with pytest.raises(ValueError, match=r"index_t must be \[N, T\] = \[2, 8\]"):
        _tiny()(torch.randn(2, 3, 8, 24, 2), torch.zeros(2, 16))


def test_bad_constructor_arguments_raise() -> None:
    with pytest.raises(ValueError, match="num_heads must be a multiple of 8"):
        _tiny(num_heads=12)
    with pytest.raises(ValueError, match=r"channels\[1\] must be a multiple of num_heads=16"):
        _tiny(channels=(16, 24))
    with pytest.raises(ValueError, match="depths and channels must be non-empty and of one"):
        _tiny(depths=(1,))
    with pytest.raises(ValueError, match=r"partition_sizes must be four \(W, J\) pairs .* 48"):
        _tiny(partition_sizes=((4, 8), (4, 10), (4, 8), (4, 12)))
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        _tiny(kernel_size=4)
    with pytest.raises(ValueError, match="layout must be one of"):
        _tiny(layout="coco")
    with pytest.raises(ValueError, match="num_classes must be a positive int"):
        _tiny(num_classes=0)
