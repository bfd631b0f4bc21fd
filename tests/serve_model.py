"""The model the serve tests answer from: a dot model fit by ALS on planted-cluster ratings, with titles."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from tiny_rec import planted_clusters

from latentrec.config import TrainConfig
from latentrec.data.ratings import Ratings
from latentrec.training.fit import fit
from latentrec.use.recommender import Recommender


@cache
def served() -> tuple[Recommender, dict]:
    """The trained Recommender (a plain dot model: predict reaches the parallel numba kernel) and each item's
    planted cluster."""
    df, clusters = planted_clusters()
    titles = {i: f"Movie {i[1:]} (1999)" for i in df["item"].unique()}
    rec, _ = fit(Ratings(df, "planted", titles), config=TrainConfig(n_factors=8, epochs=10, solver="als",
                                                                     valid_pct=0, device="cpu", seed=0))
    return rec, clusters


def saved(tmp_path_factory, name: str) -> Path:
    """The served model saved into a fresh folder ``name``."""
    path = tmp_path_factory.mktemp(name) / "model"
    served()[0].save(path)
    return path
