"""Our parallel kernels are safe to enter from many Python threads, and importing latentrec leaves numba's
global threading layer alone (latentrec/parallel.py)."""

import os
import subprocess
import sys
import threading

import pytest
import torch

MANY_THREADS = """
import threading
import numpy as np
from tiny_rec import tiny_rec

rng = np.random.default_rng(0)
rec = tiny_rec(rng.normal(size=(50, 4)), rng.normal(size=(40, 4)))
users, items = rec.users.classes[1:], rec.items.classes[1:]
pairs = rng.integers(0, 40, (2, 20000))
expected = rec.predict([users[a] for a in pairs[0]], [items[b] for b in pairs[1]])["prediction"].to_numpy()
results, errors = [], []

def work():
    try:
        for _ in range(20):
            got = rec.predict([users[a] for a in pairs[0]], [items[b] for b in pairs[1]])["prediction"].to_numpy()
            results.append(np.array_equal(got, expected))
    except Exception as e:
        errors.append(repr(e))

threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
import numba
print(numba.threading_layer(), len(results), all(results), errors)
"""


def run(code: str, **env) -> subprocess.CompletedProcess:
    tests = os.path.dirname(__file__)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tests, timeout=300,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [tests, os.environ.get("PYTHONPATH")])), **env})


def test_many_threads_predict_at_once_under_the_workqueue_layer():
    done = run(MANY_THREADS, NUMBA_THREADING_LAYER="workqueue")  # the layer that aborts on concurrent entry
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["workqueue", "160", "True", "[]"]


def test_importing_latentrec_leaves_numbas_threading_layer_and_the_environment_alone():
    """Every module imported: numba's layer is the host's, and so is every environment variable (cuBLAS's workspace
    is set only when a run picks a CUDA device)."""
    code = ("import os, numba, pkgutil, importlib, latentrec\n"
            "before, env = numba.config.THREADING_LAYER, dict(os.environ)\n"
            "for m in pkgutil.walk_packages(latentrec.__path__, 'latentrec.'):\n"
            "    if '.serve' not in m.name and not m.name.endswith('__main__'):\n"
            "        importlib.import_module(m.name)\n"
            "print(before, numba.config.THREADING_LAYER, dict(os.environ) == env)")
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_THREADING_LAYER", "CUBLAS_WORKSPACE_CONFIG")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    before, after, same_env = done.stdout.split()
    assert after == before == "default" and same_env == "True"


@pytest.mark.parametrize("given, picked", [(None, "workqueue"), ("omp", "omp")])
def test_the_program_picks_workqueue_unless_told(given, picked):
    """The ``latentrec`` program (not the library) runs numba on workqueue, and a user's choice wins."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
    if given:
        env["NUMBA_THREADING_LAYER"] = given
    code = ("import os; from latentrec import cli; cli.main = lambda: 0; cli.entry(); "
            "print(os.environ['NUMBA_THREADING_LAYER'])")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == picked


@pytest.mark.parametrize("solver", ["bayes", "sgd"])
def test_fit_keeps_the_hosts_torch_thread_count(ml100k_dir, solver):
    """numba's omp layer sets OpenMP's thread count, torch's included, as it starts; the host's choice is put
    back (whoever starts the layer: a kernel, or asking numba for its thread count)."""
    code = ("import torch\ntorch.set_num_threads(1)\nfrom latentrec import fit, TrainConfig\n"
            f"fit({str(ml100k_dir / 'u.data')!r}, config=TrainConfig(solver={solver!r}, epochs=2, ranker='none'))\n"
            "import numba\nprint(numba.threading_layer(), torch.get_num_threads())")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == "1", done.stdout


def test_seeded_fits_in_threads_draw_what_they_draw_one_at_a_time():
    """fit seeds torch's global generator and draws the initial weights from it: under a lock, so fits in threads
    (autograd: no other draw from it) end as they do one after the other."""
    from concurrent.futures import ThreadPoolExecutor

    from conftest import lowrank_ratings

    from latentrec import TrainConfig, fit

    df, _ = lowrank_ratings(n_users=400, n_items=300, density=0.2)

    def rmse(seed: int) -> float:
        _, trainer = fit(df, config=TrainConfig(solver="autograd", seed=seed, epochs=1, ranker="none", device="cpu"))
        return round(trainer.history[-1]["valid_rmse"], 6)

    seeds = [1, 2, 3, 4] * 4
    alone = [rmse(s) for s in seeds[:4]] * 4
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(rmse, seeds)) == alone
    assert torch.equal(torch.rand(3), expected)  # the caller's generator, once the last fit has ended


def test_a_build_that_fits_does_not_wait_for_itself():
    """fit's seeding lock is re-entrant: a ``build`` may call fit (to warm-start, say)."""
    from conftest import lowrank_ratings

    from latentrec import DotProductBias, TrainConfig, fit

    df, _ = lowrank_ratings(n_users=100, n_items=80)
    cfg = TrainConfig(solver="sgd", epochs=1, ranker="none", device="cpu")

    def build(c, n_users, n_items, y_range):
        fit(df, config=cfg)
        return DotProductBias(n_users, n_items, c.n_factors, y_range)

    done = []
    worker = threading.Thread(target=lambda: done.append(fit(df, config=cfg, build=build)), daemon=True)
    worker.start()
    worker.join(120)  # a lock that waits for itself would hang here: fail instead
    assert done and done[0][0].model.n_users > 1


@pytest.mark.parametrize("host", [(False, False), (True, False), (True, True)])
def test_training_turns_deterministic_kernels_on_and_gives_back_the_hosts_setting(host):
    """Inside the block deterministic kernels warn rather than fail; after it the caller's two flags are back (set
    without torch.use_deterministic_algorithms' import of torch._inductor, which cost 1.7 s of a first epoch)."""
    import torch

    from latentrec.solvers.deterministic import deterministic

    before = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(host[0], warn_only=host[1])
    try:
        with deterministic():
            assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
        assert (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()) \
            == host
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
