"""Ranking models (EASE, iALS) and the model dir that pairs a ranker with a rating model (issue #12)."""

from __future__ import annotations

import json
import warnings
from dataclasses import replace
from functools import cache

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import lowrank_ratings

from latentrec.cli import main
from latentrec.config import TrainConfig
from latentrec.data.ratings import Ratings
from latentrec.data.split import random_split
from latentrec.errors import ConfigError, ModelCapabilityError, SeenPairsScored
from latentrec.evaluation.evaluate import evaluate
from latentrec.models.ease import EASE
from latentrec.models.ials import ImplicitALS
from latentrec.solvers.ials import ConfidenceRows, fit_ials
from latentrec.solvers.ials_kernel import KernelRows
from latentrec.training.fit import fit
from latentrec.training.rankers import available_memory, check_ease_fits, pick_ranker
from latentrec.use.coldstart import UserRatings
from latentrec.use.recommender import Recommender
from latentrec.use.similar import similar_items
from latentrec.use.topn import recommend


def planted_choices(n_users=240, n_items=80, n_groups=4, per_user=14, seed=0) -> pd.DataFrame:
    """Users in ``n_groups`` taste groups pick mostly (12 of 14) items of their group's block, the rest at
    random, with a popularity skew inside each block; ratings are higher inside the block."""
    rng = np.random.default_rng(seed)
    block = n_items // n_groups
    rows = []
    for u in range(n_users):
        g = u % n_groups
        own = g * block + rng.choice(block, 12, replace=False, p=np.r_[np.full(5, 3.0), np.ones(block - 5)] /
                                     (15 + block - 5))
        other = rng.choice(np.setdiff1d(np.arange(n_items), np.arange(g * block, (g + 1) * block)), per_user - 12,
                           replace=False)
        for i in own:
            rows.append((f"u{u}", f"i{i}", float(rng.integers(3, 6))))
        for i in other:
            rows.append((f"u{u}", f"i{i}", float(rng.integers(1, 4))))
    return pd.DataFrame(rows, columns=["user", "item", "rating"])


@cache
def split() -> tuple[Ratings, Ratings]:
    df = planted_choices()
    train, test = random_split(df, 0.25, 1)
    return Ratings(train, "planted"), Ratings(test, "planted test")


@cache
def trained(kind: str) -> Recommender:
    """``ease``/``ials`` alone, or ``paired``: a Bayesian dot model with the default (auto -> EASE) ranker."""
    train, _ = split()
    cfg = TrainConfig(model=kind, valid_pct=0, device="cpu", seed=0) if kind != "paired" else \
        TrainConfig(n_factors=4, epochs=12, valid_pct=0, device="cpu", seed=0)
    rec, _ = fit(train, None, cfg)
    return rec


@pytest.mark.parametrize("kind", ["ease", "ials", "paired"])
def test_ranking_model_beats_popularity_on_planted_choices(kind):
    rec = trained(kind)
    assert rec.ranker is not None and rec.ranker.kind in ("ease", "ials")
    g = evaluate(rec, split()[1], k=10, threshold=1.0)["ranking"]
    assert g["model"]["ndcg@10"] > 1.5 * g["popularity"]["ndcg@10"]
    assert g["model"]["ndcg@10"] > 0.3


def test_ease_matches_the_closed_form():
    rng = np.random.default_rng(3)
    X = (rng.random((30, 9)) < 0.4) * rng.uniform(0.5, 1.5, (30, 9))
    X[:, 0] = 0  # item 0 is #na#: never rated
    u, i = np.nonzero(X)
    model = EASE(9, lam=2.0, dropout=0.2).fit(torch.from_numpy(u), torch.from_numpy(i),
                                              torch.from_numpy(X[u, i]).float(), 30)
    G = X[:, 1:].T @ X[:, 1:]
    P = np.linalg.inv(G + np.diag(2.0 + 0.2 / 0.8 * np.diag(G)))
    B = -P / np.diag(P)[None, :]
    np.fill_diagonal(B, 0)
    np.testing.assert_allclose(model.B[1:, 1:].numpy(), B, atol=1e-4)
    assert (model.B[0] == 0).all() and (model.B[:, 0] == 0).all()


@pytest.mark.parametrize("route", [ConfidenceRows, KernelRows])
def test_cg_reaches_the_exact_per_row_solution(route):
    gen = torch.Generator().manual_seed(0)
    n_rows, n_cols, k = 7, 12, 3
    rows = torch.tensor([0, 0, 1, 2, 2, 2, 3, 4, 5, 6, 6])
    cols = torch.tensor([1, 4, 2, 0, 5, 9, 3, 11, 7, 2, 8])
    extra = torch.rand(len(rows), generator=gen) * 4
    Y = torch.randn(n_cols, k, generator=gen, dtype=torch.float64)
    x = route(rows, cols, extra.double(), n_rows, n_cols).cg(torch.zeros(n_rows, k, dtype=torch.float64), Y,
                                                             reg=0.5, steps=k)  # CG is exact after k steps here
    for r in range(n_rows):
        m = rows == r
        y, a = Y[cols[m]], extra[m].double()
        A = Y.T @ Y + (y * a[:, None]).T @ y + 0.5 * torch.eye(k, dtype=torch.float64)
        np.testing.assert_allclose(x[r].numpy(), torch.linalg.solve(A, (y * (1 + a)[:, None]).sum(0)).numpy(),
                                   atol=1e-6 if route is KernelRows else 1e-8)  # the kernel's a_j are float32


def test_the_kernel_steps_like_the_torch_route_on_empty_short_and_very_long_rows():
    """float32 as in training; more rows than one parallel task, empty rows among them, and one row longer than
    the kernel gathers into its buffer (read in place instead)."""
    from latentrec.solvers.ials_kernel import GATHER_MAX

    g = torch.Generator().manual_seed(3)
    n_rows, n_cols, k = 150, GATHER_MAX + 500, 8
    short = torch.randperm(n_rows * 40, generator=g)[:1500]
    rows = torch.cat([short // 40, torch.full((GATHER_MAX + 100,), 7)])  # row 7: a hit
    cols = torch.cat([short % 40, torch.randperm(n_cols, generator=g)[:GATHER_MAX + 100]])
    keep = ~((rows == 7) & (torch.arange(len(rows)) < len(short))) & (rows % 10 != 3)  # rows 3, 13, ... empty
    rows, cols = rows[keep], cols[keep]
    extra = torch.rand(len(rows), generator=g) * 4
    Y, x0 = torch.randn(n_cols, k, generator=g), torch.randn(n_rows, k, generator=g) * 0.1
    got, want = (route(rows, cols, extra, n_rows, n_cols).cg(x0.clone(), Y, reg=2.0, steps=3)
                 for route in (KernelRows, ConfidenceRows))
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-3)
    assert (got[3] != x0[3]).any() and got[7].abs().sum() > 0  # an empty row steps towards 0 too


def test_the_cpu_kernel_fits_the_factors_of_the_torch_route():
    """``fit_ials`` on the CPU (compiled per-row CG) and through the torch sparse ops the GPU runs: the same model."""
    g = torch.Generator().manual_seed(1)
    cells = torch.randperm(300 * 80, generator=g)[:3000]
    users, items, w = cells // 80 + 1, cells % 80 + 1, torch.rand(3000, generator=g) * 2
    fits = [fit_ials(ImplicitALS(301, 81, 16, reg=5.0, alpha=5.0), users, items, w, epochs=6, sides=sides)
            for sides in (None, ConfidenceRows)]
    for name in ("user_factors", "item_factors"):
        torch.testing.assert_close(getattr(fits[0], name), getattr(fits[1], name), atol=2e-4, rtol=1e-3)
    assert fits[0].item_factors.abs().sum() > 1  # the factors learnt something


@pytest.mark.parametrize("kind", ["ease", "ials", "paired"])
def test_save_load_round_trip_gives_the_same_lists(kind, tmp_path):
    rec = trained(kind)
    rec.save(tmp_path / "m")
    again = Recommender.load(tmp_path / "m")
    assert again.parts == rec.parts
    for user in ("u0", "u5", "u77"):
        pd.testing.assert_frame_equal(recommend(rec, user, 10), recommend(again, user, 10))
    pd.testing.assert_frame_equal(similar_items(rec, "i3", 5), similar_items(again, "i3", 5))


@pytest.mark.parametrize("kind", ["ease", "paired"])
def test_ease_fold_in_of_a_training_user_equals_their_trained_list(kind):
    rec, (train, _) = trained(kind), split()
    for user in ("u1", "u42"):
        rows = train.df[train.df.user == user]
        folded = recommend(rec, None, 10, ratings=UserRatings(list(rows.item), list(rows.rating)))
        known = recommend(rec, user, 10)
        assert list(folded["item"]) == list(known["item"]) and folded["known"].all()
        # the ratings shown come from the rating model's own fold-in (a ridge solve), near the trained user's
        assert folded["prediction"].isna().all() if rec.model is None else \
            np.abs(folded["prediction"] - known["prediction"]).max() < 0.5


def test_unknown_users_get_flagged_popular_items_and_new_users_folded_in():
    rec = trained("ials")
    top = recommend(rec, "nobody", 5, min_ratings=1)
    assert not top["known"].any() and top["prediction"].isna().all()
    counts = rec.item_counts
    assert list(counts[rec.items.encode(top["item"])]) == sorted(counts[1:], reverse=True)[:5]
    given = UserRatings(["i0", "i1", "i2", "i3"], [5.0, 5.0, 4.0, 5.0])  # items of the first block
    new = recommend(rec, None, 5, ratings=given)
    assert new["known"].all() and not set(new["item"]) & set(given.items)
    assert sum(int(i[1:]) < 20 for i in new["item"]) >= 4  # the rest of the block comes first


def test_a_ranking_only_model_refuses_rating_questions(tmp_path, capsys):
    rec = trained("ease")
    with pytest.raises(ModelCapabilityError, match="model 'dot', the default"):
        rec.predict(["u1"], ["i1"])
    with pytest.raises(ModelCapabilityError):
        evaluate(rec, split()[1], k=None)
    assert "rmse" not in evaluate(rec, split()[1]) and "ranking" in evaluate(rec, split()[1])
    rec.save(tmp_path / "m")
    split()[1].df.to_csv(tmp_path / "test.csv", index=False)
    for argv in (["predict", str(tmp_path / "m"), "--user", "u1", "--item", "i1"],
                 ["evaluate", str(tmp_path / "m"), "--data", str(tmp_path / "test.csv"), "--metrics", "rmse"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "ranking model" in err and "Traceback" not in err


def test_ease_is_refused_when_items_x_items_is_too_big_and_auto_picks_ials():
    with pytest.raises(ConfigError, match="--model ials"):
        check_ease_fits(50_001)
    cfg = TrainConfig().resolved()
    assert pick_ranker(cfg, 1_000, 10**6) == "ease" and pick_ranker(cfg, 20_000, 10**6) == "ials"
    assert pick_ranker(cfg, 20_000, 10**8) is None  # iALS on 100M ratings: minutes and gigabytes, so not by default
    assert pick_ranker(replace(cfg, ranker="ials"), 20_000, 10**8) == "ials"
    assert pick_ranker(replace(cfg, ranker="none"), 1_000, 10**6) is None
    with pytest.raises(ConfigError, match="ranking model"):
        TrainConfig(model="ease", ranker="ials").resolved()


def test_the_cli_trains_a_ranker_and_recommends_with_it(tmp_path, capsys):
    split()[0].df.to_csv(tmp_path / "train.csv", index=False)
    assert main(["train", "--data", str(tmp_path / "train.csv"), "--model", "ials", "--out", str(tmp_path / "m"),
                 "--json", "--device", "cpu"]) == 0
    capsys.readouterr()
    assert main(["recommend", str(tmp_path / "m"), "--user", "u3", "-n", "4"]) == 0
    out = capsys.readouterr().out
    assert "ordered by ials" in out and "prediction" not in out


def test_cv_and_tune_score_a_ranking_model_by_its_lists():
    from latentrec.evaluation.cv import cross_validate, kfolds
    from latentrec.evaluation.tune import Float, tune

    train, test = split()
    result = cross_validate(kfolds(train, 2, seed=0), TrainConfig(model="ease", valid_pct=0, device="cpu"))
    s = result["summary"]
    assert set(s) == {"ndcg@10", "precision@10", "popularity_ndcg@10", "popularity_precision@10"}
    assert s["ndcg@10"]["mean"] > 1.5 * s["popularity_ndcg@10"]["mean"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", SeenPairsScored)  # each trial scores its validation rows: no warning of it
        tuned = tune(train, base=TrainConfig(model="ease", device="cpu"), space={"wd": Float(1.0, 1000.0, log=True)},
                     n_trials=3, test=test)
    scores = tuned.table["valid_ndcg@10"]
    assert scores.notna().all() and tuned.table.loc[tuned.table.trial == tuned.best_trial, "valid_ndcg@10"].item() \
        == scores.max()
    assert tuned.model.ranker is not None and "ranking" in tuned.test and "rmse" not in tuned.test


def test_cv_and_tune_of_a_ranking_model_over_fewer_than_ten_items_score_the_lists_they_can_make():
    from latentrec.evaluation.cv import cross_validate, kfolds
    from latentrec.evaluation.tune import Float, tune

    df, _ = lowrank_ratings(n_users=60, n_items=8, density=0.5)  # top-10 lists hold at most 7 items
    train = Ratings(df, "eight items")
    result = cross_validate(kfolds(train, 2, seed=0), TrainConfig(model="ease", valid_pct=0, device="cpu"))
    assert all(np.isfinite(v["mean"]) for v in result["summary"].values())
    tuned = tune(train, base=TrainConfig(model="ease", device="cpu"), space={"wd": Float(1.0, 1000.0, log=True)},
                 n_trials=2, refit=False)
    assert tuned.table["valid_ndcg@10"].notna().all()


def test_the_report_of_a_ranking_search_plots_and_names_ndcg(tmp_path):
    from latentrec.cli.tune_report import files, write_report
    from latentrec.evaluation.tune import Float, tune

    train, _ = split()
    tuned = tune(train, base=TrainConfig(model="ease", device="cpu"), space={"wd": Float(1.0, 1000.0, log=True)},
                 n_trials=3, refit=False)
    write_report(tuned, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(files(tuned.table))
    assert "valid_ndcg_by_trial.png" in files(tuned.table)
    assert f"valid NDCG@10 {tuned.table['valid_ndcg@10'].max():.6f}" in (tmp_path / "best.toml").read_text()


def test_interpret_of_a_model_without_item_vectors_gives_its_biases_and_says_why_no_map(tmp_path, capsys):
    """EASE has no item factors: interpret refused it whole, though the bias tables apply to it too."""
    trained("ease").save(tmp_path / "m")
    (tmp_path / "pics").mkdir()
    (tmp_path / "pics" / "item_pca.png").write_bytes(b"an earlier model's")
    assert main(["interpret", str(tmp_path / "m"), "--out", str(tmp_path / "pics")]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "Lowest item bias (baseline" in out and "No map of the items: This model ('ease') has no item factors" in out
    assert "Removed from an earlier run (this model has no such picture):" in out and "item_pca.png" in out
    assert not any((tmp_path / "pics").iterdir())


def test_ials_sides_are_the_rating_matrix_in_32_bit_csr():
    """The CSR built straight from sorted pairs holds every pair's value at (row, col), rows and columns in order."""
    from latentrec.solvers.ials import ConfidenceRows

    g = torch.Generator().manual_seed(0)
    cells = torch.randperm(30 * 20, generator=g)[:200]  # distinct (row, col) pairs, in no order
    rows, cols, values = cells // 20, cells % 20, torch.rand(200, generator=g)
    side = ConfidenceRows(rows, cols, values, 30, 20)
    dense = torch.zeros(30, 20)
    dense[rows, cols] = values
    assert side.extra.crow_indices().dtype == torch.int32 and side.extra.col_indices().dtype == torch.int32
    torch.testing.assert_close(side.extra.to_dense(), dense)
    crow, col = side.extra.crow_indices(), side.extra.col_indices()
    assert all(bool((col[crow[r]:crow[r + 1]].diff() > 0).all()) for r in range(30))


def test_like_only_data_trains_a_ranking_model_and_tells_a_rating_model_why_not(tmp_path, capsys):
    """Every rating 1 (likes): EASE and iALS learn which items users pick, and the saved dir loads; the rating
    model's refusal names them."""
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"user": rng.integers(0, 60, 900), "item": rng.integers(0, 40, 900)}).drop_duplicates()
    df.assign(rating=1).to_csv(tmp_path / "likes.csv", index=False)
    for model in ("ease", "ials"):
        assert main(["train", "--data", str(tmp_path / "likes.csv"), "--model", model, "--out", str(tmp_path / model),
                     "--json"]) == 0
        capsys.readouterr()
        assert main(["recommend", str(tmp_path / model), "--user", "3", "-n", "3", "--json"]) == 0
        assert len(json.loads(capsys.readouterr().out)["recommendations"]) == 3
    assert main(["train", "--data", str(tmp_path / "likes.csv"), "--out", str(tmp_path / "dot")]) == 2
    assert "model 'ease' or 'ials' (--model) learn which items users pick" in capsys.readouterr().err


def test_free_memory_is_read_where_there_is_no_proc_meminfo(monkeypatch):
    """macOS has no /proc/meminfo and no count of free pages; Windows has no sysconf: the default ranker still picks."""
    import builtins
    import os

    real_open, real_sysconf = builtins.open, os.sysconf
    monkeypatch.setattr(builtins, "open", lambda f, *a, **k: (_ for _ in ()).throw(OSError(f)) if f == "/proc/meminfo"
                        else real_open(f, *a, **k))

    def macos(name):
        if name == "SC_AVPHYS_PAGES":
            raise ValueError("unrecognized configuration name")
        return real_sysconf(name)
    monkeypatch.setattr(os, "sysconf", macos)
    assert available_memory() == real_sysconf("SC_PAGE_SIZE") * real_sysconf("SC_PHYS_PAGES")
    monkeypatch.delattr(os, "sysconf")
    assert available_memory() >= 1 << 40 and pick_ranker(TrainConfig().resolved(), 1_000, 10**6) == "ease"
