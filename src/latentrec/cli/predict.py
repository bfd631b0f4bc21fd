"""``latentrec predict``: predicted ratings for one pair or for every row of a file."""

from __future__ import annotations

from pathlib import Path

from latentrec.atomic import writable_or_fail
from latentrec.cli.common import (
    add_data_options,
    command,
    console,
    emit_json,
    plural,
    reading,
    start,
    stderr,
    table,
    with_model_columns,
)
from latentrec.errors import ConfigError

SHOWN = 50  # rows of a --data file's predictions printed without --out

EXAMPLE = """latentrec predict model --user 196 --item 242
  latentrec predict model --data pairs.csv --out preds.csv"""


def add_parser(sub) -> None:
    p = command(sub, "predict", "Predict ratings with a saved model (unknown ids get a flagged fallback).",
                EXAMPLE, run)
    p.add_argument("model_dir", help="model directory written by `latentrec train`")
    p.add_argument("--user", help="raw user id")
    p.add_argument("--item", help="raw item id")
    add_data_options(p, required=False, pairs=True)
    p.add_argument("--out", help="CSV, TSV or Parquet file (by suffix) for the predictions of --data")


def run(args) -> int:
    from latentrec.use.recommender import Recommender
    from latentrec.use.records import records
    from latentrec.use.topn import table_format, write_table

    start(args)
    if (args.data is None) != (args.user is not None and args.item is not None):
        raise ConfigError("Give --user and --item, or --data FILE (with --out) for many rows.")
    if args.out is not None:
        table_format(args.out)
        writable_or_fail(Path(args.out), parents=False)
    rec = Recommender.load(args.model_dir)
    rec.require_ratings()
    if args.data is not None:
        preds = with_model_columns(args, rec.info.get("columns", {}), lambda: _predict_file(rec, args))
        if len(preds) and not (preds.known_user.any() or preds.known_item.any()):
            apart = same_number(rec.users.classes[1:], preds["user"]) or same_number(rec.items.classes[1:],
                                                                                    preds["item"])
            stderr(f"None of the users or items in {args.data} is known to the model; " + (
                f"ids are matched as text, and the model's {apart[0]!r} is written {apart[1]!r} there." if apart else
                "if its columns are in another order, name them with --user-col and --item-col (a header's name, or "
                "a position: 1, 2, ...)."))
    else:
        preds = rec.predict([args.user], [args.item])
    if args.out is not None:
        write_table(preds, args.out)
        n_fallback = int((~preds.known).sum())
        summary = {"out": args.out, "n_rows": len(preds), "n_fallback": n_fallback}
        emit_json(summary) if args.json else console.print(
            f"Wrote {plural(len(preds), 'prediction')} to {args.out} ({n_fallback:,} used the unknown-id fallback).")
    elif args.json:
        emit_json(records(preds) if args.data is not None else records(preds)[0])
    else:
        table(None, list(preds.columns), preds.head(SHOWN).itertuples(index=False), {"prediction": ".3f"})
        if len(preds) > SHOWN:
            console.print(f"Showing {SHOWN} of {plural(len(preds), 'prediction')}; --out FILE.csv|.parquet writes "
                          f"them all.")
    return 0


def same_number(known: list[str], given, sample: int = 10_000) -> tuple[str, str] | None:
    """A known id and a given one that are one number written two ways (``7.0`` and ``7``), from a sample of each."""
    def numbers(ids) -> dict[float, str]:
        out = {}
        for text in map(str, list(ids)[:sample]):
            try:
                out.setdefault(float(text), text)
            except ValueError:
                continue
        return out

    mine, theirs = numbers(known), numbers(given)
    both = (v for v in theirs if v in mine and mine[v] != theirs[v])
    value = next(both, None)
    return None if value is None else (mine[value], theirs[value])


def _predict_file(rec, args):
    """Predictions for every row of --data: a big file with integer ids is read lean (``lean.read_rows``)."""
    import numpy as np
    import pandas as pd

    from latentrec.data.lean import read_rows
    from latentrec.data.ratings import load_pairs
    from latentrec.data.vocab import all_whole

    with reading(args.data):
        rows = read_rows(args.data, {"user": args.user_col, "item": args.item_col}, pairs=True)
        pairs = None if rows is not None else load_pairs(args.data, user_col=args.user_col, item_col=args.item_col,
                                                         data_dir=args.data_dir)
    if rows is not None:
        preds = rec.predict_coded(rows.users, rows.user_ids, rows.items, rows.item_ids)
    else:
        preds = rec.predict(pairs["user"].to_numpy(), pairs["item"].to_numpy())
    for column in ("user", "item"):  # whole-number ids come back as integers, as recommend --all-users writes them
        codes, ids = pd.factorize(preds[column])
        if all_whole(ids):
            preds[column] = ids.astype(np.int64)[codes]
    return preds
