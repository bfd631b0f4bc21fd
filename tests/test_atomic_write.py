"""Every file is written through latentrec.atomic; a model is never missing at its path, even mid-save."""

import json
import os
import threading
import time
import tomllib

import numpy as np
import pandas as pd
import pytest
from tiny_rec import tiny_rec, tune_result

from latentrec.atomic import atomic_path, write_text
from latentrec.use.model_dir import META, WEIGHTS
from latentrec.use.recommender import Recommender


def two_models():
    rng = np.random.default_rng(0)
    return (tiny_rec(rng.normal(size=(4, 2)), rng.normal(size=(5, 2))),
            tiny_rec(rng.normal(size=(4, 3)), rng.normal(size=(5, 3))))


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "table.csv"
    write_text(target, "old\n")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert target.read_text() == "old\n" and os.listdir(tmp_path) == ["table.csv"]


def test_temp_file_keeps_the_suffix_so_writers_pick_the_format(tmp_path):
    with atomic_path(tmp_path / "a.png") as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".png"
        tmp.write_bytes(b"x")
    assert (tmp_path / "a.png").read_bytes() == b"x"


def test_model_is_complete_at_its_path_at_every_rename(tmp_path, monkeypatch):
    a, b = two_models()
    path = tmp_path / "model"
    a.save(path)
    gaps = []
    real_replace = os.replace

    def replace(src, dst):
        for moment in ("before", "after"):
            if moment == "after":
                real_replace(src, dst)
            if not ((path / WEIGHTS).is_file() and (path / META).is_file()):
                gaps.append(f"{moment} {src} -> {dst}")

    monkeypatch.setattr(os, "replace", replace)
    b.save(path)
    monkeypatch.undo()
    assert gaps == []
    assert Recommender.load(path).model.config()["n_factors"] == 3
    assert sorted(os.listdir(tmp_path)) == ["model"]  # no temp folder or file left behind


def test_readers_never_miss_or_mix_a_model_while_it_is_replaced(tmp_path):
    a, b = two_models()
    path = tmp_path / "model"
    a.save(path)
    done, errors, seen = threading.Event(), [], set()

    def writer():
        for i in range(60):
            (a if i % 2 else b).save(path)
        done.set()

    t = threading.Thread(target=writer)
    t.start()
    while not done.is_set():
        try:
            seen.add(Recommender.load(path).model.config()["n_factors"])
        except Exception as e:  # noqa: BLE001 - any failure is the finding
            errors.append(repr(e))
    t.join()
    assert errors == []
    assert seen <= {2, 3}


def test_no_module_writes_a_file_except_through_latentrec_atomic():
    """A grep, so that a new writer cannot bypass the temp-file + fsync + rename route unnoticed."""
    import re
    from pathlib import Path

    import latentrec

    raw = re.compile(r"\.write_text\(|\.write_bytes\(|open\([^)]*['\"][wa]b?['\"]|os\.replace\(|\.rename\(")
    allowed = {"atomic.py", "data/datasets.py"}  # the writer (files and folders); a download folder
    pkg = Path(latentrec.__file__).parent
    found = [f"{p.relative_to(pkg)}:{n}" for p in pkg.rglob("*.py") if str(p.relative_to(pkg)) not in allowed
             for n, line in enumerate(p.read_text().splitlines(), 1) if raw.search(line) and "/proc/" not in line]
    assert found == []


def test_outputs_get_the_permissions_of_a_plain_open(tmp_path):
    """Temp files and folders are private (0600/0700); what they become is readable as umask allows."""
    import torch

    from latentrec.use.model_dir import write_model_dir

    old = os.umask(0o022)
    try:
        write_text(tmp_path / "a.txt", "x")
        write_model_dir(tmp_path / "model", {"w": torch.zeros(2)}, {})
        os.umask(0o077)
        write_text(tmp_path / "private.txt", "x")
    finally:
        os.umask(old)
    mode = lambda p: p.stat().st_mode & 0o777  # noqa: E731
    assert mode(tmp_path / "a.txt") == 0o644 and mode(tmp_path / "private.txt") == 0o600
    assert mode(tmp_path / "model") == 0o755
    assert mode(tmp_path / "model" / "model.safetensors") == mode(tmp_path / "model" / "model.json") == 0o644


def n_factors_at(path) -> int:
    """The model at ``path`` read once (a mix of two writes is an error here, not a retry)."""
    from latentrec.use import model_dir

    return model_dir.read_model_dir(path)[1]["architecture"]["n_factors"]


def test_ctrl_c_during_the_renames_arrives_after_them(tmp_path, monkeypatch):
    """The renames that put a staged model in place are one step for Ctrl-C and SIGTERM: a signal that comes
    between them is held back until the new model is whole, and the user's files stay."""
    import signal

    a, b = two_models()
    path = tmp_path / "model"
    a.save(path)
    (path / "notes.txt").write_text("mine")
    real, renames = os.replace, []

    def replace(src, dst):
        real(src, dst)
        if os.path.dirname(dst) == str(path):  # a rename into the model dir, not a write into the staging folder
            renames.append(dst)
            if len(renames) == 1:  # between the weights and the description
                signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        b.save(path)
    monkeypatch.undo()
    assert [os.path.basename(r) for r in renames] == [WEIGHTS, META]
    assert n_factors_at(path) == 3 and (path / "notes.txt").read_text() == "mine"
    assert sorted(os.listdir(path)) == [META, WEIGHTS, "notes.txt"]  # no staging folder left


def test_ctrl_c_while_staging_leaves_the_old_model_and_no_temp(tmp_path, monkeypatch):
    from latentrec.use import model_dir

    a, b = two_models()
    path = tmp_path / "model"
    a.save(path)

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(model_dir, "write_tensors", interrupted)
    with pytest.raises(KeyboardInterrupt):
        b.save(path)
    assert n_factors_at(path) == 2 and sorted(os.listdir(path)) == [META, WEIGHTS]
    assert sorted(os.listdir(tmp_path)) == ["model"]


def test_the_folder_itself_is_kept(tmp_path):
    """A model dir may be a mount point or a folder another account owns: it is written into, never replaced."""
    a, b = two_models()
    path = tmp_path / "model"
    a.save(path)
    before = path.stat()
    b.save(path)
    after = path.stat()
    assert (after.st_ino, after.st_dev, after.st_uid) == (before.st_ino, before.st_dev, before.st_uid)
    assert n_factors_at(path) == 3


def test_a_model_saved_through_a_link_keeps_the_link(tmp_path):
    a, b = two_models()
    a.save(tmp_path / "v1")
    (tmp_path / "current").symlink_to("v1")
    b.save(tmp_path / "current")
    assert (tmp_path / "current").is_symlink() and n_factors_at(tmp_path / "v1") == 3
    assert sorted(os.listdir(tmp_path)) == ["current", "v1"]


def test_an_existing_folder_must_itself_be_writable(tmp_path, monkeypatch):
    import tempfile

    from latentrec.atomic import writable_or_fail
    from latentrec.errors import ModelFileError

    (tmp_path / "model").mkdir()
    real = tempfile.TemporaryFile

    def read_only(dir):  # root ignores permissions: the folder refuses new files instead
        if dir == (tmp_path / "model").resolve():
            raise PermissionError(13, "Permission denied")
        return real(dir=dir)

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
    with pytest.raises(ModelFileError, match=f"cannot create a file in {tmp_path / 'model'} "):
        writable_or_fail(tmp_path / "model", folder=True)


def test_a_staging_folder_a_killed_save_left_is_swept_by_the_next_save(tmp_path):
    a, b = two_models()
    path = tmp_path / "model"
    a.save(path)
    old, fresh = path / ".model.tmp-killed", path / ".model.tmp-running"
    for stage in (old, fresh):
        stage.mkdir()
        (stage / WEIGHTS).write_bytes(b"half")
    os.utime(old, (0, 0))
    b.save(path)
    assert not old.exists() and fresh.exists()  # a fresh one may be another save's, still running


def test_a_save_killed_between_its_renames_still_loads_as_the_new_model(tmp_path, monkeypatch):
    """kill -9 cannot be held back: after the weights' rename, the staged description is read in its place."""
    import latentrec.atomic as atomic
    from latentrec.use import model_dir

    a, b = two_models()
    path = tmp_path / "model"
    a.save(path)
    monkeypatch.setattr(model_dir, "READ_TRIES", 1)

    def killed(stage, target, own):  # the weights moved in, then the process died
        os.replace(stage / WEIGHTS, target / WEIGHTS)
        raise SystemExit("killed")

    monkeypatch.setattr(atomic, "_move_entries", killed)
    monkeypatch.setattr(atomic.shutil, "rmtree", lambda *args, **kwargs: None)  # a dead process cleans nothing up
    with pytest.raises(SystemExit):
        b.save(path)
    monkeypatch.undo()
    assert n_factors_at(path) == 3 and Recommender.load(path).model.config()["n_factors"] == 3


def test_readers_never_miss_a_tune_reports_model_while_a_rerun_replaces_it(tmp_path, monkeypatch):
    """A server polling a tune report's model/ loads a whole model all through a rerun into the same --out: its
    files are replaced in place (the old model/ was once set aside before the new one came in). Each rename that
    touches the report waits a moment, so the loop meets the folder between every two of them."""
    from latentrec.cli.tune_report import write_report

    a, b = two_models()
    out = tmp_path / "T"
    write_report(tune_result(a), out)
    report = {str(out), str(out / "model")}

    def pausing(real):
        def move(src, dst):
            real(src, dst)
            if {os.path.dirname(src), os.path.dirname(dst)} & report:
                time.sleep(0.02)
        return move

    monkeypatch.setattr(os, "replace", pausing(os.replace))
    monkeypatch.setattr(os, "rename", pausing(os.rename))
    done, errors, seen = threading.Event(), [], set()

    def writer():
        for i in range(4):
            write_report(tune_result(b if i % 2 == 0 else a), out)
        done.set()

    t = threading.Thread(target=writer)
    t.start()
    while not done.is_set():
        try:
            seen.add(Recommender.load(out / "model").model.config()["n_factors"])
        except Exception as e:  # noqa: BLE001 - any failure is the finding
            errors.append(repr(e))
    t.join()
    monkeypatch.undo()
    assert errors == []
    assert seen == {2, 3}
    assert sorted(os.listdir(out / "model")) == [META, WEIGHTS]  # no staging folder left behind


def test_a_tune_report_a_kill_cut_between_its_renames_is_told_from_a_whole_one(tmp_path, monkeypatch):
    """kill -9 before each rename of a rerun in turn (the renames cannot be held back): wherever it strikes, the
    report left is whole or ``report_mix`` says it is not, and its model loads."""
    import shutil

    import latentrec.atomic as atomic
    from latentrec.cli.tune_report import report_mix, write_report
    from latentrec.use import model_dir

    a, b = two_models()
    out = tmp_path / "T"
    report = {str(out), str(out / "model")}
    monkeypatch.setattr(model_dir, "READ_TRIES", 1)
    mixes = []
    for k in range(1, 20):
        shutil.rmtree(out, ignore_errors=True)
        write_report(tune_result(a), out)
        moves = [0]

        def killing(real):
            def move(src, dst):
                if {os.path.dirname(src), os.path.dirname(dst)} & report:
                    moves[0] += 1
                    if moves[0] == k:
                        raise SystemExit("killed")
                real(src, dst)
            return move

        with monkeypatch.context() as m:
            m.setattr(os, "replace", killing(os.replace))
            m.setattr(os, "rename", killing(os.rename))
            m.setattr(atomic.shutil, "rmtree", lambda *args, **kwargs: None)  # a dead process cleans nothing up
            try:
                write_report(tune_result(b), out)
                break  # no rename left to strike before
            except SystemExit:
                pass
        runs = {tomllib.loads((out / "best.toml").read_text())["n_factors"],
                json.loads((out / "summary.json").read_text())["best_config"]["n_factors"],
                int(pd.read_csv(out / "trials.csv").n_factors[0]),
                Recommender.load(out / "model").model.config()["n_factors"]}
        assert (len(runs) > 1) == (report_mix(out) is not None), (k, runs, report_mix(out))
        mixes.append(len(runs) > 1)
    assert len(mixes) == 8 and mixes == [False] + [True] * 7  # the model's 2 renames, then the report's 6


def test_a_text_file_the_disk_will_not_take_is_one_sentence_and_no_file(tmp_path, monkeypatch):
    """ablation --out on a full disk came out as an OSError traceback."""
    import errno
    from pathlib import Path

    from latentrec.errors import ModelFileError

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(ModelFileError, match=r"Cannot write .*a\.md: No space left on device\.$"):
        write_text(tmp_path / "a.md", "x")
    assert list(tmp_path.iterdir()) == []
