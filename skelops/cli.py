"""The ``skelops`` command line: ``skelops train``, ``eval``, ``fuse``, ``info``, ``bench`` and
``viz``."""

from __future__ import annotations

import argparse
import json
import platform
import sys
from collections.abc import Sequence
from typing import NoReturn


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line: ``skelops: error: ...``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"skelops: error: {message} (see {self.prog} --help)\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _Parser(prog="skelops", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("bench", help="run the op benchmarks on this machine's devices")
    bench.add_argument("--ops", nargs="*", help="op benchmarks to run (default: all)")
    bench.add_argument("--devices", nargs="*", help="devices (default: cpu, and cuda if present)")
    bench.add_argument(
        "--min-run-time",
        type=float,
        default=0.5,
        help="seconds of repeats per CPU measurement (default 0.5)",
    )
    bench.add_argument(
        "--output-dir",
        default="benchmarks/results",
        help="where the JSON report goes (default benchmarks/results)",
    )
    bench.add_argument("--no-progress", action="store_true", help="no progress bar")
    sub.add_parser(
        "info", help="print versions, compiled backends, devices and distributed backends"
    )
    _add_viz_parser(sub)
    _add_training_parsers(sub)
    args = parser.parse_args(argv)

    if args.command in ("train", "eval", "fuse", "info"):
        return _guarded(args)
    if args.command == "viz":
        return _run_viz(args)
    from skelops import bench as harness

    report = harness.run(args.ops, args.devices, args.min_run_time, not args.no_progress)
    print(harness.format_table(report))
    path = harness.write_report(report, args.output_dir)
    print(f"\nwrote {path}", file=sys.stderr)
    return 0


def _add_viz_parser(sub: argparse._SubParsersAction) -> None:
    viz = sub.add_parser(
        "viz",
        help="draw a pose sequence and its heatmaps into a PNG",
        description=(
            "Write a PNG grid: per chosen frame the skeleton, the summed keypoint heatmaps and "
            "the summed limb heatmaps. --input reads an .npz holding pyskl's arrays: "
            "'keypoint' [M, T, V, 2] (or [T, V, 2]) image pixels, optionally 'keypoint_score' "
            "[M, T, V] and 'img_shape' (height, width)."
        ),
    )
    source = viz.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", help="pose .npz file (keys keypoint, keypoint_score)")
    source.add_argument(
        "--synthetic", action="store_true", help="draw a generated walking COCO-17 figure"
    )
    viz.add_argument("--output", required=True, help="PNG file to write")
    viz.add_argument("--layout", default="coco", help="skeleton layout (default coco)")
    viz.add_argument("--size", type=int, nargs=2, default=(64, 64), metavar=("H", "W"))
    viz.add_argument("--frames", type=int, default=8, help="evenly spaced frames (default 8)")
    viz.add_argument("--sigma", type=float, default=0.6, help="Gaussian sigma (default 0.6)")
    viz.add_argument("--upscale", type=int, default=4, help="pixels per heatmap pixel")
    viz.add_argument("--no-limbs", action="store_true", help="leave out the limb heatmaps")
    viz.add_argument("--no-fit", action="store_true", help="keypoints are heatmap pixels already")
    viz.add_argument("--backend", default="auto", help="render_heatmaps backend (default auto)")


def _run_viz(args: argparse.Namespace) -> int:
    from skelops import viz

    if args.synthetic:
        keypoints, scores = viz.synthetic_skeleton(32)
        image_shape = (256, 256)
    else:
        keypoints, scores, image_shape = viz.load_pose_npz(args.input)
    path = viz.save_heatmap_png(
        args.output,
        keypoints,
        scores,
        layout=args.layout,
        size=tuple(args.size),
        frames=args.frames,
        sigma=args.sigma,
        with_limbs=not args.no_limbs,
        fit=not args.no_fit,
        image_shape=image_shape,
        upscale=args.upscale,
        backend=args.backend,
    )
    print(f"wrote {path}", file=sys.stderr)
    return 0


def _add_common(command: argparse.ArgumentParser) -> None:
    command.add_argument("--config", help="YAML config file (default: the built-in defaults)")
    command.add_argument(
        "--set",
        dest="overrides",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="override config keys, e.g. --set optim.lr=0.05 data.num_frames=32",
    )
    command.add_argument("--no-progress", action="store_true", help="no progress bar")
    command.add_argument("--debug", action="store_true", help="show the full traceback of an error")


def _add_training_parsers(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser(
        "train",
        help="train a model of skelops.models from a YAML config",
        description="Train a model; run it under torchrun (python -m torch.distributed.run "
        "--nproc_per_node N -m skelops.cli train ...) for several processes (DDP).",
    )
    _add_common(train)
    train.add_argument("--resume", help="continue a run: its directory or a .state.pt file")
    train.add_argument("--output-dir", help="run directory (overrides run.output_dir)")

    evaluate = sub.add_parser(
        "eval",
        help="score a checkpoint with multi-clip / flip test-time augmentation",
        description="Evaluate a checkpoint: prints top-1 / top-5 and writes scores.npy and "
        "labels.npy for 'skelops fuse'.",
    )
    _add_common(evaluate)
    evaluate.add_argument("--checkpoint", required=True, help="weights (.safetensors or .pt)")
    evaluate.add_argument("--split", help="data split to score (default data.val_split)")
    evaluate.add_argument("--clips", type=int, help="clips per sequence (eval.clips)")
    evaluate.add_argument(
        "--flip", action=argparse.BooleanOptionalAction, help="add mirrored views (eval.flip)"
    )
    evaluate.add_argument("--output-dir", help="where the scores go (default run.output_dir/eval)")

    fuse = sub.add_parser(
        "fuse",
        help="fuse the scores of several streams (joint, bone, motion, ...)",
        description="Weighted sum of per-stream scores [N, K] (.npy from 'skelops eval'); "
        "--normalize l2 as HD-GCN's ensemble.py, none with weights as MP-GCN's.",
    )
    fuse.add_argument("scores", nargs="+", help="score files [N, K] (.npy)")
    fuse.add_argument("--weights", type=float, nargs="+", help="one weight per file (default 1)")
    fuse.add_argument("--labels", required=True, help="labels [N] (.npy)")
    fuse.add_argument("--normalize", choices=("none", "l2", "softmax"), default="none")
    fuse.add_argument("--output", help="write the fused scores here (.npy)")
    fuse.add_argument("--debug", action="store_true", help="show the full traceback of an error")


# Bad input (config, files, names) exits 2; anything else that fails exits 1.
_INPUT_ERRORS = (ValueError, KeyError, TypeError, FileNotFoundError, NotADirectoryError)


def _guarded(args: argparse.Namespace) -> int:
    try:
        return _COMMANDS[args.command](args)
    except Exception as error:
        if getattr(args, "debug", False):
            raise
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        line = " ".join(str(message).split()) or type(error).__name__
        print(f"skelops: error: {line}", file=sys.stderr)
        return 2 if isinstance(error, _INPUT_ERRORS) else 1


def _load(args: argparse.Namespace, extra: Sequence[str] = ()):
    from skelops.training import load_config

    overrides = list(args.overrides) + list(extra)
    if args.no_progress:
        overrides.append("run.progress=false")
    return load_config(args.config, overrides)


def _run_train(args: argparse.Namespace) -> int:
    from skelops.training import train

    extra = []
    if args.resume is not None:
        extra.append(f"run.resume={json.dumps(args.resume)}")
    if args.output_dir is not None:
        extra.append(f"run.output_dir={json.dumps(args.output_dir)}")
    result = train(_load(args, extra))
    if result.rank == 0:
        print(json.dumps({**result.metrics, "checkpoint": str(result.checkpoint)}))
    return 0


def _run_eval(args: argparse.Namespace) -> int:
    from skelops.training import evaluate

    config = _load(args)
    if args.clips is not None and args.clips < 1:
        raise ValueError(f"--clips must be >= 1, got {args.clips}")
    result = evaluate(
        config,
        args.checkpoint,
        split=args.split,
        output_dir=args.output_dir,
        clips=args.clips,
        flip=args.flip,
        progress=config.run.progress,
    )
    if "top1" in result:
        print(
            f"top-1 {100 * result['top1']:.2f}%  top-5 {100 * result['top5']:.2f}%", file=sys.stderr
        )
    print(json.dumps(result))
    return 0


def _load_array(path: str):
    import numpy as np

    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"score file {path!r} does not exist") from None


def _run_fuse(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from skelops.training import fuse_scores, topk_accuracy

    fused = fuse_scores([_load_array(p) for p in args.scores], args.weights, args.normalize)
    labels = torch.as_tensor(_load_array(args.labels), dtype=torch.int64)
    if labels.shape != fused.shape[:1]:
        raise ValueError(
            f"--labels must hold {fused.shape[0]} labels (one per score row), got shape "
            f"{tuple(labels.shape)}"
        )
    hits = topk_accuracy(fused, labels)
    result = {"samples": len(labels), "top1": hits[1] / len(labels), "top5": hits[5] / len(labels)}
    if args.output is not None:
        np.save(args.output, fused.numpy())
        result["output"] = args.output
    print(json.dumps(result))
    return 0


def info() -> dict:
    """Versions, compiled backends (:func:`skelops.build_info`, at the top level), devices and
    the ``torch.distributed`` backends, as printed by ``skelops info``."""
    import importlib.metadata

    import torch

    import skelops
    from skelops.training.distributed import available_backends

    versions = {"skelops": skelops.__version__, "python": platform.python_version()}
    for package in ("torch", "numpy", "triton", "safetensors", "pyyaml", "tqdm"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    cuda = []
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            cuda.append(
                {
                    "index": index,
                    "name": props.name,
                    "capability": f"{props.major}.{props.minor}",
                    "memory_gib": round(props.total_memory / 2**30, 1),
                }
            )
    devices = {
        "cpu": {
            "machine": platform.machine(),
            "isa": torch.backends.cpu.get_cpu_capability(),
            "threads": torch.get_num_threads(),
        },
        "cuda": cuda,
        "cuda_runtime": torch.version.cuda,
    }
    return {
        **skelops.build_info(),
        "versions": versions,
        "devices": devices,
        "distributed_backends": available_backends(),
    }


def _run_info(args: argparse.Namespace) -> int:
    print(json.dumps(info(), indent=1))
    return 0


_COMMANDS = {"train": _run_train, "eval": _run_eval, "fuse": _run_fuse, "info": _run_info}


if __name__ == "__main__":
    raise SystemExit(main())
