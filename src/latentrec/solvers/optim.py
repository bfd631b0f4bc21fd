"""Hand-written optimizers and learning-rate schedules (no torch.optim, so every step is visible).

Weight decay is either added to the gradient exactly as the seed writes it
(``grad += wd * param``, mode ``l2``) or applied to the weights directly (``decoupled``, AdamW-style).
"""

from __future__ import annotations

import torch

from latentrec.config import OPTIMIZERS
from latentrec.errors import ConfigError


class Optimizer:
    """Base: holds parameters, weight decay and per-parameter state."""

    def __init__(self, params, wd: float = 0.0, wd_mode: str = "l2"):
        if wd_mode not in ("l2", "decoupled"):
            raise ConfigError(f"--wd-mode must be 'l2' or 'decoupled', not {wd_mode!r}.")
        self.params = [p for p in params if p.requires_grad]
        self.wd, self.wd_mode = wd, wd_mode
        self.state: dict[int, dict] = {}

    @torch.no_grad()
    def step(self, lr: float) -> None:
        for p in self.params:
            if p.grad is None:
                continue
            if self.wd and self.wd_mode == "l2":
                p.grad += self.wd * p.data  # the seed's formula
            if self.wd and self.wd_mode == "decoupled":
                p.data.mul_(1 - lr * self.wd)
            self.update(p, self.state.setdefault(id(p), {}), lr)

    def update(self, p: torch.Tensor, state: dict, lr: float) -> None:
        raise NotImplementedError

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None


class SGD(Optimizer):
    """SGD with (heavy-ball) momentum."""

    def __init__(self, params, wd: float = 0.0, wd_mode: str = "l2", momentum: float = 0.9):
        super().__init__(params, wd, wd_mode)
        self.momentum = momentum

    def update(self, p, state, lr):
        g = p.grad
        if self.momentum:
            buf = state.get("buf")
            buf = g.clone() if buf is None else buf.mul_(self.momentum).add_(g)
            state["buf"] = buf
            g = buf
        p.data.add_(g, alpha=-lr)


class Adam(Optimizer):
    """Adam (Kingma & Ba) with bias correction."""

    def __init__(self, params, wd: float = 0.0, wd_mode: str = "decoupled", betas=(0.9, 0.99), eps: float = 1e-7):
        super().__init__(params, wd, wd_mode)
        self.betas, self.eps = betas, eps

    def update(self, p, state, lr):
        b1, b2 = self.betas
        if not state:
            state.update(t=0, m=torch.zeros_like(p), v=torch.zeros_like(p))
        state["t"] += 1
        state["m"].mul_(b1).add_(p.grad, alpha=1 - b1)
        state["v"].mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
        m_hat = state["m"] / (1 - b1 ** state["t"])
        v_hat = state["v"] / (1 - b2 ** state["t"])
        p.data.addcdiv_(m_hat, v_hat.sqrt().add_(self.eps), value=-lr)


def make_optimizer(name: str, params, wd: float, wd_mode: str, momentum: float) -> Optimizer:
    if name == "sgd":
        return SGD(params, wd, wd_mode, momentum)
    if name == "adam":
        return Adam(params, wd, wd_mode)
    raise ConfigError(f"--opt must be one of {', '.join(OPTIMIZERS)}, not {name!r}.")
