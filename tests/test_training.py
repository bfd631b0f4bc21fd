import re

import numpy as np
import pandas as pd
import pytest

from latentrec.config import TrainConfig
from latentrec.data.ratings import Ratings, load_ratings
from latentrec.errors import ConfigError, TrainingDiverged
from latentrec.evaluation.evaluate import evaluate
from latentrec.models.baselines import FALLBACK_DAMPING
from latentrec.training.fit import fit
from latentrec.use.recommender import Recommender


def test_numbers_of_any_kind_are_taken_and_text_is_refused():
    cfg = TrainConfig(epochs=np.int64(5), n_factors=np.int64(4), lr=np.float32(0.01), solver="sgd").resolved()
    assert (cfg.epochs, cfg.n_factors) == (5, 4) and type(cfg.epochs) is int and type(cfg.lr) is float
    for bad, says in ((dict(epochs="5"), "epochs (--epochs) must be a whole number, not '5'"),
                      (dict(lr="0.01"), "lr (--lr) must be a number, not '0.01'"),
                      (dict(model="svd"), "model (--model) must be one of dot, nn, ease, ials, not 'svd'")):
        with pytest.raises(ConfigError, match=re.escape(says)):
            TrainConfig(**bad).resolved()


@pytest.mark.parametrize("solver", ["sgd", "autograd"])
def test_lowrank_structure_is_recovered_near_noise_floor(lowrank, solver):
    train, test, noise = lowrank
    cfg = TrainConfig(solver=solver, n_factors=8, valid_pct=0, epochs=60 if solver == "sgd" else 40,
                      lr=0.02 if solver == "sgd" else 0.01, wd=0.01 if solver == "sgd" else 0.01,
                      schedule="cosine", y_range=(0.0, 7.0), device="cpu")
    rec, _ = fit(train, config=cfg)
    result = evaluate(rec, test)
    assert result["rmse"] < noise + 0.08, result["rmse"]
    assert result["rmse"] < 0.3 * result["baselines"]["biases"]["rmse"]


def test_save_load_gives_identical_predictions(lowrank, tmp_path):
    train, test, _ = lowrank
    rec, _ = fit(train, config=TrainConfig(n_factors=4, epochs=3, device="cpu"))
    rec.save(tmp_path / "m")
    back = Recommender.load(tmp_path / "m")
    users, items = test.df.user.to_numpy(), test.df.item.to_numpy()
    a, b = rec.predict(users, items), back.predict(users, items)
    assert np.array_equal(a.prediction.to_numpy(), b.prediction.to_numpy())
    assert back.config == rec.config and back.history == rec.history


def test_seeded_cpu_runs_are_repeatable(lowrank):
    train, _, _ = lowrank
    cfg = TrainConfig(n_factors=4, epochs=3, device="cpu", seed=7)
    a, _ = fit(train, config=cfg)
    b, _ = fit(train, config=cfg)
    assert np.array_equal(a.model.user_factors.detach().numpy(), b.model.user_factors.detach().numpy())


def test_unknown_ids_get_flagged_fallback(lowrank, tmp_path):
    """An unknown item gets the user's damped mean training rating, an unknown user the item's, both the global
    mean; a saved model dir keeps them."""
    train, _, _ = lowrank
    rec, trainer = fit(train, config=TrainConfig(n_factors=4, epochs=5, device="cpu", valid_pct=0))
    out = rec.predict(["u1", "nobody", "nobody"], ["nothing", "i1", "nothing"])
    assert out.known_user.tolist() == [True, False, False]
    assert out.known_item.tolist() == [False, True, False]
    df, d = train.df, FALLBACK_DAMPING
    mu = float(df.rating.mean())
    damped = [(r.sum() + d * mu) / (len(r) + d) for r in (df.rating[df.user == "u1"], df.rating[df.item == "i1"])]
    assert out.prediction.tolist() == pytest.approx([*damped, mu], abs=1e-5)
    rec.save(tmp_path / "m")
    back = Recommender.load(tmp_path / "m").predict(["u1", "nobody", "nobody"], ["nothing", "i1", "nothing"])
    assert np.array_equal(back.prediction.to_numpy(), out.prediction.to_numpy())


@pytest.mark.filterwarnings("ignore::latentrec.errors.SeenPairsScored")  # scores its validation rows
def test_validation_scores_unknown_ids_as_the_saved_model_does(lowrank):
    """The Trainer's validation RMSE on rows with unknown ids is evaluate's on the model it returns."""
    train, _, _ = lowrank
    df = train.df
    valid = df[df.user.isin(["u1", "u2"]) | df.item.isin(["i1"])]
    rest = Ratings(df.drop(valid.index).reset_index(drop=True), "rest")
    rec, trainer = fit(rest, Ratings(valid.reset_index(drop=True), "valid"),
                       config=TrainConfig(n_factors=4, epochs=3, device="cpu"))
    r = evaluate(rec, Ratings(valid.reset_index(drop=True), "valid"), k=None)
    assert r["n_unknown"] == len(valid)
    assert trainer.history[trainer.best_epoch - 1]["valid_rmse"] == pytest.approx(r["rmse"], abs=1e-6)


def test_divergence_keeps_last_good_weights_and_suggests_lr(lowrank):
    train, _, _ = lowrank
    cfg = TrainConfig(solver="autograd", opt="sgd", momentum=0.9, lr=1e4, epochs=5, n_factors=4,
                      y_range=None, schedule="constant", device="cpu")
    with pytest.warns(TrainingDiverged, match="^Training diverged in epoch .*--lr") as caught:  # a library caller hears it
        rec, trainer = fit(train, config=cfg)
    said = str(caught[0].message)
    assert said.count("Training diverged") == 1 and ("untrained" in said) != ("kept the weights" in said)
    assert trainer.diverged and "--lr" in trainer.diverged and rec.info["diverged"] == trainer.diverged
    assert all(np.isfinite(p.detach().numpy()).all() for p in rec.model.parameters())


def test_divergence_names_the_epoch_whose_weights_are_kept(lowrank):
    """Validation got worse before the rate blew up: the model keeps the best epoch, and the sentence says which."""
    train, _, _ = lowrank
    cfg = TrainConfig(solver="autograd", opt="sgd", momentum=0.9, lr=0.05, epochs=8, n_factors=4, y_range=None,
                      schedule="step:4:1,6:20", device="cpu")
    with pytest.warns(TrainingDiverged):
        rec, trainer = fit(train, config=cfg)
    assert trainer.best_epoch < len(trainer.history)  # the last good epoch was not the best
    assert f"kept the weights of epoch {trainer.best_epoch}." in trainer.diverged


@pytest.mark.parametrize("y_range", [None, (0.5, 5.5)])
def test_the_sgd_kernel_diverging_is_told_not_raised(lowrank, y_range):
    train, _, _ = lowrank
    cfg = TrainConfig(solver="sgd", lr=30.0, epochs=3, n_factors=4, y_range=y_range, device="cpu")
    with pytest.warns(TrainingDiverged):  # a numba division by zero used to escape as ZeroDivisionError
        rec, trainer = fit(train, config=cfg)
    assert trainer.diverged and "--lr" in trainer.diverged
    assert all(np.isfinite(p.detach().numpy()).all() for p in rec.model.parameters())


@pytest.mark.slow
def test_ml100k_few_epochs_beat_the_bias_baseline(ml100k_dir):
    data = load_ratings(str(ml100k_dir / "u1.base"))
    test = load_ratings(str(ml100k_dir / "u1.test"))
    rec, _ = fit(data, config=TrainConfig(epochs=20, valid_pct=0, device="cpu"))
    result = evaluate(rec, test)
    assert result["rmse"] < result["baselines"]["biases"]["rmse"] - 0.005
    assert result["baselines"]["global_mean"]["rmse"] > 1.1


@pytest.mark.filterwarnings("ignore::latentrec.errors.SeenPairsScored")  # scores its validation rows
def test_a_notebook_dataframe_or_file_trains_and_scores_and_a_config_goes_by_name(lowrank, tmp_path):
    train, valid, _ = lowrank
    cfg = TrainConfig(solver="als", epochs=2, n_factors=4, ranker="none", device="cpu")
    from_frames, _ = fit(train.df, valid.df, config=cfg)  # checked and read as load_ratings reads them
    from_ratings, _ = fit(train, valid, config=cfg)
    assert evaluate(from_frames, valid.df, k=None)["rmse"] == evaluate(from_ratings, valid, k=None)["rmse"]
    valid.df.to_csv(tmp_path / "valid.csv", index=False)
    assert evaluate(from_ratings, str(tmp_path / "valid.csv"), k=None)["rmse"] == pytest.approx(
        evaluate(from_ratings, valid, k=None)["rmse"], abs=1e-6)  # a file, as `evaluate --data` reads it
    with pytest.raises(ConfigError, match=re.escape("fit(ratings, config=TrainConfig(...))")):
        fit(train, cfg)
    with pytest.raises(ConfigError, match="threshold must be a number"):
        evaluate(from_frames, valid, threshold="4")


def test_the_sgd_recipe_follows_the_rating_scale(lowrank):
    """Ratings on a 20-times wider scale (0-100 rather than 1-5) get the same model, 20 times wider: the sgd recipe's
    rate and decay move with the scale, and the saved config holds what was used."""
    train, valid, _ = lowrank
    cfg = TrainConfig(solver="sgd", n_factors=4, epochs=5, ranker="none", device="cpu")
    wide = [load_ratings(r.df.assign(rating=r.df.rating * 20)) for r in (train, valid)]
    narrow, _ = fit(train, valid, config=cfg)
    wide_rec, _ = fit(*wide, config=cfg)
    assert wide_rec.info["metrics"]["valid_rmse"] == pytest.approx(20 * narrow.info["metrics"]["valid_rmse"], rel=1e-3)
    assert wide_rec.config["lr"] == pytest.approx(narrow.config["lr"] / 400)
    assert wide_rec.config["wd"] == pytest.approx(narrow.config["wd"] * 400)


@pytest.mark.filterwarnings("ignore::latentrec.errors.SeenPairsScored")  # scores its validation rows
def test_the_als_ridge_and_tunes_default_ranges_follow_the_rating_scale(lowrank):
    """ALS's factors grow as the square root of the scale: its ridge moves by the scale (20 for 0-100 rather than
    1-5), which keeps its lead over the bias baseline; tune's default ranges move as the recipe's values do."""
    from latentrec.evaluation.tune import default_space

    train, valid, _ = lowrank
    cfg = TrainConfig(solver="als", ranker="none", device="cpu")
    wide = [load_ratings(r.df.assign(rating=r.df.rating * 20)) for r in (train, valid)]
    narrow, _ = fit(train, valid, config=cfg)
    wide_rec, _ = fit(*wide, config=cfg)
    assert wide_rec.config["wd"] == pytest.approx(narrow.config["wd"] * 20)
    lead = [evaluate(rec, data, k=None) for rec, data in ((narrow, valid), (wide_rec, wide[1]))]
    ratios = [r["rmse"] / r["baselines"]["biases"]["rmse"] for r in lead]
    assert ratios[1] < 0.8 and ratios[1] == pytest.approx(ratios[0], abs=0.05), ratios
    assert fit(*wide, config=TrainConfig(solver="als", ranker="none", device="cpu", wd=0.14))[0].config["wd"] == 0.14
    moved = wide_rec.config["wd"] / 0.14  # the recipe's wd, moved
    als, sgd = default_space("dot", "als", wide[0]), default_space("dot", "sgd", wide[0])
    assert als["wd"].low == pytest.approx(default_space("dot", "als")["wd"].low * moved)
    assert sgd["wd"].high == pytest.approx(default_space("dot", "sgd")["wd"].high * moved ** 2)
    assert sgd["lr"].low == pytest.approx(default_space("dot", "sgd")["lr"].low / moved ** 2)
    assert default_space("dot", "sgd", load_ratings("ml-100k")) == default_space("dot", "sgd")  # 1-5: unchanged


@pytest.mark.filterwarnings("ignore::latentrec.errors.SeenPairsScored")  # scores its validation rows
def test_relevance_is_three_quarters_up_the_scale_by_default(lowrank):
    """The top-k metrics' relevant items are the test ratings three quarters up the rating scale (4 on 1-5), so a
    0-100 or a -2..2 scale gets ranking metrics too, the same ones."""
    train, valid, _ = lowrank
    cfg = TrainConfig(solver="als", n_factors=4, epochs=2, ranker="none", device="cpu")
    results = []
    for shift, mult in ((0, 1), (-3, 20)):
        data = [load_ratings(r.df.assign(rating=(r.df.rating + shift) * mult)) for r in (train, valid)]
        rec, _ = fit(*data, config=cfg)
        lo, hi = rec.rating_range
        got = evaluate(rec, data[1])["ranking"]
        assert got["threshold"] == pytest.approx(lo + 0.75 * (hi - lo))
        results.append((got["n_relevant"], got["n_users"]))
    assert results[0] == results[1] and results[0][0] > 0


def test_evaluate_warns_when_it_scores_pairs_the_model_was_built_from(lowrank):
    """The CLI prints a note; Python gets a SeenPairsScored warning, and none on unseen pairs."""
    import warnings

    from latentrec.errors import SeenPairsScored

    train, test, _ = lowrank
    rec, _ = fit(train, config=TrainConfig(n_factors=4, epochs=2, device="cpu", valid_pct=0, ranker="none"))
    with pytest.warns(SeenPairsScored, match=rf"{len(train):,} of the {len(train):,} pairs scored were in the data"):
        assert evaluate(rec, train, k=None)["n_seen"] == len(train)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert evaluate(rec, test, k=None)["n_seen"] == 0


def test_evaluate_warns_when_it_scores_the_rows_fit_validated_on(lowrank, tmp_path, capsys):
    """``fit(train, valid=test)`` then ``evaluate(rec, test)``: the rows that chose the best epoch and the ranker
    were scored as new data, without a word (they are not among the pairs the model was built from)."""
    import warnings

    from latentrec import Recommender
    from latentrec.cli.evaluate import print_notes
    from latentrec.errors import SeenPairsScored

    train, test, _ = lowrank
    rec, _ = fit(train, test, TrainConfig(n_factors=4, epochs=2, device="cpu", ranker="none"))
    rec.save(tmp_path / "m")
    shuffled = test.df.sample(frac=1.0, random_state=0)  # the same rows in another order
    for model in (rec, Recommender.load(tmp_path / "m")):
        with pytest.warns(SeenPairsScored, match=r"are the validation rows the model was fit with"):
            got = evaluate(model, shuffled, k=None)
        assert got["n_seen"] == 0 and got["valid_rows"]
    print_notes(got)
    assert "these are the validation rows the model was fit with" in capsys.readouterr().out
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert "valid_rows" not in evaluate(rec, test.df.iloc[1:], k=None)  # other rows: not those


def test_a_rate_above_the_recipes_is_told_the_recipes_for_these_ratings(lowrank):
    """A third of 50 diverges too: the advice is the recipe's rate, moved to the ratings' scale as fit moves it."""
    from latentrec.config import ratings_scale, recipe_value

    train, _, _ = lowrank
    for scale in (1, 20):
        data = train.df.assign(rating=train.df.rating * scale)
        with pytest.warns(TrainingDiverged) as caught:
            fit(data, config=TrainConfig(solver="sgd", lr=50, epochs=2, valid_pct=0, device="cpu", ranker="none"))
        r = data.rating.to_numpy(np.float32)
        recipe = recipe_value("dot", "sgd", "lr", ratings_scale(r))
        assert f"try lr (--lr) {recipe:.3g}, the recipe's for these ratings" in str(caught[0].message)
    assert recipe < 0.02 / 100  # 20 times the spread: 400 times smaller


@pytest.mark.parametrize("solver", ["autograd", "als"])
def test_no_seed_is_a_random_run_that_records_its_seed(lowrank, solver):
    """seed=None: each fit draws its own split, weights and batches (the batch order was the same every time), and
    the model's config keeps the seed drawn, so the run can be repeated."""
    train = lowrank[0]
    cfg = TrainConfig(solver=solver, epochs=2, n_factors=4, seed=None, device="cpu", ranker="none")
    a, b = fit(train, None, cfg)[0], fit(train, None, cfg)[0]
    assert a.config["seed"] != b.config["seed"]
    assert not np.array_equal(a.model.item_factors.detach().numpy(), b.model.item_factors.detach().numpy())
    again = fit(train, None, TrainConfig.from_dict(a.config))[0]
    assert np.array_equal(again.model.item_factors.detach().numpy(), a.model.item_factors.detach().numpy())


def test_a_models_titles_are_its_own():
    """Editing rec.titles changes neither the Ratings it was fitted from nor the next model fitted from them."""
    df = pd.DataFrame({"user": [1, 1, 2, 2, 3], "item": [1, 2, 1, 3, 2], "rating": [4.0, 3, 5, 2, 4]})
    ratings = Ratings(df, "five", titles={"1": "One"})
    rec, _ = fit(ratings, config=TrainConfig(solver="als", epochs=1, valid_pct=0, ranker="none", device="cpu"))
    rec.titles["1"] = "Edited"
    assert ratings.titles == {"1": "One"}
