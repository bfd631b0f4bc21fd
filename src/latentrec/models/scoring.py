"""Scoring encoded rows with a model: the compiled kernel for the dot model on the CPU, batches otherwise;
and RMSE/MAE. Shared by training (validation) and use (predict, evaluate)."""

from __future__ import annotations

import math

import numpy as np
import torch
from numba import njit, prange

from latentrec.data.batches import Batches, Encoded
from latentrec.models.baselines import with_fallback
from latentrec.models.dot import is_dot
from latentrec.parallel import thread_safe


@thread_safe
@njit(parallel=True, fastmath=True, cache=True)
def _predict(users, items, P, Q, k, bu, bi, lo, span, sigmoid, bias, out):
    for n in prange(len(users)):
        u = users[n]
        i = items[n]
        z = bu[u] + bi[i] if bias else np.float32(0.0)
        for f in range(k):
            z += P[u, f] * Q[i, f]
        out[n] = lo + span / (1.0 + math.exp(-z)) if sigmoid else z


def predict(users: np.ndarray, items: np.ndarray, P: np.ndarray, Q: np.ndarray, bu: np.ndarray, bi: np.ndarray,
            y_range: tuple[float, float] | None, bias: bool, k: int | None = None) -> np.ndarray:
    """The dot model's predictions for (user, item) index pairs, in parallel, with no temporaries; only the
    first ``k`` factor columns are used if given (contiguous tables keep the inner loop vectorized)."""
    lo, hi = y_range if y_range is not None else (0.0, 1.0)
    out = np.empty(len(users), np.float32)
    _predict(users, items, P, Q, P.shape[1] if k is None else k, bu, bi, np.float32(lo), np.float32(hi - lo),
             y_range is not None, bias, out)
    return out



def scored_by_kernel(model: torch.nn.Module, device: torch.device) -> bool:
    """Whether :func:`predict_rows` scores ``model`` with the compiled kernel (a plain or Bayesian dot model on
    the CPU: the Bayesian one's stacked samples are an ordinary dot product)."""
    return is_dot(model) and device.type == "cpu"


def predicted(model: torch.nn.Module, data: Encoded, device: torch.device, scale: tuple[float, float] | None,
              fallback: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
    """What validation and a saved model predict for encoded rows: :func:`predict_rows` clipped to the rating
    ``scale``, unknown ids (index 0) given the ``fallback`` means (:func:`~latentrec.models.baselines.with_fallback`)."""
    pred = predict_rows(model, data, device)
    pred = np.clip(pred, *scale) if scale else pred
    return with_fallback(pred, data.users, data.items, fallback) if fallback is not None else pred


@torch.no_grad()
def predict_rows(model: torch.nn.Module, data: Encoded, device: torch.device, bs: int = 65536) -> np.ndarray:
    """Model predictions for encoded rows: the compiled kernel for the dot model on the CPU (parallel, no
    temporaries: 20M rows in a fraction of a second), batches through the model's forward otherwise."""
    if scored_by_kernel(model, device):
        m = model
        tables = [t.detach().numpy() for t in (m.user_factors, m.item_factors, m.user_bias, m.item_bias)]
        used = getattr(m, "filled_factors", None)  # a Bayesian model in training: the samples kept so far
        return predict(data.users, data.items, *tables, m.y_range, m.use_bias, used)
    model.eval()
    out = []
    for x, _ in Batches(data, bs=bs, shuffle=False, device=device):
        out.append(model(x).float().cpu())
    return torch.cat(out).numpy() if out else np.zeros(0, np.float32)


def rmse_mae(pred: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """RMSE and MAE, a slice at a time (no float64 copies of 20M-row columns)."""
    sq = ab = 0.0
    for a in range(0, len(target), 1 << 18):
        err = pred[a:a + (1 << 18)].astype(np.float64) - target[a:a + (1 << 18)]
        sq += float(err @ err)
        ab += float(np.abs(err).sum())
    n = len(target)
    return (math.sqrt(sq / n), ab / n) if n else (math.nan, math.nan)
