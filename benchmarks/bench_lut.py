"""Speed of 3D LUTs on this machine: applying one at full resolution, and fitting one to a transfer.

    .venv/bin/python benchmarks/bench_lut.py [--runs 5]

"apply" is ``Lut3D.apply`` on a decoded photo (float32 sRGB, trilinear, 33^3), with 1 and 2 torch threads;
"lut-apply" is the whole command on a 12 MP JPEG (decode, apply, encode, atomic write); "fit" is
``fit_lut`` on the largest sample it uses (0.26 MP) of a real photo graded by a known transform.
Medians of ``runs`` after a warm-up.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from _machine import machine_description
from recolorize.cli import main as cli
from recolorize.inference.lut import FIT_MAX_SAMPLES, Lut3D, fit_lut, write_cube

SIZES = {"1 MP (1155x866)": (1155, 866), "12 MP (4000x3000)": (4000, 3000)}


def graded(rgb: np.ndarray) -> np.ndarray:
    """A global look: a colour matrix and a gamma."""
    matrix = np.array([[0.70, 0.25, 0.05], [0.10, 0.65, 0.25], [0.15, 0.05, 0.80]])
    return np.clip(rgb @ matrix.T, 0.0, 1.0) ** 1.3


def median_seconds(fn: Callable[[], object], runs: int) -> float:
    fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--photo", default="examples/source.jpg")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(machine_description())
    photo = Image.open(args.photo).convert("RGB")
    lut = Lut3D(graded(Lut3D.identity().table.astype(np.float64)))
    print(f"{'photo':20} {'threads':>7} {'apply (s)':>10}")
    for label, size in SIZES.items():
        rgb = np.asarray(photo.resize(size, Image.BICUBIC), dtype=np.float32) / 255.0
        for threads in (1, 2):
            torch.set_num_threads(threads)
            seconds = median_seconds(lambda rgb=rgb: lut.apply(rgb), args.runs)
            print(f"{label:20} {threads:7d} {seconds:10.3f}")
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        cube = write_cube(lut, Path(folder) / "look.cube")
        jpeg = Path(folder) / "photo.jpg"
        photo.resize(SIZES["12 MP (4000x3000)"], Image.BICUBIC).save(jpeg, quality=95)
        out = Path(folder) / "out.jpg"
        command = ["lut-apply", str(cube), str(jpeg), "-o", str(out), "--overwrite"]
        seconds = median_seconds(lambda: cli(command), max(1, args.runs // 2))
        print(f"lut-apply command, 12 MP JPEG in and out (1 thread): {seconds:.2f} s")
    side = int(np.sqrt(FIT_MAX_SAMPLES * 1.5))
    rgb = np.asarray(photo.resize((side, side * 2 // 3), Image.BICUBIC), dtype=np.float32) / 255.0
    for order in (1, 2):
        seconds = median_seconds(lambda order=order: fit_lut(rgb, graded(rgb), order=order), args.runs)
        print(f"fit_lut, {rgb.shape[1]}x{rgb.shape[0]} photo, smoothness order {order}: {seconds:.2f} s")


if __name__ == "__main__":
    main()
