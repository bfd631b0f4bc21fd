"""latentrec: collaborative filtering on explicit ratings, from scratch on PyTorch.

The public names load on first use (PEP 562), so ``latentrec --help`` starts without torch or pandas.
"""

from importlib import import_module
from typing import TYPE_CHECKING

_PUBLIC = {
    "Callback": "latentrec.training.callback", "DotProductBias": "latentrec.models.dot", "LatentrecError": "latentrec.errors", "Ratings": "latentrec.data.ratings",
    "Recommender": "latentrec.use.recommender", "TrainConfig": "latentrec.config", "create_params": "latentrec.models.dot",
    "evaluate": "latentrec.evaluation.evaluate", "fit": "latentrec.training.fit",
    "load_ratings": "latentrec.data.ratings", "recommend": "latentrec.use.topn", "recommend_all": "latentrec.use.topn",
    "similar_items": "latentrec.use.similar", "UserRatings": "latentrec.use.coldstart",
    "refit_config": "latentrec.training.fit", "bias_extremes": "latentrec.use.interpret",
    "item_pca": "latentrec.use.interpret", "interpret": "latentrec.use.interpret",
    "read_split": "latentrec.data.lean", "Trainer": "latentrec.training.loop", "CollabNN": "latentrec.models.nn",
    **dict.fromkeys(["tune", "Float", "Int", "Choice"], "latentrec.evaluation.tune"),
    "cross_validate": "latentrec.evaluation.cv", "kfolds": "latentrec.evaluation.cv",
    **dict.fromkeys(["DataError", "ColumnNotFound", "ConfigError", "ModelFileError", "ModelCapabilityError",
                     "DownloadError", "TrainingDiverged", "UnknownItemsLeftOut", "SeenPairsScored"], "latentrec.errors"),
}
__all__ = ["Callback", "Choice", "CollabNN", "ColumnNotFound", "ConfigError", "DataError", "DotProductBias",
           "DownloadError", "Float", "Int", "LatentrecError", "ModelCapabilityError", "ModelFileError", "Ratings",
           "Recommender", "SeenPairsScored", "TrainConfig", "Trainer", "TrainingDiverged", "UnknownItemsLeftOut",
           "UserRatings", "bias_extremes", "create_params", "cross_validate", "evaluate", "fit", "interpret",
           "item_pca", "kfolds", "load_ratings", "read_split", "recommend", "recommend_all", "refit_config",
           "similar_items", "tune"]

if TYPE_CHECKING:
    from latentrec.config import TrainConfig
    from latentrec.data.lean import read_split
    from latentrec.data.ratings import Ratings, load_ratings
    from latentrec.errors import (
        ColumnNotFound,
        ConfigError,
        DataError,
        DownloadError,
        LatentrecError,
        ModelCapabilityError,
        ModelFileError,
        SeenPairsScored,
        TrainingDiverged,
        UnknownItemsLeftOut,
    )
    from latentrec.evaluation.cv import cross_validate, kfolds
    from latentrec.evaluation.evaluate import evaluate
    from latentrec.evaluation.tune import Choice, Float, Int, tune
    from latentrec.models.dot import DotProductBias, create_params
    from latentrec.models.nn import CollabNN
    from latentrec.training.callback import Callback
    from latentrec.training.fit import fit, refit_config
    from latentrec.training.loop import Trainer
    from latentrec.use.coldstart import UserRatings
    from latentrec.use.interpret import bias_extremes, interpret, item_pca
    from latentrec.use.recommender import Recommender
    from latentrec.use.similar import similar_items
    from latentrec.use.topn import recommend, recommend_all


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'latentrec' has no attribute {name!r}")
    value = getattr(import_module(_PUBLIC[name]), name)
    globals()[name] = value  # once loaded, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
