"""Cross-validation: folds are disjoint and cover the data; scores and baselines per fold, mean ± std."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import lowrank_ratings

from latentrec.cli import main
from latentrec.config import TrainConfig
from latentrec.data.ratings import Ratings
from latentrec.errors import ConfigError
from latentrec.evaluation.cv import cross_validate, kfolds, parse_split


def pairs(r: Ratings) -> set:
    return set(zip(r.df.user, r.df.item))


@pytest.mark.parametrize("k", [2, 5])
def test_folds_are_disjoint_and_cover_the_data(k):
    data = Ratings(lowrank_ratings(n_users=50, n_items=30, density=0.5)[0], "tiny")
    folds = kfolds(data, k, seed=3)
    everything = pairs(data)
    tests = [pairs(test) for _, _, test in folds]
    assert len(folds) == k and set().union(*tests) == everything
    assert sum(len(t) for t in tests) == len(data)  # disjoint
    for (_, train, test), t in zip(folds, tests):
        assert pairs(train) == everything - t and len(train) + len(test) == len(data)
    assert tests != [pairs(f[2]) for f in kfolds(data, k, seed=4)]  # the seed matters
    assert tests == [pairs(f[2]) for f in kfolds(data, k, seed=3)]  # and is repeatable


def test_parse_split():
    assert parse_split("u1-u5") == ["u1", "u2", "u3", "u4", "u5"]
    assert parse_split("u2,ua") == ["u2", "ua"]
    for bad in ("u0-u5", "u1,u1", "x", "u5-u1"):
        with pytest.raises(ConfigError):
            parse_split(bad)


def test_cross_validate_reports_folds_and_mean_std():
    data = Ratings(lowrank_ratings(n_users=100, n_items=60, density=0.4)[0], "tiny")
    cfg = TrainConfig(solver="sgd", n_factors=4, epochs=40, lr=0.05, wd=0.01, valid_pct=0, y_range=(0.0, 7.0), device="cpu")
    result = cross_validate(kfolds(data, 3, seed=1), cfg)
    rmse = [f["rmse"] for f in result["folds"]]
    assert len(rmse) == 3 and result["summary"]["rmse"]["mean"] == pytest.approx(np.mean(rmse))
    assert result["summary"]["rmse"]["std"] == pytest.approx(np.std(rmse))
    assert result["summary"]["rmse"]["mean"] < 0.5 * result["summary"]["biases_rmse"]["mean"]
    assert result["summary"]["biases_rmse"]["mean"] < result["summary"]["global_mean_rmse"]["mean"]


def test_cli_cv_json_and_bad_input(tmp_path, capsys):
    lowrank_ratings(n_users=60, n_items=40, density=0.4)[0].to_csv(tmp_path / "r.csv", index=False)
    (tmp_path / "c.toml").write_text("n_factors = 3\nepochs = 3\nvalid = 'ignored.csv'\nvalid_pct = 0.2\n")
    assert main(["cv", "--data", str(tmp_path / "r.csv"), "--folds", "3", "--config", str(tmp_path / "c.toml"),
                 "--device", "cpu", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [f["fold"] for f in result["folds"]] == ["fold 1", "fold 2", "fold 3"]
    assert result["config"]["n_factors"] == 3 and result["config"]["valid_pct"] == 0  # a tune best.toml's 0.2 too
    assert main(["cv", "--data", str(tmp_path / "r.csv"), "--folds", "1"]) == 2
    assert main(["cv", "--data", str(tmp_path / "r.csv"), "--split", "u1-u2"]) == 2
    assert main(["cv", "--split", "u1-u5", "--folds", "3"]) == 2  # two ways to choose the folds
    err = capsys.readouterr().err
    assert err.count("latentrec cv: error:") == 3 and "Traceback" not in err and "give one of them" in err


def test_ml100k_own_folds(ml100k_dir, capsys):
    assert main(["cv", "--split", "u1,u2", "--epochs", "3", "--n-factors", "8", "--device", "cpu", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [(f["fold"], f["n_train"], f["n_test"]) for f in result["folds"]] == [("u1", 80000, 20000),
                                                                               ("u2", 80000, 20000)]
    assert result["summary"]["rmse"]["mean"] < result["summary"]["global_mean_rmse"]["mean"] - 0.1
