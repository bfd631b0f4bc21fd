"""Top-N: rated items excluded, sorted, chunked = full product, batch = per user, cold start, output files."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch
from tiny_rec import tiny_rec, trained

from latentrec.cli import main
from latentrec.errors import ConfigError
from latentrec.models.dot import DotProductBias
from latentrec.use.serve.app import user_recommendations
from latentrec.use.topn import popular, recommend, recommend_all, top_n, write_table


def brute_force(rec, users, n, include_rated=False):
    """Full score matrix, masked in numpy: the reference for top_n."""
    s = rec.model.score_users(torch.as_tensor(users)).numpy().astype(np.float64)
    s[:, 0] = -np.inf
    if not include_rated:
        for row, u in enumerate(users):
            s[row, rec.rated_by(u)] = -np.inf
    return np.argsort(-s, axis=1, kind="stable")[:, :n], s


def test_recommendations_skip_rated_items_and_are_sorted():
    rec, df, _ = trained()
    for user in ("u0", "u7", "u42"):
        top = recommend(rec, user, n=15)
        rated = set(df.loc[df.user == user, "item"])
        assert len(top) == 15 and top["known"].all()
        assert not rated & set(top["item"])
        assert np.all(np.diff(top["prediction"].to_numpy()) <= 1e-6)
        assert list(top["rank"]) == list(range(1, 16))


def test_include_rated_keeps_the_best_items_even_if_rated():
    rec, df, _ = trained()
    u = int(rec.users.encode(["u3"])[0])
    ref, s = brute_force(rec, [u], 5, include_rated=True)
    top = recommend(rec, "u3", n=5, include_rated=True)
    assert list(top["item"]) == rec.items.decode(ref[0])
    np.testing.assert_allclose(top["prediction"], np.clip(s[0, ref[0]], 1, 5), atol=1e-5)


def test_chunked_top_n_equals_the_full_product():
    rec, _, _ = trained()
    users = np.arange(1, len(rec.users))
    ref, s = brute_force(rec, users, 10)
    for chunk in (1, len(rec.items) * 7 + 3, 1 << 30):
        items, scores = top_n(rec, users, 10, chunk_scores=chunk)
        np.testing.assert_array_equal(items, ref)
        np.testing.assert_allclose(scores, np.clip(np.take_along_axis(s, ref, 1), 1, 5), atol=1e-5)


def test_batch_top_n_equals_per_user_and_unordered_users():
    rec, _, _ = trained()
    users = np.array([9, 2, 40, 2, 17])
    items, _ = top_n(rec, users, 8, chunk_scores=len(rec.items) * 2)
    for row, u in enumerate(users):
        one = recommend(rec, rec.users.classes[u], n=8)
        assert rec.items.decode(items[row]) == list(one["item"])


def test_models_without_the_fast_path_rank_through_score_users():
    class Shifted(DotProductBias):
        @torch.no_grad()
        def score_users(self, users):
            return super().score_users(users) - 0.0

    rec, _, _ = trained()
    fast, _ = top_n(rec, np.arange(1, 30), 6)
    slow_model = Shifted(rec.model.n_users, rec.model.n_items, rec.model.n_factors, rec.model.y_range)
    slow_model.load_state_dict(rec.model.state_dict())
    rec2 = dataclasses.replace(rec, model=slow_model)
    slow, _ = top_n(rec2, np.arange(1, 30), 6)
    np.testing.assert_array_equal(fast, slow)


def test_users_with_few_candidates_get_empty_slots():
    rec = tiny_rec([[1.0], [0.5]], [[1.0], [2.0], [3.0]], rated={1: [1, 2, 3], 2: [1]})
    items, scores = top_n(rec, np.array([1, 2]), 5)
    assert items.shape == (2, 3)
    assert np.isnan(scores[0]).all() and (items[0] == 0).all()
    assert list(items[1][:2]) == [3, 2] and np.isnan(scores[1][2])
    assert recommend(rec, "u1").empty


def test_unknown_user_gets_popular_items_with_enough_ratings():
    rec, _, _ = trained()
    counts = rec.item_counts
    top = recommend(rec, "nobody", n=10, min_ratings=40)
    assert not top["known"].any()
    idx = rec.items.encode(top["item"])
    assert (counts[idx] >= 40).all()
    # popularity is the number of ratings (issue #11), ties broken by the higher baseline item bias
    eligible = [i for i in range(1, len(counts)) if counts[i] >= 40]
    expected = sorted(eligible, key=lambda i: (-counts[i], -rec.baseline[2][i]))[:10]
    assert list(idx) == expected
    with pytest.raises(ConfigError):
        popular(rec, 5, min_ratings=10**6)


def test_recommend_all_writes_csv_and_parquet(tmp_path):
    rec, df, _ = trained()
    ranked = []
    table = recommend_all(rec, n=4, chunk_scores=10 * len(rec.items), done=ranked.append)  # 10 users a chunk
    assert len(table) == 4 * (len(rec.users) - 1)
    assert sum(ranked) == len(rec.users) - 1 and len(ranked) > 1 and set(ranked[:-1]) == {10}  # the progress bar's
    first = table[table.user == "u5"]
    assert list(first["item"]) == list(recommend(rec, "u5", n=4)["item"])
    for name in ("top.csv", "top.parquet"):
        write_table(table, tmp_path / name)
    back = pd.read_parquet(tmp_path / "top.parquet")
    assert back.shape == table.shape and back["known"].all()
    with pytest.raises(ConfigError):
        write_table(table, tmp_path / "top.xlsx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["top.csv", "top.parquet"]


def test_cli_recommend_json_and_errors(tmp_path, capsys):
    rec, _, _ = trained()
    rec.save(tmp_path / "m")
    assert main(["recommend", str(tmp_path / "m"), "--user", "u1", "-n", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["known"] is True and [r["rank"] for r in out["recommendations"]] == [1, 2, 3]
    assert main(["recommend", str(tmp_path / "m"), "--user", "ghost", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["known"] is False and out["recommendations"]
    server = user_recommendations(rec, ["ghost"], 10)[0]  # one shape, whether asked of the CLI or of the server
    assert out.keys() == server.keys() and out["recommendations"][0].keys() == server["recommendations"][0].keys()
    assert main(["recommend", str(tmp_path / "m"), "--all-users", "--out", str(tmp_path / "all.csv")]) == 0
    assert len(pd.read_csv(tmp_path / "all.csv")) == 10 * (len(rec.users) - 1)
    assert main(["recommend", str(tmp_path / "m"), "--all-users"]) == 2
    assert main(["recommend", str(tmp_path / "m"), "--user", "u1", "-n", "0"]) == 2
    assert "error:" in capsys.readouterr().err
    full = [r["item"] for r in user_recommendations(rec, ["u1"], 5)[0]["recommendations"]]
    assert main(["recommend", str(tmp_path / "m"), "--user", "u1", "-n", "3", "--exclude", f"{full[0]}, {full[1]},x",
                 "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert [r["item"] for r in answer["recommendations"]] == full[2:5]
    assert answer["ignored"] == ["x"]  # as the HTTP API lists an unknown excluded id
    assert main(["recommend", str(tmp_path / "m"), "--user", "u1", "--exclude", f"{full[0]} {full[1]}"]) == 0
    assert "--exclude names 1 item the model does not know" in capsys.readouterr().err  # ids go by commas
    assert main(["recommend", str(tmp_path / "m"), "--all-users", "--exclude", "x", "--out", str(tmp_path / "a.csv")]) == 2
    assert "--exclude shapes one user's list" in capsys.readouterr().err


def distinct_pairs(n_rows: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct (row, column) pairs in random order, and a value for each."""
    rng = np.random.default_rng(seed)
    pairs = np.unique(rng.integers(0, n_rows, (n, 2)), axis=0)
    pairs = pairs[rng.permutation(len(pairs))]
    return pairs[:, 0].astype(np.int32), pairs[:, 1].astype(np.int32), rng.random(len(pairs)).astype(np.float32)


def test_by_row_carries_values_in_the_order_of_its_columns():
    from latentrec.data.csr import by_row

    rows, cols, values = distinct_pairs(40, 300, seed=3)
    indptr, got_cols, got_values = by_row(rows, cols, 40, values)
    order = np.lexsort((cols, rows))
    assert np.array_equal(got_cols, cols[order]) and np.array_equal(got_values, values[order])
    assert np.array_equal(by_row(rows, cols, 40)[1], got_cols) and indptr[-1] == len(rows)


def test_train_saves_a_model_whose_lists_skip_every_rating_in_the_data(tmp_path):
    """The validation rows held out of --data are the user's ratings too: the saved lists never show them."""
    from latentrec.data.ratings import load_ratings
    from latentrec.use.recommender import Recommender

    _, df, _ = trained()
    df.to_csv(tmp_path / "r.csv", index=False)
    for ranker in ("ease", "none"):
        out = tmp_path / ranker
        assert main(["train", "--data", str(tmp_path / "r.csv"), "--epochs", "2", "--n-factors", "3", "--device",
                     "cpu", "--ranker", ranker, "--out", str(out), "--json"]) == 0
        rec = Recommender.load(out)
        assert len(rec.rated_items) == len(df)  # training and validation rows
        data = load_ratings(tmp_path / "r.csv").df
        lists = recommend_all(rec, n=10)
        shown = set(zip(lists["user"].astype(str), lists["item"].astype(str)))
        assert not shown & set(zip(data["user"], data["item"])), ranker


def test_fit_counts_the_rows_it_held_out_as_rated_as_train_does(tmp_path):
    """The library's fit gives the model `latentrec train` saves: lists skip the held-out rows too."""
    from latentrec import TrainConfig, fit
    from latentrec.use.recommender import Recommender

    _, df, _ = trained()
    df.to_csv(tmp_path / "r.csv", index=False)
    assert main(["train", "--data", str(tmp_path / "r.csv"), "--epochs", "2", "--n-factors", "3", "--device", "cpu",
                 "--out", str(tmp_path / "cli"), "--json"]) == 0
    rec, _ = fit(df, config=TrainConfig(epochs=2, n_factors=3, device="cpu"))
    assert rec.info["n_valid"] > 0 and len(rec.rated_items) == len(df)
    cli = Recommender.load(tmp_path / "cli")
    np.testing.assert_array_equal(rec.rated_items, cli.rated_items)
    np.testing.assert_array_equal(rec.rated_indptr, cli.rated_indptr)
    lists = recommend_all(rec, n=10)
    shown = set(zip(lists["user"].astype(str), lists["item"].astype(str)))
    assert not shown & set(zip(df["user"].astype(str), df["item"].astype(str)))


def test_merging_two_row_groupings_equals_grouping_all_pairs():
    from latentrec.data.csr import by_row, merge

    rows, cols, values = distinct_pairs(30, 400, seed=4)
    cut = 250
    a, b = by_row(rows[:cut], cols[:cut], 30, values[:cut]), by_row(rows[cut:], cols[cut:], 30, values[cut:])
    for got, want in zip(merge(a, b), by_row(rows, cols, 30, values)):
        assert np.array_equal(got, want)
    for got, want in zip(merge(a[:2], b[:2]), by_row(rows, cols, 30)):
        assert np.array_equal(got, want)


def test_a_user_who_rated_every_item_gets_a_sentence_not_an_empty_table(capsys, tmp_path):
    import pandas as pd

    from latentrec.cli import main

    rows = [(u, i, 1 + (u + i) % 5) for u in range(12) for i in range(8) if u == 0 or (u + i) % 3]
    pd.DataFrame(rows, columns=["user", "item", "rating"]).to_csv(tmp_path / "r.csv", index=False)
    assert main(["train", "--data", str(tmp_path / "r.csv"), "--out", str(tmp_path / "m"), "--epochs", "2",
                 "--valid-pct", "0", "--json"]) == 0
    capsys.readouterr()
    assert main(["recommend", str(tmp_path / "m"), "--user", "0"]) == 0
    assert capsys.readouterr().out == ("Nothing to recommend for user 0: every item the model knows is rated "
                                       "(--include-rated lists them).\n")
    assert main(["recommend", str(tmp_path / "m"), "--user", "1", "-n", "50"]) == 0
    assert capsys.readouterr().out.startswith("Top 2 for user 1")  # the 2 items user 1 did not rate



def test_an_unknown_user_on_a_small_catalogue_gets_a_list_unless_a_threshold_was_asked():
    """By default the non-personalized list needs 20 ratings an item, or fewer until n items have them."""
    from latentrec.config import TrainConfig
    from latentrec.training.fit import fit

    rng = np.random.default_rng(0)
    pairs = {(f"u{u}", f"i{i}") for u, i in zip(rng.integers(0, 30, 120), rng.integers(0, 12, 120))}
    df = pd.DataFrame(sorted(pairs), columns=["user", "item"]).assign(rating=lambda d: rng.integers(1, 6, len(d)))
    rec, _ = fit(df, config=TrainConfig(solver="als", epochs=1, n_factors=2, ranker="none", valid_pct=0,
                                        device="cpu"))
    most = int(rec.item_counts.max())
    assert most < 20  # no item reaches the default threshold
    top = recommend(rec, "ghost", 3)
    assert len(top) == 3 and not top["known"].any()
    assert rec.item_counts[rec.items.encode(top["item"])[0]] == most  # the most-rated first
    with pytest.raises(ConfigError, match=rf"min_ratings \(--min-ratings\) {most + 1} leaves no item"):
        recommend(rec, "ghost", 3, min_ratings=most + 1)


def test_whole_number_ids_come_back_as_integers_and_json_keeps_text(tmp_path, capsys):
    """Ids read from integer columns come back as int64 in the DataFrame answers (a merge on the user's own integer
    column works); text ids, and a mix, stay text; --json and the HTTP API keep text whatever the data."""
    from latentrec import TrainConfig, fit, similar_items

    rng = np.random.default_rng(0)
    df = pd.DataFrame({"user": rng.integers(1, 60, 3000), "item": rng.integers(1, 40, 3000),
                       "rating": rng.integers(1, 6, 3000).astype(float)}).drop_duplicates(["user", "item"])
    rec, _ = fit(df, config=TrainConfig(epochs=3, n_factors=4, valid_pct=0, device="cpu"))
    products = pd.DataFrame({"item": np.arange(1, 40), "name": [f"p{i}" for i in range(1, 40)]})
    top = recommend(rec, 5, n=3)
    assert top["item"].dtype == np.int64 and len(top.merge(products, on="item")) == 3
    assert recommend_all(rec, n=2)[["user", "item"]].dtypes.tolist() == [np.int64, np.int64]
    assert similar_items(rec, 7, n=2)["item"].dtype == np.int64
    both = rec.predict(df.user.head(3), df.item.head(3))
    assert both[["user", "item"]].dtypes.tolist() == [np.int64, np.int64]
    assert both["user"].tolist() == df.user.head(3).tolist()
    assert rec.predict(["5", "nobody"], [7, 7])["user"].tolist() == ["5", "nobody"]  # given as text: text
    assert rec.predict(["5"], ["7"])["item"].tolist() == ["7"] and rec.predict([5], "7")["user"].tolist() == [5]
    padded, _ = fit(df.assign(item=df.item.map("{:03d}".format)), config=TrainConfig(epochs=1, n_factors=2,
                                                                                     valid_pct=0, device="cpu"))
    assert recommend(padded, 5, n=2)["item"].tolist()[0].startswith("0")  # 007 is not 7
    rec.save(tmp_path / "m")
    assert main(["recommend", str(tmp_path / "m"), "--user", "5", "-n", "2", "--json"]) == 0
    assert all(isinstance(r["item"], str) for r in json.loads(capsys.readouterr().out)["recommendations"])
    assert isinstance(user_recommendations(rec, ["5"], 2)[0]["recommendations"][0]["item"], str)


def test_every_entry_reads_an_id_as_a_ratings_file_is_read():
    """A whole float (an id column after a merge brought in NaN) is its integer, and surrounding spaces are not
    part of an id, as in training: predict, recommend, a new user's ratings and similar_items agree."""
    from latentrec import similar_items
    from latentrec.data.vocab import id_text
    from latentrec.errors import DataError

    assert [id_text(x) for x in (50.0, np.float32(7), " 7 ", 2.5, "x", 1e20)] == ["50", "7", "7", "2.5", "x", "1e+20"]
    from latentrec.data.ratings import load_ratings
    mixed = load_ratings(pd.DataFrame({"user": [1, 2, 3], "item": [50.0, 2.5, 1e20], "rating": [4, 5, 3]}))
    assert sorted(mixed.df["item"]) == ["1e+20", "2.5", "50"]  # each value read as id_text reads it
    rec = tiny_rec([[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], rated={1: [1]})
    assert rec.predict([" u1", "u2 "], ["i1", " i2"])["known"].all()
    assert recommend(rec, " u1", 2)["known"].all()
    with pytest.raises(DataError, match=r"\(item, rating\) pairs"):
        recommend(rec, ratings=["i1", "i2"], n=2)  # each text would be split into an item and a rating
    numeric = tiny_rec([[1.0, 0.0]], [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    numeric.items = type(numeric.items)(["#na#", "50", "181", "7"])
    folded = recommend(numeric, ratings={50.0: 5, 181.0: 1}, n=3)
    assert folded["known"].all() and 50 not in folded["item"].tolist()  # the rated items are known and left out
    assert similar_items(numeric, 50.0, n=1)["item"].tolist() in ([181], [7])
    assert numeric.predict([np.float32(1)], np.array([50.0]))["item"].tolist() == [50]  # as recommend reads it
    merged = numeric.predict(pd.Series([1.0, np.nan]), pd.Series([50.0, 2.5]))  # a merge's float ids, NaN and all
    assert merged["user"].dtype == "Int64" and merged["user"].isna().tolist() == [False, True]
    assert merged["item"].tolist() == ["50", "2.5"] and merged["known_item"].tolist() == [True, False]
    numeric.items = type(numeric.items)(["#na#", "50.0", "181", "7"])  # a model dir from before: "50.0" as written
    assert numeric.items.index(50.0) == 1 and 50.0 in numeric.items


def test_the_popular_list_without_excluded_items_is_still_n_long():
    """On a small catalogue the popular list's rating threshold is lowered until n items have it: it must count
    the items left after the exclusions, or each excluded item shortened the list."""
    from latentrec.use.topn import excluded, least_ratings

    rec = dataclasses.replace(trained()[0])
    n_items = len(rec.items)
    rec.item_counts = np.where(np.arange(n_items) <= 12, np.arange(n_items) + 30, 1)  # 12 items rated often
    full = list(recommend(rec, "ghost", 12)["item"])
    left = list(recommend(rec, "ghost", 10, exclude=full[:2])["item"])
    assert len(left) == 10 and left == full[2:12]
    assert least_ratings(rec, None, 10, excluded(rec, full[:2])) == least_ratings(rec, None, 12)


def test_unordered_or_one_pass_ids_are_refused_and_ratings_built_directly_are_checked():
    """A set, dict or generator of ids was read as one id (its repr) and silently got the fallback; a Ratings
    built from an unchecked frame trained on NaN ratings and blamed the solver."""
    from latentrec import DataError, Ratings

    rec = tiny_rec([[1.0, 0.0]], [[1.0, 0.0], [0.0, 1.0]])
    for ids in ({"u1"}, {"u1": 1}, {"u1": 1}.keys(), (u for u in ["u1"])):
        with pytest.raises(ConfigError, match="as a list, array or Series"):
            rec.predict(ids, ["i1"])
    assert rec.predict("u1", ("i1", "i2"))["known"].all()
    frame = pd.DataFrame({"user": ["a", "b"], "item": ["x", "y"], "rating": [4.0, np.nan]})
    with pytest.raises(DataError, match=r"no finite numbers; read it with load_ratings\(df\)"):
        Ratings(frame, "mine")
    with pytest.raises(DataError, match="has no user column"):
        Ratings(frame.rename(columns={"user": "userId"}).fillna(3.0), "mine")


def test_the_rankers_picks_the_rating_model_predicts_below_the_middle_come_last():
    """The ranker (here popularity) says what a user would pick, not whether they would like it: a list showed
    items beside predictions of 1.5 (a fold-in user's 1-star ratings pushed nothing down). Items predicted below
    the middle of the rating scale now follow the ranker's other picks, in its order."""
    from dataclasses import replace

    from latentrec.models.popularity import Popularity
    from latentrec.use.topn import recommend, top_n

    zeros = np.zeros((5, 2))
    rec = tiny_rec(zeros, zeros, bi=[-2.0, 0.0, 0.0, -2.0, 0.5])  # i1 and i4 predicted about 1.1, the others 3+
    rec = replace(rec, ranker=Popularity(len(rec.items)).fit(np.array([0, 50, 40, 30, 20, 10])))  # i1 most rated
    lists = {n: recommend(rec, "u1", n=n) for n in (3, 5)}
    assert lists[3].item.tolist() == ["i2", "i3", "i5"] and (lists[3].prediction >= 3).all()
    assert lists[5].item.tolist() == ["i2", "i3", "i5", "i1", "i4"]  # nothing dropped: the disliked come last
    items, predicted = top_n(rec, np.array([1]), 5)
    assert rec.items.decode(items[0]) == lists[5].item.tolist()
    assert np.allclose(predicted[0], lists[5].prediction, atol=1e-6)
    folded = recommend(rec, ratings={"i5": 4.0}, n=4)  # a new user, folded in
    assert folded.item.tolist() == ["i2", "i3", "i1", "i4"]


def test_a_low_rating_beside_a_rating_model_is_no_pick():
    """EASE read a 1-star rating as a (weaker) pick: a new user who rated eight horror films 1 star got the list of
    one who rated them 5 stars. Beside a rating model, a rating a standard deviation below the mean now weighs
    nothing; a user left with no pick, new or known, gets the rating model's order."""
    from dataclasses import replace

    from tiny_rec import planted_clusters

    from latentrec.config import TrainConfig
    from latentrec.data.ratings import Ratings
    from latentrec.training.fit import fit
    from latentrec.use.coldstart import UserRatings, fold_in_ranker
    from latentrec.use.topn import recommend, top_n

    df, _ = planted_clusters()
    low = pd.DataFrame({"user": "grump", "item": df["item"].unique()[:10], "rating": 1.0})
    rec, _ = fit(Ratings(pd.concat([df, low], ignore_index=True), "planted"),
                 config=TrainConfig(n_factors=8, epochs=10, valid_pct=0, device="cpu", seed=0, ranker="ease"))
    assert rec.ranker.kind == "ease" and rec.ranker.picked_from() > 1.0
    by_rating = replace(rec, ranker=None)
    grump = rec.users.encode(["grump"])
    np.testing.assert_array_equal(top_n(rec, grump, 10)[0], top_n(by_rating, grump, 10)[0])  # known, no pick
    given = dict(zip(low.item, low.rating))
    np.testing.assert_array_equal(recommend(rec, ratings=given).item, recommend(by_rating, ratings=given).item)
    liked = {i: 5.0 for i in df["item"].unique()[10:14]}
    both = UserRatings.of({**liked, **given})
    np.testing.assert_array_equal(fold_in_ranker(rec, both)[0], fold_in_ranker(rec, UserRatings.of(liked))[0])
    ease_alone = replace(rec, model=None)  # a ranking-only dir may hold plays: a low value is still a pick
    assert not np.array_equal(top_n(ease_alone, grump, 10)[0], top_n(by_rating, grump, 10)[0])
