#!/usr/bin/env bash
# Reproduce the shipped default model (config `pointwise`) on a 2-core CPU, then export it into the package.
#   scripts/train_default.sh [DATA_DIR] [RUN_DIR]      defaults: ../shared/data  runs/pointwise
# Resumable: run it again after an interruption (the cache finishes its shards, training continues from
# the run folders' checkpoints). About 3 hours on the project's 2-core machine (docs/model-card.md).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${1:-../shared/data}"
RUN="${2:-runs/pointwise}"
CACHE="${CACHE:-runs/cache128}"
RC=.venv/bin/recolorize
scripts/setup.sh
resume() { [ -f "$1/checkpoint.safetensors" ] && echo --resume || true; }

# BSDS500 test stays out: it is the held-out ground-truth benchmark; DPST is for evaluation only
$RC build-cache --data "$DATA/bsds500/images/train" "$DATA/bsds500/images/val" "$DATA/coco128" \
  "$DATA/msrc_v2" --out "$CACHE" --items 12288
# phase 1: the three stages under the MKL prior (generator 1,500 steps, W-encoder 600, W-predictor 6,000;
# every 2nd pixel)
$RC train --config pointwise-mkl --data "$CACHE" --run "$RUN" $(resume "$RUN")
# phase 2: stage 3 again from phase 1's weights, a second cosine cycle on every 4th pixel (cheaper steps)
$RC train --config pointwise-mkl --data "$CACHE" --run "${RUN}_more" --stage predictor \
  $( [ -f "${RUN}_more/checkpoint.safetensors" ] && echo --resume || echo --init "$RUN/predictor.safetensors" ) \
  --steps "${MORE_STEPS:-10000}" --lr 7e-4 --set predictor.pixel_stride=4
# phase 3: stage 3 under the affine correspondence prior, warm-started from phase 2's weights
$RC train --config pointwise-affine --data "$CACHE" --run "${RUN}_corr" --stage predictor \
  $( [ -f "${RUN}_corr/checkpoint.safetensors" ] && echo --resume || echo --init "${RUN}_more/predictor.safetensors" ) \
  --steps 8000 --lr 7e-4 --set predictor.pixel_stride=4
# phase 4: stage 3 under the quadratic correspondence prior (config pointwise, the shipped one)
$RC train --config pointwise --data "$CACHE" --run "${RUN}_quad" --stage predictor \
  $( [ -f "${RUN}_quad/checkpoint.safetensors" ] && echo --resume || echo --init "${RUN}_corr/predictor.safetensors" ) \
  --steps 6000 --lr 5e-4 --set predictor.pixel_stride=4
$RC export "${RUN}_quad" -o src/recolorize/weights/
