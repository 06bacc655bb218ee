"""Pieces every skelops operator wrapper uses: argument checks with clear messages, backend
selection, and autocast registration."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import torch

from .. import triton as _triton

BACKENDS = ("auto", "cpu", "cuda", "triton", "reference")

_LIBRARY = torch.library.Library("skelops", "IMPL")  # noqa: TID251  (kept alive for our impls)
_warned: set[str] = set()


def check_tensor(
    name: str,
    value: object,
    ndims: Sequence[int],
    shape_hint: str,
    *,
    floating: bool = True,
) -> torch.Tensor:
    """Raise TypeError/ValueError naming ``name`` unless ``value`` is a tensor of a rank in
    ``ndims`` (and floating point when ``floating``)."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor {shape_hint}, got {type(value).__name__}")
    if value.dim() not in ndims:
        raise ValueError(
            f"{name} must be {shape_hint} ({' or '.join(f'{d}-D' for d in ndims)}), "
            f"got {value.dim()}-D with shape {tuple(value.shape)}"
        )
    if floating and not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
    return value


def check_positive_int(name: str, value: object) -> int:
    """``value`` if it is a positive ``int`` (``bool`` is not); else ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def check_same(name: str, value: torch.Tensor, like_name: str, like: torch.Tensor) -> None:
    """Raise unless ``value`` has ``like``'s dtype and device."""
    if value.device != like.device:
        raise ValueError(
            f"{name} must be on the same device as {like_name} ({like.device}), got {value.device}"
        )
    if value.dtype != like.dtype:
        raise TypeError(
            f"{name} must have the same dtype as {like_name} ({like.dtype}), got {value.dtype}"
        )


def check_dim(name: str, actual: int, expected: int, what: str) -> None:
    if actual != expected:
        raise ValueError(f"{name} must be {expected} ({what}), got {actual}")


def check_features_weight_bias(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
) -> tuple[int, int, int, int, int, int]:
    """The checks every graph convolution makes of x ``[N, C_in, T, V]``, weight
    ``[K, C_out, C_in]`` and bias (``None``, ``[C_out]`` or ``[K, C_out]``), beyond the ranks,
    dtypes and devices; returns ``(N, C_in, T, V, K, C_out)``."""
    n, c_in, t, v = x.shape
    if x.numel() == 0:
        raise ValueError(f"x must be non-empty [N, C_in, T, V], got shape {tuple(x.shape)}")
    k, c_out, w_c_in = weight.shape
    if weight.numel() == 0:
        raise ValueError(f"weight must be non-empty [K, C_out, C_in], got {tuple(weight.shape)}")
    check_dim("weight.shape[2]", w_c_in, c_in, "C_in, x.shape[1]")
    if bias is not None:
        check_tensor("bias", bias, (1, 2), "[C_out] or [K, C_out]")
        check_same("bias", bias, "x", x)
        if tuple(bias.shape) not in ((c_out,), (k, c_out)):
            raise ValueError(
                f"bias must be [C_out]=[{c_out}] or [K, C_out]=[{k}, {c_out}], "
                f"got {tuple(bias.shape)}"
            )
    return n, c_in, t, v, k, c_out


def stats_dtype(dtype: torch.dtype) -> torch.dtype:
    """dtype of the statistics an operator saves for its backward (log-probabilities,
    log-sum-exps) for inputs of ``dtype``: the accumulation dtype, float64 for float64 inputs
    (exact float64 gradients) and float32 otherwise."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def fake_gradients(
    like: torch.Tensor, output_mask: Sequence[bool], shapes: Sequence[torch.Size | None]
) -> tuple[torch.Tensor, ...]:
    """A backward op's outputs for fake tensors: an empty tensor of each asked-for shape, and a
    ``[0]`` tensor where ``output_mask`` is False (or the input, such as a bias, is absent)."""
    return tuple(
        like.new_empty(shape) if wanted and shape is not None else like.new_empty(0)
        for wanted, shape in zip(output_mask, shapes, strict=True)
    )


def save_x_if_needed(ctx, x: torch.Tensor, read_by_backward: bool) -> torch.Tensor | None:
    """What ``setup_context`` saves for x: x itself when the backward reads it (the weight or
    adjacency gradients), else ``None`` with its metadata kept for :func:`saved_x`."""
    ctx.x_meta = None if read_by_backward else (x.shape, x.dtype, x.device)
    return x if read_by_backward else None


def saved_x(ctx, saved: torch.Tensor | None) -> torch.Tensor:
    """x as saved by :func:`save_x_if_needed`, or a zero-stride stand-in of its shape (the
    backward then computes only dX, which does not read it)."""
    if saved is not None:
        return saved
    shape, dtype, device = ctx.x_meta
    return torch.empty((), dtype=dtype, device=device).expand(shape)


def has_compiled_kernel(op: str, device_type: str) -> bool:
    """Whether ``torch.ops.skelops.<op>`` has a compiled kernel for ``device_type``."""
    key = {"cpu": "CPU", "cuda": "CUDA"}[device_type]
    return torch._C._dispatch_has_kernel_for_dispatch_key(f"skelops::{op}", key)


def available_backends(op: str, device: torch.device) -> tuple[str, ...]:
    """Backends that can run ``op`` on tensors of ``device``."""
    return _available_backends(op, device.type)


# A constant for torch.compile: registrations and the Triton setting don't change while running.
@torch.compiler.assume_constant_result
def _available_backends(op: str, device_type: str) -> tuple[str, ...]:
    names = [d for d in ("cpu", "cuda") if d == device_type and has_compiled_kernel(op, d)]
    if _triton.supports_device(torch.device(device_type)) and hasattr(
        torch.ops.skelops, f"{op}_triton"
    ):
        names.append("triton")
    return (*names, "reference")


def resolve_backend(op: str, backend: str, device: torch.device) -> str:
    """Map ``backend`` (one of BACKENDS) to the one that runs for tensors on ``device``.

    ``"auto"`` takes the compiled kernel of the tensors' device, then Triton, then the
    reference (with a one-time warning). A forced backend that cannot run raises ValueError
    naming the available ones.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    available = available_backends(op, device)
    if backend == "auto":
        chosen = available[0]
        if chosen == "reference" and device.type in ("cpu", "cuda") and op not in _warned:
            _warned.add(op)
            warnings.warn(
                f"skelops.{op}: no compiled or Triton kernel for {device.type} tensors in this "
                "build; using the PyTorch reference",
                RuntimeWarning,
                stacklevel=3,
            )
        return chosen
    if backend not in available:
        if backend in ("cpu", "cuda") and device.type != backend:
            reason = f"it needs {backend} tensors, got tensors on {device}"
        elif backend == "triton":
            reason = (
                "triton is not installed, or the tensors are on the CPU without TRITON_INTERPRET=1"
            )
        else:
            reason = f"skelops was built without {backend} kernels (see skelops.build_info())"
        raise ValueError(
            f"skelops.{op}: backend={backend!r} is not available: {reason}; available for "
            f"{device.type} tensors: {list(available)}"
        )
    return backend


def register_autocast(op: str, device_types: Sequence[str] = ("cpu", "cuda")) -> None:
    """Under ``torch.autocast``, run ``torch.ops.skelops.<op>`` in the autocast dtype: every
    floating-point tensor argument is cast to it (the kernels accumulate in fp32)."""
    overload = getattr(torch.ops.skelops, op).default
    for device_type in device_types:
        key = "Autocast" + torch._C._dispatch_key_for_device(device_type)
        keyset = torch._C.DispatchKeySet(getattr(torch._C.DispatchKey, key))

        def kernel(_keyset, *args, _device_type=device_type, _exclude=keyset):
            dtype = torch.get_autocast_dtype(_device_type)

            def cast(value):
                if (
                    isinstance(value, torch.Tensor)
                    and value.is_floating_point()
                    and value.device.type == _device_type
                ):
                    return value.to(dtype)
                return value

            with torch._C._ExcludeDispatchKeyGuard(_exclude):
                return overload(*(cast(a) for a in args))

        _LIBRARY.impl(op, kernel, key, with_keyset=True)


HALF_DTYPES = (torch.float16, torch.bfloat16)


def float32_if_half(value):
    """``value`` as float32 if it is a float16 / bfloat16 tensor, else unchanged."""
    if isinstance(value, torch.Tensor) and value.dtype in HALF_DTYPES:
        return value.float()
    return value


def register_autocast_float32(op: str, device_types: Sequence[str] = ("cpu", "cuda")) -> None:
    """Under ``torch.autocast``, run ``torch.ops.skelops.<op>`` in float32: its float16 /
    bfloat16 tensor arguments on the autocast device are cast up, float64 stays. For operators
    whose precision matters more than their bandwidth (rotation chains, projections)."""
    overload = getattr(torch.ops.skelops, op).default
    for device_type in device_types:
        key = "Autocast" + torch._C._dispatch_key_for_device(device_type)
        keyset = torch._C.DispatchKeySet(getattr(torch._C.DispatchKey, key))

        def kernel(_keyset, *args, _device_type=device_type, _exclude=keyset):
            def cast(value):
                if isinstance(value, torch.Tensor) and value.device.type == _device_type:
                    return float32_if_half(value)
                return value

            with torch._C._ExcludeDispatchKeyGuard(_exclude):
                return overload(*(cast(a) for a in args))

        _LIBRARY.impl(op, kernel, key, with_keyset=True)


def register_autograd(
    op: str,
    backward: Callable,
    setup_context: Callable,
) -> None:
    torch.library.register_autograd(f"skelops::{op}", backward, setup_context=setup_context)


def wanted_gradients(
    grads: Sequence[torch.Tensor], output_mask: Sequence[bool]
) -> tuple[torch.Tensor | None, ...]:
    """A backward op's outputs as autograd wants them: ``None`` where ``output_mask`` is False
    (the op returned an empty placeholder there)."""
    return tuple(g if wanted else None for g, wanted in zip(grads, output_mask, strict=True))


def register_python_parts(
    op: str,
    fake_forward: Callable,
    fake_backward: Callable,
    make_backward: Callable[[Callable], Callable],
    setup_context: Callable,
    autocast: Callable[[str], None] = register_autocast,
) -> None:
    """Fake kernels of ``skelops::<op>`` and ``skelops::<op>_backward``, autograd (the backward
    built by ``make_backward`` around the backward operator) and autocast (``autocast(op)``:
    :func:`register_autocast` by default, :func:`register_autocast_float32` for operators that
    run in float32): what every operator, and every Triton operator of its own, registers from
    Python."""
    torch.library.register_fake(f"skelops::{op}")(fake_forward)
    torch.library.register_fake(f"skelops::{op}_backward")(fake_backward)
    backward_op = getattr(torch.ops.skelops, f"{op}_backward")
    register_autograd(op, make_backward(backward_op), setup_context)
    autocast(op)
