#!/usr/bin/env bash
# Issue #13 on a GPU machine: the CUDA tests, then the CPU-vs-CUDA figures as one table
# (benchmarks/gpu_check.py). About 4-6 minutes on one GPU; installs nothing, reads no network.
#
#   bash benchmarks/gpu_check.sh          # needs CUDA; prints "no CUDA" and exits 0 without one
#   bash benchmarks/gpu_check.sh --tiny   # small sizes; on a CPU-only machine runs the figures on the CPU
#
# ML-100K is read through LATENTREC_DATA when present (planted ratings of its shape stand in otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."
tiny=""
[[ "${1:-}" == "--tiny" ]] && tiny="--tiny"
if ! python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "no CUDA: the CUDA tests and figures need a GPU."
    if [[ -z "$tiny" ]]; then
        exit 0
    fi
    echo "--tiny: running the figures on the CPU alone, as a smoke run."
    exec timeout 300 python benchmarks/gpu_check.py --tiny
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
echo "== CUDA tests (pytest -k cuda) =="
timeout 150 python -m pytest -q -p no:cacheprovider -k cuda tests/ || echo "CUDA TESTS FAILED (status $?)"
echo "== figures =="
timeout 240 python benchmarks/gpu_check.py $tiny
