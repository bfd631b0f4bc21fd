"""Epoch runners: one pass over the training ratings, returning the mean squared error it saw.

Every solver extends :class:`~latentrec.solvers.base.Runner`: ``epoch(lr_at) -> mse``, a divergence
``limit`` (an epoch whose loss passes it raises ``diverged.Diverged``), and, where it has state of
its own, ``solver_state``/``load_solver_state`` for checkpoints. :class:`AutogradRunner` is the seed's
hand-written loop (predict -> loss -> backward -> step -> zero grad); :class:`KernelRunner` the
fused per-rating SGD kernel for the dot model; ALS and Gibbs sweeps live in ``als.py``/``gibbs.py``.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from latentrec.config import TrainConfig
from latentrec.data.batches import Batches, Encoded
from latentrec.errors import ConfigError, one_line
from latentrec.solvers.base import Runner
from latentrec.solvers.deterministic import deterministic
from latentrec.solvers.diverged import check_loss
from latentrec.solvers.optim import make_optimizer

log = logging.getLogger(__name__)


CHECK_EVERY = 64  # batches between divergence checks off the CPU


class AutogradRunner(Runner):
    """Batched training through autograd with our own optimizer; works for every model and device.
    """

    def __init__(self, model: torch.nn.Module, data: Encoded, cfg: TrainConfig, device: torch.device):
        self.model = model
        self.batches = Batches(data, bs=cfg.bs, shuffle=True, device=device, seed=cfg.seed)
        self.opt = make_optimizer(cfg.opt, model.parameters(), cfg.wd, cfg.wd_mode, cfg.momentum)
        self.loss = cfg.loss

    def epoch(self, lr_at) -> float:
        """One pass with deterministic kernels; the squared errors are summed on the device and read at the end.
        Divergence is checked every batch on the CPU, every ``CHECK_EVERY`` batches elsewhere (each check
        waits for the device)."""
        self.model.train()
        total = torch.zeros((), dtype=torch.float64, device=self.batches.device)
        nb = len(self.batches)
        every = 1 if self.batches.device.type == "cpu" else CHECK_EVERY
        with deterministic():
            for b, (x, y) in enumerate(self.batches):
                pred = self.model(x)
                sq = ((pred - y) ** 2).sum()
                mse = sq / len(y)
                loss = mse.sqrt() if self.loss == "rmse" else mse
                loss.backward()
                if self.checks_batches and (b + 1) % every == 0:
                    value = float(mse.detach())
                    check_loss(value, self.limit, "the batch loss")
                self.opt.step(lr_at(b / nb))
                self.opt.zero_grad()
                total += sq.detach()
        self.opt.settle()
        value = float(total) / max(len(self.batches.y), 1)
        return check_loss(value, self.limit)


class KernelRunner(Runner):
    """The fused per-rating SGD kernel (numba, CPU) updating a ``DotProductBias`` in place.

    While it trains, torch gets one thread: its work is only the small per-epoch checks and
    copies, and a second OpenMP thread spinning beside numba's made them 3-5x slower (ML-100K
    u1, 60 epochs: 1.2-1.4 s with torch's 2 threads, 0.34-0.73 s with one).
    """

    torch_threads = 1

    def __init__(self, model: torch.nn.Module, data: Encoded, cfg: TrainConfig, device: torch.device):
        from latentrec.parallel import numba_threads
        from latentrec.solvers.sgd_kernel import BlockedRatings, default_grid

        if getattr(model, "kind", None) != "dot":
            raise ConfigError("solver 'sgd' trains the dot model only; use solver 'autograd' for model 'nn'.")
        self.model = model
        self.rng = np.random.default_rng(cfg.seed)
        n_users, n_items = model.user_factors.shape[0], model.item_factors.shape[0]
        grid = default_grid(len(data), numba_threads())
        self.data = BlockedRatings(data.users, data.items, data.ratings, n_users, n_items, grid=grid, rng=self.rng)
        self.wd = cfg.wd

    def epoch(self, lr_at) -> float:
        from latentrec.solvers.sgd_kernel import sgd_epoch

        m = self.model
        with torch.no_grad():
            mse = sgd_epoch(self.data, m.user_factors.data.numpy(), m.item_factors.data.numpy(),
                            m.user_bias.data.numpy(), m.item_bias.data.numpy(), lr_at(0.0), self.wd,
                            m.y_range, m.use_bias, self.rng)
        return check_loss(mse, self.limit)


def sgd_runner(model: torch.nn.Module, data: Encoded, cfg: TrainConfig, device: torch.device,
               batched: bool | None = None):
    """``--solver sgd``: the numba kernel on the CPU; off it the Triton per-rating kernel (sgd_triton.py)
    where Triton runs (CUDA), else batched torch updates (sgd_torch.py: MPS, no Triton, a kernel Triton
    could not compile). ``--bs`` above 1 asks for the batched updates on every device.

    ``batched=True`` takes the GPU's path on the CPU too (tests and benchmarks run its algorithm there:
    Triton's under its interpreter, ``TRITON_INTERPRET=1``, else the batched one).
    """
    if not batched and device.type == "cpu" and cfg.bs <= 1:
        return KernelRunner(model, data, cfg, device)
    from latentrec.solvers import sgd_triton
    from latentrec.solvers.sgd_torch import TorchSGDRunner

    if sgd_triton.usable(device) and cfg.bs <= 1:
        try:
            return sgd_triton.TritonSGDRunner(model, data, cfg, device)
        except Exception as e:  # noqa: BLE001 - Triton's compile errors have many types; the batched path always runs
            log.warning("The Triton SGD kernel did not compile on %s (%s); training with batched updates instead.",
                        device, one_line(e)[:300] or type(e).__name__)
    return TorchSGDRunner(model, data, cfg, device)


def als_runner(model: torch.nn.Module, data: Encoded, cfg: TrainConfig, device: torch.device, part=None):
    """``--solver als``: one epoch = one alternating least-squares sweep (als.py); ``part``: this rank's rows."""
    from latentrec.solvers.als import ALSRunner

    return ALSRunner(model, data, cfg, device, part)


def gibbs_runner(model: torch.nn.Module, data: Encoded, cfg: TrainConfig, device: torch.device, part=None):
    """``--solver bayes``: one epoch = one Gibbs sweep (gibbs.py); ``part``: this rank's rows."""
    from latentrec.solvers.gibbs import GibbsRunner

    return GibbsRunner(model, data, cfg, device, part)


RUNNERS = {"autograd": AutogradRunner, "sgd": sgd_runner, "als": als_runner, "bayes": gibbs_runner}
