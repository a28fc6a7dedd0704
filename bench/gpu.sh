#!/usr/bin/env bash
# Everything that needs a GPU, in one command of at most 8 minutes (issue 11; see bench/gpu.py).
#   bench/gpu.sh                  # on the GPU machine: results in bench/results/gpu-cuda.{json,md}
#   bench/gpu.sh --out "$OUT"     # results elsewhere
#   DRY=1 bench/gpu.sh            # the same script on the CPU, tiny (tests/test_bench_gpu.py runs it)
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec timeout 480 "${PYTHON:-python}" -m bench.gpu "$@"
