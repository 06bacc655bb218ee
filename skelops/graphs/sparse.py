"""Sparse forms of an adjacency ``A[k, v, w]`` (source ``v``, target ``w``) for sparse graph
convolution: per-subset CSR, and block-diagonal-plus-links for multi-person graphs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["BlockDiagonalAdjacency", "SparseAdjacency", "to_block_diagonal", "to_sparse"]


def _check_stack(adjacency: torch.Tensor) -> None:
    if not isinstance(adjacency, torch.Tensor):
        raise TypeError(f"adjacency must be a torch.Tensor, got {type(adjacency).__name__}")
    if adjacency.dim() != 3 or adjacency.shape[1] != adjacency.shape[2]:
        raise ValueError(f"adjacency must be [K, V, V], got shape {tuple(adjacency.shape)}")


@dataclass(frozen=True)
class SparseAdjacency:
    """CSR of every subset of ``A[k, v, w]``, **rows indexed by the target** ``w``.

    Row ``w`` of subset ``k`` lists the sources ``v`` that feed ``w``, so a gather-style kernel
    computes ``y[..., w] = sum_j values[j] * x[..., col_indices[j]]`` over
    ``j in range(crow_indices[k, w], crow_indices[k, w + 1])``. Subsets are stored one after the
    other in ``col_indices``/``values``: ``crow_indices`` holds global offsets, so
    ``crow_indices[k, 0]`` is where subset ``k`` starts and ``crow_indices[k, V]`` where it ends
    (``== crow_indices[k + 1, 0]``). Within a row the sources are sorted.

    Attributes:
        crow_indices: ``[K, V + 1]`` row offsets.
        col_indices: ``[nnz]`` source joints.
        values: ``[nnz]`` weights ``A[k, v, w]``.
        num_nodes: ``V``.
    """

    crow_indices: torch.Tensor
    col_indices: torch.Tensor
    values: torch.Tensor
    num_nodes: int

    @property
    def num_subsets(self) -> int:
        """``K``."""
        return self.crow_indices.shape[0]

    @property
    def nnz(self) -> int:
        """Stored entries over all subsets."""
        return self.values.numel()

    def subset(self, k: int) -> torch.Tensor:
        """Subset ``k`` as a ``torch.sparse_csr_tensor`` ``[V (target), V (source)]``.

        ``subset(k) @ x`` with ``x`` of shape ``[V, F]`` equals ``A[k].T @ x``.
        """
        if not 0 <= k < self.num_subsets:
            raise IndexError(f"k must be in [0, {self.num_subsets}), got {k}")
        crow = self.crow_indices[k]
        start, end = int(crow[0]), int(crow[-1])
        return torch.sparse_csr_tensor(
            crow - start,
            self.col_indices[start:end],
            self.values[start:end],
            size=(self.num_nodes, self.num_nodes),
            check_invariants=True,
        )

    def to_dense(self) -> torch.Tensor:
        """The dense ``[K, V, V]`` adjacency ``A[k, v, w]``."""
        size, subsets = self.num_nodes, self.num_subsets
        counts = (self.crow_indices[:, 1:] - self.crow_indices[:, :-1]).flatten()
        flat_rows = torch.arange(subsets * size, device=counts.device).repeat_interleave(counts)
        by_target = torch.zeros(
            subsets * size, size, dtype=self.values.dtype, device=self.values.device
        )
        by_target[flat_rows, self.col_indices.long()] = self.values
        return by_target.reshape(subsets, size, size).transpose(1, 2).contiguous()


def to_sparse(
    adjacency: torch.Tensor, *, index_dtype: torch.dtype = torch.int64
) -> SparseAdjacency:
    """Per-subset CSR of a ``[K, V, V]`` adjacency (rows = targets; see :class:`SparseAdjacency`).

    Exactly the non-zero entries are stored; ``to_sparse(A).to_dense()`` equals ``A``.
    """
    _check_stack(adjacency)
    if index_dtype not in (torch.int32, torch.int64):
        raise TypeError(f"index_dtype must be torch.int32 or torch.int64, got {index_dtype}")
    subsets, size, _ = adjacency.shape
    by_target = adjacency.transpose(1, 2)
    nonzero = by_target != 0
    row_ends = nonzero.sum(-1).flatten().cumsum(0).reshape(subsets, size)
    subset_starts = torch.cat((row_ends.new_zeros(1), row_ends[:-1, -1]))
    crow = torch.cat((subset_starts[:, None], row_ends), dim=1)
    cols = torch.nonzero(nonzero)[:, 2]
    return SparseAdjacency(
        crow_indices=crow.to(index_dtype),
        col_indices=cols.to(index_dtype),
        values=by_target[nonzero],
        num_nodes=size,
    )


@dataclass(frozen=True)
class BlockDiagonalAdjacency:
    """A multi-person adjacency as per-person diagonal blocks plus the links between persons.

    For ``P`` blocks of ``B`` nodes (node ``p * B + i`` is node ``i`` of block ``p``):
    ``blocks[k, p, i, j] = A[k, p * B + i, p * B + j]`` (source ``i``, target ``j``, as ``A``),
    and every non-zero outside the diagonal blocks is a link
    ``A[link_subsets[l], link_sources[l], link_targets[l]] = link_values[l]``, listed in
    ``(subset, source, target)`` order.
    """

    blocks: torch.Tensor
    link_subsets: torch.Tensor
    link_sources: torch.Tensor
    link_targets: torch.Tensor
    link_values: torch.Tensor

    @property
    def num_subsets(self) -> int:
        """``K``."""
        return self.blocks.shape[0]

    @property
    def num_blocks(self) -> int:
        """``P``."""
        return self.blocks.shape[1]

    @property
    def block_size(self) -> int:
        """``B``."""
        return self.blocks.shape[2]

    @property
    def num_nodes(self) -> int:
        """``V = P * B``."""
        return self.num_blocks * self.block_size

    def to_dense(self) -> torch.Tensor:
        """The dense ``[K, V, V]`` adjacency."""
        dense = torch.zeros(
            self.num_subsets, self.num_nodes, self.num_nodes,
            dtype=self.blocks.dtype, device=self.blocks.device,
        )  # fmt: skip
        size = self.block_size
        for p in range(self.num_blocks):
            dense[:, p * size : (p + 1) * size, p * size : (p + 1) * size] = self.blocks[:, p]
        dense[self.link_subsets, self.link_sources, self.link_targets] = self.link_values
        return dense


def to_block_diagonal(adjacency: torch.Tensor, num_blocks: int) -> BlockDiagonalAdjacency:
    """Split a ``[K, V, V]`` adjacency into ``num_blocks`` diagonal blocks plus links.

    For MP-GCN's panoramic graph, ``num_blocks`` is the number of persons; its intra-person
    subsets then live in the blocks and the inter-person subsets in the links.
    ``to_block_diagonal(A, P).to_dense()`` equals ``A``.
    """
    _check_stack(adjacency)
    if isinstance(num_blocks, bool) or not isinstance(num_blocks, int) or num_blocks < 1:
        raise ValueError(f"num_blocks must be a positive int, got {num_blocks!r}")
    subsets, size, _ = adjacency.shape
    if size % num_blocks:
        raise ValueError(f"num_blocks ({num_blocks}) must divide the node count V ({size})")
    block = size // num_blocks
    owner = torch.arange(size, device=adjacency.device) // block
    offdiagonal = (owner[:, None] != owner[None, :]) & (adjacency != 0)
    blocks = torch.stack(
        [
            adjacency[:, p * block : (p + 1) * block, p * block : (p + 1) * block]
            for p in range(num_blocks)
        ],
        dim=1,
    )
    k, v, w = torch.nonzero(offdiagonal, as_tuple=True)
    return BlockDiagonalAdjacency(
        blocks=blocks.contiguous(),
        link_subsets=k,
        link_sources=v,
        link_targets=w,
        link_values=adjacency[k, v, w],
    )
