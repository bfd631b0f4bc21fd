"""Speed of every training path on every available device, measured on the same data in one run.

For each (device, solver, batch size): training ratings/s (median pure-training epoch),
seconds of training until the validation RMSE first reaches a target, inference scores/s
(``score_users``: every item for a block of users) and peak memory (resident set on the CPU,
reset before each run through ``/proc/self/clear_refs``; allocator peak on CUDA).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from latentrec.config import TrainConfig
from latentrec.data.batches import Encoded
from latentrec.devices import pick_device
from latentrec.models.scoring import predict_rows, rmse_mae
from latentrec.solvers import sgd_triton
from latentrec.solvers.diverged import Diverged
from latentrec.solvers.runners import RUNNERS


@dataclass(frozen=True)
class Setup:
    device: str
    solver: str  # sgd (the numba kernel, CPU), sgd-triton (per-rating Triton kernel, CUDA), sgd-torch, autograd
    bs: int  # sgd-torch bs=1: the batch --solver sgd takes off the CPU (sgd_torch.batch_size)

    @property
    def name(self) -> str:
        if self.bs > 1:
            return f"{self.solver} bs={self.bs}"
        return f"{self.solver} (its own batch)" if self.solver == "sgd-torch" else self.solver


def default_setups(devices: list[str], batch_sizes: list[int]) -> list[Setup]:
    setups = []
    for d in devices:
        if d == "cpu":
            setups.append(Setup(d, "sgd", 1))
        elif sgd_triton.usable(torch.device(d)):
            setups.append(Setup(d, "sgd-triton", 1))
        setups += [Setup(d, "sgd-torch", bs) for bs in [1, *batch_sizes]]
        setups += [Setup(d, "autograd", bs) for bs in batch_sizes]
    return setups


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _peak_mb(device: torch.device) -> float | None:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB (macOS: bytes, overstated)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def config_for(setup: Setup, n_factors: int, epochs: int, seed: int) -> TrainConfig:
    solver = "autograd" if setup.solver == "autograd" else "sgd"
    return TrainConfig(model="dot", solver=solver, n_factors=n_factors, epochs=epochs, bs=setup.bs, seed=seed,
                       schedule="constant", device=setup.device).resolved()  # the rate fit uses, on every path


def run_setup(setup: Setup, train: Encoded, valid: Encoded, n_users: int, n_items: int, y_range, n_factors: int,
              epochs: int, seed: int = 0) -> dict:
    """Train ``epochs`` epochs; time each training pass and each validation separately."""
    from latentrec.models.dot import DotProductBias
    from latentrec.solvers.sgd_torch import TorchSGDRunner

    device = pick_device(setup.device)
    cfg = config_for(setup, n_factors, epochs, seed)
    _reset_peak(device)
    with torch.random.fork_rng():  # seeded weights without reseeding the caller's generator
        torch.manual_seed(seed)
        model = DotProductBias(n_users, n_items, n_factors, y_range).to(device)
    runner_cls = {"sgd-torch": TorchSGDRunner, "sgd-triton": sgd_triton.TritonSGDRunner}.get(setup.solver,
                                                                                             RUNNERS[cfg.solver])
    row = {"device": setup.device, "solver": setup.solver, "bs": setup.bs, "lr": cfg.lr}
    try:
        runner = runner_cls(model, train, cfg, device)
        row["batch"] = getattr(runner, "bs", setup.bs)  # ratings per update step
        train_s, curve = [], []
        for _ in range(epochs):
            sync(device)
            t0 = time.perf_counter()
            runner.epoch(lambda frac: cfg.lr)
            sync(device)
            train_s.append(time.perf_counter() - t0)  # a loss gone to NaN or inf raised Diverged (check_loss)
            curve.append(rmse_mae(predict_rows(model, valid, device), valid.ratings)[0])
    except Diverged as why:
        row.update(diverged=str(why))
        return row
    row["ratings_per_s"] = len(train) / float(np.median(train_s))
    row["curve"] = [(float(np.sum(train_s[:e + 1])), r) for e, r in enumerate(curve)]
    row["best_valid_rmse"] = min(curve)
    row["scores_per_s"] = _scores_per_s(model, device, n_users)
    row["peak_mb"] = _peak_mb(device)
    return row


@torch.no_grad()
def _scores_per_s(model, device: torch.device, n_users: int, block: int = 1024, repeats: int = 3) -> float:
    users = torch.arange(1, min(n_users, block + 1), device=device)
    model.score_users(users)
    sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        model.score_users(users)
    sync(device)
    return repeats * len(users) * model.n_items / (time.perf_counter() - t0)


def seconds_to_target(rows: list[dict], target: float | None) -> float:
    """Fill ``seconds_to_target`` in every row; ``None`` target means the median of the runs' best RMSEs."""
    bests = [r["best_valid_rmse"] for r in rows if "best_valid_rmse" in r]
    if target is None:
        target = float(np.median(bests)) if bests else math.nan
    for r in rows:
        r["target_rmse"] = target
        r["seconds_to_target"] = next((s for s, v in r.get("curve", []) if v <= target), None)
    return target
