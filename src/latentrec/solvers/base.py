"""What the training loop asks of a solver: the :class:`Runner` every solver's epoch runner extends."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence


class Runner:
    """One solver's pass over the training ratings, an epoch at a time.

    ``epoch(lr_at)`` returns the epoch's mean squared training error; ``lr_at(fraction)`` is the learning rate
    that far into the epoch. An epoch whose loss passes ``limit`` raises :class:`~latentrec.solvers.diverged.Diverged`
    (the loop sets it after the first epoch).
    """

    limit: float = math.inf
    closed_form: bool = False  # ALS sweeps and Gibbs samples: no learning rate
    torch_threads: int | None = None  # torch's threads while training (None: left as they are)
    checks_batches: bool = True  # may check the loss inside an epoch (off under torchrun: ranks decide together)
    inners: Sequence[Runner] = ()  # a data-parallel wrapper's runners, where generators and optimizers live

    def epoch(self, lr_at: Callable[[float], float]) -> float:
        raise NotImplementedError

    def solver_state(self) -> dict:
        """A closed-form solver's own iterates, for checkpoints (tensors and JSON values)."""
        return {}

    def load_solver_state(self, state: dict) -> None:
        """Restore what :meth:`solver_state` returned."""
