"""One model whatever the device: every solver and model reaches the CPU's accuracy on each device present
(CUDA cases skip without a GPU), reruns on one device are bit-identical, and a model saved on a device
reloads on the CPU with the same scores."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_same_scores, lowrank_ratings

from latentrec.config import TrainConfig
from latentrec.data.ratings import Ratings
from latentrec.training.fit import fit
from latentrec.use.recommender import Recommender

# small recipes: parity, not accuracy, is under test (bayes keeps 30 sweeps: its RMSE moved 0.0006 across seeds)
CASES = {
    ("dot", "sgd"): {"n_factors": 8, "epochs": 12},
    ("dot", "autograd"): {"n_factors": 8, "epochs": 5},
    ("dot", "als"): {"n_factors": 8, "epochs": 4},
    ("dot", "bayes"): {"n_factors": 4, "epochs": 30},
    ("nn", "autograd"): {"n_factors": 16, "epochs": 8},
}


@pytest.fixture(scope="module")
def planted() -> tuple[Ratings, Ratings, float]:
    df, _ = lowrank_ratings(n_users=150, n_items=100, density=0.4)
    perm = np.random.default_rng(1).permutation(len(df))
    cut = int(0.8 * len(df))
    train = Ratings(df.iloc[perm[:cut]].reset_index(drop=True), "planted-train")
    valid = Ratings(df.iloc[perm[cut:]].reset_index(drop=True), "planted-valid")
    return train, valid, float(df["rating"].std())


def trained(planted, model: str, solver: str, device: str) -> tuple[Recommender, float, np.ndarray]:
    train, valid, _ = planted
    rec, _ = fit(train, valid, TrainConfig(model=model, solver=solver, seed=0, device=device, **CASES[model, solver]))
    return rec, rec.info["metrics"]["valid_rmse"], rec.predict(valid.df["user"], valid.df["item"])["prediction"]


@pytest.mark.parametrize(("model", "solver"), list(CASES), ids=[f"{m}-{s}" for m, s in CASES])
def test_every_solver_gives_the_cpu_accuracy_on_every_device(planted, device, model, solver, tmp_path):
    rec, rmse, pred = trained(planted, model, solver, device)
    assert rmse < planted[2]  # it learned something: below the ratings' spread
    _, rmse_again, pred_again = trained(planted, model, solver, device)
    assert rmse_again == rmse
    np.testing.assert_array_equal(pred_again, pred)  # a seeded rerun on one device is bit-identical
    if device != "cpu":
        _, rmse_cpu, _ = trained(planted, model, solver, "cpu")
        assert abs(rmse - rmse_cpu) <= 0.005, (rmse, rmse_cpu)
    rec.save(tmp_path / "m")
    again = Recommender.load(tmp_path / "m")  # on the CPU
    valid = planted[1].df
    assert_same_scores(again.predict(valid["user"], valid["item"])["prediction"], pred, rec.device == again.device)
