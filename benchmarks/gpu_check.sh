#!/usr/bin/env bash
# One call on a GPU machine: CUDA paths, mixed precision, throughput, training. Prints everything; ~5-7 minutes.
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
echo "== training: sphere20 at batch 256 with mixed precision, 300 steps each of classify (bf16) and distill (fp16)"
WORK=$(mktemp -d)
timeout 180 "$PY" -m lrbench synth "$WORK/data" --folds 2 --pairs-per-fold 4 --people-per-fold 3 \
  --images-per-person 3 --train-identities 200 --train-images-per-identity 8 >/dev/null
TRAIN=(--data "$WORK/data/casia/images" --device cuda --batch-size 256 --steps 300 --log-every 100
       --checkpoint-every 150 --cache-dir "$WORK/cache")
timeout 300 "$PY" -m lrbench train classify "${TRAIN[@]}" --out "$WORK/hr" --precision bf16 --workers 4 \
  --val lfw-view2 --val-data "$WORK/data/lfw" --val-every 150
timeout 300 "$PY" -m lrbench train distill "${TRAIN[@]}" --out "$WORK/lr8" --precision fp16 \
  --teacher sphereface --teacher-weights "$WORK/hr/model.pt" --df 8
for run in hr lr8; do
  "$PY" -c "import json, sys; s = json.load(open(sys.argv[1])); print(sys.argv[2], s['precision'], \
s['images_per_s'], 'images/s', 'teacher cache:', s.get('teacher_cache'))" "$WORK/$run/summary.json" "$run"
done
rm -rf "$WORK"
