"""spatio_temporal_curve benchmark cases: skelops backends vs the plain PyTorch composition.

STC-Net's STC module on NTU RGB+D shapes (V = 25): curves of ``length = 4`` steps scored on a
separate reduced key embedding ``key [N, C / 4, T, V]`` (as STC-Net's model computes it); x and
key both require grad. Two candidate sets, both run on every device: the joints within one hop
of the NTU graph (``skelops.graphs.hop_distance("ntu_stgcn") <= 1``, 3 candidates per joint on
average, the model's setting) and all joints (25 per joint, which the scores and their
softmax dominate at small C).

Candidates: every skelops backend for the device (``subject``); the reference composition
(``skelops.reference.spatio_temporal_curve``: einsum scores, log-softmax, argmax, one gather
and concatenation per step; ``reference``); and ``torch.compile`` of that composition, what a
user could do instead (``alternative``).

Floors (:func:`floors`), with P = N (T - 1) transitions, |cand| candidates in total over the V
rows, and M = N V sum_t (min(L, T - 1 - t) + 1) curve terms (about N T V (L + 1)):

- FLOPs, forward: ``2 P |cand| D`` for the scores plus ``2 M C`` for the aggregation (the
  softmax's exponentials are not counted). Backward: ``2 M C`` for dx, ``2 (M - N T V) C`` for
  the step gradients ``h_i = <g, x>`` (every step but the start), and ``4 P |cand| D`` for the
  two products of the score gradient with the key (``dS key`` both ways).
- Bytes, forward: read x and key once, write y and the three ``[N, T - 1, V]`` statistics.
  Backward: read grad_out, x, key and the statistics once, write dx and dkey.
"""

from __future__ import annotations

import torch

from .. import graphs, reference
from ..ops import spatio_temporal_curve
from ..ops._common import available_backends
from ..reference.spatio_temporal_curve import curve_scale
from .harness import Candidate, Case, register

LENGTH = 4
V = 25
# (N, T) per device and the channel counts: the targets (NTU, 64 frames).
SHAPES = {"cuda": (64, 64), "cpu": (8, 64)}
CHANNELS = (64, 128, 256)
DTYPES = {"cuda": [torch.float32, torch.bfloat16], "cpu": [torch.float32]}


def floors(n: int, c: int, t: int, v: int, d: int, length: int, candidates: int, elem: int) -> dict:
    """Fewest FLOPs and bytes the op must do / move (see the module docstring);
    ``candidates``: the candidate pairs (v, w) over all rows."""
    transitions = n * (t - 1)
    terms = n * v * sum(min(length, t - 1 - f) + 1 for f in range(t))
    scores = 2 * transitions * candidates * d
    aggregate = 2 * terms * c
    steps = 2 * (terms - n * t * v) * c
    features = n * c * t * v * elem
    keys = n * d * t * v * elem
    stats = transitions * v * 4 * 3
    return {
        "flops_fwd": scores + aggregate,
        "flops_fwdbwd": scores + aggregate + aggregate + steps + 2 * scores,
        "bytes_fwd": features + keys + features + stats,
        # + backward: grad_out, x, key, statistics in; dx, dkey out
        "bytes_fwdbwd": (2 * features + keys + stats) + (2 * features + keys + stats)
        + features + keys,
    }  # fmt: skip


@register("spatio_temporal_curve")
def cases(device: str) -> list[Case]:
    kind = "cuda" if device.startswith("cuda") else "cpu"
    n, t = SHAPES[kind]
    one_hop = (graphs.hop_distance("ntu_stgcn") <= 1).to(device)
    masks = {"1-hop": one_hop, "all joints": None}
    out = []
    for c in CHANNELS:
        d = c // 4
        scale = curve_scale(d, None)
        for name, mask in masks.items():
            candidates = V * V if mask is None else int(mask.sum())
            for dtype in DTYPES[kind]:

                def make_inputs(c=c, d=d, dtype=dtype):
                    def leaf(*shape):
                        return torch.randn(*shape, device=device).to(dtype).requires_grad_()

                    return [leaf(n, c, t, V), leaf(n, d, t, V)]

                subjects = [
                    Candidate(f"skelops[{b}]", _backend(b, mask), "subject")
                    for b in available_backends("spatio_temporal_curve", torch.device(device))
                    if b != "reference"
                ]
                composition = _reference(mask, scale)
                compiled = torch.compile(composition, dynamic=False)
                out.append(
                    Case(
                        op="spatio_temporal_curve",
                        shape=f"N{n} C{c} T{t} V{V} D{d} L{LENGTH} {name}",
                        dtype=dtype,
                        device=device,
                        make_inputs=make_inputs,
                        candidates=[
                            *subjects,
                            Candidate(
                                "reference (einsum+softmax+gathers)", composition, "reference"
                            ),
                            Candidate("torch.compile(reference)", compiled, "alternative"),
                        ],
                        note=(
                            f"candidates: {name} of the NTU graph ({candidates} pairs); key: a "
                            f"separate [N, C/4, T, V] embedding; length {LENGTH}"
                        ),
                        **floors(n, c, t, V, d, LENGTH, candidates, torch.finfo(dtype).bits // 8),
                    )
                )
    return out


def _backend(name: str, mask: torch.Tensor | None):
    def run(x, key):
        return spatio_temporal_curve(x, LENGTH, key, mask, backend=name)

    return run


def _reference(mask: torch.Tensor | None, scale: float):
    def run(x, key):
        return reference.spatio_temporal_curve(x, LENGTH, key, mask, scale)

    return run
