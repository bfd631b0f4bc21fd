"""CollabNN: embedding-size rule, training on planted data, save/load, recommend."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import assert_same_scores

from latentrec.config import TrainConfig
from latentrec.errors import ConfigError
from latentrec.evaluation.evaluate import evaluate
from latentrec.models.nn import CollabNN, embedding_size
from latentrec.training.fit import fit
from latentrec.use.recommender import Recommender
from latentrec.use.topn import recommend


def test_embedding_size_rule_and_architecture():
    assert embedding_size(944) == 74 and embedding_size(1683) == 103 and embedding_size(10**7) == 128
    m = CollabNN(10, 20, layers=(8, 4), dropout=0.1, bn=True)
    kinds = [type(b).__name__ for b in m.mlp]
    assert kinds == ["Linear", "ReLU", "BatchNorm1d", "Dropout", "Linear", "ReLU", "BatchNorm1d", "Dropout", "Linear"]
    assert m.mlp[0].in_features == embedding_size(10) + embedding_size(20)
    m.eval()
    out = m(torch.tensor([[1, 2], [3, 4]]))
    assert out.shape == (2,) and bool(((out > 0) & (out < 5.5)).all())
    torch.testing.assert_close(m.score_users(torch.tensor([1, 3]))[:, [2, 4]].diagonal(), out)


@pytest.mark.parametrize("implicit", [True, False])
def test_collab_nn_learns_planted_ratings_and_reloads(lowrank, tmp_path, implicit):
    train, test, noise = lowrank
    cfg = TrainConfig(model="nn", n_factors=16, epochs=30, lr=1e-2, bs=256, wd=0.01, implicit=implicit,
                      valid_pct=0)
    rec, _ = fit(train, None, cfg)
    result = evaluate(rec, test)
    # well below the bias baseline: the MLP learned the interactions
    assert result["rmse"] < 0.75 * result["baselines"]["biases"]["rmse"]
    rec.save(tmp_path / "m")
    again = Recommender.load(tmp_path / "m")
    assert again.model.config() == rec.model.config()
    df = test.df
    assert_same_scores(rec.predict(df["user"], df["item"])["prediction"],
                       again.predict(df["user"], df["item"])["prediction"], rec.device == again.device)
    user = train.df["user"].iloc[0]
    top = recommend(again, user, n=3)
    assert len(top) == 3 and not set(top["item"]) & set(train.df.loc[train.df["user"] == user, "item"])


def test_bad_nn_options_are_one_sentence():
    with pytest.raises(ConfigError, match="--layers"):
        TrainConfig(model="nn", layers=(0,)).resolved()
    with pytest.raises(ConfigError, match="--dropout"):
        TrainConfig(model="nn", dropout=1.5).resolved()


def implicit_model(n_users=3000, n_items=2000, per_user=5, seed=0) -> CollabNN:
    g = torch.Generator().manual_seed(seed)
    m = CollabNN(n_users, n_items, 12, 10, layers=(8,), implicit=True)
    users = torch.arange(1, n_users).repeat_interleave(per_user)  # row 0, the unknown id, rated nothing
    items = torch.randint(1, n_items, (len(users),), generator=g)
    m.set_rated(users.numpy(), items.numpy())
    with torch.no_grad():
        for t in (m.user_implicit, m.item_implicit):
            t.normal_(0, 0.5, generator=g)
    return m.eval()


@pytest.mark.parametrize("layers, bn, dtype", [((8,), False, torch.float32), ((8,), True, torch.float32),
                                               ((8,), True, torch.float64), ((6, 4), True, torch.float32),
                                               ((), False, torch.float32)])
def test_scoring_every_item_matches_the_forward_pass_pair_by_pair(layers, bn, dtype):
    """score_users splits the first layer into a user part and an item part, then finishes a one-hidden-layer head
    with the compiled kernel on the CPU in float32 (batch norm folded in) and through torch's layers, in chunks of
    users, otherwise; either way the scores must be the MLP's."""
    g = torch.Generator().manual_seed(0)
    m = CollabNN(50, 30, 6, 5, layers=layers, bn=bn, implicit=True, n_rated=200)
    m.set_rated(torch.randint(1, 50, (200,), generator=g).numpy(), torch.randint(1, 30, (200,), generator=g).numpy())
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.5, generator=g)
        for b in (b for b in m.mlp if isinstance(b, torch.nn.BatchNorm1d)):  # statistics as after training
            b.running_mean.normal_(0, 1, generator=g)
            b.running_var.uniform_(0.5, 2.0, generator=g)
    m = m.to(dtype).eval()
    users = torch.tensor([0, 1, 7, 49])
    pairs = torch.cartesian_prod(users, torch.arange(30))
    torch.testing.assert_close(m.score_users(users, chunk=64), m(pairs).view(4, 30))


def test_implicit_embeddings_are_the_svdpp_sums():
    """p_u + |N(u)|^-1/2 sum_{j in N(u)} y_j (and the item side likewise), against a dense reference."""
    m = implicit_model(n_users=60, n_items=40, per_user=7)
    u, i = m.rated_users.numpy(), m.rated_items.numpy()
    for factors, implicit, rows, cols, n, m_cols in ((m.user_factors, m.user_implicit, u, i, 60, 40),
                                                     (m.item_factors, m.item_implicit, i, u, 40, 60)):
        x = np.zeros((n, m_cols))
        np.add.at(x, (rows, cols), 1.0)  # a pair rated twice counts twice, as in the sum
        x /= np.sqrt(np.maximum(x.sum(1, keepdims=True), 1))
        want = factors.detach().numpy() + x @ implicit.detach().numpy()
        got = m.embeddings()[0 if factors is m.user_factors else 1].detach().numpy()
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    x = torch.tensor([[1, 2], [5, 0], [0, 3], [59, 39], [5, 2]])
    grads = []
    for batch_only in (True, False):  # a batch's own pairs (gathered) or the product over every row
        users, items = (None, None) if batch_only else m.embeddings()
        out = m(x) if batch_only else m.head(users[x[:, 0]], items[x[:, 1]])
        (out * torch.arange(1.0, 6.0)).sum().backward()
        tables = (m.user_implicit, m.item_implicit, m.user_factors)  # sparse gradients on the batch path
        grads.append([out.detach()] + [p.grad.to_dense().clone() for p in tables])
        m.zero_grad()
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


def test_a_batch_reads_only_its_own_rated_pairs():
    """The forward pass of 8 ratings must not build a tensor over every user or every training pair
    (it used to multiply the whole sparse who-rated-what matrix on every batch)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Largest(TorchDispatchMode):
        numel = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, (tuple, list)) else (out,):
                if isinstance(t, torch.Tensor):
                    Largest.numel = max(Largest.numel, t.numel())
            return out

    m = implicit_model().train()
    x = torch.tensor([[u, u % 7 + 1] for u in range(1, 9)])
    m(x).sum().backward()  # builds whatever the model caches
    m.zero_grad()
    with Largest():
        out = m(x)
    assert out.shape == (8,)
    assert Largest.numel < min(m.n_users * 10, len(m.rated_users)) / 4


def test_bag_sum_backward_kernel_matches_the_sparse_product():
    """On the CPU in float32 the bag sums' backward is a compiled kernel; elsewhere (CUDA, or float64 here) a sparse
    product. Both give every touched table row the sum of the gradients of the bags holding it."""
    from latentrec.models.nn import BagSum

    g = torch.Generator().manual_seed(0)
    counts = torch.tensor([3, 0, 5, 1])
    flat = torch.randint(0, 12, (int(counts.sum()),), generator=g)
    flat[:2] = 7  # a row twice in one bag counts twice
    offsets = counts.cumsum(0) - counts
    grads = []
    for dtype in (torch.float32, torch.float64):
        table = torch.randn(12, 5, generator=g).to(dtype).requires_grad_()
        out = BagSum.apply(flat, offsets, counts, table)
        out.backward(torch.arange(20.0).view(4, 5).to(dtype))
        assert table.grad.is_sparse
        grads.append(table.grad.to_dense())
    want = torch.zeros(12, 5, dtype=torch.float64)
    bags = torch.repeat_interleave(torch.arange(4), counts)
    want.index_add_(0, flat, torch.arange(20.0, dtype=torch.float64).view(4, 5)[bags])
    torch.testing.assert_close(grads[1], want)
    torch.testing.assert_close(grads[0], want.float())


def test_where_sparse_gradients_are_off_the_tables_get_the_same_gradients_dense(monkeypatch):
    """MPS keeps dense gradients (``sparse_grads``); the values must be the sparse ones, laid out dense."""
    import latentrec.models.nn as nn_module

    m = implicit_model(n_users=60, n_items=40, per_user=7).train()
    x = torch.tensor([[1, 2], [5, 0], [59, 39], [5, 2]])
    tables = (m.user_factors, m.item_factors, m.user_implicit, m.item_implicit)
    grads = []
    for sparse in (True, False):
        monkeypatch.setattr(nn_module, "sparse_grads", lambda device, sparse=sparse: sparse)
        m(x).sum().backward()
        assert all(t.grad.is_sparse == sparse for t in tables)
        grads.append([t.grad.to_dense() for t in tables])
        m.zero_grad()
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)
