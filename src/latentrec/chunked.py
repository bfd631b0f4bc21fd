"""Reading big Parquet/CSV rating files in chunks with pyarrow, straight into SGD blocks.

The in-memory route (``load_ratings``) keeps raw ids as strings, which is right for real data
but costs ~100 bytes a rating. For files with integer ids (``latentrec synth`` writes them,
MovieLens uses them) this module streams the three columns chunk by chunk, so 100M ratings
need only the blocked int32/int32/float32 columns (12 bytes a rating) plus one chunk. Id ``n``
becomes row ``n`` of the factor tables.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa

from .errors import DataError
from .sgd_kernel import BlockedRatings

CHUNK_ROWS = 1 << 21


def iter_chunks(path: str | os.PathLike, columns=("user", "item", "rating"), chunk_rows: int = CHUNK_ROWS):
    """Yield (users int32, items int32, ratings float32) arrays of at most ``chunk_rows`` rows."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist.")
    for batch in _batches(path, list(columns), chunk_rows):
        cols = []
        for name in columns:
            col = batch.column(name)
            if col.null_count:
                raise DataError(f"{path}: column {name!r} has missing values.")
            values = col.to_numpy(zero_copy_only=False)  # no copy for int32/float32 Parquet columns
            if values.dtype.kind not in "iuf":
                raise DataError(f"{path}: column {name!r} must be numeric for chunked reading.")
            cols.append(values)
        u, i, r = cols
        if u.dtype.kind == "f" or i.dtype.kind == "f" or (
                len(u) and (u.min() < 0 or i.min() < 0 or max(u.max(), i.max()) >= 2 ** 31)):
            raise DataError(f"{path}: user and item ids must be integers in [0, 2**31) for chunked reading.")
        if not np.isfinite(r).all():
            raise DataError(f"{path}: column {columns[2]!r} has a value that is not a finite number.")
        yield u.astype(np.int32, copy=False), i.astype(np.int32, copy=False), r.astype(np.float32, copy=False)
    pa.default_memory_pool().release_unused()  # hand the decoding buffers back before the next pass


def _batches(path: Path, columns: list[str], chunk_rows: int):
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            f = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 22)  # stream; don't buffer row groups
            missing = set(columns) - set(f.schema_arrow.names)
            if missing:
                raise DataError(f"{path} has no column(s) {', '.join(sorted(missing))}.")
            yield from f.iter_batches(batch_size=chunk_rows, columns=columns)
        elif suffix == ".csv":
            import pyarrow.csv as pcsv

            reader = pcsv.open_csv(path, read_options=pcsv.ReadOptions(block_size=chunk_rows * 24),
                                   convert_options=pcsv.ConvertOptions(include_columns=columns))
            yield from reader
        else:
            raise DataError(f"{path}: chunked reading takes .parquet, .pq or .csv files.")
    except (pa.ArrowInvalid, OSError) as e:
        raise DataError(f"{path} could not be read: {str(e).splitlines()[0]}") from None


def scan(path: str | os.PathLike, columns=("user", "item", "rating")) -> dict:
    """One pass: number of ratings, table sizes (max id + 1) and the rating range."""
    n, nu, ni, lo, hi = 0, 0, 0, np.inf, -np.inf
    for u, i, r in iter_chunks(path, columns):
        if len(r):
            n += len(r)
            nu, ni = max(nu, int(u.max()) + 1), max(ni, int(i.max()) + 1)
            lo, hi = min(lo, float(r.min())), max(hi, float(r.max()))
    if n == 0:
        raise DataError(f"{path} has no ratings.")
    return {"n_ratings": n, "n_users": nu, "n_items": ni, "rating_min": lo, "rating_max": hi}


def read_blocked(path: str | os.PathLike, grid: int, rng: np.random.Generator,
                 columns=("user", "item", "rating")) -> tuple[BlockedRatings, dict]:
    """The file as :class:`BlockedRatings` (three streaming passes, peak = output + one chunk)."""
    info = scan(path, columns)
    blocked = BlockedRatings.from_chunks(lambda: iter_chunks(path, columns), info["n_users"], info["n_items"],
                                         grid, rng)
    return blocked, info
