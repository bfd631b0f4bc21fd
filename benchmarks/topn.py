"""Top-N for every user: the chunked, masked ``top_n`` against a plain matrix product + ``topk``.

Builds a random dot model of the given shape with ``--ratings-per-user`` training ratings per
user (to mask), then times, in the same run: (a) ``latentrec.use.topn.top_n`` (chunked product,
masking of rated items, ratings for the winners) and (b) a plain ``U @ V.T`` + ``topk`` over the
same chunks with no masking. Prints user-item scores per second and the ratio (a)/(b).

    python benchmarks/topn.py                       # ML-1M shape, 6,040 x 3,706
    python benchmarks/topn.py --users 100000 --items 50000
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from latentrec.data.vocab import Vocab
from latentrec.models.dot import DotProductBias
from latentrec.use.recommender import Recommender
from latentrec.use.topn import CHUNK_SCORES, top_n


def make_rec(n_users: int, n_items: int, n_factors: int, per_user: int, seed: int = 0) -> Recommender:
    torch.manual_seed(seed)
    model = DotProductBias(n_users + 1, n_items + 1, n_factors, (0.5, 5.5))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
    rng = np.random.default_rng(seed)
    counts = np.minimum(rng.poisson(per_user, n_users + 1), n_items)
    counts[0] = 0
    indptr = np.concatenate([[0], np.cumsum(counts)])
    items = rng.integers(1, n_items + 1, int(indptr[-1])).astype(np.int32)
    return Recommender(model, Vocab([str(u) for u in range(n_users)]), Vocab([str(i) for i in range(n_items)]),
                       (1.0, 5.0), indptr, items, (3.5, np.zeros(n_users + 1, np.float32),
                                                    np.zeros(n_items + 1, np.float32)))


def plain(rec: Recommender, users: np.ndarray, n: int, chunk_scores: int) -> None:
    """Matrix product + topk per chunk, nothing else."""
    U, V = rec.model.user_factors.detach(), rec.model.item_factors.detach()
    step = max(1, chunk_scores // V.shape[0])
    with torch.no_grad():
        for a in range(0, len(users), step):
            torch.topk(U[torch.from_numpy(users[a:a + step])] @ V.T, n, dim=1)


def best_of(fns: list, repeats: int) -> list[float]:
    """Fastest of ``repeats`` runs of each function, interleaved so both see the same machine load."""
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, t in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            t.append(time.perf_counter() - t0)
    return [min(t) for t in times]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=6040)
    ap.add_argument("--items", type=int, default=3706)
    ap.add_argument("--factors", type=int, default=100)
    ap.add_argument("--ratings-per-user", type=int, default=165, help="training ratings to mask (ML-1M: 165)")
    ap.add_argument("-n", type=int, default=10)
    ap.add_argument("--chunk-scores", type=int, default=CHUNK_SCORES)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    rec = make_rec(args.users, args.items, args.factors, args.ratings_per_user)
    users = np.arange(1, args.users + 1)
    total = args.users * args.items
    top_n(rec, users[:100], args.n)  # warm up
    t_plain, t_ours = best_of([lambda: plain(rec, users, args.n, args.chunk_scores),
                               lambda: top_n(rec, users, args.n, chunk_scores=args.chunk_scores)], args.repeats)
    print(f"shape {args.users} users x {args.items} items, {args.factors} factors, n={args.n}, "
          f"{len(rec.rated_items)} rated items masked, {torch.get_num_threads()} threads")
    print(f"plain matmul+topk      : {t_plain:8.3f} s  {total / t_plain / 1e6:8.1f} M scores/s")
    print(f"top_n (masked, chunked): {t_ours:8.3f} s  {total / t_ours / 1e6:8.1f} M scores/s")
    print(f"ratio top_n / plain    : {t_plain / t_ours:8.2f}")


if __name__ == "__main__":
    main()
