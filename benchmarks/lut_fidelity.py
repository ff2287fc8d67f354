"""How much of the model's local transfer a global 3D LUT keeps, on ground-truth pairs (docs/results.md).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/lut_fidelity.py --n 40                    # the table
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/lut_fidelity.py --sweep --start 40 --n 8  # smoothness
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/lut_fidelity.py --demo          # the README pair

Table: for each pair (source, reference, target) of a make-bench benchmark, the shipped model's full
output, then the source through each LUT: "fit" (least squares to the output), "pooled" (the generator
with its latent maps averaged), and, for scale, MKL (a global affine transfer) and an *oracle* LUT fitted
to the target itself (the best any global LUT could do). Mean ΔE2000 to the model's output and to the
target; "kept" is the share of the model's gain over the untouched source (ΔE2000 to the target) that the
LUT keeps.

Sweep: for each prior (identity or the global affine fit), smoothness order and weight, the fit's
ΔE2000 to the model's output on the photo itself ("in-sample"), and on one half of the photo when fitted
on the other half ("held-out half": colours the fit did not see, the test of how it fills them), the share
of lattice steps where a channel decreases as its own input increases ("non-monotone"), the 99th
percentile ΔE2000 of a LUT fitted to a known smooth global look (matrix + gamma) applied to the same photo
(can the fit hold a global look?), and the seconds one fit takes.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
from pathlib import Path

import numpy as np
from skimage.color import rgb2lab

from _machine import machine_description
from recolorize.evaluation.baselines import mkl
from recolorize.evaluation.metrics import ciede2000, delta_e2000
from recolorize.imaging import load_image
from recolorize.inference.lut import fit_lut, transfer_lut
from recolorize.inference.pipeline import Recolorizer


def _pairs(path: Path, start: int, n: int) -> list[dict[str, Path]]:
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))[start : start + n]
    return [{key: path.parent / value for key, value in row.items()} for row in rows]


def _non_monotone(table: np.ndarray) -> float:
    steps = [np.diff(table[..., c], axis=c) < -1e-4 for c in range(3)]
    return float(np.mean([s.mean() for s in steps]))


def table(recolorizer: Recolorizer, pairs: list[dict[str, Path]]) -> None:
    rows: dict[str, list[tuple[float, float]]] = {}
    seconds: dict[str, list[float]] = {"fit": [], "pooled": []}
    for pair in pairs:
        source, reference = load_image(pair["source"]), load_image(pair["reference"])
        target = load_image(pair["target"]).rgb
        prepared = recolorizer.prepare(source, reference)
        model = recolorizer.render_array(prepared, 1.0)
        outputs = {"source (no change)": source.rgb, "MKL (global affine)": mkl(source.rgb, reference.rgb)}
        for method in ("pooled", "fit"):
            start = time.perf_counter()
            lut = transfer_lut(recolorizer, prepared, 1.0, method=method)
            seconds[method].append(time.perf_counter() - start)
            outputs[f"LUT {method}"] = lut.apply(source.rgb)
        outputs["LUT fitted to the target (oracle)"] = fit_lut(source.rgb, target).apply(source.rgb)
        outputs["model (local, full output)"] = model
        for name, image in outputs.items():
            rows.setdefault(name, []).append((delta_e2000(image, model), delta_e2000(image, target)))
    base = statistics.mean(t for _, t in rows["source (no change)"])
    full = statistics.mean(t for _, t in rows["model (local, full output)"])
    print(f"{len(pairs)} pairs; ΔE2000 means")
    print(f"| {'method':36} | to model output | to target | kept |")
    print(f"|{'-' * 38}|---|---|---|")
    for name, values in rows.items():
        to_model = statistics.mean(m for m, _ in values)
        to_target = statistics.mean(t for _, t in values)
        kept = (base - to_target) / (base - full) if base != full else float("nan")
        print(f"| {name:36} | {to_model:.2f} | {to_target:.2f} | {100 * kept:.0f}% |")
    fit, model = rows["LUT fit"], rows["model (local, full output)"]
    wins = sum(f[1] < m[1] for f, m in zip(fit, model, strict=True))
    to_model = np.array([m for m, _ in fit])
    print(f"LUT fit closer to the target than the model itself on {wins} of {len(pairs)} pairs")
    print(
        f"LUT fit's ΔE2000 to the model output per pair: median {np.median(to_model):.2f}, "
        f"90th percentile {np.quantile(to_model, 0.9):.2f}, max {to_model.max():.2f}"
    )
    for method, values in seconds.items():
        print(f"LUT {method}: {statistics.median(values):.2f} s per pair (median; rendering included)")


def _global_look(rgb: np.ndarray) -> np.ndarray:
    """A smooth global look (colour matrix + gamma) that a LUT fitted to it should reproduce."""
    matrix = np.array([[0.70, 0.25, 0.05], [0.10, 0.65, 0.25], [0.15, 0.05, 0.80]])
    return np.clip(rgb @ matrix.T, 0.0, 1.0) ** 1.3


def sweep(recolorizer: Recolorizer, pairs: list[dict[str, Path]]) -> None:
    configs = [
        (prior, order, weight)
        for prior in ("identity", "affine")
        for order in (1, 2)
        for weight in (0.1, 0.3, 1.0, 3.0)
    ]
    scores: dict[tuple[str, int, float], list[tuple[float, ...]]] = {c: [] for c in configs}
    for pair in pairs:
        source = load_image(pair["source"])
        model = recolorizer.render_array(recolorizer.prepare(source, load_image(pair["reference"])), 1.0)
        image = source.rgb
        look = _global_look(image)
        half = image.shape[1] // 2
        sides = ((slice(0, half), slice(half, None)), (slice(half, None), slice(0, half)))
        for prior, order, weight in configs:
            options = {"smoothness": weight, "order": order, "prior": prior}
            start = time.perf_counter()
            full = fit_lut(image, model, **options)
            seconds = time.perf_counter() - start
            held_out = [
                delta_e2000(fit_lut(image[:, a], model[:, a], **options).apply(image[:, b]), model[:, b])
                for a, b in sides
            ]
            baked = ciede2000(rgb2lab(fit_lut(image, look, **options).apply(image)), rgb2lab(look))
            scores[(prior, order, weight)].append(
                (
                    delta_e2000(full.apply(image), model),
                    statistics.mean(held_out),
                    _non_monotone(full.table),
                    float(np.quantile(baked, 0.99)),
                    seconds,
                )
            )
    print(f"{len(pairs)} pairs; means over pairs")
    print(
        "| prior | order | weight | ΔE2000 to model output: in-sample | held-out half | non-monotone steps "
        "| global look: p99 ΔE2000 | fit (s) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for (prior, order, weight), values in scores.items():
        a = np.mean(np.array(values), axis=0)
        print(
            f"| {prior} | {order} | {weight:g} | {a[0]:.3f} | {a[1]:.3f} | {100 * a[2]:.2f}% | {a[3]:.2f} "
            f"| {a[4]:.2f} |"
        )


def demo(recolorizer: Recolorizer) -> None:
    """The README pair, where the look is local: the red cup turns blue while the warm table stays warm.
    Mean CIELAB b* (negative = blue) of the cup-and-saucer and of the table (tests/test_readme_demo.py's
    regions: the largest red part of the source, holes filled; warm pixels more than 6 px from it)."""
    from scipy import ndimage

    source = load_image("examples/source.jpg")
    prepared = recolorizer.prepare(source, "examples/reference.jpg")
    lab = rgb2lab(source.rgb)
    hue = np.degrees(np.arctan2(lab[..., 2], lab[..., 1])) % 360.0
    chroma = np.hypot(lab[..., 1], lab[..., 2])
    labels, count = ndimage.label((hue < 46.0) & (chroma > 35.0))
    sizes = ndimage.sum(labels > 0, labels, index=np.arange(1, count + 1))
    cup = ndimage.binary_fill_holes(labels == 1 + int(np.argmax(sizes)))
    table = (hue > 50.0) & (chroma > 15.0) & (ndimage.distance_transform_edt(~cup) > 6.0)
    outputs = {
        "source": source.rgb,
        "model (local)": recolorizer.render_array(prepared, 1.0),
        "LUT fit": transfer_lut(recolorizer, prepared, 1.0, method="fit").apply(source.rgb),
        "LUT pooled": transfer_lut(recolorizer, prepared, 1.0, method="pooled").apply(source.rgb),
    }
    print("| README pair | cup b* | table b* |")
    print("|---|---|---|")
    for name, image in outputs.items():
        b_star = rgb2lab(np.clip(image, 0.0, 1.0))[..., 2]
        print(f"| {name} | {b_star[cup].mean():.1f} | {b_star[table].mean():.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=Path, default=Path("reports/bench_bsds500_test/pairs.csv"))
    parser.add_argument("--start", type=int, default=0, help="first pair (0-based)")
    parser.add_argument("--n", type=int, default=40, help="number of pairs")
    parser.add_argument("--sweep", action="store_true", help="sweep the fit's smoothness instead")
    parser.add_argument("--demo", action="store_true", help="the README pair's cup and table instead")
    parser.add_argument("--weights", default=None, help="model weights (default: the shipped model)")
    args = parser.parse_args()
    print(machine_description())
    recolorizer = Recolorizer.from_pretrained(args.weights)
    if args.demo:
        demo(recolorizer)
        return
    pairs = _pairs(args.pairs, args.start, args.n)
    (sweep if args.sweep else table)(recolorizer, pairs)


if __name__ == "__main__":
    main()
