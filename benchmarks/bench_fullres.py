"""Latency of the full-resolution local-affine transfer (fit at 256x256, apply to the full photo).

    .venv/bin/python benchmarks/bench_fullres.py [--sizes 1 12] [--runs 5] [--threads N]

Median of ``--runs`` timed runs after one warm-up, per source size in megapixels (4:3 photos). Wall time
and process CPU time are both printed: on a shared machine the wall time includes waiting for the
CPU, the CPU time does not. The load average is printed for the same reason.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time

import torch

from _machine import machine_description
from recolorize.torch_inference.fullres import apply_affine, fit_local_affine, full_resolution_transfer


def timed(fn, runs: int) -> tuple[float, float]:
    """(median wall ms, median process-CPU ms) over ``runs`` calls after one warm-up."""
    fn()
    wall, cpu = [], []
    for _ in range(runs):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - w0) * 1000)
        cpu.append((time.process_time() - c0) * 1000)
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", nargs="+", type=float, default=[1, 12], help="megapixels")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--working", type=int, default=256, help="working resolution of the fit")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(machine_description())
    if hasattr(os, "getloadavg"):
        print("load average (1, 5, 15 min): {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))

    torch.manual_seed(0)
    low = args.working
    before = torch.rand(1, 3, low, low)
    mix = torch.tensor([[0.8, 0.1, 0.0], [0.05, 0.85, 0.05], [0.0, 0.15, 0.7]])
    after = (torch.einsum("ij,bjhw->bihw", mix, before) + 0.05).clamp(0, 1)
    dmat, c = fit_local_affine(before, after)
    print(f"\n{'source':>22} {'fit (ms)':>9} {'apply (ms)':>11} {'total (ms)':>11} {'total CPU (ms)':>15}")
    for mp in args.sizes:
        height = int(round(math.sqrt(mp * 1e6 * 3 / 4)))
        width = int(round(height * 4 / 3))
        source = torch.rand(1, 3, height, width)
        fit_ms, _ = timed(lambda: fit_local_affine(before, after), args.runs)
        apply_ms, _ = timed(lambda s=source: apply_affine(s, dmat, c), args.runs)
        total_ms, total_cpu = timed(lambda s=source: full_resolution_transfer(s, before, after), args.runs)
        label = f"{width}x{height} ({width * height / 1e6:.1f} MP)"
        print(f"{label:>22} {fit_ms:9.1f} {apply_ms:11.1f} {total_ms:11.1f} {total_cpu:15.1f}")
        del source


if __name__ == "__main__":
    main()
