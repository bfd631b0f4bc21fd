"""Planted low-rank ratings at any scale, written in chunks to Parquet or CSV.

A rating is ``mu + b_u + b_i + p_u . q_i + N(0, noise)``, clipped to ``scale``. Users and items
are drawn with power-law (Zipf-like) popularity (exponent ``alpha`` for items, ``alpha/2`` for
users), so a few items get most ratings, as in real data. The file is written user range by user range: every user's ratings are drawn within one
chunk, so (user, item) pairs are unique without ever holding more than a chunk in memory. Ids
are integers ``0..n-1`` (int32), ratings float32.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from latentrec.atomic import atomic_path, writable_or_fail
from latentrec.data.row_errors import FLOAT32_MAX
from latentrec.errors import ConfigError


@dataclass(frozen=True)
class SynthSpec:
    """What to plant: sizes, rank, noise, popularity exponent and rating scale."""

    n_ratings: int
    n_users: int
    n_items: int
    n_factors: int = 8
    noise: float = 0.5
    alpha: float = 0.8  # the r-th most popular item is rated in proportion to r ** -alpha; users: r ** -(alpha / 2)
    scale: tuple[float, float] = (1.0, 5.0)
    seed: int = 0

    def check(self) -> None:
        for name in ("n_ratings", "n_users", "n_items", "n_factors"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} (--{name.removeprefix('n_')}) must be at least 1, "
                                  f"not {getattr(self, name)}.")
        if self.n_ratings > self.n_users * self.n_items:
            raise ConfigError(f"{self.n_ratings:,} ratings do not fit in {self.n_users:,} users x {self.n_items:,} items.")
        for name in ("noise", "alpha"):
            if not 0 <= getattr(self, name) < math.inf:
                raise ConfigError(f"{name} (--{name}) must be a finite number of at least 0, "
                                  f"not {getattr(self, name)}.")
        if self.seed < 0:
            raise ConfigError(f"seed (--seed) must be zero or positive, not {self.seed}.")
        low, high = self.scale
        if not -FLOAT32_MAX <= low < high <= FLOAT32_MAX:
            raise ConfigError(f"scale (--scale) must be LOW HIGH with LOW < HIGH, both between -3.4e38 and 3.4e38 "
                              f"(ratings are float32), not {low} {high}.")


class Planted:
    """The hidden truth: factors, biases and popularity of every user and item."""

    def __init__(self, spec: SynthSpec):
        rng = np.random.default_rng(spec.seed)
        s = (0.8 ** 2 / spec.n_factors) ** 0.25  # p.q then has std about 0.8
        self.P = rng.normal(0, s, (spec.n_users, spec.n_factors)).astype(np.float32)
        self.Q = rng.normal(0, s, (spec.n_items, spec.n_factors)).astype(np.float32)
        self.bu = rng.normal(0, 0.4, spec.n_users).astype(np.float32)
        self.bi = rng.normal(0, 0.4, spec.n_items).astype(np.float32)
        self.mu = float(np.mean(spec.scale)) + 0.3
        self.user_weight = _power_law(spec.n_users, spec.alpha / 2, rng)  # users: a flatter tail
        self.item_cdf = np.cumsum(_power_law(spec.n_items, spec.alpha, rng))
        self.item_cdf /= self.item_cdf[-1]

    def rating(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return (np.einsum("nk,nk->n", self.P[users], self.Q[items]) + self.bu[users] + self.bi[items] + self.mu)


def _power_law(n: int, alpha: float, rng: np.random.Generator) -> np.ndarray:
    w = np.arange(1, n + 1, dtype=np.float64) ** -alpha
    return w[rng.permutation(n)]


def user_degrees(spec: SynthSpec, planted: Planted, rng: np.random.Generator) -> np.ndarray:
    """Ratings per user: proportional to popularity, at most ``n_items``, summing to ``n_ratings``."""
    deg = rng.multinomial(spec.n_ratings, planted.user_weight / planted.user_weight.sum()).astype(np.int64)
    excess = np.maximum(deg - spec.n_items, 0)
    deg -= excess
    left = int(excess.sum())
    while left:  # hand the overflow of saturated users to users with room
        room = spec.n_items - deg
        take = np.minimum(room, rng.multinomial(left, room / room.sum()))
        deg += take
        left -= int(take.sum())
    return deg


def _chunk(spec: SynthSpec, planted: Planted, deg: np.ndarray, first: int, rng: np.random.Generator):
    """All ratings of users ``first .. first+len(deg)-1`` with distinct items per user."""
    dense = deg > spec.n_items // 2  # near-saturated users: distinct items drawn directly
    users = np.repeat(np.arange(first, first + len(deg), dtype=np.int64), np.where(dense, 0, deg))
    items = np.searchsorted(planted.item_cdf, rng.random(len(users)))
    while True:
        code = np.sort(users * spec.n_items + items)
        code = np.concatenate([code[:1], code[1:][code[1:] != code[:-1]]])  # distinct; empty when every user is dense
        users, items = code // spec.n_items, code % spec.n_items
        have = np.bincount(users - first, minlength=len(deg))
        short = np.where(dense, 0, deg - have)
        if not short.any():
            break
        extra = np.repeat(np.arange(first, first + len(deg)), short)  # re-draw duplicates uniformly
        users = np.concatenate([users, extra])
        items = np.concatenate([items, rng.integers(0, spec.n_items, len(extra))])
    dense_u = np.flatnonzero(dense)
    users = np.concatenate([users, *(np.full(deg[u], first + u) for u in dense_u)])
    items = np.concatenate([items, *(rng.permutation(spec.n_items)[:deg[u]] for u in dense_u)])
    order = rng.permutation(len(users))
    users, items = users[order], items[order]
    with np.errstate(over="ignore"):  # a noise draw beyond float32 becomes inf, then clips to the scale
        r = planted.rating(users, items) + rng.normal(0, spec.noise, len(users)).astype(np.float32)
    np.clip(r, *spec.scale, out=r)
    return pa.table({"user": users.astype(np.int32), "item": items.astype(np.int32), "rating": r.astype(np.float32)})


def generate(spec: SynthSpec, chunk_rows: int = 2_000_000):
    """Yield the planted ratings as pyarrow tables of about ``chunk_rows`` rows each."""
    spec.check()
    planted = Planted(spec)
    rng = np.random.default_rng(spec.seed + 1)
    deg = user_degrees(spec, planted, rng)
    ends = np.searchsorted(np.cumsum(deg), np.arange(chunk_rows, spec.n_ratings + chunk_rows, chunk_rows)) + 1
    start = 0
    for end in np.unique(np.minimum(ends, spec.n_users)):
        if end > start:
            yield _chunk(spec, planted, deg[start:end], start, rng)
        start = end


def synth_arrays(spec: SynthSpec, chunk_rows: int = 2_000_000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The planted ratings in memory: users, items (int32) and ratings (float32); same as the file."""
    tables = list(generate(spec, chunk_rows))
    return tuple(np.concatenate([t[c].to_numpy() for t in tables]) for c in ("user", "item", "rating"))


def write_synth(spec: SynthSpec, out: str | os.PathLike, chunk_rows: int = 2_000_000) -> dict:
    """Write the planted ratings to ``out`` (.parquet/.pq or .csv), chunk by chunk, atomically."""
    spec.check()
    out = Path(out)
    fmt = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}.get(out.suffix.lower())
    if fmt is None:
        raise ConfigError(f"out (--out) must end in .parquet, .pq or .csv, not {out.name!r}.")
    writable_or_fail(out, parents=False)  # before generating, not after
    schema = pa.schema([("user", pa.int32()), ("item", pa.int32()), ("rating", pa.float32())])
    try:
        with atomic_path(out) as tmp, _writer(fmt, tmp, schema) as writer:  # the writer closes on any error too
            for table in generate(spec, chunk_rows):
                writer.write_table(table)
    except OSError as e:  # disk full, permissions: one sentence, no partial file
        raise ConfigError(f"Could not write {out}: {e.strerror or e}.") from None
    return {"out": str(out), "format": fmt, "n_ratings": spec.n_ratings, "n_users": spec.n_users,
            "n_items": spec.n_items, "n_factors": spec.n_factors, "noise": spec.noise, "alpha": spec.alpha,
            "scale": list(spec.scale), "seed": spec.seed, "bytes": out.stat().st_size}


def _writer(fmt: str, path: Path, schema: pa.Schema):
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetWriter(path, schema, compression="snappy")
    import pyarrow.csv as pcsv

    return pcsv.CSVWriter(path, schema)
