"""Real skeleton sequences for tests and examples: the OpenPose BODY_25B keypoints of Pose2Sim's
demonstration trials.

Pose2Sim (Pagnon, Domalain and Reveret, "Pose2Sim: an open-source Python package for
multiview markerless kinematics", JOSS 2022; github.com/perfanalytics/pose2sim) ships its demo
data in its wheel: four synchronised cameras (1088 x 1920 pixels, portrait, 60 fps) filming one
or two people, with OpenPose BODY_25B detections written per frame as OpenPose JSON. This module
downloads the wheel ``pose2sim==0.8.4`` once with pip (``pip download --no-deps``: nothing is
installed), checks its SHA-256, reads the JSON members straight from the zip with
:func:`skelops.data.readers.read_openpose_frames`, and caches the parsed arrays as ``.npz``.

Sequences are named ``"<trial>/<camera>"``:

* ``S01_Demo_SingleTrial/cam01`` ... ``cam04``: one person, 100 frames (cam01, cam02) or 102
  (cam03, cam04);
* ``S00_P00_T00_StaticTrial/cam0X``, ``S00_P01_T00_StaticTrialParticipant1/cam0X``,
  ``S00_P01_T01_StaticTrialParticipant2/cam0X``: one person standing still, 12 frames;
* ``S00_P00_T01_BalancingTrial/cam0X``: one person, 100 frames;
* ``S00_P01_T02_Participants1-2/cam0X``: two people, 100 frames.

Each is a :class:`~skelops.data.readers.SkeletonSequence` with ``keypoints [M, T, 25, 2]`` in
pixels, ``scores [M, T, 25]``, layout ``"openpose_body25b"``, ``image_shape`` from the trial's
calibration file and ``fps`` from its ``Config.toml``. OpenPose also reports some spurious
detections (people at the image border): all are kept, most confident first in every frame.

The cache directory is ``cache_dir``, else ``$SKELOPS_CACHE``, else ``~/.cache/skelops``.
``python -m skelops.data.pose2sim --fetch`` fills it, ``--extract DIR`` writes the JSON files
as OpenPose does (for readers and ``skelops eval``); without network, download the wheel
elsewhere with ``pip download --no-deps pose2sim==0.8.4`` and copy it there.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree
import zipfile
from pathlib import Path

import numpy as np

from .readers import SkeletonSequence, _natural_key, read_openpose_frames

__all__ = [
    "POSE2SIM_SHA256",
    "POSE2SIM_VERSION",
    "POSE2SIM_WHEEL",
    "Pose2SimUnavailableError",
    "extract_pose2sim_json",
    "fetch_pose2sim_wheel",
    "load_pose2sim_sequence",
    "pose2sim_cache_dir",
    "pose2sim_sequence_names",
    "pose2sim_sequences",
]

POSE2SIM_VERSION = "0.8.4"
POSE2SIM_WHEEL = f"pose2sim-{POSE2SIM_VERSION}-py3-none-any.whl"
POSE2SIM_SHA256 = "d16e9bbbc38cdd210ff7ce7c4dea91ce4274012f05a27951dd33d4db95588e81"
"""SHA-256 of the wheel as PyPI serves it (recorded at its first download)."""

_CACHE_FORMAT = 1
_JSON_MEMBER = re.compile(
    r"Pose2Sim/(?:.+/)?(?P<trial>[^/]+)/pose/(?P<camera>cam\d+)_json/[^/]+\.json"
)


class Pose2SimUnavailableError(RuntimeError):
    """The Pose2Sim wheel is not in the cache and could not be downloaded or verified."""


def pose2sim_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir``, else ``$SKELOPS_CACHE``, else ``~/.cache/skelops`` (not created)."""
    if cache_dir is not None:
        return Path(cache_dir)
    return Path(os.environ.get("SKELOPS_CACHE") or Path.home() / ".cache" / "skelops")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download_hint(directory: Path) -> str:
    return (
        f"Run `{Path(sys.executable).name} -m skelops.data.pose2sim --fetch` with access to PyPI, "
        f"or on a machine that has it run `pip download --no-deps pose2sim=={POSE2SIM_VERSION} "
        f"-d DIR` and copy DIR/{POSE2SIM_WHEEL} to {directory} (or point $SKELOPS_CACHE at DIR)."
    )


def fetch_pose2sim_wheel(cache_dir: str | os.PathLike | None = None) -> Path:
    """The verified Pose2Sim wheel in the cache directory, downloaded first when absent.

    The download runs ``python -m pip download --no-deps pose2sim==0.8.4`` (the running
    interpreter's pip, with its index configuration) into a temporary directory inside the
    cache; only a wheel whose SHA-256 is :data:`POSE2SIM_SHA256` is kept. A cached file with
    another hash (an interrupted copy) is replaced.

    Raises:
        Pose2SimUnavailableError: when the download fails or gives another file, saying what to
            run instead.
    """
    directory = pose2sim_cache_dir(cache_dir)
    wheel = directory / POSE2SIM_WHEEL
    if wheel.is_file() and _sha256(wheel) == POSE2SIM_SHA256:
        return wheel
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory, prefix=".download-") as temporary:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   f"pose2sim=={POSE2SIM_VERSION}", "-d", temporary]  # fmt: skip
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=900)
            failure = result.stderr.strip().splitlines()[-3:] if result.returncode else None
        except (OSError, subprocess.TimeoutExpired) as error:
            failure = [str(error)]
        downloaded = Path(temporary) / POSE2SIM_WHEEL
        if failure is not None or not downloaded.is_file():
            raise Pose2SimUnavailableError(
                f"could not download {POSE2SIM_WHEEL} ({' | '.join(failure or ['no wheel'])}). "
                + _download_hint(directory)
            )
        digest = _sha256(downloaded)
        if digest != POSE2SIM_SHA256:
            raise Pose2SimUnavailableError(
                f"the downloaded {POSE2SIM_WHEEL} has SHA-256 {digest}, expected {POSE2SIM_SHA256}"
            )
        os.replace(downloaded, wheel)
    return wheel


def _trial_members(names: list[str]) -> dict[str, tuple[str, list[str]]]:
    """Sequence name -> (trial directory in the wheel, its JSON members in frame order)."""
    found: dict[str, tuple[str, list[str]]] = {}
    for member in names:
        match = _JSON_MEMBER.fullmatch(member)
        if match:
            name = f"{match['trial']}/{match['camera']}"
            trial_dir = member[: match.start("trial")] + match["trial"]
            found.setdefault(name, (trial_dir, []))[1].append(member)
    return {
        name: (trial, sorted(files, key=_natural_key))
        for name, (trial, files) in sorted(found.items())
    }


def _nearest(names: list[str], directory: str, pattern: str) -> str | None:
    """The member matching ``pattern`` in the deepest ancestor of ``directory`` that has one."""
    while directory:
        candidates = sorted(
            n
            for n in names
            if n.startswith(directory + "/") and re.fullmatch(pattern, n[len(directory) + 1 :])
        )
        if candidates:
            return candidates[0]
        directory = directory.rpartition("/")[0]
    return None


def _frame_rate(archive: zipfile.ZipFile, names: list[str], trial: str) -> float | None:
    directory = trial
    while directory:
        config = f"{directory}/Config.toml"
        if config in names:
            text = archive.read(config).decode("utf-8", "replace")
            match = re.search(r"^\s*frame_rate\s*=\s*([0-9.]+)", text, re.MULTILINE)
            if match:
                return float(match.group(1))
        directory = directory.rpartition("/")[0]
    return None


def _image_shape(
    archive: zipfile.ZipFile, names: list[str], trial: str, camera: str
) -> tuple[int, int] | None:
    """``(height, width)`` from the ``fov_video`` of the camera in the Qualisys calibration file
    nearest to the trial (``Calib.qca.txt``; the wheel's content is fixed by its hash)."""
    calibration = _nearest(names, trial, r"(?:[^/]+/)?Calib[^/]*\.qca\.txt")
    if calibration is None:
        return None
    root = ElementTree.fromstring(archive.read(calibration))
    serial = f"cam_{camera[len('cam') :]}"
    for element in root.iter("camera"):
        fov = element.find("fov_video")
        if element.get("serial") == serial and fov is not None:
            return int(fov.get("bottom")) - int(fov.get("top")) + 1, int(fov.get("right")) - int(
                fov.get("left")
            ) + 1
    return None


def _parse_wheel(wheel: Path) -> dict[str, SkeletonSequence]:
    sequences = {}
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        for name, (trial, members) in _trial_members(names).items():
            camera = name.rpartition("/")[2]
            frames = ((f"{wheel.name}:{m}", archive.read(m)) for m in members)
            sequences[name] = read_openpose_frames(
                frames,
                layout="openpose_body25b",
                name=name,
                fps=_frame_rate(archive, names, trial),
                image_shape=_image_shape(archive, names, trial, camera),
            )
    if not sequences:
        raise Pose2SimUnavailableError(f"{wheel} holds no Pose2Sim OpenPose sequences")
    return sequences


def _cache_file(directory: Path) -> Path:
    return directory / f"pose2sim-{POSE2SIM_VERSION}-sequences-v{_CACHE_FORMAT}.npz"


def _save(path: Path, sequences: dict[str, SkeletonSequence]) -> None:
    meta = [
        {"name": s.name, "fps": s.fps, "image_shape": s.image_shape} for s in sequences.values()
    ]
    arrays = {"meta": np.array(json.dumps(meta))}
    for i, sequence in enumerate(sequences.values()):
        arrays[f"keypoints_{i}"] = sequence.keypoints
        arrays[f"scores_{i}"] = sequence.scores
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    with partial.open("wb") as file:
        np.savez_compressed(file, **arrays)
    os.replace(partial, path)


def _load(path: Path) -> dict[str, SkeletonSequence]:
    with np.load(path, allow_pickle=False) as content:
        meta = json.loads(str(content["meta"]))
        return {
            entry["name"]: SkeletonSequence(
                keypoints=content[f"keypoints_{i}"],
                scores=content[f"scores_{i}"],
                layout="openpose_body25b",
                name=entry["name"],
                image_shape=None if entry["image_shape"] is None else tuple(entry["image_shape"]),
                fps=entry["fps"],
            )
            for i, entry in enumerate(meta)
        }


def pose2sim_sequences(cache_dir: str | os.PathLike | None = None) -> dict[str, SkeletonSequence]:
    """Every Pose2Sim demo sequence, by name (see the module docstring).

    The first call fetches the wheel (:func:`fetch_pose2sim_wheel`) and parses it (about a
    second); later calls read the ``.npz`` cache next to the wheel. A cache that cannot be read
    is rebuilt.

    Raises:
        Pose2SimUnavailableError: when the wheel is missing and cannot be downloaded.
    """
    directory = pose2sim_cache_dir(cache_dir)
    cache = _cache_file(directory)
    if cache.is_file():
        with contextlib.suppress(OSError, ValueError, KeyError, zipfile.BadZipFile):
            return _load(cache)
    sequences = _parse_wheel(fetch_pose2sim_wheel(directory))
    _save(cache, sequences)
    return sequences


def pose2sim_sequence_names(cache_dir: str | os.PathLike | None = None) -> list[str]:
    """The sequence names, sorted."""
    return sorted(pose2sim_sequences(cache_dir))


def load_pose2sim_sequence(
    name: str, cache_dir: str | os.PathLike | None = None
) -> SkeletonSequence:
    """One sequence, e.g. ``"S01_Demo_SingleTrial/cam01"``."""
    sequences = pose2sim_sequences(cache_dir)
    if name not in sequences:
        raise KeyError(f"name must be one of {sorted(sequences)}, got {name!r}")
    return sequences[name]


def extract_pose2sim_json(
    directory: str | os.PathLike, cache_dir: str | os.PathLike | None = None
) -> list[Path]:
    """Write the wheel's OpenPose JSON files as OpenPose writes them, one directory per
    sequence: ``directory/<trial>/<camera>_json/<frame>.json``, the layout that
    ``skelops.data.readers.load_dataset("openpose", directory/<trial>)`` and ``skelops eval``
    with ``data.source=openpose`` read. Only those JSON members are extracted. Returns the
    trial directories, sorted."""
    root = Path(directory)
    wheel = fetch_pose2sim_wheel(pose2sim_cache_dir(cache_dir))
    trials = set()
    with zipfile.ZipFile(wheel) as archive:
        for name, (_, members) in _trial_members(archive.namelist()).items():
            trial, _, camera = name.partition("/")
            target = root / trial / f"{camera}_json"
            target.mkdir(parents=True, exist_ok=True)
            for member in members:
                (target / member.rpartition("/")[2]).write_bytes(archive.read(member))
            trials.add(root / trial)
    return sorted(trials)


def main(argv: list[str] | None = None) -> int:
    """``python -m skelops.data.pose2sim [--fetch] [--list] [--extract DIR] [--cache-dir
    DIR]``."""
    parser = argparse.ArgumentParser(
        prog="python -m skelops.data.pose2sim", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--fetch", action="store_true", help="download, verify and parse the wheel into the cache"
    )
    parser.add_argument("--list", action="store_true", help="list the sequences with their shapes")
    parser.add_argument(
        "--extract",
        metavar="DIR",
        help="write the OpenPose JSON files to DIR/<trial>/<camera>_json/ (for skelops eval)",
    )
    parser.add_argument(
        "--cache-dir",
        default=None,
        help="cache directory (default $SKELOPS_CACHE or ~/.cache/skelops)",
    )
    args = parser.parse_args(argv)
    try:
        sequences = pose2sim_sequences(args.cache_dir)
    except Pose2SimUnavailableError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.fetch:
        where = pose2sim_cache_dir(args.cache_dir)
        print(f"Pose2Sim {POSE2SIM_VERSION}: {len(sequences)} sequences in {where}")
    if args.extract:
        trials = extract_pose2sim_json(args.extract, args.cache_dir)
        print(f"wrote {len(sequences)} sequences of {len(trials)} trials under {args.extract}")
    if args.list:
        for name, seq in sequences.items():
            print(
                f"{name}: keypoints {seq.keypoints.shape}, image {seq.image_shape}, {seq.fps} fps"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
