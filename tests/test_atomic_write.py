"""Every file is written through latentrec.atomic; a model is never missing at its path, even mid-save."""

import os
import threading

import numpy as np
import pytest
from tiny_rec import tiny_rec

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


def test_replacing_a_model_killed_at_any_step_leaves_the_old_or_the_new_whole(tmp_path, monkeypatch):
    """Every rename and the folder swap is a moment a kill -9 may hit: there the dir holds one whole model."""
    from latentrec import atomic
    from latentrec.use import model_dir

    a, b = two_models()
    path = tmp_path / "model"
    a.save(path)
    (path / "notes.txt").write_text("mine")  # a user's file beside the model
    monkeypatch.setattr(model_dir, "READ_TRIES", 1)
    seen = []

    def then_check(real):
        def step(*args):
            result = real(*args)
            seen.append(n_factors_at(path))
            return result
        return step

    monkeypatch.setattr(os, "replace", then_check(os.replace))
    monkeypatch.setattr(atomic, "_exchange", then_check(atomic._exchange))
    b.save(path)
    monkeypatch.undo()
    assert set(seen) == {2, 3} and n_factors_at(path) == 3
    assert (path / "notes.txt").read_text() == "mine"
    assert sorted(os.listdir(tmp_path)) == ["model"]


@pytest.mark.parametrize("swapped", [False, True])
def test_ctrl_c_at_the_swap_leaves_one_whole_model_and_no_temp_folder(tmp_path, monkeypatch, swapped):
    from latentrec import atomic

    a, b = two_models()
    path = tmp_path / "model"
    a.save(path)
    real = atomic._exchange

    def interrupted(new, target):
        if swapped:
            real(new, target)
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic, "_exchange", interrupted)
    with pytest.raises(KeyboardInterrupt):
        b.save(path)
    assert n_factors_at(path) == (3 if swapped else 2)
    assert sorted(os.listdir(tmp_path)) == ["model"] and sorted(os.listdir(path)) == [META, WEIGHTS]


def test_without_a_one_step_swap_the_old_model_is_renamed_aside_first(tmp_path, monkeypatch):
    from latentrec import atomic

    a, b = two_models()
    path = tmp_path / "model"
    a.save(path)
    (path / "pictures").mkdir()
    monkeypatch.setattr(atomic, "_renameat2", None)  # as on macOS or Windows
    b.save(path)
    assert n_factors_at(path) == 3 and (path / "pictures").is_dir()
    assert sorted(os.listdir(tmp_path)) == ["model"]


def test_a_model_saved_through_a_link_keeps_the_link(tmp_path):
    a, b = two_models()
    a.save(tmp_path / "v1")
    (tmp_path / "current").symlink_to("v1")
    b.save(tmp_path / "current")
    assert (tmp_path / "current").is_symlink() and n_factors_at(tmp_path / "v1") == 3
    assert sorted(os.listdir(tmp_path)) == ["current", "v1"]


def test_an_existing_folder_is_replaced_only_where_a_folder_can_be_built_beside_it(tmp_path, monkeypatch):
    import tempfile

    from latentrec.atomic import writable_or_fail
    from latentrec.errors import ModelFileError

    (tmp_path / "model").mkdir()
    real = tempfile.TemporaryFile

    def read_only_parent(dir):  # root ignores permissions: the folder above refuses new files instead
        if dir == tmp_path:
            raise PermissionError(13, "Permission denied")
        return real(dir=dir)

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only_parent)
    with pytest.raises(ModelFileError, match=f"cannot create a file in {tmp_path} "):
        writable_or_fail(tmp_path / "model", folder=True)
