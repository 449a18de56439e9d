#!/usr/bin/env bash
# The GPU checks, on a machine with CUDA (from the repository root):
#
#   bench/gpu.sh [DATASET_DIR]        # default ../shared/data/DB15K
#
# Times one DB15K training epoch and the test ranking on the GPU (bench/gpu.py, checking the
# ranks against the CPU's), writes results/bench_gpu_DB15K.json, then runs the suite's
# CUDA-marked tests (tests/test_cuda.py), which CPU machines skip.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -e .venv/.installed ] || make --quiet install
data=${1:-../shared/data/DB15K}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
.venv/bin/python -m bench.gpu --dataset-dir "$data" --out "results/bench_gpu_$(basename "$data").json"
.venv/bin/python -m pytest -q -m cuda tests/test_cuda.py
