"""``latentrec similar``: the items nearest to one item, as the model dir's ranker or rating model sees them."""

from __future__ import annotations

from latentrec.cli.common import command, count, emit_json, ordered_by, start, table

EXAMPLE = """latentrec similar model --title "Star Wars"
  latentrec similar model --item 50 -n 20 --min-ratings 20 --json"""


def add_parser(sub) -> None:
    p = command(sub, "similar", "Items most similar to one item (by the ranker: EASE's item x item weights or "
                "iALS's factors, items picked by the same users; a rating model alone (--ranker none): cosine "
                "similarity of its item factors, items rated alike; CollabNN's embeddings mostly say how well an "
                "item is rated, so its neighbours are items about as good). An item the model was not trained on "
                "has no vectors to compare: that is an error (exit 2; 404 from serve), not a fallback.", EXAMPLE, run)
    p.add_argument("model_dir", help="model directory written by `latentrec train`")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--item", help="raw item id")
    which.add_argument("--title", help="title or part of it, case-insensitive (lists candidates when ambiguous)")
    p.add_argument("-n", type=int, default=10, help="how many items (default 10)")
    p.add_argument("--min-ratings", type=count, default=0,
                   help="only items with at least this many training ratings (default 0)")


def run(args) -> int:
    from latentrec.use.recommender import Recommender
    from latentrec.use.records import records
    from latentrec.use.similar import find_item, similar_items

    start(args)
    rec = Recommender.load(args.model_dir)
    if args.item is not None:  # as the model holds it (" 50" is 50), or as given for similar_items to refuse
        known = rec.items.index(args.item)
        item = rec.items.classes[known] if known else args.item
    else:
        item = find_item(rec, args.title)
    sims = similar_items(rec, item, args.n, args.min_ratings)
    by_ranker = rec.ranker is not None and rec.ranker.compares_items
    if args.json:
        emit_json({"item": item, "title": rec.titles.get(item, ""),
                   "compared_by": f"{rec.ranker.kind} ranker" if by_ranker else f"{rec.model.kind} model",
                   "similar": records(sims)})
    else:
        name = f"{item} ({rec.titles[item]})" if rec.titles.get(item) else item
        by = f"the {ordered_by(rec.ranker.kind)} ranker" if by_ranker else f"the {rec.model.kind} model's item vectors"
        table(f"Items most similar to {name}, by {by}", ["rank", "item", "title", "similarity", "n_ratings"],
              sims.itertuples(index=False), {"similarity": ".3f"})
    return 0
