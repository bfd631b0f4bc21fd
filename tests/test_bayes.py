"""Bayesian MF: the Gibbs conditionals are the closed-form posteriors; the averaged model round-trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import assert_same_scores

from latentrec.config import TrainConfig
from latentrec.data.batches import Encoded
from latentrec.evaluation.evaluate import evaluate
from latentrec.models.bayes import BayesianDot
from latentrec.solvers.gibbs import sample_gaussian, wishart
from latentrec.solvers.rating_graph import RatingGraph
from latentrec.training.fit import fit
from latentrec.use.recommender import Recommender
from latentrec.use.topn import recommend


@pytest.mark.parametrize("compiled", [True, False], ids=["kernel", "torch"])
def test_user_conditional_matches_closed_form_posterior(compiled):
    rng = np.random.default_rng(0)
    k, alpha = 2, 1.7
    users = np.array([1, 1, 1, 2, 2], np.int32)
    items = np.array([1, 2, 3, 1, 3], np.int32)
    ratings = np.array([4, 2, 5, 3, 1], np.float32)
    graph = RatingGraph(Encoded(users, items, ratings), 3, 4, torch.device("cpu"), compiled=compiled)
    v = rng.normal(size=(4, k + 1)).astype(np.float32)
    prior_mean = rng.normal(size=(3, k + 1)).astype(np.float32)
    a = rng.normal(size=(k + 1, k + 1))
    prior_prec = (a @ a.T + np.eye(k + 1)).astype(np.float32)
    target = ratings - ratings.mean() - v[items, k]
    z = torch.from_numpy(rng.normal(size=(3, k + 1)).astype(np.float32))
    mean, draw = graph.solve("user", torch.from_numpy(v), "singular", alpha=alpha, prec=torch.from_numpy(prior_prec),
                             prior_mean=torch.from_numpy(prior_mean), z=z)
    for u, rows in ((1, slice(0, 3)), (2, slice(3, 5))):
        # closed form: N(P^-1 (alpha F^T t + L0 m0), P^-1), P = L0 + alpha F^T F; a draw is mean + chol(P)^-T z
        f = np.c_[v[items[rows], :k], np.ones(len(items[rows]))]
        prec = prior_prec + alpha * f.T @ f
        want = np.linalg.solve(prec, alpha * f.T @ target[rows] + prior_prec @ prior_mean[u])
        np.testing.assert_allclose(mean[u].numpy(), want, rtol=1e-4, atol=1e-5)
        chol = np.linalg.cholesky(prec)
        np.testing.assert_allclose(draw[u].numpy(), want + np.linalg.solve(chol.T, z[u].numpy()), rtol=1e-4, atol=1e-5)
    # user 0 rated nothing: its conditional is its prior
    np.testing.assert_allclose(mean[0].numpy(), prior_mean[0], rtol=1e-4, atol=1e-5)


def test_gaussian_draws_have_the_precision_asked():
    gen = torch.Generator().manual_seed(0)
    prec = torch.tensor([[2.0, 0.5], [0.5, 1.0]])
    chol = torch.linalg.cholesky(prec)
    draws = torch.stack([sample_gaussian(torch.ones(1, 2), chol[None], gen)[0] for _ in range(20000)]).numpy()
    np.testing.assert_allclose(draws.mean(0), [1, 1], atol=0.03)
    np.testing.assert_allclose(np.cov(draws.T), np.linalg.inv(prec.numpy()), atol=0.02)


def test_wishart_draws_have_the_right_mean():
    gen = torch.Generator().manual_seed(1)
    scale = torch.tensor([[1.0, 0.3], [0.3, 0.5]], dtype=torch.float64)
    draws = torch.stack([wishart(5.0, scale, gen) for _ in range(4000)])
    np.testing.assert_allclose(draws.mean(0).numpy(), 5.0 * scale.numpy(), rtol=0.06, atol=0.05)


def test_bayesian_dot_predicts_the_average_of_its_samples():
    model = BayesianDot(3, 4, n_factors=2, n_samples=2)
    gen = torch.Generator().manual_seed(0)
    samples = [[torch.randn(3, 2, generator=gen), torch.randn(4, 2, generator=gen), torch.randn(3, generator=gen),
                torch.randn(4, generator=gen)] for _ in range(2)]
    for slot, s in enumerate(samples):
        model.keep(slot, *s)
    x = torch.tensor([[1, 2], [2, 3], [0, 1]])
    each = [(p[x[:, 0]] * q[x[:, 1]]).sum(1) + bu[x[:, 0]] + bi[x[:, 1]] for p, q, bu, bi in samples]
    torch.testing.assert_close(model(x), (each[0] + each[1]) / 2)
    torch.testing.assert_close(model.score_users(x[:, 0])[torch.arange(3), x[:, 1]], model(x))


def test_bayes_fits_planted_data_and_the_saved_model_predicts_what_was_measured(lowrank, tmp_path):
    train, test, noise = lowrank
    cfg = TrainConfig(solver="bayes", n_factors=4, epochs=30, burn_in=10, valid_pct=0)
    rec, _ = fit(train, None, cfg)
    assert rec.model.kind == "bayes" and rec.model.n_samples == 20
    measured = evaluate(rec, test)
    assert measured["rmse"] < 1.6 * noise + 0.05
    rec.save(tmp_path / "m")
    again = Recommender.load(tmp_path / "m")
    assert again.model.config() == rec.model.config()
    assert again.info == rec.info and {"n_train", "n_valid", "metrics"} <= set(again.info)
    assert_same_scores(evaluate(again, test)["rmse"], measured["rmse"], rec.device == again.device, atol=1e-6)
    user = train.df["user"].iloc[0]
    top = recommend(again, user, n=5)
    assert len(top) == 5 and not set(top["item"]) & set(train.df.loc[train.df["user"] == user, "item"])
    assert again.model.item_factors.shape == (len(again.items), 4 * 20)  # the kept samples side by side


def test_weights_of_an_earlier_epoch_count_their_samples():
    """The best epoch's (or a checkpoint's) weights hold fewer samples than the model has room for: loading them
    counts the filled ones, so fold-in's item samples and prior are those samples, at their own scale."""
    gen = torch.Generator().manual_seed(0)
    model = BayesianDot(5, 4, n_factors=2, n_samples=3)
    qs = []
    for slot in range(2):
        p, q = torch.randn(5, 2, generator=gen), torch.randn(4, 2, generator=gen)
        model.keep(slot, p, q, torch.randn(5, generator=gen), torch.randn(4, generator=gen))
        qs.append(q)
    loaded = BayesianDot(5, 4, n_factors=2, n_samples=3)
    loaded.load_state_dict(model.state_dict())
    assert loaded.kept == 2 and loaded.filled_factors == 4
    assert torch.allclose(loaded.item_samples(torch.arange(4)), torch.stack(qs), atol=1e-6)
    prec, mean = loaded.user_prior()
    assert prec.shape == (2, 3, 3) and float(prec.abs().max()) < 1e4  # no empty sample's near-singular spread


def test_the_best_epoch_of_a_gibbs_run_is_one_after_its_burn_in():
    """Noisy validation scores picked sweep 7 of a 10-sweep burn-in: one draw, not the posterior mean, and the
    refit then ran 7 sweeps."""
    import pandas as pd

    from latentrec.data.ratings import Ratings

    rng = np.random.default_rng(0)
    rows = [(f"u{u}", f"i{i}", float(rng.integers(1, 6))) for u in range(30) for i in range(15) if rng.random() < 0.5]
    cfg = TrainConfig(solver="bayes", n_factors=4, epochs=14, burn_in=10, valid_pct=0.2, seed=0, ranker="none",
                      device="cpu")
    _, trainer = fit(Ratings(pd.DataFrame(rows, columns=["user", "item", "rating"]), "noise"), None, cfg)
    scores = [h["valid_rmse"] for h in trainer.history]
    assert min(scores[:10]) < min(scores[10:])  # the case: a burn-in draw scored best
    assert trainer.best_epoch == 11 + int(np.argmin(scores[10:]))
