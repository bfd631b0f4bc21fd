"""Hand-built and small trained Recommenders for the tests of issue 6 (recommend, similar, ...)."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from latentrec.config import TrainConfig
from latentrec.data.ratings import Ratings
from latentrec.data.vocab import Vocab
from latentrec.models.dot import DotProductBias
from latentrec.training.fit import fit
from latentrec.use.recommender import Recommender

if TYPE_CHECKING:
    from latentrec.evaluation.tune import TuneResult


def tiny_rec(P, Q, bu=None, bi=None, rated: dict | None = None, titles: dict | None = None,
             y_range=(0.5, 5.5), config: dict | None = None) -> Recommender:
    """Users ``u1..``, items ``i1..`` with the given factors (row 0 = unknown, zero); ``rated`` maps a
    user index (1-based) to the item indices (1-based) it rated in training.
    """
    P, Q = np.asarray(P, np.float32), np.asarray(Q, np.float32)
    nu, ni, k = len(P) + 1, len(Q) + 1, P.shape[1]
    model = DotProductBias(nu, ni, k, y_range)
    with torch.no_grad():
        model.user_factors.copy_(torch.from_numpy(np.vstack([np.zeros((1, k)), P]).astype(np.float32)))
        model.item_factors.copy_(torch.from_numpy(np.vstack([np.zeros((1, k)), Q]).astype(np.float32)))
        model.user_bias.copy_(torch.tensor(np.r_[0, bu if bu is not None else np.zeros(nu - 1)], dtype=torch.float32))
        model.item_bias.copy_(torch.tensor(np.r_[0, bi if bi is not None else np.zeros(ni - 1)], dtype=torch.float32))
    rated = rated or {}
    counts = np.array([len(rated.get(u, [])) for u in range(nu)])
    indptr = np.concatenate([[0], np.cumsum(counts)])
    items = np.array([i for u in range(nu) for i in sorted(rated.get(u, []))], np.int32)
    users, itemv = Vocab([f"u{u}" for u in range(1, nu)]), Vocab([f"i{i}" for i in range(1, ni)])
    return Recommender(model, users, itemv, (1.0, 5.0), indptr, items,
                       (3.0, np.zeros(nu, np.float32), np.zeros(ni, np.float32)), config=config or {"wd": 0.1},
                       titles=titles or {})


def planted_clusters(n_users=300, n_items=120, n_clusters=4, density=0.35, noise=0.1, seed=0):
    """Ratings whose items come in ``n_clusters`` taste clusters; returns (frame, cluster of each item id)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 1.0, (n_clusters, 4))
    cluster = rng.integers(0, n_clusters, n_items)
    V = centers[cluster] + rng.normal(0, 0.1, (n_items, 4))
    U = rng.normal(0, 0.6, (n_users, 4))
    u, i = np.nonzero(rng.random((n_users, n_items)) < density)
    r = np.clip(3.2 + (U[u] * V[i]).sum(1) + rng.normal(0, noise, len(u)), 1, 5)
    df = pd.DataFrame({"user": [f"u{x}" for x in u], "item": [f"i{x}" for x in i], "rating": r.astype(np.float32)})
    return df, {f"i{x}": int(c) for x, c in enumerate(cluster)}


@lru_cache(maxsize=None)
def trained() -> tuple[Recommender, pd.DataFrame, dict]:
    """A dot model (no ranker: these tests are about the rating model's lists) trained (all rows, no validation)
    on planted-cluster ratings; with its data and clusters."""
    df, clusters = planted_clusters()
    titles = {i: f"Movie {i[1:]} (1999)" for i in df["item"].unique()}
    rec, _ = fit(Ratings(df, "planted", titles), config=TrainConfig(n_factors=8, epochs=40, valid_pct=0,
                                                                     device="cpu", seed=0, ranker="none"))
    return rec, df, clusters


def tune_result(rec: Recommender) -> TuneResult:
    """A one-trial tune result whose winner is ``rec``: what ``latentrec tune`` writes a report of."""
    import optuna

    from latentrec.evaluation.tune import Int, TuneResult

    n = rec.model.config()["n_factors"]
    table = pd.DataFrame({"trial": [0], "train_rmse": [0.9], "valid_rmse": [1.0], "valid_mae": [0.8],
                          "best_epoch": [1], "best_valid_rmse": [1.0], "epochs_run": [1], "seconds": [0.1],
                          "pruned": [False], "repeat_of": [None], "note": [""], "n_factors": [n]})
    config = TrainConfig(n_factors=n, solver="sgd", device="cpu").resolved().saved()
    return TuneResult(optuna.create_study(), table, {"n_factors": Int(2, 8)}, config, 0, rec, None, 0.1)
