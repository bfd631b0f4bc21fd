"""``latentrec ablation``: the seed's journey on one split — one table of test RMSE, MAE and seconds."""

from __future__ import annotations

from typing import TYPE_CHECKING

from latentrec.atomic import writable_or_fail, write_text
from latentrec.cli.common import (
    add_data_options,
    add_device_option,
    command,
    console,
    emit_json,
    ml100k_fold,
    read,
    seed,
    start,
    table,
)
from latentrec.config import ML100K_SPLITS
from latentrec.errors import ConfigError

if TYPE_CHECKING:
    from latentrec.data.ratings import Ratings

EXAMPLE = """latentrec ablation --data ml-100k --out ablation.md     # rng-42 split: 20 % test
  latentrec ablation --data ml-100k --split u1 --json
  latentrec ablation --data train.csv --test test.csv --only "+ biases" Bayesian"""

COLUMNS = ["step", "model", "solver", "rmse", "mae", "seconds"]


def add_parser(sub) -> None:
    p = command(sub, "ablation", 'Train each step of the journey ("dot product", "+ y_range sigmoid", "+ biases", '
                '"+ weight decay", "without the sigmoid", "without biases", "CollabNN", "ALS", "Bayesian") on one '
                "split and compare them on the test set.", EXAMPLE, run)
    add_data_options(p, required=False, default="ml-100k")
    g = p.add_argument_group("split")
    g.add_argument("--test", help="test file (default: a random --test-pct of --data)")
    g.add_argument("--test-pct", type=float, default=0.2, help="share of --data held out as the test set (default 0.2)")
    g.add_argument("--split", choices=ML100K_SPLITS, help="ML-100K's own split: <split>.base / <split>.test")
    p.add_argument("--only", nargs="+", metavar="STEP", help="run only these steps (names as in the table)")
    p.add_argument("--seed", type=seed, default=42, help="seed of the split and of training (default 42)")
    add_device_option(p)
    p.add_argument("--out", help="also write the table as Markdown to this file")


def split(args) -> tuple[Ratings, Ratings, str]:
    from latentrec.data.ratings import Ratings
    from latentrec.data.split import random_split

    if args.split:
        if args.test:
            raise ConfigError(f"--split {args.split} tests on ML-100K's own {args.split}.test; leave out --test.")
        return *ml100k_fold(args, args.split), f"ML-100K {args.split}.base / {args.split}.test"
    data = read(args, args.data or "ml-100k")
    if args.test:
        test = read(args, args.test)
        return data, test, f"{data.source} / {test.source}"
    if not 0 < args.test_pct < 1:
        raise ConfigError(f"--test-pct must be between 0 and 1, not {args.test_pct}.")
    train, test = random_split(data.df, args.test_pct, args.seed)
    where = f"{data.source}, random {args.test_pct:.0%} test (seed {args.seed})"
    return Ratings(train, data.source, data.titles), Ratings(test, data.source, data.titles), where


def run(args) -> int:
    from latentrec.evaluation.ablation import STEPS, run_ablation, to_markdown

    start(args)
    names = [s.name for s in STEPS]
    unknown = [n for n in args.only or [] if n not in names]
    if unknown:
        raise ConfigError(f"--only: unknown step(s) {', '.join(map(repr, unknown))}; the steps are: "
                          f"{', '.join(map(repr, names))}.")
    steps = [s for s in STEPS if not args.only or s.name in args.only]
    if args.out is not None:
        writable_or_fail(args.out, parents=False)
    train, test, where = split(args)
    if not args.json:
        console.print(f"Ablation on {where}: {len(train.df):,} training, {len(test.df):,} test ratings")
    width = max(len(s.name) for s in steps)
    progress = None if args.json else (lambda r: console.print(f"  {r['step']:<{width}}  test RMSE {r['rmse']:.4f}  "
                                                               f"MAE {r['mae']:.4f}  {r['seconds']:.2f} s"))
    rows = run_ablation(train, test, args.seed, args.device, steps, on_row=progress)
    if args.out is not None:
        write_text(args.out, to_markdown(rows, f"Ablation on {where}"))
    if args.json:
        emit_json({"split": where, "rows": rows, "markdown": args.out})
    else:
        table(None, COLUMNS, [[r[c] for c in COLUMNS] for r in rows], {"rmse": ".4f", "mae": ".4f", "seconds": ".2f"})
        for r in rows:
            if r.get("note"):
                console.print(f"{r['step']}: {r['note']}")
        if args.out:
            console.print(f"Written to {args.out}")
    return 0
