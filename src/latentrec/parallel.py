"""Calling numba's parallel kernels from any Python thread, without touching numba's global settings.

numba picks its threading layer once per process, at the first parallel call, from
``numba.config.THREADING_LAYER`` (the host application's choice, or tbb > omp > workqueue by
what is installed). latentrec never sets it. ``workqueue`` aborts the process when two Python
threads enter parallel code at once, so while that layer is active (or not yet chosen) our
kernels are entered one caller at a time; tbb and omp take concurrent callers as they are.
"""

from __future__ import annotations

import functools
import sys
import threading
from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable)
_entry = threading.Lock()
_started = False  # whether a parallel kernel has been called (and the threading layer started)


def thread_safe(kernel: F) -> F:
    """Wrap an ``@njit(parallel=True)`` kernel that Python code calls, so that threads may call it at once."""

    @functools.wraps(kernel)
    def call(*args):
        if _takes_concurrent_callers():
            return kernel(*args)
        with _entry:
            if _started:
                return kernel(*args)
            return _first_call(kernel, args)

    return call  # type: ignore[return-value]


def limit_threads(n: int) -> None:
    """At most ``n`` threads in torch's and numba's parallel work (``bench --threads``; serve's workers sharing the
    cores)."""
    import numba
    import torch

    torch.set_num_threads(n)
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))


def numba_threads() -> int:
    """numba's thread count, starting its threading layer as :func:`_first_call` does."""
    import numba

    if _started:  # no lock: a kernel of another thread may hold it for a whole epoch
        return numba.get_num_threads()
    with _entry:
        return numba.get_num_threads() if _started else _first_call(numba.get_num_threads, ())


def _first_call(start: Callable, args: tuple):
    """``start(*args)`` when it is the process's first parallel call or thread-count question, which starts
    numba's threading layer: the omp layer then sets OpenMP's thread count, which torch shares, so the
    host's ``torch.set_num_threads`` is put back."""
    global _started
    torch = sys.modules.get("torch")
    threads = torch.get_num_threads() if torch else None
    try:
        return start(*args)
    finally:
        _started = True
        if torch and torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


def _takes_concurrent_callers() -> bool:
    import numba

    try:
        return numba.threading_layer() != "workqueue"
    except ValueError:  # no parallel code has run yet: the first call picks the layer
        return False
