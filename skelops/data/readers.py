"""Readers of skeleton files: NTU RGB+D ``.skeleton`` text, pyskl / mmaction2 annotation
pickles, OpenPose per-frame JSON and Kinetics-skeleton JSON, into :class:`SkeletonSequence`.

Every reader validates what it reads. A malformed file (a bad number, a wrong count, a wrong
JSON type, NaN or infinity, a truncated or empty file, a count larger than the file can hold)
raises :class:`SkeletonFileError`, a ``ValueError`` that names the file and the line (text) or
the field (JSON, pickle); no reader returns garbage or allocates for a count it has not seen
the data of. Pickles are read by :func:`restricted_pickle_load`, which builds only numpy arrays,
numpy scalars and builtin containers and refuses every other global before calling it, so a
pickle cannot run code.

A :class:`SkeletonSequence` holds ``keypoints [M, T, V, C]`` (persons, frames, joints,
coordinates: pyskl's order) and ``scores [M, T, V]``; :meth:`SkeletonSequence.to_tensor` gives
skelops' ``[C, T, V, M]``, one sample of the ``[N, C, T, V, M]`` batches the models take.

Formats and their sources:
    * NTU RGB+D ``.skeleton`` (shahroudy/NTURGB-D, ``Matlab/read_skeleton_file.m``): the frame
      count; per frame the body count; per body a line of 10 values (bodyID, clipedEdges,
      handLeftConfidence, handLeftState, handRightConfidence, handRightState, isResticted,
      leanX, leanY, trackingState), the joint count (25) and one line of 12 values per joint
      (x y z depthX depthY colorX colorY orientationW X Y Z trackingState).
    * pyskl pickles (kennymckormick/pyskl, ``tools/data/README.md``): ``dict(split=dict(name ->
      list of frame_dir), annotations=list of dict(frame_dir, label, img_shape, original_shape,
      total_frames, keypoint [M, T, V, C], keypoint_score [M, T, V]))``.
    * OpenPose JSON (CMU-Perceptual-Computing-Lab/openpose, ``doc/02_output.md``): one file per
      frame, ``{"people": [{"pose_keypoints_2d": [x0, y0, c0, x1, ...]}, ...]}``.
    * Kinetics-skeleton (yysijie/st-gcn, ``feeder/feeder_kinetics.py``; open-mmlab/mmskeleton,
      ``doc/SKELETON_DATA.md``: videos resized to 340 x 256 at 30 fps): one file per video,
      ``{"data": [{"frame_index": i, "skeleton": [{"pose": [x0, y0, ...], "score": [...]}]}],
      "label": name, "label_index": k}`` with OpenPose COCO-18 joints normalised to ``[0, 1]``.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import pickle
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..graphs.layouts import get_layout

__all__ = [
    "MAX_FRAMES",
    "NTU_BENCHMARKS",
    "NTU_TRAINING_SUBJECTS",
    "PysklAnnotations",
    "SkeletonFileError",
    "SkeletonSequence",
    "convert_layout",
    "load_dataset",
    "load_pyskl_annotations",
    "ntu_split",
    "read_kinetics_skeleton",
    "read_ntu_skeleton",
    "read_openpose_frames",
    "read_openpose_json",
    "read_pyskl_pickle",
    "restricted_pickle_load",
]

PathLike = str | os.PathLike

MAX_FRAMES = 100_000
"""The most frames a reader accepts from a count or an index it has not seen the data of
(about 55 minutes at 30 fps): a corrupt count must not make it allocate gigabytes."""


class SkeletonFileError(ValueError):
    """A malformed skeleton file.

    Attributes:
        file: the file, as given.
        line: the 1-based line of a text format, or ``None``.
        field: the field of a JSON or pickle format (e.g. ``"people[1].pose_keypoints_2d"``), or
            ``None``.
        reason: the message without the location.
    """

    def __init__(
        self, file: PathLike, reason: str, *, line: int | None = None, field: str | None = None
    ) -> None:
        self.file = os.fspath(file)
        self.line = line
        self.field = field
        self.reason = reason
        where = self.file
        if line is not None:
            where += f", line {line}"
        if field is not None:
            where += f", {field}"
        super().__init__(f"{where}: {reason}")


# --------------------------------------------------------------------------------------------
# the sequence


@dataclasses.dataclass
class SkeletonSequence:
    """One skeleton sequence as read from a file.

    Attributes:
        keypoints: ``[M, T, V, C]`` float32 (persons, frames, joints, coordinates), pyskl's
            order; a missing person or joint is zeros.
        scores: ``[M, T, V]`` float32 confidences (OpenPose, Kinetics, pyskl 2-D) or NTU's joint
            tracking state mapped to ``[0, 1]`` (0 not tracked, 0.5 inferred, 1 tracked); 0
            where a person is missing; ``None`` when the source has none (pyskl 3-D).
        layout: the :mod:`skelops.graphs` layout of the joints (its joint count is ``V``).
        label: 0-based class, or ``None``.
        name: the sample's name (file stem, ``frame_dir``, directory name).
        image_shape: ``(height, width)`` of the image when the coordinates are pixels.
        fps: frames per second, when known.
    """

    keypoints: np.ndarray
    scores: np.ndarray | None
    layout: str
    label: int | None = None
    name: str = ""
    image_shape: tuple[int, int] | None = None
    fps: float | None = None

    def __post_init__(self) -> None:
        keypoints = np.asarray(self.keypoints)
        if keypoints.ndim != 4 or not np.issubdtype(keypoints.dtype, np.number):
            raise ValueError(
                f"keypoints must be a numeric array [M, T, V, C], got {keypoints.dtype} "
                f"array of shape {keypoints.shape}"
            )
        self.keypoints = keypoints.astype(np.float32, copy=False)
        if self.scores is not None:
            scores = np.asarray(self.scores)
            if scores.shape != keypoints.shape[:3] or not np.issubdtype(scores.dtype, np.number):
                raise ValueError(
                    f"scores must be a numeric array [M, T, V] = {keypoints.shape[:3]}, got "
                    f"{scores.dtype} array of shape {scores.shape}"
                )
            self.scores = scores.astype(np.float32, copy=False)
        num_joints = get_layout(self.layout).num_joints
        if keypoints.shape[2] != num_joints:
            raise ValueError(
                f"layout {self.layout!r} has {num_joints} joints, but keypoints have "
                f"V={keypoints.shape[2]} (shape {keypoints.shape})"
            )
        if self.label is not None and (
            isinstance(self.label, (bool, np.bool_))
            or not isinstance(self.label, (int, np.integer))
            or self.label < 0
        ):
            raise ValueError(f"label must be a non-negative int or None, got {self.label!r}")
        if self.label is not None:
            self.label = int(self.label)

    @property
    def num_persons(self) -> int:
        """``M``."""
        return self.keypoints.shape[0]

    @property
    def num_frames(self) -> int:
        """``T``."""
        return self.keypoints.shape[1]

    def to_tensor(
        self, *, include_scores: bool = False, num_persons: int | None = None
    ) -> torch.Tensor:
        """The sequence as skelops takes it: ``[C, T, V, M]`` float32, NaN-free (missing -> 0).

        Args:
            include_scores: append the scores as a last channel (``C + 1``; ST-GCN's Kinetics
                input is ``(x, y, score)``); the sequence must have scores.
            num_persons: pad with zero persons or keep the first ``num_persons`` persons, so
                that sequences batch into ``[N, C, T, V, M]``; ``None`` keeps ``M``.
        """
        values = self.keypoints
        if include_scores:
            if self.scores is None:
                raise ValueError(f"include_scores=True needs scores, but {self.name!r} has none")
            values = np.concatenate([values, self.scores[..., None]], axis=-1)
        if num_persons is not None:
            if isinstance(num_persons, bool) or not isinstance(num_persons, int) or num_persons < 0:
                raise ValueError(f"num_persons must be a non-negative int, got {num_persons!r}")
            values = values[:num_persons]
            if values.shape[0] < num_persons:
                padding = np.zeros((num_persons - values.shape[0], *values.shape[1:]), np.float32)
                values = np.concatenate([values, padding], axis=0)
        tensor = torch.from_numpy(np.ascontiguousarray(values.transpose(3, 1, 2, 0)))
        return torch.nan_to_num(tensor, nan=0.0, posinf=0.0, neginf=0.0)


# --------------------------------------------------------------------------------------------
# NTU RGB+D .skeleton

_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\Z")
_INTEGER = re.compile(r"[+-]?\d+\Z")
_NTU_NAME = re.compile(r"S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})")
_NTU_JOINTS = 25
_NTU_BODY_LINES = 2 + _NTU_JOINTS
_NTU_COORDINATES = {"xyz": (slice(0, 3), None), "depth": (slice(3, 5), (424, 512)),
                    "color": (slice(5, 7), (1080, 1920))}  # fmt: skip
# pyskl (tools/data/ntu_preproc.py): with several bodies, those tracked for at most this many
# frames are noise.
_NTU_MIN_BODY_FRAMES = 12

NTU_TRAINING_SUBJECTS: tuple[int, ...] = (
    1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38, 45, 46, 47, 49,
    50, 52, 53, 54, 55, 56, 57, 58, 59, 70, 74, 78, 80, 81, 82, 83, 84, 85, 86, 89, 91, 92, 93,
    94, 95, 97, 98, 100, 103,
)  # fmt: skip
"""Cross-subject training performers of NTU RGB+D 120 (Liu et al., TPAMI 2020, Sec. 4.1; the
list of pyskl's ``tools/data/ntu_preproc.py``). Those up to 40 are NTU RGB+D 60's
(Shahroudy et al., CVPR 2016, Sec. 3.2: 1, 2, 4, 5, 8, 9, 13-19, 25, 27, 28, 31, 34, 35, 38),
so one list serves both datasets."""

NTU_BENCHMARKS = ("xsub", "xview", "xset")
"""NTU evaluation protocols: cross-subject (:data:`NTU_TRAINING_SUBJECTS` train), cross-view
(cameras 2 and 3 train, camera 1 tests; NTU-60) and cross-setup (even setups train; NTU-120)."""


def ntu_split(name: str, benchmark: str) -> str:
    """``"train"`` or ``"val"``: the side of an NTU sample (a name holding
    ``SsssCcccPpppRrrrAaaa``) under ``benchmark`` (``"xsub"``, ``"xview"`` or ``"xset"``)."""
    if benchmark not in NTU_BENCHMARKS:
        raise ValueError(f"benchmark must be one of {NTU_BENCHMARKS}, got {benchmark!r}")
    match = _NTU_NAME.search(name)
    if match is None:
        raise ValueError(f"name must contain SsssCcccPpppRrrrAaaa (an NTU sample), got {name!r}")
    setup, camera, performer = (int(match.group(i)) for i in (1, 2, 3))
    train = {
        "xsub": performer in NTU_TRAINING_SUBJECTS,
        "xview": camera in (2, 3),
        "xset": setup % 2 == 0,
    }[benchmark]
    return "train" if train else "val"


class _Lines:
    """A cursor over the lines of a text file that reports where it fails."""

    def __init__(self, file: PathLike, data: bytes) -> None:
        self.file = file
        try:
            text = data.decode("ascii")
        except UnicodeDecodeError as error:
            line = data[: error.start].count(b"\n") + 1
            raise SkeletonFileError(file, "not an ASCII text file", line=line) from None
        self.lines = text.splitlines()
        self.index = 0

    def error(self, reason: str, line: int | None = None) -> SkeletonFileError:
        return SkeletonFileError(self.file, reason, line=self.index if line is None else line)

    @property
    def remaining(self) -> int:
        return len(self.lines) - self.index

    def tokens(self, count: int, what: str) -> list[str]:
        if self.index >= len(self.lines):
            raise self.error(f"unexpected end of file, expected {what}", len(self.lines) + 1)
        tokens = self.lines[self.index].split()
        self.index += 1
        if len(tokens) != count:
            shown = self.lines[self.index - 1].strip()
            raise self.error(f"expected {what} ({count} values), got {shown!r}")
        return tokens

    def count(self, what: str, per_item_lines: int) -> int:
        (token,) = self.tokens(1, what)
        if not _INTEGER.match(token) or int(token) < 0:
            raise self.error(f"expected {what}, got {token!r}")
        value = int(token)
        if value * per_item_lines > self.remaining:
            raise self.error(
                f"{what} is {value}, but only {self.remaining} lines follow (truncated or "
                f"corrupt file)"
            )
        return value

    def number(self, token: str, what: str) -> float:
        if not _NUMBER.match(token):
            raise self.error(f"expected a finite number for {what}, got {token!r}")
        value = float(token)
        if not math.isfinite(value):
            raise self.error(f"expected a finite number for {what}, got {token!r}")
        return value


@dataclasses.dataclass
class _Body:
    frames: list[int]
    joints: list[np.ndarray]
    states: list[np.ndarray]

    def motion(self) -> float:
        # pyskl's ntu_preproc: the variance of all the body's joint positions, summed over axes.
        return float(np.var(np.concatenate(self.joints), axis=0).sum())


def _parse_ntu(lines: _Lines, coordinates: slice) -> tuple[int, dict[int, _Body]]:
    num_frames = lines.count("the frame count", 1)
    bodies: dict[int, _Body] = {}
    for frame in range(num_frames):
        num_bodies = lines.count(f"the body count of frame {frame + 1}", _NTU_BODY_LINES)
        seen: set[int] = set()
        for body in range(num_bodies):
            where = f"frame {frame + 1}, body {body + 1}"
            info = lines.tokens(10, f"the body line of {where}")
            if not _INTEGER.match(info[0]):
                raise lines.error(f"expected an integer body ID for {where}, got {info[0]!r}")
            body_id = int(info[0])
            if body_id in seen:
                raise lines.error(f"body ID {body_id} appears twice in frame {frame + 1}")
            seen.add(body_id)
            for token in info[1:]:
                lines.number(token, f"the body line of {where}")
            (token,) = lines.tokens(1, "the joint count")
            if token != str(_NTU_JOINTS):
                raise lines.error(f"expected {_NTU_JOINTS} joints, got {token!r}")
            values = np.empty((_NTU_JOINTS, 11), np.float64)
            states = np.empty(_NTU_JOINTS, np.float32)
            for joint in range(_NTU_JOINTS):
                what = f"joint {joint + 1} of {where}"
                tokens = lines.tokens(12, what)
                values[joint] = [lines.number(t, what) for t in tokens[:11]]
                if tokens[11] not in ("0", "1", "2"):
                    state = tokens[11]
                    raise lines.error(
                        f"expected a tracking state 0, 1 or 2 for {what}, got {state!r}"
                    )
                states[joint] = int(tokens[11]) / 2
            record = bodies.setdefault(body_id, _Body([], [], []))
            record.frames.append(frame)
            record.joints.append(values[:, coordinates].astype(np.float32))
            record.states.append(states)
    for index in range(lines.index, len(lines.lines)):
        if lines.lines[index].strip():
            raise lines.error("unexpected content after the last frame", index + 1)
    return num_frames, bodies


def _assign_persons(bodies: list[_Body], max_persons: int) -> list[list[_Body]]:
    """pyskl's rule: bodies by decreasing motion, each into the first person slot whose frames
    it does not overlap; one that fits no slot when all are taken is dropped."""
    if len(bodies) > 1:
        long_bodies = [b for b in bodies if len(b.frames) >= _NTU_MIN_BODY_FRAMES]
        bodies = long_bodies or bodies
    slots: list[tuple[set[int], list[_Body]]] = []
    for body in sorted(bodies, key=lambda b: (-b.motion(), -len(b.frames))):
        frames = set(body.frames)
        for taken, members in slots:
            if not taken & frames:
                taken |= frames
                members.append(body)
                break
        else:
            if len(slots) < max_persons:
                slots.append((frames, [body]))
    return [members for _, members in slots]


def read_ntu_skeleton(
    path: PathLike,
    *,
    max_persons: int = 2,
    coordinates: str = "xyz",
    layout: str = "ntu_stgcn",
) -> SkeletonSequence:
    """Read an NTU RGB+D / NTU RGB+D 120 ``.skeleton`` file.

    Persons: the Kinect tracks bodies by ``bodyID``. As pyskl's ``tools/data/ntu_preproc.py``
    does, bodies are ranked by their motion (the variance of all their joint positions, summed
    over the axes, the rule of NTU's own FAQ), bodies seen in fewer than 12 frames are dropped
    when a longer one exists, and each body goes into the first of ``max_persons`` person slots
    whose frames it does not overlap, so a person whose ID changes mid-sequence stays in one
    slot. Frames where a person is absent are zero. Unlike pyskl, no frame is trimmed: ``T`` is
    the file's frame count.

    Args:
        path: the ``.skeleton`` file; the label comes from ``Aaaa`` in its name (0-based),
            ``None`` when the name has none.
        max_persons: person slots (2 as in every NTU benchmark).
        coordinates: ``"xyz"`` (3-D camera space, metres), ``"color"`` (RGB pixels, 1920 x
            1080) or ``"depth"`` (depth pixels, 512 x 424).
        layout: ``"ntu_stgcn"`` or ``"ntu_pyskl"`` (the same joint order, 25 joints in the
            dataset's 1-based order, with ST-GCN's or pyskl's hand edges).

    Returns:
        ``keypoints [M, T, 25, 3 or 2]`` with ``M <= max_persons`` (0 for a file without bodies),
        ``scores`` the joint tracking states / 2, ``fps`` 30 (Kinect v2).

    Raises:
        SkeletonFileError: on a malformed file, naming the line.
    """
    if isinstance(max_persons, bool) or not isinstance(max_persons, int) or max_persons < 1:
        raise ValueError(f"max_persons must be a positive int, got {max_persons!r}")
    if coordinates not in _NTU_COORDINATES:
        raise ValueError(
            f"coordinates must be one of {list(_NTU_COORDINATES)}, got {coordinates!r}"
        )
    if get_layout(layout).num_joints != _NTU_JOINTS:
        raise ValueError(f"layout must have {_NTU_JOINTS} joints (NTU), got {layout!r}")
    columns, image_shape = _NTU_COORDINATES[coordinates]
    lines = _Lines(path, Path(path).read_bytes())
    if not lines.lines:
        raise SkeletonFileError(path, "empty file", line=1)
    num_frames, bodies = _parse_ntu(lines, columns)
    if num_frames > MAX_FRAMES:
        raise SkeletonFileError(
            path, f"frame count {num_frames} exceeds MAX_FRAMES={MAX_FRAMES}", line=1
        )
    slots = _assign_persons(list(bodies.values()), max_persons)
    channels = columns.stop - columns.start
    keypoints = np.zeros((len(slots), num_frames, _NTU_JOINTS, channels), np.float32)
    scores = np.zeros((len(slots), num_frames, _NTU_JOINTS), np.float32)
    for person, members in enumerate(slots):
        for body in members:
            keypoints[person, body.frames] = np.stack(body.joints)
            scores[person, body.frames] = np.stack(body.states)
    stem = Path(path).name.split(".")[0]
    match = _NTU_NAME.search(stem)
    return SkeletonSequence(
        keypoints=keypoints,
        scores=scores,
        layout=layout,
        label=int(match.group(5)) - 1 if match else None,
        name=stem,
        image_shape=image_shape,
        fps=30.0,
    )


# --------------------------------------------------------------------------------------------
# restricted pickles and pyskl annotations


# The pickled ``numpy.ndarray`` global only names the class for ``_reconstruct``: a marker
# stands for it, so that a pickle cannot call ``ndarray(shape)`` with a huge shape.
_NDARRAY_MARKER = object()


def _reconstruct_ndarray(subtype: object, shape: object, dtype: object) -> np.ndarray:
    # numpy pickles an array as _reconstruct(ndarray, (0,), b"b") followed by __setstate__ with
    # the real shape and data; ignoring the shape argument keeps a crafted one from allocating.
    if subtype is not _NDARRAY_MARKER:
        raise pickle.UnpicklingError(f"only numpy.ndarray may be reconstructed, got {subtype!r}")
    return np.ndarray.__new__(np.ndarray, (0,), dtype)


def _allowed_globals() -> dict[tuple[str, str], object]:
    import builtins
    import codecs

    allowed: dict[tuple[str, str], object] = {
        ("builtins", name): getattr(builtins, name)
        for name in ("dict", "list", "tuple", "set", "frozenset", "str", "bytes", "bytearray",
                     "int", "float", "bool", "complex")
    }  # fmt: skip
    # Protocol-2 pickles (Python 2 compatible) store bytes as _codecs.encode(text, "latin1").
    allowed[("_codecs", "encode")] = codecs.encode
    numpy_core = np._core if hasattr(np, "_core") else np.core
    for package in ("numpy.core", "numpy._core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = _reconstruct_ndarray
        allowed[(f"{package}.multiarray", "scalar")] = numpy_core.multiarray.scalar
        allowed[(f"{package}.numeric", "_frombuffer")] = numpy_core.numeric._frombuffer
    allowed[("numpy", "ndarray")] = _NDARRAY_MARKER
    allowed[("numpy", "dtype")] = np.dtype
    # numpy >= 1.25 pickles dtypes as numpy.dtypes.Float32DType etc.
    dtypes = getattr(np, "dtypes", None)
    for name in dir(dtypes) if dtypes is not None else ():
        if name.endswith("DType"):
            allowed[("numpy.dtypes", name)] = getattr(dtypes, name)
    return allowed


class _RestrictedUnpickler(pickle.Unpickler):
    _allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        if module == "__builtin__":  # Python 2's name, which Unpickler.find_class would map
            module = "builtins"
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"forbidden global {module}.{name}: only numpy arrays, numpy scalars and builtin "
                f"containers may be unpickled"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent IDs are not allowed")


def restricted_pickle_load(path: PathLike) -> Any:
    """Unpickle a file that may hold only numpy arrays, numpy scalars and builtin containers
    (dict, list, tuple, set, frozenset, str, bytes, int, float, bool, complex).

    Any other global (``os.system``, ``builtins.eval``, a class) is refused before it is called,
    so the file cannot run code; Python 2 pickles are read with ``encoding="latin1"``.

    Raises:
        SkeletonFileError: on a forbidden global or a truncated or corrupt pickle.
    """
    data = Path(path).read_bytes()
    if not data:
        raise SkeletonFileError(path, "empty file")
    try:
        return _RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
    except pickle.UnpicklingError as error:
        raise SkeletonFileError(path, f"cannot unpickle: {error}") from None
    except (EOFError, MemoryError, RecursionError):
        raise SkeletonFileError(path, "truncated or corrupt pickle") from None
    except Exception as error:  # any failure of the allowed constructors means a corrupt file
        raise SkeletonFileError(path, f"corrupt pickle ({type(error).__name__}: {error})") from None


@dataclasses.dataclass
class PysklAnnotations:
    """The content of a pyskl annotation pickle.

    Attributes:
        splits: split name -> the ``frame_dir`` names in it (e.g. ``xsub_train``, ``xsub_val``).
        sequences: every annotation, in the file's order.
    """

    splits: dict[str, list[str]]
    sequences: list[SkeletonSequence]

    def select(self, split: str) -> list[SkeletonSequence]:
        """The sequences of ``split``, in the file's order."""
        if split not in self.splits:
            raise KeyError(f"split must be one of {sorted(self.splits)}, got {split!r}")
        names = set(self.splits[split])
        return [s for s in self.sequences if s.name in names]


_PYSKL_LAYOUTS = {(25, 3): "ntu_pyskl", (17, 2): "coco", (18, 2): "openpose18"}


def _pyskl_array(
    path: PathLike, value: object, field: str, shape_doc: str, ndim: int
) -> np.ndarray:
    if not isinstance(value, np.ndarray) or value.ndim != ndim:
        got = f"{value.ndim}-d array" if isinstance(value, np.ndarray) else type(value).__name__
        raise SkeletonFileError(
            path, f"expected a {ndim}-d array {shape_doc}, got {got}", field=field
        )
    if not (np.issubdtype(value.dtype, np.floating) or np.issubdtype(value.dtype, np.integer)):
        raise SkeletonFileError(
            path, f"expected a numeric array, got dtype {value.dtype}", field=field
        )
    value = value.astype(np.float32)
    if not np.isfinite(value).all():
        raise SkeletonFileError(path, "contains NaN or infinity", field=field)
    return value


def _pyskl_int(path: PathLike, value: object, field: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 0:
        raise SkeletonFileError(path, f"expected a non-negative int, got {value!r}", field=field)
    return int(value)


def _pyskl_sequence(
    path: PathLike, index: int, item: object, layout: str | None
) -> SkeletonSequence:
    where = f"annotations[{index}]"
    if not isinstance(item, dict):
        raise SkeletonFileError(path, f"expected a dict, got {type(item).__name__}", field=where)
    if "keypoint" not in item:
        hint = (
            " (a Kinetics-400 table of contents: its keypoints are in kpfiles)"
            if "raw_file" in item
            else ""
        )
        raise SkeletonFileError(path, f"missing 'keypoint'{hint}", field=where)
    name = item.get("frame_dir")
    if not isinstance(name, str):
        raise SkeletonFileError(path, f"expected a str, got {name!r}", field=f"{where}.frame_dir")
    keypoints = _pyskl_array(path, item["keypoint"], f"{where}.keypoint", "[M, T, V, C]", 4)
    scores = None
    if item.get("keypoint_score") is not None:
        scores = _pyskl_array(
            path, item["keypoint_score"], f"{where}.keypoint_score", "[M, T, V]", 3
        )
        if scores.shape != keypoints.shape[:3]:
            raise SkeletonFileError(
                path,
                f"expected shape {keypoints.shape[:3]} (keypoint's [M, T, V]), got {scores.shape}",
                field=f"{where}.keypoint_score",
            )
    if "total_frames" in item:
        total = _pyskl_int(path, item["total_frames"], f"{where}.total_frames")
        if total != keypoints.shape[1]:
            raise SkeletonFileError(
                path,
                f"is {total}, but keypoint has T={keypoints.shape[1]}",
                field=f"{where}.total_frames",
            )
    label = None
    if item.get("label") is not None:
        label = _pyskl_int(path, item["label"], f"{where}.label")
    image_shape = None
    if item.get("img_shape") is not None:
        shape = item["img_shape"]
        if not isinstance(shape, (tuple, list)) or len(shape) != 2:
            raise SkeletonFileError(
                path, f"expected (height, width), got {shape!r}", field=f"{where}.img_shape"
            )
        image_shape = tuple(_pyskl_int(path, s, f"{where}.img_shape") for s in shape)
    num_joints, channels = keypoints.shape[2], keypoints.shape[3]
    chosen = layout or _PYSKL_LAYOUTS.get((num_joints, channels))
    if chosen is None:
        raise SkeletonFileError(
            path,
            f"no default layout for V={num_joints} joints with C={channels}: pass layout=",
            field=f"{where}.keypoint",
        )
    if get_layout(chosen).num_joints != num_joints:
        expected = get_layout(chosen).num_joints
        raise SkeletonFileError(
            path,
            f"has V={num_joints} joints, layout {chosen!r} has {expected}",
            field=f"{where}.keypoint",
        )
    return SkeletonSequence(keypoints, scores, chosen, label, name, image_shape)


def read_pyskl_pickle(path: PathLike, *, layout: str | None = None) -> PysklAnnotations:
    """Read a pyskl / mmaction2 skeleton annotation pickle with :func:`restricted_pickle_load`.

    Args:
        path: the ``.pkl`` file (e.g. pyskl's ``ntu60_3danno.pkl``, ``ntu60_hrnet.pkl``).
        layout: the joints' layout; ``None`` picks it from ``[V, C]``: 25 joints in 3-D
            ``"ntu_pyskl"``, 17 in 2-D ``"coco"`` (HRNet), 18 in 2-D ``"openpose18"``.

    Returns:
        the splits and the sequences; keypoints and scores become float32. A pickle that is a
        bare list of annotations has no splits.

    Raises:
        SkeletonFileError: naming the field, on a forbidden global, a corrupt pickle or a
            malformed annotation.
    """
    content = restricted_pickle_load(path)
    splits: object = {}
    if isinstance(content, dict):
        if "annotations" not in content:
            raise SkeletonFileError(
                path, f"expected keys 'split' and 'annotations', got {sorted(map(str, content))}"
            )
        annotations = content["annotations"]
        splits = content.get("split", {})
    else:
        annotations = content
    if not isinstance(annotations, list):
        raise SkeletonFileError(
            path, f"expected a list, got {type(annotations).__name__}", field="annotations"
        )
    if not isinstance(splits, dict) or not all(
        isinstance(k, str) and isinstance(v, (list, tuple)) and all(isinstance(n, str) for n in v)
        for k, v in splits.items()
    ):
        raise SkeletonFileError(
            path, "expected a dict of split name -> list of frame_dir names", field="split"
        )
    sequences = [_pyskl_sequence(path, i, item, layout) for i, item in enumerate(annotations)]
    return PysklAnnotations({k: list(v) for k, v in splits.items()}, sequences)


def load_pyskl_annotations(
    path: PathLike, split: str | None = None, *, layout: str | None = None
) -> list[SkeletonSequence]:
    """The sequences of a pyskl pickle, all or those of ``split`` (e.g. ``"xsub_train"``);
    :func:`read_pyskl_pickle` gives the split names too."""
    annotations = read_pyskl_pickle(path, layout=layout)
    return annotations.sequences if split is None else annotations.select(split)


# --------------------------------------------------------------------------------------------
# JSON formats: OpenPose and Kinetics-skeleton


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a finite number")


def _load_json(file: PathLike, data: bytes | str) -> Any:
    if not data.strip():
        raise SkeletonFileError(file, "empty file", line=1)
    try:
        return json.loads(data, parse_constant=_reject_constant)
    except json.JSONDecodeError as error:
        raise SkeletonFileError(
            file, f"invalid JSON: {error.msg} (column {error.colno})", line=error.lineno
        ) from None
    except (ValueError, RecursionError) as error:
        raise SkeletonFileError(file, f"invalid JSON: {error}") from None


def _numbers(file: PathLike, values: object, field: str, length: int) -> np.ndarray:
    if not isinstance(values, list):
        raise SkeletonFileError(
            file, f"expected a list of numbers, got {type(values).__name__}", field=field
        )
    if len(values) != length:
        raise SkeletonFileError(file, f"expected {length} numbers, got {len(values)}", field=field)
    for i, value in enumerate(values):
        if type(value) not in (int, float) or not math.isfinite(value):
            raise SkeletonFileError(
                file, f"expected a finite number, got {value!r}", field=f"{field}[{i}]"
            )
    return np.asarray(values, dtype=np.float32)


def _check_scores_range(file: PathLike, scores: np.ndarray, field: str) -> None:
    bad = np.flatnonzero((scores < 0) | (scores > 1))
    if bad.size:
        raise SkeletonFileError(file, f"confidence {scores[bad[0]]} is outside [0, 1]", field=field)


def _field(data: object, key: str, kind: type, file: PathLike, where: str) -> Any:
    if not isinstance(data, dict):
        raise SkeletonFileError(
            file, f"expected an object, got {type(data).__name__}", field=where or "(top level)"
        )
    if key not in data:
        raise SkeletonFileError(file, f"missing field {key!r}", field=where or "(top level)")
    value = data[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise SkeletonFileError(
            file,
            f"expected {kind.__name__}, got {type(value).__name__}",
            field=f"{where}.{key}".lstrip("."),
        )
    return value


def _stack_persons(
    frames: list[list[tuple[np.ndarray, np.ndarray]]],
    num_joints: int,
    channels: int,
    max_persons: int | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per frame, persons by decreasing summed confidence (ST-GCN's Kinetics feeder), the first
    ``max_persons`` kept; ``[M, T, V, C]`` and ``[M, T, V]`` with M the most persons kept."""
    ordered = [sorted(people, key=lambda p: -float(p[1].sum()))[:max_persons] for people in frames]
    num_persons = max((len(p) for p in ordered), default=0)
    keypoints = np.zeros((num_persons, len(frames), num_joints, channels), np.float32)
    scores = np.zeros((num_persons, len(frames), num_joints), np.float32)
    for t, people in enumerate(ordered):
        for m, (coords, confidence) in enumerate(people):
            keypoints[m, t] = coords
            scores[m, t] = confidence
    return keypoints, scores


_OPENPOSE_LAYOUTS = {17: "coco", 18: "openpose18", 25: "openpose_body25b"}


def _check_max_persons(max_persons: int | None) -> None:
    if max_persons is not None and (
        isinstance(max_persons, bool) or not isinstance(max_persons, int) or max_persons < 1
    ):
        raise ValueError(f"max_persons must be a positive int or None, got {max_persons!r}")


def read_openpose_frames(
    frames: Iterable[tuple[str, bytes | str]],
    *,
    layout: str = "auto",
    max_persons: int | None = None,
    name: str = "",
    fps: float | None = None,
    image_shape: tuple[int, int] | None = None,
) -> SkeletonSequence:
    """Parse OpenPose per-frame JSON documents given as ``(file name, content)`` pairs in frame
    order (read from an archive, say); :func:`read_openpose_json` reads them from disk.

    See :func:`read_openpose_json` for the arguments and the person rule.
    """
    _check_max_persons(max_persons)
    if layout != "auto":
        get_layout(layout)
    parsed: list[list[tuple[np.ndarray, np.ndarray]]] = []
    num_joints = None if layout == "auto" else get_layout(layout).num_joints
    for file, data in frames:
        document = _load_json(file, data)
        people = _field(document, "people", list, file, "")
        persons = []
        for index, person in enumerate(people):
            where = f"people[{index}]"
            values = _field(person, "pose_keypoints_2d", list, file, where)
            if not values:
                continue  # a detection without body keypoints (face or hands only)
            if num_joints is None:
                if len(values) % 3 or len(values) // 3 not in _OPENPOSE_LAYOUTS:
                    raise SkeletonFileError(
                        file,
                        f"{len(values)} values are not 3 x 17, 18 or 25 joints: pass layout=",
                        field=f"{where}.pose_keypoints_2d",
                    )
                num_joints = len(values) // 3
                layout = _OPENPOSE_LAYOUTS[num_joints]
            array = _numbers(file, values, f"{where}.pose_keypoints_2d", 3 * num_joints).reshape(
                -1, 3
            )
            _check_scores_range(file, array[:, 2], f"{where}.pose_keypoints_2d")
            persons.append((array[:, :2], array[:, 2]))
        parsed.append(persons)
        if len(parsed) > MAX_FRAMES:
            raise SkeletonFileError(file, f"more than MAX_FRAMES={MAX_FRAMES} frames")
    if layout == "auto":  # not one person in any frame: the joint count is unknown
        layout = "openpose_body25b"
    keypoints, scores = _stack_persons(parsed, get_layout(layout).num_joints, 2, max_persons)
    return SkeletonSequence(keypoints, scores, layout, None, name, image_shape, fps)


def _natural_key(text: str) -> list[object]:
    """Sort key ordering digit runs by value (``frame2`` before ``frame10``)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def read_openpose_json(
    path_or_dir: PathLike,
    layout: str = "auto",
    max_persons: int | None = None,
    *,
    fps: float | None = None,
    image_shape: tuple[int, int] | None = None,
) -> SkeletonSequence:
    """Read OpenPose's ``--write_json`` output: a directory with one ``.json`` file per frame
    (in natural order of the names: ``x_2.json`` before ``x_10.json``) or one such file.

    Persons: OpenPose does not track people, so each frame's detections are ordered by their
    summed confidence, highest first (the ordering of ST-GCN's Kinetics feeder), and the first
    ``max_persons`` are kept; slot ``m`` is the ``m``-th most confident person of every frame.
    Keypoints OpenPose did not find are ``(0, 0)`` with confidence 0, as it writes them.

    Args:
        path_or_dir: a directory of frame files, or one file.
        layout: ``"openpose_body25b"``, ``"openpose_body25"``, ``"openpose18"``, ``"coco"``...;
            ``"auto"`` picks from the keypoint count: 17 ``"coco"``, 18 ``"openpose18"`` and 25
            ``"openpose_body25b"`` (BODY_25 and BODY_25B cannot be told apart by their count:
            pass ``layout="openpose_body25"`` for OpenPose's default model).
        max_persons: persons kept per frame; ``None`` keeps all.
        fps, image_shape: recorded in the sequence (OpenPose's JSON has neither).

    Returns:
        ``keypoints [M, T, V, 2]`` in pixels, ``scores [M, T, V]`` confidences in ``[0, 1]``;
        the name is the directory's (or file's stem).

    Raises:
        SkeletonFileError: naming the file and field, on malformed JSON, a wrong type or count,
            a non-finite number or a confidence outside ``[0, 1]``.
    """
    path = Path(path_or_dir)
    if path.is_dir():
        files = sorted(
            (p for p in path.iterdir() if p.suffix == ".json"), key=lambda p: _natural_key(p.name)
        )
        if not files:
            raise SkeletonFileError(path, "no .json frame files in the directory")
        name = path.name
    else:
        files, name = [path], path.stem
    frames = ((os.fspath(f), f.read_bytes()) for f in files)
    return read_openpose_frames(
        frames, layout=layout, max_persons=max_persons, name=name, fps=fps, image_shape=image_shape
    )


_KINETICS_JOINTS = 18


def read_kinetics_skeleton(path: PathLike, *, max_persons: int | None = 2) -> SkeletonSequence:
    """Read one video of Kinetics-skeleton (ST-GCN's OpenPose COCO-18 skeletons of Kinetics-400,
    ``kinetics_train/*.json``, ``kinetics_val/*.json``).

    Coordinates stay as stored, normalised to ``[0, 1]`` by the frame's width and height (the
    videos were resized to 340 x 256); ST-GCN's feeder then subtracts 0.5 and zeroes joints of
    score 0, a transform left to the caller. Frame ``t`` of the sequence is ``frame_index - min
    frame_index``; frames absent from the file are zero. Persons are ordered per frame by
    summed score and the first ``max_persons`` kept, as ST-GCN's feeder keeps 2.

    Returns:
        ``keypoints [M, T, 18, 2]``, ``scores [M, T, 18]``, layout ``"openpose18"``, the label
        ``label_index`` (``None`` when absent or negative), ``fps`` 30.

    Raises:
        SkeletonFileError: naming the field, on malformed content.
    """
    _check_max_persons(max_persons)
    document = _load_json(path, Path(path).read_bytes())
    data = _field(document, "data", list, path, "")
    label = document.get("label_index")
    if label is not None and (isinstance(label, bool) or not isinstance(label, int)):
        raise SkeletonFileError(path, f"expected an int, got {label!r}", field="label_index")
    entries: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
    for i, frame in enumerate(data):
        where = f"data[{i}]"
        index = _field(frame, "frame_index", int, path, where)
        if index < 0 or index in entries:
            raise SkeletonFileError(
                path, f"{index} is negative or repeated", field=f"{where}.frame_index"
            )
        people = []
        for m, skeleton in enumerate(_field(frame, "skeleton", list, path, where)):
            at = f"{where}.skeleton[{m}]"
            pose = _numbers(
                path, _field(skeleton, "pose", list, path, at), f"{at}.pose", 2 * _KINETICS_JOINTS
            )
            score = _numbers(
                path, _field(skeleton, "score", list, path, at), f"{at}.score", _KINETICS_JOINTS
            )
            _check_scores_range(path, score, f"{at}.score")
            people.append((pose.reshape(_KINETICS_JOINTS, 2), score))
        entries[index] = people
    first = min(entries, default=0)
    span = max(entries, default=-1) - first + 1
    if span > MAX_FRAMES:
        raise SkeletonFileError(
            path,
            f"frame indices span {span} frames, more than MAX_FRAMES={MAX_FRAMES}",
            field="data",
        )
    frames = [entries.get(first + t, []) for t in range(span)]
    keypoints, scores = _stack_persons(frames, _KINETICS_JOINTS, 2, max_persons)
    return SkeletonSequence(
        keypoints,
        scores,
        "openpose18",
        label if label is None or label >= 0 else None,
        Path(path).stem,
        None,
        30.0,
    )


# --------------------------------------------------------------------------------------------
# layouts and datasets

# Joints some layouts have and others lack, as the midpoint of two joints every layout names.
_MIDPOINTS = {"neck": ("left_shoulder", "right_shoulder"), "mid_hip": ("left_hip", "right_hip")}


def convert_layout(sequence: SkeletonSequence, layout: str) -> SkeletonSequence:
    """The sequence in another layout, joints matched by name.

    A joint the target has and the source lacks is built only where that is standard: ``neck``
    as the midpoint of the shoulders and ``mid_hip`` as that of the hips (OpenPose's COCO-18 and
    BODY_25 define them so), with the smaller of the two scores, and zero where either is
    missing (score 0). E.g. ``"openpose_body25b"`` -> ``"coco"`` (its first 17 joints, for
    PoseC3D) or -> ``"openpose18"`` (ST-GCN's Kinetics layout).

    Raises:
        ValueError: when the target has joints the source cannot give, naming them.
    """
    source, target = get_layout(sequence.layout), get_layout(layout)
    index = {name: i for i, name in enumerate(source.joint_names)}
    missing = [
        name for name in target.joint_names
        if name not in index and not all(p in index for p in _MIDPOINTS.get(name, ("?",)))
    ]  # fmt: skip
    if missing:
        raise ValueError(
            f"layout {layout!r} needs joints {missing} that layout {sequence.layout!r} lacks"
        )
    keypoints, scores = sequence.keypoints, sequence.scores
    new_keypoints = np.zeros(
        (*keypoints.shape[:2], target.num_joints, keypoints.shape[3]), np.float32
    )
    new_scores = None if scores is None else np.zeros(new_keypoints.shape[:3], np.float32)
    for j, name in enumerate(target.joint_names):
        if name in index:
            new_keypoints[:, :, j] = keypoints[:, :, index[name]]
            if scores is not None:
                new_scores[:, :, j] = scores[:, :, index[name]]
            continue
        a, b = (index[p] for p in _MIDPOINTS[name])
        midpoint = (keypoints[:, :, a] + keypoints[:, :, b]) / 2
        if scores is None:
            new_keypoints[:, :, j] = midpoint
        else:
            score = np.minimum(scores[:, :, a], scores[:, :, b])
            new_keypoints[:, :, j] = np.where(score[..., None] > 0, midpoint, 0)
            new_scores[:, :, j] = score
    return dataclasses.replace(sequence, keypoints=new_keypoints, scores=new_scores, layout=layout)


def _ntu_files(directory: Path, split: str | Sequence[str] | None) -> list[Path]:
    files = sorted(directory.glob("*.skeleton"))
    if split is None:
        return files
    if isinstance(split, str):
        benchmark, _, side = split.rpartition("_")
        if benchmark not in NTU_BENCHMARKS or side not in ("train", "val"):
            raise ValueError(
                f"split must be '<benchmark>_train' or '<benchmark>_val' with benchmark in "
                f"{NTU_BENCHMARKS} (pyskl's names, e.g. 'xsub_train'), or a list of file stems, "
                f"got {split!r}"
            )
        return [f for f in files if ntu_split(f.stem, benchmark) == side]
    stems = set(split)
    found = [f for f in files if f.stem in stems]
    if len(found) != len(stems):
        absent = sorted(stems - {f.stem for f in found})
        raise ValueError(f"split names {len(absent)} files not in {directory}: {absent[:5]}")
    return found


def load_dataset(
    source: str, path: PathLike, split: str | Sequence[str] | None = None, **kwargs: Any
) -> list[SkeletonSequence]:
    """Read a whole dataset.

    Args:
        source: ``"ntu"``: a directory of ``.skeleton`` files; ``split`` is ``None`` (all),
            ``"xsub_train"``, ``"xsub_val"``, ``"xview_train"``, ``"xview_val"``,
            ``"xset_train"``, ``"xset_val"`` (see :func:`ntu_split`), or a list of file stems.
            Files without any body (NTU's "samples with missing skeletons") are left out, as
            pyskl and CTR-GCN leave them out. ``"pyskl"``: an annotation pickle, ``split`` one
            of its split names. ``"kinetics"``: a Kinetics-skeleton directory, ``split``
            ``None`` (``path`` holds the json files) or ``"train"`` / ``"val"``
            (``path/kinetics_train``, ``path/kinetics_val``); videos without skeletons are left
            out, as ST-GCN's feeder leaves them out. ``"openpose"``: a directory holding one
            directory of per-frame JSON files per sequence (no labels, no splits).
        path: the file or directory.
        split: see ``source``.
        kwargs: passed to the reader (:func:`read_ntu_skeleton`, :func:`read_pyskl_pickle`,
            :func:`read_kinetics_skeleton`, :func:`read_openpose_json`).

    Returns:
        the sequences, in sorted file order (the pickle's order for pyskl).
    """
    path = Path(path)
    if source == "pyskl":
        return load_pyskl_annotations(path, None if split is None else str(split), **kwargs)
    if source not in ("ntu", "kinetics", "openpose"):
        raise ValueError(f"source must be 'ntu', 'pyskl', 'kinetics' or 'openpose', got {source!r}")
    if not path.is_dir():
        raise NotADirectoryError(f"path must be a directory for source {source!r}, got {path}")
    if source == "ntu":
        sequences = [read_ntu_skeleton(f, **kwargs) for f in _ntu_files(path, split)]
        return [s for s in sequences if s.num_persons > 0]
    if source == "kinetics":
        if split is not None:
            if split not in ("train", "val"):
                raise ValueError(
                    f"split must be None, 'train' or 'val' for kinetics, got {split!r}"
                )
            path = path / f"kinetics_{split}"
        sequences = [read_kinetics_skeleton(f, **kwargs) for f in sorted(path.glob("*.json"))]
        return [s for s in sequences if s.num_persons > 0 and s.num_frames > 0]
    if split is not None:
        raise ValueError(f"split must be None for openpose (no splits), got {split!r}")
    directories = sorted(d for d in path.iterdir() if d.is_dir())
    return [read_openpose_json(d, **kwargs) for d in directories]
