"""``latentrec tune``: hyperparameter search on validation data, with a report and the winner's config."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path

from latentrec import progress
from latentrec.atomic import writable_or_fail
from latentrec.cli.common import (
    add_data_options,
    add_device_option,
    command,
    console,
    emit_json,
    plural,
    read,
    seed,
    start,
    stderr,
)
from latentrec.cli.config_file import apply_config, checked_train_options, defer_defaults, resolved
from latentrec.config import MODELS, SOLVERS, USES, VALID_BY, TrainConfig
from latentrec.errors import ConfigError, interrupt_status

EXAMPLE = """latentrec tune --data train.csv --trials 30 --out tuning --test test.csv
  latentrec tune --data ml-100k --timeout 600 --storage sqlite:///tune.db --out tuning   # rerun to resume
  latentrec tune --data train.csv --config space.toml   # fixed options and a [space] table, see the README"""

REPORT_COLUMNS = {"trial", "train_rmse", "valid_rmse", "valid_mae", "best_epoch", "best_valid_rmse", "epochs_run",
                  "seconds", "pruned", "repeat_of", "note"}
OWN = {"model", "solver", "seed", "device", "valid_pct", "valid_by"}  # TrainConfig fields that are flags of tune itself


def add_parser(sub) -> None:
    p = command(sub, "tune", "Search hyperparameters on validation data (Optuna TPE + pruning); report the winner.",
                EXAMPLE, run)
    add_data_options(p, required=False)  # may come from --config
    g = p.add_argument_group("validation and test")
    g.add_argument("--valid", help="validation file (default: a random --valid-pct of --data)")
    g.add_argument("--valid-pct", type=float, default=0.2, help="share of --data held out for validation (default 0.2)")
    g.add_argument("--valid-by", choices=VALID_BY, default="random",
                   help="which rows --valid-pct holds out: random (default), time or user (see `latentrec train`)")
    g.add_argument("--test", help="test file, scored once for the winner after the search")
    g.add_argument("--no-refit", dest="refit", action="store_false",
                   help="score the winner's trial model on --test instead of refitting it on all training rows")
    s = p.add_argument_group("search")
    s.add_argument("--model", choices=MODELS, default="dot", help="as for `latentrec train` (default dot)")
    s.add_argument("--solver", choices=SOLVERS, help="default: the model's default solver")
    s.add_argument("--trials", type=int, help="trials that train a model the study should hold (a setting drawn again is not trained "
                   "again nor counted; default 30 without --timeout)")
    s.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    s.add_argument("--storage", help="study database, e.g. sqlite:///tune.db; rerunning the command resumes it")
    s.add_argument("--study-name", default="latentrec", help="study name inside --storage (default latentrec)")
    s.add_argument("--seed", type=seed, default=42,
                   help="seed of the validation split, every trial and TPE (default 42)")
    add_device_option(s)
    p.add_argument("--out", default="tune", help="folder for the report (default ./tune)")
    p.add_argument("--config", metavar="FILE",
                   help="TOML: any option above or of `latentrec train` (fixed, not searched) and a [space] table")
    defer_defaults(p)


def run(args) -> int:
    from latentrec.cli.tune_report import report_mix, report_write_id, write_report
    from latentrec.evaluation.tune import default_space, solver_for, space_from_toml, tune

    config_fields = {f.name for f in fields(TrainConfig)} - OWN
    extra = apply_config(args, extra=config_fields | {"space"})
    start(args)
    path = args.config
    space_table = extra.pop("space", None)
    fixed = checked_train_options(extra, path)
    base = TrainConfig.from_dict(dict(fixed, model=args.model, solver=args.solver, seed=args.seed,
                                      device=args.device, valid_pct=args.valid_pct, valid_by=args.valid_by))
    resolved(args, base)  # its values checked now, before any data is read
    solver = solver_for(base)
    given_space = space_from_toml(space_table, f"{path}: [space]") if space_table is not None else {}

    def search_space(ratings=None):  # the default ranges (on the data's rating scale once read), the file's over them
        space = {**default_space(args.model, solver, ratings), **given_space}
        return {k: v for k, v in space.items() if k not in fixed}

    space = search_space()
    if not space:
        raise ConfigError("The search space is empty: every option it would search is fixed; nothing to tune.")
    unused = sorted(set(space) - set(USES.get((args.model, solver), space)))
    if unused:
        raise ConfigError(f"{path}: [space] searches {', '.join(unused)}, which --model {args.model} --solver {solver} "
                          f"does not use; drop {'it' if len(unused) == 1 else 'them'} (or set solver in the file).")
    if args.data is None:
        raise ConfigError("Give the training ratings with --data (or data = ... in --config).")
    if args.trials is not None and args.trials < 1:
        raise ConfigError(f"--trials must be at least 1, not {args.trials}.")
    if args.timeout is not None and not args.timeout > 0:
        raise ConfigError(f"--timeout must be positive, not {args.timeout}.")
    trials = 30 if args.trials is None and args.timeout is None else args.trials
    writable_or_fail(args.out, folder=True)  # before the search, not after it
    out = Path(args.out)
    mix = report_mix(out)
    if mix:
        stderr(f"latentrec tune: note: {mix}; this run's report will replace them all.")

    train_data = read(args, args.data)
    space = search_space(train_data)
    valid = read(args, args.valid) if args.valid else None
    test = read(args, args.test) if args.test else None
    if not args.json:
        console.print(f"Tuning {', '.join(space)} on {train_data.source} ({plural(len(train_data), 'rating')}); "
                      f"validation: {args.valid or f'{args.valid_pct:.0%} of it'}")
    write_id, result = uuid.uuid4().hex, None  # the report's: says, after an interrupt, whether it went in
    try:
        with searching(trials) as advance:  # a bar over the trials (a spinner with --timeout alone)
            def shown(row: dict) -> None:
                print_trial(row)
                advance(row["repeat_of"] is None)  # a repeat is not one of the --trials

            result = tune(train_data, valid, base, space, n_trials=trials, timeout=args.timeout,
                          storage=args.storage, study_name=args.study_name, test=test, refit=args.refit,
                          on_trial=None if args.json else shown)
        info = write_report(result, out, toml_extra=data_options(args), write_id=write_id)
        if args.json:
            emit_json(dict(info, out=str(out)))
        else:
            print_summary(result, info, out)
        return 0
    except KeyboardInterrupt as stop:
        kept = (f"the finished trials are kept in {args.storage}: run the same command again to go on" if args.storage
                else "its finished trials were in memory only and are lost (--storage sqlite:///tune.db keeps "
                     "them, and a rerun of the same command goes on from them)")
        if result is None:
            stderr(f"latentrec tune: interrupted; {kept}.")
        elif report_write_id(out) == write_id:
            stderr(f"latentrec tune: interrupted after the report was written to {out}.")
        else:
            stderr(f"latentrec tune: interrupted while writing the report; {out} is left as it was, and {kept}.")
        return interrupt_status(stop)


@contextmanager
def searching(trials: int | None) -> Iterator[Callable[[int], None]]:
    """A bar over ``trials`` trials to a person at a terminal, or a spinner when only --timeout bounds them."""
    if trials:
        with progress.step_progress("Tuning", trials) as advance:
            yield advance
    else:
        with progress.status("Tuning until --timeout"):
            yield lambda n: None


def data_options(args) -> dict:
    """The data options for the winner's TOML, so ``latentrec train --config best.toml`` reads the same rows."""
    def where(value):
        return str(Path(value).resolve()) if value and Path(value).exists() else value
    values = {"data": where(args.data), "valid": where(args.valid), "user_col": args.user_col,
              "item_col": args.item_col, "rating_col": args.rating_col, "data_dir": where(args.data_dir)}
    if args.duplicates != "error":
        values["duplicates"] = args.duplicates
    return values


def print_trial(row: dict) -> None:
    from latentrec.cli.tune_report import fmt

    params = "  ".join(f"{k}={fmt(v)}" for k, v in row.items()
                      if k not in REPORT_COLUMNS and k != "valid_ndcg@10")
    repeat = row.get("repeat_of")
    again = f"  (repeats trial {int(repeat)}: not trained again)" if repeat is not None and repeat == repeat else ""
    if "valid_ndcg@10" in row:
        console.print(f"trial {row['trial']:>3}  valid NDCG@10 {fmt(row['valid_ndcg@10']):>6}  {row['seconds'] or 0:6.1f} s"
                      f"  {params}{again}", soft_wrap=True)
        return
    valid = fmt(row["valid_rmse"]) or "-"
    console.print(f"trial {row['trial']:>3}  valid {valid:>6} after {row['epochs_run'] or 0:>3} epochs  "
                  f"{row['seconds'] or 0:6.1f} s  {'pruned' if row['pruned'] else '      '}  {params}{again}",
                  soft_wrap=True)


def print_summary(result, info: dict, out: Path) -> None:
    from latentrec.cli.tune_report import files, scored_by

    column = scored_by(result.table)[0]
    ranking = column != "valid_rmse"
    first_runs = result.table[result.table.repeat_of.isna()]  # a repeat is its earlier trial again
    best = first_runs.sort_values(column, ascending=not ranking, kind="stable").head(10)  # ties: the first, as the winner
    repeats = f", {info['n_repeats']} repeating an earlier one" if info["n_repeats"] else ""
    console.print(f"\nBest {len(best)} of {info['n_trials']} trials ({info['n_pruned']} pruned{repeats}) "
                  f"in {info['seconds']:.0f} s:")
    for row in best.to_dict("records"):
        print_trial(row)
    if ranking:
        console.print(f"\nWinner: trial {info['best_trial']}, valid NDCG@10 {info['best_valid_ndcg@10']:.4f}.")
    else:
        console.print(f"\nWinner: trial {info['best_trial']}, valid RMSE {info['best_valid_rmse']:.4f} "
                      f"after its {info['best_config']['epochs']} epochs.")
    if info["test"] and "rmse" not in info["test"]:
        g = info["test"]["ranking"]
        console.print(f"Test ({info['test']['data']}, scored once): NDCG@10 {g['model']['ndcg@10']:.4f}, "
                      f"popularity {g['popularity']['ndcg@10']:.4f}.", soft_wrap=True)
    elif info["test"]:
        r = info["test"]
        console.print(f"Test ({r['data']}, {r['n']:,} ratings, scored once): RMSE {r['rmse']:.4f}, MAE {r['mae']:.4f}; "
                      f"biases baseline RMSE {r['baselines']['biases']['rmse']:.4f}.", soft_wrap=True)
    model = " and model/" if result.model is not None else ""
    console.print(f"Wrote {', '.join(files(result.table))}{model} to {out}/", soft_wrap=True)
