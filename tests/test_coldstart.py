"""Cold start: fold-in of a new user, unknown items, ratings parsing, `known` flags."""

from __future__ import annotations

import gzip
import json
import re

import numpy as np
import pandas as pd
import pytest
import torch
from tiny_rec import trained

from latentrec.cli import main
from latentrec.data.ratings import load_ratings
from latentrec.errors import ConfigError, DataError, UnknownItemsLeftOut
from latentrec.use.coldstart import UserRatings, fold_in, fold_in_scores, parse_ratings, read_user_ratings
from latentrec.use.topn import recommend


def test_parse_ratings_inline_and_file(tmp_path):
    r = parse_ratings("50:5, 181:4,1:2.5")
    assert r.items == ["50", "181", "1"] and r.ratings == [5.0, 4.0, 2.5]
    (tmp_path / "r.csv").write_text("item,rating\n50,5\n181,4\n")
    assert read_user_ratings(str(tmp_path / "r.csv")).items == ["50", "181"]
    (tmp_path / "r.tsv").write_text("50\t5\n181\t3\n")
    assert read_user_ratings(str(tmp_path / "r.tsv")).ratings == [5.0, 3.0]
    for bad in ("50:x", "50", "", "50:5,50:4", "1:nan"):
        with pytest.raises(DataError):
            parse_ratings(bad)
    r = parse_ratings("item 00006:5,spotify:track:240:4.5,a:1 b:2")  # a rating follows the id's last ':'
    assert r.items == ["item 00006", "spotify:track:240", "a", "b"] and r.ratings == [5.0, 4.5, 1.0, 2.0]
    (tmp_path / "r.txt").write_text("spotify:track:240:5\nitem 00006:4\n")
    assert read_user_ratings(str(tmp_path / "r.txt")).items == ["spotify:track:240", "item 00006"]
    (tmp_path / "r2.txt").write_text("spotify:track:1 5\nspotify:track:2 4\n")  # a one-user table, by spaces
    assert read_user_ratings(str(tmp_path / "r2.txt")).items == ["spotify:track:1", "spotify:track:2"]
    with pytest.raises(DataError, match=r"entry 2 \('181:'\) has no rating"):
        parse_ratings("50:5 181: 4")  # not one item "50:5 181" rated 4


@pytest.mark.parametrize("name, content", [
    ("quoted.csv", '"item","rating"\n"50",5\n"181",4\n'),
    ("all-quoted.csv", '"50","5"\n"181","4"\n'),
    ("movielens.csv", "userId,movieId,rating,timestamp\n1,50,5,0\n1,181,4,0\n"),
    ("titled.csv", 'item,title,rating\n50,"Star Wars (1977)",5\n181,"Return, of the Jedi",4\n'),
    ("semicolons.csv", "item;rating\n50;5\n181;4\n"),
    ("headerless.tsv", "50\t5\n181\t4\n"),
    ("colons.txt", "50:5\n181:4\n"),
    ("colons-bom.txt", "\ufeff50:5\n181:4\n"),
    ("colons.txt.gz", "50:5\n181:4\n"),
    ("gzipped.csv.gz", "item,rating\n50,5\n181,4\n"),
    ("r.parquet", None)])
def test_a_ratings_file_is_read_as_a_ratings_file_is(tmp_path, name, content):
    """--ratings-file takes what the ratings reader takes: quotes, columns by name, any separator, a BOM, gzip,
    Parquet."""
    path = tmp_path / name
    if content is None:
        pd.DataFrame({"movieId": [50, 181], "rating": [5.0, 4.0]}).to_parquet(path)
    elif name.endswith(".gz"):
        path.write_bytes(gzip.compress(content.encode()))
    else:
        path.write_text(content, encoding="utf-8")
    given = read_user_ratings(str(path))
    assert given.items == ["50", "181"] and given.ratings == [5.0, 4.0] and given.source == str(path)


@pytest.mark.parametrize("content, says", [
    ("item,rating\n50,\n181,4\n", "row 2, column 'rating': the rating is missing"),
    ("item,rating\n", "has a header but no rows; it needs rows of item, rating"),
    ("userId,movieId,rating\n1,50,5\n2,181,4\n", "holds the ratings of 2 users (1, 2); give one user's"),
    ("50,5\n50,4\n", "rates item 50 more than once (rows 1 and 2)"),
    ("item,rating\n50,five\n", "row 2, column 'rating': 'five' is not a number"),
    ("film,stars\n50,5\n", "needs an item and a rating column (its columns: film, stars); name them item and rating")])
def test_a_bad_ratings_file_is_one_sentence(tmp_path, content, says):
    (tmp_path / "r.csv").write_text(content)
    with pytest.raises(DataError, match=re.escape(says)):
        read_user_ratings(str(tmp_path / "r.csv"))


def test_a_long_entry_is_quoted_short():
    with pytest.raises(DataError, match="entry 1 \\('50:xxxx*…'\\) has a rating that is not a number") as e:
        parse_ratings("50:" + "x" * 10**6)
    assert len(str(e.value)) < 200


def test_a_missing_inline_rating_is_an_error_not_a_header():
    with pytest.raises(DataError, match=re.escape("entry 1 ('50:') has no rating")):
        parse_ratings("50:,181:4")
    with pytest.raises(DataError, match="Item 50 is rated twice in the ratings given"):
        parse_ratings("50:5,50:4")


def test_fold_in_of_a_trained_user_predicts_like_the_trained_user():
    rec, df, _ = trained()
    for user in ("u3", "u50", "u120"):
        mine = df[df.user == user]
        folded = fold_in(rec, UserRatings(mine["item"].tolist(), mine["rating"].tolist()))
        scores = fold_in_scores(rec, folded)[1:]
        u = int(rec.users.encode([user])[0])
        trained_scores = rec.model.score_users(torch.tensor([u]))[0].clamp(1, 5).numpy()[1:]
        assert np.abs(scores - trained_scores).mean() < 0.1
        assert np.corrcoef(scores, trained_scores)[0, 1] > 0.97


def test_folded_in_recommendations_skip_given_items_and_unknown_items_are_ignored():
    rec, df, _ = trained()
    mine = df[df.user == "u8"].head(12)
    given = UserRatings(mine["item"].tolist() + ["never-seen"], mine["rating"].tolist() + [5.0])
    assert fold_in(rec, given).ignored == ["never-seen"]
    with pytest.warns(UnknownItemsLeftOut, match="Left out 1 rated item.*never-seen"):  # a notebook hears it
        top = recommend(rec, n=10, ratings=given)
    assert top["known"].all() and not set(top["item"]) & set(mine["item"])
    with pytest.raises(ConfigError, match="not both"):  # the user's own history would be ignored
        recommend(rec, "u8", ratings=given)
    assert np.all(np.diff(top["prediction"].to_numpy()) <= 1e-6)
    with pytest.raises(DataError):
        fold_in(rec, UserRatings(["x", "y"], [4.0, 5.0]))


def test_unknown_item_predicts_about_the_users_usual_rating():
    rec, df, _ = trained()
    preds = rec.predict(["u1", "u2", "ghost"], ["nope", "i3", "nope"])
    assert list(preds["known"]) == [False, True, False]
    assert abs(preds["prediction"][0] - df.loc[df.user == "u1", "rating"].mean()) < 0.6
    assert abs(preds["prediction"][2] - df["rating"].mean()) < 0.3


def test_predict_keeps_the_index_of_series_so_results_assign_back_to_their_rows():
    rec, df, _ = trained()
    part = df[df.rating > 3].iloc[::7].copy()  # a filtered frame: its index has gaps
    part["pred"] = rec.predict(part.user, part.item)["prediction"]
    expected = rec.predict(part.user.tolist(), part.item.tolist())["prediction"].to_numpy()
    assert np.array_equal(part["pred"].to_numpy(), expected)
    assert list(rec.predict(part.user, "i1").index) == list(part.index)  # one item for every user
    with pytest.raises(ConfigError, match="different indexes"):
        rec.predict(part.user, part.item.reset_index(drop=True))


def test_predict_reads_each_raw_id_as_load_ratings_does():
    """Raw ids are compared as text, as the vocabularies hold them (True is not 1), a whole float without its .0."""
    rec, _, _ = trained()
    preds = rec.predict([1, 1.0, True, 2.5, "u1", None], "i1")  # one item goes with every user
    assert list(preds["user"])[:5] == ["1", "1", "True", "2.5", "u1"]
    assert list(preds["known_user"]) == [False, False, False, False, True, False]
    assert list(rec.predict(np.array([7.0, np.nan]), ["i1", "i2"])["user"])[0] == 7  # a float column after a merge
    asked = pd.DataFrame({"user": pd.array([7, None], dtype="Int64"), "item": ["i1", "i2"]})  # after a merge
    gaps = rec.predict(asked.user, asked.item)
    assert gaps["user"].dtype == "Int64" and gaps["user"].isna().tolist() == [False, True]
    assert not gaps["known_user"].any() and len(asked.merge(gaps, on=["user", "item"])) == 2  # merges back
    assert rec.predict(pd.array([7], dtype="Int64"), "i1")["user"].dtype == np.int64  # none missing: integers back
    one = rec.predict("u1", "i1")  # a single pair need not be wrapped in lists
    assert len(one) == 1 and one["known"][0]
    with pytest.raises(ConfigError, match="as many users as items"):
        rec.predict(["u1", "u2"], ["i1", "i2", "i3"])


def test_cli_fold_in(tmp_path, capsys):
    rec, df, _ = trained()
    rec.save(tmp_path / "m")
    pairs = ",".join(f"{i}:{r:.1f}" for i, r in df[df.user == "u4"].head(10)[["item", "rating"]].to_numpy())
    assert main(["recommend", str(tmp_path / "m"), "--ratings", pairs, "-n", "5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["folded_in"] and len(out["recommendations"]) == 5
    assert main(["recommend", str(tmp_path / "m"), "--ratings-file", str(tmp_path / "missing.csv")]) == 2
    assert "missing.csv does not exist." in capsys.readouterr().err


def test_parse_ratings_names_the_entry_at_fault_and_takes_spaces():
    assert parse_ratings("50:5 181:4").items == ["50", "181"]
    with pytest.raises(DataError, match=r"entry 2 \('zzz'\)"):
        parse_ratings("50:5,zzz")
    with pytest.raises(DataError, match=r"entry 3 \('zzz'\)"):
        parse_ratings("50:5,181:4,zzz")


def test_new_user_ratings_outside_the_scale_are_refused_and_unknown_items_reported(capsys, tmp_path):
    rec, df, _ = trained()
    item = df["item"].iloc[0]
    lo, hi = rec.rating_range
    with pytest.raises(DataError, match="outside the model's rating scale"):
        recommend(rec, ratings=UserRatings([item], [hi * 10]))
    rec.save(tmp_path / "m")
    assert main(["recommend", str(tmp_path / "m"), "--ratings", f"{item}:{hi},nope:{lo}", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ignored"] == ["nope"]
    assert main(["recommend", str(tmp_path / "m"), "--ratings", f"nope:{lo}", "-n", "3", "--json"]) == 0
    alone = json.loads(capsys.readouterr().out)  # nothing to fold in: the flagged non-personalized list
    assert not alone["known"] and not alone["folded_in"] and alone["ignored"] == ["nope"]
    assert [r["item"] for r in alone["recommendations"]] == list(recommend(rec, "ghost", 3)["item"])


def test_bayesian_fold_in_uses_the_users_spread_as_its_prior():
    """Users the model never saw, folded in from 5 ratings each, predict their other ratings better than the
    ridge fold-in (which fits 5 ratings almost exactly) and better than the item biases alone."""
    from conftest import lowrank_ratings

    from latentrec.config import TrainConfig
    from latentrec.data.ratings import Ratings
    from latentrec.training.fit import fit

    df, _ = lowrank_ratings(n_users=300, n_items=150, density=0.3, noise=0.3, seed=5)
    new = df.user.isin({f"u{u}" for u in range(260, 300)})
    rec, _ = fit(Ratings(df[~new].reset_index(drop=True), "planted"),
                 config=TrainConfig(epochs=30, burn_in=10, device="cpu", ranker="none"))
    model, errors = rec.model, {"prior": [], "ridge": [], "biases": []}
    for _, rows in df[new].groupby("user"):
        given, rest = rows.iloc[:5], rows.iloc[5:]
        user = fold_in(rec, UserRatings(given.item.tolist(), given.rating.tolist()))
        idx, truth = rec.items.encode(rest.item.to_numpy()), rest.rating.to_numpy()
        errors["prior"].append(fold_in_scores(rec, user)[idx] - truth)
        gi = rec.items.encode(given.item.to_numpy())
        with torch.no_grad():
            q = model.item_samples(torch.from_numpy(gi)).double()  # (samples, 5, k)
            a = torch.cat([q, torch.ones(*q.shape[:2], 1, dtype=torch.float64)], 2)
            target = torch.tensor(given.rating.to_numpy(), dtype=torch.float64) - model.item_bias[gi].double()
            x = torch.linalg.solve(a.mT @ a + 0.25 * torch.eye(a.shape[2], dtype=torch.float64),
                                   (a.mT @ target[:, None])[..., 0])
            ridge = (model.item_samples(torch.from_numpy(idx)).double() @ x[:, :-1, None])[..., 0].mean(0)
            ridge += x[:, -1].mean() + model.item_bias[idx].double()
        errors["ridge"].append(ridge.clamp(*rec.rating_range).numpy() - truth)
        errors["biases"].append(model.item_bias[idx].detach().numpy() - truth)  # the global mean is folded in
    rmse = {k: float(np.sqrt(np.mean(np.concatenate(v) ** 2))) for k, v in errors.items()}
    assert rmse["prior"] < rmse["ridge"] - 0.02 and rmse["prior"] < rmse["biases"], rmse  # 0.598, 0.639, 0.805


@pytest.mark.parametrize("implicit", [True, False])
def test_an_nn_model_beside_a_ranker_predicts_for_a_new_user(implicit, tmp_path, capsys):
    """An nn model with an EASE ranker: the ranker folds the new user in and orders the list; the nn model predicts
    from the sum over what they rated (implicit), else says its predictions are the unknown user's."""
    from tiny_rec import planted_clusters

    from latentrec.config import TrainConfig
    from latentrec.data.ratings import Ratings
    from latentrec.training.fit import fit

    df, _ = planted_clusters()
    rec, _ = fit(Ratings(df, "planted"), config=TrainConfig(model="nn", epochs=3, valid_pct=0, device="cpu",
                                                            ranker="ease", implicit=implicit))
    given = df[df.user == "u4"].head(5)
    got = recommend(rec, ratings=dict(zip(given.item, given.rating)), n=20)
    unknown = rec.predict(["nobody"] * len(got), got.item.tolist()).prediction.to_numpy()
    assert got.prediction.notna().all() and got.known.all()
    assert np.allclose(got.prediction, unknown, atol=1e-5) != implicit  # personalized only with the implicit part
    rec.save(tmp_path / "m")
    pairs = ",".join(f"{i}:{r:.1f}" for i, r in given[["item", "rating"]].to_numpy())
    assert main(["recommend", str(tmp_path / "m"), "--ratings", pairs, "-n", "3"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "prediction" in out and "nan" not in out and ("are the unknown user's" in out) != implicit


def test_an_nn_model_without_its_implicit_part_or_a_ranker_does_not_claim_to_fold_in(tmp_path, capsys):
    """Nothing in the dir can use a new user's ratings: they get the flagged non-personalized list, told why."""
    from tiny_rec import planted_clusters

    from latentrec.config import TrainConfig
    from latentrec.data.ratings import Ratings
    from latentrec.training.fit import fit
    from latentrec.use.topn import popular

    df, _ = planted_clusters()
    rec, _ = fit(Ratings(df, "planted"), config=TrainConfig(model="nn", epochs=2, valid_pct=0, device="cpu",
                                                            ranker="none", implicit=False))
    given = df[df.user == "u4"].head(5)
    got = recommend(rec, ratings=dict(zip(given.item, given.rating)), n=5)
    assert not got.known.any() and list(got.item) == list(rec.items.decode(popular(rec, 5)[0]))
    rec.save(tmp_path / "m")
    pairs = ",".join(f"{i}:{r:.1f}" for i, r in given[["item", "rating"]].to_numpy())
    assert main(["recommend", str(tmp_path / "m"), "--ratings", pairs, "-n", "3"]) == 0
    assert "the nn model cannot fold in (it has no implicit part): not personalized" in " ".join(
        capsys.readouterr().out.split())


def test_recommend_takes_a_new_users_ratings_in_the_shapes_a_notebook_has():
    rec, df, _ = trained()
    mine = df[df.user == "u4"].head(8)
    given = dict(zip(mine.item, mine.rating))
    expected = recommend(rec, None, 5, ratings=UserRatings(list(given), list(given.values())))
    for shape in (given, list(given.items()), mine[["item", "rating"]]):
        assert recommend(rec, None, 5, ratings=shape).equals(expected)
    with pytest.raises(DataError, match="2 items but 1 ratings"):
        UserRatings(["i1", "i2"], [4.0])
    with pytest.raises(DataError, match="not int"):
        recommend(rec, None, 5, ratings=5)
    with pytest.raises(ConfigError, match="recommend takes one user id"):
        recommend(rec, ["u1", "u2"], 5)


def test_a_recommender_and_ratings_print_short():
    rec, df, _ = trained()
    assert len(repr(rec)) < 200 and "users x" in repr(rec) and len(repr(load_ratings(df))) < 200


def test_a_series_of_ratings_by_item_is_a_dict_and_a_missing_rating_says_so():
    rec = trained()[0]
    items = rec.items.classes[1:4]
    given = dict(zip(items, [5.0, 1.0, 4.0]))
    assert recommend(rec, ratings=pd.Series(given), n=4).equals(recommend(rec, ratings=given, n=4))
    with pytest.raises(DataError, match=f"item {items[0]}'s rating is missing"):
        recommend(rec, ratings={items[0]: float("nan")})
