"""Big integer-id files read lean (chunked.read_split) give exactly what the in-memory route gives."""

import json

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import load_file

import latentrec.data.lean as chunked
from latentrec.cli import main
from latentrec.data.lean import read_split
from latentrec.data.ratings import load_ratings
from latentrec.data.split import random_split
from latentrec.data.synth import SynthSpec, write_synth
from latentrec.data.vocab import Vocab
from latentrec.errors import DataError


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("lean")
    spec = SynthSpec(30_000, 1_500, 400, seed=4)
    write_synth(spec, d / "r.parquet", chunk_rows=7_000)
    write_synth(spec, d / "r.csv", chunk_rows=7_000)
    df = pd.read_parquet(d / "r.parquet")
    df.to_csv(d / "r.tsv", sep="\t", header=False, index=False)  # headerless, u.data-like
    return d


@pytest.mark.parametrize("name", ["r.parquet", "r.csv", "r.tsv"])
def test_same_vocab_split_and_rows_as_the_in_memory_route(files, name, monkeypatch):
    monkeypatch.setattr(chunked, "CHUNK_ROWS", 4_096)  # several chunks
    lean = read_split(files / name, valid_pct=0.2, seed=7, min_bytes=0)
    train, valid = random_split(load_ratings(files / name).df, 0.2, 7)
    users, items = Vocab.from_ids(train.user), Vocab.from_ids(train.item)
    assert lean.users.classes == users.classes and lean.items.classes == items.classes
    for part, rows in ((lean.train, train), (lean.valid.data, valid)):
        assert np.array_equal(part.users, users.encode(rows.user))
        assert np.array_equal(part.items, items.encode(rows.item))
        assert np.array_equal(part.ratings, rows.rating.to_numpy(np.float32))
    unknown = valid.user[users.encode(valid.user) == 0].nunique()
    assert lean.valid.n_unknown_users == unknown


def test_other_files_take_the_in_memory_route(files, tmp_path):
    assert read_split(files / "r.parquet", valid_pct=0.2) is None  # small: below LEAN_BYTES
    df = pd.read_parquet(files / "r.parquet")
    assert read_split(files / "r.parquet", duplicates="mean", min_bytes=0) is None
    cases = {"text.csv": df.assign(user="u" + df.user.astype(str)), "neg.parquet": df.assign(item=-df.item),
             "title.parquet": df.assign(title="x"), "float.parquet": df.assign(user=df.user.astype(float))}
    for name, frame in cases.items():
        path = tmp_path / name
        frame.to_csv(path, index=False) if name.endswith("csv") else frame.to_parquet(path)
        assert read_split(path, min_bytes=0) is None, name


def test_bad_rows_get_the_in_memory_routes_sentences(files, tmp_path):
    df = pd.read_parquet(files / "r.parquet")
    bad = {"nan.parquet": df.assign(rating=df.rating.where(df.index != 20_000)),
           "inf.csv": df.assign(rating=df.rating.where(df.index != 15_000, np.inf)),
           "dup.parquet": pd.concat([df, df.iloc[[25_000]]], ignore_index=True),
           "dup.csv": pd.concat([df.iloc[:100], df.iloc[[7]], df.iloc[100:]], ignore_index=True),
           "noid.csv": df.assign(user=df.user.astype("Int64").where(df.index != 9_000))}
    for name, frame in bad.items():
        path = tmp_path / name
        frame.to_csv(path, index=False) if name.endswith("csv") else frame.to_parquet(path)
        with pytest.raises(DataError) as lean:
            read_split(path, min_bytes=0)
        with pytest.raises(DataError) as memory:
            load_ratings(path)
        assert str(lean.value) == str(memory.value), name
        assert "row" in str(lean.value)


def test_cli_trains_the_same_model_either_way(files, tmp_path, monkeypatch, capsys):
    taken = []
    monkeypatch.setattr(chunked, "read_split", lambda *a, **k: taken.append(read_split(*a, **k)) or taken[-1])
    out = {}
    for route, min_bytes in (("lean", 0), ("memory", 1 << 62)):
        monkeypatch.setattr(chunked, "LEAN_BYTES", min_bytes)
        args = ["train", "--data", str(files / "r.parquet"), "--solver", "sgd", "--n-factors", "8", "--epochs", "3",
                "--out", str(tmp_path / route), "--json"]
        assert main(args) == 0
        out[route] = json.loads(capsys.readouterr().out)
    assert taken[0] is not None and taken[1] is None  # each route was really taken
    assert out["lean"]["valid"] == out["memory"]["valid"]
    a, b = load_file(tmp_path / "lean" / "model.safetensors"), load_file(tmp_path / "memory" / "model.safetensors")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    meta = [json.loads((tmp_path / r / "model.json").read_text()) for r in ("lean", "memory")]
    assert meta[0]["users"] == meta[1]["users"] and meta[0]["items"] == meta[1]["items"]


def test_a_file_the_lean_reader_cannot_parse_is_named_with_the_reason(tmp_path, caplog):
    bad = tmp_path / "ratings.csv"
    bad.write_text("user,item,rating\n" + "".join(f"{u},{u % 7},4\n" for u in range(1, 200)) + "5,6,4,extra\n")
    with caplog.at_level("WARNING", logger="latentrec"):
        assert read_split(bad, min_bytes=0) is None
    [record] = caplog.records
    message = record.getMessage()
    assert str(bad) in message and "100 bytes a rating" in message and "4" in message.split("(")[1]
    with pytest.raises(DataError, match="Expected 3 fields"):  # then the pandas route says what is wrong
        load_ratings(bad)
