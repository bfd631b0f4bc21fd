"""Lazy (row-wise) optimizer steps for sparse gradients, against the dense step they stand for."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from latentrec.models.nn import CollabNN
from latentrec.solvers.optim import make_optimizer


def tables(seed: int = 0) -> tuple[torch.nn.Parameter, torch.nn.Parameter]:
    torch.manual_seed(seed)
    w = torch.randn(8, 3)
    return torch.nn.Parameter(w.clone()), torch.nn.Parameter(w.clone())


@pytest.mark.parametrize("opt", ["adam", "sgd"])
@pytest.mark.parametrize("wd_mode", ["l2", "decoupled"])
def test_a_sparse_gradient_steps_its_rows_as_the_dense_one_and_leaves_the_rest(opt, wd_mode):
    sparse, dense = tables()
    lazy = make_optimizer(opt, [sparse], 0.1, wd_mode, 0.9)
    full = make_optimizer(opt, [dense], 0.1, wd_mode, 0.9)
    for step, rows in enumerate(([1, 3, 3, 5], [2, 3], [1, 3, 3, 5])):
        idx = torch.tensor(rows)
        F.embedding(idx, sparse, sparse=True).pow(2).sum().backward()
        assert sparse.grad.is_sparse
        before = sparse.detach().clone()
        lazy.step(0.05)
        lazy.zero_grad()
        if step == 0:  # the first step: no history yet, so the touched rows match the dense step exactly
            F.embedding(idx, dense).pow(2).sum().backward()
            full.step(0.05)
            full.zero_grad()
            touched = torch.unique(idx)
            torch.testing.assert_close(sparse.detach()[touched], dense.detach()[touched])
        untouched = torch.ones(8, dtype=torch.bool)
        untouched[idx] = False
        assert torch.equal(sparse.detach()[untouched], before[untouched])  # no decay, no momentum drift
        assert not torch.equal(sparse.detach()[idx], before[idx])


def test_decoupled_decay_of_the_skipped_steps_is_caught_up_as_the_dense_step_applies_it():
    """Without momentum, a lazy SGD step with decoupled decay is the dense one: a row touched again is first
    decayed by the steps that skipped it, and ``settle`` decays every row for the steps since it was touched.
    (A gradient that does not depend on the weights: a lazy row enters the forward pass before its catch-up.)"""
    sparse, dense = tables()
    lazy = make_optimizer("sgd", [sparse], 0.5, "decoupled", 0.0)
    full = make_optimizer("sgd", [dense], 0.5, "decoupled", 0.0)
    for lr, rows in ((0.1, [1, 3, 3]), (0.2, [2]), (0.05, [5]), (0.3, [1, 5])):
        idx = torch.tensor(rows)
        for p, opt, as_sparse in ((sparse, lazy, True), (dense, full, False)):
            (F.embedding(idx, p, sparse=as_sparse) * torch.tensor([1.0, -2.0, 0.5])).sum().backward()
            opt.step(lr)
            opt.zero_grad()
        torch.testing.assert_close(sparse.detach()[idx], dense.detach()[idx])  # caught up when touched
    assert not torch.allclose(sparse.detach(), dense.detach())  # rows 0, 2, 3, 4, 6, 7 are behind ...
    lazy.settle()
    torch.testing.assert_close(sparse.detach(), dense.detach())  # ... until settled
    lazy.settle()
    torch.testing.assert_close(sparse.detach(), dense.detach())  # and settling twice decays once


@pytest.mark.parametrize("opt", ["adam", "sgd"])
def test_a_sparse_gradient_that_touched_no_row_changes_nothing(opt):
    p, _ = tables()
    before = p.detach().clone()
    F.embedding(torch.zeros(0, dtype=torch.long), p, sparse=True).sum().backward()
    make_optimizer(opt, [p], 0.1, "decoupled", 0.9).step(0.05)
    assert torch.equal(p.detach(), before)


def test_adam_on_sparse_rows_keeps_moments_of_the_rows_it_skipped():
    sparse, dense = tables()
    lazy = make_optimizer("adam", [sparse], 0.0, "l2", 0.9)
    for rows in ([0, 1], [1, 2]):
        F.embedding(torch.tensor(rows), sparse, sparse=True).sum().backward()
        lazy.step(0.1)
        lazy.zero_grad()
    m = lazy.state[id(sparse)]["m"]
    assert torch.allclose(m[0], torch.full((3,), 0.1))  # row 0's first moment, untouched by the second step
    assert torch.allclose(m[1], torch.full((3,), 0.19)) and torch.equal(m[3:], torch.zeros(5, 3))


def test_collab_nn_batches_give_sparse_embedding_gradients():
    torch.manual_seed(0)
    users, items = torch.randint(1, 50, (3000,)), torch.randint(1, 40, (3000,))
    model = CollabNN(50, 40, 8, 8, implicit=True, n_rated=3000)
    model.set_rated(users.numpy(), items.numpy())
    model(torch.tensor([[1, 2], [3, 2]])).sum().backward()
    tables = ("user_factors", "item_factors", "user_implicit", "item_implicit")
    assert all(getattr(model, name).grad.is_sparse for name in tables)
    assert not model.mlp[0].weight.grad.is_sparse
    assert model.user_factors.grad.coalesce().indices()[0].tolist() == [1, 3]


@pytest.mark.parametrize("wd_mode", ["l2", "decoupled"])
@pytest.mark.parametrize("sparse", [True, False])
def test_the_compiled_adam_step_is_the_torch_one(wd_mode, sparse):
    """On the CPU Adam steps float32 tables with a compiled kernel; elsewhere (CUDA) torch's ops run the same
    arithmetic (``Optimizer.apply``). Three steps of each from the same weights must agree."""
    from latentrec.solvers.optim import Optimizer

    compiled, reference = tables()
    kernel = make_optimizer("adam", [compiled], 0.1, wd_mode, 0.9)
    torch_ops = make_optimizer("adam", [reference], 0.1, wd_mode, 0.9)
    for rows in ([1, 3, 3, 5], [2, 3], [0, 7]):
        for p in (compiled, reference):
            F.embedding(torch.tensor(rows), p, sparse=sparse).pow(2).sum().backward()
        kernel.step(0.05)
        grad = reference.grad.coalesce() if sparse else reference.grad
        state = torch_ops.state.setdefault(id(reference), {})
        if not state:
            torch_ops.init(reference, state)
        rows = grad.indices()[0] if sparse else None
        decay = torch_ops.row_decay(reference, state, rows, 0.05) if sparse else None  # as Optimizer.step does
        Optimizer.apply(torch_ops, reference, grad.values() if sparse else grad, rows, state, 0.05, decay)
        kernel.zero_grad()
        torch_ops.zero_grad()
    torch.testing.assert_close(compiled.detach(), reference.detach())
    torch.testing.assert_close(kernel.state[id(compiled)]["v"], state["v"])



def test_decay_of_lr_times_wd_of_one_or_more_is_counted_as_wiping_the_skipped_steps():
    """A step with lr * wd >= 1 (a run on its way to diverging) must not break the catch-up's logarithm."""
    p, _ = tables()
    opt = make_optimizer("sgd", [p], 2.0, "decoupled", 0.0)
    for lr, row in ((0.6, 1), (0.1, 2), (0.1, 1)):
        (F.embedding(torch.tensor([row]), p, sparse=True) * 0).sum().backward()
        opt.step(lr)
        opt.zero_grad()
    assert torch.isfinite(p).all() and p[1:3].abs().max() < 1e-20  # rows 1 and 2 took or caught up on it: wiped
    opt.settle()
    assert torch.isfinite(p).all() and p[0].abs().max() < 1e-20
