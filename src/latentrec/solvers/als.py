"""Alternating least squares for the biased dot-product model (``--solver als``).

The model is ``r_ui ~ mu + b_u + b_i + p_u . q_i``. With the items fixed, every user's
``[p_u, b_u]`` is a ridge regression on the features ``[q_i, 1]`` of the items they rated, solved
in closed form; then the same for items. All users (then all items) are solved at once: their
normal equations are built by one sparse product and solved by one batched Cholesky
(``torch.linalg``), so there is no per-user Python. The ridge penalty is frequency-weighted
(``lambda * n_u``, Zhou et al. 2008, "ALS-WR"), so heavy raters are not over-regularized.
A sweep (users, then items) is one "epoch" of the Trainer.

The global mean is folded into the item biases of the saved ``DotProductBias`` (which has no
sigmoid: ``y_range=None``), so the model file and every command that reads it are unchanged.
"""

from __future__ import annotations

import math

import torch

from latentrec.config import TrainConfig
from latentrec.data.batches import Encoded
from latentrec.errors import ConfigError


class RatingGraph:
    """The training ratings as tensors, with the user x item incidence both ways for batched sums."""

    def __init__(self, data: Encoded, n_users: int, n_items: int, device: torch.device):
        self.users = torch.as_tensor(data.users, device=device).long()
        self.items = torch.as_tensor(data.items, device=device).long()
        self.ratings = torch.tensor(data.ratings, device=device, dtype=torch.float32)
        self.mu = float(self.ratings.mean())
        self.n_users, self.n_items = n_users, n_items
        self.user_counts = torch.bincount(self.users, minlength=n_users).float()
        self.item_counts = torch.bincount(self.items, minlength=n_items).float()
        self.by_user = _Incidence(self.users, self.items, n_users, n_items)
        self.by_item = _Incidence(self.items, self.users, n_items, n_users)

    def normal_equations(self, side: str, feats: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For every row on ``side``: ``sum f f^T`` and ``sum f * target`` over the row's ratings.

        ``feats`` are the other side's feature rows; ``target`` is one value per rating.
        """
        incidence = self.by_user if side == "user" else self.by_item
        d = feats.shape[1]
        outer = (feats[:, :, None] * feats[:, None, :]).reshape(len(feats), d * d)
        gram = incidence.times(outer).reshape(-1, d, d)
        return gram, incidence.times(feats, target)

    def residual(self, p: torch.Tensor, q: torch.Tensor, bu: torch.Tensor, bi: torch.Tensor) -> torch.Tensor:
        """``r - (mu + b_u + b_i + p_u . q_i)`` for every training rating."""
        pred = (p[self.users] * q[self.items]).sum(1) + bu[self.users] + bi[self.items] + self.mu
        return self.ratings - pred


class _Incidence:
    """A sparse (rows x cols) matrix with one entry per rating, sorted once, reused with any values."""

    def __init__(self, rows: torch.Tensor, cols: torch.Tensor, n_rows: int, n_cols: int):
        self.order = torch.argsort(rows * n_cols + cols)
        self.index = torch.stack([rows[self.order], cols[self.order]])
        self.shape = (n_rows, n_cols)
        self.ones = self.matrix(torch.ones(len(rows), device=rows.device))

    def matrix(self, values: torch.Tensor) -> torch.Tensor:
        return torch.sparse_coo_tensor(self.index, values, self.shape, is_coalesced=True, check_invariants=False)

    def times(self, dense: torch.Tensor, values: torch.Tensor | None = None) -> torch.Tensor:
        """``A @ dense`` where ``A`` holds ``values`` (one per rating, in rating order) or ones."""
        a = self.ones if values is None else self.matrix(values[self.order])
        return torch.sparse.mm(a, dense)


def ridge_solve(gram: torch.Tensor, rhs: torch.Tensor, penalty: torch.Tensor) -> torch.Tensor:
    """Solve ``(gram + diag(penalty)) x = rhs`` for a batch (``gram`` (n, d, d) is overwritten)."""
    gram.diagonal(dim1=1, dim2=2).add_(penalty)
    chol, info = torch.linalg.cholesky_ex(gram)
    if bool((info != 0).any()):
        raise ConfigError("ALS met a singular system; raise --wd (the ridge penalty).")
    return torch.cholesky_solve(rhs[:, :, None], chol)[:, :, 0]


def with_ones(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x, torch.ones(len(x), 1, device=x.device)], 1)


class ALSRunner:
    """One Trainer epoch = one ALS sweep: solve all users, then all items, write them into the model."""

    closed_form = True

    def __init__(self, model: torch.nn.Module, data: Encoded, cfg: TrainConfig, device: torch.device):
        if getattr(model, "kind", None) != "dot" or model.y_range is not None or not model.use_bias:
            raise ConfigError("--solver als fits the linear biased dot model (no --y-range).")
        self.model = model
        self.graph = RatingGraph(data, model.n_users, model.n_items, device)
        self.reg = cfg.wd
        k = model.n_factors
        gen = torch.Generator(device=device).manual_seed(cfg.seed if cfg.seed is not None else 0)
        self.u = torch.zeros(model.n_users, k + 1, device=device)  # [p_u, b_u]
        self.v = torch.randn(model.n_items, k + 1, generator=gen, device=device) * 0.1  # [q_i, b_i]
        self.v[:, -1] = 0
        self.limit = math.inf

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
        return float((g.residual(p, q, bu, bi) ** 2).mean())


def als_side(graph: RatingGraph, side: str, other: torch.Tensor, reg: float) -> torch.Tensor:
    """Every ``[factors, bias]`` row of ``side`` solved in closed form, the other side's ``other`` fixed.

    The ridge penalty is ``reg * n`` on factors and bias, ``n`` the row's number of ratings.
    """
    g = graph
    target = g.ratings - g.mu - other[g.items if side == "user" else g.users, -1]
    counts = (g.user_counts if side == "user" else g.item_counts).clamp_min(1)
    penalty = (reg * counts)[:, None].expand(-1, other.shape[1])
    return ridge_solve(*g.normal_equations(side, with_ones(other[:, :-1]), target), penalty)


@torch.no_grad()
def write_dot(model: torch.nn.Module, p: torch.Tensor, q: torch.Tensor, bu: torch.Tensor, bi: torch.Tensor) -> None:
    """Copy factors and biases (global mean already folded into ``bi``) into a ``DotProductBias``."""
    model.user_factors.copy_(p)
    model.item_factors.copy_(q)
    model.user_bias.copy_(bu)
    model.item_bias.copy_(bi)
