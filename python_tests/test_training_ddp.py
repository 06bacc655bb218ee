"""Two-process DDP training (``torchrun``, Gloo on the CPU) against one process.

Both ranks must end with bitwise identical weights, and those must equal, to float rounding,
the weights of a single-process run with the same global batch.

What would break that equality, and how the test stands:

* the sampler: rank ``r`` takes permutation positions ``r, r + W, ...``
  (``DistributedSampler``), so its ``k``-th batch of ``B / W`` is a part of the ``k``-th block
  of ``B`` positions; the single process uses the same permutation with the global batch
  ``B``, so the global batches hold the same samples (in another order);
* augmentation and random frame sampling draw from per-sample generators keyed by
  ``(seed, epoch, index)``, so they are on here and still agree;
* dropout masks come from each process's own generator: dropout is 0 here;
* BatchNorm statistics are per rank (torch's SyncBatchNorm runs on GPUs only): the model is
  a CascadeFormer, which has LayerNorms only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch
from helpers import TINY_CASCADEFORMER

from skelops.training import build_model, config_from_dict, train
from skelops.training.checkpoint import load_model_weights

RANK_SCRIPT = """
import json, os, sys
import torch
from skelops.training import config_from_dict, train

torch.set_num_threads(1)
result = train(config_from_dict(json.loads(sys.argv[1])))
torch.save(result.model.state_dict(), os.path.join(sys.argv[2], f"rank{os.environ['RANK']}.pt"))
with open(os.path.join(sys.argv[2], f"metrics{os.environ['RANK']}.json"), "w") as f:
    json.dump(result.metrics, f)
"""


def _config(output_dir) -> dict:
    no_dropout = {"dropout": 0.0, "t2_dropout": 0.0, "cross_attention_dropout": 0.0}
    return {
        "model": {
            "name": "cascadeformer",
            "preset": "ntu60",
            "overrides": {
                **TINY_CASCADEFORMER,
                "head_dropout": 0.0,
                **no_dropout,
            },
        },
        "data": {
            "source": "synthetic",
            "layout": "ntu_stgcn",
            "num_frames": 12,
            "num_persons": 1,
            "num_classes": 4,
            "train_samples": 40,
            "val_samples": 10,
            "rotation": 15.0,
            "flip": 0.5,
        },
        "optim": {"name": "sgd", "lr": 0.05, "epochs": 2, "batch_size": 8, "warmup_epochs": 0.5},
        "run": {"output_dir": str(output_dir), "progress": False, "seed": 5},
    }


def test_two_gloo_processes_match_one(tmp_path, one_thread) -> None:
    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    ddp_dir = tmp_path / "ddp"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(script),
        json.dumps(_config(ddp_dir)),
        str(tmp_path),
    ]
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]

    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert rank0.keys() == rank1.keys()
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key

    # rank 0 alone wrote the log (one record per epoch) and the checkpoint
    records = [json.loads(x) for x in (ddp_dir / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if "train_loss" in r] == [1, 2]
    config = config_from_dict(_config(tmp_path / "single"))
    saved = build_model(config)
    load_model_weights(saved, ddp_dir / "last.safetensors")
    for key, value in saved.state_dict().items():
        assert torch.equal(value, rank0[key]), key

    single = train(config)
    torch.manual_seed(5)  # run.seed: the initial weights of both runs
    initial = build_model(config).state_dict()
    for key, value in single.model.state_dict().items():
        torch.testing.assert_close(rank0[key], value, rtol=1e-5, atol=1e-6, msg=key)
    assert sum(not torch.equal(v, initial[k]) for k, v in rank0.items()) > 0
    # metrics are reduced over the ranks: the validation sees every sample once
    metrics = [json.loads((tmp_path / f"metrics{r}.json").read_text()) for r in (0, 1)]
    for record in metrics:
        record.pop("samples_per_s")  # each rank's own clock
    assert metrics[0] == metrics[1]
    assert metrics[0]["val_top1"] == single.metrics["val_top1"]
    assert abs(metrics[0]["train_loss"] - single.metrics["train_loss"]) < 1e-5
