"""Config files: TOML fills what the command line leaves out, flags win, bad values get one sentence."""

from __future__ import annotations

import argparse
import json
import math
import tomllib

import numpy as np
import pytest
from conftest import lowrank_ratings
from hypothesis import given
from hypothesis import strategies as st

from latentrec.cli import main, train
from latentrec.cli.config_file import apply_config, dumps_toml, read_config
from latentrec.config import TrainConfig
from latentrec.errors import ConfigError


def parse(argv):
    """``latentrec train`` options alone, as its run() sees them."""
    sub = argparse.ArgumentParser().add_subparsers()
    train.add_parser(sub)
    args = sub.choices["train"].parse_args(argv[1:])
    apply_config(args)
    return args


def test_file_fills_options_and_flags_win(tmp_path):
    (tmp_path / "c.toml").write_text('n-factors = 12\nepochs = 7\nlr = 1\ny_range = [0.5, 5]\nschedule = "constant"\n')
    args = parse(["train", "--config", str(tmp_path / "c.toml"), "--epochs", "3", "--wd", "0.5"])
    assert (args.n_factors, args.epochs, args.lr, args.wd) == (12, 3, 1.0, 0.5)
    assert isinstance(args.lr, float) and args.y_range == [0.5, 5.0] and args.schedule == "constant"
    assert (args.valid_pct, args.seed, args.out, args.json) == (None, 42, "model", False)  # real defaults (valid_pct: by --split)


def test_list_options(tmp_path):
    (tmp_path / "c.toml").write_text("layers = [64, 32]\n")
    assert parse(["train", "--config", str(tmp_path / "c.toml")]).layers == [64, 32]
    (tmp_path / "c.toml").write_text("layers = []\n")
    with pytest.raises(ConfigError, match="layers must be a list of one or more"):
        parse(["train", "--config", str(tmp_path / "c.toml")])


def test_flags_equal_to_the_default_still_win(tmp_path):
    (tmp_path / "c.toml").write_text("seed = 7\nvalid_pct = 0.1\n")
    args = parse(["train", "--config", str(tmp_path / "c.toml"), "--seed", "42"])
    assert args.seed == 42 and args.valid_pct == 0.1


@pytest.mark.parametrize("text, words", [
    ('epochs = "ten"', "epochs must be a whole number"),
    ("epochs = 2.5", "epochs must be a whole number"),
    ("lr = true", "lr must be a number"),
    ('model = "tree"', "model must be one of"),
    ("y_range = [1]", "y_range must be a list of 2"),
    ("factors = 3", "unknown option(s) factors"),
    ("bogus_key = 3", "unknown option(s) bogus_key (known:"),  # nothing close: an IndexError traceback
    ("epochs = [", "not valid TOML"),
])
def test_bad_files_are_one_clear_sentence(tmp_path, text, words):
    (tmp_path / "c.toml").write_text(text)
    with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(")", r"\)")):
        parse(["train", "--config", str(tmp_path / "c.toml")])


def test_a_byte_order_mark_is_read_past(tmp_path):
    """Notepad saves UTF-8 with a BOM; tomllib alone calls it an 'Invalid statement (at line 1, column 1)'."""
    (tmp_path / "c.toml").write_bytes("\ufeffepochs = 7\nschedule = \"constant\"\n".encode())
    args = parse(["train", "--config", str(tmp_path / "c.toml")])
    assert args.epochs == 7 and args.schedule == "constant"


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        read_config(tmp_path / "nope.toml")


def test_train_records_the_resolved_config_and_retrains_from_a_model_dir(tmp_path, capsys):
    lowrank_ratings(n_users=60, n_items=40, density=0.4)[0].to_csv(tmp_path / "r.csv", index=False)
    (tmp_path / "c.toml").write_text(f'data = "{tmp_path / "r.csv"}"\nn_factors = 3\nepochs = 2\ndevice = "cpu"\n')
    assert main(["train", "--config", str(tmp_path / "c.toml"), "--epochs", "4", "--out", str(tmp_path / "m"),
                 "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    stored = json.loads((tmp_path / "m" / "model.json").read_text())["config"]
    assert stored["epochs"] == 4 and stored["n_factors"] == 3 and stored["burn_in"] == 4 // 6  # resolved
    assert "lr" not in stored and "opt" not in stored  # the Bayesian solver reads neither
    assert main(["train", "--config", str(tmp_path / "m"), "--out", str(tmp_path / "m2"), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["config"] == first["config"] and again["metrics"] == first["metrics"]


scalars = st.one_of(st.booleans(), st.integers(-2**62, 2**62), st.floats(allow_nan=False),
                    st.text(st.characters(blacklist_categories=("Cs",)), max_size=20))


@given(st.dictionaries(st.from_regex(r"[a-z_]{1,10}", fullmatch=True),
                       st.one_of(scalars, st.lists(st.floats(allow_nan=False), max_size=3)), max_size=6))
def test_dumps_toml_round_trips(values):
    back = tomllib.loads(dumps_toml(values))
    assert back == values


def test_dumps_toml_nan_and_tables():
    back = tomllib.loads(dumps_toml({"a": math.nan, "b": None, "space": {"lr": {"low": 0.1, "high": 1.0}}}))
    assert math.isnan(back["a"]) and "b" not in back and back["space"]["lr"] == {"low": 0.1, "high": 1.0}


def test_a_relative_data_path_is_found_beside_the_config_file_from_any_folder(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "project"
    folder.mkdir()
    lowrank_ratings(n_users=40, n_items=30, density=0.4)[0].to_csv(folder / "r.csv", index=False)
    (folder / "c.toml").write_text('data = "r.csv"\nn_factors = 3\nepochs = 2\ndevice = "cpu"\n')
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--config", "project/c.toml", "--out", "m", "--json"]) == 0
    assert json.loads((tmp_path / "m" / "model.json").read_text())["data"] == str((folder / "r.csv").resolve())
    monkeypatch.chdir(folder.parent.parent)  # a model dir's recorded data is absolute: it retrains from anywhere
    assert main(["train", "--config", str(tmp_path / "m"), "--out", str(tmp_path / "m2"), "--json"]) == 0


def test_a_dataset_name_stays_a_name_beside_a_folder_of_that_name(tmp_path, monkeypatch):
    (tmp_path / "ml-100k").mkdir()
    (tmp_path / "c.toml").write_text('data = "ml-100k"\n')
    args = parse(["train", "--config", str(tmp_path / "c.toml")])
    assert args.data == "ml-100k"


def test_a_model_dir_config_with_another_solver_keeps_only_what_every_solver_shares(tmp_path, capsys):
    lowrank_ratings(n_users=40, n_items=30, density=0.4)[0].to_csv(tmp_path / "r.csv", index=False)
    assert main(["train", "--data", str(tmp_path / "r.csv"), "--epochs", "3", "--out", str(tmp_path / "bayes"),
                 "--device", "cpu", "--seed", "7"]) == 0
    assert main(["train", "--config", str(tmp_path / "bayes"), "--solver", "als", "--wd", "0.1",
                 "--out", str(tmp_path / "als"), "--json"]) == 0
    stored = json.loads((tmp_path / "als" / "model.json").read_text())["config"]
    assert stored["solver"] == "als" and stored["wd"] == 0.1 and stored["seed"] == 7  # the shared seed is kept
    assert main(["train", "--config", str(tmp_path / "bayes"), "--model", "nn", "--epochs", "1",
                 "--out", str(tmp_path / "nn"), "--json"]) == 0  # another model takes its own solver
    assert json.loads((tmp_path / "nn" / "model.json").read_text())["config"]["solver"] == "autograd"


def test_a_default_burn_in_in_a_file_follows_the_epochs(tmp_path, capsys):
    lowrank_ratings(n_users=40, n_items=30, density=0.4)[0].to_csv(tmp_path / "r.csv", index=False)
    (tmp_path / "best.toml").write_text(f'data = "{tmp_path / "r.csv"}"\nepochs = 60\nburn_in = 10\n'
                                        'device = "cpu"\n')  # as tune's best.toml writes a bayes winner
    assert main(["train", "--config", str(tmp_path / "best.toml"), "--epochs", "6", "--out", str(tmp_path / "m"),
                 "--json"]) == 0
    assert json.loads((tmp_path / "m" / "model.json").read_text())["config"]["burn_in"] == 1
    assert main(["train", "--config", str(tmp_path / "best.toml"), "--solver", "sgd", "--epochs", "1",
                 "--out", str(tmp_path / "sgd"), "--json"]) == 0


def test_a_numpy_integer_seed_is_a_seed():
    assert TrainConfig(seed=np.int64(5)).resolved().seed == 5


def test_valid_file_and_valid_pct_together_are_refused_and_valid_records_no_hold_out(tmp_path, capsys):
    from latentrec.cli import main

    said = "--valid-pct 0.3 chooses rows of --data to validate on, and v.csv is a validation file of its own"
    with pytest.raises(ConfigError, match=said):
        parse(["train", "--data", "x.csv", "--valid", "v.csv", "--valid-pct", "0.3"])
    assert main(["tune", "--data", "x.csv", "--valid", "v.csv", "--valid-pct", "0.3", "--out", str(tmp_path / "t")]) == 2
    assert said in capsys.readouterr().err
    with pytest.raises(ConfigError, match="--valid-by time chooses rows of --data"):
        parse(["train", "--data", "x.csv", "--valid", "v.csv", "--valid-by", "time"])
    (tmp_path / "c.toml").write_text('valid_pct = 0.3\nvalid_by = "time"\n')  # a config's hold-out gives way
    args = parse(["train", "--data", "x.csv", "--valid", "v.csv", "--config", str(tmp_path / "c.toml")])
    assert args.valid_pct == 0 and args.valid_by == "random"
    (tmp_path / "best.toml").write_text('valid = "v.csv"\n')  # as tune's best.toml after tune --valid FILE
    with pytest.raises(ConfigError, match=r"--valid-pct 0.2 chooses .* v.csv \(valid in .*best.toml\) is a validation"):
        parse(["train", "--data", "x.csv", "--config", str(tmp_path / "best.toml"), "--valid-pct", "0.2"])


def test_a_value_out_of_range_names_the_config_file_that_set_it(tmp_path):
    from latentrec.cli.config_file import resolved
    from latentrec.cli.train import config_from_args

    (tmp_path / "c.toml").write_text("epochs = 0\n")
    args = parse(["train", "--data", "x.csv", "--config", str(tmp_path / "c.toml")])
    with pytest.raises(ConfigError, match=r"c\.toml: epochs \(--epochs\) must be a whole number"):
        resolved(args, config_from_args(args))
    args = parse(["train", "--data", "x.csv", "--epochs", "0", "--config", str(tmp_path / "c.toml")])
    with pytest.raises(ConfigError, match=r"^epochs \(--epochs\) must be"):  # the command line set it
        resolved(args, config_from_args(args))
