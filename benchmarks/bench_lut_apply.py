"""Speed of ``recolorize lut-apply`` and of applying a 3D LUT at full size, with no torch (issue 22).

    .venv/bin/python benchmarks/bench_lut_apply.py [--runs 5] [--before OLD/src] [--torch]

A 12 MP photo (4000x3000) is generated with NumPy (a smooth random colour field with sensor-like noise,
so the JPEG carries photo-like detail) and a 33^3 LUT (a colour matrix and a gamma) is written as a
``.cube``. Printed, with the machine and this command:

* "apply": the LUT on the decoded photo in this process, median of ``runs`` after a warm-up: the 8-bit
  path (``Lut3D.apply_8bit``, Pillow's C ``Color3DLUT``), the exact float path (``Lut3D.apply``, NumPy),
  ``prior.lattice.apply_lattice`` (the plain NumPy reference) and, with ``--torch``, the former
  ``grid_sample`` path (torch imported only for that row, after the others).
* "lut-apply": the whole command as a user runs it, a fresh process each time (start-up, decode, apply,
  encode, atomic write), JPEG in and out; wall time and peak RSS (GNU time's ``%M``). With ``--before``
  the same command from another source tree (its ``src/``, e.g. ``git archive <commit> src``), the two
  alternating so that machine load hits both alike.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
TIME = Path("/usr/bin/time")
SIZE = (4000, 3000)
MATRIX = np.array([[0.70, 0.25, 0.05], [0.10, 0.65, 0.25], [0.15, 0.05, 0.80]])


def machine() -> str:
    """CPU, cores, load, library versions and the exact command: no figure without them."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next(
                (line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu
            )
    except OSError:
        pass
    import PIL

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"machine: {cpu}, {os.cpu_count()} cores, load average {load:.2f} at the start, Python "
        f"{platform.python_version()}, NumPy {np.__version__}, Pillow {PIL.__version__}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}\n"
        f"command: {' '.join([Path(sys.executable).name, *sys.argv])}"
    )


def make_photo(path: Path, seed: int = 0) -> None:
    """A photo-like 12 MP JPEG made with NumPy: a smooth colour field (a coarse random grid, bicubic up)
    plus Gaussian noise of 3 levels."""
    rng = np.random.default_rng(seed)
    coarse = (rng.random((12, 16, 3)) * 255).astype(np.uint8)
    field = np.asarray(Image.fromarray(coarse).resize(SIZE, Image.BICUBIC), dtype=np.float32)
    field += rng.normal(0.0, 3.0, size=field.shape).astype(np.float32)
    Image.fromarray(np.clip(field, 0, 255).astype(np.uint8)).save(path, quality=95)


def graded_table(size: int = 33) -> np.ndarray:
    """A global look on the identity lattice: a colour matrix, then a gamma."""
    axis = np.linspace(0.0, 1.0, size)
    r, g, b = np.meshgrid(axis, axis, axis, indexing="ij")
    return np.clip(np.stack([r, g, b], axis=-1) @ MATRIX.T, 0.0, 1.0) ** 1.3


def median_seconds(fn: Callable[[], object], runs: int) -> float:
    fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def torch_grid_sample(table: np.ndarray, rgb: np.ndarray) -> np.ndarray:
    """The former ``apply_lut`` (before issue 22): ``grid_sample`` on the table, domain 0-1, no curves."""
    import torch
    import torch.nn.functional as F

    pixels = torch.from_numpy(np.ascontiguousarray(rgb.reshape(-1, 3), dtype=np.float32))
    volume = torch.from_numpy(np.ascontiguousarray(table.transpose(3, 0, 1, 2), dtype=np.float32))[None]
    out = np.empty((len(pixels), 3), dtype=np.float32)
    block = 1 << 22
    for start in range(0, len(pixels), block):
        grid = pixels[start : start + block].flip(-1).mul(2.0).sub_(1.0)
        sampled = F.grid_sample(
            volume, grid.view(1, 1, 1, -1, 3), mode="bilinear", padding_mode="border", align_corners=True
        )
        out[start : start + len(grid)] = sampled.view(3, -1).T.numpy()
    return out.reshape(rgb.shape)


def run_command(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one process running ``command``."""
    wrapped = [str(TIME), "-f", "maxrss_kb=%M", *command] if TIME.exists() else command
    start = time.perf_counter()
    done = subprocess.run(wrapped, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    marks = [line for line in done.stderr.splitlines() if line.startswith("maxrss_kb=")]
    return wall, (int(marks[-1].split("=", 1)[1]) / 1024 if marks else float("nan"))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--before", type=Path, default=None, help="another tree's src/ to time alike")
    parser.add_argument("--torch", action="store_true", help="also time the former torch grid_sample path")
    args = parser.parse_args()
    print(machine())

    from recolorize.imaging import load_image, to_uint8
    from recolorize.inference.lut import Lut3D, write_cube
    from recolorize.prior.lattice import apply_lattice

    lut = Lut3D(graded_table())
    with tempfile.TemporaryDirectory() as folder:
        photo, cube = Path(folder) / "photo.jpg", Path(folder) / "look.cube"
        make_photo(photo)
        write_cube(lut, cube)
        rgb = load_image(photo).rgb
        samples = to_uint8(rgb)
        print(f"\napply a 33^3 LUT to a decoded 12 MP photo ({SIZE[0]}x{SIZE[1]}), median of {args.runs}:")
        rows: list[tuple[str, Callable[[], object]]] = []
        if hasattr(lut, "apply_8bit"):
            rows.append(
                ("Lut3D.apply_8bit (Pillow Color3DLUT, uint8 in/out)", lambda: lut.apply_8bit(samples))
            )
        rows += [
            ("Lut3D.apply (float32)", lambda: lut.apply(rgb)),
            ("prior.lattice.apply_lattice (NumPy reference)", lambda: apply_lattice(lut.table, rgb)),
        ]
        for label, fn in rows:
            print(f"  {label:55} {median_seconds(fn, args.runs):6.3f} s")

        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        command = [sys.executable, "-m", "recolorize", "lut-apply", str(cube), str(photo)]
        trees = {"this tree": env}
        if args.before is not None:
            trees["--before"] = {**os.environ, "PYTHONPATH": str(args.before.resolve())}
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in trees}
        for index in range(args.runs + 1):  # the first round warms the page cache
            for name, tree_env in trees.items():
                out = Path(folder) / f"out-{len(results[name])}.jpg"
                timing = run_command([*command, "-o", str(out), "--overwrite"], tree_env)
                if index:
                    results[name].append(timing)
        print(f"\n`recolorize lut-apply`, 12 MP JPEG in and out, whole process, median of {args.runs}:")
        for name, timings in results.items():
            walls = [wall for wall, _ in timings]
            peak = max(rss for _, rss in timings)
            print(
                f"  {name:12} {statistics.median(walls):6.2f} s (min {min(walls):.2f}, "
                f"max {max(walls):.2f}), peak RSS {peak:.0f} MB"
            )
        if args.torch:
            seconds = median_seconds(lambda: torch_grid_sample(lut.table, rgb), args.runs)
            import torch

            print(f"\n  former torch grid_sample ({torch.get_num_threads()} threads) {seconds:6.3f} s")


if __name__ == "__main__":
    main()
