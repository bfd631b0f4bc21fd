"""The foundation target: default recipe on the ML-100K rng-42 split, via the real CLI.

Split: rows of u.data in file order, numpy.random.default_rng(42).permutation(100000); the
first 20,000 indices are the test set, the rest the training set. Then
``latentrec train --data train.tsv --valid-pct 0`` and ``latentrec evaluate MODEL --data test.tsv``.
Prints test RMSE/MAE and the seconds spent in the training loop (target: RMSE <= 0.900, <= 5 s).

    LATENTREC_DATA=../shared/data python benchmarks/foundation.py [extra train flags...]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd


def rng42_split(data_root: Path, out: Path) -> tuple[Path, Path]:
    """Write the rng-42 train/test split of ML-100K as TSV files under ``out`` (never inside the repo)."""
    rows = pd.read_csv(data_root / "ml-100k" / "u.data", sep="\t", header=None)
    perm = np.random.default_rng(42).permutation(len(rows))
    train, test = out / "train.tsv", out / "test.tsv"
    rows.iloc[perm[20_000:]].to_csv(train, sep="\t", header=False, index=False)
    rows.iloc[perm[:20_000]].to_csv(test, sep="\t", header=False, index=False)
    return train, test


def cli(*args: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "latentrec", *args, "--json"], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(done.stderr)
    return json.loads(done.stdout)


def main() -> None:
    if {"-h", "--help"} & set(sys.argv[1:]):  # the other arguments are train's
        sys.exit(__doc__)
    root = Path(os.environ.get("LATENTREC_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    with tempfile.TemporaryDirectory() as tmp:
        train, test = rng42_split(root, Path(tmp))
        model = str(Path(tmp) / "model")
        trained = cli("train", "--data", str(train), "--valid-pct", "0", "--out", model, *sys.argv[1:])
        ev = cli("evaluate", model, "--data", str(test))
    cfg = trained["config"]
    print("recipe: " + " ".join(f"{k}={cfg[k]}" for k in ("model", "solver", "n_factors", "epochs", "lr", "wd",
                                                            "schedule", "burn_in") if k in cfg))  # what it reads
    print(f"test RMSE {ev['rmse']:.4f}  MAE {ev['mae']:.4f}  (bias baseline {ev['baselines']['biases']['rmse']:.4f}, "
          f"global mean {ev['baselines']['global_mean']['rmse']:.4f})")
    print(f"training loop {trained['train_seconds']:.2f} s")


if __name__ == "__main__":
    main()
