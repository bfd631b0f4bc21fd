"""CollabNN's compiled CPU kernels: scoring every item under a one-hidden-layer head, and the backward pass
of the implicit embeddings' bag sums.

Scoring. The first layer is already split into a user part and an item part (see ``CollabNN.score_embeddings``); what is
left for a pair is ``b + w . relu(user_part + item_part)``, with an eval-mode batch norm folded into ``w`` and
``b`` and dropout doing nothing. The kernel computes that pair by pair with no (pairs x hidden) temporary,
which made scoring through torch memory-bound.

Bag sums. A batch's implicit embedding sums the rows its users (items) rated; the gradient of a table row is
the sum of the gradients of the bags holding it. The kernel adds them row by row over the pairs sorted by
table row, writing each touched row once: torch's sparse product spent most of its time coalescing the
who-is-in-which-bag matrix and zero-filling its output.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from numba import njit, prange
from torch import nn

from latentrec.parallel import thread_safe

BLOCK = 256  # items per parallel task: a few tasks per core even for one user


@thread_safe
@njit(parallel=True, fastmath=True, cache=True)
def _relu_dot(user_part, item_part, w, b, lo, span, out):
    n_users, n_items = out.shape
    blocks = (n_items + BLOCK - 1) // BLOCK
    zero = np.float32(0.0)
    for task in prange(n_users * blocks):
        u = task // blocks
        start = (task % blocks) * BLOCK
        for i in range(start, min(start + BLOCK, n_items)):
            z = b
            for k in range(len(w)):
                z += w[k] * max(user_part[u, k] + item_part[i, k], zero)
            out[u, i] = lo + span / (1.0 + math.exp(-z))


def output_layer(rest: nn.Sequential) -> tuple[np.ndarray, np.float32] | None:
    """The ``(w, b)`` of ``ReLU [-> BatchNorm] [-> Dropout] -> Linear(h, 1)`` in eval mode, batch norm folded in;
    ``None`` for a deeper head (scored through torch)."""
    kinds = [type(m) for m in rest]
    if not kinds or kinds[0] is not nn.ReLU or type(rest[-1]) is not nn.Linear or nn.Linear in kinds[:-1]:
        return None
    w, b = rest[-1].weight[0].double(), rest[-1].bias[0].double()
    for bn in (m for m in rest if isinstance(m, nn.BatchNorm1d)):
        scale = bn.weight.double() / (bn.running_var.double() + bn.eps).sqrt()
        b = b + (w * (bn.bias.double() - bn.running_mean.double() * scale)).sum()
        w = w * scale
    return w.float().numpy(), np.float32(b)


def relu_head_scores(user_part: torch.Tensor, item_part: torch.Tensor, layer: tuple[np.ndarray, np.float32],
                     y_range: tuple[float, float]) -> torch.Tensor:
    """``sigmoid_range(b + w . relu(user_part[u] + item_part[i]))`` for every user row and item row."""
    lo, hi = y_range
    out = np.empty((len(user_part), len(item_part)), np.float32)
    _relu_dot(np.ascontiguousarray(user_part.numpy()), np.ascontiguousarray(item_part.numpy()), *layer,
              np.float32(lo), np.float32(hi - lo), out)
    return torch.from_numpy(out)


@thread_safe
@njit(parallel=True, cache=True)
def _bag_rows(starts, bag_of, grad, out):
    zero = np.float32(0.0)
    for j in prange(out.shape[0]):
        for c in range(out.shape[1]):
            out[j, c] = zero
        for p in range(starts[j], starts[j + 1]):
            b = bag_of[p]
            for c in range(out.shape[1]):
                out[j, c] += grad[b, c]


def bag_sum_grad(flat: torch.Tensor, bags: torch.Tensor, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The table rows that the ``flat`` indices (in bag ``bags[n]`` each) touch, and each one's gradient: the sum of
    ``grad``'s rows (one per bag) of the bags holding it."""
    ordered, order = torch.sort(flat, stable=True)
    rows, per_row = torch.unique_consecutive(ordered, return_counts=True)
    starts = np.zeros(len(rows) + 1, np.int64)
    np.cumsum(per_row.numpy(), out=starts[1:])
    out = np.empty((len(rows), grad.shape[1]), np.float32)
    _bag_rows(starts, bags[order].numpy(), np.ascontiguousarray(grad.numpy()), out)
    return rows, torch.from_numpy(out)
