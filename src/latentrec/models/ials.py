"""Implicit-feedback ALS (Hu, Koren & Volinsky 2008): user and item factors fit to "did they pick it".

Every user x item cell is a target: 1 where the user rated the item, 0 elsewhere (a weak
negative). Cell weights (confidences) are 1 for the unrated cells and ``1 + alpha * w`` for the
rated ones, ``w`` the rating's :func:`~latentrec.models.ranker.rating_weights`. Scores are
``p_u . q_i``. Trained by ``solvers/ials.py``; a new user is folded in by one small ridge solve.
"""

from __future__ import annotations

import torch

from latentrec.models.ranker import Ranker


class ImplicitALS(Ranker):
    """User and item factor tables (row 0 = ``#na#``, zero) and the confidence settings they were fit with."""

    kind = "ials"

    def __init__(self, n_users: int, n_items: int, n_factors: int = 64, reg: float = 5.0, alpha: float = 5.0,
                 rating_mean: float = 0.0, rating_std: float = 1.0, rating_weight: float = 0.2):
        super().__init__(n_items, rating_mean, rating_std, rating_weight)
        self.n_users, self.reg, self.alpha = int(n_users), float(reg), float(alpha)
        self.register_buffer("user_factors", torch.zeros(n_users, n_factors))
        self.register_buffer("item_factors", torch.zeros(n_items, n_factors))

    @property
    def n_factors(self) -> int:
        return self.item_factors.shape[1]

    def config(self) -> dict:
        return {**super().config(), "n_users": self.n_users, "n_factors": self.n_factors, "reg": self.reg,
                "alpha": self.alpha}

    @torch.no_grad()
    def score_users(self, users: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
        return self.user_factors[users] @ self.item_factors.T

    @torch.no_grad()
    def solve_user(self, items: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """The factors of a user who rated ``items``: ``(Q^T C Q + reg I) p = Q^T C 1`` over all items."""
        Q = self.item_factors.double()
        q = Q[items.to(Q.device)]
        extra = self.alpha * weights.to(Q)  # confidence - 1 of the rated items
        A = Q.T @ Q + (q * extra[:, None]).T @ q + self.reg * torch.eye(self.n_factors, dtype=Q.dtype, device=Q.device)
        b = (q * (1.0 + extra)[:, None]).sum(0)
        return torch.linalg.solve(A, b).to(self.item_factors.dtype)

    @torch.no_grad()
    def fold_in(self, items: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return self.item_factors @ self.solve_user(items, weights)

    @torch.no_grad()
    def similarity(self, item: int) -> torch.Tensor:
        """Cosine similarity of the item factors."""
        unit = self.item_factors / self.item_factors.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return unit @ unit[item]
