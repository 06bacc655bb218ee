"""graph_conv benchmark cases: skelops backends vs ST-GCN's ``conv1x1 + einsum``.

The adjacency is ST-GCN's NTU RGB+D 'spatial' partition (K = 3), the graph the ST-GCN
reference model uses; all four inputs require grad (x as an inner layer's input, weight and
bias, and the adjacency as with ST-GCN's edge-importance weighting).
"""

from __future__ import annotations

import torch

from .. import graphs, reference
from ..ops import graph_conv
from ..ops._common import available_backends
from .harness import Candidate, Case, register

# (N, C_in, C_out, T) per device; V = 25 and K = 3 from the NTU graph. The CUDA shapes are the
# issue's GPU targets, the CPU shape its 2-core CPU target.
SHAPES = {
    "cuda": [(64, 64, 64, 300), (64, 128, 128, 150)],
    "cpu": [(16, 64, 64, 100)],
}
DTYPES = {"cuda": [torch.float32, torch.bfloat16], "cpu": [torch.float32]}


def floors(n: int, c_in: int, c_out: int, t: int, v: int, k: int, elem: int) -> dict:
    """Fewest FLOPs and bytes the op must do/move (see benchmarks/README.md)."""
    ntv = n * t * v
    mix = 2 * ntv * k * c_in * c_out  # one channel mix
    agg = 2 * ntv * v * k * min(c_in, c_out)  # one aggregation on the narrower side
    x_bytes, y_bytes = n * c_in * t * v * elem, n * c_out * t * v * elem
    params = (k * c_out * c_in + k * v * v + k * c_out) * elem
    return {
        "flops_fwd": mix + agg,
        # dX (mix + agg), dW (agg for X A, mix), dA (agg): the terms the backward must compute
        "flops_fwdbwd": (mix + agg) + (mix + agg) + (agg + mix) + agg,
        "bytes_fwd": x_bytes + y_bytes + params,
        # forward reads x, writes y; backward reads dY and x, writes dX; parameters and grads
        "bytes_fwdbwd": 2 * x_bytes + y_bytes + y_bytes + x_bytes + 2 * params,
    }


@register("graph_conv")
def cases(device: str) -> list[Case]:
    kind = "cuda" if device.startswith("cuda") else "cpu"
    adjacency = graphs.build_adjacency("ntu_stgcn", strategy="spatial", legacy_stgcn=True)
    k, v = adjacency.shape[0], adjacency.shape[-1]
    out = []
    for n, c_in, c_out, t in SHAPES[kind]:
        for dtype in DTYPES[kind]:

            def make_inputs(n=n, c_in=c_in, c_out=c_out, t=t, dtype=dtype):
                def leaf(*shape, scale=1.0):
                    value = torch.randn(*shape, device=device) * scale
                    return value.to(dtype).requires_grad_()

                a = adjacency.to(device) * (1 + 0.1 * torch.rand(k, v, v, device=device))
                return [
                    leaf(n, c_in, t, v),
                    leaf(k, c_out, c_in, scale=c_in**-0.5),
                    a.to(dtype).requires_grad_(),
                    leaf(k, c_out, scale=0.1),
                ]

            candidates = [
                Candidate(f"skelops[{b}]", _backend(b), "subject")
                for b in available_backends("graph_conv", torch.device(device))
                if b != "reference"
            ]
            candidates.append(
                Candidate("reference (conv1x1+einsum)", reference.graph_conv, "reference")
            )
            compiled = torch.compile(reference.graph_conv, dynamic=False)
            candidates.append(Candidate("torch.compile(reference)", compiled, "alternative"))
            out.append(
                Case(
                    op="graph_conv",
                    shape=f"N{n} C{c_in}->{c_out} T{t} V{v} K{k}",
                    dtype=dtype,
                    device=device,
                    make_inputs=make_inputs,
                    candidates=candidates,
                    note="adjacency: NTU ST-GCN spatial partition (legacy), edge-importance scaled",
                    **floors(n, c_in, c_out, t, v, k, torch.finfo(dtype).bits // 8),
                )
            )
    return out


def _backend(name: str):
    def run(x, weight, adjacency, bias):
        return graph_conv(x, weight, adjacency, bias, backend=name)

    return run
