#!/usr/bin/env bash
# The main job on the shipped model: re-colour the sample pair in examples/ (set-up included).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/recolorize transfer examples/source.jpg examples/reference.jpg -o recolorized.jpg --overwrite "$@"
