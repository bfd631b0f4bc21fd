"""How good the unknown-user and unknown-item fallbacks are.

ML-100K with 170 items and 95 users held out entirely (seeded); each solver's model trains on the rest
(all rows, no validation) and predicts the held-out rows, whose user, item or both it has never seen.
Printed: the fallback every model uses (``rec.fallback``, the damped means of ``baselines.fit_fallback``),
each solver's own unknown row (row 0, the average user/item: the fallback before it), the plain means (the
user's mean training rating for an unknown item, the item's for an unknown user, the global mean for both)
and the damped bias baseline each model dir keeps (``rec.baseline``).

    LATENTREC_DATA=../shared/data python benchmarks/fallback.py
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from latentrec import fit, load_ratings
from latentrec.config import TrainConfig
from latentrec.data.ratings import Ratings


def rmse(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(np.sqrt(np.mean((pred - truth) ** 2)))


def main() -> None:
    df = load_ratings("ml-100k").df
    rng = np.random.default_rng(0)
    cold_item = df.item.isin(rng.choice(df.item.unique(), 170, replace=False))
    cold_user = df.user.isin(rng.choice(df.user.unique(), 95, replace=False))
    train = df[~cold_item & ~cold_user].reset_index(drop=True)
    cases = {"unknown item": df[cold_item & ~cold_user], "unknown user": df[cold_user & ~cold_item],
             "both unknown": df[cold_item & cold_user]}
    cases["unknown user"] = cases["unknown user"][cases["unknown user"].item.isin(train.item)]  # items kept
    means = {"unknown item": lambda s: s.user.map(train.groupby("user").rating.mean()),
             "unknown user": lambda s: s.item.map(train.groupby("item").rating.mean()),
             "both unknown": lambda s: pd.Series(train.rating.mean(), index=s.index)}
    print(f"{len(train):,} training ratings; mean {train.rating.mean():.3f}\n")
    print("| model | case | rows | RMSE | mean prediction | mean rating |\n| --- | --- | ---: | ---: | ---: | ---: |")
    for case, rows in cases.items():
        p = means[case](rows).to_numpy()
        print(f"| plain mean | {case} | {len(rows):,} | {rmse(p, rows.rating.to_numpy()):.4f} | {p.mean():.3f} "
              f"| {rows.rating.mean():.3f} |")
    for solver in ("bayes", "sgd", "als"):
        rec, _ = fit(Ratings(train, "train"), config=TrainConfig(solver=solver, valid_pct=0, ranker="none"))
        own = dataclasses.replace(rec, fallback=None)  # the model's row 0
        for case, rows in cases.items():
            p = own.predict(rows.user.tolist(), rows.item.tolist()).prediction.to_numpy()
            print(f"| {solver} row 0 | {case} | {len(rows):,} | {rmse(p, rows.rating.to_numpy()):.4f} "
                  f"| {p.mean():.3f} | {rows.rating.mean():.3f} |")
    for case, rows in cases.items():  # the same for every model: the training rows' damped means
        p = rec.predict(rows.user.tolist(), rows.item.tolist()).prediction.to_numpy()
        print(f"| fallback (damped means) | {case} | {len(rows):,} | {rmse(p, rows.rating.to_numpy()):.4f} "
              f"| {p.mean():.3f} | {rows.rating.mean():.3f} |")
    for case, rows in cases.items():  # the damped bias baseline every model dir keeps (rec.baseline)
        p = rec.predict_baseline(rec.encode(rows.user.tolist(), rows.item.tolist()))
        print(f"| bias baseline | {case} | {len(rows):,} | {rmse(p, rows.rating.to_numpy()):.4f} | {p.mean():.3f} "
              f"| {rows.rating.mean():.3f} |")


if __name__ == "__main__":
    main()
