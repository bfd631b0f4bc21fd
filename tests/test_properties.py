"""Property tests (hypothesis): the ratings reader, Vocab and the splits lose, invent or mangle nothing."""

from __future__ import annotations

import csv
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from latentrec.data.ratings import load_ratings
from latentrec.data.split import kfold_indices, random_split
from latentrec.data.text_files import NAN_WORDS
from latentrec.data.vocab import Vocab

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Ids: integers, or text with unicode and the separators, quotes and spaces a CSV must quote.
# Excluded on purpose: ids the reader treats as missing (blank, "nan", "null", ...), and leading/
# trailing whitespace, which the reader strips (documented).
text_ids = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufeff") | st.sampled_from(
        [",", ";", "|", "\t", '"', "'", " ", "é", "漢", "🙂"]),
    min_size=1, max_size=8,
).filter(lambda s: s == s.strip() and s.strip().lower() not in NAN_WORDS | {"none"})
ids = st.one_of(st.integers(-10**12, 10**12).map(str), text_ids)
ratings = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, width=32)
rows = st.lists(st.tuples(ids, ids, ratings), min_size=1, max_size=30, unique_by=lambda r: (r[0], r[1]))


def write_csv(rows, sep: str, header: bool) -> Path:
    fd, name = tempfile.mkstemp(suffix=".csv")
    with open(fd, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter=sep, quoting=csv.QUOTE_NONNUMERIC if not header else csv.QUOTE_MINIMAL)
        if header:
            w.writerow(["user", "item", "rating"])
        for u, i, r in rows:
            w.writerow([u, i, repr(float(r))])
    return Path(name)


@SETTINGS
@given(rows=rows, sep=st.sampled_from([",", "\t", ";", "|"]), header=st.booleans())
def test_ratings_file_round_trips_ids_and_values(rows, sep, header):
    path = write_csv(rows, sep, header)
    try:
        df = load_ratings(path).df
    finally:
        path.unlink()
    assert list(df["user"]) == [u for u, _, _ in rows]
    assert list(df["item"]) == [i for _, i, _ in rows]
    assert np.array_equal(df["rating"].to_numpy(), np.array([r for _, _, r in rows], np.float32))


mixed_ids = st.one_of(st.integers(-10**12, 10**12), text_ids)  # ints and strings in one column


@SETTINGS
@given(rows=st.lists(st.tuples(mixed_ids, mixed_ids, ratings), min_size=1, max_size=30,
                     unique_by=lambda r: (str(r[0]), str(r[1]))))
def test_dataframe_with_mixed_type_ids_round_trips(rows):
    frame = pd.DataFrame(rows, columns=["user", "item", "rating"])
    df = load_ratings(frame).df
    assert list(df["user"]) == [str(u) for u, _, _ in rows] and list(df["item"]) == [str(i) for _, i, _ in rows]
    assert np.array_equal(df["rating"].to_numpy(), frame["rating"].to_numpy(np.float32))


@SETTINGS
@given(pairs=st.lists(st.tuples(st.sampled_from("abc"), st.sampled_from("xyz"), st.integers(1, 5)), min_size=1,
                      max_size=40))
def test_duplicate_policies_keep_one_row_per_pair(pairs):
    frame = pd.DataFrame(pairs, columns=["user", "item", "rating"])
    expected_mean = frame.groupby(["user", "item"])["rating"].mean()
    expected_last = frame.groupby(["user", "item"])["rating"].last()
    for policy, expected in (("mean", expected_mean), ("last", expected_last)):
        got = load_ratings(frame, duplicates=policy).df.set_index(["user", "item"])["rating"]
        assert len(got) == len(expected) and got.index.is_unique
        assert np.allclose(got.sort_index().to_numpy(), expected.sort_index().to_numpy(), atol=1e-6)


@SETTINGS
@given(known=st.lists(ids, min_size=1, max_size=40), others=st.lists(ids, max_size=10))
def test_vocab_round_trips_and_sends_unknown_ids_to_zero(known, others):
    vocab = Vocab.from_ids(pd.Series(known))
    codes = vocab.encode(known)
    assert codes.dtype == np.int32 and codes.min() >= 1
    assert vocab.decode(codes) == known
    assert sorted(set(codes.tolist())) == list(range(1, len(vocab)))  # contiguous, one index per id
    assert np.array_equal(Vocab(vocab.classes).encode(known), codes)  # as saved in model.json
    unseen = [o for o in others if o not in set(known)]
    assert (vocab.encode(unseen) == 0).all()


@SETTINGS
@given(n=st.integers(0, 500), pct=st.floats(0, 0.99), seed=st.integers(0, 2**31))
def test_random_split_never_loses_or_duplicates_a_row(n, pct, seed):
    df = pd.DataFrame({"row": np.arange(n)})
    train, valid = random_split(df, pct, seed)
    together = np.concatenate([train["row"].to_numpy(), valid["row"].to_numpy()])
    assert len(together) == n and np.array_equal(np.sort(together), np.arange(n))
    assert len(valid) == int(round(n * pct))


@SETTINGS
@given(n=st.integers(2, 500), data=st.data())
def test_kfold_folds_partition_the_rows(n, data):
    k = data.draw(st.integers(2, min(n, 10)))
    folds = kfold_indices(n, k, seed=data.draw(st.integers(0, 1000)))
    together = np.concatenate(folds)
    assert len(folds) == k and np.array_equal(np.sort(together), np.arange(n))
    assert max(map(len, folds)) - min(map(len, folds)) <= 1
