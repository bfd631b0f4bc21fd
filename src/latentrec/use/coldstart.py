"""Fold-in: a user who is not in the model, described by a few ratings, without retraining.

With the item factors ``q_i`` and biases ``b_i`` fixed, the user's factors ``p`` and bias ``b``
minimise ``sum_i (r_i - squash(p . q_i + b + b_i))^2 + reg * |p|^2`` -- the same objective, per
user, that training minimised. ``reg`` (on ``p`` and ``b``) defaults to ``max(wd, 0.05) * n_ratings``, which is what
per-rating weight decay (``grad += wd * param`` on every rating) adds up to. Started from the ridge solution
in logit space, a few Gauss-Newton steps solve it; each is one small ``(k+1) x (k+1)`` system.

For the Bayesian model each kept sample gives the user's posterior mean given that sample's items
(one batched solve; the model averages them), as the sampler solved every trained user: the prior
is the Gaussian of the known users' rows in that sample (``BayesianDot.user_prior``, estimated from
the model itself), the noise precision ``1 / train_rmse**2``. A few ratings then move a new user from
the typical user only as far as they say, instead of fitting them exactly.

CollabNN has no per-user solve: with its implicit embeddings (the default recipe) a new user is the mean
user's own embedding plus the sum over the items they rated, as SVD++ meets a new user (which items,
not their ratings); without them, the unknown user's predictions.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from latentrec.data.batches import Encoded
from latentrec.data.columns import resolve_columns
from latentrec.data.ratings import one_user_table
from latentrec.data.text_files import first_line, read_text
from latentrec.data.vocab import id_text
from latentrec.errors import ConfigError, DataError, clip
from latentrec.models.dot import is_dot
from latentrec.use.recommender import Recommender

ITEM_COLON_RATING = re.compile(r"(?!.*::)[^,;\t]+:\s*[^:,;\s]*")  # "50:5", one pair to a line (not "::"-separated data)


@dataclass
class UserRatings:
    """A user outside the model, described by a few rated items: ``UserRatings(items, ratings)``, two lists of
    the same length (:meth:`of` takes a ``{item: rating}`` dict or ``(item, rating)`` pairs instead)."""

    items: list[str]
    ratings: list[float]
    source: str = "the ratings given"  # where they came from, for the sentences about them

    def __post_init__(self):
        if isinstance(self.items, str) or isinstance(self.ratings, str):  # "12" would be items "1" and "2"
            raise DataError(f"{self.source}: items and ratings are lists, one entry for each item (items=['50'], "
                            f"ratings=[5]), not text.")
        if len(self.items) != len(self.ratings):
            raise DataError(f"{self.source}: {len(self.items):,} items but {len(self.ratings):,} ratings; give one "
                            f"rating for each item.")
        self.items = [id_text(i) for i in self.items]
        try:
            self.ratings = [float(r) for r in self.ratings]
        except (TypeError, ValueError):
            raise DataError(f"{self.source}: a rating is not a number ({self.ratings!r:.80}).") from None
        missing = next((i for i, r in zip(self.items, self.ratings) if not math.isfinite(r)), None)
        if missing is not None:
            raise DataError(f"{self.source}: item {clip(missing)}'s rating is missing or infinite.")
        seen = set()
        for item in self.items:
            if item in seen:
                raise DataError(f"Item {clip(item)} is rated twice in {self.source}.")
            seen.add(item)

    @classmethod
    def of(cls, given) -> "UserRatings":
        """``given`` as UserRatings: already one, a ``{item: rating}`` dict or Series, ``(item, rating)`` pairs, or
        a DataFrame with item and rating columns (found by name, as in a ratings file)."""
        if isinstance(given, cls):
            return given
        if isinstance(given, dict):
            return cls(list(given), list(given.values()))
        if isinstance(given, pd.Series):  # ratings indexed by item
            return cls(list(given.index), given.tolist())
        if isinstance(given, pd.DataFrame):
            item, rating = resolve_columns(list(given.columns), ("item", "rating"), {}, "the ratings DataFrame")
            return cls(given[item].tolist(), given[rating].tolist())
        try:
            if isinstance(given, str) or any(isinstance(pair, str) for pair in given):
                raise TypeError  # ["55", "34"] would be items "5" and "3" rated 5 and 4
            items, ratings = zip(*given) if len(given) else ((), ())
        except (TypeError, ValueError):
            raise DataError(f"A new user's ratings are a {{item: rating}} dict, (item, rating) pairs, a DataFrame "
                            f"with item and rating columns or UserRatings, not {type(given).__name__}.") from None
        return cls(list(items), list(ratings))


@dataclass
class FoldedUser:
    """Solved factors and bias of a folded-in user, and which of their ratings were used."""

    factors: np.ndarray
    bias: float
    item_index: np.ndarray  # indices of the known items they rated
    ignored: list[str]  # their items the model does not know


def parse_ratings(text: str, source: str = "the ratings given") -> UserRatings:
    """``"50:5,181:4"`` (or one ``item,rating`` / ``item:rating`` / ``item<TAB>rating`` pair per line). A rating
    follows an item's last ``:``, so ids may hold ``:`` and spaces (``spotify:track:1:5``, ``item 6:5``)."""
    items, ratings = [], []
    pairs = []
    for line in re.split(r"[\n;]", text.strip()):  # "50:5,181:4 1:2" is three pairs; "50,5" one
        for piece in line.split(",") if ":" in line else [line]:
            words = piece.split()
            pairs.extend(words if sum(":" in w for w in words) > 1 else [piece])  # "item 6:5" is one pair
    pairs = [p for p in pairs if p.strip()]
    for n, pair in enumerate(pairs, 1):
        if ":" in pair:
            parts = [x.strip() for x in pair.rsplit(":", 1)]
        else:
            parts = [x.strip() for x in re.split(r"[,\t]|\s+", pair.strip(), maxsplit=1)]
        shown = clip(pair.strip())
        if len(parts) != 2 or not parts[0]:
            raise DataError(f"{source}: entry {n} ({shown!r}) is not ITEM:RATING (ITEM is an item id; `latentrec "
                            f"similar MODEL --title ...` finds one by its title; ids with commas: --ratings-file "
                            f"with a CSV).")
        if not parts[1]:
            raise DataError(f"{source}: entry {n} ({shown!r}) has no rating.")
        try:
            value = float(parts[1])
        except ValueError:
            raise DataError(f"{source}: entry {n} ({shown!r}) has a rating that is not a number.") from None
        if not math.isfinite(value):
            raise DataError(f"{source}: entry {n} ({shown!r}) has a rating that is not finite.")
        items.append(parts[0])
        ratings.append(value)
    if not items:
        raise DataError(f"{source} holds no ITEM:RATING pairs.")
    return UserRatings(items, ratings, source)


def read_user_ratings(path: str) -> UserRatings:
    """One new user's ratings from a CSV, TSV or Parquet file (``data.ratings.one_user_table``), or from a text
    file of ``item:rating`` lines, read as ``--ratings`` reads them."""
    path = Path(path)
    line = first_line(path)[0] if path.is_file() else ""
    if ITEM_COLON_RATING.fullmatch(line.strip()):
        return parse_ratings(read_text(path), str(path))
    df = one_user_table(path)
    return UserRatings(df["item"].tolist(), df["rating"].astype(float).tolist(), str(path))


def check_given(rec: Recommender, given: UserRatings) -> None:
    """A new user's ratings (each item rated once: :class:`UserRatings` checks that) must be on the model's rating
    scale."""
    lo, hi = rec.rating_range
    off = next(((i, r) for i, r in zip(given.items, given.ratings) if not lo <= r <= hi), None)
    if off:
        raise DataError(f"Item {clip(off[0])} is rated {off[1]:g} in {given.source}, outside the model's rating scale "
                        f"{lo:g} to {hi:g}.")


def can_fold_in(rec: Recommender) -> bool:
    """Whether a new user's ratings can personalize anything: a ranker, a dot-product model, or CollabNN with its
    implicit part (without it, a new user's predictions are the unknown user's)."""
    return rec.ranker is not None or getattr(rec.model, "implicit", True) is not False


def folds_in(rec: Recommender, given: UserRatings) -> bool:
    """Whether ``given`` is folded in: the model can fold a user in and knows one of the rated items."""
    return can_fold_in(rec) and bool((rec.items.encode(given.items) > 0).any())


def ignored_items(rec: Recommender, items: list[str]) -> list[str]:
    """The items the model does not know, each once (rated ones: fold-in leaves them out)."""
    return [i for i in dict.fromkeys(items) if i not in rec.items]


def known_items(rec: Recommender, given: UserRatings) -> tuple[np.ndarray, np.ndarray]:
    """The given items' indices and which of them the model knows; none known is one sentence."""
    idx = rec.items.encode(given.items).astype(np.int64)
    known = idx > 0
    if not known.any():
        raise DataError("None of the rated items is known to the model, so there is nothing to fold in.")
    return idx, known


def fold_in(rec: Recommender, given: UserRatings, reg: float | None = None, steps: int = 15) -> FoldedUser:
    """Solve a new user's factors and bias from ``given`` ratings with the item side of ``rec`` fixed."""
    model = rec.model
    if not is_dot(model):
        raise ConfigError(f"Fold-in needs a dot-product model; this model is {getattr(model, 'kind', type(model).__name__)!r}.")
    idx, known = known_items(rec, given)
    ignored = ignored_items(rec, given.items)
    idx = idx[known]
    with torch.no_grad():
        # one (n, k) item block per posterior sample for the Bayesian model, else the one factor table
        Q = (model.item_samples(torch.from_numpy(idx)) if hasattr(model, "item_samples")
             else model.item_factors[idx][None]).double().cpu()
        bi = model.item_bias[idx].double().cpu()
    r = torch.tensor(np.asarray(given.ratings, np.float64)[known])
    r = r.clamp(*rec.rating_range)
    k = Q.shape[2]
    A = torch.cat([Q, torch.ones(*Q.shape[:2], 1, dtype=torch.float64)], 2)
    wd = float(rec.config.get("wd") or 0.0)
    lam = float(reg) if reg is not None else max(wd, 0.05) * len(idx)
    D = lam * torch.eye(k + 1, dtype=torch.float64)  # training decays the bias like the factors
    y_range = model.y_range
    if hasattr(model, "item_samples"):  # Bayesian: each sample's posterior mean under the users' spread as prior
        prec, prior = model.user_prior()
        alpha = 1.0 / max(float(rec.info.get("metrics", {}).get("train_rmse") or 1.0), 1e-3) ** 2
        x = torch.linalg.solve(prec + alpha * A.mT @ A,
                               (prec @ prior[..., None])[..., 0] + alpha * (A.mT @ (r - bi)[:, None])[..., 0])
        x = x.float().numpy()
        return FoldedUser(x[:, :k].reshape(-1), float(x[:, k].mean()), idx, ignored)
    if y_range is None:  # the ridge solution
        x = torch.linalg.solve(A.mT @ A + D, A.mT @ (r - bi)[:, None])[..., 0].float().numpy()
        return FoldedUser(x[:, :k].reshape(-1), float(x[:, k].mean()), idx, ignored)
    A = A[0]
    lo, hi = y_range
    frac = ((r - lo) / (hi - lo)).clamp(1e-4, 1 - 1e-4)
    x = torch.linalg.solve(A.T @ A + D, A.T @ (torch.logit(frac) - bi))
    for _ in range(steps):
        s = torch.sigmoid(A @ x + bi)
        err = r - (lo + (hi - lo) * s)
        J = A * ((hi - lo) * s * (1 - s))[:, None]
        dx = torch.linalg.solve(J.T @ J + D, J.T @ err - D @ x)
        x = x + dx
        if float(dx.abs().max()) < 1e-7:
            break
    x = x.float().numpy()
    return FoldedUser(x[:k], float(x[k]), idx, ignored)


@torch.no_grad()
def fold_in_ranker(rec: Recommender, given: UserRatings) -> tuple[np.ndarray | None, np.ndarray]:
    """A new user's ranking scores over every item index from ``rec.ranker`` (EASE: their weighted row times
    its item x item matrix; iALS: one small ridge solve of their factors), and the indices of their known items.
    Beside a rating model, ratings too low to be picks weigh nothing (:meth:`Ranker.weights`); with no pick left,
    the scores are None."""
    idx, known = known_items(rec, given)
    ranker = rec.ranker
    w = ranker.weights(torch.tensor(np.asarray(given.ratings, np.float32)[known]), rec.model is not None)
    if not bool((w > 0).any()):
        return None, idx[known]
    scores = ranker.fold_in(torch.from_numpy(idx[known]).to(rec.device), w.to(rec.device))
    return scores.double().cpu().numpy(), idx[known]


def fold_in_predictions(rec: Recommender, given: UserRatings) -> tuple[np.ndarray, np.ndarray]:
    """A new user's predicted ratings for every item index (index 0 included) from ``rec``'s rating model, and the
    indices of their known items: a dot-product model solves their factors, CollabNN sums what they rated."""
    model = rec.model
    if is_dot(model):
        folded = fold_in(rec, given)
        return fold_in_scores(rec, folded), folded.item_index
    idx, known = known_items(rec, given)
    if not model.implicit:  # nothing in CollabNN to fold them into: the unknown user's predictions
        every = np.arange(len(rec.items), dtype=np.int32)
        return rec.predict_encoded(Encoded(np.zeros_like(every), every, np.zeros(len(every), np.float32))), idx[known]
    emb = model.new_user_embedding(torch.from_numpy(idx[known]).to(rec.device))
    return model.score_embeddings(emb[None])[0].clamp(*rec.rating_range).float().cpu().numpy(), idx[known]


@torch.no_grad()
def fold_in_scores(rec: Recommender, user: FoldedUser) -> np.ndarray:
    """Predicted ratings of a folded-in user for every item index (index 0 included)."""
    m = rec.model
    p = torch.from_numpy(user.factors).to(m.item_factors)
    z = m.item_factors[:, :len(p)] @ p + m.item_bias + user.bias  # a Bayesian model's unfilled samples are zero
    return m.squash(z).clamp(*rec.rating_range).float().cpu().numpy()
