"""`latentrec synth` and the chunked Parquet/CSV reader."""

import functools
import warnings

import numpy as np
import pandas as pd
import pytest

from latentrec.cli import main
from latentrec.data.synth import SynthSpec, synth_arrays, write_synth


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


@pytest.mark.parametrize("n_ratings, n_users, n_items, alpha", [(90, 10, 10, 0.8), (100, 10, 10, 0.8),
                                                               (9_000, 100, 100, 0.8), (50, 10, 10, 1e308)])
def test_near_full_density_gives_every_rating_once(n_ratings, n_users, n_items, alpha):
    """A chunk in which every user rates more than half the items left nothing to de-duplicate, and crashed."""
    for chunk_rows in (7, 2_000_000):
        u, i, _ = synth_arrays(SynthSpec(n_ratings, n_users, n_items, alpha=alpha), chunk_rows=chunk_rows)
        assert len(u) == n_ratings == len(np.unique(u.astype(np.int64) * n_items + i))


@pytest.mark.parametrize("batched", [False, True], ids=["kernel", "batched"])
def test_training_recovers_the_planted_structure(tmp_path, monkeypatch, batched):
    """Both ``--solver sgd`` paths: the CPU kernel, and the batched updates CUDA takes (run here on the CPU)."""
    from latentrec.config import TrainConfig
    from latentrec.data.ratings import load_ratings
    from latentrec.solvers import runners
    from latentrec.training.fit import fit

    monkeypatch.setitem(runners.RUNNERS, "sgd", functools.partial(runners.sgd_runner, batched=batched))
    noise = 0.2
    write_synth(SynthSpec(30_000, 600, 300, n_factors=3, noise=noise, scale=(-10, 20), seed=0), tmp_path / "r.csv")
    cfg = TrainConfig(solver="sgd", n_factors=8, epochs=25, lr=0.02, wd=0.01, schedule="cosine", y_range=(-2, 9), seed=0)
    rec, _ = fit(load_ratings(tmp_path / "r.csv"), None, cfg)
    assert rec.info["metrics"]["valid_rmse"] < noise + 0.1, rec.info["metrics"]


def test_synth_cli_writes_and_rejects_bad_input(tmp_path, capsys):
    assert main(["synth", "--ratings", "500", "--users", "40", "--items", "30", "--out", str(tmp_path / "s.pq"),
                 "--json"]) == 0
    assert '"n_ratings": 500' in capsys.readouterr().out
    assert main(["synth", "--ratings", "5000", "--users", "4", "--items", "30", "--out", str(tmp_path / "x.csv")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "do not fit" in err
    assert not (tmp_path / "x.csv").exists()


@pytest.mark.parametrize("extra", [["--noise", "nan"], ["--noise", "inf"], ["--noise", "-1"], ["--alpha", "nan"],
                                   ["--alpha", "inf"], ["--alpha", "-0.5"], ["--scale", "nan", "5"],
                                   ["--scale", "1", "inf"], ["--scale", "1", "1e300"]], ids=" ".join)
def test_synth_refuses_an_option_out_of_range(tmp_path, capsys, extra):
    code = main(["synth", "--ratings", "50", "--users", "10", "--items", "10", "--out", str(tmp_path / "s.csv"), *extra])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith(f"latentrec synth: error: {extra[0][2:]} ({extra[0]}) must be"), err
    assert list(tmp_path.iterdir()) == []


def test_huge_noise_clips_to_the_scale_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, _, r = synth_arrays(SynthSpec(50, 10, 10, noise=1e300))
    assert set(r) <= {1.0, 5.0}


def test_synth_disk_full_is_one_sentence_and_leaves_no_file(tmp_path, capsys, monkeypatch):
    import errno

    import latentrec.data.synth as synth

    def full(spec, chunk_rows):
        yield next(iter(synth_generate(spec, chunk_rows)))
        raise OSError(errno.ENOSPC, "No space left on device")

    synth_generate = synth.generate
    monkeypatch.setattr(synth, "generate", full)
    code = main(["synth", "--ratings", "5000", "--users", "40", "--items", "300", "--out", str(tmp_path / "s.parquet")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "No space left on device" in err
    assert list(tmp_path.iterdir()) == []
