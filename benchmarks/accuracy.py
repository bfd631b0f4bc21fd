"""Test RMSE / MAE / training seconds of every model and solver on ML-100K, next to the SGD kernel.

Splits: ``rng42`` (rows of u.data in file order, numpy.random.default_rng(42).permutation(100000),
first 20,000 = test) and ``u1`` (ML-100K's u1.base / u1.test). Each model trains on the whole
training side (``valid_pct=0``) with its recipe, then is scored once on the test side.

``--tune`` scores on a validation split carved from the training rows instead (20 %, seed 7), never
touching the test file: that is how the recipes were chosen. ``--set key=value`` overrides a recipe
field for every run (e.g. ``--only bayes --set n_factors=20 epochs=200``).

    LATENTREC_DATA=../shared/data python benchmarks/accuracy.py [--split rng42 u1] [--only NAME ...]
                                                                [--threads N] [--tune] [--set k=v ...]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from latentrec.config import TrainConfig
from latentrec.data.ratings import load_ratings
from latentrec.evaluation.evaluate import evaluate
from latentrec.training.fit import fit

RUNS = {
    "sgd": TrainConfig(model="dot", solver="sgd"),
    "als": TrainConfig(model="dot", solver="als"),
    "bayes": TrainConfig(model="dot", solver="bayes"),  # the default solver
    "nn": TrainConfig(model="nn"),
}


def read(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path, sep="\t", header=None, names=["user", "item", "rating", "timestamp"])
    return df.astype({"user": str, "item": str})


def split(name: str, root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    folder = root / "ml-100k"
    if name == "u1":
        return read(folder / "u1.base"), read(folder / "u1.test")
    rows = read(folder / "u.data")
    perm = np.random.default_rng(42).permutation(len(rows))
    return rows.iloc[np.sort(perm[20_000:])].reset_index(drop=True), rows.iloc[perm[:20_000]].reset_index(drop=True)


def carve_validation(train: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    perm = np.random.default_rng(7).permutation(len(train))
    n = len(train) // 5
    return train.iloc[np.sort(perm[n:])].reset_index(drop=True), train.iloc[perm[:n]].reset_index(drop=True)


def overrides(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        out[key] = json.loads(value) if value[:1] in "0123456789-[tfn" else value
        if isinstance(out[key], list):
            out[key] = tuple(out[key])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", nargs="+", default=["rng42", "u1"], choices=["rng42", "u1"])
    ap.add_argument("--only", nargs="+", choices=list(RUNS), help="runs to do (default: all)")
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    ap.add_argument("--tune", action="store_true", help="score on a validation carve of the training rows")
    ap.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="override recipe fields")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    root = Path(os.environ.get("LATENTREC_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    extra = overrides(args.set)
    print(f"torch threads: {torch.get_num_threads()}; scored on: {'validation carve' if args.tune else 'test'}")
    for name in args.split:
        train, test = split(name, root)
        if args.tune:
            train, test = carve_validation(train)
        train_r, test_r = load_ratings(train), load_ratings(test)
        print(f"\n{name}: {len(train)} training, {len(test)} scored ratings")
        print(f"{'run':<14} {'rmse':>7} {'mae':>7} {'seconds':>8} {'x sgd time':>10}  recipe")
        ref = None
        for run in args.only or list(RUNS):
            cfg = replace(RUNS[run], valid_pct=0, **extra).resolved()
            rec, trainer = fit(train_r, None, cfg)
            r = evaluate(rec, test_r)
            secs = trainer.train_seconds
            ref = secs if run == "sgd" else ref
            ratio = f"{secs / ref:.2f}" if ref else "-"
            recipe = {k: v for k, v in cfg.to_dict().items()
                      if k in ("n_factors", "epochs", "wd", "burn_in", "layers", "lr", "bs", "implicit") and v is not None}
            print(f"{run:<14} {r['rmse']:7.4f} {r['mae']:7.4f} {secs:8.2f} {ratio:>10}  {recipe}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
