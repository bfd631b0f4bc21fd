"""The bad-input corpus: every case runs the real CLI.

An error case must exit 2 with one line ``latentrec CMD: error: ...`` that names the file (and
row and column where there is one), print no traceback and leave no file behind. A handled
case (BOM, CRLF, latin-1, unknown ids, ...) must succeed and read the data correctly.
"""

from __future__ import annotations

import gzip
import json
import os
import pickle
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import lowrank_ratings
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from latentrec.cli import main
from latentrec.config import TrainConfig
from latentrec.data.ratings import load_pairs, load_ratings
from latentrec.data.split import ml100k_split_files
from latentrec.errors import ConfigError, DataError
from latentrec.training.fit import fit

GOOD = "user,item,rating\nu1,i1,4\nu1,i2,3\nu2,i1,5\nu2,i3,2\nu3,i2,1\nu3,i3,4\n"


def snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def fails(capsys, root: Path, argv: list[str], *needles: str) -> str:
    """Run the CLI expecting exit 2, one error line containing ``needles``, no traceback, no new file."""
    before = snapshot(root)
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, err
    assert err.startswith(f"latentrec {argv[0]}: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in out + err
    for needle in needles:
        assert needle in err, err
    assert snapshot(root) == before, "a partial output file was left behind"
    return err


def write(path: Path, content: str | bytes) -> Path:
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def train_argv(data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--data", str(data), "--out", str(out), "--epochs", "1", "--n-factors", "2",
            "--device", "cpu", *extra]


# ---- ratings files -----------------------------------------------------------------------------

BAD_FILES = {
    "empty": ("", ["is empty"]),
    "utf-16": ("user,item,rating\n1,2,3\n2,1,4\n".encode("utf-16"), ["is UTF-16 text; save it as UTF-8"]),
    "header-only": ("user,item,rating\n", ["has a header but no rows", "user, item, rating"]),
    "blank-lines-only": ("\n\n\n", ["has no rows"]),
    "missing-rating-column": ("user,item,when\n1,2,3\n", ["no rating column", "--rating-col"]),
    "text-rating": ("user,item,rating\n1,2,3\n1,3,abc\n", ["row 3, column 'rating'", "'abc' is not a number"]),
    "nan-rating": ("user,item,rating\n1,2,3\n1,3,NaN\n", ["row 3, column 'rating'", "missing"]),
    "inf-rating": ("user,item,rating\n1,2,3\n1,3,inf\n", ["row 3, column 'rating'", "infinite"]),
    "negative-inf-rating": ("user,item,rating\n1,2,3\n2,2,-Infinity\n", ["row 3, column 'rating'", "infinite"]),
    "rating-beyond-float32": ("user,item,rating\n1,2,3\n2,2,-3.5e38\n",
                              ["row 3, column 'rating'", "the rating is -3.5e+38, beyond the range of a 32-bit float"]),
    "null-user": ("user,item,rating\n1,2,3\nnull,3,4\n", ["row 3, column 'user'", "user id is empty"]),
    "blank-item": ("user,item,rating\n1,2,3\n1, ,4\n", ["row 3, column 'item'", "item id is empty"]),
    "utf8-with-a-bad-byte": ("user,item,rating\nJosé,Café,3\nAnn,Tea,4\n".encode() + b"Ren\xe9,Tea,2\n",
                             ["line 4: byte 0xe9 is not UTF-8, though the rest of the file is"]),
    "zip-named-csv": (b"PK\x03\x04\x14\x00" + bytes(40), ["is a zip archive; unzip it"]),
    "title-above-header": ("Ratings export, 2026-11-30\nuser,item,rating\n1,2,3\n2,3,4\n",
                           ["the line 'user,item,rating' looks like the header", "'Ratings export, 2026-11-30'"]),
    "note-above-header": ("# my ratings\nuserId;movieId;rating\n1;2;3\n2;3;4\n",
                          ["the line 'userId;movieId;rating' looks like the header", "delete the lines above"]),
    "nul-in-id": ("user,item,rating\n1,2,3\nu\x002,3,4\n",
                  ["row 3, column 'user'", "the user id holds a NUL byte (0x00)", "without its byte order mark"]),
    "reserved-id": ("user,item,rating\n1,2,3\n#na#,3,4\n",
                    ["row 3, column 'user'", "the user id '#na#' is the name latentrec keeps for ids a model"]),
    "gzip-named-csv": (gzip.compress(b"user,item,rating\n1,2,3\n2,1,4\n"), ["is gzip-compressed; name it",
                                                                            "gzip-named-csv.csv.gz and read it"]),
    "blank-user-headerless": ("1\t2\t3\n\t5\t4\n", ["row 2, column 'user'"]),
    "duplicate-pair": ("user,item,rating\n1,2,3\n1,3,4\n1,2,5\n", ["rows 2 and 4", "duplicates (--duplicates) mean"]),
    "ragged-rows": ("user,item,rating\n1,2,3\n1,3,4,5,6\n", ["comma-separated", "line 3"]),
    "long-first-row": ("user,item,rating,title\n1,2,5,A, the movie\n3,4,5,B\n", ["comma-separated", "line 2, saw 5"]),
    "two-columns": ("1 2\n3 4\n", ["no user column"]),
    "single-user": ("user,item,rating\n" + "".join(f"u1,i{k},{k % 5 + 1}\n" for k in range(20)),
                    ["one user ('u1')", "at least two users"]),
    "single-item": ("user,item,rating\n" + "".join(f"u{k},i1,{k % 5 + 1}\n" for k in range(20)),
                    ["one item ('i1')", "at least two items"]),
    "one-rating": ("user,item,rating\nu1,i1,4\n", ["training needs at least 2"]),
    "zero-variance": ("user,item,rating\n" + "".join(f"u{k % 4},i{k},4\n" for k in range(20)),
                      ["every training rating is 4", "nothing to learn"]),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_ratings_file(capsys, tmp_path, case):
    content, needles = BAD_FILES[case]
    path = write(tmp_path / f"{case}.csv", content)
    fails(capsys, tmp_path, train_argv(path, tmp_path / "model"), str(path), *needles)


def test_the_refusal_says_rows_were_held_out_only_when_they_were(capsys, tmp_path):
    for rows, held in ((2, False), (20, True)):  # 20% of 2 ratings is no row: all of them train
        path = write(tmp_path / f"one-user-{rows}.csv", "user,item,rating\n" + "".join(
            f"u1,i{k},{k % 5 + 1}\n" for k in range(rows)))
        assert main(train_argv(path, tmp_path / "m")) == 2
        err = capsys.readouterr().err
        assert "at least two users" in err and ("after holding out" in err) == held, err


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bench_refuses_every_file_train_refuses(capsys, tmp_path, case):
    content, needles = BAD_FILES[case]
    path = write(tmp_path / f"{case}.csv", content)
    fails(capsys, tmp_path, ["bench", "--data", str(path), "--devices", "cpu", "--epochs", "1"], str(path), *needles)


LONG = "x" * 1_000_000


@pytest.mark.parametrize("content, needle", [
    (f"user,item,rating\n1,2,3\n1,3,{LONG}\n", "row 3, column 'rating': 'xxxxxxxx"),
    (f"user,item,rating\n{LONG},2,3\n{LONG},2,4\n", "rated item 2 more than once")], ids=["rating", "user-id"])
def test_a_huge_cell_is_quoted_short(capsys, tmp_path, content, needle):
    path = write(tmp_path / "r.csv", content)
    err = fails(capsys, tmp_path, train_argv(path, tmp_path / "m"), str(path), needle)
    assert len(err) < 300, len(err)


def test_misnamed_rating_column(capsys, tmp_path):
    path = write(tmp_path / "r.csv", GOOD)
    fails(capsys, tmp_path, train_argv(path, tmp_path / "m", "--rating-col", "stars"),
          str(path), "no column 'stars'", "user, item, rating")


@pytest.mark.parametrize("lean", [False, True])
def test_column_option_for_a_headerless_file(capsys, tmp_path, monkeypatch, lean):
    import latentrec.data.lean

    monkeypatch.setattr(latentrec.data.lean, "LEAN_BYTES", 0 if lean else 1 << 62)
    path = write(tmp_path / "r.tsv", "".join(f"{u}\t{i}\t{1 + (u * i) % 5}\n" for u in range(9) for i in range(7)))
    fails(capsys, tmp_path, train_argv(path, tmp_path / "m", "--user-col", "customer"),
          str(path), "no header row", "--user-col customer", "give its position, 1 to 3")
    fails(capsys, tmp_path, train_argv(path, tmp_path / "m", "--user-col", "2", "--item-col", "2"),
          str(path), "the user and the item would both be read from column 2", "--item-col")


@pytest.mark.parametrize("lean", [False, True])
@pytest.mark.parametrize("content, said", [
    ("user,item,rating\n1,10,4\n\n2,11,x\n", "row 4, column 'rating': 'x' is not a number"),
    ("user,item,rating\n\n1,10,4\n\n\n2,11,5\n\n1,10,3\n", "user 1 rated item 10 more than once (rows 3 and 8)"),
    ("user,item,rating\r\n1,10,4\r\n\r\n,11,5\r\n", "row 4, column 'user': the user id is empty"),
    ("user,item,rating\n1,10,4\n   \n2,11,x\n", "row 4, column 'rating'"),  # spaces alone: a blank line too
    ("1\t10\t4\n\n\t\t\n2\t11\t5\n", "row 3, column 'user': the user id is empty"),  # tabs: a row of a TSV
    ('user,item,rating,note\n1,10,4,"a\n\nb"\n2,11,x,c\n', "row 5, column 'rating'"),  # a quoted field's line ends
], ids=["rating", "twice", "crlf", "spaces", "tsv", "quoted"])
def test_a_bad_row_is_named_by_its_line_after_blank_lines(capsys, tmp_path, monkeypatch, lean, content, said):
    """Both readers leave blank lines out as they count rows; the sentence names the line an editor shows."""
    import latentrec.data.lean

    monkeypatch.setattr(latentrec.data.lean, "LEAN_BYTES", 0 if lean else 1 << 62)
    for path in (tmp_path / ("r.tsv" if "\t" in content else "r.csv"), tmp_path / "r.csv.gz"):
        data = content.encode()
        path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
        fails(capsys, tmp_path, train_argv(path, tmp_path / "m"), f"{path}", said)
    with pytest.raises(DataError) as caught:
        load_ratings(path)
    assert str(pickle.loads(pickle.dumps(caught.value))) == str(caught.value)  # from a worker process, whole


@pytest.mark.parametrize("lean", [False, True])
@pytest.mark.parametrize("column, values, said", [
    ("user", [{"id": k % 4} for k in range(12)], "column 'user': the user id is a struct ({'id': 0})"),
    ("item", [[k] for k in range(12)], "column 'item': the item id is a list ([0])")])
def test_a_struct_or_list_id_column_is_refused(capsys, tmp_path, monkeypatch, lean, column, values, said):
    """Parquet struct and list columns were read as ids like "{'id': 196}" and "[242]"."""
    import latentrec.data.lean

    monkeypatch.setattr(latentrec.data.lean, "LEAN_BYTES", 0 if lean else 1 << 62)
    frame = pd.DataFrame({"user": [k % 4 for k in range(12)], "item": range(12), "rating": [1.0, 2.0, 3.0] * 4})
    path = tmp_path / "r.parquet"
    frame.assign(**{column: values}).to_parquet(path)
    fails(capsys, tmp_path, train_argv(path, tmp_path / "m"), f"{path}, row 1, {said}, not text or a number.")


def test_split_with_a_test_file_of_its_own_is_refused(capsys, tmp_path):
    path = write(tmp_path / "t.csv", GOOD)
    fails(capsys, tmp_path, ["train", "--split", "u1", "--test", str(path), "--out", str(tmp_path / "m")],
          "--split u1 tests on ML-100K's own u1.test; leave out --test")


@pytest.mark.parametrize("device", ["cuda", "cuda:0", "mps"])
def test_a_device_this_pytorch_cannot_use(capsys, tmp_path, device):
    import torch

    if torch.cuda.is_available() and device.startswith("cuda") or device == "mps" and torch.backends.mps.is_available():
        pytest.skip(f"{device} is usable here")
    path = write(tmp_path / "r.csv", GOOD)
    fails(capsys, tmp_path, train_argv(path, tmp_path / "m", "--device", device), f"device {device!r}",
          "use device 'auto' or 'cpu'")


@pytest.mark.parametrize("command", ["train", "cv"])
def test_split_with_other_data_is_refused(capsys, tmp_path, command):
    path = write(tmp_path / "r.csv", GOOD)
    fails(capsys, tmp_path, [command, "--data", str(path), "--split", "u1"], "split (--split) names ML-100K's own folds")


def test_unknown_extension(capsys, tmp_path):
    path = write(tmp_path / "ratings.xlsx", GOOD)
    fails(capsys, tmp_path, train_argv(path, tmp_path / "m"), str(path), "unknown file type '.xlsx'")


def test_directory_given_as_file(capsys, tmp_path):
    folder = tmp_path / "ratings.csv"
    folder.mkdir()
    fails(capsys, tmp_path, train_argv(folder, tmp_path / "m"), str(folder), "is a directory")


def test_missing_file(capsys, tmp_path):
    path = tmp_path / "nope.csv"
    fails(capsys, tmp_path, train_argv(path, tmp_path / "m"), str(path), "does not exist", "ml-100k")


def test_damaged_parquet(capsys, tmp_path):
    path = write(tmp_path / "r.parquet", b"PAR1 not really parquet")
    fails(capsys, tmp_path, train_argv(path, tmp_path / "m"), str(path), "could not be read as Parquet")


def test_bad_validation_file_is_named(capsys, tmp_path):
    good = write(tmp_path / "train.csv", GOOD)
    valid = write(tmp_path / "valid.csv", "user,item,rating\nu1,i1,x\n")
    fails(capsys, tmp_path, train_argv(good, tmp_path / "m", "--valid", str(valid)),
          str(valid), "row 2, column 'rating'")


# ---- options -----------------------------------------------------------------------------------

BAD_OPTIONS = {
    "negative-epochs": (["--epochs", "-3"], "epochs (--epochs) must be a whole number from 1 to 1,000,000"),
    "zero-bs": (["--solver", "autograd", "--bs", "0"], "bs (--bs) must be a whole number from 1"),
    "huge-epochs": (["--epochs", "1000000000000000000"], "epochs (--epochs) must be a whole number from 1 to"),
    "huge-factors": (["--n-factors", "100000000000000000000"], "n_factors (--n-factors) must be a whole number from 1"),
    "step-schedule-negative-lr": (["--solver", "sgd", "--schedule", "step:2:-1"], "each step needs an epoch of 0"),
    "step-schedule-nan-lr": (["--solver", "sgd", "--schedule", "step:2:nan"], "each step needs an epoch of 0"),
    "zero-factors": (["--n-factors", "0"], "n_factors (--n-factors) must be"),
    "valid-pct-one": (["--valid-pct", "1"], "valid_pct (--valid-pct) must be in [0, 1)"),
    "valid-pct-negative": (["--valid-pct", "-0.1"], "valid_pct (--valid-pct) must be in [0, 1)"),
    "zero-lr": (["--solver", "sgd", "--lr", "0"], "lr (--lr) must be a positive number"),
    "lr-for-bayes": (["--lr", "0.1"], "solver 'bayes' has no lr to set"),
    "wd-for-bayes": (["--wd", "0.1"], "solver 'bayes' has no wd to set"),
    "lr-for-als": (["--solver", "als", "--lr", "0.1"], "solver 'als' has no lr to set"),
    "y-range-reversed": (["--solver", "sgd", "--y-range", "5", "1"], "y_range (--y-range) must be LOW HIGH"),
    "unknown-schedule": (["--solver", "sgd", "--schedule", "sometimes"], "schedule (--schedule) must be"),
    "bs-for-bayes": (["--bs", "64"], "solver 'bayes' does not use bs (--bs)"),
    "schedule-for-bayes": (["--schedule", "cosine"], "solver 'bayes' does not use schedule (--schedule)"),
    "layers-for-dot": (["--solver", "sgd", "--layers", "50"], "solver 'sgd' does not use layers (--layers), which is for model 'nn'"),
    "momentum-for-sgd": (["--solver", "sgd", "--momentum", "0.5"], "solver 'sgd' does not use momentum (--momentum)"),
    "momentum-for-adam": (["--solver", "autograd", "--momentum", "0.5"], "momentum (--momentum) only applies with opt 'sgd'"),
    "burn-in-for-sgd": (["--solver", "sgd", "--burn-in", "3"], "solver 'sgd' does not use burn_in (--burn-in)"),
    "dropout-for-ials": (["--model", "ials", "--dropout", "0.1"], "model 'ials' does not use dropout (--dropout)"),
    "y-range-for-bayes": (["--y-range", "1", "5"], "solver 'bayes' has no y range to set"),
    "infinite-alpha": (["--model", "ials", "--alpha", "inf"], "alpha (--alpha) must be a positive number, not inf"),
    "infinite-y-range": (["--solver", "sgd", "--y-range", "1", "inf"], "y_range (--y-range) must be LOW HIGH"),
    "nan-checkpoint-every": (["--checkpoint-every", "nan"], "--checkpoint-every must be 0 or more seconds"),
    "infinite-lr": (["--solver", "sgd", "--lr", "inf"], "lr (--lr) must be a positive number, not inf"),
    "nan-wd": (["--solver", "sgd", "--wd", "nan"], "wd (--wd) must be zero or a positive number, not nan"),
    "nan-momentum": (["--solver", "autograd", "--opt", "sgd", "--momentum", "nan"], "momentum (--momentum) must be in [0, 1)"),
}


def test_a_run_beyond_memory_says_so(capsys, tmp_path, monkeypatch):
    """PyTorch's failed allocation (a RuntimeError) is one sentence, as Python's MemoryError is."""
    import latentrec.training.fit as fit_module

    def allocate(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 4000000000000 bytes.")

    monkeypatch.setattr(fit_module, "_fit", allocate)
    data = write(tmp_path / "r.csv", GOOD)
    fails(capsys, tmp_path, train_argv(data, tmp_path / "m"), "Not enough memory for this run")


@pytest.mark.parametrize("case", sorted(BAD_OPTIONS))
def test_bad_option(capsys, tmp_path, case):
    extra, needle = BAD_OPTIONS[case]
    data = write(tmp_path / "r.csv", GOOD)
    argv = train_argv(data, tmp_path / "m")
    argv[argv.index("--epochs"):argv.index("--epochs") + 2] = []  # the case sets it (or the recipe does)
    fails(capsys, tmp_path, argv + extra, needle)


@pytest.mark.parametrize("command", ["train", "cv", "tune", "ablation", "synth", "bench"])
def test_a_seed_numpy_cannot_take_is_a_usage_error(capsys, command):
    with pytest.raises(SystemExit) as e:
        main([command, "--seed", "-1"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "--seed: must be a whole number from 0 to 4294967295, not -1" in err, err


def test_a_seed_numpy_cannot_take_in_a_config_file(capsys, tmp_path):
    data = write(tmp_path / "r.csv", GOOD)
    (tmp_path / "c.toml").write_text("seed = -1\n")
    fails(capsys, tmp_path, train_argv(data, tmp_path / "m", "--config", str(tmp_path / "c.toml")),
          "seed (--seed) must be a whole number from 0 to 4294967295, not -1")


def test_an_unknown_option_points_at_its_commands_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--bogus"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err == "latentrec train: error: unrecognized arguments: --bogus (see `latentrec train --help`).\n"


@pytest.mark.parametrize("argv, words", [
    (["recommend", "m", "--user", "u1", "--min-ratings", "-1"], "--min-ratings: must be zero or more, not -1"),
    (["similar", "m", "--item", "i1", "--min-ratings", "-1"], "--min-ratings: must be zero or more, not -1"),
    (["evaluate", "m", "--data", "r.csv", "--relevant", "nan"], "--relevant: must be a finite number, not nan"),
])
def test_counts_and_thresholds_are_checked_as_they_are_read(capsys, argv, words):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and words in capsys.readouterr().err


def test_an_unknown_option_before_the_command_points_at_the_programs_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--bogus", "train"])
    assert e.value.code == 2 and "(see `latentrec --help`)" in capsys.readouterr().err


def test_outputs_under_a_file_or_onto_a_folder_are_refused_before_the_work(capsys, tmp_path):
    (tmp_path / "afile").write_text("x\n")
    (tmp_path / "adir.csv").mkdir()
    fails(capsys, tmp_path, ["synth", "--ratings", "100", "--users", "10", "--items", "20", "--out",
                             str(tmp_path / "adir.csv")], "it exists and is a directory")
    fails(capsys, tmp_path, ["synth", "--ratings", "100", "--users", "10", "--items", "20", "--out",
                             str(tmp_path / "afile" / "s.csv")], "is not a folder")


def test_duplicates_policy_choice_and_default_in_help(capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        main(["train", "--duplicates", "sometimes"])
    assert e.value.code == 2 and "invalid choice: 'sometimes'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "(default: error)" in capsys.readouterr().out


@pytest.mark.parametrize("command, wants", [("train", "folder"), ("checkpoint", "folder"), ("tune", "folder"),
                                           ("ablation", "file")])
def test_an_output_of_the_other_kind_is_refused_before_any_work(capsys, tmp_path, command, wants):
    data = write(tmp_path / "r.csv", GOOD)
    taken = tmp_path / "taken"
    taken.mkdir() if wants == "file" else taken.write_text("mine\n")
    argv = {"train": train_argv(data, taken),
            "checkpoint": train_argv(data, tmp_path / "m", "--checkpoint-dir", str(taken)),
            "tune": ["tune", "--data", str(data), "--out", str(taken), "--trials", "1"],
            "ablation": ["ablation", "--data", str(data), "--out", str(taken), "--only", "Bayesian"]}[command]
    fails(capsys, tmp_path, argv, f"Cannot write {taken}: it exists and is {'not ' if wants == 'folder' else ''}a directory")


def tune_argv(data: Path, out: str) -> list[str]:
    return ["tune", "--data", str(data), "--out", out, "--trials", "1", "--solver", "als", "--device", "cpu"]


@pytest.mark.parametrize("command", ["train", "tune"])
def test_an_empty_path_is_refused_before_any_work(capsys, tmp_path, monkeypatch, command):
    data = write(tmp_path / "r.csv", GOOD)
    monkeypatch.chdir(tmp_path)
    fails(capsys, tmp_path, train_argv(data, "") if command == "train" else tune_argv(data, ""), "empty path")


def test_a_folder_of_the_users_files_gets_the_model_beside_them(capsys, tmp_path):
    """Its own files replaced, the user's kept: the folder itself (a mount, a shared folder) is never replaced."""
    data = write(tmp_path / "r.csv", GOOD)
    mine = tmp_path / "experiment"
    mine.mkdir()
    write(mine / "notes.txt", "mine")
    inode = mine.stat().st_ino
    for _ in range(2):
        assert main(train_argv(data, mine)) == 0
    capsys.readouterr()
    assert sorted(os.listdir(mine)) == ["model.json", "model.safetensors", "notes.txt"]
    assert (mine / "notes.txt").read_text() == "mine" and mine.stat().st_ino == inode


def test_an_empty_out_in_a_config_file_is_refused(capsys, tmp_path, monkeypatch):
    data = write(tmp_path / "r.csv", GOOD)
    config = write(tmp_path / "train.toml", f'data = "{data}"\nout = ""\nepochs = 1\n')
    monkeypatch.chdir(tmp_path)
    fails(capsys, tmp_path, ["train", "--config", str(config), "--device", "cpu"], "empty path; give a folder name")


def test_an_empty_folder_or_a_model_dir_is_written(tmp_path, capsys):
    data = write(tmp_path / "r.csv", GOOD)
    (tmp_path / "m").mkdir()
    assert main(train_argv(data, tmp_path / "m", "--json")) == 0
    assert main(train_argv(data, tmp_path / "m", "--json", "--n-factors", "3")) == 0  # over its own model
    assert sorted(os.listdir(tmp_path / "m")) == ["model.json", "model.safetensors"]


def test_interpret_refuses_an_empty_path(capsys, tmp_path, monkeypatch, trained):
    monkeypatch.chdir(tmp_path)
    fails(capsys, tmp_path, ["interpret", str(trained[0]), "--out", ""], "empty path")


@pytest.fixture
def readonly_dir(tmp_path) -> Path:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    if os.access(folder, os.W_OK):  # root ignores permissions: use a read-only system folder instead
        folder = Path("/sys/kernel")
    try:
        (folder / "probe").mkdir()
    except OSError:
        yield folder
    else:
        (folder / "probe").rmdir()
        pytest.skip("no read-only folder available")
    finally:
        (tmp_path / "ro").chmod(0o755)


def test_read_only_output_folder_fails_before_training(capsys, tmp_path, readonly_dir):
    data = write(tmp_path / "r.csv", GOOD)
    out = readonly_dir / "model"
    fails(capsys, tmp_path, train_argv(data, out), f"Cannot write {out}", "cannot create a file in")
    assert not out.exists()


@pytest.mark.parametrize("command", ["train", "tune"])
def test_an_existing_read_only_output_folder_fails_before_any_work(capsys, tmp_path, readonly_dir, command):
    """A model (or tune's report) replaces an existing folder, whose files are then deleted: it must be writable."""
    data = write(tmp_path / "r.csv", GOOD)
    out = tmp_path / "out"  # in a writable folder, but itself read-only (root ignores permissions: a link)
    out.symlink_to(readonly_dir, target_is_directory=True)
    argv = train_argv(data, out) if command == "train" else \
        ["tune", "--data", str(data), "--out", str(out), "--trials", "1"]
    fails(capsys, tmp_path, argv, f"Cannot write {out}", "cannot create a file in")


# ---- models ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """A small saved model and the ratings file it was trained on."""
    root = tmp_path_factory.mktemp("trained")
    df, _ = lowrank_ratings(n_users=30, n_items=20, density=0.5)
    data = root / "ratings.csv"
    df.to_csv(data, index=False)
    rec, _ = fit(load_ratings(data), config=TrainConfig(epochs=2, n_factors=3, device="cpu", ranker="ease"))
    rec.save(root / "model")
    return root / "model", data


@pytest.fixture
def model_copy(tmp_path, trained) -> Path:
    target = tmp_path / "model"
    shutil.copytree(trained[0], target)
    return target


def evaluate_argv(model: Path, data: Path) -> list[str]:
    return ["evaluate", str(model), "--data", str(data)]


@pytest.mark.parametrize("content", ["", "user,item\n", "\n\n"])
def test_predict_from_a_file_without_rows_asks_for_pairs(capsys, tmp_path, trained, content):
    path = write(tmp_path / "pairs.csv", content)
    err = fails(capsys, tmp_path, ["predict", str(trained[0]), "--data", str(path)], str(path), "user, item (a rating")
    assert "user, item, rating" not in err


def test_evaluate_refuses_a_rating_beyond_float32(capsys, tmp_path, trained):
    """1e306 is finite in float64 but inf in float32: it was scored as inf and reported as "rmse": null."""
    path = write(tmp_path / "test.csv", "user,item,rating\nu1,i1,3\nu2,i2,1e306\n")
    fails(capsys, tmp_path, [*evaluate_argv(trained[0], path), "--json"], str(path), "row 3, column 'rating'",
          "1e+306, beyond the range")


def damaged_gzip(damage: str) -> bytes:
    """A .csv.gz whose first lines read, damaged further on."""
    packed = gzip.compress(("user,item,rating\n" + "".join(
        f"u{k // 10},i{k % 10},{k % 5 + 1}\n" for k in range(400))).encode(), mtime=0)
    if damage == "truncated":  # head -c: EOFError
        return packed[:len(packed) // 2]
    if damage == "bad-crc":  # BadGzipFile
        return packed[:-8] + bytes(b ^ 0xFF for b in packed[-8:-4]) + packed[-4:]
    return packed + packed[:10] + b"\xff" * 8  # a second member of invalid deflate blocks: zlib.error


@pytest.mark.parametrize("damage", ["truncated", "bad-crc", "bad-body"])
@pytest.mark.parametrize("command", ["train", "evaluate", "predict", "recommend"])
def test_a_damaged_gzip_file_is_named(capsys, tmp_path, trained, command, damage):
    """A truncated or corrupt .csv.gz fails while pandas reads it (EOFError, zlib.error, BadGzipFile): one sentence."""
    path = write(tmp_path / "r.csv.gz", damaged_gzip(damage))
    argv = {"train": train_argv(path, tmp_path / "m"), "evaluate": evaluate_argv(trained[0], path),
            "predict": ["predict", str(trained[0]), "--data", str(path)],
            "recommend": ["recommend", str(trained[0]), "--ratings-file", str(path)]}[command]
    fails(capsys, tmp_path, argv, f"{path} could not be read (", "the gzip file is damaged or cut short")


def test_predict_takes_unknown_names_above_numeric_ids_as_a_header(capsys, tmp_path, trained):
    path = write(tmp_path / "pairs.csv", "a,b\n1,2\n3,4\n")
    fails(capsys, tmp_path, ["predict", str(trained[0]), "--data", str(path)], "no user column (its columns: a, b)",
          "--user-col")


def test_model_dir_missing(capsys, tmp_path, trained):
    fails(capsys, tmp_path, evaluate_argv(tmp_path / "nothing", trained[1]), str(tmp_path / "nothing"),
          "does not exist")


def test_truncated_weights(capsys, tmp_path, trained, model_copy):
    weights = model_copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    fails(capsys, tmp_path, evaluate_argv(model_copy, trained[1]), str(weights), "truncated or corrupt")


def test_corrupted_weights_header(capsys, tmp_path, trained, model_copy):
    weights = model_copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[12:20] = b"\xff" * 8  # inside the JSON header
    weights.write_bytes(bytes(data))
    fails(capsys, tmp_path, evaluate_argv(model_copy, trained[1]), str(weights), "truncated or corrupt")


def test_shapes_disagree_with_weights(capsys, tmp_path, trained, model_copy):
    meta_path = model_copy / "model.json"
    meta = json.loads(meta_path.read_text())
    meta["architecture"]["n_factors"] += 1
    meta_path.write_text(json.dumps(meta))
    fails(capsys, tmp_path, evaluate_argv(model_copy, trained[1]), str(model_copy), "is shape",
          "do not belong together")


@pytest.mark.parametrize("name", ["model.extra", "ranker.extra"])
def test_a_tensor_model_json_does_not_describe(capsys, tmp_path, trained, model_copy, name):
    """A weight the described module lacks is refused in one sentence (load_state_dict would raise)."""
    weights = model_copy / "model.safetensors"
    with safe_open(str(weights), "pt") as f:
        metadata = f.metadata()
    save_file({**load_file(str(weights)), name: torch.zeros(3)}, str(weights), metadata=metadata)
    fails(capsys, tmp_path, evaluate_argv(model_copy, trained[1]), str(model_copy), f"weights hold {name}",
          "do not belong together")


@pytest.mark.parametrize("edit", ["users-cut", "users-added", "items-cut"])
def test_id_lists_disagree_with_weights(capsys, tmp_path, trained, model_copy, edit):
    meta = json.loads((model_copy / "model.json").read_text())
    side, change = edit.split("-")
    meta[side] = meta[side][:5] if change == "cut" else [*meta[side], "new"]
    write(model_copy / "model.json", json.dumps(meta))
    fails(capsys, tmp_path, evaluate_argv(model_copy, trained[1]), str(model_copy), f"lists {len(meta['users'])} users",
          "do not belong together")


def overwrite(weights: Path, name: str | None, value: bytes = b"\xff") -> None:
    """Fill tensor ``name``'s bytes in a safetensors file with ``value`` (None: the file's last 100 bytes)."""
    data = bytearray(weights.read_bytes())
    n = int.from_bytes(data[:8], "little")
    if name is None:
        begin, end = len(data) - 100, len(data)
    else:
        begin, end = (8 + n + k for k in json.loads(data[8:8 + n])[name]["data_offsets"])
    data[begin:end] = value * (end - begin)
    weights.write_bytes(bytes(data))


@pytest.mark.parametrize("name, value, needle", [
    (None, b"\xff", "is damaged"), ("rated.items", b"\xff", "rated.items holds values that are not indices"),
    ("rated.items", b"\x7f", "rated.items holds values"), ("model.user_factors", b"\xff", "NaN or infinite"),
    ("ranker.B", b"\xff", "ranker.B holds NaN"), ("rated.indptr", b"\x00", "rated.indptr does not mark out")])
def test_damaged_weight_values(capsys, tmp_path, trained, model_copy, name, value, needle):
    """The header is intact but the numbers are not: NaN floats, indices past the id lists, a broken row index."""
    weights = model_copy / "model.safetensors"
    overwrite(weights, name, value)
    for argv in (evaluate_argv(model_copy, trained[1]), ["recommend", str(model_copy), "--user", "1"]):
        fails(capsys, tmp_path, argv, str(weights), needle)


def test_newer_format_version(capsys, tmp_path, trained, model_copy):
    meta_path = model_copy / "model.json"
    meta = json.loads(meta_path.read_text())
    meta["format_version"] = 99
    meta_path.write_text(json.dumps(meta))
    fails(capsys, tmp_path, evaluate_argv(model_copy, trained[1]), str(model_copy), "model format 99",
          "upgrade latentrec")


def test_model_json_not_json(capsys, tmp_path, trained, model_copy):
    write(model_copy / "model.json", "{not json")
    fails(capsys, tmp_path, evaluate_argv(model_copy, trained[1]), str(model_copy / "model.json"),
          "not valid JSON")


def test_model_json_nested_too_deeply(capsys, tmp_path, trained, model_copy):
    write(model_copy / "model.json", "[" * 200_000)
    fails(capsys, tmp_path, evaluate_argv(model_copy, trained[1]), str(model_copy / "model.json"), "nested too deeply")


def test_weights_metadata_not_an_object(capsys, tmp_path, trained, model_copy):
    weights = model_copy / "model.safetensors"
    data = weights.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    header["__metadata__"] = ["x"]
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)  # keep the tensors' alignment
    weights.write_bytes(len(raw).to_bytes(8, "little") + raw + data[8 + n:])
    fails(capsys, tmp_path, evaluate_argv(model_copy, trained[1]), str(weights), "__metadata__ is not an object")


def test_unreadable_model_dir(capsys, tmp_path, trained, model_copy, monkeypatch):
    """Root reads any file, so the refusal the file system would give is staged."""
    read_text = Path.read_text

    def refused(self, *args, **kwargs):
        if self.name == "model.json":
            raise PermissionError(13, "Permission denied", str(self))
        return read_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", refused)
    fails(capsys, tmp_path, evaluate_argv(model_copy, trained[1]), f"Cannot read the model in {model_copy}",
          "Permission denied")


@pytest.mark.parametrize("part", ["architecture", "ranker"])
def test_model_kind_from_a_newer_latentrec(capsys, tmp_path, trained, model_copy, part):
    meta = json.loads((model_copy / "model.json").read_text())
    meta[part] = {**meta.get(part, {"n_items": 20}), "kind": "transformer"}
    write(model_copy / "model.json", json.dumps(meta))
    fails(capsys, tmp_path, evaluate_argv(model_copy, trained[1]), str(model_copy / "model.json"),
          "kind 'transformer'", "does not know", "newer latentrec")


def test_model_json_missing(capsys, tmp_path, trained, model_copy):
    (model_copy / "model.json").unlink()
    fails(capsys, tmp_path, evaluate_argv(model_copy, trained[1]), str(model_copy), "has no model.json")


def _repeat_an_id(meta: dict) -> None:
    meta["users"][2] = meta["users"][1]


# each edit of one model.json field, and what the refusal says besides the file's name
JSON_EDITS = {
    "rating-range-text": (lambda m: m.update(rating_range="abc"), ["field 'rating_range'", "two float32 numbers"]),
    "rating-range-huge": (lambda m: m.update(rating_range=[-1e308, 1e308]), ["field 'rating_range'", "float32"]),
    "y-range-huge": (lambda m: m["architecture"].update(y_range=[-3e38, 3e38]), ["field 'architecture.y_range'"]),
    "kind-swapped": (lambda m: m["architecture"].update(kind="nn"), ["nn rating model has no field", "edited"]),
    "ranker-kind-swapped": (lambda m: m["ranker"].update(kind="ials"), ["ials ranker has no field", "edited"]),
    "write-id-number": (lambda m: m.update(write_id=5), ["field 'write_id' must be a string, not 5"]),
    "rating-range-reversed": (lambda m: m.update(rating_range=[5, 1]), ["field 'rating_range'", "the lower first"]),
    "rating-range-nan": (lambda m: m.update(rating_range=[float("nan"), 5]), ["field 'rating_range'", "NaN"]),
    "titles-list": (lambda m: m.update(titles=[1, 2]), ["field 'titles'", "an object"]),
    "title-number": (lambda m: m.update(titles={"1": 3}), ["field 'titles'", "a string"]),
    "duplicate-user": (_repeat_an_id, ["field 'users' lists the id", "more than once"]),
    "ids-not-strings": (lambda m: m.update(items=list(range(len(m["items"])))), ["field 'items'", "strings"]),
    "history-text": (lambda m: m.update(history="x"), ["field 'history'", "epoch records"]),
    "format-version-text": (lambda m: m.update(format_version="1"), ["field 'format_version'", "whole number"]),
    "format-version-true": (lambda m: m.update(format_version=True), ["field 'format_version'", "whole number"]),
    "baseline-mean-null": (lambda m: m.update(baseline_mean=None), ["field 'baseline_mean'", "not null"]),
    "metrics-text": (lambda m: m.update(metrics={"train_rmse": "a"}), ["field 'metrics'"]),
    "config-wd-text": (lambda m: m["config"].update(wd="x"), ["field 'config'"]),
    "y-range-nan": (lambda m: m["architecture"].update(y_range=[float("nan"), 1]), ["field 'architecture.y_range'"]),
    "bias-text": (lambda m: m["architecture"].update(bias="yes"), ["field 'architecture.bias'", "true or false"]),
    "ranker-not-object": (lambda m: m.update(ranker=[]), ["field 'ranker'", "an object"]),
    "ranker-without-kind": (lambda m: m["ranker"].pop("kind"), ["has no 'ranker.kind' field"]),
    "architecture-gone": (lambda m: m.pop("architecture"), ["field 'parts'", "but the file describes"]),
    "users-gone": (lambda m: m.pop("users"), ["has no 'users' field"]),
    "ranker-check-text": (lambda m: m.update(ranker_check="x"), ["field 'ranker_check'", "an object"]),
    "ranker-check-nan": (lambda m: m.update(ranker_check={"ranker": "ease", "ndcg": float("nan")}),
                         ["field 'ranker_check'"]),
}


@pytest.mark.parametrize("case", sorted(JSON_EDITS))
def test_edited_model_json_field(capsys, tmp_path, trained, model_copy, case):
    edit, needles = JSON_EDITS[case]
    meta = json.loads((model_copy / "model.json").read_text())
    edit(meta)
    write(model_copy / "model.json", json.dumps(meta))
    fails(capsys, tmp_path, evaluate_argv(model_copy, trained[1]), str(model_copy / "model.json"), *needles)


def test_malformed_history_is_refused_before_any_picture(capsys, tmp_path, model_copy):
    meta = json.loads((model_copy / "model.json").read_text())
    write(model_copy / "model.json", json.dumps({**meta, "history": "x"}))
    fails(capsys, tmp_path, ["interpret", str(model_copy), "--out", str(tmp_path / "pics")], "field 'history'")


class Payload:
    """Unpickling this creates ``path``: proof that a file was (or was not) unpickled."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return open, (str(self.path), "w")


def test_payload_is_live(tmp_path):
    pickle.loads(pickle.dumps(Payload(tmp_path / "ran")))  # the payload below really would run
    assert (tmp_path / "ran").exists()


def test_pickle_file_given_as_model(capsys, tmp_path, trained):
    marker = tmp_path.parent / f"{tmp_path.name}-unpickled"
    model = write(tmp_path / "model.pkl", pickle.dumps(Payload(marker)))
    fails(capsys, tmp_path, evaluate_argv(model, trained[1]), str(model), "not a latentrec model directory",
          "refused")
    assert not marker.exists()


def test_pickle_inside_model_dir(capsys, tmp_path, trained, model_copy):
    marker = tmp_path.parent / f"{tmp_path.name}-unpickled"
    weights = write(model_copy / "model.safetensors", pickle.dumps(Payload(marker)))
    fails(capsys, tmp_path, ["predict", str(model_copy), "--user", "u1", "--item", "i1"], str(weights),
          "pickle", "refused without being unpickled")
    assert not marker.exists()


def test_torch_save_zip_inside_model_dir(capsys, tmp_path, trained, model_copy):
    import torch

    marker = tmp_path.parent / f"{tmp_path.name}-unpickled"
    weights = model_copy / "model.safetensors"
    torch.save({"payload": Payload(marker)}, weights)
    fails(capsys, tmp_path, evaluate_argv(model_copy, trained[1]), str(weights), "refused")
    assert not marker.exists()


def test_predict_out_in_read_only_folder(capsys, tmp_path, trained, readonly_dir):
    out = readonly_dir / "preds.csv"
    fails(capsys, tmp_path, ["predict", str(trained[0]), "--data", str(trained[1]), "--out", str(out)],
          f"Cannot write {out}")
    assert not out.exists()


# ---- handled, not errors ---------------------------------------------------------------------

def evaluate_json(capsys, model: Path, data: Path) -> dict:
    code = main(["evaluate", str(model), "--data", str(data), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def test_bom_and_crlf_are_read_like_the_plain_file(capsys, tmp_path, trained):
    model, data = trained
    plain = evaluate_json(capsys, model, data)
    text = data.read_text()
    bom = write(tmp_path / "bom.csv", "\ufeff".encode() + text.encode())
    crlf = write(tmp_path / "crlf.csv", text.replace("\n", "\r\n"))
    for variant in (bom, crlf):
        got = evaluate_json(capsys, model, variant)
        assert got["n"] == plain["n"] and got["n_unknown"] == 0 and got["rmse"] == pytest.approx(plain["rmse"])


def test_latin1_titles_and_mixed_ids_train(capsys, tmp_path):
    rows = [("7", "a1", 4, "Café"), ("7", "2.5", 2, "Niño"), ("x-9", "a1", 5, "Café"), ("x-9", "10", 1, "Über"),
            ("12", "2.5", 3, "Niño"), ("12", "10", 4, "Über")]
    body = "user,item,rating,title\n" + "".join(f"{u},{i},{r},{t}\n" for u, i, r, t in rows)
    data = write(tmp_path / "latin1.csv", body.encode("latin-1"))
    out = tmp_path / "m"
    assert main(train_argv(data, out, "--valid-pct", "0", "--json")) == 0
    capsys.readouterr()
    meta = json.loads((out / "model.json").read_text(encoding="utf-8"))
    assert sorted(meta["users"][1:]) == ["12", "7", "x-9"]
    assert sorted(meta["items"][1:]) == ["10", "2.5", "a1"]
    assert meta["titles"]["a1"] == "Café" and meta["titles"]["10"] == "Über"


@pytest.mark.parametrize("policy,expected", [("mean", 4.0), ("last", 5.0)])
def test_duplicates_policy_mean_or_last(capsys, tmp_path, policy, expected):
    data = write(tmp_path / "dup.csv", GOOD + "u1,i1,5\n")  # u1 rated i1 as 4, then 5 (mean 4.5)
    ratings = load_ratings(data, duplicates=policy)
    row = ratings.df[(ratings.df.user == "u1") & (ratings.df.item == "i1")]
    assert len(row) == 1 and float(row.rating.iloc[0]) == (4.5 if policy == "mean" else expected)
    assert main(train_argv(data, tmp_path / "m", "--duplicates", policy, "--json")) == 0
    capsys.readouterr()


def test_unknown_user_and_item_at_predict_are_flagged_not_errors(capsys, trained):
    code = main(["predict", str(trained[0]), "--user", "stranger", "--item", "nothing", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    pred = json.loads(out)
    assert pred["known_user"] is False and pred["known_item"] is False
    assert 0.5 < pred["prediction"] < 5.5


@pytest.mark.parametrize("n", ["0", "-5"])
def test_out_of_range_n_at_recommend(capsys, tmp_path, trained, n):
    fails(capsys, tmp_path, ["recommend", str(trained[0]), "--user", "u1", "-n", n], "n (-n) must be a whole number")


def test_unknown_user_at_recommend_gets_a_ranking_not_an_error(capsys, trained):
    code = main(["recommend", str(trained[0]), "--user", "stranger", "-n", "3", "--min-ratings", "1", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out)
    assert result["known"] is False and len(result["recommendations"]) == 3


def test_a_test_file_of_strangers_is_said_to_say_nothing_about_the_model(capsys, tmp_path, trained):
    data = write(tmp_path / "strangers.csv", "user,item,rating\nzz1,q1,5\nzz2,q2,3\nzz3,q3,4\n")
    assert main(["evaluate", str(trained[0]), "--data", str(data)]) == 0
    out = capsys.readouterr().out
    assert "these figures say nothing about the model" in out and "worse than the user + item biases" not in out
    assert "(3 unknown test users, not ranked)" in " ".join(out.split())


def test_a_validation_share_of_no_row_trains_on_everything_and_says_so(capsys, tmp_path):
    data = write(tmp_path / "two.csv", "user,item,rating\na,x,5\nb,y,1\n")
    assert main(["train", "--data", str(data), "--epochs", "2", "--out", str(tmp_path / "m")]) == 0
    out, err = capsys.readouterr()
    assert "holding out 20% of 2 ratings leaves no validation row" in err and "nan" not in out


@pytest.mark.parametrize("command", ["predict", "ablation"])
def test_an_empty_out_file_is_refused_before_any_work(capsys, tmp_path, trained, command):
    argv = {"predict": ["predict", str(trained[0]), "--user", "u1", "--item", "i1", "--out", ""],
            "ablation": ["ablation", "--out", "", "--only", "Bayesian"]}[command]
    fails(capsys, tmp_path, argv, "''" if command == "predict" else "empty path")


def test_an_out_link_to_nothing_is_refused_before_any_work(capsys, tmp_path):
    data = write(tmp_path / "r.csv", GOOD)
    (tmp_path / "link").symlink_to(tmp_path / "gone" / "model")
    fails(capsys, tmp_path, train_argv(data, tmp_path / "link"), "is a link to", "which does not exist")


def test_the_checkpoint_of_out_dot_is_named_after_the_folder(tmp_path, monkeypatch):
    from latentrec.training.checkpoint import default_folder

    monkeypatch.chdir(tmp_path)
    assert default_folder(".") == tmp_path.parent / f"{tmp_path.name}.checkpoint"
    assert default_folder("m/") == Path("m.checkpoint")


def test_a_dataframes_bad_row_is_named_by_its_iloc_position():
    """A filtered frame's index has gaps: the message names the row as .iloc finds it."""
    df = pd.DataFrame({"user": range(10), "item": range(10), "rating": [3.0] * 10}).iloc[4:]
    df.loc[7, "rating"] = float("nan")  # label 7, position 3
    with pytest.raises(Exception, match=r"rows by \.iloc position\), row 3, column 'rating'") as caught:
        load_ratings(df)
    assert df.iloc[3].isna().any() and "missing" in str(caught.value)
    pairs = df.assign(user=df.user.astype(object))
    pairs.loc[7, "user"] = ""
    with pytest.raises(Exception, match=r"rows by \.iloc position\), row 3, column 'user'"):
        load_pairs(pairs)  # the rows to predict are named alike


def test_column_options_with_a_named_dataset_are_refused():
    with pytest.raises(ConfigError, match="ml-100k's are known already"):
        load_ratings("ml-100k", rating_col="stars")  # they were ignored


def test_a_named_datasets_own_folder_reads_as_that_dataset(tmp_path, capsys, monkeypatch):
    """``--data /data/ml-100k`` was refused with a sentence on how to name it; it means the dataset there."""
    folder = tmp_path / "ml-100k"
    folder.mkdir()
    (folder / "u.data").write_text("".join(f"{u}\t{i}\t{1 + (u + i) % 5}\t88125{u}{i}\n" for u in range(1, 9)
                                           for i in range(1, 6)))
    (folder / "u.item").write_text("".join(f"{i}|Film {i} (1995)|01-Jan-1995||\n" for i in range(1, 6)),
                                   encoding="latin-1")
    for fold in ("u1.base", "u1.test"):
        (folder / fold).write_text((folder / "u.data").read_text())
    ratings = load_ratings(folder)
    assert len(ratings.df) == 40 and ratings.titles["3"] == "Film 3 (1995)" and ratings.source == str(folder)
    assert len(load_pairs(str(folder))) == 40
    assert ml100k_split_files("u1", data=str(folder)) == (str(folder / "u1.base"), str(folder / "u1.test"))
    other = tmp_path / "data" / "ml-100k"  # the bare name is the data folder's dataset, whatever ./ml-100k holds
    other.mkdir(parents=True)
    (other / "u.data").write_text("1\t1\t4\t881250949\n2\t1\t3\t881250950\n")
    monkeypatch.chdir(tmp_path)
    assert len(load_ratings("ml-100k", data_dir=tmp_path / "data").df) == 2
    (folder / "u.data").unlink()  # a folder of that name without the dataset's ratings is just a folder
    with pytest.raises(DataError, match="is a directory; give a ratings file"):
        load_ratings(folder)


def test_ratings_of_timestamp_size_are_refused_as_a_likely_wrong_column(capsys, tmp_path):
    """A headerless file with the timestamp third: the Gibbs sampler met a singular posterior and advised fewer
    factors; ALS's start told a bayes run to raise --wd, which bayes refuses."""
    rows = "".join(f"{u}\t{i}\t{881250949 + 7 * u + i}\t{(u + i) % 5 + 1}\n" for u in range(1, 30) for i in range(1, 20))
    path = tmp_path / "ts.tsv"
    path.write_text(rows)
    fails(capsys, tmp_path, train_argv(path, tmp_path / "m"), "the training ratings run from about 8.813e+08",
          "is that the rating column?")


def test_a_rating_far_outside_the_others_is_named_and_one_too_big_to_score_is_refused(capsys, tmp_path, caplog):
    """A 1000 among 1-5 stars (a typo) stretched the model's scale without a word; evaluate scored a 1e30 to an
    RMSE of 3.5e27 with numpy's overflow warning, where train refuses it."""
    df, _ = lowrank_ratings(n_users=60, n_items=40, density=0.6)
    df.loc[7, "rating"] = 1000.0
    with caplog.at_level("WARNING", logger="latentrec"):
        fit(df, config=TrainConfig(epochs=1, valid_pct=0, ranker="none", device="cpu"))
    [said] = [r.getMessage() for r in caplog.records if "far above" in r.getMessage()]
    assert "1 rating (1000) far above the others" in said and "A typo, or a code for no rating?" in said
    caplog.clear()
    clean = df.drop(index=7)
    with caplog.at_level("WARNING", logger="latentrec"):
        fit(clean, config=TrainConfig(epochs=1, valid_pct=0, ranker="none", device="cpu"))
    assert not [r for r in caplog.records if "far" in r.getMessage()]
    from latentrec.training.fit import far_out

    stars = np.array([5.0] * 9000 + [4.0] * 990 + [1.0] * 10, np.float32)  # skewed, but every value a star
    assert far_out(stars) is None and "1 rating (45) far above" in far_out(np.append(stars, np.float32(45)))
    jokes = np.random.default_rng(0).uniform(-10, 10, 5000).round(2)  # Jester's scale, and its 99 for "not rated"
    assert far_out(jokes) is None
    for share in (0.001, 0.2):  # a few, or so many that the bulk's range holds them
        coded = np.where(np.random.default_rng(1).random(5000) < share, 99.0, jokes)
        assert "(99) far above the others (the others lie between -10 and 9.99)" in far_out(coded)
    from latentrec.training.fit import piled_at_bottom

    books = np.random.default_rng(0).integers(1, 11, 5000).astype(np.float32)  # 1-10, and 0 for "read, not rated"
    assert piled_at_bottom(books) is None
    assert piled_at_bottom(np.where(np.arange(5000) % 5 < 3, 0, books)).startswith("60% of the ratings are 0")
    many = np.random.default_rng(0).integers(1, 11, 500_000).astype(np.float32)  # beyond the 100,000 sampled
    assert piled_at_bottom(np.where(np.arange(500_000) % 5 < 3, 0, many)).startswith("60% of the ratings are 0")
    clean.to_csv(tmp_path / "train.csv", index=False)
    assert main(["train", "--data", str(tmp_path / "train.csv"), "--epochs", "1", "--ranker", "none", "--valid-pct",
                 "0", "--out", str(tmp_path / "m"), "--json"]) == 0
    capsys.readouterr()
    df.to_csv(tmp_path / "typo.csv", index=False)  # said by the held-out run, not again by the refit
    caplog.clear()
    with caplog.at_level("WARNING", logger="latentrec"):
        assert main(["train", "--data", str(tmp_path / "typo.csv"), "--epochs", "1", "--ranker", "none", "--out",
                     str(tmp_path / "typo")]) == 0
    assert len([r for r in caplog.records if "far above the others" in r.getMessage()]) == 1
    capsys.readouterr()
    huge = write(tmp_path / "huge.csv", f"user,item,rating\n{df.user[0]},{df.item[0]},1e30\n")
    fails(capsys, tmp_path, ["evaluate", str(tmp_path / "m"), "--data", str(huge)], str(huge),
          "a rating is about 1e+30 in size, beyond what a rating model scores")


def test_a_text_file_starting_with_pk_is_text(tmp_path):
    """Two bytes were taken for a zip archive's mark: a header "PK,user,item,rating" was refused."""
    path = write(tmp_path / "r.csv", "PK,user,item,rating\n1,u1,i1,4\n2,u2,i1,3\n3,u1,i2,5\n")
    assert len(load_ratings(path).df) == 3


def test_a_big_compressed_file_under_a_text_name_is_said_so_by_the_lean_reader_too(tmp_path):
    """The lean reader's first look at the file said its byte 0x8b was not UTF-8."""
    from latentrec.data.lean import read_split

    path = write(tmp_path / "r.csv", gzip.compress(b"user,item,rating\n" + b"".join(b"%d,%d,4\n" % (u, u % 7)
                                                                                    for u in range(500))))
    with pytest.raises(DataError, match="is gzip-compressed; name it r.csv.gz"):
        read_split(path, min_bytes=0)


def test_wrong_arguments_in_python_are_one_sentence_each(trained):
    """A notebook's slips: each a LatentrecError naming the argument, not a TypeError from deep inside, nor a
    result that quietly means something else (n=-5 was numpy's [:-5]: every item but five)."""
    from latentrec import Ratings, Recommender, UserRatings, evaluate
    from latentrec.errors import LatentrecError
    from latentrec.use.interpret import bias_extremes, interpret, item_pca

    rec = Recommender.load(trained[0])
    frame = pd.read_csv(trained[1])
    slips = {
        lambda: Ratings(frame[["user", "item"]], "x"): "has no rating column",
        lambda: UserRatings("12", "45"): "not text",
        lambda: load_ratings(frame.to_numpy()): "not ndarray",
        lambda: load_pairs(123): "not int",
        lambda: item_pca(rec, n_items=-5): "n_items must be a whole number",
        lambda: item_pca(rec, q=1): "q, the components",
        lambda: bias_extremes(rec, n="3"): "n must be a whole number",
        lambda: interpret(rec, trained[0].parent / "pictures", n_items=0): "n_items must be",
        lambda: evaluate(rec, frame, k=0): r"k \(-k\) must be",
        lambda: evaluate(rec, frame, max_rank_users=-1): "max_rank_users must be",
        lambda: evaluate(rec, frame, k=True): r"k \(-k\) must be a whole number",
    }
    for call, said in slips.items():
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # refused before evaluate warns that it scores the training pairs
            with pytest.raises(LatentrecError, match=said):
                call()
    headerless = pd.DataFrame(frame.to_numpy())  # columns 0, 1, 2: named by 0 as by "0"
    assert len(load_ratings(headerless, user_col=0, item_col=1, rating_col=2)) == len(frame)
