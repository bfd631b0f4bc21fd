"""``latentrec ablation`` end to end on a small file: every step, one table, Markdown written."""

from __future__ import annotations

import json

from conftest import lowrank_ratings

from latentrec.cli import main


def test_ablation_runs_end_to_end(tmp_path, capsys):
    df, _ = lowrank_ratings(n_users=60, n_items=40, density=0.4, seed=3)
    data = tmp_path / "ratings.csv"
    df.to_csv(data, index=False)
    out = tmp_path / "ablation.md"
    assert main(["ablation", "--data", str(data), "--out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    steps = [r["step"] for r in result["rows"]]
    assert steps == ["dot product", "+ y_range sigmoid", "+ biases", "+ weight decay", "without the sigmoid",
                     "without biases", "CollabNN", "ALS", "Bayesian"]
    rows = {r["step"]: r for r in result["rows"]}
    assert rows["Bayesian"]["solver"] == "bayes" and rows["CollabNN"]["model"] == "nn"
    assert rows["+ weight decay"]["rmse"] < rows["dot product"]["rmse"]
    text = out.read_text()
    assert text.count("\n| ") == 10 and "| Bayesian | dot | bayes |" in text


def test_ablation_refuses_unknown_steps(tmp_path, capsys):
    assert main(["ablation", "--data", "x.csv", "--only", "magic"]) == 2
    assert "unknown step" in capsys.readouterr().err


def test_the_help_names_every_step_as_only_takes_it():
    from latentrec.cli import build_parser
    from latentrec.evaluation.ablation import STEPS

    described = build_parser()._subparsers._group_actions[0].choices["ablation"].description
    assert all(f'"{step.name}"' in described for step in STEPS)
