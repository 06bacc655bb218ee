"""Reference spatio-temporal curves (STC-Net's STC module), as a plain PyTorch composition."""

from __future__ import annotations

import math

import torch


def curve_scale(key_channels: int, scale: float | None) -> float:
    """The affinity scale: ``scale``, or ``1 / sqrt(D)`` for ``D`` key channels."""
    return 1.0 / math.sqrt(key_channels) if scale is None else float(scale)


def spatio_temporal_curve(
    x: torch.Tensor,
    length: int,
    key: torch.Tensor | None = None,
    candidates: torch.Tensor | None = None,
    scale: float | None = None,
) -> torch.Tensor:
    """Aggregate features along greedy spatio-temporal curves.

    Affinity of node ``v`` at frame ``t`` to node ``w`` at frame ``t + 1`` (``K = key``):

    .. math::
        s_t(v, w) = \\text{scale} \\sum_d K[n, d, t, v]\\, K[n, d, t + 1, w]

    over the candidates ``w`` of ``v`` (``candidates[v, w]``; all joints when ``None``).
    Transition probabilities ``P_t(v \\to w) = \\mathrm{softmax}_w s_t(v, w)`` over the
    candidates; the curve follows the best one, ``next_t(v) = \\arg\\max_w s_t(v, w)`` (the
    lowest ``w`` on ties). The curve from ``(t, v)`` visits ``p_0 = v``,
    ``p_i = next_{t+i-1}(p_{i-1})`` for ``i = 1 .. L_t = min(length, T - 1 - t)`` (curves stop at
    the last frame) and carries the weights of its greedy path,
    ``pi_0 = 1, pi_i = pi_{i-1} P_{t+i-1}(p_{i-1} \\to p_i)``:

    .. math::
        y[n, c, t, v] = \\sum_{i=0}^{L_t} \\pi_i\\, x[n, c, t + i, p_i]

    The path (the argmax) is piecewise constant and has no gradient; the weights are
    differentiable: a step's weight is the softmax probability of the connection it takes, so
    the gradient reaches the key of every candidate it was chosen over.

    Args:
        x: ``[N, C, T, V]`` features to aggregate (batch, channels, frames, joints); ``T >= 2``.
        length: steps along each curve, ``>= 1``.
        key: ``[N, D, T, V]`` embedding that scores connections; ``x`` when ``None``.
        candidates: ``[V, V]`` bool, ``candidates[v, w]``: joint ``w`` of the next frame may
            follow joint ``v``; every row needs one. ``None``: all joints.
        scale: affinity scale; ``1 / sqrt(D)`` when ``None``.

    Returns:
        ``[N, C, T, V]``.

    This materialises the ``[N, T - 1, V, V]`` affinities and one gathered copy of x per step,
    which the fused kernels avoid.
    """
    key = x if key is None else key
    n, c, t, v = x.shape
    s = curve_scale(key.shape[1], scale)
    scores = torch.einsum("ndtv,ndtw->ntvw", key[:, :, :-1], key[:, :, 1:]) * s
    if candidates is not None:
        scores = scores.masked_fill(~candidates.to(torch.bool), float("-inf"))
    log_prob = scores.log_softmax(-1)  # [N, T - 1, V, V]
    next_joint = scores.argmax(-1)  # [N, T - 1, V], first index on ties
    log_prob_next = log_prob.gather(-1, next_joint.unsqueeze(-1)).squeeze(-1)

    y = x.clone()
    position = torch.arange(v, device=x.device).expand(n, t, v)  # p_i of the curve from (t, v)
    log_weight = torch.zeros(n, t, v, dtype=log_prob.dtype, device=x.device)
    for i in range(1, min(length, t - 1) + 1):
        starts = t - i  # curves from frames 0 .. T - 1 - i take step i
        frames = slice(i - 1, i - 1 + starts)  # the frame each of them leaves
        previous = position[:, :starts]
        position = next_joint[:, frames].gather(2, previous)
        log_weight = log_weight[:, :starts] + log_prob_next[:, frames].gather(2, previous)
        met = x[:, :, i:].gather(3, position.unsqueeze(1).expand(n, c, starts, v))
        contribution = log_weight.exp().unsqueeze(1).to(x.dtype) * met
        y = torch.cat([y[:, :, :starts] + contribution, y[:, :, starts:]], dim=2)
    return y
