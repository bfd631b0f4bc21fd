"""Reading and validating ratings files and frames, and the sentences for their bad rows (``lean`` words a big
file's with them).

``load_ratings`` takes a named dataset (``ml-100k``), a CSV/TSV/Parquet path or a pandas
DataFrame and returns :class:`Ratings`: columns ``user`` and ``item`` (raw ids as strings),
``rating`` (float32) and, when present, ``timestamp``; plus item titles when known.
"""

from __future__ import annotations

import codecs
import csv
import functools
import gzip
import itertools
import logging
import os
import re
import warnings
import zlib
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from latentrec.config import DUPLICATE_POLICIES
from latentrec.data.datasets import DATASETS, dataset_path, own_folder
from latentrec.data.vocab import INT64_LIMIT, NA, float_id_texts
from latentrec.errors import ColumnNotFound, ConfigError, DataError, clip

TEXT_SUFFIXES = {".csv", ".tsv", ".txt", ".data", ".dat", ".base", ".test"}
PARQUET_SUFFIXES = {".parquet", ".pq"}
ALIASES = {
    "user": {"user", "userid", "uid", "customer", "customerid", "custid", "reviewer", "reviewerid", "client",
             "clientid", "member", "memberid", "account", "accountid", "buyer", "buyerid", "player", "playerid"},
    "item": {"item", "itemid", "iid", "movie", "movieid", "product", "productid", "asin", "sku", "isbn", "book",
             "bookid", "track", "trackid", "song", "songid", "article", "articleid", "business", "businessid",
             "joke", "jokeid", "recipe", "recipeid", "game", "gameid", "anime", "animeid", "app", "appid", "artist",
             "artistid", "parentasin"},
    "rating": {"rating", "ratings", "score", "stars", "value", "overall"},
}
KNOWN_NAMES = set().union(*ALIASES.values())  # every alias: a first line holding one is a header
TITLE_NAMES = {"title", "booktitle", "movietitle", "itemtitle", "producttitle"}  # a column of item titles
TIMESTAMP_NAMES = ("timestamp", "unixreviewtime", "unixtime", "time", "ts", "datetime", "date", "ratedat", "createdat")
ROLES = ("user", "item", "rating")
EXCEL_SEP = re.compile(r"sep=.{1,2}")  # the line Excel writes above a CSV to name its separator
MISSING_ID_WORDS = {"NA", "N/A", "#N/A"}  # missing values as exports write them; blank, null, NaN, None are refused
NAN_WORDS = {"nan", "na", "n/a", "null", "none", ""}
SCALAR_KINDS = {"string", "integer", "floating", "mixed-integer-float", "empty"}  # pandas.api.types.infer_dtype
FLOAT32_MAX = float(np.finfo(np.float32).max)  # ratings are stored as float32
DECIMAL_COMMA = re.compile(r"\s*-?\d+,\d{1,2}\s*")  # "3,5" from a spreadsheet set to a decimal comma (not "1,000")
BAD_BYTE = re.compile("[\udc80-\udcff]")  # a byte that is not UTF-8, decoded with errors="surrogateescape"
UTF8_BEYOND_ASCII = re.compile("[^\x00-\x7f\udc80-\udcff]")
log = logging.getLogger(__name__)
# a text file that is not UTF-8: Windows' (Excel's) text, whose 0x80-0x9f are ’ “ ” – € and the like, else latin-1,
# which reads any byte
LEGACY_ENCODINGS = ("cp1252", "latin-1")
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
    """Load and validate ratings from a dataset name, a file or a DataFrame."""
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
        raise DataError(f"{where} needs an item and a rating column (its columns: {_listed(raw.columns)});"
                        f" name them item and rating (or movieId, score, ...), or give headerless item,rating lines.") \
            from None
    df = pd.DataFrame({"item": _ids(raw[item], "item", where, row_offset),
                       "rating": _ratings(raw[rating], where, row_offset)})
    user = next((c for c in raw.columns if _normalized(str(c)) in ALIASES["user"]), None)
    if user is not None and (users := _ids(raw[user], "user", where, row_offset).unique()).size > 1:
        shown = _listed(users[:3]) + ", ..." * (len(users) > 3)
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
    suffix = _suffix(path)
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
            raw, has_header = _read_text(path, cols, pairs, needs)
        return raw, has_header, int(has_header)
    try:
        df = pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several types for a damaged file
        raise DataError(f"{path} could not be read as Parquet ({type(e).__name__}: {e}).") from None
    if any(name is not None for name in df.index.names):  # pandas' index saved with the frame (a user after a
        df = df.reset_index()  # groupby, say) comes back as the index: a column here, as it is in the file
    return df, True, 0


def _suffix(path: Path) -> str:
    """The file type: ``.csv`` for ``ratings.csv`` and for ``ratings.csv.gz`` alike."""
    return (Path(path.stem) if path.suffix.lower() == ".gz" else path).suffix.lower()


def _open(path: Path, mode: str = "r", **kwargs):
    """``open``, or ``gzip.open`` for a ``.gz`` file (pandas reads those by their name too)."""
    return (gzip.open if path.suffix.lower() == ".gz" else open)(path, mode if "b" in mode else mode + "t", **kwargs)


@contextmanager
def readable(path: Path):
    """Reading ``path``: a file that cannot be read (a damaged gzip file: ``BadGzipFile``, ``zlib.error``; a
    truncated one: ``EOFError``, wherever in the file the damage is) raises one DataError naming it."""
    try:
        yield
    except (OSError, EOFError, zlib.error) as e:
        damaged = "; the gzip file is damaged or cut short" * (path.suffix.lower() == ".gz")
        raise DataError(f"{path} could not be read ({e}){damaged}.") from None


def _refuse_other_formats(path: Path) -> None:
    """Refuse, by its first bytes, a file that is no text for these readers: UTF-16, or gzip or zip under a text
    file's name."""
    with _open(path, "rb") as f:
        head = f.read(4)
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise DataError(f"{path} is UTF-16 text; save it as UTF-8 (or latin-1) and read it again.")
    if head[:2] == b"\x1f\x8b":
        raise DataError(f"{path} is gzip-compressed; name it {path.name}.gz and read it again.")
    if head in (b"PK\x03\x04", b"PK\x05\x06"):
        raise DataError(f"{path} is a zip archive; unzip it and read it again.")


def first_line(path: Path) -> tuple[str, str]:
    """A text file's first non-blank line and the encoding that reads it (UTF-8, with or without BOM, else
    Windows-1252, else latin-1); a file of another format (:func:`_refuse_other_formats`) is refused in one
    sentence."""
    with readable(path):
        _refuse_other_formats(path)
        for encoding in ("utf-8-sig", *LEGACY_ENCODINGS):
            try:
                with _open(path, encoding=encoding) as f:
                    for line in f:
                        line = line.rstrip("\r\n")
                        if EXCEL_SEP.fullmatch(line):  # sep=\t too
                            raise DataError(f"{path} starts with Excel's {line!r} line; delete that line and read "
                                            f"it again.")
                        if line.strip():
                            return line, encoding
                    return "", encoding
            except UnicodeDecodeError:  # a legacy encoding, unless it is UTF-8 with a bad byte
                _refuse_damaged_utf8(path)
    return "", "latin-1"


def read_text(path: Path) -> str:
    """A whole text file, gzipped or not, as UTF-8 (a BOM dropped, undecodable bytes replaced)."""
    with readable(path), _open(path, encoding="utf-8-sig", errors="replace") as f:
        return f.read()


def _sniff_sep(line: str, following: Sequence[str] = ()) -> str:
    """The separator that splits ``line`` into 3 fields or more and fits it best: a number (or a decimal-comma one)
    as the third field, then found as often on each of the ``following`` lines, then the most fields, then the
    first of ``::``, tab, ``,``, ``|``, ``;`` (``Müller, Jo, Jr.|10|4`` above ``Anna|10|3`` is split at '|',
    ``1;21;4,0;2,64`` at ';'); with none, the first there, else whitespace. Quoted text is not counted."""
    line, following = _unquoted(line), [_unquoted(f) for f in following]
    present = [sep for sep in ("::", "\t", ",", "|", ";") if sep in line]
    splitting = [sep for sep in present if line.count(sep) >= 2]
    if not splitting:
        return present[0] if present else r"\s+"

    def fit(sep: str) -> tuple[bool, bool, int]:
        third = line.split(sep)[2]
        return (_is_number(third) or bool(DECIMAL_COMMA.fullmatch(third)),
                all(f.count(sep) == line.count(sep) for f in following), line.count(sep))

    return max(splitting, key=fit)  # the first of those that fit best


def _unquoted(line: str) -> str:
    return re.sub(r'"[^"]*"', "", line)


def _read_text(path: Path, cols: dict, pairs: bool, needs: str) -> tuple[pd.DataFrame, bool]:
    line, encoding = first_line(path)
    if not line:
        raise DataError(f"{path} has no rows; it needs rows of {needs}.")
    following = following_lines(path, encoding)
    sep, fields, has_header = sniff_header(line, cols, pairs, following)
    if pairs and not has_header and not any(_is_number(f) for f in fields[:2]):
        # "a,b" above numeric ids is a header, whatever its names
        has_header = bool(following) and all(_is_number(f) for f in _split_line(following[0], sep)[:2])

    def read(enc: str) -> pd.DataFrame:
        with warnings.catch_warnings():  # a first row longer than the header would become an index, shifting columns
            warnings.simplefilter("error", pd.errors.ParserWarning)
            return pd.read_csv(path, sep=sep, header=0 if has_header else None, dtype=str, keep_default_na=False,
                               encoding=enc, engine="python" if len(sep) > 1 else "c", skipinitialspace=True,
                               index_col=False)

    try:
        try:
            raw = read(encoding)
        except UnicodeDecodeError:  # not UTF-8 after the first line: a legacy encoding, unless UTF-8 with a bad byte
            _refuse_damaged_utf8(path)
            try:
                raw = read(LEGACY_ENCODINGS[0])
            except UnicodeDecodeError:  # a byte Windows-1252 leaves undefined
                raw = read("latin-1")
    except (pd.errors.ParserError, ValueError) as e:
        longer = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(e))
        if longer:  # in the words the lean reader uses too
            raise too_many_fields(str(path), sep, *map(int, longer.groups())) from None
        raise DataError(f"{path} could not be parsed as a {_sep_name(sep)}-separated table ({str(e).strip()}).") from None
    except pd.errors.ParserWarning:
        raise _longer_row(path, sep, len(fields), encoding) from None
    raw = raw.iloc[: len(raw) - _trailing_empty(raw)]  # a spreadsheet's ",,," rows below the data
    if len(raw) == 0:
        raise DataError(f"{path} has a header but no rows; it needs rows of {needs}.")
    if not has_header:
        raw.columns = headerless_columns(raw.shape[1], cols, str(path))
    return raw, has_header


def _refuse_damaged_utf8(path: Path) -> None:
    """Refuse a UTF-8 file with a byte that is not UTF-8: read as latin-1, its every accented id would change
    (``José`` to ``JosÃ©``). A file with no UTF-8 beyond ASCII is latin-1 (MovieLens' own files are). The whole
    file is read once for this, however often its first line is asked for (the big-file reader asks, then this one)."""
    stat = path.stat()
    _scan_for_damaged_utf8(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _scan_for_damaged_utf8(where: str, mtime_ns: int, size: int) -> None:
    """:func:`_refuse_damaged_utf8` for the file at ``where`` as it is now (its time and size key the cache)."""
    path = Path(where)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="surrogateescape")  # a bad byte: a lone surrogate
    line, bad, utf8 = 1, None, False
    with _open(path, "rb") as f:
        while (block := f.read(1 << 24)) or bad is None:
            text = decoder.decode(block, final=not block)
            if bad is None and (found := BAD_BYTE.search(text)):
                bad = (line + text.count("\n", 0, found.start()), ord(found.group()) - 0xDC00)
            utf8 = utf8 or bool(UTF8_BEYOND_ASCII.search(text))
            if utf8 and bad is not None:
                raise DataError(f"{path}, line {bad[0]}: byte 0x{bad[1]:02x} is not UTF-8, though the rest of the "
                                f"file is; fix that line (or save the file as UTF-8 again) and read it again.")
            if not block:
                return
            line += text.count("\n")


def _trailing_empty(raw: pd.DataFrame) -> int:
    """How many of the last rows have only empty cells (a last block, doubled until it holds a filled row)."""
    k = 16
    while True:
        filled = raw.iloc[-k:].apply(lambda column: column.str.strip().ne("")).any(axis=1).to_numpy()
        if filled.any():
            return len(filled) - 1 - int(np.flatnonzero(filled)[-1])
        if k >= len(raw):
            return len(raw)
        k *= 2


def _longer_row(path: Path, sep: str, n_fields: int, encoding: str) -> DataError:
    """The first row with more fields than the header, in pandas' words."""
    with _open(path, encoding=encoding, errors="replace") as f:
        for number, line in enumerate(f, 1):
            seen = len(_split_line(line.rstrip("\r\n"), sep))
            if seen > n_fields:
                return too_many_fields(str(path), sep, n_fields, number, seen)
    return DataError(f"{path} could not be parsed as a {_sep_name(sep)}-separated table "
                     "(a row has more fields than the header).")


def too_many_fields(where: str, sep: str, n_fields: int, line: int, seen: int) -> DataError:
    return DataError(f"{where} could not be parsed as a {_sep_name(sep)}-separated table (Expected {n_fields} fields "
                     f"in line {line}, saw {seen}; quote fields that contain {sep!r}, and end no line with one).")


def following_lines(path: Path, encoding: str, n: int = 10) -> list[str]:
    """The ``n`` non-blank lines of a text file after its first (fewer where it ends)."""
    with _open(path, encoding=encoding, errors="replace") as f:
        lines = (line.rstrip("\r\n") for line in f if line.strip())
        next(lines, None)
        return list(itertools.islice(lines, n))


def _row_kind(pairs: bool) -> str:
    return "user, item (a rating column is optional)" if pairs else "user, item, rating"


def sniff_header(line: str, cols: dict, pairs: bool = False, following: Sequence[str] = ()
                 ) -> tuple[str, list[str], bool]:
    """(separator, fields, whether it is a header) of a text file's first line, the ``following`` lines helping to
    tell the separator (:func:`_sniff_sep`)."""
    sep = _sniff_sep(line, following)
    fields = [f.strip().strip('"') for f in _split_line(line, sep)]
    named = bool({c for c in cols.values() if c and not is_position(c)} & set(fields))  # "4" is a position
    positions = {role: c for role, c in cols.items() if c and is_position(c)}
    at = _rating_at(len(fields), positions) if positions else 2
    if pairs or at is None:  # ids may be text (or a position is off the line): only column names mark a header
        return sep, fields, named or any(_normalized(f) in KNOWN_NAMES for f in fields)
    rating = fields[at] if at < len(fields) else ""
    # "1,99,NA" is a row whose rating is missing (and is said to be), not a header
    missing = rating.lower() in NAN_WORDS and all(_is_number(f) for f in fields[:2])
    number = _is_number(rating) or DECIMAL_COMMA.fullmatch(rating) or missing
    return sep, fields, named or len(fields) < 3 or not number


def is_position(name: str) -> bool:
    """Whether a column option is a position (``4``), not a name."""
    return re.fullmatch(r"[0-9]+", name) is not None


def _rating_at(n: int, positions: dict) -> int | None:
    """Where the rating of a line of ``n`` fields is, were it a headerless row with roles at ``positions``, as
    :func:`headerless_columns` places it; None where a position is off the line (or two are one)."""
    try:
        names = headerless_columns(n, positions, "")
    except DataError:
        return None
    return names.index("rating") if "rating" in names else None


def _split_line(line: str, sep: str) -> list[str]:
    if sep == r"\s+":
        return line.split()
    if len(sep) == 1:
        return next(csv.reader([line], delimiter=sep), [])
    return line.split(sep)


def _sep_name(sep: str) -> str:
    return {"\t": "tab", ",": "comma", "|": "pipe", ";": "semicolon", "::": "'::'"}.get(sep, "whitespace")


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def headerless_columns(n: int, cols: dict, where: str) -> list[str]:
    """The names of a headerless file's ``n`` columns: user, item, rating, timestamp in that order, unless
    ``cols`` places a role by position (``--rating-col 4``: the fourth column); the roles not placed take the
    columns left, in that order; the rest are ``extra1``, ``extra2``, ..."""
    placed = {role: _position(name, n, role, where) for role, name in cols.items() if name}
    _refuse_shared({role: at + 1 for role, at in placed.items()}, where)
    names: list[str | None] = [None] * n
    for role, at in placed.items():
        names[at] = role
    free = (at for at in range(n) if names[at] is None)
    for role, at in zip([r for r in (*ROLES, "timestamp") if r not in placed], free):
        names[at] = role
    extra = iter(range(1, n + 1))
    return [name or f"extra{next(extra)}" for name in names]


def _position(name: str, n: int, role: str, where: str) -> int:
    """The 0-based index of the column ``name`` gives by its 1-based position among ``n``."""
    if not (is_position(name) and 1 <= int(name) <= n):
        raise DataError(f"{where} has no header row, so --{role}-col {name} names no column; give its position, "
                        f"1 to {n} (1 is the first column), or add a header.")
    return int(name) - 1


def resolve_columns(columns: list, roles: tuple[str, ...], cols: dict, where: str) -> list[str]:
    """The column holding each role: the one named in ``cols``, else the one whose name is a known alias (of several:
    ``<role>_id``, then ``<role>``, then an alias ending in ``id``; still several: refused, naming them)."""
    names = [_resolve_column([str(c) for c in columns], role, cols.get(role), where) for role in roles]
    _refuse_shared(dict(zip(roles, names)), where)
    return names


def _refuse_shared(columns: dict, where: str) -> None:
    """One column read as two roles (``--user-col 2 --item-col 2``) is a mistake."""
    for role, column in columns.items():
        other = next((r for r, c in columns.items() if c == column and r != role), None)
        if other:
            raise DataError(f"{where}: the {role} and the {other} would both be read from column {column!r}; "
                            f"name another with --{other}-col.")


def _resolve_column(columns: list[str], role: str, wanted: str | None, where: str) -> str:
    if wanted:
        if wanted in columns:
            return wanted
        if is_position(wanted) and 1 <= int(wanted) <= len(columns):  # --rating-col 4: the fourth column
            return columns[int(wanted) - 1]
        alike = [c for c in columns if c.strip().casefold() == wanted.strip().casefold()]
        if len(alike) == 1:  # --rating-col rating for a header's " Rating ": spaces and case unseen in a message
            return alike[0]
        raise ColumnNotFound(f"{where} has no column {wanted!r} (its columns: {_listed(columns)}).", role)
    found = [c for c in columns if _normalized(c) in ALIASES[role]  # Book-Crossing's Book-Rating, Amazon's star_rating:
             or (role == "rating" and _normalized(c).endswith("rating"))]  # beside a score, which is asked
    for better in ((f"{role}id",), (role,), None):  # "item_id" beside "item", "product_id" beside "sku": the id wins
        if len(found) > 1:
            found = [c for c in found if (_normalized(c) in better if better else _normalized(c).endswith("id"))] or found
    if len(found) == 1:
        return found[0]
    if found:
        raise ColumnNotFound(f"{where} has {len(found)} columns that could be the {role} ({_listed(found)}); name "
                             f"one with --{role}-col ({role}_col=... in Python).", role)
    raise ColumnNotFound(
        f"{where} has no {role} column (its columns: {_listed(columns)}); name it with --{role}-col "
        f"(load_ratings(..., {role}_col=...) in Python).", role
    )


def _listed(values) -> str:
    """Values from a file (ids, column names), each clipped, for a message."""
    return ", ".join(clip(str(v)) for v in values)


def title_column(columns: list) -> str | None:
    """The column of item titles (``title``, ``Book-Title``, ...), if the header has one."""
    return next((c for c in columns if _normalized(str(c)) in TITLE_NAMES), None)


def _normalized(name: str) -> str:
    """A column name as the aliases are written: lower case, without ``_``, ``-``, ``.`` or spaces (User-ID: userid)."""
    return re.sub(r"[_\-. ]", "", name.lower())


class RowError(DataError):
    """A sentence about rows of a file, numbered as its readers count them: a text file's lines that are not blank
    (pandas and pyarrow leave those out). ``say`` words it for row numbers; :func:`lines_named` words it again
    with the lines the rows are on, which differ after a blank line."""

    def __init__(self, say: Callable[[tuple[int, ...]], str], rows: Sequence[int]):
        self.say, self.rows = say, tuple(int(r) for r in rows)
        super().__init__(say(self.rows))

    def __reduce__(self):  # pickled (a worker process's error) as the sentence it is: ``say`` is a closure
        return DataError, (str(self),)


@contextmanager
def lines_named(path: Path):
    """Reading ``path``: a :class:`RowError` names the lines its rows are on (:func:`in_lines`)."""
    try:
        yield
    except RowError as e:
        raise in_lines(e, path) from None


def in_lines(error: DataError, path: Path) -> DataError:
    """A :class:`RowError` worded with the lines its rows are on, where ``path`` is a text file with blank lines
    above them; any other ``error`` as it is."""
    if not isinstance(error, RowError) or _suffix(path) in PARQUET_SUFFIXES:
        return error
    line, encoding = first_line(path)
    lines = _line_numbers(path, error.rows, _sniff_sep(line, following_lines(path, encoding)))
    return error if lines == error.rows else RowError(error.say, lines)


def _line_numbers(path: Path, rows: tuple[int, ...], sep: str) -> tuple[int, ...]:
    """The line each of ``rows`` starts on (both counted from 1), rows being the records with something besides
    spaces (and tabs, unless they separate the fields) in them; a line end inside a quoted field ends no record.
    The file is read up to the last of them, a block at a time."""
    blank = np.zeros(256, bool)
    blank[[ord("\n"), ord("\r"), ord(" "), *([ord("\t")] * (sep != "\t"))]] = True
    wanted, found = sorted(set(rows)), {}
    row = line = 0
    tail = b""
    with readable(path), _open(path, "rb") as f:
        while len(found) < len(wanted):
            block = f.read(1 << 22)
            a = np.frombuffer(tail + block + b"\n" * (not block), np.uint8)  # a block starts a record
            breaks = np.flatnonzero(a == ord("\n"))
            quoted = np.cumsum(a == ord('"'))[breaks] % 2 == 1
            ends = breaks[~quoted]  # record ends
            if not len(ends) and block:
                tail += block
                continue
            starts = np.concatenate([[0], ends[:-1] + 1])
            solid = np.concatenate([[0], np.cumsum(~blank[a])])
            filled = solid[ends] > solid[starts]
            row_at = row + np.cumsum(filled)
            for r in wanted:
                k = int(np.searchsorted(row_at, r))
                if r not in found and k < len(ends):
                    found[r] = line + int(np.searchsorted(breaks, starts[k])) + 1
            used = int(ends[-1]) + 1 if len(ends) else len(a)
            row, line = (int(row_at[-1]) if len(ends) else row), line + int(np.searchsorted(breaks, used))
            tail = a[used:].tobytes()
            if not block:
                break
    return tuple(found.get(r, r) for r in rows)


def empty_id(where: str, row: int, column: str, role: str) -> RowError:
    return RowError(lambda r: f"{where}, row {r[0]}, column {column!r}: the {role} id is empty.", (row,))


def unusable_ratings(values: np.ndarray) -> np.ndarray:
    """Where ``values`` are no rating a float32 holds: missing (NaN), infinite, or finite but beyond its range."""
    wide = values if values.dtype.itemsize >= 4 else values.astype(np.float32)  # float16: FLOAT32_MAX is inf there
    return ~(np.abs(wide) <= FLOAT32_MAX)


def rating_text(text: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Ratings written as text (stripped): their values, NaN where missing (blank, or a word such as NA), and
    where they are no number at all."""
    values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return values, np.isnan(values) & ~text.str.lower().isin(NAN_WORDS).fillna(True).to_numpy()


def not_a_number(where: str, row: int, column: str, text: str) -> RowError:
    comma = DECIMAL_COMMA.fullmatch(text)
    hint = f" (a decimal comma? write {text.strip().replace(',', '.')})" if comma else ""
    return RowError(lambda r: f"{where}, row {r[0]}, column {column!r}: {clip(text)!r} is not a number{hint}.", (row,))


def bad_rating(where: str, row: int, column: str, value: float) -> RowError:
    """The sentence for an unusable rating ``value`` (NaN: a missing one)."""
    shown = ("missing" if np.isnan(value) else "infinite" if np.isinf(value) else
             f"{value:g}, beyond the range of a 32-bit float (±{FLOAT32_MAX:.2g})")
    return RowError(lambda r: f"{where}, row {r[0]}, column {column!r}: the rating is {shown}.", (row,))


def rated_twice(where: str, user, item, rows) -> RowError:
    return RowError(lambda r: f"{where}: user {clip(str(user))} rated item {clip(str(item))} more than once (rows "
                              f"{r[0]} and {r[1]}); choose duplicates (--duplicates) mean or last.", rows[:2])


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
            _warn_of_float_texts(pd.Series(df[role].unique(), dtype=object), role, where)
            _warn_of_missing_words(df[role], role, where)
    df["rating"] = _ratings(raw[names["rating"]], where, row_offset)
    if title := title_column(list(raw.columns)):  # travels with its row through deduplication
        df["title"] = raw[title].astype(str).to_numpy()
    ts = _timestamps(raw)
    if ts is not None:
        df["timestamp"] = ts
    return _deduplicate(df.reset_index(drop=True), where, duplicates, row_offset), names


def _timestamps(raw: pd.DataFrame) -> np.ndarray | None:
    """The ratings' times in whole seconds (Unix seconds for dates), from the first column named like a timestamp
    (timestamp, unixReviewTime, time, date, ...: in that order; a headerless file's fourth) whose every cell is a
    time; None where there is none."""
    named = {_normalized(str(c)): c for c in reversed(raw.columns)}  # the first column of a name
    for name in TIMESTAMP_NAMES:
        if name in named and (seconds := _seconds(raw[named[name]])) is not None:
            return seconds
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
