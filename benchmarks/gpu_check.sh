#!/usr/bin/env bash
# One call on a GPU machine: CUDA paths, mixed precision, throughput. Prints everything; ~3-5 minutes.
#   bash benchmarks/gpu_check.sh            (from the repository root, with .venv set up or pip available)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || { python3 -m venv .venv && .venv/bin/pip install -q -e '.[dev]'; PY=.venv/bin/python; }
echo "== device"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
echo "== tests that touch devices"
timeout 120 "$PY" -m pytest -q tests/test_device.py tests/test_registry.py
for precision in fp32 bf16; do
  echo "== speed: sphere20, batch 256, $precision"
  timeout 150 "$PY" benchmarks/bench_speed.py --folds 1 --device cuda --batch-size 256 --precision "$precision"
done
