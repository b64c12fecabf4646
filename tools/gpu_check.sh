#!/usr/bin/env bash
# The checks that need a GPU, as one script for a lent device machine: the tests marked gpu, then the GPU forward
# benchmark (benchmarks/bench_forward_gpu.py). Results go to $OUT (the device's return folder) or ./gpu-results.
# On the device the plain python3 holds PyTorch and nothing can be installed from the network: run
# tools/gpu_wheels.sh here first and carry .whl; this script installs it to /tmp/site when it is there.
# Usage: bash tools/gpu_check.sh [bench_forward_gpu options, e.g. --quick]
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-results}
mkdir -p "$out"
python=${PYTHON:-python3}
if [ -d .whl ]; then
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl ||
    exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
status=0
"$python" -m pytest -m gpu -q -p no:cacheprovider tests/test_contract.py tests/test_decompose.py \
  tests/test_fast_forward.py tests/test_session.py 2>&1 | tee "$out/pytest_gpu.txt" || status=1
"$python" -m benchmarks.bench_forward_gpu "$@" --json "$out/forward_gpu.json" 2>&1 | tee "$out/forward_gpu.txt" || status=1
exit $status
