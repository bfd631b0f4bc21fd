"""The model family: our own parameter creation and the biased dot-product model.

``DotProductBias`` follows the seed and fastai's ``EmbeddingDotBias``: a user factor row and
an item factor row are looked up by index (the memory-cheap equivalent of multiplying by a
one-hot matrix), multiplied and summed, plus a user bias and an item bias, then squashed by
a sigmoid into ``y_range``. Row 0 of every table is ``#na#``, the unknown id.
"""

from __future__ import annotations

import torch
from torch import nn


def create_params(*size: int, std: float = 0.01) -> nn.Parameter:
    """A tensor of ``size`` drawn from N(0, std), tracked by autograd (the seed's own Embedding).

    On the meta device (a model about to be loaded) nothing is drawn: ``normal_`` there would import
    torch's compiler, a second of every CLI command's start-up."""
    t = torch.zeros(*size)
    return nn.Parameter(t if t.is_meta else t.normal_(0, std))


def sigmoid_range(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """Sigmoid scaled into (lo, hi)."""
    return torch.sigmoid(x) * (hi - lo) + lo


class FactorModel(nn.Module):
    """What every rating model has: user and item tables (``user_factors``/``item_factors``) whose row 0 is ``#na#``."""

    @property
    def n_users(self) -> int:
        return self.user_factors.shape[0]

    @property
    def n_items(self) -> int:
        return self.item_factors.shape[0]


class DotProductBias(FactorModel):
    """Dot product of user and item factors plus biases, squashed into ``y_range``.

    ``y_range=None`` leaves the output linear; ``bias=False`` drops both biases (the steps
    of the seed's journey, kept so the ablation can show what each piece is worth).
    """

    kind = "dot"

    def __init__(self, n_users: int, n_items: int, n_factors: int = 50,
                 y_range: tuple[float, float] | None = (0.0, 5.5), bias: bool = True):
        super().__init__()
        self.y_range = tuple(y_range) if y_range is not None else None
        self.user_factors = create_params(n_users, n_factors)
        self.item_factors = create_params(n_items, n_factors)
        self.use_bias = bias
        self.user_bias = create_params(n_users) if bias else nn.Parameter(torch.zeros(n_users), requires_grad=False)
        self.item_bias = create_params(n_items) if bias else nn.Parameter(torch.zeros(n_items), requires_grad=False)

    @property
    def n_factors(self) -> int:
        return self.user_factors.shape[1]

    def config(self) -> dict:
        return {"kind": self.kind, "n_users": self.n_users, "n_items": self.n_items,
                "n_factors": self.n_factors, "y_range": self.y_range, "bias": self.use_bias}

    def squash(self, z: torch.Tensor) -> torch.Tensor:
        return sigmoid_range(z, *self.y_range) if self.y_range is not None else z

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        users, items = x[:, 0], x[:, 1]
        z = (self.user_factors[users] * self.item_factors[items]).sum(1)
        z = z + self.user_bias[users] + self.item_bias[items]
        return self.squash(z)

    @torch.no_grad()
    def score_users(self, users: torch.Tensor) -> torch.Tensor:
        """Predicted ratings of ``users`` for every item, shape ``(len(users), n_items)``."""
        z = self.user_factors[users] @ self.item_factors.T
        z += self.user_bias[users, None] + self.item_bias[None, :]
        return self.squash(z)

    @torch.no_grad()
    def set_unknown_rows(self, user_counts: torch.Tensor, item_counts: torch.Tensor) -> None:
        """Make row 0 (``#na#``) the average known user/item: zero factors, count-weighted mean bias.

        A saved model answers unknown ids with damped mean ratings instead (``Recommender.fallback``); row 0
        answers where those are not kept (a model dir from an earlier build), and ``benchmarks/fallback.py``
        compares the two.
        """
        for bias, factors, counts in ((self.user_bias, self.user_factors, user_counts),
                                      (self.item_bias, self.item_factors, item_counts)):
            w = counts.to(bias.device, bias.dtype, copy=True)
            w[0] = 0
            bias[0] = (bias * w).sum() / w.sum().clamp_min(1)
            factors[0] = 0


def default_y_range(ratings_min: float, ratings_max: float) -> tuple[float, float]:
    """A range a little wider than the data's so both ends are reachable by the sigmoid."""
    span = max(ratings_max - ratings_min, 1.0)
    pad = 0.1 * span
    return (float(ratings_min - pad), float(ratings_max + pad))


def is_dot(model: torch.nn.Module) -> bool:
    """True for models whose scores are ``squash(p_u . q_i + b_u + b_i)`` (the fast ranking path)."""
    return isinstance(model, DotProductBias) and type(model).score_users is DotProductBias.score_users
