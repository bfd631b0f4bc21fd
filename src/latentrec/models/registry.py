"""The explicit registry of model kinds: the ``kind`` stored in ``model.json`` -> its class."""

from __future__ import annotations

import inspect

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
    return _build(MODEL_CLASSES[kind], arch, f"{kind} rating model", where)


def build_ranker(arch: dict, where: str = "model.json") -> Ranker:
    """A ranking model from its ``config()`` dict (``model.json``'s ``ranker``)."""
    arch = dict(arch)
    kind = _known(arch.pop("kind"), RANKER_CLASSES, "ranking model", where)
    return _build(RANKER_CLASSES[kind], arch, f"{kind} ranker", where)


def _build(cls: type, arch: dict, what: str, where: str):
    """``cls(**arch)``, with fields the class does not take, or lacks, named in one sentence (a ``kind`` edited
    into another, say) instead of Python's TypeError."""
    params = {n: p for n, p in inspect.signature(cls).parameters.items()
              if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    unknown = sorted(set(arch) - set(params))
    missing = [n for n, p in params.items() if p.default is p.empty and n not in arch]
    if unknown or missing:
        field, said = (unknown[0], "has no field") if unknown else (missing[0], "needs the field")
        article = "an" if what[0] in "aeinou" else "a"  # an nn, an ials, an ease; a dot, a bayes
        raise ModelFileError(f"{where}: {article} {what} {said} {field!r}; the file was edited or damaged.")
    return cls(**arch)


def _known(kind, classes: dict, what: str, where: str) -> str:
    if kind not in classes:
        raise ModelFileError(f"{where} describes a {what} of kind {kind!r}, which this latentrec does not know "
                             f"(it knows {', '.join(classes)}); it may come from a newer latentrec.")
    return kind
