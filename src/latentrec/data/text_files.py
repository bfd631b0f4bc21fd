"""Ratings files as text: the file type by its suffix, gzip, the encoding (UTF-8 with a damaged byte refused, else
Windows-1252 or latin-1), the first lines, the separator and header sniffed from them, the cells read with pandas,
and the line a row is on."""

from __future__ import annotations

import codecs
import csv
import functools
import gzip
import itertools
import re
import warnings
import zlib
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from latentrec.data.columns import KNOWN_NAMES, headerless_columns, is_position, normalized, rating_at
from latentrec.errors import DataError

TEXT_SUFFIXES = {".csv", ".tsv", ".txt", ".data", ".dat", ".base", ".test"}
PARQUET_SUFFIXES = {".parquet", ".pq"}
EXCEL_SEP = re.compile(r"sep=.{1,2}")  # the line Excel writes above a CSV to name its separator
NAN_WORDS = {"nan", "na", "n/a", "null", "none", ""}
DECIMAL_COMMA = re.compile(r"\s*-?\d+,\d{1,2}\s*")  # "3,5" from a spreadsheet set to a decimal comma (not "1,000")
BAD_BYTE = re.compile("[\udc80-\udcff]")  # a byte that is not UTF-8, decoded with errors="surrogateescape"
UTF8_BEYOND_ASCII = re.compile("[^\x00-\x7f\udc80-\udcff]")
# a text file that is not UTF-8: Windows' (Excel's) text, whose 0x80-0x9f are ’ “ ” – € and the like, else latin-1,
# which reads any byte
LEGACY_ENCODINGS = ("cp1252", "latin-1")


def file_type(path: Path) -> str:
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


def sniff_sep(line: str, following: Sequence[str] = ()) -> str:
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


def read_text_table(path: Path, cols: dict, pairs: bool, needs: str) -> tuple[pd.DataFrame, bool]:
    """A text file's cells as text (its encoding, separator and header sniffed) and whether it has a header;
    ``needs``: the rows it should hold, for the sentences about an empty file."""
    line, encoding = first_line(path)
    if not line:
        raise DataError(f"{path} has no rows; it needs rows of {needs}.")
    following = following_lines(path, encoding)
    sep, fields, has_header = sniff_header(line, cols, pairs, following)
    if pairs and not has_header and not any(_is_number(f) for f in fields[:2]):
        # "a,b" above numeric ids is a header, whatever its names
        has_header = bool(following) and all(_is_number(f) for f in _split_line(following[0], sep)[:2])

    if has_header and not any(cols.values()):
        _refuse_preamble(path, line, fields, following)

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


def _refuse_preamble(path: Path, line: str, fields: list[str], following: Sequence[str]) -> None:
    """A title or a note above the header (``Ratings export, 2026``): read as the header, it left the columns
    unnamed, or the rows longer than it."""
    def names(line_fields: list[str]) -> int:
        return sum(normalized(f.strip().strip('"')) in KNOWN_NAMES for f in line_fields)

    if names(fields) >= 2:
        return
    for later in following[:5]:
        if names(_split_line(later, sniff_sep(later))) >= 2:
            raise DataError(f"{path}: the line {later.strip()!r} looks like the header, below one that does not "
                            f"({line.strip()!r}: a title or a note?); delete the lines above the header and "
                            f"read it again.")


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


def sniff_header(line: str, cols: dict, pairs: bool = False, following: Sequence[str] = ()
                 ) -> tuple[str, list[str], bool]:
    """(separator, fields, whether it is a header) of a text file's first line, the ``following`` lines helping to
    tell the separator (:func:`sniff_sep`)."""
    sep = sniff_sep(line, following)
    fields = [f.strip().strip('"') for f in _split_line(line, sep)]
    named = bool({c for c in cols.values() if c and not is_position(c)} & set(fields))  # "4" is a position
    positions = {role: c for role, c in cols.items() if c and is_position(c)}
    at = rating_at(len(fields), positions) if positions else 2
    if pairs or at is None:  # ids may be text (or a position is off the line): only column names mark a header
        return sep, fields, named or any(normalized(f) in KNOWN_NAMES for f in fields)
    rating = fields[at] if at < len(fields) else ""
    # "1,99,NA" is a row whose rating is missing (and is said to be), not a header
    missing = rating.lower() in NAN_WORDS and all(_is_number(f) for f in fields[:2])
    number = _is_number(rating) or DECIMAL_COMMA.fullmatch(rating) or missing
    return sep, fields, named or len(fields) < 3 or not number


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


def line_numbers(path: Path, rows: tuple[int, ...], sep: str) -> tuple[int, ...]:
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
