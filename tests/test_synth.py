"""`latentrec synth` and the chunked Parquet/CSV reader."""

import numpy as np
import pandas as pd
import pytest

from latentrec.chunked import iter_chunks, read_blocked, scan
from latentrec.cli import main
from latentrec.errors import DataError
from latentrec.synth import SynthSpec, synth_arrays, write_synth


def test_synth_file_has_unique_pairs_power_law_and_the_scale(tmp_path):
    spec = SynthSpec(60_000, 2_000, 500, n_factors=4, noise=0.3, seed=3)
    info = write_synth(spec, tmp_path / "r.parquet", chunk_rows=7_000)
    df = pd.read_parquet(tmp_path / "r.parquet")
    assert len(df) == info["n_ratings"] == 60_000
    assert not df.duplicated(["user", "item"]).any()
    assert df.user.between(0, 1_999).all() and df.item.between(0, 499).all()
    assert df.rating.between(1, 5).all() and df.rating.dtype == np.float32 and df.user.dtype == np.int32
    share = df.item.value_counts().iloc[:50].sum() / len(df)  # top 10% of items
    assert share > 0.3, share
    assert [p.name for p in tmp_path.iterdir()] == ["r.parquet"]  # no temp file left


def test_csv_and_parquet_and_memory_agree(tmp_path):
    spec = SynthSpec(5_000, 300, 100, seed=1)
    write_synth(spec, tmp_path / "r.csv", chunk_rows=1_000)
    write_synth(spec, tmp_path / "r.parquet", chunk_rows=1_000)
    a = pd.read_csv(tmp_path / "r.csv")
    b = pd.read_parquet(tmp_path / "r.parquet")
    assert np.array_equal(a.user, b.user) and np.allclose(a.rating, b.rating)
    u, i, r = synth_arrays(spec, chunk_rows=1_000)
    assert np.array_equal(u, b.user) and np.array_equal(i, b.item) and np.array_equal(r, b.rating)


def test_training_recovers_the_planted_structure(tmp_path):
    from latentrec.config import TrainConfig
    from latentrec.data import load_ratings
    from latentrec.training import fit

    noise = 0.2
    write_synth(SynthSpec(30_000, 600, 300, n_factors=3, noise=noise, scale=(-10, 20), seed=0), tmp_path / "r.csv")
    cfg = TrainConfig(solver="sgd", n_factors=8, epochs=25, lr=0.02, wd=0.01, schedule="cosine", y_range=(-2, 9), seed=0)
    rec, _ = fit(load_ratings(tmp_path / "r.csv"), None, cfg)
    assert rec.info["metrics"]["valid_rmse"] < noise + 0.1, rec.info["metrics"]


def test_chunked_reader_streams_parquet_and_csv(tmp_path):
    spec = SynthSpec(9_000, 400, 90, seed=2)
    for name in ("r.parquet", "r.csv"):
        write_synth(spec, tmp_path / name, chunk_rows=2_000)
        chunks = list(iter_chunks(tmp_path / name, chunk_rows=1_000))
        assert all(len(c[0]) <= 1_000 for c in chunks if name.endswith("parquet"))
        u = np.concatenate([c[0] for c in chunks])
        assert len(u) == 9_000 and u.dtype == np.int32 and chunks[0][2].dtype == np.float32
        info = scan(tmp_path / name)
        assert info["n_ratings"] == 9_000 and info["n_users"] <= 400 and info["rating_min"] >= 1
        blocked, _ = read_blocked(tmp_path / name, 3, np.random.default_rng(0))
        assert len(blocked) == 9_000 and blocked.offsets[-1] == 9_000


def test_chunked_reader_refuses_text_ids(tmp_path):
    pd.DataFrame({"user": ["a", "b"], "item": [1, 2], "rating": [3.0, 4.0]}).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(DataError, match="numeric"):
        scan(tmp_path / "t.csv")
    with pytest.raises(DataError, match="does not exist"):
        scan(tmp_path / "missing.parquet")


def test_synth_cli_writes_and_rejects_bad_input(tmp_path, capsys):
    assert main(["synth", "--ratings", "500", "--users", "40", "--items", "30", "--out", str(tmp_path / "s.pq"),
                 "--json"]) == 0
    assert '"n_ratings": 500' in capsys.readouterr().out
    assert main(["synth", "--ratings", "5000", "--users", "4", "--items", "30", "--out", str(tmp_path / "x.csv")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "do not fit" in err
    assert not (tmp_path / "x.csv").exists()
