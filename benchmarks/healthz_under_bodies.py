"""/healthz latency while a client sends 0.9 MB /api/predict bodies (55,000 pairs, the last one invalid, so the
model is never called): what checking the body costs the event loop. Serves MODEL_DIR (default /tmp/qs/model,
from ``latentrec train``) with the latentrec found under SRC on PORT.

    python benchmarks/healthz_under_bodies.py SRC PORT [MODEL_DIR]
"""
import json, subprocess, sys, time, threading, urllib.request, os, statistics
src, port = sys.argv[1], int(sys.argv[2])
model = sys.argv[3] if len(sys.argv) > 3 else "/tmp/qs/model"
env = dict(os.environ, PYTHONPATH=src, OMP_WAIT_POLICY="PASSIVE")
p = subprocess.Popen([sys.executable, "-m", "latentrec", "serve", model, "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
base = f"http://127.0.0.1:{port}"
for _ in range(200):
    try:
        urllib.request.urlopen(base + "/readyz", timeout=1); break
    except Exception: time.sleep(0.1)
pairs = [["196", "242"]] * 55000 + [["196", None]]
body = json.dumps({"pairs": pairs}).encode()
stop = False
def load():
    while not stop:
        req = urllib.request.Request(base + "/api/predict", data=body, headers={"Content-Type": "application/json"})
        try: urllib.request.urlopen(req, timeout=10)
        except Exception: pass
t = threading.Thread(target=load); t.start()
lat = []
t_end = time.time() + 6
while time.time() < t_end:
    t0 = time.perf_counter(); urllib.request.urlopen(base + "/healthz", timeout=5).read(); lat.append((time.perf_counter() - t0) * 1000)
    time.sleep(0.02)
stop = True; t.join(); p.terminate(); p.wait()
lat.sort()
print(f"{src}: healthz n={len(lat)} p50 {statistics.median(lat):.1f} ms p90 {lat[int(0.9*len(lat))]:.1f} ms max {lat[-1]:.1f} ms; body {len(body)/1e6:.2f} MB")
