"""``latentrec synth``: write planted low-rank ratings (Parquet or CSV), in chunks."""

from __future__ import annotations

import argparse
import time

from latentrec.cli.common import command, console, emit_json, seed

EXAMPLE = """latentrec synth --ratings 10000000 --users 200000 --items 50000 --out ratings.parquet
  latentrec synth --ratings 100000 --users 1000 --items 500 --factors 4 --noise 0.3 --out small.csv --json"""


def add_parser(sub) -> None:
    p = command(sub, "synth", "Write synthetic ratings: planted low-rank factors, power-law popularity.", EXAMPLE, run)
    p.add_argument("--ratings", type=int, required=True, help="number of ratings")
    p.add_argument("--users", type=int, required=True, help="number of users")
    p.add_argument("--items", type=int, required=True, help="number of items")
    p.add_argument("--factors", type=int, default=8, help="rank of the planted factors (default 8)")
    p.add_argument("--noise", type=float, default=0.5, help="std of the Gaussian rating noise (default 0.5)")
    p.add_argument("--alpha", type=float, default=0.8,
                   help="power-law exponent of item popularity; users get alpha/2 (default 0.8)")
    p.add_argument("--scale", type=float, nargs=2, default=(1.0, 5.0), metavar=("LOW", "HIGH"),
                   help="ratings are clipped to this range (default 1 5)")
    p.add_argument("--seed", type=seed, default=0, help="seed of the factors, ratings and noise (default 0)")
    p.add_argument("--out", required=True, help="output file: .parquet, .pq or .csv")


def run(args: argparse.Namespace) -> int:
    from latentrec.data.synth import SynthSpec, write_synth

    spec = SynthSpec(args.ratings, args.users, args.items, args.factors, args.noise, args.alpha,
                     tuple(args.scale), args.seed)
    t0 = time.perf_counter()
    info = write_synth(spec, args.out)
    info["seconds"] = time.perf_counter() - t0
    if args.json:
        emit_json(info)
    else:
        console.print(f"Wrote {info['n_ratings']:,} ratings ({info['n_users']:,} users x {info['n_items']:,} items, "
                      f"rank {info['n_factors']}, noise {info['noise']}) to {info['out']} "
                      f"({info['bytes'] / 1e6:.1f} MB, {info['seconds']:.1f} s).")
    return 0
