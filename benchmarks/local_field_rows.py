"""What the prior's local field and the learnt part each add, on ground-truth pairs (issue 21's rows).

    .venv/bin/python benchmarks/local_field_rows.py --pairs bench_local/pairs.csv
    .venv/bin/python benchmarks/local_field_rows.py --pairs bench/pairs.csv --weights runs/x_onnx

For each pair the shipped pipeline (``Recolorizer``) prepares once and renders four ways, at full resolution:
the lattice alone, the prior (lattice + local field), the model without the local field, and the model as
shipped (with it); plus "field in the base": f run over lattice + field, for a model trained that way. Prints
the mean MAE (0-255) and CIEDE2000 of each, and how often the shipped output beats the lattice alone.
No torch: the networks run in ONNX Runtime, as ``recolorize transfer`` runs them.
"""

from __future__ import annotations

import argparse
import csv
import platform
from pathlib import Path

import numpy as np

from recolorize.evaluation.metrics import delta_e2000, mae
from recolorize.imaging import load_image
from recolorize.inference.lut.table import Lut3D, apply_lut
from recolorize.inference.pipeline import Recolorizer
from recolorize.prior import apply_lattice, apply_local_field


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=Path, required=True, help="CSV with source,reference,target")
    parser.add_argument("--weights", default=None, help="an exported model folder (default: the shipped one)")
    parser.add_argument("--n", type=int, default=None, help="first N pairs (default: all)")
    args = parser.parse_args()
    recolorizer = Recolorizer.from_pretrained(args.weights)
    rows = list(csv.DictReader(args.pairs.open()))[: args.n]
    root = args.pairs.parent
    names = ("lattice alone", "prior (lattice + local field)", "model without the field", "model (shipped)")
    names += ("f over lattice + field",)
    scores: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    for row in rows:
        source = load_image(root / row["source"])
        target = load_image(root / row["target"]).rgb
        prepared = recolorizer.prepare(source, root / row["reference"])
        local = prepared.local
        offsets = apply_local_field(local, source.rgb) if local is not None else np.zeros_like(source.rgb)
        lattice = apply_lattice(prepared.lattice, source.rgb)
        shipped = recolorizer.render_array(prepared)
        prepared.local = None
        without = recolorizer.render_array(prepared)
        base = apply_lut(Lut3D(prepared.lattice), source.rgb) + offsets
        in_base = recolorizer.model.generate(source.rgb, base, prepared.source_low, prepared.predicted, 1.0)
        outputs = (lattice, lattice + offsets, without, shipped, in_base)
        for name, output in zip(names, outputs, strict=True):
            output = np.clip(output, 0.0, 1.0).astype(np.float32)
            scores[name].append((mae(output, target), delta_e2000(output, target)))
    print(f"# local_field_rows: {len(rows)} pairs of {args.pairs}, weights {args.weights or 'shipped'}")
    print(f"# {platform.processor() or platform.machine()}, {platform.python_version()}")
    print("photos over 0.5 MP: the last row renders every pixel (no carry-up); the others as transfer does")
    for name, values in scores.items():
        table = np.array(values)
        print(f"{name:32s} MAE {table[:, 0].mean():6.3f}   dE2000 {table[:, 1].mean():6.3f}")
    shipped_mae = np.array(scores["model (shipped)"])[:, 0]
    lattice_mae = np.array(scores["lattice alone"])[:, 0]
    print(f"shipped below the lattice alone on {np.mean(shipped_mae < lattice_mae):.0%} of pairs")


if __name__ == "__main__":
    main()
