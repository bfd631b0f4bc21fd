"""A library does not change its caller's globals: torch's random generator, its thread count, a model's
train/eval mode."""

import pytest
import torch

from latentrec.config import TrainConfig
from latentrec.models.nn import CollabNN
from latentrec.training.fit import fit


@pytest.mark.parametrize("cfg", [TrainConfig(solver="sgd", n_factors=4, epochs=2, seed=3),
                                 TrainConfig(model="nn", n_factors=4, epochs=1, dropout=0.2, seed=3)],
                         ids=["sgd", "nn"])
def test_fit_leaves_the_global_generator_and_thread_count_alone(lowrank, cfg):
    train, _, _ = lowrank
    torch.manual_seed(1234)
    state, threads = torch.get_rng_state(), torch.get_num_threads()
    rec, _ = fit(train, None, cfg)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.get_num_threads() == threads
    again, _ = fit(train, None, cfg)  # still seeded: the same model twice
    for a, b in zip(rec.model.state_dict().values(), again.model.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("mode", [True, False])
def test_score_users_restores_the_mode_even_when_it_fails(mode):
    m = CollabNN(5, 6, 3, 3, layers=(4,), dropout=0.5).train(mode)
    m.score_users(torch.tensor([1, 2]))
    assert m.training is mode
    with pytest.raises(IndexError):
        m.score_users(torch.tensor([99]))  # no such user
    assert m.training is mode
