"""The most-popular list as a ranker: ``--ranker popular``, and ``--ranker auto`` falling back to it when the
ranker it fitted loses to popularity on the validation rows."""

from __future__ import annotations

import json
from dataclasses import replace
from functools import cache

import numpy as np
import pandas as pd
import pytest
import torch
from test_ranking_models import planted_choices

from latentrec.cli import main
from latentrec.config import TrainConfig
from latentrec.data.ratings import Ratings
from latentrec.training import rankers
from latentrec.training.fit import fit
from latentrec.use.ranking import popularity_lists
from latentrec.use.recommender import Recommender
from latentrec.use.similar import item_vectors, similar_items
from latentrec.use.topn import top_n

CFG = TrainConfig(n_factors=4, epochs=12, device="cpu", seed=0)


@cache
def data() -> tuple[Ratings, Ratings, Ratings]:
    """Training rows of planted choices, validation rows the users chose by their group (what EASE finds), and
    validation rows of each user's three most-rated unrated items (what popularity finds)."""
    df = planted_choices()
    rng = np.random.default_rng(0)
    held = rng.random(len(df)) < 0.2
    train = df[~held]
    counts = train["item"].value_counts(sort=False)
    order = sorted(counts.index, key=lambda i: (-counts[i], int(i[1:])))
    popular = []
    for user, items in train.groupby("user")["item"]:
        mine = set(items)
        popular += [(user, i, 5.0) for i in [i for i in order if i not in mine][:3]]
    return (Ratings(train, "planted"), Ratings(df[held], "planted held out"),
            Ratings(pd.DataFrame(popular, columns=["user", "item", "rating"]), "most popular"))


def lists(rec: Recommender) -> np.ndarray:
    return top_n(rec, np.arange(1, len(rec.users)), 10)[0]


def test_auto_keeps_the_ranker_that_beats_popularity_on_the_validation_rows():
    train, held, _ = data()
    rec, _ = fit(train, held, CFG)
    assert rec.ranker.kind == "ease" and "ranker_check" not in rec.info


def test_auto_falls_back_to_popularity_where_it_ranks_the_validation_rows_better(tmp_path, device):
    train, _, popular = data()
    rec, _ = fit(train, popular, replace(CFG, device=device))
    assert rec.ranker.kind == "popular" and rec.ranker.scores.device.type == device
    check = rec.info["ranker_check"]
    assert check["ranker"] == "ease" and check["popular_ndcg"] > check["ndcg"]
    assert check["k"] == 10 and check["n_users"] == 240
    users = np.arange(1, len(rec.users))
    np.testing.assert_array_equal(lists(replace(rec, model=None)), popularity_lists(rec, users, 10))  # its order
    rec.save(tmp_path / "m")
    back = Recommender.load(tmp_path / "m")
    assert back.ranker.kind == "popular" and back.info["ranker_check"] == check
    np.testing.assert_array_equal(lists(back), lists(rec))
    # one order for everyone says nothing about which items are alike: similar items come from the rating model
    v = item_vectors(rec.model)
    cos = torch.nn.functional.cosine_similarity(v, v[5][None], dim=1)
    cos[[0, 5]] = -torch.inf
    assert list(similar_items(rec, rec.items.classes[5], n=3)["item"]) == \
        list(rec.items.decode(torch.topk(cos, 3).indices.cpu().numpy()))


def test_without_a_fitted_ranker_auto_compares_the_predicted_ratings_with_popularity(monkeypatch):
    monkeypatch.setattr(rankers, "EASE_AUTO_ITEMS", 0)  # as above 20M ratings: auto fits no ranker
    monkeypatch.setattr(rankers, "IALS_AUTO_RATINGS", 0)
    train, _, popular = data()
    rec, _ = fit(train, popular, CFG)
    assert rec.ranker.kind == "popular" and rec.info["ranker_check"]["ranker"] == "none"
    assert rec.rated_ratings is None  # kept only for a ranker that reads them (EASE): 4 bytes a rating saved


@pytest.mark.parametrize("ranker", ["ease", "none"])
def test_a_named_ranker_is_kept_whatever_popularity_scores(ranker):
    train, _, popular = data()
    rec, _ = fit(train, popular, TrainConfig(n_factors=4, epochs=12, device="cpu", seed=0, ranker=ranker))
    assert getattr(rec.ranker, "kind", "none") == ranker and "ranker_check" not in rec.info
    assert (rec.rated_ratings is None) == (ranker == "none")


def test_the_cli_trains_with_the_popular_ranker_and_says_so(tmp_path, capsys):
    train, held, _ = data()
    train.df.to_csv(tmp_path / "r.csv", index=False)
    assert main(["train", "--data", str(tmp_path / "r.csv"), "--out", str(tmp_path / "m"), "--ranker", "popular",
                 "--epochs", "12", "--n-factors", "4", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "popular ranker in" in out and "ordered by popularity)" in out
    assert "; lists by popularity)" in " ".join(out.split())  # the ranking table's title (may wrap)
    assert json.loads((tmp_path / "m" / "model.json").read_text())["ranker"]["kind"] == "popular"
    assert main(["recommend", str(tmp_path / "m"), "--user", "u1", "-n", "3", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    rec = Recommender.load(tmp_path / "m")
    want = rec.items.decode(popularity_lists(rec, rec.users.encode(["u1"]), 3)[0])
    assert [r["item"] for r in got["recommendations"]] == list(want)
    held.df.to_csv(tmp_path / "held.csv", index=False)  # rows the model never saw (train held them out too)
    assert main(["evaluate", str(tmp_path / "m"), "--data", str(tmp_path / "held.csv")]) == 0
    assert "its ranking row is popularity's" in capsys.readouterr().out
    given = ",".join(f"{i}:4" for i in want[:2])  # a new user who rated the two most popular items
    assert main(["recommend", str(tmp_path / "m"), "--ratings", given, "-n", "3"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "a new user with 2 ratings: the most-rated items they have not rated" in out


def test_the_cli_says_which_ranker_auto_replaced_by_popularity_and_why(tmp_path, capsys):
    train, _, popular = data()
    train.df.to_csv(tmp_path / "r.csv", index=False)
    popular.df.to_csv(tmp_path / "v.csv", index=False)
    args = ["train", "--data", str(tmp_path / "r.csv"), "--valid", str(tmp_path / "v.csv"),
            "--epochs", "12", "--n-factors", "4", "--device", "cpu", "--seed", "0"]
    assert main(args + ["--out", str(tmp_path / "m")]) == 0
    out = capsys.readouterr().out
    assert "+ ease ranker and its check against popularity and the predicted ratings in" in out  # EASE took the time
    assert "Lists ordered by popularity: on 240 validation users the ease ranker scored NDCG@10" in out
    assert "ordered by popularity)" in out
    assert main(args + ["--out", str(tmp_path / "m2"), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["ranker"] == "popular" and got["ranker_check"]["ranker"] == "ease"
    assert got["ranker_check"] == Recommender.load(tmp_path / "m2").info["ranker_check"]


@pytest.mark.parametrize("held", ["popular", "chosen"])
def test_tunes_refit_keeps_the_ranker_auto_checked_on_the_search_split(held):
    from latentrec.evaluation.tune import Int, tune

    train, chosen, popular = data()
    valid = popular if held == "popular" else chosen
    result = tune(train, valid, base=TrainConfig(n_factors=4, epochs=12, device="cpu", seed=0),
                  space={"n_factors": Int(3, 5)}, n_trials=1)
    assert result.model.ranker.kind == ("popular" if held == "popular" else "ease")


def test_similar_from_a_dir_with_only_the_popular_ranker_says_why_not(tmp_path, capsys):
    train, _, _ = data()
    rec, _ = fit(train, None, TrainConfig(n_factors=4, epochs=2, device="cpu", seed=0, ranker="popular"))
    replace(rec, model=None).save(tmp_path / "m")  # no command writes one; an edited or hand-built dir may hold it
    assert main(["similar", str(tmp_path / "m"), "--item", rec.items.classes[1]]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds only the popular ranker" in err


def test_one_validation_user_or_a_close_call_keeps_the_ranker(monkeypatch):
    train, _, popular = data()
    one = Ratings(popular.df[popular.df["user"] == "u0"], "one user")
    rec, _ = fit(train, one, CFG)
    assert rec.ranker.kind == "ease" and "ranker_check" not in rec.info
    monkeypatch.setattr(rankers, "SURE", 1e9)  # popularity ahead, but not by this many standard errors
    rec, _ = fit(train, popular, CFG)
    assert rec.ranker.kind == "ease"


def test_auto_takes_popularity_where_no_user_rated_two_items(tmp_path, capsys):
    """EASE learns from items rated together: with one rating a user it is all zeros and would list in id order."""
    df = pd.DataFrame({"user": range(300), "item": [i % 40 for i in range(300)],
                       "rating": [1 + (i * 7) % 5 for i in range(300)]})
    df.to_csv(tmp_path / "one_each.csv", index=False)
    assert main(["train", "--data", str(tmp_path / "one_each.csv"), "--epochs", "3", "--out", str(tmp_path / "m"),
                 "--json"]) == 0
    check = json.loads(capsys.readouterr().out)["ranker_check"]
    assert check == {"ranker": "ease", "reason": "no user rated two training items, so EASE learned nothing"}
    assert json.loads((tmp_path / "m" / "model.json").read_text())["ranker"]["kind"] == "popular"
    assert main(["recommend", str(tmp_path / "m"), "--user", "3", "-n", "3"]) == 0  # the dir loads


def test_only_a_ranker_that_reads_the_training_ratings_keeps_them(tmp_path):
    """EASE scores a user's weighted training row: its model dir keeps the ratings, and one without them is refused;
    iALS and popularity read none, so theirs keep none."""
    import shutil

    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from latentrec.errors import ModelFileError
    from latentrec.use.recommender import Recommender

    train, _, _ = data()
    for ranker, kept in (("ease", True), ("ials", False), ("popular", False)):
        rec, _ = fit(train, None, TrainConfig(n_factors=4, epochs=2, device="cpu", seed=0, ranker=ranker, valid_pct=0))
        rec.save(tmp_path / ranker)
        assert ("rated.ratings" in load_file(tmp_path / ranker / "model.safetensors")) == kept
        assert (Recommender.load(tmp_path / ranker).rated_ratings is not None) == kept
    shutil.copytree(tmp_path / "ease", tmp_path / "damaged")
    path = tmp_path / "damaged" / "model.safetensors"
    with safe_open(path, "pt") as f:
        header = f.metadata()  # its write id, which model.json shares
    weights = load_file(path)
    del weights["rated.ratings"]
    save_file(weights, path, metadata=header)
    with pytest.raises(ModelFileError, match="reads the training ratings"):
        Recommender.load(tmp_path / "damaged")


def test_on_dense_data_auto_keeps_the_predicted_ratings_order(tmp_path, capsys):
    """Everyone rated nearly every item (as in Jester): who rated what says nothing, so EASE's lists lose to the
    rating model's own order, and auto keeps that (it weighed EASE against popularity only)."""
    from conftest import lowrank_ratings

    df, _ = lowrank_ratings(n_users=300, n_items=40, density=0.9, noise=0.3, seed=3)
    perm = np.random.default_rng(0).permutation(len(df))
    df.iloc[perm[:2880]].to_csv(tmp_path / "r.csv", index=False)
    df.iloc[perm[2880:]].to_csv(tmp_path / "v.csv", index=False)
    assert main(["train", "--data", str(tmp_path / "r.csv"), "--valid", str(tmp_path / "v.csv"), "--epochs", "12",
                 "--n-factors", "4", "--device", "cpu", "--seed", "0", "--out", str(tmp_path / "m")]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "Lists ordered by the predicted ratings: on" in out and "the ease ranker scored NDCG@10" in out
    rec = Recommender.load(tmp_path / "m")  # the check is a valid model.json field
    check = rec.info["ranker_check"]
    assert rec.ranker is None and check["kept"] == "none" and check["none_ndcg"] > check["ndcg"] + 2 * check["se"]
