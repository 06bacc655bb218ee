"""The ``skelops`` command line: ``skelops bench`` and ``skelops info``."""

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
    args = parser.parse_args(argv)

    import skelops

    if args.command == "info":
        print(json.dumps(skelops.build_info(), indent=1))
        return 0
    from skelops import bench as harness

    report = harness.run(args.ops, args.devices, args.min_run_time, not args.no_progress)
    print(harness.format_table(report))
    path = harness.write_report(report, args.output_dir)
    print(f"\nwrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
