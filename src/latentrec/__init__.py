"""latentrec: collaborative filtering on explicit ratings, from scratch on PyTorch."""

from .config import TrainConfig
from .data import Ratings, load_ratings
from .errors import LatentrecError
from .evaluate import evaluate
from .models import DotProductBias, create_params
from .recommend import recommend
from .recommender import Recommender
from .training import fit

__all__ = ["DotProductBias", "LatentrecError", "Ratings", "Recommender", "TrainConfig", "create_params", "evaluate",
           "fit", "load_ratings", "recommend"]
