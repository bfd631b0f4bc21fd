"""Honest evaluation: RMSE and MAE next to baselines fit on the model's own training data."""

from __future__ import annotations

import numbers
import warnings

import numpy as np
import pandas as pd

from latentrec.data import csr
from latentrec.data.batches import EncodedRows
from latentrec.data.lean import LeanRows
from latentrec.data.ratings import MAX_RATING, Ratings, as_ratings
from latentrec.errors import ConfigError, DataError, SeenPairsScored
from latentrec.models.scoring import rmse_mae
from latentrec.use.ranking import evaluate_ranking
from latentrec.use.recommender import Recommender, check_recommender
from latentrec.use.topn import check_n


def evaluate(rec: Recommender, ratings: Ratings | pd.DataFrame | str | LeanRows | EncodedRows, k: int | None = 10, threshold: float | None = None,
             max_rank_users: int | None = None, with_rmse: bool = True) -> dict:
    """Score ``rec`` on ``ratings``; unknown users/items are predicted by the fallback and counted, and so are
    pairs that were in the data the model was built from (``n_seen``: scores on them are optimistic, and the
    ranking leaves them out), ratings off the model's
    scale (``n_off_scale``: its predictions stay within the range of its training ratings), and whether these are
    the very rows ``fit`` was given to validate on (``valid_rows``, with a warning: they chose its best epoch).

    RMSE and MAE (next to the baselines) need a rating model; a ranking-only model gets only the
    ranking metrics, and with ``k=None`` raises :class:`~latentrec.errors.ModelCapabilityError`.

    With ``k``, also top-``k`` ranking metrics (relevant: test rating >= ``threshold``, by default three quarters
    up the model's rating scale: 4 on 1-5) for the
    model and a popularity baseline, under ``"ranking"``; ``k=None`` skips them. ``max_rank_users``:
    score a seeded sample of at most that many users for them (see ``evaluate_ranking``). ``with_rmse=False``
    skips RMSE and MAE (ranking metrics only).
    """
    check_recommender(rec, "evaluate")
    for size, name in ((k, "k (-k)"), (max_rank_users, "max_rank_users")):
        if size is not None:
            check_n(size, name)
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, numbers.Real)):
        raise ConfigError(f"threshold must be a number, not {threshold!r}.")
    ratings = as_ratings(ratings)  # a notebook's frame or a file, checked as `latentrec evaluate --data` checks it
    if not isinstance(ratings, (Ratings, LeanRows, EncodedRows)):
        raise DataError(f"evaluate scores Ratings, a DataFrame, a dataset name or a file (read as load_ratings reads "
                        f"it), not a {type(ratings).__name__}.")
    rows = ratings if isinstance(ratings, EncodedRows) else rec.encode_rows(ratings)
    data = rows.data
    target = data.ratings
    unknown_user, unknown_item = data.users == 0, data.items == 0
    if rec.model is not None and with_rmse and len(target) and (far := float(np.abs(target).max())) > MAX_RATING:
        raise DataError(f"{rows.source}: a rating is about {far:.4g} in size, beyond what a rating model scores "
                        f"(at most {MAX_RATING:,}); is that the rating column? Name it with --rating-col.")
    lo, hi = rec.rating_range
    if threshold is not None and k is not None and rec.model is not None and threshold > hi:
        raise ConfigError(f"threshold {threshold:g} (--relevant) is above the model's rating scale ({lo:g} to "
                          f"{hi:g}): no rating would mark an item relevant.")
    result = {
        "data": rows.source,
        "n": int(len(target)),
        "n_unknown": int((unknown_user | unknown_item).sum()),
        "n_unknown_users": int(unknown_user.sum()),
        "n_unknown_items": int(unknown_item.sum()),
        "n_seen": int(csr.held_in(data.users, data.items, rec.rated_indptr, rec.rated_items).sum()),
        "n_off_scale": int(((target < lo) | (target > hi)).sum()),
        "scale": [lo, hi],
        "ratings_std": float(np.std(target, dtype=np.float64)),
    }
    if result["n_seen"]:  # the CLI says so in its own words
        warnings.warn(f"{result['n_seen']:,} of the {result['n']:,} pairs scored were in the data the model was built "
                      f"from (rows it trained on or held out for validation): its figures say little about new data.",
                      SeenPairsScored, stacklevel=2)
    elif len(data) == rec.info.get("n_valid") and rec.info.get("valid_digest") == data.digest():
        result["valid_rows"] = True
        warnings.warn(f"These {result['n']:,} ratings are the validation rows the model was fit with (they chose its "
                      f"best epoch and ranker): its figures on them are optimistic; score rows it never saw.",
                      SeenPairsScored, stacklevel=2)
    if rec.model is not None and with_rmse:
        rmse, mae = rmse_mae(rec.predict_encoded(data), target)
        mu = rec.baseline[0]
        baselines = {
            "global_mean": dict(zip(("rmse", "mae"), rmse_mae(np.full(len(target), mu, np.float32), target))),
            "biases": dict(zip(("rmse", "mae"), rmse_mae(rec.predict_baseline(data), target))),
        }
        result.update(rmse=rmse, mae=mae, baselines=baselines,
                      improvement_pct={name: 100.0 * (b["rmse"] - rmse) / b["rmse"] for name, b in baselines.items()})
    elif k is None:
        rec.require_ratings("RMSE and MAE")
    if k is not None:
        result["ranking"] = evaluate_ranking(rec, rows, k, threshold, max_rank_users)
    return result
