"""EASE (Steck 2019, "Embarrassingly Shallow Autoencoders for Sparse Data"): an item x item model in closed form.

A user's scores are their weighted row of rated items times ``B``, the ``items x items`` matrix
that best reconstructs every row from the *other* items (zero diagonal):
``B = I - P diag(1 / diag(P))`` with ``P = (X^T X + Lambda)^-1``. ``Lambda`` is
``lam + p / (1 - p) * diag(X^T X)`` per item: the plain ridge ``lam`` of the paper plus the
dropout-emphasis term of Steck's EDLAE (2020), which regularizes popular items more. ``X`` holds
:func:`~latentrec.models.ranker.rating_weights` of the ratings rather than 1s, so a liked item
counts more than a disliked one. One Cholesky factorization and its inverse, in float32.
Memory is about two ``items x items`` matrices at the peak; :func:`ease_memory` is checked before fitting.
"""

from __future__ import annotations

import torch

from latentrec.errors import ConfigError
from latentrec.models.ranker import Ranker


def ease_memory(n_items: int) -> int:
    """Bytes the fit holds at its peak, with a margin: the Cholesky factor and the inverse, then ``B`` (float32);
    three matrices, where 2.1 were measured (``benchmarks/ease_memory.py``)."""
    return 3 * 4 * n_items * n_items


SPARSE_BELOW = 0.05  # X^T X as sparse x dense below this density (measured faster on CPU), dense x dense above


def gram(users: torch.Tensor, items: torch.Tensor, weights: torch.Tensor, n_users: int, n_items: int,
         chunk: int = 1 << 24) -> torch.Tensor:
    """``X^T X`` of the weighted user x item matrix, a block of users at a time (never more than ``chunk``
    dense cells of ``X``): ``X_b^T X_b`` with ``X_b^T`` sparse when the ratings are sparse, else dense."""
    G = torch.zeros(n_items, n_items, device=users.device)
    step = max(1, chunk // n_items)
    sparse = len(users) < SPARSE_BELOW * n_users * n_items
    block = torch.zeros(step, n_items, device=users.device)
    for a in range(0, n_users, step):
        mine = torch.nonzero((users >= a) & (users < a + step))[:, 0]
        rows, cols, w = users[mine] - a, items[mine], weights[mine]
        block.zero_()
        block.index_put_((rows, cols), w)
        if sparse:  # added in place: G += sparse.mm(...) made a whole items x items temporary each block
            G.addmm_(torch.sparse_coo_tensor(torch.stack([cols, rows]), w, (n_items, step), check_invariants=False),
                     block)
        else:
            G.addmm_(block.T, block)
    return G


class EASE(Ranker):
    """The item x item matrix ``B`` (buffer, row/column 0 = ``#na#`` all zero) and its training settings."""

    kind = "ease"
    uses_rows = True

    def __init__(self, n_items: int, lam: float = 300.0, dropout: float = 0.25, rating_mean: float = 0.0,
                 rating_std: float = 1.0, rating_weight: float = 0.2):
        super().__init__(n_items, rating_mean, rating_std, rating_weight)
        self.lam, self.dropout = float(lam), float(dropout)
        self.register_buffer("B", torch.zeros(n_items, n_items))

    def config(self) -> dict:
        return {**super().config(), "lam": self.lam, "dropout": self.dropout}

    @torch.no_grad()
    def fit(self, users: torch.Tensor, items: torch.Tensor, weights: torch.Tensor, n_users: int) -> EASE:
        """Solve ``B`` from the training pairs (index tensors of any integer type) and their input weights."""
        dev = self.B.device
        self.B = torch.zeros(0, device=dev)  # the empty matrix of __init__ goes before the fit's own
        G = gram(users.to(dev, torch.int64), items.to(dev, torch.int64), weights.to(dev, torch.float32), n_users,
                 self.n_items)
        d = G.diagonal().clone()
        G.diagonal().add_(self.lam + self.dropout / (1.0 - self.dropout) * d)
        G[0, 0] = 1.0  # the #na# item: no ratings; keep the system positive definite
        L, info = torch.linalg.cholesky_ex(G)
        del G
        if int(info):
            raise ConfigError("EASE met a singular system; raise wd (--wd), its lambda.")
        # one matrix beside L at the peak, where cholesky_solve of the identity held two more (and took 3x longer,
        # torch 2.13 CPU, 8,000 items); P is symmetric, so its column-major result is read row-major without a copy
        P = torch.cholesky_inverse(L).mT.contiguous()
        del L
        P.div_(-P.diagonal().clone()[None, :])
        P.diagonal().zero_()
        P[0].zero_()
        P[:, 0].zero_()
        self.B = P
        return self

    @torch.no_grad()
    def score_users(self, users: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
        """``rows @ B``; ``rows`` may be sparse (a few users: only their rated rows of ``B`` are read)."""
        return torch.sparse.mm(rows, self.B) if rows.is_sparse else rows @ self.B

    @torch.no_grad()
    def fold_in(self, items: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return weights.to(self.B) @ self.B[items.to(self.B.device)]

    @torch.no_grad()
    def similarity(self, item: int) -> torch.Tensor:
        """Column ``item`` of ``B``: how much rating each item predicts picking ``item``."""
        return self.B[:, item].clone()
