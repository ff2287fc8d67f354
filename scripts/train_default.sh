#!/usr/bin/env bash
# Reproduce the shipped default model (config `pointwise`) on a 2-core CPU, then export it into the package.
#   scripts/train_default.sh [DATA_DIR] [RUN_DIR]      defaults: ../shared/data  runs/pointwise
# Resumable: run it again after an interruption (the cache finishes its shards, training continues from
# RUN_DIR/checkpoint.safetensors). About 75 minutes on the project's 2-core machine (docs/model-card.md).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${1:-../shared/data}"
RUN="${2:-runs/pointwise}"
CACHE="${CACHE:-runs/cache128}"
RC=.venv/bin/recolorize
scripts/setup.sh

# BSDS500 test stays out: it is the held-out ground-truth benchmark; DPST is for evaluation only
$RC build-cache --data "$DATA/bsds500/images/train" "$DATA/bsds500/images/val" "$DATA/coco128" \
  "$DATA/msrc_v2" --out "$CACHE" --items 12288
RESUME=()
[ -f "$RUN/checkpoint.safetensors" ] && RESUME=(--resume)
$RC train --config pointwise --data "$CACHE" --run "$RUN" "${RESUME[@]}" \
  --set generator.steps=1500 --set wencoder.steps=600 --set predictor.steps="${PREDICTOR_STEPS:-6000}"
$RC export "$RUN" -o src/recolorize/weights/
