"""How well a model predicts users it never saw, folded in from a few of their ratings.

    LATENTREC_DATA=../shared/data latentrec train --data ml-100k --split u1 --out /tmp/u1
    LATENTREC_DATA=../shared/data python benchmarks/fold_in.py /tmp/u1

For every u1.test user with at least ``n + 5`` test ratings: fold them in
(``coldstart.fold_in_predictions``: a dot-product model solves their factors, CollabNN sums what they
rated) from ``n`` of those ratings, drawn at random (seeded), and score their other test ratings.
Prints the RMSE for n = 3, 5 and 10, and the unknown user's fallback on the same rows. Run it
against two commits to compare fold-in methods, or on an ``--model nn`` dir.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pandas as pd

from latentrec.use.coldstart import UserRatings, fold_in_predictions
from latentrec.use.recommender import Recommender


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_dir")
    p.add_argument("--test", default=str(Path(os.environ.get("LATENTREC_DATA", ".")) / "ml-100k" / "u1.test"))
    args = p.parse_args()
    rec = Recommender.load(args.model_dir)
    test = pd.read_csv(args.test, sep="\t", names=["user", "item", "rating", "timestamp"])
    rng = np.random.default_rng(0)
    for n in (3, 5, 10):
        errors, fallback = [], []
        for _, rows in test.groupby("user"):
            if len(rows) < n + 5:
                continue
            rows = rows.sample(frac=1, random_state=int(rng.integers(1 << 30)))
            given, rest = rows.iloc[:n], rows.iloc[n:]
            predicted, _ = fold_in_predictions(rec, UserRatings([str(i) for i in given.item],
                                                                given.rating.astype(float).tolist()))
            items = rest.item.astype(str).to_numpy()
            known = rec.items.encode(items) > 0
            errors.append(predicted[rec.items.encode(items[known])] - rest.rating.to_numpy()[known])
            unknown = rec.predict(["#na#"] * int(known.sum()), items[known]).prediction.to_numpy()
            fallback.append(unknown - rest.rating.to_numpy()[known])
        e, f = np.concatenate(errors), np.concatenate(fallback)
        print(f"{n:>2} ratings given: {len(errors)} users, RMSE {np.sqrt(np.mean(e ** 2)):.4f} "
              f"(the unknown user's fallback: {np.sqrt(np.mean(f ** 2)):.4f})")


if __name__ == "__main__":
    main()
