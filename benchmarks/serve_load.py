"""``latentrec serve`` under load: in-process and HTTP latency of one user's recommendations.

Trains a model on planted synthetic ratings of the ML-1M shape (6,000 users x 3,700 items, ALS),
saves it, then measures in one run:

- in process: the endpoint's model call (``user_recommendations``: ``top_n`` and JSON-ready rows), and
  ``recommend(rec, user, 10)`` (the same list as a DataFrame), for distinct known users;
- over HTTP on 127.0.0.1: a real ``latentrec serve`` subprocess (port 0), keep-alive clients in
  threads, ``GET /api/users/{id}/recommendations?n=10`` with one client and with 8 concurrent
  clients; the same for ``GET /healthz`` so the framework's own ceiling shows beside ours; with
  ``--workers 1 2``, one server after the other with each worker count, the same requests.

Every request count is bounded; the server is stopped at the end. Prints one table with the
targets of issue 15 (in process <= 1 ms; 1 client p50 <= 3 ms, p99 <= 10 ms; 8 clients >= 500
req/s with p99 <= 50 ms) and the load average, since other work on the machine shows in the tails.

    python benchmarks/serve_load.py
    python benchmarks/serve_load.py --ranker none --requests 4000     # the rating model orders the lists
    python benchmarks/serve_load.py --workers 1 2                     # one server process, then two
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd


def train(folder: Path, args) -> Path:
    """A model dir trained on planted ratings (``latentrec.data.synth``) with the ALS solver."""
    from latentrec.config import TrainConfig
    from latentrec.data.ratings import Ratings
    from latentrec.data.synth import SynthSpec, synth_arrays
    from latentrec.training.fit import fit

    users, items, ratings = synth_arrays(SynthSpec(args.ratings, args.users, args.items, seed=0))
    df = pd.DataFrame({"user": users.astype(str), "item": items.astype(str), "rating": ratings})
    titles = {i: f"Item {i}" for i in np.unique(df["item"])}
    t = time.perf_counter()
    rec, _ = fit(Ratings(df, "synthetic", titles), config=TrainConfig(solver="als", epochs=5, valid_pct=0,
                                                                      ranker=args.ranker, device="cpu", seed=0))
    print(f"trained {len(rec.users) - 1} x {len(rec.items) - 1} ({len(df):,} ratings, parts {rec.parts}) "
          f"in {time.perf_counter() - t:.1f} s", flush=True)
    path = folder / "model"
    rec.save(path)
    return path


def in_process(model_dir: Path, users: list[str], n: int) -> dict[str, list[float]]:
    """Seconds per call for each user, on the model as the server loads it: the endpoint's model call
    (``user_recommendations``: top_n, JSON-ready rows) and ``recommend`` (the same list as a DataFrame)."""
    from latentrec.use.recommender import Recommender
    from latentrec.use.serve.app import user_recommendations
    from latentrec.use.topn import recommend

    rec = Recommender.load(model_dir)
    out = {}
    def endpoint(rec, user: str, n: int) -> dict:
        return user_recommendations(rec, [user], n)[0]

    for name, fn in (("endpoint", endpoint), ("recommend", recommend)):
        for u in users[:20]:
            fn(rec, u, n)  # warm up
        out[name] = []
        for u in users:
            t = time.perf_counter()
            fn(rec, u, n)
            out[name].append(time.perf_counter() - t)
    return out


def load(host: str, port: int, paths: list[str], clients: int) -> tuple[list[float], float]:
    """Send ``paths`` split over ``clients`` threads, each on one keep-alive connection: latencies and wall time."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    start = threading.Barrier(clients + 1)

    def client(k: int) -> None:
        conn = http.client.HTTPConnection(host, port, timeout=30)
        start.wait()
        for path in paths[k::clients]:
            t = time.perf_counter()
            conn.request("GET", path)
            r = conn.getresponse()
            r.read()
            latencies[k].append(time.perf_counter() - t)
            if r.status != 200:
                errors.append(f"{path}: {r.status}")
        conn.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise SystemExit(f"{len(errors)} requests failed, e.g. {errors[0]}")
    return [x for lat in latencies for x in lat], wall


def measure(model_dir: Path, workers: int, recs: list[str], health: list[str]) -> dict:
    """A real server with ``workers`` processes: (paths, clients) -> (latencies, wall time)."""
    server = subprocess.Popen([sys.executable, "-m", "latentrec", "serve", str(model_dir), "--port", "0", "--json",
                               "--workers", str(workers)], stdout=subprocess.PIPE, text=True)
    try:
        url = json.loads(server.stdout.readline())["url"]
        host, port = url.removeprefix("http://").rsplit(":", 1)
        load(host, int(port), recs[:200] + health[:200], 2 * workers)  # warm up (every worker, mostly)
        return {(name, c): load(host, int(port), paths, c) for name, paths in (("recs", recs), ("health", health))
                for c in (1, 8)}
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


def row(name: str, workers: str, clients: str, lat: list[float], wall: float | None, target: str) -> str:
    ms = np.asarray(lat) * 1e3
    rate = f"{len(lat) / wall:8.0f}" if wall else f"{'-':>8}"
    return (f"{name:<34} {workers:>7} {clients:>7} {len(lat):>8} {np.percentile(ms, 50):7.2f} "
            f"{np.percentile(ms, 99):7.2f} {rate}   {target}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=6000)
    p.add_argument("--items", type=int, default=3700)
    p.add_argument("--ratings", type=int, default=1_000_000)
    p.add_argument("--ranker", default="auto", help="the ranker trained beside the rating model (train's default)")
    p.add_argument("--requests", type=int, default=2000, help="HTTP requests per measurement (default 2000)")
    p.add_argument("--workers", type=int, nargs="+", default=[1],
                   help="server processes (latentrec serve --workers); several: one server after the other")
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = train(Path(tmp), args)
        rng = np.random.default_rng(0)
        users = [str(u) for u in rng.integers(0, args.users, args.requests)]
        inproc = in_process(model_dir, users[:500], 10)
        recs = [f"/api/users/{u}/recommendations?n=10" for u in users]
        health = ["/healthz"] * args.requests
        runs = {w: measure(model_dir, w, recs, health) for w in args.workers}

    print(f"\nload average at the end (1/5/15 min): {' '.join(f'{x:.1f}' for x in os.getloadavg())} "
          f"on {os.cpu_count()} cores\n")
    print(f"{'what':<34} {'workers':>7} {'clients':>7} {'requests':>8} {'p50 ms':>7} {'p99 ms':>7} {'req/s':>8}   "
          f"target")
    print(row("in process: the endpoint's call", "-", "-", inproc["endpoint"], None, "p50 <= 1 ms"))
    print(row("in process: recommend() DataFrame", "-", "-", inproc["recommend"], None, "(reference)"))
    rec_path = "GET /api/users/{id}/recommendations"
    for w, run in runs.items():
        print(row(rec_path, str(w), "1", *run["recs", 1], "p50 <= 3 ms, p99 <= 10 ms"))
        print(row(rec_path, str(w), "8", *run["recs", 8], ">= 500 req/s, p99 <= 50 ms"))
        print(row("GET /healthz", str(w), "1", *run["health", 1], "(framework ceiling)"))
        print(row("GET /healthz", str(w), "8", *run["health", 8], "(framework ceiling)"))


if __name__ == "__main__":
    main()
