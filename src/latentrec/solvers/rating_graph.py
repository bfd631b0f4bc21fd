"""The training ratings grouped by user and by item, and the per-row solves of ALS and Gibbs sweeps.

Every row of one side (a user, or an item) has a ``d``-dimensional Gaussian or ridge problem given
the other side's ``[factors, bias]`` rows (see ``rows_kernel.py`` for the formula). On the CPU a
side's ratings are kept as CSR (8 bytes a rating) and solved by the compiled kernel; on other
devices they are an incidence matrix, and the normal equations are one sparse product and one
batched Cholesky (torch). Under ``torchrun`` each rank solves a contiguous range of rows holding
about ``1/N`` of the ratings and the ranges are joined with ``all_gather``.
"""

from __future__ import annotations

import numpy as np
import torch

from latentrec.data.batches import Encoded
from latentrec.data.csr import bincount
from latentrec.errors import ConfigError


class Partition:
    """This process's share of the rows under ``torchrun`` (rank ``rank`` of ``size``); the whole outside it."""

    def __init__(self, rank: int = 0, size: int = 1):
        self.rank, self.size = rank, size

    def bounds(self, counts: np.ndarray) -> np.ndarray:
        """``size + 1`` row boundaries: contiguous ranges with about equal numbers of ratings."""
        if self.size == 1:
            return np.array([0, len(counts)])
        cum = np.cumsum(counts)
        cuts = np.searchsorted(cum, cum[-1] * np.arange(1, self.size) / self.size)
        return np.concatenate([[0], cuts, [len(counts)]])

    def gather(self, part: torch.Tensor, bounds: np.ndarray) -> torch.Tensor:
        """Every rank's rows of a table, joined in order (``part`` is this rank's)."""
        if self.size == 1:
            return part
        import torch.distributed as dist

        widest = int(np.diff(bounds).max())
        padded = torch.zeros(widest, *part.shape[1:], dtype=part.dtype, device=part.device)
        padded[:len(part)] = part
        parts = [torch.empty_like(padded) for _ in range(self.size)]
        dist.all_gather(parts, padded)
        return torch.cat([p[:hi - lo] for p, lo, hi in zip(parts, bounds[:-1], bounds[1:])])

    def total(self, value: float, device: torch.device) -> float:
        """The sum of ``value`` over the ranks."""
        if self.size == 1:
            return value
        import torch.distributed as dist

        t = torch.tensor([value], dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return float(t)


class Side:
    """The ratings of rows ``lo..hi-1`` of one side, grouped by row, and their solves."""

    def __init__(self, rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, counts: np.ndarray, lo: int, hi: int,
                 n_cols: int, device: torch.device, compiled: bool):
        self.lo, self.hi, self.device, self.compiled = lo, hi, device, compiled
        if compiled:
            from latentrec.solvers.rows_kernel import group_rows

            self.indptr, self.cols, self.vals = group_rows(rows, cols, vals, lo, hi, counts)
            return
        self.counts = torch.as_tensor(counts[lo:hi], dtype=torch.float32, device=device)
        keep = (rows >= lo) & (rows < hi) if (lo, hi) != (0, len(counts)) else slice(None)
        self.rows = torch.as_tensor(rows[keep] - lo, device=device).long()
        self.cols = torch.as_tensor(cols[keep], device=device).long()
        self.vals = torch.as_tensor(vals[keep], dtype=torch.float32, device=device)
        self.incidence = _Incidence(self.rows, self.cols, hi - lo, n_cols)

    def solve(self, other: torch.Tensor, mu: float, alpha: float, prec: torch.Tensor, ridge: float | np.ndarray,
              prior_mean: torch.Tensor, z: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The conditional means (and draws, given standard normal ``z``) of this range's rows; NaN rows if singular."""
        if self.compiled:
            from latentrec.solvers.rows_kernel import solve_rows

            n, d = self.hi - self.lo, other.shape[1]
            mean = np.empty((n, d), np.float32)
            draw = None if z is None else np.empty((n, d), np.float32)
            solve_rows(self.indptr, self.cols, self.vals, other.numpy(), mu, alpha, prec.numpy(), ridge,
                       prior_mean.numpy(), None if z is None else z.numpy(), mean, draw)
            return torch.from_numpy(mean), None if draw is None else torch.from_numpy(draw)
        target = self.vals - mu - other[self.cols, -1]
        feats = torch.cat([other[:, :-1], torch.ones(len(other), 1, device=other.device)], 1)
        d = feats.shape[1]
        outer = (feats[:, :, None] * feats[:, None, :]).reshape(len(feats), d * d)
        a = alpha * self.incidence.times(outer).reshape(-1, d, d) + prec
        ridge = torch.as_tensor(ridge, dtype=a.dtype, device=a.device)  # one lambda, or one per column
        a.diagonal(dim1=1, dim2=2).add_(self.counts.clamp_min(1)[:, None] * ridge)
        b = alpha * self.incidence.times(feats, target) + prior_mean @ prec
        chol, info = torch.linalg.cholesky_ex(a)
        mean = torch.cholesky_solve(b[:, :, None], chol)[:, :, 0]
        draw = None if z is None else mean + torch.linalg.solve_triangular(chol.mT, z[:, :, None], upper=True)[:, :, 0]
        mean[info != 0] = float("nan")
        return mean, draw

    def sse(self, mine: torch.Tensor, other: torch.Tensor, mu: float) -> float:
        """Sum of squared residuals over this range's ratings (``mine`` the whole table of this side)."""
        if self.compiled:
            from latentrec.solvers.rows_kernel import sse

            return sse(self.indptr, self.cols, self.vals, mine[self.lo:self.hi].numpy(), other.numpy(), mu)
        m, o = mine[self.rows + self.lo], other[self.cols]
        pred = (m[:, :-1] * o[:, :-1]).sum(1) + m[:, -1] + o[:, -1] + mu
        return float(((self.vals - pred) ** 2).sum())


class RatingGraph:
    """The training ratings by user and by item (this rank's rows of each), with the sweeps' solves."""

    def __init__(self, data: Encoded, n_users: int, n_items: int, device: torch.device,
                 part: Partition | None = None, compiled: bool | None = None):
        if len(data.ratings) and min(int(data.users.min()), int(data.items.min())) < 1:
            raise ValueError("index 0 is the unknown id (#na#) and rates nothing: encode ids through a Vocab")
        self.part = part or Partition()
        self.device = device
        self.mu = float(np.mean(data.ratings, dtype=np.float64))
        self.n_users, self.n_items, self.n_ratings = n_users, n_items, len(data.ratings)
        compiled = device.type == "cpu" if compiled is None else compiled
        self.bounds, self.sides = {}, {}
        for side, rows, cols, n_rows, n_cols in (("user", data.users, data.items, n_users, n_items),
                                                 ("item", data.items, data.users, n_items, n_users)):
            counts = bincount(rows, n_rows)
            b = self.bounds[side] = self.part.bounds(counts)
            lo, hi = int(b[self.part.rank]), int(b[self.part.rank + 1])
            self.sides[side] = Side(rows, cols, data.ratings, counts, lo, hi, n_cols, device, compiled)

    def solve(self, side: str, other: torch.Tensor, singular: str, *, alpha: float = 1.0, prec: torch.Tensor | None = None,
              ridge: float | np.ndarray = 0.0, prior_mean: torch.Tensor | None = None,
              z: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Every row of ``side`` (all ranks' rows, joined): conditional means and, given ``z``, draws.

        ``other``: the other side's ``[factors, bias]`` rows; ``prec``/``prior_mean``: the rows' Gaussian
        prior (``prior_mean`` one row or one per row of the side); ``ridge``: ALS's ``lambda * n_r`` (one lambda, or
        one per column: ``[factors..., bias]``).
        Raises ``ConfigError(singular)`` when a row's system is singular.
        """
        s = self.sides[side]
        d = other.shape[1]
        prec = torch.zeros(d, d, device=other.device) if prec is None else prec.float()
        prior_mean = torch.zeros(1, d, device=other.device) if prior_mean is None else prior_mean.float()
        if len(prior_mean) > 1:
            prior_mean = prior_mean[s.lo:s.hi]
        mean, draw = s.solve(other.float().contiguous(), self.mu, alpha, prec, ridge, prior_mean.contiguous(),
                             None if z is None else z[s.lo:s.hi].contiguous())
        mean = self.part.gather(mean.to(self.device), self.bounds[side])
        if bool(torch.isnan(mean).any()):
            raise ConfigError(singular)
        return mean, None if draw is None else self.part.gather(draw.to(self.device), self.bounds[side])

    def sse(self, u: torch.Tensor, v: torch.Tensor) -> float:
        """Sum of squared residuals over all training ratings (every rank's share, summed)."""
        return self.part.total(self.sides["user"].sse(u, v, self.mu), self.device)


class _Incidence:
    """A sparse (rows x cols) matrix with one entry per rating, sorted once, reused with any values."""

    def __init__(self, rows: torch.Tensor, cols: torch.Tensor, n_rows: int, n_cols: int):
        self.order = torch.argsort(rows * n_cols + cols)
        self.index = torch.stack([rows[self.order], cols[self.order]])
        self.shape = (n_rows, n_cols)
        self.ones = self.matrix(torch.ones(len(rows), device=rows.device))

    def matrix(self, values: torch.Tensor) -> torch.Tensor:
        return torch.sparse_coo_tensor(self.index, values, self.shape, is_coalesced=True, check_invariants=False)

    def times(self, dense: torch.Tensor, values: torch.Tensor | None = None) -> torch.Tensor:
        """``A @ dense`` where ``A`` holds ``values`` (one per rating, in rating order) or ones."""
        a = self.ones if values is None else self.matrix(values[self.order])
        return torch.sparse.mm(a, dense)
