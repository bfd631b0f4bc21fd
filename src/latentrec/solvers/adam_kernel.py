"""Adam's step on the rows of a table, compiled for the CPU: one pass that reads each touched row's weights,
moments and gradient once and writes them back, where torch's ops gather, step and scatter them in a dozen
passes (the step was most of a CollabNN batch on a 100,000-user catalogue). The arithmetic is ``Adam.update``'s.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from numba import njit, prange

from latentrec.parallel import thread_safe


@thread_safe
@njit(parallel=True, cache=True)
def _adam_rows(w, m, v, g, rows, lr, b1, b2, fix1, fix2, eps, l2, decay):
    for j in prange(len(rows)):
        r = rows[j]
        for c in range(w.shape[1]):
            grad = g[j, c] + l2 * w[r, c]
            m[r, c] = b1 * m[r, c] + (1 - b1) * grad
            v[r, c] = b2 * v[r, c] + (1 - b2) * grad * grad
            w[r, c] = w[r, c] * decay[j] - lr * (m[r, c] / fix1) / (math.sqrt(v[r, c] / fix2) + eps)


def adam_rows(w: torch.Tensor, m: torch.Tensor, v: torch.Tensor, g: torch.Tensor, rows: torch.Tensor | None,
              lr: float, betas: tuple[float, float], t: int, eps: float, l2: float, decay: torch.Tensor) -> None:
    """Step ``rows`` of the float32 CPU table ``w`` (every row when ``None``) in place, with its moments ``m``
    and ``v``, by the gradient rows ``g``: ``l2`` adds ``l2 * w`` to the gradient, ``decay`` (one factor a
    stepped row) scales the weights first (decoupled decay), ``t`` is the step number for the bias corrections."""
    def table(x: torch.Tensor) -> np.ndarray:
        return x.detach().reshape(x.shape[0] if x.dim() else 1, -1).numpy()

    if g.numel() == 0:  # a sparse gradient that touched no row
        return
    b1, b2 = betas
    index = np.arange(w.shape[0] if w.dim() else 1) if rows is None else rows.numpy()
    f32 = np.float32
    _adam_rows(table(w), table(m), table(v), table(g), index, f32(lr), f32(b1), f32(b2), f32(1 - b1 ** t),
               f32(1 - b2 ** t), f32(eps), f32(l2), decay.to(torch.float32).numpy())
