#!/usr/bin/env bash
# One check of memkd on a GPU, printed as one table (and written to $OUT/gpu_check.md, or --out FILE):
#   1. pytest -m cuda; 2. batched ensemble vs per-seed loop at smoke, quick and paper shapes;
#   3. chapter 02 at profile=paper under papermill (wall time, peak GPU memory); 4. TF32 vs fp32.
# Fits in 8 minutes on one H200-class GPU (--budget 450 s for the steps, plus start-up).
#   benchmarks/gpu_check.sh            # on a machine with a CUDA GPU
#   benchmarks/gpu_check.sh --dry      # the same steps on the CPU at tiny sizes (the tests run this)
# Other options: --out FILE, --budget SECONDS, --steps 1,2,3,4. Details: benchmarks/gpu_check.py.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON="$(command -v python3 || command -v python)"
exec "$PYTHON" benchmarks/gpu_check.py "$@"
