"""Baselines every model is measured against: the global mean and damped user + item biases."""

from __future__ import annotations

import numpy as np

from latentrec.data.csr import bincount


def global_mean(ratings: np.ndarray) -> float:
    return float(np.mean(ratings)) if len(ratings) else 0.0


def fit_biases(users: np.ndarray, items: np.ndarray, ratings: np.ndarray, n_users: int, n_items: int,
               reg_user: float = 10.0, reg_item: float = 25.0, sweeps: int = 3) -> tuple[float, np.ndarray, np.ndarray]:
    """``r ~ mu + b_u + b_i`` by alternating damped means (Koren's baseline predictor).

    Row 0 (unknown) keeps a bias of 0, so unknown ids fall back to the mean or the other bias.
    """
    mu = global_mean(ratings)
    bu = np.zeros(n_users)
    bi = np.zeros(n_items)
    n_u, n_i = bincount(users, n_users), bincount(items, n_items)
    for _ in range(sweeps):
        bi = bincount(items, n_items, lambda s, bu=bu: ratings[s] - mu - bu[users[s]]) / (n_i + reg_item)
        bu = bincount(users, n_users, lambda s, bi=bi: ratings[s] - mu - bi[items[s]]) / (n_u + reg_user)
    return mu, bu.astype(np.float32), bi.astype(np.float32)


def predict_biases(mu: float, bu: np.ndarray, bi: np.ndarray, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    return mu + bu[users] + bi[items]
