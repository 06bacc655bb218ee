"""Skeleton file readers: NTU .skeleton, pyskl pickles, OpenPose JSON, Kinetics-skeleton JSON.

Valid files are written here from known arrays and read back; malformed ones (bad numbers,
wrong counts and types, NaN, truncation at every byte, huge counts, forbidden pickle globals)
must raise SkeletonFileError naming the file and the line or field.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import tracemalloc

import numpy as np
import pytest
import torch

from skelops.data.readers import (
    NTU_TRAINING_SUBJECTS,
    SkeletonFileError,
    SkeletonSequence,
    convert_layout,
    load_dataset,
    load_pyskl_annotations,
    ntu_split,
    read_kinetics_skeleton,
    read_ntu_skeleton,
    read_openpose_json,
    read_pyskl_pickle,
    restricted_pickle_load,
)

# --------------------------------------------------------------------------------------------
# NTU .skeleton


def _joint_rows(rng: np.random.Generator, scale: float) -> np.ndarray:
    """[25, 11] values: x y z depthX depthY colorX colorY orientation(4), rounded as NTU writes."""
    rows = rng.normal(size=(25, 11)) * scale
    return np.round(rows, 4)


def _ntu_text(frames: list[list[tuple[int, np.ndarray, np.ndarray]]]) -> str:
    """An NTU .skeleton file: per frame a list of (bodyID, values [25, 11], states [25])."""
    lines = [str(len(frames))]
    for bodies in frames:
        lines.append(str(len(bodies)))
        for body_id, values, states in bodies:
            lines.append(f"{body_id} 0 1 1 1 1 0 0.02005 -0.2562 2")
            lines.append("25")
            for row, state in zip(values, states, strict=True):
                lines.append(" ".join(f"{v:g}" for v in row) + f" {state}")
    return "\n".join(lines) + "\n"


def _write(tmp_path, name: str, text: str | bytes):
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_ntu_reads_coordinates_states_label_and_persons(tmp_path) -> None:
    rng = np.random.default_rng(0)
    a = [_joint_rows(rng, 1.0) for _ in range(4)]
    b = [_joint_rows(rng, 0.1) for _ in range(4)]
    states = rng.integers(0, 3, size=(4, 25))
    # body 7 (large motion) in frames 0-3; body 9 (small motion) in frames 1 and 3; frame 2 of
    # body 9 missing.
    frames = [
        [(7, a[0], states[0])],
        [(9, b[1], states[1]), (7, a[1], states[1])],
        [(7, a[2], states[2])],
        [(7, a[3], states[3]), (9, b[3], states[3])],
    ]
    path = _write(tmp_path, "S002C003P004R001A013.skeleton", _ntu_text(frames))
    seq = read_ntu_skeleton(path)
    assert seq.keypoints.shape == (2, 4, 25, 3) and seq.keypoints.dtype == np.float32
    assert seq.label == 12 and seq.name == "S002C003P004R001A013" and seq.fps == 30.0
    assert seq.layout == "ntu_stgcn" and seq.image_shape is None
    for t in range(4):
        np.testing.assert_allclose(seq.keypoints[0, t], a[t][:, :3], rtol=1e-6)
        np.testing.assert_allclose(seq.scores[0, t], states[t] / 2)
    np.testing.assert_allclose(
        seq.keypoints[1, [1, 3]], np.stack([b[1], b[3]])[:, :, :3], rtol=1e-6
    )
    assert not seq.keypoints[1, [0, 2]].any() and not seq.scores[1, [0, 2]].any()
    color = read_ntu_skeleton(path, coordinates="color", layout="ntu_pyskl")
    np.testing.assert_allclose(color.keypoints[0, 2], a[2][:, 5:7], rtol=1e-6)
    assert color.image_shape == (1080, 1920) and color.layout == "ntu_pyskl"
    assert read_ntu_skeleton(path, max_persons=1).keypoints.shape == (1, 4, 25, 3)


def test_ntu_person_rule_motion_slots_and_short_bodies(tmp_path) -> None:
    rng = np.random.default_rng(1)
    states = np.full(25, 2)
    frames = []
    for t in range(30):
        bodies = [(3, _joint_rows(rng, 0.01), states)]  # static person, all frames
        # one moving person re-tracked under a new ID at frame 15
        bodies.append((1 if t < 15 else 2, _joint_rows(rng, 1.0), states))
        if t < 3:
            bodies.append((5, _joint_rows(rng, 50.0), states))  # short noise body, huge motion
        frames.append(bodies)
    seq = read_ntu_skeleton(_write(tmp_path, "S001C001P001R001A001.skeleton", _ntu_text(frames)))
    assert seq.num_persons == 2
    moving = np.stack([f[1][1][:, :3] for f in frames])
    static = np.stack([f[0][1][:, :3] for f in frames])
    np.testing.assert_allclose(seq.keypoints[0], moving, rtol=1e-6)
    np.testing.assert_allclose(seq.keypoints[1], static, rtol=1e-6)
    # with more slots the short body still goes: pyskl's length threshold
    assert (
        read_ntu_skeleton(tmp_path / "S001C001P001R001A001.skeleton", max_persons=4).num_persons
        == 2
    )


def _small_ntu() -> str:
    rng = np.random.default_rng(2)
    values = rng.integers(-9, 10, size=(25, 11)).astype(np.float64)  # short lines: fewer cuts
    return _ntu_text([[(72057594037931101, values, np.full(25, 2))], []])


def test_ntu_every_truncation_raises_or_parses_unchanged(tmp_path) -> None:
    data = _small_ntu().encode()
    full = read_ntu_skeleton(_write(tmp_path, "full.skeleton", data))
    for cut in range(len(data)):
        path = _write(tmp_path, "cut.skeleton", data[:cut])
        if not data[cut:].strip():
            np.testing.assert_array_equal(read_ntu_skeleton(path).keypoints, full.keypoints)
            continue
        with pytest.raises(SkeletonFileError) as info:
            read_ntu_skeleton(path)
        assert info.value.file == os.fspath(path) and info.value.line is not None, cut


def _mutate_line(text: str, line: int, new: str) -> str:
    lines = text.split("\n")
    lines[line - 1] = new
    return "\n".join(lines)


_JOINT = "0.1 0.2 0.3 1 2 3 4 0 0 0 1 "


@pytest.mark.parametrize(
    ("line", "content", "fragment"),
    [
        (4, "abc", "expected 25 joints, got 'abc'"),
        (4, "24", "expected 25 joints, got '24'"),
        (5, _JOINT + "x", "tracking state 0, 1 or 2"),
        (5, _JOINT + "3", "tracking state 0, 1 or 2"),
        (5, "0.1 abc" + _JOINT[7:] + "2", "expected a finite number"),
        (5, "nan" + _JOINT[3:] + "2", "got 'nan'"),
        (5, "inf" + _JOINT[3:] + "2", "got 'inf'"),
        (5, "1_0" + _JOINT[3:] + "2", "got '1_0'"),
        (5, _JOINT.strip(), "(12 values)"),
        (3, "5 0 1 1 1 1 0 0 0", "(10 values)"),
        (3, "x7 0 1 1 1 1 0 0 0 2", "integer body ID"),
        (1, "-1", "expected the frame count"),
        (1, "2.5", "expected the frame count"),
        (2, "two", "body count of frame 1"),
    ],
)
def test_ntu_malformed_values_name_the_line(tmp_path, line, content, fragment) -> None:
    path = _write(
        tmp_path, "S001C001P001R001A001.skeleton", _mutate_line(_small_ntu(), line, content)
    )
    with pytest.raises(SkeletonFileError, match=re.escape(fragment)) as info:
        read_ntu_skeleton(path)
    assert info.value.line == line
    assert str(info.value).startswith(f"{path}, line {line}: ")


def test_ntu_structural_errors(tmp_path) -> None:
    text = _small_ntu()
    cases = {
        "empty": (b"", "empty file"),
        "blank": (b"\n\n", "expected the frame count"),
        "binary": (text.encode()[:40] + b"\xff\xfe" + text.encode()[40:], "not an ASCII"),
        "trailing": ((text + "7\n").encode(), "unexpected content after the last frame"),
        "short": (text.replace("2\n1\n", "2\n2\n", 1).encode(), "body count of frame 1 is 2"),
    }
    for name, (data, fragment) in cases.items():
        with pytest.raises(SkeletonFileError, match=fragment):
            read_ntu_skeleton(_write(tmp_path, f"{name}.skeleton", data))
    body = text.split("\n")[2:29]
    twice = "\n".join(["1", "2", *body, *body, ""])
    with pytest.raises(SkeletonFileError, match="body ID 72057594037931101 appears twice"):
        read_ntu_skeleton(_write(tmp_path, "twice.skeleton", twice))


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("999999999999\n0\n", "frame count is 999999999999, but only 1 lines follow"),
        ("1\n2000000000\n", "body count of frame 1 is 2000000000"),
    ],
)
def test_ntu_huge_counts_fail_fast_without_allocating(tmp_path, text, fragment) -> None:
    path = _write(tmp_path, "huge.skeleton", text)
    tracemalloc.start()
    try:
        with pytest.raises(SkeletonFileError, match=fragment):
            read_ntu_skeleton(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, peak


def test_ntu_splits_follow_the_official_protocols() -> None:
    ntu60_subjects = [1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38]
    assert [p for p in NTU_TRAINING_SUBJECTS if p <= 40] == ntu60_subjects
    assert len(NTU_TRAINING_SUBJECTS) == 53
    assert ntu_split("S001C001P001R001A001", "xsub") == "train"
    assert ntu_split("S001C001P003R001A001", "xsub") == "val"
    assert ntu_split("S001C001P001R001A001", "xview") == "val"
    assert ntu_split("S001C002P001R001A001", "xview") == "train"
    assert ntu_split("S001C003P001R001A001", "xview") == "train"
    assert ntu_split("S018C001P001R001A061", "xset") == "train"
    assert ntu_split("S017C001P001R001A061", "xset") == "val"
    with pytest.raises(ValueError, match="benchmark must be one of"):
        ntu_split("S001C001P001R001A001", "xperson")
    with pytest.raises(ValueError, match="SsssCcccPpppRrrrAaaa"):
        ntu_split("clip_0001", "xsub")


def test_load_dataset_ntu_splits_and_empty_files(tmp_path) -> None:
    text = _small_ntu()
    names = ["S001C001P001R001A001", "S001C002P003R001A002", "S001C003P002R002A060"]
    for name in names:
        _write(tmp_path, f"{name}.skeleton", text)
    _write(tmp_path, "S001C002P001R001A005.skeleton", "2\n0\n0\n")  # no body: left out
    assert [s.name for s in load_dataset("ntu", tmp_path)] == sorted(names)
    assert [s.name for s in load_dataset("ntu", tmp_path, "xsub_train")] == [names[0], names[2]]
    assert [s.name for s in load_dataset("ntu", tmp_path, "xsub_val")] == [names[1]]
    assert [s.name for s in load_dataset("ntu", tmp_path, "xview_val")] == [names[0]]
    assert [s.label for s in load_dataset("ntu", tmp_path, [names[2]])] == [59]
    with pytest.raises(ValueError, match="split must be"):
        load_dataset("ntu", tmp_path, "train")
    with pytest.raises(ValueError, match="not in"):
        load_dataset("ntu", tmp_path, ["S009C001P001R001A001"])
    with pytest.raises(ValueError, match="source must be"):
        load_dataset("mocap", tmp_path)


# --------------------------------------------------------------------------------------------
# pickles


def _pyskl_content(rng: np.random.Generator) -> dict:
    return {
        "split": {"xsub_train": ["a", "c"], "xsub_val": ["b"]},
        "annotations": [
            {
                "frame_dir": name,
                "label": np.int64(label) if name == "c" else label,
                "total_frames": 6,
                "keypoint": rng.normal(size=(persons, 6, 25, 3)).astype(np.float16),
            }
            for name, label, persons in (("a", 3, 2), ("b", 0, 1), ("c", 59, 1))
        ],
    }


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_pyskl_pickle_round_trip_and_splits(tmp_path, protocol) -> None:
    content = _pyskl_content(np.random.default_rng(3))
    path = _write(tmp_path, "ntu.pkl", pickle.dumps(content, protocol=protocol))
    annotations = read_pyskl_pickle(path)
    assert sorted(annotations.splits) == ["xsub_train", "xsub_val"]
    assert [s.name for s in annotations.sequences] == ["a", "b", "c"]
    first = annotations.sequences[0]
    assert first.layout == "ntu_pyskl" and first.keypoints.dtype == np.float32
    assert first.scores is None and first.label == 3 and first.keypoints.shape == (2, 6, 25, 3)
    np.testing.assert_array_equal(first.keypoints, content["annotations"][0]["keypoint"])
    assert [s.name for s in load_pyskl_annotations(path, "xsub_train")] == ["a", "c"]
    assert [s.label for s in load_dataset("pyskl", path, "xsub_val")] == [0]
    with pytest.raises(KeyError, match="split must be one of"):
        load_pyskl_annotations(path, "xview_train")


def test_pyskl_2d_annotations_with_scores(tmp_path) -> None:
    rng = np.random.default_rng(4)
    item = {
        "frame_dir": "clip",
        "label": 1,
        "img_shape": (480, 640),
        "original_shape": (480, 640),
        "total_frames": 5,
        "keypoint": rng.uniform(0, 400, size=(1, 5, 17, 2)).astype(np.float32),
        "keypoint_score": rng.uniform(0, 1, size=(1, 5, 17)).astype(np.float16),
    }
    path = _write(tmp_path, "hrnet.pkl", pickle.dumps([item]))
    (seq,) = load_pyskl_annotations(path)
    assert seq.layout == "coco" and seq.image_shape == (480, 640)
    np.testing.assert_array_equal(seq.scores, item["keypoint_score"].astype(np.float32))
    assert read_pyskl_pickle(path).splits == {}


class _Payload:
    """A class of this test module: the unpickler must refuse it."""


class _SystemCall:
    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _Eval:
    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        return eval, (f"open({str(self.marker)!r}, 'w').write('pwned')",)


class _GetAttr:
    def __reduce__(self):
        return getattr, (0, "real")


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (_SystemCall, "system"),
        (_Eval, "builtins.eval"),
        (lambda marker: _GetAttr(), "builtins.getattr"),
        (lambda marker: _Payload(), "_Payload"),
    ],
)
def test_forbidden_pickle_globals_never_run(tmp_path, make, name) -> None:
    marker = tmp_path / "side_effect"
    payload = {"annotations": [make(marker)]}
    path = _write(tmp_path, "evil.pkl", pickle.dumps(payload, protocol=2))
    with pytest.raises(SkeletonFileError, match=f"forbidden global .*{name}"):
        read_pyskl_pickle(path)
    assert not marker.exists()
    # the payload does run under the plain unpickler: the test would see a broken guard
    if make is _SystemCall:
        pickle.loads(path.read_bytes())
        assert marker.exists()


def test_pickle_truncation_and_bit_flips_never_crash(tmp_path) -> None:
    content = _pyskl_content(np.random.default_rng(5))
    content["annotations"] = content["annotations"][:1]
    content["annotations"][0]["keypoint"] = content["annotations"][0]["keypoint"][:1, :1]
    content["annotations"][0]["total_frames"] = 1
    data = pickle.dumps(content, protocol=4)
    path = _write(tmp_path, "p.pkl", data)
    assert read_pyskl_pickle(path).sequences[0].keypoints.shape == (1, 1, 25, 3)
    for cut in range(len(data)):
        _write(tmp_path, "p.pkl", data[:cut])
        with pytest.raises(SkeletonFileError):
            restricted_pickle_load(path)
    rng = np.random.default_rng(6)
    for position in rng.integers(0, len(data), size=150):
        corrupt = bytearray(data)
        corrupt[position] ^= 1 << int(rng.integers(0, 8))
        _write(tmp_path, "p.pkl", bytes(corrupt))
        try:
            read_pyskl_pickle(path)
        except SkeletonFileError:
            pass


def test_pickle_with_crafted_array_shape_does_not_allocate(tmp_path) -> None:
    # numpy.ndarray((10**11,)) and _reconstruct(ndarray, (10**11,), 'f8') built by hand
    direct = b"\x80\x02cnumpy\nndarray\n\x8a\x05\x00\xe8vH\x17\x85R."
    reconstruct = (
        b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n"
        b"\x8a\x05\x00\xe8vH\x17\x85X\x02\x00\x00\x00f8\x87R."
    )
    tracemalloc.start()
    try:
        with pytest.raises(SkeletonFileError, match="not callable"):
            restricted_pickle_load(_write(tmp_path, "a.pkl", direct))
        array = restricted_pickle_load(_write(tmp_path, "b.pkl", reconstruct))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert array.size == 0 and peak < 1 << 20


@pytest.mark.parametrize(
    ("change", "field", "fragment"),
    [
        (lambda c: c.update(annotations={"a": 1}), "annotations", "expected a list"),
        (lambda c: c.update(split={"x": [1]}), "split", "split name -> list"),
        (lambda c: c["annotations"].__setitem__(1, [1]), "annotations[1]", "expected a dict"),
        (lambda c: c["annotations"][0].pop("keypoint"), "annotations[0]", "missing 'keypoint'"),
        (
            lambda c: (
                c["annotations"][0].update(keypoint=None, raw_file="k400/x.pkl")
                or c["annotations"][0].pop("keypoint")
            ),
            "annotations[0]",
            "kpfiles",
        ),
        (lambda c: c["annotations"][0].update(frame_dir=5), "annotations[0].frame_dir", "str"),
        (
            lambda c: c["annotations"][2].update(keypoint=np.zeros((6, 25, 3))),
            "annotations[2].keypoint",
            "4-d array",
        ),
        (
            lambda c: c["annotations"][2].update(keypoint=np.full((1, 6, 25, 3), "x")),
            "annotations[2].keypoint",
            "numeric array",
        ),
        (
            lambda c: c["annotations"][0]["keypoint"].__setitem__((0, 1, 2, 0), np.nan),
            "annotations[0].keypoint",
            "NaN",
        ),
        (
            lambda c: c["annotations"][0]["keypoint"].__setitem__((0, 1, 2, 0), np.inf),
            "annotations[0].keypoint",
            "infinity",
        ),
        (
            lambda c: c["annotations"][1].update(keypoint_score=np.ones((1, 5, 25))),
            "annotations[1].keypoint_score",
            "expected shape (1, 6, 25)",
        ),
        (
            lambda c: c["annotations"][1].update(total_frames=7),
            "annotations[1].total_frames",
            "T=6",
        ),
        (lambda c: c["annotations"][1].update(label=-1), "annotations[1].label", "non-negative"),
        (lambda c: c["annotations"][1].update(label=True), "annotations[1].label", "non-negative"),
        (
            lambda c: c["annotations"][1].update(img_shape=(1, 2, 3)),
            "annotations[1].img_shape",
            "(height",
        ),
        (
            lambda c: c["annotations"][1].update(keypoint=np.zeros((1, 6, 20, 3))),
            "annotations[1].keypoint",
            "no default layout",
        ),
    ],
)
def test_pyskl_malformed_annotations_name_the_field(tmp_path, change, field, fragment) -> None:
    content = _pyskl_content(np.random.default_rng(7))
    change(content)
    path = _write(tmp_path, "bad.pkl", pickle.dumps(content))
    with pytest.raises(SkeletonFileError, match=re.escape(fragment)) as info:
        read_pyskl_pickle(path)
    assert info.value.field == field and f", {field}: " in str(info.value)


def test_empty_and_foreign_pickles(tmp_path) -> None:
    with pytest.raises(SkeletonFileError, match="empty file"):
        restricted_pickle_load(_write(tmp_path, "e.pkl", b""))
    with pytest.raises(SkeletonFileError, match="expected keys"):
        read_pyskl_pickle(_write(tmp_path, "d.pkl", pickle.dumps({"data": []})))
    with pytest.raises(SkeletonFileError, match="cannot unpickle|corrupt"):
        restricted_pickle_load(_write(tmp_path, "t.pkl", b"not a pickle at all"))


# --------------------------------------------------------------------------------------------
# OpenPose and Kinetics-skeleton JSON


def _person(rng: np.random.Generator, joints: int, confidence: float) -> dict:
    xy = rng.uniform(10, 500, size=(joints, 2))
    values = np.concatenate([xy, np.full((joints, 1), confidence)], axis=1)
    return {"person_id": [-1], "pose_keypoints_2d": [round(float(v), 3) for v in values.ravel()]}


def _openpose_dir(tmp_path, frames: list[list[dict]], name: str = "clip"):
    directory = tmp_path / name
    directory.mkdir()
    for t, people in enumerate(frames):
        document = {"version": 1.3, "people": people}
        (directory / f"{name}_{t}_keypoints.json").write_text(json.dumps(document))
    return directory


def test_openpose_orders_frames_and_persons(tmp_path) -> None:
    rng = np.random.default_rng(8)
    frames = [[_person(rng, 25, 0.3), _person(rng, 25, 0.9)] for _ in range(11)]
    frames[4] = []
    frames[6] = [{"person_id": [-1], "pose_keypoints_2d": []}, _person(rng, 25, 0.5)]
    directory = _openpose_dir(tmp_path, frames)
    seq = read_openpose_json(directory, fps=25.0, image_shape=(480, 640))
    assert seq.layout == "openpose_body25b" and seq.name == "clip" and seq.fps == 25.0
    assert seq.keypoints.shape == (2, 11, 25, 2) and seq.image_shape == (480, 640)
    # natural order: frame 10 is last (a plain sort would put it third)
    expected = np.asarray(frames[10][1]["pose_keypoints_2d"], np.float32).reshape(25, 3)
    np.testing.assert_array_equal(seq.keypoints[0, 10], expected[:, :2])
    np.testing.assert_allclose(seq.scores[:, 0, 0], [0.9, 0.3])  # most confident first
    assert not seq.scores[:, 4].any() and not seq.scores[1, 6].any()
    assert read_openpose_json(directory, max_persons=1).keypoints.shape == (1, 11, 25, 2)
    assert read_openpose_json(directory, "openpose_body25").layout == "openpose_body25"
    single = read_openpose_json(directory / "clip_10_keypoints.json")
    assert single.keypoints.shape == (2, 1, 25, 2) and single.name == "clip_10_keypoints"


@pytest.mark.parametrize(("joints", "layout"), [(17, "coco"), (18, "openpose18")])
def test_openpose_layout_from_keypoint_count(tmp_path, joints, layout) -> None:
    rng = np.random.default_rng(9)
    seq = read_openpose_json(_openpose_dir(tmp_path, [[_person(rng, joints, 0.8)]] * 3))
    assert seq.layout == layout and seq.keypoints.shape == (1, 3, joints, 2)


@pytest.mark.parametrize(
    ("text", "field", "fragment"),
    [
        ("[]", "(top level)", "expected an object"),
        ('{"people": {}}', "people", "expected list"),
        ('{"people": [3]}', "people[0]", "expected an object"),
        ('{"people": [{"pose": []}]}', "people[0]", "missing field 'pose_keypoints_2d'"),
        (
            '{"people": [{"pose_keypoints_2d": [1, 2, 0.5]}]}',
            "people[0].pose_keypoints_2d",
            "3 x 17, 18 or 25",
        ),
        ("BAD", None, "invalid JSON"),
        ('{"people": [{"pose_keypoints_2d": [NaN, 1, 1]}]}', None, "NaN is not a finite number"),
    ],
)
def test_openpose_malformed_documents(tmp_path, text, field, fragment) -> None:
    path = _write(tmp_path, "f.json", text)
    with pytest.raises(SkeletonFileError, match=re.escape(fragment)) as info:
        read_openpose_json(path)
    assert info.value.field == field and info.value.file == os.fspath(path)


@pytest.mark.parametrize(
    ("index", "value", "fragment"),
    [(3, "1.0", "got '1.0'"), (4, True, "got True"), (5, 1e999, "got inf"), (2, None, "got None")],
)
def test_openpose_bad_numbers_name_the_index(tmp_path, index, value, fragment) -> None:
    values = [1.0, 2.0, 0.5] * 25
    values[index] = value
    text = json.dumps({"people": [{"pose_keypoints_2d": values}]}).replace("Infinity", "1e999")
    with pytest.raises(SkeletonFileError, match=fragment) as info:
        read_openpose_json(_write(tmp_path, "f.json", text))
    assert info.value.field == f"people[0].pose_keypoints_2d[{index}]"


def test_openpose_counts_scores_and_empty_input(tmp_path) -> None:
    rng = np.random.default_rng(10)
    person = _person(rng, 25, 0.5)
    with pytest.raises(SkeletonFileError, match="expected 54 numbers, got 75"):
        read_openpose_json(_openpose_dir(tmp_path, [[person]], "a"), "openpose18")
    person["pose_keypoints_2d"][2] = 1.5
    with pytest.raises(SkeletonFileError, match=r"confidence 1.5 is outside \[0, 1\]"):
        read_openpose_json(_openpose_dir(tmp_path, [[person]], "b"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SkeletonFileError, match="no .json frame files"):
        read_openpose_json(tmp_path / "empty")
    with pytest.raises(SkeletonFileError, match="empty file"):
        read_openpose_json(_write(tmp_path, "e.json", " \n"))
    with pytest.raises(ValueError, match="max_persons must be"):
        read_openpose_json(tmp_path / "a", max_persons=0)


def test_openpose_every_truncation_raises_or_parses_unchanged(tmp_path) -> None:
    rng = np.random.default_rng(11)
    values = rng.integers(0, 99, size=(18, 3)).astype(float)  # short numbers: fewer cuts
    values[:, 2] = 0.5
    document = {"version": 1.3, "people": [{"pose_keypoints_2d": values.ravel().tolist()}]}
    data = (json.dumps(document, indent=1) + "\n").encode()
    full = read_openpose_json(_write(tmp_path, "full.json", data))
    for cut in range(len(data)):
        path = _write(tmp_path, "cut.json", data[:cut])
        if not data[cut:].strip():
            np.testing.assert_array_equal(read_openpose_json(path).keypoints, full.keypoints)
            continue
        with pytest.raises(SkeletonFileError):
            read_openpose_json(path)


def _kinetics_frame(rng: np.random.Generator, index: int, scores: list[float]) -> dict:
    return {
        "frame_index": index,
        "skeleton": [
            {"pose": [round(float(v), 3) for v in rng.uniform(0, 1, 36)], "score": [s] * 18}
            for s in scores
        ],
    }


def test_kinetics_skeleton(tmp_path) -> None:
    rng = np.random.default_rng(12)
    data = [_kinetics_frame(rng, i, [0.2, 0.9, 0.5]) for i in (1, 2, 4)]
    document = {"data": data, "label": "abseiling", "label_index": 0}
    path = _write(tmp_path, "video.json", json.dumps(document))
    seq = read_kinetics_skeleton(path)
    assert seq.layout == "openpose18" and seq.label == 0 and seq.name == "video"
    assert seq.keypoints.shape == (2, 4, 18, 2) and seq.fps == 30.0
    np.testing.assert_allclose(seq.scores[:, 0, 0], [0.9, 0.5])  # two most confident
    pose = np.asarray(data[2]["skeleton"][1]["pose"], np.float32).reshape(18, 2)
    np.testing.assert_array_equal(seq.keypoints[0, 3], pose)
    assert not seq.scores[:, 2].any()  # frame 3 absent from the file
    assert read_kinetics_skeleton(path, max_persons=None).num_persons == 3
    unlabelled = _write(tmp_path, "u.json", json.dumps({"data": data, "label_index": -1}))
    assert read_kinetics_skeleton(unlabelled).label is None


@pytest.mark.parametrize(
    ("change", "field", "fragment"),
    [
        (lambda d: d.pop("data"), "(top level)", "missing field 'data'"),
        (lambda d: d.update(label_index="3"), "label_index", "expected an int"),
        (lambda d: d["data"][1].update(frame_index=1), "data[1].frame_index", "repeated"),
        (lambda d: d["data"][1].update(frame_index=2.0), "data[1].frame_index", "expected int"),
        (
            lambda d: d["data"][0]["skeleton"][0]["pose"].pop(),
            "data[0].skeleton[0].pose",
            "expected 36",
        ),
        (lambda d: d["data"][0]["skeleton"][0].pop("score"), "data[0].skeleton[0]", "'score'"),
        (
            lambda d: d["data"][0]["skeleton"][0]["score"].__setitem__(3, -0.5),
            "data[0].skeleton[0].score",
            "outside",
        ),
        (lambda d: d["data"][1].update(frame_index=10**12), "data", "MAX_FRAMES"),
    ],
)
def test_kinetics_malformed(tmp_path, change, field, fragment) -> None:
    rng = np.random.default_rng(13)
    document = {"data": [_kinetics_frame(rng, i, [0.5]) for i in (1, 2)], "label_index": 3}
    change(document)
    tracemalloc.start()
    try:
        with pytest.raises(SkeletonFileError, match=fragment) as info:
            read_kinetics_skeleton(_write(tmp_path, "k.json", json.dumps(document)))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.value.field == field and peak < 1 << 20


def test_load_dataset_kinetics_and_openpose(tmp_path) -> None:
    rng = np.random.default_rng(14)
    train = tmp_path / "kinetics" / "kinetics_train"
    train.mkdir(parents=True)
    for name, label in (("b", 2), ("a", 1)):
        document = {"data": [_kinetics_frame(rng, 1, [0.5])], "label_index": label}
        (train / f"{name}.json").write_text(json.dumps(document))
    (train / "empty.json").write_text(json.dumps({"data": [], "label_index": 4}))
    sequences = load_dataset("kinetics", tmp_path / "kinetics", "train")
    assert [(s.name, s.label) for s in sequences] == [("a", 1), ("b", 2)]
    with pytest.raises(ValueError, match="split must be None, 'train' or 'val'"):
        load_dataset("kinetics", tmp_path / "kinetics", "test")
    root = tmp_path / "openpose"
    root.mkdir()
    for name in ("walk", "jump"):
        _openpose_dir(root, [[_person(rng, 25, 0.6)]] * 4, name)
    sequences = load_dataset("openpose", root, max_persons=1)
    assert [(s.name, s.keypoints.shape) for s in sequences] == [
        ("jump", (1, 4, 25, 2)),
        ("walk", (1, 4, 25, 2)),
    ]
    with pytest.raises(ValueError, match="split must be None for openpose"):
        load_dataset("openpose", root, "train")


# --------------------------------------------------------------------------------------------
# the sequence and layout conversion


def test_sequence_to_tensor_and_validation() -> None:
    rng = np.random.default_rng(15)
    keypoints = rng.normal(size=(2, 5, 17, 2)).astype(np.float32)
    keypoints[1, 3, 4, 0] = np.nan
    scores = rng.uniform(size=(2, 5, 17)).astype(np.float32)
    seq = SkeletonSequence(keypoints, scores, "coco", label=np.int64(4))
    tensor = seq.to_tensor()
    assert tensor.shape == (2, 5, 17, 2) and tensor.dtype == torch.float32
    assert tensor[0, 2, 3, 1] == keypoints[1, 2, 3, 0] and tensor[0, 3, 4, 1] == 0
    assert torch.isfinite(tensor).all() and type(seq.label) is int
    with_scores = seq.to_tensor(include_scores=True, num_persons=3)
    assert with_scores.shape == (3, 5, 17, 3) and not with_scores[..., 2].any()
    assert with_scores[2, 1, 0, 0] == torch.tensor(scores[0, 1, 0])
    assert seq.to_tensor(num_persons=1).shape == (2, 5, 17, 1)
    with pytest.raises(ValueError, match="layout 'openpose18' has 18 joints"):
        SkeletonSequence(keypoints, scores, "openpose18")
    with pytest.raises(ValueError, match="scores must be"):
        SkeletonSequence(keypoints, scores[:, :4], "coco")
    with pytest.raises(ValueError, match="keypoints must be"):
        SkeletonSequence(keypoints[0], None, "coco")
    with pytest.raises(ValueError, match="label must be"):
        SkeletonSequence(keypoints, None, "coco", label=-2)
    with pytest.raises(ValueError, match="include_scores=True needs scores"):
        SkeletonSequence(keypoints, None, "coco").to_tensor(include_scores=True)
    with pytest.raises(ValueError, match="num_persons must be"):
        seq.to_tensor(num_persons=-1)


def test_convert_layout_by_joint_names() -> None:
    rng = np.random.default_rng(16)
    keypoints = rng.uniform(0, 100, size=(1, 3, 25, 2)).astype(np.float32)
    scores = rng.uniform(0.5, 1, size=(1, 3, 25)).astype(np.float32)
    scores[0, 1, 5] = 0  # left shoulder missing in frame 1
    seq = SkeletonSequence(keypoints, scores, "openpose_body25b")
    coco = convert_layout(seq, "coco")
    np.testing.assert_array_equal(coco.keypoints, keypoints[:, :, :17])
    op18 = convert_layout(seq, "openpose18")
    np.testing.assert_allclose(
        op18.keypoints[0, 0, 1], (keypoints[0, 0, 5] + keypoints[0, 0, 6]) / 2
    )
    assert op18.scores[0, 0, 1] == min(scores[0, 0, 5], scores[0, 0, 6])
    assert op18.scores[0, 1, 1] == 0 and not op18.keypoints[0, 1, 1].any()
    np.testing.assert_array_equal(op18.keypoints[0, :, 2], keypoints[0, :, 6])  # right shoulder
    body25 = convert_layout(seq, "openpose_body25")
    np.testing.assert_allclose(
        body25.keypoints[0, 2, 8], (keypoints[0, 2, 11] + keypoints[0, 2, 12]) / 2
    )
    ntu = SkeletonSequence(np.zeros((1, 2, 25, 3)), None, "ntu_stgcn")
    with pytest.raises(ValueError, match=r"needs joints \['nose'"):
        convert_layout(ntu, "coco")
