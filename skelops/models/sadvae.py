"""SA-DVAE: zero-shot skeleton action recognition by disentangled VAEs (Li, Wei, Chen, Yu,
Yang and Hsu, "SA-DVAE: Improving Zero-Shot Skeleton-Based Action Recognition by
Disentangled Variational Autoencoders", ECCV 2024; arXiv:2407.13460).

Architecture, losses, schedules and hyper-parameters read from the official code,
pha123661/SA-DVAE: ``model.py``, ``train.py``, ``gating_train.py``, ``gating_eval.py`` and
``scripts/train_eval_synse_split.sh``.

**Inputs.** SA-DVAE works on features, not skeletons: one pooled feature vector per sample
from a skeleton classifier trained on the seen classes (official: Shift-GCN, 256-d), and one
text embedding per class (official: the class name through Sentence-BERT ``stsb-bert-large``,
1,024-d). :class:`FeatureExtractor` takes the skeleton features from any skelops model (the
input of its classification layer, for skeletons ``[N, C, T, V]`` / ``[N, C, T, V, M]`` or
whatever the model accepts); the text features come from any callable
``encode(list[str]) -> Tensor[num_classes, text_dim]``, e.g.
:func:`skelops.text_encoders.offline_text_encoder`. Class text features are L2-normalised
inside (the official preprocessing, ``normalize_text``).

**Model** (:class:`SADVAE`). A skeleton VAE whose encoder is two linear maps (mean and
log-variance) to ``semantic_dim + style_dim`` latents, split into a semantic part ``z_s`` and a
style part ``z_v``, and whose decoder is ``Linear -> ReLU`` back to the feature; a text VAE of
the same form with a ``semantic_dim`` latent. Official initialisation: Xavier-uniform weights
with gain 0.5, zero biases. With 256-d skeleton and 1,024-d text features, semantic 160 and
style 8 (``ntu60``) the two VAEs have **622,480** parameters (skeleton encoder 86,352,
decoder 43,264; text encoder 328,000, decoder 164,864), and the total-correlation
discriminator ``Linear(168, 42) -> ReLU -> Linear(42, 1) -> Sigmoid`` has **7,141**; counts
taken from the official modules built with these sizes.

**Loss** (:meth:`SADVAE.loss`), per batch of skeleton features ``x``, labels ``y`` and class
text features ``t = T[y]``: reconstructions ``MSE(x, D_x([z_s, z_v]))`` and
``MSE(t, D_t(z_t))``; KL terms (summed over latent dimensions, averaged over the batch) of
``z_s``, ``z_v`` and ``z_t``; cross-alignment reconstructions ``MSE(x, D_x([z_t, z_v]))`` and
``MSE(t, D_t(z_s))``; and the total-correlation penalty ``mean D([z_s, z_v])``, the
discriminator's belief that the pair was drawn jointly. Total::

    rec_x + rec_t + w_kl (KL_s + KL_v) + w_kl2 (KL_t + TC) + w_cross (cross_x + cross_t)

The discriminator (:class:`TotalCorrelationDiscriminator`) learns, with binary cross-entropy,
to tell jointly drawn pairs ``[z_s, z_v]`` and ``[z_t, z_v]`` from pairs whose two halves
were permuted independently across the batch (:meth:`SADVAE.discriminator_step`, every
``discriminator_step`` iterations, its loss scaled by ``w_kl2``).

**Schedules** (:func:`official_loss_weights`), with ``i`` the iteration within a cycle (one
pass over the training set) of ``L`` iterations: ``w_kl = max(0.1 (i - 1000 L / 1700) /
(3000 L / 1700), 0)``, ``w_kl2 = max(0.1 (i - int(0.8 L)) / (3000 L / 1700), 0)`` from the
third cycle on (0 in cycles 0 and 1), ``w_cross = 1`` for ``i > int(0.8 L)`` else 0: all
restart every cycle. With ``beta_x``/``beta_y`` given (official ``--beta_x/--beta_y``):
0 up to ``L / 3``, then ``1.5 (i / L - 1/3) beta``. Defaults (:class:`SADVAETraining`) are the
official NTU-60 script's: 10 cycles, batch 32, Adam at 3.389e-5 for the VAEs and the
discriminator, a discriminator step every 5 iterations.

The official script also retrains the zero-shot classifier after every cycle and keeps the
cycle with the best accuracy on the unseen test samples; :meth:`SADVAE.fit` leaves model
selection to the caller, since choosing on test data of the unseen classes leaks them.

**Zero-shot classifier** (:meth:`SADVAE.train_zero_shot_classifier`). 500 latents per unseen
class are drawn once from the text VAE's posterior of the class text; a ``Linear -> ReLU``
classifier (the official ``MLP``, ReLU included) is trained on them for 300 full-batch Adam
steps at 1e-3. Skeleton samples are classified from their semantic posterior mean
(:meth:`SADVAE.predict_unseen`).

**Generalised ZSL gate** (:class:`GeneralizedZeroShotGate`). A logistic regression decides
seen or unseen from the ``k`` (= number of unseen classes) largest zero-shot probabilities
and the ``k`` largest temperature-scaled seen-class probabilities of the skeleton backbone,
sorted; the sample then takes the backbone's seen-class prediction or the zero-shot one
(:meth:`SADVAE.predict_generalized`). Officially the gate is trained on held-out samples of
the *seen* classes: a second SA-DVAE is trained with some seen classes held out as
pseudo-unseen, and its outputs on samples of those (label "unseen") and of the remaining
seen classes (label "seen") train the gate, which is then used with the main model
(``model.gate = validation_model.fit_gate(...)``). The seen samples are subsampled to the
number of unseen ones, ``min(300, n // 6)`` of each kind are held out, and the temperature
(1 to 9) and threshold (0.25 to 0.74) with the best held-out accuracy are kept, unless given
(NTU-120 script: temperature 2, threshold 0.5). Two official details are simplified: one
held-out split serves all temperatures (the official redraws it per temperature), and the
threshold applies to ``P(unseen)`` both when chosen and when used (the official evaluation
compares ``P(seen)`` with the threshold chosen for ``P(unseen)``; the same at 0.5).

**Reproduced quirks.** The reparameterisation draws one noise value per sample, shared by all
latent dimensions (``eps`` of shape ``[B, 1]`` in ``model.py``; ``shared_noise=False`` draws
per dimension); decoders end in a ReLU, so negative text-feature components cannot be
reconstructed; the zero-shot classifier's logits pass through a ReLU.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .registry import Preset, register_model

__all__ = [
    "FeatureExtractor",
    "GaussianEncoder",
    "GeneralizedZeroShotGate",
    "LossWeights",
    "SADVAE",
    "SADVAETraining",
    "TotalCorrelationDiscriminator",
    "ZeroShotClassifier",
    "build_sadvae",
    "official_loss_weights",
    "pooled_features",
]

# train.py's schedule is written for a nominal cycle of 1,700 iterations.
_NOMINAL_CYCLE = 1700


def _init_linear(layer: nn.Linear) -> nn.Linear:
    """Official ``weights_init``: Xavier-uniform weight with gain 0.5, zero bias."""
    if not layer.weight.is_meta:
        nn.init.xavier_uniform_(layer.weight, gain=0.5)
        nn.init.zeros_(layer.bias)
    return layer


def _reparameterize(mu: Tensor, logvar: Tensor, shared_noise: bool) -> Tensor:
    shape = (mu.shape[0], 1) if shared_noise else mu.shape
    eps = torch.randn(shape, dtype=mu.dtype, device=mu.device)
    return mu + eps * torch.exp(0.5 * logvar)


def _kl_divergence(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)), summed over dimensions, averaged over the batch."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum() / mu.shape[0]


def _check_features(name: str, features: Tensor, dim: int) -> None:
    if not isinstance(features, Tensor) or features.dim() != 2 or features.shape[1] != dim:
        shape = list(features.shape) if isinstance(features, Tensor) else type(features).__name__
        raise ValueError(f"{name} must be [N, {dim}], got {shape}")
    if features.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one row, got {list(features.shape)}")


def _check_class_ids(name: str, classes: Sequence[int]) -> tuple[int, ...]:
    ids = tuple(int(c) for c in classes)
    if not ids or len(set(ids)) != len(ids) or min(ids) < 0:
        raise ValueError(f"{name} must be distinct non-negative class indices, got {list(ids)}")
    return ids


class GaussianEncoder(nn.Module):
    """Single-layer Gaussian encoder: two ``nn.Linear`` maps to the posterior mean and
    log-variance (official ``Encoder`` with ``layer_sizes = [in, latent]``)."""

    def __init__(self, in_features: int, latent_features: int):
        super().__init__()
        self.mean = _init_linear(nn.Linear(in_features, latent_features))
        self.logvar = _init_linear(nn.Linear(in_features, latent_features))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x [N, in]`` -> ``(mean, logvar)``, each ``[N, latent]``."""
        return self.mean(x), self.logvar(x)


def _decoder(latent_features: int, out_features: int) -> nn.Sequential:
    """Official ``Decoder([latent, out])``: ``Linear -> ReLU``."""
    return nn.Sequential(_init_linear(nn.Linear(latent_features, out_features)), nn.ReLU())


class TotalCorrelationDiscriminator(nn.Module):
    """``Linear(d, d // 4) -> ReLU -> Linear(d // 4, 1) -> Sigmoid`` on ``[N, d]`` latent
    pairs; returns ``[N, 1]`` probabilities that the pair was drawn jointly (official
    ``Discriminator``; 7,141 parameters for ``d = 168``)."""

    def __init__(self, latent_features: int):
        super().__init__()
        hidden = latent_features // 4
        if hidden < 1:
            raise ValueError(f"latent_features must be >= 4, got {latent_features}")
        self.net = nn.Sequential(
            _init_linear(nn.Linear(latent_features, hidden)),
            nn.ReLU(),
            _init_linear(nn.Linear(hidden, 1)),
            nn.Sigmoid(),
        )

    def forward(self, pairs: Tensor) -> Tensor:
        return self.net(pairs)


class ZeroShotClassifier(nn.Module):
    """``Linear(semantic_dim, U) -> ReLU`` over the unseen classes (official ``MLP``), with the
    dataset class index of each output in ``unseen_classes``."""

    unseen_classes: Tensor

    def __init__(self, semantic_dim: int, unseen_classes: Sequence[int]):
        super().__init__()
        ids = _check_class_ids("unseen_classes", unseen_classes)
        self.net = nn.Sequential(_init_linear(nn.Linear(semantic_dim, len(ids))), nn.ReLU())
        self.register_buffer("unseen_classes", torch.tensor(ids, dtype=torch.long))

    def forward(self, semantic: Tensor) -> Tensor:
        """Scores ``[N, U]`` of semantic latents ``[N, semantic_dim]``."""
        return self.net(semantic)


@dataclasses.dataclass(frozen=True)
class LossWeights:
    """Weights of one iteration: ``kl_skeleton`` (KL of ``z_s`` and ``z_v``), ``kl_text`` (KL
    of ``z_t``, the total-correlation penalty and the discriminator loss), ``cross_alignment``
    (both cross reconstructions)."""

    kl_skeleton: float
    kl_text: float
    cross_alignment: float


def official_loss_weights(
    step: int,
    steps_per_cycle: int,
    cycle: int,
    beta_x: float | None = None,
    beta_y: float | None = None,
) -> LossWeights:
    """The official schedules (``train.py``) at iteration ``step`` of ``steps_per_cycle`` in
    cycle ``cycle`` (from 0); see the module docstring."""
    if steps_per_cycle < 1 or not 0 <= step < steps_per_cycle:
        raise ValueError(
            f"step must be in [0, steps_per_cycle) with steps_per_cycle >= 1, got step={step}, "
            f"steps_per_cycle={steps_per_cycle}"
        )
    if (beta_x is None) != (beta_y is None):
        raise ValueError(
            f"beta_x and beta_y must both be given or both None, got {beta_x}, {beta_y}"
        )
    length = steps_per_cycle
    cross_start = int(0.8 * length)
    if beta_x is None:
        ramp = 3000 * length / _NOMINAL_CYCLE
        kl_skeleton = max(0.1 * (step - 1000 * length / _NOMINAL_CYCLE) / ramp, 0.0)
        kl_text = max(0.1 * (step - cross_start) / ramp, 0.0) * float(cycle > 1)
    elif step <= int(length / 3):
        kl_skeleton = kl_text = 0.0
    else:
        progress = 1.5 * (step / length - 1 / 3)
        kl_skeleton, kl_text = progress * beta_x, progress * beta_y
    return LossWeights(kl_skeleton, kl_text, float(step > cross_start))


@dataclasses.dataclass(frozen=True)
class SADVAETraining:
    """Training hyper-parameters; defaults are the official NTU-60 ones
    (``scripts/train_eval_synse_split.sh``, ``train.py``, ``gating_train.py``).

    Attributes:
        cycles: passes over the training set (``--num_cycles``); the schedules restart each.
        batch_size: samples per iteration.
        learning_rate: Adam learning rate of the VAEs and of the discriminator.
        discriminator_step: train the discriminator every this many iterations (``--dis_step``).
        beta_x, beta_y: the alternative linear KL schedule (both or neither).
        classifier_samples_per_class: text-VAE latents drawn per unseen class.
        classifier_epochs: full-batch Adam steps of the zero-shot classifier.
        classifier_learning_rate: its Adam learning rate.
        gate_temperature: seen-score temperature of the gate (None: pick 1..9 on held-out data).
        gate_threshold: ``P(unseen)`` threshold (None: pick 0.25..0.74 on held-out data).
    """

    cycles: int = 10
    batch_size: int = 32
    learning_rate: float = 3.389022400898623e-05
    discriminator_step: int = 5
    beta_x: float | None = None
    beta_y: float | None = None
    classifier_samples_per_class: int = 500
    classifier_epochs: int = 300
    classifier_learning_rate: float = 1e-3
    gate_temperature: float | None = None
    gate_threshold: float | None = None

    def __post_init__(self) -> None:
        for name in ("cycles", "batch_size", "discriminator_step", "classifier_samples_per_class"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not isinstance(self.classifier_epochs, int) or self.classifier_epochs < 0:
            raise ValueError(
                f"classifier_epochs must be an int >= 0, got {self.classifier_epochs!r}"
            )
        if (self.beta_x is None) != (self.beta_y is None):
            raise ValueError(
                "beta_x and beta_y must both be given or both None, got "
                f"{self.beta_x}, {self.beta_y}"
            )


class GeneralizedZeroShotGate(nn.Module):
    """Seen-or-unseen gate for generalised zero-shot recognition: logistic regression on the
    ``k`` largest zero-shot probabilities and the ``k`` largest ``softmax(seen_logits / T)``
    values, each sorted descending (official ``gating_train.py``); ``k`` is the number of
    unseen classes. :meth:`forward` returns ``P(unseen)``; a sample is unseen when it exceeds
    ``threshold``. Fit with :meth:`fit`."""

    temperature: Tensor
    threshold: Tensor

    def __init__(self, num_unseen: int, temperature: float = 1.0, threshold: float = 0.5):
        super().__init__()
        if not isinstance(num_unseen, int) or num_unseen < 1:
            raise ValueError(f"num_unseen must be a positive int, got {num_unseen!r}")
        self.num_unseen = num_unseen
        self.linear = nn.Linear(2 * num_unseen, 1)
        self.register_buffer("temperature", torch.tensor(float(temperature)))
        self.register_buffer("threshold", torch.tensor(float(threshold)))

    def features(self, unseen_probabilities: Tensor, seen_logits: Tensor) -> Tensor:
        """``[N, 2k]`` gate features from zero-shot probabilities ``[N, k]`` and backbone
        seen-class logits ``[N, S]`` (``S >= k``)."""
        return _gate_features(unseen_probabilities, seen_logits, self.num_unseen, self.temperature)

    def forward(self, unseen_probabilities: Tensor, seen_logits: Tensor) -> Tensor:
        """``P(unseen)`` ``[N]``."""
        features = self.features(unseen_probabilities, seen_logits)
        return torch.sigmoid(self.linear(features.to(self.linear.weight.dtype))).squeeze(-1)

    def is_unseen(self, unseen_probabilities: Tensor, seen_logits: Tensor) -> Tensor:
        """Boolean ``[N]``: ``P(unseen) > threshold``."""
        return self(unseen_probabilities, seen_logits) > self.threshold

    @classmethod
    def fit(
        cls,
        unseen_probabilities: Tensor,
        seen_logits: Tensor,
        is_unseen: Tensor,
        temperature: float | None = None,
        threshold: float | None = None,
        generator: torch.Generator | None = None,
    ) -> GeneralizedZeroShotGate:
        """Fit the gate as ``gating_train.py`` does (see the module docstring).

        Args:
            unseen_probabilities: ``[N, k]`` zero-shot softmax probabilities.
            seen_logits: ``[N, S]`` backbone logits over the seen classes.
            is_unseen: ``[N]`` bool, True for samples of (pseudo-)unseen classes.
            temperature: fixed seen-score temperature, or None to pick from 1..9.
            threshold: fixed threshold, or None to pick from 0.25..0.74.
            generator: random source of the subsampling and held-out split.
        """
        n, k = unseen_probabilities.shape if unseen_probabilities.dim() == 2 else (0, 0)
        if n == 0 or k == 0:
            raise ValueError(
                f"unseen_probabilities must be a non-empty [N, k], got "
                f"{list(unseen_probabilities.shape)}"
            )
        if seen_logits.dim() != 2 or seen_logits.shape[0] != n:
            raise ValueError(f"seen_logits must be [{n}, S], got {list(seen_logits.shape)}")
        if is_unseen.shape != (n,) or is_unseen.dtype != torch.bool:
            raise ValueError(
                f"is_unseen must be a bool tensor [{n}], got {is_unseen.dtype} "
                f"{list(is_unseen.shape)}"
            )
        unseen_rows = torch.nonzero(is_unseen).squeeze(1).cpu()
        seen_rows = torch.nonzero(~is_unseen).squeeze(1).cpu()
        if len(unseen_rows) < 6 or len(seen_rows) < 6:
            raise ValueError(
                "is_unseen must mark at least 6 unseen and 6 seen samples (a sixth of each is "
                f"held out), got {len(unseen_rows)} unseen and {len(seen_rows)} seen"
            )
        # balance: as many seen samples as unseen ones
        count = min(len(unseen_rows), len(seen_rows))
        seen_rows = seen_rows[torch.randperm(len(seen_rows), generator=generator)[:count]]
        unseen_rows = unseen_rows[torch.randperm(len(unseen_rows), generator=generator)[:count]]
        held = min(300, count // 6)
        train_rows = torch.cat([unseen_rows[held:], seen_rows[held:]])
        held_rows = torch.cat([unseen_rows[:held], seen_rows[:held]])
        targets = is_unseen.cpu().double()
        probabilities = unseen_probabilities.detach().cpu().double()
        logits = seen_logits.detach().cpu().double()

        temperatures = range(1, 10) if temperature is None else (temperature,)
        thresholds = [t / 100 for t in range(25, 75)] if threshold is None else [threshold]
        best: tuple[float, GeneralizedZeroShotGate] | None = None
        for t in temperatures:
            gate = cls(k, temperature=float(t)).double()
            features = gate.features(probabilities, logits)
            _fit_logistic_regression(gate.linear, features[train_rows], targets[train_rows])
            with torch.no_grad():
                p_unseen = torch.sigmoid(gate.linear(features[held_rows])).squeeze(-1)
            accuracies = [
                (((p_unseen > th).double() == targets[held_rows]).double().mean().item(), th)
                for th in thresholds
            ]
            accuracy, chosen = max(accuracies, key=lambda a: a[0])
            gate.threshold.fill_(chosen)
            if best is None or accuracy > best[0]:
                best = (accuracy, gate)
        assert best is not None
        return best[1].float().to(unseen_probabilities.device)


def _gate_features(
    unseen_probabilities: Tensor, seen_logits: Tensor, k: int, temperature: Tensor | float
) -> Tensor:
    if unseen_probabilities.dim() != 2 or unseen_probabilities.shape[1] != k:
        raise ValueError(
            f"unseen_probabilities must be [N, {k}], got {list(unseen_probabilities.shape)}"
        )
    n = unseen_probabilities.shape[0]
    if seen_logits.dim() != 2 or seen_logits.shape[0] != n or seen_logits.shape[1] < k:
        raise ValueError(
            f"seen_logits must be [{n}, S] with S >= {k} seen classes, got "
            f"{list(seen_logits.shape)}"
        )
    # official temp_scale: softmax((logits + 1e-12) / T)
    seen_probabilities = torch.softmax((seen_logits + 1e-12) / temperature, dim=1)
    return torch.cat(
        [unseen_probabilities.topk(k, dim=1).values, seen_probabilities.topk(k, dim=1).values],
        dim=1,
    )


def _fit_logistic_regression(linear: nn.Linear, features: Tensor, targets: Tensor) -> None:
    """scikit-learn's ``LogisticRegression(C=1)`` objective, summed log-loss plus
    ``||w||^2 / 2`` (bias not penalised), minimised by L-BFGS as in ``gating_train.py``."""
    with torch.no_grad():
        linear.weight.zero_()
        linear.bias.zero_()
    optimizer = torch.optim.LBFGS(
        linear.parameters(), lr=1.0, max_iter=500, tolerance_grad=1e-9, tolerance_change=1e-12,
        line_search_fn="strong_wolfe",
    )  # fmt: skip

    def closure() -> Tensor:
        optimizer.zero_grad()
        logits = linear(features).squeeze(-1)
        loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="sum")
        loss = loss + 0.5 * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)


class SADVAE(nn.Module):
    """SA-DVAE's skeleton and text VAEs with the zero-shot classifier and the generalised
    zero-shot gate (see the module docstring for the method and its sources).

    Args:
        skeleton_dim: skeleton feature size (official Shift-GCN / ST-GCN features: 256).
        text_dim: class text feature size (official ``stsb-bert-large``: 1,024; 384 with
            :func:`skelops.text_encoders.offline_text_encoder`).
        semantic_dim: semantic latent size, shared by ``z_s`` and ``z_t`` (``--latent_size``).
        style_dim: style latent size of ``z_v`` (``--i_latent_size``).
        normalize_text: L2-normalise class text features, as the official preprocessing.
        shared_noise: draw one reparameterisation noise value per sample for all latent
            dimensions, as the official code does (False: independent per dimension).
        training: default hyper-parameters of :meth:`fit`, the classifier and the gate.

    ``forward(skeleton_features [N, skeleton_dim])`` returns the semantic posterior mean
    ``[N, semantic_dim]``. :attr:`zero_shot_classifier` and :attr:`gate` are None until
    trained; to reload a trained model, assign ``ZeroShotClassifier(semantic_dim, unseen)``
    and ``GeneralizedZeroShotGate(num_unseen)`` before ``load_state_dict``.
    """

    zero_shot_classifier: ZeroShotClassifier | None
    gate: GeneralizedZeroShotGate | None

    def __init__(
        self,
        skeleton_dim: int = 256,
        text_dim: int = 1024,
        semantic_dim: int = 160,
        style_dim: int = 8,
        normalize_text: bool = True,
        shared_noise: bool = True,
        training: SADVAETraining | None = None,
    ):
        super().__init__()
        for name, value in (
            ("skeleton_dim", skeleton_dim),
            ("text_dim", text_dim),
            ("semantic_dim", semantic_dim),
            ("style_dim", style_dim),
        ):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.skeleton_dim = skeleton_dim
        self.text_dim = text_dim
        self.semantic_dim = semantic_dim
        self.style_dim = style_dim
        self.normalize_text = normalize_text
        self.shared_noise = shared_noise
        self.training_config = SADVAETraining() if training is None else training
        latent = semantic_dim + style_dim
        self.skeleton_encoder = GaussianEncoder(skeleton_dim, latent)
        self.skeleton_decoder = _decoder(latent, skeleton_dim)
        self.text_encoder = GaussianEncoder(text_dim, semantic_dim)
        self.text_decoder = _decoder(semantic_dim, text_dim)
        self.zero_shot_classifier = None
        self.gate = None

    # -- encoders -------------------------------------------------------------------------

    def encode_skeleton(self, skeleton_features: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(semantic mean, semantic logvar, style mean, style logvar)`` of skeleton features
        ``[N, skeleton_dim]``."""
        _check_features("skeleton_features", skeleton_features, self.skeleton_dim)
        mean, logvar = self.skeleton_encoder(skeleton_features)
        s = self.semantic_dim
        return mean[:, :s], logvar[:, :s], mean[:, s:], logvar[:, s:]

    def forward(self, skeleton_features: Tensor) -> Tensor:
        """Semantic posterior mean ``[N, semantic_dim]`` of skeleton features."""
        return self.encode_skeleton(skeleton_features)[0]

    def prepare_text(self, class_text_features: Tensor) -> Tensor:
        """Validate ``[C, text_dim]`` class text features; L2-normalise if ``normalize_text``."""
        _check_features("class_text_features", class_text_features, self.text_dim)
        if self.normalize_text:
            return F.normalize(class_text_features, dim=1)
        return class_text_features

    def text_features(
        self, text_encoder: Callable[[list[str]], Tensor], class_texts: Sequence[str]
    ) -> Tensor:
        """``text_encoder(list(class_texts))``, checked to be ``[len(class_texts), text_dim]``."""
        texts = list(class_texts)
        features = text_encoder(texts)
        if not isinstance(features, Tensor) or features.shape != (len(texts), self.text_dim):
            shape = (
                list(features.shape) if isinstance(features, Tensor) else type(features).__name__
            )
            raise ValueError(
                f"text_encoder must return [{len(texts)}, {self.text_dim}] (one text_dim row per "
                f"class text), got {shape}"
            )
        return features.float()

    def _check_labels(self, labels: Tensor, n: int, num_classes: int) -> None:
        if labels.shape != (n,) or labels.dtype != torch.long:
            raise ValueError(
                f"labels must be an int64 tensor [{n}], got {labels.dtype} {list(labels.shape)}"
            )
        if n and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(
                f"labels must index the {num_classes} rows of class_text_features, got values in "
                f"[{labels.min().item()}, {labels.max().item()}]"
            )

    # -- training -------------------------------------------------------------------------

    def loss(
        self,
        skeleton_features: Tensor,
        labels: Tensor,
        class_text_features: Tensor,
        weights: LossWeights,
        discriminator: TotalCorrelationDiscriminator | None = None,
    ) -> dict[str, Tensor]:
        """Loss terms of one batch and their weighted ``"total"``.

        Args:
            skeleton_features: ``[B, skeleton_dim]``.
            labels: ``[B]`` int64 class indices into ``class_text_features``.
            class_text_features: ``[C, text_dim]``, one row per class.
            weights: this iteration's :class:`LossWeights`.
            discriminator: gives the total-correlation term (0 without one).

        Returns:
            ``skeleton_reconstruction``, ``text_reconstruction``, ``kl_semantic``, ``kl_style``,
            ``kl_text``, ``skeleton_from_text``, ``text_from_skeleton``, ``total_correlation``
            and ``total`` (scalars).
        """
        text = self.prepare_text(class_text_features)
        s_mu, s_logvar, v_mu, v_logvar = self.encode_skeleton(skeleton_features)
        self._check_labels(labels, skeleton_features.shape[0], text.shape[0])
        text = text[labels]
        t_mu, t_logvar = self.text_encoder(text)
        z_s = _reparameterize(s_mu, s_logvar, self.shared_noise)
        z_v = _reparameterize(v_mu, v_logvar, self.shared_noise)
        z_t = _reparameterize(t_mu, t_logvar, self.shared_noise)
        terms = {
            "skeleton_reconstruction": F.mse_loss(
                self.skeleton_decoder(torch.cat([z_s, z_v], 1)), skeleton_features
            ),
            "text_reconstruction": F.mse_loss(self.text_decoder(z_t), text),
            "kl_semantic": _kl_divergence(s_mu, s_logvar),
            "kl_style": _kl_divergence(v_mu, v_logvar),
            "kl_text": _kl_divergence(t_mu, t_logvar),
            "skeleton_from_text": F.mse_loss(
                self.skeleton_decoder(torch.cat([z_t, z_v], 1)), skeleton_features
            ),
            "text_from_skeleton": F.mse_loss(self.text_decoder(z_s), text),
            "total_correlation": (
                discriminator(torch.cat([z_s, z_v], 1)).mean()
                if discriminator is not None
                else z_s.new_zeros(())
            ),
        }
        terms["total"] = (
            terms["skeleton_reconstruction"]
            + terms["text_reconstruction"]
            + weights.kl_skeleton * (terms["kl_semantic"] + terms["kl_style"])
            + weights.kl_text * (terms["kl_text"] + terms["total_correlation"])
            + weights.cross_alignment * (terms["skeleton_from_text"] + terms["text_from_skeleton"])
        )
        return terms

    def discriminator_loss(
        self,
        skeleton_features: Tensor,
        labels: Tensor,
        class_text_features: Tensor,
        discriminator: TotalCorrelationDiscriminator,
    ) -> Tensor:
        """Binary cross-entropy of ``discriminator`` telling joint latent pairs (label 1) from
        batch-permuted ones (label 0), averaged over the skeleton pairs ``[z_s, z_v]`` and the
        text pairs ``[z_t, z_v]``; the latents are fresh samples, without gradient."""
        text = self.prepare_text(class_text_features)
        with torch.no_grad():
            s_mu, s_logvar, v_mu, v_logvar = self.encode_skeleton(skeleton_features)
            self._check_labels(labels, skeleton_features.shape[0], text.shape[0])
            t_mu, t_logvar = self.text_encoder(text[labels])
        losses = []
        for mu, logvar in ((s_mu, s_logvar), (t_mu, t_logvar)):
            z = _reparameterize(mu, logvar, self.shared_noise)
            z_v = _reparameterize(v_mu, v_logvar, self.shared_noise)
            b = z.shape[0]
            joint = discriminator(torch.cat([z, z_v], 1))
            permuted = discriminator(
                torch.cat(
                    [
                        z[torch.randperm(b, device=z.device)],
                        z_v[torch.randperm(b, device=z.device)],
                    ],
                    1,
                )
            )
            losses.append(
                (
                    F.binary_cross_entropy(joint, torch.ones_like(joint))
                    + F.binary_cross_entropy(permuted, torch.zeros_like(permuted))
                )
                / 2
            )
        return (losses[0] + losses[1]) / 2

    def discriminator_step(
        self,
        skeleton_features: Tensor,
        labels: Tensor,
        class_text_features: Tensor,
        discriminator: TotalCorrelationDiscriminator,
        optimizer: torch.optim.Optimizer,
        weight: float,
    ) -> float:
        """One optimizer step of ``discriminator`` on ``weight *`` :meth:`discriminator_loss`
        (the official scale is the ``kl_text`` weight; a zero weight still steps, as
        officially). Returns the unscaled loss."""
        discriminator.train()
        loss = self.discriminator_loss(
            skeleton_features, labels, class_text_features, discriminator
        )
        optimizer.zero_grad()
        (weight * loss).backward()
        optimizer.step()
        discriminator.eval()
        return loss.item()

    def make_discriminator(self) -> TotalCorrelationDiscriminator:
        """A discriminator for this model's ``semantic_dim + style_dim`` latent pairs."""
        device = self.skeleton_encoder.mean.weight.device
        return TotalCorrelationDiscriminator(self.semantic_dim + self.style_dim).to(device)

    def fit(
        self,
        skeleton_features: Tensor,
        labels: Tensor,
        class_text_features: Tensor,
        training: SADVAETraining | None = None,
        discriminator: TotalCorrelationDiscriminator | None = None,
    ) -> list[dict[str, float]]:
        """Train the VAEs on the seen classes as ``train.py`` does.

        Each cycle shuffles the samples into batches of ``batch_size``; iteration ``i`` takes
        its :func:`official_loss_weights`, steps the discriminator every
        ``discriminator_step`` iterations, then Adam-steps the VAEs on :meth:`loss`.

        Args:
            skeleton_features: ``[N, skeleton_dim]`` features of seen-class samples.
            labels: ``[N]`` int64 indices into ``class_text_features``.
            class_text_features: ``[C, text_dim]`` (all classes, or the seen ones).
            training: hyper-parameters (default: :attr:`training_config`).
            discriminator: the total-correlation discriminator to train along (default: a new
                one from :meth:`make_discriminator`).

        Returns:
            Per cycle, the mean of each loss term over its iterations.
        """
        config = self.training_config if training is None else training
        _check_features("skeleton_features", skeleton_features, self.skeleton_dim)
        _check_features("class_text_features", class_text_features, self.text_dim)
        self._check_labels(labels, skeleton_features.shape[0], class_text_features.shape[0])
        if discriminator is None:
            discriminator = self.make_discriminator()
        optimizer = torch.optim.Adam(
            [p for name, p in self.named_parameters() if name.split(".")[0] in _VAE_MODULES],
            lr=config.learning_rate,
        )
        discriminator_optimizer = torch.optim.Adam(
            discriminator.parameters(), lr=config.learning_rate
        )
        n = skeleton_features.shape[0]
        steps = math.ceil(n / config.batch_size)
        history = []
        for cycle in range(config.cycles):
            order = torch.randperm(n, device=skeleton_features.device)
            sums: dict[str, float] = {}
            countdown = config.discriminator_step
            self.train()
            for step in range(steps):
                rows = order[step * config.batch_size : (step + 1) * config.batch_size]
                x, y = skeleton_features[rows], labels[rows]
                weights = official_loss_weights(step, steps, cycle, config.beta_x, config.beta_y)
                countdown -= 1
                if countdown == 0:
                    countdown = config.discriminator_step
                    self.discriminator_step(
                        x, y, class_text_features, discriminator, discriminator_optimizer,
                        weights.kl_text,
                    )  # fmt: skip
                discriminator.eval()
                terms = self.loss(x, y, class_text_features, weights, discriminator)
                optimizer.zero_grad()
                terms["total"].backward()
                optimizer.step()
                for key, value in terms.items():
                    sums[key] = sums.get(key, 0.0) + value.item()
            history.append({key: value / steps for key, value in sums.items()})
        self.eval()
        return history

    # -- zero-shot classification ---------------------------------------------------------

    def train_zero_shot_classifier(
        self,
        unseen_text_features: Tensor,
        unseen_classes: Sequence[int] | None = None,
        training: SADVAETraining | None = None,
    ) -> ZeroShotClassifier:
        """Train :attr:`zero_shot_classifier` on latents drawn from the text VAE's posterior of
        each unseen class's text (official ``train_classifier``).

        Args:
            unseen_text_features: ``[U, text_dim]``, one row per unseen class.
            unseen_classes: the dataset class index of each row, returned by the predictions
                (default ``0 .. U - 1``).
            training: ``classifier_*`` hyper-parameters (default: :attr:`training_config`).
        """
        config = self.training_config if training is None else training
        text = self.prepare_text(unseen_text_features)
        count = text.shape[0]
        ids = tuple(range(count)) if unseen_classes is None else tuple(unseen_classes)
        if len(ids) != count:
            raise ValueError(
                f"unseen_classes must name one class per row of unseen_text_features ({count}), "
                f"got {len(ids)}"
            )
        classifier = ZeroShotClassifier(self.semantic_dim, ids).to(text.device)
        self.eval()
        with torch.no_grad():
            repeated = text.repeat(config.classifier_samples_per_class, 1)
            mu, logvar = self.text_encoder(repeated)
            latents = _reparameterize(mu, logvar, self.shared_noise)
            targets = torch.arange(count, device=text.device).repeat(
                config.classifier_samples_per_class
            )
        optimizer = torch.optim.Adam(classifier.parameters(), lr=config.classifier_learning_rate)
        classifier.train()
        for _ in range(config.classifier_epochs):
            optimizer.zero_grad()
            F.cross_entropy(classifier(latents), targets).backward()
            optimizer.step()
        self.zero_shot_classifier = classifier.eval()
        return self.zero_shot_classifier

    def _classifier(self) -> ZeroShotClassifier:
        if self.zero_shot_classifier is None:
            raise RuntimeError(
                "the zero-shot classifier is not trained: call train_zero_shot_classifier first"
            )
        return self.zero_shot_classifier

    def unseen_probabilities(self, skeleton_features: Tensor) -> Tensor:
        """Softmax ``[N, U]`` of the zero-shot classifier on the semantic posterior means."""
        return torch.softmax(self._classifier()(self(skeleton_features)), dim=1)

    def predict_unseen(self, skeleton_features: Tensor) -> Tensor:
        """Unseen class index ``[N]`` (from ``unseen_classes``) of each skeleton feature."""
        classifier = self._classifier()
        return classifier.unseen_classes[classifier(self(skeleton_features)).argmax(1)]

    # -- generalised zero-shot ------------------------------------------------------------

    def fit_gate(
        self,
        skeleton_features: Tensor,
        seen_logits: Tensor,
        is_unseen: Tensor,
        training: SADVAETraining | None = None,
        generator: torch.Generator | None = None,
    ) -> GeneralizedZeroShotGate:
        """Fit :attr:`gate` (:meth:`GeneralizedZeroShotGate.fit`) on held-out samples, using this
        model's zero-shot probabilities. Officially this model is a validation model whose
        unseen classes are seen classes held out; assign its gate to the main model.

        Args:
            skeleton_features: ``[N, skeleton_dim]``.
            seen_logits: ``[N, S]`` backbone logits over the seen classes.
            is_unseen: ``[N]`` bool, True for samples of this model's unseen classes.
            training: ``gate_temperature`` / ``gate_threshold`` (default: :attr:`training_config`).
            generator: random source of the subsampling and held-out split.
        """
        config = self.training_config if training is None else training
        with torch.no_grad():
            probabilities = self.unseen_probabilities(skeleton_features)
        self.gate = GeneralizedZeroShotGate.fit(
            probabilities,
            seen_logits,
            is_unseen,
            temperature=config.gate_temperature,
            threshold=config.gate_threshold,
            generator=generator,
        )
        return self.gate

    def predict_generalized(
        self, skeleton_features: Tensor, seen_logits: Tensor, seen_classes: Sequence[int]
    ) -> Tensor:
        """Generalised zero-shot prediction ``[N]`` over seen and unseen classes: where
        :attr:`gate` says unseen, the zero-shot class; elsewhere the backbone's best seen
        class (official ``gating_eval.py``).

        Args:
            skeleton_features: ``[N, skeleton_dim]``.
            seen_logits: ``[N, S]`` backbone logits over the seen classes, column ``j`` for
                class ``seen_classes[j]``.
            seen_classes: the dataset class index of each column of ``seen_logits``.
        """
        classifier = self._classifier()
        seen = _check_class_ids("seen_classes", seen_classes)
        if seen_logits.dim() != 2 or seen_logits.shape != (skeleton_features.shape[0], len(seen)):
            raise ValueError(
                f"seen_logits must be [{skeleton_features.shape[0]}, {len(seen)}] (samples x "
                f"seen_classes), got {list(seen_logits.shape)}"
            )
        overlap = sorted(set(seen) & set(classifier.unseen_classes.tolist()))
        if overlap:
            raise ValueError(f"seen_classes must not include unseen classes, got {overlap}")
        if self.gate is None:
            raise RuntimeError("the gate is not fitted: call fit_gate or assign a gate first")
        probabilities = self.unseen_probabilities(skeleton_features)
        unseen = self.gate.is_unseen(probabilities, seen_logits)
        seen_ids = torch.tensor(seen, device=seen_logits.device)
        return torch.where(
            unseen,
            classifier.unseen_classes[probabilities.argmax(1)],
            seen_ids[seen_logits.argmax(1)],
        )


_VAE_MODULES = ("skeleton_encoder", "skeleton_decoder", "text_encoder", "text_decoder")


# -- skeleton features from skelops models --------------------------------------------------


def _out_width(module: nn.Module) -> int:
    return module.out_features if isinstance(module, nn.Linear) else module.out_channels


def _is_head_candidate(module: nn.Module) -> bool:
    if isinstance(module, nn.Linear):
        return True
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        return all(k == 1 for k in module.kernel_size) and module.groups == 1
    return False


class FeatureExtractor(nn.Module):
    """Pooled features of a skelops classifier: the input of its classification layer.

    Args:
        model: any classifier, e.g. ``skelops.models.create("stgcn", preset="ntu60")``,
            taking what it takes (``[N, C, T, V, M]`` skeletons for ST-GCN) and returning
            logits ``[N, num_classes]``.
        head: the classification layer, by module name (``"fcn"``) or module. ``None``: found
            on the first call among the ``nn.Linear`` and pointwise convolution layers whose
            output width is the class count: the one whose output is the model's output
            (same storage), else the only one.

    ``forward(x)`` runs ``model(x)`` and returns the head input flattened to ``[N, D]``
    (ST-GCN: the 256-d average over frames, joints and persons).
    """

    def __init__(self, model: nn.Module, head: str | nn.Module | None = None):
        super().__init__()
        self.model = model
        modules = dict(model.named_modules())
        if isinstance(head, str):
            if head not in modules:
                raise ValueError(f"head must name a module of model, got {head!r}")
            self.head_name: str | None = head
        elif isinstance(head, nn.Module):
            names = [name for name, module in modules.items() if module is head]
            if not names:
                raise ValueError("head must be a submodule of model, got a foreign module")
            self.head_name = names[0]
        elif head is None:
            self.head_name = None
        else:
            raise ValueError(f"head must be a module name, a module or None, got {head!r}")

    def _find_head(self, x: Tensor) -> Tensor:
        calls: list[tuple[str, Tensor, Tensor]] = []
        handles = []
        for name, module in self.model.named_modules():
            if _is_head_candidate(module):
                handles.append(
                    module.register_forward_hook(
                        lambda m, args, out, name=name: calls.append((name, args[0], out))
                    )
                )
        try:
            output = self.model(x)
        finally:
            for handle in handles:
                handle.remove()
        logits = output if isinstance(output, Tensor) else output[0]
        modules = dict(self.model.named_modules())
        width = logits.shape[-1]
        matching = [c for c in calls if _out_width(modules[c[0]]) == width]
        same_storage = [
            c
            for c in matching
            if c[2].untyped_storage().data_ptr() == logits.untyped_storage().data_ptr()
        ]
        names = sorted({c[0] for c in matching})
        if same_storage:
            name, features, _ = same_storage[-1]
        elif len(names) == 1:
            name, features, _ = matching[-1]
        elif not names:
            raise ValueError(
                f"no classification head found in {type(self.model).__name__}: no nn.Linear or "
                f"pointwise convolution with {width} outputs (the class count); pass head=<name>"
            )
        else:
            raise ValueError(
                f"several layers of {type(self.model).__name__} could be the classification head "
                f"({width} outputs): {names}; pass head=<name>"
            )
        self.head_name = name
        return features

    def forward(self, x: Tensor) -> Tensor:
        if self.head_name is None:
            features = self._find_head(x)
        else:
            captured: list[Tensor] = []
            head = dict(self.model.named_modules())[self.head_name]
            handle = head.register_forward_pre_hook(lambda m, args: captured.append(args[0]))
            try:
                self.model(x)
            finally:
                handle.remove()
            if not captured:
                raise ValueError(f"head {self.head_name!r} was not called by the model's forward")
            features = captured[-1]
        return _pooled(features, self.head_name)


def _pooled(features: Tensor, head_name: str | None) -> Tensor:
    if features.dim() > 2 and all(s == 1 for s in features.shape[2:]):
        return features.flatten(1)
    if features.dim() != 2:
        raise ValueError(
            f"the input of head {head_name!r} must be pooled features [N, D] (or [N, D, 1, ...]), "
            f"got {list(features.shape)}; pass another head"
        )
    return features


def pooled_features(model: nn.Module, x: Tensor, head: str | nn.Module | None = None) -> Tensor:
    """``FeatureExtractor(model, head)(x)``: the ``[N, D]`` input of ``model``'s
    classification layer for input ``x``."""
    return FeatureExtractor(model, head)(x)


# -- registration ---------------------------------------------------------------------------

# scripts/train_eval_synse_split.sh (Shift-GCN features, stsb-bert-large text)
NTU60_TRAINING = SADVAETraining(
    learning_rate=3.389022400898623e-05, batch_size=32, discriminator_step=5
)
NTU120_TRAINING = SADVAETraining(
    learning_rate=3.4779964302664534e-05,
    batch_size=32,
    discriminator_step=4,
    gate_temperature=2.0,
    gate_threshold=0.5,
)


@register_model(
    "sadvae",
    presets={
        "ntu60": Preset(
            kwargs={
                "skeleton_dim": 256,
                "text_dim": 1024,
                "semantic_dim": 160,
                "style_dim": 8,
                "training": NTU60_TRAINING,
            },
            description="NTU RGB+D 60, SynSE 55/5 and 48/12 splits (the official script uses "
            "the same settings for both): 256-d Shift-GCN features, 1,024-d stsb-bert-large "
            "text, semantic 160, style 8; VAEs 622,480 parameters, discriminator 7,141",
            parameter_count=622_480,
        ),
        "ntu120": Preset(
            kwargs={
                "skeleton_dim": 256,
                "text_dim": 1024,
                "semantic_dim": 256,
                "style_dim": 32,
                "training": NTU120_TRAINING,
            },
            description="NTU RGB+D 120, SynSE 110/10 and 96/24 splits: semantic 256, style 32, "
            "gate temperature 2 and threshold 0.5; VAEs 1,009,984 parameters, discriminator "
            "20,881",
            parameter_count=1_009_984,
        ),
    },
    default_preset="ntu60",
    summary="SA-DVAE: zero-shot recognition from skeleton features and class text by "
    "disentangled VAEs, with a generalised zero-shot gate",
)
def build_sadvae(**kwargs: object) -> SADVAE:
    """Build :class:`SADVAE` (keyword arguments as its constructor)."""
    return SADVAE(**kwargs)  # type: ignore[arg-type]
