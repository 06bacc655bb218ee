"""Loads the compiled extension ``skelops._C`` and fails loudly when it cannot be used."""

from __future__ import annotations

import importlib
from typing import Any

import torch

_FIX = (
    "Rebuild skelops against the torch installed now, without build isolation:\n"
    "    python -m pip install --no-build-isolation --force-reinstall --no-deps -e .\n"
    "(or run `make test`, which does this in .venv)."
)


def load_extension() -> Any:
    """Import ``skelops._C`` (registering ``torch.ops.skelops``) or raise ImportError.

    The error names the reason (missing module, unresolved symbols from another torch build,
    or a recorded torch version that differs from the running one) and the fix.
    """
    try:
        ext = importlib.import_module("skelops._C")
    except ImportError as err:  # includes undefined-symbol errors from a foreign libtorch
        missing = isinstance(err, ModuleNotFoundError) and err.name == "skelops._C"
        reason = (
            "the compiled extension skelops._C is missing (skelops was not built or installed)"
            if missing
            else f"skelops._C failed to load ({err}); it was probably built against another torch"
        )
        raise ImportError(f"skelops: {reason}.\n{_FIX}") from err
    built = ext.build_info()["torch_version"]
    if built != torch.__version__:
        raise ImportError(
            f"skelops: skelops._C was built against torch {built}, but torch {torch.__version__} "
            f"is running; C++ operators are tied to one torch build.\n{_FIX}"
        )
    return ext
