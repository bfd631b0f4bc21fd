"""The per-row work of an ALS or Gibbs sweep on the CPU, fused into one compiled pass over CSR rows.

For every row ``r`` of one side (a user, or an item) with ratings ``(c_j, y_j)``, the features are
the other side's ``f_j = [q_{c_j}, 1]`` and the targets ``t_j = y_j - mu - b_{c_j}``; then

    A = alpha * sum_j f_j f_j^T + prec + max(n_r, 1) * diag(ridge),   b = alpha * sum_j f_j t_j + prec @ m_r,
    mean = A^-1 b,   draw = mean + L^-T z_r   (A = L L^T).

ALS is ``alpha = 1``, ``prec = 0``, ``ridge = [lambda..., lambda_bias]`` and no draw; a Gibbs sweep is ``ridge = 0`` with
the prior precision ``prec``, the prior means ``m`` and the standard normal draws ``z``. The sums are
float64 in a ``d x d`` buffer per thread, so a sweep allocates nothing of the size of the ratings
(the batched torch route in ``rating_graph.py`` builds an ``nnz x d^2`` outer-product table). Rows are
independent, so the result does not depend on the number of threads.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from latentrec.data.csr import group
from latentrec.parallel import thread_safe

CHUNK = 256  # rows per parallel task


def group_rows(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, lo: int, hi: int,
               counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR of the ratings of rows ``lo..hi-1``: ``(indptr, cols, vals)``, in input order within a row.

    ``counts`` holds every row's number of ratings; 8 bytes a rating (int32 column, float32 value).
    """
    return group(rows, cols.astype(np.int32, copy=False), vals.astype(np.float32, copy=False), lo, hi, counts)


@njit(fastmath=True, cache=True)
def _solve_row(a, b, x, d):
    """In place: ``a`` becomes its lower Cholesky factor, ``x`` the solution of ``a x = b``. False if singular."""
    for j in range(d):
        s = a[j, j]
        for m in range(j):
            s -= a[j, m] * a[j, m]
        if not s > 0.0:
            return False
        s = np.sqrt(s)
        a[j, j] = s
        for i in range(j + 1, d):
            t = a[i, j]
            for m in range(j):
                t -= a[i, m] * a[j, m]
            a[i, j] = t / s
    for i in range(d):  # L y = b
        t = b[i]
        for m in range(i):
            t -= a[i, m] * x[m]
        x[i] = t / a[i, i]
    for i in range(d - 1, -1, -1):  # L^T x = y
        t = x[i]
        for m in range(i + 1, d):
            t -= a[m, i] * x[m]
        x[i] = t / a[i, i]
    return True


@thread_safe
@njit(parallel=True, fastmath=True, cache=True)
def _solve_rows(indptr, cols, vals, other, mu, alpha, prec, ridge, prior_mean, z, mean_out, draw_out):
    n = len(indptr) - 1
    d = other.shape[1]
    k = d - 1
    per_row_prior = prior_mean.shape[0] > 1
    for c in prange((n + CHUNK - 1) // CHUNK):
        a = np.empty((d, d))
        b = np.empty(d)
        x = np.empty(d)
        f = np.empty(d)
        for r in range(c * CHUNK, min(n, (c + 1) * CHUNK)):
            a[:, :] = 0.0
            b[:] = 0.0
            f[k] = 1.0
            for j in range(indptr[r], indptr[r + 1]):
                o = other[cols[j]]
                for m in range(k):
                    f[m] = o[m]
                t = vals[j] - mu - o[k]
                for p in range(d):
                    fp = f[p]
                    b[p] += fp * t
                    for q in range(p + 1):
                        a[p, q] += fp * f[q]
            m_r = prior_mean[r if per_row_prior else 0]
            n_r = indptr[r + 1] - indptr[r]
            n_shrink = n_r if n_r > 0 else 1
            for p in range(d):
                s = alpha * b[p]
                for q in range(d):
                    s += prec[p, q] * m_r[q]
                b[p] = s
                for q in range(p):
                    a[p, q] = alpha * a[p, q] + prec[p, q]
                a[p, p] = alpha * a[p, p] + prec[p, p] + ridge[p] * n_shrink
            if not _solve_row(a, b, x, d):
                mean_out[r, :] = np.nan
                draw_out[r, :] = np.nan
                continue
            for p in range(d):
                mean_out[r, p] = x[p]
            if z.shape[0]:
                for i in range(d - 1, -1, -1):  # L^T e = z_r
                    t = z[r, i]
                    for m in range(i + 1, d):
                        t -= a[m, i] * x[m]
                    x[i] = t / a[i, i]
                for p in range(d):
                    draw_out[r, p] = mean_out[r, p] + x[p]


def solve_rows(indptr: np.ndarray, cols: np.ndarray, vals: np.ndarray, other: np.ndarray, mu: float, alpha: float,
               prec: np.ndarray, ridge: float | np.ndarray, prior_mean: np.ndarray, z: np.ndarray | None,
               mean_out: np.ndarray, draw_out: np.ndarray | None) -> None:
    """Fill ``mean_out`` (and, given ``z``, ``draw_out``) for every row of the CSR; a singular row is NaN.

    ``other`` is the other side's ``[factors, bias]`` table; ``prior_mean`` one row or one per row; ``ridge`` one
    value, or one per column (``[factors..., bias]``).
    """
    d = other.shape[1]
    zz = np.zeros((0, d), np.float32) if z is None else z
    out = mean_out if draw_out is None else draw_out
    _solve_rows(indptr, cols, vals, other, np.float64(mu), np.float64(alpha), prec.astype(np.float64),
                       np.broadcast_to(np.asarray(ridge, np.float64), (d,)).copy(), prior_mean.astype(np.float64), zz,
                       mean_out, out)


@thread_safe
@njit(parallel=True, fastmath=True, cache=True)
def _sse(indptr, cols, vals, mine, other, mu):
    n = len(indptr) - 1
    k = other.shape[1] - 1
    total = 0.0
    for r in prange(n):
        s = 0.0
        for j in range(indptr[r], indptr[r + 1]):
            c = cols[j]
            e = vals[j] - mu - mine[r, k] - other[c, k]
            for m in range(k):
                e -= mine[r, m] * other[c, m]
            s += e * e
        total += s
    return total


def sse(indptr: np.ndarray, cols: np.ndarray, vals: np.ndarray, mine: np.ndarray, other: np.ndarray,
        mu: float) -> float:
    """Sum of squared residuals ``y - (mu + b_r + b_c + p_r . q_c)`` over the CSR's ratings (float64)."""
    return float(_sse(indptr, cols, vals, mine, other, np.float64(mu)))
