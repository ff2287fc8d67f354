"""Time and quality of the colour prior alone (recolorize.prior, issue 21): matching + fit per pair, and the
prior's error against ground truth where a benchmark has it.

    .venv/bin/python benchmarks/bench_prior.py --pairs bench/pairs.csv --n 60
    .venv/bin/python benchmarks/bench_prior.py --pairs ../shared/data/dpst/pairs.csv --n 60

For each pair: both photos are shrunk to 384 x 384 and described by the frozen EfficientNet-Lite0 (timed
apart: "network", the part ONNX Runtime will run), then the NumPy prior matches the 2,304 cells and fits
the robust cubic and the cross-validated lattice and reads the local field off the residuals ("match + fit",
``prior.pair_prior``, the part the issue bounds at 0.2 s), then the lattice is applied to the full-resolution
source ("apply") and the field sliced at its pixels ("local field"). With a ``target`` column, the mean MAE
(0-255) and CIEDE2000 of the prior's output with and without its local field, of the cubic alone and of the
source, and which smoothness cross-validation picked.
"""

from __future__ import annotations

import argparse
import csv
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from _machine import machine_description
from recolorize.evaluation.metrics import delta_e2000, mae
from recolorize.imaging import load_image
from recolorize.networks.backbones import build_semantic_backbone
from recolorize.networks.prior_features import prior_copy, prior_descriptors
from recolorize.prior import apply_cubic, apply_lattice, apply_local_field, fit_prior, pair_prior


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=Path, required=True, help="CSV with source,reference[,target]")
    parser.add_argument("--n", type=int, default=60, help="first N pairs (default 60)")
    parser.add_argument("--threads", type=int, default=2, help="torch / BLAS threads (default 2)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    semantic = build_semantic_backbone("efficientnet_lite0")
    rows = list(csv.DictReader(args.pairs.open()))[: args.n]
    root = args.pairs.parent
    seconds: dict[str, list[float]] = {"network": [], "match + fit": [], "apply": [], "local field": []}
    scores: dict[str, list[float]] = {}
    picked: Counter[float] = Counter()
    for row in rows:
        source = load_image(root / row["source"]).rgb
        reference = load_image(root / row["reference"]).rgb
        start = time.perf_counter()
        copies = [prior_copy(source), prior_copy(reference)]
        described = prior_descriptors(semantic, copies)
        networked = time.perf_counter()
        prior = pair_prior(copies[0], [copies[1]], described[0], [described[1]])
        fitted = time.perf_counter()
        lattice_only = apply_lattice(prior.lattice, source)
        applied = time.perf_counter()
        if prior.local is not None:
            output = np.clip(lattice_only + apply_local_field(prior.local, source), 0.0, 1.0)
        else:
            output = np.clip(lattice_only, 0.0, 1.0)
        sliced = time.perf_counter()
        seconds["network"].append(networked - start)
        seconds["match + fit"].append(fitted - networked)
        seconds["apply"].append(applied - fitted)
        seconds["local field"].append(sliced - applied)
        fit, _ = fit_prior(copies[0], copies[1], described[0], described[1])  # untimed: its cubic and lambda
        picked[fit.smoothness] += 1
        if row.get("target"):
            target = load_image(root / row["target"]).rgb
            cubic = np.clip(apply_cubic(fit.cubic, source.reshape(-1, 3)).reshape(source.shape), 0, 1)
            lattice_only = np.clip(lattice_only, 0.0, 1.0)
            named = (
                ("prior", output),
                ("lattice alone", lattice_only),
                ("cubic alone", cubic),
                ("source", source),
            )
            for name, image in named:
                image = image.astype(np.float32)
                scores.setdefault(f"{name} MAE", []).append(mae(image, target))
                scores.setdefault(f"{name} dE2000", []).append(delta_e2000(image, target))
    print(f"# bench_prior: {len(rows)} pairs of {args.pairs}, {args.threads} threads")
    print(f"# {machine_description()}")
    for name, values in seconds.items():
        median, p90 = np.median(values) * 1000, np.percentile(values, 90) * 1000
        print(f"{name:12s} median {median:7.1f} ms   p90 {p90:7.1f} ms")
    for name, values in scores.items():
        print(f"{name:20s} {np.mean(values):.3f}")
    print("smoothness picked:", dict(sorted(picked.items())))


if __name__ == "__main__":
    main()
