"""What carrying a large photo's rendering up from a small copy costs, against the generator on every pixel
and against ground truth (docs/results.md).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/carry_fidelity.py --dpst ../shared/data/dpst --n 20 \\
        [--pairs BENCH/pairs.csv --n-pairs 100]

A photo over ``pipeline.DIRECT_MAX_PIXELS`` is rendered on a copy of ``CARRY_PIXELS`` pixels and a local
affine colour transform fitted there carries the result to its own size (``inference.carry``). For each
setting (copy pixels, window radius, ridge eps), with the networks' outputs fixed (one ``prepare`` per
pair):

* fidelity: DPST sources upscaled 2x (bicubic) with sensor-like noise (sigma 2 levels), ~1.2 MP, each
  re-coloured after its DPST reference; the mean over photos of the mean CIEDE2000 to the generator on every
  pixel, and of its 99.9th percentile (the worst pixels: edges between differently re-coloured regions);
* accuracy (``--pairs``, a make-bench folder's pairs.csv): source, reference and ground-truth target
  upscaled 2x (0.62 MP), MAE in 8-bit levels to the target, every pixel against each carried setting;
* seconds of rendering the copy and fitting on it (one thread when ``OMP_NUM_THREADS=1``).
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
from PIL import Image
from skimage.color import rgb2lab

from _machine import machine_description
from recolorize.evaluation.metrics import ciede2000
from recolorize.imaging import load_image
from recolorize.inference import carry, pipeline

#: (copy pixels, radius, eps): the previous default first, then the shipped one, then others measured.
SETTINGS = [
    (1 << 18, 1, 3e-6),
    (pipeline.CARRY_PIXELS, carry.CARRY_RADIUS, carry.CARRY_EPS),
    (1 << 17, 1, 3e-6),
    (1 << 16, 1, 3e-6),
]


def render(
    recolorizer: pipeline.Recolorizer, prepared: pipeline.PreparedPair, setting: tuple | None
) -> tuple:
    """(uint8 rendering, seconds of the copy's rendering + fit + carry): every pixel when ``setting`` is
    None, else carried up from a copy of the setting's size."""
    saved = pipeline.DIRECT_MAX_PIXELS, pipeline.CARRY_PIXELS, carry.CARRY_RADIUS, carry.CARRY_EPS
    try:
        if setting is None:
            pipeline.DIRECT_MAX_PIXELS = 1 << 30
        else:
            pipeline.CARRY_PIXELS, carry.CARRY_RADIUS, carry.CARRY_EPS = setting
        prepared.copy = None
        start = time.perf_counter()
        out = recolorizer.render_array(prepared, 1.0, dtype=np.uint8)
        return out, time.perf_counter() - start
    finally:
        pipeline.DIRECT_MAX_PIXELS, pipeline.CARRY_PIXELS, carry.CARRY_RADIUS, carry.CARRY_EPS = saved


def upscaled(path: Path, rng: np.random.Generator | None = None) -> np.ndarray:
    """The photo at ``path`` upscaled 2x (bicubic), with sensor-like noise when ``rng`` is given."""
    with Image.open(path) as im:
        photo = im.convert("RGB")
        big = np.asarray(photo.resize((photo.width * 2, photo.height * 2), Image.Resampling.BICUBIC))
    if rng is None:
        return big
    return np.clip(big + rng.normal(0.0, 2.0, big.shape), 0, 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--dpst", type=Path, required=True, help="the DPST folder (pairs.csv, input/, style/)"
    )
    parser.add_argument("--n", type=int, default=20, help="DPST pairs, from the first")
    parser.add_argument("--pairs", type=Path, help="a make-bench pairs.csv (source,reference,target)")
    parser.add_argument("--n-pairs", type=int, default=100, help="make-bench pairs, from the first")
    args = parser.parse_args()
    print(machine_description())
    recolorizer = pipeline.Recolorizer.from_pretrained()
    means: dict[tuple, list[float]] = {s: [] for s in SETTINGS}
    tails: dict[tuple, list[float]] = {s: [] for s in SETTINGS}
    seconds: dict[tuple, list[float]] = {s: [] for s in SETTINGS}
    rng = np.random.default_rng(0)
    for row in list(csv.DictReader(open(args.dpst / "pairs.csv")))[: args.n]:
        prepared = recolorizer.prepare(
            load_image(upscaled(args.dpst / row["input"], rng)), args.dpst / row["style_reference"]
        )
        every_pixel, _ = render(recolorizer, prepared, None)
        for setting in SETTINGS:
            carried, took = render(recolorizer, prepared, setting)
            difference = ciede2000(rgb2lab(carried), rgb2lab(every_pixel))
            means[setting].append(float(difference.mean()))
            tails[setting].append(float(np.percentile(difference, 99.9)))
            seconds[setting].append(took)
        print(f"DPST pair {row['pair_id']}: " + " ".join(f"{means[s][-1]:.3f}" for s in SETTINGS), flush=True)
    accuracy: dict[tuple | None, list[float]] = {s: [] for s in [None, *SETTINGS]}
    if args.pairs is not None:
        root = args.pairs.parent
        for row in list(csv.DictReader(open(args.pairs)))[: args.n_pairs]:
            target = upscaled(root / row["target"]).astype(np.float32)
            prepared = recolorizer.prepare(
                load_image(upscaled(root / row["source"])), load_image(upscaled(root / row["reference"]))
            )
            for setting in accuracy:
                accuracy[setting].append(
                    float(np.abs(render(recolorizer, prepared, setting)[0] - target).mean())
                )
    print()
    print(
        "| copy (pixels), radius, eps | mean ΔE2000 to every pixel | 99.9th percentile | render + carry (s) |"
        + (" MAE to ground truth (2x make-bench) |" if args.pairs else "")
    )
    print("|---|---|---|---|" + ("---|" if args.pairs else ""))
    if args.pairs:
        print(f"| every pixel | 0 | 0 | | {np.mean(accuracy[None]):.4f} |")
    for setting in SETTINGS:
        pixels, radius, eps = setting
        shipped = " (shipped)" if setting == SETTINGS[1] else " (before)" if setting == SETTINGS[0] else ""
        row = (
            f"| {pixels / 1e6:.3f} MP, {radius}, {eps:g}{shipped} | {np.mean(means[setting]):.3f} "
            f"| {np.mean(tails[setting]):.2f} (max {np.max(tails[setting]):.2f}) "
            f"| {np.mean(seconds[setting]):.3f} |"
        )
        print(row + (f" {np.mean(accuracy[setting]):.4f} |" if args.pairs else ""))


if __name__ == "__main__":
    main()
