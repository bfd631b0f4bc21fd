"""``fit``: Ratings -> Split -> Vocab (of the training rows) -> Model <- Trainer -> Recommender, in one call."""

from __future__ import annotations

import contextvars
import logging
import secrets
import threading
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from latentrec.config import RANKING_MODELS, SEED_MAX, TrainConfig, for_scale, ratings_scale
from latentrec.data import csr
from latentrec.data.batches import Encoded
from latentrec.data.lean import EncodedSplit, LeanRows
from latentrec.data.ratings import MAX_RATING, Ratings, as_ratings
from latentrec.data.split import hold_out
from latentrec.data.vocab import Vocab
from latentrec.devices import pick_device
from latentrec.errors import ConfigError, DataError, TrainingDiverged, clip
from latentrec.models.baselines import fit_biases
from latentrec.models.dot import DotProductBias, default_y_range
from latentrec.solvers import distributed
from latentrec.solvers.distributed import is_main, local_device
from latentrec.training.callback import Callback
from latentrec.training.loop import Trainer
from latentrec.training.rankers import fit_ranker, pick_ranker, popular_if_better
from latentrec.use.recommender import Recommender

_DRAWS = threading.RLock()  # one fit at a time seeds torch's global generators and draws initial weights (a
# ``build`` may call fit)
_DATA_SAID: contextvars.ContextVar[set | None] = contextvars.ContextVar("data_said", default=None)  # what
# data_warnings_once's block has warned of
_forked: list | None = None  # the caller's generator states while fits run, and how many run
Build = Callable[[TrainConfig, int, int, tuple[float, float]], torch.nn.Module]  # (cfg, users, items, y_range)


def make_model(cfg: TrainConfig, n_users: int, n_items: int, y_range: tuple[float, float]) -> torch.nn.Module:
    if cfg.model == "nn":
        from latentrec.models.nn import CollabNN

        return CollabNN(n_users, n_items, cfg.n_factors, cfg.n_factors, cfg.layers, cfg.dropout, cfg.bn, y_range,
                        cfg.implicit)
    if cfg.solver == "bayes":
        from latentrec.models.bayes import BayesianDot

        return BayesianDot(n_users, n_items, cfg.n_factors, n_samples=cfg.epochs - cfg.burn_in)
    return DotProductBias(n_users, n_items, cfg.n_factors, None if cfg.solver == "als" else y_range)


def encode(df, users: Vocab, items: Vocab) -> Encoded:
    return Encoded(users.encode(df["user"]), items.encode(df["item"]), df["rating"].to_numpy(np.float32, copy=True))


log = logging.getLogger(__name__)
OUTLIER_SAMPLE = 100_000  # ratings drawn to find the bulk's range (0.1 % to 99.9 %) and the commonest values


def check_learnable(users: Vocab, items: Vocab, ratings: np.ndarray, source: str, cfg: TrainConfig,
                    held_out: float) -> None:
    """Refuse training rows from which no collaborative model can learn anything (a ranking model learns from
    which items were rated, so one rating value, as in like-only data, is enough for it). ``held_out``: the share
    of ``source``'s ratings held out for validation."""
    held = f" (after holding out valid_pct (--valid-pct) {held_out:g} of them; 0 trains on all)" * bool(held_out)
    for role, vocab in (("user", users), ("item", items)):
        if len(vocab) < 3:  # #na# and one id
            raise DataError(f"{source}: all training ratings belong to one {role} ({clip(vocab.classes[1])!r}){held}; "
                            f"a collaborative model needs at least two {role}s.")
    if cfg.model in RANKING_MODELS:  # EASE and iALS take any weights (milliseconds played, cents spent), one value too
        return
    lo, hi = float(ratings.min()), float(ratings.max())
    if max(-lo, hi) > MAX_RATING:  # a timestamp read as the rating: the rating models' solvers met singular systems
        raise DataError(f"{source}: the training ratings run from about {lo:.4g} to {hi:.4g}, beyond what a rating model "
                        f"trains on (at most {MAX_RATING:,} in size; model 'ease' or 'ials' take weights of any "
                        f"size); is that the rating column? Name it with --rating-col (in a file without a header, by "
                        f"position: --rating-col 4 for the fourth column).")
    _warn_about_values(ratings, source)
    if lo == hi:
        raise DataError(f"{source}: every training rating is {float(ratings[0]):g}, so a rating model has nothing "
                        f"to learn (it would predict that value for every pair); model 'ease' or 'ials' (--model) "
                        f"learn which items users pick from such data.")


def _warn_about_values(ratings: np.ndarray, source: str) -> None:
    """Warn of rating values that look like a typo or a code rather than ratings (:func:`far_out`,
    :func:`piled_at_bottom`): each once within :func:`data_warnings_once`."""
    said = _DATA_SAID.get()
    said = set() if said is None else said
    scale = f"; the rating scale is taken as {float(ratings.min()):g} to {float(ratings.max()):g}. A typo, or a " \
            f"code for no rating? Fix or drop those rows"
    for find, after in ((far_out, scale), (piled_at_bottom, "")):
        if (find, source) not in said and (found := find(ratings)):  # said already: not looked for again
            log.warning("%s: %s%s.", source, found, after)
            said.add((find, source))


@contextmanager
def data_warnings_once():
    """Fits in this block warn of odd rating values in a file once (the held-out run and the refit of ``latentrec
    train``, a tuning's trials), not once per fit."""
    token = _DATA_SAID.set(set())
    try:
        yield
    finally:
        _DATA_SAID.reset(token)


def far_out(ratings: np.ndarray) -> str | None:
    """Which ratings lie far outside the bulk of ``ratings``, in words (None where none do): beyond its 0.1 % to
    99.9 % range by five times its width, at least 1 (a 1000 or a 45 among 1-5 stars, a typo that would stretch the
    model's scale, but not a rare 1 among 4s and 5s), or, of any share, past a gap four times as wide as the values
    on the other side of it span (a "not rated" code: Jester's 99 on its -10 to 10 scale)."""
    if len(ratings) < 1000:
        return None
    sample = _sample(ratings)
    lo, hi = np.quantile(sample, [0.001, 0.999])
    cut_lo, cut_hi = lo - 5 * max(hi - lo, 1.0), hi + 5 * max(hi - lo, 1.0)
    bulk = f"99.8 % of them lie between {lo:g} and {hi:g}"
    values = np.unique(sample)
    if len(values) > 2:
        k = int(np.argmax(np.diff(values)))  # the widest gap parts the values in two
        low_side = np.mean(sample <= values[k]) >= 0.5
        rest = values[:k + 1] if low_side else values[k + 1:]
        if 0 < rest[-1] - rest[0] and values[k + 1] - values[k] > 4 * (rest[-1] - rest[0]):
            middle = (values[k] + values[k + 1]) / 2
            cut_lo, cut_hi = (-np.inf, middle) if low_side else (middle, np.inf)
            bulk = f"the others lie between {rest[0]:g} and {rest[-1]:g}"
    said = []
    for side, far in (("below", ratings < cut_lo), ("above", ratings > cut_hi)):
        if (n := int(far.sum())):
            shown = np.unique(ratings[far])
            said.append(f"{n:,} rating{'s' * (n > 1)} ({', '.join(f'{v:g}' for v in shown[:3])}"
                        f"{', ...' * (len(shown) > 3)}) far {side} the others")
    return f"{' and '.join(said)} ({bulk})" if said else None


def _sample(ratings: np.ndarray) -> np.ndarray:
    """At most ``OUTLIER_SAMPLE`` of ``ratings``, drawn alike every time, as float64."""
    return (ratings if len(ratings) <= OUTLIER_SAMPLE else
            np.random.default_rng(0).choice(ratings, OUTLIER_SAMPLE, replace=False)).astype(np.float64)


def piled_at_bottom(ratings: np.ndarray) -> str | None:
    """In words, a lowest value that holds half of ``ratings`` or more, over three times as many as any other of three
    or more values: Book-Crossing's 0, which means "read, not rated", on its 1-10 scale. None where there is none."""
    sample = _sample(ratings)
    values, counts = np.unique(sample, return_counts=True)
    if len(values) < 4 or counts[0] < 0.5 * len(sample) or counts[0] <= 3 * counts[1:].max():
        return None
    return (f"{counts[0] / len(sample):.0%} of the ratings are {values[0]:g}, the lowest value, far more than any "
            f"other; if {values[0]:g} means \"not rated\" (as Book-Crossing's 0 does), drop those rows: a rating "
            f"model learns them as the lowest rating")


def encode_valid(valid: Ratings | LeanRows, users: Vocab, items: Vocab) -> Encoded | None:
    """Validation rows encoded with the training vocabularies (a big file read lean: in place); None if empty."""
    if isinstance(valid, LeanRows):
        return valid.encode(users, items).data
    return encode(valid.df, users, items) if len(valid.df) else None


def training_rows(train: Ratings | EncodedSplit, valid: Ratings | LeanRows | None,
                  cfg: TrainConfig) -> tuple[Vocab, Vocab, Encoded, Encoded | None]:
    """Vocabularies from the training rows, and the encoded training and validation rows."""
    if isinstance(train, EncodedSplit):
        if cfg.valid_by != "random" and valid is None and train.valid is not None:
            raise ConfigError(f"A big file read lean (read_split) holds its validation rows out at random, not by "
                              f"{cfg.valid_by!r}; read it with load_ratings to hold out its latest ratings.")
        users, items, tr = train.users, train.items, train.train
        held_out = cfg.valid_pct if valid is None and train.valid is not None else 0.0
        if valid is not None:
            va = encode_valid(valid, users, items)
        else:
            va = train.valid.data if train.valid is not None else None
    else:
        rows, valid = hold_out(train, valid, cfg.valid_pct, cfg.seed, cfg.valid_by)
        held_out = rows.held_out
        train_df = rows.df
        if len(train_df) < 2:
            raise DataError(f"{train.source} has {len(train_df)} training rating(s); training needs at least 2.")
        users, items = Vocab.from_ids(train_df["user"]), Vocab.from_ids(train_df["item"])
        tr = encode(train_df, users, items)
        va = encode_valid(valid, users, items) if valid is not None else None
    check_learnable(users, items, tr.ratings, train.source, cfg, held_out)
    return users, items, tr, va


def fit(train: Ratings | pd.DataFrame | str | EncodedSplit, valid: Ratings | pd.DataFrame | LeanRows | None = None,
        config: TrainConfig | dict | None = None, callbacks: list[Callback] | None = None,
        build: Build | None = None) -> tuple[Recommender, Trainer | None]:
    """Train a model on ``train`` with ``config`` (a TrainConfig, or a dict of its fields such as
    ``tune(...).best_config``); validate on ``valid`` (ratings, or a big file's rows from ``lean.read_rows``) or
    on a random ``valid_pct`` of ``train``. A DataFrame, dataset name or file is read as ``load_ratings`` reads it.

    ``train`` may be an :class:`~latentrec.data.lean.EncodedSplit` (a big file read lean; its
    training arrays are reordered in place). ``build(cfg, n_users, n_items, y_range)`` replaces
    :func:`make_model` (the ablation uses it).

    ``model="ease"`` or ``"ials"`` fits only a ranking model (the Trainer is None). A rating model is paired
    with the ranking model ``config.ranker`` names (default ``auto``: EASE up to
    ``config.EASE_AUTO_ITEMS`` items, iALS beyond up to ``config.IALS_AUTO_RATINGS`` training ratings, none
    above, then the most-popular list instead where that ranks the validation rows clearly better; ``none``: no
    ranker), which orders its top-N lists. Under torchrun only rank 0 fits the ranker (it alone saves the model).

    Validation rows held out of ``train`` here count as rated in the returned model: its lists skip every rating in
    ``train``. (Rows given as ``valid``, or a big file's ``split.valid``, do not: ``rec.with_rated(rows)`` adds them,
    after scoring them, as ``latentrec train`` does.)
    """
    train, valid = as_ratings(train), as_ratings(valid)  # checked
    if isinstance(config, dict):  # a tuning's best_config, or TrainConfig.to_dict()
        config = TrainConfig.from_dict(config)
    if isinstance(valid, TrainConfig) or (config is not None and not isinstance(config, TrainConfig)):
        raise ConfigError("fit's options are a TrainConfig (or a dict of its fields) given by name: "
                          "fit(ratings, config=TrainConfig(...)) (its second argument is the validation ratings).")
    if not isinstance(train, (Ratings, EncodedSplit)):
        raise DataError(f"fit() trains on Ratings, a DataFrame, a dataset name or a file (read as load_ratings reads "
                        f"it), or an EncodedSplit (read_split), not a {type(train).__name__}.")
    if valid is not None and not isinstance(valid, (Ratings, LeanRows)):
        raise DataError(f"fit()'s validation ratings are Ratings, a DataFrame or a file, not a {type(valid).__name__}.")
    callbacks = list(callbacks) if isinstance(callbacks, (list, tuple)) else callbacks
    if callbacks is not None and not (isinstance(callbacks, list) and all(isinstance(c, Callback) for c in callbacks)):
        raise ConfigError("fit's callbacks are a list of latentrec.Callback subclasses (override on_fit_start or "
                          "on_epoch_end).")
    with _caller_draws_kept():
        return _fit(train, valid, config, callbacks, build)


@contextmanager
def _caller_draws_kept():
    """Training seeds torch's global generators and draws the initial weights from them (under :data:`_DRAWS`, so
    that fits in several threads draw what they draw one at a time; dropout still draws from the one global
    generator). The first fit to start keeps the caller's generator states, the last to end puts them back."""
    global _forked
    with _DRAWS:
        if _forked is None:
            _forked = [torch.random.fork_rng(), 0]
            _forked[0].__enter__()
        _forked[1] += 1
    try:
        yield
    finally:
        with _DRAWS:
            _forked[1] -= 1
            if not _forked[1]:
                fork, _forked = _forked[0], None
                fork.__exit__(None, None, None)


def _fit(train: Ratings | EncodedSplit, valid: Ratings | LeanRows | None = None, config: TrainConfig | None = None,
         callbacks: list[Callback] | None = None, build: Build | None = None) -> tuple[Recommender, Trainer | None]:
    given = cfg = config or TrainConfig()
    device = local_device(pick_device(cfg.device))
    if cfg.seed is None:  # a random run, its seed drawn once and kept in the model's config: it can be repeated
        if distributed.active():
            distributed.init(device)  # rank 0's draw is every rank's
        given = cfg = replace(cfg, seed=distributed.from_rank0(secrets.randbelow(SEED_MAX + 1)))
    cfg = cfg.resolved()
    users, items, tr, va = training_rows(train, valid, cfg)
    lo, hi = float(tr.ratings.min()), float(tr.ratings.max())
    cfg = for_scale(given, cfg, ratings_scale(tr.ratings))
    y_range = tuple(cfg.y_range) if cfg.y_range is not None else default_y_range(lo, hi)
    ranker_kind = pick_ranker(cfg, len(items), len(tr))
    model = trainer = None
    info = {"metrics": {}, "best_epoch": None, "train_seconds": 0.0}
    with _DRAWS:
        torch.manual_seed(cfg.seed)
        if cfg.model not in RANKING_MODELS:
            model = (build or make_model)(cfg, len(users), len(items), y_range).to(device)
    if model is not None:
        if hasattr(model, "set_rated"):  # CollabNN's implicit embeddings sum over the training pairs
            model.set_rated(tr.users, tr.items)
        trainer = Trainer(model, tr, va, cfg, device=device, callbacks=list(callbacks or []), clip=(lo, hi))
        trainer.fit()
        trainer.runner = None  # let go of the solver's working copies before the summaries below
        last = trainer.history[-1] if trainer.history else {}
        best = next((h for h in trainer.history if h["epoch"] == trainer.best_epoch), last)
        info = {"metrics": {k: best[k] for k in ("train_rmse", "valid_rmse", "valid_mae") if k in best},
                "best_epoch": trainer.best_epoch, "train_seconds": trainer.train_seconds}
    source = Path(str(train.source))  # a file as an absolute path, so `train --config MODEL_DIR` finds it anywhere
    info.update(data=str(source.resolve()) if source.is_file() else train.source, n_train=len(tr),
                n_valid=len(va) if va is not None else 0)
    if valid is not None and va is not None:  # rows given to validate on: evaluate says so if they are scored
        info["valid_digest"] = va.digest()
    if getattr(train, "columns", None):  # the header's names: evaluate and predict look for them in other files
        info["columns"] = dict(train.columns)
    if trainer is not None and trainer.diverged:
        info["diverged"] = trainer.diverged
        untrained = "" if trainer.history else " The model keeps its untrained weights."
        warnings.warn(trainer.diverged + untrained, TrainingDiverged, stacklevel=3)  # it names the epoch kept
        if not trainer.history:  # not one good epoch: the model is untrained, and no ranker is fit beside it
            ranker_kind = None
    ranker = None
    if not is_main():  # under torchrun only rank 0 keeps a model: the other ranks would fit the ranker for nothing
        ranker_kind = None
    if ranker_kind is not None:
        ranker, seconds = fit_ranker(ranker_kind, cfg, tr, len(users), len(items), device)
        info["ranker_seconds" if model is not None else "train_seconds"] = seconds
        if cfg.ranker == "auto" and ranker.kind == "ease" and not bool(ranker.B.any()):
            # no user rated two items, so EASE learned nothing and would list items in id order
            ranker, info["ranker_check"] = fit_ranker("popular", cfg, tr, len(users), len(items), device)[0], {
                "ranker": "ease", "reason": "no user rated two training items, so EASE learned nothing"}
    checked = cfg.ranker == "auto" and is_main() and model is not None and va is not None and bool(trainer.history)
    # the rated pairs by user (with their ratings where the ranker reads them as the users' history: EASE)
    indptr, rated, *ratings = csr.by_row(tr.users, tr.items, len(users),
                                         tr.ratings if ranker is not None and ranker.uses_rows else None)
    rec = Recommender(
        model=model, users=users, items=items, rating_range=(lo, hi), rated_indptr=indptr, rated_items=rated,
        baseline=fit_biases(tr.users, tr.items, tr.ratings, len(users), len(items)), config=cfg.saved(),
        history=trainer.history if trainer is not None else [], info=info, titles=dict(getattr(train, "titles", {})),
        ranker=ranker, rated_ratings=ratings[0] if ratings else None,
        fallback=trainer.fallback if trainer is not None else None,
    )
    if checked:
        rec = popular_if_better(rec, va)
        if not (rec.ranker is not None and rec.ranker.uses_rows):
            rec.rated_ratings = None  # kept for a ranker that reads them only
    if valid is None and isinstance(train, Ratings) and va is not None:  # held out of ``train`` here: the users'
        rec = rec.with_rated(va)  # ratings as much as the training rows, so the lists skip them too
    return rec, trainer


def refit_config(given: TrainConfig, best_epoch: int | None, ranker: str) -> TrainConfig:
    """The config that trains ``given`` again on all the ratings, validation rows included, as ``latentrec train``
    does: for the held-out run's best number of epochs (a given bayes burn-in in proportion), without validation
    rows, with the ``ranker`` that run kept (``rec.ranker_option``: what ``auto`` chose)."""
    resolved = given.resolved()
    epochs = best_epoch or resolved.epochs
    changes: dict = {"valid_pct": 0.0, "epochs": epochs}
    if given.model not in RANKING_MODELS:
        changes["ranker"] = ranker
    if given.burn_in is not None:
        changes["burn_in"] = given.burn_in * epochs // resolved.epochs
    return replace(given, **changes)
