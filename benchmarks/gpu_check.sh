#!/usr/bin/env bash
# One call on a GPU machine: CUDA paths, mixed precision, throughput, training. Prints everything; ~4 minutes.
#   bash benchmarks/gpu_check.sh [tests] [speed] [train] [crossval]   (default: the first three; from anywhere)
# Uses .venv, else a python3 that already has the stack (installing lrbench alone, offline), else builds .venv.
# Optional real data, for machines that cannot see ../shared:
#   LFW=DIR    an LFW-format folder of at least 2 folds: `python benchmarks/lfw_subset.py ../shared/data/lfw DIR --folds 2`
#   DLIB=FILE  dlib's dlib_face_recognition_resnet_model_v1.dat: speed and distillation of the real network
#   CROPS=DIR  for crossval: `python benchmarks/pack_lfw_crops.py ../shared/data/lfw DIR` (all of LFW, aligned)
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

if [[ $SECTIONS == *" crossval "* ]]; then
  # Ten-fold cross-validation of dlib-resnet students, and the DF 1-13 sweep times of `lrbench run` on all 6000
  # pairs. Only when asked: `CROPS=runs/lfw-dlib150 DLIB=runs/dlib.dat bash benchmarks/gpu_check.sh crossval`.
  #   CROPS      folder made by `python benchmarks/pack_lfw_crops.py ../shared/data/lfw CROPS` (carry it)
  #   DLIB       dlib_face_recognition_resnet_model_v1.dat (carry it)
  #   CV_RECIPE  lrbench train distill options (default below); CV_FOLDS: folds of this call (default: all)
  #   CV_OUT     where folds accumulate (default runs/cv-gpu): a later call on the same machine skips finished
  #              folds and resumes an interrupted training; CV_TIMEOUT: seconds for this call's folds (default 360)
  #   OUT        if set (the device sets it), $OUT/crossval.tar.xz holds CV_OUT without weights and figures
  #   CV_FROM    such a crossval.tar.xz from an earlier machine (carry it): unpacked into CV_OUT first, never
  #              over a file already there, so the folds it holds are skipped (their runs keep the weights' SHA-256)
  if [ -z "${CROPS:-}" ] || [ -z "${DLIB:-}" ]; then
    echo "== crossval: skipped (needs CROPS=<packed folder> and DLIB=<dlib weights>)"
  else
    echo "== crossval: lrbench run, DF 1-13 on all 6000 pairs, fp32 (--aligned crops; sphere20 untrained, its"
    echo "   96×112 input resized from the 150×150 crops): wall time and the run's own stage times"
    SWEEPS=$(mktemp -d)
    for backbone in dlib-resnet:"$DLIB" sphereface:random; do
      IFS=: read -r name weights <<<"$backbone"
      started=$(date +%s%N)
      if timeout 300 "$PY" -m lrbench run --backbone "$name" --weights "$weights" --data "$CROPS" \
        --pairs "$CROPS/pairs.txt" --aligned --df 1-13 --device cuda --quiet --out "$SWEEPS/$name" \
        >/dev/null 2>"$SWEEPS/$name.log"; then
        wall_ms=$(( ($(date +%s%N) - started) / 1000000 ))
        "$PY" -c "import json, sys; m = json.load(open(sys.argv[1])); t = m['timings']; \
print(f\"{sys.argv[2]}: {int(sys.argv[3]) / 1000:.1f} s wall; decode+align {t['decode_align_s']:.1f} s, \
features {t['features_s']:.1f} s, metrics {t['metrics_s']:.1f} s; batch {m['settings']['batch_size']}\")" \
          "$SWEEPS/$name/manifest.json" "$name" "$wall_ms"
      else
        echo "$name: sweep failed:"; tail -n 3 "$SWEEPS/$name.log"
      fi
    done
    rm -rf "$SWEEPS"
    RECIPE=${CV_RECIPE:---df 1-13 --epochs 8 --batch-size 128 --warmup-steps 40}
    CV_OUT=${CV_OUT:-runs/cv-gpu}
    mkdir -p "$CV_OUT"
    [ -n "${CV_FROM:-}" ] && tar -xJf "$CV_FROM" -C "$CV_OUT" --skip-old-files && echo "crossval: continued from $CV_FROM"
    echo "== crossval: dlib-resnet students on the people of the other folds, folds ${CV_FOLDS:-all}: $RECIPE"
    # shellcheck disable=SC2086  # the recipe is a list of options
    timeout "${CV_TIMEOUT:-360}" "$PY" benchmarks/cross_validate.py --data "$CROPS" --pairs "$CROPS/pairs.txt" \
      --people "$CROPS/people.txt" --aligned --teacher dlib-resnet --teacher-weights "$DLIB" --device cuda \
      --out "$CV_OUT" ${CV_FOLDS:+--folds "$CV_FOLDS"} -- $RECIPE 2>"$CV_OUT.log"
    echo "crossval: exit code $? (lrbench's own output is in $CV_OUT.log; its last lines:)"; tail -n 3 "$CV_OUT.log"
    if [ -n "${OUT:-}" ] && [ -d "$CV_OUT" ]; then  # one file back (the device returns 8 files, 2 folders deep)
      cp "$CV_OUT.log" "$CV_OUT/"
      tar -cJf "$OUT/crossval.tar.xz" -C "$CV_OUT" --exclude='*.pt' --exclude='*.png' --exclude='*.pdf' \
        --exclude='*.svg' --exclude=report.html . && ls -l "$OUT/crossval.tar.xz"
    fi
  fi
fi
