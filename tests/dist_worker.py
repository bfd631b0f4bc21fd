"""Run by tests/test_distributed.py under torchrun (and once alone): train, then save this rank's weights."""

import json
import sys
from pathlib import Path

import numpy as np

from latentrec.config import TrainConfig
from latentrec.data.ratings import load_ratings
from latentrec.solvers.distributed import world
from latentrec.training.fit import fit


def main(train_csv: str, valid_csv: str, out: str, solver: str) -> None:
    sgd = solver == "sgd"
    cfg = TrainConfig(solver=solver, n_factors=8, epochs=25, lr=0.02 if sgd else 0.01, wd=0.02 if sgd else 1e-4,
                      wd_mode="l2", bs=256, schedule="cosine", opt="adam", seed=0, device="cpu")
    rec, trainer = fit(load_ratings(train_csv), load_ratings(valid_csv), cfg)
    rank, size = world()
    weights = {k: v.detach().numpy() for k, v in rec.model.state_dict().items()}
    np.savez(Path(out) / f"rank{rank}-of-{size}.npz", **weights)
    (Path(out) / f"rank{rank}-of-{size}.json").write_text(json.dumps(rec.info["metrics"]))


if __name__ == "__main__":
    main(*sys.argv[1:])
