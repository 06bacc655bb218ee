"""``GraphConv``: ST-GCN's spatial graph convolution as one fused operator."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..graphs.sparse import SparseAdjacency, to_sparse
from ..ops import graph_conv


class GraphConv(nn.Module):
    """Spatial graph convolution over a partitioned skeleton graph.

    Computes ``y[n, o, t, w] = sum_k sum_c sum_v W[k, o, c] x[n, c, t, v] A[k, v, w] + b``
    with :func:`skelops.graph_conv`; equal to ST-GCN's ``ConvTemporalGraphical`` (a
    ``Conv2d(C_in, K * C_out, 1)`` followed by ``einsum('nkctv,kvw->nctw')``) for the same
    parameters, without its ``[N, K * C_out, T, V]`` intermediate.

    Args:
        in_channels: ``C_in``.
        out_channels: ``C_out``.
        adjacency: ``[K, V, V]`` partitioned adjacency (e.g. from :mod:`skelops.graphs`),
            ``A[k, v, w]`` carrying source joint ``v`` to target joint ``w``. Stored as a
            buffer (moves with ``.to()``, saved in the state dict).
        bias: learn a bias.
        bias_before_aggregation: the bias is ``[K, C_out]`` and added before aggregation, as
            the bias of ST-GCN's 1x1 convolution (so the parameter count matches ST-GCN);
            otherwise it is ``[C_out]`` and added to the output.
        edge_importance: learn a ``[K, V, V]`` mask multiplied into A, initialised to ones
            (ST-GCN's edge-importance weighting).
        sparse: run the sparse graph convolution on the non-zero entries of ``adjacency``
            (large, sparse graphs such as MP-GCN's multi-person panoramic graphs). The
            parameters and the state dict are the same as with ``sparse=False``; the edge
            importance is applied to the stored entries, and the stored structure is rebuilt
            when a state dict is loaded.
        backend: passed to :func:`skelops.graph_conv`.

    Shapes:
        ``forward(x, adjacency=None)``: x ``[N, C_in, T, V]`` -> ``[N, C_out, T, V]``. An
        ``adjacency`` given to forward (``[K, V, V]`` or per-sample ``[N, K, V, V]``, e.g. an
        adaptive graph) replaces the stored one for that call; the edge-importance mask still
        applies (dense layers only).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        adjacency: Tensor,
        *,
        bias: bool = True,
        bias_before_aggregation: bool = True,
        edge_importance: bool = False,
        sparse: bool = False,
        backend: str = "auto",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(adjacency, Tensor) or adjacency.dim() != 3:
            shape = tuple(adjacency.shape) if isinstance(adjacency, Tensor) else type(adjacency)
            raise ValueError(f"adjacency must be a [K, V, V] tensor, got {shape}")
        if adjacency.shape[1] != adjacency.shape[2]:
            raise ValueError(f"adjacency must be [K, V, V], got {tuple(adjacency.shape)}")
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        factory = {"device": device, "dtype": dtype}
        k = adjacency.shape[0]
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.bias_before_aggregation = bias_before_aggregation
        self.backend = backend
        self.register_buffer("adjacency", adjacency.detach().clone().to(**factory))
        self.weight = nn.Parameter(torch.empty(k, out_channels, in_channels, **factory))
        bias_shape = (k, out_channels) if bias_before_aggregation else (out_channels,)
        self.bias = nn.Parameter(torch.empty(bias_shape, **factory)) if bias else None
        self.edge_importance = (
            nn.Parameter(torch.ones_like(self.adjacency)) if edge_importance else None
        )
        self.sparse = sparse
        if sparse:
            self._build_structure()
            self.register_load_state_dict_post_hook(lambda module, _: module._build_structure())
        self.reset_parameters()

    def _build_structure(self) -> None:
        """The CSR of the non-zero entries of the ``adjacency`` buffer, as buffers that are not
        saved (they follow from it)."""
        csr = to_sparse(self.adjacency.detach(), index_dtype=torch.int32)
        entries = csr.entry_indices()
        for name, value in zip(
            ("crow", "col", "entry_subset", "entry_source", "entry_target"),
            (csr.crow_indices, csr.col_indices, *entries),
            strict=True,
        ):
            self.register_buffer(f"_sparse_{name}", value, persistent=False)

    @property
    def num_subsets(self) -> int:
        return self.weight.shape[0]

    def reset_parameters(self) -> None:
        """Initialise like ``nn.Conv2d(C_in, K * C_out, 1)`` (what ST-GCN uses)."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.in_channels)
            nn.init.uniform_(self.bias, -bound, bound)
        if self.edge_importance is not None:
            nn.init.ones_(self.edge_importance)

    @torch.no_grad()
    def load_conv1x1(self, conv: nn.Conv2d) -> GraphConv:
        """Copy the parameters of ST-GCN's ``Conv2d(C_in, K * C_out, 1)`` into this layer
        (needs ``bias_before_aggregation=True`` when the convolution has a bias)."""
        k, c_out, c_in = self.weight.shape
        expected = (k * c_out, c_in, 1, 1)
        if tuple(conv.weight.shape) != expected:
            raise ValueError(f"conv.weight must be {expected}, got {tuple(conv.weight.shape)}")
        self.weight.copy_(conv.weight.reshape(k, c_out, c_in))
        if conv.bias is not None:
            if self.bias is None or not self.bias_before_aggregation:
                raise ValueError(
                    "conv has a bias: build GraphConv with bias=True, bias_before_aggregation=True"
                )
            self.bias.copy_(conv.bias.reshape(k, c_out))
        return self

    def effective_adjacency(self, adjacency: Tensor | None = None) -> Tensor:
        a = self.adjacency if adjacency is None else adjacency
        return a if self.edge_importance is None else a * self.edge_importance

    def sparse_adjacency(self) -> SparseAdjacency:
        """The stored entries of the adjacency (times the edge importance) as CSR."""
        index = (self._sparse_entry_subset, self._sparse_entry_source, self._sparse_entry_target)
        values = self.adjacency[index]
        if self.edge_importance is not None:
            values = values * self.edge_importance[index]
        return SparseAdjacency(
            self._sparse_crow, self._sparse_col, values, self.adjacency.shape[-1], validate=False
        )

    def forward(self, x: Tensor, adjacency: Tensor | None = None) -> Tensor:
        if self.sparse:
            if adjacency is not None:
                raise ValueError(
                    "a sparse GraphConv uses its stored graph; build it with sparse=False to "
                    "pass an adjacency to forward"
                )
            return graph_conv(
                x, self.weight, self.sparse_adjacency(), self.bias, backend=self.backend
            )
        return graph_conv(
            x, self.weight, self.effective_adjacency(adjacency), self.bias, backend=self.backend
        )

    def extra_repr(self) -> str:
        k, v = self.adjacency.shape[0], self.adjacency.shape[-1]
        return (
            f"{self.in_channels}, {self.out_channels}, subsets={k}, joints={v}, "
            f"bias={self.bias is not None}, "
            f"bias_before_aggregation={self.bias_before_aggregation}, "
            f"edge_importance={self.edge_importance is not None}, sparse={self.sparse}, "
            f"backend={self.backend!r}"
        )
