"""Ranking metrics: a hand-computed example, training items excluded, popularity baseline, evaluate/CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from tiny_rec import tiny_rec, trained

from latentrec.cli import main
from latentrec.data.batches import EncodedRows
from latentrec.data.ratings import Ratings
from latentrec.errors import SeenPairsScored
from latentrec.evaluation.evaluate import evaluate
from latentrec.use.ranking import evaluate_ranking, popularity_lists, ranking_metrics


def unseen(df: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """``n`` random (user, item) pairs of ``df``'s ids that ``df`` does not hold, rated 5."""
    pairs = pd.MultiIndex.from_product([df["user"].unique(), df["item"].unique()]).difference(
        pd.MultiIndex.from_frame(df[["user", "item"]]))
    picked = pairs[np.random.default_rng(seed).choice(len(pairs), n, replace=False)]
    return pd.DataFrame({"user": picked.get_level_values(0), "item": picked.get_level_values(1), "rating": 5.0})


def test_hand_computed_metrics():
    lists = np.array([[3, 1, 5], [2, 4, 0]])  # user 2's list has an empty slot
    relevant = [np.array([1, 2]), np.array([6])]
    m = ranking_metrics(lists, relevant, n_items=8)  # 7 known items
    assert m["precision@3"] == pytest.approx((1 / 3 + 0) / 2)
    assert m["recall@3"] == pytest.approx((1 / 2 + 0) / 2)
    ndcg_u1 = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert m["ndcg@3"] == pytest.approx(ndcg_u1 / 2)
    assert m["hit_rate"] == pytest.approx(0.5)
    assert m["coverage"] == pytest.approx(5 / 7)


def test_model_and_popularity_lists_on_a_tiny_model():
    # scores = item bias only; the user rated i1 in training, so i1 may never be recommended
    rec = tiny_rec([[0.0], [0.0]], [[0.0]] * 4, bi=[3.0, 2.0, 1.0, 0.0], rated={1: [1], 2: [2, 3, 4]})
    test = Ratings(pd.DataFrame({"user": ["u1", "u1", "u1", "u2", "ghost"], "item": ["i1", "i3", "i4", "i1", "i2"],
                                 "rating": np.float32([5, 4, 2, 5, 5])}), "t")
    r = evaluate_ranking(rec, rec.encode_rows(test), k=2)
    # u1: list [i2, i3], relevant {i3} (i1 is a training item: no list can hold it) -> 1 hit;
    # u2: list [i1], relevant {i1} -> 1 hit
    assert r["n_users"] == 2 and r["n_unknown_users"] == 1 and r["k"] == 2 and r["n_relevant"] == 2
    assert r["ordered_by"] == "model"  # no ranker: the lists are the rating model's own
    assert r["model"]["precision@2"] == pytest.approx((1 / 2 + 1 / 2) / 2)
    assert r["model"]["recall@2"] == pytest.approx(1.0)
    assert r["model"]["hit_rate"] == 1.0
    # popularity: every item has 1 training rating -> order i1, i2, i3, i4, minus each user's rated items
    np.testing.assert_array_equal(popularity_lists(rec, np.array([1, 2]), 2), [[2, 3], [1, 0]])


def test_evaluate_includes_ranking_and_excludes_training_items():
    rec, df, _ = trained()
    test = Ratings(df.sample(2000, random_state=0), "t")
    with pytest.warns(SeenPairsScored):
        r = evaluate(rec, test)
    g = r["ranking"]
    # every test pair is a training pair here: no list can hold one, so no user is scored
    assert g["n_users"] == 0 and g["n_relevant"] == 0
    for who in ("model", "popularity"):
        assert set(g[who]) == {"precision@10", "recall@10", "ndcg@10", "hit_rate", "coverage"}
        assert np.isnan(g[who]["ndcg@10"]) and g[who]["coverage"] == 0
    g = evaluate(rec, Ratings(unseen(df, 2000, 0), "t"))["ranking"]
    assert g["n_users"] > 0
    assert all(0 <= v <= 1 for who in ("model", "popularity") for v in g[who].values())
    with pytest.warns(SeenPairsScored):
        assert "ranking" not in evaluate(rec, test, k=None)


def test_cli_evaluate_reports_ranking(tmp_path, capsys):
    rec, df, _ = trained()
    rec.save(tmp_path / "m")
    unseen(df, 500, 0).to_csv(tmp_path / "t.csv", index=False)
    assert main(["evaluate", str(tmp_path / "m"), "--data", str(tmp_path / "t.csv"), "--json", "-k", "5"]) == 0
    assert "precision@5" in json.loads(capsys.readouterr().out)["ranking"]["model"]
    assert main(["evaluate", str(tmp_path / "m"), "--data", str(tmp_path / "t.csv")]) == 0
    assert "popularity" in capsys.readouterr().out


def test_a_sample_of_users_is_scored_like_those_users_alone(capsys):
    rec, df, _ = trained()
    test = Ratings(unseen(df, 3000, 1), "t")
    rows = rec.encode_rows(test)
    full = evaluate_ranking(rec, rows, 5)
    sample = evaluate_ranking(rec, rows, 5, max_users=7)
    assert sample["n_users"] == 7 and sample["n_users_eligible"] == full["n_users"] == full["n_users_eligible"] > 7
    assert evaluate_ranking(rec, rows, 5, max_users=7) == sample  # seeded
    assert evaluate_ranking(rec, rows, 5, max_users=full["n_users"]) == full  # no more users than the cap: all
    # the same numbers as scoring the sampled users' rows alone (the sample: seeded, seed 0)
    eligible = np.unique(rows.data.users[rows.data.users > 0])
    kept = eligible[np.sort(np.random.default_rng(0).choice(len(eligible), 7, replace=False))]
    mask = np.isin(rows.data.users, kept)
    d = rows.data
    alone = evaluate_ranking(rec, EncodedRows(d.take(mask), "t", 0), 5)
    assert alone["model"] == sample["model"] and alone["popularity"] == sample["popularity"]
    assert alone["n_relevant"] == sample["n_relevant"]
    from latentrec.cli.evaluate import print_ranking

    print_ranking(sample)
    assert f"a seeded sample of 7 of the {full['n_users']:,} users" in capsys.readouterr().out


def test_train_scores_a_sample_of_many_test_users(tmp_path, capsys, monkeypatch):
    import latentrec.cli.train

    monkeypatch.setattr(latentrec.cli.train, "RANK_EVAL_USERS", 5)
    _, df, _ = trained()
    df.to_csv(tmp_path / "r.csv", index=False)
    assert main(["train", "--data", str(tmp_path / "r.csv"), "--epochs", "2", "--n-factors", "2", "--device", "cpu",
                 "--out", str(tmp_path / "m"), "--json"]) == 0
    ranking = json.loads(capsys.readouterr().out)["valid"]["ranking"]
    assert ranking["n_users"] == 5 < ranking["n_users_eligible"]


def test_items_rated_in_a_valid_file_are_skipped_by_the_test_ranking_and_the_saved_lists(tmp_path, capsys):
    """With --valid FILE, its items stayed candidates: the popularity list put first an item the user had rated."""
    from latentrec.use.recommender import Recommender

    users = [f"u{u}" for u in range(12)]
    pairs = [(u, f"i{i}") for u in users for i in range(2, 8)]  # everyone's; then i1 by 4 users, i8 by 2, i9 by 1
    pairs += [(u, "i1") for u in users[:4]] + [(u, "i8") for u in users[:2]] + [("u0", "i9")]
    train = pd.DataFrame([(u, i, 1.0 + k % 5) for k, (u, i) in enumerate(pairs)], columns=["user", "item", "rating"])
    valid = pd.DataFrame({"user": users[4:], "item": "i1", "rating": 2.0})  # the most-rated item after this file
    valid = pd.concat([valid, train.head(3)])  # pairs also in --data are counted once
    test = pd.DataFrame({"user": users[4:], "item": "i9", "rating": 5.0})
    for name, frame in (("train", train), ("valid", valid), ("test", test)):
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
    assert main(["train", "--data", str(tmp_path / "train.csv"), "--valid", str(tmp_path / "valid.csv"),
                 "--test", str(tmp_path / "test.csv"), "--ranker", "popular", "--epochs", "2", "--n-factors", "2",
                 "--device", "cpu", "--out", str(tmp_path / "m"), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)["test"]
    rec = Recommender.load(tmp_path / "m")
    lists = [list(rec.items.decode(row)) for row in popularity_lists(rec, rec.users.encode(users[4:]), 2)]
    assert lists == [["i8", "i9"]] * 8  # i1 left out: each of them rated it in the valid file
    assert got["ranking"]["popularity"]["ndcg@9"] == pytest.approx(1 / math.log2(3))  # @9: the items it knows
    assert rec.rated_indptr[-1] == len(train) + 8  # the valid file's new pairs; those also in --data once
