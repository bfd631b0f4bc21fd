"""EASE's fit: seconds and peak memory, in items x items float32 matrices (what ``ease_memory`` budgets three of).

Random ratings (3,000 users, 300,000 ratings) over ITEMS items; the peak is the process's maximum resident size
gained during the fit. Before the Gram matrix was summed in place and the inverse taken by ``cholesky_inverse``,
8,000 items peaked at 5.1 matrices in 21.6 s; after, 2.1 in 10.1 s (2-core CPU, torch 2.13).

    python benchmarks/ease_memory.py [ITEMS]      # default 8000; one size a process (the peak is the process's)
"""

from __future__ import annotations

import resource
import sys
import time

import torch

from latentrec.models.ease import EASE


def main() -> None:
    args = sys.argv[1:]
    if len(args) > 1 or not all(a.isdigit() for a in args):
        sys.exit(__doc__)
    n = int(args[0]) if args else 8000
    torch.manual_seed(0)
    users, items = torch.randint(0, 3000, (300_000,)), torch.randint(1, n + 1, (300_000,))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    EASE(n + 1).fit(users, items, torch.ones(300_000), 3000)
    seconds = time.perf_counter() - t0
    gained = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024  # ru_maxrss is in KiB
    print(f"{n:,} items: fit {seconds:.2f} s, peak {gained / (4 * (n + 1) ** 2):.2f} items x items matrices")


if __name__ == "__main__":
    main()
