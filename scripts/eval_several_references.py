#!/usr/bin/env python
"""Several references against one: each half of a re-framed reference lacks part of the target's colours.

    .venv/bin/python scripts/eval_several_references.py --pairs reports/bench_bsds500_test/pairs.csv \
        --n 40 --out reports/several_references [--weights PATH]

For each make-bench pair (source, reference = the target re-framed, target) the reference is cut into a
left and a right part (each 60 % of its width, so each misses the other side's content). The model runs
with the left part alone, the right part alone, both as two references, and the whole reference (the
bound); MAE (0-255) and CIEDE2000 against the target are averaged. Writes table.md and grid.png (the
pair where two references help most).
"""

from __future__ import annotations

import argparse
import csv
import statistics
from pathlib import Path

import numpy as np
from tqdm import tqdm

from recolorize.evaluation.grids import comparison_grid, save_png
from recolorize.evaluation.metrics import delta_e2000, mae
from recolorize.imaging import load_image
from recolorize.inference.pipeline import Recolorizer


def halves(reference: np.ndarray, share: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    """Left and right parts of ``reference`` (H, W, 3), each ``share`` of its width."""
    width = reference.shape[1]
    cut = round(width * share)
    return reference[:, :cut].copy(), reference[:, width - cut :].copy()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=Path, required=True)
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--weights", default=None)
    args = parser.parse_args()
    recolorizer = Recolorizer.from_pretrained(args.weights)
    with open(args.pairs, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))[: args.n]
    root = args.pairs.parent
    scores: dict[str, dict[str, list[float]]] = {}
    grid_tiles = None
    best_gain = 0.0
    for row in tqdm(rows, desc="pairs"):
        source = load_image(root / row["source"])
        reference = load_image(root / row["reference"]).rgb
        target = load_image(root / row["target"]).rgb
        left, right = halves(reference)
        runs = {"left part": [left], "right part": [right], "both parts": [left, right], "whole": [reference]}
        outputs = {}
        for name, references in runs.items():
            refs = [load_image(r) for r in references]
            out = recolorizer.render_array(recolorizer.prepare(source, refs if len(refs) > 1 else refs[0]))
            outputs[name] = out
            entry = scores.setdefault(name, {"mae": [], "de2000": []})
            entry["mae"].append(mae(out, target))
            entry["de2000"].append(delta_e2000(out, target))
        last = {name: entry["mae"][-1] for name, entry in scores.items()}
        gain = min(last["left part"], last["right part"]) - last["both parts"]
        if grid_tiles is None or gain > best_gain:  # show the pair where two references help most
            best_gain = gain
            grid_tiles = [("source", source.rgb), ("left part", left), ("right part", right)]
            grid_tiles += [(f"{k}: MAE {last[k]:.1f}", v) for k, v in outputs.items()] + [("target", target)]
    args.out.mkdir(parents=True, exist_ok=True)
    lines = [
        f"Several references on {len(rows)} make-bench pairs ({args.pairs}); model {recolorizer.describe()}",
        "",
        "| references | MAE ↓ | ΔE2000 ↓ |",
        "|---|---|---|",
    ]
    for name, entry in scores.items():
        lines.append(
            f"| {name} | {statistics.mean(entry['mae']):.2f} | {statistics.mean(entry['de2000']):.2f} |"
        )
    (args.out / "table.md").write_text("\n".join(lines) + "\n")
    if grid_tiles is not None:
        save_png(comparison_grid(grid_tiles, height=160), args.out / "grid.png")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
