#!/usr/bin/env bash
# The test command: set up (if needed), lint, run the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
VENV="${RECOLORIZE_VENV:-.venv}"
"$VENV/bin/ruff" check src tests benchmarks
"$VENV/bin/ruff" format --check src tests benchmarks
"$VENV/bin/python" -m pytest -q "$@"
