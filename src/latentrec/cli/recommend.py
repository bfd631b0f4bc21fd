"""``latentrec recommend``: top-N items for a user, a cold-start user, or every user to a file."""

from __future__ import annotations

from pathlib import Path

from latentrec import progress
from latentrec.atomic import writable_or_fail
from latentrec.cli.common import command, console, count, emit_json, ordered_by, plural, start, stderr, table
from latentrec.config import MIN_RATINGS
from latentrec.errors import ConfigError

EXAMPLE = """latentrec recommend model --user 196 -n 10
  latentrec recommend model --user 196 --exclude 50,181     # not these items
  latentrec recommend model --ratings "50:5,181:4,1:2"      # a new user, folded in
  latentrec recommend model --all-users --out top10.parquet"""


def add_parser(sub) -> None:
    p = command(sub, "recommend", "Top-N items a user has not rated, ordered by the model's ranker (or by predicted "
                "rating when it has none).", EXAMPLE, run)
    p.add_argument("model_dir", help="model directory written by `latentrec train`")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="raw user id (an unknown id gets the non-personalized ranking)")
    who.add_argument("--ratings", help='a new user\'s ratings as "ITEM:RATING,ITEM:RATING", folded in without retraining')
    who.add_argument("--ratings-file", help="a CSV/TSV/Parquet file of one user's ratings (item and rating columns, by "
                     "name or headerless item,rating), folded in")
    who.add_argument("--all-users", action="store_true", help="top-N for every known user, written to --out")
    p.add_argument("-n", type=int, default=10, help="how many items (default 10)")
    p.add_argument("--include-rated", action="store_true", help="keep items the user rated in training")
    p.add_argument("--exclude", metavar="ITEMS", help='items the list must not hold, as "ID,ID,..." (ids the model '
                   "does not know are ignored)")
    p.add_argument("--min-ratings", type=count,
                   help=f"an unknown user gets the most-rated items with at least this many ratings (default "
                        f"{MIN_RATINGS}, or fewer where fewer than -n items have that many)")
    p.add_argument("--out", help="CSV, TSV or Parquet file (by suffix) for --all-users")


def run(args) -> int:
    from latentrec.use.coldstart import can_fold_in, folds_in, ignored_items, parse_ratings, read_user_ratings
    from latentrec.use.recommender import Recommender
    from latentrec.use.records import records
    from latentrec.use.topn import excluded, least_ratings, recommend, recommend_all, table_format, write_table

    start(args)
    if args.all_users != (args.out is not None):
        raise ConfigError("--all-users and --out go together: --all-users --out FILE.csv|.parquet.")
    if args.all_users and args.exclude:
        raise ConfigError("--exclude shapes one user's list; --all-users writes every user's whole list.")
    if args.out is not None:  # before the work, not after it
        table_format(args.out)
        writable_or_fail(Path(args.out), parents=False)
    rec = Recommender.load(args.model_dir)
    if args.all_users:
        with progress.step_progress("Ranking every user", len(rec.users) - 1) as advance:
            df = recommend_all(rec, args.n, args.include_rated, done=advance)
        write_table(df, args.out)
        summary = {"out": args.out, "n_users": int(df["user"].nunique()), "n_rows": len(df)}
        emit_json(summary) if args.json else console.print(
            f"Wrote top-{args.n} for {summary['n_users']:,} users ({summary['n_rows']:,} rows) to {args.out}.")
        return 0
    given = None
    if args.ratings is not None:
        given = parse_ratings(args.ratings, "--ratings")
    elif args.ratings_file is not None:
        given = read_user_ratings(args.ratings_file)
    exclude = [i.strip() for i in args.exclude.split(",") if i.strip()] if args.exclude else []
    skip = excluded(rec, exclude)
    unknown = ignored_items(rec, exclude)
    if unknown and not args.json:
        stderr(f"latentrec recommend: --exclude names {plural(len(unknown), 'item')} the model does not know: "
               f"{', '.join(unknown[:5])}{', ...' * (len(unknown) > 5)} (ids are separated by commas)")
    top = recommend(rec, args.user, args.n, args.include_rated, args.min_ratings, ratings=given, exclude=exclude)
    ignored = ignored_items(rec, given.items) if given is not None else []
    folded = given is not None and folds_in(rec, given)
    if args.json:
        emit_json({"user": args.user, "known": folded or args.user in rec.users, "folded_in": folded,  # as the API:
                   "ignored": ignored_items(rec, [*(given.items if given else []), *exclude]),  # --exclude's too
                   "recommendations": records(top, drop=("known",))})
        return 0
    if ignored:
        stderr(f"latentrec recommend: left out {plural(len(ignored), 'rated item')} the model does not know: "
               f"{', '.join(ignored)}")
    popular = getattr(rec.ranker, "kind", None) == "popular"
    if folded:
        used = len(given.items) - len(ignored)
        who = (f"a new user with {plural(used, 'rating')}: the most-rated items they have not rated" if popular
               else f"a new user folded in from {plural(used, 'rating')}")
    elif given is not None:
        why = "no rated item the model knows" if can_fold_in(rec) else \
            f"ratings the {rec.model.kind} model cannot fold in (it has no implicit part)"
        who = f"a new user with {why}: not personalized, the most-rated items " \
              f"(>= {least_ratings(rec, args.min_ratings, args.n, skip)} ratings)"
    elif args.user in rec.users:
        who = f"user {args.user}"
    else:
        who = (f"unknown user {args.user}: not personalized, the most-rated items "
               f"(>= {least_ratings(rec, args.min_ratings, args.n, skip)} ratings)")
    predicted = rec.model is not None and bool(top["prediction"].notna().any())
    cols = ["rank", "item", "title"] + (["prediction"] if predicted else [])
    ranked = rec.ranker is not None and (args.user in rec.users or folded and not popular)
    how = f", ordered by {ordered_by(rec.ranker.kind)}" if ranked else ""
    if folded and not popular and getattr(rec.model, "implicit", None) is False:
        how += f" (the {rec.model.kind} model has no implicit part to fold a new user into: the predicted ratings " \
               f"are the unknown user's)"
    if top.empty:  # the user rated every item the model knows
        console.print(f"Nothing to recommend for {who}: every item the model knows is rated (--include-rated lists "
                      f"them).")
        return 0
    table(f"Top {min(args.n, len(top))} for {who}{how}", cols, top[cols].itertuples(index=False), {"prediction": ".2f"})
    return 0
