"""Ranking metrics of top-k lists against the liked items of a test file.

Relevant items are a user's test ratings of at least ``threshold`` (4 on a 1-5 scale) of items
that are not among their training items. Each test user known to the model gets a top-``k`` list
that skips their training items; users without a relevant test item are not scored. Per user:
precision@k = hits / k, recall@k = hits / relevant, NDCG@k = DCG / ideal DCG with binary gains
and ``1 / log2(rank + 1)`` discounts, hit = at least one hit; all averaged over users. Catalog
coverage is the share of known items that appear in at least one list. The popularity baseline
recommends the items with the most ratings the model knows (``rec.item_counts``: its training rows, and the
validation rows ``fit`` held out of its input), each user's own skipped.
"""

from __future__ import annotations

import numpy as np

from latentrec.data.batches import EncodedRows
from latentrec.data.csr import held_in
from latentrec.use.recommender import Recommender
from latentrec.use.topn import check_n, top_n


def hits(lists: np.ndarray, relevant: list[np.ndarray], n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """Which slots of ``lists`` (users x k item indices, 0 = empty slot) hold one of the user's ``relevant`` items
    (users x k, bool), and how many relevant items each user has."""
    n_users = len(lists)
    n_rel = np.fromiter((len(r) for r in relevant), np.int64, n_users)
    rows = np.arange(n_users, dtype=np.int64)
    wanted = np.repeat(rows, n_rel) * n_items + (np.concatenate(relevant) if n_users else 0)
    return np.isin(rows[:, None] * n_items + lists, wanted) & (lists > 0), n_rel  # (user, item) keys: one test


def ndcg_by_user(gains: np.ndarray, n_rel: np.ndarray) -> np.ndarray:
    """Each user's NDCG@k from :func:`hits`: binary gains, ``1 / log2(rank + 1)`` discounts."""
    discounts = 1.0 / np.log2(np.arange(2, gains.shape[1] + 2))
    ideal = np.concatenate([[0.0], np.cumsum(discounts)])[np.minimum(n_rel, gains.shape[1])]
    return (gains * discounts).sum(1) / np.maximum(ideal, 1e-12)


def ranking_metrics(lists: np.ndarray, relevant: list[np.ndarray], n_items: int) -> dict:
    """Metrics of ``lists`` (users x k item indices, 0 = empty slot) against ``relevant`` item sets."""
    n_users, k = lists.shape
    gains, n_rel = hits(lists, relevant, n_items)
    found = gains.sum(1)
    shown = np.unique(lists[lists > 0])
    mean = (lambda a: float(a.mean())) if n_users else (lambda a: float("nan"))
    return {f"precision@{k}": mean(found / k), f"recall@{k}": mean(found / np.maximum(n_rel, 1)),
            f"ndcg@{k}": mean(ndcg_by_user(gains, n_rel)), "hit_rate": mean(found > 0),
            "coverage": len(shown) / max(n_items - 1, 1)}


def popularity_lists(rec: Recommender, users: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` items with the most ratings the model knows (``rec.item_counts``) each user has not rated."""
    counts = rec.item_counts
    order = np.argsort(-counts, kind="stable")
    order = order[(order > 0) & (counts[order] > 0)]
    lists = np.zeros((len(users), k), np.int64)
    rated_mark = np.zeros(len(counts), bool)  # set for one user's training items at a time
    for row, u in enumerate(users):
        rated = rec.rated_by(u)
        rated_mark[rated] = True
        cand = order[:k + len(rated)]
        cand = cand[~rated_mark[cand]][:k]
        rated_mark[rated] = False
        lists[row, :len(cand)] = cand
    return lists


def evaluate_ranking(rec: Recommender, test: EncodedRows, k: int = 10, threshold: float | None = None,
                     max_users: int | None = None) -> dict:
    """Top-``k`` metrics of the model and of the popularity baseline on ``test`` (see ``rec.encode_rows``).

    With ``max_users``, a seeded random sample of that many of the test users is scored when there
    are more (``n_users_eligible`` says how many there were): scoring every item for every user is
    what costs. Coverage then counts the sampled users' lists only.
    """
    check_n(k, "k (-k)")
    threshold = relevant_rating(rec) if threshold is None else threshold
    scored, relevant, eligible = liked_by_user(rec, test, threshold, max_users)
    model_lists, _ = top_n(rec, scored, k)
    k = model_lists.shape[1]  # at most the number of known items
    return {
        "k": k,
        "ordered_by": rec.ranker.kind if rec.ranker is not None else "model",
        "threshold": threshold,
        "n_users": int(len(scored)),
        "n_users_eligible": int(eligible),
        "n_unknown_users": test.n_unknown_users,
        "n_relevant": int(sum(len(r) for r in relevant)),
        "model": ranking_metrics(model_lists, relevant, len(rec.items)),
        "popularity": ranking_metrics(popularity_lists(rec, scored, k), relevant, len(rec.items)),
    }


def relevant_rating(rec: Recommender) -> float:
    """The default relevance cut: three quarters of the way up the model's rating scale (4 on 1-5, 75 on 0-100)."""
    lo, hi = rec.rating_range
    return lo + 0.75 * (hi - lo)


def liked_by_user(rec: Recommender, test: EncodedRows, threshold: float | None = None,
                  max_users: int | None = None) -> tuple[np.ndarray, list[np.ndarray], int]:
    """The known test users with a relevant item (rated at least ``threshold``, by default :func:`relevant_rating`;
    a seeded sample of ``max_users`` of them when there are more), each one's relevant item indices, and how many
    users were eligible before sampling."""
    threshold = relevant_rating(rec) if threshold is None else threshold
    seen = held_in(test.data.users, test.data.items, rec.rated_indptr, rec.rated_items)  # lists skip them
    liked = np.flatnonzero((test.data.ratings >= threshold) & (test.data.users > 0) & ~seen)
    lu, li = test.data.users[liked].astype(np.int64), test.data.items[liked].astype(np.int64)
    order = np.argsort(lu, kind="stable")
    lu, li = lu[order], li[order]
    users, starts = np.unique(lu, return_index=True)
    relevant = np.split(li, starts[1:]) if len(users) else []
    eligible = len(users)
    if max_users is not None and eligible > max_users:
        keep = np.sort(np.random.default_rng(0).choice(eligible, max_users, replace=False))
        users, relevant = users[keep], [relevant[j] for j in keep]
    return users, relevant, eligible
