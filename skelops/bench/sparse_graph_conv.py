"""Sparse graph convolution benchmark cases: MP-GCN's panoramic graphs.

The adjacency is MP-GCN's intra-inter partition of the Volleyball (``coco_ball-12``, V = 216)
and NBA (``coco_ball_net-12``, V = 228) panoramic graphs, first 3 subsets (K = 3, as the model
uses them), scaled by an edge importance. All four inputs require grad: x, the weight, the
``[K, C_out]`` bias (MP-GCN's 1x1-convolution bias, added before aggregation) and the dense
adjacency ``A`` a user of MP-GCN holds (adjacency times a learnable edge importance).

Candidates, all from that dense ``A``:

- ``skelops[<backend>]``: the stored entries gathered from ``A`` (``A[subset, source, target]``,
  differentiable) and ``skelops.graph_conv`` with the :class:`SparseAdjacency`;
- ``reference (conv1x1+einsum, dense A)``: what MP-GCN's official code computes;
- ``torch.sparse (conv1x1+spmm)``: the same gathered entries as one sparse COO matrix
  ``M[w, k * V + v] = A[k, v, w]`` and ``torch.sparse.mm(M, Z)`` on the channel-mixed features.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import graphs, reference
from ..ops import graph_conv
from ..ops._common import available_backends
from .harness import Candidate, Case, register

GRAPHS = {"volleyball": "coco_ball-12", "nba": "coco_ball_net-12"}
N, K = 16, 3
CHANNELS = (64, 128)
FRAMES = (20, 72)
DTYPES = (torch.float32, torch.bfloat16)
# bfloat16 on the CPU runs the smallest shape only, one round: on CPUs without bf16
# instructions (the AVX2 CI machine) torch's bf16 GEMM, which the dense reference's einsum and
# torch.sparse's backward (it forms the dense [V, K V] gradient of the sparse matrix with a
# GEMM) both call, is a single-threaded scalar loop: a single forward+backward of the reference
# at C128 T72 takes minutes, and the full grid over an hour. The skelops CPU kernel converts
# bf16 to fp32 tiles and is unaffected. On GPU every shape runs in both dtypes.
CPU_BF16_SHAPES = {(64, 20)}


def floors(sparse: graphs.SparseAdjacency, n: int, c: int, t: int, elem: int) -> dict:
    """Fewest FLOPs and bytes (see benchmarks/README.md): the channel mix over the non-empty
    (subset, target) rows and the aggregation over the stored entries; x and y once."""
    crow = sparse.crow_indices.long()
    rows = int((crow[:, 1:] > crow[:, :-1]).sum())  # non-empty (k, w) rows
    nt = n * t
    mix = 2 * nt * rows * c * c
    agg = 2 * nt * sparse.nnz * c
    x_bytes = y_bytes = n * c * t * sparse.num_nodes * elem
    params = (K * c * c + sparse.nnz + K * c) * elem
    return {
        "flops_fwd": mix + agg,
        # dX (mix + agg), dW (agg + mix), d values (agg)
        "flops_fwdbwd": (mix + agg) + (mix + agg) + (agg + mix) + agg,
        "bytes_fwd": x_bytes + y_bytes + params,
        "bytes_fwdbwd": 2 * x_bytes + 2 * y_bytes + x_bytes + 2 * params,
    }


@register("sparse_graph_conv")
def cases(device: str) -> list[Case]:
    out = []
    for dataset, graph in GRAPHS.items():
        dense = graphs.mpgcn_adjacency(graph)[:K].contiguous()
        sparse = graphs.to_sparse(dense, index_dtype=torch.int32)
        v = sparse.num_nodes
        entries = tuple(i.to(device) for i in sparse.entry_indices())
        structure = graphs.SparseAdjacency(
            sparse.crow_indices.to(device),
            sparse.col_indices.to(device),
            sparse.values.to(device),
            v,
        )
        for c in CHANNELS:
            for t in FRAMES:
                for dtype in DTYPES:
                    slow_cpu_bf16 = device == "cpu" and dtype == torch.bfloat16
                    if slow_cpu_bf16 and (c, t) not in CPU_BF16_SHAPES:
                        continue

                    def make_inputs(c=c, t=t, dtype=dtype, dense=dense, v=v):
                        def leaf(*shape, scale=1.0):
                            value = torch.randn(*shape, device=device) * scale
                            return value.to(dtype).requires_grad_()

                        importance = 1 + 0.1 * torch.rand(dense.shape, device=device)
                        return [
                            leaf(N, c, t, v),
                            leaf(K, c, c, scale=c**-0.5),
                            (dense.to(device) * importance).to(dtype).requires_grad_(),
                            leaf(K, c, scale=0.1),
                        ]

                    candidates = [
                        Candidate(f"skelops[{b}]", _skelops(b, structure, entries), "subject")
                        for b in available_backends("sparse_graph_conv", torch.device(device))
                        if b != "reference"
                    ]
                    candidates.append(
                        Candidate("reference (conv1x1+einsum, dense A)", _dense, "reference")
                    )
                    candidates.append(
                        Candidate(
                            "torch.sparse (conv1x1+spmm)", _torch_sparse(entries, v), "alternative"
                        )
                    )
                    out.append(
                        Case(
                            op="sparse_graph_conv",
                            shape=f"{dataset} N{N} C{c} T{t} V{v} K{K} nnz{sparse.nnz}",
                            dtype=dtype,
                            device=device,
                            make_inputs=make_inputs,
                            candidates=candidates,
                            note=f"MP-GCN {graph} intra-inter graph, first {K} subsets",
                            warmup_calls=1 if slow_cpu_bf16 else 2,
                            rounds=1 if slow_cpu_bf16 else 3,
                            **floors(sparse, N, c, t, torch.finfo(dtype).bits // 8),
                        )
                    )
    return out


def _dense(x, weight, adjacency, bias):
    return reference.graph_conv(x, weight, adjacency, bias)


def _skelops(backend: str, structure: graphs.SparseAdjacency, entries):
    subset, source, target = entries

    def run(x, weight, adjacency, bias):
        values = adjacency[subset, source, target]
        return graph_conv(x, weight, structure.with_values(values), bias, backend=backend)

    return run


def _torch_sparse(entries, v: int):
    subset, source, target = entries
    order = torch.argsort((target * subset.new_tensor(K) + subset) * v + source)
    subset, source, target = subset[order], source[order], target[order]
    indices = torch.stack((target, subset * v + source))  # M[w, k * V + v] = A[k, v, w], sorted

    def run(x, weight, adjacency, bias):
        n, c_in, t, _ = x.shape
        k, c_out, _ = weight.shape
        z = F.conv2d(x, weight.reshape(k * c_out, c_in, 1, 1), bias.reshape(-1))
        z = z.view(n, k, c_out, t, v).permute(1, 4, 0, 2, 3).reshape(k * v, n * c_out * t)
        values = adjacency[subset, source, target]
        matrix = torch.sparse_coo_tensor(
            indices, values, (v, k * v), is_coalesced=True, check_invariants=False
        )
        y = torch.sparse.mm(matrix, z)  # [V, N * C_out * T]
        return y.view(v, n, c_out, t).permute(1, 2, 3, 0).contiguous()

    return run
