"""The fused per-rating SGD epoch for ``DotProductBias`` (Funk/Koren SGD), compiled with numba.

For each rating: predict, take the error, and update the two bias entries and the two factor
rows in place, with weight decay on the touched rows (``grad += wd * param``, the seed's
formula applied where the gradient lives). In the sigmoid variant the error is pushed back
through ``y_range``. The rating matrix is cut into a G x G grid of blocks (LIBMF's trick);
one round processes G blocks that share no user and no item rows, in parallel, so the result
does not depend on thread timing and a seeded run is repeatable.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange


@njit(fastmath=True, nogil=True, cache=True)
def _sgd_block(users, items, ratings, start, end, P, Q, bu, bi, lr, wd, lo, span, sigmoid, bias):
    k = P.shape[1]
    sq = 0.0
    for n in range(start, end):
        u = users[n]
        i = items[n]
        z = bu[u] + bi[i] if bias else np.float32(0.0)
        for f in range(k):
            z += P[u, f] * Q[i, f]
        if sigmoid:
            s = 1.0 / (1.0 + math.exp(-z))
            pred = lo + span * s
            err = pred - ratings[n]
            g = np.float32(err * span * s * (1.0 - s))
        else:
            err = z - ratings[n]
            g = np.float32(err)
        sq += err * err
        if bias:
            bu[u] -= lr * (g + wd * bu[u])
            bi[i] -= lr * (g + wd * bi[i])
        for f in range(k):
            p = P[u, f]
            q = Q[i, f]
            P[u, f] = p - lr * (g * q + wd * p)
            Q[i, f] = q - lr * (g * p + wd * q)
    return sq


@njit(parallel=True, cache=True)
def _sgd_epoch(users, items, ratings, offsets, grid, shifts, P, Q, bu, bi, lr, wd, lo, span, sigmoid, bias):
    sq = np.zeros(grid)
    for s in shifts:
        for b in prange(grid):
            blk = b * grid + (b + s) % grid
            sq[b] += _sgd_block(users, items, ratings, offsets[blk], offsets[blk + 1], P, Q, bu, bi,
                                lr, wd, lo, span, sigmoid, bias)
    return sq.sum()


class BlockedRatings:
    """Ratings reordered into a grid of blocks; within a block the order is a fixed random shuffle."""

    def __init__(self, users: np.ndarray, items: np.ndarray, ratings: np.ndarray, n_users: int, n_items: int,
                 grid: int, rng: np.random.Generator):
        self.grid = grid
        ublock = rng.permutation(n_users).astype(np.int64) % grid
        iblock = rng.permutation(n_items).astype(np.int64) % grid
        perm = rng.permutation(len(ratings))
        block = ublock[users[perm]] * grid + iblock[items[perm]]
        order = perm[np.argsort(block, kind="stable")]
        self.users = np.ascontiguousarray(users[order], dtype=np.int32)
        self.items = np.ascontiguousarray(items[order], dtype=np.int32)
        self.ratings = np.ascontiguousarray(ratings[order], dtype=np.float32)
        counts = np.bincount(block, minlength=grid * grid)
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


def sgd_epoch(data: BlockedRatings, P: np.ndarray, Q: np.ndarray, bu: np.ndarray, bi: np.ndarray, lr: float,
              wd: float, y_range: tuple[float, float] | None, bias: bool, rng: np.random.Generator) -> float:
    """One pass over all ratings, updating the arrays in place; returns the mean squared error seen."""
    shifts = rng.permutation(data.grid).astype(np.int64)
    lo, hi = y_range if y_range is not None else (0.0, 1.0)
    sq = _sgd_epoch(data.users, data.items, data.ratings, data.offsets, data.grid, shifts, P, Q, bu, bi,
                    np.float32(lr), np.float32(wd), np.float32(lo), np.float32(hi - lo), y_range is not None, bias)
    return sq / max(len(data.ratings), 1)
