"""MANs (Memory Attention Networks): parameter counts, input formats, preprocessing, training,
torch.compile. Counts follow the official Keras demo (memory-attention-networks/MANs)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import adam_losses

import skelops.models.mans as mans
from skelops.models import count_parameters, create, get_preset, list_presets


def _build(preset: str, **overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    return create("mans", preset=preset, **overrides)


def _keras_demo_count(num_classes: int) -> int:
    """Trainable parameters of MANs_9.MANs_model() (Keras 2.0.8), layer by layer."""

    def dense(i: int, o: int) -> int:
        return i * o + o

    def keras_gru(i: int, h: int) -> int:  # kernel, recurrent kernel, one bias; 3 gates
        return 3 * (i * h + h * h + h)

    def conv(k: int, i: int, o: int) -> int:  # all convolutions of the demo have a bias
        return k * k * i * o + o

    def bn(c: int) -> int:  # gamma and beta; the moving statistics are not trainable
        return 2 * c

    frames, columns, hidden = 50, 50, 64
    squeezed = int(frames / 16)
    tarm = (
        dense(columns, hidden)
        + 2 * keras_gru(hidden, hidden)
        + dense(frames, squeezed)
        + dense(squeezed, frames)
        + dense(hidden, columns)
    )
    stem = conv(5, 3, 64) + bn(64)
    stage1 = conv(3, 64, 64) + bn(64) + conv(3, 64, 64)  # first block: no leading BN-ReLU
    stage1 += 2 * (bn(64) + conv(3, 64, 64))
    stage2 = bn(64) + conv(3, 64, 128) + bn(128) + conv(3, 128, 128) + conv(1, 64, 128)
    stage2 += 2 * (bn(128) + conv(3, 128, 128))
    head = bn(128) + dense(128, num_classes)
    return 3 * tarm + stem + stage1 + stage2 + head


@pytest.mark.parametrize("preset, count", [("ntu60", 857_269), ("ntu120", 865_009)])
def test_parameter_counts(preset, count):
    model = _build(preset)
    assert count_parameters(model) == count
    assert get_preset("mans", preset).parameter_count == count


def test_keras_count_is_pytorch_count_less_second_gru_biases():
    model = _build("ntu60")
    second_biases = sum(p.numel() for n, p in model.named_parameters() if ".bias_hh_" in n)
    assert second_biases == 3 * 2 * 3 * 64 == 1152  # channels x directions x gates x units
    assert _keras_demo_count(60) == 856_117  # the official demo's count
    assert count_parameters(model) - second_biases == 856_117
    assert count_parameters(_build("ntu120")) - second_biases == _keras_demo_count(120)


def test_densenet161_counts():
    model = _build("ntu60", backbone="densenet161")
    assert count_parameters(model) == 27_391_590
    # torchvision's published DenseNet-161 has 28,681,000 parameters with its 1000-way classifier.
    assert count_parameters(model.stcm.features) == 28_681_000 - (2208 * 1000 + 1000)


def test_presets_registered():
    assert {"ntu60", "ntu120"} <= set(list_presets("mans"))


def test_input_formats_agree():
    model = _build("ntu60").eval()
    torch.manual_seed(1)
    skeleton = torch.randn(2, 3, 50, 25, 2)  # [N, C, T, V, M]
    image = mans.skeleton_image(skeleton, 50)  # [N, 3, T, M * V]
    assert torch.equal(image[:, :, :, 25 + 3], skeleton[:, :, :, 3, 1])
    with torch.no_grad():
        out = model(image)
        assert out.shape == (2, 60)
        torch.testing.assert_close(model(image.permute(0, 2, 3, 1)), out)  # official [N, T, F, 3]
        torch.testing.assert_close(model(skeleton), out)


def test_densenet_variant_forward_tiny():
    model = _build("ntu60", backbone="densenet161", num_frames=32, num_columns=64).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 32, 25, 2))
    assert out.shape == (1, 60) and torch.isfinite(out).all()


def test_bad_input_raises():
    model = _build("ntu60")
    with pytest.raises(ValueError, match=r"x must be \[N, 3, 50, 50\].*\[N, 3, 50, 25, 2\]"):
        model(torch.randn(1, 3, 40, 25, 2))
    with pytest.raises(ValueError, match=r"got \(1, 2, 50, 50\)"):
        model(torch.randn(1, 2, 50, 50))
    with pytest.raises(ValueError, match="x must be"):
        model(torch.randn(1, 50, 150))
    with pytest.raises(ValueError, match="backbone"):
        create("mans", backbone="resnet50")


def test_training_steps_reduce_loss():
    model = _build("ntu60", num_frames=16, num_joints=5).train()  # small T and V, same layers
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 16, 5, 2, generator=generator)
    y = torch.tensor([0, 1, 2, 3])
    losses = adam_losses(model, x, y, lr=1e-3)
    assert losses[-1] < losses[0], losses


def test_tarm_is_residual_with_frame_attention():
    torch.manual_seed(0)
    tarm = mans.TemporalAttentionRecalibration(num_frames=32, num_features=6, hidden_size=8)
    assert tarm.squeeze.out_features == 2 and tarm.excite.out_features == 32  # over frames
    x = torch.randn(2, 32, 6)
    torch.nn.init.zeros_(tarm.project.weight)
    torch.nn.init.zeros_(tarm.project.bias)
    torch.testing.assert_close(tarm.eval()(x), x)


def test_keras_same_padding():
    torch.manual_seed(0)
    conv = mans._SameConv2d(3, 4, 5, 2)
    x = torch.randn(1, 3, 50, 50)
    # TensorFlow "same": 50 -> 25 pads 3 rows, 1 on top and 2 at the bottom (likewise columns).
    expected = F.conv2d(F.pad(x, (1, 2, 1, 2)), conv.weight, conv.bias, stride=2)
    torch.testing.assert_close(conv(x), expected)


def test_torch_compile_fullgraph():
    torch.manual_seed(0)
    # Tiny configuration: compiling unrolls the GRU over frames (Dynamo traces nn.GRU only with
    # allow_rnn=True).
    model = mans.MANs(
        num_classes=5, num_frames=2, attention_reduction=2, hidden_size=4, num_joints=2,
        num_persons=1, in_channels=1,
    ).eval()  # fmt: skip
    x = torch.randn(2, 1, 2, 2, 1)
    with torch.no_grad(), torch._dynamo.config.patch(allow_rnn=True):
        compiled = torch.compile(model, fullgraph=True)
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-5)


# --- preprocessing ---------------------------------------------------------------------------

# A skeleton in its own frame (x to the body's right, y forward, z up), NTU joint order.
_BODY = torch.tensor(
    [
        [0, 0, 0], [0, 0.01, 0.3], [0, 0.01, 0.6], [0, 0.02, 0.75],
        [-0.2, 0, 0.5], [-0.25, 0, 0.25], [-0.27, 0.05, 0.02], [-0.28, 0.07, -0.05],
        [0.2, 0, 0.5], [0.25, 0, 0.25], [0.27, 0.05, 0.02], [0.28, 0.07, -0.05],
        [-0.1, 0, -0.05], [-0.1, 0.02, -0.45], [-0.1, 0, -0.85], [-0.1, 0.12, -0.9],
        [0.1, 0, -0.05], [0.1, 0.02, -0.45], [0.1, 0, -0.85], [0.1, 0.12, -0.9],
        [0, 0, 0.5], [-0.29, 0.09, -0.12], [-0.25, 0.1, -0.05], [0.29, 0.09, -0.12],
        [0.25, 0.1, -0.05],
    ],
    dtype=torch.float64,
)  # fmt: skip


def _random_rotation(generator: torch.Generator) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    return q if torch.det(q) > 0 else -q


def _sequence(generator: torch.Generator, frames: int = 12) -> torch.Tensor:
    """[1, 3, T, 25, 2]: two jittering bodies; the second one enters at frame 4."""
    noise = 0.02 * torch.randn(frames, 2, 25, 3, generator=generator, dtype=torch.float64)
    bodies = _BODY + noise
    bodies[:, 1] += torch.tensor([1.0, 0.5, 0.0], dtype=torch.float64)
    bodies[:4, 1] = 0
    return bodies.permute(3, 0, 2, 1)[None]


def test_view_normalize_is_invariant_to_camera_pose():
    generator = torch.Generator().manual_seed(0)
    sequence = _sequence(generator)
    rotation = _random_rotation(generator)
    shift = torch.tensor([0.3, -1.0, 3.0], dtype=torch.float64)
    moved = torch.einsum("ij,nj...->ni...", rotation, sequence) + shift[:, None, None, None]
    moved[..., :4, :, 1] = 0  # the absent person stays absent
    expected = mans.view_normalize(sequence)
    torch.testing.assert_close(mans.view_normalize(moved), expected)
    assert torch.equal(expected[..., :4, :, 1], torch.zeros_like(expected[..., :4, :, 1]))


def test_view_normalize_axes():
    generator = torch.Generator().manual_seed(1)
    rotation = _random_rotation(generator)
    camera = _BODY @ rotation.T + torch.tensor([0.5, 0.2, 2.5], dtype=torch.float64)
    skeleton = torch.zeros(1, 3, 2, 25, 2, dtype=torch.float64)
    skeleton[0, :, :, :, 0] = camera.T[:, None]
    out = mans.view_normalize(skeleton)[0, :, 0, :, 0].T  # [V, 3]
    hips = (_BODY[12] + _BODY[16]) / 2
    # z: the torso's principal axis points up; x: toward the right hip; y: forward.
    assert out[3, 2] > 0.5 and out[14, 2] < -0.5  # head up, ankle down
    assert out[16, 0] > 0 > out[12, 0]
    assert out[15, 1] > out[14, 1]
    hip_line = torch.tensor([-0.2, 0.0, 0.0], dtype=torch.float64)
    torch.testing.assert_close(out[12] - out[16], hip_line, atol=0.02, rtol=0)
    torch.testing.assert_close(out[0].norm(), (_BODY[0] - hips).norm())


@pytest.mark.parametrize("frames", [7, 50, 83, 300])
def test_fit_frames(frames):
    x = torch.arange(frames, dtype=torch.float64).add(1).reshape(1, 1, frames, 1)
    out = mans.fit_frames(x, 50)[0, 0, :, 0]
    if frames <= 50:
        before = (50 - frames) // 2
        assert torch.equal(out[before : before + frames], x[0, 0, :, 0])
        assert out.count_nonzero() == frames
    else:
        index = np.linspace(0, frames - 1, 50, dtype=int)
        assert torch.equal(out, torch.from_numpy(index + 1.0))


def test_preprocess_shapes_and_column_padding():
    generator = torch.Generator().manual_seed(2)
    sequence = _sequence(generator, frames=60)
    normalised = mans.view_normalize(sequence)
    image = mans.preprocess(sequence)  # 60 frames sampled down to 50
    assert image.shape == (1, 3, 50, 50)
    torch.testing.assert_close(image, mans.skeleton_image(mans.fit_frames(normalised, 50), 50))
    wide = mans.preprocess(sequence, num_frames=224, num_columns=224)  # DenseNet-161 variant
    assert wide.shape == (1, 3, 224, 224)
    rows, cols = (224 - 60) // 2, (224 - 50) // 2  # 82 zero frames before, 87 zero columns left
    inner = wide[:, :, rows : rows + 60, cols : cols + 50]
    torch.testing.assert_close(inner, mans.skeleton_image(normalised, 50))
    torch.testing.assert_close(wide.abs().sum(), inner.abs().sum())
