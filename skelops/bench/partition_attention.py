"""partition_attention benchmark cases: skelops backends vs SkateFormer's eager Skate-MSA and
FlexAttention.

Shapes are SkateFormer's NTU RGB+D training configuration (KAIST-VICLab/SkateFormer
``config/train/ntu_cs/SkateFormer_j.yaml``): batch 128, V = 48 (24 joints x 2 persons), 4 heads
per Skate-Type (``num_heads = 32`` split over 4 types and the conv/attention halves), and per
stage T = 64 / 32 / 16 / 8 frames with head dim 3 (stage 1, C = 96: each type gets
3C/8 = 36 = 3 H D projection channels) or 6 (stages 2-4, C = 192). Partition sizes (W, J) are
(8, 8) for types 1 and 3 (bias ``[15, 4]``) and (8, 12) for types 2 and 4 (bias
``[15, 12, 12, 4]``); every type runs at every stage except at T = 8, where one window spans
the clip and types 3 and 4 are the partitions of types 1 and 2. One more case runs stage 1,
type 1 with the model's ``attn_drop = 0.5``. The score scale is SkateFormer's
``num_heads ** -0.5``.

Every device runs batch 128, the official one (the case names carry it): on the 2-core CPU one
eager forward+backward of the largest case takes a few seconds, so the CPU rows use few rounds.

Inputs: q, k and v are the three slices of one channels-last projection
``[B, T, V, 3 H D]`` (requiring grad) viewed as ``[B, H, T, V, D]``: the layout the model's
``mapping`` Linear writes, before the official code copies it channels-first. The bias table
requires grad.

Candidates:

- every skelops backend for the device (``subject``);
- the official-style eager composition (``reference``): partition q, k and v with
  view/permute/contiguous as ``type_<n>_partition`` does, ``(q * scale) @ k^T``, the gathered
  relative-position bias, softmax, dropout, ``@ v``, and the reverse permute (see
  :class:`EagerSkateMSA`);
- FlexAttention compiled with ``torch.compile`` (``alternative``, dropout-free cases only): the
  T V tokens in their original order, a block mask of "same partition" and a score_mod adding
  the bias (see :class:`FlexSkateMSA`). torch 2.13 has no FlexAttention backward on the CPU, so
  there its row records that error.

Every candidate's first call (the harness's untimed one) also compares its output with the
op's definition (:func:`skelops.reference.partition_attention`) on the same full-size inputs,
so a candidate that computes another function fails instead of being timed. With dropout the
masks differ by design (torch's generator vs the op's counter hash), so that case checks the
same candidate with dropout off.

Floors (:func:`floors`), with Q = B H T V queries and N = W J keys per query:

- FLOPs: forward ``4 Q N D`` (``Q K^T`` and ``P V``, ``2 N D`` each per query); the backward
  recomputes the scores and forms dV, dP, dQ and dK, five products of the same size, ``10 Q N D``.
- Bytes: forward reads q, k, v and writes out and the fp32 log-sum-exp; the backward reads
  grad_out, q, k, v, out and the log-sum-exp and writes dq, dk, dv (the bias and its gradient
  once each way).
- Exponentials (not in the floor, recorded in the note): ``Q N`` forward, ``2 Q N`` forward +
  backward (the backward recomputes the probabilities). With D = 3 or 6 there are only 12 or 24
  FLOPs per exponential, so on the CPU the exponentials rather than the FLOPs can set the pace.

The eager composition materialises ``[B, P, G, H, N, N]`` scores (and probabilities, kept for
its backward): the peak memory the fused op avoids.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import reference
from ..graphs import skate_type_partitions
from ..ops import partition_attention
from ..ops._common import available_backends
from .harness import Candidate, Case, register

HEADS = 4
JOINTS = 48
SCALE = HEADS**-0.5
# (frames, head dim) of SkateFormer's four stages on 64-frame clips.
STAGES = ((64, 3), (32, 6), (16, 6), (8, 6))
SKATE_TYPE_SIZES = {1: (8, 8), 2: (8, 12), 3: (8, 8), 4: (8, 12)}
ATTN_DROP = 0.5
BATCH = {"cuda": 128, "cpu": 128}
# Stages also run in bf16 (besides fp32): on the GPU stage 1 only, the stage that takes the most
# time and memory in the model, enough to show how the kernels scale with the element size.
BF16_FRAMES = {"cuda": (64,), "cpu": ()}
# (rtol, atol) of the comparison with the fp32 definition: bf16 scores and probabilities are
# rounded to 8 bits of mantissa, and the largest of millions of outputs is compared.
TOLERANCE = {torch.float32: (2e-4, 2e-4), torch.bfloat16: (5e-2, 1e-1)}
# Wider than the official initialisation (std 0.02): a bias entry gathered from the wrong offset
# then moves the output well beyond the comparison's tolerance.
BIAS_STD = 0.5


@dataclasses.dataclass(frozen=True)
class Problem:
    """One attention call of one Skate-Type in one stage."""

    batch: int
    frames: int
    head_dim: int
    skate_type: int
    dtype: torch.dtype
    device: str
    dropout_p: float = 0.0

    @property
    def window(self) -> int:
        return SKATE_TYPE_SIZES[self.skate_type][0]

    @property
    def group(self) -> int:
        return SKATE_TYPE_SIZES[self.skate_type][1]

    @property
    def local_frames(self) -> bool:
        return self.skate_type in (1, 2)

    @property
    def neighbour_joints(self) -> bool:
        return self.skate_type in (1, 3)

    @property
    def bias_shape(self) -> tuple[int, ...]:
        offsets = 2 * self.window - 1
        if self.neighbour_joints:
            return (offsets, HEADS)
        return (offsets, self.group, self.group, HEADS)

    def partitions(self) -> tuple[Tensor, Tensor]:
        return skate_type_partitions(
            self.skate_type, self.frames, JOINTS, (self.window, self.group), self.device
        )

    def make_inputs(self) -> list[Tensor]:
        """q, k, v (views of one projection requiring grad) and the bias table."""
        b, t, d = self.batch, self.frames, self.head_dim
        projection = torch.randn(b, t, JOINTS, 3 * HEADS * d, device=self.device)
        projection = projection.to(self.dtype).requires_grad_()
        q, k, v = projection.view(b, t, JOINTS, 3, HEADS, d).permute(3, 0, 4, 1, 2, 5).unbind(0)
        bias = BIAS_STD * torch.randn(self.bias_shape, device=self.device)
        return [q, k, v, bias.to(self.dtype).requires_grad_()]


def floors(
    batch: int, frames: int, joints: int, heads: int, head_dim: int, keys: int, elem: int, bias: int
) -> dict:
    """Fewest FLOPs and bytes the op must do / move (see the module docstring); ``keys``: N,
    ``bias``: entries of the bias table."""
    queries = batch * heads * frames * joints
    pass_flops = 4 * queries * keys * head_dim
    tensor = queries * head_dim * elem
    lse = queries * 4
    table = bias * elem
    forward_bytes = 3 * tensor + tensor + lse + table
    return {
        "flops_fwd": pass_flops,
        "flops_fwdbwd": pass_flops + 2.5 * pass_flops,
        "bytes_fwd": forward_bytes,
        # + backward: grad_out, q, k, v, out, lse, bias in; dq, dk, dv, dbias out
        "bytes_fwdbwd": forward_bytes + (5 * tensor + lse + table) + (3 * tensor + table),
    }


class EagerSkateMSA:
    """SkateFormer's Skate-MSA as its official code composes it, on ``[B, H, T, V, D]`` heads.

    ``type_<n>_partition`` splits T as (windows, W) for local frames or (W, windows) for global
    ones, V as (groups, J) for neighbouring joints or (J, groups) for distant ones, and permutes
    the partitions into the batch with a contiguous copy; ``type_<n>_reverse`` copies them back.
    In between, ``MultiHeadSelfAttention`` runs dense ``N x N`` attention per partition. The
    output goes back with one copy where the official code makes two (``transpose(1, 2)
    .reshape`` to channels, then the reverse permute), so if anything this baseline is a little
    faster than the official code.

    The bias is gathered as ``_get_relative_positional_bias`` does, with one deliberate
    difference for types 1 and 3: the official code repeats the ``[W, W, H]`` frame-offset bias
    with ``repeat(1, J, 1, J, 1, 1)``, which tiles the frame position as the *minor* index of a
    token while its partitions order tokens frame-major (``n = a J + i``), so token ``n`` gets
    the offset of frame ``n mod W``. This composition expands instead, giving token ``n`` the
    offset of its own frame ``n // J``: the function ``skelops.partition_attention`` computes.
    """

    def __init__(self, problem: Problem) -> None:
        w, j = problem.window, problem.group
        windows, groups = problem.frames // w, JOINTS // j
        # dims of x.view(B, H, *frame_split, *joint_split, D): 2, 3 split T and 4, 5 split V
        self.frame_split = (windows, w) if problem.local_frames else (w, windows)
        self.joint_split = (groups, j) if problem.neighbour_joints else (j, groups)
        window_dim, position_dim = (2, 3) if problem.local_frames else (3, 2)
        group_dim, member_dim = (4, 5) if problem.neighbour_joints else (5, 4)
        self.to_partitions = (0, window_dim, group_dim, 1, position_dim, member_dim, 6)
        self.from_partitions = tuple(self.to_partitions.index(d) for d in range(7))
        self.window, self.group, self.dropout_p = w, j, problem.dropout_p
        positions = torch.arange(w, device=problem.device)
        self.offset_index = (positions[:, None] - positions[None, :] + w - 1).flatten()

    def partition(self, x: Tensor) -> Tensor:
        b, h, _, _, d = x.shape
        blocks = x.view(b, h, *self.frame_split, *self.joint_split, d)
        blocks = blocks.permute(self.to_partitions).contiguous()  # [B, P, G, H, W, J, D]
        return blocks.view(-1, h, self.window * self.group, d)

    def reverse(self, blocks: Tensor, like: Tensor) -> Tensor:
        b, h, t, v, d = like.shape
        windows, groups = t // self.window, v // self.group
        split = blocks.view(b, windows, groups, h, self.window, self.group, d)
        return split.permute(self.from_partitions).reshape(b, h, t, v, d)

    def bias_matrix(self, bias: Tensor) -> Tensor:
        """``[H, N, N]`` bias of the token pairs of a partition (tokens ordered ``a J + i``)."""
        w, j, heads = self.window, self.group, bias.shape[-1]
        gathered = bias[self.offset_index]
        if bias.dim() == 2:
            table = gathered.view(w, 1, w, 1, heads).expand(w, j, w, j, heads)
        else:
            table = gathered.view(w, w, j, j, heads).permute(0, 2, 1, 3, 4)
        n = w * j
        return table.reshape(n, n, heads).permute(2, 0, 1).contiguous()

    def __call__(self, q: Tensor, k: Tensor, v: Tensor, bias: Tensor) -> Tensor:
        qp, kp, vp = (self.partition(x) for x in (q, k, v))
        attn = (qp * SCALE) @ kp.transpose(-2, -1)
        attn = (attn + self.bias_matrix(bias)).softmax(dim=-1)
        if self.dropout_p > 0:
            attn = F.dropout(attn, self.dropout_p)
        return self.reverse(attn @ vp, q)


class FlexSkateMSA:
    """The same attention with FlexAttention on the ``T V`` tokens in their original order.

    ``q, k, v [B, H, T, V, D]`` are viewed (no copy) as ``[B, H, T V, D]``; the block mask
    allows the token pairs of one partition and a score_mod adds the bias, looked up by the
    frame offset (and joint positions) of the pair. Tokens of a partition are not contiguous
    in this order (a window's frames are a stride apart for global types, a group's joints for
    distant ones), so the default 128 x 128 blocks cover many more pairs than the partitions
    hold: what a user gets from FlexAttention without reordering tokens.
    """

    def __init__(self, problem: Problem, joint_partition: Tensor, frame_partition: Tensor) -> None:
        self.device, self.window = problem.device, problem.window
        self.tokens = problem.frames * JOINTS
        window_of, frame_position = _positions(frame_partition, problem.frames)
        group_of, joint_position = _positions(joint_partition, JOINTS)
        groups = joint_partition.shape[0]
        # per token t V + u: its partition, and its positions inside the window and the group
        self.token_partition = (window_of[:, None] * groups + group_of[None, :]).flatten()
        self.token_frame = frame_position[:, None].expand(-1, JOINTS).flatten()
        self.token_joint = joint_position[None, :].expand(problem.frames, -1).flatten()
        self.block_mask = None
        from torch.nn.attention.flex_attention import flex_attention

        self.attend = torch.compile(flex_attention, dynamic=False)

    def setup(self) -> None:
        from torch.nn.attention.flex_attention import create_block_mask

        partition = self.token_partition

        def same_partition(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
            return partition[q_idx] == partition[kv_idx]

        self.block_mask = create_block_mask(
            same_partition, None, None, self.tokens, self.tokens, device=self.device
        )

    def __call__(self, q: Tensor, k: Tensor, v: Tensor, bias: Tensor) -> Tensor:
        frame, joint, offset = self.token_frame, self.token_joint, self.window - 1

        if bias.dim() == 2:

            def add_bias(
                score: Tensor, b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor
            ) -> Tensor:
                return score + bias[frame[q_idx] - frame[kv_idx] + offset, h]
        else:

            def add_bias(
                score: Tensor, b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor
            ) -> Tensor:
                delta = frame[q_idx] - frame[kv_idx] + offset
                return score + bias[delta, joint[q_idx], joint[kv_idx], h]

        b, h, t, v_joints, d = q.shape
        sequences = (x.reshape(b, h, t * v_joints, d) for x in (q, k, v))
        out = self.attend(*sequences, score_mod=add_bias, block_mask=self.block_mask, scale=SCALE)
        return out.view(b, h, t, v_joints, d)


def _positions(partition: Tensor, total: int) -> tuple[Tensor, Tensor]:
    """For each index of ``range(total)``: its row (window / group) and column (position) in
    ``partition [rows, cols]``."""
    rows, cols = partition.shape
    flat = partition.flatten()
    row_of = torch.empty(total, dtype=torch.int64, device=partition.device)
    column_of = torch.empty_like(row_of)
    row_of[flat] = torch.arange(rows, device=partition.device).repeat_interleave(cols)
    column_of[flat] = torch.arange(cols, device=partition.device).repeat(rows)
    return row_of, column_of


class CheckedOnce:
    """A candidate whose first call also asserts that its output is the op's definition
    (:func:`skelops.reference.partition_attention`, in fp32) on the same inputs.

    ``dropout_free`` is the same candidate with dropout off, which the check runs instead when
    the candidate drops probabilities (its mask cannot match the reference's).
    """

    def __init__(
        self,
        fn: Callable[..., Tensor],
        dropout_free: Callable[..., Tensor] | None,
        problem: Problem,
        joint_partition: Tensor,
        frame_partition: Tensor,
    ) -> None:
        self.fn, self.dropout_free, self.problem = fn, dropout_free, problem
        self.joint_partition, self.frame_partition = joint_partition, frame_partition
        self.checked = False

    def __call__(self, q: Tensor, k: Tensor, v: Tensor, bias: Tensor) -> Tensor:
        out = self.fn(q, k, v, bias)
        if not self.checked:
            with torch.no_grad():
                compared = out if self.dropout_free is None else self.dropout_free(q, k, v, bias)
                expected = reference.partition_attention(
                    *(x.float() for x in (q, k, v)),
                    self.joint_partition,
                    self.frame_partition,
                    bias.float(),
                    SCALE,
                )
            rtol, atol = TOLERANCE[self.problem.dtype]
            torch.testing.assert_close(compared.float(), expected, rtol=rtol, atol=atol)
            self.checked = True
        return out


def _flex_available() -> bool:
    try:
        from torch.nn.attention import flex_attention  # noqa: F401
    except ImportError:
        return False
    return True


def _skelops(
    name: str, joint_partition: Tensor, frame_partition: Tensor, dropout_p: float
) -> Callable[..., Tensor]:
    def run(q: Tensor, k: Tensor, v: Tensor, bias: Tensor) -> Tensor:
        return partition_attention(
            q, k, v, joint_partition, frame_partition, bias, SCALE, dropout_p, backend=name
        )

    return run


def _case(problem: Problem) -> Case:
    joint_partition, frame_partition = problem.partitions()
    p = problem.dropout_p

    def checked(
        fn: Callable[..., Tensor], dropout_free: Callable[..., Tensor] | None = None
    ) -> CheckedOnce:
        return CheckedOnce(fn, dropout_free, problem, joint_partition, frame_partition)

    candidates = [
        Candidate(
            f"skelops[{b}]",
            checked(
                _skelops(b, joint_partition, frame_partition, p),
                _skelops(b, joint_partition, frame_partition, 0.0) if p else None,
            ),
            "subject",
        )
        for b in available_backends("partition_attention", torch.device(problem.device))
        if b != "reference"
    ]
    eager_without_dropout = (
        EagerSkateMSA(dataclasses.replace(problem, dropout_p=0.0)) if p else None
    )
    candidates.append(
        Candidate(
            "official-style eager (permute+matmul+softmax)",
            checked(EagerSkateMSA(problem), eager_without_dropout),
            "reference",
        )
    )
    if p == 0 and _flex_available():
        flex = FlexSkateMSA(problem, joint_partition, frame_partition)
        candidates.append(
            Candidate(
                "FlexAttention (torch.compile)", checked(flex), "alternative", setup=flex.setup
            )
        )
    w, j, b, t, d = problem.window, problem.group, problem.batch, problem.frames, problem.head_dim
    keys = w * j
    queries = b * HEADS * t * JOINTS
    elem = torch.finfo(problem.dtype).bits // 8
    scores_mb = queries * keys * elem / 1e6
    partition_kind = (
        f"{'local' if problem.local_frames else 'global'} frames x "
        f"{'neighbouring' if problem.neighbour_joints else 'distant'} joints"
    )
    return Case(
        op="partition_attention",
        shape=(
            f"B{b} H{HEADS} T{t} V{JOINTS} D{d} (W,J)=({w},{j}) type {problem.skate_type}"
            + (f" attn_drop {p}" if p else "")
        ),
        dtype=problem.dtype,
        device=problem.device,
        make_inputs=problem.make_inputs,
        candidates=candidates,
        note=(
            f"Skate-Type {problem.skate_type} ({partition_kind}), bias {list(problem.bias_shape)}, "
            f"scale H^-0.5, dropout {p}; q/k/v sliced from one [B, T, V, 3HD] projection; "
            f"exponentials {queries * keys / 1e6:.0f}M fwd, {2 * queries * keys / 1e6:.0f}M "
            f"fwd+bwd; eager score matrix {scores_mb:.0f} MB"
        ),
        **floors(b, t, JOINTS, HEADS, d, keys, elem, math.prod(problem.bias_shape)),
        # On the CPU the eager candidate takes seconds per call at batch 128.
        rounds=2 if problem.device == "cpu" else 3,
        warmup_calls=1 if problem.device == "cpu" else 5,
    )


@register("partition_attention")
def cases(device: str) -> list[Case]:
    kind = "cuda" if device.startswith("cuda") else "cpu"
    batch = BATCH[kind]
    out = []
    for frames, head_dim in STAGES:
        # With one window per clip, global and local frame windows are the same partition.
        types = (1, 2) if frames == SKATE_TYPE_SIZES[1][0] else (1, 2, 3, 4)
        dtypes = [torch.float32] + ([torch.bfloat16] if frames in BF16_FRAMES[kind] else [])
        for dtype in dtypes:
            for skate_type in types:
                out.append(_case(Problem(batch, frames, head_dim, skate_type, dtype, device)))
    first_frames, first_head_dim = STAGES[0]
    out.append(
        _case(Problem(batch, first_frames, first_head_dim, 1, torch.float32, device, ATTN_DROP))
    )
    return out
