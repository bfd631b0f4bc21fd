"""Calling numba's parallel kernels from any Python thread, without touching numba's global settings.

numba picks its threading layer once per process, at the first parallel call, from
``numba.config.THREADING_LAYER`` (the host application's choice, or tbb > omp > workqueue by
what is installed). latentrec never sets it. ``workqueue`` aborts the process when two Python
threads enter parallel code at once, so while that layer is active (or not yet chosen) our
kernels are entered one caller at a time; tbb and omp take concurrent callers as they are.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable)
_entry = threading.Lock()


def thread_safe(kernel: F) -> F:
    """Wrap an ``@njit(parallel=True)`` kernel that Python code calls, so that threads may call it at once."""

    @functools.wraps(kernel)
    def call(*args):
        if _takes_concurrent_callers():
            return kernel(*args)
        with _entry:
            return kernel(*args)

    return call  # type: ignore[return-value]


def _takes_concurrent_callers() -> bool:
    import numba

    try:
        return numba.threading_layer() != "workqueue"
    except ValueError:  # no parallel code has run yet: the first call picks the layer
        return False
