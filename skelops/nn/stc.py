"""STC-Net's layers: dilated-kernel graph convolution (DK-GC) and spatio-temporal curves."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..ops import multi_dilation_graph_conv, spatio_temporal_curve
from ..ops._common import check_positive_int
from ..ops.spatio_temporal_curve import check_length


class MultiDilationGraphConv(nn.Module):
    """Graph convolution over several dilated kernels with one shared channel mix (DK-GC).

    Computes :func:`skelops.multi_dilation_graph_conv`: ``Z_k = W_k x`` once, aggregated with
    every dilation's kernel ``A[d, k]`` and the ``D`` branches summed (``reduction="sum"``,
    ``C_out`` channels: the receptive field of the largest dilation with the parameters of one
    graph convolution) or concatenated (``"concat"``, ``D * C_out`` channels, dilation-major).

    Args:
        in_channels: ``C_in``.
        out_channels: ``C_out`` per branch.
        adjacency: ``[D, K, V, V]`` dilated kernels (``skelops.graphs.dilated_adjacency``),
            ``A[d, k, v, w]`` carrying source joint ``v`` to target joint ``w``; a buffer.
        reduction: ``"sum"`` or ``"concat"``.
        bias: learn a bias, one per output channel, added after aggregation.
        backend: passed to :func:`skelops.multi_dilation_graph_conv`.

    Shapes:
        x ``[N, C_in, T, V]`` -> ``[N, C_out, T, V]`` (sum) or ``[N, D * C_out, T, V]``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        adjacency: Tensor,
        *,
        reduction: str = "sum",
        bias: bool = True,
        backend: str = "auto",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(adjacency, Tensor) or adjacency.dim() != 4:
            shape = tuple(adjacency.shape) if isinstance(adjacency, Tensor) else type(adjacency)
            raise ValueError(f"adjacency must be a [D, K, V, V] tensor, got {shape}")
        if adjacency.shape[2] != adjacency.shape[3]:
            raise ValueError(f"adjacency must be [D, K, V, V], got {tuple(adjacency.shape)}")
        if reduction not in ("sum", "concat"):
            raise ValueError(f"reduction must be 'sum' or 'concat', got {reduction!r}")
        check_positive_int("in_channels", in_channels)
        check_positive_int("out_channels", out_channels)
        factory = {"device": device, "dtype": dtype}
        d, k = adjacency.shape[:2]
        self.in_channels, self.out_channels = in_channels, out_channels
        self.reduction, self.backend = reduction, backend
        self.register_buffer("adjacency", adjacency.detach().clone().to(**factory))
        self.weight = nn.Parameter(torch.empty(k, out_channels, in_channels, **factory))
        channels = out_channels * (d if reduction == "concat" else 1)
        self.bias = nn.Parameter(torch.empty(channels, **factory)) if bias else None
        self.reset_parameters()

    @property
    def num_dilations(self) -> int:
        return self.adjacency.shape[0]

    def reset_parameters(self) -> None:
        """Initialise like ``nn.Conv2d(C_in, K * C_out, 1)``."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.in_channels)
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        return multi_dilation_graph_conv(
            x, self.weight, self.adjacency, self.bias, self.reduction, backend=self.backend
        )

    def extra_repr(self) -> str:
        d, k, v = self.adjacency.shape[:3]
        return (
            f"{self.in_channels}, {self.out_channels}, dilations={d}, subsets={k}, joints={v}, "
            f"reduction={self.reduction!r}, bias={self.bias is not None}, "
            f"backend={self.backend!r}"
        )


class SpatioTemporalCurve(nn.Module):
    """Features aggregated along greedy spatio-temporal curves (STC-Net's STC).

    Runs :func:`skelops.spatio_temporal_curve`.

    Connections are scored on a learned key embedding, ``key = Conv2d(C, D, 1)(x)`` (or on x
    itself when ``key_channels`` is ``None``), restricted to ``candidates``.

    Args:
        channels: ``C`` of x.
        length: steps along each curve.
        key_channels: ``D`` of the learned key; ``None`` scores on x.
        candidates: ``[V, V]`` bool buffer of the joints a curve may step to (e.g.
            ``skelops.graphs.hop_distance(layout) <= radius``); ``None``: all joints.
        scale: affinity scale, ``1 / sqrt(D)`` when ``None``.
        backend: passed to :func:`skelops.spatio_temporal_curve`.

    Shapes:
        x ``[N, C, T, V]`` -> ``[N, C, T, V]``.
    """

    def __init__(
        self,
        channels: int,
        length: int,
        *,
        key_channels: int | None = None,
        candidates: Tensor | None = None,
        scale: float | None = None,
        backend: str = "auto",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_positive_int("channels", channels)
        self.channels, self.length = channels, check_length(length)
        self.scale, self.backend = scale, backend
        self.key = (
            None
            if key_channels is None
            else nn.Conv2d(
                channels,
                check_positive_int("key_channels", key_channels),
                1,
                device=device,
                dtype=dtype,
            )
        )
        if candidates is not None:
            if not isinstance(candidates, Tensor) or candidates.dtype != torch.bool:
                raise TypeError("candidates must be a [V, V] bool tensor or None")
            candidates = candidates.detach().clone().to(device=device)
        self.register_buffer("candidates", candidates)

    def forward(self, x: Tensor) -> Tensor:
        key = None if self.key is None else self.key(x)
        return spatio_temporal_curve(
            x, self.length, key, self.candidates, self.scale, backend=self.backend
        )

    def extra_repr(self) -> str:
        key = None if self.key is None else self.key.out_channels
        return (
            f"{self.channels}, length={self.length}, key_channels={key}, "
            f"candidates={'all' if self.candidates is None else tuple(self.candidates.shape)}, "
            f"backend={self.backend!r}"
        )
