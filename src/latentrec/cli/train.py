"""``latentrec train``: fit a model, print the epoch table, evaluate, save."""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from latentrec import progress
from latentrec.atomic import writable_or_fail
from latentrec.cli.common import (
    add_data_options,
    add_device_option,
    command,
    console,
    emit_json,
    ml100k_fold,
    ordered_by,
    plural,
    read,
    read_big,
    read_scored,
    seed,
    start,
    stderr,
    table,
    with_model_columns,
)
from latentrec.cli.config_file import apply_config, defer_defaults, model_dir_columns, resolved
from latentrec.cli.evaluate import print_evaluation
from latentrec.config import (
    CHECKPOINT_EVERY,
    EASE_AUTO_ITEMS,
    IALS_AUTO_RATINGS,
    ML100K_SPLITS,
    MODELS,
    OPTIMIZERS,
    RANK_EVAL_USERS,
    RANKERS,
    RANKING_MODELS,
    SOLVERS,
    VALID_BY,
    TrainConfig,
)
from latentrec.errors import ConfigError, interrupt_status
from latentrec.training.callback import Callback

if TYPE_CHECKING:
    from latentrec.training.checkpoint import Checkpointer

EXAMPLE = """latentrec train --data ml-100k --out model
  latentrec train --data ratings.csv --user-col customer --item-col product --rating-col stars --epochs 30
  latentrec train --data ml-100k --split u1 --out model-u1     # ML-100K's own u1.base / u1.test
  latentrec train --data train.csv --valid-pct 0 --test test.csv --out model --json
  latentrec train --data ml-100k --model ease --out ease     # a ranking model only (top-N lists, no ratings)
  latentrec train --data ml-100k --ranker none               # the rating model alone orders the lists
  latentrec train --data ml-100k --ranker popular            # every list: the most-rated unrated items"""

COLUMNS = ["epoch", "train_rmse", "valid_rmse", "valid_mae", "lr", "seconds"]


def add_parser(sub) -> None:
    p = command(sub, "train", "Train a rating model paired with a ranking model (or either alone) and save it as a "
                "model directory.", EXAMPLE, run)
    add_data_options(p, required=False, default="ml-100k")
    g = p.add_argument_group("split")
    g.add_argument("--valid", help="explicit validation file (instead of --valid-pct of --data)")
    g.add_argument("--valid-pct", type=float,
                   help="share of the training rows held out for validation; 0 trains on all "
                        "(default 0.2; 0 with --split, which trains on all of <split>.base as published results do)")
    g.add_argument("--valid-by", choices=VALID_BY, default="random",
                   help="which rows --valid-pct holds out: random (default), time (the latest ratings: the past "
                        "predicts the future) or user (each user's latest); time and user need a timestamp column")
    g.add_argument("--split", choices=ML100K_SPLITS, help="ML-100K's own split: train on <split>.base, test on <split>.test")
    g.add_argument("--test", help="test file scored once, after training")
    m = p.add_argument_group("model and training (defaults: the tuned recipe for the model/solver)")
    m.add_argument("--model", choices=MODELS, default="dot",
                   help="dot: dot product + biases (default); nn: neural; ease or ials: a ranking model alone "
                        "(orders top-N lists from what users chose to rate; predicts no ratings)")
    m.add_argument("--ranker", choices=RANKERS,
                   help="ranking model saved beside a rating model to order its top-N lists (default auto: EASE up "
                        f"to {EASE_AUTO_ITEMS:,} items, iALS beyond up to {IALS_AUTO_RATINGS // 10**6}M training "
                        f"ratings, none above; then popular if that ranks the validation rows clearly better; "
                        f"popular: the most-rated items; none: order by predicted rating)")
    m.add_argument("--alpha", type=float, help="--model ials: a rated cell's confidence is 1 + alpha * its weight")
    m.add_argument("--rating-weight", type=float,
                   help="--model ease|ials: how much more a high rating counts as picked (0: every rating alike)")
    m.add_argument("--solver", choices=SOLVERS, help="for --model dot: bayes (default; Bayesian MF by Gibbs sampling), "
                   "sgd (fused per-rating kernel), als (alternating least squares) or autograd (batched loop, "
                   "the only one for --model nn); --model ease is solved in closed form (closed), ials by "
                   "conjugate gradient (cg)")
    m.add_argument("--n-factors", type=int, help="latent factors per user and item (--model nn: the embedding "
                   "width, default fastai's size rule capped at 128)")
    m.add_argument("--epochs", type=int, help="passes over the training data (sweeps for bayes and als)")
    m.add_argument("--lr", type=float, help="learning rate")
    m.add_argument("--wd", type=float, help="weight decay (--model ease: its lambda; ials: its ridge)")
    m.add_argument("--wd-mode", choices=["l2", "decoupled"], help="l2: grad += wd * param (the seed); decoupled: AdamW")
    m.add_argument("--opt", choices=OPTIMIZERS, default="adam", help="optimizer for --solver autograd")
    m.add_argument("--momentum", type=float, default=0.9, help="momentum for --opt sgd")
    m.add_argument("--bs", type=int, help="batch size for --solver autograd; with --solver sgd, above 1 takes "
                   "batched updates instead of the per-rating kernel")
    m.add_argument("--schedule", help="constant, cosine, onecycle or step:EPOCH:LR[,EPOCH:LR]")
    m.add_argument("--loss", choices=["mse", "rmse"], default="mse",
                   help="what --solver autograd minimizes per batch (default mse)")
    m.add_argument("--y-range", type=float, nargs=2, metavar=("LOW", "HIGH"),
                   help="sigmoid output range (default: a little wider than the data's)")
    m.add_argument("--seed", type=seed, default=42, help="seed for the split, init and shuffling (default 42)")
    add_device_option(m)
    m.add_argument("--layers", type=int, nargs="+", metavar="SIZE", help="--model nn: hidden layer sizes (default 100)")
    m.add_argument("--dropout", type=float, help="--model nn: dropout after each hidden layer; "
                   "--model ease: dropout emphasis (regularizes popular items more)")
    m.add_argument("--bn", action=argparse.BooleanOptionalAction, help="--model nn: batch norm after each hidden layer")
    m.add_argument("--implicit", action=argparse.BooleanOptionalAction,
                   help="--model nn: embeddings also sum what the user/item rated, SVD++-style (default: on)")
    m.add_argument("--burn-in", type=int, help="--solver bayes: Gibbs sweeps (of --epochs) discarded before averaging")
    p.add_argument("--out", default="model", help="model directory to write (default: ./model)")
    p.add_argument("--checkpoint-dir", help="where the last completed epoch is kept while training "
                   "(default: OUT.checkpoint; removed once the model is saved)")
    p.add_argument("--checkpoint-every", type=float, default=CHECKPOINT_EVERY, metavar="SECONDS",
                   help=f"save a checkpoint at the first epoch end this long after the last one "
                   f"(default: {CHECKPOINT_EVERY:g}; 0: every epoch)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from its last completed epoch (give the run's same options)")
    p.add_argument("--config", metavar="FILE", help="TOML file of these options (or a model dir to retrain); "
                   "flags given here win")
    defer_defaults(p)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        model=args.model, solver=args.solver, n_factors=args.n_factors, epochs=args.epochs, lr=args.lr,
        wd=args.wd, wd_mode=args.wd_mode, opt=args.opt, momentum=args.momentum, bs=args.bs,
        schedule=args.schedule, loss=args.loss, y_range=tuple(args.y_range) if args.y_range else None,
        valid_pct=args.valid_pct, valid_by=args.valid_by, seed=args.seed, device=args.device,
        layers=tuple(args.layers) if args.layers else None, dropout=args.dropout, bn=args.bn, burn_in=args.burn_in,
        implicit=args.implicit, ranker=args.ranker, alpha=args.alpha, rating_weight=args.rating_weight,
    )


class EpochTable(Callback):
    """Prints the epoch table as training goes, with a bar over epochs on stderr. The header comes with the
    first row (so an error before any epoch is the only line) and names the columns that row has: no
    validation columns without validation rows, no lr for a closed-form solver."""

    def __init__(self, epochs: int, quiet: bool, read_from: dict[str, str] | None = None, held: str = ""):
        self.every = max(1, epochs // 20)
        self.epochs, self.quiet = epochs, quiet
        self.read_from = read_from or {}  # the file's columns by role, where its header named them
        self.held = held  # which rows were held out for validation, where not random ones
        self.bar = None
        self.columns: list[str] | None = None

    def on_fit_start(self, trainer) -> None:
        """One line on what is trained, on what: a wrong column or scale shows here, before any epoch."""
        if self.quiet:
            return
        t, cfg = trainer.train, trainer.cfg
        n_users, n_items = trainer.model_sizes()
        columns = ", ".join(f"{role} {name!r}" for role, name in self.read_from.items() if name != role)
        valid = f"; validating on {len(trainer.valid):,}{self.held}" if trainer.valid is not None else ""
        size = f"{cfg.n_factors} factors, " if cfg.model != "nn" else ""
        console.print(f"Training model {cfg.model}, solver {cfg.solver} ({size}{plural(cfg.epochs, 'epoch')}) on "
                      f"{len(t):,} ratings of {n_users - 1:,} users x {n_items - 1:,} items (ratings "
                      f"{float(t.ratings.min()):g} to {float(t.ratings.max()):g}"
                      f"{f'; columns: {columns}' if columns else ''}){valid}.", soft_wrap=True)

    def on_epoch_end(self, trainer, record: dict) -> None:
        if self.bar:
            self.bar(1)
        e = record["epoch"]
        if self.quiet or not (e == 1 or e % self.every == 0 or e == self.epochs or self.columns is None):
            return
        if self.columns is None:
            self.columns = [c for c in COLUMNS if c in record]
            console.print("  ".join(f"{c:>10}" for c in self.columns), style="bold")
        cells = []
        for c in self.columns:
            v = record.get(c)
            cells.append(f"{'-':>10}" if v is None else f"{v:>10d}" if isinstance(v, int) else
                         f"{v:>10.4g}" if c == "lr" else f"{v:>10.2f}" if c == "seconds" else f"{v:>10.4f}")
        console.print("  ".join(cells))


def checkpointer(args: argparse.Namespace) -> Checkpointer:
    """The run's Checkpointer, after checking (before any training) that its files can be written."""
    from latentrec.training.checkpoint import Checkpointer, completed_epoch, default_folder

    if not 0 <= args.checkpoint_every < math.inf:
        raise ConfigError(f"--checkpoint-every must be 0 or more seconds, not {args.checkpoint_every:g}.")
    writable_or_fail(args.out, folder=True)
    folder = args.checkpoint_dir or default_folder(args.out)
    writable_or_fail(folder, folder=True)
    if not args.resume and (Path(folder) / "checkpoint.safetensors").exists():
        epoch = completed_epoch(folder)
        raise ConfigError(
            f"{folder} holds the checkpoint of an interrupted run (epoch {epoch}); continue it with --resume, or "
            f"delete {folder} to start over." if epoch else
            f"{folder} holds the checkpoint of an interrupted run, which cannot be read; delete {folder} to start over."
        )
    def say(epoch: int) -> None:  # once restored: a checkpoint of other options is one sentence, not two
        stderr(f"latentrec train: resuming the run in {folder} after its epoch {epoch}.")

    quiet = args.json or os.environ.get("RANK", "0") != "0"
    return Checkpointer(folder, resume=args.resume, every=args.checkpoint_every, resumed=None if quiet else say)


def interrupted(checkpoints: Checkpointer, epochs: int, stop: KeyboardInterrupt, out: str | None = None,
                written: bool = False, in_refit: bool = False) -> int:
    """Say what Ctrl-C (or SIGTERM) left: the checkpoint and how to go on; after training (``out`` given), also
    whether the model was ``written`` there, in which case the checkpoint has served and is removed (rank 0 only
    under torchrun: it alone writes checkpoints and the model), and whether that was before the refit finished."""
    from latentrec.solvers import distributed

    if not distributed.is_main():
        return interrupt_status(stop)
    if written:
        checkpoints.remove()
        stderr(f"latentrec train: interrupted during the refit on all the ratings; {out} keeps the model trained "
               f"without the validation rows." if in_refit else f"latentrec train: interrupted after the model was "
               f"saved to {out}.")
        return interrupt_status(stop)
    kept = (f"epoch {checkpoints.saved_epoch} of {epochs} is saved in {checkpoints.folder}. Run the same command "
            f"with --resume to continue." if checkpoints.saved_epoch else None)
    if out is not None:
        stderr(f"latentrec train: interrupted after training, before the model was written to {out}; "
               f"{kept or 'no checkpoint was written (see --checkpoint-every), so nothing was saved.'}")
    elif kept:
        stderr(f"latentrec train: interrupted; {kept}")
    else:
        stderr("latentrec train: interrupted before the first checkpoint (see --checkpoint-every); nothing was saved.")
    return interrupt_status(stop)


def print_trained(rec, ranking_only: bool, ranker: str, out: str, result: dict, refitting: bool) -> None:
    """What training made, the ranker's check and, without --test, the evaluation on the validation rows: printed
    before a refit, so that a long one (or a stop during it) does not hold them back."""
    saved = "" if refitting else f"; saved to {out}/"
    if ranking_only:
        console.print(f"Fitted {rec.ranker.kind} (a ranking model: orders lists, predicts no ratings) in "
                      f"{rec.info['train_seconds']:.2f} s{saved}", soft_wrap=True)
    else:
        check = rec.info.get("ranker_check")
        fitted = f"{rec.ranker.kind} ranker" if rec.ranker is not None else ""
        if check is not None:  # the seconds are those of the ranker it replaced and of the check
            fitted = ("check against popularity" if check["ranker"] == "none"
                      else f"{check['ranker']} ranker and its check against popularity and the predicted ratings")
        ranked = f" + {fitted} in {rec.info['ranker_seconds']:.2f} s" if check is not None or rec.ranker else ""
        metrics = rec.info["metrics"]
        scored = ("" if "valid" in result or "valid_rmse" not in metrics else  # with a test file, the validation
                  f" (validation RMSE {metrics['valid_rmse']:.4f}; the test file is scored below)")  # rows get no table
        epochs = (f"Best epoch {rec.info['best_epoch']}{scored}" if "valid_rmse" in metrics
                  else f"Kept the last epoch, {len(rec.history)} (no validation rows to choose by)")
        console.print(f"\n{epochs}; trained in {rec.info['train_seconds']:.2f} s{ranked}{saved}", soft_wrap=True)
        if check is not None and "reason" in check:
            console.print(f"Lists ordered by popularity: {check['reason']} (--ranker {check['ranker']} keeps it "
                          f"anyway).", soft_wrap=True)
        elif check is not None:
            mine = f"the {check['ranker']} ranker" if check["ranker"] != "none" else "the predicted ratings"
            kept = "the predicted ratings" if check.get("kept") == "none" else "popularity"
            theirs = check["none_ndcg"] if check.get("kept") == "none" else check["popular_ndcg"]
            console.print(f"Lists ordered by {kept}: on {check['n_users']:,} validation users {mine} scored "
                          f"NDCG@{check['k']} {check['ndcg']:.4f} against {theirs:.4f} for {kept} "
                          f"(standard error of the difference {check['se']:.4f}; --ranker ease|ials|none|popular "
                          f"keeps one anyway).", soft_wrap=True)
        elif rec.ranker is None and ranker == "auto":
            console.print(f"No ranker: above {IALS_AUTO_RATINGS // 10**6}M training ratings iALS takes minutes "
                          f"and gigabytes; --ranker ials fits one anyway.", soft_wrap=True)
    if "valid" in result:
        console.print()
        print_evaluation(result["valid"])


def print_final(rec, out: str, result: dict) -> None:
    """After a refit: what it did, then the evaluation on --test (of the model saved), and a sample user's top 5."""
    from latentrec.use.topn import recommend

    refit = rec.info.get("refit")
    if refit:
        closed = rec.model is None and rec.ranker.kind == "ease"  # solved in one step: no epochs to count
        console.print(f"\n{refit_line(refit, out, closed)}", soft_wrap=True)
    if "test" in result:
        console.print()
        print_evaluation(result["test"])
    sample = rec.users.classes[1]
    top = recommend(rec, sample, n=5)
    cols = ["rank", "item", "title"] + (["prediction"] if rec.model is not None else [])
    how = f", ordered by {ordered_by(rec.ranker.kind)}" if rec.ranker is not None else ""
    table(f"\nTop 5 for user {sample} (unrated items{how})", cols,
          top[cols].itertuples(index=False), {"prediction": ".2f"})


def refit_line(refit: dict, out: str, closed: bool = False) -> str:
    """``closed``: a model solved in one step (EASE), which has no epochs to count."""
    epochs = "" if closed else f" for {plural(refit['epochs'], 'epoch')}"
    return (f"Refit on all {refit['n_train']:,} ratings (the validation rows too){epochs} in {refit['seconds']:.2f} s; "
            f"saved to {out}/")


def read_inputs(args: argparse.Namespace, cfg: TrainConfig) -> tuple:
    """``(train, valid, test, lean, whole)``: the training ratings (a big file read lean: ``lean``, the same object),
    the validation rows (given, or held out of the training file), the ``--test`` or ``--split`` test rows, and,
    when the validation rows were held out of the training file, ``whole()``, which gives all of its rows for the
    refit (a big file is read again then, after the held-out run's columns are let go)."""
    from latentrec.data.split import hold_out

    test = lean = None
    if args.split:
        if args.test:
            raise ConfigError(f"--split {args.split} tests on ML-100K's own {args.split}.test; leave out --test.")
        train_data, test = ml100k_fold(args, args.split)
    else:
        source = args.data or "ml-100k"
        if cfg.valid_by == "random" or args.valid or not cfg.valid_pct:  # the lean reader reads no timestamps
            lean = read_big(args, source, 0.0 if args.valid else cfg.valid_pct, cfg.seed)
        train_data = lean or read(args, source)
    valid = read_scored(args, args.valid) if args.valid else None
    whole = None
    if lean is not None and lean.valid is not None:
        whole = lambda: read_big(args, source, 0.0, cfg.seed)  # noqa: E731
    if lean is None:  # the lean reader held its validation rows out already
        given_valid, everything = valid, train_data
        train_data, valid = hold_out(train_data, valid, cfg.valid_pct, cfg.seed, cfg.valid_by)
        if given_valid is None and valid is not None:
            whole = lambda: everything  # noqa: E731
        if valid is None and cfg.valid_pct and len(train_data) > 1 and not args.json:  # 1 rating: fit refuses it
            stderr(f"latentrec train: holding out {cfg.valid_pct:.0%} of {plural(len(train_data), 'rating')} leaves "
                   f"no validation row; training on all of them, with nothing to evaluate.")
    if args.test:
        test = read_scored(args, args.test)  # read (and checked) before training, encoded after it
    return train_data, valid, test, lean, whole


def run(args: argparse.Namespace) -> int:
    from latentrec.training.fit import data_warnings_once

    with data_warnings_once():  # the held-out run's, not the refit's too
        return _train(args)


def _train(args: argparse.Namespace) -> int:
    from latentrec.devices import pick_device
    from latentrec.solvers import distributed
    from latentrec.training.fit import fit, refit_config
    from latentrec.use.model_dir import weights_write_id

    apply_config(args)
    if args.valid_pct is None:
        args.valid_pct = 0.0 if args.split else 0.2
    start(args)
    given = config_from_args(args)
    cfg = resolved(args, given)  # checked before any reading; fit resolves ``given`` itself, for the data's rating scale
    pick_device(cfg.device)  # an unusable --device is refused before any reading
    checkpoints = checkpointer(args)
    remembered = model_dir_columns(args.config)  # --config MODEL_DIR: the columns that model was trained from
    train_data, valid, test, lean, whole = with_model_columns(args, remembered, lambda: read_inputs(args, cfg))

    main_rank = distributed.is_main()  # under torchrun only rank 0 prints, writes checkpoints and saves
    progress.set_enabled(main_rank and not args.json)
    held = "" if args.valid else {"time": ", the latest ratings", "user": ", each user's latest ratings"}.get(cfg.valid_by, "")
    printer = EpochTable(cfg.epochs, quiet=args.json or not main_rank or cfg.model in RANKING_MODELS,
                         read_from=getattr(train_data, "columns", None), held=held)
    with progress.step_progress("Training", cfg.epochs) as advance:
        printer.bar = advance
        try:
            rec, trainer = fit(train_data, valid, given, callbacks=[checkpoints, printer])  # every rank restores
        except KeyboardInterrupt as stop:
            return interrupted(checkpoints, cfg.epochs, stop)
    if not main_rank:
        if refits(whole, trainer):  # rank 0 scores the validation rows first; the ranks then refit together
            refit_cfg = refit_config(given, rec.info["best_epoch"], "none")  # rank 0 alone fits the ranker
            rec = trainer = None
            fit(whole(), None, refit_cfg)
        return 0
    diverged = trainer.diverged if trainer is not None else None
    if diverged and not trainer.history:  # not one good epoch: nothing worth saving or showing
        checkpoints.remove()
        raise ConfigError(f"{diverged} Nothing was saved.")
    write_id = uuid.uuid4().hex  # the saved model's: says, after an interrupt, whether the model went in
    fitted = [rec, trainer]
    rec = trainer = None  # save_and_report lets the held-out model go before a refit
    try:
        save_and_report(args, given, fitted, (valid, test, lean, whole), write_id)
    except KeyboardInterrupt as stop:  # after the last epoch: scoring, saving, showing
        saved, refit_id = weights_write_id(args.out), getattr(args, "refit_write_id", None)
        return interrupted(checkpoints, cfg.epochs, stop, str(args.out), saved in (write_id, refit_id) and bool(saved),
                           in_refit=refit_id is not None and saved != refit_id)
    checkpoints.remove()
    if diverged:
        stderr(f"latentrec train: error: {diverged} The model of that epoch was saved to {args.out}.")
        return 2
    return 0


def refits(whole, trainer) -> bool:
    """Whether the model is trained again on the whole training file: its validation rows were held out of it
    (``whole``, from :func:`read_inputs`) and the held-out run did not diverge."""
    return whole is not None and not (trainer is not None and trainer.diverged)


def refit(whole, cfg: TrainConfig, held_out: dict):
    """The model of ``cfg`` (:func:`refit_config`) trained on ``whole`` (the training file, its validation rows
    included), or None if that training diverged (it warns). ``held_out`` holds the held-out run's ``info``,
    ``history`` and ``config``: they stay the saved model's (what the validation measured; the same recipe on more
    rows; ``train --config MODEL_DIR`` reruns both), with the refit's figures under ``info["refit"]``."""
    import time

    from latentrec.training.fit import fit

    t0 = time.perf_counter()
    with progress.step_progress("Refitting on all the ratings", cfg.epochs) as advance:
        bar = EpochTable(cfg.epochs, quiet=True)
        bar.bar = advance
        new, trainer = fit(whole, None, cfg, callbacks=[bar])
    if trainer is not None and trainer.diverged:
        return None
    figures = {"n_train": new.info["n_train"], "epochs": cfg.epochs, "seconds": time.perf_counter() - t0}
    if "train_rmse" in new.info["metrics"]:
        figures["train_rmse"] = new.info["metrics"]["train_rmse"]
    return dataclasses.replace(new, history=held_out["history"], config=held_out["config"],
                               info={**held_out["info"], "refit": figures})


def save_and_report(args: argparse.Namespace, given: TrainConfig, fitted: list, held: tuple, write_id: str) -> None:
    """Score the trained model on the validation (or test) rows, save it with ``write_id``, refit it on the whole
    training file when its validation rows were held out of it (the held-out model stays saved should the refit
    diverge or be stopped), and print the summary. ``fitted``: ``[rec, trainer]``, emptied here, so that the
    held-out model can be let go before the refit; ``held``: the validation rows, test rows, lean split and whole
    training file that ``read_inputs`` gave."""
    from latentrec.data.batches import EncodedRows
    from latentrec.evaluation.evaluate import evaluate
    from latentrec.training.fit import refit_config
    from latentrec.use.recommender import Recommender

    (rec, trainer), valid, test, lean, whole = fitted, *held
    fitted.clear()
    cfg = given.resolved()
    ranking_only = trainer is None
    if trainer is not None:
        trainer.train = None  # the training columns are in the model now: let them go (12 bytes a rating)
    if lean is not None:
        lean.train = None
    result = {"model": str(args.out), "metrics": rec.info["metrics"], "best_epoch": rec.info["best_epoch"],
              "train_seconds": rec.info["train_seconds"], "config": rec.config,
              "ranker": rec.ranker.kind if rec.ranker is not None else None}
    if "ranker_check" in rec.info:  # --ranker auto replaced its pick by popularity
        result["ranker_check"] = rec.info["ranker_check"]
    scored = valid if valid is not None else lean.valid if lean is not None else None
    if scored is not None and not isinstance(scored, EncodedRows):
        scored = rec.encode_rows(scored)  # once, for the evaluation and for counting them as rated
    rec.info.pop("valid_digest", None)  # scored here as the validation rows they are, then counted as rated
    if test is None and scored is not None:  # scored before its rows count as rated below
        result["valid"] = evaluate(rec, scored, max_rank_users=RANK_EVAL_USERS)
    if scored is not None:  # validation rows (of --data or --valid): the users rated them too, so the saved
        rec = rec.with_rated(scored.data)  # model's lists and the --test ranking skip them
    rec.save(args.out, write_id=write_id)
    refitting = refits(whole, trainer)
    if not args.json:
        print_trained(rec, ranking_only, cfg.ranker, args.out, result, refitting)
    if refitting:  # under torchrun the other ranks refit beside rank 0 (see run)
        refit_cfg = refit_config(given, rec.info["best_epoch"], rec.ranker_option)
        held_out = {"info": rec.info, "history": rec.history, "config": rec.config}
        rec = trainer = scored = valid = None  # the held-out model is saved: its columns go before the file's
        if lean is not None:
            lean.valid = None
        args.refit_write_id = uuid.uuid4().hex  # the refit's save: ``interrupted`` tells which model a stop left
        if not args.json and not progress.active():  # a log shows no bar: say what the next minutes are for
            epochs = "" if refit_cfg.model == "ease" else f" for {plural(refit_cfg.epochs, 'epoch')}"  # one solve
            console.print(f"\nRefitting on all the ratings (the validation rows too){epochs}...", soft_wrap=True)
        rec = refit(whole(), refit_cfg, held_out)  # every rated row is in its training now
        if rec is None:
            stderr(f"latentrec train: the refit on all the ratings diverged; {args.out} keeps the model trained "
                   f"without the validation rows.")
            rec = Recommender.load(args.out)
        else:
            rec.save(args.out, write_id=args.refit_write_id)
            result["refit"] = rec.info["refit"]
    if test is not None:
        result["test"] = evaluate(rec, test, max_rank_users=RANK_EVAL_USERS)
    if args.json:
        emit_json(result)
    else:
        print_final(rec, args.out, result)
