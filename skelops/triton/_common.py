"""What the Triton backends share: interpreter detection (and its numpy >= 2.4 fix), dtype and
device checks, accumulation dtype and ``tl.dot`` precision, block-size arithmetic, the split of
reduction rows over programs, and the ``@triton.jit`` helpers of the graph-convolution kernels.

Importing this module (every kernel module does) installs the interpreter fix.
"""

from __future__ import annotations

import contextlib
from typing import NamedTuple

import torch
import triton
import triton.language as tl

# A [64, 64] adjacency tile next to the x tile and the accumulator already takes most of the
# registers (see graph_conv's note on block sizes); larger graphs loop over 64-joint tiles.
MAX_JOINT_TILE = 64


# --------------------------------------------------------------------------------------------
# Kernel helpers
# --------------------------------------------------------------------------------------------


@triton.jit
def _branch_tile(x_rows, row_ok, col_d, col_v, C, D, V, sx_c, sx_v):
    """X[r, (d, v)]: rows r of branch d (``d * C`` channels past branch 0), source joints v."""
    col_ok = (col_d < D) & (col_v < V)
    return tl.load(
        x_rows[:, None] + (col_d * C * sx_c + col_v * sx_v)[None, :],
        mask=row_ok[:, None] & col_ok[None, :],
        other=0.0,
    )


@triton.jit
def _adjacency_tile(a_base, col_d, col_v, w_idx, D, V, sa_d, sa_v, sa_w):
    """A[(d, v), w]: the adjacency of branch d, source joints v, target joints w."""
    col_ok = (col_d < D) & (col_v < V)
    return tl.load(
        a_base + (col_d * sa_d + col_v * sa_v)[:, None] + w_idx[None, :] * sa_w,
        mask=col_ok[:, None] & (w_idx[None, :] < V),
        other=0.0,
    )


@triton.jit
def aggregate(
    x_rows, row_ok, a_base, w_idx,
    C, V, D,
    sx_c, sx_v, sa_d, sa_v, sa_w,
    BLOCK_ROWS: tl.constexpr, BLOCK_J: tl.constexpr, BLOCK_D: tl.constexpr,
    SINGLE_TILE: tl.constexpr, PRECISION: tl.constexpr, ACC_DTYPE: tl.constexpr,
):  # fmt: skip
    """Z[r, w] = sum_{d < D} sum_{v < V} X_d[r, v] A[d, v, w]: joint aggregation of D branches.

    ``x_rows`` points at the rows ``r`` (``[BLOCK_ROWS]``, e.g. (channel, frame) pairs) of
    branch 0; branch d's rows lie ``d * C`` channels further (``sx_c`` apart), as the
    dilation-major channels of a concatenated output do. ``a_base`` points at ``A[0, 0, 0]`` of
    the subset at hand; ``w_idx`` are the target joints (``[BLOCK_J]``). The columns of one dot
    are ``BLOCK_D`` branches of ``BLOCK_J`` joints, branch-major, so one ``tl.dot`` reduces over
    several branches. ``SINGLE_TILE`` (only if ``D <= BLOCK_D`` and ``V <= BLOCK_J``) drops the
    loops: graph_conv's forward (one branch, one joint tile) then pipelines its outer loop.
    """
    if BLOCK_D == 1:
        # One branch per tile (graph_conv): the columns are joints; the branch offsets are
        # constant zeros, which the compiler folds away.
        dj = tl.arange(0, BLOCK_J)
        dd = tl.zeros([BLOCK_J], dtype=dj.dtype)
    else:
        dv = tl.arange(0, BLOCK_D * BLOCK_J)
        dd = dv // BLOCK_J
        dj = dv % BLOCK_J
    if SINGLE_TILE:
        z = tl.dot(
            _branch_tile(x_rows, row_ok, dd, dj, C, D, V, sx_c, sx_v),
            _adjacency_tile(a_base, dd, dj, w_idx, D, V, sa_d, sa_v, sa_w),
            input_precision=PRECISION,
            out_dtype=ACC_DTYPE,
        )
    else:
        z = tl.zeros([BLOCK_ROWS, BLOCK_J], dtype=ACC_DTYPE)
        for d0 in range(0, D, BLOCK_D):
            for v0 in range(0, V, BLOCK_J):
                z = tl.dot(
                    _branch_tile(x_rows, row_ok, d0 + dd, v0 + dj, C, D, V, sx_c, sx_v),
                    _adjacency_tile(a_base, d0 + dd, v0 + dj, w_idx, D, V, sa_d, sa_v, sa_w),
                    z,
                    input_precision=PRECISION,
                    out_dtype=ACC_DTYPE,
                )
    return z


@triton.jit
def channel_mix(
    w_base, out_idx, cols, col_ok,
    C_out, C_in,
    sw_out, sw_in, sx_c,
    BLOCK_OUT: tl.constexpr, BLOCK_IN: tl.constexpr, BLOCK_COLS: tl.constexpr,
    PRECISION: tl.constexpr, ACC_DTYPE: tl.constexpr,
):  # fmt: skip
    """M[o, q] = sum_{c < C_in} W[o, c] X[c, q] for the output channels ``out_idx``.

    ``w_base + o * sw_out + c * sw_in`` is ``W[o, c]`` (a transposed W is a swap of strides);
    ``cols`` point at the columns ``q`` (``[BLOCK_COLS]``, e.g. (frame, joint) pairs) of
    channel 0 of X, channel c lies ``c * sx_c`` further.
    """
    in_off = tl.arange(0, BLOCK_IN)
    m = tl.zeros([BLOCK_OUT, BLOCK_COLS], dtype=ACC_DTYPE)
    for c0 in range(0, C_in, BLOCK_IN):
        in_idx = c0 + in_off
        w_tile = tl.load(
            w_base + out_idx[:, None] * sw_out + in_idx[None, :] * sw_in,
            mask=(out_idx[:, None] < C_out) & (in_idx[None, :] < C_in),
            other=0.0,
        )
        x_tile = tl.load(
            cols[None, :] + in_idx[:, None] * sx_c,
            mask=(in_idx[:, None] < C_in) & col_ok[None, :],
            other=0.0,
        )
        m = tl.dot(w_tile, x_tile, m, input_precision=PRECISION, out_dtype=ACC_DTYPE)
    return m


# The interpreter replaces @triton.jit functions at decoration time (TRITON_INTERPRET=1 read when
# this module was imported); its programs run on CPU tensors and accept float64.
INTERPRETED = not isinstance(aggregate, triton.runtime.jit.JITFunction)


def _fix_interpreter_scalar_index() -> None:
    """Make the interpreter's scalars usable as loop bounds again under numpy >= 2.4.

    The interpreter (triton <= 3.6) turns a scalar into a Python int with ``int(array)`` on a
    1-element array, which numpy 2.4 rejects, so every ``range`` with a runtime bound fails
    (triton-lang/triton#9171). Re-set ``tensor.__index__`` with ``.item()`` after the
    interpreter's own patching; only ever applied when interpreting.
    """
    from triton.runtime import interpreter

    original = getattr(interpreter, "_patch_lang_tensor", None)
    if original is None or getattr(original, "_skelops_scalar_index", False):
        return

    def patch_lang_tensor(tensor, scope):
        original(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.item()))

    patch_lang_tensor._skelops_scalar_index = True
    interpreter._patch_lang_tensor = patch_lang_tensor


if INTERPRETED:
    _fix_interpreter_scalar_index()


# --------------------------------------------------------------------------------------------
# Host-side helpers
# --------------------------------------------------------------------------------------------


def next_pow2(n: int) -> int:
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


def clamp_pow2(n: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, next_pow2(n)))


def joint_tile(v: int) -> int:
    """Joints per tile: a power of two >= 16 (the smallest tl.dot dimension), at most 64."""
    return min(max(16, next_pow2(v)), MAX_JOINT_TILE)


def joint_warps(block_t: int, block_j: int) -> int:
    """Warps of the graph-convolution kernels, whose tiles are (frame, joint) columns wide."""
    return 8 if block_t * block_j >= 64 else 4


def supported_dtypes() -> tuple[torch.dtype, ...]:
    base = (torch.float32, torch.float16, torch.bfloat16)
    return base + (torch.float64,) if INTERPRETED else base


def acc_dtypes(dtype: torch.dtype) -> tuple[torch.dtype, tl.dtype]:
    if dtype == torch.float64:
        return torch.float64, tl.float64
    return torch.float32, tl.float32


def dot_precision(dtype: torch.dtype) -> str:
    # fp32 follows torch's own matmul policy; 16-bit inputs use tensor cores either way.
    if dtype == torch.float32 and not torch.backends.cuda.matmul.allow_tf32:
        return "ieee"
    if dtype == torch.float64:
        return "ieee"
    return "tf32"


def dot_kwargs(dtype: torch.dtype) -> dict[str, object]:
    """The PRECISION and ACC_DTYPE constexprs of a kernel whose tl.dot follow torch's policy."""
    return {"PRECISION": dot_precision(dtype), "ACC_DTYPE": acc_dtypes(dtype)[1]}


class Blocks(NamedTuple):
    """Block sizes of one launch; every tl.dot dimension they produce is >= 16.

    ``block_d`` is the branches (dilations) per tile of the kernels that have a branch axis;
    None for those without one (sparse_graph_conv's).
    """

    block_o: int
    block_c: int
    block_t: int
    block_j: int
    num_warps: int
    num_stages: int = 1
    block_d: int | None = None

    def launch_kwargs(self) -> dict[str, int]:
        kwargs = {
            "BLOCK_O": self.block_o,
            "BLOCK_C": self.block_c,
            "BLOCK_T": self.block_t,
            "BLOCK_J": self.block_j,
            "num_warps": self.num_warps,
            "num_stages": self.num_stages,
        }
        if self.block_d is not None:
            kwargs["BLOCK_D"] = self.block_d
        return kwargs


def device_guard(device: torch.device) -> contextlib.AbstractContextManager:
    # Triton launches on the current CUDA device, which need not be the tensors' device.
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def interpreter_lacks(dtype: torch.dtype) -> bool:
    """The interpreter (triton <= 3.6) stores bfloat16 as uint16 and its tl.dot multiplies those
    raw integers, so bfloat16 runs there in float32 (cast copies; the interpreter is a test tool).
    On a GPU the kernels run in bfloat16."""
    return INTERPRETED and dtype == torch.bfloat16


def upcast(*tensors: torch.Tensor | None) -> list[torch.Tensor | None]:
    return [None if t is None else t.float() for t in tensors]


def check_tensors(op: str, x: torch.Tensor, **others: torch.Tensor | None) -> None:
    """x has a supported dtype and lives on a CUDA device (any device when interpreting); every
    tensor of ``others`` that is not None has x's dtype and device."""
    if x.dtype not in supported_dtypes():
        names = ", ".join(str(d) for d in supported_dtypes())
        raise TypeError(f"x must have dtype in ({names}); got {x.dtype}")
    for name, t in others.items():
        if t is None:
            continue
        if t.dtype != x.dtype:
            raise TypeError(f"{name} must have the dtype of x ({x.dtype}); got {t.dtype}")
        if t.device != x.device:
            raise ValueError(f"{name} must be on the device of x ({x.device}); got {t.device}")
    if x.device.type != "cuda" and not INTERPRETED:
        raise ValueError(
            f"the Triton {op} kernels need CUDA tensors (or TRITON_INTERPRET=1 set before triton "
            f"is imported); got x on {x.device}"
        )


def split_rows(rows: int, base_programs: int, device: torch.device) -> tuple[int, int]:
    """Split `rows` reduction rows over programs; returns (rows_per_split, num_splits).

    On a GPU: enough splits for about four waves of programs. Under the interpreter programs
    run one after another, so two splits: enough to exercise the atomics.
    """
    if device.type == "cuda" and not INTERPRETED:
        sms = torch.cuda.get_device_properties(device).multi_processor_count
        wanted = triton.cdiv(4 * sms, base_programs)
    else:
        wanted = 2
    wanted = max(1, min(rows, wanted))
    rows_per_split = triton.cdiv(rows, wanted)
    return rows_per_split, triton.cdiv(rows, rows_per_split)
