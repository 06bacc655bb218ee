"""Gate-Shift-Pose (``skelops.models.gateshiftpose``): the GSF module (parameter count, gate,
shift, fusion and interleave on hand-made tensors), parameter counts, official parameter names,
shapes of every fusion and backbone, training and bad inputs.

The counts are this implementation's (the paper gives none); the GSF module's ``29 C + 40`` and
the torchvision ResNet sizes they contain are checked separately.
"""

from __future__ import annotations

import pytest
import torch
from helpers import adam_losses

from skelops.models import GateShiftPose, count_parameters, create, get_preset, list_presets
from skelops.models.gateshiftpose import GateShiftFuse

# (backbone, fusion) -> parameters with 2 classes
COUNTS = {
    ("resnet18", "none"): 11_233_538,
    ("resnet18", "early"): 11_236_674,
    ("resnet18", "late"): 13_158_306,
    ("resnet34", "early"): 21_398_978,
    ("resnet50", "none"): 23_950_786,
    ("resnet50", "early"): 23_953_922,
    ("resnet50", "late"): 45_887_714,
}
# sum over blocks of 29 C + 40, C the block's output width; module count
GSF = {
    "resnet18": (29 * 2 * (64 + 128 + 256 + 512) + 8 * 40, 8),
    "resnet34": (29 * (3 * 64 + 4 * 128 + 6 * 256 + 3 * 512) + 16 * 40, 16),
    "resnet50": (29 * (3 * 256 + 4 * 512 + 6 * 1024 + 3 * 2048) + 16 * 40, 16),
}
# torchvision resnet18/34/50 without fc
TORCHVISION_NO_FC = {"resnet18": 11_176_512, "resnet34": 21_284_672, "resnet50": 23_508_032}

pytestmark = pytest.mark.usefixtures("one_thread")


def _inputs(b: int = 1, s: int = 2, size: int = 64, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    frames = torch.randn(b, s, 3, size, size, generator=gen)
    keypoints = torch.rand(b, s, 17, 2, generator=gen) * (size - 1)
    return frames, keypoints


def _gsf_fixed(channels: int, ratio: float, gate_bias, fuse_bias) -> GateShiftFuse:
    """A GSF whose gates are the constants tanh(gate_bias) per half and whose fusion weights
    are sigmoid(fuse_bias) per half (zero convolution weights)."""
    gsf = GateShiftFuse(channels, ratio).double()
    with torch.no_grad():
        gsf.conv3D.weight.zero_()
        gsf.conv3D.bias.copy_(torch.tensor(gate_bias, dtype=torch.float64))
        for conv, bias in ((gsf.channel_conv1, fuse_bias[0]), (gsf.channel_conv2, fuse_bias[1])):
            conv.weight.zero_()
            conv.bias.fill_(bias)
    return gsf


# ---------------------------------------------------------------------------------- GSF


@pytest.mark.parametrize("channels", [4, 8, 64, 256, 2048])
def test_gsf_parameter_count(channels: int) -> None:
    assert count_parameters(GateShiftFuse(channels)) == 29 * channels + 40


def test_gsf_channel_ratio() -> None:
    gsf = GateShiftFuse(256, gsf_ch_ratio=25)  # official ResNet default ratio
    assert gsf.fused_channels == 64
    assert count_parameters(gsf) == 29 * 64 + 40
    assert GateShiftFuse(30, gsf_ch_ratio=50).fused_channels == 16  # 15 rounded up to even...
    with pytest.raises(ValueError, match="multiple of 4 fused channels .* got 14"):
        GateShiftFuse(28, gsf_ch_ratio=50)  # ...but 14 cannot be interleaved in pairs
    with pytest.raises(ValueError, match=r"gsf_ch_ratio must be in \(0, 100\], got 0"):
        GateShiftFuse(64, gsf_ch_ratio=0)


def test_gsf_shift_semantics() -> None:
    """Gates 1 and fusion weights 1: the output is the pure shift. Half 1 (channels 0-3) moves
    one segment earlier, half 2 (4-7) one later, zeros at the clip ends, no leak between clips;
    within each half the channels are interleaved [0, 2, 1, 3]; channels 8-15 pass through."""
    b, s, c = 2, 3, 16
    gsf = _gsf_fixed(c, 50, [50.0, 50.0], [50.0, 50.0])
    x = torch.arange(b * s * c, dtype=torch.float64).view(b * s, c, 1, 1) + 1
    x = x.expand(-1, -1, 2, 2).contiguous()
    y = gsf(x, s).view(b, s, c, 2, 2)
    x = x.view(b, s, c, 2, 2)
    order = [0, 2, 1, 3]
    for clip in range(b):
        for t in range(s):
            for out_ch, in_ch in enumerate(order):
                earlier = x[clip, t + 1, in_ch] if t + 1 < s else torch.zeros(2, 2)
                later = x[clip, t - 1, 4 + in_ch] if t >= 1 else torch.zeros(2, 2)
                torch.testing.assert_close(y[clip, t, out_ch], earlier.double(), rtol=0, atol=0)
                torch.testing.assert_close(y[clip, t, 4 + out_ch], later.double(), rtol=0, atol=0)
    torch.testing.assert_close(y[:, :, 8:], x[:, :, 8:], rtol=0, atol=0)


def test_gsf_gate_and_fusion_values() -> None:
    """Constant gates g and fusion weights w: out = w * shift(g x) + (1 - w) (1 - g) x."""
    b, s, c = 1, 4, 8
    gate_bias, fuse_bias = [0.3, -0.7], [0.4, -1.2]
    gsf = _gsf_fixed(c, 100, gate_bias, fuse_bias)
    x = torch.randn(b * s, c, 3, 2, dtype=torch.float64)
    y = gsf(x, s)
    g = torch.tanh(torch.tensor(gate_bias, dtype=torch.float64))
    w = torch.sigmoid(torch.tensor(fuse_bias, dtype=torch.float64))
    zero = torch.zeros_like(x[0, 0])
    for t in range(s):
        half1 = [
            w[0] * g[0] * (x[t + 1, i] if t + 1 < s else zero) + (1 - w[0]) * (1 - g[0]) * x[t, i]
            for i in range(4)
        ]
        half2 = [
            w[1] * g[1] * (x[t - 1, 4 + i] if t >= 1 else zero)
            + (1 - w[1]) * (1 - g[1]) * x[t, 4 + i]
            for i in range(4)
        ]
        expected = torch.stack([half1[i] for i in (0, 2, 1, 3)] + [half2[i] for i in (0, 2, 1, 3)])
        torch.testing.assert_close(y[t], expected)


def test_gsf_fusion_weights_see_channel_and_segment_neighbours() -> None:
    """The fusion convolution is 3x3 over (channel, segment) of the pooled maps: with only its
    centre tap, the fusion weight of a (channel, segment) depends on that entry alone."""
    gsf = _gsf_fixed(8, 100, [0.5, 0.5], [0.0, 0.0])
    with torch.no_grad():
        gsf.channel_conv1.weight[0, 0, 1, 1] = 1.0  # y-map centre tap
    x = torch.randn(3, 8, 2, 2, dtype=torch.float64)
    y = gsf(x, 3)
    x1, g = x[:, :4], torch.tanh(torch.tensor(0.5, dtype=torch.float64))
    shifted = torch.cat([g * x1[1:], torch.zeros_like(x1[:1])])
    residual = (1 - g) * x1
    w = torch.sigmoid(shifted.mean(dim=(2, 3), keepdim=True))
    expected = w * shifted + (1 - w) * residual
    torch.testing.assert_close(y[:, :4], expected[:, [0, 2, 1, 3]])


# ------------------------------------------------------------------------------- model


def test_preset_registered() -> None:
    assert list_presets("gateshiftpose") == ["frfs"]
    preset = get_preset("gateshiftpose", "frfs")
    assert preset.kwargs["num_classes"] == 2
    assert preset.kwargs["backbone"] == "resnet50" and preset.kwargs["fusion"] == "early"
    assert preset.parameter_count == COUNTS[("resnet50", "early")]
    assert "98.08" in preset.reported_accuracy


@pytest.mark.parametrize(("backbone", "fusion"), sorted(COUNTS))
def test_parameter_counts(backbone: str, fusion: str) -> None:
    model = create("gateshiftpose", "frfs", backbone=backbone, fusion=fusion)
    assert count_parameters(model) == COUNTS[(backbone, fusion)]
    modules = [m for m in model.modules() if isinstance(m, GateShiftFuse)]
    gsf_total, gsf_modules = GSF[backbone]
    assert len(modules) == gsf_modules
    assert sum(count_parameters(m) for m in modules) == gsf_total
    resnet = count_parameters(model.base_model) - gsf_total
    assert resnet == TORCHVISION_NO_FC[backbone] + (64 * 7 * 7 if fusion == "early" else 0)


def test_official_parameter_names() -> None:
    early = create("gateshiftpose", "frfs", backbone="resnet18").state_dict()
    assert early["base_model.conv1.weight"].shape == (64, 4, 7, 7)
    assert early["base_model.layer1.0.gsf.conv3D.weight"].shape == (2, 32, 3, 3, 3)
    assert early["base_model.layer4.1.gsf.bn.running_mean"].shape == (512,)
    assert early["base_model.layer2.0.downsample.1.weight"].shape == (128,)
    assert early["new_fc.weight"].shape == (2, 512)
    late = create("gateshiftpose", "frfs", fusion="late").state_dict()
    assert late["base_model.conv1.weight"].shape == (64, 3, 7, 7)
    assert late["base_model.layer3.5.gsf.channel_conv2.weight"].shape == (1, 2, 3, 3)
    assert late["base_model.layer4.2.conv3.weight"].shape == (2048, 512, 1, 1)
    assert late["pose_model.fc1.weight"].shape == (64, 34)
    assert late["pose_model.fc3.weight"].shape == (128, 128)
    assert late["attention_layer.in_proj_weight"].shape == (3 * 2176, 2176)
    assert late["feature_refinement_layer.0.weight"].shape == (1088, 2176)
    assert late["feature_refinement_layer.5.running_var"].shape == (544,)
    assert late["new_fc.weight"].shape == (2, 544)


@pytest.mark.parametrize("backbone", ["resnet18", "resnet50"])
@pytest.mark.parametrize("fusion", ["none", "early", "late"])
def test_forward_shapes(backbone: str, fusion: str) -> None:
    model = create("gateshiftpose", "frfs", backbone=backbone, fusion=fusion).eval()
    frames, keypoints = _inputs()
    with torch.no_grad():
        y = model(frames, None if fusion == "none" else keypoints)
    assert y.shape == (1, 2)
    assert torch.isfinite(y).all()


def test_late_fusion_attention_over_one_token_is_linear() -> None:
    """The documented equivalence: one token, so attention = out_proj(v_proj(z))."""
    torch.manual_seed(0)
    model = create("gateshiftpose", "frfs", backbone="resnet18", fusion="late").eval()
    attention = model.attention_layer
    z = torch.randn(5, 640)
    d = 640
    v = z @ attention.in_proj_weight[2 * d :].T + attention.in_proj_bias[2 * d :]
    expected = attention.out_proj(v)
    with torch.no_grad():
        got = attention(z[None], z[None], z[None], need_weights=False)[0][0]
    torch.testing.assert_close(got, expected.detach())


def test_segments_are_averaged_and_clips_independent() -> None:
    """TSN consensus over segments, and GSF never mixes clips: a clip's output does not depend
    on the other clips of the batch (eval mode)."""
    torch.manual_seed(0)
    model = create("gateshiftpose", "frfs", backbone="resnet18", fusion="late").eval()
    frames, keypoints = _inputs(b=2, s=3, size=32)
    with torch.no_grad():
        both = model(frames, keypoints)
        first = model(frames[:1], keypoints[:1])
    torch.testing.assert_close(both[:1], first)


def test_early_fusion_heatmap_channel() -> None:
    """Sum over joints of Gaussians (sigma in input pixels), clipped to [0, 1]."""
    model = create("gateshiftpose", "frfs", backbone="resnet18", heatmap_sigma=2.0)
    keypoints = torch.zeros(1, 1, 17, 2, dtype=torch.float64)
    keypoints[..., 0], keypoints[..., 1] = 5.0, 6.0  # every joint at (x=5, y=6)
    scores = torch.zeros(1, 1, 17, dtype=torch.float64)
    scores[0, 0, 0] = 0.8  # one joint at 0.8...
    scores[0, 0, 1:3] = 1.0  # ...two at 1 (their sum exceeds 1 near the centre)
    heatmap = model.pose_heatmap(keypoints, (12, 10), scores)
    yy, xx = torch.meshgrid(torch.arange(12.0), torch.arange(10.0), indexing="ij")
    gauss = torch.exp(-((xx - 5.0) ** 2 + (yy - 6.0) ** 2) / (2 * 2.0**2)).double()
    torch.testing.assert_close(heatmap[0, 0], (2.8 * gauss).clamp(max=1.0))


def test_training_steps_reduce_loss() -> None:
    torch.manual_seed(0)
    model = create("gateshiftpose", "frfs", backbone="resnet18", fusion="late", dropout=0.0)
    frames, keypoints = _inputs(b=2, s=2, size=32)

    class _Bound(torch.nn.Module):  # adam_losses calls model(x)
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.model(x, keypoints)

    losses = adam_losses(_Bound().train(), frames, torch.tensor([0, 1]), lr=1e-3)
    assert losses[-1] < losses[0], losses
    gsf = model.base_model.layer2[0].gsf
    assert gsf.conv3D.weight.grad.abs().sum() > 0  # the gates are learnt
    assert gsf.channel_conv1.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("fusion", "frames", "keypoints", "scores", "message"),
    [
        ("late", (2, 3, 32, 32), (2, 17, 2), None, r"frames must be \[B, S, 3, H, W\]"),
        ("late", (1, 2, 4, 32, 32), (1, 2, 17, 2), None, r"frames must be \[B, S, 3, H, W\]"),
        ("late", (0, 2, 3, 32, 32), (0, 2, 17, 2), None, r"frames must be .* got shape \(0,"),
        ("late", (1, 2, 3, 32, 32), None, None, r"keypoints must be \[B, S, 17, 2\] .* got None"),
        ("late", (1, 2, 3, 32, 32), (1, 3, 17, 2), None, r"keypoints must be .* got \(1, 3,"),
        ("late", (1, 2, 3, 32, 32), (1, 2, 17, 3), None, r"keypoints must be \[B, S, 17, 2\]"),
        ("late", (1, 2, 3, 32, 32), (1, 2, 17, 2), (1, 2, 17), "scores must be None"),
        ("early", (1, 2, 3, 32, 32), (1, 2, 17, 2), (1, 2, 16), r"scores must be \[B, S, 17\]"),
        ("none", (1, 2, 3, 32, 32), (1, 2, 17, 2), None, "keypoints and scores must be None"),
    ],
)
def test_bad_inputs_raise(fusion, frames, keypoints, scores, message) -> None:
    model = create("gateshiftpose", "frfs", backbone="resnet18", fusion=fusion)
    args = [torch.randn(frames)]
    args.append(None if keypoints is None else torch.rand(keypoints))
    args.append(None if scores is None else torch.rand(scores))
    with pytest.raises(ValueError, match=message):
        model(*args)


def test_bad_constructor_arguments_raise() -> None:
    with pytest.raises(ValueError, match="backbone must be one of .* got 'resnet101'"):
        GateShiftPose(backbone="resnet101")
    with pytest.raises(ValueError, match="fusion must be one of .* got 'middle'"):
        GateShiftPose(fusion="middle")
    with pytest.raises(ValueError, match="attention_heads must divide the fused width 640"):
        GateShiftPose(backbone="resnet18", fusion="late", attention_heads=3)
    with pytest.raises(ValueError, match="num_classes must be a positive int, got 0"):
        GateShiftPose(num_classes=0)
    with pytest.raises(ValueError, match="heatmap_sigma must be > 0, got 0"):
        GateShiftPose(heatmap_sigma=0)
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\), got 1.5"):
        GateShiftPose(dropout=1.5)
