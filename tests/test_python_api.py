"""The Python API as a notebook uses it: wrong types get one sentence of a latentrec error, options pass as they
come back (a tuning's best_config), and the CLI's commands have their Python twins."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import lowrank_ratings
from tiny_rec import tiny_rec, trained

from latentrec import (
    Callback,
    Choice,
    ConfigError,
    DataError,
    Float,
    TrainConfig,
    bias_extremes,
    cross_validate,
    evaluate,
    fit,
    item_pca,
    kfolds,
    recommend,
    recommend_all,
    similar_items,
    tune,
)

SMALL = dict(solver="als", n_factors=4, epochs=3, device="cpu", ranker="none")


@pytest.mark.parametrize("call", [recommend, recommend_all, similar_items, bias_extremes, item_pca, evaluate])
def test_a_model_dir_path_where_a_recommender_goes_says_load_it(call, tmp_path):
    args = {"similar_items": ("i1",), "evaluate": (None,)}.get(call.__name__, ())
    with pytest.raises(ConfigError, match=r"not a path: load the model dir first, rec = Recommender.load"):
        call(str(tmp_path), *args)
    with pytest.raises(ConfigError, match="takes a Recommender .* not a dict"):
        call({}, *args)


def test_fit_and_evaluate_refuse_what_is_not_ratings():
    rec, df, _ = trained()
    with pytest.raises(DataError, match="evaluate scores Ratings, a DataFrame.* not a ndarray"):
        evaluate(rec, df.values)
    with pytest.raises(DataError, match="validation ratings are Ratings, a DataFrame or a file, not a ndarray"):
        fit(df, df.values)
    with pytest.raises(DataError, match="trains on Ratings, a DataFrame, a dataset name or a file"):
        fit(df.values)
    with pytest.raises(ConfigError, match="callbacks are a list of latentrec.Callback"):
        fit(df, config=TrainConfig(**SMALL), callbacks=[print])


def test_fit_takes_a_config_dict_and_callbacks_as_a_tuple():
    df, _ = lowrank_ratings(n_users=60, n_items=40)
    seen = []

    class Count(Callback):
        def on_epoch_end(self, trainer, record):
            seen.append(record["epoch"])

    rec, trainer = fit(df, config=TrainConfig(**SMALL).to_dict(), callbacks=(Count(),))
    assert rec.config["n_factors"] == 4 and seen == [1, 2, 3]


def test_evaluate_refuses_a_relevance_cut_above_the_scale():
    rec, df, _ = trained()
    with pytest.raises(ConfigError, match=r"threshold 9 \(--relevant\) is above the model's rating scale \(1 to 5\)"):
        evaluate(rec, df.iloc[:200], threshold=9)
    assert evaluate(rec, df.iloc[:200], threshold=5)["ranking"]["threshold"] == 5  # the top of the scale is a cut


def test_a_new_users_own_id_goes_with_their_ratings():
    rec, df, _ = trained()
    given = {df["item"][0]: 5, df["item"][1]: 4}
    new = recommend(rec, "newbie", n=5, ratings=given)
    assert new.equals(recommend(rec, n=5, ratings=given)) and new["known"].all()
    with pytest.raises(ConfigError, match="User 'u0' is known to the model: recommend takes a known user's id or"):
        recommend(rec, "u0", n=5, ratings=given)


def test_bias_extremes_leave_out_rarely_rated_items_by_default():
    rated = {u: [1, 2] + [3] * (u == 1) for u in range(1, 26)}  # item 3: one rating, and the lowest bias
    rec = tiny_rec(np.ones((25, 2)), np.ones((3, 2)), bi=[0.5, 0.2, -3.0], rated=rated)
    low, high = bias_extremes(rec, n=1)
    assert low["item"].tolist() == ["i2"] and high["item"].tolist() == ["i1"]  # as interpret and the CLI list them
    assert bias_extremes(rec, n=1, min_ratings=1)[0]["item"].tolist() == ["i3"]


def test_item_pca_builds_its_table_in_one_piece():
    rec, _, _ = trained()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pandas' PerformanceWarning for a frame built column by column
        pca, share = item_pca(rec, n_items=100, q=8)
    assert [c for c in pca.columns if c.startswith("pc")] == [f"pc{i}" for i in range(1, 9)] and len(share) == 8


def test_tune_checks_its_trials_and_space_before_training():
    df, _ = lowrank_ratings(n_users=60, n_items=40)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ConfigError, match=r"n_trials \(--trials\) must be a whole number of at least 1"):
            tune(df, base=TrainConfig(**SMALL), n_trials=bad)
    with pytest.raises(ConfigError, match=r"space wd must be .* latentrec.Float\(low, high\).* not \(0.01, 1.0\)"):
        tune(df, base=TrainConfig(**SMALL), space={"wd": (0.01, 1.0)})
    with pytest.raises(ConfigError, match="space: foo is not a training option that can be searched"):
        tune(df, base=TrainConfig(**SMALL), space={"foo": Float(0.1, 1)})
    result = tune(df, base=TrainConfig(**SMALL), n_trials=2, refit=False,
                  space={"wd": Float(0.05, 0.5, log=True), "n-factors": Choice([2, 4])})
    rec, _ = fit(df, config=result.best_config)  # the winner's options pass straight back to fit
    assert rec.config["wd"] == pytest.approx(result.best_config["wd"])


def test_cross_validate_takes_ratings_as_five_seeded_folds():
    df, _ = lowrank_ratings(n_users=60, n_items=40, density=0.5)
    config = TrainConfig(**SMALL, valid_pct=0)
    result = cross_validate(df, config)
    assert [f["fold"] for f in result["folds"]] == [f"fold {i}" for i in range(1, 6)]
    assert result["summary"]["rmse"] == cross_validate(kfolds(df, 5, seed=42), config)["summary"]["rmse"]
