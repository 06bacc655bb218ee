"""Training and evaluation loops.

:func:`train` runs a :class:`~skelops.training.config.TrainConfig` in one process or, under
``torchrun``, in several (DDP: NCCL on CUDA, Gloo on the CPU). :func:`evaluate` scores a
checkpoint with multi-clip and flip test-time augmentation; :func:`fuse_scores` combines the
scores of several streams as the HD-GCN and MP-GCN ensembles do.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import checkpoint as ckpt
from . import distributed
from .config import ConfigError, TrainConfig, config_to_dict
from .data import (
    SkeletonSet,
    augment,
    batch_indices,
    build_datasets,
    build_eval_dataset,
    center_skeletons,
    flip_skeletons,
    sample_generators,
    to_stream,
)

__all__ = [
    "TrainResult",
    "build_model",
    "evaluate",
    "fuse_scores",
    "learning_rate",
    "predict",
    "topk_accuracy",
    "train",
]


def learning_rate(
    step: int, total_steps: int, warmup_steps: int, lr: float, min_lr: float
) -> float:
    """Linear warm-up from ``lr / warmup_steps`` to ``lr`` over ``warmup_steps`` steps, then a
    cosine from ``lr`` to ``min_lr`` at ``total_steps``."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    span = max(total_steps - warmup_steps, 1)
    progress = min((step - warmup_steps) / span, 1.0)
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * progress))


def topk_accuracy(scores: Tensor, labels: Tensor, ks: Sequence[int] = (1, 5)) -> dict[int, int]:
    """Number of samples whose label is among the ``k`` best ``scores`` ``[N, K]``, per ``k``
    (``k`` capped at ``K``)."""
    ranked = scores.topk(min(max(ks), scores.shape[1]), dim=1).indices
    hits = ranked.eq(labels[:, None].to(ranked.device))
    return {k: int(hits[:, : min(k, scores.shape[1])].any(dim=1).sum()) for k in ks}


def _create(config: TrainConfig, **extra: Any) -> nn.Module:
    from .. import models

    try:
        return models.create(
            config.model.name, config.model.preset, **{**config.model.overrides, **extra}
        )
    except KeyError as error:
        raise ConfigError(error.args[0]) from None
    except TypeError as error:
        if "stage" in extra and "'stage'" in str(error):
            raise ConfigError(
                f"model {config.model.name!r} has no stages; task 'pretrain' and "
                f"model.init_stage1 need a two-stage model (e.g. cascadeformer)"
            ) from None
        raise ConfigError(
            f"model {config.model.name!r} rejects model.overrides {config.model.overrides}: {error}"
        ) from None


def build_model(config: TrainConfig) -> nn.Module:
    """The model of ``config``: ``skelops.models.create(name, preset, **overrides)``; its
    stage-1 pretrainer (``stage="pretrain"``) for ``task: pretrain``; a two-stage model's
    stage 1 loaded from ``model.init_stage1`` when set."""
    if config.task == "pretrain":
        model = _create(config, stage="pretrain")
        if not callable(getattr(model, "pretraining_loss", None)):
            raise ConfigError(
                f"task 'pretrain' needs a model with pretraining_loss(x); "
                f"{config.model.name!r} has none"
            )
        return model
    model = _create(config)
    if config.model.init_stage1 is not None:
        if not callable(getattr(model, "load_stage1", None)):
            raise ConfigError(
                f"model.init_stage1 needs a two-stage model with load_stage1(); "
                f"{config.model.name!r} has none"
            )
        pretrainer = _create(config, stage="pretrain")
        ckpt.load_model_weights(pretrainer, config.model.init_stage1)
        model.load_stage1(pretrainer)
    return model


class _PretrainObjective(nn.Module):
    """``forward(x)`` = the wrapped model's ``pretraining_loss(x)``, so that DDP sees the
    forward that produces the loss (its gradient hooks are set up in ``forward``)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return self.model.pretraining_loss(x, generator=generator)


def _autocast(amp: str, device: torch.device) -> contextlib.AbstractContextManager:
    if amp == "none":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def _optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    optim = config.optim
    parameters = [p for p in model.parameters() if p.requires_grad]
    if optim.name == "sgd":
        return torch.optim.SGD(
            parameters,
            lr=optim.lr,
            momentum=optim.momentum,
            nesterov=optim.nesterov and optim.momentum > 0,
            weight_decay=optim.weight_decay,
        )
    return torch.optim.AdamW(parameters, lr=optim.lr, weight_decay=optim.weight_decay)


def _rng_state(device: torch.device) -> dict[str, Tensor]:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _model_input(
    data: SkeletonSet,
    indices: Tensor,
    config: TrainConfig,
    generators: Sequence[torch.Generator] | None,
    device: torch.device,
    clips: int = 1,
) -> tuple[Tensor, Tensor]:
    x, labels = data.batch(
        indices,
        config.data.num_frames,
        config.data.num_persons,
        clips=clips,
        generators=generators,
    )
    # Centring, augmentation and streams run on the training device (the per-clip random
    # numbers are drawn on the host and moved there).
    x = x.to(device)
    if config.data.center:
        x = center_skeletons(x, data.layout, include_scores=config.data.include_scores)
    if generators is not None:
        x = augment(x, config.data, generators)
    return to_stream(x, config.data.stream, data.layout), labels.to(device)


def _check_labels(data: SkeletonSet, model: nn.Module, what: str) -> None:
    if bool((data.labels < 0).any()):
        raise ConfigError(f"the {what} data has unlabelled samples; task 'classify' needs labels")
    classes = getattr(model, "num_classes", None)
    if isinstance(classes, int) and data.num_classes > classes:
        raise ConfigError(
            f"the {what} data has labels up to {data.num_classes - 1} but the model has "
            f"{classes} classes; set model.overrides.num_classes"
        )


class _Logger:
    """JSON lines in ``output_dir/log.jsonl`` and one-line summaries on stderr (rank 0)."""

    def __init__(self, output_dir: Path, active: bool) -> None:
        self.active = active
        self.path = output_dir / "log.jsonl"

    def record(self, entry: dict[str, Any], echo: bool = False) -> None:
        if not self.active:
            return
        with self.path.open("a") as file:
            file.write(json.dumps(entry) + "\n")
        if echo:
            text = " ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in entry.items()
            )
            print(text, file=sys.stderr)


@torch.no_grad()
def _validate(
    model: nn.Module,
    data: SkeletonSet,
    config: TrainConfig,
    context: distributed.DistributedContext,
) -> dict[str, float]:
    """Validation on this rank's share (every ``W``-th sample), summed over the ranks."""
    model.eval()
    mine = torch.arange(context.rank, len(data), context.world_size)
    totals = [0.0, 0.0, 0.0, 0.0]  # loss sum, top-1 hits, top-5 hits, samples
    # A fixed generator: the pretraining masks are the same at every validation.
    generator = torch.Generator(device=context.device).manual_seed(config.run.seed)
    for indices in mine.split(config.eval.batch_size):
        x, labels = _model_input(data, indices, config, None, context.device)
        with _autocast(config.optim.amp, context.device):
            if config.task == "pretrain":
                loss = model(x, generator=generator)
                totals[0] += float(loss) * len(indices)
            else:
                logits = model(x).float()
                totals[0] += float(F.cross_entropy(logits, labels, reduction="sum"))
                hits = topk_accuracy(logits, labels)
                totals[1] += hits[1]
                totals[2] += hits[5]
        totals[3] += len(indices)
    loss, top1, top5, count = distributed.all_reduce_sum(totals, context)
    result = {"val_loss": loss / max(count, 1)}
    if config.task == "classify":
        result.update(val_top1=top1 / max(count, 1), val_top5=top5 / max(count, 1))
    return result


def _progress(total: int, epoch: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"epoch {epoch + 1}", leave=False, disable=not enabled)


@dataclasses.dataclass
class TrainResult:
    """What :func:`train` returns: the last epoch's ``metrics`` (``train_loss``,
    ``val_top1``, ...), the trained ``model`` (this process's copy, unwrapped), the run's
    ``output_dir``, the last ``checkpoint``'s weights path and this process's ``rank``."""

    metrics: dict[str, Any]
    model: nn.Module
    output_dir: Path
    checkpoint: Path
    rank: int = 0


def train(config: TrainConfig) -> TrainResult:
    """Train ``config``'s model; under ``torchrun`` every process calls this.

    Writes ``log.jsonl`` (one record per epoch, plus one every ``run.log_every`` steps) and
    the checkpoints ``last`` and ``best`` (``.safetensors`` weights, ``.state.pt`` state) to
    ``run.output_dir`` from rank 0."""
    context = distributed.setup(config.run.device)
    try:
        return _train(config, context)
    finally:
        distributed.teardown(context)


def _train(config: TrainConfig, context: distributed.DistributedContext) -> TrainResult:
    optim, run = config.optim, config.run
    if optim.batch_size % context.world_size:
        raise ConfigError(
            f"optim.batch_size {optim.batch_size} (the global batch) must be divisible by the "
            f"{context.world_size} processes"
        )
    if optim.amp == "fp16" and context.device.type != "cuda":
        raise ConfigError("optim.amp 'fp16' needs a CUDA device; use 'bf16' on the CPU")
    local_batch = optim.batch_size // context.world_size
    output_dir = Path(run.output_dir)
    if context.is_main:
        output_dir.mkdir(parents=True, exist_ok=True)

    # Same seed on every rank: identical initial weights (DDP would broadcast rank 0's anyway).
    torch.manual_seed(run.seed)
    model = build_model(config)
    train_set, val_set = build_datasets(config.data)
    if config.task == "classify":
        _check_labels(train_set, model, "training")
        if val_set is not None:
            _check_labels(val_set, model, "validation")
        objective: nn.Module = model
    else:
        objective = _PretrainObjective(model)
    objective.to(context.device)
    optimizer = _optimizer(config, objective)
    scaler = torch.amp.GradScaler("cuda", enabled=optim.amp == "fp16")
    start_epoch, best = 0, -math.inf
    # Dropout and pretraining masks differ per rank, like the data each rank sees.
    torch.manual_seed(run.seed + context.rank)
    if run.resume is not None:
        weights_path, state_path = ckpt.resolve_resume(run.resume)
        ckpt.load_model_weights(model, weights_path)
        state = ckpt.load_training_state(state_path)
        if len(state["rng"]) != context.world_size:
            raise ConfigError(
                f"cannot resume {str(state_path)!r} exactly: it was saved by "
                f"{len(state['rng'])} processes, this run has {context.world_size}"
            )
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        start_epoch, best = int(state["epoch"]), float(state["best"])
        _set_rng_state(state["rng"][context.rank], context.device)
    if context.distributed and run.sync_bn:
        if context.device.type != "cuda":
            raise ConfigError("run.sync_bn needs CUDA devices (torch's SyncBatchNorm is GPU-only)")
        objective = nn.SyncBatchNorm.convert_sync_batchnorm(objective)
    trained = objective
    if context.distributed:
        device_ids = [context.device.index] if context.device.type == "cuda" else None
        trained = nn.parallel.DistributedDataParallel(objective, device_ids=device_ids)

    steps_per_epoch = (len(train_set) // context.world_size) // local_batch
    if steps_per_epoch == 0:
        raise ConfigError(
            f"optim.batch_size {optim.batch_size} is larger than the training set "
            f"({len(train_set)} samples)"
        )
    total_steps = optim.epochs * steps_per_epoch
    warmup_steps = round(optim.warmup_epochs * steps_per_epoch)

    logger = _Logger(output_dir, context.is_main)
    config_dict = config_to_dict(config)
    record: dict[str, Any] = {}
    step = start_epoch * steps_per_epoch
    for epoch in range(start_epoch, optim.epochs):
        trained.train()
        totals = [0.0, 0.0, 0.0]  # loss sum, hits, samples
        started = time.perf_counter()
        batches = batch_indices(
            len(train_set), local_batch, epoch, run.seed, context.rank, context.world_size, True
        )
        bar = _progress(len(batches), epoch, run.progress and context.is_main)
        for indices in batches:
            lr = learning_rate(step, total_steps, warmup_steps, optim.lr, optim.min_lr)
            for group in optimizer.param_groups:
                group["lr"] = lr
            generators = sample_generators(indices, epoch, run.seed)
            x, labels = _model_input(train_set, indices, config, generators, context.device)
            with _autocast(optim.amp, context.device):
                output = trained(x)
            if config.task == "pretrain":
                loss = output.float()
            else:
                logits = output.float()
                loss = F.cross_entropy(logits, labels, label_smoothing=optim.label_smoothing)
                totals[1] += topk_accuracy(logits.detach(), labels, (1,))[1]
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if optim.grad_clip > 0:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(objective.parameters(), optim.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            step += 1
            totals[0] += float(loss.detach()) * len(indices)
            totals[2] += len(indices)
            seconds = time.perf_counter() - started
            postfix = {
                "loss": f"{totals[0] / totals[2]:.4f}",
                "samples/s": f"{totals[2] * context.world_size / seconds:.1f}",
            }
            if config.task == "classify":
                postfix["acc"] = f"{totals[1] / totals[2]:.3f}"
            bar.set_postfix(postfix, refresh=False)
            bar.update()
            if step % run.log_every == 0:
                entry = {"step": step, "epoch": epoch + 1, "lr": lr, "loss": float(loss.detach())}
                logger.record(entry)
        bar.close()
        loss_sum, hits, count = distributed.all_reduce_sum(totals, context)
        seconds = time.perf_counter() - started
        record = {
            "epoch": epoch + 1,
            "step": step,
            "lr": lr,
            "train_loss": loss_sum / count,
            "samples_per_s": count / seconds,
        }
        if config.task == "classify":
            record["train_top1"] = hits / count
        if val_set is not None:
            record.update(_validate(objective, val_set, config, context))
        score = record.get("val_top1", -record.get("val_loss", record["train_loss"]))
        improved = score > best
        best = max(best, score)
        logger.record(record, echo=True)

        rng = distributed.all_gather_objects(_rng_state(context.device), context)
        last_epoch = epoch + 1 == optim.epochs
        if context.is_main and ((epoch + 1) % run.checkpoint_every == 0 or last_epoch):
            state = {
                "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict(),
                "epoch": epoch + 1,
                "step": step,
                "best": best,
                "rng": rng,
            }
            ckpt.save_checkpoint(output_dir, "last", model, state, config_dict)
            if improved:
                ckpt.save_checkpoint(output_dir, "best", model, None, config_dict)
    weights = ckpt.model_weights_path(output_dir, "last")
    return TrainResult(record, model, output_dir, weights, context.rank)


@torch.no_grad()
def predict(
    model: nn.Module,
    data: SkeletonSet,
    config: TrainConfig,
    device: torch.device,
    clips: int | None = None,
    flip: bool | None = None,
    progress: bool = False,
) -> Tensor:
    """Scores ``[N, K]`` of every sequence of ``data``: ``clips`` test-mode samplings (default
    ``config.eval.clips``), each also mirrored when ``flip`` (default ``config.eval.flip``;
    left/right joints swapped by the layout's flip pairs), their softmax probabilities (or
    logits, ``config.eval.average``) averaged."""
    clips = config.eval.clips if clips is None else clips
    flip = config.eval.flip if flip is None else flip
    model.eval()
    scores = []
    order = torch.arange(len(data))
    from tqdm.auto import tqdm

    for indices in tqdm(order.split(config.eval.batch_size), disable=not progress, leave=False):
        x, _ = data.batch(indices, config.data.num_frames, config.data.num_persons, clips=clips)
        if config.data.center:
            x = center_skeletons(x, data.layout, include_scores=config.data.include_scores)
        views = [x]
        if flip:
            views.append(flip_skeletons(x, data.layout))
        outputs = []
        for view in views:
            inputs = to_stream(view, config.data.stream, data.layout).to(device)
            with _autocast(config.optim.amp, device):
                logits = model(inputs).float()
            outputs.append(logits.softmax(dim=1) if config.eval.average == "softmax" else logits)
        stacked = torch.stack(outputs, 1).view(len(indices), len(views) * clips, -1)
        scores.append(stacked.mean(dim=1).cpu())
    return torch.cat(scores)


def evaluate(
    config: TrainConfig,
    checkpoint: str | Path,
    *,
    split: str | None = None,
    output_dir: str | Path | None = None,
    clips: int | None = None,
    flip: bool | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Score ``checkpoint`` on ``split`` (default ``data.val_split``; synthetic: the held-out
    samples) with :func:`predict`, write ``scores.npy`` ``[N, K]`` and ``labels.npy`` ``[N]``
    to ``output_dir`` (default ``run.output_dir/eval``) and return top-1 / top-5 accuracy
    and the paths."""
    if config.task != "classify":
        raise ConfigError("eval scores classifiers; the config has task 'pretrain'")
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint {str(checkpoint)!r} does not exist")
    device = distributed.select_device(config.run.device)
    data = build_eval_dataset(config.data, split)
    model = build_model(config)
    ckpt.load_model_weights(model, checkpoint)
    model.to(device)
    scores = predict(model, data, config, device, clips, flip, progress)
    output_dir = (
        Path(output_dir) if output_dir is not None else Path(config.run.output_dir) / "eval"
    )
    output_dir.mkdir(parents=True, exist_ok=True)
    np.save(output_dir / "scores.npy", scores.numpy())
    np.save(output_dir / "labels.npy", data.labels.numpy())
    result: dict[str, Any] = {"samples": len(data)}
    if bool((data.labels >= 0).all()):
        hits = topk_accuracy(scores, data.labels)
        result.update(top1=hits[1] / len(data), top5=hits[5] / len(data))
    result.update(scores=str(output_dir / "scores.npy"), labels=str(output_dir / "labels.npy"))
    return result


def fuse_scores(
    scores: Sequence[np.ndarray | Tensor],
    weights: Sequence[float] | None = None,
    normalize: str = "none",
) -> Tensor:
    """Late fusion of per-stream scores ``[N, K]``: ``sum_i weights[i] * f(scores[i])``.

    ``normalize="none"`` is MP-GCN's ensemble (``script/ensemble.py``: weighted sum, e.g.
    weights 0.4 0.4 0.2 0.2 for joint, bone, joint motion, bone motion); ``"l2"`` divides every
    sample's score vector by its L2 norm first, as HD-GCN's ``ensemble.py`` does (with unit
    weights); ``"softmax"`` fuses probabilities. Weights default to ones."""
    if not scores:
        raise ValueError("scores must hold at least one [N, K] array, got none")
    tensors = [torch.as_tensor(np.asarray(s), dtype=torch.float64) for s in scores]
    shape = tensors[0].shape
    for i, t in enumerate(tensors):
        if t.dim() != 2 or t.shape != shape:
            raise ValueError(
                f"scores[{i}] must be [N, K] like scores[0] {tuple(shape)}, got {tuple(t.shape)}"
            )
    weights = [1.0] * len(tensors) if weights is None else list(weights)
    if len(weights) != len(tensors):
        raise ValueError(
            f"weights must have {len(tensors)} entries (one per stream), got {weights}"
        )
    if normalize == "l2":
        tensors = [t / t.norm(dim=1, keepdim=True).clamp(min=1e-12) for t in tensors]
    elif normalize == "softmax":
        tensors = [t.softmax(dim=1) for t in tensors]
    elif normalize != "none":
        raise ValueError(f"normalize must be 'none', 'l2' or 'softmax', got {normalize!r}")
    return sum(w * t for w, t in zip(weights, tensors, strict=True))
