"""The batched SGD path (what ``--solver sgd`` runs on CUDA) against the CPU kernel, run on the CPU, epoch by epoch.

Same data, seed and recipe for both: the ML-100K quickstart split (``latentrec train --data ml-100k
--solver sgd``: 20% random validation, seed 42, the default sgd recipe). Prints both validation RMSE
curves and their largest gap. Needs ML-100K (``LATENTREC_DATA``).

    python benchmarks/sgd_parity.py [--epochs 60]
"""

from __future__ import annotations

import argparse
import functools
import time

import numpy as np

from latentrec.config import TrainConfig
from latentrec.data.ratings import load_ratings
from latentrec.solvers import runners
from latentrec.training.fit import fit


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, help="default: the recipe's 60")
    args = p.parse_args()
    ratings = load_ratings("ml-100k")
    curves = {}
    for name, batched in (("kernel", False), ("batched", True)):
        runners.RUNNERS["sgd"] = functools.partial(runners.sgd_runner, batched=batched)
        t0 = time.perf_counter()
        _, trainer = fit(ratings, None, TrainConfig(solver="sgd", epochs=args.epochs, device="cpu"))
        curves[name] = np.array([h["valid_rmse"] for h in trainer.history])
        print(f"{name}: {time.perf_counter() - t0:.1f} s", flush=True)
    print("epoch  kernel  batched  gap")
    for e, (a, b) in enumerate(zip(curves["kernel"], curves["batched"]), 1):
        print(f"{e:5d}  {a:.4f}  {b:.4f}  {b - a:+.4f}")
    gap = np.abs(curves["batched"] - curves["kernel"])
    print(f"largest gap {gap.max():.4f} (epoch {gap.argmax() + 1}); final {curves['kernel'][-1]:.4f} kernel, "
          f"{curves['batched'][-1]:.4f} batched")


if __name__ == "__main__":
    main()
