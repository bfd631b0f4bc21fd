"""Encoded ratings as whole-column tensors on a device, sliced into shuffled batches."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch


@dataclass
class Encoded:
    """Ratings as index/target arrays: ``users``/``items`` int32, ``ratings`` float32."""

    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray

    def __len__(self) -> int:
        return len(self.ratings)

    def take(self, rows: np.ndarray) -> Encoded:
        """The ratings at ``rows`` (indices or a mask), copied."""
        return Encoded(self.users[rows], self.items[rows], self.ratings[rows])

    def digest(self) -> str:
        """A fingerprint of these ratings in any row order: the same rows give the same text."""
        order = np.lexsort((self.ratings, self.items, self.users))
        h = hashlib.blake2b(digest_size=16)
        for column, dtype in ((self.users, np.int64), (self.items, np.int64), (self.ratings, np.float32)):
            h.update(np.ascontiguousarray(column[order], dtype).tobytes())
        return h.hexdigest()


@dataclass
class EncodedRows:
    """Rows to score, already encoded with a model's vocabularies (index 0 = an id the vocabulary lacks)."""

    data: Encoded
    source: str
    n_unknown_users: int  # distinct user ids among these rows that the vocabulary lacks


class Batches:
    """Iterate ``(x, y)`` with ``x`` of shape ``(bs, 2)`` (user, item indices) and ``y`` of shape ``(bs,)``.

    The columns live on ``device`` once; an epoch is one shuffled permutation sliced into
    batches, so there is no per-rating Python anywhere.
    """

    def __init__(self, data: Encoded, bs: int = 1024, shuffle: bool = True, device: str = "cpu",
                 seed: int | None = None):
        self.device = torch.device(device)
        self.x = torch.stack([torch.as_tensor(data.users), torch.as_tensor(data.items)], 1).to(self.device)
        self.y = torch.as_tensor(data.ratings).to(self.device)
        self.bs, self.shuffle = bs, shuffle
        self.generator = torch.Generator()  # on the CPU: the same seed deals the same batches on every device
        if seed is not None:
            self.generator.manual_seed(seed)

    def __len__(self) -> int:
        return (len(self.y) + self.bs - 1) // self.bs

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.y)
        order = torch.randperm(n, generator=self.generator).to(self.device) if self.shuffle else None
        for start in range(0, n, self.bs):
            if order is None:
                x, y = self.x[start:start + self.bs], self.y[start:start + self.bs]
            else:
                idx = order[start:start + self.bs]
                x, y = self.x[idx], self.y[idx]
            yield x.long(), y
