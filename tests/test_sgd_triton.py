"""The Triton SGD epoch (the CUDA path of --solver sgd): under Triton's interpreter on the CPU it is the CPU
kernel's sequential per-rating SGD and tracks the kernel epoch by epoch; on CUDA it converges like the kernel."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import lowrank_ratings

from latentrec.config import TrainConfig
from latentrec.data.batches import Encoded
from latentrec.models.dot import DotProductBias
from latentrec.models.scoring import predict_rows, rmse_mae
from latentrec.solvers import sgd_triton
from latentrec.solvers.runners import KernelRunner

pytest.importorskip("triton")


@pytest.fixture(scope="module")
def interpreted():
    """The checks of tests/triton_worker.py, run in a process where Triton's interpreter is on from the start."""
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    done = subprocess.run([sys.executable, str(Path(__file__).with_name("triton_worker.py"))], env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_interpreted_epoch_is_the_sequential_kernel(interpreted):
    for case, got in interpreted["epochs"].items():  # sigmoid or not, biases or not
        assert got["sq_rel"] < 1e-4 and got["weights"] < 2e-5 < got["moved"], (case, got)


def test_interpreted_runner_tracks_the_cpu_kernel_epoch_by_epoch(interpreted):
    kernel, triton = interpreted["curves"]["kernel"], interpreted["curves"]["triton"]
    assert max(abs(a - b) for a, b in zip(kernel, triton)) <= 0.005, (kernel, triton)
    assert triton[-1] < 0.9 * interpreted["curves"]["std"]  # it learned: below guessing the mean


def test_the_gpu_path_takes_triton_when_it_runs(interpreted, monkeypatch):
    assert interpreted["gpu_path"] == "TritonSGDRunner"
    bench = interpreted["bench"]  # latentrec bench's sgd-triton row runs too
    assert bench["batch"] == sgd_triton.programs(*bench["shape"]) and bench["ratings_per_s"] > 0
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert not sgd_triton.usable(torch.device("cpu"))  # no interpreter: the CPU keeps its own kernel


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_triton_epochs_track_the_cpu_kernel():
    df, _ = lowrank_ratings(n_users=400, n_items=300, density=0.5, seed=2)
    users = df.user.str[1:].astype(np.int32).to_numpy() + 1
    items = df.item.str[1:].astype(np.int32).to_numpy() + 1
    ratings = df.rating.to_numpy(np.float32)
    perm = np.random.default_rng(0).permutation(len(ratings))
    cut = int(0.9 * len(ratings))
    train, valid = (Encoded(users[s], items[s], ratings[s]) for s in (perm[:cut], perm[cut:]))
    cfg = TrainConfig(solver="sgd", n_factors=16, epochs=8, seed=0, device="cpu").resolved()
    curves = []
    for runner_cls, device in ((KernelRunner, "cpu"), (sgd_triton.TritonSGDRunner, "cuda")):
        torch.manual_seed(0)
        model = DotProductBias(401, 301, 16, (0.5, 5.5)).to(device)
        runner = runner_cls(model, Encoded(train.users.copy(), train.items.copy(), train.ratings.copy()), cfg,
                            torch.device(device))
        curve = []
        for _ in range(cfg.epochs):
            runner.epoch(lambda frac: cfg.lr)
            curve.append(rmse_mae(predict_rows(model, valid, torch.device(device)), valid.ratings)[0])
        curves.append(curve)
    assert max(abs(a - b) for a, b in zip(*curves)) <= 0.005, curves


def test_batches_asked_for_or_a_kernel_that_will_not_compile_take_the_batched_path(monkeypatch, caplog):
    from latentrec.solvers.runners import sgd_runner
    from latentrec.solvers.sgd_torch import TorchSGDRunner

    df, _ = lowrank_ratings(n_users=20, n_items=10, density=0.5)
    data = Encoded(df.user.str[1:].astype(np.int32).to_numpy() + 1, df.item.str[1:].astype(np.int32).to_numpy() + 1,
                   df.rating.to_numpy(np.float32).copy())
    cpu = torch.device("cpu")
    monkeypatch.setattr(sgd_triton, "usable", lambda device: True)
    cfg = TrainConfig(solver="sgd", n_factors=4, bs=256, seed=0, device="cpu").resolved()
    assert isinstance(sgd_runner(DotProductBias(21, 11, 4), data, cfg, cpu, batched=True), TorchSGDRunner)

    def no_compiler(*a):
        raise RuntimeError("Failed to find C compiler")

    monkeypatch.setattr(sgd_triton.TritonSGDRunner, "__init__", no_compiler)
    cfg = TrainConfig(solver="sgd", n_factors=4, seed=0, device="cpu").resolved()
    with caplog.at_level("WARNING", logger="latentrec"):
        assert isinstance(sgd_runner(DotProductBias(21, 11, 4), data, cfg, cpu, batched=True), TorchSGDRunner)
    assert "did not compile" in caplog.text and "C compiler" in caplog.text


def hopper_build(k: int, sigmoid: bool, bias: bool, index: str):
    """The kernel built for an H100/H200 (sm_90) without a GPU, by Triton's own compiler and ptxas, as a
    launch on such a GPU would build it (pointers 16-byte aligned; ``index`` the type of ``n``/``run``)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from latentrec.solvers.sgd_triton_kernel import sgd_runs

    lanes, warps = sgd_triton.launch_shape(k)
    pointers = dict(users="*i32", items="*i32", ratings="*fp32", P="*fp32", Q="*fp32", bu="*fp32", bi="*fp32", sq="*fp64")
    signature = pointers | dict(n=index, run=index, lr="fp32", keep="fp32", lo="fp32", span="fp32",
                                K="constexpr", KP="constexpr", SIGMOID="constexpr", BIAS="constexpr")
    source = ASTSource(sgd_runs, signature, constexprs=dict(K=k, KP=lanes, SIGMOID=sigmoid, BIAS=bias),
                       attrs={(j,): [["tt.divisibility", 16]] for j in range(len(pointers))})
    options = {"num_warps": warps, "enable_fp_fusion": sgd_triton.FP_FUSION}
    return triton.compile(source, target=GPUTarget("cuda", 90, 32), options=options)


@pytest.mark.parametrize("k, sigmoid, bias, index", [(64, True, True, "i32"), (50, False, True, "i64"),
                                                     (1, True, False, "i32"), (300, False, False, "i64")])
def test_the_kernel_builds_for_hopper_with_vector_row_loads(k, sigmoid, bias, index):
    """What the interpreter cannot show: the kernel compiles to an sm_90 binary, and each thread loads its
    lanes of a factor row as one vector (for k=64 on one warp, two floats: ld.global.v2)."""
    built = hopper_build(k, sigmoid, bias, index)
    assert built.asm["cubin"]
    ptx = built.asm["ptx"]
    assert ".target sm_90" in ptx
    if k == 64:
        assert ptx.count("ld.global.v2.b32") == 2 and ptx.count("st.global.v2.b32") == 2, ptx
