"""/healthz latency while a client sends 0.9 MB /api/predict bodies (55,000 pairs, the last one invalid, so the
model is never called): what checking request bodies costs the event loop.

Serves MODEL_DIR with the latentrec found under SRC (a checkout's ``src``; another commit's through
``git worktree``) on 127.0.0.1:PORT, polls /healthz every 20 ms for 6 s beside the body sender, and prints the
latencies.

    latentrec train --data ml-100k --out /tmp/model
    python benchmarks/healthz_under_bodies.py src 18142 /tmp/model
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request


def wait_ready(base: str) -> None:
    for _ in range(300):
        try:
            urllib.request.urlopen(base + "/readyz", timeout=1)
            return
        except OSError:
            time.sleep(0.1)
    sys.exit("the server did not become ready")


def main() -> None:
    if len(sys.argv) != 4 or not sys.argv[2].isdigit():
        sys.exit(__doc__)
    src, port, model = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    env = dict(os.environ, PYTHONPATH=src, OMP_WAIT_POLICY="PASSIVE")
    server = subprocess.Popen([sys.executable, "-m", "latentrec", "serve", model, "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base)
        body = json.dumps({"pairs": [["196", "242"]] * 55_000 + [["196", None]]}).encode()
        done = threading.Event()

        def send() -> None:
            while not done.is_set():
                request = urllib.request.Request(base + "/api/predict", data=body,
                                                 headers={"Content-Type": "application/json"})
                try:
                    urllib.request.urlopen(request, timeout=10)
                except OSError:  # the 422 the invalid pair gets
                    pass

        sender = threading.Thread(target=send)
        sender.start()
        ms, end = [], time.time() + 6
        while time.time() < end:
            t0 = time.perf_counter()
            urllib.request.urlopen(base + "/healthz", timeout=5).read()
            ms.append((time.perf_counter() - t0) * 1000)
            time.sleep(0.02)
        done.set()
        sender.join()
    finally:
        server.terminate()
        server.wait()
    ms.sort()
    print(f"{src}: /healthz n={len(ms)} p50 {statistics.median(ms):.1f} ms, p90 {ms[int(0.9 * len(ms))]:.1f} ms, "
          f"max {ms[-1]:.1f} ms; body {len(body) / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
