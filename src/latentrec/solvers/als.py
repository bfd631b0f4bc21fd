"""Alternating least squares for the biased dot-product model (``--solver als``).

The model is ``r_ui ~ mu + b_u + b_i + p_u . q_i``. With the items fixed, every user's
``[p_u, b_u]`` is a ridge regression on the features ``[q_i, 1]`` of the items they rated, solved
in closed form; then the same for items. All users (then all items) are solved at once, with no
per-user Python: on the CPU by one compiled pass over the users' ratings, elsewhere by one sparse
product and one batched Cholesky (``rating_graph.py``). The ridge penalty is frequency-weighted
(``lambda * n_u``, Zhou et al. 2008, "ALS-WR"), so heavy raters are not over-regularized.
``lambda`` is ``wd`` for the factors and ``wd / c`` for the biases, ``c`` the ratings' scale against 1-5
(``config.scale_ratio``'s square root): ratings ``c`` times as wide make factors ``sqrt(c)`` and biases ``c``
times as large, so with the recipe's ``wd`` moved to ``wd * c`` (``config.for_scale``) the model is the 1-5
model scaled (on ML-100K times 20, 0.960 times the bias baseline's RMSE; 0.959 on 1-5).
A sweep (users, then items) is one "epoch" of the Trainer.

The global mean is folded into the item biases of the saved ``DotProductBias`` (which has no
sigmoid: ``y_range=None``), so the model file and every command that reads it are unchanged.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from latentrec.config import TrainConfig, option, ratings_scale
from latentrec.data.batches import Encoded
from latentrec.errors import ConfigError
from latentrec.solvers.base import Runner
from latentrec.solvers.rating_graph import Partition, RatingGraph

SINGULAR = f"ALS met a singular system; raise {option('wd')}, the ridge penalty."


class ALSRunner(Runner):
    """One Trainer epoch = one ALS sweep: solve all users, then all items, write them into the model."""

    closed_form = True

    def __init__(self, model: torch.nn.Module, data: Encoded, cfg: TrainConfig, device: torch.device,
                 part: Partition | None = None):
        if getattr(model, "kind", None) != "dot" or model.y_range is not None or not model.use_bias:
            raise ConfigError(f"solver 'als' fits the linear biased dot model only (no {option('y_range')}).")
        self.model = model
        self.graph = RatingGraph(data, model.n_users, model.n_items, device, part)
        self.torch_threads = 1 if device.type == "cpu" else None  # torch does only small work beside the kernel
        c = math.sqrt(ratings_scale(data.ratings))
        self.reg = np.array([cfg.wd] * model.n_factors + [cfg.wd / c])  # [factors..., bias]
        gen = torch.Generator(device=device).manual_seed(cfg.seed if cfg.seed is not None else 0)
        self.u, self.v = als_init(model.n_users, model.n_items, model.n_factors, gen)

    def solver_state(self) -> dict:
        return {"u": self.u, "v": self.v}

    def load_solver_state(self, state: dict) -> None:
        self.u, self.v = state["u"], state["v"]

    def epoch(self, lr_at) -> float:
        g = self.graph
        self.u = als_side(g, "user", self.v, self.reg)
        self.v = als_side(g, "item", self.u, self.reg)
        p, bu, q, bi = self.u[:, :-1], self.u[:, -1], self.v[:, :-1], self.v[:, -1]
        write_dot(self.model, p, q, bu, bi + g.mu)
        return g.sse(self.u, self.v) / g.n_ratings


def als_init(n_users: int, n_items: int, k: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The sides an ALS run starts from: users ``[p_u, b_u]`` zero (the first sweep solves them), items
    ``[q_i, b_i]`` small random factors and zero biases, on ``gen``'s device."""
    v = torch.randn(n_items, k + 1, generator=gen, device=gen.device) * 0.1
    v[:, -1] = 0
    return torch.zeros(n_users, k + 1, device=gen.device), v


def als_side(graph: RatingGraph, side: str, other: torch.Tensor, reg: float | np.ndarray) -> torch.Tensor:
    """Every ``[factors, bias]`` row of ``side`` solved in closed form, the other side's ``other`` fixed.

    The ridge penalty is ``reg * n`` (``reg``: one per column, factors then bias), ``n`` the row's number of
    ratings (at least 1).
    """
    return graph.solve(side, other, SINGULAR, ridge=reg)[0]


@torch.no_grad()
def write_dot(model: torch.nn.Module, p: torch.Tensor, q: torch.Tensor, bu: torch.Tensor, bi: torch.Tensor) -> None:
    """Copy factors and biases (global mean already folded into ``bi``) into a ``DotProductBias``."""
    model.user_factors.copy_(p)
    model.item_factors.copy_(q)
    model.user_bias.copy_(bu)
    model.item_bias.copy_(bi)
