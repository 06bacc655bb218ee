"""The ``skelops`` command line: ``skelops bench``, ``skelops info`` and ``skelops viz``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="skelops", description=__doc__)
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
    sub.add_parser("info", help="print what skelops was built with")
    _add_viz_parser(sub)
    args = parser.parse_args(argv)

    import skelops

    if args.command == "info":
        print(json.dumps(skelops.build_info(), indent=1))
        return 0
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


if __name__ == "__main__":
    raise SystemExit(main())
