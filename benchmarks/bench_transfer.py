"""Latency of ``recolorize transfer`` on this machine: network pass versus full-resolution transfer.

    .venv/bin/python benchmarks/bench_transfer.py [--weights PATH] [--runs 5]

Sources of 256x256, 1 MP and 12 MP (a real photo resized, so the JPEG/PNG decode is not included);
median of ``runs`` after a warm-up. "network" is prepare() (predictor, W0_S, reconstruction) plus the
generator pass at the working resolution; "full-res" is the local affine transfer to the source's size.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from PIL import Image

from _machine import machine_description
from recolorize.imaging import load_image
from recolorize.inference.pipeline import Recolorizer

SIZES = {"256x256": (256, 256), "1 MP (1155x866)": (1155, 866), "12 MP (4000x3000)": (4000, 3000)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--weights", default=None, help="model weights (default: the shipped model)")
    parser.add_argument("--source", default="examples/source.jpg")
    parser.add_argument("--reference", default="examples/reference.jpg")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(machine_description())
    recolorizer = Recolorizer.from_pretrained(args.weights)
    print(f"model: {recolorizer.describe()}")
    photo = Image.open(args.source).convert("RGB")
    reference = load_image(args.reference)
    print(f"{'source':20} {'network (s)':>12} {'full-res (s)':>13} {'total (s)':>10}")
    for label, size in SIZES.items():
        source = load_image(np.asarray(photo.resize(size, Image.BICUBIC)))
        network, fullres = [], []
        for run in range(args.runs + 1):
            start = time.perf_counter()
            prepared = recolorizer.prepare(source, reference)
            recolorizer.render_array(prepared, 1.0)
            total = time.perf_counter() - start
            if run:  # the first run is a warm-up
                fullres.append(prepared.timings["full_resolution"])
                network.append(total - prepared.timings["full_resolution"])
        net, full = statistics.median(network), statistics.median(fullres)
        print(f"{label:20} {net:12.3f} {full:13.3f} {net + full:10.3f}")


if __name__ == "__main__":
    main()
