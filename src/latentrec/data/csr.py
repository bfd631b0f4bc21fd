"""Rows of (row, column) pairs grouped by row (compressed sparse rows), and duplicate pairs in them.

Counting sorts compiled with numba: no int64 argsort of the whole column, so grouping 100M pairs
needs the output (4 bytes a pair) and nothing else of that size.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from latentrec.parallel import thread_safe

SLICE = 1 << 23


def bincount(index: np.ndarray, n: int, weights=None) -> np.ndarray:
    """``np.bincount(index, weights, minlength=n)`` a slice at a time: numpy would first copy a whole int32
    column to int64 (800 MB for 100M rows). ``weights(s)``, if given, returns the weights of slice ``s``."""
    out = np.zeros(n, np.float64 if weights else np.int64)
    for a in range(0, len(index), SLICE):
        s = slice(a, a + SLICE)
        out += np.bincount(index[s], None if weights is None else weights(s), minlength=n)
    return out


@njit(cache=True)
def _fill(rows, cols, pos, out):
    for n in range(len(rows)):
        r = rows[n]
        out[pos[r]] = cols[n]
        pos[r] += 1


@njit(cache=True)
def _fill_range(rows, cols, values, lo, hi, pos, out, out_values):
    for n in range(len(rows)):
        r = rows[n]
        if lo <= r < hi:
            at = pos[r - lo]
            out[at] = cols[n]
            out_values[at] = values[n]
            pos[r - lo] = at + 1


def group(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, lo: int, hi: int,
          counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(indptr, cols, values)`` of the pairs of rows ``lo..hi-1`` grouped by row, in input order within a
    row; ``counts`` holds every row's number of pairs."""
    indptr = np.zeros(hi - lo + 1, np.int64)
    np.cumsum(counts[lo:hi], out=indptr[1:])
    out, out_values = np.empty(indptr[-1], cols.dtype), np.empty(indptr[-1], values.dtype)
    _fill_range(rows, cols, values, lo, hi, indptr[:-1].copy(), out, out_values)
    return indptr, out, out_values


@thread_safe
@njit(parallel=True, cache=True)
def _sort_rows(indptr, cols):
    for r in prange(len(indptr) - 1):
        cols[indptr[r]:indptr[r + 1]] = np.sort(cols[indptr[r]:indptr[r + 1]])


@thread_safe
@njit(parallel=True, cache=True)
def _sort_rows_with(indptr, cols, values):
    for r in prange(len(indptr) - 1):
        a, b = indptr[r], indptr[r + 1]
        order = np.argsort(cols[a:b])
        cols[a:b] = cols[a:b][order]
        values[a:b] = values[a:b][order]


def by_row(rows: np.ndarray, cols: np.ndarray, n_rows: int, values: np.ndarray | None = None):
    """``(indptr, cols)``: the columns of row ``r`` are ``cols[indptr[r]:indptr[r + 1]]``, in ascending order.
    With ``values`` (one per pair), ``(indptr, cols, values)``: the values in the same order."""
    counts = bincount(rows, n_rows)
    if values is None:
        indptr = np.zeros(n_rows + 1, np.int64)
        np.cumsum(counts, out=indptr[1:])
        out = np.empty(len(cols), cols.dtype)
        _fill(rows, cols, indptr[:-1].copy(), out)
        _sort_rows(indptr, out)
        return indptr, out
    indptr, out, out_values = group(rows, cols, values, 0, n_rows, counts)
    _sort_rows_with(indptr, out, out_values)
    return indptr, out, out_values


@thread_safe
@njit(parallel=True, cache=True)
def _merge(ia, ca, va, ib, cb, vb, indptr, out, out_values, with_values):
    for r in prange(len(indptr) - 1):
        i, j, o, ea, eb = ia[r], ib[r], indptr[r], ia[r + 1], ib[r + 1]
        while i < ea or j < eb:
            if j >= eb or (i < ea and ca[i] <= cb[j]):
                out[o] = ca[i]
                if with_values:
                    out_values[o] = va[i]
                i += 1
            else:
                out[o] = cb[j]
                if with_values:
                    out_values[o] = vb[j]
                j += 1
            o += 1


def merge(a: tuple, b: tuple) -> tuple:
    """Two :func:`by_row` results over the same rows, ``(indptr, cols[, values])`` each, as one (rows' columns
    kept in ascending order); no pair list of the whole is built."""
    indptr = a[0] + b[0]
    out = np.empty(int(indptr[-1]), a[1].dtype)
    with_values = len(a) == 3
    out_values = np.empty(len(out) if with_values else 0, a[2].dtype if with_values else np.float32)
    empty = np.empty(0, out_values.dtype)
    _merge(a[0], a[1], a[2] if with_values else empty, b[0], b[1], b[2] if with_values else empty, indptr, out,
           out_values, with_values)
    return (indptr, out, out_values) if with_values else (indptr, out)


@thread_safe
@njit(parallel=True, cache=True)
def _any_repeat(indptr, cols):
    found = 0
    for r in prange(len(indptr) - 1):
        for j in range(indptr[r] + 1, indptr[r + 1]):
            if cols[j] == cols[j - 1]:
                found += 1
                break
    return found > 0


@njit(cache=True)
def _first_repeated(rows, cols, indptr, sorted_cols):
    for n in range(len(rows)):
        seg = sorted_cols[indptr[rows[n]]:indptr[rows[n] + 1]]
        j = np.searchsorted(seg, cols[n])
        if j + 1 < len(seg) and seg[j + 1] == cols[n]:
            return n
    return -1


def first_duplicate(rows: np.ndarray, cols: np.ndarray, indptr: np.ndarray, sorted_cols: np.ndarray) -> int:
    """Position of the first pair (in input order) that occurs more than once, or -1; ``indptr``/``sorted_cols``
    come from :func:`by_row` on the same pairs."""
    if not _any_repeat(indptr, sorted_cols):
        return -1
    return int(_first_repeated(rows, cols, indptr, sorted_cols))


@njit(cache=True)
def _held_in(rows, cols, indptr, sorted_cols, out):
    for n in range(len(rows)):
        seg = sorted_cols[indptr[rows[n]]:indptr[rows[n] + 1]]
        j = np.searchsorted(seg, cols[n])
        out[n] = j < len(seg) and seg[j] == cols[n]


def held_in(rows: np.ndarray, cols: np.ndarray, indptr: np.ndarray, sorted_cols: np.ndarray) -> np.ndarray:
    """Which of the pairs ``(rows[n], cols[n])`` the grouped pairs ``indptr``/``sorted_cols`` hold (a bool mask)."""
    out = np.zeros(len(rows), np.bool_)
    _held_in(rows, cols, indptr, sorted_cols, out)
    return out
