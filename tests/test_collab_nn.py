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
    assert embedding_size(944) == 74 and embedding_size(1683) == 103 and embedding_size(10**7) == 600
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
