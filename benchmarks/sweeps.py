"""Seconds per ALS / Gibbs sweep and peak memory, from ML-100K to 100M ratings; the default recipe end to end.

    LATENTREC_DATA=../shared/data python benchmarks/sweeps.py                       # 100k, ml1m-shaped, 10m
    python benchmarks/sweeps.py --sizes 10m --procs 1 2                             # torchrun speedup at 10M
    python benchmarks/sweeps.py --old /tmp/old/src --fastai /tmp/fastai-venv/bin/python
    python benchmarks/sweeps.py --sizes 100m --dir /big --sweeps 3                  # through the lean reader

Every measurement runs in a fresh process (``ru_maxrss`` is that process's peak resident memory,
data included). Sizes: ``100k`` is the quickstart split (ML-100K, 20 % held out with seed 42);
``ml1m`` is synthetic with ML-1M's shape (6,040 users x 3,706 items, 1M ratings); ``10m`` 200k
users x 50k items; ``100m`` the same tables, written once with ``latentrec synth`` to ``--dir`` and
read back by the lean reader (12 bytes a rating). ``sweep`` rows build the runner of the recipe
(ALS: k=40 at 100k/ml1m; Gibbs k=10, its model sized for the recipe's 50 kept samples; ``--k``
at 10m/100m) and time ``--sweeps`` sweeps (median of all but the first, which also loads the
compiled kernels). ``recipe`` rows run ``fit`` with the default recipe (Gibbs, 60 sweeps, 20 %
validation) and report the training loop's seconds, the whole ``fit`` and the validation RMSE.

``--old SRC`` runs the same rows with another checkout's ``src`` first on ``PYTHONPATH`` (the
reference in the same run); ``--fastai PYTHON`` runs fastai's book recipe (``collab_learner``,
50 factors, ``y_range=(0, 5.5)``, ``fit_one_cycle(5, 5e-3, wd=0.1)``, bs 64) on the quickstart
split with that interpreter; ``--procs 1 2`` times the sweeps under ``torchrun`` with that many
processes (rank 0's timings). Children use numba's workqueue threading layer, as the ``latentrec``
program does, unless ``NUMBA_THREADING_LAYER`` says otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, os, resource, sys, time
import numpy as np, torch
from latentrec.config import TrainConfig
from latentrec.data.batches import Encoded

size, what, solver, k, sweeps, folder = sys.argv[1:7]
k, sweeps = int(k), int(sweeps)

def data():
    if size == "100k":
        from latentrec.data.ratings import load_ratings
        from latentrec.data.split import random_split
        from latentrec.data.vocab import Vocab
        df = load_ratings("ml-100k").df
        tr, va = random_split(df, 0.2, 42)
        users, items = Vocab.from_ids(tr["user"]), Vocab.from_ids(tr["item"])
        from latentrec.training.fit import encode
        return encode(tr, users, items), encode(va, users, items), len(users), len(items)
    if size == "100m":
        from latentrec.data.lean import read_split
        split = read_split(os.path.join(folder, "100m.parquet"), valid_pct=0.0, seed=42)
        return split.train, None, len(split.users), len(split.items)
    from latentrec.data.synth import SynthSpec, synth_arrays
    n, nu, ni = {"ml1m": (1_000_000, 6040, 3706), "10m": (10_000_000, 200_000, 50_000)}[size]
    u, i, r = synth_arrays(SynthSpec(n, nu, ni, seed=0))
    u += 1; i += 1  # index 0 is the unknown id
    if what == "recipe":
        cut = np.random.default_rng(42).permutation(n) < 0.8 * n
        return Encoded(u[cut], i[cut], r[cut]), Encoded(u[~cut], i[~cut], r[~cut]), nu + 1, ni + 1
    return Encoded(u, i, r), None, nu + 1, ni + 1

train, valid, n_users, n_items = data()
out = {"n_train": len(train)}
if what == "recipe":
    from latentrec.training.loop import Trainer
    from latentrec.training.fit import make_model
    cfg = TrainConfig(device="cpu").resolved()
    t0 = time.perf_counter()
    torch.manual_seed(42)
    model = make_model(cfg, n_users, n_items, (0.5, 5.5))
    trainer = Trainer(model, train, valid, cfg, clip=(1.0, 5.0))
    trainer.fit()
    out.update(fit_s=time.perf_counter() - t0, train_s=trainer.train_seconds,
               valid_rmse=min(h["valid_rmse"] for h in trainer.history),
               last_rmse=trainer.history[-1]["valid_rmse"])
else:
    from latentrec.solvers.distributed import data_parallel
    from latentrec.solvers.runners import RUNNERS
    from latentrec.training.fit import make_model
    recipe = dict(epochs=60) if solver == "bayes" else dict(epochs=sweeps)
    cfg = TrainConfig(solver=solver, device="cpu", n_factors=k or None, **recipe).resolved()
    model = make_model(cfg, n_users, n_items, (0.5, 5.5))
    t0 = time.perf_counter()
    runner = data_parallel(RUNNERS[solver], model, train, cfg, torch.device("cpu"))
    out["setup_s"] = time.perf_counter() - t0
    threads = getattr(runner, "torch_threads", None)
    if threads:
        torch.set_num_threads(threads)
    times = []
    with torch.no_grad():
        for _ in range(sweeps):
            t = time.perf_counter()
            mse = runner.epoch(lambda f: 1.0)
            times.append(time.perf_counter() - t)
    out.update(sweep_s=float(np.median(times[1:] if len(times) > 1 else times)), first_s=times[0],
               train_rmse=mse ** 0.5, k=cfg.n_factors)
out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
if int(os.environ.get("RANK", 0)) == 0:
    print("RESULT " + json.dumps(out))
"""

FASTAI = r"""
import json, sys, time
import numpy as np, pandas as pd
from fastai.collab import CollabDataLoaders, collab_learner
from fastai.data.transforms import IndexSplitter
import torch
df = pd.read_csv(sys.argv[1], sep="\t", names=["user", "item", "rating", "timestamp"])
valid = np.sort(np.random.default_rng(42).permutation(len(df))[:int(round(0.2 * len(df)))])
dls = CollabDataLoaders.from_df(df[["user", "item", "rating"]], bs=64, splitter=IndexSplitter(valid))  # the book's bs
learn = collab_learner(dls, n_factors=50, y_range=(0, 5.5))
t = time.perf_counter()
with learn.no_bar(), learn.no_logging():
    learn.fit_one_cycle(5, 5e-3, wd=0.1)
seconds = time.perf_counter() - t
pred, targ = learn.get_preds()
print("RESULT " + json.dumps({"train_s": seconds, "valid_rmse": float(((pred.view(-1) - targ.view(-1)) ** 2).mean().sqrt())}))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child(args: argparse.Namespace, src: str | None, size: str, what: str, solver: str, procs: int = 1) -> dict:
    env = {"NUMBA_THREADING_LAYER": "workqueue"} | dict(os.environ)  # what the latentrec program picks
    if src:
        env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    k = args.k if size in ("10m", "100m") else 0
    argv = [size, what, solver, str(k), str(args.sweeps), str(args.dir)]
    if procs > 1:
        script = Path(args.dir) / "sweeps_child.py"
        script.write_text(CHILD)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(procs), "--master-addr",
               "127.0.0.1", "--master-port", str(free_port()), str(script), *argv]
    else:
        cmd = [sys.executable, "-c", CHILD, *argv]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        return {"error": (done.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(lines[-1][7:])


def fastai_row(python: str) -> dict:
    root = Path(os.environ.get("LATENTREC_DATA", Path.home() / ".cache" / "latentrec"))
    done = subprocess.run([python, "-c", FASTAI, str(root / "ml-100k" / "u.data")], capture_output=True, text=True,
                          check=False)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        return {"error": (done.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(lines[-1][7:])


def ensure_100m(folder: Path) -> None:
    path = folder / "100m.parquet"
    if not path.exists():
        subprocess.run([sys.executable, "-m", "latentrec", "synth", "--ratings", "100000000", "--users", "200000",
                        "--items", "50000", "--out", str(path)], check=True)


def show(label: str, row: dict) -> None:
    if "error" in row:
        print(f"{label:<44} failed: {row['error']}")
    elif "sweep_s" in row:
        print(f"{label:<44} {row['sweep_s']:8.3f} s/sweep  (first {row['first_s']:.2f} s, setup {row['setup_s']:.2f} s, "
              f"k={row['k']})  peak {row['peak_mb']:7.0f} MB  train RMSE {row['train_rmse']:.4f}")
    elif "fit_s" in row:
        print(f"{label:<44} loop {row['train_s']:6.2f} s  fit {row['fit_s']:6.2f} s  valid RMSE best {row['valid_rmse']:.4f} "
              f"last {row['last_rmse']:.4f}  peak {row['peak_mb']:7.0f} MB")
    else:
        print(f"{label:<44} {row['train_s']:6.2f} s  valid RMSE {row['valid_rmse']:.4f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="+", default=["100k", "ml1m", "10m"], choices=["100k", "ml1m", "10m", "100m"])
    p.add_argument("--solvers", nargs="+", default=["als", "bayes"], choices=["als", "bayes"])
    p.add_argument("--sweeps", type=int, default=6, help="sweeps timed per sweep row (default 6)")
    p.add_argument("--k", type=int, default=10, help="factors at 10m and 100m (default 10)")
    p.add_argument("--procs", type=int, nargs="+", default=[1], help="processes (torchrun when > 1)")
    p.add_argument("--no-recipe", action="store_true", help="skip the end-to-end default recipe rows")
    p.add_argument("--old", help="another checkout's src folder, measured first as the reference")
    p.add_argument("--fastai", metavar="PYTHON", help="an interpreter with fastai, for the book recipe row")
    p.add_argument("--dir", default="/tmp", help="where the 100M file is written once (default /tmp)")
    args = p.parse_args()
    if "100m" in args.sizes:
        ensure_100m(Path(args.dir))
    if args.fastai:
        show("fastai book recipe, quickstart split", fastai_row(args.fastai))
    versions = ([("old", args.old)] if args.old else []) + [("new", None)]
    for size in args.sizes:
        if size in ("100k", "ml1m") and not args.no_recipe:
            for name, src in versions:
                show(f"{size} default recipe [{name}]", child(args, src, size, "recipe", "bayes"))
        for solver in args.solvers:
            for procs in args.procs:
                for name, src in versions if procs == 1 else [("new", None)]:
                    show(f"{size} {solver} sweep, {procs} proc [{name}]", child(args, src, size, "sweep", solver, procs))


if __name__ == "__main__":
    main()
