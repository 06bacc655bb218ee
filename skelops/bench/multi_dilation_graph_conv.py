"""multi_dilation_graph_conv benchmark cases: STC-Net's dilated-kernel graph convolution.

The adjacency is the NTU RGB+D graph's dilated kernels ``dilated_adjacency("ntu_stgcn", (1, 2),
"spatial")`` (D = 2, K = 3, V = 25), the ones STC-Net uses, scaled by a random edge-importance
mask; C_in = C_out; both reductions. All four inputs require grad (x as an inner layer's input,
weight, adjacency and bias).

Candidates:

- ``skelops[<backend>]``: every skelops backend that runs on the device;
- ``reference (conv1x1+einsum)``: ``skelops.reference.multi_dilation_graph_conv``;
- ``separate graph_conv calls``: what a user of skelops without this op writes, D calls of
  ``skelops.graph_conv`` (the device's best backend), one per dilation, summed or
  concatenated, the bias fused into the calls;
- ``torch.compile(reference)``.
"""

from __future__ import annotations

import torch

from .. import graphs, reference
from ..ops import graph_conv, multi_dilation_graph_conv
from ..ops._common import available_backends
from .harness import Candidate, Case, register

DILATIONS = (1, 2)
CHANNELS = (64, 128, 256)
FRAMES = 64
# N per device: the GPU batch, and its CPU batch (CPU in float32 only: the bf16 GEMMs of
# the reference are scalar loops on CPUs without bf16 instructions and take minutes).
BATCH = {"cuda": 64, "cpu": 8}
DTYPES = {"cuda": [torch.float32, torch.bfloat16], "cpu": [torch.float32]}
REDUCTIONS = ("sum", "concat")


def floors(n: int, c: int, t: int, v: int, k: int, d: int, concat: bool, elem: int) -> dict:
    """Fewest FLOPs and bytes the op must do/move (C_in = C_out = c).

    With ``NTV = N * T * V``: one channel mix costs ``mix = 2 * NTV * K * c * c`` and one
    aggregation over the joints ``agg = 2 * NTV * K * c * V``. Sum: the dilations fold into one
    adjacency ``sum_d A[d]``, so the op is one graph convolution, ``mix + agg`` forward and
    ``3 mix + 4 agg`` forward+backward (dX: mix + agg; dW: agg + mix; dA: agg). Concat: the
    channels are mixed once and aggregated per dilation, ``mix + D agg`` forward; the backward
    needs ``H = sum_d dY_d A[d]^T`` (D agg), dX = W^T H (mix), dW = H x^T (mix), and
    ``dA[d] = (W x)^T dY_d`` (mix to recompute Z, D agg): ``3 mix + 2 D agg``.
    Bytes: x read and y written by the forward; dY and x read, dX written by the backward
    (the parameters and their gradients are small).
    """
    ntv = n * t * v
    mix = 2 * ntv * k * c * c
    agg = 2 * ntv * k * c * v
    x_bytes = n * c * t * v * elem
    y_bytes = x_bytes * (d if concat else 1)
    params = (k * c * c + d * k * v * v + c * (d if concat else 1)) * elem
    if concat:
        flops_fwd, flops_bwd = mix + d * agg, 3 * mix + 2 * d * agg
    else:
        flops_fwd, flops_bwd = mix + agg, 2 * mix + 3 * agg
    return {
        "flops_fwd": flops_fwd,
        "flops_fwdbwd": flops_fwd + flops_bwd,
        "bytes_fwd": x_bytes + y_bytes + params,
        "bytes_fwdbwd": (x_bytes + y_bytes) + (y_bytes + 2 * x_bytes) + 2 * params,
    }


@register("multi_dilation_graph_conv")
def cases(device: str) -> list[Case]:
    kind = "cuda" if device.startswith("cuda") else "cpu"
    adjacency = graphs.dilated_adjacency("ntu_stgcn", DILATIONS, "spatial")
    d, k, v, _ = adjacency.shape
    n = BATCH[kind]
    best = available_backends("graph_conv", torch.device(device))[0]
    out = []
    for reduction in REDUCTIONS:
        concat = reduction == "concat"
        for c in CHANNELS:
            for dtype in DTYPES[kind]:

                def make_inputs(c=c, dtype=dtype, concat=concat):
                    def leaf(*shape, scale=1.0):
                        value = torch.randn(*shape, device=device) * scale
                        return value.to(dtype).requires_grad_()

                    a = adjacency.to(device) * (1 + 0.1 * torch.rand(d, k, v, v, device=device))
                    return [
                        leaf(n, c, FRAMES, v),
                        leaf(k, c, c, scale=c**-0.5),
                        a.to(dtype).requires_grad_(),
                        leaf(c * (d if concat else 1), scale=0.1),
                    ]

                candidates = [
                    Candidate(f"skelops[{b}]", _backend(b, reduction), "subject")
                    for b in available_backends("multi_dilation_graph_conv", torch.device(device))
                    if b != "reference"
                ]

                def run_reference(x, weight, a, bias, concat=concat):
                    return reference.multi_dilation_graph_conv(x, weight, a, bias, concat)

                candidates.append(
                    Candidate("reference (conv1x1+einsum)", run_reference, "reference")
                )
                candidates.append(
                    Candidate(
                        f"separate graph_conv calls [{best}]",
                        _separate_calls(best, concat),
                        "alternative",
                    )
                )
                compiled = torch.compile(run_reference, dynamic=False)
                candidates.append(Candidate("torch.compile(reference)", compiled, "alternative"))
                out.append(
                    Case(
                        op="multi_dilation_graph_conv",
                        shape=f"{reduction} N{n} C{c}->{c} T{FRAMES} V{v} K{k} D{d}",
                        dtype=dtype,
                        device=device,
                        make_inputs=make_inputs,
                        candidates=candidates,
                        note="adjacency: NTU dilated kernels (1, 2), spatial, edge-importance "
                        "scaled",
                        **floors(n, c, FRAMES, v, k, d, concat, torch.finfo(dtype).bits // 8),
                    )
                )
    return out


def _backend(name: str, reduction: str):
    def run(x, weight, adjacency, bias):
        return multi_dilation_graph_conv(x, weight, adjacency, bias, reduction, backend=name)

    return run


def _separate_calls(backend: str, concat: bool):
    """One skelops.graph_conv per dilation, concatenated (each with its bias block) or summed
    (the bias in the first call)."""

    def run(x, weight, adjacency, bias):
        c_out = weight.shape[1]
        branches = [
            graph_conv(
                x,
                weight,
                a,
                bias[i * c_out : (i + 1) * c_out] if concat else (bias if i == 0 else None),
                backend=backend,
            )
            for i, a in enumerate(adjacency.unbind(0))
        ]
        if concat:
            return torch.cat(branches, dim=1)
        y = branches[0]
        for branch in branches[1:]:
            y = y + branch
        return y

    return run
