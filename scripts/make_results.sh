#!/usr/bin/env bash
# Regenerate the measurements behind docs/results.md with the shipped model (run after the model changes).
#   scripts/make_results.sh [DATA_DIR] [OUT_DIR]      defaults: ../shared/data  reports/
# Writes OUT_DIR/{bench_bsds500_test,eval_bsds500,dpst,analyses}/ and the benchmark printouts; copy the
# tables and a few figures into docs/ (docs/results.md says which).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${1:-../shared/data}"
OUT="${2:-reports}"
RC=.venv/bin/recolorize
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
mkdir -p "$OUT"

# ground truth from held-out photos (BSDS500 test: never used in training)
[ -f "$OUT/bench_bsds500_test/pairs.csv" ] || \
  $RC make-bench --images "$DATA/bsds500/images/test" --out "$OUT/bench_bsds500_test" --n 200 --seed 0
$RC eval --pairs "$OUT/bench_bsds500_test/pairs.csv" --methods ours,reinhard,mkl,histogram,hm-mkl-hm,identity \
  --out "$OUT/eval_bsds500"
# the two full-resolution paths of the pointwise model, on the same pairs (docs/results.md)
$RC eval --pairs "$OUT/bench_bsds500_test/pairs.csv" --methods ours --full-resolution affine \
  --out "$OUT/eval_bsds500_affine" --grid-every 0
$RC dpst-report --dpst "$DATA/dpst" --out "$OUT/dpst" --methods ours,reinhard,mkl,histogram,hm-mkl-hm,identity

# the paper's analyses on held-out BSDS500 test photos
for analysis in table3 fig4 fig5 w0; do
  $RC analyse "$analysis" --images "$DATA/bsds500/images/test" --out "$OUT/analyses" --n 24
done

.venv/bin/python benchmarks/bench_transfer.py | tee "$OUT/bench_transfer.txt"
.venv/bin/python benchmarks/bench_model.py --configs paper base small pointwise | tee "$OUT/bench_model.txt"

# 3D LUTs: fidelity of a global LUT to the model's local transfer, the README pair, the fit's sweep
# (on pairs 40-47, kept out of the table), speed
.venv/bin/python benchmarks/lut_fidelity.py --pairs "$OUT/bench_bsds500_test/pairs.csv" --n 40 | tee "$OUT/lut_fidelity.txt"
.venv/bin/python benchmarks/lut_fidelity.py --demo | tee "$OUT/lut_demo.txt"
.venv/bin/python benchmarks/lut_fidelity.py --pairs "$OUT/bench_bsds500_test/pairs.csv" --sweep --start 40 --n 8 \
  | tee "$OUT/lut_sweep.txt"
.venv/bin/python benchmarks/bench_lut.py | tee "$OUT/bench_lut.txt"
