"""Train/validation/test splits: the parts share no row and lose none."""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import pandas as pd

from latentrec.config import ML100K_SPLITS, check_valid_pct, option
from latentrec.data.ratings import Ratings
from latentrec.errors import ConfigError


def held_rows(n: int, valid_pct: float, seed: int | None = 42) -> tuple[np.ndarray, np.ndarray]:
    """A seeded permutation of ``range(n)`` cut in two: the rows held out for validation (a random ``valid_pct``,
    the seed's random splitter), then the training rows. The one carve for both readers (``lean`` too)."""
    check_valid_pct(valid_pct)
    perm = np.random.default_rng(seed).permutation(n)
    n_valid = int(round(n * valid_pct))
    return perm[:n_valid], perm[n_valid:]


def random_indices(n: int, valid_pct: float, seed: int | None = 42) -> tuple[np.ndarray, np.ndarray]:
    """Sorted row numbers of the training rows and of the rows :func:`held_rows` holds out."""
    held, kept = held_rows(n, valid_pct, seed)
    return np.sort(kept), np.sort(held)


def random_split(df: pd.DataFrame, valid_pct: float, seed: int | None = 42) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out a random ``valid_pct`` of the rows."""
    train, valid = random_indices(len(df), valid_pct, seed)
    return df.iloc[train].reset_index(drop=True), df.iloc[valid].reset_index(drop=True)


def latest_split(df: pd.DataFrame, valid_pct: float, per_user: bool, source: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out the latest ``valid_pct`` of the rows by timestamp (``per_user``: of each user's rows, rounded per
    user, so at 0.2 a user with one or two ratings keeps them); of equal timestamps, the later row in the file is
    the later rating."""
    check_valid_pct(valid_pct)
    if "timestamp" not in df:
        raise ConfigError(f"{source} has no timestamp column, which {option('valid_by')} "
                          f"{'user' if per_user else 'time'} orders the ratings by; name one timestamp (whole numbers "
                          f"such as Unix seconds, or ISO 8601 dates), or hold out random rows.")
    if per_user:
        codes = pd.factorize(df["user"])[0]  # sorting the ids as text took 6x as long
        order = np.lexsort((np.arange(len(df)), df["timestamp"].to_numpy(), codes))
        users = codes[order]
        first = np.r_[True, users[1:] != users[:-1]]
        start = np.maximum.accumulate(np.where(first, np.arange(len(df)), 0))  # each row's user's first position
        count = np.diff(np.r_[np.flatnonzero(first), len(df)])[np.cumsum(first) - 1]
        late = np.arange(len(df)) - start >= count - np.round(count * valid_pct)
    else:
        order = np.lexsort((np.arange(len(df)), df["timestamp"].to_numpy()))
        late = np.arange(len(df)) >= len(df) - int(round(len(df) * valid_pct))
    held = np.zeros(len(df), bool)
    held[order[late]] = True
    return df[~held].reset_index(drop=True), df[held].reset_index(drop=True)


def hold_out(train: Ratings, valid: Ratings | None, valid_pct: float, seed: int | None = 42,
             by: str = "random") -> tuple[Ratings, Ratings | None]:
    """The training and validation ratings: ``valid`` if given, else ``valid_pct`` of ``train`` (``None`` when that
    share of so few ratings rounds to no row): random rows, or the latest by timestamp (``by="time"``; ``"user"``:
    each user's latest)."""
    if valid is not None or valid_pct == 0:
        return train, valid
    if by == "random":
        rows, held = random_split(train.df, valid_pct, seed)
    else:
        rows, held = latest_split(train.df, valid_pct, by == "user", train.source)
    if not len(held):
        return train, None
    return replace(train, df=rows, held_out=valid_pct), replace(train, df=held, source="the validation rows")


def kfold_indices(n: int, k: int, seed: int | None = 42) -> list[np.ndarray]:
    """``k`` disjoint index arrays that together cover ``range(n)``."""
    if not 2 <= k <= n:
        raise ConfigError(f"The number of folds (--folds) must be between 2 and the number of ratings ({n}), not {k}.")
    perm = np.random.default_rng(seed).permutation(n)
    return [np.sort(f) for f in np.array_split(perm, k)]


def ml100k_split_files(name: str, data_dir: str | os.PathLike | None = None, data: str | None = None) -> tuple[str, str]:
    """Paths of ML-100K's own ``<name>.base`` and ``<name>.test`` (``data``: the ``--data`` given beside ``--split``)."""
    from latentrec.data.datasets import dataset_path, own_folder

    if (own := own_folder(data)) is not None and own[0] == "ml-100k":  # its own folder: the folds beside u.data
        data, data_dir = own
    if data not in (None, "ml-100k"):
        raise ConfigError(f"{option('split')} names ML-100K's own folds; leave out --data or give --data ml-100k.")
    if name not in ML100K_SPLITS:
        raise ConfigError(f"{option('split')} must be one of {', '.join(ML100K_SPLITS)}, not {name!r}.")
    folder = dataset_path("ml-100k", data_dir)
    return str(folder / f"{name}.base"), str(folder / f"{name}.test")
