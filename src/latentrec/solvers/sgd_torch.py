"""Funk/Koren SGD for ``DotProductBias`` as batched PyTorch ops: the GPU path of ``--solver sgd``.

A batch of ratings is gathered, predicted and its errors taken at once; each rating's update
(the same formula as the numba kernel: gradient of ``e**2 / 2`` plus ``wd`` times the touched
row) is scattered back with ``index_add_``, so a row rated twice in a batch gets both updates
summed. With one rating per batch this is exactly the kernel's step (see
``tests/test_sgd_kernel.py``); with bigger batches every update in a batch is computed from
the weights at the batch start, like Hogwild threads that see slightly stale rows.
"""

from __future__ import annotations

import math

import torch

from latentrec.config import TrainConfig
from latentrec.data.batches import Encoded

BATCHED_BS = 8192  # batch size used when the config asks for per-rating SGD (bs=1)


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


class TorchSGDRunner:
    """Epoch runner: shuffled batches of ``sgd_step`` on any device (int32 columns kept on it)."""

    def __init__(self, model: torch.nn.Module, data: Encoded, cfg: TrainConfig, device: torch.device):
        self.model, self.device, self.wd = model, device, cfg.wd
        self.bs = cfg.bs if cfg.bs > 1 else BATCHED_BS
        self.users = torch.as_tensor(data.users, dtype=torch.int32).to(device)
        self.items = torch.as_tensor(data.items, dtype=torch.int32).to(device)
        self.ratings = torch.as_tensor(data.ratings, dtype=torch.float32).to(device)
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(cfg.seed if cfg.seed is not None else 0)
        self.limit = math.inf

    def epoch(self, lr_at) -> float:
        from latentrec.solvers.runners import Diverged

        n = len(self.ratings)
        order = torch.randperm(n, generator=self.generator, device=self.device)
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        nb = (n + self.bs - 1) // self.bs
        for b, start in enumerate(range(0, n, self.bs)):
            idx = order[start:start + self.bs]
            total += sgd_step(self.model, self.users[idx].long(), self.items[idx].long(), self.ratings[idx],
                              lr_at(b / nb), self.wd)
        mse = float(total) / max(n, 1)
        if not math.isfinite(mse) or mse > self.limit:
            raise Diverged(f"the epoch's loss reached {mse:.3g}")
        return mse
