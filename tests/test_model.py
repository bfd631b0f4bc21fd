import numpy as np
import torch

from latentrec.models.dot import DotProductBias, create_params, default_y_range
from latentrec.solvers.optim import SGD


def test_embedding_lookup_gradient_equals_one_hot_product():
    torch.manual_seed(0)
    weights = create_params(7, 3)
    idx = torch.tensor([1, 4, 4, 6])
    (weights[idx] * torch.arange(12.0).view(4, 3)).sum().backward()
    grad_lookup = weights.grad.clone()
    weights.grad = None
    one_hot = torch.nn.functional.one_hot(idx, 7).float()
    ((one_hot @ weights) * torch.arange(12.0).view(4, 3)).sum().backward()
    assert torch.allclose(grad_lookup, weights.grad)
    assert grad_lookup[0].abs().sum() == 0  # rows not looked up get no gradient


def test_create_params_is_small_normal_and_tracked():
    p = create_params(2000, 50)
    assert p.requires_grad
    assert abs(float(p.detach().std()) - 0.01) < 0.001


def test_weight_decay_step_is_the_seeds_formula():
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(5))
    grad = torch.randn(5)
    p.grad = grad.clone()
    before = p.detach().clone()
    SGD([p], wd=0.1, wd_mode="l2", momentum=0.0).step(lr=0.5)
    assert torch.allclose(p.detach(), before - 0.5 * (grad + 0.1 * before))


def test_decoupled_weight_decay_shrinks_weights_directly():
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.zeros(3)
    SGD([p], wd=0.1, wd_mode="decoupled", momentum=0.0).step(lr=0.5)
    assert torch.allclose(p.detach(), torch.full((3,), 0.95))


def test_y_range_ends_are_reachable():
    lo, hi = default_y_range(1.0, 5.0)
    assert lo < 1.0 and hi > 5.0
    m = DotProductBias(3, 3, 2, (lo, hi))
    with torch.no_grad():
        m.user_bias[1], m.item_bias[1] = 10.0, 10.0
        m.user_bias[2], m.item_bias[2] = -10.0, -10.0
    out = m(torch.tensor([[1, 1], [2, 2]]))
    assert out[0] > 5.0 and out[1] < 1.0


def test_unknown_rows_are_the_weighted_average():
    m = DotProductBias(3, 3, 2, None)
    with torch.no_grad():
        m.user_bias[:] = torch.tensor([9.0, 1.0, 3.0])
    m.set_unknown_rows(torch.tensor([0, 1, 3]), torch.tensor([0, 2, 2]))
    assert np.isclose(float(m.user_bias.detach()[0]), (1 * 1 + 3 * 3) / 4)
    assert float(m.user_factors.detach()[0].abs().sum()) == 0.0
