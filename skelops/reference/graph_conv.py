"""Reference spatio-temporal graph convolution, as ST-GCN computes it."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def graph_conv(
    x: torch.Tensor,
    weight: torch.Tensor,
    adjacency: torch.Tensor,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Graph convolution by ``conv1x1 + einsum`` (ST-GCN's ``ConvTemporalGraphical``).

    .. math::
        y[n, o, t, w] = \\sum_k \\sum_c \\sum_v W[k, o, c]\\, x[n, c, t, v]\\, A[k, v, w] + b

    Args:
        x: ``[N, C_in, T, V]`` features (batch, channels, frames, joints).
        weight: ``[K, C_out, C_in]``, one channel mix per adjacency subset ``k``. ST-GCN's
            ``Conv2d(C_in, K * C_out, 1)`` weight is ``weight.reshape(K * C_out, C_in, 1, 1)``.
        adjacency: ``[K, V, V]`` shared, or ``[N, K, V, V]`` per sample. ``A[k, v, w]`` carries
            source joint ``v`` to target joint ``w``: ``y[..., w] = sum_v x[..., v] A[k, v, w]``.
        bias: ``None``; ``[C_out]`` added after aggregation; or ``[K, C_out]`` added before
            aggregation (the bias of ST-GCN's 1x1 convolution, which is therefore scaled by the
            column sums ``sum_v A[k, v, w]``).

    Returns:
        ``[N, C_out, T, V]``.

    This writes the ``[N, K * C_out, T, V]`` intermediate that the fused kernels avoid.
    """
    n, c_in, t, v = x.shape
    k, c_out, _ = weight.shape
    conv_bias = bias.reshape(k * c_out) if bias is not None and bias.dim() == 2 else None
    z = F.conv2d(x, weight.reshape(k * c_out, c_in, 1, 1), conv_bias)
    z = z.view(n, k, c_out, t, v)
    equation = "nkctv,kvw->nctw" if adjacency.dim() == 3 else "nkctv,nkvw->nctw"
    y = torch.einsum(equation, z, adjacency)
    if bias is not None and bias.dim() == 1:
        y = y + bias.view(1, c_out, 1, 1)
    return y.contiguous()
