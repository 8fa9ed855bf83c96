#!/usr/bin/env bash
# The GPU half of the benchmark suite and the CUDA tests, as one command for a lent GPU machine
# (CUDA PyTorch already installed there; no network). Writes everything under $OUT (default
# benchmarks/results/gpu-<date>/).
#
# The machine's image lacks pydantic. Fetch its wheels here first (x86_64, the machine's
# Python 3.12), into the git-ignored .whl/:
#     bash benchmarks/gpu_check.sh --fetch-wheels
# then run this script there with .whl carried along, e.g. with the device tool:
#     run(command="bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=600)
# About 8-10 minutes on an H200: the GPU tests, then `bench.py --suite gpu` (plain vs fast with
# bf16), then the fast path in fp32 and with torch.compile on the paper search configs.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=(pydantic==2.14.3 pydantic_core==2.50.4 annotated-types==0.8.0 typing-inspection==0.4.5
        typing_extensions==4.16.0)
if [ "${1:-}" = "--fetch-wheels" ]; then
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .whl "${WHEELS[@]}"
    ls .whl
    exit 0
fi
export PYTHONUNBUFFERED=1
OUT=${OUT:-benchmarks/results/gpu-$(date +%Y-%m-%d)}
mkdir -p "$OUT"
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/nasflow-site .whl/*.whl
    export PYTHONPATH=/tmp/nasflow-site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name(0))' | tee -a "$OUT/gpu.txt"
# CUDA tests first (seconds): the loader, and the fast paths against the plain path on the GPU
python3 -m pytest -q -p no:cacheprovider -m gpu tests 2>&1 | tee "$OUT/gpu-tests.log" || true
python3 benchmarks/bench.py --suite gpu --out "$OUT/gpu-suite.json" 2>&1 | tee "$OUT/bench.log"
python3 benchmarks/bench.py --suite gpu --only search --fast amp=off --out "$OUT/gpu-search-fp32.json" \
    2>&1 | tee -a "$OUT/bench.log"
timeout 240 python3 benchmarks/bench.py --suite gpu --only '"order": 1' --fast compile=true \
    --out "$OUT/gpu-darts1-compile.json" 2>&1 | tee -a "$OUT/bench.log" || true
