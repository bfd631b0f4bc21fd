"""The most-popular list as a ranker: every user's list is the most-rated items they have not rated.

It is the baseline every ranking table compares against, kept as a ranker so a model dir can
order its lists by it: ``--ranker popular`` asks for it, and ``--ranker auto`` falls back to it when
the ranker it fitted (or the rating model, where it fitted none) ranks the validation rows worse
(``training/rankers.py``). Scores are popularity ranks, not counts: exact in float32 at any count,
and ties fall to the lower item index, as in the popularity baseline of ``use/ranking.py``.
"""

from __future__ import annotations

import numpy as np
import torch

from latentrec.models.ranker import Ranker


class Popularity(Ranker):
    """Item scores (buffer ``scores``): ``n_items - rank`` by training ratings, 0 for ``#na#`` and unrated items."""

    kind = "popular"
    compares_items = False  # one order for everyone says nothing about which items are alike

    def __init__(self, n_items: int, rating_mean: float = 0.0, rating_std: float = 1.0, rating_weight: float = 0.0):
        super().__init__(n_items, rating_mean, rating_std, rating_weight)
        self.register_buffer("scores", torch.zeros(n_items))

    @torch.no_grad()
    def fit(self, counts: np.ndarray) -> Popularity:
        """Scores from the training ratings per item index (``counts[0]`` is ``#na#``'s)."""
        counts = np.asarray(counts).copy()
        counts[0] = 0
        order = np.argsort(-counts, kind="stable")
        scores = np.zeros(self.n_items, np.float32)
        scores[order] = np.arange(self.n_items, 0, -1, dtype=np.float32)
        scores[counts == 0] = 0.0
        self.scores = torch.from_numpy(scores).to(self.scores.device)
        return self

    @torch.no_grad()
    def score_users(self, users: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
        return self.scores.expand(len(users), -1).clone()

    @torch.no_grad()
    def fold_in(self, items: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return self.scores.clone()
