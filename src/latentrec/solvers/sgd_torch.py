"""Funk/Koren SGD for ``DotProductBias`` as batched PyTorch ops: the GPU path of ``--solver sgd``.

A batch of ratings is gathered, predicted and its errors taken at once; each rating's update
(the same formula as the numba kernel: gradient of ``e**2 / 2`` plus ``wd`` times the touched
row) is scattered back with ``index_add_``, so a row rated twice in a batch gets both updates
summed. With one rating per batch this is exactly the kernel's step (see
``tests/test_sgd_kernel.py``); with bigger batches every update in a batch is computed from
the weights at the batch start, like Hogwild threads that see slightly stale rows.

Stale sums are harmless while a row rarely appears twice in one batch, and overshoot when it
appears often (a row in ``c`` updates of a batch takes ``c`` steps from the same point): with
8,192-rating batches on 600 x 300 planted data every row sat in about 20 updates per batch
and training stalled at RMSE 1.0 where the kernel reaches 0.22. So the batch follows the
tables (:func:`batch_size`: half the smaller table), the rate stays the kernel's per-rating
rate, and an epoch runs at its first rate as the kernel's does; the validation RMSE then
tracks the kernel's epoch by epoch (README, "GPU").
"""

from __future__ import annotations

import numpy as np
import torch

from latentrec.config import TrainConfig
from latentrec.data.batches import Encoded
from latentrec.solvers.base import Runner
from latentrec.solvers.deterministic import deterministic
from latentrec.solvers.diverged import check_loss

MIN_BS = 64


def batch_size(n_users: int, n_items: int) -> int:
    """Ratings per batch when the config asks for per-rating SGD (bs=1): half the smaller table, so an
    average row of it sits in one update of every other batch (at least ``MIN_BS``)."""
    return max(MIN_BS, min(n_users, n_items) // 2)


def kernel_order(n: int, n_users: int, n_items: int, seed: int | None) -> np.ndarray:
    """The order in which the CPU kernel visits ``n`` ratings with the same seed when they fit one block
    (``BlockedRatings`` with grid 1 deals rows to blocks, then shuffles), so both paths see the same sequence."""
    rng = np.random.default_rng(seed)
    rng.permutation(n_users), rng.permutation(n_items)
    return rng.permutation(n)


def ordered_columns(model: torch.nn.Module, data: Encoded, seed: int | None,
                    device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The int32 user, int32 item and float32 rating columns on ``device``, in the kernel's order."""
    order = torch.from_numpy(kernel_order(len(data), model.n_users, model.n_items, seed)).to(device)
    return tuple(torch.as_tensor(col, dtype=dtype).to(device)[order]
                 for col, dtype in ((data.users, torch.int32), (data.items, torch.int32), (data.ratings, torch.float32)))


@torch.no_grad()
def sgd_step(model, users: torch.Tensor, items: torch.Tensor, ratings: torch.Tensor, lr: float,
             wd: float) -> torch.Tensor:
    """One batched SGD step in place; returns the sum of squared errors of the batch."""
    P, Q = model.user_factors.data, model.item_factors.data
    bu, bi = model.user_bias.data, model.item_bias.data
    pu, qi = P.index_select(0, users), Q.index_select(0, items)
    z = (pu * qi).sum(1)
    if model.use_bias:
        z += bu[users] + bi[items]
    if model.y_range is not None:
        lo, hi = model.y_range
        s = torch.sigmoid(z)
        err = lo + (hi - lo) * s - ratings
        g = err * (hi - lo) * s * (1 - s)
    else:
        err = z - ratings
        g = err
    lg = (lr * g)[:, None]
    P.index_add_(0, users, (qi * lg).add_(pu, alpha=lr * wd), alpha=-1)
    Q.index_add_(0, items, (pu * lg).add_(qi, alpha=lr * wd), alpha=-1)
    if model.use_bias:
        bu.index_add_(0, users, lr * (g + wd * bu[users]), alpha=-1)
        bi.index_add_(0, items, lr * (g + wd * bi[items]), alpha=-1)
    return (err * err).sum()


class TorchSGDRunner(Runner):
    """Epoch runner: batches of ``sgd_step`` on any device (int32 columns kept on it).

    The ratings are shuffled once, in the kernel's order (:func:`kernel_order`), and every epoch walks them
    in that order, as the kernel does (a fresh shuffle each epoch ended 0.009 RMSE above the kernel on
    150 x 100 planted data; the kernel's order, 0.0007).

    The epoch's loss is summed on the device and read once at the end: no host round trip per batch.
    """

    def __init__(self, model: torch.nn.Module, data: Encoded, cfg: TrainConfig, device: torch.device):
        self.model, self.device, self.wd = model, device, cfg.wd
        self.bs = cfg.bs if cfg.bs > 1 else batch_size(model.n_users, model.n_items)
        self.users, self.items, self.ratings = ordered_columns(model, data, cfg.seed, device)

    def epoch(self, lr_at) -> float:
        n, users, items, ratings = len(self.ratings), self.users, self.items, self.ratings
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        lr = lr_at(0.0)  # the kernel's schedule: one rate per epoch
        with deterministic(self.device.type != "cpu"):  # index_add_ already sums in order on the CPU (5x faster)
            for start in range(0, n, self.bs):
                end = start + self.bs
                total += sgd_step(self.model, users[start:end], items[start:end], ratings[start:end], lr, self.wd)
        return check_loss(float(total) / max(n, 1), self.limit)
