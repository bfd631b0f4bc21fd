"""How a runner says training diverged: :class:`Diverged`, raised by :func:`check_loss`."""

from __future__ import annotations

import math


class Diverged(Exception):
    """Raised inside an epoch when the loss or the weights stop being finite or explode."""


def check_loss(value: float, limit: float, what: str = "the epoch's loss") -> float:
    """``value`` if it is finite and at most ``limit``; else :class:`Diverged` saying ``what`` reached."""
    if not math.isfinite(value) or value > limit:
        raise Diverged(f"{what} reached {value:.3g}")
    return value
