"""``CollabNN`` (``--model nn``): the seed's "deep learning" variant of collaborative filtering.

A user embedding and an item embedding are concatenated and passed through an MLP
(``Linear -> ReLU [-> BatchNorm] [-> Dropout]`` per hidden layer) to one output, squashed by a
sigmoid into ``y_range`` — fastai's ``CollabNN`` / ``use_nn=True``, built from our own parameters.

With ``implicit`` (the default recipe), each embedding is also told *what* was rated, as in
SVD++ (Koren 2008): the user's embedding is ``p_u + |N(u)|^-1/2 sum_{j in N(u)} y_j`` over the
items ``N(u)`` they rated, and the item's likewise over the users who rated it. The training
pairs this needs are stored in the model as buffers, so a saved model is self-contained.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn

from latentrec.models.dot import FactorModel, create_params, sigmoid_range


def embedding_size(n: int) -> int:
    """fastai's rule of thumb for an embedding of ``n`` categories: ``min(600, round(1.6 * n ** 0.56))``."""
    return min(600, round(1.6 * n ** 0.56))


class SparseTimes(torch.autograd.Function):
    """``x @ y`` for a constant sparse ``x``, with the transpose for the backward pass built once."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, x_t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        ctx.x_t = x_t
        return x @ y

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return None, None, ctx.x_t @ grad


class CollabNN(FactorModel):
    """Concatenated user/item embeddings through an MLP, output squashed into ``y_range``."""

    kind = "nn"

    def __init__(self, n_users: int, n_items: int, user_size: int | None = None, item_size: int | None = None,
                 layers: tuple[int, ...] = (100,), dropout: float = 0.0, bn: bool = False,
                 y_range: tuple[float, float] = (0.0, 5.5), implicit: bool = False, n_rated: int = 0):
        super().__init__()
        user_size, item_size = user_size or embedding_size(n_users), item_size or embedding_size(n_items)
        self.user_factors = create_params(n_users, user_size)
        self.item_factors = create_params(n_items, item_size)
        self.layers, self.dropout, self.bn = tuple(int(h) for h in layers), float(dropout), bool(bn)
        self.y_range = tuple(y_range)
        self.implicit = bool(implicit)
        if self.implicit:
            self.user_implicit = create_params(n_items, user_size)  # y_j: what rating item j says about a user
            self.item_implicit = create_params(n_users, item_size)  # what being rated by user u says about an item
            self.register_buffer("rated_users", torch.zeros(n_rated, dtype=torch.int64))
            self.register_buffer("rated_items", torch.zeros(n_rated, dtype=torch.int64))
        self._sparse = None
        blocks: list[nn.Module] = []
        width = user_size + item_size
        for h in self.layers:
            blocks += [nn.Linear(width, h), nn.ReLU()]
            if self.bn:
                blocks.append(nn.BatchNorm1d(h))
            if self.dropout:
                blocks.append(nn.Dropout(self.dropout))
            width = h
        blocks.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*blocks)

    def config(self) -> dict:
        return {"kind": self.kind, "n_users": self.n_users, "n_items": self.n_items,
                "user_size": self.user_factors.shape[1], "item_size": self.item_factors.shape[1],
                "layers": list(self.layers), "dropout": self.dropout, "bn": self.bn, "y_range": self.y_range,
                "implicit": self.implicit, "n_rated": len(self.rated_users) if self.implicit else 0}

    @torch.no_grad()
    def set_rated(self, users: np.ndarray, items: np.ndarray) -> None:
        """Record the training pairs the implicit embeddings sum over."""
        if self.implicit:
            device = self.user_factors.device
            self.rated_users = torch.as_tensor(users, device=device).long()
            self.rated_items = torch.as_tensor(items, device=device).long()
            self._sparse = None

    def _incidence(self) -> tuple[torch.Tensor, ...]:
        """Normalized who-rated-what matrices and their transposes (users x items, items x users), built once."""
        u, i = self.rated_users, self.rated_items
        if self._sparse is None or self._sparse[0].device != u.device:
            cu = torch.bincount(u, minlength=self.n_users).float().clamp_min(1)
            ci = torch.bincount(i, minlength=self.n_items).float().clamp_min(1)
            xu = torch.sparse_coo_tensor(torch.stack([u, i]), cu[u].rsqrt(), (self.n_users, self.n_items),
                                         check_invariants=False).coalesce()
            xi = torch.sparse_coo_tensor(torch.stack([i, u]), ci[i].rsqrt(), (self.n_items, self.n_users),
                                         check_invariants=False).coalesce()
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
                self._sparse = tuple(m.to_sparse_csr() for m in (xu, xu.t(), xi, xi.t()))
        return self._sparse

    def _load_from_state_dict(self, *args, **kwargs):
        self._sparse = None
        super()._load_from_state_dict(*args, **kwargs)

    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every user's and item's embedding (with the implicit part when enabled)."""
        if not self.implicit:
            return self.user_factors, self.item_factors
        xu, xu_t, xi, xi_t = self._incidence()
        return (self.user_factors + SparseTimes.apply(xu, xu_t, self.user_implicit),
                self.item_factors + SparseTimes.apply(xi, xi_t, self.item_implicit))

    def head(self, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        return sigmoid_range(self.mlp(torch.cat([u, i], 1))[:, 0], *self.y_range)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        users, items = self.embeddings()
        return self.head(users[x[:, 0]], items[x[:, 1]])

    @torch.no_grad()
    def score_users(self, users: torch.Tensor, chunk: int = 1 << 18) -> torch.Tensor:
        """Predicted ratings of ``users`` for every item, shape ``(len(users), n_items)``."""
        was_training = self.training
        self.eval()
        all_users, all_items = self.embeddings()
        per = max(1, chunk // self.n_items)
        rows = []
        for s in range(0, len(users), per):
            u = all_users[users[s:s + per]]
            rows.append(self.head(u.repeat_interleave(self.n_items, 0), all_items.repeat(len(u), 1)).view(len(u), -1))
        self.train(was_training)
        return torch.cat(rows) if rows else torch.zeros(0, self.n_items, device=all_items.device)

    @torch.no_grad()
    def set_unknown_rows(self, user_counts: torch.Tensor, item_counts: torch.Tensor) -> None:
        """Row 0 (``#na#``) becomes the count-weighted average user/item embedding.

        The unknown id rated nothing, so its implicit part is zero and row 0 is its whole embedding.
        """
        users, items = self.embeddings()
        for factors, full, counts in ((self.user_factors, users, user_counts), (self.item_factors, items, item_counts)):
            w = counts.to(factors.device, factors.dtype, copy=True)
            w[0] = 0
            factors[0] = (full * w[:, None]).sum(0) / w.sum().clamp_min(1)
