"""Run by tests/test_distributed.py under torchrun (and once alone).

    dist_worker.py TRAIN VALID OUT SOLVER [SEED]   train (SEED "none": a random run), then save this rank's
                                              weights to OUT/rank{R}-of-{N}.npz
    dist_worker.py cli EPOCH ARGS...          ``latentrec ARGS``, stopped as by Ctrl-C after EPOCH (0: never);
                                              the rank FAST_CLOCK_RANK names finds a checkpoint due every epoch
    dist_worker.py join OUT                   ``distributed.join`` of parts of unequal lengths and dtypes
    dist_worker.py diverge OUT                one data-parallel epoch in which only rank 1's shard diverges, for
                                              sgd then autograd; each rank writes what it raised to
                                              OUT/diverge{R}-{SOLVER}.txt

With ``LEAN_BYTES`` set, files of that many bytes or more are read lean, and each rank says on
stderr how many rows it parsed itself ("rank R parsed N rows").
"""

import json
import os
import sys
from pathlib import Path

import numpy as np

from latentrec.config import TrainConfig
from latentrec.data.ratings import load_ratings
from latentrec.solvers.distributed import world
from latentrec.training.fit import fit


def main(train_csv: str, valid_csv: str, out: str, solver: str, seed: str = "0") -> None:
    sgd = solver == "sgd"
    cfg = TrainConfig(solver=solver, n_factors=8, epochs=25, lr=0.02 if sgd else 0.04, wd=0.02 if sgd else 1e-4,
                      wd_mode="l2", bs=256 if sgd else 1024, schedule="cosine", opt="adam", seed=None if seed == "none" else int(seed),
                      device="cpu")
    rec, _ = fit(load_ratings(train_csv), load_ratings(valid_csv), cfg)
    rank, size = world()
    weights = {k: v.detach().numpy() for k, v in rec.model.state_dict().items()}
    np.savez(Path(out) / f"rank{rank}-of-{size}.npz", **weights)
    check = rec.info.get("ranker_check", {})  # auto may have fitted EASE, then kept another order
    ranker = rec.ranker.kind if rec.ranker is not None else check.get("ranker")
    (Path(out) / f"rank{rank}-of-{size}.json").write_text(json.dumps({**rec.info["metrics"], "ranker": ranker,
                                                                      "seed": rec.config["seed"]}))


def cli(stop: str, *argv: str) -> int:
    """The CLI, interrupted (KeyboardInterrupt, as Ctrl-C raises) when epoch ``stop`` ends; exit 0 when it says so."""
    from latentrec.cli import main as latentrec
    from latentrec.cli.train import EpochTable
    from latentrec.data import lean

    if "LEAN_BYTES" in os.environ:
        lean.LEAN_BYTES, parse = int(os.environ["LEAN_BYTES"]), lean._read

        def parse_and_say(*a):
            columns = parse(*a)
            print(f"rank {world()[0]} parsed {len(columns[0])} rows", file=sys.stderr)
            return columns

        lean._read = parse_and_say

    if os.environ.get("FAST_CLOCK_RANK") == str(world()[0]):  # this rank's clock says a save is due at every epoch end
        import itertools
        import types

        from latentrec.training import checkpoint

        ticks = itertools.count()
        checkpoint.time = types.SimpleNamespace(monotonic=lambda: 1e6 * next(ticks))

    shown = EpochTable.on_epoch_end

    def on_epoch_end(self, trainer, record):
        shown(self, trainer, record)
        if record["epoch"] == int(stop):
            raise KeyboardInterrupt

    EpochTable.on_epoch_end = on_epoch_end
    code = latentrec(list(argv))
    return 0 if code == 130 and int(stop) else code


def join(out: str) -> None:
    """Rank r offers ``r * 3`` values (rank 0: none) of each dtype; saves what every rank got."""
    import torch

    from latentrec.solvers import distributed

    distributed.init(torch.device("cpu"))
    rank = world()[0]
    got = {}
    for dtype in (np.uint8, np.int32, np.int64, np.float32):
        values = (np.arange(rank * 3) + 10 * rank).astype(dtype)
        joined, sizes = distributed.join(values[::-1].copy() if dtype == np.int64 else values)
        got[np.dtype(dtype).name] = joined
        got[np.dtype(dtype).name + "_sizes"] = np.array(sizes)
    got["empty"] = distributed.join(np.zeros(0, np.float32))[0]
    got["readonly"] = distributed.join(np.frombuffer(b"ab", np.uint8))[0]
    np.savez(Path(out) / f"join{rank}.npz", **got)


def diverge(out: str) -> None:
    """Rank 1 trains on ratings of 1e30 (its loss overflows); rank 0 on sane ones: with the SGD kernel, then with
    autograd, in one process group. Every rank must learn of the divergence together, or the healthy rank would
    wait forever in a collective (and the second solver's collectives would not line up)."""
    import torch

    from latentrec.data.batches import Encoded
    from latentrec.models.dot import DotProductBias
    from latentrec.solvers.distributed import data_parallel
    from latentrec.solvers.diverged import Diverged
    from latentrec.solvers.runners import RUNNERS

    rank, _ = world()
    rng = np.random.default_rng(0)
    n = 4000
    data = Encoded(rng.integers(0, 50, n).astype(np.int32), rng.integers(0, 40, n).astype(np.int32),
                   rng.uniform(1, 5, n).astype(np.float32))
    for solver in ("sgd", "autograd"):
        cfg = TrainConfig(solver=solver, n_factors=4, epochs=2, lr=0.01, wd=0.0, wd_mode="l2", bs=64, opt="sgd",
                          seed=0, device="cpu")
        torch.manual_seed(0)
        model = DotProductBias(50, 40, 4)

        def poisoned(model, part, cfg, device, solver=solver):
            if rank == 1:
                part = Encoded(part.users, part.items, np.full(len(part), 1e30, np.float32))
            return RUNNERS[solver](model, part, cfg, device)

        runner = data_parallel(poisoned, model, data, cfg, torch.device("cpu"))
        runner.limit = 100.0
        try:
            runner.epoch(lambda frac, lr=cfg.lr: lr)
            said = "finished"
        except Diverged as why:
            said = f"diverged: {why}"
        (Path(out) / f"diverge{rank}-{solver}.txt").write_text(said)


if __name__ == "__main__":
    if sys.argv[1] == "cli":
        sys.exit(cli(*sys.argv[2:]))
    if sys.argv[1] == "diverge":
        sys.exit(diverge(sys.argv[2]))
    if sys.argv[1] == "join":
        sys.exit(join(sys.argv[2]))
    main(*sys.argv[1:])
