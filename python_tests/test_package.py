"""The package around the operators: build info, the loud import failure, the CLI and the
benchmark harness."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest
import torch

import skelops
from skelops import _loader


def test_build_info_reports_torch_backends_and_archs():
    info = skelops.build_info()
    assert info["torch_version"] == torch.__version__
    assert info["backends"][0] == "cpu"
    assert ("cuda" in info["backends"]) == bool(info["cuda_archs"])
    assert all(arch.startswith("sm_") for arch in info["cuda_archs"])
    assert isinstance(info["triton"], bool)


def test_ops_are_registered_with_backward_as_its_own_op():
    for name in (
        "graph_conv",
        "graph_conv_backward",
        "graph_conv_triton",
        "graph_conv_triton_backward",
    ):
        assert hasattr(torch.ops.skelops, name), name
    assert torch._C._dispatch_has_kernel_for_dispatch_key("skelops::graph_conv", "CPU")


def test_missing_extension_fails_loudly_with_the_fix(monkeypatch):
    def missing(name):
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    monkeypatch.setattr(importlib, "import_module", missing)
    with pytest.raises(ImportError, match=r"(?s)skelops\._C is missing.*--no-build-isolation"):
        _loader.load_extension()


def test_foreign_torch_build_fails_loudly(monkeypatch):
    def foreign(name):
        raise ImportError("_C.so: undefined symbol: _ZN3c104impl3fooEv")

    monkeypatch.setattr(importlib, "import_module", foreign)
    with pytest.raises(
        ImportError, match=r"(?s)undefined symbol.*built against another torch.*Rebuild"
    ):
        _loader.load_extension()


def test_torch_version_mismatch_fails_loudly(monkeypatch):
    monkeypatch.setattr(torch, "__version__", "1.0.0+other")
    with pytest.raises(ImportError, match=r"built against torch .* but torch 1\.0\.0\+other"):
        _loader.load_extension()


def test_cli_info_prints_build_info():
    out = subprocess.run(
        [sys.executable, "-m", "skelops.cli", "info"], check=True, capture_output=True, text=True
    ).stdout
    assert json.loads(out)["torch_version"] == torch.__version__


def test_bench_harness_runs_a_case_and_writes_json(tmp_path):
    from skelops import bench, reference
    from skelops.bench.harness import Candidate, Case

    def make_inputs():
        return [
            torch.randn(2, 3, 4, 5, requires_grad=True),
            torch.randn(2, 6, 3, requires_grad=True),
            torch.rand(2, 5, 5, requires_grad=True),
        ]

    case = Case(
        op="graph_conv",
        shape="tiny",
        dtype=torch.float32,
        device="cpu",
        make_inputs=make_inputs,
        candidates=[
            Candidate("skelops[cpu]", lambda x, w, a: skelops.graph_conv(x, w, a), "subject"),
            Candidate("reference", reference.graph_conv, "reference"),
            Candidate("broken", lambda x, w, a: 1 / 0, "alternative"),
            # A data-worker style loop: forward only, timed on one thread.
            Candidate(
                "numpy loop",
                lambda x, w, a: x.detach().numpy() * 2.0,
                "alternative",
                forward_only=True,
                threads=1,
                rounds=1,
            ),
        ],
        flops_fwd=1.0,
        flops_fwdbwd=3.0,
        bytes_fwd=1.0,
        bytes_fwdbwd=3.0,
    )
    bench.register("tiny_test_op")(lambda device: [case])
    report = bench.run(["tiny_test_op"], ["cpu"], min_run_time=0.01, progress=False)
    rows = {r["candidate"]: r for r in report["results"]}
    assert rows["reference"]["speedup_fwdbwd_vs_reference"] == pytest.approx(1.0)
    assert rows["skelops[cpu]"]["fwd_ms"] > 0 and rows["skelops[cpu]"]["peak_fwdbwd_bytes"] > 0
    assert "ZeroDivisionError" in rows["broken"]["error"]
    loop = rows["numpy loop"]
    assert loop["threads"] == 1 and loop["fwd_ms"] > 0 and len(loop["fwd_ms_rounds"]) == 1
    assert len(rows["skelops[cpu]"]["fwd_ms_rounds"]) == 3  # the case's rounds
    assert loop["fwdbwd_ms"] is None and loop["peak_fwdbwd_bytes"] is None
    assert "speedup_fwdbwd_vs_reference" not in loop
    subject = rows["skelops[cpu]"]
    assert subject["best_alternative_fwd"] in ("numpy loop", "reference")
    assert subject["best_alternative"] == "reference"  # the only alternative with a backward
    assert "numpy loop" in bench.format_table(report)
    assert "skelops[cpu]" in bench.format_table(report)
    path = bench.write_report(report, tmp_path)
    saved = json.loads(path.read_text())
    assert saved["versions"]["torch"] == torch.__version__
    assert saved["devices"]["cpu"]["ceilings"]["float32"]["gemm_flops_per_s"] > 0


def test_bench_rejects_unknown_op():
    from skelops import bench

    with pytest.raises(ValueError, match="unknown op benchmark"):
        bench.run(["no_such_op"], ["cpu"], progress=False)


def test_bench_training_step_differentiates_and_updates_parameters():
    from skelops import bench
    from skelops.bench.harness import Candidate, Case

    model = torch.nn.Linear(6, 3)
    before = model.weight.detach().clone()
    case = Case(
        op="tiny_model_step",
        shape="tiny",
        dtype=torch.float32,
        device="cpu",
        make_inputs=lambda: [torch.randn(4, 6)],
        candidates=[
            Candidate(
                "model", model, "reference", parameters=list(model.parameters()), learning_rate=0.1
            )
        ],
        flops_fwd=1.0,
        flops_fwdbwd=3.0,
        bytes_fwd=1.0,
        bytes_fwdbwd=3.0,
        rounds=1,
        warmup_calls=1,
    )
    bench.register("tiny_model_step")(lambda device: [case])
    report = bench.run(["tiny_model_step"], ["cpu"], min_run_time=0.01, progress=False)
    assert report["results"][0]["fwdbwd_ms"] > 0
    assert len(report["results"][0]["fwdbwd_ms_rounds"]) == 1
    assert not torch.equal(model.weight.detach(), before)
