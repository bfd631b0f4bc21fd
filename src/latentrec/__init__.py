"""latentrec: collaborative filtering on explicit ratings, from scratch on PyTorch."""

from latentrec.config import TrainConfig
from latentrec.data.ratings import Ratings, load_ratings
from latentrec.errors import LatentrecError
from latentrec.evaluation.evaluate import evaluate
from latentrec.models.dot import DotProductBias, create_params
from latentrec.training.fit import fit
from latentrec.use.recommender import Recommender
from latentrec.use.topn import recommend

__all__ = ["DotProductBias", "LatentrecError", "Ratings", "Recommender", "TrainConfig", "create_params", "evaluate",
           "fit", "load_ratings", "recommend"]
