"""Reference sparse graph convolution: conv1x1, then aggregation over the stored entries only."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sparse_graph_conv(
    x: torch.Tensor,
    weight: torch.Tensor,
    crow_indices: torch.Tensor,
    col_indices: torch.Tensor,
    values: torch.Tensor,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Graph convolution with the adjacency stored as per-subset CSR (rows = targets).

    .. math::
        y[n, o, t, w] = \\sum_k \\sum_{j \\in \\mathrm{row}(k, w)} \\mathrm{values}[j]
            \\sum_c W[k, o, c]\\, x[n, c, t, \\mathrm{col}[j]] + b

    the same function as :func:`skelops.reference.graph_conv` for the dense
    ``A[k, col[j], w] = values[j]`` (``skelops.graphs.SparseAdjacency.to_dense``).

    Args:
        x: ``[N, C_in, T, V]`` (batch, channels, frames, joints).
        weight: ``[K, C_out, C_in]``.
        crow_indices: ``[K, V + 1]`` global row offsets; row ``(k, w)`` holds the entries
            ``crow_indices[k, w] <= j < crow_indices[k, w + 1]``, the sources ``v`` that feed
            target ``w`` in subset ``k`` (``A[k, v, w]`` carries source ``v`` to target ``w``).
        col_indices: ``[nnz]`` source joints.
        values: ``[nnz]`` weights ``A[k, col[j], w]``.
        bias: ``None``; ``[C_out]`` added after aggregation; or ``[K, C_out]`` added before
            aggregation (scaled by the row sums ``sum_j values[j]`` of each row ``(k, w)``).

    Returns:
        ``[N, C_out, T, V]``. Writes the ``[N, K * C_out, T, V]`` channel-mixed intermediate and
        a ``[N, C_out, T, nnz]`` gathered copy; the kernels write neither.
    """
    n, c_in, t, v = x.shape
    k, c_out, _ = weight.shape
    conv_bias = bias.reshape(k * c_out) if bias is not None and bias.dim() == 2 else None
    z = F.conv2d(x, weight.reshape(k * c_out, c_in, 1, 1), conv_bias).view(n, k, c_out, t, v)
    crow = crow_indices.long()
    counts = (crow[:, 1:] - crow[:, :-1]).reshape(-1)
    rows = torch.arange(k * v, device=x.device).repeat_interleave(counts)  # k * V + w of entry j
    subset, target = rows // v, rows % v
    gathered = z[:, subset, :, :, col_indices.long()]  # [nnz, N, C_out, T] (advanced indexing)
    contributions = gathered * values.view(-1, 1, 1, 1)
    y = x.new_zeros((v, n, c_out, t)).index_add(0, target, contributions)
    y = y.permute(1, 2, 3, 0)
    if bias is not None and bias.dim() == 1:
        y = y + bias.view(1, c_out, 1, 1)
    return y.contiguous()
