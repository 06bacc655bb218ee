"""CascadeFormer (``cascadeformer``): parameter counts, equivalence of the attention layers with
PyTorch's, input layouts, masking, the masked loss, pretraining then fine-tuning from the
pretrained weights, the attention backend, ``torch.compile`` and bad inputs.

The pinned counts are the official model's (YP4AIresearch/CascadeFormer,
``cascadeformer_1_{0,1,2}/joint/*``: ``BaseT1`` without its reconstruction head, ``BaseT2``,
the cross-attention and the head, built with the main scripts' arguments). Everything else runs
on a tiny configuration.
"""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F

import skelops.models.cascadeformer as cf
from skelops.models import count_parameters, create, get_preset, list_presets

COUNTS = {"penn_action": 11_051_023, "nwucla": 11_326_730, "ntu60": 77_601_340}
RECONSTRUCTION_HEADS = {
    "penn_action": 256 * 26 + 26,
    "nwucla": 256 * 60 + 60,
    "ntu60": 512 * 75 + 75,
}
# Official 1.1 / 1.2 Penn Action T1 without the reconstruction head (positional table 2048).
PENN_T1_VARIANTS = {"conv": 5_791_508, "spatial_transformer": 7_107_842}

V, C, T = 5, 3, 8
TINY = {
    "num_joints": V,
    "in_channels": C,
    "max_frames": 16,
    "d_model": 16,
    "num_heads": 2,
    "num_layers": 1,
    "feedforward_dim": 32,
}
STAGE2 = {"num_classes": 4, "cross_attention": "ffn", "head": "mlp"}

pytestmark = pytest.mark.usefixtures("one_thread")


def _pretrainer(**overrides) -> cf.CascadeFormerPretrainer:
    torch.manual_seed(0)
    return cf.CascadeFormerPretrainer(**{**TINY, **overrides})


def _model(**overrides) -> cf.CascadeFormer:
    torch.manual_seed(0)
    return cf.CascadeFormer(**{**TINY, **STAGE2, **overrides})


def test_presets_registered() -> None:
    assert list_presets("cascadeformer") == ["ntu60", "nwucla", "penn_action"]
    for name, count in COUNTS.items():
        preset = get_preset("cascadeformer", name)
        assert preset.parameter_count == count
        assert "2509.00692" in preset.reported_accuracy


@pytest.mark.parametrize("preset", sorted(COUNTS))
def test_parameter_counts(preset: str) -> None:
    with torch.device("meta"):
        model = create("cascadeformer", preset)
        pretrainer = create("cascadeformer", preset, stage="pretrain")
        frozen = create("cascadeformer", preset, freeze_stage1=True)
    assert isinstance(model, cf.CascadeFormer)
    assert count_parameters(model) == COUNTS[preset]
    stage1 = count_parameters(model.t1)
    assert count_parameters(pretrainer) == stage1 + RECONSTRUCTION_HEADS[preset]
    assert count_parameters(frozen) == COUNTS[preset] - stage1
    assert count_parameters(frozen, trainable_only=False) == COUNTS[preset]


@pytest.mark.parametrize("embedding", sorted(PENN_T1_VARIANTS))
def test_variant_counts(embedding: str) -> None:
    with torch.device("meta"):
        model = create("cascadeformer", "penn_action", embedding=embedding, max_frames=2048)
    assert count_parameters(model.t1) == PENN_T1_VARIANTS[embedding]


def test_layers_match_pytorch_modules() -> None:
    """Same parameter names and shapes as nn.TransformerEncoderLayer / nn.MultiheadAttention,
    and the same outputs with the same weights."""
    torch.manual_seed(0)
    reference = torch.nn.TransformerEncoderLayer(16, 4, 32, dropout=0.1, batch_first=True)
    layer = cf.TransformerEncoderLayer(16, 4, 32, dropout=0.1)
    layer.load_state_dict(reference.state_dict())
    reference.eval(), layer.eval()
    x = torch.randn(3, 7, 16)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), reference(x))
    mha = torch.nn.MultiheadAttention(16, 4, batch_first=True).eval()
    cross = cf.CrossAttention(16, 4, dropout=0.0).eval()
    cross.cross_attention.load_state_dict(mha.state_dict())
    with torch.no_grad():
        for p in cross.norm1.parameters():
            p.normal_()
        kv = torch.randn(3, 5, 16)
        torch.testing.assert_close(cross(x, kv), cross.norm1(x + mha(x, kv, kv)[0]))


def test_forward_input_layouts() -> None:
    model = _model().eval()
    x = torch.randn(2, C, T, V)
    official = x.permute(0, 2, 3, 1).reshape(2, T, V * C)
    assert official[1, 4, 3 * C + 2] == x[1, 2, 4, 3]  # joint-major frames
    with torch.no_grad():
        out = model(x)
        assert out.shape == (2, 4)
        torch.testing.assert_close(model(official), out)
        # persons: the one with the largest absolute sum is kept
        other = 0.1 * torch.randn(2, C, T, V)
        persons = torch.stack([other, x], -1)
        persons[1] = persons[1].flip(-1)
        torch.testing.assert_close(model(persons), out)
        torch.testing.assert_close(model(x[:, :, :3]), model(official[:, :3]))  # T < max
    torch.testing.assert_close(cf.main_person(persons), x)


@pytest.mark.parametrize("embedding", ["conv", "spatial_transformer"])
def test_variant_forward(embedding: str) -> None:
    model = _model(embedding=embedding).eval()
    assert model.t1.joint_mixer is not None
    x = torch.randn(2, C, T, V)
    with torch.no_grad():
        assert model(x).shape == (2, 4)
        # the joint mixer acts on each frame alone: frames do not leak into one another
        mixed = model.t1.joint_mixer(x.permute(0, 2, 3, 1))
        first = model.t1.joint_mixer(x[:, :, :1].permute(0, 2, 3, 1))
    torch.testing.assert_close(mixed[:, :1], first)


def test_mask_statistics() -> None:
    pretrainer = _pretrainer()
    n = 400
    x = torch.randn(n, C, T, V) + 5.0  # no coordinate is zero before masking
    generator = torch.Generator().manual_seed(1)
    masked, mask = pretrainer.mask_joints(x, 0.3, generator)
    assert mask.shape == (n, T, V) and mask.dtype == torch.bool
    # exactly int(0.3 * T * V) slots in every sample
    assert (mask.sum(dim=(1, 2)) == int(0.3 * T * V)).all()
    # every slot about equally often: 400 draws of p = 0.3 each
    per_slot = mask.float().mean(0)
    assert (per_slot - 0.3).abs().max() < 0.1
    assert abs(mask.float().mean().item() - 0.3) < 0.01
    slot = mask[:, None].expand_as(x)
    assert (masked[slot] == 0).all()
    torch.testing.assert_close(masked[~slot], x[~slot], rtol=0, atol=0)
    # deterministic by generator, different with another seed
    again = pretrainer.mask_joints(x, 0.3, torch.Generator().manual_seed(1))[1]
    assert torch.equal(again, mask)
    assert not torch.equal(
        pretrainer.mask_joints(x, 0.3, torch.Generator().manual_seed(2))[1], mask
    )
    # at least one slot, and the mask spreads over the coordinates in the official layout
    _, one = pretrainer.mask_joints(x[:2, :, :1], 0.01, generator)
    assert (one.sum(dim=(1, 2)) == 1).all()
    frames = x.permute(0, 2, 3, 1).reshape(n, T, V * C)
    masked_frames, frames_mask = pretrainer.mask_joints(
        frames, 0.3, torch.Generator().manual_seed(1)
    )
    assert torch.equal(frames_mask, mask)
    torch.testing.assert_close(masked_frames, masked.permute(0, 2, 3, 1).reshape(n, T, V * C))
    persons = torch.stack([x, x], -1)
    masked_persons, _ = pretrainer.mask_joints(persons, 0.3, torch.Generator().manual_seed(1))
    torch.testing.assert_close(masked_persons[..., 1], masked)


def test_loss_only_on_masked_joints() -> None:
    torch.manual_seed(0)
    target = torch.randn(2, T, V * C)
    reconstruction = torch.randn(2, T, V * C, requires_grad=True)
    mask = torch.rand(2, T, V) < 0.3
    loss = cf.masked_reconstruction_loss(reconstruction, target, mask)
    loss.backward()
    spread = mask.repeat_interleave(C, dim=-1)
    assert (reconstruction.grad[~spread] == 0).all()
    assert (reconstruction.grad[spread] != 0).all()
    expected = (reconstruction - target)[spread].square().mean()
    torch.testing.assert_close(loss, expected)
    # pretraining_loss: mask drawn as mask_joints draws it, loss on those joints only
    pretrainer = _pretrainer().eval()
    x = torch.randn(3, C, T, V)
    loss = pretrainer.pretraining_loss(x, 0.3, torch.Generator().manual_seed(5))
    masked, mask = pretrainer.mask_joints(x, 0.3, torch.Generator().manual_seed(5))
    frames = x.permute(0, 2, 3, 1).reshape(3, T, V * C)
    with torch.no_grad():
        expected = cf.masked_reconstruction_loss(pretrainer(masked), frames, mask)
    torch.testing.assert_close(loss, expected)


def _synthetic(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth motions of two classes (joints oscillating in phase or in anti-phase), ``x``
    ``[n, C, T, V]`` and labels."""
    labels = torch.arange(n) % 2
    t = torch.arange(T, dtype=torch.float32)
    phase = torch.rand(n, 1, generator=generator) * 6.28
    wave = torch.sin(0.7 * t + phase)  # [n, T]
    sign = torch.where(torch.arange(V) % 2 == 0, 1.0, -1.0)  # [V]
    direction = torch.where(labels[:, None] == 1, sign, torch.ones(V))  # [n, V]
    pose = torch.randn(1, C, 1, V, generator=generator)
    x = pose + wave[:, None, :, None] * direction[:, None, None, :]
    return x + 0.05 * torch.randn(x.shape, generator=generator), labels


def test_pretraining_then_finetuning() -> None:
    generator = torch.Generator().manual_seed(0)
    x, labels = _synthetic(32, generator)
    pretrainer = _pretrainer(dropout=0.0)
    optimizer = torch.optim.Adam(pretrainer.parameters(), lr=3e-3)
    losses = []
    for step in range(40):
        optimizer.zero_grad()
        loss = pretrainer.pretraining_loss(x, generator=torch.Generator().manual_seed(step))
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) < 0.5 * sum(losses[:5]), losses

    model = cf.CascadeFormer.from_pretrained(
        pretrainer, num_classes=2, t2_dropout=0.0, cross_attention_dropout=0.0
    )
    for name, value in pretrainer.t1.state_dict().items():
        copy = model.t1.state_dict()[name]
        assert torch.equal(copy, value) and copy.data_ptr() != value.data_ptr(), name
    assert model.t1.config == pretrainer.t1.config
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    accuracies = []
    for _ in range(25):
        optimizer.zero_grad()
        logits = model(x)
        F.cross_entropy(logits, labels).backward()
        optimizer.step()
        accuracies.append((logits.argmax(1) == labels).float().mean().item())
    model.eval()
    with torch.no_grad():
        final = (model(x).argmax(1) == labels).float().mean().item()
    assert accuracies[0] <= 0.75 and final == 1.0, accuracies
    # the copy was fine-tuned, the pretrainer kept its weights
    assert not torch.equal(model.t1.joint_embedding.weight, pretrainer.t1.joint_embedding.weight)


def test_stage1_through_the_registry() -> None:
    pretrainer = create("cascadeformer", "nwucla", stage="pretrain", **TINY)
    assert isinstance(pretrainer, cf.CascadeFormerPretrainer)
    model = create("cascadeformer", "nwucla", **TINY, stage1=pretrainer)
    assert isinstance(model.head, torch.nn.Linear) and model.head.out_features == 10
    assert torch.equal(model.t1.pos_embedding, pretrainer.t1.pos_embedding)
    with pytest.raises(ValueError, match=r"stage-1 configuration: num_layers=2 here, 1 in"):
        create("cascadeformer", "nwucla", **{**TINY, "num_layers": 2}, stage1=pretrainer)
    with pytest.raises(ValueError, match=r"stage-2 arguments only, got stage-1 ones \['d_model'\]"):
        cf.CascadeFormer.from_pretrained(pretrainer, 3, d_model=32)
    with pytest.raises(TypeError, match="stage1 must be a CascadeFormerPretrainer, got Linear"):
        _model(stage1=torch.nn.Linear(2, 2))


def test_freeze_stage1() -> None:
    model = _model(freeze_stage1=True).train()
    assert not model.t1.training and model.t2.training
    assert not any(p.requires_grad for p in model.t1.parameters())
    model(torch.randn(2, C, T, V)).sum().backward()
    assert all(p.grad is None for p in model.t1.parameters())
    assert all(p.grad is not None for p in model.head.parameters())


def test_attention_runs_through_sdpa(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    original = F.scaled_dot_product_attention

    def counting(q, k, v, **kwargs):
        calls.append((tuple(q.shape), tuple(k.shape)))
        return original(q, k, v, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", counting)
    model = _model(num_layers=2, embedding="spatial_transformer").eval()
    with torch.no_grad():
        model(torch.randn(3, C, T, V))
    # spatial layer over V joint tokens of every frame, T1 and T2 layers, cross-attention
    assert calls[0] == ((3 * T, 2, V, 8), (3 * T, 2, V, 8))
    assert calls[1:] == [((3, 2, T, 8), (3, 2, T, 8))] * 5


def test_dropout_only_in_training() -> None:
    model = _model(t2_dropout=0.5, cross_attention_dropout=0.5, head_dropout=0.5)
    x = torch.randn(2, C, T, V)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x), rtol=0, atol=0)
        model.train()
        assert not torch.allclose(model(x), model(x))


def test_compile_fullgraph_matches_eager() -> None:
    model = _model().eval()
    x = torch.randn(1, C, T, V, 2)
    with torch.no_grad():
        expected = model(x)
        compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
        torch.testing.assert_close(compiled(x), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "shape",
    [
        (2, C, T),
        (2, C, T, V + 1),
        (2, C + 1, T, V),
        (2, C, 17, V),
        (2, C, 0, V),
        (2, T, V * C + 1),
        (2, C, T, V, 0),
        (2, C, T, V, 2, 1),
    ],
)
def test_bad_input_raises(shape: tuple[int, ...]) -> None:
    message = (
        r"x must be \[N, 3, T, 5\], \[N, 3, T, 5, M\] or the official \[N, T, 15\] .* "
        rf"max_frames=16; got shape \[{', '.join(map(str, shape))}\]"
    )
    model = _model()
    with pytest.raises(ValueError, match=message):
        model(torch.randn(shape))
    with pytest.raises(ValueError, match=message):
        _pretrainer().pretraining_loss(torch.randn(shape))


def test_bad_arguments_raise() -> None:
    pretrainer = _pretrainer()
    x = torch.randn(2, C, T, V)
    for ratio in (0.0, 1.5, True):
        with pytest.raises(ValueError, match=rf"ratio must be a float in \(0, 1\], got {ratio}"):
            pretrainer.mask_joints(x, ratio)
    with pytest.raises(ValueError, match="d_model must be a multiple of num_heads=3, got 16"):
        _model(num_heads=3)
    with pytest.raises(ValueError, match="embedding must be one of .*, got 'gcn'"):
        _model(embedding="gcn")
    with pytest.raises(ValueError, match=r"cross_attention must be one of \['plain', 'ffn'\]"):
        _model(cross_attention="none")
    with pytest.raises(ValueError, match=r"head must be one of \['linear', 'mlp'\], got 'x'"):
        _model(head="x")
    with pytest.raises(ValueError, match=r"t2_dropout must be a float in \[0, 1\), got 1.0"):
        _model(t2_dropout=1.0)
    with pytest.raises(ValueError, match="max_frames must be a positive int, got 0"):
        _model(max_frames=0)
    with pytest.raises(ValueError, match="num_classes must be a positive int, got -1"):
        _model(num_classes=-1)
    with pytest.raises(ValueError, match="stage must be 'finetune' or 'pretrain', got 'train'"):
        create("cascadeformer", "ntu60", stage="train")
    with pytest.raises(ValueError, match=r"mask must be \[N, T, V\] = \[2, 8, V\]"):
        cf.masked_reconstruction_loss(
            torch.zeros(2, T, 15), torch.zeros(2, T, 15), torch.zeros(2, T, 4)
        )
    with pytest.raises(ValueError, match=r"x must be \[N, C, T, V, M\], got shape \[2, 3, 8, 5\]"):
        cf.main_person(x)


# Official parameter names (YP4AIresearch/CascadeFormer, cascadeformer_1_{0,1,2}/joint/*), written
# out from the official modules, next to this model's names. nn.TransformerEncoderLayer's:
ENCODER_LAYER = (
    "self_attn.in_proj_weight",
    "self_attn.in_proj_bias",
    "self_attn.out_proj.weight",
    "self_attn.out_proj.bias",
    "linear1.weight",
    "linear1.bias",
    "linear2.weight",
    "linear2.bias",
    "norm1.weight",
    "norm1.bias",
    "norm2.weight",
    "norm2.bias",
)
LAYERS = 2  # depth of T1 and T2 in the checkpoint tests


def _layers(official: str, ours: str, count: int = LAYERS) -> dict[str, str]:
    return {
        f"{official}.layers.{i}.{key}": f"{ours}.layers.{i}.{key}"
        for i in range(count)
        for key in ENCODER_LAYER
    }


def _official_t1(embedding: str, frame_embedding: str) -> dict[str, str]:
    """BaseT1 (``pretraining.py``) name -> ours, the reconstruction head aside; the Penn
    Action 1.0 script calls the frame embedding ``embedding``, the others
    ``joint_embedding``."""
    names = {
        f"{frame_embedding}.weight": "t1.joint_embedding.weight",
        f"{frame_embedding}.bias": "t1.joint_embedding.bias",
        "pos_embedding": "t1.pos_embedding",
        **_layers("transformer_encoder", "t1.transformer_encoder"),
    }
    if embedding == "conv":  # 1.1: BaseT1.joint_conv = Sequential(Conv1d, ReLU, Conv1d)
        for key in ("0.weight", "0.bias", "2.weight", "2.bias"):
            names[f"joint_conv.{key}"] = f"t1.joint_mixer.joint_conv.{key}"
    elif embedding == "spatial_transformer":  # 1.2: BaseT1.spatial_transformer
        for key in ("joint_embedding", "output_proj"):
            for part in ("weight", "bias"):
                names[f"spatial_transformer.{key}.{part}"] = f"t1.joint_mixer.{key}.{part}"
        names |= _layers("spatial_transformer.encoder", "t1.joint_mixer.encoder", 1)
    return names


T2_NAMES = _layers("encoder", "t2")  # BaseT2.encoder = nn.TransformerEncoder
MHA = ("in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias")
CROSS_ATTENTION_NAMES = {  # CrossAttention: cross_attention, norm, dropout
    "plain": {
        **{f"cross_attention.{k}": f"cross_attn.cross_attention.{k}" for k in MHA},
        "norm.weight": "cross_attn.norm1.weight",
        "norm.bias": "cross_attn.norm1.bias",
    },
    "ffn": {  # CrossAttentionWithFFN: cross_attention, norm1, ffn (Linear, ReLU, Dropout, Linear)
        **{f"cross_attention.{k}": f"cross_attn.cross_attention.{k}" for k in MHA},
        **{
            f"{key}.{part}": f"cross_attn.{key}.{part}"
            for key in ("norm1", "ffn.0", "ffn.3", "norm2")
            for part in ("weight", "bias")
        },
    },
}
HEAD_NAMES = {
    "linear": {"fc.weight": "head.weight", "fc.bias": "head.bias"},  # GaitRecognitionHead
    "mlp": {  # GaitRecognitionHeadMLP.net = (LayerNorm, Dropout, Linear, ReLU, Dropout, Linear)
        f"net.{i}.{part}": f"head.{i}.{part}" for i in (0, 2, 5) for part in ("weight", "bias")
    },
}
RECONSTRUCTION_HEAD = ("reconstruction_head.weight", "reconstruction_head.bias")
# (embedding, official frame-embedding name, NTU form): the official script families
OFFICIAL_FORMS = {
    "penn_action_1.0": ("linear", "embedding", False),
    "nwucla_1.0": ("linear", "joint_embedding", False),
    "ntu60_1.0": ("linear", "joint_embedding", True),
    "penn_action_1.1": ("conv", "joint_embedding", False),
    "penn_action_1.2": ("spatial_transformer", "joint_embedding", False),
    "ntu60_1.1": ("conv", "joint_embedding", True),
}


def _checkpoint_model(embedding: str, ntu: bool, seed: int) -> cf.CascadeFormer:
    """A tiny model with every parameter random (LayerNorms and biases too, so a swapped
    name changes the output)."""
    torch.manual_seed(seed)
    forms = {"cross_attention": "ffn", "head": "mlp"} if ntu else {}
    model = cf.CascadeFormer(
        num_classes=4, **{**TINY, "num_layers": LAYERS}, embedding=embedding, **forms
    )
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.3)
    return model.eval()


def _official_files(
    model: cf.CascadeFormer, embedding: str, frame_embedding: str, ntu: bool
) -> dict[str, dict[str, torch.Tensor]]:
    """``model``'s weights under the official names, one state dict per official file, each
    round-tripped through torch.save / torch.load as the official scripts do."""
    ours = model.state_dict()
    parts = {
        "t1": _official_t1(embedding, frame_embedding),
        "t2": T2_NAMES,
        "cross_attn": CROSS_ATTENTION_NAMES["ffn" if ntu else "plain"],
        "head": HEAD_NAMES["mlp" if ntu else "linear"],
    }
    assert sorted(v for names in parts.values() for v in names.values()) == sorted(ours)
    files = {}
    for part, names in parts.items():
        state = {official: ours[key].clone() for official, key in names.items()}
        if part == "t1":
            state["reconstruction_head.weight"] = torch.randn(V * C, TINY["d_model"])
            state["reconstruction_head.bias"] = torch.randn(V * C)
        buffer = io.BytesIO()
        torch.save(state, buffer)
        buffer.seek(0)
        files[part] = torch.load(buffer)
    return files


@pytest.mark.parametrize("form", sorted(OFFICIAL_FORMS))
def test_load_official_state_dict(form: str) -> None:
    embedding, frame_embedding, ntu = OFFICIAL_FORMS[form]
    source = _checkpoint_model(embedding, ntu, seed=1)
    files = _official_files(source, embedding, frame_embedding, ntu)
    model = _checkpoint_model(embedding, ntu, seed=2)
    x = torch.randn(2, C, T, V)
    with torch.no_grad():
        expected = source(x)
        assert not torch.allclose(model(x), expected)
        assert cf.load_official_state_dict(model, **files) is model
        torch.testing.assert_close(model(x), expected, rtol=0, atol=0)
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key

    # stage 1: the same T1 file, reconstruction head included, into the pretrainer
    torch.manual_seed(3)
    pretrainer = cf.CascadeFormerPretrainer(**{**TINY, "num_layers": LAYERS}, embedding=embedding)
    cf.load_official_state_dict(pretrainer.eval(), files["t1"])
    for key in RECONSTRUCTION_HEAD:
        assert torch.equal(pretrainer.state_dict()[key], files["t1"][key]), key
    weight, bias = (files["t1"][key] for key in RECONSTRUCTION_HEAD)
    with torch.no_grad():
        torch.testing.assert_close(pretrainer(x), F.linear(source.t1(x), weight, bias))


def test_load_official_state_dict_errors() -> None:
    files = _official_files(_checkpoint_model("linear", False, 1), "linear", "embedding", False)
    model = _checkpoint_model("linear", False, 2)
    before = {k: v.clone() for k, v in model.state_dict().items()}

    def load(model=model, **changes):
        cf.load_official_state_dict(model, **{**files, **changes})

    cross = dict(files["cross_attn"])
    del cross["norm.bias"]
    with pytest.raises(ValueError, match=r"cross_attn must .* missing \['norm.bias'\], unexpe"):
        load(cross_attn=cross)
    wrapped = {f"module.{k}": v for k, v in files["t2"].items()}
    with pytest.raises(ValueError, match=r"t2 must .* unexpected \['module.encoder.layers.0."):
        load(t2=wrapped)
    with pytest.raises(ValueError, match=r"head must .*'mlp' GaitRecognitionHeadMLP"):
        load(head={"net.0.weight": torch.ones(TINY["d_model"])})
    longer = {**files["t1"], "pos_embedding": torch.zeros(1, 32, TINY["d_model"])}
    with pytest.raises(
        ValueError,
        match=r"t1\['pos_embedding'\] must have shape \[1, 16, 16\] \(this model's "
        r"t1.pos_embedding\), got \[1, 32, 16\]",
    ):
        load(t1=longer)
    with pytest.raises(ValueError, match="head must be given for a CascadeFormer"):
        load(head=None)
    with pytest.raises(TypeError, match="t1 must be a state dict, got Linear"):
        load(t1=torch.nn.Linear(2, 2))
    # a failed load changes nothing
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key

    # the NTU model takes the NTU modules only
    ntu = _checkpoint_model("linear", True, 2)
    t1 = {k.removeprefix("embedding."): v for k, v in files["t1"].items()}
    t1 = {(f"joint_embedding.{k}" if k in ("weight", "bias") else k): v for k, v in t1.items()}
    with pytest.raises(ValueError, match=r"missing \['ffn.0.bias'.*unexpected \['norm.bias'"):
        load(ntu, t1=t1)
    with pytest.raises(ValueError, match=r"t1 must .* missing \['joint_conv.0.bias'"):
        load(_checkpoint_model("conv", False, 2))
    pretrainer = _pretrainer()
    with pytest.raises(ValueError, match="t2, head must be None for a CascadeFormerPretrainer"):
        cf.load_official_state_dict(pretrainer, files["t1"], t2=files["t2"], head=files["head"])
    with pytest.raises(ValueError, match=r"t1 must .* missing \['reconstruction_head.bias'\]"):
        cf.load_official_state_dict(
            pretrainer, {k: v for k, v in files["t1"].items() if k != "reconstruction_head.bias"}
        )
    with pytest.raises(TypeError, match="model must be a CascadeFormer or a Cascade.*, got Linear"):
        cf.load_official_state_dict(torch.nn.Linear(2, 2), files["t1"])
