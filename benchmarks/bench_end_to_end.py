"""End-to-end speed of ``recolorize transfer`` as a user meets it (issue 11): whole processes.

    .venv/bin/python benchmarks/bench_end_to_end.py [--runs 5] [--jobs 1 2] [--batch 20] [--before OLD/src]

Times, as separate processes alternating in one run (so machine load hits both alike), the command
``recolorize transfer`` on a generated 12-MP JPEG (4000x3000) with a 1600x1200 reference against a
histogram-matching one-liner on the same files (Pillow decode, ``skimage.exposure.match_histograms``,
JPEG encode at the same quality). Each process's peak RSS comes from GNU ``/usr/bin/time`` (its
"Maximum resident set size", as ``/usr/bin/time -v`` reports it). Then the batch: a folder of
``--batch`` generated 1-MP photos re-coloured by one ``recolorize transfer`` process per ``--jobs``
value, photos/s = photos / whole-process wall time (start-up included); its memory is the peak of the
summed RSS of the command and its helper processes (``--jobs N`` runs N), sampled every 20 ms.

The photos are generated (examples/ upscaled with noise and a per-photo colour cast, so the JPEGs carry
realistic detail); start-up, decode, the model, the full-resolution step and the encode are all timed.
Timings use the default thread count (no ``OMP_NUM_THREADS``); compare the ratio, not absolute seconds,
on a loaded machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from _machine import machine_description

ROOT = Path(__file__).resolve().parents[1]
RECOLORIZE = Path(sys.executable).with_name("recolorize")
QUALITY = 95

#: The baseline a user would write in a minute: decode, match histograms per channel, encode.
ONE_LINER = (
    "import sys, numpy as np; from PIL import Image; from skimage.exposure import match_histograms; "
    "s = np.asarray(Image.open(sys.argv[1]).convert('RGB')); "
    "r = np.asarray(Image.open(sys.argv[2]).convert('RGB')); "
    "Image.fromarray(np.clip(match_histograms(s, r, channel_axis=-1), 0, 255).astype(np.uint8))"
    f".save(sys.argv[3], quality={QUALITY})"
)


def generate_photo(base: Image.Image, size: tuple[int, int], seed: int, path: Path) -> None:
    """A photo-like JPEG of ``size``: ``base`` resized, a colour cast and sensor-like noise added."""
    rng = np.random.default_rng(seed)
    pixels = np.asarray(base.convert("RGB").resize(size, Image.BICUBIC), dtype=np.float32)
    pixels *= rng.uniform(0.85, 1.15, size=3).astype(np.float32)
    pixels += rng.normal(0.0, 3.0, size=pixels.shape).astype(np.float32)
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=92)


TIME = Path("/usr/bin/time")


def _tree_rss_mb(root: int) -> float:
    """Resident memory (MB) of process ``root`` and all its descendants now, from /proc (0 if gone)."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry.name)] = int(fields[1])
        rss[int(entry.name)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in tree]
        tree.update(children)
        frontier.extend(children)
    return sum(rss.get(pid, 0) for pid in tree) / 2**20


class TreeMemory:
    """Samples the summed RSS of a process tree every 20 ms in a thread: with ``--jobs N`` the command runs
    N processes, and GNU time's peak is that of the largest one only."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self.done = pid, 0.0, threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        while not self.done.wait(0.02):
            self.peak = max(self.peak, _tree_rss_mb(self.pid))

    def stop(self) -> float:
        self.done.set()
        self.thread.join()
        return self.peak


def timed(command: list[str], tree: bool = False) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one child process; its output is discarded, a failure raised.

    The peak comes from GNU time (``%M``, what ``/usr/bin/time -v`` calls "Maximum resident set size"):
    ``os.wait4`` on a child of this process would report at least this process's own peak, because Linux
    counts the parent's memory image the child had before ``exec``. Without GNU time it is used anyway
    (and the figure is then an upper bound).
    """
    wrapped = [str(TIME), "-f", "maxrss_kb=%M", *command] if TIME.exists() else command
    start = time.perf_counter()
    process = subprocess.Popen(wrapped, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    memory = TreeMemory(process.pid) if tree else None
    _, status, usage = os.wait4(process.pid, 0)
    tree_peak = memory.stop() if memory is not None else 0.0
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}): {stderr[-2000:]}")
    marks = [line for line in stderr.splitlines() if line.startswith("maxrss_kb=")]
    peak_kb = int(marks[-1].split("=", 1)[1]) if marks else usage.ru_maxrss  # Linux reports KiB
    return wall, max(peak_kb / 1024.0, tree_peak)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each process (after one warm-up)")
    parser.add_argument("--batch", type=int, default=20, help="1-MP photos in the batch folder")
    parser.add_argument("--batch-runs", type=int, default=3, help="timed runs of each batch (median)")
    parser.add_argument(
        "--jobs",
        type=int,
        nargs="*",
        default=[1, 2],
        help="--jobs values of the batch (1 = no --jobs option)",
    )
    parser.add_argument(
        "--before",
        type=Path,
        help="also time another source tree's recolorize (its src/ folder, e.g. from `git archive`), "
        "alternating with this one in the same run",
    )
    parser.add_argument("--keep", type=Path, help="write the generated photos and outputs here (kept)")
    args = parser.parse_args()
    print(machine_description())
    print(f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, load average {os.getloadavg()}")

    work = Path(tempfile.mkdtemp(prefix="bench_e2e_")) if args.keep is None else args.keep
    work.mkdir(parents=True, exist_ok=True)
    try:
        base = Image.open(ROOT / "examples" / "source.jpg")
        source, reference = work / "source_12mp.jpg", work / "reference.jpg"
        generate_photo(base, (4000, 3000), 0, source)
        generate_photo(Image.open(ROOT / "examples" / "reference.jpg"), (1600, 1200), 1, reference)
        folder = work / "batch"
        folder.mkdir(exist_ok=True)
        for n in range(args.batch):
            generate_photo(base, (1155, 866), 100 + n, folder / f"photo_{n:02d}.jpg")

        def transfer(*arguments: str, before: bool = False) -> list[str]:
            """``recolorize transfer`` of this tree, or of ``--before`` (``python -m recolorize`` through
            ``env PYTHONPATH``: the installed script's entry point may not exist in an older tree)."""
            program = [str(RECOLORIZE)]
            if before:
                program = ["env", f"PYTHONPATH={args.before.resolve()}", sys.executable, "-m", "recolorize"]
            return [
                *program,
                "transfer",
                *arguments,
                "--overwrite",
                "--quality",
                str(QUALITY),
            ]

        commands = {"ours": transfer(str(source), str(reference), "-o", str(work / "ours.jpg"))}
        if args.before is not None:
            commands["before"] = transfer(
                str(source), str(reference), "-o", str(work / "before.jpg"), before=True
            )
        commands["one-liner"] = [
            sys.executable,
            "-c",
            ONE_LINER,
            str(source),
            str(reference),
            str(work / "h.jpg"),
        ]
        print(f"12 MP: {source.stat().st_size / 1e6:.1f} MB JPEG 4000x3000, reference 1600x1200")
        print(f"ours: recolorize transfer {' '.join(commands['ours'][2:])}")
        if args.before is not None:
            print(f"before: the same with PYTHONPATH={args.before}")
        print("one-liner: Pillow decode + skimage.exposure.match_histograms(channel_axis=-1) + JPEG encode")
        walls: dict[str, list[float]] = {name: [] for name in commands}
        peaks: dict[str, list[float]] = {name: [] for name in commands}
        for run in range(args.runs + 1):  # alternating; run 0 warms the file cache and is dropped
            for name, command in commands.items():
                wall, peak = timed(command)
                if run:
                    walls[name].append(wall)
                    peaks[name].append(peak)
        print()
        header = f"| whole process, 12 MP JPEG (median of {args.runs}) | median wall (s) | min-max (s) |"
        print(header + " peak RSS (MB) | ratio to the one-liner (per-run median) |")
        print("|---|---|---|---|---|")
        labels = {
            "ours": "`recolorize transfer`",
            "before": "`recolorize transfer` before (`--before`)",
            "one-liner": "histogram-matching one-liner",
        }
        for name, w in walls.items():
            ratios = [a / b for a, b in zip(w, walls["one-liner"], strict=True)]
            spread = f"{min(w):.2f}-{max(w):.2f}"
            print(
                f"| {labels[name]} | {statistics.median(w):.2f} | {spread} | {max(peaks[name]):.0f} "
                f"| {statistics.median(w) / statistics.median(walls['one-liner']):.2f} "
                f"({statistics.median(ratios):.2f}) |"
            )

        print()
        print(
            f"| batch: {args.batch} photos of 1 MP (1155x866), one process, median of {args.batch_runs}",
            end="",
        )
        print(" | wall (s) | photos/s | peak RSS, all processes (MB) |")
        print("|---|---|---|---|")
        batches = {f"`--jobs {jobs}`" if jobs != 1 else "default (`--jobs 1`)": jobs for jobs in args.jobs}
        if args.before is not None:
            batches["before (`--before`)"] = 0
        batch_walls: dict[str, list[float]] = {label: [] for label in batches}
        batch_peaks: dict[str, list[float]] = {label: [] for label in batches}
        for _ in range(args.batch_runs):  # alternating, like the single photo
            for label, jobs in batches.items():
                options = ["--jobs", str(jobs)] if jobs > 1 else []
                command = transfer(
                    str(folder), str(reference), "-o", str(work / f"out_{jobs}"), *options, before=jobs == 0
                )
                wall, peak = timed(command, tree=True)
                batch_walls[label].append(wall)
                batch_peaks[label].append(peak)
        for label in batches:
            wall = statistics.median(batch_walls[label])
            print(f"| {label} | {wall:.2f} | {args.batch / wall:.2f} | {max(batch_peaks[label]):.0f} |")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
