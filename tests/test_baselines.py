"""The damped user + item bias baseline is swept to its fixed point, not stopped early."""

import numpy as np

from latentrec.models.baselines import fit_biases


def _planted(seed: int = 0, n: int = 20_000, n_users: int = 300, n_items: int = 200):
    rng = np.random.default_rng(seed)
    users = rng.integers(1, n_users, n).astype(np.int32)
    items = (rng.zipf(1.6, n) % (n_items - 1) + 1).astype(np.int32)  # popular and rare items: slow to converge
    ratings = (3.5 + rng.normal(0, 0.5, n_users)[users] + rng.normal(0, 0.7, n_items)[items]
               + rng.normal(0, 0.3, n)).astype(np.float32)
    return users, items, ratings, n_users, n_items


def test_biases_are_a_fixed_point_of_the_damped_means():
    users, items, ratings, n_users, n_items = _planted()
    mu, bu, bi = fit_biases(users, items, ratings, n_users, n_items)
    n_u, n_i = np.bincount(users, minlength=n_users), np.bincount(items, minlength=n_items)
    bi_next = np.bincount(items, ratings - mu - bu[users], n_items) / (n_i + 25.0)
    bu_next = np.bincount(users, ratings - mu - bi_next[items], n_users) / (n_u + 10.0)
    assert np.abs(bi_next - bi).max() < 1e-3 and np.abs(bu_next - bu).max() < 1e-3
    assert bu[0] == 0 and bi[0] == 0  # unknown rows


def test_the_biases_are_those_of_many_more_sweeps():
    users, items, ratings, n_users, n_items = _planted(1)
    _, bu, bi = fit_biases(users, items, ratings, n_users, n_items)
    _, bu_far, bi_far = fit_biases(users, items, ratings, n_users, n_items, tol=1e-9, max_sweeps=1000)
    assert max(np.abs(bu - bu_far).max(), np.abs(bi - bi_far).max()) < 1e-3  # 3 sweeps: 0.006


def test_no_ratings():
    mu, bu, bi = fit_biases(np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, np.float32), 3, 4)
    assert mu == 0.0 and not bu.any() and not bi.any() and (len(bu), len(bi)) == (3, 4)
