"""Data for training and evaluation: in-memory skeleton sets, clip sampling, streams and
test-time views.

A :class:`SkeletonSet` holds variable-length sequences ``[C, T_i, V, M_i]`` (channels, frames,
joints, persons) and their labels. A batch samples each sequence to ``num_frames`` frames
(:func:`skelops.data.uniform_sample_frames`, pyskl's ``UniformSampleFrames``: random in
training, fixed per length in testing), keeps or zero-pads ``num_persons`` persons and gives
``[N, C, num_frames, V, num_persons]``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor

from .. import graphs
from ..data import transforms, uniform_sample_frames
from .config import ConfigError, DataConfig

__all__ = [
    "SkeletonSet",
    "augment",
    "batch_indices",
    "build_datasets",
    "build_eval_dataset",
    "center_skeletons",
    "flip_skeletons",
    "sample_generators",
    "to_stream",
]


@dataclasses.dataclass
class SkeletonSet:
    """Sequences ``[C, T_i, V, M_i]`` with labels ``[N]`` (``-1`` where unlabelled)."""

    sequences: list[Tensor]
    labels: Tensor
    layout: str | None = None

    def __len__(self) -> int:
        return len(self.sequences)

    @property
    def num_classes(self) -> int:
        """``max(label) + 1`` (0 when unlabelled)."""
        return int(self.labels.max()) + 1 if len(self) else 0

    def batch(
        self,
        indices: Sequence[int] | Tensor,
        num_frames: int,
        num_persons: int,
        *,
        clips: int = 1,
        generators: Sequence[torch.Generator] | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Clips ``[B * clips, C, num_frames, V, num_persons]`` (the ``clips`` samplings of a
        sequence adjacent) and labels ``[B]`` of the sequences at ``indices``.

        With ``generators`` (one per sequence) the frames are drawn at random (training),
        without them they are the fixed test-mode samplings."""
        indices = torch.as_tensor(indices, dtype=torch.int64).tolist()
        chosen = [self.sequences[i] for i in indices]
        lengths = torch.tensor([s.shape[1] for s in chosen], dtype=torch.int64)
        if generators is None:
            frames = uniform_sample_frames(lengths, num_frames, clips, train=False)
        else:
            frames = torch.cat(
                [
                    uniform_sample_frames(length[None], num_frames, clips, generator=g)
                    for length, g in zip(lengths, generators, strict=True)
                ]
            )  # [B, clips, T]
        channels, joints = chosen[0].shape[0], chosen[0].shape[2]
        out = chosen[0].new_zeros((len(chosen), clips, channels, num_frames, joints, num_persons))
        for row, (sequence, picks) in enumerate(zip(chosen, frames, strict=True)):
            persons = min(num_persons, sequence.shape[3])
            # [C, T_i, V, M] indexed by [clips, T] -> [C, clips, T, V, M]
            sampled = sequence[:, picks][..., :persons]
            out[row, :, :, :, :, :persons] = sampled.transpose(0, 1)
        return out.flatten(0, 1), self.labels[indices]


def sample_generators(
    indices: Sequence[int] | Tensor, epoch: int, seed: int
) -> list[torch.Generator]:
    """One random generator per sample, seeded by ``(seed, epoch, index)``.

    Keying the training randomness (frame sampling, augmentation) to the sample rather than to
    the process makes it independent of how a batch is split among processes, and a resumed
    run draws the same numbers as an uninterrupted one."""
    generators = []
    for index in torch.as_tensor(indices).tolist():
        key = ((seed * 1_000_003 + epoch) * 1_000_003 + index) % (2**63 - 1)
        generators.append(torch.Generator().manual_seed(key))
    return generators


def _valid_length(sequence: Tensor) -> int:
    """Frames up to the last one with any non-zero value (at least 1): NTU / pyskl pad with
    zeros after the valid frames."""
    nonzero = sequence.ne(0).flatten(2).any(dim=2).any(dim=0)  # [T]
    hits = torch.nonzero(nonzero).flatten()
    return int(hits[-1]) + 1 if hits.numel() else 1


def _from_tensor(x: Tensor, labels: Tensor, layout: str | None) -> SkeletonSet:
    sequences = [sample[:, : _valid_length(sample)] for sample in x]
    return SkeletonSet(sequences, labels.to(torch.int64), layout)


def _synthetic(config: DataConfig, seed: int, count: int) -> SkeletonSet:
    from ..data.synthetic import synthetic_actions

    if config.layout is None:
        raise ConfigError("data.layout must name a skeleton layout for synthetic data")
    x, labels = synthetic_actions(
        count,
        num_classes=config.num_classes,
        num_frames=config.num_frames,
        layout=config.layout,
        num_persons=config.num_persons,
        channels=config.channels,
        noise=config.noise,
        seed=seed,
    )
    return _from_tensor(x, labels, config.layout)


def _read(config: DataConfig, split: str | None) -> SkeletonSet:
    from ..data.readers import load_dataset

    if config.path is None:
        raise ConfigError(f"data.path must be set for data.source {config.source!r}")
    if not Path(config.path).exists():
        raise FileNotFoundError(f"data.path {config.path!r} does not exist")
    records = load_dataset(config.source, config.path, split=split, **config.reader_kwargs)
    if not records:
        raise ConfigError(
            f"data source {config.source!r} at {config.path!r} split {split!r} is empty"
        )
    layouts = sorted({r.layout for r in records})
    if len(layouts) != 1:
        raise ConfigError(f"data at {config.path!r} mixes skeleton layouts {layouts}")
    layout = config.layout or layouts[0]
    if layout != layouts[0]:
        raise ConfigError(f"data.layout is {config.layout!r} but the files hold {layouts[0]!r}")
    labels = torch.tensor([-1 if r.label is None else int(r.label) for r in records])
    sequences = [r.to_tensor(include_scores=config.include_scores) for r in records]
    return SkeletonSet(sequences, labels, layout)


def build_datasets(config: DataConfig) -> tuple[SkeletonSet, SkeletonSet | None]:
    """The training set and the validation set (``None`` when there is none) of ``config``:
    synthetic sets draw the validation samples with ``seed + 1``, readers read
    ``train_split`` and ``val_split``."""
    if config.source == "synthetic":
        train = _synthetic(config, config.seed, config.train_samples)
        val = (
            _synthetic(config, config.seed + 1, config.val_samples) if config.val_samples else None
        )
        return train, val
    train = _read(config, config.train_split)
    val = _read(config, config.val_split) if config.val_split is not None else None
    return train, val


def build_eval_dataset(config: DataConfig, split: str | None) -> SkeletonSet:
    """The set an evaluation reads: ``split`` (default ``val_split``) of a reader, or the
    synthetic validation samples (seed ``seed + 1``)."""
    if config.source == "synthetic":
        return _synthetic(config, config.seed + 1, config.val_samples or config.train_samples)
    return _read(config, split if split is not None else config.val_split)


def batch_indices(
    size: int, batch_size: int, epoch: int, seed: int, rank: int, world_size: int, shuffle: bool
) -> list[Tensor]:
    """This process's batches of one epoch, from :class:`torch.utils.data.DistributedSampler`
    (``seed + epoch`` permutation, ``drop_last``: the tail that does not divide among the
    processes is dropped).

    Rank ``r`` takes permutation positions ``r, r + W, ...``; its ``k``-th batch of
    ``batch_size`` therefore holds exactly the ``k``-th ``W * batch_size`` block of the
    permutation spread over the ranks, which is what one process with the global batch sees.
    Training batches are full (an incomplete last batch is dropped)."""
    from torch.utils.data import DistributedSampler

    sampler = DistributedSampler(
        range(size),
        num_replicas=world_size,
        rank=rank,
        shuffle=shuffle,
        seed=seed,
        drop_last=True,
    )
    sampler.set_epoch(epoch)
    order = torch.tensor(list(sampler), dtype=torch.int64)
    count = len(order) // batch_size
    return list(order[: count * batch_size].split(batch_size))


def to_stream(x: Tensor, stream: str, layout: str | None) -> Tensor:
    """The model input of joints ``x`` ``[N, C, T, V, M]``: ``joint``, ``bone``, ``motion``
    or ``bone_motion`` (:func:`skelops.data.transforms.to_stream`); the bone streams need
    ``layout``."""
    if layout is None and stream in ("bone", "bone_motion"):
        raise ConfigError(f"data.stream {stream!r} needs data.layout (for the bones)")
    return transforms.to_stream(x, stream, layout)


def flip_skeletons(x: Tensor, layout: str | graphs.Layout | None) -> Tensor:
    """Mirror ``x`` ``[N, C, T, V, M]`` horizontally with :func:`skelops.data.transforms.mirror`
    (``x`` reflected about each clip's mean over its present joints, the layout's left and
    right joints swapped)."""
    if layout is None:
        raise ConfigError("flipping needs data.layout (for its left/right joint pairs)")
    return transforms.mirror(x, layout)


def _coordinate_channels(x: Tensor, include_scores: bool) -> int:
    """The leading channels of ``x`` that are coordinates: all, or all but the last score
    channel."""
    channels = x.shape[1] - 1 if include_scores else x.shape[1]
    if channels not in (2, 3):
        raise ConfigError(
            f"the data must have 2 or 3 coordinate channels (plus a score channel when "
            f"data.include_scores), got {x.shape[1]} channels with "
            f"include_scores={include_scores}"
        )
    return channels


def _on_coordinates(
    x: Tensor, include_scores: bool, transform: Callable[[Tensor], Tensor]
) -> Tensor:
    """``transform`` applied to the coordinate channels of ``x`` only; a score channel passes
    through unchanged."""
    coordinates = _coordinate_channels(x, include_scores)
    if coordinates == x.shape[1]:
        return transform(x)
    return torch.cat((transform(x[:, :coordinates]), x[:, coordinates:]), dim=1)


def center_skeletons(
    x: Tensor, layout: str | graphs.Layout | None, *, include_scores: bool = False
) -> Tensor:
    """Translate each clip of ``x`` ``[N, C, T, V, M]`` so that the layout's centre joint of
    the first person, in the first frame where that person appears, sits at the origin
    (:func:`skelops.data.transforms.center`: CTR-GCN's / pyskl's centring). Absent joints stay
    zero; with ``include_scores`` the last (score) channel is left as it is."""
    if layout is None:
        raise ConfigError("data.center needs data.layout (for its centre joint)")
    skeleton = graphs.get_layout(layout)
    if skeleton.center is None:
        raise ConfigError(f"layout {skeleton.name!r} has no centre joint; set data.center=false")
    return _on_coordinates(x, include_scores, lambda c: transforms.center(c, skeleton.center))


def augment(x: Tensor, config: DataConfig, generators: Sequence[torch.Generator]) -> Tensor:
    """Training augmentation of joints ``x`` ``[N, C, T, V, M]`` with
    :mod:`skelops.data.transforms`, each step skipped when its setting is 0:
    :func:`~skelops.data.transforms.random_rotation` by up to ``config.rotation`` degrees (about
    x, y and z for 3-D coordinates, in the image plane for 2-D),
    :func:`~skelops.data.transforms.random_scale` by ``1 +- config.scale`` per axis,
    :func:`~skelops.data.transforms.random_shear` of every clip with off-diagonal entries up to
    ``config.shear``, then :func:`~skelops.data.transforms.random_mirror` with probability
    ``config.flip``. The geometric steps act on the coordinate channels only (a score channel,
    ``config.include_scores``, is kept); absent joints stay zero. Sample ``n`` draws its numbers
    from ``generators[n]`` (CPU generators), so its augmentation does not depend on the rest of
    the batch."""

    def geometric(coordinates: Tensor) -> Tensor:
        if config.rotation > 0:
            coordinates = transforms.random_rotation(
                coordinates, math.radians(config.rotation), generator=generators
            )
        if config.scale > 0:
            coordinates = transforms.random_scale(coordinates, config.scale, generator=generators)
        if config.shear > 0:
            coordinates = transforms.random_shear(
                coordinates, config.shear, p=1.0, generator=generators
            )
        return coordinates

    if config.rotation > 0 or config.scale > 0 or config.shear > 0:
        x = _on_coordinates(x, config.include_scores, geometric)
    if config.flip > 0:
        if config.layout is None:
            raise ConfigError("data.flip needs data.layout (for its left/right joint pairs)")
        x = transforms.random_mirror(x, config.layout, config.flip, generator=generators)
    return x
