"""The explicit registry of model kinds: the ``kind`` stored in ``model.json`` -> its class."""

from __future__ import annotations

from torch import nn

from latentrec.errors import ModelFileError
from latentrec.models.bayes import BayesianDot
from latentrec.models.dot import DotProductBias
from latentrec.models.ease import EASE
from latentrec.models.ials import ImplicitALS
from latentrec.models.nn import CollabNN
from latentrec.models.popularity import Popularity
from latentrec.models.ranker import Ranker

MODEL_CLASSES: dict[str, type[nn.Module]] = {"dot": DotProductBias, "bayes": BayesianDot, "nn": CollabNN}
RANKER_CLASSES: dict[str, type[Ranker]] = {  # ranking models (models/ranker.py)
    "ease": EASE, "ials": ImplicitALS, "popular": Popularity}


def build_model(arch: dict, where: str = "model.json") -> nn.Module:
    """A model from its ``config()`` dict (as stored in ``model.json``, named ``where`` in errors)."""
    arch = dict(arch)
    kind = _known(arch.pop("kind"), MODEL_CLASSES, "rating model", where)
    if arch.get("y_range") is not None:
        arch["y_range"] = tuple(arch["y_range"])
    return MODEL_CLASSES[kind](**arch)


def build_ranker(arch: dict, where: str = "model.json") -> Ranker:
    """A ranking model from its ``config()`` dict (``model.json``'s ``ranker``)."""
    arch = dict(arch)
    return RANKER_CLASSES[_known(arch.pop("kind"), RANKER_CLASSES, "ranking model", where)](**arch)


def _known(kind, classes: dict, what: str, where: str) -> str:
    if kind not in classes:
        raise ModelFileError(f"{where} describes a {what} of kind {kind!r}, which this latentrec does not know "
                             f"(it knows {', '.join(classes)}); it may come from a newer latentrec.")
    return kind
