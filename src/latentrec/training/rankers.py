"""Fitting ranking models (EASE, iALS, popularity) from the training rows, alone or as the ranker paired with a
rating model, and ``--ranker auto``'s check that the lists it leaves beat the most-popular list."""

from __future__ import annotations

import os
import time
from dataclasses import replace

import numpy as np
import torch

from latentrec.config import (
    DEFAULT_SOLVER,
    EASE_AUTO_ITEMS,
    IALS_AUTO_RATINGS,
    RANK_EVAL_USERS,
    RANKING_MODELS,
    RECIPES,
    TrainConfig,
)
from latentrec.data.batches import Encoded, EncodedRows
from latentrec.data.csr import bincount
from latentrec.errors import ConfigError
from latentrec.models.ease import EASE, ease_memory
from latentrec.models.ials import ImplicitALS
from latentrec.models.popularity import Popularity
from latentrec.models.ranker import Ranker, rating_weights
from latentrec.solvers.ials import fit_ials
from latentrec.use.ranking import hits, liked_by_user, ndcg_by_user
from latentrec.use.recommender import Recommender
from latentrec.use.topn import top_n

SURE = 2.0  # auto takes popularity over its ranker when popularity's NDCG gain is this many standard errors
EASE_MAX_BYTES = 4 << 30  # one items x items float32 matrix beyond this: refused, --model ials named


def available_memory() -> int:
    """Bytes of memory available to a new allocation (Linux: MemAvailable; else free pages, else all pages (macOS
    has no count of free ones); where none of these is known, unbounded)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    for pages in ("SC_AVPHYS_PAGES", "SC_PHYS_PAGES"):
        try:
            return os.sysconf("SC_PAGE_SIZE") * os.sysconf(pages)
        except (AttributeError, ValueError, OSError):  # Windows has no sysconf; macOS lacks SC_AVPHYS_PAGES
            pass
    return 1 << 62


def ease_fits(n_items: int) -> bool:
    """Whether EASE's ``items x items`` matrices fit the budget: one under 4 GB, all three under half the free RAM."""
    return 4 * n_items * n_items <= EASE_MAX_BYTES and ease_memory(n_items) <= available_memory() // 2


def check_ease_fits(n_items: int) -> None:
    if not ease_fits(n_items):
        raise ConfigError(
            f"EASE needs {ease_memory(n_items) / 2**30:.1f} GB for {n_items - 1:,} items (items x items, float32), "
            f"over its budget (4 GB a matrix, half the free memory); use model 'ials' (--model ials), whose memory "
            f"grows with users + items.")


def ranker_config(kind: str, cfg: TrainConfig) -> TrainConfig:
    """The settings a ranker is fit with: ``cfg`` itself for ``--model ease|ials``, else that model's recipe."""
    if cfg.model == kind:
        return cfg
    solver = DEFAULT_SOLVER[kind]
    return replace(cfg, model=kind, solver=solver, ranker="none", **RECIPES[(kind, solver)])


def pick_ranker(cfg: TrainConfig, n_items: int, n_ratings: int) -> str | None:
    """The kind of ranking model to fit: the model itself, the paired ``cfg.ranker``, or None. ``auto``: EASE up
    to ``EASE_AUTO_ITEMS`` items, else iALS up to ``IALS_AUTO_RATINGS`` training ratings, else none."""
    if cfg.model in RANKING_MODELS:
        return cfg.model
    if cfg.ranker == "auto":
        if n_items <= EASE_AUTO_ITEMS and ease_fits(n_items):
            return "ease"
        return "ials" if n_ratings <= IALS_AUTO_RATINGS else None
    return None if cfg.ranker == "none" else cfg.ranker


def fit_ranker(kind: str, cfg: TrainConfig, tr: Encoded, n_users: int, n_items: int,
               device: torch.device) -> tuple[Ranker, float]:
    """A fitted ranking model of ``kind`` and the seconds it took."""
    t0 = time.perf_counter()
    if kind == "popular":
        return Popularity(n_items).to(device).fit(bincount(tr.items, n_items)), time.perf_counter() - t0
    rc = ranker_config(kind, cfg)
    mean, std = float(tr.ratings.mean()), float(tr.ratings.std())
    users = torch.from_numpy(tr.users).to(device)  # int32 as encoded, without a copy
    items = torch.from_numpy(tr.items).to(device)
    w = torch.from_numpy(rating_weights(tr.ratings, mean, std, rc.rating_weight).astype(np.float32)).to(device)
    if kind == "ease":
        check_ease_fits(n_items)
        model = EASE(n_items, rc.wd, rc.dropout, mean, std, rc.rating_weight).to(device).fit(users, items, w, n_users)
    else:
        model = ImplicitALS(n_users, n_items, rc.n_factors, rc.wd, rc.alpha, mean, std, rc.rating_weight).to(device)
        fit_ials(model, users, items, w, rc.epochs, rc.seed)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return model, time.perf_counter() - t0


def popular_if_better(rec: Recommender, valid: Encoded) -> Recommender:
    """``--ranker auto``'s last check: ``rec``'s top-10 lists (its ranker's, or its rating model's where it has
    none) against the most-popular lists, and a ranker's against the rating model's own, on the validation rows, by
    NDCG@10 with ratings in the top quarter of the scale relevant (>= 4 on 1-5; the table ``train`` prints). Where
    the better of those is clearly better -- its mean gain over ``rec``, user by user, is more than ``SURE``
    standard errors -- ``rec`` ordered by it instead (``kept`` in ``info["ranker_check"]``: ``popular``, or
    ``none`` for the predicted ratings); a few users, or a close call, keep ``rec``'s order. On dense data (Jester:
    100 jokes nearly everyone rated) the predicted ratings beat an EASE ranker."""
    t0 = time.perf_counter()
    users, relevant, _ = liked_by_user(rec, EncodedRows(valid, "validation rows", 0), max_users=RANK_EVAL_USERS)
    if len(users) < 2:
        return rec
    n_items = len(rec.items)
    lists, _ = top_n(rec, users, 10)
    ndcg = lambda ordered: ndcg_by_user(*hits(ordered, relevant, n_items))  # noqa: E731
    mine = ndcg(lists)
    popular = Popularity(n_items).to(rec.device).fit(rec.item_counts)  # its lists as the dir would give them
    others = {"popular": ndcg(top_n(replace(rec, ranker=popular), users, 10)[0])}
    if rec.ranker is not None and rec.model is not None:
        others["none"] = ndcg(top_n(replace(rec, ranker=None), users, 10)[0])
    kept = max(others, key=lambda kind: others[kind].mean())
    gain = others[kept] - mine
    se = float(gain.std(ddof=1) / np.sqrt(len(gain)))
    if not gain.mean() > SURE * se:
        return rec
    check = {"ranker": rec.ranker_option, "kept": kept, "k": lists.shape[1], "ndcg": float(mine.mean()),
             **{f"{kind}_ndcg": float(v.mean()) for kind, v in others.items()}, "se": se, "n_users": len(users)}
    ranker = popular if kept == "popular" else None
    seconds = rec.info.get("ranker_seconds", 0.0) + time.perf_counter() - t0
    return replace(rec, ranker=ranker, info={**rec.info, "ranker_check": check, "ranker_seconds": seconds})
