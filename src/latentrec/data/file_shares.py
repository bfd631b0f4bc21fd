"""One file read by several processes together: a :class:`Share` (which rank of how many), its contiguous range of
Parquet row groups or of bytes cut at line ends, and a range of bytes read as a file of its own."""

from __future__ import annotations

import gzip
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Share:
    """Rank ``rank`` of ``size`` processes reading one file together. ``join(values)``: every rank's 1-D
    array joined in rank order, on every rank, with each rank's length (a collective: all ranks call it)."""

    rank: int
    size: int
    join: Callable[[np.ndarray], tuple[np.ndarray, list[int]]]


def group_range(ends: np.ndarray, share: Share) -> tuple[int, int]:
    """This share's contiguous range of units (row groups) whose cumulative sizes are ``ends``: about equal sizes."""
    starts = np.concatenate([[0], ends])  # the boundaries a cut may take
    targets = starts[-1] * np.arange(share.size + 1) / share.size
    edges = np.abs(starts[:, None] - targets[None, :]).argmin(0)  # the boundary nearest each equal cut
    return int(edges[share.rank]), int(edges[share.rank + 1])


def line_range(path: Path, share: Share) -> tuple[int, int]:
    """This share's bytes ``[start, end)`` of the file: an equal cut, each end moved past its line's end."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        def after_line(at: int) -> int:
            if at <= 0 or at >= size:
                return min(max(at, 0), size)
            f.seek(at - 1)
            f.readline()
            return f.tell()

        return after_line(size * share.rank // share.size), after_line(size * (share.rank + 1) // share.size)


def byte_range(path: Path, start: int, end: int | None) -> io.IOBase:
    """Bytes ``[start, end)`` of the file, read as a file of their own; a gzipped file's whole unpacked bytes."""
    return gzip.open(path, "rb") if end is None else _ByteRange(path, start, end)


class _ByteRange(io.RawIOBase):
    """Bytes ``[start, end)`` of a file, read as a file of their own."""

    def __init__(self, path: Path, start: int, end: int):
        self._f = open(path, "rb")
        self._f.seek(start)
        self._left = end - start

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self._f.readinto(memoryview(buffer)[:min(len(buffer), self._left)])
        self._left -= n
        return n

    def close(self) -> None:
        self._f.close()
        super().close()
