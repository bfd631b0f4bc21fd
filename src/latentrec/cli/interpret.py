"""``latentrec interpret``: item biases, the ends of the factors' principal components, and pictures."""

from __future__ import annotations

from latentrec.cli.common import command, console, emit_json, start, table
from latentrec.errors import ConfigError

EXAMPLE = "latentrec interpret model --out model-pictures   # biases, item_pca.png, training_curve.png"


def add_parser(sub) -> None:
    p = command(sub, "interpret", "Show what a model learned: item biases, PCA of item factors, training curve.",
                EXAMPLE, run)
    p.add_argument("model_dir", help="model directory written by `latentrec train`")
    p.add_argument("--out", required=True, help="folder for the PNG pictures (created if missing)")
    p.add_argument("-n", type=int, default=10, help="items per table (default 10)")
    p.add_argument("--pca-items", type=int, default=1000, help="the most-rated items the PCA covers (default 1000)")
    p.add_argument("--labels", type=int, default=50,
                   help="most-rated items labeled in the scatter (default 50; 0: none)")
    p.add_argument("--min-ratings", type=int,
                   help="bias tables only show items with this many ratings (default 20, or fewer where fewer than "
                        "-n items have 20; 1: every item)")


def run(args) -> int:
    from latentrec.use.interpret import interpret
    from latentrec.use.recommender import Recommender

    start(args)
    for name, least in (("n", 1), ("pca_items", 3), ("labels", 0), ("min_ratings", 1)):
        if getattr(args, name) is not None and getattr(args, name) < least:
            flag = "-n" if name == "n" else f"--{name.replace('_', '-')}"
            raise ConfigError(f"{flag} must be at least {least}, not {getattr(args, name)}.")
    r = interpret(Recommender.load(args.model_dir), args.out, args.n, args.pca_items, args.labels, args.min_ratings)
    if args.json:
        emit_json(r)
        return 0
    cols = ["item", "title", "bias", "n_ratings"]
    console.print(f"Item biases of the items with at least {r['min_ratings']} ratings (--min-ratings)")
    fits = r["bias_source"] == "model"  # the model's own biases sit beside its taste factors; a baseline's do not
    for key, what, meaning in (("lowest_bias", "Lowest", "rated low even by users whose taste fits" if fits
                                else "rated below what their raters give on average"),
                               ("highest_bias", "Highest", "rated high even by users whose taste does not fit" if fits
                                else "rated above what their raters give on average")):
        table(f"\n{what} item bias ({r['bias_source']}, {r['bias_unit']}): {meaning}", cols,
              [[row[c] for c in cols] for row in r[key]], {"bias": ".3f"})
    if r["pca"] is None:
        console.print(f"\nNo map of the items: {r['no_pca']}")
    else:
        shares = r["pca"]["variance_share"]
        for c, (name, ends) in enumerate(r["pca"]["ends"].items()):
            rows = list(zip(ends["low"], ends["high"]))
            table(f"\nComponent {c + 1} of the item factors ({100 * shares[c]:.0f}% of the variance among the "
                  f"{r['pca']['n_items']} most-rated items)", ["low end", "high end"], rows)
        console.print("A component's sign is arbitrary (another training run may swap its ends): what it means is "
                      "the contrast between the two lists.")
    if r["pictures"]:
        console.print("\nPictures: " + ", ".join(r["pictures"].values()))
    if r["removed"]:
        console.print("Removed from an earlier run (this model has no such picture): " + ", ".join(r["removed"]))
    return 0
