"""PoseC3D (``skelops.models.posec3d``): parameter counts, pyskl's state-dict names, shapes,
initialisation, the flip and clip averaging of testing, training and bad inputs.

The expected names and shapes below are written from pyskl's code (``ResNet3d`` /
``Bottleneck3d`` / mmcv ``ConvModule`` / ``I3DHead``), not read off the model.
"""

from __future__ import annotations

import pytest
import torch
from helpers import adam_losses

from skelops.graphs import COCO_LIMBS_POSEC3D
from skelops.models import PoseC3D, count_parameters, create, get_preset, list_presets
from skelops.models.posec3d import COCO_LIMB_FLIP_PAIRS

# 60 classes: 1,994,080 backbone + 512 * 60 + 60 head (the pyskl SlowOnly-R50 for NTU-60).
COUNTS = {
    "ntu60": 2_024_860,
    "ntu60_limb": 2_024_860,
    "ntu120": 2_055_640,
    "ntu120_limb": 2_055_640,
}
# pyskl configs/posec3d/slowonly_r50_ntu60_xsub/{joint,limb}.py
PYSKL_LEFT_KP = [1, 3, 5, 7, 9, 11, 13, 15]
PYSKL_RIGHT_KP = [2, 4, 6, 8, 10, 12, 14, 16]
PYSKL_SKELETONS = [
    [0, 5], [0, 6], [5, 7], [7, 9], [6, 8], [8, 10], [5, 11], [11, 13], [13, 15], [6, 12],
    [12, 14], [14, 16], [0, 1], [0, 2], [1, 3], [2, 4], [11, 12],
]  # fmt: skip
PYSKL_LEFT_LIMB = [0, 2, 3, 6, 7, 8, 12, 14]
PYSKL_RIGHT_LIMB = [1, 4, 5, 9, 10, 11, 13, 15]

pytestmark = pytest.mark.usefixtures("one_thread")


def _tiny(**overrides) -> PoseC3D:
    kwargs = {"base_channels": 4, "stage_blocks": (1, 1, 1), "num_classes": 5, **overrides}
    return create("posec3d", "ntu60", **kwargs)


def _pyskl_state_dict_names(stage_blocks=(4, 6, 3)) -> list[str]:
    """Keys of a pyskl Recognizer3D(ResNet3dSlowOnly, I3DHead) checkpoint: every ConvModule is
    ``conv`` (no bias) + ``bn`` (BN3d), the first block of each stage has a ``downsample``."""
    bn = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]

    def conv_module(prefix: str) -> list[str]:
        return [f"{prefix}.conv.weight"] + [f"{prefix}.bn.{b}" for b in bn]

    names = conv_module("backbone.conv1")
    for stage, blocks in enumerate(stage_blocks, start=1):
        for block in range(blocks):
            for conv in ("conv1", "conv2", "conv3"):
                names += conv_module(f"backbone.layer{stage}.{block}.{conv}")
            if block == 0:
                names += conv_module(f"backbone.layer{stage}.0.downsample")
    return names + ["cls_head.fc_cls.weight", "cls_head.fc_cls.bias"]


def test_presets_registered() -> None:
    assert list_presets("posec3d") == sorted(COUNTS)
    for name, count in COUNTS.items():
        assert get_preset("posec3d", name).parameter_count == count
    assert "93.7" in get_preset("posec3d", "ntu60").reported_accuracy


@pytest.mark.parametrize("preset", sorted(COUNTS))
def test_parameter_counts(preset: str) -> None:
    model = create("posec3d", preset)
    assert count_parameters(model) == COUNTS[preset]
    assert count_parameters(model.backbone) == 1_994_080
    assert model.heatmap == ("limb" if preset.endswith("limb") else "keypoint")


def test_state_dict_names_and_shapes_match_pyskl() -> None:
    model = create("posec3d", "ntu60")
    state = model.state_dict()
    expected = _pyskl_state_dict_names()
    assert len(expected) == 260
    assert list(state) == expected
    assert sum(1 for _ in model.parameters()) == 131
    shapes = {
        "backbone.conv1.conv.weight": (32, 17, 1, 7, 7),
        "backbone.layer1.0.conv1.conv.weight": (32, 32, 1, 1, 1),  # stage 1 not inflated
        "backbone.layer1.0.conv2.conv.weight": (32, 32, 1, 3, 3),
        "backbone.layer1.0.conv3.conv.weight": (128, 32, 1, 1, 1),
        "backbone.layer1.0.downsample.conv.weight": (128, 32, 1, 1, 1),
        "backbone.layer2.0.conv1.conv.weight": (64, 128, 3, 1, 1),  # inflated: 3x1x1
        "backbone.layer2.5.conv1.conv.weight": (64, 256, 3, 1, 1),
        "backbone.layer3.0.downsample.conv.weight": (512, 256, 1, 1, 1),
        "backbone.layer3.2.conv3.bn.weight": (512,),
        "cls_head.fc_cls.weight": (60, 512),
    }
    for name, shape in shapes.items():
        assert tuple(state[name].shape) == shape, name
    # a pyskl-named checkpoint loads with strict=True
    other = create("posec3d", "ntu60")
    other.load_state_dict({name: torch.zeros_like(t) for name, t in state.items()}, strict=True)


def test_strides_and_pooling() -> None:
    model = create("posec3d", "ntu60")
    backbone = model.backbone
    assert backbone.maxpool.kernel_size == (1, 3, 3) and backbone.maxpool.stride == 1
    assert backbone.layer1[0].conv2.conv.stride == (1, 2, 2)
    assert backbone.layer2[0].conv2.conv.stride == (1, 2, 2)
    assert backbone.layer3[0].conv2.conv.stride == (2, 2, 2)
    assert backbone.layer3[0].downsample.conv.stride == (2, 2, 2)
    with torch.no_grad():
        features = backbone.eval()(torch.randn(1, 17, 8, 32, 32))
    assert features.shape == (1, 512, 4, 4, 4)


def test_forward_shape() -> None:
    model = create("posec3d", "ntu60").eval()
    with torch.no_grad():
        y = model(torch.randn(2, 17, 8, 32, 32))
    assert y.shape == (2, 60)
    assert torch.isfinite(y).all()


def test_initialisation_as_pyskl() -> None:
    torch.manual_seed(0)
    model = create("posec3d", "ntu60")
    for block in [*model.backbone.layer1, *model.backbone.layer2, *model.backbone.layer3]:
        assert torch.all(block.conv3.bn.weight == 0)  # zero_init_residual
        assert torch.all(block.conv1.bn.weight == 1)
    assert torch.all(model.cls_head.fc_cls.bias == 0)
    assert 0.008 < model.cls_head.fc_cls.weight.std().item() < 0.012
    assert model.cls_head.dropout.p == 0.5


def test_flip_pairs_match_pyskl_configs() -> None:
    assert COCO_LIMBS_POSEC3D == tuple(tuple(limb) for limb in PYSKL_SKELETONS)
    assert COCO_LIMB_FLIP_PAIRS == tuple(zip(PYSKL_LEFT_LIMB, PYSKL_RIGHT_LIMB, strict=True))
    keypoint = create("posec3d", "ntu60", base_channels=4)
    assert keypoint.flip_pairs == tuple(zip(PYSKL_LEFT_KP, PYSKL_RIGHT_KP, strict=True))
    limb = create("posec3d", "ntu60_limb", base_channels=4)
    assert limb.flip_pairs == COCO_LIMB_FLIP_PAIRS


@pytest.mark.parametrize(("preset", "left", "right"), [
    ("ntu60", PYSKL_LEFT_KP, PYSKL_RIGHT_KP),
    ("ntu60_limb", PYSKL_LEFT_LIMB, PYSKL_RIGHT_LIMB),
])  # fmt: skip
def test_flip_is_pyskl_double(preset: str, left: list[int], right: list[int]) -> None:
    """pyskl GeneratePoseTarget(double=True): ``heatmap[..., ::-1][:, indices]`` with the
    left/right channels swapped in ``indices``."""
    model = create("posec3d", preset, base_channels=4)
    indices = list(range(17))
    for a, b in zip(left, right, strict=True):
        indices[a], indices[b] = b, a
    x = torch.randn(2, 17, 3, 5, 6)
    expected = x.flip(-1)[:, indices]
    torch.testing.assert_close(model.flip(x), expected, rtol=0, atol=0)


def test_predict_averages_probabilities_over_clips_and_flips() -> None:
    torch.manual_seed(0)
    model = _tiny().eval()
    clips = torch.randn(2, 3, 17, 4, 8, 8)  # [B, num_clips, C, T, H, W]
    with torch.no_grad():
        got = model.predict(clips, flip=True)
        got_plain = model.predict(clips)
        for b in range(2):
            views = [clips[b, k] for k in range(3)]
            views += [model.flip(clips[b, k : k + 1])[0] for k in range(3)]
            probs = torch.stack([model(v[None]).softmax(-1)[0] for v in views])
            torch.testing.assert_close(got[b], probs.mean(0))
            torch.testing.assert_close(got_plain[b], probs[:3].mean(0))
    assert got.shape == (2, 5)
    torch.testing.assert_close(got.sum(-1), torch.ones(2))


def test_training_steps_reduce_loss() -> None:
    torch.manual_seed(0)
    model = _tiny(base_channels=8, dropout=0.0).train()
    x = torch.rand(4, 17, 4, 16, 16)
    target = torch.tensor([0, 1, 2, 3])
    losses = adam_losses(model, x, target, lr=1e-2)
    assert losses[-1] < losses[0], losses
    assert model.backbone.layer3[0].conv3.bn.weight.abs().sum() > 0  # grows from zero


@pytest.mark.parametrize(
    "shape",
    [(2, 17, 8, 32), (2, 16, 8, 32, 32), (0, 17, 8, 32, 32), (2, 17, 0, 32, 32)],
)
def test_bad_input_raises(shape: tuple[int, ...]) -> None:
    model = _tiny()
    with pytest.raises(ValueError, match=r"x must be \[N, 17, T, H, W\] .* got shape"):
        model(torch.randn(shape))


def test_bad_predict_input_raises() -> None:
    model = _tiny()
    with pytest.raises(ValueError, match=r"clips must be \[B, num_clips, 17, T, H, W\]"):
        model.predict(torch.randn(2, 17, 4, 8, 8))
    with pytest.raises(ValueError, match=r"clips must be .* got shape \(2, 0, 17, 4, 8, 8\)"):
        model.predict(torch.randn(2, 0, 17, 4, 8, 8))


def test_bad_constructor_arguments_raise() -> None:
    with pytest.raises(ValueError, match="heatmap must be one of .* got 'bone'"):
        create("posec3d", "ntu60", heatmap="bone")
    with pytest.raises(ValueError, match="num_classes must be a positive int, got 0"):
        create("posec3d", "ntu60", num_classes=0)
    with pytest.raises(ValueError, match=r"inflate must have one entry per stage \(3"):
        create("posec3d", "ntu60", inflate=(0, 1))
    with pytest.raises(ValueError, match=r"stage_blocks\[1\] must be a positive int, got 0"):
        create("posec3d", "ntu60", stage_blocks=(1, 0, 1))
    with pytest.raises(ValueError, match=r"flip_pairs must hold .* in \[0, 17\), got \(3, 17\)"):
        create("posec3d", "ntu60", flip_pairs=[(3, 17)])
    with pytest.raises(ValueError, match="flip_pairs must not repeat a channel"):
        create("posec3d", "ntu60", flip_pairs=[(1, 2), (2, 3)])
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\), got 1.0"):
        create("posec3d", "ntu60", dropout=1.0)
