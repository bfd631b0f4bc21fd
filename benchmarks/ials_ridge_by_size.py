"""iALS's ridge on less data: top-10 NDCG of `--model ials` with ridge 40 (the recipe), 10 and 4 on 10 %, 30 % and
all of ML-100K's rows (a seeded 80/20 random split of each), next to popularity's. A smaller catalogue collapses
iALS's factors toward rank 1, which is the ridge at work: it still ranks best.

    LATENTREC_DATA=../shared/data python benchmarks/ials_ridge_by_size.py
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from latentrec import TrainConfig, evaluate, fit, load_ratings


def main() -> None:
    root = Path(os.environ.get("LATENTREC_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    df = load_ratings(str(root / "ml-100k" / "u.data")).df
    rng = np.random.default_rng(0)
    for share in (0.1, 0.3, 1.0):
        rows = df.iloc[rng.permutation(len(df))[: int(len(df) * share)]].reset_index(drop=True)
        cut = int(len(rows) * 0.8)
        train, test = rows.iloc[:cut], rows.iloc[cut:]
        cells = []
        for wd in (40.0, 10.0, 4.0):
            rec, _ = fit(train, config=TrainConfig(model="ials", wd=wd, valid_pct=0, device="cpu"))
            ranking = evaluate(rec, test)["ranking"]
            cells.append(f"ridge {wd:g}: {ranking['model']['ndcg@10']:.4f}")
        print(f"{share:.0%} of the rows ({len(train):,} training, {len(train) / train.user.nunique():.0f} a user): "
              f"popularity {ranking['popularity']['ndcg@10']:.4f}; " + "; ".join(cells), flush=True)


if __name__ == "__main__":
    main()
