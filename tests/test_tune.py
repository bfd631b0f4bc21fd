"""latentrec tune: a tiny search end to end, resuming, pruning, and a winner that reproduces exactly."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tomllib

import optuna
import pandas as pd
import pytest
from conftest import lowrank_ratings

from latentrec.cli import main
from latentrec.cli.tune_report import files
from latentrec.config import TrainConfig
from latentrec.data.ratings import Ratings
from latentrec.errors import ConfigError
from latentrec.evaluation.tune import Choice, Float, Int, make_study, space_from_toml, tune
from latentrec.training.fit import fit

SPACE_TOML = """
solver = "sgd"
epochs = 6
[space]
n-factors = {low = 2, high = 8}
lr = {low = 0.005, high = 0.05, log = true}
wd = {low = 0.001, high = 0.1, log = true}
schedule = ["cosine", "constant"]
"""


def tiny(seed: int = 0) -> pd.DataFrame:
    """About 2,900 shuffled ratings of a rank-3 model."""
    df = lowrank_ratings(n_users=120, n_items=70, k=3, density=0.35, seed=seed)[0]
    return df.sample(frac=1.0, random_state=seed).reset_index(drop=True)


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """One tiny search through the CLI: 4 trials, a test file, a config file with a [space] table."""
    d = tmp_path_factory.mktemp("tune")
    df = tiny()
    df.iloc[:2400].to_csv(d / "train.csv", index=False)
    df.iloc[2400:].to_csv(d / "test.csv", index=False)
    (d / "space.toml").write_text(SPACE_TOML)
    argv = ["tune", "--data", str(d / "train.csv"), "--test", str(d / "test.csv"), "--trials", "4",
            "--config", str(d / "space.toml"), "--device", "cpu", "--out", str(d / "out"), "--json"]
    assert main(argv) == 0
    return d


def test_tiny_search_writes_table_config_and_plots(searched, capsys):
    out = searched / "out"
    table = pd.read_csv(out / "trials.csv")
    for name in files(table):
        assert (out / name).stat().st_size > 0, name
    for png in ("valid_rmse_by_trial.png", "param_importances.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list(table.trial) == [0, 1, 2, 3]
    assert {"n_factors", "lr", "wd", "schedule", "train_rmse", "valid_rmse", "best_epoch", "seconds",
            "pruned"} <= set(table.columns)
    assert "epochs" not in table.columns  # fixed by the file, so not searched
    assert table.n_factors.between(2, 8).all() and table.schedule.isin(["cosine", "constant"]).all()
    assert "| trial |" in (out / "trials.md").read_text()
    best = tomllib.loads((out / "best.toml").read_text())
    summary = json.loads((out / "summary.json").read_text())
    assert best["epochs"] == 6 and best["n_factors"] == summary["best_config"]["n_factors"]
    assert not {"opt", "momentum", "loss", "layers", "burn_in"} & set(best)  # sgd does not read them
    assert summary["best_valid_rmse"] == pytest.approx(table.valid_rmse[~table.pruned].min())
    assert summary["refit"] and summary["test"]["n"] == len(tiny()) - 2400
    assert summary["test"]["rmse"] < summary["test"]["baselines"]["global_mean"]["rmse"]
    assert (out / "model" / "model.json").is_file()


def test_winner_toml_reproduces_its_trial_valid_rmse(searched, capsys):
    out = searched / "out"
    summary = json.loads((out / "summary.json").read_text())
    capsys.readouterr()
    assert main(["train", "--config", str(out / "best.toml"), "--device", "cpu", "--out",
                 str(searched / "again"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    history = json.loads((searched / "again" / "model.json").read_text())["history"]
    assert abs(history[-1]["valid_rmse"] - summary["best_valid_rmse"]) < 1e-6  # the trial's score: the last epoch
    row = pd.read_csv(out / "trials.csv").set_index("trial").loc[summary["best_trial"]]
    assert result["best_epoch"] == row.best_epoch
    assert abs(result["metrics"]["valid_rmse"] - row.best_valid_rmse) < 1e-6


def test_a_resumed_search_draws_new_trials(tmp_path):
    """Two runs of the command, as a user resumes a search: the second draws trials of its own."""
    tiny().to_csv(tmp_path / "r.csv", index=False)
    for trials in (3, 6):
        subprocess.run([sys.executable, "-m", "latentrec", "tune", "--data", str(tmp_path / "r.csv"), "--device", "cpu",
                        "--trials", str(trials), "--storage", f"sqlite:///{tmp_path / 'study.db'}",
                        "--out", str(tmp_path / f"out{trials}"), "--json"], check=True, capture_output=True, timeout=300)
    table = pd.read_csv(tmp_path / "out6" / "trials.csv")
    drawn = [tuple(row) for row in table[["n_factors", "epochs"]].itertuples(index=False)]
    assert not set(drawn[1:3]) & set(drawn[3:]), drawn  # not the first session's draws again (0 is the recipe)


def test_resumed_study_continues_its_trial_count(tmp_path):
    train = tiny()  # a DataFrame: tune reads it as load_ratings does
    space = {"n_factors": Int(2, 6), "lr": Float(0.005, 0.05, log=True)}
    base = TrainConfig(solver="sgd", epochs=4, device="cpu")
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    first = tune(train, base=base, space=space, n_trials=2, storage=storage, refit=False)
    assert len(first.table) == 2 and __import__("latentrec").tune is tune  # exported
    second = tune(train, base=base, space=space, n_trials=5, storage=storage, refit=False)
    assert list(second.table.trial) == [0, 1, 2, 3, 4]
    assert second.table.iloc[:2].equals(first.table)  # the stored trials are kept, not rerun
    with pytest.raises(ConfigError, match="different"):
        tune(train, base=TrainConfig(solver="sgd", epochs=5, device="cpu"), space=space, n_trials=6, storage=storage)


def test_settings_proposed_again_are_not_trained_again(monkeypatch):
    """TPE proposed Bayes' (6 factors, 100 epochs) in 4 of 30 trials on u1.base, each trained for 4 s to the same
    score. Here a space of two points: every later trial repeats one, takes its figures and fits nothing."""
    import latentrec.evaluation.tune as tuning

    fits = []
    real_fit = tuning.fit
    monkeypatch.setattr(tuning, "fit", lambda *a, **k: fits.append(1) or real_fit(*a, **k))
    result = tune(tiny(), base=TrainConfig(solver="sgd", epochs=3, device="cpu"), space={"n_factors": Choice((2, 3))},
                  n_trials=6, refit=False)
    t = result.table
    first = t[t.repeat_of.isna()]
    assert len(first) == len(fits) == 2 and set(first.n_factors) == {2, 3}
    assert len(t) >= 6  # repeats do not count as trials: drawn until a round of 4 had nothing new
    for row in t[t.repeat_of.notna()].itertuples():
        earlier = t.set_index("trial").loc[int(row.repeat_of)]
        assert row.n_factors == earlier.n_factors and row.valid_rmse == earlier.valid_rmse and row.seconds == 0
        assert row.note.startswith(f"repeats trial {int(row.repeat_of)}")
    assert result.best_trial in set(first.trial)  # the winner is the trial that ran
    assert "lr" in result.best_config and "burn_in" not in result.best_config  # what sgd reads, as in best.toml


def test_a_recipe_trial_stopped_by_an_interrupt_runs_again_on_resume(tmp_path, monkeypatch):
    """Ctrl-C during trial 0, the recipe, left it FAIL in the stored study (kill -9: RUNNING, which the same check
    passes over), and a rerun never tried the recipe: its winner could be worse than the defaults. A recipe only
    part of which lies in the space is queued once, not on every resume."""
    import latentrec.evaluation.tune as tuning

    train = Ratings(tiny(), "tiny")
    space = {"n_factors": Int(2, 12), "epochs": Int(2, 6)}
    base = TrainConfig(solver="sgd", n_factors=10, epochs=4, device="cpu")
    storage = f"sqlite:///{tmp_path / 'study.db'}"

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(tuning, "fit", stopped)
        with pytest.raises(KeyboardInterrupt):
            tune(train, base=base, space=space, n_trials=3, storage=storage, refit=False)
    resumed = tune(train, base=base, space=space, n_trials=3, storage=storage, refit=False)
    recipe = resumed.table[(resumed.table.n_factors == 10) & (resumed.table.epochs == 4)]
    assert len(recipe) == 1 and recipe.trial.iloc[0] == 1  # the first trial after the failed one
    again = tune(train, base=base, space=space, n_trials=4, storage=storage, refit=False)  # not queued twice
    assert ((again.table.n_factors == 10) & (again.table.epochs == 4)).sum() == 1
    partly = f"sqlite:///{tmp_path / 'partly.db'}"  # the recipe's n_factors (10) lies outside this space
    narrow = {"n_factors": Int(2, 6), "epochs": Int(2, 6)}
    for n in (2, 3, 4):
        study = tune(train, base=base, space=narrow, n_trials=n, storage=partly, refit=False).study
    queued = [t.number for t in study.trials if "fixed_params" in t.system_attrs]
    assert queued == [0] and len(study.trials) == 4  # the recipe's epochs=4 queued once, not on every resume


def test_hopeless_trial_is_pruned(tmp_path):
    train = Ratings(tiny(), "tiny")
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    pruner = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
    study = make_study(storage, "latentrec", 42, pruner)
    for lr in (0.02, 0.03, 0.025, 1e-7):  # the last one cannot learn anything in 10 epochs
        study.enqueue_trial({"lr": lr})
    result = tune(train, base=TrainConfig(solver="sgd", epochs=10, n_factors=4, device="cpu"), space={"lr": Float(1e-7, 0.1, log=True)},
                  n_trials=4, storage=storage, pruner=pruner, refit=False)
    row = result.table.iloc[-1]
    assert row.lr == 1e-7 and row.pruned and row.epochs_run < 10 and "pruned" in row.note
    assert not result.table.pruned.iloc[:3].any()
    assert result.best_trial != 3


def test_space_from_toml_and_its_errors():
    space = space_from_toml({"lr": {"low": 1e-3, "high": 0.1, "log": True}, "epochs": {"low": 5, "high": 50, "step": 5},
                             "schedule": ["cosine", "onecycle"]})
    assert space == {"lr": Float(1e-3, 0.1, True), "epochs": Int(5, 50, 5), "schedule": Choice(("cosine", "onecycle"))}
    for bad in ({"lrr": [1]}, {"lr": {"low": 1}}, {"lr": {"low": 0.0, "high": 1.0, "log": True}},
                {"lr": {"low": 2.0, "high": 1.0}}, {"epochs": {"low": 1, "high": 5, "step": 0}}, {"lr": []}):
        with pytest.raises(ConfigError):
            space_from_toml(bad)


def test_bad_input_exits_2_and_writes_nothing(tmp_path, capsys):
    tiny().to_csv(tmp_path / "r.csv", index=False)
    (tmp_path / "bad.toml").write_text("[space]\nlr = {low = 'a', high = 1}\n")
    out = tmp_path / "out"
    for extra in (["--config", str(tmp_path / "bad.toml")], ["--trials", "0"], ["--valid-pct", "0"]):
        code = main(["tune", "--data", str(tmp_path / "r.csv"), "--out", str(out), "--device", "cpu", *extra])
        assert code == 2
        err = capsys.readouterr().err
        assert err.startswith("latentrec tune: error:") and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("stored", [False, True])
def test_ctrl_c_during_a_trial_is_one_line_saying_what_was_kept(tmp_path, stored):
    """As Ctrl-C in the third trial (in a process of its own: optuna logs to the stderr it found at start)."""
    tiny().to_csv(tmp_path / "r.csv", index=False)
    storage = ["--storage", f"sqlite:///{tmp_path / 't.db'}"] if stored else []
    script = f"""
import sys
from latentrec.cli import main
from latentrec.evaluation import tune
calls, trained = [], tune.fit
def fit(*args, **kwargs):
    if len(calls) == 2:
        raise KeyboardInterrupt
    calls.append(1)
    return trained(*args, **kwargs)
tune.fit = fit
sys.exit(main(["tune", "--data", {str(tmp_path / "r.csv")!r}, "--device", "cpu", "--trials", "5",
               "--out", {str(tmp_path / "out")!r}, *{storage!r}]))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr and "failed with parameters" not in done.stderr, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("latentrec tune: interrupted; ") and ("run the same command again" in last) == stored, last


def test_a_space_key_the_solver_does_not_use_is_named(tmp_path, capsys):
    tiny().to_csv(tmp_path / "r.csv", index=False)
    (tmp_path / "t.toml").write_text('[space]\nlr = {low = 0.005, high = 0.05, log = true}\n')
    assert main(["tune", "--data", str(tmp_path / "r.csv"), "--config", str(tmp_path / "t.toml"),
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "[space] searches lr, which --model dot --solver bayes does not use" in err, err
    assert not (tmp_path / "o").exists()


def test_momentum_searched_beside_the_optimizer_is_left_out_of_adam_trials():
    space = {"opt": Choice(("sgd", "adam")), "momentum": Float(0.5, 0.95)}
    result = tune(Ratings(tiny(), "tiny"), base=TrainConfig(solver="autograd", epochs=2, device="cpu"), space=space,
                  n_trials=4, refit=False)
    assert len(result.table) == 4


def test_a_reused_out_folder_holds_one_whole_run(tmp_path, capsys, monkeypatch):
    """A second search into the same folder replaces the first one's report and model whole: interrupted, it
    leaves the first run; finished without a model (--no-refit), it leaves no stale one; a user's file stays."""
    from latentrec.cli import tune_report

    tiny().iloc[:1500].to_csv(tmp_path / "r.csv", index=False)
    out = tmp_path / "T"

    def run(solver: str, *extra: str) -> int:
        return main(["tune", "--data", str(tmp_path / "r.csv"), "--device", "cpu", "--trials", "2",
                     "--solver", solver, "--out", str(out), "--json", *extra])

    def solver_in_report() -> str:
        best = tomllib.loads((out / "best.toml").read_text())["solver"]
        assert json.loads((out / "summary.json").read_text())["best_config"]["solver"] == best
        return best

    assert run("als") == 0 and solver_in_report() == "als" and (out / "model" / "model.json").is_file()
    (out / "notes.txt").write_text("mine")
    with monkeypatch.context() as m:
        m.setattr(tune_report, "plot_importances", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
        assert run("sgd", "--no-refit") == 130  # Ctrl-C while the report is written
    assert capsys.readouterr().err.endswith(f"latentrec tune: interrupted while writing the report; {out} is left as "
                                            f"it was, and its finished trials were in memory only and are lost "
                                            f"(--storage sqlite:///tune.db keeps them, and a rerun of the same "
                                            f"command goes on from them).\n")
    assert solver_in_report() == "als" and (out / "model" / "model.json").is_file()
    assert run("sgd", "--no-refit") == 0
    assert solver_in_report() == "sgd" and not (out / "model").exists()
    assert (out / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["T", "r.csv"]  # no temp folder left behind


def test_a_study_database_kept_in_the_out_folder_stays_there(tmp_path, capsys):
    tiny().iloc[:1500].to_csv(tmp_path / "r.csv", index=False)
    out = tmp_path / "T"
    out.mkdir()
    argv = ["tune", "--data", str(tmp_path / "r.csv"), "--device", "cpu", "--solver", "als", "--out", str(out),
            "--storage", f"sqlite:///{out / 'study.db'}", "--json"]
    assert main([*argv, "--trials", "1"]) == 0 and main([*argv, "--trials", "2"]) == 0  # the second resumes it
    assert (out / "study.db").is_file() and len(pd.read_csv(out / "trials.csv")) == 2


def test_a_sqlite_storage_in_a_new_folder_is_made(tmp_path):
    study = make_study(f"sqlite:///{tmp_path / 'new' / 'study.db'}", "s", 0)
    assert study.study_name == "s" and (tmp_path / "new" / "study.db").is_file()


def test_a_report_carries_one_write_id_and_a_rerun_names_a_mixed_one(tmp_path, capsys):
    """summary.json, best.toml's header and the model's two files carry the run's write id; a report whose
    best.toml is of another run (as a kill -9 between the renames leaves it) is named by the next run, which then
    replaces it whole."""
    from latentrec.cli.tune_report import TOML_ID, report_mix
    from latentrec.use.model_dir import weights_write_id

    tiny().iloc[:1500].to_csv(tmp_path / "r.csv", index=False)
    out = tmp_path / "T"
    argv = ["tune", "--data", str(tmp_path / "r.csv"), "--device", "cpu", "--trials", "1", "--solver", "als",
            "--out", str(out), "--json"]

    def ids() -> set[str]:
        return {json.loads((out / "summary.json").read_text())["write_id"],
                TOML_ID.search((out / "best.toml").read_text())[1],
                json.loads((out / "model" / "model.json").read_text())["write_id"], weights_write_id(out / "model")}

    assert main(argv) == 0 and len(ids()) == 1 and report_mix(out) is None
    first = (out / "best.toml").read_text()
    assert main(argv) == 0 and report_mix(out) is None
    assert "tune: note" not in capsys.readouterr().err
    (out / "best.toml").write_text(first)  # the first run's, beside the second's summary and model
    assert report_mix(out) == (f"{out} holds files of two tune runs: best.toml is not of the run summary.json "
                               f"describes (a tune killed while it wrote its report)")
    assert main(argv) == 0 and len(ids()) == 1 and report_mix(out) is None
    assert (f"latentrec tune: note: {out} holds files of two tune runs: best.toml is not of the run summary.json "
            f"describes (a tune killed while it wrote its report); this run's report will replace them all."
            in capsys.readouterr().err)


def test_ctrl_c_that_comes_during_the_reports_renames_says_the_report_was_written(tmp_path, capsys, monkeypatch):
    """The renames hold Ctrl-C back until they are done; the message then says the new report is in place."""
    import latentrec.atomic as atomic
    from latentrec.cli.tune_report import report_mix

    tiny().iloc[:1500].to_csv(tmp_path / "r.csv", index=False)
    out = tmp_path / "T"
    argv = ["tune", "--data", str(tmp_path / "r.csv"), "--device", "cpu", "--trials", "1", "--solver", "als",
            "--out", str(out), "--json"]
    assert main(argv) == 0
    first = json.loads((out / "summary.json").read_text())["write_id"]
    real = atomic._move_entries

    def interrupted(stage, target, own):
        if target == out:  # the report's renames (not the staged model's own, into its staging folder)
            signal.raise_signal(signal.SIGINT)
        real(stage, target, own)

    monkeypatch.setattr(atomic, "_move_entries", interrupted)
    assert main(argv) == 130
    assert capsys.readouterr().err.endswith(f"latentrec tune: interrupted after the report was written to {out}.\n")
    assert json.loads((out / "summary.json").read_text())["write_id"] != first and report_mix(out) is None


def test_the_first_trial_is_the_recipe_as_fit_moves_it_to_the_ratings_scale():
    """On ratings 0-100 the recipe's rate and decay move (``config.for_scale``); the search's first trial must be
    that recipe, so that the winner is never worse on validation than what ``train`` gives."""
    df = tiny()
    df["rating"] = (df["rating"] - 1) * 25.0  # 1-5 -> 0-100
    train, base = Ratings(df, "tiny x25"), TrainConfig(solver="sgd", epochs=2, device="cpu", seed=3)
    result = tune(train, base=base, n_trials=1, refit=False)
    rec, _ = fit(train, None, base)
    first = result.table.iloc[0]
    assert (first.lr, first.wd) == pytest.approx((rec.config["lr"], rec.config["wd"]))


def test_tune_holds_out_the_latest_ratings_when_asked(tmp_path, capsys):
    df = tiny().assign(timestamp=lambda d: range(len(d)))
    df.to_csv(tmp_path / "r.csv", index=False)
    assert main(["tune", "--data", str(tmp_path / "r.csv"), "--valid-by", "user", "--trials", "1", "--solver", "als",
                 "--device", "cpu", "--out", str(tmp_path / "out"), "--json"]) == 0
    capsys.readouterr()
    assert tomllib.loads((tmp_path / "out" / "best.toml").read_text())["valid_by"] == "user"


def test_a_trial_far_off_is_drawn_at_the_edge_of_the_plot_and_said(tmp_path, monkeypatch):
    """The y axis stops near the 90th percentile: a trial above it was silently missing from the picture, and a
    "pruned" legend entry showed with nothing pruned."""
    from latentrec.cli import tune_report

    drawn = []
    monkeypatch.setattr(tune_report, "save_figure", lambda fig, path: drawn.append(fig))
    scores = [0.91, 0.90, 0.92, 0.89, 0.93, 0.90, 0.91, 1.108, 0.90, 0.92, 0.91, 0.90]
    table = pd.DataFrame({"trial": range(len(scores)), "valid_rmse": scores, "pruned": False})
    tune_report.plot_trials(table, tmp_path / "p.png")
    ax = drawn[0].axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "pruned" not in legend and "above the scale (1.108)" in legend
    assert ax.get_ylim()[1] < 1.108
