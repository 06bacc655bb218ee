"""Real skeleton data: the OpenPose BODY_25B sequences of the Pose2Sim 0.8.4 wheel.

The wheel comes from the cache ($SKELOPS_CACHE or ~/.cache/skelops); when it is absent it is
downloaded, and when that fails the tests fail with the command to run (``make test`` runs
``python -m skelops.data.pose2sim --fetch`` first). Nothing is skipped.
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
import torch

import skelops
from skelops import graphs, models
from skelops.data import pose2sim
from skelops.data.pose2d import HeatmapPipeline
from skelops.data.readers import SkeletonSequence, convert_layout

SINGLE = "S01_Demo_SingleTrial/cam01"
PAIR = "S00_P01_T02_Participants1-2"
TRIALS = {
    "S01_Demo_SingleTrial": (100, 100, 102, 102),
    "S00_P00_T00_StaticTrial": (12,) * 4,
    "S00_P00_T01_BalancingTrial": (100,) * 4,
    "S00_P01_T00_StaticTrialParticipant1": (12,) * 4,
    "S00_P01_T01_StaticTrialParticipant2": (12,) * 4,
    PAIR: (100,) * 4,
}
HEIGHT, WIDTH = 1920, 1088


@pytest.fixture(scope="module")
def sequences() -> dict[str, SkeletonSequence]:
    return pose2sim.pose2sim_sequences()


def _confident_persons(sequence: SkeletonSequence, threshold: float = 0.2) -> np.ndarray:
    """[T] number of persons whose mean confidence is above ``threshold``."""
    return (sequence.scores.mean(axis=2) > threshold).sum(axis=0)


def test_sequences_names_shapes_and_metadata(sequences) -> None:
    expected = {
        f"{trial}/cam0{c + 1}": n for trial, counts in TRIALS.items() for c, n in enumerate(counts)
    }
    assert {name: s.num_frames for name, s in sequences.items()} == expected
    assert pose2sim.pose2sim_sequence_names() == sorted(expected)
    layout = graphs.get_layout("openpose_body25b")
    for name, sequence in sequences.items():
        assert sequence.name == name and sequence.layout == "openpose_body25b"
        assert sequence.keypoints.shape[2:] == (layout.num_joints, 2) == (25, 2)
        assert sequence.keypoints.dtype == np.float32 and sequence.scores.dtype == np.float32
        assert sequence.image_shape == (HEIGHT, WIDTH) and sequence.fps == 60.0
        assert sequence.scores.min() >= 0 and sequence.scores.max() <= 1
        assert np.isfinite(sequence.keypoints).all()
    with pytest.raises(KeyError, match="name must be one of"):
        pose2sim.load_pose2sim_sequence("S01_Demo_SingleTrial/cam09")


def test_persons_per_trial(sequences) -> None:
    for camera in range(1, 5):
        single = _confident_persons(sequences[f"S01_Demo_SingleTrial/cam0{camera}"])
        alone = _confident_persons(sequences[f"S00_P00_T01_BalancingTrial/cam0{camera}"])
        pair = _confident_persons(sequences[f"{PAIR}/cam0{camera}"])
        static = _confident_persons(sequences[f"S00_P01_T00_StaticTrialParticipant1/cam0{camera}"])
        # cameras 1 and 2 also see a bystander at the image border
        assert np.mean(single == (2 if camera <= 2 else 1)) > 0.95, (camera, np.bincount(single))
        assert np.mean(pair == alone + 1) > 0.95 and (pair >= 2).all(), (camera, np.bincount(pair))
        assert (static == 1).all()
        assert 2 <= sequences[f"{PAIR}/cam0{camera}"].num_persons <= 4


def test_coordinates_are_plausible_pixels(sequences) -> None:
    for name, sequence in sequences.items():
        confident = sequence.scores > 0.3
        x, y = sequence.keypoints[..., 0][confident], sequence.keypoints[..., 1][confident]
        assert confident.sum() > 100 * sequence.num_frames / 12, name
        assert x.min() > -0.05 * WIDTH and x.max() < 1.05 * WIDTH, name
        assert y.min() > -0.05 * HEIGHT and y.max() < 1.05 * HEIGHT, name
        # a standing person: taller than wide, feet below the head
        main = sequence.keypoints[0][sequence.scores[0].min(axis=1) > 0.3]
        if len(main):
            assert np.median(main[:, 15:17, 1].mean(1) - main[:, 0, 1]) > 200, name


def _median_bone(sequence: SkeletonSequence, edges) -> float:
    lengths = []
    for a, b in edges:
        both = (sequence.scores[..., a] > 0.3) & (sequence.scores[..., b] > 0.3)
        delta = sequence.keypoints[..., a, :] - sequence.keypoints[..., b, :]
        lengths.append(np.linalg.norm(delta, axis=-1)[both])
    return float(np.median(np.concatenate(lengths)))


def test_layout_bones_join_nearby_joints(sequences) -> None:
    layout = graphs.get_layout("openpose_body25b")
    rng = np.random.default_rng(0)
    for name in (SINGLE, f"{PAIR}/cam03"):
        sequence = sequences[name]
        bone = _median_bone(sequence, layout.edges)
        assert 5 < bone < 0.06 * HEIGHT, (name, bone)
        # the same edges on shuffled joints join far-apart points: the order matters
        shuffled = SkeletonSequence(
            sequence.keypoints[:, :, rng.permutation(25)], sequence.scores, sequence.layout
        )
        assert _median_bone(shuffled, layout.edges) > 2 * bone


def test_heatmaps_peak_at_the_keypoints(sequences) -> None:
    coco = convert_layout(sequences[SINGLE], "coco")
    scale = 30.0  # 1920 x 1088 -> 64 x 37 heatmap pixels
    keypoints = (
        torch.from_numpy(coco.keypoints).permute(1, 0, 2, 3)[None] / scale
    )  # [1, T, M, V, 2]
    scores = torch.from_numpy(coco.scores).permute(1, 0, 2)[None]
    maps = skelops.render_heatmaps(keypoints[:, :, :1], scores[:, :, :1], (64, 37))
    assert maps.shape == (1, 17, 100, 64, 37)
    checked = 0
    for t in range(0, 100, 9):
        for joint in range(17):
            x, y = keypoints[0, t, 0, joint].tolist()
            if scores[0, t, 0, joint] > 0.5 and 1 <= x <= 35 and 1 <= y <= 62:
                peak = int(maps[0, joint, t].argmax())
                assert abs(peak // 37 - y) <= 1 and abs(peak % 37 - x) <= 1, (t, joint)
                checked += 1
    assert checked > 100
    pipeline = HeatmapPipeline(split="val", clip_len=8, size=(32, 32))
    volume = pipeline(keypoints * scale, scores, None, coco.image_shape)
    assert volume.shape == (1, 17, 8, 32, 32) and torch.isfinite(volume).all()
    assert 0.5 < volume.max() <= 1


def test_model_forward_passes(sequences, one_thread) -> None:
    torch.manual_seed(0)
    sequence = sequences[f"{PAIR}/cam03"]
    kinetics = convert_layout(sequence, "openpose18")
    x = kinetics.to_tensor(include_scores=True, num_persons=2)[None]  # [1, 3, T, 18, 2]
    assert x.shape == (1, 3, 100, 18, 2)
    stgcn = models.create("stgcn", preset="kinetics").eval()
    with torch.no_grad():
        logits = stgcn(x)
    assert logits.shape == (1, 400) and torch.isfinite(logits).all()
    native = models.create("stgcn", num_classes=4, layout="openpose_body25b", dropout=0.0).eval()
    with torch.no_grad():
        logits = native(sequence.to_tensor(include_scores=True, num_persons=2)[None])
    assert logits.shape == (1, 4) and torch.isfinite(logits).all()
    coco = convert_layout(sequence, "coco")
    keypoints = torch.from_numpy(coco.keypoints).permute(1, 0, 2, 3)[None]
    scores = torch.from_numpy(coco.scores).permute(1, 0, 2)[None]
    volume = HeatmapPipeline(split="val", clip_len=8, size=(32, 32))(
        keypoints, scores, None, coco.image_shape
    )
    posec3d = models.create(
        "posec3d", num_classes=4, base_channels=8, stage_blocks=(1, 1, 1)
    ).eval()
    with torch.no_grad():
        logits = posec3d(volume)
    assert logits.shape == (1, 4) and torch.isfinite(logits).all()


def _share_wheel(cache) -> None:
    cache.mkdir(exist_ok=True)
    (cache / pose2sim.POSE2SIM_WHEEL).symlink_to(pose2sim.fetch_pose2sim_wheel())


def test_npz_cache_round_trip(tmp_path, sequences, monkeypatch) -> None:
    _share_wheel(tmp_path)
    parsed = pose2sim.pose2sim_sequences(tmp_path)  # parses the wheel, writes the .npz
    cache = next(tmp_path.glob("*.npz"))
    assert sorted(parsed) == sorted(sequences)

    def no_wheel(wheel):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(pose2sim, "_parse_wheel", no_wheel)
    cached = pose2sim.pose2sim_sequences(tmp_path)
    for name, sequence in sequences.items():
        np.testing.assert_array_equal(cached[name].keypoints, sequence.keypoints)
        np.testing.assert_array_equal(cached[name].scores, sequence.scores)
        assert cached[name].image_shape == sequence.image_shape and cached[name].fps == 60.0
    monkeypatch.undo()
    cache.write_bytes(b"corrupt")
    rebuilt = pose2sim.pose2sim_sequences(tmp_path)
    np.testing.assert_array_equal(rebuilt[SINGLE].keypoints, sequences[SINGLE].keypoints)


def test_fetch_downloads_with_pip_and_verifies(tmp_path, monkeypatch) -> None:
    real_wheel = pose2sim.fetch_pose2sim_wheel()
    calls = []

    def fake_pip(command, **kwargs):
        calls.append(command)
        destination = command[command.index("-d") + 1]
        shutil.copy(real_wheel, f"{destination}/{pose2sim.POSE2SIM_WHEEL}")
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(pose2sim.subprocess, "run", fake_pip)
    (tmp_path / pose2sim.POSE2SIM_WHEEL).write_bytes(b"an interrupted copy")
    wheel = pose2sim.fetch_pose2sim_wheel(tmp_path)
    assert wheel == tmp_path / pose2sim.POSE2SIM_WHEEL
    assert pose2sim._sha256(wheel) == pose2sim.POSE2SIM_SHA256
    assert calls and calls[0][1:5] == ["-m", "pip", "download", "--no-deps"]
    assert f"pose2sim=={pose2sim.POSE2SIM_VERSION}" in calls[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == [pose2sim.POSE2SIM_WHEEL]


def test_fetch_failure_says_what_to_run(tmp_path, monkeypatch, capsys) -> None:
    def offline(command, **kwargs):
        return subprocess.CompletedProcess(command, 1, "", "ERROR: No matching distribution")

    monkeypatch.setattr(pose2sim.subprocess, "run", offline)
    with pytest.raises(pose2sim.Pose2SimUnavailableError) as info:
        pose2sim.fetch_pose2sim_wheel(tmp_path)
    message = str(info.value)
    assert "No matching distribution" in message and "-m skelops.data.pose2sim --fetch" in message
    assert "pip download --no-deps pose2sim==0.8.4" in message and str(tmp_path) in message
    assert pose2sim.main(["--fetch", "--cache-dir", str(tmp_path)]) == 1
    assert "pip download" in capsys.readouterr().err

    def tampered(command, **kwargs):
        destination = command[command.index("-d") + 1]
        with open(f"{destination}/{pose2sim.POSE2SIM_WHEEL}", "wb") as file:
            file.write(b"not the wheel")
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(pose2sim.subprocess, "run", tampered)
    with pytest.raises(pose2sim.Pose2SimUnavailableError, match="has SHA-256"):
        pose2sim.fetch_pose2sim_wheel(tmp_path)
    assert not (tmp_path / pose2sim.POSE2SIM_WHEEL).exists()


def test_main_lists_the_sequences(capsys) -> None:
    assert pose2sim.main(["--fetch", "--list"]) == 0
    out = capsys.readouterr().out
    assert "24 sequences" in out and f"{SINGLE}: keypoints (3, 100, 25, 2)" in out
