"""Two processes under torchrun on loopback train data-parallel and match a single process."""

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import lowrank_ratings
from safetensors.torch import load_file

from latentrec.training import checkpoint

WORKER = Path(__file__).with_name("dist_worker.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    df, _ = lowrank_ratings()
    perm = np.random.default_rng(1).permutation(len(df))
    cut = int(0.8 * len(df))
    folder = tmp_path_factory.mktemp("dist")
    df.iloc[perm[:cut]].to_csv(folder / "train.csv", index=False)
    df.iloc[perm[cut:]].to_csv(folder / "valid.csv", index=False)
    return folder


def torchrun(*args: str, nproc: int = 2, timeout: float = 180, status: int = 0,
             **env_vars: str) -> subprocess.CompletedProcess:
    """``args`` (a script or ``-m module`` and its arguments) on ``nproc`` ranks on loopback; fails unless the exit
    status is ``status``."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")} | env_vars
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
                          "--master-addr", "127.0.0.1", "--master-port", str(free_port()), *args],
                         env=env, timeout=timeout, capture_output=True, text=True, check=False)
    assert run.returncode == status, run.stderr[-3000:]
    return run


@pytest.mark.parametrize("solver", ["sgd", pytest.param("autograd", marks=pytest.mark.slow)])
def test_two_ranks_agree_and_match_one_process(files, tmp_path, solver):
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    args = [str(WORKER), str(files / "train.csv"), str(files / "valid.csv"), str(tmp_path), solver]
    subprocess.run([sys.executable, *args], check=True, env=env, timeout=120)
    torchrun(*args)
    ranks = [np.load(tmp_path / f"rank{r}-of-2.npz") for r in (0, 1)]
    single = np.load(tmp_path / "rank0-of-1.npz")
    for name in single.files:
        assert np.array_equal(ranks[0][name], ranks[1][name]), name  # both ranks end with the same weights
    assert not np.array_equal(ranks[0]["user_factors"], single["user_factors"])  # really trained apart
    metric = lambda f: json.loads((tmp_path / f).read_text())["valid_rmse"]
    assert metric("rank0-of-2.json") <= metric("rank0-of-1.json") + 0.005
    assert metric("rank0-of-1.json") < 0.5  # and the single run did learn (the global mean scores 0.83)
    ranker = lambda f: json.loads((tmp_path / f).read_text())["ranker"]
    assert ranker("rank0-of-1.json") == ranker("rank0-of-2.json") is not None  # rank 0, which saves, fits the ranker
    assert ranker("rank1-of-2.json") is None  # and the other ranks skip it


def test_resume_under_torchrun_continues_every_rank_exactly(files, tmp_path):
    """``latentrec train --resume`` on 2 ranks: every rank restores the checkpoint (weights, its own
    generators, the inner runners' optimizer moments and batch order) and ends with the uninterrupted weights."""
    def train(stop: int, out: str, *extra: str) -> None:
        torchrun(str(WORKER), "cli", str(stop), "train", "--data", str(files / "train.csv"), "--valid",
                 str(files / "valid.csv"), "--solver", "autograd", "--n-factors", "4", "--epochs", "5",
                 "--device", "cpu", "--out", str(tmp_path / out), "--json", "--checkpoint-every", "0", *extra)

    train(0, "straight")
    train(2, "resumed")
    assert checkpoint.completed_epoch(checkpoint.default_folder(tmp_path / "resumed")) == 2
    train(0, "resumed", "--resume")
    straight, resumed = (load_file(str(tmp_path / d / "model.safetensors")) for d in ("straight", "resumed"))
    for name in straight:
        assert torch.equal(straight[name], resumed[name]), name


def test_the_nn_model_trains_under_torchrun(files, tmp_path):
    """CollabNN's sparse embedding gradients are averaged across ranks (made dense first: a hook on a gradient
    may not change its layout, and the ranks touch different rows)."""
    run = torchrun(str(WORKER), "cli", "0", "train", "--data", str(files / "train.csv"), "--valid",
                   str(files / "valid.csv"), "--model", "nn", "--epochs", "3", "--device", "cpu", "--out",
                   str(tmp_path / "m"), "--json", "--checkpoint-every", "0", "--ranker", "none")
    result = json.loads(run.stdout)
    assert result["config"]["model"] == "nn"
    assert result["metrics"]["valid_rmse"] < result["valid"]["baselines"]["global_mean"]["rmse"] - 0.01  # it learned
    assert (tmp_path / "m" / "model.safetensors").is_file()


def test_a_random_run_draws_one_seed_for_every_rank(files, tmp_path):
    """fit(seed=None) under torchrun: rank 0's draw is every rank's (the broadcast came before the group existed)."""
    torchrun(str(WORKER), str(files / "train.csv"), str(files / "valid.csv"), str(tmp_path), "sgd", "none")
    said = [json.loads((tmp_path / f"rank{r}-of-2.json").read_text()) for r in range(2)]
    assert said[0]["seed"] == said[1]["seed"] is not None
    a, b = (np.load(tmp_path / f"rank{r}-of-2.npz") for r in range(2))
    assert all(np.array_equal(a[k], b[k]) for k in a.files)


def test_join_gives_every_rank_all_parts_in_rank_order(tmp_path):
    torchrun(str(WORKER), "join", str(tmp_path), nproc=3)
    for rank in range(3):
        got = np.load(tmp_path / f"join{rank}.npz")
        assert got["float32"].dtype == np.float32 and got["uint8"].dtype == np.uint8
        assert got["int32"].tolist() == [10, 11, 12, 20, 21, 22, 23, 24, 25] and got["int32_sizes"].tolist() == [0, 3, 6]
        assert got["int64"].tolist() == [12, 11, 10, 25, 24, 23, 22, 21, 20]
        assert got["empty"].shape == (0,) and got["readonly"].tolist() == [97, 98] * 3


def test_each_rank_parses_its_part_of_a_big_file_and_trains_the_one_process_model(files, tmp_path):
    """Read lean under torchrun: rank 0 parses the first part of the file, rank 1 the rest; joined, they
    train (ALS, rows split across the ranks) the model one process trains from the whole file."""
    df = pd.read_csv(files / "train.csv")
    df.assign(user=df.user.str[1:].astype(int), item=df.item.str[1:].astype(int)).to_csv(tmp_path / "ids.csv", index=False)
    common = ["train", "--data", str(tmp_path / "ids.csv"), "--solver", "als", "--n-factors", "4", "--epochs", "4",
              "--device", "cpu", "--json", "--checkpoint-every", "0", "--ranker", "none"]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")} | {"LEAN_BYTES": "0"}
    one = subprocess.run([sys.executable, str(WORKER), "cli", "0", *common, "--out", str(tmp_path / "one")],
                         env=env, check=False, capture_output=True, text=True, timeout=180)
    assert one.returncode == 0, one.stderr[-3000:]
    two = torchrun(str(WORKER), "cli", "0", *common, "--out", str(tmp_path / "two"), LEAN_BYTES="0")
    total, again = [int(n) for n in re.findall(r"rank 0 parsed (\d+) rows", one.stderr)]  # again for the refit
    reads = {}
    for r, n in re.findall(r"rank (\d) parsed (\d+) rows", two.stderr):
        reads.setdefault(int(r), []).append(int(n))
    assert again == total and all(len(n) == 2 and n[0] == n[1] for n in reads.values())  # held-out run, refit
    parts = {r: n[0] for r, n in reads.items()}
    assert sorted(parts) == [0, 1] and sum(parts.values()) == total and max(parts.values()) < 0.6 * total
    a, b = (load_file(str(tmp_path / d / "model.safetensors")) for d in ("one", "two"))
    for name in a:
        assert torch.allclose(a[name], b[name], atol=1e-5), name
    meta = [json.loads((tmp_path / d / "model.json").read_text()) for d in ("one", "two")]
    assert meta[0]["users"] == meta[1]["users"] and meta[0]["n_valid"] == meta[1]["n_valid"] > 0


@pytest.mark.parametrize("fast", ["0", "1"])
def test_rank_0s_clock_says_when_every_rank_saves_a_checkpoint(files, tmp_path, fast):
    """Saving is a collective: were each rank to read its own clock, one would gather states while the other went
    on to the next sweep's collective (gloo: "Received data size doesn't match", or a hang). Rank 0's clock due
    at every epoch end: both save each epoch; rank 1's: neither saves."""
    out = tmp_path / "m"
    torchrun(str(WORKER), "cli", "3", "train", "--data", str(files / "train.csv"), "--solver", "als", "--epochs", "6",
             "--device", "cpu", "--json", "--ranker", "none", "--checkpoint-every", "100", "--out", str(out),
             timeout=120, FAST_CLOCK_RANK=fast)
    assert checkpoint.completed_epoch(checkpoint.default_folder(out)) == (3 if fast == "0" else None)


@pytest.mark.skipif(not os.environ.get("LATENTREC_DATA"), reason="needs LATENTREC_DATA with ml-100k")
def test_default_solver_on_two_processes_matches_one_and_resumes_on_ml100k(tmp_path):
    """``torchrun --nproc-per-node 2 -m latentrec train --data ml-100k`` (30 Gibbs sweeps, not the default 60, to
    keep the suite short), stopped after 15 and resumed: the rows split across two ranks give the one-process
    validation RMSE within 0.003."""
    common = ["train", "--data", "ml-100k", "--epochs", "30", "--device", "cpu", "--json", "--checkpoint-every", "0"]
    one = subprocess.run([sys.executable, "-m", "latentrec", *common, "--out", str(tmp_path / "one")],
                         check=False, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    torchrun(str(WORKER), "cli", "15", *common, "--out", str(tmp_path / "two"), timeout=300)
    assert checkpoint.completed_epoch(checkpoint.default_folder(tmp_path / "two")) == 15
    two = torchrun(str(WORKER), "cli", "0", *common, "--out", str(tmp_path / "two"), "--resume", timeout=300)
    results = [json.loads(out) for out in (one.stdout, two.stdout)]
    assert [r["config"]["solver"] for r in results] == ["bayes", "bayes"]
    assert [h["epoch"] for h in json.loads((tmp_path / "two" / "model.json").read_text())["history"]] == list(range(1, 31))
    rmse = [r["metrics"]["valid_rmse"] for r in results]
    assert abs(rmse[0] - rmse[1]) <= 0.003 and rmse[0] < 0.89, rmse


def test_a_divergence_on_one_rank_stops_every_rank_together(tmp_path):
    torchrun(str(WORKER), "diverge", str(tmp_path))
    said = [(tmp_path / f"diverge{rank}-{solver}.txt").read_text() for solver in ("sgd", "autograd") for rank in (0, 1)]
    assert all(s.startswith("diverged") for s in said), said


def test_a_big_file_without_a_rating_column_is_one_sentence_under_torchrun(files, tmp_path):
    """Each rank's lean reader meets the missing column; rank 0's error, passed to every rank, is raised again with
    the role it names (a ColumnNotFound rebuilt without it was a TypeError)."""
    df = pd.read_csv(files / "train.csv")
    df.assign(user=df.user.str[1:].astype(int), item=df.item.str[1:].astype(int)).rename(
        columns={"rating": "grade"}).to_csv(tmp_path / "ids.csv", index=False)
    run = torchrun(str(WORKER), "cli", "0", "train", "--data", str(tmp_path / "ids.csv"), "--out", str(tmp_path / "m"),
                   "--device", "cpu", LEAN_BYTES="0", status=1)  # torchrun's own status when a rank fails
    assert "has no rating column" in run.stderr and "TypeError" not in run.stderr, run.stderr[-3000:]
    assert run.stderr.count("latentrec train: error:") == 1, run.stderr[-3000:]  # every rank has it; one says it


def test_an_error_every_rank_meets_before_any_collective_is_said_once(files, tmp_path):
    run = torchrun("-m", "latentrec", "train", "--data", str(files / "train.csv"), "--out", str(tmp_path / "m"),
                   "--resume", "--device", "cpu", status=1)  # no checkpoint to resume: each rank finds it alone
    assert run.stderr.count("latentrec train: error:") == 1, run.stderr[-3000:]
