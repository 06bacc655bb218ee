"""Model benchmarks: a training step (forward, backward, SGD update) and inference of a whole
model built on skelops operators, against the same model (same weights) on the reference
operators.

Batch and input sizes are the official training configurations on GPU. On the CPU the batch
is smaller (the official one takes minutes per step and over 10 GB on 2 cores); the input
format per sample is the official one either way. FLOPs are counted on the reference model
with ``torch.utils.flop_counter``; bytes are not modelled (0), so the floor is the FLOP floor.
"""

from __future__ import annotations

import torch

from .. import models
from .harness import Candidate, Case, register

# name -> (preset, per-sample input shape (official format), official batch, CPU batch, source)
MODEL_CASES = {
    "stgcn": ("ntu60", (3, 300, 25, 2), 64, 4, "yysijie/st-gcn config/st_gcn/ntu-xsub/train.yaml"),
    "hdgcn": (
        "ntu60",
        (3, 64, 25, 2),
        64,
        16,
        "Jho-Yonsei/HD-GCN config/nturgbd-cross-subject/joint_com_21.yaml",
    ),
    "stcnet": (
        "ntu60",
        (3, 64, 25, 2),
        64,
        16,
        "no official STC-Net code; input and batch of Jho-Yonsei/HD-GCN "
        "config/nturgbd-cross-subject/joint_com_21.yaml",
    ),
    "skateformer": (
        "ntu60",
        (3, 64, 24, 2),  # the official feeder's 24 reordered joints
        128,
        16,
        "KAIST-VICLab/SkateFormer config/train/ntu_cs/SkateFormer_j.yaml",
    ),
    "mpgcn": (
        "volleyball",
        (4, 4, 20, 216, 1),  # [I (J, V, B, M branches), C, T, V, M]
        16,
        16,
        "mgiant/MP-GCN config/volleyball/mpgcn.yaml",
    ),
}
# What the reference candidate is built with besides backend="reference": MP-GCN's official
# code multiplies the dense panoramic adjacency, so its reference is the dense graph convolution.
REFERENCE_OVERRIDES = {"mpgcn": {"sparse": False}}


def _count_flops(model: torch.nn.Module, x: torch.Tensor) -> tuple[float, float]:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as forward_counter, torch.no_grad():
        model(x)
    with FlopCounterMode(display=False) as step_counter:
        model(x).sum().backward()
    model.zero_grad(set_to_none=True)
    return float(forward_counter.get_total_flops()), float(step_counter.get_total_flops())


def model_cases(name: str, device: str) -> list[Case]:
    preset, sample_shape, official_batch, cpu_batch, source = MODEL_CASES[name]
    batch = official_batch if device.startswith("cuda") else cpu_batch
    torch.manual_seed(0)
    subject = models.create(name, preset=preset).to(device).train()
    reference = (
        models.create(name, preset=preset, backend="reference", **REFERENCE_OVERRIDES.get(name, {}))
        .to(device)
        .train()
    )
    reference.load_state_dict(subject.state_dict())
    for model in (subject, reference):  # dropout off: both candidates do the same work
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0

    def make_inputs() -> list[torch.Tensor]:
        return [torch.randn(batch, *sample_shape, device=device)]

    probe = torch.randn(2, *sample_shape, device=device)
    flops_fwd, flops_step = (f * batch / 2 for f in _count_flops(reference, probe))
    *_, c, t, v, m = sample_shape
    return [
        Case(
            op=f"model:{name}",
            shape=f"{preset} N{batch} "
            + (f"I{sample_shape[0]} " if len(sample_shape) == 5 else "")
            + f"C{c} T{t} V{v} M{m}",
            dtype=torch.float32,
            device=device,
            make_inputs=make_inputs,
            candidates=[
                Candidate(
                    f"skelops {name}", subject, "subject", parameters=list(subject.parameters())
                ),
                Candidate(
                    f"{name} on reference ops"
                    + (" (dense A, as the official code)" if name in REFERENCE_OVERRIDES else ""),
                    reference,
                    "reference",
                    parameters=list(reference.parameters()),
                ),
            ],
            flops_fwd=flops_fwd,
            flops_fwdbwd=flops_step,
            bytes_fwd=0.0,
            bytes_fwdbwd=0.0,
            note=f"training step = forward, backward, SGD update; official batch {official_batch} "
            f"({source})" + ("" if batch == official_batch else f"; batch {batch} on the CPU"),
            rounds=1 if device == "cpu" else 3,
            warmup_calls=1 if device == "cpu" else 3,
        )
    ]


for _name in MODEL_CASES:
    register(f"model:{_name}")(lambda device, _name=_name: model_cases(_name, device))
