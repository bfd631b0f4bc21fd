"""``latentrec bench``: training and inference speed per device, solver and batch size."""

from __future__ import annotations

import argparse
import math
from typing import TYPE_CHECKING

from latentrec.cli.common import add_data_options, command, console, cores, emit_json, plural, read, seed, start, table
from latentrec.errors import ConfigError, DataError

if TYPE_CHECKING:
    from latentrec.data.batches import Encoded

EXAMPLE = """latentrec bench                                   # 1M synthetic ratings, every available device
  latentrec bench --data ml-100k --epochs 10 --json
  latentrec bench --ratings 10000000 --users 200000 --items 50000 --devices cpu --batch-sizes 4096 65536"""

VALID_PCT = 0.1  # the rows held out to measure RMSE
COLUMNS = ["device", "solver", "bs", "train M/s", "s to target", "best rmse", "scores M/s", "peak MB"]


def add_parser(sub) -> None:
    p = command(sub, "bench", "Measure training and inference speed on every available device.", EXAMPLE, run)
    add_data_options(p, required=False)
    g = p.add_argument_group("synthetic data (used when --data is not given)")
    g.add_argument("--ratings", type=int, help=f"planted ratings (default {SYNTH['ratings']:,})")
    g.add_argument("--users", type=int, help=f"users (default {SYNTH['users']:,})")
    g.add_argument("--items", type=int, help=f"items (default {SYNTH['items']:,})")
    b = p.add_argument_group("what to measure")
    b.add_argument("--devices", nargs="+", help="devices to try (default: every available one)")
    b.add_argument("--batch-sizes", type=int, nargs="+", default=[1024, 16384],
                   help="batch sizes for the batched paths (default 1024 16384)")
    b.add_argument("--n-factors", type=int, default=64, help="latent factors (default 64)")
    b.add_argument("--epochs", type=int, default=5, help="epochs of each run (default 5)")
    b.add_argument("--target", type=float, help="validation RMSE target (default: the median of the runs' best)")
    b.add_argument("--threads", type=int, help="CPU threads (default: all cores)")
    b.add_argument("--seed", type=seed, default=0, help="seed of the data and of training (default 0)")


SYNTH = {"ratings": 1_000_000, "users": 20_000, "items": 5_000}  # the synthetic data's size by default


def _data(args) -> tuple[Encoded, Encoded, int, int, tuple[float, float], str]:
    """The training and validation rows: ``--data`` goes through train's own checks and split."""
    from latentrec.models.dot import default_y_range

    sized = [f"--{name}" for name in SYNTH if getattr(args, name) is not None]
    if args.data and sized:
        raise ConfigError(f"{', '.join(sized)} set{'s' * (len(sized) == 1)} the size of synthetic data; --data "
                          f"{args.data} is measured as it is (give one or the other).")
    for name, default in SYNTH.items():
        setattr(args, name, default if getattr(args, name) is None else getattr(args, name))
    if args.data:
        from latentrec.config import TrainConfig
        from latentrec.training.fit import training_rows

        cfg = TrainConfig(valid_pct=VALID_PCT, seed=args.seed)
        users, items, train, valid = training_rows(read(args, args.data), None, cfg)
        n_users, n_items, name = len(users), len(items), args.data
    else:
        from latentrec.data.batches import Encoded
        from latentrec.data.split import random_indices
        from latentrec.data.synth import SynthSpec, synth_arrays

        if min(args.ratings, args.users, args.items) < 1:
            raise ConfigError("--ratings, --users and --items must be at least 1.")
        u, i, r = synth_arrays(SynthSpec(args.ratings, args.users, args.items, seed=args.seed))
        enc = Encoded(u + 1, i + 1, r)  # row 0 stays the unknown id
        train, valid = map(enc.take, random_indices(len(enc), VALID_PCT, args.seed))
        n_users, n_items = args.users + 1, args.items + 1
        name = f"synthetic {args.ratings:,} ratings"
    if valid is None or not len(valid):
        raise DataError(f"{name}: holding out {VALID_PCT:.0%} of its ratings leaves no validation rows to measure "
                        f"RMSE on; give more ratings.")
    return train, valid, n_users, n_items, default_y_range(float(train.ratings.min()), float(train.ratings.max())), name


def run(args: argparse.Namespace) -> int:
    import torch

    from latentrec.devices import available
    from latentrec.evaluation.bench import default_setups, run_setup, seconds_to_target

    start(args)
    if args.threads is not None:
        if not 1 <= args.threads <= cores():  # more threads than cores only measure their contention
            raise ConfigError(f"--threads must be between 1 and {cores()} (the cores here), not {args.threads}.")
        from latentrec.parallel import limit_threads

        limit_threads(args.threads)
    devices = args.devices or available()
    for d in devices:
        if d not in available():
            raise ConfigError(f"--devices: {d!r} is not available here (available: {', '.join(available())}).")
    if args.epochs < 1 or args.n_factors < 1 or min(args.batch_sizes) < 1:
        raise ConfigError("--epochs, --n-factors and --batch-sizes must be at least 1.")
    if args.target is not None and not 0 < args.target < math.inf:
        raise ConfigError(f"--target must be a positive finite RMSE, not {args.target}.")
    train, valid, n_users, n_items, y_range, name = _data(args)
    rows = []
    for setup in default_setups(devices, args.batch_sizes):
        if not args.json:
            console.print(f"{setup.device} {setup.name} ...", style="dim")
        rows.append(run_setup(setup, train, valid, n_users, n_items, y_range, args.n_factors, args.epochs, args.seed))
    target = seconds_to_target(rows, args.target)
    result = {"data": name, "n_train": len(train), "n_valid": len(valid), "n_factors": args.n_factors,
              "epochs": args.epochs, "target_rmse": target, "threads": torch.get_num_threads(), "runs": rows,
              "fastest": _fastest(rows), "most_accurate": _most_accurate(rows)}
    if args.json:
        emit_json(result)
        return 0
    cells = []
    for r in rows:
        if "diverged" in r:
            cells.append([r["device"], r["solver"], r["bs"], "diverged", "-", "-", "-", "-"])
            continue
        stt = r["seconds_to_target"]
        cells.append([r["device"], r["solver"], r.get("batch", r["bs"]), r["ratings_per_s"] / 1e6, "-" if stt is None else stt,
                      r["best_valid_rmse"], r["scores_per_s"] / 1e6, r["peak_mb"]])
    table(f"{name}: {len(train):,} train / {len(valid):,} valid ratings, k={args.n_factors}, "
          f"{args.epochs} epochs, target RMSE {target:.4f}"
          + (" (the median of the runs' best; --target sets one)" if args.target is None else ""), COLUMNS, cells,
          {"train M/s": ".2f", "s to target": ".2f", "best rmse": ".4f", "scores M/s": ".1f", "peak MB": ".0f"})
    console.print("train M/s: million training ratings a second; s to target: seconds of training until the "
                  "validation RMSE reaches the target; best rmse: the lowest validation RMSE; scores M/s: million "
                  "user x item scores a second for top-N lists; peak MB: the process's peak memory (a GPU's: "
                  "allocated on it).", style="dim", soft_wrap=True)
    for what, (dev, label) in result["fastest"].items():
        console.print(f"Fastest {what}: {dev} ({label}).")
    if result["most_accurate"]:
        dev, label = result["most_accurate"]
        console.print(f"Most accurate after {plural(args.epochs, 'epoch')}: {dev} ({label}).")
    return 0


def _fastest(rows: list[dict]) -> dict:
    ok = [r for r in rows if "ratings_per_s" in r]
    if not ok:
        return {}
    reached = [r for r in ok if r["seconds_to_target"] is not None]
    if reached:  # the quickest to a good model, not the most ratings/s of one that never gets there
        train = min(reached, key=lambda r: r["seconds_to_target"])
        how = f", {train['seconds_to_target']:.2f} s to the target RMSE"
    else:
        train = max(ok, key=lambda r: r["ratings_per_s"])
        how = ", the most ratings/s: no run reached the target RMSE"
    infer = max(ok, key=lambda r: r["scores_per_s"])
    return {"training": (train["device"], _label(train) + how),
            "inference": (infer["device"], f"{infer['scores_per_s'] / 1e6:.0f}M scores/s")}


def _most_accurate(rows: list[dict]) -> tuple[str, str] | None:
    """The run with the lowest validation RMSE: the target (the median by default) may hide who gets further."""
    ok = [r for r in rows if "best_valid_rmse" in r]
    if not ok:
        return None
    best = min(ok, key=lambda r: r["best_valid_rmse"])
    return best["device"], (f"{_label(best)}, validation RMSE {best['best_valid_rmse']:.4f} in "
                            f"{best['curve'][-1][0]:.2f} s of training")


def _label(row: dict) -> str:
    batch = row.get("batch", row["bs"])
    return row["solver"] + (f", batches of {batch:,}" if batch > 1 else "")
