import numpy as np
import pandas as pd

from latentrec.data.split import kfold_indices, random_split
from latentrec.data.vocab import NA, Vocab


def test_vocab_round_trip_and_unknown():
    v = Vocab.from_ids(pd.Series(["b", "a", "c", "a"]))
    assert v.classes[0] == NA and len(v) == 4
    idx = v.encode(["a", "b", "c", "zzz"])
    assert idx.dtype == np.int32
    assert idx[-1] == 0 and (idx[:3] > 0).all()
    assert v.decode(idx[:3]) == ["a", "b", "c"]
    assert v.decode([0]) == [NA]


def test_vocab_from_saved_classes_keeps_indices():
    v = Vocab.from_ids(pd.Series(["x", "y"]))
    again = Vocab(v.classes)
    assert again.classes == v.classes
    assert (again.encode(["y", "x"]) == v.encode(["y", "x"])).all()


def test_random_split_disjoint_and_covering():
    df = pd.DataFrame({"user": [str(i) for i in range(1000)], "item": "i", "rating": np.arange(1000, dtype=np.float32)})
    train, valid = random_split(df, 0.2, seed=3)
    assert len(valid) == 200 and len(train) == 800
    ids = np.concatenate([train.rating.to_numpy(), valid.rating.to_numpy()])
    assert sorted(ids.tolist()) == list(range(1000))
    again, _ = random_split(df, 0.2, seed=3)
    assert again.equals(train)


def test_kfold_disjoint_and_covering():
    folds = kfold_indices(103, 5, seed=0)
    allidx = np.concatenate(folds)
    assert len(allidx) == 103 and len(set(allidx.tolist())) == 103


def test_hold_out_is_the_one_validation_split_of_fit_and_the_cli():
    from latentrec.data.ratings import Ratings
    from latentrec.data.split import hold_out, random_indices, random_split

    df = pd.DataFrame({"user": list("abcdefghij"), "item": list("klmnopqrst"), "rating": np.arange(10.0)})
    data = Ratings(df, "f.csv")
    rows, held = hold_out(data, None, 0.3, seed=5)
    want_rows, want_held = random_split(df, 0.3, seed=5)
    assert rows.df.equals(want_rows) and held.df.equals(want_held) and held.source == "the validation rows"
    assert list(held.df.index) == list(range(3))
    assert hold_out(data, held, 0.3) == (data, held) and hold_out(data, None, 0.0) == (data, None)
    train_idx, valid_idx = random_indices(10, 0.3, seed=5)
    assert sorted([*train_idx, *valid_idx]) == list(range(10)) and len(valid_idx) == 3


def _timed(seed: int = 0, n: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"user": [f"u{u}" for u in rng.integers(0, 40, n)], "item": [f"i{k}" for k in range(n)],
                         "rating": rng.integers(1, 6, n).astype(float), "timestamp": rng.integers(0, 50, n)})


def test_latest_split_holds_out_the_future():
    import pytest

    from latentrec.data.ratings import Ratings
    from latentrec.data.split import hold_out
    from latentrec.errors import ConfigError

    df = _timed()
    train, valid = hold_out(Ratings(df, "timed"), None, 0.25, by="time")
    assert len(valid.df) == 100 and len(train.df) + len(valid.df) == len(df)
    assert set(train.df.item) | set(valid.df.item) == set(df.item)
    assert train.df.timestamp.max() <= valid.df.timestamp.min()
    tied = pd.DataFrame({"user": ["a", "b", "a", "b"], "item": ["1", "2", "3", "4"], "rating": 3.0, "timestamp": 7})
    assert hold_out(Ratings(tied, "tied"), None, 0.5, by="time")[1].df.item.tolist() == ["3", "4"]  # later rows
    assert hold_out(Ratings(tied, "tied"), None, 0.5, by="user")[1].df.item.tolist() == ["3", "4"]
    train, valid = hold_out(Ratings(df, "timed"), None, 0.25, by="user")
    for user, rows in df.groupby("user"):
        held = valid.df[valid.df.user == user]
        assert len(held) == round(len(rows) * 0.25)  # a user with one rating keeps it
        if len(held):
            assert train.df[train.df.user == user].timestamp.max() <= held.timestamp.min()
    with pytest.raises(ConfigError, match=r"no timestamp column, which valid_by \(--valid-by\) time"):
        hold_out(Ratings(df.drop(columns="timestamp"), "untimed"), None, 0.2, by="time")


def test_the_timestamp_is_the_first_time_named_column_that_holds_times(caplog):
    from latentrec.data.ratings import load_ratings

    df = pd.DataFrame({"user": ["a", "b"], "item": ["x", "y"], "rating": [1, 2], "date": ["08/31/2015", "09/01/2015"],
                       "unixReviewTime": [1440979200, 1441065600], "time": ["12:30", "13:00"]})
    assert load_ratings(df).df.timestamp.tolist() == [1440979200, 1441065600]
    assert load_ratings(df.drop(columns="unixReviewTime").assign(date=["2015-08-31", "2015-09-01"])).df.timestamp.tolist() \
        == [1440979200, 1441065600]
    assert not caplog.records  # a later column held the times: the first named one is not warned of
    assert "timestamp" not in load_ratings(df[["user", "item", "rating", "time"]]).df
    assert caplog.messages == ["the DataFrame (rows by .iloc position): column 'time' is not read as the ratings' "
                               "times (--valid-by time and user order by them): a cell such as '12:30' is neither a "
                               "number nor an ISO 8601 date."]


def test_train_holds_out_the_latest_ratings_and_says_so(tmp_path, capsys):
    import json

    from latentrec.cli import main

    df = _timed(1, 1200)
    df.to_csv(tmp_path / "r.csv", index=False)
    assert main(["train", "--data", str(tmp_path / "r.csv"), "--valid-by", "time", "--epochs", "3", "--ranker", "none",
                 "--out", str(tmp_path / "m"), "--device", "cpu"]) == 0
    assert "validating on 240, the latest ratings." in capsys.readouterr().out
    assert main(["train", "--data", str(tmp_path / "r.csv"), "--valid-by", "user", "--epochs", "3", "--ranker", "none",
                 "--out", str(tmp_path / "m"), "--device", "cpu", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["config"]["valid_by"] == "user" and result["valid"]["n_unknown_users"] == 0


def test_a_vocab_shows_its_size_and_first_ids():
    assert repr(Vocab(["a", "b"])) == "Vocab(2 ids: 'a', 'b'; index 0 is '#na#', every id it lacks)"
    assert repr(Vocab(list("abcde"))).startswith("Vocab(5 ids: 'a', 'b', 'c', ...;")
