"""Training throughput (images/s) of each stage on this machine, through the real training loop.

    .venv/bin/python benchmarks/bench_training.py [--configs tiny base] [--batch 4] [--warmup 2] [--steps 4]
        [--data DIR ...] [--device cpu] [--threads N]

For every config and stage: ``warmup`` steps, then ``steps`` timed steps, each logged on its own; the
figure is the median images/s of the timed steps (data loading, forward, backward and the Adam step;
checkpoint and sample writing excluded). Data: 16 MSRC-v2 photos with masks from ../shared/data unless
--data is given. On a busy machine pass --threads 1: two OpenMP threads that have to wait for each
other's core run many times slower than one.
"""

from __future__ import annotations

import argparse
import csv
import logging
import statistics
import tempfile
from pathlib import Path

import torch

from _machine import machine_description
from recolorize.training import STAGE_ORDER, TrainRequest, train

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "msrc_v2"


def sample_photos(folder: Path, count: int = 16) -> Path:
    """Link ``count`` MSRC-v2 photos and their masks into a temporary folder (dataset layout kept)."""
    root = Path(tempfile.mkdtemp(prefix="bench_photos_"))
    (root / "images").mkdir()
    (root / "masks_segments").mkdir()
    for image in sorted((folder / "images").glob("*.jpg"))[:count]:
        (root / "images" / image.name).symlink_to(image)
        mask = folder / "masks_segments" / f"{image.stem}.png"
        if mask.is_file():
            (root / "masks_segments" / mask.name).symlink_to(mask)
    return root


def stage_rate(
    config: str, stage: str, data: list[Path], batch: int, warmup: int, steps: int, device: str
) -> float:
    """Median images/s over the timed steps of one stage (a fresh run in a temporary folder)."""
    with tempfile.TemporaryDirectory(prefix="bench_run_") as run:
        overrides = {
            f"{stage}.steps": warmup + steps,
            f"{stage}.batch": batch,
            "log_every": 1,
            "checkpoint_every": 10**6,
            "sample_every": 10**6,
        }
        request = TrainRequest(
            run_dir=Path(run),
            data=tuple(data),
            stages=(stage,),
            config=config,
            overrides=overrides,
            device=device,
        )
        train(request)
        with (Path(run) / "metrics.csv").open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    return statistics.median(float(r["images_per_s"]) for r in rows[warmup:])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--configs", nargs="+", default=["tiny", "base"])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--data", nargs="+", type=Path)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's own choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    data = args.data or [sample_photos(SHARED)]
    print(machine_description())
    print(f"batch {args.batch}, {args.warmup} warm-up + {args.steps} timed steps a stage, {args.device}")
    print(f"{'config':8} {'stage':10} {'images/s':>9}")
    for config in args.configs:
        for stage in STAGE_ORDER:
            torch.manual_seed(0)
            rate = stage_rate(config, stage, data, args.batch, args.warmup, args.steps, args.device)
            print(f"{config:8} {stage:10} {rate:9.2f}", flush=True)


if __name__ == "__main__":
    main()
