"""The figures of issue #13, CPU against CUDA in one process, printed as one table (run by gpu_check.sh).

1. ``--solver sgd`` training speed at k=64 on planted synthetic ratings (20M; the bench's 20k x 5k
   tables): the CPU kernel, the Triton per-rating kernel (what ``--solver sgd`` runs on CUDA), the
   batched CUDA path with its own batch (half the smaller table) and with 65,536-rating batches;
   ratings/s, and seconds until the validation RMSE reaches what the CPU kernel reaches in the
   same number of epochs.
2. Seconds per ALS and Gibbs sweep at ML-1M's shape (1M planted ratings, 6,040 x 3,706, recipe k).
3. Validation RMSE and training seconds of every solver and model on the ML-100K quickstart split
   (``latentrec train --data ml-100k``: 20% random validation, seed 42), on each device. Without the
   ML-100K files (``LATENTREC_DATA``) planted ratings of its shape stand in, and the row says so.

``--tiny`` shrinks every size (a smoke run that works on a CPU-only machine in seconds).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np
import torch

from latentrec.config import TrainConfig
from latentrec.data.batches import Encoded
from latentrec.data.synth import SynthSpec, synth_arrays
from latentrec.evaluation.bench import Setup, run_setup, sync
from latentrec.solvers import sgd_triton


def planted(n: int, users: int, items: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Planted ratings encoded as a vocabulary would: index 0 is the unknown id, so ids start at 1."""
    u, i, r = synth_arrays(SynthSpec(n, users, items, seed=seed))
    return u + 1, i + 1, r


def split(u, i, r, seed: int = 0) -> tuple[Encoded, Encoded]:
    perm = np.random.default_rng(seed).permutation(len(r))
    cut = int(0.9 * len(r))
    pick = lambda idx: Encoded(u[idx].copy(), i[idx].copy(), r[idx].copy())
    return pick(np.sort(perm[:cut])), pick(np.sort(perm[cut:]))


def sgd_speed(devices: list[str], n: int, users: int, items: int, epochs: int) -> list[tuple]:
    u, i, r = planted(n, users, items, seed=0)
    train, valid = split(u, i, r)
    gpus = [d for d in devices if d != "cpu"]
    setups = ([Setup("cpu", "sgd", 1)] + [Setup(d, "sgd-triton", 1) for d in gpus if sgd_triton.usable(torch.device(d))]
              + [Setup(d, "sgd-torch", bs) for d in gpus for bs in (1, 65536)])
    runs = [run_setup(s, train, valid, users + 1, items + 1, (0.5, 5.5), 64, epochs) for s in setups]
    target = runs[0].get("best_valid_rmse")  # what the CPU kernel reaches in these epochs
    rows = []
    for s, run in zip(setups, runs):
        how = {"sgd": "kernel", "sgd-triton": f"Triton, {run.get('batch')} programs"}.get(s.solver, f"batch {run.get('batch')}")
        what = f"sgd {n / 1e6:g}M, k=64: {s.device} {how}"
        if "diverged" in run:
            rows.append((what, "diverged", "", ""))
            continue
        reach = next((t for t, v in run["curve"] if target is not None and v <= target + 1e-9), None)
        rows.append((what, f"{run['ratings_per_s'] / 1e6:.1f}M ratings/s",
                     f"RMSE {run['best_valid_rmse']:.4f} after {epochs} epochs",
                     f"{reach:.2f} s to {target:.4f}" if reach is not None else f"never {target:.4f}"))
    return rows


def sweep_seconds(devices: list[str], n: int, users: int, items: int, sweeps: int) -> list[tuple]:
    from latentrec.solvers.runners import RUNNERS
    from latentrec.training.fit import make_model

    u, i, r = planted(n, users, items, seed=1)
    data = Encoded(u, i, r)
    rows = []
    for solver in ("als", "bayes"):
        cfg = TrainConfig(solver=solver, epochs=sweeps + 1, seed=0).resolved()
        seconds = {}
        for d in devices:
            device = torch.device(d)
            torch.manual_seed(0)
            model = make_model(cfg, users + 1, items + 1, (0.5, 5.5)).to(device)
            runner = RUNNERS[solver](model, Encoded(u.copy(), i.copy(), r.copy()), cfg, device)
            runner.epoch(lambda frac, lr=cfg.lr: lr)  # warm-up: compilation, allocation
            times = []
            for _ in range(sweeps):
                sync(device)
                t0 = time.perf_counter()
                runner.epoch(lambda frac, lr=cfg.lr: lr)
                sync(device)
                times.append(time.perf_counter() - t0)
            seconds[d] = float(np.median(times))
        cells = [f"{d} {seconds[d]:.3f} s" for d in devices] + [""] * (2 - len(devices))
        ratio = f"CUDA {seconds['cpu'] / seconds['cuda']:.1f}x the CPU" if "cuda" in seconds else "no CUDA"
        rows.append((f"{solver} sweep, {len(data) / 1e6:g}M ratings {users}x{items}, k={cfg.n_factors}", *cells, ratio))
    return rows


def ml100k_accuracy(devices: list[str], tiny: bool) -> list[tuple]:
    from latentrec.data.ratings import Ratings, load_ratings
    from latentrec.errors import LatentrecError
    from latentrec.training.fit import fit

    try:
        ratings, name = load_ratings("ml-100k"), "ML-100K"
        if tiny:
            raise LatentrecError("tiny run")
    except LatentrecError:
        import pandas as pd

        u, i, r = synth_arrays(SynthSpec(20_000 if tiny else 100_000, 943, 1682, seed=2))
        ratings = Ratings(pd.DataFrame({"user": u, "item": i, "rating": r}), "planted")
        name = f"planted 943x1682 ({'tiny run' if tiny else 'ML-100K absent'})"
    rows = []
    for model, solver in (("dot", "bayes"), ("dot", "sgd"), ("dot", "autograd"), ("dot", "als"), ("nn", "autograd")):
        cfg = TrainConfig(model=model, solver=solver)
        if tiny:
            cfg = replace(cfg, epochs=3)
        cells = []
        for d in devices:
            rec, trainer = fit(ratings, None, replace(cfg, device=d))
            cells.append(f"{d} {rec.info['metrics']['valid_rmse']:.4f} in {trainer.train_seconds:.1f} s")
        gap = ""
        if len(cells) > 1:
            a, b = (float(c.split()[1]) for c in cells[:2])
            gap = f"|CUDA - CPU| = {abs(a - b):.4f}"
        rows.append((f"{name} {model}/{solver}", cells[0], cells[1] if len(cells) > 1 else "", gap))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="small sizes: a smoke run (seconds, any machine)")
    args = p.parse_args()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if args.tiny:
        sizes = {"sgd": (100_000, 2_000, 500, 2), "sweep": (50_000, 600, 400, 2)}
    else:
        sizes = {"sgd": (20_000_000, 20_000, 5_000, 4), "sweep": (1_000_000, 6_040, 3_706, 3)}
    rows = []
    for part, run in (("sgd", lambda: sgd_speed(devices, *sizes["sgd"])),
                      ("sweeps", lambda: sweep_seconds(devices, *sizes["sweep"])),
                      ("ml-100k", lambda: ml100k_accuracy(devices, args.tiny))):
        t0 = time.perf_counter()
        part_rows = run()
        rows += part_rows
        print(f"[{part} done in {time.perf_counter() - t0:.0f} s]", *("  ".join(map(str, r)) for r in part_rows),
              sep="\n", flush=True)  # shown as it comes, in case a time limit stops the run
    widths = [max(len(str(row[c])) for row in rows) for c in range(4)]
    gpu = torch.cuda.get_device_name(0) if "cuda" in devices else "no CUDA"
    print(f"\nissue #13 figures on {gpu}, CPU threads: {torch.get_num_threads()}")
    for row in rows:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)))


if __name__ == "__main__":
    main()
