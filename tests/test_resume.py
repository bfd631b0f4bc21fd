"""Interrupted training: epoch-end checkpoints, Ctrl-C (exit 130), --resume, SIGKILL, divergence."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import lowrank_ratings
from safetensors.torch import load_file

from latentrec.cli import main
from latentrec.cli.train import EpochTable
from latentrec.training import checkpoint

EPOCHS = 6


@pytest.fixture(scope="module")
def ratings_csv(tmp_path_factory) -> Path:
    df, _ = lowrank_ratings(n_users=60, n_items=40, density=0.5)
    path = tmp_path_factory.mktemp("data") / "ratings.csv"
    df.to_csv(path, index=False)
    return path


def train_args(data: Path, out: Path, solver: str, epochs: int = EPOCHS, *extra: str) -> list[str]:
    return ["train", "--data", str(data), "--out", str(out), "--epochs", str(epochs), "--n-factors", "4",
            "--solver", solver, "--device", "cpu", "--json", "--checkpoint-every", "0", *extra]


def weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(model_dir / "model.safetensors"))


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), (k, json.loads((b / "model.json").read_text())["history"])


def interrupt_at(monkeypatch, epoch: int) -> None:
    """Deliver a real SIGINT (Ctrl-C) to this process when ``epoch`` ends."""
    original = EpochTable.on_epoch_end

    def on_epoch_end(self, trainer, record):
        original(self, trainer, record)
        if record["epoch"] == epoch:
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(EpochTable, "on_epoch_end", on_epoch_end)


@pytest.mark.parametrize("solver", ["sgd", "autograd", "als", "bayes"])
def test_ctrl_c_saves_exits_130_and_resume_matches_uninterrupted(capsys, monkeypatch, tmp_path, ratings_csv, solver):
    ref, out = tmp_path / "ref", tmp_path / "m"
    assert main(train_args(ratings_csv, ref, solver)) == 0
    assert not checkpoint.default_folder(ref).exists()  # removed once the model is saved

    with monkeypatch.context() as m:
        interrupt_at(m, 3)
        assert main(train_args(ratings_csv, out, solver)) == 130
    err = capsys.readouterr().err
    folder = checkpoint.default_folder(out)
    assert f"epoch 3 of {EPOCHS} is saved in {folder}" in err and "--resume" in err and "Traceback" not in err
    assert not out.exists()
    assert checkpoint.completed_epoch(folder) == 3

    assert main(train_args(ratings_csv, out, solver, EPOCHS, "--resume")) == 0
    assert_same_weights(ref, out)
    meta = json.loads((out / "model.json").read_text())
    assert [h["epoch"] for h in meta["history"]] == list(range(1, EPOCHS + 1))
    assert meta["best_epoch"] == json.loads((ref / "model.json").read_text())["best_epoch"]
    assert not folder.exists()


@pytest.mark.parametrize("moment", ["scoring", "saving", "scoring, no checkpoint", "after the renames"])
def test_ctrl_c_after_the_last_epoch_says_what_is_kept(capsys, monkeypatch, tmp_path, ratings_csv, moment):
    """Ctrl-C while the trained model is scored or saved names the kept checkpoint and --resume, and says the model
    was not written; one that comes after the save's renames (held back until they are done) says it was."""
    import latentrec.atomic as atomic
    import latentrec.evaluation.evaluate as evaluation
    from latentrec.use import model_dir

    owner, name = {"saving": (model_dir, "write_tensors"), "after the renames": (atomic, "_move_entries")}.get(
        moment, (evaluation, "evaluate"))
    real = getattr(owner, name)

    def interrupting(*args, **kwargs):
        signal.raise_signal(signal.SIGINT)  # in the renames, held back until they are done
        return real(*args, **kwargs)

    out, folder = tmp_path / "m", checkpoint.default_folder(tmp_path / "m")
    every = ["--checkpoint-every", "3600"] if "no checkpoint" in moment else []
    if moment == "after the renames":
        out.mkdir()  # an existing folder: the model's files are renamed into it one by one
    with monkeypatch.context() as m:
        m.setattr(owner, name, interrupting)
        assert main(train_args(ratings_csv, out, "sgd", EPOCHS, *every)) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if moment == "after the renames":
        assert err.endswith(f"latentrec train: interrupted after the model was saved to {out}.\n"), err
        assert not folder.exists() and len(json.loads((out / "model.json").read_text())["history"]) == EPOCHS
        return
    said = f"latentrec train: interrupted after training, before the model was written to {out}; "
    if every:
        assert err.endswith(f"{said}no checkpoint was written (see --checkpoint-every), so nothing was saved.\n")
        return
    assert err.endswith(f"{said}epoch {EPOCHS} of {EPOCHS} is saved in {folder}. Run the same command with --resume "
                        f"to continue.\n"), err
    assert not out.exists() and checkpoint.completed_epoch(folder) == EPOCHS
    assert main(train_args(ratings_csv, out, "sgd", EPOCHS, "--resume")) == 0
    assert not folder.exists() and len(json.loads((out / "model.json").read_text())["history"]) == EPOCHS


def test_a_resumed_run_counts_the_training_time_before_its_interruption(capsys, monkeypatch, tmp_path, ratings_csv):
    """train_seconds spans every epoch: the checkpoint's covers the epochs it holds, the resumed model's all of them
    (each epoch's own seconds lie inside it), not only those after the resume."""
    out = tmp_path / "m"
    with monkeypatch.context() as m:
        interrupt_at(m, 3)
        assert main(train_args(ratings_csv, out, "sgd")) == 130
    saved = checkpoint.load(checkpoint.default_folder(out))[1]
    assert saved["train_seconds"] >= sum(h["seconds"] for h in saved["history"]) > 0
    capsys.readouterr()
    argv = train_args(ratings_csv, out, "sgd", EPOCHS, "--resume")
    argv.remove("--json")
    assert main(argv) == 0
    assert f"resuming the run in {checkpoint.default_folder(out)} after its epoch 3." in capsys.readouterr().err
    meta = json.loads((out / "model.json").read_text())
    assert meta["train_seconds"] >= sum(h["seconds"] for h in meta["history"]) > 0
    assert len(meta["history"]) == EPOCHS


def test_checkpoints_wait_for_their_interval(capsys, monkeypatch, tmp_path, ratings_csv):
    """By default a checkpoint waits --checkpoint-every seconds: a short run writes none, and Ctrl-C says so."""
    interrupt_at(monkeypatch, 3)
    out = tmp_path / "m"
    assert main(train_args(ratings_csv, out, "sgd", EPOCHS, "--checkpoint-every", "3600")) == 130
    assert "before the first checkpoint" in capsys.readouterr().err
    assert not (checkpoint.default_folder(out) / "checkpoint.safetensors").exists()
    assert main(train_args(ratings_csv, out, "sgd", EPOCHS, "--checkpoint-every", "-1")) == 2


def test_resume_refuses_what_does_not_match(capsys, monkeypatch, tmp_path, ratings_csv):
    out = tmp_path / "m"
    with monkeypatch.context() as m:
        interrupt_at(m, 2)
        assert main(train_args(ratings_csv, out, "sgd")) == 130
    folder = checkpoint.default_folder(out)
    capsys.readouterr()

    assert main(train_args(ratings_csv, out, "sgd")) == 2  # a fresh run would overwrite the saved epochs
    assert "--resume" in capsys.readouterr().err
    assert main(train_args(ratings_csv, out, "sgd", EPOCHS, "--resume", "--lr", "0.5")) == 2
    err = capsys.readouterr().err
    assert "--lr" in err and str(folder) in err and len(err.strip().splitlines()) == 1  # no "resuming" line first
    assert main(train_args(ratings_csv, out, "sgd", EPOCHS, "--resume", "--solver", "als")) == 2
    err = capsys.readouterr().err  # the solver, not the options only one of the two reads
    assert "made with --solver sgd (now als);" in err and "--lr" not in err
    other = tmp_path / "other.csv"
    other.write_text(ratings_csv.read_text().replace("\nu1,", "\nu999,", 1))
    assert main(train_args(other, out, "sgd", EPOCHS, "--resume")) == 2
    assert "different training data" in capsys.readouterr().err
    assert checkpoint.completed_epoch(folder) == 2  # refused resumes leave the checkpoint alone

    data = (folder / checkpoint.FILE).read_bytes()
    (folder / checkpoint.FILE).write_bytes(data[: len(data) // 2])
    assert main(train_args(ratings_csv, out, "sgd", EPOCHS, "--resume")) == 2
    err = capsys.readouterr().err
    assert "corrupt" in err and "Traceback" not in err and not out.exists()


def test_resume_without_checkpoint_is_one_sentence(capsys, tmp_path, ratings_csv):
    assert main(train_args(ratings_csv, tmp_path / "m", "sgd", EPOCHS, "--resume")) == 2
    assert "no checkpoint to resume from" in capsys.readouterr().err


KILLABLE = r"""
import os, sys, time
from pathlib import Path
import latentrec.solvers.runners as T
from latentrec.cli import main

mode, marker, argv = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
if mode == "slow-epochs":  # the weights are updated, then the epoch lingers before it is recorded
    epoch = T.KernelRunner.epoch
    def slow(self, lr_at):
        mse = epoch(self, lr_at)
        time.sleep(0.3)
        return mse
    T.KernelRunner.epoch = slow
else:  # the second checkpoint write stops after the file is written, before it is renamed into place
    real, calls = os.replace, []
    def replace(src, dst):
        if str(dst).endswith("checkpoint.safetensors"):
            calls.append(dst)
            if len(calls) == 2:
                marker.touch()
                time.sleep(120)
        return real(src, dst)
    os.replace = replace
sys.exit(main(argv))
"""


def start_killable(tmp_path: Path, mode: str, argv: list[str]) -> tuple[subprocess.Popen, Path]:
    marker = tmp_path / f"{mode}.marker"
    proc = subprocess.Popen([sys.executable, "-c", KILLABLE, mode, str(marker), *argv],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return proc, marker


def wait_for(condition, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_sigkill_mid_epoch_and_during_save_then_resume(tmp_path, ratings_csv):
    epochs = 8
    ref, out = tmp_path / "ref", tmp_path / "m"
    folder = checkpoint.default_folder(out)
    assert main(train_args(ratings_csv, ref, "sgd", epochs)) == 0

    proc, _ = start_killable(tmp_path, "slow-epochs", train_args(ratings_csv, out, "sgd", epochs))
    wait_for(lambda: (checkpoint.completed_epoch(folder) or 0) >= 2, proc)
    time.sleep(0.15)  # inside the next epoch: its weights are updated in memory, not yet saved
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = checkpoint.completed_epoch(folder)
    assert first is not None and 2 <= first < epochs and not out.exists()

    proc, marker = start_killable(tmp_path, "hang-in-save",
                                  train_args(ratings_csv, out, "sgd", epochs, "--resume"))
    wait_for(marker.exists, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list(folder.glob(f"{checkpoint.TMP_PREFIX}*")), "the kill should land between write and rename"
    assert checkpoint.completed_epoch(folder) == first + 1  # the last good checkpoint, intact

    assert main(train_args(ratings_csv, out, "sgd", epochs, "--resume")) == 0
    assert_same_weights(ref, out)
    assert len(json.loads((out / "model.json").read_text())["history"]) == epochs
    assert not folder.exists()


def test_divergence_is_caught_within_the_epoch_keeping_last_good_weights(capsys, tmp_path, ratings_csv):
    explode = ["--opt", "sgd", "--lr", "30", "--schedule", "constant", "--valid-pct", "0"]
    out, one = tmp_path / "m", tmp_path / "one"
    assert main(train_args(ratings_csv, out, "autograd", EPOCHS, *explode)) == 2
    err = capsys.readouterr().err
    assert "diverged in epoch 2 (the batch loss reached" in err  # caught at a batch, inside epoch 2
    assert "kept the weights of epoch 1" in err and "try lr (--lr) 10" in err and "Traceback" not in err  # opt sgd: a third
    meta = json.loads((out / "model.json").read_text())
    assert len(meta["history"]) == 1 and "diverged" in meta
    assert main(train_args(ratings_csv, one, "autograd", 1, *explode)) == 0
    assert_same_weights(out, one)  # exactly the weights after epoch 1
    assert all(torch.isfinite(t).all() for t in weights(out).values() if t.is_floating_point())
    assert not checkpoint.default_folder(out).exists()


def test_divergence_in_the_first_epoch_saves_nothing_and_shows_nothing_else(capsys, tmp_path, ratings_csv):
    out = tmp_path / "m"
    assert main(train_args(ratings_csv, out, "sgd", EPOCHS, "--lr", "1000")) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("latentrec train: error: Training diverged in epoch 1 (")
    assert captured.err.strip().endswith("Nothing was saved.") and "kept the weights" not in captured.err
    assert "Top 5" not in captured.out and not out.exists() and not checkpoint.default_folder(out).exists()


def test_a_checkpoint_that_does_not_fit_on_disk_is_one_sentence(tmp_path, ratings_csv):
    import resource

    def small_files() -> None:  # a write past 20 kB fails with EFBIG, as a full disk fails with ENOSPC
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    argv = train_args(ratings_csv, tmp_path / "m", "sgd", 2, "--n-factors", "64")
    run = subprocess.run([sys.executable, "-m", "latentrec", *argv], capture_output=True, text=True,
                         preexec_fn=small_files, timeout=120, check=False)
    assert run.returncode == 2, run.stderr
    assert run.stderr.startswith("latentrec train: error: Cannot write the checkpoint to")
    assert "Traceback" not in run.stderr
    assert not list(checkpoint.default_folder(tmp_path / "m").glob(f"{checkpoint.TMP_PREFIX}*"))


def test_a_leftover_checkpoint_blocks_a_fresh_run_with_what_to_do(tmp_path, ratings_csv, capsys):
    folder = tmp_path / "m.checkpoint"
    folder.mkdir()
    (folder / checkpoint.FILE).write_bytes(b"not a checkpoint")
    assert main(train_args(ratings_csv, tmp_path / "m", "sgd")) == 2
    err = capsys.readouterr().err
    assert "cannot be read; delete" in err and "--resume" not in err, err
