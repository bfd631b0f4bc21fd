"""Hyperparameter search on validation data: Optuna's TPE sampler, per-epoch pruning, a readable report.

Every trial trains with the same seed, so every trial is scored on the same validation rows
(carved from the training data exactly as ``latentrec train`` carves them, or given). A
trial's score is the validation RMSE after its last epoch: the model that its settings give
when they are refit on all training rows without validation (so ``epochs`` is tuned, rather
than hidden by best-epoch restore). While it trains, :class:`PruningCallback` reports the
validation RMSE at each tenth of the trial's epochs (steps 10, 20, ... 100, so trials of
different lengths and schedules are compared at the same share of their schedule) and stops
hopeless trials.
The test data, if any, is never seen by the search: only the winner is scored on it, once.

A ranking model (``--model ease|ials``) is scored instead by the NDCG@10 of its lists on the
validation rows (relevant: ratings in the top quarter of the scale, >= 4 on 1-5; training items excluded); the study minimizes ``-NDCG@10``.
"""

from __future__ import annotations

import json
import logging
import math
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import optuna
import pandas as pd

from latentrec.config import RANKING_MODELS, SCALED_OPTIONS, TrainConfig, for_scale, ratings_scale
from latentrec.data.ratings import Ratings, as_ratings
from latentrec.data.split import hold_out
from latentrec.errors import ConfigError
from latentrec.evaluation.evaluate import evaluate
from latentrec.training.callback import Callback
from latentrec.training.fit import data_warnings_once, fit
from latentrec.use.recommender import Recommender


@dataclass(frozen=True)
class Float:
    low: float
    high: float
    log: bool = False


@dataclass(frozen=True)
class Int:
    low: int
    high: int
    step: int = 1
    log: bool = False


@dataclass(frozen=True)
class Choice:
    choices: tuple


Space = dict  # option name -> Float | Int | Choice
FIXED = {"model", "solver", "seed", "valid_pct", "valid_by", "device"}  # the same for every trial of a study

# Ranges around each recipe in config.RECIPES, wide enough to find better settings on other data.
DEFAULT_SPACES: dict[tuple[str, str], Space] = {
    ("dot", "sgd"): {
        "n_factors": Int(16, 200, log=True), "epochs": Int(20, 80, step=10),
        "lr": Float(0.005, 0.05, log=True), "wd": Float(0.02, 0.3, log=True),
        "schedule": Choice(("cosine", "onecycle")),
    },
    ("dot", "autograd"): {
        "n_factors": Int(8, 128, log=True), "epochs": Int(5, 30),
        "lr": Float(1e-3, 3e-2, log=True), "wd": Float(1e-3, 0.3, log=True),
        "bs": Choice((256, 512, 1024, 2048, 4096)), "schedule": Choice(("onecycle", "cosine")),
    },
    # ALS: rank, lambda (wd, frequency-weighted) and sweeps (epochs); Bayes: rank and sweeps (burn-in: a sixth).
    ("dot", "als"): {"n_factors": Int(8, 128, log=True), "epochs": Int(3, 20), "wd": Float(0.03, 0.5, log=True)},
    # kept small enough that 30 trials fit in about two minutes on ML-100K on 2 cores
    ("dot", "bayes"): {"n_factors": Int(5, 24, log=True), "epochs": Int(30, 100, step=10)},
    ("ease", "closed"): {"wd": Float(50.0, 2000.0, log=True), "dropout": Float(0.0, 0.5),
                         "rating_weight": Float(0.0, 0.5)},
    ("ials", "cg"): {"n_factors": Int(16, 128, log=True), "epochs": Int(5, 20), "wd": Float(5.0, 200.0, log=True),
                     "alpha": Float(1.0, 20.0, log=True), "rating_weight": Float(0.0, 0.5)},
    ("nn", "autograd"): {
        "epochs": Int(3, 15), "lr": Float(1e-3, 2e-2, log=True), "wd": Float(0.01, 0.5, log=True),
        "dropout": Float(0.0, 0.5), "bs": Choice((512, 1024, 2048)),
    },
}


def solver_for(cfg: TrainConfig) -> str:
    """The solver ``fit`` trains ``cfg`` with: the given one, else the recipe's."""
    return cfg.solver or cfg.resolved().solver


def default_space(model: str, solver: str, ratings: Ratings | None = None) -> Space:
    """The default search space for a model and solver (only options that ``TrainConfig`` has). Given the training
    ``ratings``, the ranges of the rate and decay move to their scale as ``fit`` moves the recipe's values
    (``config.for_scale``): sgd's default decay range on ratings from 0 to 1,000 is ``0.02 * c**2`` upwards."""
    known = {f.name for f in fields(TrainConfig)}
    space = DEFAULT_SPACES.get((model, solver))
    if space is None:
        raise ConfigError(f"There is no default search space for --model {model} --solver {solver}; "
                          "give one as a [space] table in --config.")
    moved = SCALED_OPTIONS.get((model, solver), {})
    if ratings is not None and moved and len(ratings):
        c2 = ratings_scale(ratings.df["rating"].to_numpy(np.float32))  # as fit measures them
        space = {k: replace(v, low=v.low * c2 ** moved[k], high=v.high * c2 ** moved[k]) if k in moved else v
                 for k, v in space.items()}
    return {k: v for k, v in space.items() if k in known}


def space_from_toml(table: dict, where: str = "[space]") -> Space:
    """``{lr = {low = 1e-3, high = 0.1, log = true}, n_factors = {low = 8, high = 64}, schedule = [..]}``.

    A table with integer bounds is an integer range (``step`` optional), with a float bound a
    float range; a list is a set of choices.
    """
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table of option = range or list of choices.")
    return checked_space(table, where)


def checked_space(space: dict, where: str = "space") -> Space:
    """``space`` with every name a training option that can be searched and every value a :class:`Float`,
    :class:`Int` or :class:`Choice`; a ``{low, high}`` dict or a list is read as in a TOML ``[space]`` table."""
    known = {f.name for f in fields(TrainConfig)} - FIXED
    checked: Space = {}
    for raw, spec in space.items():
        name = str(raw).replace("-", "_")
        if name not in known:
            raise ConfigError(f"{where}: {raw} is not a training option that can be searched "
                              f"({', '.join(sorted(known))}).")
        if isinstance(spec, Choice):  # its choices checked, as a tuple
            spec = list(spec.choices)
        checked[name] = spec if isinstance(spec, (Float, Int)) else _dist(spec, f"{where} {raw}")
    return checked


def _dist(spec, where: str):
    if isinstance(spec, list):
        if not spec or any(isinstance(v, (dict, list)) for v in spec):
            raise ConfigError(f"{where} must list at least one plain value.")
        return Choice(tuple(spec))
    if not isinstance(spec, dict) or not {"low", "high"} <= set(spec) or set(spec) - {"low", "high", "log", "step"}:
        raise ConfigError(f"{where} must be {{low = ..., high = ...}} (log, step optional) or a list of choices "
                          f"(in Python also latentrec.Float(low, high), latentrec.Int(low, high) or "
                          f"latentrec.Choice([...])), not {spec!r}.")
    low, high, log, step = spec["low"], spec["high"], spec.get("log", False), spec.get("step")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)) or not low <= high:
        raise ConfigError(f"{where} needs numbers low <= high, not {low!r} and {high!r}.")
    if not isinstance(log, bool) or (log and low <= 0):
        raise ConfigError(f"{where}: log = true needs low > 0 (and log must be true or false).")
    if isinstance(low, int) and isinstance(high, int) and (step is None or isinstance(step, int)):
        if step is not None and (step < 1 or log):
            raise ConfigError(f"{where}: step must be a whole number >= 1, without log.")
        return Int(low, high, step or 1, log)
    if step is not None:
        raise ConfigError(f"{where}: step applies to whole-number ranges only.")
    return Float(float(low), float(high), log)


def suggest(trial: optuna.Trial, name: str, dist):
    if isinstance(dist, Float):
        return trial.suggest_float(name, dist.low, dist.high, log=dist.log)
    if isinstance(dist, Int):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    return trial.suggest_categorical(name, list(dist.choices))


class PruningCallback(Callback):
    """Trainer callback: report the valid RMSE at each tenth of the epochs; stop the trial if hopeless."""

    def __init__(self, trial: optuna.Trial, epochs: int):
        self.trial, self.epochs = trial, epochs
        self.step, self.history = 0, []

    def on_epoch_end(self, trainer, record: dict) -> None:
        self.history = trainer.history
        step = 10 * (10 * record["epoch"] // self.epochs)
        if "valid_rmse" in record and step > self.step:
            self.step = step
            self.trial.report(record["valid_rmse"], step)
            if self.trial.should_prune():
                raise optuna.TrialPruned(f"valid RMSE {record['valid_rmse']:.4f} after {record['epoch']} epochs")


@dataclass
class TuneResult:
    study: optuna.Study
    table: pd.DataFrame  # one row per finished trial
    space: Space
    best_config: dict  # the winner's resolved TrainConfig: the options its model and solver read (``saved``)
    best_trial: int
    model: Recommender | None  # the winner refit on all training rows (or its trial's model)
    test: dict | None  # evaluate() of ``model`` on the test data
    seconds: float


@contextmanager
def _quiet_failed_trials():
    """A trial that raises ends the search with the caller's own one-sentence error (Ctrl-C: "interrupted"), so
    optuna's warning with the traceback, logged first, would only repeat it: silenced for this search only."""
    logger = logging.getLogger("optuna.study._optimize")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def trial_config(base: TrainConfig, solver: str, params: dict) -> TrainConfig:
    """``base`` with a trial's values, resolved; a momentum drawn beside an optimizer that has none is left out."""
    if params.get("opt", base.opt) != "sgd":
        params = {k: v for k, v in params.items() if k != "momentum"}
    return replace(base, solver=solver, **params).resolved()


def make_study(storage: str | None, study_name: str, seed: int, pruner=None) -> optuna.Study:
    """A new study, or the stored one of that name (so a killed search resumes)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if storage:
        if storage.startswith("sqlite:///") and len(storage) > len("sqlite:///"):  # a file: its folder made if new
            try:
                Path(storage[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise ConfigError(f"Cannot open --storage {storage}: {e.strerror or e}.") from None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            try:
                storage = optuna.storages.RDBStorage(storage, heartbeat_interval=30, grace_period=90)
            except Exception as e:  # SQLAlchemy raises many kinds for a bad URL or file
                raise ConfigError(f"Cannot open --storage {storage}: {e}.") from None
    study = optuna.create_study(
        storage=storage, study_name=study_name, load_if_exists=True, direction="minimize",
        pruner=pruner or optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=20),
    )
    # seeded by the trials already stored too: a resumed search would otherwise propose its first trials again
    study.sampler = optuna.samplers.TPESampler(seed=(seed + len(study.trials)) % 2**32, n_startup_trials=8,
                                               multivariate=True)
    return study


def finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED))


def trained(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The finished trials that trained a model: not repeats of an earlier one (what ``n_trials`` counts)."""
    return [t for t in finished(study) if "repeat_of" not in t.user_attrs]


@data_warnings_once()  # the trials' fits and the refit say once what they find odd in the ratings
def tune(train: Ratings | pd.DataFrame | str, valid: Ratings | pd.DataFrame | str | None = None,
         base: TrainConfig | None = None, space: Space | None = None,
         n_trials: int | None = 30, timeout: float | None = None, storage: str | None = None,
         study_name: str = "latentrec", test: Ratings | pd.DataFrame | str | None = None, refit: bool = True,
         pruner=None, on_trial=None) -> TuneResult:
    """Search ``space`` around ``base``; ``n_trials`` counts every finished trial of the study that trained a model,
    stored ones too (a repeat of settings tried takes the earlier trial's figures and is not counted).

    ``base`` fixes everything not searched (model, solver, seed, valid_pct, ...). The winner is the trial
    with the lowest validation RMSE after its last epoch (a ranking model's: the highest validation NDCG@10);
    with ``refit`` it is retrained on all training rows (validation rows included) before ``test`` is scored,
    once, beside the ranker that ``--ranker auto`` keeps on the search's own split (its check against
    popularity needs held-out rows). ``train``, ``valid`` and ``test`` may also be DataFrames, dataset names or
    files, read as :func:`~latentrec.data.ratings.load_ratings` reads them.
    """
    t_start = time.perf_counter()
    if n_trials is not None and (isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1):
        raise ConfigError(f"n_trials (--trials) must be a whole number of at least 1, not {n_trials!r}.")
    train, valid, test = (None if x is None else as_ratings(x) for x in (train, valid, test))
    base = base or TrainConfig()
    if base.seed is None:
        raise ConfigError("Tuning needs a fixed --seed, so that every trial sees the same validation rows.")
    if valid is None and not base.valid_pct > 0:
        raise ConfigError("Tuning needs validation data: give --valid FILE or a --valid-pct above 0.")
    solver = solver_for(base)
    carved, carved_valid = hold_out(train, valid, base.valid_pct, base.seed, base.valid_by)  # each trial's fit's rows
    space = default_space(base.model, solver, carved) if space is None else checked_space(dict(space))
    if not space:
        raise ConfigError("The search space is empty: nothing to tune.")
    for name, dist in space.items():  # every point of the space must be a valid config
        for value in _corners(dist):
            trial_config(base, solver, {name: value, **({"opt": "sgd"} if name == "momentum" else {})})
    study = make_study(storage, study_name, base.seed, pruner)
    _check_setup(study, json.loads(json.dumps({
        "data": train.source, "n_train": len(train), "valid": valid.source if valid is not None else None,
        "base": base.to_dict(), "space": {k: repr(v) for k, v in space.items()}})))

    ranking = base.model in RANKING_MODELS
    if ranking:  # the carve fit would make, kept to score the lists on
        train, valid = carved, carved_valid

    def objective(trial: optuna.Trial) -> float:
        params = {k: suggest(trial, k, d) for k, d in space.items()}
        cfg = trial_config(base, solver, params)
        trial.set_user_attr("config", cfg.to_dict())
        if (same := _run_before(trial, params)) is not None:  # a seeded fit would only score the same again
            return _repeat(trial, same)
        if ranking:
            t0 = time.perf_counter()
            rec, _ = fit(train, valid, cfg)
            rec.info.pop("valid_digest")  # scored here as the validation rows they are
            g = evaluate(rec, valid)["ranking"]
            ndcg = g["model"][f"ndcg@{g['k']}"]  # k: 10, or fewer where the catalog holds fewer items
            _record(trial, [], time.perf_counter() - t0, None)
            trial.set_user_attr("valid_ndcg@10", ndcg)
            return -ndcg
        cb = PruningCallback(trial, cfg.epochs)
        t0 = time.perf_counter()
        try:
            _, trainer = fit(train, valid, replace(cfg, ranker="none"), callbacks=[cb])  # trials: RMSE only
        except optuna.TrialPruned as why:
            _record(trial, cb.history, time.perf_counter() - t0, f"pruned: {why}")
            raise
        _record(trial, trainer.history, time.perf_counter() - t0, trainer.diverged and "diverged")
        last = trainer.history[-1].get("valid_rmse", math.nan) if trainer.history else math.nan
        if trainer.diverged or not math.isfinite(last):
            raise optuna.TrialPruned(trainer.diverged or "no finite validation RMSE")
        return last

    # the recipe's own values go first, so the winner is never worse on validation; also after a stop killed
    # or failed that trial (a stored study's trial 0 left RUNNING or FAIL), as long as none holds them
    scaled = for_scale(base, base.resolved(), ratings_scale(carved.df["rating"].to_numpy(np.float32)))  # as fit
    recipe = {k: v for k, v in scaled.to_dict().items() if k in space and _contains(space[k], v)}
    held = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.WAITING)

    def holds_recipe(t: optuna.trial.FrozenTrial) -> bool:  # on the recipe's keys (the space may search others)
        params = t.params or t.system_attrs.get("fixed_params", {})  # a waiting trial's are fixed_params
        return all(k in params and params[k] == v for k, v in recipe.items())

    if recipe and not any(map(holds_recipe, study.get_trials(deepcopy=False, states=held))):
        study.enqueue_trial(recipe)
    callbacks = [lambda s, t: on_trial(trial_row(t, space))] if on_trial else None
    deadline = None if timeout is None else time.perf_counter() + timeout
    remaining = None if n_trials is None else max(0, n_trials - len(trained(study)))
    stale = 0  # rounds in a row that drew only repeats: three, and the space is taken as tried
    while remaining != 0 and stale < 3:  # a repeat trains nothing, so it does not count: draw again
        left = None if deadline is None else max(0.0, deadline - time.perf_counter())
        with _quiet_failed_trials():
            study.optimize(objective, n_trials=remaining, timeout=left, callbacks=callbacks, catch=(),
                           gc_after_trial=False)
        now = None if n_trials is None else max(0, n_trials - len(trained(study)))
        if now is None or (deadline is not None and time.perf_counter() >= deadline):
            break
        stale = stale + 1 if now == remaining else 0
        remaining = now
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        raise ConfigError("No trial finished unpruned; widen the search space or give more --trials.")
    winner = study.best_trial
    if "repeat_of" in winner.user_attrs:  # a tie that storage ordered first: the trial that trained
        winner = study.trials[winner.user_attrs["repeat_of"]]
    cfg = TrainConfig.from_dict(winner.user_attrs["config"])
    model, test_result = None, None
    if refit:
        if not ranking and cfg.ranker == "auto":  # auto's check against popularity needs held-out rows: the
            probe, _ = fit(train, valid, cfg)  # search's own split decides the ranker the refit keeps
            cfg = replace(cfg, ranker=probe.ranker_option)
        everything = train if valid is None else Ratings(pd.concat([train.df, valid.df], ignore_index=True),
                                                         train.source, train.titles, columns=train.columns)
        model, _ = fit(everything, None, replace(cfg, valid_pct=0.0))
    elif test is not None:
        model, _ = fit(train, valid, cfg)
    if test is not None:
        test_result = evaluate(model, test)
    table = pd.DataFrame([trial_row(t, space) for t in finished(study)])
    return TuneResult(study, table, space, TrainConfig.from_dict(winner.user_attrs["config"]).saved(), winner.number,
                      model, test_result,
                      time.perf_counter() - t_start)


def _run_before(trial: optuna.Trial, params: dict) -> optuna.trial.FrozenTrial | None:
    """The first finished trial of the study with ``params``, if any (TPE proposes a point of a small integer
    space again: Bayes' 160 on ML-100K)."""
    return next((t for t in finished(trial.study) if t.params == params), None)


def _repeat(trial: optuna.Trial, same: optuna.trial.FrozenTrial) -> float:
    """``same``'s outcome as ``trial``'s, not trained again: its figures, noted as a repeat (pruned if it was)."""
    for key, value in same.user_attrs.items():
        trial.set_user_attr(key, value)
    trial.set_user_attr("seconds", 0.0)
    trial.set_user_attr("repeat_of", same.number)
    trial.set_user_attr("note", f"repeats trial {same.number}" + (f" ({same.user_attrs['note']})"
                                                                   if same.user_attrs.get("note") else ""))
    if same.state == optuna.trial.TrialState.PRUNED:
        raise optuna.TrialPruned(f"repeats trial {same.number}")
    return same.value


def _contains(dist, value) -> bool:
    if isinstance(dist, Choice):
        return value in dist.choices
    ok = isinstance(value, (int, float)) and dist.low <= value <= dist.high
    return ok and (not isinstance(dist, Int) or (isinstance(value, int) and (value - dist.low) % dist.step == 0))


def _corners(dist) -> list:
    return list(dist.choices) if isinstance(dist, Choice) else [dist.low, dist.high]


def _check_setup(study: optuna.Study, setup: dict) -> None:
    """A resumed study must search the same data and space with the same fixed options."""
    stored = study.user_attrs.get("setup")
    if stored is None:
        study.set_user_attr("setup", setup)
    elif stored != setup:
        names = {"data": "data", "n_train": "number of training ratings", "valid": "validation data",
                 "base": "fixed options", "space": "search space"}
        what = ", ".join(names.get(k, k) for k in setup if stored.get(k) != setup[k])
        old, new = stored.get("base") or {}, setup["base"]
        options = [f"{k} {old.get(k)!r}, now {new.get(k)!r}" for k in new if old.get(k) != new.get(k)]
        what += f" ({'; '.join(options)})" if options else ""
        raise ConfigError(f"The stored study {study.study_name!r} was run with different {what}; "
                          "give another --study-name or --storage to start a new search.")


def _record(trial: optuna.Trial, history: list[dict], seconds: float, note: str | None) -> None:
    last = history[-1] if history else {}
    best = min((h for h in history if "valid_rmse" in h), key=lambda h: h["valid_rmse"], default={})
    trial.set_user_attr("train_rmse", last.get("train_rmse"))
    trial.set_user_attr("valid_rmse", last.get("valid_rmse"))
    trial.set_user_attr("valid_mae", last.get("valid_mae"))
    trial.set_user_attr("best_epoch", best.get("epoch"))
    trial.set_user_attr("best_valid_rmse", best.get("valid_rmse"))
    trial.set_user_attr("epochs_run", len(history))
    trial.set_user_attr("seconds", seconds)
    trial.set_user_attr("note", note or "")


def trial_row(t: optuna.trial.FrozenTrial, space: Space) -> dict:
    """One line of the report: hyperparameters, RMSEs after the last epoch run, best epoch, seconds, pruned?"""
    a = t.user_attrs
    row = {"trial": t.number}
    row.update({k: t.params.get(k, a.get("config", {}).get(k)) for k in space})
    row.update({k: a.get(k) for k in ("train_rmse", "valid_rmse", "valid_mae", "best_epoch", "best_valid_rmse",
                                      "epochs_run", "seconds")})
    if "valid_ndcg@10" in a:  # a ranking model's trial
        row["valid_ndcg@10"] = a["valid_ndcg@10"]
    row["pruned"] = t.state == optuna.trial.TrialState.PRUNED
    row["repeat_of"] = a.get("repeat_of")  # the earlier trial of the same values, whose figures these are
    row["note"] = a.get("note", "")
    return row
