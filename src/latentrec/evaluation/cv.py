"""Cross-validation: k seeded random folds, or ML-100K's own ``u1``..``u5``; per-fold scores, mean and std.

This is the protocol of Surprise's published table (5 random folds; mean RMSE and MAE), so
the figures are comparable. Every fold trains from scratch on the other folds with the same
config and is scored, next to the global-mean and user+item-bias baselines fit on the same
training rows. A ranking model (``--model ease|ials``) is scored by its top-10 lists instead
(NDCG@10 and precision@10, relevant: a test rating in the top quarter of the scale, >= 4 on 1-5; next to popularity's). Standard deviations are over folds with ``ddof=0``, as Surprise reports them.
"""

from __future__ import annotations

import re
import time
from dataclasses import replace
from typing import Callable

import numpy as np
import pandas as pd

from latentrec.config import RANKING_MODELS, TrainConfig
from latentrec.data.ratings import Ratings, as_ratings
from latentrec.data.split import ML100K_SPLITS, kfold_indices
from latentrec.errors import ConfigError
from latentrec.evaluation.evaluate import evaluate
from latentrec.training.fit import data_warnings_once, fit

Fold = tuple[str, Ratings, Ratings]  # name, training rows, test rows
SCORES = ("rmse", "mae", "global_mean_rmse", "global_mean_mae", "biases_rmse", "biases_mae")
RANKING_SCORES = ("ndcg@10", "precision@10", "popularity_ndcg@10", "popularity_precision@10")


def kfolds(ratings: Ratings | pd.DataFrame | str, k: int = 5, seed: int | None = 42) -> list[Fold]:
    """``k`` folds of a seeded permutation: fold i tests on the i-th part and trains on the rest."""
    ratings = as_ratings(ratings)
    parts = kfold_indices(len(ratings), k, seed)
    out = []
    for i, test_idx in enumerate(parts):
        mask = np.ones(len(ratings), bool)
        mask[test_idx] = False
        df = ratings.df
        out.append((f"fold {i + 1}",
                    replace(ratings, df=df.iloc[np.flatnonzero(mask)].reset_index(drop=True)),
                    replace(ratings, df=df.iloc[test_idx].reset_index(drop=True), source=f"{ratings.source} fold {i + 1}")))
    return out


def parse_split(spec: str) -> list[str]:
    """``u1-u5`` (a range) or ``u1,u3,ua`` (a list) of ML-100K's split names."""
    m = re.fullmatch(r"u([1-5])-u([1-5])", spec)
    names = [f"u{i}" for i in range(int(m[1]), int(m[2]) + 1)] if m else spec.split(",")
    bad = [n for n in names if n not in ML100K_SPLITS]
    if not names or bad or len(set(names)) != len(names):
        raise ConfigError(f"--split must be a range like u1-u5 or a list like u1,u2 of {', '.join(ML100K_SPLITS)}, "
                          f"not {spec!r}.")
    return names


@data_warnings_once()  # each fold's fit finds what the others find odd in the ratings
def cross_validate(folds: list[Fold] | Ratings | pd.DataFrame | str, config: TrainConfig | None = None,
                   on_fold: Callable[[dict], None] | None = None) -> dict:
    """Train and score every fold; returns ``{"config", "folds": [row...], "summary": {score: {mean, std}}}``.

    ``folds``: a list of (name, training Ratings, test Ratings) such as :func:`kfolds` makes, or ratings (Ratings, a DataFrame, a dataset name
    or a file, read as ``load_ratings`` reads them) cut into 5 seeded folds. A fold trains on the other folds less
    ``config.valid_pct`` of them held out for validation (default config: ``TrainConfig(valid_pct=0)``, as
    ``latentrec cv`` has it).
    """
    cfg = (config or TrainConfig(valid_pct=0.0)).resolved()
    if not isinstance(folds, list):
        folds = kfolds(folds, 5, cfg.seed)
    fit_cfg = cfg if cfg.model in RANKING_MODELS else replace(cfg, ranker="none")  # folds scored by RMSE only
    rows = []
    for name, train, test in folds:
        t0 = time.perf_counter()
        rec, trainer = fit(train, None, fit_cfg)
        r = evaluate(rec, test, k=10 if trainer is None else None)
        row = {"fold": name, "n_train": len(train), "n_test": r["n"], "n_unknown": r["n_unknown"]}
        if trainer is None:  # a ranking model
            g = r["ranking"]
            for who, prefix in (("model", ""), ("popularity", "popularity_")):  # @k: fewer than 10 with fewer items
                row.update({prefix + m: g[who][m.replace("@10", f"@{g['k']}")] for m in ("ndcg@10", "precision@10")})
            row.update(relevant=g["threshold"], best_epoch=None, seconds=time.perf_counter() - t0, diverged=None)
        else:
            row.update(rmse=r["rmse"], mae=r["mae"])
            for base, b in r["baselines"].items():
                row[f"{base}_rmse"], row[f"{base}_mae"] = b["rmse"], b["mae"]
            row.update(best_epoch=trainer.best_epoch, seconds=time.perf_counter() - t0, diverged=trainer.diverged)
        rows.append(row)
        if on_fold:
            on_fold(row)
    scores = SCORES if "rmse" in rows[0] else RANKING_SCORES
    summary = {s: {"mean": float(np.mean([r[s] for r in rows])), "std": float(np.std([r[s] for r in rows]))}
               for s in scores}
    return {"config": cfg.to_dict(), "folds": rows, "summary": summary}
