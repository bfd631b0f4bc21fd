"""The training loop: one epoch at a time through a solver's runner (``solvers/runners.py``), with
schedule, validation, history, best epoch, divergence checks and callbacks."""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from latentrec.config import TrainConfig, parse_schedule, ratings_scale, recipe_value
from latentrec.data.batches import Encoded
from latentrec.data.csr import bincount
from latentrec.models.baselines import fit_fallback
from latentrec.models.scoring import predicted, rmse_mae, scored_by_kernel
from latentrec.solvers.base import Runner
from latentrec.solvers.distributed import data_parallel
from latentrec.solvers.diverged import Diverged
from latentrec.solvers.runners import RUNNERS
from latentrec.training.callback import Callback


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


def copy_state(model: torch.nn.Module, into: dict | None = None) -> dict:
    """The model's weights copied into ``into`` in place (no allocation once the buffers exist), or into new tensors."""
    state = model.state_dict()
    if into is None or into.keys() != state.keys() or any(into[k].shape != v.shape for k, v in state.items()):
        return {k: v.detach().clone() for k, v in state.items()}
    for k, v in state.items():
        into[k].copy_(v)
    return into


def _all_finite(model: torch.nn.Module) -> bool:
    """No weight is NaN or infinite: each table's sum is finite (40x cheaper than ``isfinite(...).all()``;
    a finite table whose sum overflows float32 has diverged as well)."""
    with torch.no_grad():
        return bool(torch.stack([p.sum(dtype=torch.float32) for p in model.parameters()]).isfinite().all())


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
    callbacks: list[Callback] = field(default_factory=list)
    clip: tuple[float, float] | None = None  # predictions are clipped to the rating scale
    history: list[dict] = field(default_factory=list)
    diverged: str | None = None
    _divergence: tuple[str, str] | None = None  # what happened, and the advice: the sentence is made once fit ends
    best_epoch: int | None = None
    train_seconds: float = 0.0
    start_epoch: int = 0
    best_state: dict | None = field(default=None, repr=False)
    best_rmse: float = math.inf
    runner: Runner | None = field(default=None, repr=False)
    data_hash: str | None = field(default=None, repr=False)  # checkpoint.fingerprint, once the runner exists
    fallback: tuple[np.ndarray, np.ndarray] = field(init=False, repr=False)  # baselines.fit_fallback of ``train``

    def __post_init__(self):
        n_users, n_items = self.model_sizes()
        counts = bincount(self.train.users, n_users), bincount(self.train.items, n_items)
        self.user_counts, self.item_counts = map(torch.from_numpy, counts)
        self.fallback = fit_fallback(self.train.users, self.train.items, self.train.ratings, counts)
        if self.valid is not None and scored_by_kernel(self.model, self.device):
            from latentrec.solvers.sgd_kernel import block_order

            block_order(self.valid, n_users, n_items)  # scored every epoch by the kernel's predict

    def __repr__(self) -> str:  # the data and every epoch's record made a notebook cell of 20,000 characters
        valid = f", valid {len(self.valid):,}" if self.valid is not None else ""
        best = f", best epoch {self.best_epoch} (valid RMSE {self.best_rmse:.4f})" if math.isfinite(self.best_rmse) else ""
        said = f", diverged: {self.diverged!r}" * bool(self.diverged)
        return (f"Trainer({type(self.model).__name__}, solver {self.cfg.solver}, train {len(self.train):,}{valid}, "
                f"{len(self.history)} epochs{best}{said})")

    def _lower_lr(self) -> str:
        """Advice after a divergence: the recipe's rate for these ratings when the rate was above it (and the
        recipe's optimizer ran), else a third."""
        cfg = self.cfg
        recipe = recipe_value(cfg.model, cfg.solver, "lr", ratings_scale(self.train.ratings))
        if cfg.lr > recipe > 0 and (cfg.solver == "sgd" or cfg.opt == TrainConfig.opt):
            return f"Lower the learning rate: try lr (--lr) {recipe:.3g}, the recipe's for these ratings."
        return f"Lower the learning rate: try lr (--lr) {cfg.lr / 3:.3g}."

    def model_sizes(self) -> tuple[int, int]:
        return self.model.n_users, self.model.n_items

    def predict(self, data: Encoded) -> np.ndarray:
        """The model's predictions for ``data`` (clipped to the rating scale), unknown ids falling back to the
        training rows' damped means as a saved model's do (``Recommender.predict_encoded``)."""
        return predicted(self.model, data, self.device, self.clip, self.fallback)

    def fit(self) -> list[dict]:
        cfg = self.cfg
        runner = self.runner = data_parallel(RUNNERS[cfg.solver], self.model, self.train, cfg, self.device)
        schedule = parse_schedule(cfg.schedule, cfg.lr, cfg.epochs)
        for cb in self.callbacks:
            cb.on_fit_start(self)
        with torch_threads(runner.torch_threads):
            self._epochs(runner, schedule)
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        elif self.history:
            self.best_epoch = self.history[-1]["epoch"]
        if self._divergence:  # the weights kept are the best epoch's (by validation when there is one), not the last's
            said, advice = self._divergence
            kept = f"; kept the weights of epoch {self.best_epoch}" if self.history else ""
            self.diverged = f"{said}{kept}. {advice}"
        return self.history

    def _epochs(self, runner, schedule) -> None:
        cfg = self.cfg
        good = copy_state(self.model)
        t_start, before = time.perf_counter(), self.train_seconds  # before: a resumed run's time until its checkpoint
        for epoch in range(self.start_epoch, cfg.epochs):
            t0 = time.perf_counter()
            lr = schedule(epoch)
            try:
                mse = runner.epoch(lambda frac, e=epoch: schedule(e + frac))
                if not _all_finite(self.model):
                    raise Diverged("the weights became infinite or NaN")
            except Diverged as why:
                self.model.load_state_dict(good)
                advice = ("Regularize more or use fewer factors: try a larger wd (--wd) or a smaller n_factors "
                          "(--n-factors)." if runner.closed_form else self._lower_lr())
                self._divergence = f"Training diverged in epoch {epoch + 1} ({why})", advice
                break
            runner.limit = max(10 * mse, 1.0) if math.isinf(runner.limit) else runner.limit
            self.model.set_unknown_rows(self.user_counts, self.item_counts)
            record = {"epoch": epoch + 1, "train_rmse": math.sqrt(mse)}
            if not runner.closed_form:  # ALS sweeps and Gibbs samples have no lr
                record["lr"] = lr
            if self.valid is not None and len(self.valid):
                record["valid_rmse"], record["valid_mae"] = rmse_mae(self.predict(self.valid), self.valid.ratings)
                after_burn_in = epoch + 1 > getattr(runner, "burn_in", 0)  # a Gibbs model averages draws after it
                if record["valid_rmse"] < self.best_rmse and after_burn_in:
                    self.best_rmse, self.best_epoch = record["valid_rmse"], epoch + 1
                    self.best_state = copy_state(self.model, self.best_state)
            record["seconds"] = time.perf_counter() - t0
            self.history.append(record)
            good = copy_state(self.model, good)
            self.train_seconds = before + time.perf_counter() - t_start  # so far: what a checkpoint saves
            for cb in self.callbacks:
                cb.on_epoch_end(self, record)
        self.train_seconds = before + time.perf_counter() - t_start
