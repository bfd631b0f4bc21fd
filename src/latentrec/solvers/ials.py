"""Fitting implicit-feedback ALS (``models/ials.py``): alternate users and items, each side in one batch.

With one side fixed (``Y``, m x k), row ``x`` of the other side solves
``(Y^T Y + reg I + sum_j a_j y_j y_j^T) x = sum_j (1 + a_j) y_j`` over the items ``j`` it rated,
``a_j = alpha * w_j`` (Hu et al. 2008; ``Y^T Y`` is shared by every row, so the unrated cells cost
nothing per row). Every row takes a few steps of conjugate gradient, warm-started from the previous
sweep (as Takács et al. 2011 and the ``implicit`` library do). On the CPU a compiled kernel runs each
row's steps in cache (``ials_kernel.py``); elsewhere all rows step together in torch, each step one
sampled product (``v_r . y_c`` at every rating) and one sparse-times-dense product over the ratings,
no Python per user.
"""

from __future__ import annotations

import warnings

import torch

from latentrec.models.ials import ImplicitALS
from latentrec.solvers.ials_kernel import KernelRows


class ConfidenceRows:
    """One side's rows of the rating matrix in CSR form, valued ``a = alpha * w`` (confidence - 1).

    Built directly from the sorted pairs with 32-bit indices (8 bytes a rating with its value) where the
    sizes allow, not through a coalesced COO tensor: that route's int64 copies made the peak about 100 bytes
    a rating (11 GB at 80M ratings). The pairs are distinct (duplicates are resolved when ratings are read).
    """

    def __init__(self, rows: torch.Tensor, cols: torch.Tensor, extra: torch.Tensor, n_rows: int, n_cols: int):
        index = torch.int32 if max(len(rows), n_cols) < 2 ** 31 else torch.int64
        order = torch.argsort(rows.long() * n_cols + cols)
        crow = torch.zeros(n_rows + 1, dtype=index, device=rows.device)
        torch.cumsum(torch.bincount(rows, minlength=n_rows), 0, out=crow[1:])
        col = cols[order].to(index)
        values = extra[order]
        del order
        with warnings.catch_warnings():  # "sparse CSR support is in beta": the ops used here are stable
            warnings.simplefilter("ignore", UserWarning)
            self.extra = torch.sparse_csr_tensor(crow, col, values, (n_rows, n_cols), check_invariants=False)

    def cg(self, x: torch.Tensor, other: torch.Tensor, reg: float, steps: int) -> torch.Tensor:
        """``steps`` conjugate-gradient steps on every row's system at once, starting from ``x`` (updated in place)."""
        shared = other.T @ other
        shared.diagonal().add_(reg)
        a = self.extra.values()

        def times(v: torch.Tensor) -> torch.Tensor:
            s = torch.sparse.sampled_addmm(self.extra, v, other.T, beta=0.0).values()  # v_r . y_c at every rating
            return torch.addmm(self.valued(a * s) @ other, v, shared)

        r = self.valued(1.0 + a) @ other - times(x)
        p = r.clone()
        rs = (r * r).sum(1)
        for _ in range(steps):
            ap = times(p)
            step = rs / (p * ap).sum(1).clamp_min(1e-20)
            x.addcmul_(step[:, None], p)
            r.addcmul_(step[:, None], ap, value=-1.0)
            rs_new = (r * r).sum(1)
            p = r + (rs_new / rs.clamp_min(1e-20))[:, None] * p
            rs = rs_new
        return x

    def valued(self, values: torch.Tensor) -> torch.Tensor:
        e = self.extra
        return torch.sparse_csr_tensor(e.crow_indices(), e.col_indices(), values, e.shape, check_invariants=False)


@torch.no_grad()
def fit_ials(model: ImplicitALS, users: torch.Tensor, items: torch.Tensor, weights: torch.Tensor, epochs: int = 15,
             seed: int | None = 0, cg_steps: int = 3, sides: type | None = None) -> ImplicitALS:
    """Fit ``model``'s factors to the training pairs (index tensors on the model's device) and their input weights.

    ``sides`` is the class that holds each side's ratings and runs its CG steps: by default the compiled
    :class:`KernelRows` on the CPU, :class:`ConfidenceRows` (torch sparse ops) elsewhere; tests and
    ``benchmarks/ials_kernel.py`` pass the torch route on the CPU too.
    """
    dev = model.item_factors.device
    users, items = users.to(dev), items.to(dev)
    extra = model.alpha * weights.to(dev, torch.float32)
    gen = torch.Generator(device=dev).manual_seed(seed if seed is not None else 0)
    k = model.n_factors
    P = torch.zeros(model.n_users, k, device=dev)
    Q = torch.randn(model.n_items, k, generator=gen, device=dev) * (0.1 / k ** 0.5)
    Q[0] = 0
    sides = sides or (KernelRows if dev.type == "cpu" else ConfidenceRows)
    by_user = sides(users, items, extra, model.n_users, model.n_items)
    by_item = sides(items, users, extra, model.n_items, model.n_users)
    for _ in range(epochs):
        by_user.cg(P, Q, model.reg, cg_steps)
        by_item.cg(Q, P, model.reg, cg_steps)
    P[0], Q[0] = 0, 0
    model.user_factors.copy_(P)
    model.item_factors.copy_(Q)
    return model
