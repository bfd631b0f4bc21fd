"""Top-N quality, fit time and memory of every model on ML-100K, and the ranking models at scale (issue #12).

Quickstart protocol: the rows of ML-100K's ``u.data`` split 80/20 at random exactly as
``latentrec train --data ml-100k`` splits them (``random_split``, seed 42); every model fits on the
80 % as ``latentrec train`` does (the 20 % is its validation set; rating models pick their best
epoch on it), all items are ranked for every test user, the user's training items excluded, and
the lists are scored by ``use/ranking.py``: NDCG@10 and P@10 with test ratings >= 4
relevant, and NDCG@10 with every test item relevant (``evaluate --relevant 1``). Popularity is the
most-rated unrated items. Each model is fit in a child process, so ``peak MB`` is that process's
peak resident memory minus its resident memory just before the fit.

``--splits`` adds the mean over ML-100K's own u1..u5 splits (fit on uN.base, scored on uN.test)
for the ranking models and popularity. The scale part plants 1M ratings of 6,000 users x 3,700
items (``latentrec.data.synth``), fits EASE and iALS on them (seconds, peak MB), times
``recommend`` for one user of each model in process (median of 200 users), and shows the
one-sentence refusal of EASE at 50,000 items.

    LATENTREC_DATA=../shared/data python benchmarks/ranking.py [--only NAME ...] [--splits] [--no-scale]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np

MODELS = {  # name -> TrainConfig options
    "default (bayes + ease)": {},
    "ease": {"model": "ease"},
    "ials": {"model": "ials"},
    "bayes, own order": {"ranker": "none"},
    "sgd, own order": {"solver": "sgd", "ranker": "none"},
    "als, own order": {"solver": "als", "ranker": "none"},
    "nn, own order": {"model": "nn", "ranker": "none"},
}


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def quickstart(name: str) -> dict:
    """Fit one model on the quickstart split and score it (run in a child process)."""
    from latentrec.config import TrainConfig
    from latentrec.data.ratings import load_ratings
    from latentrec.data.split import random_split
    from latentrec.evaluation.evaluate import evaluate
    from latentrec.training.fit import fit

    data = load_ratings("ml-100k")
    rows, held = random_split(data.df, 0.2, 42)
    train, test = replace(data, df=rows), replace(data, df=held, source="the validation rows")
    cfg = TrainConfig(**MODELS[name])
    before = rss_mb()
    t0 = time.perf_counter()
    rec, _ = fit(train, test, cfg)
    seconds = time.perf_counter() - t0
    grown = peak_mb() - before
    liked, every = evaluate(rec, test), evaluate(rec, test, threshold=1.0)
    out = {"name": name, "fit_s": seconds, "peak_mb": grown, "rmse": liked.get("rmse"),
           "ndcg4": liked["ranking"]["model"]["ndcg@10"], "ndcg1": every["ranking"]["model"]["ndcg@10"],
           "p4": liked["ranking"]["model"]["precision@10"]}
    pop = {"ndcg4": liked["ranking"]["popularity"]["ndcg@10"], "ndcg1": every["ranking"]["popularity"]["ndcg@10"],
           "p4": liked["ranking"]["popularity"]["precision@10"]}
    return {"model": out, "popularity": pop}


def splits(name: str) -> dict:
    """Mean NDCG@10 (>= 4 and every item relevant) and P@10 over u1..u5 (run in a child process)."""
    from latentrec.config import TrainConfig
    from latentrec.data.ratings import load_ratings
    from latentrec.data.split import ml100k_split_files
    from latentrec.evaluation.evaluate import evaluate
    from latentrec.training.fit import fit

    scores = []
    for split in ("u1", "u2", "u3", "u4", "u5"):
        base, test_file = ml100k_split_files(split, None)
        rec, _ = fit(load_ratings(base), None, TrainConfig(valid_pct=0.0, **MODELS[name]))
        test = load_ratings(test_file)
        liked, every = evaluate(rec, test, k=10), evaluate(rec, test, k=10, threshold=1.0)
        scores.append([liked["ranking"][w][m] for w in ("model", "popularity")
                       for m in ("ndcg@10", "precision@10")] + [every["ranking"][w]["ndcg@10"]
                                                                for w in ("model", "popularity")])
    s = np.mean(scores, axis=0)
    return {"model": {"ndcg4": s[0], "p4": s[1], "ndcg1": s[4]}, "popularity": {"ndcg4": s[2], "p4": s[3], "ndcg1": s[5]}}


def scale(kind: str) -> dict:
    """Fit EASE or iALS on 1M planted ratings of 6,000 x 3,700 and time recommend (run in a child process)."""
    import pandas as pd
    import torch

    from latentrec.config import TrainConfig
    from latentrec.data.ratings import Ratings
    from latentrec.data.synth import SynthSpec, synth_arrays
    from latentrec.training.fit import fit
    from latentrec.use.topn import recommend

    u, i, r = synth_arrays(SynthSpec(n_ratings=1_000_000, n_users=6_000, n_items=3_700, seed=0))
    df = pd.DataFrame({"user": u.astype(str), "item": i.astype(str), "rating": r})
    data = Ratings(df, "synthetic 1M")
    before = rss_mb()
    t0 = time.perf_counter()
    rec, _ = fit(data, None, TrainConfig(model=kind, valid_pct=0.0))
    seconds = time.perf_counter() - t0
    grown = peak_mb() - before
    users = rec.users.classes[1:201]
    recommend(rec, users[0], 10)  # warm-up
    times = []
    for user in users:
        t = time.perf_counter()
        recommend(rec, user, 10)
        times.append(time.perf_counter() - t)
    return {"kind": kind, "fit_s": seconds, "peak_mb": grown, "recommend_ms": 1000 * float(np.median(times)),
            "n_users": len(rec.users) - 1, "n_items": len(rec.items) - 1, "threads": torch.get_num_threads()}


def child(task: str, arg: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", task, arg], capture_output=True, text=True, check=False)
    if out.returncode:
        raise SystemExit(f"{task} {arg} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="+", choices=list(MODELS), help="models of the quickstart table")
    p.add_argument("--splits", action="store_true", help="also the mean over ML-100K's u1..u5 (ease, ials)")
    p.add_argument("--no-scale", action="store_true", help="skip the 1M-rating scale part")
    p.add_argument("--scale-only", action="store_true", help="only the 1M-rating scale part")
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        task, arg = args.child
        print(json.dumps({"quickstart": quickstart, "splits": splits, "scale": scale}[task](arg)))
        return

    if not args.scale_only:
        quickstart_table(args)
    if not args.no_scale:
        scale_table()


def quickstart_table(args: argparse.Namespace) -> None:
    print("ML-100K quickstart split (random 80/20 of u.data, seed 42; all items ranked, training items excluded)\n")
    print("| model | NDCG@10, >= 4 relevant | NDCG@10, every test item relevant | P@10 (>= 4) | RMSE | fit s | peak MB |")
    print("|---|---|---|---|---|---|---|")
    pop = None
    for name in args.only or MODELS:
        r = child("quickstart", name)
        m, pop = r["model"], r["popularity"]
        rmse = f"{m['rmse']:.4f}" if m["rmse"] is not None else "-"
        print(f"| {name} | {m['ndcg4']:.3f} | {m['ndcg1']:.3f} | {m['p4']:.3f} | {rmse} | {m['fit_s']:.2f} | "
              f"{m['peak_mb']:.0f} |", flush=True)
    print(f"| most popular unrated items | {pop['ndcg4']:.3f} | {pop['ndcg1']:.3f} | {pop['p4']:.3f} | - | - | - |")

    if args.splits:
        print("\nMean over ML-100K's u1..u5 (fit on uN.base, scored on uN.test)\n")
        print("| model | NDCG@10, >= 4 | NDCG@10, every item | P@10 (>= 4) |")
        print("|---|---|---|---|")
        for name in ("ease", "ials"):
            r = child("splits", name)
            m, pop = r["model"], r["popularity"]
            print(f"| {name} | {m['ndcg4']:.3f} | {m['ndcg1']:.3f} | {m['p4']:.3f} |", flush=True)
        print(f"| most popular unrated items | {pop['ndcg4']:.3f} | {pop['ndcg1']:.3f} | {pop['p4']:.3f} |")



def scale_table() -> None:
    print("\nScale: 1M planted ratings, 6,000 users x 3,700 items (latentrec.data.synth, seed 0)\n")
    print("| model | fit s | peak MB | recommend, one user (median ms) |")
    print("|---|---|---|---|")
    for kind in ("ease", "ials"):
        r = child("scale", kind)
        print(f"| {kind} | {r['fit_s']:.2f} | {r['peak_mb']:.0f} | {r['recommend_ms']:.2f} |", flush=True)
    from latentrec.errors import ConfigError
    from latentrec.training.rankers import check_ease_fits

    try:
        check_ease_fits(50_001)
        print("\nEASE at 50,000 items: accepted (this machine's budget allows it)")
    except ConfigError as e:
        print(f"\nEASE at 50,000 items: refused before any allocation: {e}")


if __name__ == "__main__":
    main()
