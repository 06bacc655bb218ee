"""Benchmark harness: times every registered op benchmark against its reference and the
strongest alternative in the same run, on the same inputs, and writes one JSON file.

Method (../shared/GUIDE.md section 3): forward (under ``torch.no_grad``) and forward+backward
(``torch.autograd.grad`` of the output against a fixed upstream gradient) are timed after a
warm-up, with all the process's threads; each measurement is the median of many repeats
(``triton.testing.do_bench`` with device events on GPU, ``torch.utils.benchmark`` on CPU),
taken in interleaved rounds over the candidates, and the median round is reported. Inputs
are rotated through enough copies to exceed the last-level cache, so no candidate runs on
cache-warm data the others lack.
Peak memory is the highest live allocation above what existed before the call (CUDA
allocator statistics on GPU; the profiler's allocation events on CPU). Achieved FLOP/s and
bytes/s are compared with ceilings measured in the same run (a large GEMM and a large copy).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import math
import os
import platform
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

# --- what a benchmark declares ---------------------------------------------------------------


@dataclasses.dataclass
class Candidate:
    """One implementation of the op: ``fn(*inputs) -> Tensor``.

    role: ``"subject"`` (a skelops backend), ``"reference"`` (what speedups are relative to;
    also an alternative) or ``"alternative"`` (what a user could use instead; the fastest
    non-skelops candidate is reported as the best alternative).
    """

    name: str
    fn: Callable[..., torch.Tensor]
    role: str
    setup: Callable[[], None] | None = None  # e.g. compile/warm-up outside the timed region
    # A model's parameters: forward+backward then also differentiates them and takes an SGD
    # step (a training step), besides the inputs that require grad.
    parameters: list[torch.Tensor] = dataclasses.field(default_factory=list)
    learning_rate: float = 1e-4
    # A forward-only candidate (e.g. a numpy data-worker loop, which has no backward): its
    # forward+backward columns are left empty, as is its peak memory (numpy allocations are
    # invisible to torch's profiler).
    forward_only: bool = False
    # CPU threads to time it with (None: all of the process's), e.g. 1 for a per-core figure.
    threads: int | None = None
    # Interleaved timing rounds for this candidate (None: the case's), e.g. fewer for a
    # reference that takes many seconds per call than for the kernels compared with it.
    rounds: int | None = None


@dataclasses.dataclass
class Case:
    """One shape/dtype/device point of an op benchmark."""

    op: str
    shape: str
    dtype: torch.dtype
    device: str
    make_inputs: Callable[[], list[torch.Tensor]]  # fresh inputs; those needing grad have it
    candidates: list[Candidate]
    flops_fwd: float
    flops_fwdbwd: float
    bytes_fwd: float
    bytes_fwdbwd: float
    note: str = ""
    rounds: int = 3  # interleaved timing rounds (fewer for cases that take seconds per call)
    warmup_calls: int = 5


_REGISTRY: dict[str, Callable[[str], list[Case]]] = {}


def register(op: str) -> Callable:
    """Decorator: ``@register("graph_conv") def cases(device: str) -> list[Case]``."""

    def wrap(fn: Callable[[str], list[Case]]) -> Callable[[str], list[Case]]:
        _REGISTRY[op] = fn
        return fn

    return wrap


def registered_ops() -> list[str]:
    return sorted(_REGISTRY)


# --- timing and memory -----------------------------------------------------------------------

_CACHE_BYTES = 256 * 2**20  # rotate inputs through at least this much memory


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _time_ms(
    fn: Callable[[], object], device: str, min_run_time: float, threads: int | None = None
) -> float:
    if device.startswith("cuda"):
        import triton.testing

        return float(triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median"))
    import torch.utils.benchmark as tbench

    fn()
    # Timer runs single-threaded unless told otherwise; time with the threads users get.
    threads = torch.get_num_threads() if threads is None else threads
    timer = tbench.Timer(stmt="fn()", globals={"fn": fn}, num_threads=threads)
    return timer.blocked_autorange(min_run_time=min_run_time).median * 1e3


def _peak_bytes(fn: Callable[[], object], device: str) -> int:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    from torch.profiler import ProfilerActivity, profile

    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted(
        (e for e in prof.events() if e.self_cpu_memory_usage != 0),
        key=lambda e: e.time_range.start,
    )
    live = peak = 0
    for event in events:
        live += event.self_cpu_memory_usage
        peak = max(peak, live)
    return peak


@contextlib.contextmanager
def _quiet_stderr():
    """Silence kineto's start/stop lines, which it writes straight to file descriptor 2."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


class _Rotation:
    """Copies of a case's inputs, handed out in turn, together larger than the cache."""

    def __init__(self, case: Case) -> None:
        first = case.make_inputs()
        size = sum(t.numel() * t.element_size() for t in first)
        count = max(2, min(64, math.ceil(_CACHE_BYTES / max(size, 1))))
        self.sets = [first] + [case.make_inputs() for _ in range(count - 1)]
        self.index = 0

    def next(self) -> list[torch.Tensor]:
        self.index = (self.index + 1) % len(self.sets)
        return self.sets[self.index]


class _Prepared:
    """A candidate ready to time: its rotated inputs, upstream gradient and closures."""

    def __init__(self, case: Case, cand: Candidate) -> None:
        if cand.setup is not None:
            cand.setup()
        self.device = case.device
        self.threads = cand.threads
        self.forward_only = cand.forward_only
        self.rotation = _Rotation(case)
        rotation = self.rotation

        def forward() -> None:
            with torch.no_grad():
                cand.fn(*rotation.next())

        self.forward = forward
        if cand.forward_only:
            for _ in range(case.warmup_calls):
                forward()
            return
        with torch.no_grad():
            out = cand.fn(*self.rotation.sets[0])
        grad_out = torch.randn_like(out)

        params = list(cand.parameters)

        def forward_backward() -> None:
            inputs = rotation.next()
            needs = [t for t in inputs if t.requires_grad]
            grads = torch.autograd.grad(cand.fn(*inputs), needs + params, grad_out)
            if params:  # the optimizer step of a training step (plain SGD)
                with torch.no_grad():
                    torch._foreach_add_(
                        params, list(grads[len(needs) :]), alpha=-cand.learning_rate
                    )

        self.forward_backward = forward_backward
        for _ in range(case.warmup_calls):  # lazy initialisation and allocator steady state
            forward_backward()
        _synchronize(case.device)

    def time(self, min_run_time: float) -> tuple[float, float | None]:
        fwd = _time_ms(self.forward, self.device, min_run_time, self.threads)
        if self.forward_only:
            return fwd, None
        return fwd, _time_ms(self.forward_backward, self.device, min_run_time, self.threads)

    def peaks(self) -> tuple[int | None, int | None]:
        if self.forward_only:
            return None, None
        return _peak_bytes(self.forward, self.device), _peak_bytes(
            self.forward_backward, self.device
        )


def _measure_all(case: Case, min_run_time: float, on_done: Callable[[str], None]) -> dict:
    """Times every candidate of ``case`` in interleaved rounds (median over rounds), so slow
    drifts of the machine or the allocator affect all candidates alike."""
    prepared: dict[str, _Prepared] = {}
    measured: dict[str, dict] = {}
    for cand in case.candidates:
        try:
            prepared[cand.name] = _Prepared(case, cand)
        except Exception as err:  # a failing candidate is reported, not fatal
            measured[cand.name] = {"candidate": cand.name, "error": repr(err)}
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in prepared}
    rounds = {
        cand.name: case.rounds if cand.rounds is None else cand.rounds for cand in case.candidates
    }
    for round_index in range(max(rounds.values(), default=0)):
        for name, prep in prepared.items():
            if round_index < rounds[name]:
                times[name].append(prep.time(min_run_time))
    for name, prep in prepared.items():
        fwd = sorted(t[0] for t in times[name])
        fwdbwd = sorted(t[1] for t in times[name] if t[1] is not None)
        peak_fwd, peak_fwdbwd = prep.peaks()
        measured[name] = {
            "candidate": name,
            "threads": prep.threads or torch.get_num_threads(),
            "fwd_ms": fwd[len(fwd) // 2],
            "fwdbwd_ms": fwdbwd[len(fwdbwd) // 2] if fwdbwd else None,
            "fwd_ms_rounds": [t[0] for t in times[name]],
            "fwdbwd_ms_rounds": [t[1] for t in times[name]],
            "peak_fwd_bytes": peak_fwd,
            "peak_fwdbwd_bytes": peak_fwdbwd,
        }
        on_done(name)
    prepared.clear()
    return measured


# --- device ceilings -------------------------------------------------------------------------


def measure_ceilings(device: str, dtype: torch.dtype, min_run_time: float = 0.5) -> dict:
    """A large GEMM's FLOP/s (in ``dtype``) and a large copy's bytes/s on ``device``."""
    n = 4096 if device.startswith("cuda") else 1536
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    gemm_ms = _time_ms(lambda: torch.mm(a, b), device, min_run_time)
    numel = (1 << 28 if device.startswith("cuda") else 1 << 26) // 4
    src = torch.empty(numel, device=device, dtype=torch.float32).uniform_()
    dst = torch.empty_like(src)
    copy_ms = _time_ms(lambda: dst.copy_(src), device, min_run_time)
    return {
        "gemm_flops_per_s": 2 * n**3 / (gemm_ms * 1e-3),
        "copy_bytes_per_s": 2 * src.numel() * 4 / (copy_ms * 1e-3),
        "gemm_size": n,
        "copy_bytes": src.numel() * 4,
    }


def device_description(device: str) -> dict:
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(device)
        return {
            "type": "cuda",
            "name": props.name,
            "memory_bytes": props.total_memory,
            "multiprocessors": props.multi_processor_count,
            "capability": f"{props.major}.{props.minor}",
        }
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "type": "cpu",
        "name": name,
        "threads": torch.get_num_threads(),
        "cores": os.cpu_count(),
    }


def versions() -> dict:
    import skelops

    info = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "skelops": skelops.__version__,
        "skelops_build": skelops.build_info(),
    }
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = None
    return info


# --- running ---------------------------------------------------------------------------------


def _identity(case: Case, cand: Candidate) -> dict:
    """The fields that name a result row."""
    return {
        "op": case.op,
        "shape": case.shape,
        "dtype": str(case.dtype).replace("torch.", ""),
        "device": case.device,
        "candidate": cand.name,
        "role": cand.role,
    }


def _floor_ms(flops: float, nbytes: float, ceilings: dict) -> float:
    return max(flops / ceilings["gemm_flops_per_s"], nbytes / ceilings["copy_bytes_per_s"]) * 1e3


def _row(
    case: Case, cand: Candidate, m: dict, ref: dict, alts: list[dict] | None, ceilings: dict
) -> dict:
    """A result row; forward+backward columns are None for a forward-only candidate."""
    floor_fwd_ms = _floor_ms(case.flops_fwd, case.bytes_fwd, ceilings)
    row = {
        **_identity(case, cand),
        **m,
        "speedup_fwd_vs_reference": ref["fwd_ms"] / m["fwd_ms"],
        "floor_fwd_ms": floor_fwd_ms,
        "fraction_of_floor_fwd": floor_fwd_ms / m["fwd_ms"],
        "flops_fwdbwd": case.flops_fwdbwd,
        "bytes_fwdbwd": case.bytes_fwdbwd,
    }
    if m["fwdbwd_ms"] is not None:
        floor_ms = _floor_ms(case.flops_fwdbwd, case.bytes_fwdbwd, ceilings)
        row.update(
            speedup_fwdbwd_vs_reference=ref["fwdbwd_ms"] / m["fwdbwd_ms"],
            peak_fwdbwd_ratio_vs_reference=m["peak_fwdbwd_bytes"]
            / max(ref["peak_fwdbwd_bytes"], 1),
            achieved_tflops_fwdbwd=case.flops_fwdbwd / (m["fwdbwd_ms"] * 1e-3) / 1e12,
            achieved_gbs_fwdbwd=case.bytes_fwdbwd / (m["fwdbwd_ms"] * 1e-3) / 1e9,
            floor_fwdbwd_ms=floor_ms,
            fraction_of_floor_fwdbwd=floor_ms / m["fwdbwd_ms"],
        )
    if alts:
        # The strongest alternative a user has, per direction: the fastest non-skelops
        # candidate (the plain reference included; forward-only ones count for the forward).
        best_fwd = min(alts, key=lambda a: a["fwd_ms"])
        row["best_alternative_fwd"] = best_fwd["candidate"]
        row["speedup_fwd_vs_best_alternative"] = best_fwd["fwd_ms"] / m["fwd_ms"]
        with_backward = [a for a in alts if a["fwdbwd_ms"] is not None]
        if with_backward and m["fwdbwd_ms"] is not None:
            best = min(with_backward, key=lambda a: a["fwdbwd_ms"])
            row["best_alternative"] = best["candidate"]
            row["speedup_fwdbwd_vs_best_alternative"] = best["fwdbwd_ms"] / m["fwdbwd_ms"]
    return row


def _allow_recompiles(limit: int = 256) -> None:
    """Let every ``torch.compile`` candidate compile for each of its shapes and grad modes.

    Cases build their compiled candidates from closures that share one code object, and dynamo
    caches per code object: past its recompile limit (8 by default) it would silently run the
    later cases eagerly under the ``torch.compile`` name.
    """
    config = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit"):  # the name changed across torch releases
        if hasattr(config, name):
            setattr(config, name, max(getattr(config, name), limit))
            return


def run(
    ops: Sequence[str] | None = None,
    devices: Sequence[str] | None = None,
    min_run_time: float = 0.5,
    progress: bool = True,
) -> dict:
    """Run the registered benchmarks; returns the report (see ``write_report``)."""
    from . import graph_conv as _graph_conv  # noqa: F401  (registers its cases)
    from . import kinematics as _kinematics  # noqa: F401
    from . import models as _models  # noqa: F401
    from . import multi_dilation_graph_conv as _multi_dilation_graph_conv  # noqa: F401
    from . import partition_attention as _partition_attention  # noqa: F401
    from . import render_heatmaps as _render_heatmaps  # noqa: F401
    from . import skeleton_pipeline as _skeleton_pipeline  # noqa: F401
    from . import sparse_graph_conv as _sparse_graph_conv  # noqa: F401
    from . import spatio_temporal_curve as _spatio_temporal_curve  # noqa: F401

    ops = list(ops) if ops else registered_ops()
    unknown = sorted(set(ops) - set(_REGISTRY))
    if unknown:
        raise ValueError(f"unknown op benchmark(s) {unknown}; registered: {registered_ops()}")
    if devices is None:
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    _allow_recompiles()
    cases = [case for op in ops for device in devices for case in _REGISTRY[op](device)]
    work = sum(len(c.candidates) for c in cases)
    bar = _progress_bar(work, progress)
    report: dict = {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(),
        "devices": {},
        "results": [],
    }
    ceilings: dict[tuple[str, torch.dtype], dict] = {}
    for case in cases:
        key = (case.device, case.dtype)
        if key not in ceilings:
            ceilings[key] = measure_ceilings(case.device, case.dtype, min_run_time)
            entry = report["devices"].setdefault(
                case.device, {"description": device_description(case.device), "ceilings": {}}
            )
            entry["ceilings"][str(case.dtype).replace("torch.", "")] = ceilings[key]
        bar.set_description(f"{case.op} {case.shape} {case.dtype}"[:70])
        measured = _measure_all(case, min_run_time, lambda name: bar.update(1))
        ref = next(measured[c.name] for c in case.candidates if c.role == "reference")
        if "error" in ref:
            raise RuntimeError(f"{case.op} {case.shape}: the reference failed: {ref['error']}")
        # The strongest alternative a user has: the fastest non-skelops candidate, the plain
        # reference included (torch.compile is not always faster than eager).
        alts = [
            measured[c.name]
            for c in case.candidates
            if c.role in ("alternative", "reference") and "error" not in measured[c.name]
        ]
        for cand in case.candidates:
            m = measured[cand.name]
            if "error" in m:
                report["results"].append({**_identity(case, cand), "error": m["error"]})
                continue
            fields = {k: v for k, v in m.items() if k != "candidate"}
            report["results"].append(
                _row(
                    case,
                    cand,
                    fields,
                    ref,
                    alts if cand.role == "subject" else None,
                    ceilings[key],
                )
            )
    bar.close()
    return report


def _progress_bar(total: int, enabled: bool):
    try:
        from tqdm import tqdm

        return tqdm(total=total, disable=not enabled, file=sys.stderr, leave=False)
    except ImportError:  # tqdm is a dependency; this keeps the harness usable without it

        class _Plain:
            def __init__(self) -> None:
                self.done = 0

            def set_description(self, text: str) -> None:
                if enabled:
                    print(f"[{self.done + 1}/{total}] {text}", file=sys.stderr, flush=True)

            def update(self, n: int) -> None:
                self.done += n

            def close(self) -> None:
                pass

        return _Plain()


def format_table(report: dict) -> str:
    """The report as a text table (one row per candidate)."""
    header = (
        "op",
        "shape",
        "dtype",
        "device",
        "backend",
        "fwd ms",
        "f+b ms",
        "vs ref f/f+b",
        "vs best alt f / f+b",
        "peak mem vs ref",
        "TFLOP/s",
        "GB/s",
        "% floor",
    )
    rows = [header]
    for r in report["results"]:
        ident = tuple(r[key] for key in ("op", "shape", "dtype", "device", "candidate"))
        if "error" in r:
            rows.append((*ident, "error", r["error"][:40], *[""] * 6))
            continue
        alt = r.get("speedup_fwdbwd_vs_best_alternative")
        alt_fwd = r.get("speedup_fwd_vs_best_alternative")
        if r["fwdbwd_ms"] is None:  # forward only
            rows.append(
                (
                    *ident,
                    f"{r['fwd_ms']:.3f}",
                    "-",
                    f"{r['speedup_fwd_vs_reference']:.2f}x / -",
                    "",
                    "-",
                    "-",
                    "-",
                    f"{100 * r['fraction_of_floor_fwd']:.0f}% (f)",
                )
            )
            continue
        rows.append(
            (
                *ident,
                f"{r['fwd_ms']:.3f}",
                f"{r['fwdbwd_ms']:.3f}",
                f"{r['speedup_fwd_vs_reference']:.2f}x / {r['speedup_fwdbwd_vs_reference']:.2f}x",
                (f"{alt_fwd:.2f}x / " if alt_fwd is not None else "")
                + (f"{alt:.2f}x" if alt is not None else ""),
                f"{r['peak_fwdbwd_ratio_vs_reference']:.2f}",
                f"{r['achieved_tflops_fwdbwd']:.3f}",
                f"{r['achieved_gbs_fwdbwd']:.1f}",
                f"{100 * r['fraction_of_floor_fwdbwd']:.0f}%",
            )
        )
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_report(report: dict, directory: str | Path) -> Path:
    """Write ``report`` as ``<directory>/bench-<device>-<UTC time>.json``; returns the path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    kinds = "+".join(sorted(report["devices"])) or "none"
    stamp = report["created"].replace(":", "").replace("+0000", "Z")[:17]
    path = directory / f"bench-{kinds}-{stamp}.json"
    path.write_text(json.dumps(report, indent=1, default=str) + "\n")
    return path
