"""Ensem-NN (``ensemble1d``): parameter counts, input formats, fusion, training, compile."""

import pytest
import torch
import torch.nn.functional as F
from helpers import adam_losses

import skelops.models.ensemble1d as ens
from skelops.models import count_parameters, create, get_preset, list_presets

# Trainable parameters of the official Keras definitions (train_*.py), NTU-60: 300 x 150 input.
NTU60_SUBNETS = {
    "base": 1_874_876,
    "two_stream": 3_826_552,
    "body_part": 9_082_540,
    "attention": 2_138_257,
    "frame_difference": 1_874_364,
    "ensemble": 16_921_713,
}

T = 8  # tiny frame count for the fast tests
N = 2


def tiny(subnet: str = "ensemble", **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    return create(
        "ensemble1d", preset="ntu60", subnet=subnet, num_frames=T, num_classes=5, **kwargs
    )


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ensemble() -> torch.nn.Module:
    return tiny().eval()


def test_preset_parameter_counts():
    assert list_presets("ensemble1d") == ["ntu120", "ntu60"]
    with torch.device("meta"):  # counting needs no initialisation
        for preset in list_presets("ensemble1d"):
            expected = get_preset("ensemble1d", preset).parameter_count
            assert count_parameters(create("ensemble1d", preset=preset)) == expected
        for subnet, expected in NTU60_SUBNETS.items():
            model = create("ensemble1d", preset="ntu60", subnet=subnet)
            assert count_parameters(model) == expected, subnet


def test_forward_both_input_formats(ensemble):
    model = ensemble
    x = torch.randn(N, 3, T, 25, 2)
    frames = ens.skeleton_to_frames(x)
    assert frames.shape == (N, T, 150)
    # official layout: person-major, then joint, then coordinate
    assert frames[1, 4, 75 + 7 * 3 + 2] == x[1, 2, 4, 7, 1]
    with torch.no_grad():
        out = model(x)
        assert out.shape == (N, 5)
        torch.testing.assert_close(model(frames), out)
        logits = model.subnet_logits(x)
    assert set(logits) == {"two_stream", "body_part", "attention", "frame_difference"}
    assert all(v.shape == (N, 5) for v in logits.values())


def test_fusion_rules(ensemble):
    x = torch.randn(N, T, 150)
    model = ensemble
    with torch.no_grad():
        logits = torch.stack(list(model.subnet_logits(x).values()))
        product = torch.softmax(logits, -1).prod(0)
        torch.testing.assert_close(torch.softmax(model(x), -1), product / product.sum(-1, True))
        model.fusion = "mean"
        try:
            mean = torch.softmax(logits, -1).mean(0)
            torch.testing.assert_close(torch.softmax(model(x), -1), mean)
        finally:
            model.fusion = "product"


def test_body_part_split():
    model = tiny("body_part")
    x = torch.randn(N, 3, T, 25, 2)
    parts = model.split_parts(x)
    assert parts.shape == (N, 5, T, 36)
    # part 0 is the official "leftup" (1-based joints 9, 10, 11, 12, 25, 24); person 1 at 18
    torch.testing.assert_close(parts[:, 0, :, 18 + 4 * 3 : 18 + 5 * 3], x[:, :, :, 24, 1].mT)
    assert (parts[:, 2, :, 12:18] == 0).all()  # four-joint legs, zero-padded to six
    by_layout = tiny("body_part", parts="ntu_stgcn")
    assert count_parameters(by_layout) == count_parameters(model)
    ut = tiny("body_part", layout="ut_kinect", num_persons=1, parts="ut_kinect")
    assert ut.split_parts(torch.randn(N, T, 60)).shape == (N, 5, T, 12)
    assert ut(torch.randn(N, T, 60)).shape == (N, 5)


def test_temporal_attention_official_is_a_no_op():
    model = tiny("attention").eval()
    attention = model.net.attentions["2"]
    branch = torch.randn(N, 64, T)
    assert (attention(branch) == 1).all()
    attention.mode = "frames"
    weights = attention(branch)
    torch.testing.assert_close(weights.mean(-1), torch.ones(N, 1))
    assert not torch.allclose(weights, torch.ones_like(weights))


def test_frame_difference_and_same_padding():
    model = tiny("frame_difference").eval()
    x = torch.randn(N, T, 150)
    diff = torch.cat([torch.zeros(N, 1, 150), x[:, 1:] - x[:, :-1]], 1)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.net(diff))
    kernels = [m.weight for m in model.modules() if isinstance(m, ens.SamePadConv1d)]
    assert len(kernels) == 1 + 9 + 2  # stem, nine layers, two width-changing shortcuts
    expected = 1e-4 * sum(w.abs().sum() for w in kernels)
    torch.testing.assert_close(model.l1_penalty(), expected)
    conv = ens.SamePadConv1d(4, 6, 8, stride=2)
    for length in (7, 8):  # TensorFlow "same": ceil(L / s) outputs, the odd pad on the right
        y = torch.randn(1, 4, length)
        total = (-(-length // 2) - 1) * 2 + 8 - length
        ref = F.conv1d(F.pad(y, (total // 2, total - total // 2)), conv.weight, conv.bias, 2)
        torch.testing.assert_close(conv(y), ref)
        assert conv(y).shape[-1] == -(-length // 2)


def test_training_steps_lower_the_loss():
    model = tiny().train()
    torch.manual_seed(1)
    x, y = torch.randn(4, T, 150), torch.tensor([0, 1, 2, 3])
    losses = adam_losses(model, x, y, lr=1e-4)
    assert losses[-1] < losses[0]


def test_torch_compile_fullgraph():
    model = tiny("attention").eval()
    x = torch.randn(1, T, 150)
    compiled = torch.compile(model, fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-5)


def test_bad_inputs_raise(ensemble):
    model = ensemble
    with pytest.raises(ValueError, match=r"x must be \[N, 8, 150\].*\[N, 3, 8, 25, 2\]"):
        model(torch.randn(N, 9, 150))
    with pytest.raises(ValueError, match="V=25 joints"):
        model(torch.randn(N, 3, T, 24, 2))
    with pytest.raises(ValueError, match=r"x must be \[N, L, 150\]"):
        ens.BaseNet1D(150, 5)(torch.randn(N, T, 75))
    with pytest.raises(ValueError, match="25-joint split"):
        tiny("body_part", layout="ut_kinect")
    with pytest.raises(ValueError, match="joint indices"):
        tiny("body_part", parts=[(0, 1), (2, 30)])
    with pytest.raises(ValueError, match="fusion"):
        tiny(fusion="max")
    with pytest.raises(ValueError, match="temporal_attention"):
        tiny("attention", temporal_attention="none")
    with pytest.raises(ValueError, match="subnet"):
        tiny("lstm")
