"""The sgd kernel's speed on ML-100K u1 under each numba threading layer latentrec may meet.

    LATENTREC_DATA=../shared/data python benchmarks/threading_layer.py --repeats 5

latentrec no longer forces ``workqueue``; numba picks tbb > omp > workqueue by what is installed,
unless the host sets ``NUMBA_THREADING_LAYER``. Each run is a fresh process (the layer is chosen once
per process); the layers alternate so that the machine's load hits them alike. Printed per layer:
the median of ``fit``'s training seconds (60 epochs, compiled kernels already cached), and of a torch
matmul loop run right after training (does numba's pool slow torch down?).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

PROBE = """
import json, time, numba, torch
from latentrec import TrainConfig, fit, load_ratings
from latentrec.data.split import ml100k_split_files
train = load_ratings(ml100k_split_files("u1")[0])
cfg = TrainConfig(solver="sgd", epochs=60, valid_pct=0, seed=0, device="cpu")
fit(train, config=TrainConfig(solver="sgd", epochs=1, valid_pct=0, seed=0, device="cpu"))  # load the kernels
rec, trainer = fit(train, config=cfg)
x = torch.randn(1000, 1000)
t = time.perf_counter()
for _ in range(50):
    x @ x
print(json.dumps({"layer": numba.threading_layer(), "train_s": trainer.train_seconds,
                  "matmul_s": time.perf_counter() - t, "torch_threads": torch.get_num_threads()}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--layers", nargs="+", default=["default", "workqueue", "omp"])
    args = ap.parse_args()
    runs: dict[str, list[dict]] = {layer: [] for layer in args.layers}
    for _ in range(args.repeats):
        for layer in args.layers:
            env = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
            if layer != "default":
                env["NUMBA_THREADING_LAYER"] = layer
            out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
            runs[layer].append(json.loads(out.stdout.splitlines()[-1]))
    for layer, rows in runs.items():
        print(json.dumps({"asked": layer, "got": rows[0]["layer"],
                          "train_s_median": round(statistics.median(r["train_s"] for r in rows), 3),
                          "matmul_s_median": round(statistics.median(r["matmul_s"] for r in rows), 3),
                          "torch_threads_after": rows[0]["torch_threads"]}))


if __name__ == "__main__":
    main()
