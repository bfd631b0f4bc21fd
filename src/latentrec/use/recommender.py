"""A trained model with everything needed to use it: vocabularies, titles, what each user rated,
baselines, and the training record. Saved to and loaded from a model directory.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import warnings
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version

import numpy as np
import pandas as pd
import torch
from torch import nn

from latentrec.data.batches import Encoded, EncodedRows
from latentrec.data.csr import bincount, by_row, held_in, merge
from latentrec.data.lean import LeanRows
from latentrec.data.ratings import Ratings
from latentrec.data.vocab import Vocab, float_id_texts, id_text
from latentrec.devices import pick_device
from latentrec.errors import ConfigError, ModelCapabilityError, ModelFileError
from latentrec.models.baselines import predict_biases
from latentrec.models.popularity import Popularity
from latentrec.models.ranker import Ranker
from latentrec.models.registry import build_model, build_ranker
from latentrec.models.scoring import predicted
from latentrec.use.model_dir import read_model_dir, write_model_dir
from latentrec.use.model_meta import INFO, check_meta


def _factorized(ids) -> tuple[np.ndarray, np.ndarray]:
    """``pd.factorize`` of raw ids as the vocabularies see them, as text: mixed Python values (1, 1.0, True,
    "1") would otherwise compare equal and merge. Whole floats lose their ``.0``, as ``load_ratings`` reads them
    (a float id column is what a merge that brought in NaN leaves)."""
    ordered = (str, bytes, list, tuple, range, np.ndarray, pd.Series, pd.Index, pd.api.extensions.ExtensionArray)
    if hasattr(ids, "__iter__") and not isinstance(ids, ordered):  # a set, a dict or its keys, a generator
        raise ConfigError(f"predict takes ids as a list, array or Series (in the order of their pairs), or one id; "
                          f"not a {type(ids).__name__}.")
    typed = isinstance(ids, (np.ndarray, pd.Series))  # a list is kept as its objects: 1 and 1.0 stay apart
    ids = np.atleast_1d(np.asarray(ids) if typed else np.asarray(ids, dtype=object))
    if ids.ndim != 1:
        raise ConfigError(f"predict takes a list of ids for users and one for items, not an array of shape {ids.shape}.")
    if ids.dtype.kind in "iuU" or pd.api.types.infer_dtype(ids, skipna=False) == "string":
        return pd.factorize(ids, use_na_sentinel=False)
    if ids.dtype.kind == "f":
        ids = float_id_texts(ids.astype(np.float64))
    else:
        ids = np.array([id_text(x) if isinstance(x, (float, np.floating)) else x for x in ids], dtype=object)
    return pd.factorize(pd.Series(ids, dtype="string").astype(str).to_numpy(object), use_na_sentinel=False)


def _integers(ids) -> bool:
    """Whether raw ids were given as integers: an integer array or Series (pandas' ``Int64`` too, ``<NA>`` and
    all; or floats that are whole numbers or NaN, as a merge that brought in NaN leaves them), an int, or a list of
    ints."""
    if isinstance(ids, (np.ndarray, pd.Series, pd.api.extensions.ExtensionArray)):
        if pd.api.types.is_float_dtype(ids.dtype):
            values = np.asarray(ids, dtype=np.float64)
            return bool(np.isfinite(values).any()) and bool((np.isnan(values) | (np.mod(values, 1) == 0)).all())
        return pd.api.types.is_integer_dtype(ids.dtype)
    values = ids if isinstance(ids, (list, tuple)) else [ids]
    return len(values) > 0 and all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in values)


def check_recommender(rec, who: str) -> None:
    """One sentence for a call given something else than a Recommender, most often a model dir's path."""
    if isinstance(rec, (str, os.PathLike)):
        raise ConfigError(f"{who} takes a Recommender, not a path: load the model dir first, "
                          f"rec = Recommender.load({str(rec)!r}).")
    if not isinstance(rec, Recommender):
        raise ConfigError(f"{who} takes a Recommender (Recommender.load(path), or the first of fit's results), "
                          f"not a {type(rec).__name__}.")


def library_version() -> str:
    try:
        return version("latentrec")
    except PackageNotFoundError:
        return "0+unknown"


@dataclass
class Recommender:
    """A trained model over known users and items, with documented fallbacks for unknown ones.

    It holds a rating model (``model``: predicts ratings), a ranking model (``ranker``: orders
    top-N lists from what users chose to rate), or both; ``latentrec train``'s default pairs them:
    the ranker orders a user's list and the rating model supplies the predicted rating shown beside
    each item. Asking a model for what it lacks (ratings from a ranking-only model) raises
    :class:`~latentrec.errors.ModelCapabilityError`.

    Unknown users or items encode to index 0 (``#na#``). Their predicted ratings are the damped means of the
    training ratings (``fallback``, :func:`~latentrec.models.baselines.fit_fallback`): an unknown item gets the
    user's mean rating, an unknown user the item's, both unknown the global mean (``benchmarks/fallback.py``
    measures them against the model's own row 0). A model dir written before it kept these means predicts
    unknown ids from row 0, the average user/item. Predictions say which rows were known, and are clipped to
    the training data's rating scale.
    """

    model: nn.Module | None  # the rating model, or None for a ranking-only model
    users: Vocab
    items: Vocab
    rating_range: tuple[float, float]
    rated_indptr: np.ndarray  # CSR of the training pairs: items rated by user u are
    rated_items: np.ndarray  # rated_items[rated_indptr[u]:rated_indptr[u + 1]]
    baseline: tuple[float, np.ndarray, np.ndarray]  # global mean, user biases, item biases
    config: dict = field(default_factory=dict)
    history: list = field(default_factory=list)
    info: dict = field(default_factory=dict)  # metrics, best epoch, train seconds, data source
    titles: dict[str, str] = field(default_factory=dict)
    ranker: Ranker | None = None  # orders top-N lists when present
    rated_ratings: np.ndarray | None = None  # each rated_items entry's training rating (for a ranker that reads it)
    fallback: tuple[np.ndarray, np.ndarray] | None = None  # users' and items' damped mean ratings (rating model)

    def __repr__(self) -> str:
        parts = [f"{self.config.get('model')} rating model ({self.config.get('solver')})"] * (self.model is not None)
        parts += [f"{getattr(self.ranker, 'kind', type(self.ranker).__name__)} ranker"] * (self.ranker is not None)
        return (f"Recommender({' + '.join(parts)}; {len(self.users) - 1:,} users x {len(self.items) - 1:,} items; "
                f"{len(self.rated_items):,} rated pairs; on {self.device})")

    @property
    def device(self) -> torch.device:
        part = self.model if self.model is not None else self.ranker
        return next(part.buffers() if self.model is None else part.parameters()).device

    @property
    def ranker_option(self) -> str:
        """The ``ranker`` option that fits this recommender's ranker again: its kind, or ``"none"``."""
        return self.ranker.kind if self.ranker is not None else "none"

    @property
    def parts(self) -> list[str]:
        """What the model answers: ``"ratings"`` (predicted ratings, RMSE), ``"ranking"`` (a ranker orders lists)."""
        return (["ratings"] if self.model is not None else []) + (["ranking"] if self.ranker is not None else [])

    def require_ratings(self, what: str = "Predicted ratings") -> None:
        """Refuse, in one sentence, a question only a rating model answers."""
        if self.model is None:
            raise ModelCapabilityError(
                f"{what} need a rating model, and this model dir holds only a ranking model "
                f"({self.ranker.kind}), which orders items but predicts no ratings; train one with "
                f"`latentrec train` (model 'dot', the default, or 'nn').")

    def encode(self, users, items, ratings=None) -> Encoded:
        r = np.zeros(len(users), np.float32) if ratings is None else np.array(ratings, np.float32)
        return Encoded(self.users.encode(users), self.items.encode(items), r)

    def encode_rows(self, ratings: Ratings | LeanRows) -> EncodedRows:
        """Ratings (or a big file's rows read lean) encoded with this model's vocabularies, counting the distinct
        users it does not know."""
        if isinstance(ratings, LeanRows):
            return ratings.encode(self.users, self.items)
        df = ratings.df
        data = self.encode(df["user"], df["item"], df["rating"].to_numpy(np.float32))
        n_unknown = len(np.unique(df["user"].to_numpy()[data.users == 0]))
        return EncodedRows(data, ratings.source, n_unknown)

    def predict_encoded(self, data: Encoded) -> np.ndarray:
        self.require_ratings()
        return predicted(self.model, data, self.device, self.rating_range, self.fallback)

    def predict(self, users, items) -> pd.DataFrame:
        """Predicted ratings for raw (user, item) pairs, with ``known_user``/``known_item``/``known`` flags. One
        user (or item) goes with every item (or user) given; unknown ids get the fallback (see the README). Given
        pandas Series (a frame's columns), the result keeps their index, so it can be assigned back to the frame."""
        (u, user_ids), (i, item_ids) = map(_factorized, (users, items))
        if len(u) != len(i) and 1 in (len(u), len(i)):
            u, i = np.broadcast_arrays(u, i)
        if len(u) != len(i):
            raise ConfigError(f"predict takes as many users as items (or one of either), not {len(u):,} users and "
                              f"{len(i):,} items.")
        out = self.predict_coded(u, user_ids, i, item_ids)
        for column, ids in (("user", users), ("item", items)):
            if missing := int(pd.isna(np.atleast_1d(np.asarray(ids, dtype=object))).sum()):
                warnings.warn(f"{missing:,} of the ids given for {column}s are missing (NaN or None): their pairs get "
                              f"the fallback for an unknown {column} (known_{column} False).", stacklevel=2)
        for column, ids in (("user", users), ("item", items)):
            if _integers(ids):  # given as integers, they come back as integers (a merge on them works)
                missing = out[column] == "nan"  # pandas' <NA>, as text: it stays missing, in an Int64 column
                out[column] = out[column].mask(missing).astype("Int64" if missing.any() else np.int64)
        index = [ids.index for ids in (users, items) if isinstance(ids, pd.Series) and len(ids) == len(out)]
        if len(index) == 2 and len(out) > 1 and not index[0].equals(index[1]):
            raise ConfigError("predict's users and items are Series with different indexes; give columns of one "
                              "frame (or plain lists), so that each user is paired with the item on its row.")
        if index:
            out.index = index[0]
        return out

    def predict_coded(self, u: np.ndarray, user_ids, i: np.ndarray, item_ids) -> pd.DataFrame:
        """:meth:`predict` for pairs given as codes into their distinct raw ids (``pd.factorize``'s form, or a big
        file's rows read lean): each distinct id is encoded and titled once."""
        user_text, item_text = (pd.Series(ids, dtype="string").str.strip().astype(str).to_numpy(object)
                                for ids in (user_ids, item_ids))  # as a ratings file's ids are read
        known_user, known_item = self.users.encode(user_text)[u], self.items.encode(item_text)[i]
        data = Encoded(known_user, known_item, np.zeros(len(u), np.float32))
        titles = np.array([self.titles.get(t, "") for t in item_text], dtype=object)
        return pd.DataFrame({
            "user": user_text[u],
            "item": item_text[i],
            "title": titles[i],
            "prediction": self.predict_encoded(data),
            "known_user": data.users > 0,
            "known_item": data.items > 0,
            "known": (data.users > 0) & (data.items > 0),  # personalized: neither id fell back to #na#
        })

    def predict_baseline(self, data: Encoded) -> np.ndarray:
        mu, bu, bi = self.baseline
        return np.clip(predict_biases(mu, bu, bi, data.users, data.items), *self.rating_range)

    def with_rated(self, rows: Encoded) -> "Recommender":
        """This recommender with ``rows`` (encoded ratings it was not trained on: its validation rows) counted
        as rated as well: top-N lists skip them, a ranker reads them as the users' history (and the popularity
        ranker counts them). Rows of unknown users or items (index 0), and pairs already rated, are left out."""
        keep = (rows.users > 0) & (rows.items > 0)
        keep[keep] = ~held_in(rows.users[keep], rows.items[keep], self.rated_indptr, self.rated_items)
        items = rows.items[keep].astype(self.rated_items.dtype)
        mine = (self.rated_indptr, self.rated_items)
        values = None
        if self.rated_ratings is not None:  # kept for a ranker: merged too
            mine, values = (*mine, self.rated_ratings), rows.ratings[keep].astype(self.rated_ratings.dtype)
        indptr, rated, *ratings = merge(mine, by_row(rows.users[keep], items, len(self.users), values))
        ranker = self.ranker
        if isinstance(ranker, Popularity):  # the most-rated items: counting these rows too
            ranker = Popularity(len(self.items)).to(self.device).fit(bincount(rated, len(self.items)))
        return dataclasses.replace(self, rated_indptr=indptr, rated_items=rated, ranker=ranker,
                                   rated_ratings=ratings[0] if ratings else None)

    @functools.cached_property
    def item_counts(self) -> np.ndarray:
        """Rated pairs per item index (computed once: serving asks on every unknown user and title search)."""
        return bincount(self.rated_items, len(self.items))

    def rated_by(self, user_index: int) -> np.ndarray:
        return self.rated_items[self.rated_indptr[user_index]:self.rated_indptr[user_index + 1]]

    # ---- persistence -------------------------------------------------------------------
    def save(self, path: str | os.PathLike, write_id: str | None = None) -> None:
        """Write this recommender as a model dir (safetensors + JSON) at ``path``, replacing it atomically
        (``write_id``: see :func:`~latentrec.use.model_dir.write_model_dir`)."""
        mu, bu, bi = self.baseline
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()} if self.model is not None else {}
        if self.ranker is not None:
            tensors.update({f"ranker.{k}": v for k, v in self.ranker.state_dict().items()})
        if self.rated_ratings is not None:
            tensors["rated.ratings"] = torch.from_numpy(self.rated_ratings.astype(np.float32))
        if self.fallback is not None:
            tensors["fallback.user_mean"], tensors["fallback.item_mean"] = map(torch.from_numpy, self.fallback)
        tensors.update({
            "rated.indptr": torch.from_numpy(self.rated_indptr.astype(np.int64)),
            "rated.items": torch.from_numpy(self.rated_items.astype(np.int32)),
            "baseline.user_bias": torch.from_numpy(bu.astype(np.float32)),
            "baseline.item_bias": torch.from_numpy(bi.astype(np.float32)),
        })
        known = set(self.items.classes)
        meta = {
            "latentrec_version": library_version(),
            "parts": self.parts,
            **({"architecture": self.model.config()} if self.model is not None else {}),
            **({"ranker": self.ranker.config()} if self.ranker is not None else {}),
            "users": self.users.classes,
            "items": self.items.classes,
            "titles": {k: v for k, v in self.titles.items() if k in known},
            "rating_range": list(self.rating_range),
            "baseline_mean": mu,
            "config": self.config,
            "history": self.history,
            **self.info,
        }
        write_model_dir(path, tensors, meta, write_id)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> "Recommender":
        """The model dir at ``path`` (written by :meth:`save` or ``latentrec train``), on ``device`` (``auto``,
        ``cpu``, ``cuda``, ``cuda:N`` or ``mps``); a missing, corrupt or newer-format dir is a ModelFileError."""
        device = pick_device(str(device))
        tensors, meta = read_model_dir(path)
        check_meta(meta, f"{path}/model.json")
        users, items = Vocab(meta["users"]), Vocab(meta["items"])
        _check_weights(path, tensors, meta, len(users), len(items))
        try:
            model = ranker = None
            if "architecture" in meta:
                model = _load_part(path, lambda: build_model(meta["architecture"], f"{path}/model.json"), tensors,
                                   "model.")
            if "ranker" in meta:
                ranker = _load_part(path, lambda: build_ranker(meta["ranker"], f"{path}/model.json"), tensors,
                                    "ranker.")
                if ranker.uses_rows and "rated.ratings" not in tensors:
                    raise ModelFileError(f"{path}: its {ranker.kind} ranker reads the training ratings, and the weights "
                                         f"hold no rated.ratings; train or copy the model again.")
            return cls(
                model=model.to(device) if model is not None else None,
                ranker=ranker.to(device) if ranker is not None else None,
                rated_ratings=tensors["rated.ratings"].numpy() if "rated.ratings" in tensors else None,
                fallback=(tensors["fallback.user_mean"].numpy(), tensors["fallback.item_mean"].numpy())
                if "fallback.user_mean" in tensors else None,
                users=users,
                items=items,
                rating_range=tuple(meta["rating_range"]),
                rated_indptr=tensors["rated.indptr"].numpy(),
                rated_items=tensors["rated.items"].numpy(),
                baseline=(float(meta["baseline_mean"]), tensors["baseline.user_bias"].numpy(),
                          tensors["baseline.item_bias"].numpy()),
                config=meta.get("config", {}),
                history=meta.get("history", []),
                info={k: meta[k] for k in INFO if k in meta},
                titles=meta.get("titles", {}),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ModelFileError(f"{path}/model.json is missing or has a malformed field ({e}).") from None


def _check_weights(path, tensors: dict[str, torch.Tensor], meta: dict, n_users: int, n_items: int) -> None:
    """Refuse weights whose rows disagree with model.json's id lists (``n_users``/``n_items`` with ``#na#``),
    and index tensors that point outside them (a damaged file); each check is one vectorized pass."""
    for part in ("architecture", "ranker"):
        rows = meta.get(part, {})
        if (rows.get("n_users", n_users), rows.get("n_items", n_items)) != (n_users, n_items):
            raise ModelFileError(
                f"{path}: model.json lists {n_users} users and {n_items} items (with #na#), but its {part} has "
                f"{rows.get('n_users', n_users)} and {rows.get('n_items', n_items)}; the two do not belong together.")
    n_rated = tensors["rated.items"].numel() if "rated.items" in tensors else 0
    shapes = {"baseline.user_bias": (n_users,), "baseline.item_bias": (n_items,), "rated.indptr": (n_users + 1,),
              "rated.items": (n_rated,), **({"rated.ratings": (n_rated,)} if "rated.ratings" in tensors else {})}
    if "fallback.user_mean" in tensors or "fallback.item_mean" in tensors:  # a dir from an earlier build lacks them
        shapes.update({"fallback.user_mean": (n_users,), "fallback.item_mean": (n_items,)})
    for name, shape in shapes.items():
        got = tuple(tensors[name].shape) if name in tensors else "missing"
        if got != shape:
            raise ModelFileError(f"{path}: {name} in the weights has shape {got}, but model.json's id lists make it "
                                 f"{shape}; the two files do not belong together.")
    bounds = {"rated.items": n_items, "model.rated_users": n_users, "model.rated_items": n_items,
              "rated.indptr": n_rated + 1}
    for name, bound in bounds.items():
        if name in tensors and not _indices(tensors[name], bound):
            raise ModelFileError(f"{path}/model.safetensors is damaged: {name} holds values that are not indices "
                                 f"from 0 to {bound - 1}; train or copy the model again.")
    indptr = tensors["rated.indptr"]
    if indptr[0] != 0 or indptr[-1] != n_rated or bool((indptr[1:] < indptr[:-1]).any()):
        raise ModelFileError(f"{path}/model.safetensors is damaged: rated.indptr does not mark out rated.items "
                             f"user by user; train or copy the model again.")


def _indices(t: torch.Tensor, bound: int) -> bool:
    """Whether ``t`` holds integers from 0 to ``bound - 1`` (one pass, no copy)."""
    if t.dtype not in (torch.int32, torch.int64):
        return False
    if t.numel() == 0:
        return True
    low, high = torch.aminmax(t)
    return bool(low >= 0 and high < bound)


def _load_part(path, build, tensors: dict[str, torch.Tensor], prefix: str) -> nn.Module:
    """The module ``build()`` makes, holding ``tensors[prefix + name]`` themselves (built on the meta device: no
    memory and no random init for weights about to be replaced), refusing shapes and dtypes model.json does not
    describe."""
    with torch.device("meta"):
        module = build()
    state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    described = module.state_dict()
    for name, t in described.items():
        if name not in state or state[name].shape != t.shape or state[name].dtype != t.dtype:
            got = f"is {_shape(state[name])}" if name in state else "is missing"
            raise ModelFileError(f"{path}: {prefix}{name} in the weights {got}, but model.json describes "
                                 f"{_shape(t)}; the two files do not belong together.")
    extra = sorted(set(state) - set(described))
    if extra:  # load_state_dict would raise a RuntimeError listing them
        part = "ranker" if prefix == "ranker." else "rating model"
        raise ModelFileError(f"{path}: the weights hold {prefix}{extra[0]}, which the {module.kind} {part} model.json "
                             f"describes does not have; the two files do not belong together.")
    module.load_state_dict(state, assign=True)
    return module


def _shape(t: torch.Tensor) -> str:
    """``shape (n, k) float32``: what a tensor is, for an error sentence."""
    return f"shape {tuple(t.shape)} {str(t.dtype).removeprefix('torch.')}"
