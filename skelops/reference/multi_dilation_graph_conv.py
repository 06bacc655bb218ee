"""Reference multi-dilation graph convolution (STC-Net's dilated kernels, DK-GC)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def multi_dilation_graph_conv(
    x: torch.Tensor,
    weight: torch.Tensor,
    adjacency: torch.Tensor,
    bias: torch.Tensor | None = None,
    concat: bool = False,
) -> torch.Tensor:
    """Graph convolution with one channel mix for several dilated kernels, by ``conv1x1 + einsum``.

    With ``Z[n, k, o, t, v] = sum_c W[k, o, c] x[n, c, t, v]`` (one 1x1 convolution, shared by
    every dilation) and ``A[d, k, v, w]`` the kernel of dilation ``d``:

    .. math::
        \\text{sum:}\\quad y[n, o, t, w] = \\sum_d \\sum_k \\sum_v Z[n, k, o, t, v]\\,
        A[d, k, v, w] + b[o]

        \\text{concat:}\\quad y[n, d C_{out} + o, t, w] = \\sum_k \\sum_v Z[n, k, o, t, v]\\,
        A[d, k, v, w] + b[d C_{out} + o]

    Args:
        x: ``[N, C_in, T, V]`` features (batch, channels, frames, joints).
        weight: ``[K, C_out, C_in]``, one channel mix per adjacency subset ``k``, shared by all
            dilations (DK-GC adds no parameters).
        adjacency: ``[D, K, V, V]``: ``A[d, k, v, w]`` carries source joint ``v`` to target joint
            ``w`` in subset ``k`` of dilation ``d`` (e.g. ``skelops.graphs.dilated_adjacency``).
        bias: ``None`` or one value per output channel: ``[C_out]`` (sum) or ``[D * C_out]``
            (concat), added after aggregation.
        concat: concatenate the ``D`` dilation branches along channels (dilation-major:
            channel ``d * C_out + o``) instead of summing them.

    Returns:
        ``[N, C_out, T, V]`` (sum) or ``[N, D * C_out, T, V]`` (concat).

    This writes the ``[N, K * C_out, T, V]`` intermediate (and, for concat, the
    ``[N, D, C_out, T, V]`` branches) that the fused kernels avoid.
    """
    n, c_in, t, v = x.shape
    k, c_out, _ = weight.shape
    d = adjacency.shape[0]
    z = F.conv2d(x, weight.reshape(k * c_out, c_in, 1, 1)).view(n, k, c_out, t, v)
    if concat:
        y = torch.einsum("nkctv,dkvw->ndctw", z, adjacency).reshape(n, d * c_out, t, v)
    else:
        y = torch.einsum("nkctv,dkvw->nctw", z, adjacency)
    if bias is not None:
        y = y + bias.view(1, -1, 1, 1)
    return y.contiguous()
