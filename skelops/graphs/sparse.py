"""Sparse forms of an adjacency ``A[k, v, w]`` (source ``v``, target ``w``) for sparse graph
convolution: per-subset CSR, and block-diagonal-plus-links for multi-person graphs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

__all__ = [
    "BlockDiagonalAdjacency",
    "SparseAdjacency",
    "check_csr",
    "to_block_diagonal",
    "to_sparse",
]


def _check_stack(adjacency: torch.Tensor) -> None:
    if not isinstance(adjacency, torch.Tensor):
        raise TypeError(f"adjacency must be a torch.Tensor, got {type(adjacency).__name__}")
    if adjacency.dim() != 3 or adjacency.shape[1] != adjacency.shape[2]:
        raise ValueError(f"adjacency must be [K, V, V], got shape {tuple(adjacency.shape)}")


def check_csr(
    crow_indices: torch.Tensor, col_indices: torch.Tensor, num_nodes: int, nnz: int
) -> None:
    """Raise ValueError/TypeError/IndexError unless the arrays are a valid per-subset CSR of
    :class:`SparseAdjacency` for ``num_nodes`` nodes and ``nnz`` stored entries.

    Checks: int32/int64 indices of one dtype and device; ``crow_indices`` ``[K, V + 1]`` of
    global offsets (``crow[0, 0] = 0``, non-decreasing, ``crow[k, V] = crow[k + 1, 0]``,
    ``crow[K - 1, V] = nnz``); ``col_indices`` ``[nnz]`` in ``[0, V)`` and strictly increasing
    within each row. Reads the indices (one device synchronisation for GPU tensors).
    """
    for name, t in (("crow_indices", crow_indices), ("col_indices", col_indices)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dtype not in (torch.int32, torch.int64):
            raise TypeError(f"{name} must be int32 or int64, got {t.dtype}")
    if crow_indices.dtype != col_indices.dtype or crow_indices.device != col_indices.device:
        raise TypeError(
            "crow_indices and col_indices must share dtype and device, got "
            f"{crow_indices.dtype}/{crow_indices.device} and "
            f"{col_indices.dtype}/{col_indices.device}"
        )
    v = num_nodes
    if crow_indices.dim() != 2 or crow_indices.shape[1] != v + 1 or crow_indices.shape[0] < 1:
        raise ValueError(
            f"crow_indices must be [K, V + 1] with V={v} and K >= 1, "
            f"got shape {tuple(crow_indices.shape)}"
        )
    if col_indices.dim() != 1 or col_indices.shape[0] != nnz:
        raise ValueError(
            f"col_indices must be [nnz] with nnz={nnz}, got shape {tuple(col_indices.shape)}"
        )
    crow = crow_indices.long().cpu()
    col = col_indices.long().cpu()
    if int(crow[0, 0]) != 0:
        raise ValueError(f"crow_indices[0, 0] must be 0, got {int(crow[0, 0])}")
    starts, ends = crow[1:, 0], crow[:-1, -1]
    if not torch.equal(starts, ends):
        k = int(torch.nonzero(starts != ends)[0, 0]) + 1
        raise ValueError(
            f"crow_indices[{k}, 0] must equal crow_indices[{k - 1}, V] (subsets stored one after "
            f"the other), got {int(starts[k - 1])} and {int(ends[k - 1])}"
        )
    steps = crow[:, 1:] - crow[:, :-1]
    if (steps < 0).any():
        k, w = (int(i) for i in torch.nonzero(steps < 0)[0])
        raise ValueError(
            f"crow_indices must be non-decreasing, got crow_indices[{k}, {w}:{w + 2}] = "
            f"{crow[k, w : w + 2].tolist()}"
        )
    if int(crow[-1, -1]) != nnz:
        raise ValueError(f"crow_indices[K - 1, V] must equal nnz={nnz}, got {int(crow[-1, -1])}")
    if nnz == 0:
        return
    bad = (col < 0) | (col >= v)
    if bad.any():
        j = int(torch.nonzero(bad)[0, 0])
        raise IndexError(f"col_indices[{j}] = {int(col[j])} is out of range for V={v}")
    row_of = torch.arange(steps.numel()).repeat_interleave(steps.flatten())
    same_row = row_of[1:] == row_of[:-1]
    unsorted = same_row & (col[1:] <= col[:-1])
    if unsorted.any():
        j = int(torch.nonzero(unsorted)[0, 0]) + 1
        k, w = divmod(int(row_of[j]), v)
        raise ValueError(
            "col_indices must be strictly increasing within a row (sorted, no duplicates), got "
            f"{int(col[j - 1])} then {int(col[j])} in row k={k}, w={w}"
        )


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
    validate: bool = field(default=True, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.values, torch.Tensor):
            raise TypeError(f"values must be a torch.Tensor, got {type(self.values).__name__}")
        if self.values.dim() != 1 or not self.values.is_floating_point():
            raise ValueError(
                f"values must be a 1-D floating-point tensor, got {self.values.dim()}-D "
                f"{self.values.dtype}"
            )
        if self.validate:
            if isinstance(self.num_nodes, bool) or not isinstance(self.num_nodes, int):
                raise TypeError(f"num_nodes must be an int, got {self.num_nodes!r}")
            check_csr(self.crow_indices, self.col_indices, self.num_nodes, self.values.numel())
            if self.values.device != self.col_indices.device:
                raise ValueError(
                    f"values must be on the indices' device ({self.col_indices.device}), got "
                    f"{self.values.device}"
                )

    @property
    def num_subsets(self) -> int:
        """``K``."""
        return self.crow_indices.shape[0]

    def with_values(self, values: torch.Tensor) -> SparseAdjacency:
        """The same structure with other ``values`` (``[nnz]``), e.g. stored weights times a
        learnable edge importance. Gradients flow to ``values``; the structure is not checked
        again."""
        if not isinstance(values, torch.Tensor) or values.shape != self.values.shape:
            got = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
            raise ValueError(f"values must have shape [nnz]=[{self.nnz}], got {got}")
        return SparseAdjacency(
            self.crow_indices, self.col_indices, values, self.num_nodes, validate=False
        )

    def entry_indices(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(subset, source, target)`` int64 tensors ``[nnz]``: entry ``j`` is
        ``A[subset[j], source[j], target[j]]``. ``dense[subset, source, target]`` gathers the
        values of a dense ``[K, V, V]`` tensor in storage order."""
        size = self.num_nodes
        crow = self.crow_indices.long()
        counts = (crow[:, 1:] - crow[:, :-1]).flatten()
        rows = torch.arange(self.num_subsets * size, device=crow.device).repeat_interleave(counts)
        return rows // size, self.col_indices.long(), rows % size

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
        validate=False,  # built sorted and in range
    )


def _csr_from_entries(
    subsets: torch.Tensor,
    sources: torch.Tensor,
    targets: torch.Tensor,
    values: torch.Tensor,
    num_subsets: int,
    num_nodes: int,
    index_dtype: torch.dtype,
) -> SparseAdjacency:
    """CSR of distinct entries ``A[subsets[i], sources[i], targets[i]] = values[i]`` (any
    order); gradients flow from the result's values to ``values``."""
    rows = subsets * num_nodes + targets
    order = torch.argsort(rows * num_nodes + sources)
    counts = torch.bincount(rows, minlength=num_subsets * num_nodes)
    ends = counts.cumsum(0).reshape(num_subsets, num_nodes)
    starts = torch.cat((ends.new_zeros(1), ends[:-1, -1]))
    crow = torch.cat((starts[:, None], ends), dim=1)
    return SparseAdjacency(
        crow_indices=crow.to(index_dtype),
        col_indices=sources[order].to(index_dtype),
        values=values[order],
        num_nodes=num_nodes,
        validate=False,  # distinct entries, sorted by (row, source)
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

    def to_sparse(self, *, index_dtype: torch.dtype = torch.int64) -> SparseAdjacency:
        """Per-subset CSR of the non-zero block entries plus the links.

        The stored structure is the non-zero pattern at the time of the call; the values are
        gathered from ``blocks`` and ``link_values``, so gradients flow back to them (block
        entries that are zero get none: they are not part of the sparse graph).
        """
        if index_dtype not in (torch.int32, torch.int64):
            raise TypeError(f"index_dtype must be torch.int32 or torch.int64, got {index_dtype}")
        k, p, i, j = torch.nonzero(self.blocks.detach(), as_tuple=True)
        size = self.block_size
        return _csr_from_entries(
            torch.cat((k, self.link_subsets.long())),
            torch.cat((p * size + i, self.link_sources.long())),
            torch.cat((p * size + j, self.link_targets.long())),
            torch.cat((self.blocks[k, p, i, j], self.link_values)),
            self.num_subsets,
            self.num_nodes,
            index_dtype,
        )


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
