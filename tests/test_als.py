"""ALS: the batched per-user solve is a ridge regression, and the solver recovers planted data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import assert_same_scores

from latentrec.config import TrainConfig
from latentrec.data.batches import Encoded
from latentrec.errors import ConfigError
from latentrec.evaluation.evaluate import evaluate
from latentrec.solvers.als import als_side
from latentrec.solvers.rating_graph import RatingGraph
from latentrec.training.fit import fit
from latentrec.use.recommender import Recommender


@pytest.mark.parametrize("compiled", [True, False], ids=["kernel", "torch"])
def test_user_solve_equals_direct_least_squares(compiled):
    rng = np.random.default_rng(0)
    n_users, n_items, k, reg = 4, 6, 2, 0.3
    users = np.array([1, 1, 1, 2, 2, 3, 3, 3, 3], np.int32)
    items = np.array([1, 2, 5, 2, 3, 1, 3, 4, 5], np.int32)
    ratings = rng.uniform(1, 5, len(users)).astype(np.float32)
    graph = RatingGraph(Encoded(users, items, ratings), n_users, n_items, torch.device("cpu"), compiled=compiled)
    v = torch.from_numpy(rng.normal(size=(n_items, k + 1)).astype(np.float32))  # [q_i, b_i]
    got = als_side(graph, "user", v, reg).numpy()
    for u in (1, 2, 3):
        rows = users == u
        f = np.c_[v.numpy()[items[rows], :k], np.ones(rows.sum())].astype(np.float64)
        t = ratings[rows] - ratings.mean() - v.numpy()[items[rows], k]
        # ridge: minimize |f x - t|^2 + reg * n_u * |x|^2, solved directly
        a = np.vstack([f, np.sqrt(reg * rows.sum()) * np.eye(k + 1)])
        b = np.r_[t, np.zeros(k + 1)]
        want = np.linalg.lstsq(a, b, rcond=None)[0]
        np.testing.assert_allclose(got[u], want, rtol=1e-4, atol=1e-5)


def test_als_recovers_planted_ratings_and_reloads(lowrank, tmp_path):
    train, test, noise = lowrank
    cfg = TrainConfig(solver="als", n_factors=4, epochs=8, wd=0.02, valid_pct=0)
    rec, trainer = fit(train, None, cfg)
    assert [h["epoch"] for h in trainer.history] == list(range(1, 9))
    result = evaluate(rec, test)
    assert result["rmse"] < 1.6 * noise + 0.05
    assert result["rmse"] < 0.5 * result["baselines"]["biases"]["rmse"]
    rec.save(tmp_path / "m")
    again = Recommender.load(tmp_path / "m")
    assert again.model.kind == "dot" and again.model.y_range is None
    df = test.df
    assert_same_scores(rec.predict(df["user"], df["item"])["prediction"],
                       again.predict(df["user"], df["item"])["prediction"], rec.device == again.device)


def test_als_refuses_a_sigmoid():
    with pytest.raises(ConfigError, match="y-range"):
        TrainConfig(solver="als", y_range=(0, 5)).resolved()
    with pytest.raises(ConfigError, match="cannot be trained"):
        TrainConfig(model="nn", solver="als").resolved()


def test_rating_graph_refuses_the_unknown_row():
    """Row 0 is #na#: the compiled sweeps assume it rated nothing, so encoded rows using it are refused."""
    import numpy as np
    import pytest

    from latentrec.data.batches import Encoded
    from latentrec.solvers.rating_graph import RatingGraph

    data = Encoded(np.array([0, 1, 2], np.int32), np.array([1, 2, 1], np.int32), np.ones(3, np.float32))
    with pytest.raises(ValueError, match="unknown id"):
        RatingGraph(data, 3, 3, torch.device("cpu"))
