"""One side's conjugate-gradient steps of an iALS sweep on the CPU, compiled: one pass per row, in cache.

For row ``x`` with rated columns ``j`` and confidences ``1 + a_j`` the system is
``(S + sum_j a_j y_j y_j^T) x = sum_j (1 + a_j) y_j`` with ``S = Y^T Y + reg I`` shared by every row
(``solvers/ials.py``). Each row runs its CG steps alone, in float32 as the torch route does: its rated
``y_j`` are gathered from memory once into a buffer that stays in cache for every step, as does the
``k x k`` ``S`` (a row of more than ``GATHER_MAX`` ratings is read in place instead), and nothing of the
size of the ratings is allocated (the torch route builds a sampled product and a valued copy of the
matrix a step). Rows are independent, so the result does not depend
on the number of threads.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange

from latentrec.data.csr import by_row
from latentrec.parallel import thread_safe

CHUNK = 64  # rows per task of the parallel loop (numba deals the tasks out to its threads in equal blocks)
GATHER_MAX = 4096  # longer rows are read in place: their buffer would leave the cache (1 MB at k=64)


@njit(cache=True)
def _at(rows, j):
    """Where rating ``j``'s ``y`` is: row ``j`` of a gathered buffer (``rows`` None), else ``rows[j]`` in place."""
    if rows is None:
        return j
    return rows[j]


@njit(fastmath=True, cache=True)
def _times(v, shared, ys, rows, a, n, out):
    """``out = S v + sum_j a_j (y_j . v) y_j`` over the row's ``n`` ratings."""
    k = len(v)
    for p in range(k):
        s = np.float32(0.0)
        for q in range(k):
            s += shared[p, q] * v[q]
        out[p] = s
    for j in range(n):
        y = _at(rows, j)
        s = np.float32(0.0)
        for p in range(k):
            s += ys[y, p] * v[p]
        s *= a[j]
        for p in range(k):
            out[p] += s * ys[y, p]


@njit(fastmath=True, cache=True)
def _cg_row(x, shared, ys, rows, a, n, steps, r, p, ap):
    """``steps`` CG steps on one row's system from ``x`` (in place); ``r``, ``p``, ``ap``: work vectors."""
    k = len(x)
    tiny = np.float32(1e-20)
    _times(x, shared, ys, rows, a, n, ap)
    for m in range(k):
        r[m] = -ap[m]
    for j in range(n):
        y, w = _at(rows, j), np.float32(1.0) + a[j]
        for m in range(k):
            r[m] += w * ys[y, m]
    rs = np.float32(0.0)
    for m in range(k):
        p[m] = r[m]
        rs += r[m] * r[m]
    for _ in range(steps):
        if rs < tiny:
            break
        _times(p, shared, ys, rows, a, n, ap)
        pap = np.float32(0.0)
        for m in range(k):
            pap += p[m] * ap[m]
        step = rs / max(pap, tiny)
        rs_new = np.float32(0.0)
        for m in range(k):
            x[m] += step * p[m]
            r[m] -= step * ap[m]
            rs_new += r[m] * r[m]
        for m in range(k):
            p[m] = r[m] + rs_new / rs * p[m]
        rs = rs_new


@thread_safe
@njit(parallel=True, fastmath=True, cache=True)
def _cg_rows(indptr, cols, extra, other, shared, x, steps):
    n_rows = len(indptr) - 1
    k = other.shape[1]
    for task in prange((n_rows + CHUNK - 1) // CHUNK):
        first, last = task * CHUNK, min(n_rows, (task + 1) * CHUNK)
        longest = 0
        for row in range(first, last):
            longest = max(longest, indptr[row + 1] - indptr[row])
        buffer = np.empty((min(longest, GATHER_MAX), k), other.dtype)
        xr, r, p, ap = np.empty(k, np.float32), np.empty(k, np.float32), np.empty(k, np.float32), np.empty(k, np.float32)
        for row in range(first, last):
            lo, n = indptr[row], indptr[row + 1] - indptr[row]
            for m in range(k):
                xr[m] = x[row, m]
            if n <= GATHER_MAX:  # the row's y_j, read from memory once into a buffer that stays in cache
                for j in range(n):
                    col = cols[lo + j]
                    for m in range(k):  # element by element: a row slice would build an array view per rating
                        buffer[j, m] = other[col, m]
                _cg_row(xr, shared, buffer, None, extra[lo:lo + n], n, steps, r, p, ap)
            else:  # a very long row (a hit item): read in place at every step
                _cg_row(xr, shared, other, cols[lo:lo + n], extra[lo:lo + n], n, steps, r, p, ap)
            for m in range(k):
                x[row, m] = xr[m]


class KernelRows:
    """One side's ratings (CPU tensors) grouped by row for :func:`_cg_rows`: 8 bytes a rating (int32 column,
    float32 ``a``), the same interface as ``solvers.ials.ConfidenceRows``."""

    def __init__(self, rows: torch.Tensor, cols: torch.Tensor, extra: torch.Tensor, n_rows: int, n_cols: int):
        self.indptr, self.cols, self.extra = by_row(rows.numpy(), cols.to(torch.int32).numpy(), n_rows,
                                                    extra.to(torch.float32).numpy())

    def cg(self, x: torch.Tensor, other: torch.Tensor, reg: float, steps: int) -> torch.Tensor:
        """``steps`` CG steps on every row's system, starting from ``x`` (float32, updated in place)."""
        shared = other.T @ other  # torch, not numpy: OpenBLAS's threads would spin beside the kernel's
        shared.diagonal().add_(reg)
        _cg_rows(self.indptr, self.cols, self.extra, other.numpy(), shared.numpy(), x.numpy(), steps)
        return x
