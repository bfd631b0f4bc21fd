"""SIGTERM stops a command as Ctrl-C does: the same message, the checkpoint kept, temp files removed, exit 143."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest
from conftest import lowrank_ratings

# Each case runs the CLI in this one process, with SIGTERM raised at the moment named; the default SIGTERM
# (no handler) would end the whole process there, with status -15 and temp files left.
SCRIPT = r"""
import json, signal, sys
from pathlib import Path
import pandas as pd
from latentrec.cli import main
from latentrec.cli.train import EpochTable
from latentrec.data import datasets
from latentrec.use import model_dir

root = Path(sys.argv[1])
data, out = str(root / "r.csv"), str(root / "m")
train = ["train", "--data", data, "--out", out, "--epochs", "4", "--n-factors", "3", "--solver", "sgd",
         "--device", "cpu", "--json", "--checkpoint-every", "0", "--ranker", "none"]

def term_after(owner, name, when=lambda *a: True, stand_in=None):
    real = getattr(owner, name)
    def hooked(*args, **kwargs):
        result = (stand_in or real)(*args, **kwargs)
        if when(*args):
            signal.raise_signal(signal.SIGTERM)
        return result
    setattr(owner, name, hooked)
    return lambda: setattr(owner, name, real)

cases = [
    ("at an epoch end", lambda: term_after(EpochTable, "on_epoch_end", lambda self, t, record: record["epoch"] == 2),
     train),
    ("writing the model", lambda: term_after(model_dir, "write_tensors"), train + ["--resume"]),
    ("resumed", lambda: (lambda: None), train + ["--resume"]),
    ("writing predictions", lambda: term_after(pd.DataFrame, "to_csv"),
     ["predict", out, "--data", data, "--out", str(root / "preds.csv")]),
    ("downloading", lambda: term_after(datasets, "_fetch", stand_in=lambda url, dest, *a: dest.write_bytes(b"PK")),
     ["train", "--data", "ml-100k", "--data-dir", str(root / "data"), "--out", str(root / "ml")]),
]
results = {}
for name, hook, argv in cases:
    undo = hook()
    code = main(argv)
    undo()
    results[name] = {"code": code, "files": sorted(str(p.relative_to(root)) for p in root.rglob("*"))}
    print(f"-- {name}", file=sys.stderr, flush=True)
print(json.dumps(results))
"""


def test_sigterm_is_ctrl_c_with_exit_143_and_leaves_no_temp_file(tmp_path):
    df, _ = lowrank_ratings(n_users=40, n_items=30, density=0.5)
    df.to_csv(tmp_path / "r.csv", index=False)
    (tmp_path / "data").mkdir()
    run = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True,
                         timeout=300, check=False)
    assert run.returncode == 0, run.stderr
    results = json.loads(run.stdout.splitlines()[-1])
    err = run.stderr.split("-- ")
    checkpoint = ["m.checkpoint", "m.checkpoint/checkpoint.safetensors"]
    assert results["at an epoch end"] == {"code": 143, "files": ["data", *checkpoint, "r.csv"]}
    assert "latentrec train: interrupted; epoch 2 of 4 is saved in" in err[0] and "--resume" in err[0]
    assert results["writing the model"] == {"code": 143, "files": ["data", *checkpoint, "r.csv"]}  # nothing lost
    assert err[1].endswith(f"latentrec train: interrupted after training, before the model was written to "
                           f"{tmp_path / 'm'}; epoch 4 of 4 is saved in {tmp_path / 'm.checkpoint'}. Run the same "
                           f"command with --resume to continue.\n")
    assert results["resumed"]["code"] == 0 and "m/model.json" in results["resumed"]["files"]
    assert results["writing predictions"]["code"] == 143
    assert results["writing predictions"]["files"] == results["resumed"]["files"]  # no .preds.csv.*.tmp.csv
    assert err[3].endswith("latentrec predict: interrupted.\n")
    assert results["downloading"]["code"] == 143
    assert results["downloading"]["files"] == results["resumed"]["files"]  # no data/.ml-100k-*/
    assert "Traceback" not in run.stderr


def test_sigterm_from_another_process_stops_training_at_once(tmp_path):
    """A real ``kill`` mid-run: the message names the saved epoch, the status is 143."""
    df, _ = lowrank_ratings(n_users=40, n_items=30, density=0.5)
    df.to_csv(tmp_path / "r.csv", index=False)
    script = ("import sys, time\nfrom latentrec.cli import main\nfrom latentrec.cli.train import EpochTable\n"
              "shown = EpochTable.on_epoch_end\n"
              "def slow(self, trainer, record):\n"
              "    shown(self, trainer, record)\n"
              "    if record['epoch'] == 1:\n"
              "        print('ready', flush=True)\n"
              "        time.sleep(60)\n"
              "EpochTable.on_epoch_end = slow\n"
              "sys.exit(main(sys.argv[1:]))\n")
    proc = subprocess.Popen([sys.executable, "-c", script, "train", "--data", str(tmp_path / "r.csv"), "--out",
                             str(tmp_path / "m"), "--epochs", "3", "--solver", "sgd", "--device", "cpu", "--json",
                             "--checkpoint-every", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert err.strip().endswith(f"epoch 1 of 3 is saved in {tmp_path / 'm.checkpoint'}. "
                                "Run the same command with --resume to continue."), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.checkpoint", "r.csv"]


def test_a_checkpoint_being_written_holds_sigterm_back_until_it_is_whole():
    from latentrec.atomic import held_signals
    from latentrec.errors import Terminated, sigterm_as_ctrl_c

    written = []
    with sigterm_as_ctrl_c():  # as the CLI has it while a command runs
        with pytest.raises(Terminated), held_signals():
            signal.raise_signal(signal.SIGTERM)
            written.append("the rest of the file")
    assert written == ["the rest of the file"]


def test_serve_start_up_takes_a_stop_after_its_imports():
    """SIGTERM while serve imports FastAPI waits until the import is done: raised inside pydantic-core's schema
    building it came out as a SchemaError and a 44-line traceback (2 of 57 stops at 0.5-0.6 s)."""
    import os

    from latentrec.atomic import held_signals
    from latentrec.errors import Terminated, sigterm_as_ctrl_c

    done = []
    with pytest.raises(Terminated), sigterm_as_ctrl_c():
        with held_signals():  # as serve's start-up imports FastAPI
            os.kill(os.getpid(), signal.SIGTERM)
            done.append("the rest of the block")
    assert done == ["the rest of the block"]
