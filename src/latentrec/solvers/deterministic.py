"""Deterministic kernels while a solver trains, so that a seeded run repeats bit for bit on one device.

On CUDA ``index_add_`` (and the backward of embedding lookups) otherwise sums a row's updates with
atomics in whatever order the threads arrive, and on the CPU ``index_put_(accumulate=True)`` splits
the sum across threads; both differ between runs in the last bits.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def deterministic(on: bool = True) -> Iterator[None]:
    """Run the block with ``torch.use_deterministic_algorithms`` on (warning, not failing, where an op has
    no deterministic kernel), then restore the caller's setting; ``on=False`` leaves it as it is."""
    if not on:
        yield
        return
    before = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    _use_deterministic(True, warn_only=True)
    try:
        yield
    finally:
        _use_deterministic(*before)


def _use_deterministic(mode: bool, warn_only: bool) -> None:
    """``torch.use_deterministic_algorithms`` without what it adds for ``torch.compile``: it imports
    ``torch._inductor`` to set that flag too, 1.7 s on a first call here, and nothing in latentrec compiles (the
    public call where a torch lacks the private one)."""
    getattr(torch._C, "_set_deterministic_algorithms", torch.use_deterministic_algorithms)(mode, warn_only=warn_only)
