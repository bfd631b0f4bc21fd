"""Reading one big file on N torchrun ranks, each parsing its part, against one process reading it all.

    python benchmarks/shared_read.py                                  # 10M ratings, CSV and Parquet, 1 and 2 ranks
    python benchmarks/shared_read.py --ratings 30000000 --procs 1 2 4 --dir /big
    python benchmarks/shared_read.py --one-core      # each process on a core of its own: ranks as separate machines

Writes the file once with ``latentrec synth`` (200k users x 50k items) into ``--dir``, then times
``read_split`` (parse, agree, join, split 10% out, encode) on each rank and prints, per format
and rank count: the slowest rank's seconds, the rows it parsed itself, and its peak resident
memory. Ratios are against the 1-process row of the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

CHILD = """
import json, os, resource, sys, time
if os.environ.get("ONE_CORE"):  # this rank alone on core RANK: a stand-in for a machine of its own
    os.sched_setaffinity(0, {int(os.environ.get("RANK", 0)) % os.cpu_count()})
    import numba, pyarrow
    pyarrow.set_cpu_count(1)
    pyarrow.set_io_thread_count(1)
    numba.set_num_threads(1)
from latentrec.data import lean
from latentrec.solvers import distributed
parsed, parse = [], lean._read
lean._read = lambda *a: parsed.append(len((c := parse(*a))[0])) or c
share = None
if distributed.active():
    import torch
    distributed.init(torch.device("cpu"))
    share = distributed.file_share()
t = time.perf_counter()
split = lean.read_split(sys.argv[1], valid_pct=0.1, seed=42, min_bytes=0, share=share)
seconds = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print("RESULT " + json.dumps({"rank": distributed.world()[0], "seconds": seconds, "parsed": sum(parsed),
                              "rows": len(split.train) + len(split.valid.data), "peak_mb": peak}))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(path: Path, procs: int, one_core: bool) -> list[dict]:
    """Every rank's result line."""
    if procs > 1:
        script = path.parent / "shared_read_child.py"
        script.write_text(CHILD)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(procs), "--master-addr",
               "127.0.0.1", "--master-port", str(free_port()), str(script), str(path)]
    else:
        cmd = [sys.executable, "-c", CHILD, str(path)]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    if one_core:
        env |= {"ONE_CORE": "1", "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    rows = [json.loads(ln[7:]) for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    if done.returncode != 0 or len(rows) != procs:
        raise SystemExit(f"{procs} process(es) on {path} failed: {done.stderr.strip()[-2000:]}")
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ratings", type=int, default=10_000_000)
    p.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    p.add_argument("--formats", nargs="+", default=["csv", "parquet"], choices=["csv", "parquet"])
    p.add_argument("--dir", default="/tmp", help="where the files are written once (default /tmp)")
    p.add_argument("--one-core", action="store_true",
                   help="pin each process to one core of its own (core = rank): ranks as separate one-core machines")
    args = p.parse_args()
    print(f"{'file':<24} {'ranks':>5} {'seconds':>8} {'x 1 proc':>8} {'parsed by one rank':>19} {'peak MB':>8}")
    for fmt in args.formats:
        path = Path(args.dir) / f"shared_read_{args.ratings}.{fmt}"
        if not path.exists():
            subprocess.run([sys.executable, "-m", "latentrec", "synth", "--ratings", str(args.ratings), "--users",
                            "200000", "--items", "50000", "--out", str(path), "--json"], check=True,
                           stdout=subprocess.DEVNULL)
        reference = None
        for procs in args.procs:
            rows = measure(path, procs, args.one_core)
            slowest = max(r["seconds"] for r in rows)
            reference = reference or (slowest if procs == 1 else None)
            ratio = f"{reference / slowest:8.2f}" if reference else f"{'-':>8}"
            print(f"{path.name:<24} {procs:>5} {slowest:8.2f} {ratio} {max(r['parsed'] for r in rows):>19,} "
                  f"{max(r['peak_mb'] for r in rows):8.0f}")


if __name__ == "__main__":
    main()
