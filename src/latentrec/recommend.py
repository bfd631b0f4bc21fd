"""Top-N recommendations from a trained model."""

from __future__ import annotations

import pandas as pd
import torch

from .recommender import Recommender


def recommend(rec: Recommender, user: str, n: int = 10, include_rated: bool = False) -> pd.DataFrame:
    """The ``n`` items with the highest predicted rating for ``user`` that they have not rated."""
    u = int(rec.users.encode([user])[0])
    scores = rec.model.score_users(torch.tensor([u], device=rec.device))[0].float().cpu()
    scores[0] = -torch.inf  # never recommend the unknown-item row
    if u and not include_rated:
        scores[torch.from_numpy(rec.rated_by(u)).long()] = -torch.inf
    n = min(n, int(torch.isfinite(scores).sum()))
    top = torch.topk(scores, n)
    items = rec.items.decode(top.indices.numpy())
    lo, hi = rec.rating_range
    return pd.DataFrame({
        "rank": range(1, n + 1),
        "item": items,
        "title": [rec.titles.get(i, "") for i in items],
        "prediction": top.values.clamp(lo, hi).numpy(),
        "known": bool(u),
    })
