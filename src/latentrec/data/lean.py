"""Big rating files with integer ids, read in chunks with pyarrow straight into encoded columns.

``load_ratings`` keeps raw ids as strings in pandas, about 100 bytes a rating: right for real
ids like ``B000FA64PK``, too much for 100M ratings. A Parquet/CSV/TSV file of at least
:data:`LEAN_BYTES` (Parquet: or of as many ratings as a CSV of that size) whose user and item
columns hold integers is instead read chunk by chunk into int32/int32/float32 columns (12 bytes a
rating), checked, split and encoded in place.
The result is the same as the in-memory route's: same vocabularies (ids sorted as text), same
validation rows, same training rows in the same order, same error sentences for bad rows.

Files this route does not take (text ids, negative ids, a ``title`` column, ``--duplicates
mean|last``, ``::``-separated, small) go through ``load_ratings`` as before.

Under ``torchrun`` (a :class:`Share`), each rank parses only its part of the file: a
contiguous range of row groups (Parquet) or of bytes cut at line ends (CSV/TSV). The ranks then
agree on the outcome (the first bad row in file order is the error every rank raises; a file one
rank cannot take lean is read by every rank the other way) and join the parsed columns in file
order, so every rank goes on with exactly the one-process arrays.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from latentrec import errors
from latentrec.config import check_valid_pct
from latentrec.data import csr
from latentrec.data.batches import Encoded, EncodedRows
from latentrec.data.columns import ROLES, headerless_columns, resolve_columns, title_column
from latentrec.data.file_shares import Share, byte_range, group_range, line_range
from latentrec.data.row_errors import (
    bad_rating,
    empty_id,
    in_lines,
    lines_named,
    not_a_number,
    rated_twice,
    rating_text,
    unusable_ratings,
)
from latentrec.data.split import held_rows
from latentrec.data.text_files import first_line, following_lines, readable, sniff_header, too_many_fields
from latentrec.data.vocab import NA, Vocab
from latentrec.errors import DataError, clip, one_line

log = logging.getLogger(__name__)
LEAN_BYTES = 64 << 20
CSV_RATING_BYTES = 16  # "123456,12345,4\n"
GZIP_RATIO = 4  # what a gzipped ratings file unpacks to, about
CHUNK_ROWS = 1 << 21
TABLE_IDS = 1 << 26


@dataclass
class EncodedSplit:
    """Training rows, encoded, with their vocabularies and the held-out validation rows (if any)."""

    users: Vocab
    items: Vocab
    train: Encoded
    valid: EncodedRows | None
    source: str
    columns: dict[str, str] = field(default_factory=dict)  # as ``Ratings.columns``: the header's name of each role


class _NotLean(Exception):
    """The file is fine but not for this route (text or negative ids, ...): read it with load_ratings."""


class _Unreadable(Exception):
    """pyarrow could not parse the file: load_ratings says what is wrong."""


def read_split(path: str | os.PathLike, cols: dict | None = None, duplicates: str = "error", valid_pct: float = 0.0,
               seed: int | None = 42, min_bytes: int | None = None, share: Share | None = None) -> EncodedSplit | None:
    """The file as an :class:`EncodedSplit` holding out a random ``valid_pct`` (as ``split.random_split``
    would), or ``None`` when the file is not for this route. With a ``share``, this rank parses only its
    part of the file, and every rank gets the same, whole result."""
    check_valid_pct(valid_pct)
    path = Path(path)
    columns = _columns(path, cols, duplicates, min_bytes, share)
    if columns is None:
        return None
    u, i, r, user_ids, item_ids = columns
    where = str(path)
    valid_rows = held_rows(len(r), valid_pct, seed)[0]
    _move_to_end(valid_rows, u, i, r)
    n_valid = len(valid_rows)
    n_train = len(r) - n_valid
    users, user_map = _train_vocab(u[:n_train], user_ids)
    items, item_map = _train_vocab(i[:n_train], item_ids)
    held = u[n_train:]
    n_unknown = len(np.unique(held[user_map[held] == 0])) if n_valid else 0
    _remap(u, user_map.__getitem__)
    _remap(i, item_map.__getitem__)
    valid = None
    if n_valid:
        valid = EncodedRows(Encoded(u[n_train:], i[n_train:], r[n_train:]), "the validation rows", n_unknown)
    return EncodedSplit(users, items, Encoded(u[:n_train], i[:n_train], r[:n_train]), valid, where,
                        _named_columns(path, cols or {}))


def _named_columns(path: Path, cols: dict) -> dict[str, str]:
    """The column read for each role, where the file's header names it (none for a headerless file)."""
    if path.suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        fields = pq.read_schema(path).names
    else:
        line, encoding = first_line(path)
        _, fields, has_header = sniff_header(line, cols, following=following_lines(path, encoding))
        if not has_header:
            return {}
    return dict(zip(ROLES, resolve_columns(fields, ROLES, cols, str(path))))


@dataclass
class LeanRows:
    """A file's rows read lean and checked, not yet encoded: user and item columns as indices into the file's
    sorted distinct ids (``user_ids``, ``item_ids``), and the ratings. ``Recommender.encode_rows`` encodes them."""

    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray
    source: str
    encoded: EncodedRows | None = None
    encoded_with: tuple[list[str], list[str]] | None = None  # the vocabularies' ids the columns were encoded with

    def encode(self, users: Vocab, items: Vocab) -> EncodedRows:
        """The rows encoded with a model's vocabularies (index 0: an id it lacks), as ``Recommender.encode_rows``
        gives them from ``load_ratings``. The columns are encoded in place, once (no second copy of a big file): a
        later call with the same ids returns the same rows, and one with other ids is refused."""
        if self.encoded is None:
            user_map, item_map = users.encode(self.user_ids.astype(str)), items.encode(self.item_ids.astype(str))
            _remap(self.users, user_map.__getitem__)
            _remap(self.items, item_map.__getitem__)
            data = Encoded(self.users, self.items, self.ratings)
            self.encoded = EncodedRows(data, self.source, int((user_map == 0).sum()))
            self.encoded_with = users.classes, items.classes
        elif self.encoded_with != (users.classes, items.classes):
            raise DataError(f"The rows read from {self.source} were encoded for a model with other users or items; "
                            "read the file again (lean.read_rows) to score it with this one.")
        return self.encoded


def read_rows(path: str | os.PathLike, cols: dict | None = None, duplicates: str = "error",
              min_bytes: int | None = None, pairs: bool = False) -> LeanRows | None:
    """A big integer-id file's rows to score with a model, or ``None`` when the file is not for this route.
    ``pairs``: (user, item) rows to predict, as ``load_pairs`` reads them: no rating (zeros), pairs may repeat."""
    path = Path(path)
    columns = _columns(path, cols, duplicates, min_bytes, pairs=pairs)
    return None if columns is None else LeanRows(*columns, str(path))


def _columns(path: Path, cols: dict | None, duplicates: str, min_bytes: int | None, share: Share | None = None,
             pairs: bool = False):
    """The file's user and item columns as file indices (checked: no pair twice, unless ``pairs``), its ratings
    (``pairs``: zeros), and the sorted distinct raw user and item ids; ``None`` when the file is not for the lean
    route."""
    min_bytes = LEAN_BYTES if min_bytes is None else min_bytes
    if duplicates != "error" or not path.is_file() or not _big(path, min_bytes):
        return None
    try:
        read = _read_shared if share and share.size > 1 else _read_all
        u, i, r, header = read(path, cols or {}, share, pairs)
    except _NotLean:
        return None
    except _Unreadable as e:
        if share is None or share.rank == 0:  # said once, not by every rank
            log.warning("%s: not read lean (%s); reading it with pandas instead, at about 100 bytes a rating "
                        "rather than 12.", path, e)
        return None
    if len(r) == 0:
        return None  # load_ratings words the empty-file errors
    user_ids, item_ids = _to_file_index(u), _to_file_index(i)
    if not pairs:
        with lines_named(path):
            _check_duplicates(u, i, user_ids, item_ids, str(path), header)
    return u, i, r, user_ids, item_ids


def _big(path: Path, min_bytes: int) -> bool:
    """At least ``min_bytes``, or a Parquet file holding as many ratings as a CSV of that size (Parquet stores a
    rating in about 9 bytes, CSV in about ``CSV_RATING_BYTES``: by bytes alone, 6M Parquet ratings went to pandas)."""
    if path.stat().st_size * (GZIP_RATIO if path.suffix.lower() == ".gz" else 1) >= min_bytes:
        return True
    if path.suffix.lower() not in (".parquet", ".pq"):
        return False
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path).metadata.num_rows * CSV_RATING_BYTES >= min_bytes
    except (OSError, pa.ArrowException):
        return False  # load_ratings words what is wrong with it


def _read_all(path: Path, cols: dict, _=None, pairs: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The file's user, item and rating columns, and its number of header lines."""
    try:
        with readable(path) if path.suffix.lower() == ".gz" else nullcontext():  # a damaged gzip file: one sentence
            part = _open(path, cols, Share(0, 1, _alone), pairs)
            return *_read(path, part), part.header
    except _BadRow as e:
        raise in_lines(e.error(part.header + e.index + 1), path) from None
    except (pa.ArrowInvalid, OSError) as e:  # a damaged or irregular file
        raise _Unreadable(_reason(e)) from None


def _alone(values: np.ndarray) -> tuple[np.ndarray, list[int]]:
    return values, [len(values)]


def _reason(e: Exception) -> str:
    """Why pyarrow failed, on one line, cut short (it may quote a whole cell or row)."""
    return clip(one_line(e), 200) or type(e).__name__


def _attempt(step) -> tuple[object, Exception | None]:
    """``(step(), None)`` or ``(None, what it raised)``: a rank must not leave its peers waiting in a collective."""
    try:
        return step(), None
    except Exception as e:  # noqa: BLE001 - every failure is told to the other ranks, then raised everywhere
        return None, e


def _read_shared(path: Path, cols: dict, share: Share, pairs: bool = False) -> tuple[np.ndarray, np.ndarray,
                                                                                    np.ndarray, int]:
    """This rank's part of the file parsed, the ranks' outcomes agreed, the columns joined in file order."""
    part, failed = _attempt(lambda: _open(path, cols, share, pairs))
    columns = None
    if part is not None:
        columns, failed = _attempt(lambda: _read(path, part))
    counts, _ = share.join(np.array([0 if columns is None else len(columns[0]), part is not None and part.quoted],
                                    np.int64))
    rows, quoted = counts[0::2], counts[1::2]
    if quoted.any():  # a quoted field may hold a line end, so parts cut at line ends may cut a row: read it whole
        return _read_all(path, cols, pairs=pairs)
    if isinstance(failed, _BadRow):  # its row in the whole file: after every row the earlier parts parsed
        bad = failed.error(part.header + int(rows[:share.rank].sum()) + failed.index + 1)
        renamed, trouble = _attempt(lambda: in_lines(bad, path))  # a scan that fails must still reach the join
        failed = trouble or renamed
    said, sizes = share.join(np.frombuffer(json.dumps(_outcome(failed)).encode(), np.uint8))
    ends = np.cumsum(sizes)
    first = next((o for o in (json.loads(said[e - n:e].tobytes()) for n, e in zip(sizes, ends)) if o), None)
    if first is not None:  # the earliest part of the file that went wrong speaks for every rank
        if "error" in first:
            raise getattr(errors, first["kind"], DataError)(first["error"], *first.get("args", ()))
        raise _NotLean if "not_lean" in first else _Unreadable(first["unreadable"])
    return (*(share.join(col)[0] for col in columns), part.header)


def _outcome(failed: Exception | None) -> dict:
    """What went wrong on this rank, in words the ranks can exchange (``{}``: nothing)."""
    if failed is None:
        return {}
    if isinstance(failed, errors.LatentrecError):  # a column not found says for which role
        role = getattr(failed, "role", None)
        return {"error": str(failed), "kind": type(failed).__name__, **({"args": [role]} if role else {})}
    if isinstance(failed, _NotLean):
        return {"not_lean": True}
    return {"unreadable": _reason(failed)}


@dataclass
class _Part:
    """One share's part of a file, ready to parse."""

    batches: object  # an iterator of record batches
    names: list[str]  # the user, item and rating columns
    lines: int  # at most this many rows
    header: int  # the file's header lines (0 or 1)
    quoted: bool = False  # its rows hold a '"' (CSV)
    rating_said: str | None = None  # how pyarrow names the rating column in a CSV conversion error
    as_text: Callable[[], "_Part"] | None = None  # the same part with every column read as text (CSV)
    odd_row: Callable[[], None] | None = None  # raise _BadRow for a row of too few or too many fields (CSV)


class _BadRow(Exception):
    """A bad cell at row ``index`` (0-based) of a part; ``error(row)`` words it for its row in the whole file."""

    def __init__(self, index: int, error: Callable[[int], DataError]):
        super().__init__(index)
        self.index, self.error = index, error


def _open(path: Path, cols: dict, share: Share, pairs: bool = False, text: bool = False) -> _Part:
    """This share's part of the file (Parquet: a range of row groups; CSV/TSV: a range of lines); ``pairs``: only
    its user and item columns; ``text``: a CSV's columns as text."""
    roles = ROLES[:2] if pairs else ROLES
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        f = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 22)  # stream; don't buffer row groups
        schema = f.schema_arrow
        names = _lean_columns(schema.names, cols, path, roles)
        types = [schema.field(n).type for n in names]
        if not (all(pa.types.is_integer(t) for t in types[:2]) and
                (pairs or pa.types.is_integer(types[2]) or pa.types.is_floating(types[2]))):
            raise _NotLean
        group_rows = np.array([f.metadata.row_group(g).num_rows for g in range(f.num_row_groups)], np.int64)
        lo, hi = group_range(np.cumsum(group_rows), share)
        batches = f.iter_batches(batch_size=CHUNK_ROWS, columns=names, row_groups=range(lo, hi)) if hi > lo else ()
        return _Part(batches, names, int(group_rows[lo:hi].sum()), 0)
    gz = suffix == ".gz"  # read whole, unpacked as it streams: a gzip stream has no byte ranges to share out
    if gz and share.size > 1:  # said, as a big file's other detours are
        raise _Unreadable("a gzipped file, read by several processes; gunzip it first to share it out")
    if (Path(path.stem).suffix.lower() if gz else suffix) not in (".csv", ".tsv", ".txt", ".data"):
        raise _NotLean
    import pyarrow.csv as pcsv

    line, encoding = first_line(path)
    sep, fields, has_header = sniff_header(line, cols, pairs, following_lines(path, encoding))
    if sep not in (",", "\t") or encoding != "utf-8-sig" or len(fields) < len(roles):
        raise _NotLean
    if pairs and not has_header and not all(f.isdigit() for f in fields[:2]):
        raise _NotLean  # a header of other names, or text ids: load_pairs tells them apart
    if has_header:
        header, names = fields, _lean_columns(fields, cols, path, roles)
    else:  # like load_ratings: user, item, rating[, timestamp] by position, or where --rating-col 4 says
        header, names = headerless_columns(len(fields), cols, str(path)), list(roles)
    if len(set(header)) != len(header):
        raise _NotLean
    start, end = (0, None) if gz else line_range(path, share)
    skip = 1 if has_header and start == 0 else 0
    if start == end:
        return _Part((), names, 0, int(has_header))
    lines, quoted = _scan(path, start, end, skip)
    types = [pa.string()] * 3 if text else [pa.int64(), pa.int64(), pa.float64()]

    def batches():  # opened as it is read: pyarrow converts the first block as it opens, and _read words what fails
        yield from pcsv.open_csv(
            byte_range(path, start, end),
            read_options=pcsv.ReadOptions(block_size=CHUNK_ROWS * 24, column_names=header, skip_rows=skip),
            parse_options=pcsv.ParseOptions(delimiter=sep),
            convert_options=pcsv.ConvertOptions(  # only a blank cell is missing: "NA" or "null" in an id column is text
                include_columns=names, null_values=[""], strings_can_be_null=True,
                column_types=dict(zip(names, types))),
        )

    odd_row = None if quoted else lambda: _odd_row(path, start, end, skip, sep, header, names)
    if pairs:
        return _Part(batches(), names, lines, int(has_header), quoted, odd_row=odd_row)
    return _Part(batches(), names, lines, int(has_header), quoted, f"In CSV column #{header.index(names[2])}:",
                 lambda: _open(path, cols, share, text=True), odd_row)


def _lean_columns(columns: list[str], cols: dict, path: Path, roles: tuple[str, ...]) -> list[str]:
    if title_column(columns):  # titles travel with rows: the in-memory route handles them
        raise _NotLean
    return resolve_columns(columns, roles, cols, str(path))


def _scan(path: Path, start: int, end: int, skip: int) -> tuple[int, bool]:
    """The lines that start in bytes ``[start, end)``, and whether a '"' follows the first ``skip`` of them.
    A field that starts with a 0 and another digit (an id such as ``007``) makes the file not for this route:
    parsed as an integer it would become ``7``, where the in-memory route keeps the text ``007``."""
    n, tail, quoted = 0, b"\n\n", False
    with byte_range(path, start, end) as f:
        if skip:
            f.readline()
            n = 1
        while block := f.read(1 << 24):
            n, quoted = n + block.count(b"\n"), quoted or b'"' in block
            if _zero_padded(tail + block):
                raise _NotLean
            tail = (tail + block[-2:])[-2:]
    return n + (tail[-1:] != b"\n"), quoted


def _zero_padded(text: bytes) -> bool:
    """Whether a field of ``text`` (after its first two bytes) is a whole number written with a leading zero:
    '0' and digits, alone, quoted or after a space (``007``, ``"007"``, `` 007``; not ``05/13/2014``, ``"05 13, 2014"``
    or a time's `` 00:44``)."""
    a = np.frombuffer(text, np.uint8)
    digit = (a >= ord("0")) & (a <= ord("9"))
    zero = np.flatnonzero(a[2:-1] == ord("0")) + 2
    zero = zero[digit[zero + 1]]
    ends, opens = np.frombuffer(b",\t\n", np.uint8), np.frombuffer(b'" ', np.uint8)
    before, twice = a[zero - 1], a[zero - 2]
    zero = zero[np.isin(before, ends) | (np.isin(before, opens) & np.isin(twice, ends))]
    window = np.minimum(zero[:, None] + np.arange(1, 22), len(a) - 1)  # an id has at most 20 digits
    other = ~digit[window]
    after = a[window[np.arange(len(zero)), other.argmax(1)]]  # the first byte after the field's digits
    return bool((~other.any(1) | np.isin(after, np.frombuffer(b',\t\r\n"', np.uint8))).any())


def _read(path: Path, part: _Part) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every row of the part into int32, int32, float32 columns, with load_ratings' checks (bad cells: _BadRow)."""
    where = str(path)
    u, i, r = np.empty(part.lines, np.int32), np.empty(part.lines, np.int32), np.zeros(part.lines, np.float32)
    n = 0
    try:
        for batch in part.batches:
            _parse(batch, part, (u, i, r), n, where)
            n += batch.num_rows
    except pa.ArrowInvalid as e:  # a cell pyarrow could not convert: a rating that is not a number is an error here
        if part.rating_said is not None and str(e).startswith(part.rating_said):
            _first_bad_rating(part.as_text(), where)
        if part.odd_row is not None and str(e).startswith("CSV parse error: Expected"):
            part.odd_row()  # a row cut short, or one with a field too many: said here, not after reading with pandas
        raise
    finally:
        getattr(part.batches, "close", lambda: None)()  # a reader left part-way lets go of its file now
    pa.default_memory_pool().release_unused()  # hand the decoding buffers back
    return u[:n], i[:n], r[:n]


def _parse(batch, part: _Part, columns: tuple[np.ndarray, ...], n: int, where: str) -> None:
    """One batch into ``columns`` from row ``n`` on, with load_ratings' checks (bad cells: _BadRow)."""
    m = batch.num_rows
    if n + m > part.lines:  # rows that end in something other than "\n" (a lone "\r")
        raise _NotLean
    cols = [batch.column(name) for name in part.names]
    gaps = [col.is_null().to_numpy(zero_copy_only=False) if col.null_count else np.zeros(m, bool) for col in cols]
    if np.logical_and.reduce(gaps).any():  # a row of empty cells: load_ratings leaves out those below the data
        raise _NotLean
    for role, name, out, col, missing in zip(ROLES, part.names, columns, cols, gaps):
        values = col.fill_null(0).to_numpy(zero_copy_only=False)
        if role == "rating":
            bad = np.flatnonzero(missing | unusable_ratings(values))
            if len(bad):
                value = np.nan if missing[bad[0]] else float(values[bad[0]])
                raise _BadRow(n + int(bad[0]), lambda row, name=name, value=value: bad_rating(where, row, name, value))
        else:
            if missing.any():
                raise _BadRow(n + int(np.flatnonzero(missing)[0]),
                              lambda row, name=name, role=role: empty_id(where, row, name, role))
            if m and (values.min() < 0 or values.max() >= 2 ** 31):
                raise _NotLean
        out[n:n + m] = values


def _first_bad_rating(part: _Part, where: str) -> None:
    """Raise _BadRow for the part's first rating that is no number, or missing (a word such as NA), read again a
    batch at a time as text: load_ratings' sentence without the whole file in pandas. Returns if there is none."""
    name, n = part.names[2], 0
    for batch in part.batches:
        text = batch.column(name).to_pandas().astype("string").str.strip()
        values, unparsed = rating_text(text)
        bad = np.flatnonzero(unparsed | unusable_ratings(values))
        if len(bad):
            b = int(bad[0])
            said = (lambda row: not_a_number(where, row, name, text.iloc[b])) if unparsed[b] else \
                (lambda row: bad_rating(where, row, name, values[b]))
            raise _BadRow(n + b, said)
        n += batch.num_rows


def _odd_row(path: Path, start: int, end: int | None, skip: int, sep: str, header: list[str],
             names: list[str]) -> None:
    """Raise _BadRow for the part's first row whose fields are not the header's, as load_ratings words it: a field
    too many, or a cell of ``names`` missing or blank in a row cut short. Returns if there is none, or if the short
    row lacks only cells not read, or is blank (load_ratings reads those)."""
    where, row, line, tail = str(path), 0, 0, b""  # rows: lines that are not blank
    with byte_range(path, start, end) as f:
        if skip:
            f.readline()
        while True:
            block = f.read(1 << 24)
            text = tail + block if block else tail + b"\n" * (not tail.endswith(b"\n"))
            cut = text.rfind(b"\n") + 1
            tail, text = text[cut:], text[:cut]
            a = np.frombuffer(text, np.uint8)
            ends = np.flatnonzero(a == ord("\n"))
            fields = np.diff(np.searchsorted(np.flatnonzero(a == ord(sep)), ends), prepend=0) + 1
            starts = np.concatenate([[0], ends[:-1] + 1])
            filled = (ends - starts) > (a[np.maximum(ends - 1, 0)] == ord("\r"))  # blank lines are no rows
            odd = np.flatnonzero(filled & (fields != len(header)))
            if len(odd):
                k, seen = int(odd[0]), int(fields[odd[0]])
                if seen > len(header):  # in pandas' words, which count blank lines too
                    raise _BadRow(line + k, lambda at: too_many_fields(where, sep, len(header), at, seen))
                cells = text[starts[k]:ends[k]].rstrip(b"\r").decode("utf-8", "replace").split(sep)
                blank = [name for name in names if header.index(name) >= seen or not cells[header.index(name)].strip()]
                if not blank or not any(c.strip() for c in cells):  # no cell read is missing, or a row of ",,"
                    return  # (load_ratings leaves out empty rows below the data): load_ratings reads it
                name, role = blank[0], ROLES[names.index(blank[0])]  # the first role load_ratings checks
                raise _BadRow(row + int(filled[:k].sum()), lambda at: bad_rating(where, at, name, np.nan)
                              if role == "rating" else empty_id(where, at, name, role))
            row, line = row + int(filled.sum()), line + len(ends)
            if not block:
                return


def _to_file_index(col: np.ndarray) -> np.ndarray:
    """Replace raw ids by their rank among the file's distinct ids (in place); returns the sorted distinct ids."""
    top = int(col.max())
    if top < TABLE_IDS:  # ids up to 64M: a lookup table (seconds faster than sorting 100M ids)
        seen = np.zeros(top + 1, bool)
        for s in range(0, len(col), CHUNK_ROWS):
            seen[col[s:s + CHUNK_ROWS]] = True
        ids = np.flatnonzero(seen).astype(np.int32)
        rank = np.cumsum(seen, dtype=np.int32) - 1
        find = lambda chunk: rank[chunk]  # noqa: E731
    else:
        ids = np.zeros(0, np.int32)
        for s in range(0, len(col), CHUNK_ROWS):
            ids = np.union1d(ids, np.unique(col[s:s + CHUNK_ROWS]))
        find = lambda chunk: np.searchsorted(ids, chunk)  # noqa: E731
    _remap(col, find)
    return ids


def _remap(col: np.ndarray, find) -> None:
    """Replace ``col``'s values by ``find(values)`` in place, a chunk at a time (no column-sized temporary)."""
    for s in range(0, len(col), CHUNK_ROWS):
        col[s:s + CHUNK_ROWS] = find(col[s:s + CHUNK_ROWS])


def _check_duplicates(u, i, user_ids, item_ids, where: str, row_offset: int) -> None:
    indptr, sorted_items = csr.by_row(u, i, len(user_ids))
    first = csr.first_duplicate(u, i, indptr, sorted_items)
    del indptr, sorted_items
    if first < 0:
        return
    rows = np.flatnonzero((u == u[first]) & (i == i[first]))[:2] + 1 + row_offset
    raise rated_twice(where, user_ids[u[first]], item_ids[i[first]], rows)


def _move_to_end(picked: np.ndarray, *cols: np.ndarray) -> None:
    """Reorder each column in place: unpicked rows first, then picked rows, both in their original order."""
    if not len(picked):
        return
    mask = np.zeros(len(cols[0]), bool)
    mask[picked] = True
    del picked
    keep = ~mask
    n_keep = int(keep.sum())
    for col in cols:
        tail = col[mask]
        col[:n_keep] = col[keep]
        col[n_keep:] = tail


def _train_vocab(col: np.ndarray, ids: np.ndarray) -> tuple[Vocab, np.ndarray]:
    """The vocabulary of the ids in ``col`` (file indices) and the map file index -> vocabulary index (0: absent)."""
    seen = np.zeros(len(ids), bool)
    for s in range(0, len(col), CHUNK_ROWS):
        seen[col[s:s + CHUNK_ROWS]] = True
    present = np.flatnonzero(seen)
    text = ids[present].astype(str)
    order = np.argsort(text, kind="stable")  # Vocab.from_ids sorts ids as text
    mapping = np.zeros(len(ids), np.int32)
    mapping[present[order]] = np.arange(1, len(present) + 1, dtype=np.int32)
    return Vocab([NA, *text[order].tolist()]), mapping

