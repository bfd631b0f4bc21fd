"""``latentrec evaluate``: RMSE and MAE of a saved model next to its baselines, and its top-k ranking next to popularity."""

from __future__ import annotations

from latentrec.cli.common import (
    add_data_options,
    command,
    console,
    emit_json,
    finite,
    ordered_by,
    plural,
    read_scored,
    start,
    table,
    with_model_columns,
)

EXAMPLE = """latentrec evaluate model --data test.csv                  # RMSE/MAE and top-10 metrics, next to baselines
  latentrec evaluate m-u1 --data ml-100k/u1.test --json     # a file inside a dataset; one JSON object
  latentrec evaluate model --data test.csv --relevant 1     # every test item counts as relevant
  latentrec evaluate model --data test.csv --metrics rmse   # rating accuracy only"""


def add_parser(sub) -> None:
    p = command(sub, "evaluate", "Score a saved model on a ratings file, next to baselines.", EXAMPLE, run)
    p.add_argument("model_dir", help="model directory written by `latentrec train`")
    add_data_options(p)
    p.add_argument("-k", "--k", type=int, default=10, help="length of the top-k lists for ranking metrics (default 10)")
    p.add_argument("--relevant", type=finite, metavar="RATING",
                   help="a test rating at least this high marks a relevant item (default: three quarters up the "
                        "model's rating scale, 4 on 1-5; the scale's bottom: every test item)")
    p.add_argument("--metrics", choices=["all", "rmse", "ranking"], default="all",
                   help="all (default): RMSE/MAE when the model predicts ratings, and top-k ranking; rmse or ranking alone")


def print_evaluation(r: dict, ranking_asked: bool = False) -> None:
    """The evaluation's tables; ``ranking_asked``: ``--metrics ranking`` left RMSE out (else the model has none)."""
    if "rmse" not in r:
        what = "ranking metrics, as asked" if ranking_asked else "a ranking-only model, so no RMSE; ranking metrics only"
        console.print(f"Evaluation on {r['data']} ({plural(r['n'], 'rating')}): {what}.")
        print_notes(r)
        if "ranking" in r:
            print_ranking(r["ranking"])
        return
    rows = [("model", r["rmse"], r["mae"], "")]
    for name, b in r["baselines"].items():
        rows.append((f"baseline: {name.replace('_', ' ')}", b["rmse"], b["mae"], f"{r['improvement_pct'][name]:+.1f}%"))
    table(f"Evaluation on {r['data']} ({plural(r['n'], 'rating')}, {r['n_unknown']:,} with an unknown user or item)",
          ["model", "rmse", "mae", "model's rmse gain"], rows, {"rmse": ".4f", "mae": ".4f"})
    console.print(f"Ratings' standard deviation: {r['ratings_std']:.4f} (what always guessing the mean scores)")
    if r["n_unknown"] == r["n"]:
        console.print("Note: every one of these ratings has a user or an item the model does not know, so the model "
                      "and the baselines all answer with their fallbacks: these figures say nothing about the model.")
    elif r["improvement_pct"]["biases"] < 0:
        console.print("Note: the model predicts these ratings worse than the user + item biases baseline: its recipe "
                      "may not suit these data (`latentrec tune` searches one on them).")
    print_notes(r)
    if "ranking" in r:
        print_ranking(r["ranking"])


def print_notes(r: dict) -> None:
    """What makes the figures less than they seem: pairs the model was built from, ratings off its scale."""
    if r["n_seen"]:
        said = ["scores on them say little about new data"] if "rmse" in r else []
        if "ranking" in r:
            said.append("the ranking leaves them out" + (" (so no user has a pair left to rank)"
                                                         if r["n_seen"] == r["n"] else ""))
        console.print(f"Note: {r['n_seen']:,} of these {r['n']:,} pairs were in the data the model was built from "
                      f"(rows it trained on or held out for validation): {', and '.join(said)}.")
    if r.get("valid_rows"):
        console.print("Note: these are the validation rows the model was fit with (they chose its best epoch and "
                      "ranker): its figures on them are optimistic; score a file it never saw.")
    if r["n_off_scale"] and "rmse" in r:
        lo, hi = r["scale"]
        off = r["n_off_scale"]
        console.print(f"Note: {plural(off, 'rating')} lie{'s' * (off == 1)} outside the model's scale {lo:g} to "
                      f"{hi:g} (its training ratings' range); its predictions stay within it.")


def print_ranking(g: dict) -> None:
    k = g["k"]
    if not g["n_users"]:
        unknown = f" ({plural(g['n_unknown_users'], 'unknown test user')}, not ranked)" * bool(g["n_unknown_users"])
        console.print(f"\nNo top-{k} ranking: no known user has a test rating >= {g['threshold']:g} of an item "
                      f"outside their training items{unknown}.")
        return
    cols = [f"precision@{k}", f"recall@{k}", f"ndcg@{k}", "hit_rate", "coverage"]
    rows = [(name, *[g[name][c] for c in cols]) for name in ("model", "popularity")]
    who = (f"a seeded sample of {g['n_users']:,} of the {g['n_users_eligible']:,}"
           if g["n_users"] < g["n_users_eligible"] else f"{g['n_users']:,}")
    lists = "" if g["ordered_by"] == "model" else f"; lists by {ordered_by(g['ordered_by'])}"
    table(f"\nTop-{k} ranking ({who} users with a rating >= {g['threshold']:g}, "
          f"training items excluded; {g['n_unknown_users']:,} unknown users skipped{lists})",
          ["model", *cols], rows, {c: ".4f" for c in cols})


def run(args) -> int:
    from latentrec.evaluation.evaluate import evaluate
    from latentrec.use.recommender import Recommender

    start(args)
    rec = Recommender.load(args.model_dir)
    if args.metrics == "rmse":
        rec.require_ratings("RMSE and MAE")
    rows = with_model_columns(args, rec.info.get("columns", {}), lambda: read_scored(args, args.data))
    result = evaluate(rec, rows, k=None if args.metrics == "rmse" else args.k,
                      threshold=args.relevant, with_rmse=args.metrics != "ranking")
    if args.json:
        emit_json(result)
        return 0
    print_evaluation(result, ranking_asked=args.metrics == "ranking")
    if result.get("ranking", {}).get("n_users") and getattr(rec.ranker, "kind", None) == "popular":
        console.print("This model dir's lists are the most-rated items (the popular ranker), so its ranking row is "
                      "popularity's.")
    return 0
