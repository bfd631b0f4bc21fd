"""`latentrec tune --trials 30` on the foundation split of ML-100K: time, pruning, and the winner vs the recipe.

The foundation split: u.data in file order, numpy.random.default_rng(42).permutation(100000),
the first 20,000 rows are the test set, the rest the training set. The search sees only the
training set (its validation rows are carved from it); the winner is refit on all training
rows and scored on the test set once, by the tune command. The default recipe is trained the
same way (all training rows, no validation) in this script, as the reference.

    LATENTREC_DATA=/work/shared/data python benchmarks/tune_ml100k.py [--trials 30] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from latentrec.config import TrainConfig
from latentrec.data.ratings import load_ratings
from latentrec.evaluation.evaluate import evaluate
from latentrec.training.fit import fit


def child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--out", help="folder for the tune report (default: a temporary folder)")
    opts = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tune-ml100k-"))
    out = Path(opts.out) if opts.out else work / "tune"
    ratings = load_ratings("ml-100k")
    perm = np.random.default_rng(42).permutation(len(ratings))
    ratings.df.iloc[np.sort(perm[20000:])].to_csv(work / "train.csv", index=False)
    ratings.df.iloc[np.sort(perm[:20000])].to_csv(work / "test.csv", index=False)

    # Reference in the same run: the default recipe trained once on all training rows, scored on test.
    train, test = load_ratings(work / "train.csv"), load_ratings(work / "test.csv")
    fit(train, None, TrainConfig(epochs=1, device="cpu"))  # JIT warm-up
    t0 = time.perf_counter()
    rec, _ = fit(train, None, TrainConfig(valid_pct=0.0, device="cpu"))
    recipe_seconds = time.perf_counter() - t0
    recipe = evaluate(rec, test)

    cmd = [sys.executable, "-m", "latentrec", "tune", "--data", str(work / "train.csv"), "--test",
           str(work / "test.csv"), "--trials", str(opts.trials), "--device", "cpu", "--out", str(out), "--json"]
    cpu0, t0 = child_cpu(), time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - t0, child_cpu() - cpu0
    if done.returncode:
        sys.exit(done.stderr)
    info = json.loads(done.stdout)
    print(f"command: {' '.join(cmd[2:])}")
    print(f"tune: {info['n_trials']} trials ({info['n_pruned']} pruned, {info['n_repeats']} repeats not trained again) "
          f"in {wall:.1f} s wall, {cpu:.1f} s CPU; "
          f"one default-recipe training took {recipe_seconds:.2f} s here, so the search cost "
          f"{wall / recipe_seconds:.1f} such trainings")
    best = {k: v for k, v in info["best_config"].items() if k in ("n_factors", "epochs", "burn_in", "lr", "wd")}
    print(f"winner: trial {info['best_trial']} {best}: valid RMSE {info['best_valid_rmse']:.4f}")
    print(f"test RMSE, refit on all training rows: winner {info['test']['rmse']:.4f} "
          f"(MAE {info['test']['mae']:.4f}) vs default recipe {recipe['rmse']:.4f} (MAE {recipe['mae']:.4f}); "
          f"biases baseline {recipe['baselines']['biases']['rmse']:.4f}")
    print(f"report: {out}")


if __name__ == "__main__":
    main()
