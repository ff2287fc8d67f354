"""The ONNX pipeline against the torch pipeline on a make-bench folder (issue 22's parity figures).

    .venv/bin/python benchmarks/parity_onnx_torch.py BENCH_DIR      # a folder `recolorize make-bench` wrote

For every pair, both pipelines re-colour the source at its own size (strength 1, 8-bit outputs); prints the
largest per-pixel difference, how many pairs differ by more than one level, and both pipelines' mean MAE,
PSNR and CIEDE2000 to the target. Needs `recolorize[train]` (the torch pipeline).
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np

from _machine import machine_description
from recolorize.evaluation.metrics import delta_e2000, mae, psnr
from recolorize.imaging import load_image
from recolorize.inference.pipeline import Recolorizer, default_weights_path
from recolorize.torch_inference.recolorizer import TorchRecolorizer


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("bench", type=Path, help="folder with pairs.csv (recolorize make-bench)")
    args = parser.parse_args()
    print(machine_description())
    onnx = Recolorizer.from_pretrained()
    reference = TorchRecolorizer.from_pretrained(default_weights_path() / "model.safetensors")
    rows = list(csv.DictReader((args.bench / "pairs.csv").open(newline="")))
    worst, over_one, scores = 0, 0, {"onnx": [], "torch": []}
    start = time.perf_counter()
    for row in rows:
        source = load_image(args.bench / row["source"])
        reference_photo = load_image(args.bench / row["reference"])
        target = load_image(args.bench / row["target"]).rgb
        ours = onnx.render_array(onnx.prepare(source, reference_photo), 1.0, np.uint8)
        theirs = reference.render_array(reference.prepare(source, reference_photo), 1.0, np.uint8)
        difference = int(np.abs(ours.astype(int) - theirs.astype(int)).max())
        worst, over_one = max(worst, difference), over_one + (difference > 1)
        for name, pixels in (("onnx", ours), ("torch", theirs)):
            rgb = pixels.astype(np.float32) / 255
            scores[name].append((mae(rgb, target), psnr(rgb, target), delta_e2000(rgb, target)))
    print(f"{len(rows)} pairs in {time.perf_counter() - start:.0f} s")
    print(f"largest difference {worst} levels; pairs differing by more than one level: {over_one}")
    for name, values in scores.items():
        print(f"{name}: MAE %.2f PSNR %.2f dE2000 %.2f" % tuple(np.mean(values, axis=0)))


if __name__ == "__main__":
    main()
