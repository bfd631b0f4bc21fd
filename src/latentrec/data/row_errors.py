"""Bad rows of a ratings file: the ratings no float32 holds or that are no number, the sentences naming a bad row
(``lean`` words a big file's with them too), and the lines those rows are on."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from latentrec.data.text_files import (
    DECIMAL_COMMA,
    NAN_WORDS,
    PARQUET_SUFFIXES,
    file_type,
    first_line,
    following_lines,
    line_numbers,
    sniff_sep,
)
from latentrec.errors import DataError, clip

FLOAT32_MAX = float(np.finfo(np.float32).max)  # ratings are stored as float32


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
    if not isinstance(error, RowError) or file_type(path) in PARQUET_SUFFIXES:
        return error
    line, encoding = first_line(path)
    lines = line_numbers(path, error.rows, sniff_sep(line, following_lines(path, encoding)))
    return error if lines == error.rows else RowError(error.say, lines)


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
