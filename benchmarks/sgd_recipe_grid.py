"""How the SGD kernel's recipe was chosen: a small grid on a validation split carved from the
training rows of the rng-42 ML-100K split (the test rows are never read here).

    LATENTREC_DATA=../shared/data python benchmarks/sgd_recipe_grid.py
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np

from latentrec.config import TrainConfig
from latentrec.data.ratings import Ratings, load_ratings
from latentrec.training.fit import fit


def main() -> None:
    root = Path(os.environ.get("LATENTREC_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    df = load_ratings(str(root / "ml-100k" / "u.data")).df
    train = df.iloc[np.random.default_rng(42).permutation(len(df))[20_000:]].reset_index(drop=True)
    data = Ratings(train, "rng42-train")
    print(f"{'n_factors':>9} {'lr':>6} {'wd':>6} {'epochs':>6}  valid_rmse  seconds")
    for k, lr, wd, epochs in itertools.product((64, 100), (0.01, 0.02), (0.08, 0.12), (60,)):
        cfg = TrainConfig(solver="sgd", n_factors=k, lr=lr, wd=wd, epochs=epochs, schedule="cosine",
                          valid_pct=0.1, seed=0, device="cpu")
        rec, trainer = fit(data, config=cfg)
        print(f"{k:>9} {lr:>6} {wd:>6} {epochs:>6}  {rec.info['metrics']['valid_rmse']:.4f}     "
              f"{trainer.train_seconds:.2f}")


if __name__ == "__main__":
    main()
