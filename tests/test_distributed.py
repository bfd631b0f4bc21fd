"""Two processes under torchrun on loopback train data-parallel and match a single process."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import lowrank_ratings

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


@pytest.mark.parametrize("solver", ["sgd", pytest.param("autograd", marks=pytest.mark.slow)])
def test_two_ranks_agree_and_match_one_process(files, tmp_path, solver):
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    args = [str(WORKER), str(files / "train.csv"), str(files / "valid.csv"), str(tmp_path), solver]
    subprocess.run([sys.executable, *args], check=True, env=env, timeout=120)
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                          "--master-addr", "127.0.0.1", "--master-port", str(free_port()), *args],
                         env=env, timeout=180, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    ranks = [np.load(tmp_path / f"rank{r}-of-2.npz") for r in (0, 1)]
    single = np.load(tmp_path / "rank0-of-1.npz")
    for name in single.files:
        assert np.array_equal(ranks[0][name], ranks[1][name]), name  # both ranks end with the same weights
    assert not np.array_equal(ranks[0]["user_factors"], single["user_factors"])  # really trained apart
    metric = lambda f: json.loads((tmp_path / f).read_text())["valid_rmse"]
    assert metric("rank0-of-2.json") <= metric("rank0-of-1.json") + 0.005
    assert metric("rank0-of-1.json") < 0.5  # and the single run did learn (the global mean scores 0.83)
