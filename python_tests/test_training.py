"""The training package (``skelops.training``): configs and overrides, the learning-rate
schedule, batches and the distributed sampler's blocks, flips and augmentation, score fusion,
checkpoints, exact resume, mixed precision, and CascadeFormer's two stages.

Training runs use a tiny CascadeFormer (a few thousand parameters, no BatchNorm) on a small
synthetic set; every run takes a second or two.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TINY_CASCADEFORMER

from skelops import graphs
from skelops.data import transforms
from skelops.training import (
    ConfigError,
    build_model,
    config_from_dict,
    fuse_scores,
    learning_rate,
    load_config,
    load_model_weights,
    load_training_state,
    predict,
    topk_accuracy,
    train,
)
from skelops.training.data import (
    SkeletonSet,
    augment,
    batch_indices,
    build_datasets,
    center_skeletons,
    flip_skeletons,
    sample_generators,
    to_stream,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _tiny_config(tmp_path, **sections) -> dict:
    """A tiny CascadeFormer run on 48 synthetic clips of 4 classes (12 frames, 1 person)."""
    values = {
        "model": {
            "name": "cascadeformer",
            "preset": "ntu60",
            "overrides": dict(TINY_CASCADEFORMER),
        },
        "data": {
            "source": "synthetic",
            "layout": "ntu_stgcn",
            "num_frames": 12,
            "num_persons": 1,
            "num_classes": 4,
            "train_samples": 48,
            "val_samples": 16,
        },
        "optim": {"name": "adamw", "lr": 3e-3, "epochs": 2, "batch_size": 8, "warmup_epochs": 1},
        "run": {"output_dir": str(tmp_path / "run"), "progress": False, "seed": 3},
    }
    for section, entries in sections.items():
        if isinstance(entries, dict):
            values.setdefault(section, {}).update(entries)
        else:
            values[section] = entries
    return values


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# ---------------------------------------------------------------------------------------------
# config


def test_config_yaml_and_overrides(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("model: {name: stgcn, overrides: {num_classes: 7}}\noptim: {lr: 0.2}\n")
    config = load_config(path, ["optim.lr=0.05", "data.num_frames=32", "model.overrides.x=[1, 2]"])
    assert config.model.name == "stgcn"
    assert config.model.overrides == {"num_classes": 7, "x": [1, 2]}
    assert config.optim.lr == 0.05
    assert config.data.num_frames == 32
    assert config.optim.epochs == 10  # a default
    # ints are accepted where floats are expected
    assert load_config(None, ["optim.lr=1"]).optim.lr == 1.0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["optim.lrr=0.1"], r"unknown key 'optim.lrr'; valid keys of section 'optim': name, lr"),
        (["bogus.key=1"], r"unknown key 'bogus'; valid keys of the top level: task, model"),
        (["optim.lr=fast"], r"optim.lr must be float, got 'fast'"),
        (["optim.name=adam"], r"optim.name must be 'sgd' \| 'adamw', got 'adam'"),
        (["data.num_frames=0"], r"data.num_frames must be > 0, got 0"),
        (["data.num_frames=3.5"], r"data.num_frames must be int, got 3.5"),
        (["run.progress=maybe"], r"run.progress must be bool, got 'maybe'"),
        (["optim=3"], r"optim must be a mapping, got 3"),
        (["optim.label_smoothing=1.0"], r"label_smoothing must be in \[0, 1\), got 1.0"),
        (["novalue"], r"override must look like section.key=value, got 'novalue'"),
    ],
)
def test_config_errors_name_the_key(overrides, message) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_config_file_errors(tmp_path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n- not a mapping\n")
    with pytest.raises(ConfigError, match="must hold a mapping, got list"):
        load_config(bad)


def test_build_model_errors() -> None:
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        build_model(config_from_dict({"model": {"name": "nope"}}))
    with pytest.raises(ConfigError, match="unknown preset 'nope' for model 'stgcn'"):
        build_model(config_from_dict({"model": {"name": "stgcn", "preset": "nope"}}))
    with pytest.raises(ConfigError, match="rejects model.overrides"):
        build_model(config_from_dict({"model": {"name": "stgcn", "overrides": {"widht": 3}}}))
    with pytest.raises(ConfigError, match="'ensemble1d' has no stages; task 'pretrain'"):
        build_model(config_from_dict({"task": "pretrain", "model": {"name": "ensemble1d"}}))


# ---------------------------------------------------------------------------------------------
# schedule, metrics, fusion


def test_learning_rate_warmup_then_cosine() -> None:
    lrs = [learning_rate(s, total_steps=10, warmup_steps=4, lr=1.0, min_lr=0.1) for s in range(10)]
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lrs[4] == pytest.approx(1.0)
    assert lrs[7] == pytest.approx(0.1 + 0.45 * (1 + np.cos(np.pi * 3 / 6)))
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:], strict=False))
    assert learning_rate(10, 10, 4, 1.0, 0.1) == pytest.approx(0.1)


def test_topk_accuracy() -> None:
    scores = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5]])
    labels = torch.tensor([1, 1, 0])
    assert topk_accuracy(scores, labels, (1, 2, 5)) == {1: 1, 2: 2, 5: 3}


def test_fuse_scores_hdgcn_and_mpgcn_rules() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
    l2 = fuse_scores([a, b], normalize="l2").numpy()
    expected = a / np.linalg.norm(a, axis=1, keepdims=True) + b / np.linalg.norm(
        b, axis=1, keepdims=True
    )
    np.testing.assert_allclose(l2, expected, rtol=1e-12)
    weighted = fuse_scores([a, b], [0.6, 0.4]).numpy()
    np.testing.assert_allclose(weighted, 0.6 * a + 0.4 * b, rtol=1e-12)
    with pytest.raises(ValueError, match=r"weights must have 2 entries"):
        fuse_scores([a, b], [1.0])
    with pytest.raises(ValueError, match=r"scores\[1\] must be \[N, K\] like scores\[0\]"):
        fuse_scores([a, b[:3]])
    with pytest.raises(ValueError, match="normalize must be"):
        fuse_scores([a], normalize="max")


# ---------------------------------------------------------------------------------------------
# data


def test_batch_samples_frames_and_pads_persons() -> None:
    torch.manual_seed(0)
    long = torch.randn(3, 40, 25, 2)
    short = torch.randn(3, 5, 25, 1)
    data = SkeletonSet([long, short], torch.tensor([1, 0]), "ntu_stgcn")
    x, labels = data.batch([1, 0], num_frames=8, num_persons=2, clips=3)
    assert x.shape == (6, 3, 8, 25, 2)
    assert labels.tolist() == [0, 1]
    # the short clip loops over its 5 frames, its missing second person is zero
    assert bool((x[:3, ..., 1] == 0).all())
    for clip in x[:3, ..., 0]:
        for t in range(8):
            assert any(torch.equal(clip[:, t], short[:, s, :, 0]) for s in range(5))
    # test-mode clips are fixed; training draws differ per generator but repeat per seed
    again, _ = data.batch([1, 0], 8, 2, clips=3)
    assert torch.equal(x, again)
    first, _ = data.batch([0], 8, 2, generators=sample_generators([0], epoch=0, seed=1))
    second, _ = data.batch([0], 8, 2, generators=sample_generators([0], epoch=0, seed=1))
    other, _ = data.batch([0], 8, 2, generators=sample_generators([0], epoch=1, seed=1))
    assert torch.equal(first, second)
    assert not torch.equal(first, other)


def test_synthetic_sets_are_held_out() -> None:
    config = config_from_dict(_tiny_config(Path("unused"))).data
    train_set, val_set = build_datasets(config)
    assert len(train_set) == 48 and len(val_set) == 16
    assert train_set.num_classes == 4
    assert train_set.sequences[0].shape[1] <= 12  # cut to the valid frames
    first = train_set.sequences[0]
    assert not any(s.shape == first.shape and torch.equal(s, first) for s in val_set.sequences)


@pytest.mark.parametrize("world_size", [2, 3])
def test_rank_batches_union_is_the_global_batch(world_size) -> None:
    size, local = 30, 4
    single = batch_indices(size, local * world_size, 5, 7, 0, 1, True)
    ranks = [batch_indices(size, local, 5, 7, r, world_size, True) for r in range(world_size)]
    assert all(len(r) == len(ranks[0]) for r in ranks)
    for k in range(len(ranks[0])):
        union = torch.cat([r[k] for r in ranks])
        assert sorted(union.tolist()) == sorted(single[k].tolist())
        assert len(set(union.tolist())) == local * world_size
    epoch0, epoch1 = (torch.cat(batch_indices(size, 4, e, 7, 0, 1, True)) for e in (0, 1))
    assert not torch.equal(epoch0, epoch1)


def test_flip_and_center_use_the_layout() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 4, 25, 2)
    x[1, :, 3] = 0  # a padded frame stays zero
    torch.testing.assert_close(flip_skeletons(x, "ntu_stgcn"), transforms.mirror(x, "ntu_stgcn"))
    with pytest.raises(ConfigError, match="flipping needs data.layout"):
        flip_skeletons(x, None)
    centre = graphs.get_layout("ntu_stgcn").center
    centred = center_skeletons(x, "ntu_stgcn")
    torch.testing.assert_close(centred, transforms.center(x, centre))
    assert bool((centred[:, :, 0, centre, 0] == 0).all())
    assert bool((centred[1, :, 3] == 0).all())
    # (x, y, score): the coordinates are centred, the scores kept
    scored = torch.cat((x[:, :2], torch.rand(2, 1, 4, 25, 2)), dim=1)
    centred = center_skeletons(scored, "ntu_stgcn", include_scores=True)
    torch.testing.assert_close(centred[:, :2], transforms.center(scored[:, :2], centre))
    assert torch.equal(centred[:, 2], scored[:, 2])
    with pytest.raises(ConfigError, match="data.center needs data.layout"):
        center_skeletons(x, None)


def test_augment_keeps_absent_joints_and_depends_on_the_sample_only() -> None:
    config = config_from_dict(
        {"data": {"rotation": 30.0, "scale": 0.2, "shear": 0.1, "flip": 0.5}}
    ).data
    torch.manual_seed(1)
    x = torch.randn(4, 3, 5, 25, 1)
    x[:, :, 4] = 0
    out = augment(x, config, sample_generators(range(4), 0, 0))
    assert bool((out[:, :, 4] == 0).all())
    assert not torch.allclose(out, x)
    # sample 2 alone gets what it got in the batch of four: randomness is keyed to the sample
    alone = augment(x[2:3], config, sample_generators([2], 0, 0))
    torch.testing.assert_close(alone, out[2:3])
    # it is transforms' rotation (degrees -> radians), scale, shear of every clip and mirror
    generators = sample_generators(range(4), 0, 0)
    expected = transforms.random_rotation(x, math.radians(30.0), generator=generators)
    expected = transforms.random_scale(expected, 0.2, generator=generators)
    expected = transforms.random_shear(expected, 0.1, p=1.0, generator=generators)
    expected = transforms.random_mirror(expected, "ntu_stgcn", 0.5, generator=generators)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    # a pure rotation keeps each frame's joint distances
    rotation = config_from_dict({"data": {"rotation": 45.0}}).data
    rotated = augment(x, rotation, sample_generators(range(4), 0, 0))
    torch.testing.assert_close(
        torch.cdist(rotated[0, :, 0, :, 0].T, rotated[0, :, 0, :, 0].T),
        torch.cdist(x[0, :, 0, :, 0].T, x[0, :, 0, :, 0].T),
        rtol=1e-4,
        atol=1e-4,
    )


def test_augment_moves_coordinates_and_keeps_scores() -> None:
    values = {"rotation": 30.0, "scale": 0.2, "shear": 0.1, "flip": 0.5, "channels": 2}
    coordinates_only = config_from_dict({"data": values}).data
    with_scores = config_from_dict({"data": {**values, "include_scores": True}}).data
    torch.manual_seed(2)
    x = torch.randn(8, 3, 5, 25, 1)  # (x, y, score)
    x[:, 2] = torch.rand(8, 5, 25, 1)
    out = augment(x, with_scores, sample_generators(range(8), 0, 0))
    expected = augment(x[:, :2], coordinates_only, sample_generators(range(8), 0, 0))
    torch.testing.assert_close(out[:, :2], expected, rtol=0, atol=0)
    assert not torch.allclose(out[:, :2], x[:, :2])
    # the scores are untouched apart from following a mirror's left/right swap
    mirrored = transforms.mirror(x, "ntu_stgcn")
    kept = [torch.equal(out[n, 2], x[n, 2]) for n in range(8)]
    assert set(kept) == {True, False}  # this seed mirrors some clips, not all
    for n in range(8):
        assert torch.equal(out[n, 2], x[n, 2] if kept[n] else mirrored[n, 2])
    with pytest.raises(ConfigError, match="2 or 3 coordinate channels"):
        augment(torch.randn(2, 2, 5, 25, 1), with_scores, sample_generators(range(2), 0, 0))


def test_streams() -> None:
    x = torch.randn(2, 3, 6, 25, 1)
    bones = graphs.bone_stream(x, "ntu_stgcn")
    torch.testing.assert_close(to_stream(x, "bone", "ntu_stgcn"), bones)
    torch.testing.assert_close(to_stream(x, "motion", None), graphs.motion_stream(x))
    torch.testing.assert_close(
        to_stream(x, "bone_motion", "ntu_stgcn"),
        graphs.motion_stream(graphs.bone_stream(x, "ntu_stgcn")),
    )
    with pytest.raises(ConfigError, match="needs data.layout"):
        to_stream(x, "bone", None)


# ---------------------------------------------------------------------------------------------
# training runs


def test_train_logs_checkpoints_and_learns(tmp_path) -> None:
    config = config_from_dict(_tiny_config(tmp_path, optim={"epochs": 3, "grad_clip": 1.0}))
    initial = _weights(build_model(config))
    result = train(config)
    run = tmp_path / "run"
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    epochs = [r for r in records if "train_loss" in r]
    assert [r["epoch"] for r in epochs] == [1, 2, 3]
    assert {"val_top1", "val_top5", "samples_per_s", "lr"} <= set(epochs[-1])
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"]
    assert result.checkpoint == run / "last.safetensors"
    assert (run / "last.state.pt").is_file() and (run / "best.safetensors").is_file()
    # the checkpoint holds the trained weights, which moved away from the initial ones
    reloaded = build_model(config)
    load_model_weights(reloaded, result.checkpoint)
    for key, value in reloaded.state_dict().items():
        torch.testing.assert_close(value, result.model.state_dict()[key], rtol=0, atol=0)
    assert any(not torch.equal(initial[k], v) for k, v in reloaded.state_dict().items())
    state = load_training_state(run / "last.state.pt")
    assert state["epoch"] == 3 and state["step"] == 3 * (48 // 8)


def test_resume_continues_exactly(tmp_path) -> None:
    # dropout, augmentation and random frame sampling are on: all their randomness must resume
    overrides = {**TINY_CASCADEFORMER, "dropout": 0.2, "t2_dropout": 0.2, "head_dropout": 0.2}
    sections = {
        "model": {"overrides": overrides},
        "data": {"rotation": 20.0, "flip": 0.5},
        "optim": {"name": "sgd", "lr": 0.05},
    }
    whole = train(config_from_dict(_tiny_config(tmp_path / "whole", **sections)))
    first = _tiny_config(tmp_path / "split", **sections)
    first["optim"]["epochs"] = 1
    train(config_from_dict(first))
    # same schedule (epochs 2), continued from the one-epoch run
    resumed_values = _tiny_config(tmp_path / "split", **sections)
    resumed_values["run"]["resume"] = str(tmp_path / "split" / "run")
    first_epoch = _weights(build_model(config_from_dict(first)))
    resumed = train(config_from_dict(resumed_values))
    for key, value in whole.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    assert any(not torch.equal(first_epoch[k], v) for k, v in whole.model.state_dict().items())


def test_resume_errors(tmp_path) -> None:
    values = _tiny_config(tmp_path)
    values["run"]["resume"] = str(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="cannot resume"):
        train(config_from_dict(values))


def test_bf16_autocast_runs(tmp_path) -> None:
    config = config_from_dict(_tiny_config(tmp_path, optim={"epochs": 1, "amp": "bf16"}))
    result = train(config)
    assert np.isfinite(result.metrics["train_loss"])
    with pytest.raises(ConfigError, match="fp16' needs a CUDA device"):
        fp16 = _tiny_config(tmp_path, optim={"amp": "fp16"}, run={"device": "cpu"})
        train(config_from_dict(fp16))


def test_predict_multi_clip_and_flip(tmp_path) -> None:
    config = config_from_dict(_tiny_config(tmp_path))
    torch.manual_seed(0)
    model = build_model(config)
    _, val_set = build_datasets(config.data)
    one = predict(model, val_set, config, torch.device("cpu"), clips=1, flip=False)
    assert one.shape == (16, 4)
    torch.testing.assert_close(one.sum(dim=1), torch.ones(16))
    many = predict(model, val_set, config, torch.device("cpu"), clips=3, flip=True)
    # the average of the six views, computed view by view
    x, _ = val_set.batch(torch.arange(16), 12, 1, clips=3)
    views = torch.cat([x, flip_skeletons(x, "ntu_stgcn")])
    with torch.no_grad():
        probabilities = model.eval()(views).softmax(1)
    expected = torch.cat([probabilities[:48], probabilities[48:]]).view(2, 16, 3, 4)
    torch.testing.assert_close(many, expected.mean(dim=(0, 2)), rtol=1e-5, atol=1e-6)


def test_cascadeformer_pretrain_then_finetune(tmp_path) -> None:
    pretrain = config_from_dict(
        _tiny_config(tmp_path / "pre", task="pretrain", optim={"epochs": 2})
    )
    result = train(pretrain)
    records = [json.loads(x) for x in (tmp_path / "pre/run/log.jsonl").read_text().splitlines()]
    epochs = [r for r in records if "train_loss" in r]
    assert "val_loss" in epochs[-1] and "val_top1" not in epochs[-1]
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"]
    finetune_values = _tiny_config(tmp_path / "fine", optim={"epochs": 1})
    finetune_values["model"]["init_stage1"] = str(result.checkpoint)
    finetune = config_from_dict(finetune_values)
    # the fine-tuning model starts from the pretrained T1
    start = build_model(finetune)
    for key, value in start.t1.state_dict().items():
        assert torch.equal(value, result.model.t1.state_dict()[key]), key
    fresh_values = _tiny_config(tmp_path / "fresh")
    torch.manual_seed(0)
    fresh = build_model(config_from_dict(fresh_values))
    assert not torch.equal(fresh.t1.joint_embedding.weight, start.t1.joint_embedding.weight)
    assert np.isfinite(train(finetune).metrics["val_top1"])
    # init_stage1 on a single-stage model, or a checkpoint of another model, is refused
    stgcn = {"model": {"name": "stgcn", "init_stage1": str(result.checkpoint)}}
    with pytest.raises(ConfigError, match="needs a two-stage model"):
        build_model(config_from_dict(stgcn))
    wrong = dict(finetune_values)
    wrong["model"] = {**finetune_values["model"], "overrides": {**TINY_CASCADEFORMER, "d_model": 8}}
    with pytest.raises(ValueError, match="does not fit the model|has shape"):
        build_model(config_from_dict(wrong))
