"""Options and output shared by the commands."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table
from rich.text import Text

from latentrec import progress
from latentrec.cli.jsonsafe import json_safe
from latentrec.config import DUPLICATE_POLICIES, SEED_MAX

if TYPE_CHECKING:  # the parser is built without pandas and torch; the commands import them when they run
    from latentrec.data.lean import EncodedSplit
    from latentrec.data.ratings import Ratings

console = Console(highlight=False, markup=False, width=None if sys.stdout.isatty() else 120)  # user text as is


def command(sub, name: str, help: str, example: str, run) -> argparse.ArgumentParser:
    """Register a subcommand whose --help ends with an example."""
    p = sub.add_parser(name, help=help, description=help, epilog=f"Example:\n  {example}",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(run=run, _parser=p)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    return p


def seed(text: str) -> int:
    """The argparse type of ``--seed``: a whole number that numpy and optuna take."""
    value = int(text)
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"must be a whole number from 0 to {SEED_MAX}, not {text}")
    return value


def count(text: str) -> int:
    """The argparse type of a count that may be zero (``--min-ratings``)."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be zero or more, not {text}")
    return value


def finite(text: str) -> float:
    """The argparse type of a number that must be finite (NaN and infinity refused)."""
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, not {text}")
    return value


def add_device_option(group) -> None:
    """``--device``, as every training command takes it."""
    group.add_argument("--device", default="auto", help="auto (default: CUDA, else MPS, else the CPU), cpu, cuda "
                       "(cuda:N) or mps")


def add_data_options(p: argparse.ArgumentParser, required: bool = True, default: str | None = None,
                     pairs: bool = False) -> None:
    """--data and the options that say how to read it; ``default``: the dataset used when --data is left out;
    ``pairs``: (user, item) rows to predict, with no rating to read and pairs that may repeat."""
    p.add_argument("--data", required=required,
                   help="dataset name (ml-100k, ml-1m, ml-latest-small) or a CSV/TSV/Parquet file"
                        + (f" (default: {default})" if default else ""))
    p.add_argument("--user-col", help="user column, by name or position (1 is the first; default: user, userId, ...; "
                   "a headerless file's 1st)")
    p.add_argument("--item-col", help="item column, by name or position (default: item, movieId, ...; or the 2nd)")
    if not pairs:
        p.add_argument("--rating-col", help="rating column, by name or position (default: rating, score, ...; or "
                       "the 3rd)")
        p.add_argument("--duplicates", choices=DUPLICATE_POLICIES, default="error",
                       help="what to do with a (user, item) pair rated twice (default: error)")
    p.add_argument("--data-dir", help="folder holding the named datasets (default: $LATENTREC_DATA or ~/.cache/latentrec)")


def reading(source) -> AbstractContextManager:
    """A spinner while a file is read, to a person at a terminal (a named dataset shows its download bar instead)."""
    return progress.status(f"Reading {source}") if Path(str(source)).is_file() else nullcontext()


def read(args, source) -> Ratings:
    from latentrec.data.ratings import load_ratings

    with reading(source):
        return load_ratings(source, user_col=args.user_col, item_col=args.item_col, rating_col=args.rating_col,
                            duplicates=args.duplicates, data_dir=args.data_dir)


def ml100k_fold(args, name: str) -> tuple[Ratings, Ratings]:
    """ML-100K's own ``name``.base (with the movie titles) and ``name``.test, read (``--split``)."""
    from latentrec.data.ratings import read_titles
    from latentrec.data.split import ml100k_split_files

    base, test = ml100k_split_files(name, args.data_dir, args.data)
    train = read(args, base)
    train.titles = read_titles(Path(base).parent / "u.item")  # so outputs show titles
    return train, read(args, test)


def with_model_columns(args, remembered: dict[str, str], read):
    """``read()``; where it finds no column for a role by name (or several) and no flag named one, ``read()`` again
    with the column ``remembered`` for that role (the columns a model was trained from: a model trained with
    --rating-col stars scores another file with a stars column, no flag needed), a role at a time. Where that
    column is not there either, the sentence about the role stands."""
    from latentrec.errors import ColumnNotFound

    first: dict[str, ColumnNotFound] = {}
    while True:
        try:
            return read()
        except ColumnNotFound as e:
            if e.role in first:  # the remembered column is missing too
                raise first[e.role] from None
            if getattr(args, f"{e.role}_col", None) is not None or e.role not in remembered:
                raise
            first[e.role] = e
            setattr(args, f"{e.role}_col", remembered[e.role])


def read_scored(args, source):
    """Rows for a model to score: a big file with integer ids read lean (12 bytes a rating, ``lean.read_rows``;
    ``Recommender.encode_rows`` encodes them), else the file's ratings as ``read`` gives them."""
    from latentrec.data.lean import read_rows

    cols = {"user": args.user_col, "item": args.item_col, "rating": args.rating_col}
    with reading(source):
        return read_rows(source, cols, args.duplicates) or read(args, source)


def read_big(args, source, valid_pct: float, seed: int | None) -> EncodedSplit | None:
    """A big file with integer ids, read, split and encoded at 12 bytes a rating (``data/lean.py``); else None.
    Under torchrun each rank parses its part of the file and the ranks join the parts."""
    from latentrec.data.lean import read_split
    from latentrec.solvers import distributed

    share = None
    if distributed.active():
        from latentrec.devices import pick_device

        distributed.init(distributed.local_device(pick_device(args.device)))
        share = distributed.file_share()
    cols = {"user": args.user_col, "item": args.item_col, "rating": args.rating_col}
    with reading(source):
        return read_split(source, cols, args.duplicates, valid_pct, seed, share=share)


def start(args) -> None:
    """Silence progress bars when the output is for a machine, and on every torchrun rank but the first (they
    share its terminal)."""
    progress.set_enabled(not getattr(args, "json", False) and os.environ.get("RANK", "0") == "0")


def emit_json(obj) -> None:
    print(json.dumps(json_safe(obj), indent=1))


def table(title: str | None, columns: list[str], rows, formats: dict | None = None) -> None:
    """Print rows as a table under ``title`` (wrapped at the terminal's width, not the table's); ``formats`` maps a
    column to a format spec like ``.4f``. A ``title`` column with no title in it (data without titles) is left out."""
    formats = formats or {}
    rows = list(rows)
    if "title" in columns and not any(row[columns.index("title")] for row in rows):
        keep = [n for n, c in enumerate(columns) if c != "title"]
        columns, rows = [columns[n] for n in keep], [[row[n] for n in keep] for row in rows]
    if title:
        console.print(title, style="italic")
    t = Table(show_edge=False, pad_edge=False)
    for c in columns:
        t.add_column(c, justify="right" if c not in ("title", "item", "user", "model", "data") else "left")
    for row in rows:  # cells are data (titles, ids): Text, so a '[' in them is shown, not read as markup
        t.add_row(*[Text(format(v, formats[c]) if c in formats and isinstance(v, (int, float)) else str(v))
                    for c, v in zip(columns, row)])
    console.print(t)


def ordered_by(kind: str) -> str:
    """How a list's title names the ranker of ``kind`` that ordered it ("ordered by ease", "... by popularity")."""
    return {"popular": "popularity"}.get(kind, kind)


def cores() -> int:
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def plural(n: int, noun: str) -> str:
    """``1 rating``, ``2 ratings``."""
    return f"{n:,} {noun}{'s' * (n != 1)}"


def stderr(msg: str) -> None:
    print(msg, file=sys.stderr)
