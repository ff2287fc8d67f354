"""Parameter counts and CPU forward latency of every network (issue: model core).

    .venv/bin/python benchmarks/bench_model.py [--configs paper base] [--runs 5]

Median of several runs at the config's resolution, batch 1, after one warm-up, under torch.no_grad.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from _machine import machine_description
from recolorize.config import get_config
from recolorize.networks.model import RecolorModel


def median_ms(fn: Callable[[], object], runs: int) -> float:
    fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--configs", nargs="+", default=["paper", "base"])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(machine_description())
    print(f"{'config':8} {'network':28} {'params (M)':>10} {'forward (ms)':>13}")
    for name in args.configs:
        for label, params, ms in measure(name, args.runs):
            print(f"{name:8} {label:28} {params:10.2f} {ms:13.1f}")


def measure(name: str, runs: int) -> list[tuple[str, float, float]]:
    """(network, parameters in millions, median forward ms) for one config at its resolution."""
    config = get_config(name)
    torch.manual_seed(0)
    model = RecolorModel(config).eval()
    size = config.resolution
    source, reference = torch.rand(1, 3, size, size), torch.rand(1, 3, size, size)
    results = []
    with torch.no_grad():
        code = model.self_code(source)
        maps = model.predict_maps(source, reference)
        rows = [
            ("G' (20 latent maps)", model.generator, lambda: model.generator(source, maps)),
            ("G (1d code)", model.generator, lambda: model.generator(source, code)),
            ("E_w (pair -> w)", model.w_encoder, lambda: model.pair_code(source, reference)),
            ("E_W (image -> W0)", model.map_encoder, lambda: model.self_maps(source)),
            ("P_W (incl. frozen inputs)", model.predictor, lambda: model.predict_maps(source, reference)),
            (f"semantic {config.semantic_backbone}", model.semantic, lambda: model.semantic(source)),
            (
                "whole pass (P_W, G' x2)",
                model,
                lambda: (model.recolour(source, reference), model.reconstruct(source)),
            ),
        ]
        for label, module, fn in rows:
            params = sum(p.numel() for p in module.parameters()) / 1e6
            results.append((label, params, median_ms(fn, runs)))
    return results


if __name__ == "__main__":
    main()
