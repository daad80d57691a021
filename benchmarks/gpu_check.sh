#!/usr/bin/env bash
# One call on a GPU machine: CUDA paths, mixed precision, throughput, training. Prints everything; ~4 minutes.
#   bash benchmarks/gpu_check.sh [tests] [speed] [train]     (default: all three; from anywhere)
# Uses .venv, else a python3 that already has the stack (installing lrbench alone, offline), else builds .venv.
# Optional real data, for machines that cannot see ../shared:
#   LFW=DIR    an LFW-format folder of at least 2 folds: `python benchmarks/lfw_subset.py ../shared/data/lfw DIR --folds 2`
#   DLIB=FILE  dlib's dlib_face_recognition_resnet_model_v1.dat: speed and distillation of the real network
set -uo pipefail
cd "$(dirname "$0")/.."
SECTIONS=" ${*:-tests speed train} "
if [ -z "${PY:-}" ]; then
  if [ -x .venv/bin/python ]; then
    PY=.venv/bin/python
  elif python3 -c "import torch, pluggy, click, sklearn, pandas, matplotlib, rich" 2>/dev/null; then
    PY=python3
    if ! python3 -m pip install -q --no-deps --no-build-isolation --no-index -e .; then
      LINKS=$(mktemp -d)  # pip could not build offline: expose the three packages under their import names
      ln -s "$PWD/lrbench" "$LINKS/lrbench"; ln -s "$PWD/plugins" "$LINKS/lrbench_plugins"
      ln -s "$PWD/protocols" "$LINKS/lrbench_protocols"; export PYTHONPATH="$LINKS${PYTHONPATH:+:$PYTHONPATH}"
    fi
  else
    python3 -m venv .venv && .venv/bin/pip install -q -e '.[dev]' || exit 1
    PY=.venv/bin/python
  fi
fi
DATA=()
[ -n "${LFW:-}" ] && DATA=(--data "$LFW")

echo "== device"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"

if [[ $SECTIONS == *" tests "* ]]; then
  echo "== tests that touch devices"
  timeout 150 "$PY" -m pytest -q -p no:cacheprovider tests/test_device.py tests/test_registry.py tests/test_batching.py tests/test_mtcnn.py
fi

if [[ $SECTIONS == *" speed "* ]]; then
  for precision in fp32 bf16; do
    echo "== speed: sphere20, batch 256, $precision"
    timeout 100 "$PY" benchmarks/bench_speed.py --folds 2 "${DATA[@]}" --device cuda --batch-size 256 \
      --precision "$precision"
  done
  echo "== speed: sphere20, --batch-size auto (the climb should reach 512-1024 faces on a GPU), bf16"
  timeout 100 "$PY" benchmarks/bench_speed.py --folds 2 "${DATA[@]}" --device cuda --batch-size auto \
    --precision bf16 --bare-batches 128,256,512,1024
  if [ -n "${DLIB:-}" ]; then
    echo "== speed: dlib-resnet, batch 256, bf16"
    timeout 100 "$PY" benchmarks/bench_speed.py --folds 2 "${DATA[@]}" --backbone dlib-resnet --weights "$DLIB" \
      --device cuda --batch-size 256 --precision bf16
  fi
fi

if [[ $SECTIONS == *" train "* ]]; then
  echo "== training: sphere20 at batch 256: classify (bf16; fp16 with loss scaling), distill at DF 8 (bf16 with"
  echo "   and without the teacher-feature cache; fp16)"
  WORK=$(mktemp -d)
  timeout 120 "$PY" -m lrbench synth "$WORK/data" --folds 2 --pairs-per-fold 4 --people-per-fold 3 \
    --images-per-person 3 --train-identities 200 --train-images-per-identity 8 >/dev/null
  TRAIN=(--device cuda --batch-size 256 --steps 300 --log-every 100 --checkpoint-every 150 --cache-dir "$WORK/cache")
  SYNTH=(--data "$WORK/data/casia/images")
  timeout 90 "$PY" -m lrbench train classify "${TRAIN[@]}" "${SYNTH[@]}" --out "$WORK/hr" --precision bf16 \
    --workers 4 --val lfw-view2 --val-data "$WORK/data/lfw" --val-every 150
  timeout 90 "$PY" -m lrbench train classify "${TRAIN[@]}" "${SYNTH[@]}" --out "$WORK/hr16" --precision fp16
  for run in lr8:hr:bf16:--teacher-cache lr8-uncached:hr:bf16:--no-teacher-cache lr8-fp16:hr16:fp16:--teacher-cache
  do
    IFS=: read -r out teacher precision cache <<<"$run"
    timeout 90 "$PY" -m lrbench train distill "${TRAIN[@]}" "${SYNTH[@]}" --out "$WORK/$out" --precision "$precision" \
      --teacher sphereface --teacher-weights "$WORK/$teacher/model.pt" --df 8 "$cache"
  done
  RUNS=(hr hr16 lr8 lr8-uncached lr8-fp16)
  if [ -n "${DLIB:-}" ] && [ -n "${LFW:-}" ]; then
    echo "== training: dlib-resnet distilled at DF 12 on the real faces in LFW, bf16, 200 steps at batch 256"
    timeout 90 "$PY" -m lrbench train distill "${TRAIN[@]}" --steps 200 --data "$LFW" \
      --landmarks "$LFW/landmarks.txt" --out "$WORK/dlib12" --precision bf16 --teacher dlib-resnet \
      --teacher-weights "$DLIB" --df 12
    RUNS+=(dlib12)
  fi
  for run in "${RUNS[@]}"; do
    [ -f "$WORK/$run/summary.json" ] || { echo "$run: no summary (failed above)"; continue; }
    "$PY" -c "import json, sys; s = json.load(open(sys.argv[1])); print(sys.argv[2], s['precision'], \
s['images_per_s'], 'images/s', 'loss', f\"{s['loss_first']:.4g} -> {s['loss_last']:.4g}\", \
'teacher cache:', s.get('teacher_cache'))" "$WORK/$run/summary.json" "$run"
  done
  rm -rf "$WORK"
fi
