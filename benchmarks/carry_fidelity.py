"""How close a large photo's carried-up rendering is to rendering every pixel (issue 11, docs/results.md).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/carry_fidelity.py --dpst ../shared/data/dpst --n 20

A photo over ``pipeline.DIRECT_MAX_PIXELS`` is rendered by the pointwise generator on a copy of
``CARRY_PIXELS`` pixels, and a local affine colour transform fitted there carries the result to the photo's
own size (``fullres.fit_local_affine`` / ``apply_affine``). The reference here is the generator evaluated on
every pixel of the photo itself. The photos are DPST sources upscaled 2x (bicubic) with Gaussian sensor-like
noise (sigma 2 levels), about 1.2 MP, each re-coloured after its DPST reference by the shipped model. For
each (copy pixels, window radius, ridge eps): the mean over photos of the mean CIEDE2000 to the full
rendering, and of its 99.9th percentile (the worst pixels: edges between differently re-coloured regions),
and the seconds of rendering the copy plus fitting on it.
"""

from __future__ import annotations

import argparse
import csv
import math
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from _machine import machine_description
from recolorize.colour import rgb_to_lab
from recolorize.evaluation.metrics import ciede2000
from recolorize.imaging import load_image, resize_for_network
from recolorize.inference import pipeline
from recolorize.torch_inference.fullres import apply_affine, fit_local_affine

#: (copy pixels, radius, eps): the previous default first, then the shipped one, then the others measured.
SETTINGS = [
    (1 << 19, 3, 3e-5),
    (pipeline.CARRY_PIXELS, pipeline.CARRY_RADIUS, pipeline.CARRY_EPS),
    (1 << 18, 1, 1e-6),
    (1 << 17, 1, 1e-6),
    (1 << 17, 1, 3e-6),
]


def lab(rgb: np.ndarray) -> np.ndarray:
    return rgb_to_lab(torch.from_numpy(rgb).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--dpst", type=Path, required=True, help="the DPST folder (pairs.csv, input/, style/)"
    )
    parser.add_argument("--n", type=int, default=20, help="pairs, from the first")
    args = parser.parse_args()
    print(machine_description())
    rows = list(csv.DictReader(open(args.dpst / "pairs.csv")))[: args.n]
    recolorizer = pipeline.Recolorizer.from_pretrained()
    means: dict[tuple, list[float]] = {s: [] for s in SETTINGS}
    tails: dict[tuple, list[float]] = {s: [] for s in SETTINGS}
    seconds: dict[tuple, list[float]] = {s: [] for s in SETTINGS}
    rng = np.random.default_rng(0)
    for row in rows:
        photo = Image.open(args.dpst / row["input"]).convert("RGB")
        big = np.asarray(photo.resize((photo.width * 2, photo.height * 2), Image.BICUBIC), dtype=np.float32)
        big = np.clip(big + rng.normal(0.0, 2.0, big.shape), 0, 255).astype(np.uint8)
        prepared = recolorizer.prepare(load_image(big), args.dpst / row["style_reference"])
        maps = [recolorizer._interpolate(prepared.self_maps, m, 1.0) for m in prepared.predicted_maps]
        full = torch.from_numpy(np.ascontiguousarray(prepared.source.rgb)).permute(2, 0, 1)[None]
        every_pixel = recolorizer._render_pointwise(prepared, full, maps, prepared.conditioning)
        reference_lab = lab(every_pixel[0].permute(1, 2, 0).numpy())
        height, width = full.shape[-2:]
        rendered: dict[int, tuple[torch.Tensor, torch.Tensor, float]] = {}
        for setting in SETTINGS:
            pixels, radius, eps = setting
            start = time.perf_counter()
            if pixels not in rendered:
                scale = math.sqrt(pixels / (height * width))
                copy = resize_for_network(full, (round(height * scale), round(width * scale)))
                result = recolorizer._render_pointwise(prepared, copy, maps, prepared.conditioning)
                rendered[pixels] = (copy, result, time.perf_counter() - start)
                start = time.perf_counter()
            copy, result, render_seconds = rendered[pixels]
            dmat, c = fit_local_affine(copy, result, radius=radius, eps=eps)
            seconds[setting].append(render_seconds + time.perf_counter() - start)
            carried = apply_affine(full, dmat, c)[0].permute(1, 2, 0).numpy()
            difference = ciede2000(lab(carried), reference_lab)
            means[setting].append(float(difference.mean()))
            tails[setting].append(float(np.percentile(difference, 99.9)))
        print(
            f"pair {row['pair_id']} ({width}x{height}): " + " ".join(f"{means[s][-1]:.3f}" for s in SETTINGS)
        )
    print()
    print(
        "| copy (pixels), radius, eps | mean dE2000 to every pixel | 99.9th percentile | render + fit (s) |"
    )
    print("|---|---|---|---|")
    for setting in SETTINGS:
        pixels, radius, eps = setting
        shipped = " (shipped)" if setting == SETTINGS[1] else " (before)" if setting == SETTINGS[0] else ""
        print(
            f"| {pixels / 1e6:.2f} MP, {radius}, {eps:g}{shipped} | {np.mean(means[setting]):.3f} "
            f"| {np.mean(tails[setting]):.2f} (max {np.max(tails[setting]):.2f}) "
            f"| {np.mean(seconds[setting]):.3f} |"
        )


if __name__ == "__main__":
    main()
