"""Deterministic kernels while a solver trains, so that a seeded run repeats bit for bit on one device.

On CUDA ``index_add_`` (and the backward of embedding lookups) otherwise sums a row's updates with
atomics in whatever order the threads arrive, and on the CPU ``index_put_(accumulate=True)`` splits
the sum across threads; both differ between runs in the last bits.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

# cuBLAS repeats its matrix products only with a fixed workspace; read when CUDA starts, harmless elsewhere
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


@contextmanager
def deterministic(on: bool = True) -> Iterator[None]:
    """Run the block with ``torch.use_deterministic_algorithms`` on (warning, not failing, where an op has
    no deterministic kernel), then restore the caller's setting; ``on=False`` leaves it as it is."""
    if not on:
        yield
        return
    before = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
