"""What a ranking model is: it orders items for a user from the items the user chose to rate.

A ranker learns "would they pick it", not "how would they rate it": its scores order a list but
are not ratings. Every ranker turns a user's training ratings into input weights with
:func:`rating_weights` (1 for an average rating, a little more for a high one, a little less for a
low one), scores users from those weighted rows, folds in a new user from theirs, and compares
items. ``EASE`` (``models/ease.py``) and ``ImplicitALS`` (``models/ials.py``) implement it, and
``Popularity`` (``models/popularity.py``), the most-popular list, which every user gets alike.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

MIN_WEIGHT = 0.1  # a very low rating still says the user picked the item


def rating_weights(ratings: np.ndarray | torch.Tensor, mean: float, std: float, strength: float):
    """``max(0.1, 1 + strength * (r - mean) / std)``: how much each rated item counts as "picked"."""
    z = (ratings - mean) / max(std, 1e-6)
    w = 1.0 + strength * z
    return w.clip(MIN_WEIGHT, None) if isinstance(w, np.ndarray) else w.clamp_min(MIN_WEIGHT)


class Ranker(nn.Module):
    """Base of the ranking models: row 0 of the item side is ``#na#`` and is never recommended."""

    kind = "ranker"
    uses_rows = False  # True: scores need the users' weighted training rows (EASE); False: learned factors
    compares_items = True  # False: no item similarity (``similar`` asks the rating model instead)

    def __init__(self, n_items: int, rating_mean: float, rating_std: float, rating_weight: float):
        super().__init__()
        self.n_items = int(n_items)
        self.rating_mean, self.rating_std, self.rating_weight = float(rating_mean), float(rating_std), float(rating_weight)

    def config(self) -> dict:
        return {"kind": self.kind, "n_items": self.n_items, "rating_mean": self.rating_mean,
                "rating_std": self.rating_std, "rating_weight": self.rating_weight}

    def weights(self, ratings, graded: bool = False):
        """Input weights of rated items from their ratings (see :func:`rating_weights`). ``graded``: the ratings are
        explicit (a dir with a rating model beside the ranker), and one a standard deviation or more below the mean
        (1 or 2 on ML-100K's 1-5) picks nothing: weight 0, so a 1-star rating never asks for more like it. (A
        ranking-only dir may hold plays or seconds, where a low value is still a pick.)"""
        w = rating_weights(ratings, self.rating_mean, self.rating_std, self.rating_weight)
        return w * (ratings >= self.picked_from()) if graded else w

    def picked_from(self) -> float:
        """The lowest explicit rating that counts as a pick (:meth:`weights`, ``graded``)."""
        return self.rating_mean - self.rating_std

    def score_users(self, users: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
        """Ranking scores ``(len(users), n_items)``; ``rows`` are the users' weighted training rows (dense)."""
        raise NotImplementedError

    def fold_in(self, items: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Ranking scores over every item of a user outside the model who rated ``items``."""
        raise NotImplementedError

    def similarity(self, item: int) -> torch.Tensor:
        """How similar every item is to ``item`` (higher: more similar)."""
        raise NotImplementedError
