#!/usr/bin/env bash
# What squeezing ArcFace-aligned 112×112 crops into another template cost, and what the similarity conversion
# (issue 20 item 4) wins back, on the real LFW with dlib's network (150×150 chip):
#   direct     aligned from the landmarks straight to dlib's chip (the reference)
#   converted  ArcFace crops of a .bin, converted by the similarity between the two templates (today's rule)
#   squeezed   the same crops declared dlib-framed (--aligned-template dlib-150x150): resized only, as before
# Usage: benchmarks/bench_template_conversion.sh [OUT]   (LFW and the dlib weights from ../shared/data)
set -euo pipefail
OUT=${1:-runs/template-conversion}
L=${LFW:-../shared/data/lfw}
W=${DLIB_WEIGHTS:-../shared/data/models/dlib_face_recognition_resnet_model_v1.dat}
DFS=${DFS:-1,8}
mkdir -p "$OUT"
[ -f "$OUT/lfw-arcface.bin" ] || lrbench bin make --data "$L/lfw-deepfunneled" --pairs "$L/pairs.txt" \
    --landmarks "$L/landmarks.txt" --out "$OUT/lfw-arcface.bin" --format png -q
BIN=(--backbone dlib-resnet --weights "$W" --protocol "$OUT/lfw-arcface.bin" --data "$OUT" --df "$DFS" --quiet --overwrite)
lrbench run "${BIN[@]}" --out "$OUT/converted" --label "ArcFace crops, converted"
lrbench run "${BIN[@]}" --aligned-template dlib-150x150 --out "$OUT/squeezed" --label "ArcFace crops, resized only"
lrbench run --backbone dlib-resnet --weights "$W" --data "$L/lfw-deepfunneled" --pairs "$L/pairs.txt" \
    --landmarks "$L/landmarks.txt" --df "$DFS" --quiet --overwrite --out "$OUT/direct" --label "aligned from landmarks"
