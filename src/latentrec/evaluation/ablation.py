"""The seed's and the book's journey on one split, one row per step, so each piece shows its worth.

Rows: a bare dot product; + the ``y_range`` sigmoid; + biases; + weight decay (the default
recipe); that recipe without the sigmoid, and without biases; CollabNN; ALS; Bayesian MF. The six
dot-product rows use the same solver and recipe (``--solver sgd``), only switching pieces on or off;
weight decay is 0 until its row. Without it the first three rows overfit, so each piece's worth shows
best in the two rows that take it out of the whole recipe. Every model trains on the whole training side
and is scored once on the test side.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from latentrec.config import TrainConfig
from latentrec.data.ratings import Ratings
from latentrec.evaluation.evaluate import evaluate
from latentrec.models.dot import DotProductBias
from latentrec.training.fit import fit


@dataclass(frozen=True)
class Step:
    name: str
    config: TrainConfig
    sigmoid: bool = True  # dot rows only: squash into y_range
    bias: bool = True  # dot rows only: user and item biases


STEPS = (
    Step("dot product", TrainConfig(solver="sgd", wd=0.0), sigmoid=False, bias=False),
    Step("+ y_range sigmoid", TrainConfig(solver="sgd", wd=0.0), bias=False),
    Step("+ biases", TrainConfig(solver="sgd", wd=0.0)),
    Step("+ weight decay", TrainConfig(solver="sgd")),
    Step("without the sigmoid", TrainConfig(solver="sgd"), sigmoid=False),
    Step("without biases", TrainConfig(solver="sgd"), bias=False),
    Step("CollabNN", TrainConfig(model="nn")),
    Step("ALS", TrainConfig(solver="als")),
    Step("Bayesian", TrainConfig(solver="bayes")),
)


def run_step(step: Step, train: Ratings, test: Ratings, seed: int | None = 42, device: str = "auto") -> dict:
    """Train one step on ``train`` (no validation carve) and score it on ``test``."""
    cfg = replace(step.config, valid_pct=0.0, seed=seed, device=device, ranker="none")  # scored by RMSE only

    def build(c, n_users, n_items, y_range):
        return DotProductBias(n_users, n_items, c.n_factors, y_range if step.sigmoid else None, bias=step.bias)

    custom = step.config.model == "dot" and step.config.solver == "sgd"
    rec, trainer = fit(train, None, cfg, build=build if custom else None)
    result = evaluate(rec, test, k=None)
    row = {"step": step.name, "model": rec.config["model"], "solver": rec.config["solver"],
           "rmse": result["rmse"], "mae": result["mae"], "seconds": trainer.train_seconds}
    if trainer.diverged:
        row["note"] = trainer.diverged
    return row


def run_ablation(train: Ratings, test: Ratings, seed: int | None = 42, device: str = "auto",
                 steps=STEPS, on_row=None) -> list[dict]:
    rows = []
    for step in steps:
        rows.append(run_step(step, train, test, seed, device))
        if on_row:
            on_row(rows[-1])
    return rows


def to_markdown(rows: list[dict], title: str) -> str:
    """The ablation table as Markdown (``seconds``: the training loop only)."""
    lines = [f"### {title}", "", "| step | model | solver | test RMSE | test MAE | seconds |",
             "|---|---|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['step']} | {r['model']} | {r['solver']} | {r['rmse']:.4f} | {r['mae']:.4f} | "
                     f"{r['seconds']:.2f} |")
    notes = [f"- {r['step']}: {r['note']}" for r in rows if r.get("note")]
    return "\n".join(lines + ([""] + notes if notes else [])) + "\n"
