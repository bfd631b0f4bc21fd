"""What ``latentrec tune`` leaves behind: the trial table (CSV, Markdown), the winner's TOML, two plots, a summary
and the winner's model, written as one folder whose files replace the last run's in one step (Ctrl-C and SIGTERM
held back); the model dir's files are replaced in place, as ``Recommender.save`` replaces them. One write id, in
summary.json, best.toml's header and the model's files, tells a whole report from one a ``kill -9`` cut in two
(:func:`report_mix`)."""

from __future__ import annotations

import json
import math
import re
import uuid
import warnings
from pathlib import Path

import optuna
import pandas as pd

from latentrec.atomic import atomic_folders, writable_or_fail, write_text
from latentrec.cli.config_file import dumps_toml
from latentrec.cli.jsonsafe import json_safe
from latentrec.errors import ModelFileError
from latentrec.evaluation.tune import TuneResult
from latentrec.use.interpret import figure, save_figure
from latentrec.use.model_dir import MODEL_FILES, WRITE_ID, weights_write_id

SUMMARY = "summary.json"
MODEL = "model"
BEST = "best.toml"
OWN = (BEST, "trials.csv", "trials.md", "valid_rmse_by_trial.png", "valid_ndcg_by_trial.png", "param_importances.png",
       MODEL, SUMMARY)  # what a run writes, renamed in this order (one it did not write is removed: a stale model/);
# best.toml first and summary.json last: when their write ids agree, every file renamed between them is of that run
TOML_ID = re.compile(r"^# write id: ([0-9a-f]+)", re.MULTILINE)


def scored_by(table: pd.DataFrame) -> tuple[str, str, str]:
    """The column a search is scored by (ranking models: NDCG@10, higher is better; else RMSE), its name and the
    file of its plot."""
    if "valid_ndcg@10" in table:
        return "valid_ndcg@10", "validation NDCG@10", "valid_ndcg_by_trial.png"
    return "valid_rmse", "validation RMSE", "valid_rmse_by_trial.png"


def files(table: pd.DataFrame) -> tuple[str, ...]:
    """The files :func:`write_report` writes for a search with this trial table."""
    return "trials.csv", "trials.md", BEST, scored_by(table)[2], "param_importances.png", SUMMARY


def summary(result: TuneResult) -> dict:
    t = result.table
    best = t.loc[t.trial == result.best_trial].iloc[0]
    return {
        "n_trials": int(len(t)), "n_pruned": int(t.pruned.sum()), "n_repeats": int(t.repeat_of.notna().sum()),
        "seconds": result.seconds,
        "best_trial": result.best_trial, "best_valid_rmse": float(best.valid_rmse if best.valid_rmse is not None else "nan"), "best_config": result.best_config,
        **({"best_valid_ndcg@10": float(best["valid_ndcg@10"])} if "valid_ndcg@10" in t else {}),
        "refit": result.model is not None and result.model.info.get("n_valid", 0) == 0,
        "test": result.test,
    }


def write_report(result: TuneResult, out: str | Path, toml_extra: dict | None = None,
                 write_id: str | None = None) -> dict:
    """Write every file of :func:`files` and the result's model (if any) into ``out``, all staged first and then
    moved in together (``atomic.atomic_folders``): the last run's files are replaced, its model/ removed when this
    run has none, and other files (a --storage database) stay; returns the summary. A model/ already there is
    replaced in place, its weights and then its description, before the report's files: a server reloading it
    never finds it missing. ``write_id``: the report's (default: a new one), which :func:`report_write_id` reads."""
    writable_or_fail(out, folder=True)
    out, info = Path(out), dict(summary(result), write_id=write_id or uuid.uuid4().hex)
    in_place = result.model is not None and (out / MODEL).is_dir()
    targets = [(out / MODEL, MODEL_FILES)] if in_place else []
    targets.append((out, tuple(name for name in OWN if name != MODEL or not in_place)))
    try:
        with atomic_folders(*targets) as stages:
            folder = stages[-1]
            _write_files(result, info, folder, toml_extra or {})
            if result.model is not None:
                result.model.save(stages[0] if in_place else folder / MODEL, write_id=info[WRITE_ID])
    except OSError as e:
        raise ModelFileError(f"Cannot write the report to {out}: {e.strerror or e}.") from None
    return info


def report_mix(out: str | Path) -> str | None:
    """None when the report in ``out`` is one run's (or there is none, or an older latentrec wrote it: no write id);
    else a sentence naming the files that are not of the run summary.json describes, as a ``kill -9`` between the
    renames of a rerun leaves them. model/ counts as its weights' write id: the model it loads as."""
    out = Path(out)
    ids = {SUMMARY: report_write_id(out), BEST: _toml_id(out / BEST)}
    if ids[SUMMARY] is None and ids[BEST] is None:
        return None
    if (out / MODEL).is_dir():
        ids[f"{MODEL}/"] = weights_write_id(out / MODEL)
    others = [name for name, write_id in ids.items() if write_id != ids[SUMMARY]]
    if not others:
        return None
    return (f"{out} holds files of two tune runs: {' and '.join(others)} {'is' if len(others) == 1 else 'are'} not of "
            f"the run {SUMMARY} describes (a tune killed while it wrote its report)")


def report_write_id(out: str | Path) -> str | None:
    """The write id of the report in ``out`` (its summary.json's, renamed in last); None if none."""
    try:
        write_id = json.loads((Path(out) / SUMMARY).read_text(encoding="utf-8")).get(WRITE_ID)
    except (OSError, ValueError, AttributeError, RecursionError):
        return None
    return write_id if isinstance(write_id, str) else None


def _toml_id(path: Path) -> str | None:
    try:
        found = TOML_ID.search(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return found[1] if found else None


def _write_files(result: TuneResult, info: dict, out: Path, toml_extra: dict) -> None:
    write_text(out / "trials.csv", result.table.to_csv(index=False))
    write_text(out / "trials.md", markdown(result.table, result.best_trial))
    score = (f"valid NDCG@10 {info['best_valid_ndcg@10']:.6f}" if "best_valid_ndcg@10" in info
             else f"valid RMSE {info['best_valid_rmse']:.6f} after its last epoch")
    refit = ("# tune's model/ trained on both files for exactly its epochs: to do the same, train on one file holding"
             " both with --valid-pct 0\n" if toml_extra.get("valid") else
             "# tune's model/ (all training rows, exactly its epochs): latentrec train --config best.toml "
             "--valid-pct 0\n")
    header = (f"# latentrec tune winner: trial {result.best_trial}, {score}.\n"
              "# Reproduce the trial (its epoch table and validation figures): latentrec train --config best.toml\n"
              f"{refit}"
              f"# write id: {info[WRITE_ID]} (summary.json and model/ of the same run carry it)\n")
    write_text(out / BEST, header + dumps_toml({**toml_extra, **result.best_config}))
    plot_trials(result.table, out / scored_by(result.table)[2])
    plot_importances(result.study, list(result.space), out / "param_importances.png")
    write_text(out / SUMMARY, json.dumps(json_safe(info), indent=1) + "\n")


def fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4f}" if 0.01 <= abs(value) < 1000 else f"{value:.3g}"
    return str(value)


def markdown(table: pd.DataFrame, best_trial: int) -> str:
    """The trial table as Markdown, the winner in bold."""
    cols = list(table.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---:" for _ in cols) + "|"]
    for row in table.itertuples(index=False):
        cells = [fmt(v) for v in row]
        if row.trial == best_trial:
            cells = [f"**{c}**" if c else c for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_trials(table: pd.DataFrame, path: Path) -> None:
    """The validation score of each trial (pruned ones hollow, at their last report) and the running best."""
    column, name, _ = scored_by(table)
    higher = column != "valid_rmse"
    fig, ax = figure((7, 4))
    done, pruned = table[~table.pruned], table[table.pruned]
    ax.scatter(done.trial, done[column], color="tab:blue", label="complete", zorder=3)
    if len(pruned):
        ax.scatter(pruned.trial, pruned[column], facecolors="none", edgecolors="tab:gray", label="pruned", zorder=3)
    running = done.set_index("trial")[column].reindex(table.trial)
    best = (running.cummax() if higher else running.cummin()).ffill()
    ax.step(table.trial, best.to_numpy(), where="post", color="tab:red", label="best so far")
    values = table[column].dropna()
    if len(values) > 2 and not higher:  # keep the interesting range readable when a few trials are far off
        lo, hi = values.min(), values.quantile(0.9)
        top = hi + 0.15 * (hi - lo + 1e-3)
        ax.set_ylim(lo - 0.05 * (hi - lo + 1e-3), top)
        off = table[table[column] > top]
        if len(off):  # drawn at the edge, not left out
            ax.scatter(off.trial, [top] * len(off), marker="^", color="tab:orange", clip_on=False, zorder=4,
                       label=f"above the scale ({', '.join(f'{v:.3f}' for v in off[column])})")
    label = name if higher else f"{name} (last epoch run)"
    ax.set(xlabel="trial", ylabel=label, title=f"{name[0].upper()}{name[1:]} by trial")
    ax.xaxis.get_major_locator().set_params(integer=True)  # trials are whole numbers
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)


def importances(study: optuna.Study, params: list[str]) -> dict[str, float] | None:
    """Parameter importances (PED-ANOVA, which needs no scikit-learn); None if too few trials."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.PedAnovaImportanceEvaluator(), params=params)
        except (ValueError, RuntimeError, ZeroDivisionError):
            return None


FIRM_IMPORTANCE = 20  # finished trials below which the importances are a rough guide


def plot_importances(study: optuna.Study, params: list[str], path: Path) -> None:
    imp = importances(study, params)
    fig, ax = figure((6, 0.5 * max(len(params), 2) + 1.2))
    if imp:
        names = list(imp)[::-1]
        ax.barh(names, [imp[n] for n in names], color="tab:blue")
        n = sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
        rough = "; few trials: a rough guide" if n < FIRM_IMPORTANCE else ""
        ax.set(xlabel="importance (PED-ANOVA)", title=f"Which hyperparameters mattered ({n} finished trials{rough})")
    else:
        ax.axis("off")
        ax.text(0.5, 0.5, "Too few finished trials to rank the hyperparameters.", ha="center", va="center")
    fig.tight_layout()
    save_figure(fig, path)
