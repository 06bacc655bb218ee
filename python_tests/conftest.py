"""Test configuration. Without a GPU, Triton kernels run under Triton's CPU interpreter,
which must be switched on before triton is first imported."""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a test module. Model tests run many tiny operators: a second
    thread buys nothing there, and on a loaded 2-core machine its spin-waits made them
    tens of times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
