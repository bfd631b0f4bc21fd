"""Hand-written optimizers (no torch.optim, so every step is visible; the learning-rate schedules are
``config.parse_schedule``'s).

Weight decay is either added to the gradient exactly as the seed writes it
(``grad += wd * param``, mode ``l2``) or applied to the weights directly (``decoupled``, AdamW-style).

A sparse gradient (an embedding table's, from ``F.embedding(..., sparse=True)``) updates only the rows
it touches ("lazy" updates, as torch's ``SparseAdam``): a step then costs the batch's rows, not the table's,
which is what makes 100,000-user tables trainable. Decoupled decay is caught up: a row touched again is
first decayed by the steps that skipped it, and :meth:`Optimizer.settle` brings every row up to date at the
end of an epoch (the lazy regularization of Carpenter, 2008), so each row is decayed as much as the dense step
decays it; without the catch-up a user with 10 ratings in an epoch of 100 steps was decayed 10 times, not 100.
The forward pass still reads the row before its catch-up (the optimizer learns which rows a batch touched
from its gradient), so that gradient is taken at the undecayed row: the one way it differs from the dense
step. ``l2`` decay, inside the gradient, has no catch-up.
"""

from __future__ import annotations

import math

import torch

from latentrec.config import OPTIMIZERS, option
from latentrec.errors import ConfigError
from latentrec.solvers.adam_kernel import adam_rows

LEAST_FACTOR = 1e-30  # lr * wd >= 1 would flip the weights' sign (a run on its way to diverging): count it as ~0


class Optimizer:
    """Base: holds parameters, weight decay and per-parameter state."""

    def __init__(self, params, wd: float = 0.0, wd_mode: str = "l2"):
        if wd_mode not in ("l2", "decoupled"):
            raise ConfigError(f"{option('wd_mode')} must be 'l2' or 'decoupled', not {wd_mode!r}.")
        self.params = [p for p in params if p.requires_grad]
        self.wd, self.wd_mode = wd, wd_mode
        self.state: dict[int, dict] = {}

    @torch.no_grad()
    def step(self, lr: float) -> None:
        for p in self.params:
            if p.grad is None:
                continue
            state = self.state.setdefault(id(p), {})
            if not state:
                self.init(p, state)
            if p.grad.is_sparse:
                grad = p.grad.coalesce()
                rows = grad.indices()[0]
                self.apply(p, grad.values(), rows, state, lr, self.row_decay(p, state, rows, lr))
            else:
                self.apply(p, p.grad, None, state, lr)

    def apply(self, p: torch.Tensor, g: torch.Tensor, rows: torch.Tensor | None, state: dict, lr: float,
              decay: torch.Tensor | None = None) -> None:
        """Step parameter ``p`` (its ``rows`` only, when given) by the gradient (rows) ``g``, decay included:
        decoupled decay scales a dense step's weights by ``1 - lr * wd``, and each of ``rows`` by its ``decay``."""
        w = p.data if rows is None else p.data[rows]
        if self.wd and self.wd_mode == "l2":
            g = g + self.wd * w  # the seed's formula
        if self.wd and self.wd_mode == "decoupled":
            w = w.mul_(1 - lr * self.wd) if rows is None else w * decay.to(w.dtype).view(-1, *[1] * (w.dim() - 1))
        new = self.update(w, g, state, rows, lr)
        if rows is not None:
            p.data[rows] = new

    def row_decay(self, p: torch.Tensor, state: dict, rows: torch.Tensor, lr: float) -> torch.Tensor | None:
        """Decoupled decay's factor for each of ``rows``: this step's and that of the steps since the row was last
        stepped (``None`` without decoupled decay). ``state`` keeps the log of the decay of every step so far
        (``decayed``) and each row's value of it when last stepped (``at``)."""
        if not (self.wd and self.wd_mode == "decoupled"):
            return None
        if "at" not in state:
            state.update(decayed=0.0, at=torch.zeros(p.shape[0], dtype=torch.float64, device=p.device))
        state["decayed"] += math.log(max(1 - lr * self.wd, LEAST_FACTOR))
        factor = (state["decayed"] - state["at"][rows]).exp()
        state["at"][rows] = state["decayed"]
        return factor

    @torch.no_grad()
    def settle(self) -> None:
        """Bring every row of the sparsely stepped parameters up to date with the decay it has missed."""
        for p in self.params:
            state = self.state.get(id(p), {})
            if "at" in state:
                p.data *= (state["decayed"] - state["at"]).exp().to(p.dtype).view(-1, *[1] * (p.dim() - 1))
                state["at"].fill_(state["decayed"])

    def init(self, p: torch.Tensor, state: dict) -> None:
        """Fill the empty ``state`` of parameter ``p`` before its first step."""

    def update(self, w: torch.Tensor, g: torch.Tensor, state: dict, rows: torch.Tensor | None,
               lr: float) -> torch.Tensor:
        """Step the weights ``w`` (the parameter, or its ``rows`` for a sparse gradient) along ``g``; returns them."""
        raise NotImplementedError

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None


class SGD(Optimizer):
    """SGD with (heavy-ball) momentum."""

    def __init__(self, params, wd: float = 0.0, wd_mode: str = "l2", momentum: float = 0.9):
        super().__init__(params, wd, wd_mode)
        self.momentum = momentum

    def init(self, p, state):
        if self.momentum:
            state["buf"] = torch.zeros_like(p)

    def update(self, w, g, state, rows, lr):
        if self.momentum:
            g = moving(state["buf"], rows, lambda b: b.mul_(self.momentum).add_(g))
        return w.add_(g, alpha=-lr)


class Adam(Optimizer):
    """Adam (Kingma & Ba) with bias correction."""

    def __init__(self, params, wd: float = 0.0, wd_mode: str = "decoupled", betas=(0.9, 0.99), eps: float = 1e-7):
        super().__init__(params, wd, wd_mode)
        self.betas, self.eps = betas, eps

    def init(self, p, state):
        state.update(t=0, m=torch.zeros_like(p), v=torch.zeros_like(p))

    def apply(self, p, g, rows, state, lr, decay=None):
        """On the CPU in float32, the compiled kernel (``adam_kernel``); torch's ops elsewhere."""
        if p.device.type != "cpu" or p.dtype != torch.float32 or g.dtype != torch.float32:
            return super().apply(p, g, rows, state, lr, decay)
        state["t"] += 1
        l2 = self.wd if self.wd_mode == "l2" else 0.0
        if decay is None:
            decay = torch.full((p.shape[0] if rows is None else len(rows),), 1 - lr * (self.wd - l2))
        adam_rows(p, state["m"], state["v"], g.contiguous(), rows, lr, self.betas, state["t"], self.eps, l2, decay)

    def update(self, w, g, state, rows, lr):
        b1, b2 = self.betas
        state["t"] += 1
        m = moving(state["m"], rows, lambda m: m.mul_(b1).add_(g, alpha=1 - b1))
        v = moving(state["v"], rows, lambda v: v.mul_(b2).addcmul_(g, g, value=1 - b2))
        m_hat = m / (1 - b1 ** state["t"])
        v_hat = v / (1 - b2 ** state["t"])
        return w.addcdiv_(m_hat, v_hat.sqrt().add_(self.eps), value=-lr)


def moving(buf: torch.Tensor, rows: torch.Tensor | None, step) -> torch.Tensor:
    """Apply the in-place ``step`` to the optimizer state ``buf`` (or to its ``rows``); returns what it stepped."""
    if rows is None:
        return step(buf)
    new = step(buf[rows])
    buf[rows] = new
    return new


def make_optimizer(name: str, params, wd: float, wd_mode: str, momentum: float) -> Optimizer:
    if name == "sgd":
        return SGD(params, wd, wd_mode, momentum)
    if name == "adam":
        return Adam(params, wd, wd_mode)
    raise ConfigError(f"{option('opt')} must be one of {', '.join(OPTIMIZERS)}, not {name!r}.")
