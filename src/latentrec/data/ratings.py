"""Reading and validating ratings files and frames.

``load_ratings`` takes a named dataset (``ml-100k``), a CSV/TSV/Parquet path or a pandas
DataFrame and returns :class:`Ratings`: columns ``user`` and ``item`` (raw ids as strings),
``rating`` (float32) and, when present, ``timestamp``; plus item titles when known.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from latentrec.config import DUPLICATE_POLICIES
from latentrec.data.columns import ALIASES, TIMESTAMP_NAMES, listed, normalized, resolve_columns, title_column
from latentrec.data.datasets import DATASETS, dataset_path, own_folder
from latentrec.data.row_errors import (
    RowError,
    bad_rating,
    empty_id,
    lines_named,
    not_a_number,
    rated_twice,
    rating_text,
    unusable_ratings,
)
from latentrec.data.text_files import PARQUET_SUFFIXES, TEXT_SUFFIXES, file_type, read_text_table, readable
from latentrec.data.vocab import INT64_LIMIT, NA, float_id_texts
from latentrec.errors import ConfigError, DataError, clip

MISSING_ID_WORDS = {"NA", "N/A", "#N/A"}  # missing values as exports write them; blank, null, NaN, None are refused
SCALAR_KINDS = {"string", "integer", "floating", "mixed-integer-float", "empty"}  # pandas.api.types.infer_dtype
log = logging.getLogger(__name__)
MAX_RATING = 2**24  # the largest rating a rating model takes (a bigger one is a timestamp or a count)


@dataclass
class Ratings:
    """Checked ratings (``df``: columns user, item and rating, ids as text, ratings as float32) plus item titles;
    ``source`` names where they came from. Build them with :func:`load_ratings`, which finds, checks and converts
    the columns of a file or DataFrame; built directly, only the columns and the ratings' being numbers are checked."""

    df: pd.DataFrame
    source: str
    titles: dict[str, str] = field(default_factory=dict)
    held_out: float = 0.0  # the share of ``source``'s ratings held out of these for validation
    columns: dict[str, str] = field(default_factory=dict)  # the file's column each role was read from, by its header

    def __post_init__(self) -> None:
        missing = [c for c in ("user", "item", "rating") if c not in self.df]
        ratings = self.df["rating"].to_numpy() if "rating" in self.df else np.zeros(0, np.float32)
        if missing or not (np.issubdtype(ratings.dtype, np.number) and np.isfinite(ratings).all()):
            problem = f"has no {' or '.join(missing)} column" if missing else "holds ratings that are no finite numbers"
            raise DataError(f"The DataFrame given to Ratings() {problem}; read it with load_ratings(df), which finds "
                            f"the columns and says which row is wrong.")

    def __len__(self) -> int:
        return len(self.df)

    def __repr__(self) -> str:
        return (f"Ratings({len(self.df):,} ratings of {self.df['user'].nunique():,} users x "
                f"{self.df['item'].nunique():,} items from {self.source}{', titled' * bool(self.titles)})")

    def title(self, item: str) -> str:
        return self.titles.get(str(item), "")


def load_ratings(
    source: str | os.PathLike | pd.DataFrame,
    *,
    user_col: str | int | None = None,
    item_col: str | int | None = None,
    rating_col: str | int | None = None,
    duplicates: str = "error",
    data_dir: str | os.PathLike | None = None,
) -> Ratings:
    """Load and validate ratings from a dataset name (``"ml-100k"``: downloaded once), a file (CSV, TSV, ``::``,
    gzipped, Parquet) or a DataFrame.

    The user, item and rating columns are found by their names (``userId``, ``item_id``, ``stars``, ...; a file
    without a header: the first three). ``user_col``, ``item_col``, ``rating_col`` name them, or give their
    positions counted from 1, as on the command line (``rating_col=3``: the third column). ``duplicates``: a
    (user, item) pair rated twice is an error, or takes the ``mean`` or the ``last`` of its ratings.
    ``data_dir``: where datasets are kept (default ``$LATENTREC_DATA``, else ``~/.cache/latentrec``)."""
    if duplicates not in DUPLICATE_POLICIES:
        raise DataError(f"duplicates (--duplicates) must be one of {', '.join(DUPLICATE_POLICIES)}, "
                        f"not {duplicates!r}.")
    cols = _asked(source, "load_ratings", user=user_col, item=item_col, rating=rating_col)
    if isinstance(source, pd.DataFrame):
        # its rows named by position from 0, as .iloc counts them (a 1-based count matched neither .iloc nor .loc)
        df, _ = _validate(source.copy(), "the DataFrame (rows by .iloc position)", cols, duplicates, row_offset=-1,
                          has_header=True)
        return Ratings(df, "DataFrame", _pop_titles(df))
    given = source
    if (own := own_folder(source)) is not None:  # a dataset's own folder: that dataset, read from there
        source, data_dir = own
    if str(source) in DATASETS:
        if any(cols.values()):
            raise ConfigError(f"--user-col, --item-col and --rating-col name a ratings file's columns; {source}'s are known already.")
        folder = dataset_path(str(source), data_dir)
        spec = DATASETS[str(source)]
        ratings = read_ratings_file(folder / spec.ratings, duplicates=duplicates)
        ratings.source = str(given)
        ratings.titles = read_titles(folder / spec.items)
        return ratings
    name, _, rest = str(source).partition("/")
    if name in DATASETS and rest and not Path(source).exists():
        # "ml-100k/u1.test": a file inside a named dataset's folder, with that dataset's titles
        folder = dataset_path(name, data_dir)
        ratings = read_ratings_file(folder / rest, cols=cols, duplicates=duplicates)
        ratings.titles = ratings.titles or read_titles(folder / DATASETS[name].items)
        return ratings
    return read_ratings_file(Path(source), cols=cols, duplicates=duplicates)


def _asked(source, reader: str, **cols) -> dict[str, str | None]:
    """The column named for each role, as text (a DataFrame's column ``0`` is named by 0 or "0"), once ``source``
    is known to be something ``reader`` reads."""
    if not isinstance(source, (str, os.PathLike, pd.DataFrame)):
        raise DataError(f"{reader} reads a file path, a dataset name or a DataFrame, not {type(source).__name__}.")
    return {role: None if name is None else str(name) for role, name in cols.items()}


def as_ratings(x):
    """``x`` read as :func:`load_ratings` reads it where it is a DataFrame, a dataset name or a file; else ``x``."""
    return load_ratings(x) if isinstance(x, (pd.DataFrame, str, os.PathLike)) else x


def load_pairs(source: str | os.PathLike | pd.DataFrame, *, user_col: str | int | None = None,
               item_col: str | int | None = None,
               data_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """(user, item) rows to predict: read and checked like ratings, but a rating column is optional
    (it is ignored) and repeated pairs are kept."""
    cols = _asked(source, "load_pairs", user=user_col, item=item_col, rating=None)
    if isinstance(source, pd.DataFrame):
        return _validate(source.copy(), "the DataFrame (rows by .iloc position)", cols, "error", -1, True,
                         pairs=True)[0][["user", "item"]]
    if (own := own_folder(source)) is not None:
        source, data_dir = own
    name, _, rest = str(source).partition("/")
    path = Path(source)
    if name in DATASETS and not path.exists():  # a named dataset's ratings, or a file inside its folder
        path = dataset_path(name, data_dir) / (rest or DATASETS[name].ratings)
    return _read_checked(path, cols, pairs=True)[0][["user", "item"]]


def read_ratings_file(path: Path, cols: dict | None = None, duplicates: str = "error") -> Ratings:
    """Read one ratings file (CSV/TSV/Parquet; headerless or with a header)."""
    path = Path(path)
    df, named, has_header = _read_checked(path, cols or {"user": None, "item": None, "rating": None}, duplicates)
    return Ratings(df, str(path), _pop_titles(df), columns=named if has_header else {})


def _read_checked(path: Path, cols: dict, duplicates: str = "error", pairs: bool = False
                  ) -> tuple[pd.DataFrame, dict[str, str], bool]:
    """A file's rows checked by :func:`_validate` (a bad one named by its line), the column each role was read
    from, and whether the file has a header."""
    with lines_named(path):
        raw, has_header, row_offset = _read_table(path, cols, pairs, _row_kind(pairs))
        df, named = _validate(raw, str(path), cols, duplicates, row_offset=row_offset, has_header=has_header,
                              pairs=pairs)
    return df, named, has_header


def one_user_table(path: str | os.PathLike) -> pd.DataFrame:
    """One new user's ratings (columns ``item``, ``rating``) from a CSV/TSV/Parquet file, checked like a ratings
    file: columns found by name (a user column may be there, holding one user), or headerless ``item,rating``
    (three columns or more: ``user,item,rating``, as a ratings file)."""
    path, needs = Path(path), "item, rating"
    if not path.exists():
        raise DataError(f"{path} does not exist.")
    with lines_named(path):
        return _one_user_table(path, needs)


def _one_user_table(path: Path, needs: str) -> pd.DataFrame:
    raw, has_header, row_offset = _read_table(path, {}, True, needs)
    where = str(path)
    if len(raw) == 0:
        raise DataError(f"{where} has no rows; it needs rows of {needs}.")
    if not has_header and raw.shape[1] == 2:
        raw.columns = ["item", "rating"]
    try:
        item, rating = resolve_columns(list(raw.columns), ("item", "rating"), {}, where)
    except DataError:  # recommend has no --item-col: say what the file itself should hold
        raise DataError(f"{where} needs an item and a rating column (its columns: {listed(raw.columns)});"
                        f" name them item and rating (or movieId, score, ...), or give headerless item,rating lines.") \
            from None
    df = pd.DataFrame({"item": _ids(raw[item], "item", where, row_offset),
                       "rating": _ratings(raw[rating], where, row_offset)})
    user = next((c for c in raw.columns if normalized(str(c)) in ALIASES["user"]), None)
    if user is not None and (users := _ids(raw[user], "user", where, row_offset).unique()).size > 1:
        shown = listed(users[:3]) + ", ..." * (len(users) > 3)
        raise DataError(f"{where} holds the ratings of {len(users):,} users ({shown}); give one user's {needs} rows.")
    repeat = _first_repeat(df, ["item"], row_offset)
    if repeat is not None:
        (item,), rows = repeat
        raise RowError(lambda r: f"{where} rates item {clip(item)} more than once (rows {r[0]} and {r[1]}).", rows)
    return df


def _first_repeat(df: pd.DataFrame, keys: list[str], row_offset: int) -> tuple[tuple, np.ndarray] | None:
    """The first ``keys`` values that occur twice in ``df`` and the file rows of their first two occurrences, or
    None when no values repeat."""
    twice = df.duplicated(keys, keep=False).to_numpy()
    if not twice.any():
        return None
    first = int(np.flatnonzero(twice)[0])
    values = tuple(df[k].iloc[first] for k in keys)
    same = np.logical_and.reduce([(df[k] == v).to_numpy() for k, v in zip(keys, values)])
    return values, np.flatnonzero(twice & same)[:2] + 1 + row_offset


def _read_table(path: Path, cols: dict, pairs: bool, needs: str) -> tuple[pd.DataFrame, bool, int]:
    """A CSV/TSV/Parquet file's cells (text files: as text), whether it has a header, and the lines above its first
    row; ``needs``: the rows it should hold, for the sentences about an empty file."""
    if not path.exists():
        names = ", ".join(DATASETS)
        raise DataError(f"{path} does not exist (give a ratings file or one of the datasets {names}).")
    if path.is_dir():
        raise DataError(f"{path} is a directory; give a ratings file (CSV, TSV or Parquet).")
    suffix = file_type(path)
    if suffix == ".zip":
        raise DataError(f"{path} is a zip archive; unzip it and read the ratings file inside.")
    if suffix not in TEXT_SUFFIXES | PARQUET_SUFFIXES:
        known = ", ".join(sorted(TEXT_SUFFIXES | PARQUET_SUFFIXES))
        raise DataError(f"{path}: unknown file type {suffix or '(no extension)'!r}; use one of {known} (text files "
                        f"may be gzipped: .csv.gz).")
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty; it needs rows of {needs}.")
    if suffix not in PARQUET_SUFFIXES:
        with readable(path):
            raw, has_header = read_text_table(path, cols, pairs, needs)
        return raw, has_header, int(has_header)
    try:
        df = pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several types for a damaged file
        raise DataError(f"{path} could not be read as Parquet ({type(e).__name__}: {e}).") from None
    if any(name is not None for name in df.index.names):  # pandas' index saved with the frame (a user after a
        df = df.reset_index()  # groupby, say) comes back as the index: a column here, as it is in the file
    return df, True, 0


def _row_kind(pairs: bool) -> str:
    return "user, item (a rating column is optional)" if pairs else "user, item, rating"


def _refuse_nested(col: pd.Series, role: str, where: str, row_offset: int) -> None:
    """Ids must be text or numbers, not structs or lists (a Parquet struct or list column, dicts in a DataFrame)."""
    if col.dtype != object or pd.api.types.infer_dtype(col, skipna=True) in SCALAR_KINDS:
        return
    nested = ~col.map(pd.api.types.is_scalar).to_numpy(bool)
    if nested.any():
        bad = int(np.flatnonzero(nested)[0])
        value = col.iloc[bad]
        if isinstance(value, np.ndarray):  # a Parquet list
            value = value.tolist()
        kind = "struct" if isinstance(value, dict) else "list" if isinstance(value, (list, tuple)) else \
            type(value).__name__
        raise DataError(f"{where}, row {bad + 1 + row_offset}, column {col.name!r}: the {role} id is a {kind} "
                        f"({clip(repr(value))}), not text or a number.")


def _ids(col: pd.Series, role: str, where: str, row_offset: int) -> pd.Series:
    """Raw ids as strings (whole floats without their '.0': :func:`~latentrec.data.vocab.id_text`); blanks, nulls,
    structs and lists are errors."""
    _refuse_nested(col, role, where, row_offset)
    if pd.api.types.is_float_dtype(col):
        if col.isna().any():
            bad = int(np.flatnonzero(col.isna().to_numpy())[0])
            raise empty_id(where, bad + 1 + row_offset, col.name, role)
        values = col.to_numpy(np.float64)
        if ((values == np.round(values)) & (np.abs(values) < INT64_LIMIT)).all():  # the usual case, the fast way
            col = col.astype(np.int64)
        else:
            col = pd.Series(float_id_texts(values), index=col.index, name=col.name)
    out = col.astype("string").str.strip()
    empty = out.isna() | (out == "") | out.str.lower().isin({"nan", "null", "none"})
    if empty.any():
        bad = int(np.flatnonzero(empty.to_numpy())[0])
        raise empty_id(where, bad + 1 + row_offset, col.name, role)
    return out.astype(object)


def _warn_of_missing_words(ids: pd.Series, role: str, where: str) -> None:
    """Ids that an export writes for a missing value (R's ``NA``, Excel's ``#N/A``): kept as ids, every such row
    is one made-up user or item."""
    missing = ids[ids.str.upper().isin(MISSING_ID_WORDS).to_numpy(bool)]
    if len(missing):
        rows = f"{len(missing):,} rows have" if len(missing) > 1 else "1 row has"
        log.warning("%s: %s the %s id %r, read as one %s; if it marks a missing id (as R and Excel write one), drop "
                    "those rows.", where, rows, role, missing.iloc[0], role)


def _warn_of_float_texts(ids: pd.Series, role: str, where: str) -> None:
    """Ids kept as text that a float column wrote (``1.0``): a user asks for ``1`` and is not known; beside ``1``,
    the one user becomes two."""
    floaty = ids.str.fullmatch(r"-?\d+\.0+").to_numpy(bool)
    if not floaty.any():
        return
    first = ids[floaty].iloc[0]
    bare = ids[floaty].str.replace(r"\.0+$", "", regex=True)
    if floaty.all():
        log.warning("%s: every %s id is a whole number written with '.0' (%s, ...), as a column of floats is saved; "
                    "ids are kept as text, so ask for %r, not %r (or save the ids as whole numbers).", where, role,
                    first, first, bare.iloc[0])
    elif (both := bare.isin(set(ids[~floaty])).to_numpy()).any():
        log.warning("%s: %s ids %r and %r are both there, read as two %ss; if they are one, save the ids as whole "
                    "numbers.", where, role, bare[both].iloc[0], ids[floaty][both].iloc[0], role)


def _refuse_reserved(ids: pd.Series, role: str, where: str, column: str, row_offset: int) -> None:
    """Training ids may not be ``#na#``: a model's id lists hold it once, for every id it does not know (a model
    trained on one could not be loaded). Ids to predict may: it is an id the model does not know."""
    reserved = (ids == NA).to_numpy(bool)
    if reserved.any():
        raise RowError(lambda r: f"{where}, row {r[0]}, column {column!r}: the {role} id {NA!r} is the name latentrec "
                                 f"keeps for ids a model does not know; rename it.",
                       (int(np.flatnonzero(reserved)[0]) + 1 + row_offset,))


def _refuse_nul(ids: pd.Series, distinct: pd.Series, role: str, where: str, column: str, row_offset: int) -> None:
    """An id with a NUL byte: no text holds one (a damaged file, or UTF-16 without its byte order mark), and it
    would be a part of the id that no one sees or types."""
    nul = distinct[distinct.str.contains("\x00", regex=False).to_numpy(bool)]
    if len(nul):
        raise RowError(lambda r: f"{where}, row {r[0]}, column {column!r}: the {role} id holds a NUL byte (0x00), "
                                 f"which no text holds: is the file damaged, or UTF-16 text without its byte order "
                                 f"mark (save it as UTF-8)?", (int(np.flatnonzero((ids == nul.iloc[0]).to_numpy())[0])
                                                              + 1 + row_offset,))


def _ratings(col: pd.Series, where: str, row_offset: int) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        values = col.to_numpy(dtype=np.float64, na_value=np.nan)
        text = None
    else:
        text = col.astype("string").str.strip()
        values, unparsed = rating_text(text)
        if unparsed.any():
            bad = int(np.flatnonzero(unparsed)[0])
            raise not_a_number(where, bad + 1 + row_offset, col.name, text.iloc[bad])
    bad_mask = unusable_ratings(values)
    if bad_mask.any():
        bad = int(np.flatnonzero(bad_mask)[0])
        raise bad_rating(where, bad + 1 + row_offset, col.name, values[bad])
    return values.astype(np.float32)


def _validate(raw: pd.DataFrame, where: str, cols: dict, duplicates: str, row_offset: int,
              has_header: bool, pairs: bool = False) -> tuple[pd.DataFrame, dict[str, str]]:
    """The checked user, item and rating columns (and title, timestamp) of ``raw``, and the column each role was
    read from."""
    if len(raw) == 0:
        raise DataError(f"{where} has no rating rows.")
    roles = ("user", "item") if pairs else ("user", "item", "rating")
    raw.columns = [str(c) for c in raw.columns]  # a frame's integer labels (read_csv(header=None)) named as text
    names = dict(zip(roles, resolve_columns(list(raw.columns), roles, cols if has_header else {}, where)))
    df = pd.DataFrame({
        "user": _ids(raw[names["user"]], "user", where, row_offset),
        "item": _ids(raw[names["item"]], "item", where, row_offset),
    })
    if pairs:
        return df, names
    for role in ("user", "item"):
        _refuse_reserved(df[role], role, where, names[role], row_offset)
        if not pd.api.types.is_numeric_dtype(raw[names[role]]):  # text: a float column's "1.0" is kept as it is
            distinct = pd.Series(df[role].unique(), dtype=object)
            _refuse_nul(df[role], distinct, role, where, names[role], row_offset)
            _warn_of_float_texts(distinct, role, where)
            _warn_of_missing_words(df[role], role, where)
    df["rating"] = _ratings(raw[names["rating"]], where, row_offset)
    if title := title_column(list(raw.columns)):  # travels with its row through deduplication
        df["title"] = raw[title].astype(str).to_numpy()
    ts = _timestamps(raw, where, has_header)
    if ts is not None:
        df["timestamp"] = ts
    return _deduplicate(df.reset_index(drop=True), where, duplicates, row_offset), names


def _timestamps(raw: pd.DataFrame, where: str, has_header: bool) -> np.ndarray | None:
    """The ratings' times in whole seconds (Unix seconds for dates), from the first column named like a timestamp
    (timestamp, unixReviewTime, time, date, ...: in that order; a headerless file's fourth) whose every cell is a
    time; None where there is none (a column a header names so that is not one is warned of)."""
    named = {normalized(str(c)): c for c in reversed(raw.columns)}  # the first column of a name
    rejected = None
    for name in TIMESTAMP_NAMES:
        if name in named:
            if (seconds := _seconds(raw[named[name]])) is not None:
                return seconds
            rejected = rejected if rejected is not None else named[name]
    if rejected is not None and has_header:
        cells = raw[rejected]
        odd = pd.to_numeric(cells, errors="coerce").isna() & pd.to_datetime(
            cells.astype(str), errors="coerce", utc=True, format="ISO8601").isna()
        first = cells[odd.to_numpy()].iloc[0] if odd.any() else cells.iloc[0]
        log.warning("%s: column %r is not read as the ratings' times (--valid-by time and user order by them): a "
                    "cell such as %r is neither a number nor an ISO 8601 date.", where, str(rejected), first)
    return None


def _seconds(cells: pd.Series) -> np.ndarray | None:
    """Whole seconds of a column of times: numbers as they are, dates (ISO 8601, or Parquet's timestamps) since
    1970; None unless every cell is one."""
    if pd.api.types.is_datetime64_any_dtype(cells):
        return cells.to_numpy("datetime64[s]").astype(np.int64) if cells.notna().all() else None
    numbers = pd.to_numeric(cells, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    if np.isfinite(numbers).all() and (np.abs(numbers) < 2.0**62).all():
        return numbers.astype(np.int64)
    if pd.api.types.is_numeric_dtype(cells):
        return None
    dates = pd.to_datetime(cells, errors="coerce", utc=True, format="ISO8601")  # "2015-08-31", "2015-08-31T10:00"
    return dates.to_numpy("datetime64[s]").astype(np.int64) if dates.notna().all() else None


def _deduplicate(df: pd.DataFrame, where: str, policy: str, row_offset: int) -> pd.DataFrame:
    if policy == "error":
        repeat = _first_repeat(df, ["user", "item"], row_offset)
        if repeat is not None:
            (u, i), rows = repeat
            raise rated_twice(where, u, i, rows)
        return df
    if not df.duplicated(["user", "item"]).any():
        return df
    if policy == "last":
        return df.drop_duplicates(["user", "item"], keep="last").reset_index(drop=True)
    agg = {"rating": "mean", **{c: how for c, how in (("timestamp", "max"), ("title", "last")) if c in df}}
    out = df.groupby(["user", "item"], sort=False, as_index=False).agg(agg)
    out["rating"] = out["rating"].astype(np.float32)
    return out


def _pop_titles(df: pd.DataFrame) -> dict[str, str]:
    """Item id -> title from a ``title`` column of the ratings (removed from ``df``); {} without one."""
    if "title" not in df.columns:
        return {}
    return dict(zip(df["item"], df.pop("title").to_numpy()))


def read_titles(path: Path) -> dict[str, str]:
    """Item id -> title from ``u.item``, ``movies.dat`` or ``movies.csv``; {} when absent."""
    if not path.is_file():
        return {}
    if path.name == "movies.csv":
        t = pd.read_csv(path, dtype=str, encoding="utf-8")
        return dict(zip(t["movieId"], t["title"]))
    sep = "|" if path.name == "u.item" else "::"
    ids, titles = [], []
    with open(path, encoding="latin-1") as f:
        for line in f:
            parts = line.rstrip("\r\n").split(sep)
            if len(parts) >= 2:
                ids.append(parts[0])
                titles.append(parts[1])
    return dict(zip(ids, titles))
