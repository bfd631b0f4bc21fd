"""The training loop: one epoch at a time, with validation, history, divergence checks and callbacks.

An *epoch runner* does one pass over the training ratings and returns the mean squared error it
saw: :class:`AutogradRunner` is the seed's hand-written loop (predict -> loss -> backward ->
step -> zero grad); :class:`KernelRunner` is the fused per-rating SGD kernel for the dot model.
Everything around the pass (schedule, validation, best epoch, divergence, callbacks) is shared.
"""

from __future__ import annotations

import copy
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from .batches import Batches, Encoded
from .config import TrainConfig
from .csr import bincount
from .distributed import data_parallel
from .errors import ConfigError
from .models import DotProductBias
from .optim import make_optimizer, parse_schedule


class Callback(Protocol):
    def on_epoch_end(self, trainer: "Trainer", record: dict) -> None: ...


class Diverged(Exception):
    """Raised inside an epoch when the loss or the weights stop being finite or explode."""


class AutogradRunner:
    """Batched training through autograd with our own optimizer; works for every model and device."""

    def __init__(self, model: torch.nn.Module, data: Encoded, cfg: TrainConfig, device: torch.device):
        self.model = model
        self.batches = Batches(data, bs=cfg.bs, shuffle=True, device=device, seed=cfg.seed)
        self.opt = make_optimizer(cfg.opt, model.parameters(), cfg.wd, cfg.wd_mode, cfg.momentum)
        self.loss = cfg.loss
        self.limit = math.inf

    def epoch(self, lr_at) -> float:
        self.model.train()
        total, n = 0.0, 0
        nb = len(self.batches)
        for b, (x, y) in enumerate(self.batches):
            pred = self.model(x)
            mse = ((pred - y) ** 2).mean()
            loss = mse.sqrt() if self.loss == "rmse" else mse
            loss.backward()
            value = float(mse.detach())
            if not math.isfinite(value) or value > self.limit:
                raise Diverged(f"the batch loss reached {value:.3g}")
            self.opt.step(lr_at(b / nb))
            self.opt.zero_grad()
            total += value * len(y)
            n += len(y)
        return total / max(n, 1)


class KernelRunner:
    """The fused per-rating SGD kernel (numba, CPU) updating a ``DotProductBias`` in place.

    While it trains, torch gets one thread: its work is only the small per-epoch checks and
    copies, and a second OpenMP thread spinning beside numba's made them 3-5x slower (ML-100K
    u1, 60 epochs: 1.2-1.4 s with torch's 2 threads, 0.34-0.73 s with one).
    """

    torch_threads = 1

    def __init__(self, model: torch.nn.Module, data: Encoded, cfg: TrainConfig, device: torch.device):
        import numba

        from .sgd_kernel import BlockedRatings, default_grid

        if getattr(model, "kind", None) != "dot":
            raise ConfigError("--solver sgd trains the dot model only; use --solver autograd for --model nn.")
        self.model = model
        self.rng = np.random.default_rng(cfg.seed)
        n_users, n_items = model.user_factors.shape[0], model.item_factors.shape[0]
        grid = default_grid(len(data), numba.get_num_threads())
        self.data = BlockedRatings(data.users, data.items, data.ratings, n_users, n_items, grid=grid, rng=self.rng)
        self.wd = cfg.wd
        self.limit = math.inf

    def epoch(self, lr_at) -> float:
        from .sgd_kernel import sgd_epoch

        m = self.model
        with torch.no_grad():
            mse = sgd_epoch(self.data, m.user_factors.data.numpy(), m.item_factors.data.numpy(),
                            m.user_bias.data.numpy(), m.item_bias.data.numpy(), lr_at(0.0), self.wd,
                            m.y_range, m.use_bias, self.rng)
        if not math.isfinite(mse) or mse > self.limit:
            raise Diverged(f"the epoch's loss reached {mse:.3g}")
        return mse


def sgd_runner(model: torch.nn.Module, data: Encoded, cfg: TrainConfig, device: torch.device):
    """``--solver sgd``: the numba kernel on the CPU, batched torch updates (sgd_torch.py) elsewhere."""
    if device.type == "cpu":
        return KernelRunner(model, data, cfg, device)
    from .sgd_torch import TorchSGDRunner

    return TorchSGDRunner(model, data, cfg, device)


def als_runner(model: torch.nn.Module, data: Encoded, cfg: TrainConfig, device: torch.device):
    """``--solver als``: one epoch = one alternating least-squares sweep (als.py)."""
    from .als import ALSRunner

    return ALSRunner(model, data, cfg, device)


def gibbs_runner(model: torch.nn.Module, data: Encoded, cfg: TrainConfig, device: torch.device):
    """``--solver bayes``: one epoch = one Gibbs sweep (bayes.py)."""
    from .bayes import GibbsRunner

    return GibbsRunner(model, data, cfg, device)


RUNNERS = {"autograd": AutogradRunner, "sgd": sgd_runner, "als": als_runner, "bayes": gibbs_runner}


def scored_by_kernel(model: torch.nn.Module, device: torch.device) -> bool:
    """Whether :func:`predict_rows` scores ``model`` with the compiled kernel (a plain dot model on the CPU)."""
    return type(model) is DotProductBias and device.type == "cpu"


@torch.no_grad()
def predict_rows(model: torch.nn.Module, data: Encoded, device: torch.device, bs: int = 65536) -> np.ndarray:
    """Model predictions for encoded rows: the compiled kernel for the dot model on the CPU (parallel, no
    temporaries: 20M rows in a fraction of a second), batches through the model's forward otherwise."""
    if scored_by_kernel(model, device):
        from .sgd_kernel import predict

        m = model
        tables = [t.detach().numpy() for t in (m.user_factors, m.item_factors, m.user_bias, m.item_bias)]
        return predict(data.users, data.items, *tables, m.y_range, m.use_bias)
    model.eval()
    out = []
    for x, _ in Batches(data, bs=bs, shuffle=False, device=device):
        out.append(model(x).float().cpu())
    return torch.cat(out).numpy() if out else np.zeros(0, np.float32)


def rmse_mae(pred: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """RMSE and MAE, a slice at a time (no float64 copies of 20M-row columns)."""
    sq = ab = 0.0
    for a in range(0, len(target), 1 << 18):
        err = pred[a:a + (1 << 18)].astype(np.float64) - target[a:a + (1 << 18)]
        sq += float(err @ err)
        ab += float(np.abs(err).sum())
    n = len(target)
    return (math.sqrt(sq / n), ab / n) if n else (math.nan, math.nan)


@contextmanager
def torch_threads(n: int | None):
    """Run the block with torch limited to ``n`` threads (``None``: unchanged)."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n:
            torch.set_num_threads(before)


@dataclass
class Trainer:
    """Fit ``model`` on ``train``, scoring ``valid`` (if any) after every epoch.

    After training the model holds the weights of the best validation epoch (or the last epoch
    without validation). If training diverges, the last good weights are kept and
    ``diverged`` holds a sentence saying what happened and which setting to lower. The
    ``--solver sgd`` kernel reorders ``train`` in place (into its blocks), and the dot model on
    the CPU reorders big ``valid`` sets in place (for cache-friendly scoring); no metric depends on row order.
    """

    model: torch.nn.Module
    train: Encoded
    valid: Encoded | None
    cfg: TrainConfig
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    callbacks: list = field(default_factory=list)
    clip: tuple[float, float] | None = None  # predictions are clipped to the rating scale
    history: list[dict] = field(default_factory=list)
    diverged: str | None = None
    best_epoch: int | None = None
    train_seconds: float = 0.0
    start_epoch: int = 0
    best_state: dict | None = field(default=None, repr=False)
    best_rmse: float = math.inf
    runner: object = field(default=None, repr=False)
    data_hash: str | None = field(default=None, repr=False)  # checkpoint.fingerprint, once the runner exists

    def __post_init__(self):
        n_users, n_items = self.model_sizes()
        self.user_counts = torch.from_numpy(bincount(self.train.users, n_users))
        self.item_counts = torch.from_numpy(bincount(self.train.items, n_items))
        if self.valid is not None and scored_by_kernel(self.model, self.device):
            from .sgd_kernel import block_order

            block_order(self.valid, n_users, n_items)  # scored every epoch by the kernel's predict

    def model_sizes(self) -> tuple[int, int]:
        return self.model.n_users, self.model.n_items

    def predict(self, data: Encoded) -> np.ndarray:
        pred = predict_rows(self.model, data, self.device)
        return np.clip(pred, *self.clip) if self.clip else pred

    def fit(self) -> list[dict]:
        cfg = self.cfg
        runner = self.runner = data_parallel(RUNNERS[cfg.solver], self.model, self.train, cfg, self.device)
        schedule = parse_schedule(cfg.schedule, cfg.lr, cfg.epochs)
        for cb in self.callbacks:  # e.g. a Checkpointer restoring a saved run
            if hasattr(cb, "on_fit_start"):
                cb.on_fit_start(self)
        with torch_threads(getattr(runner, "torch_threads", None)):
            self._epochs(runner, schedule)
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        elif self.history:
            self.best_epoch = self.history[-1]["epoch"]
        return self.history

    def _epochs(self, runner, schedule) -> None:
        cfg = self.cfg
        good = copy.deepcopy(self.model.state_dict())
        t_start = time.perf_counter()
        for epoch in range(self.start_epoch, cfg.epochs):
            t0 = time.perf_counter()
            lr = schedule(epoch)
            try:
                mse = runner.epoch(lambda frac, e=epoch: schedule(e + frac))
                if not all(torch.isfinite(p).all() for p in self.model.parameters()):
                    raise Diverged("the weights became infinite or NaN")
            except Diverged as why:
                self.model.load_state_dict(good)
                advice = ("Regularize more or use fewer factors: try a larger --wd or a smaller --n-factors."
                          if getattr(runner, "closed_form", False) else
                          f"Lower the learning rate: try --lr {cfg.lr / 3:.3g}.")
                self.diverged = (f"Training diverged in epoch {epoch + 1} ({why}); kept the weights of epoch "
                                 f"{epoch}. {advice}")
                break
            runner.limit = max(10 * mse, 1.0) if math.isinf(runner.limit) else runner.limit
            self.model.set_unknown_rows(self.user_counts, self.item_counts)
            record = {"epoch": epoch + 1, "train_rmse": math.sqrt(mse)}
            if not getattr(runner, "closed_form", False):  # ALS sweeps and Gibbs samples have no lr
                record["lr"] = lr
            if self.valid is not None and len(self.valid):
                record["valid_rmse"], record["valid_mae"] = rmse_mae(self.predict(self.valid), self.valid.ratings)
                if record["valid_rmse"] < self.best_rmse:
                    self.best_rmse, self.best_epoch = record["valid_rmse"], epoch + 1
                    self.best_state = copy.deepcopy(self.model.state_dict())
            record["seconds"] = time.perf_counter() - t0
            self.history.append(record)
            good = copy.deepcopy(self.model.state_dict())
            for cb in self.callbacks:
                cb.on_epoch_end(self, record)
        self.train_seconds += time.perf_counter() - t_start
