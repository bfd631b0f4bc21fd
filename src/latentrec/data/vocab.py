"""Raw ids <-> contiguous indices, with index 0 reserved for unknown ids (fastai's ``#na#``)."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd

NA = "#na#"
WHOLE = r"0|-?[1-9][0-9]{0,17}"  # an int64 written plainly: not 042, -0, +42, 4.2 or 4.0
INT64_LIMIT = 2.0 ** 63  # whole floats below it in size are ids written as integers


def id_text(raw) -> str:
    """One raw id as the vocabularies hold it, as a ratings file is read: text with no surrounding spaces, a whole
    float without its ``.0`` (a float id column is what a merge that brought in NaN leaves)."""
    if isinstance(raw, (float, np.floating)) and float(raw).is_integer() and abs(raw) < INT64_LIMIT:
        raw = int(raw)
    return str(raw).strip()


def all_whole(ids) -> bool:
    """Whether there are ids and every one is a whole number written plainly (``42``; not ``042``, ``4.2``, ``x``)."""
    return len(ids) > 0 and bool(pd.Series(ids, dtype=object).str.fullmatch(WHOLE).all())


def float_id_texts(values: np.ndarray) -> np.ndarray:
    """:func:`id_text` of every value of a float array, as an object array of text."""
    whole = np.isfinite(values) & (values == np.round(values)) & (np.abs(values) < INT64_LIMIT)
    out = np.empty(len(values), object)
    out[whole] = values[whole].astype(np.int64).astype(str)
    out[~whole] = values[~whole].astype(str)
    return out


class Vocab:
    """Maps raw ids (kept as strings) to indices 1..n; anything unseen encodes to 0."""

    def __init__(self, classes: list[str]):
        if not classes or classes[0] != NA:
            classes = [NA, *classes]
        self.classes = list(classes)
        self._index = pd.Index(self.classes[1:])

    @classmethod
    def from_ids(cls, ids: pd.Series | np.ndarray) -> "Vocab":
        """Build from raw ids, in sorted order so the same data gives the same vocab."""
        uniq = pd.unique(pd.Series(ids, dtype="string").astype(str))
        return cls([NA, *sorted(uniq.tolist())])

    def __len__(self) -> int:
        return len(self.classes)

    def __repr__(self) -> str:
        shown = ", ".join(repr(c) for c in self.classes[1:4]) + ", ..." * (len(self.classes) > 4)
        return f"Vocab({len(self.classes) - 1:,} ids: {shown}; index 0 is {NA!r}, every id it lacks)"

    def encode(self, ids) -> np.ndarray:
        """Indices (int32) for raw ids; unknown ids get 0."""
        arr = pd.Series(ids, dtype="string").astype(str)
        return (self._index.get_indexer(arr) + 1).astype(np.int32)

    def index(self, raw) -> int:
        """The index of one raw id, read as :func:`id_text` reads it (0 if unknown): a hash lookup, without
        :meth:`encode`'s per-call Series."""
        for text in dict.fromkeys((id_text(raw), str(raw).strip())):  # then as written: a dir from before id_text
            try:
                return int(self._index.get_loc(text)) + 1
            except KeyError:
                pass
        return 0

    def decode(self, idx) -> list[str]:
        """Raw ids for indices."""
        return [self.classes[int(i)] for i in np.asarray(idx).ravel()]

    @functools.cached_property
    def whole_numbers(self) -> bool:
        """Whether every id is a whole number written plainly (``42``; not ``042``, ``4.2`` or ``x``), as integer
        columns are read: answers then give the ids back as integers (:meth:`typed`)."""
        return all_whole(self.classes[1:])

    def typed(self, ids) -> np.ndarray:
        """Ids of this vocabulary (decoded, ``#na#`` left out) as the DataFrame answers give them: int64 when its ids
        are whole numbers (a user's merge on an integer id column then works), else text."""
        ids = np.asarray(ids, dtype=object)
        return ids.astype(np.int64) if self.whole_numbers else ids

    def __contains__(self, raw) -> bool:
        return self.index(raw) > 0

