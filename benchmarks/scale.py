"""`latentrec train` at growing scale: seconds per epoch and peak memory of the whole command.

    python benchmarks/scale.py --sizes 1e6 1e7 1e8                   # 200k users x 50k items at every size
    python benchmarks/scale.py --sizes 1e6 1e7 1e8 --fixed-density   # users, items grow with the ratings

Each size is written once with ``latentrec synth`` (kept in --dir), then a fresh process runs
``latentrec train --data FILE --solver sgd --n-factors 64 --epochs E`` (20% held out for
validation, so every epoch also scores the validation rows, and the run ends with the full
evaluation and the refit on all the rows, the file read again). Reported: the median epoch seconds of epochs 2..E from the saved history (epoch
1 also loads the compiled kernels), ratings/s over the training rows, the command's wall time
and its peak resident memory (ru_maxrss of that process alone).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHILD = """
import json, resource, sys
from latentrec.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}),
      file=sys.stderr)
"""


def run_train(path: Path, factors: int, epochs: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        args = ["train", "--data", str(path), "--solver", "sgd", "--n-factors", str(factors), "--epochs", str(epochs),
                "--out", f"{tmp}/model", "--json"]
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            sys.exit(f"latentrec train failed on {path}:\n{proc.stderr}")
        tail = json.loads(proc.stderr.strip().splitlines()[-1])
        meta = json.loads(Path(f"{tmp}/model/model.json").read_text())
    seconds = [h["seconds"] for h in meta["history"]]
    n_train = meta["n_train"]
    epoch_s = float(np.median(seconds[1:] if len(seconds) > 1 else seconds))
    return {"n_train": n_train, "epoch_s": epoch_s, "ratings_per_s": n_train / epoch_s, "wall_s": wall,
            "peak_mb": tail["peak_mb"], "valid_rmse": meta["metrics"].get("valid_rmse")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=float, nargs="+", default=[1e6, 1e7, 1e8])
    ap.add_argument("--users", type=int, default=200_000)
    ap.add_argument("--items", type=int, default=50_000)
    ap.add_argument("--fixed-density", action="store_true",
                    help="scale users and items with sqrt(size / largest size), so every size has the same density")
    ap.add_argument("--factors", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=4, help="epochs per run (the median of epochs 2.. is reported)")
    ap.add_argument("--dir", default="/tmp/latentrec-scale", help="where the synthetic files are kept")
    a = ap.parse_args()
    folder = Path(a.dir)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in map(int, a.sizes):
        shrink = (size / max(a.sizes)) ** 0.5 if a.fixed_density else 1.0
        users, items = max(2, round(a.users * shrink)), max(2, round(a.items * shrink))
        path = folder / f"synth-{size}-{users}x{items}.parquet"
        if not path.exists():
            subprocess.run([sys.executable, "-m", "latentrec", "synth", "--ratings", str(size), "--users",
                            str(users), "--items", str(items), "--out", str(path)], check=True)
        row = {"n_ratings": size, "users": users, "items": items} | run_train(path, a.factors, a.epochs)
        rows.append(row)
        print(f"{size:>12,} ratings ({users:,} x {items:,}): epoch {row['epoch_s']:6.2f} s "
              f"({row['ratings_per_s'] / 1e6:5.1f} M ratings/s)  whole command {row['wall_s']:6.1f} s  "
              f"peak {row['peak_mb']:6.0f} MB  valid RMSE {row['valid_rmse']:.4f}", flush=True)
    for prev, r in zip(rows, rows[1:]):
        scale = r["n_ratings"] / prev["n_ratings"]
        ratio = r["epoch_s"] / prev["epoch_s"]
        print(f"  {prev['n_ratings']:,} -> {r['n_ratings']:,}: {scale:.0f}x ratings, {ratio:.2f}x epoch time "
              f"({100 * (ratio / scale - 1):+.0f}% from linear)")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
