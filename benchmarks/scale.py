"""One SGD epoch at growing scale, read from Parquet in chunks: seconds and peak memory per size.

    python benchmarks/scale.py --sizes 1e6 1e7 3e7 1e8 --dir /tmp/latentrec-scale
    python benchmarks/scale.py --sizes 1e6 1e7 1e8 --fixed-density   # users, items grow with the ratings

Each size is written once with ``latentrec synth`` (200k users, 50k items unless told), then a
fresh process reads it with ``chunked.read_blocked`` (pyarrow, 2M-row chunks), builds the
k=64 model and runs one warm-up kernel epoch and then --epochs timed ones (the median is
reported, so a 30 ms epoch is not one noisy sample); its peak resident memory
(ru_maxrss) is the figure reported, so sizes do not inherit each other's peaks.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

CHILD = """
import json, resource, sys, time
import numba, numpy as np
from latentrec.chunked import read_blocked
from latentrec.sgd_kernel import default_grid, sgd_epoch
path, k, threads, size, epochs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
numba.set_num_threads(threads)
rng = np.random.default_rng(0)
t0 = time.perf_counter()
data, info = read_blocked(path, default_grid(size, threads), rng)
read_s = time.perf_counter() - t0
nu, ni = info["n_users"], info["n_items"]
P, Q = rng.normal(0, 0.1, (nu, k)).astype(np.float32), rng.normal(0, 0.1, (ni, k)).astype(np.float32)
bu, bi = np.zeros(nu, np.float32), np.zeros(ni, np.float32)
times = []
for _ in range(1 + epochs):  # the first epoch also loads the compiled kernel; it is not timed
    t0 = time.perf_counter()
    mse = sgd_epoch(data, P, Q, bu, bi, 0.005, 0.02, (0.5, 5.5), True, rng)
    times.append(time.perf_counter() - t0)
epoch_s = float(np.median(times[1:]))
print(json.dumps({"n_ratings": len(data), "read_s": read_s, "epoch_s": epoch_s, "train_rmse": mse ** 0.5,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=float, nargs="+", default=[1e6, 1e7, 3e7])
    ap.add_argument("--users", type=int, default=200_000)
    ap.add_argument("--items", type=int, default=50_000)
    ap.add_argument("--fixed-density", action="store_true",
                    help="scale users and items with sqrt(size / largest size), so every size has the same density")
    ap.add_argument("--factors", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=5, help="timed epochs per size (the median is reported)")
    ap.add_argument("--dir", default="/tmp/latentrec-scale")
    ap.add_argument("--keep", action="store_true", help="keep the Parquet files")
    a = ap.parse_args()
    folder = Path(a.dir)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in map(int, a.sizes):
        shrink = (size / max(a.sizes)) ** 0.5 if a.fixed_density else 1.0
        users, items = max(2, round(a.users * shrink)), max(2, round(a.items * shrink))
        path = folder / f"synth-{size}-{users}x{items}.parquet"
        t0 = time.perf_counter()
        if not path.exists():
            subprocess.run([sys.executable, "-m", "latentrec", "synth", "--ratings", str(size), "--users",
                            str(users), "--items", str(items), "--out", str(path)], check=True)
        synth_s = time.perf_counter() - t0
        out = subprocess.run([sys.executable, "-c", CHILD, str(path), str(a.factors), str(a.threads), str(size),
                              str(a.epochs)],
                             check=True, capture_output=True, text=True).stdout
        row = json.loads(out.strip().splitlines()[-1]) | {"synth_s": synth_s}
        row["ratings_per_s"] = row["n_ratings"] / row["epoch_s"]
        rows.append(row)
        print(f"{size:>12,} ratings ({users:,} x {items:,}): synth {synth_s:6.1f} s  read+block {row['read_s']:6.1f} s  "
              f"epoch {row['epoch_s']:6.2f} s ({row['ratings_per_s'] / 1e6:5.2f} M/s)  peak {row['peak_mb']:7.0f} MB",
              flush=True)
        if not a.keep:
            path.unlink()
    base = rows[0]
    for r in rows[1:]:
        scale = r["n_ratings"] / base["n_ratings"]
        print(f"  {r['n_ratings']:,} vs {base['n_ratings']:,}: {scale:.0f}x ratings, "
              f"{r['epoch_s'] / base['epoch_s']:.1f}x epoch time (linear would be {scale:.0f}x)")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
