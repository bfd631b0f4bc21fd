"""Top-10 lists from a saved model dir: every known user at once, and one user at a time (best of 5 runs).

    latentrec train --data ml-100k --out /tmp/m && python benchmarks/recommend_latency.py /tmp/m

Run it on two commits to compare (the model dir is the same input both times).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from latentrec.use.recommender import Recommender
from latentrec.use.topn import top_n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_dir")
    p.add_argument("--singles", type=int, default=300, help="users timed one at a time (default 300)")
    args = p.parse_args()
    rec = Recommender.load(args.model_dir)
    users = np.arange(1, len(rec.users))
    top_n(rec, users[:10], 10)  # warm-up
    runs = []
    for _ in range(5):
        t = time.perf_counter()
        top_n(rec, users, 10)
        runs.append(time.perf_counter() - t)
    print(f"every user ({len(users)}): {min(runs) * 1e3:.1f} ms")
    t = time.perf_counter()
    for u in users[:args.singles]:
        top_n(rec, np.array([u]), 10)
    print(f"one user: {(time.perf_counter() - t) / min(args.singles, len(users)) * 1e3:.3f} ms")


if __name__ == "__main__":
    main()
