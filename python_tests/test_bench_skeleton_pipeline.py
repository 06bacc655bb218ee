"""The skeleton_pipeline benchmark (batched SkeletonAugment vs CTR-GCN's per-clip feeder loop) on
tiny sizes, and the loop reference against the batched pipeline with the same random draws."""

import numpy as np
import pytest
import torch

from skelops import bench
from skelops.bench import skeleton_pipeline
from skelops.data import SkeletonAugment
from skelops.data.synthetic import synthetic_actions
from skelops.reference.skeleton_feeder_loops import feeder_loop

N, T = 6, 200


def _clips(seed: int) -> torch.Tensor:
    """Clips with valid lengths below, at and above the crop's 64-frame minimum."""
    return skeleton_pipeline.clips(N, T, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("stream", ["joint", "bone"])
def test_loop_matches_batched_pipeline_with_the_same_draws(stream):
    x = _clips(0)
    lengths = (x != 0).any(dim=4).any(dim=3).any(dim=1).sum(dim=1)
    assert lengths.min() < 64 and lengths.max() > 128  # both sides of the crop's 64-frame bound
    seed = 7
    augment = SkeletonAugment(window=32, p_interval=(0.5, 1.0), rotation=0.3, stream=stream)
    batched = augment(x, generator=torch.Generator().manual_seed(seed))
    draws = torch.Generator().manual_seed(seed)
    uniforms = torch.cat(
        [
            torch.rand(N, 2, generator=draws, dtype=torch.float64),
            torch.rand(N, 3, generator=draws, dtype=torch.float64),
        ],
        dim=1,
    )
    looped = feeder_loop(x, window=32, uniforms=uniforms, stream=stream)
    assert looped.shape == batched.shape == (N, 3, 32, 25, 2)
    torch.testing.assert_close(looped, batched, rtol=1e-5, atol=1e-5)
    # Other draws give another augmentation, so the agreement above is not vacuous.
    other = feeder_loop(x, window=32, uniforms=uniforms.flip(0), stream=stream)
    assert (other - batched).abs().max() > 1e-2


def test_bench_candidates_agree_without_randomness():
    # p_interval (1, 1) and no rotation: the whole valid part resized, nothing random.
    (case,) = [
        c
        for c in skeleton_pipeline.cases("cpu", batch_sizes=(N,), frames=T, p_interval=(1, 1),
                                         rotation=0.0)
        if c.shape.endswith("bone")
    ]  # fmt: skip
    inputs = case.make_inputs()
    outputs = {cand.name: cand.fn(*inputs) for cand in case.candidates}
    reference = outputs.pop("CTR-GCN feeder loop (cpu) 1 thread")
    assert reference.abs().max() > 0
    for name, output in outputs.items():
        torch.testing.assert_close(output, reference, rtol=1e-5, atol=1e-5, msg=name)


def test_bench_runs_tiny_cases_and_reports_the_loop_ratio():
    bench.register("skeleton_pipeline_tiny")(
        lambda device: skeleton_pipeline.cases(device, batch_sizes=(3,), frames=T)
    )
    report = bench.run(["skeleton_pipeline_tiny"], ["cpu"], min_run_time=0.01, progress=False)
    rows = report["results"]
    assert [r["shape"].split()[-1] for r in rows[::3]] == ["joint", "bone"]
    for row in rows:
        assert "error" not in row, row
        assert row["op"] == "skeleton_pipeline" and row["fwd_ms"] > 0
        assert row["fwdbwd_ms"] is None  # a data pipeline has no backward
    loops = [r for r in rows if r["role"] == "reference"]
    assert len(loops) == 2 and all(r["threads"] == 1 for r in loops)
    subjects = [r for r in rows if r["role"] == "subject"]
    for row in subjects:
        loop = next(r for r in loops if r["shape"] == row["shape"])
        assert row["speedup_fwd_vs_reference"] == pytest.approx(loop["fwd_ms"] / row["fwd_ms"])
    assert "CTR-GCN feeder loop" in bench.format_table(report)


def test_cases_have_the_issue_shapes():
    shapes = [c.shape for c in skeleton_pipeline.cases("cpu")]
    assert shapes == [
        f"N{n} C3 T300 V25 M2 -> T64 {s}" for n in (64, 256) for s in ("joint", "bone")
    ]


def test_feeder_loop_rejects_bad_arguments():
    x = _clips(1)
    with pytest.raises(ValueError, match=r"x must be a \[N, C, T, V, M\].*\(6, 3, 200, 25\)"):
        feeder_loop(x[..., 0])
    with pytest.raises(ValueError, match="stream must be 'joint' or 'bone', got 'motion'"):
        feeder_loop(x, stream="motion")
    with pytest.raises(ValueError, match=r"uniforms must have shape \(6, 5\), got \(6, 3\)"):
        feeder_loop(x, uniforms=np.zeros((N, 3)))
    with pytest.raises(ValueError, match="x must be on the CPU .*, got meta"):
        feeder_loop(x.to("meta"))


def test_feeder_loop_draws_from_its_rng():
    x = _clips(2)
    first = feeder_loop(x, rng=np.random.default_rng(3))
    again = feeder_loop(x, rng=np.random.default_rng(3))
    other = feeder_loop(x, rng=np.random.default_rng(4))
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    assert (first - other).abs().max() > 1e-2


def test_feeder_loop_gives_zeros_for_a_clip_without_frames():
    x, _ = synthetic_actions(2, num_frames=70, seed=0)
    x[1] = 0
    out = feeder_loop(x, uniforms=np.full((2, 5), 0.5))
    assert out[0].abs().max() > 0 and out[1].abs().max() == 0
