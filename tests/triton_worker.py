"""Run by tests/test_sgd_triton.py with TRITON_INTERPRET=1 (Triton reads it once, at import): the Triton
SGD kernel under its interpreter on the CPU, against the CPU kernel. Prints one JSON object."""

import json
import sys

import numpy as np
import torch

from latentrec.config import TrainConfig
from latentrec.data.batches import Encoded
from latentrec.models.dot import DotProductBias
from latentrec.models.scoring import predict_rows, rmse_mae
from latentrec.solvers import sgd_triton
from latentrec.solvers.runners import KernelRunner, sgd_runner
from latentrec.solvers.sgd_kernel import _sgd_block

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
from conftest import lowrank_ratings  # noqa: E402

CPU = torch.device("cpu")


def planted(n_users=30, n_items=20, seed=0):
    df, _ = lowrank_ratings(n_users=n_users, n_items=n_items, density=0.5, seed=seed)
    users = df.user.str[1:].astype(np.int32).to_numpy() + 1
    items = df.item.str[1:].astype(np.int32).to_numpy() + 1
    return Encoded(users, items, df.rating.to_numpy(np.float32)), n_users + 1, n_items + 1


def one_epoch(y_range, bias: bool) -> dict:
    """The largest differences between one Triton epoch (7 programs) and the sequential kernel over the same order."""
    data, nu, ni = planted()
    torch.manual_seed(0)
    model = DotProductBias(nu, ni, 5, y_range, bias=bias)
    tables = [t.detach().numpy().copy() for t in (model.user_factors, model.item_factors, model.user_bias,
                                                  model.item_bias)]
    start = tables[0].copy()
    lo, hi = y_range or (0.0, 1.0)
    sq = _sgd_block(data.users, data.items, data.ratings, 0, len(data), *tables, np.float32(0.05), np.float32(0.02),
                    np.float32(lo), np.float32(hi - lo), y_range is not None, bias)
    t = lambda a: torch.from_numpy(a.copy())  # noqa: E731
    total = sgd_triton.sgd_epoch(model, t(data.users), t(data.items), t(data.ratings), 0.05, 0.02, n_programs=7)
    mine = [model.user_factors, model.item_factors, model.user_bias, model.item_bias]
    return {"sq_rel": abs(float(total) - sq) / sq,
            "weights": max(float(np.abs(m.detach().numpy() - w).max()) for m, w in zip(mine, tables)),
            "moved": float(np.abs(model.user_factors.detach().numpy() - start).max())}


def curves() -> dict:
    """Validation RMSE per epoch: the CPU kernel's, the Triton runner's; and the validation ratings' spread."""
    data, nu, ni = planted(60, 40, seed=1)
    perm = np.random.default_rng(0).permutation(len(data))
    cut = int(0.85 * len(data))
    train, valid = (data.take(s) for s in (perm[:cut], perm[cut:]))
    cfg = TrainConfig(solver="sgd", n_factors=8, epochs=4, lr=0.05, wd=0.01, seed=0, device="cpu").resolved()
    out = []
    for runner_cls in (KernelRunner, sgd_triton.TritonSGDRunner):
        torch.manual_seed(0)
        model = DotProductBias(nu, ni, 8, (0.5, 5.5))
        runner = runner_cls(model, Encoded(train.users.copy(), train.items.copy(), train.ratings.copy()), cfg, CPU)
        curve = []
        for _ in range(cfg.epochs):
            runner.epoch(lambda frac: cfg.lr)
            curve.append(rmse_mae(predict_rows(model, valid, CPU), valid.ratings)[0])
        out.append(curve)
    return {"kernel": out[0], "triton": out[1], "std": float(np.std(valid.ratings))}


def bench_row() -> dict:
    """``latentrec bench``'s sgd-triton row (what gpu_check.py measures on CUDA), here interpreted."""
    from latentrec.evaluation.bench import Setup, run_setup

    data, nu, ni = planted()
    row = run_setup(Setup("cpu", "sgd-triton", 1), data, data, nu, ni, (0.5, 5.5), 8, 2)
    return {**{k: row[k] for k in ("batch", "ratings_per_s", "best_valid_rmse")}, "shape": [len(data), nu, ni]}


if __name__ == "__main__":
    data, nu, ni = planted()
    cfg = TrainConfig(solver="sgd", n_factors=4, seed=0, device="cpu").resolved()
    gpu_path = sgd_runner(DotProductBias(nu, ni, 4, (0.5, 5.5)), data, cfg, CPU, batched=True)
    print(json.dumps({
        "epochs": {f"{y is not None}-{b}": one_epoch(y, b) for y in (None, (0.5, 5.5)) for b in (True, False)},
        "curves": curves(),
        "gpu_path": type(gpu_path).__name__,
        "bench": bench_row(),
    }))
