"""CPU SGD epoch throughput: latentrec's numba kernel vs LIBMF vs batched torch, in one run.

    python benchmarks/throughput.py                       # 10M ratings, 200k users, 50k items, k=64, 2 threads
    python benchmarks/throughput.py --ratings 1000000 --epochs 2

LIBMF (``pip install 'latentrec[bench]'``) is timed as ``fit(iters=1+E) - fit(iters=1)`` so its
data setup is excluded, like ours. Every engine runs in this process, so the ratios hold on a
shared, noisy machine even when the absolute figures do not.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import time

import numba
import numpy as np
import torch

from latentrec.data.synth import SynthSpec, synth_arrays
from latentrec.models.dot import DotProductBias
from latentrec.solvers.sgd_kernel import BlockedRatings, default_grid, sgd_epoch
from latentrec.solvers.sgd_torch import sgd_step


def kernel_rate(users, items, ratings, nu, ni, k, epochs, threads):
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    copies = users.copy(), items.copy(), ratings.copy()  # blocked in place; LIBMF gets the file order
    data = BlockedRatings(*copies, nu, ni, default_grid(len(ratings), threads), rng)
    build = time.perf_counter() - t0
    P, Q = rng.normal(0, 0.1, (nu, k)).astype(np.float32), rng.normal(0, 0.1, (ni, k)).astype(np.float32)
    bu, bi = np.zeros(nu, np.float32), np.zeros(ni, np.float32)
    sgd_epoch(data, P, Q, bu, bi, 0.005, 0.02, None, True, rng)  # compile / warm up
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        sgd_epoch(data, P, Q, bu, bi, 0.005, 0.02, None, True, rng)
        times.append(time.perf_counter() - t0)
    return len(ratings) / np.median(times), build


def libmf_rate(users, items, ratings, k, epochs, threads):
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            from libmf import mf
    except ImportError:
        return None
    X = np.stack([users.astype(np.float32), items.astype(np.float32), ratings], 1)

    def fit(iters):
        model = mf.MF(k=k, nr_threads=threads, nr_iters=iters, quiet=True, eta=0.005)
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            model.fit(X)
        return time.perf_counter() - t0

    return len(ratings) * epochs / (fit(1 + epochs) - fit(1))


def torch_rate(users, items, ratings, nu, ni, k, bs, max_ratings=2_000_000):
    m = DotProductBias(nu, ni, k, None)
    n = min(len(ratings), max_ratings)
    u, i = torch.from_numpy(users[:n]).long(), torch.from_numpy(items[:n]).long()
    r = torch.from_numpy(ratings[:n])
    t0 = time.perf_counter()
    for s in range(0, n, bs):
        sgd_step(m, u[s:s + bs], i[s:s + bs], r[s:s + bs], 0.005, 0.02)
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ratings", type=int, default=10_000_000)
    ap.add_argument("--users", type=int, default=200_000)
    ap.add_argument("--items", type=int, default=50_000)
    ap.add_argument("--factors", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    numba.set_num_threads(a.threads)
    torch.set_num_threads(a.threads)
    users, items, ratings = synth_arrays(SynthSpec(a.ratings, a.users, a.items, seed=1))
    ours, build = kernel_rate(users, items, ratings, a.users, a.items, a.factors, a.epochs, a.threads)
    libmf = libmf_rate(users, items, ratings, a.factors, a.epochs, a.threads)
    tch = torch_rate(users, items, ratings, a.users, a.items, a.factors, 65536)
    out = {"ratings": a.ratings, "users": a.users, "items": a.items, "factors": a.factors, "threads": a.threads,
           "kernel_ratings_per_s": ours, "kernel_block_build_s": build, "libmf_ratings_per_s": libmf,
           "torch_index_add_ratings_per_s": tch, "kernel_vs_libmf": ours / libmf if libmf else None}
    if a.json:
        print(json.dumps(out, indent=1))
        return
    print(f"{a.ratings:,} ratings, {a.users:,} users, {a.items:,} items, k={a.factors}, {a.threads} threads")
    print(f"  latentrec numba kernel : {ours / 1e6:6.2f} M ratings/s per epoch (block build {build:.1f} s, once)")
    if libmf:
        print(f"  LIBMF                  : {libmf / 1e6:6.2f} M ratings/s per epoch")
        print(f"  kernel / LIBMF         : {ours / libmf:6.2f}x")
    else:
        print("  LIBMF                  : not installed (pip install 'latentrec[bench]')")
    print(f"  torch index_add_ (bs 65536): {tch / 1e6:6.2f} M ratings/s")


if __name__ == "__main__":
    main()
