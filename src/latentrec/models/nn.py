"""``CollabNN`` (``--model nn``): the seed's "deep learning" variant of collaborative filtering.

A user embedding and an item embedding are concatenated and passed through an MLP
(``Linear -> ReLU [-> BatchNorm] [-> Dropout]`` per hidden layer) to one output, squashed by a
sigmoid into ``y_range`` — fastai's ``CollabNN`` / ``use_nn=True``, built from our own parameters.

With ``implicit`` (the default recipe), each embedding is also told *what* was rated, as in
SVD++ (Koren 2008): the user's embedding is ``p_u + |N(u)|^-1/2 sum_{j in N(u)} y_j`` over the
items ``N(u)`` they rated, and the item's likewise over the users who rated it. The training
pairs this needs are stored in the model as buffers, so a saved model is self-contained. A batch
sums over its own users' and items' pairs only (``embedding_bag`` over the pairs grouped by user
and by item), so an epoch costs about the data's size, not batches x pairs; a batch that reaches
a third of all pairs or more (small data) takes one sparse product over every row instead, which
is then cheaper.

Embedding lookups and bag sums give sparse gradients, so the optimizer steps only the rows a batch
touched: a step costs the batch's rows, not the whole tables. (The one product over every row gives the
implicit tables dense gradients, so on small data every row of those takes each step, decay included.)
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from latentrec.models.dot import FactorModel, create_params, sigmoid_range
from latentrec.models.nn_kernels import bag_sum_grad, output_layer, relu_head_scores

MAX_EMBEDDING = 128  # fastai caps its rule at 600; ML-100K's RMSE is flat from 64 to 256 wide, and a step's cost
# grows with the width (1M ratings from 100,000 users: 600 wide gave 180M weights and minutes per 100 batches)


def sparse_grads(device: torch.device) -> bool:
    """Whether the embedding tables get sparse gradients on ``device``: on the CPU and CUDA (MPS has few sparse
    kernels, so its tables keep dense gradients and every row steps)."""
    return device.type in ("cpu", "cuda")


def embedding_size(n: int) -> int:
    """fastai's rule of thumb for an embedding of ``n`` categories, ``round(1.6 * n ** 0.56)``, at most
    ``MAX_EMBEDDING`` wide."""
    return min(MAX_EMBEDDING, round(1.6 * n ** 0.56))


class SparseTimes(torch.autograd.Function):
    """``x @ y`` for a constant sparse ``x``, with the transpose for the backward pass built once."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, x_t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        ctx.x_t = x_t
        return x @ y

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return None, None, ctx.x_t @ grad


class BagSum(torch.autograd.Function):
    """Row sums of ``table`` over bags of indices (``embedding_bag``); the backward pass is a compiled kernel on
    the CPU (``nn_kernels``), a sparse product elsewhere (torch's own embedding_bag backward sorts the indices and
    was 4x slower here). The gradient is sparse, holding only the rows the bags touch."""

    @staticmethod
    def forward(ctx, flat: torch.Tensor, offsets: torch.Tensor, counts: torch.Tensor, table: torch.Tensor):
        ctx.save_for_backward(flat, counts)
        ctx.n_rows = table.shape[0]
        return F.embedding_bag(flat, table, offsets, mode="sum")

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        flat, counts = ctx.saved_tensors
        bags = torch.repeat_interleave(torch.arange(len(counts), device=flat.device), counts, output_size=len(flat))
        if grad.device.type == "cpu" and grad.dtype == torch.float32:
            rows, sums = bag_sum_grad(flat, bags, grad)  # the compiled kernel
        else:
            rows, member = torch.unique(flat, return_inverse=True)
            members = torch.sparse_coo_tensor(torch.stack([member, bags]), torch.ones(len(flat), device=flat.device,
                                              dtype=grad.dtype), (len(rows), len(counts)), check_invariants=False)
            sums = torch.sparse.mm(members, grad)  # one row per table row the bags touch
        if not sparse_grads(grad.device):
            return None, None, None, grad.new_zeros(ctx.n_rows, grad.shape[1]).index_copy_(0, rows, sums)
        return None, None, None, torch.sparse_coo_tensor(rows[None], sums, (ctx.n_rows, grad.shape[1]),
                                                         is_coalesced=True, check_invariants=False)


class RatedRows:
    """The training pairs grouped by one side (users or items): who rated what, as compressed rows."""

    def __init__(self, rows: torch.Tensor, cols: torch.Tensor, n_rows: int, n_cols: int):
        counts = torch.bincount(rows, minlength=n_rows)
        self.indptr = torch.zeros(n_rows + 1, dtype=torch.int64, device=rows.device)
        self.indptr[1:] = counts.cumsum(0)
        order = torch.argsort(rows, stable=True)
        self.rows, self.cols = rows[order], cols[order]
        self.scale = counts.float().clamp_min(1).rsqrt()  # |N(row)|^-1/2
        self.shape = (n_rows, n_cols)
        self._matrix: tuple[torch.Tensor, torch.Tensor] | None = None

    def matrix(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """The normalized who-rated-what matrix and its transpose (sparse CSR) in ``dtype``, built on first use."""
        if self._matrix is None or self._matrix[0].dtype != dtype:
            x = torch.sparse_coo_tensor(torch.stack([self.rows, self.cols]), self.scale[self.rows].to(dtype),
                                        self.shape, check_invariants=False).coalesce()
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
                self._matrix = (x.to_sparse_csr(), x.t().to_sparse_csr())
        return self._matrix

    def implicit(self, rows: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """``|N(r)|^-1/2 sum_{j in N(r)} table[j]`` for each of ``rows``, reading only their pairs."""
        unique, inverse = torch.unique(rows, return_inverse=True)
        start, count = self.indptr[unique], self.indptr[unique + 1] - self.indptr[unique]
        total = int(count.sum())
        if 3 * total >= len(self.cols):  # a third of the pairs or more: one product over every row costs less
            return SparseTimes.apply(*self.matrix(table.dtype), table)[rows]
        offsets = count.cumsum(0) - count
        pos = torch.repeat_interleave(start - offsets, count, output_size=total)
        pos += torch.arange(total, device=pos.device)
        sums = BagSum.apply(self.cols[pos], offsets, count, table)
        return (sums * self.scale[unique, None])[inverse]


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
        self._rows: tuple[RatedRows, RatedRows] | None = None
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
            self._rows = None

    def _rated_rows(self) -> tuple[RatedRows, RatedRows]:
        """The training pairs by user and by item, built once per device."""
        u, i = self.rated_users, self.rated_items
        if self._rows is None or self._rows[0].cols.device != u.device:
            self._rows = (RatedRows(u, i, self.n_users, self.n_items), RatedRows(i, u, self.n_items, self.n_users))
        return self._rows

    def _load_from_state_dict(self, *args, **kwargs):
        self._rows = None
        super()._load_from_state_dict(*args, **kwargs)

    def user_embeddings(self, users: torch.Tensor) -> torch.Tensor:
        """The embeddings of ``users`` (indices), with the implicit part when enabled."""
        own = F.embedding(users, self.user_factors, sparse=sparse_grads(users.device))
        return own if not self.implicit else own + self._rated_rows()[0].implicit(users, self.user_implicit)

    def item_embeddings(self, items: torch.Tensor) -> torch.Tensor:
        """The embeddings of ``items`` (indices), with the implicit part when enabled."""
        own = F.embedding(items, self.item_factors, sparse=sparse_grads(items.device))
        return own if not self.implicit else own + self._rated_rows()[1].implicit(items, self.item_implicit)

    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every user's and item's embedding (with the implicit part when enabled)."""
        if not self.implicit:
            return self.user_factors, self.item_factors
        dev = self.user_factors.device
        return (self.user_embeddings(torch.arange(self.n_users, device=dev)),
                self.item_embeddings(torch.arange(self.n_items, device=dev)))

    def head(self, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        return sigmoid_range(self.mlp(torch.cat([u, i], 1))[:, 0], *self.y_range)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.user_embeddings(x[:, 0]), self.item_embeddings(x[:, 1]))

    @torch.no_grad()
    def score_users(self, users: torch.Tensor, chunk: int = 1 << 18) -> torch.Tensor:
        """Predicted ratings of ``users`` for every item, shape ``(len(users), n_items)``."""
        return self.score_embeddings(self.user_embeddings(users), chunk)

    @torch.no_grad()
    def new_user_embedding(self, items: torch.Tensor) -> torch.Tensor:
        """The embedding of a new user who rated ``items``, without training (``implicit`` models only): the mean
        user's own part plus the sum over what they rated (SVD++'s way to meet a new user)."""
        return self.user_factors[1:].mean(0) + self.user_implicit[items].sum(0) / max(len(items), 1) ** 0.5

    @torch.no_grad()
    def score_embeddings(self, user_emb: torch.Tensor, chunk: int = 1 << 18) -> torch.Tensor:
        """Predicted ratings of users with embeddings ``user_emb`` for every item, ``(len(user_emb), n_items)``.

        The first layer is split by its input halves, ``W [u; i] + b = W_u u + (W_i i + b)``: each user's and each
        item's part is computed once and every (user, item) pair only adds them, rather than multiplying its
        concatenated embeddings by ``W`` (the width of the embeddings fewer operations per pair). On the CPU a
        one-hidden-layer head is then finished by a compiled kernel (``nn_kernels``), torch's layers otherwise.
        """
        was_training = self.training
        self.eval()
        try:
            first, rest = self.mlp[0], self.mlp[1:]
            w_user, w_item = first.weight.split([self.user_factors.shape[1], self.item_factors.shape[1]], 1)
            items = self.item_embeddings(torch.arange(self.n_items, device=self.item_factors.device))
            item_part = F.linear(items, w_item, first.bias)
            layer = output_layer(rest) if item_part.device.type == "cpu" and item_part.dtype == torch.float32 else None
            if layer is not None:
                return relu_head_scores(user_emb @ w_user.T, item_part, layer, self.y_range)
            per = max(1, chunk // self.n_items)
            rows = [item_part.new_zeros(0, self.n_items)]
            for s in range(0, len(user_emb), per):
                user_part = user_emb[s:s + per] @ w_user.T
                hidden = (user_part[:, None, :] + item_part[None]).view(-1, first.out_features)
                rows.append(sigmoid_range(rest(hidden)[:, 0], *self.y_range).view(len(user_part), -1))
        finally:
            self.train(was_training)
        return torch.cat(rows)

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
