"""Learning-rate schedules: ``--schedule`` parsed into a function of the (fractional) epoch."""

from __future__ import annotations

import math

from latentrec.errors import ConfigError


def parse_schedule(spec: str, lr: float, epochs: int):
    """Learning rate for a (fractional) epoch ``t`` in [0, epochs).

    ``constant``; ``cosine`` (anneal to 0); ``onecycle`` (warm up for a quarter, then anneal);
    ``step:E:LR[,E:LR...]`` switches to LR at epoch E (the seed's "lr 0.001 -> 0.01 @ 250" is
    ``--lr 0.001 --schedule step:250:0.01``).
    """
    name, _, rest = spec.partition(":")
    if name == "constant":
        return lambda t: lr
    if name == "cosine":
        return lambda t: lr * 0.5 * (1 + math.cos(math.pi * t / max(epochs, 1)))
    if name == "onecycle":
        def onecycle(t: float) -> float:
            frac, warm = t / max(epochs, 1), 0.25
            if frac < warm:
                return lr / 25 + (lr - lr / 25) * 0.5 * (1 - math.cos(math.pi * frac / warm))
            return lr * 0.5 * (1 + math.cos(math.pi * (frac - warm) / (1 - warm))) + lr / 1e5
        return onecycle
    if name == "step" and rest:
        try:
            steps = sorted((int(e), float(v)) for e, v in (s.split(":") for s in rest.split(",")))
        except ValueError:
            steps = None
        if steps:
            def step(t: float) -> float:
                value = lr
                for at, v in steps:
                    if t >= at:
                        value = v
                return value
            return step
    raise ConfigError(
        f"--schedule must be constant, cosine, onecycle or step:EPOCH:LR[,EPOCH:LR], not {spec!r}."
    )
