"""The explicit registry of model kinds: the ``kind`` stored in ``model.json`` -> its class."""

from __future__ import annotations

from torch import nn

from latentrec.models.bayes import BayesianDot
from latentrec.models.dot import DotProductBias
from latentrec.models.nn import CollabNN

MODEL_CLASSES: dict[str, type[nn.Module]] = {"dot": DotProductBias, "bayes": BayesianDot, "nn": CollabNN}


def build_model(arch: dict) -> nn.Module:
    """A model from its ``config()`` dict (as stored in ``model.json``)."""
    arch = dict(arch)
    kind = arch.pop("kind")
    if arch.get("y_range") is not None:
        arch["y_range"] = tuple(arch["y_range"])
    return MODEL_CLASSES[kind](**arch)
