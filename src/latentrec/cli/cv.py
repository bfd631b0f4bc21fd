"""``latentrec cv``: k-fold cross-validation (or ML-100K's u1..u5) with baselines, mean ± std."""

from __future__ import annotations

from dataclasses import fields

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
from latentrec.cli.config_file import UNSET, apply_config, checked_train_options, defer_defaults, resolved
from latentrec.config import MODELS, RANKING_MODELS, SOLVERS, TrainConfig
from latentrec.errors import ConfigError

EXAMPLE = """latentrec cv --data ml-100k --folds 5
  latentrec cv --data ml-100k --split u1-u5 --json
  latentrec cv --data ratings.csv --config tune/best.toml   # cross-validate a tuned config"""

OWN = {"model", "solver", "n_factors", "epochs", "lr", "wd", "schedule", "valid_pct", "seed", "device"}
IGNORED = {"valid", "test", "out"}  # options of a train config file that do not apply to cross-validation
COLUMNS = ["fold", "n_test", "rmse", "mae", "biases_rmse", "best_epoch", "seconds"]


def add_parser(sub) -> None:
    p = command(sub, "cv", "Cross-validate a training config: per-fold RMSE/MAE, mean ± std, baselines.", EXAMPLE, run)
    add_data_options(p, required=False, default="ml-100k")
    g = p.add_argument_group("folds")
    g.add_argument("--folds", type=int, help="number of random folds (default 5)")
    g.add_argument("--split", help="ML-100K's own folds instead: u1-u5 (or a list such as u1,u2 or ua,ub)")
    m = p.add_argument_group("training (defaults: the tuned recipe; any `latentrec train` option via --config)")
    m.add_argument("--model", choices=MODELS, default="dot", help="as for `latentrec train` (default dot)")
    m.add_argument("--solver", choices=SOLVERS)
    m.add_argument("--n-factors", type=int)
    m.add_argument("--epochs", type=int)
    m.add_argument("--lr", type=float)
    m.add_argument("--wd", type=float)
    m.add_argument("--schedule")
    m.add_argument("--valid-pct", type=float, default=0.0,
                   help="share of each training fold held out to pick the best epoch (default 0: train on all of "
                        "it; a --config file's valid_pct, such as tune's, is not used)")
    m.add_argument("--seed", type=seed, default=42, help="seed of the folds and of training (default 42)")
    add_device_option(m)
    p.add_argument("--config", metavar="FILE", help="TOML file of training options (e.g. tune's best.toml)")
    defer_defaults(p)


def run(args) -> int:
    from latentrec.evaluation.cv import cross_validate, kfolds, parse_split

    given_pct = args.valid_pct
    extra = apply_config(args, extra=({f.name for f in fields(TrainConfig)} - OWN) | IGNORED)
    if given_pct is UNSET:  # a fold trains on all its rows unless this command line says otherwise
        args.valid_pct = 0.0
    start(args)
    fixed = checked_train_options({k: v for k, v in extra.items() if k not in IGNORED}, args.config)
    cfg = resolved(args, TrainConfig.from_dict(dict(fixed, **{k: getattr(args, k) for k in OWN})))
    if args.split and args.folds is not None:
        raise ConfigError("--folds and --split both choose the folds; give one of them.")
    if args.split:
        folds = [(name, *ml100k_fold(args, name)) for name in parse_split(args.split)]
    else:
        folds = kfolds(read(args, args.data or "ml-100k"), 5 if args.folds is None else args.folds, args.seed)
    if not args.json:
        kind = " (a ranking model)" if cfg.model in RANKING_MODELS else ""
        console.print(f"Cross-validating {cfg.model}/{cfg.solver}{kind}: {cfg.summary()}; {len(folds)} folds")
    result = cross_validate(folds, cfg, on_fold=None if args.json else print_fold)
    if args.json:
        emit_json(result)
    else:
        print_result(result)
    return 0


def print_fold(row: dict) -> None:
    if "rmse" not in row:
        console.print(f"{row['fold']:>8}: NDCG@10 {row['ndcg@10']:.4f}  P@10 {row['precision@10']:.4f}  "
                      f"(popularity {row['popularity_ndcg@10']:.4f})  ({row['seconds']:.1f} s)")
        return
    console.print(f"{row['fold']:>8}: RMSE {row['rmse']:.4f}  MAE {row['mae']:.4f}  ({row['seconds']:.1f} s)")


def print_result(result: dict) -> None:
    if "ndcg@10" in result["summary"]:
        s = result["summary"]
        rows = [(name, *[f"{s[p + m]['mean']:.4f} ± {s[p + m]['std']:.4f}" for m in ("ndcg@10", "precision@10")])
                for name, p in (("model", ""), ("baseline: popularity", "popularity_"))]
        table(f"\nMean ± std over {len(result['folds'])} folds (test ratings >= {result['folds'][0]['relevant']:g} relevant)",
              ["model", "ndcg@10", "precision@10"], rows)
        return
    table("\nPer fold", COLUMNS, [[r[c] for c in COLUMNS] for r in result["folds"]],
          {c: ".4f" for c in COLUMNS if "rmse" in c or "mae" in c} | {"seconds": ".1f", "n_test": ","})
    s = result["summary"]
    rows = [(name, f"{s[p + 'rmse']['mean']:.4f} ± {s[p + 'rmse']['std']:.4f}",
             f"{s[p + 'mae']['mean']:.4f} ± {s[p + 'mae']['std']:.4f}")
            for name, p in (("model", ""), ("baseline: global mean", "global_mean_"), ("baseline: biases", "biases_"))]
    table(f"\nMean ± std over {len(result['folds'])} folds", ["model", "rmse", "mae"], rows)
    for r in result["folds"]:
        if r["diverged"]:
            console.print(f"{r['fold']}: {r['diverged']}")

