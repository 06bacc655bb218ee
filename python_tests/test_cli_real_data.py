"""From files to scores through the CLI: a small ST-GCN trained on a pyskl annotation pickle
(read through the restricted unpickler) is evaluated on its validation split, and a model of
the BODY_25B layout scores the real OpenPose sequences of the pose2sim wheel, written to disk
as OpenPose writes them (``python -m skelops.data.pose2sim --extract``)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from skelops import cli
from skelops.data import pose2sim, synthetic_actions

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL_STGCN = "model.overrides={num_classes: 4, dropout: 0.0, blocks: [[16, 1], [32, 2]]}"


def _pyskl_pickle(path, seed: int) -> None:
    """pyskl's annotation format (``keypoint [M, T, V, C]``, labels, split lists) filled with
    synthetic NTU-layout actions of different lengths."""
    x, labels = synthetic_actions(48, num_classes=4, num_frames=24, num_persons=2, seed=seed)
    annotations = []
    for index, (clip, label) in enumerate(zip(x, labels, strict=True)):
        keypoint = clip.permute(3, 1, 2, 0).numpy()  # [C, T, V, M] -> [M, T, V, C]
        length = 16 + index % 9
        annotations.append(
            {
                "frame_dir": f"clip{index:03d}",
                "label": int(label),
                "total_frames": length,
                "keypoint": np.ascontiguousarray(keypoint[:, :length]),
            }
        )
    names = [a["frame_dir"] for a in annotations]
    data = {"split": {"train": names[:32], "val": names[32:]}, "annotations": annotations}
    path.write_bytes(pickle.dumps(data, protocol=4))


def test_train_and_eval_on_a_pyskl_pickle(tmp_path, capsys):
    annotations = tmp_path / "ntu_synthetic.pkl"
    _pyskl_pickle(annotations, seed=3)
    common = [
        "--set",
        "model.name=stgcn",
        "model.preset=ntu60",
        SMALL_STGCN,
        "data.source=pyskl",
        f"data.path={annotations}",
        "data.layout=ntu_pyskl",
        "data.num_frames=16",
        "data.train_split=train",
        "data.val_split=val",
        "optim.epochs=1",
        "optim.batch_size=8",
        f"run.output_dir={tmp_path / 'run'}",
    ]
    assert cli.main(["train", "--no-progress", *common]) == 0
    checkpoint = tmp_path / "run" / "last.safetensors"
    assert checkpoint.is_file()
    capsys.readouterr()
    assert cli.main(["eval", "--checkpoint", str(checkpoint), "--no-progress", *common]) == 0
    out = capsys.readouterr().out
    assert "top1" in out or "top-1" in out
    scores = np.load(tmp_path / "run" / "eval" / "scores.npy")
    labels = np.load(tmp_path / "run" / "eval" / "labels.npy")
    with open(annotations, "rb") as file:
        expected = [a["label"] for a in pickle.load(file)["annotations"][32:]]
    assert scores.shape == (16, 4) and np.isfinite(scores).all()
    assert labels.tolist() == expected  # the validation split, in the pickle's order


def test_eval_scores_real_openpose_files(tmp_path, capsys):
    trials = pose2sim.extract_pose2sim_json(tmp_path / "pose2sim")
    trial = tmp_path / "pose2sim" / "S00_P01_T02_Participants1-2"
    assert trial in trials
    assert len(list((trial / "cam03_json").glob("*.json"))) == 100
    # trained on synthetic 2-D actions of the BODY_25B layout, then run on the real files:
    # (x, y) pixels, centred on the layout's centre joint
    common = [
        "--set",
        "model.name=stgcn",
        "model.preset=kinetics",
        "model.overrides={num_classes: 4, in_channels: 2, layout: openpose_body25b, "
        "dropout: 0.0, blocks: [[16, 1], [32, 2]]}",
        "data.layout=openpose_body25b",
        "data.channels=2",
        "data.center=true",
        "data.num_frames=16",
        "data.num_classes=4",
        "data.train_samples=16",
        "data.val_samples=8",
        "optim.epochs=1",
        "optim.batch_size=8",
        f"run.output_dir={tmp_path / 'run'}",
    ]
    assert cli.main(["train", "--no-progress", *common]) == 0
    capsys.readouterr()
    real = [*common, "data.source=openpose", f"data.path={trial}", "data.val_split=null"]
    checkpoint = str(tmp_path / "run" / "last.safetensors")
    assert cli.main(["eval", "--checkpoint", checkpoint, "--no-progress", *real]) == 0
    scores = np.load(tmp_path / "run" / "eval" / "scores.npy")
    labels = np.load(tmp_path / "run" / "eval" / "labels.npy")
    assert scores.shape == (4, 4) and np.isfinite(scores).all()  # one row per camera
    assert (labels == -1).all()  # OpenPose files carry no labels: scores only
    torch.testing.assert_close(
        torch.from_numpy(scores).sum(1), torch.ones(4, dtype=torch.from_numpy(scores).dtype)
    )
