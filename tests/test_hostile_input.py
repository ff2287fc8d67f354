"""Hostile but fair input (issue 12, items 1-8): no traceback, no hang, no file outside ``-o``.

Each numbered case of the issue has a regression test here, built from the exact input that showed the
defect; a seeded fuzz test then sends a few hundred mutated images (truncations, bit flips, header edits,
EXIF/ICC corruption, mode and size extremes) through ``load_image`` and the CLI entry point. Everything
runs on tiny images and the tiny pointwise model, so the file takes seconds.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import pickle
import signal
import struct
import subprocess
import sys
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms
from safetensors.torch import load_file, save_file

from cli_helpers import assert_one_error_line, picture
from recolorize.cli import main
from recolorize.errors import UserError, WeightsError
from recolorize.imaging import (
    DECODE_BYTES_PER_PIXEL,
    DEFAULT_MAX_PIXELS,
    MAX_PIXELS_ENV,
    LoadedImage,
    load_image,
    parse_max_pixels,
)
from recolorize.inference.pipeline import Recolorizer

ORIENTATION = 0x0112


# ------------------------------------------------------------------------------------------- helpers


class Overtime(Exception):
    """Raised by ``deadline`` in the main thread when a case runs past its time bound."""


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Fail (instead of hanging the suite) when the block runs longer than ``seconds``."""

    def expire(signum: int, frame: object) -> None:
        raise Overtime(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def exif_block(tag: int, typ: int, count: int, value: bytes) -> bytes:
    """A little-endian EXIF block with one IFD entry, written byte by byte (Pillow refuses bad types)."""
    entry = struct.pack("<HHI", tag, typ, count) + value.ljust(4, b"\0")[:4]
    return b"Exif\x00\x00" + b"II*\x00" + struct.pack("<IH", 8, 1) + entry + struct.pack("<I", 0)


def encode(array: np.ndarray, fmt: str = "JPEG", **params: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt, **params)
    return buf.getvalue()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_bomb(width: int, height: int, rows: int = 0) -> bytes:
    """An RGB PNG whose header says width x height; ``rows`` all-zero rows of data (the rest missing)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    packer = zlib.compressobj(9)
    row = b"\0" * (1 + 3 * width)
    data = b"".join(packer.compress(row) for _ in range(rows)) + packer.flush()
    return (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", data) + png_chunk(b"IEND", b"")
    )


def run(args: list[str], capsys: pytest.CaptureFixture[str], seconds: float = 60) -> tuple[int, list[str]]:
    """The CLI entry point in-process: (exit code, non-empty stderr lines)."""
    capsys.readouterr()
    with deadline(seconds):
        code = main(args)
    err = capsys.readouterr().err
    return code, [line for line in err.replace("\r", "\n").splitlines() if line.strip()]


def run_subprocess(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The real command, as a user runs it (one thread, stderr captured)."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "recolorize", *args], capture_output=True, text=True, timeout=120, env=full_env
    )


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


@pytest.fixture()
def pair(tmp_path: Path) -> tuple[Path, Path]:
    """A small JPEG source and PNG reference in ``tmp_path``."""
    source, reference = tmp_path / "source.jpg", tmp_path / "reference.png"
    source.write_bytes(encode(picture(48, 64), quality=92))
    reference.write_bytes(encode(picture(40, 56, seed=1)[:, ::-1].copy(), "PNG"))
    return source, reference


# ---------------------------------------------------------------- 1. EXIF orientation, batch robustness

BAD_ORIENTATIONS = {
    "text 'ab'": (2, 3, b"ab\0"),
    "zero": (3, 1, struct.pack("<H", 0)),
    "nine": (3, 1, struct.pack("<H", 9)),
    "65535": (3, 1, struct.pack("<H", 65535)),
    "SSHORT -1": (8, 1, struct.pack("<h", -1)),
    "FLOAT 6.0": (11, 1, struct.pack("<f", 6.0)),
    "a LONG 6": (4, 1, struct.pack("<I", 6)),
}


@pytest.mark.parametrize("case", list(BAD_ORIENTATIONS))
def test_malformed_orientation_counts_as_one(case: str) -> None:
    typ, count, value = BAD_ORIENTATIONS[case]
    pixels = picture(48, 64)
    plain = load_image(encode(pixels, quality=95))
    odd = load_image(encode(pixels, quality=95, exif=exif_block(ORIENTATION, typ, count, value)))
    if case == "a LONG 6":  # Pillow reads a LONG as the int 6: a real orientation, applied
        assert odd.rgb.shape == (64, 48, 3)
    else:
        assert np.array_equal(odd.rgb, plain.rgb)  # upright as stored: counted as 1
    saved = Image.Exif()
    saved.load(odd.exif)
    assert saved[ORIENTATION] == 1  # and the output's EXIF says so, as a proper SHORT


def test_text_orientation_works_as_source_and_as_reference(
    tiny_weights: Path, pair: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, reference = pair
    odd = tmp_path / "odd.jpg"
    odd.write_bytes(encode(picture(48, 64), exif=exif_block(ORIENTATION, 2, 3, b"ab\0")))
    for src, ref, out in ((odd, reference, "a.png"), (source, odd, "b.png")):
        code, lines = run(
            ["transfer", str(src), str(ref), "-o", str(tmp_path / out), "--weights", str(tiny_weights)],
            capsys,
        )
        assert code == 0, lines
        assert Image.open(tmp_path / out).size == (64, 48)


def test_folder_batch_names_and_skips_any_failure(
    tiny_weights: Path,
    pair: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A file that fails to decode, a FIFO, and a pair that makes the pipeline itself raise (not a
    UserError): each one named in one line, the others written, exit 1."""
    _, reference = pair
    photos = tmp_path / "photos"
    photos.mkdir()
    good = encode(picture(48, 64))
    for name in ("a.jpg", "crash.jpg", "e.jpg"):
        (photos / name).write_bytes(good)
    (photos / "b.jpg").write_bytes(encode(picture(48, 64), exif=exif_block(ORIENTATION, 2, 3, b"ab\0")))
    (photos / "c.jpg").write_text("not an image")
    os.mkfifo(photos / "d.jpg")
    original = Recolorizer.render_array

    def render_array(self: Recolorizer, prepared, strength: float = 1.0, **options):  # noqa: ANN001, ANN003
        if prepared.source.path is not None and prepared.source.path.name == "crash.jpg":
            raise RuntimeError("boom from inside the model")
        return original(self, prepared, strength, **options)

    monkeypatch.setattr(Recolorizer, "render_array", render_array)
    out = tmp_path / "out"
    code, lines = run(
        ["transfer", str(photos), str(reference), "-o", str(out), "--weights", str(tiny_weights)], capsys
    )
    assert code == 1
    errors = [line for line in lines if line.startswith("recolorize: error:")]
    assert len(errors) == 3, lines
    assert any("c.jpg" in e for e in errors) and any("d.jpg" in e and "FIFO" in e for e in errors)
    assert any("crash.jpg" in e and "RuntimeError" in e and "boom" in e for e in errors)
    assert sorted(p.name for p in out.iterdir()) == ["a.jpg", "b.jpg", "e.jpg"]
    assert "3 of 6 photos failed" in lines[-1]


# ------------------------------------------------------------------------ 2. one reader for the limit


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1e7", 10_000_000),
        ("4e7", 40_000_000),
        ("40_000_000", 40_000_000),
        (" 12288 ", 12288),
        (5, 5),
        (1e3, 1000),
    ],
)
def test_max_pixels_accepts_whole_numbers(text: object, expected: int) -> None:
    assert parse_max_pixels(text) == expected


@pytest.mark.parametrize(
    "text", ["garbage", "", "1.5", "0", "-3", "inf", "nan", "1e400", "0x10", True, 0, 2.5]
)
def test_max_pixels_refuses_everything_else(text: object) -> None:
    with pytest.raises(UserError) as error:
        parse_max_pixels(text, MAX_PIXELS_ENV)
    assert MAX_PIXELS_ENV in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("env", "flag"), [("garbage", None), ("0", None), (None, "0"), (None, "garbage"), ("-1", None)]
)
def test_bad_limit_from_flag_or_environment_is_one_line(
    env: str | None,
    flag: str | None,
    tiny_weights: Path,
    pair: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source, reference = pair
    if env is not None:
        monkeypatch.setenv(MAX_PIXELS_ENV, env)
    extra = ["--max-pixels", flag] if flag is not None else []
    code, lines = run(
        [
            "transfer",
            str(source),
            str(reference),
            "-o",
            str(tmp_path / "o.png"),
            *extra,
            "--weights",
            str(tiny_weights),
        ],
        capsys,
    )
    assert_one_error_line(code, lines)
    assert (MAX_PIXELS_ENV if env is not None else "--max-pixels") in lines[0]
    assert not (tmp_path / "o.png").exists()


def test_limit_1e7_and_the_flag_over_the_environment(
    tiny_weights: Path,
    pair: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source, reference = pair
    monkeypatch.setenv(MAX_PIXELS_ENV, "1e7")
    args = ["transfer", str(source), str(reference), "--weights", str(tiny_weights)]
    assert run([*args, "-o", str(tmp_path / "a.png")], capsys)[0] == 0
    monkeypatch.setenv(MAX_PIXELS_ENV, "100")  # would refuse the 48x64 source...
    assert (
        run([*args, "-o", str(tmp_path / "b.png"), "--max-pixels", "4e3"], capsys)[0] == 0
    )  # ...the flag wins
    code, lines = run([*args, "-o", str(tmp_path / "c.png")], capsys)
    assert_one_error_line(code, lines)
    assert "limit of 100 pixels" in lines[0]


# --------------------------------------------------------------------------------------- 3. --size


@pytest.mark.parametrize("size", ["99968", "0", "32", "100", "1088", "-64"])
def test_size_is_bounded(
    size: str, tiny_weights: Path, pair: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, reference = pair
    code, lines = run(
        [
            "transfer",
            str(source),
            str(reference),
            "-o",
            str(tmp_path / "o.png"),
            "--size",
            size,
            "--weights",
            str(tiny_weights),
        ],
        capsys,
    )
    assert_one_error_line(code, lines)
    assert "--size" in lines[0] and "1024" in lines[0]


# ---------------------------------------------------------------------- 4. FIFOs, devices, folders


@pytest.mark.parametrize("role", ["source", "reference"])
def test_fifo_is_refused_without_blocking(
    role: str, tiny_weights: Path, pair: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, reference = pair
    fifo = tmp_path / "in.jpg"
    os.mkfifo(fifo)
    args = [str(fifo), str(reference)] if role == "source" else [str(source), str(fifo)]
    code, lines = run(
        ["transfer", *args, "-o", str(tmp_path / "o.png"), "--weights", str(tiny_weights)], capsys, seconds=20
    )
    assert_one_error_line(code, lines)
    assert "FIFO" in lines[0] and str(fifo) in lines[0]


def test_load_image_refuses_what_is_not_a_regular_file(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    for path, words in ((fifo, "FIFO"), (Path("/dev/zero"), "device"), (tmp_path, "directory")):
        with deadline(10), pytest.raises(UserError, match=words):
            load_image(path)


# ----------------------------------------------------------------------------------- 5. pairs CSV


def write_csv(path: Path, rows: list[list[str]], bom: bool = True) -> Path:
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + buf.getvalue().encode("utf-8"))
    return path


def test_pairs_csv_with_bom_bad_rows_and_escaping_outputs(
    tiny_weights: Path, pair: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, reference = pair
    outside = tmp_path / "outside"
    outside.mkdir()
    out = tmp_path / "work" / "out"
    out.mkdir(parents=True)
    (out / "link").symlink_to(outside, target_is_directory=True)
    rows = [
        ["source", "reference", "output"],
        [source.name, reference.name, "good.png"],  # line 2
        [source.name],  # 3: no reference (was a TypeError)
        [source.name, "", "x.png"],  # 4
        [source.name, reference.name, "../../x.jpg"],  # 5
        [source.name, reference.name, str(outside / "abs.jpg")],  # 6
        [source.name, reference.name, "link/through.jpg"],  # 7: a symlink out of -o
        [source.name, reference.name, "anim.gif"],  # 8: a suffix we do not write
        ["missing.jpg", reference.name, "m.png"],  # 9
        [source.name, reference.name, "sub/dir/deep.jpg"],  # 10
    ]
    pairs = write_csv(tmp_path / "pairs.csv", rows)
    before_outside = files_under(tmp_path) - files_under(out)
    code, lines = run(
        ["transfer", "--pairs", str(pairs), "-o", str(out), "--weights", str(tiny_weights)], capsys
    )
    assert code == 1
    errors = [line for line in lines if line.startswith("recolorize: error:")]
    assert [int(e.split(" line ")[1].split(":")[0]) for e in errors] == [3, 4, 5, 6, 7, 8, 9], errors
    assert all("skipped" in e for e in errors)
    assert files_under(out) == {out / "good.png", out / "sub" / "dir" / "deep.jpg"}
    assert files_under(tmp_path) - files_under(out) == before_outside  # nothing written outside -o
    assert not list(outside.iterdir())


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"source,reference\n\xff\xfe\xfa,x.png\n", "not UTF-8"),
        (b"\xef\xbb\xbfa,b\nx,y\n", "needs a header"),
        (b"", "needs a header"),
        (b"source,reference\n", "no pairs"),
    ],
)
def test_unreadable_pairs_file_is_one_line(
    content: bytes, words: str, tiny_weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pairs = tmp_path / "pairs.csv"
    pairs.write_bytes(content)
    code, lines = run(
        ["transfer", "--pairs", str(pairs), "-o", str(tmp_path / "out"), "--weights", str(tiny_weights)],
        capsys,
    )
    assert_one_error_line(code, lines)
    assert words in lines[0]
    assert not (tmp_path / "out").exists()


def test_pairs_csv_with_a_bom_header_runs(
    tiny_weights: Path, pair: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, reference = pair
    pairs = write_csv(tmp_path / "pairs.csv", [["source", "reference"], [source.name, reference.name]])
    code, lines = run(
        ["transfer", "--pairs", str(pairs), "-o", str(tmp_path / "out"), "--weights", str(tiny_weights)],
        capsys,
    )
    assert code == 0, lines
    assert (tmp_path / "out" / source.name).is_file()


# -------------------------------------------------------- 6. validate first; quiet unless --verbose


def test_unsupported_output_suffix_is_refused_before_anything_loads(
    pair: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The weight file here is garbage and the reference is not an image: the suffix error comes first,
    so neither was looked at (before the fix, the model ran for up to 13 s before the refusal)."""
    source, _ = pair
    bad_weights = tmp_path / "bad.safetensors"
    bad_weights.write_bytes(b"garbage!" * 4)
    not_image = tmp_path / "notes.png"
    not_image.write_text("text")
    for output in ("out.gif", "out"):
        start = time.perf_counter()
        code, lines = run(
            [
                "transfer",
                str(source),
                str(not_image),
                "-o",
                str(tmp_path / output),
                "--weights",
                str(bad_weights),
            ],
            capsys,
        )
        assert_one_error_line(code, lines)
        assert "suffix" in lines[0] and time.perf_counter() - start < 5


def test_errors_after_the_weights_check_are_one_line(
    tiny_weights: Path, pair: tuple[Path, Path], tmp_path: Path
) -> None:
    """An error found after the weights were checked (a 20 px reference) is still one line, with no
    'loading ...' line before it; a normal run prints the result line only; --verbose tells more."""
    source, _ = pair
    small = tmp_path / "small.png"
    small.write_bytes(encode(picture(20, 64), "PNG"))
    result = run_subprocess(
        "transfer", str(source), str(small), "-o", str(tmp_path / "o.png"), "--weights", str(tiny_weights)
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"recolorize: error: {small} is 64x20 pixels; both sides must be at least 32"
    ]
    quiet = run_subprocess(
        "transfer", str(source), str(source), "-o", str(tmp_path / "q.png"), "--weights", str(tiny_weights)
    )
    assert quiet.returncode == 0 and quiet.stderr.strip().splitlines() == [
        f"wrote {tmp_path / 'q.png'} (PNG, {(tmp_path / 'q.png').stat().st_size} bytes)"
    ]
    loud = run_subprocess(
        "transfer",
        str(source),
        str(source),
        "-o",
        str(tmp_path / "v.png"),
        "--weights",
        str(tiny_weights),
        "--verbose",
    )
    # (the exported model holds its EfficientNet-Lite0 layers: no backbone file is loaded, so no line for it)
    assert loud.returncode == 0 and f"loaded {source}: " in loud.stderr
    assert len(loud.stderr.strip().splitlines()) > len(quiet.stderr.strip().splitlines())


# --------------------------------------------------------------------------- 7. decompression bombs


@pytest.mark.parametrize(
    ("width", "height", "limit", "shown"),
    [
        (20000, 20000, None, f"{DEFAULT_MAX_PIXELS:,}"),  # over twice the cap: Pillow's own error, restated
        (15000, 10000, None, f"{DEFAULT_MAX_PIXELS:,}"),  # between the cap and twice it
        (6000, 6000, "3e7", "30,000,000"),
    ],
)
def test_bomb_message_states_the_users_limit(
    width: int, height: int, limit: str | None, shown: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_bomb(width, height))
    if limit is not None:
        monkeypatch.setenv(MAX_PIXELS_ENV, limit)
    cap = Image.MAX_IMAGE_PIXELS
    with deadline(5), pytest.raises(UserError) as error:
        load_image(bomb)
    message = str(error.value)
    assert f"limit of {shown} pixels" in message and f"{width * height:,}" in message
    assert "200000000" not in message and "200,000,000" not in message
    assert Image.MAX_IMAGE_PIXELS == cap  # Pillow's global cap is put back


def test_decode_is_refused_from_the_header_and_bounded_by_the_limit(tmp_path: Path) -> None:
    """A 36 MP zlib bomb of ~100 KB: refused at once under a 10 MP limit (nothing decoded), and an
    image under the limit costs at most ``DECODE_BYTES_PER_PIXEL`` bytes of arrays per pixel."""
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_bomb(6000, 6000, rows=6000))
    start = time.perf_counter()
    with pytest.raises(UserError, match="10,000,000"):
        load_image(bomb, max_pixels=10_000_000)
    assert time.perf_counter() - start < 0.5
    side = 1000
    photo = tmp_path / "photo.png"
    photo.write_bytes(encode(np.tile(picture(50, 50), (side // 50, side // 50, 1)), "PNG"))
    tracemalloc.start()
    try:
        loaded = load_image(photo)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert loaded.rgb.shape == (side, side, 3)
    assert peak / side**2 < DECODE_BYTES_PER_PIXEL  # numpy arrays (Pillow's 4 B/px buffer is not traced)


# --------------------------------------------------------------------------------- 8. weight files


class Payload:
    """A pickle that would create a file if anything ever unpickled it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[..., object], tuple[object, ...]]:
        return (Path.touch, (self.marker,))


def _bad_weights(good: Path, folder: Path, marker: Path) -> dict[str, Path]:
    """Every bad weight file of issue 12 (item 8), each in its own folder with a model.json."""
    data = good.read_bytes()
    config = json.loads(good.with_suffix(".json").read_text())
    state = load_file(str(good))
    conv = next(k for k, v in state.items() if v.ndim == 4)
    cases: dict[str, tuple[bytes, object]] = {
        "pickle renamed": (pickle.dumps(Payload(marker)), config),
        "torch.save zip renamed": (b"PK\x03\x04" + b"\0" * 60, config),
        "7 bytes": (data[:7], config),
        "20 bytes": (data[:20], config),
        "half": (data[: len(data) // 2], config),
        "minus one byte": (data[:-1], config),
        "header length 2^62": (struct.pack("<Q", 2**62) + data[8:], config),
        "config unknown key": (data, {**config, "colour": True}),
        "config list field": (data, {**config, "latent_dim": [16]}),
        "config string field": (data, {**config, "encoder_width": "8"}),
        "config not json": (data, "{oops"),
        "config huge": (data, {**config, "latent_dim": 10**9}),
    }
    edits = {
        "wrong shape": {**state, conv: torch.zeros(1, 1, 1, 1)},
        "missing key": {k: v for k, v in state.items() if k != conv},
        "extra key": {**state, "extra.weight": torch.zeros(3)},
    }
    for name, tensors in edits.items():
        scratch = folder / "scratch.safetensors"
        save_file(tensors, str(scratch))
        cases[name] = (scratch.read_bytes(), config)
    paths = {}
    for k, (name, (blob, cfg)) in enumerate(cases.items()):
        path = folder / f"case{k}" / "model.safetensors"
        path.parent.mkdir()
        path.write_bytes(blob)
        path.with_suffix(".json").write_text(cfg if isinstance(cfg, str) else json.dumps(cfg))
        paths[name] = path
    return paths


@pytest.fixture(scope="module")
def bad_weights(tiny_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Path], Path]:
    folder = tmp_path_factory.mktemp("bad_weights")
    marker = folder / "UNPICKLED"
    return _bad_weights(tiny_weights, folder, marker), marker


BAD_WEIGHT_CASES = [
    "pickle renamed",
    "torch.save zip renamed",
    "7 bytes",
    "20 bytes",
    "half",
    "minus one byte",
    "header length 2^62",
    "config unknown key",
    "config list field",
    "config string field",
    "config not json",
    "config huge",
    "wrong shape",
    "missing key",
    "extra key",
]


@pytest.mark.parametrize("case", BAD_WEIGHT_CASES)
def test_bad_weights_are_one_line_everywhere(
    case: str,
    bad_weights: tuple[dict[str, Path], Path],
    pair: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    paths, marker = bad_weights
    path = paths[case]
    with pytest.raises(WeightsError) as error:
        Recolorizer.from_pretrained(path=path)
    assert isinstance(error.value, ValueError) and isinstance(error.value, UserError)
    assert str(path.parent) in str(error.value) and "\n" not in str(error.value)
    source, reference = pair
    code, lines = run(
        ["transfer", str(source), str(reference), "-o", str(tmp_path / "o.png"), "--weights", str(path)],
        capsys,
    )
    assert_one_error_line(code, lines)
    code, lines = run(["app", "--port", "0", "--weights", str(path)], capsys, seconds=30)
    assert_one_error_line(code, lines)
    assert not (tmp_path / "o.png").exists()
    assert not marker.exists()  # nothing was ever unpickled


def test_bad_weights_in_a_real_process_have_no_traceback(
    bad_weights: tuple[dict[str, Path], Path], pair: tuple[Path, Path], tmp_path: Path
) -> None:
    paths, marker = bad_weights
    source, reference = pair
    for case in ("pickle renamed", "header length 2^62"):
        result = run_subprocess(
            "transfer",
            str(source),
            str(reference),
            "-o",
            str(tmp_path / "o.png"),
            "--weights",
            str(paths[case]),
        )
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "Traceback" not in result.stderr
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------- fuzz

FUZZ_SEED = 12
FUZZ_MUTANTS_PER_BASE = 36
CASE_SECONDS = 5.0


def _icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _base_images() -> dict[str, bytes]:
    """Small valid files of every kind the loader handles, with EXIF and ICC where the format has them."""
    rgb = picture(40, 48)
    exif = exif_block(ORIENTATION, 3, 1, struct.pack("<H", 6))
    rgba = np.concatenate([rgb, np.full((*rgb.shape[:2], 1), 200, np.uint8)], axis=-1)
    sixteen = io.BytesIO()
    Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(sixteen, "PNG")  # I;16 grey
    return {
        "jpeg": encode(rgb, quality=90, exif=exif, icc_profile=_icc()),
        "png": encode(rgb, "PNG", exif=exif, icc_profile=_icc()),
        "png-rgba": encode(rgba, "PNG"),
        "png-16": sixteen.getvalue(),
        "png-palette": encode(
            np.asarray(Image.fromarray(rgb).quantize(16).convert("RGB")), "PNG", optimize=True
        ),
        "tiff": encode(rgb, "TIFF", compression="tiff_deflate"),
        "webp": encode(rgb, "WEBP", quality=80),
        "bmp": encode(rgb, "BMP"),
        "gif": encode(rgb, "GIF"),
    }


def _edit_png_size(data: bytes, rng: np.random.Generator) -> bytes:
    """Rewrite the PNG IHDR width/height with an extreme value, CRC fixed so the header parses."""
    if not data.startswith(b"\x89PNG"):
        return data
    w, h = (int(rng.choice([0, 1, 31, 32, 65535, 2**31 - 1, 100000])) for _ in range(2))
    body = struct.pack(">II", w, h) + data[24:29]
    return data[:8] + png_chunk(b"IHDR", body) + data[33:]


def _corrupt_segment(data: bytes, marker: bytes, rng: np.random.Generator) -> bytes:
    """Scramble bytes inside the first segment that starts with ``marker`` (EXIF or ICC payload)."""
    at = data.find(marker)
    if at < 0:
        return data
    out = bytearray(data)
    start = at + len(marker)
    for _ in range(int(rng.integers(1, 12))):
        pos = start + int(rng.integers(0, 64))
        if pos < len(out):
            out[pos] = int(rng.integers(0, 256))
    return bytes(out)


def _mutants(seed: int) -> Iterator[tuple[str, bytes]]:
    """Seeded mutants of every base image, then size and mode extremes built from scratch."""
    rng = np.random.default_rng(seed)
    for base_name, base in _base_images().items():
        for k in range(FUZZ_MUTANTS_PER_BASE):
            kind = ("truncate", "bitflip", "header", "size", "exif", "icc")[k % 6]
            data = bytearray(base)
            if kind == "truncate":
                data = data[: int(rng.integers(0, len(data)))]
            elif kind == "bitflip":
                for _ in range(int(rng.integers(1, 9))):
                    pos = int(rng.integers(0, len(data)))
                    data[pos] ^= 1 << int(rng.integers(0, 8))
            elif kind == "header":
                for _ in range(int(rng.integers(1, 5))):
                    data[int(rng.integers(0, min(64, len(data))))] = int(rng.integers(0, 256))
            elif kind == "size":
                data = bytearray(_edit_png_size(bytes(data), rng))
                if not base.startswith(b"\x89PNG"):  # other formats: scramble a width/height-sized field
                    pos = int(rng.integers(4, min(40, len(data) - 4)))
                    data[pos : pos + 4] = struct.pack(">I", int(rng.integers(0, 2**32)))
            elif kind == "exif":
                data = bytearray(_corrupt_segment(bytes(data), b"Exif\x00\x00", rng))
                if rng.random() < 0.5:  # or an orientation of a random type, count and value
                    typ, count = int(rng.integers(0, 13)), int(rng.integers(0, 5))
                    block = exif_block(ORIENTATION, typ, count, rng.bytes(4))
                    data = bytearray(encode(picture(40, 48), quality=80, exif=block))
            else:
                data = bytearray(_corrupt_segment(bytes(data), b"acsp", rng))  # inside the ICC header
                if rng.random() < 0.5:
                    icc = bytearray(_icc())
                    icc = icc[: int(rng.integers(0, len(icc)))] if rng.random() < 0.5 else icc
                    for _ in range(8):
                        if icc:
                            icc[int(rng.integers(0, len(icc)))] = int(rng.integers(0, 256))
                    data = bytearray(encode(picture(40, 48), "PNG", icc_profile=bytes(icc)))
            yield f"{base_name}/{kind}/{k}", bytes(data)
    shapes = [(32, 32), (31, 64), (32, 1500), (1500, 32), (1, 1), (33, 47)]
    png_modes = ("1", "L", "LA", "P", "I;16", "RGB", "RGBA")
    jpeg_modes = ("L", "CMYK", "RGB")
    for h, w in shapes:
        for mode in ("1", "L", "LA", "P", "I", "I;16", "F", "CMYK", "RGB", "RGBA"):
            image = Image.fromarray(picture(h, w, seed=h + w))
            if mode in ("I", "I;16"):
                image = image.convert("L").convert("I").point(lambda v: v * 200)
                image = image.convert("I;16") if mode == "I;16" else image
            elif mode == "F":
                image = image.convert("L").convert("F").point(lambda v: v / 255.0)
            else:
                image = image.convert(mode)
            fmt = "JPEG" if mode in jpeg_modes and (h + w) % 2 else "PNG" if mode in png_modes else "TIFF"
            buf = io.BytesIO()
            image.save(buf, format=fmt)
            yield f"extreme/{mode}/{h}x{w}/{fmt}", buf.getvalue()


def _check_loaded(result: LoadedImage) -> None:
    assert result.rgb.dtype == np.float32 and result.rgb.ndim == 3 and result.rgb.shape[-1] == 3
    assert min(result.rgb.shape[:2]) >= 32
    assert np.isfinite(result.rgb).all() and result.rgb.min() >= 0.0 and result.rgb.max() <= 1.0


def test_fuzz_load_image_gives_an_image_or_one_user_error(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """At least 300 seeded mutants, each from bytes and from a file: a LoadedImage or a one-line
    UserError, within the time bound; neither Pillow's warnings nor libtiff's C messages reach stderr."""
    outcomes = {"image": 0, "error": 0}
    mutants = list(_mutants(FUZZ_SEED))
    assert len(mutants) >= 300
    path = tmp_path / "mutant"
    for name, data in mutants:
        path.write_bytes(data)
        for source in (data, path):
            start = time.perf_counter()
            try:
                with deadline(CASE_SECONDS), warnings_kept_off_stderr():
                    _check_loaded(load_image(source, max_pixels=4_000_000))
                outcomes["image"] += 1
            except UserError as error:
                assert "\n" not in str(error) and str(error), name
                outcomes["error"] += 1
            except Exception as error:  # noqa: BLE001 - report which mutant broke through
                pytest.fail(f"{name}: {type(error).__name__}: {error}")
            assert time.perf_counter() - start < CASE_SECONDS, name
    assert outcomes["image"] > 50 and outcomes["error"] > 50, outcomes  # the mix really exercises both
    assert capfd.readouterr().err == ""


@contextlib.contextmanager
def warnings_kept_off_stderr() -> Iterator[None]:
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    assert not caught, [str(w.message) for w in caught]


def test_fuzz_cli_gives_a_result_or_exit_2_with_one_line(
    tiny_weights: Path, pair: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every 12th mutant through ``recolorize transfer`` in-process (as source, or as reference): exit 0
    with the output written, or exit 2 with one line and no file left behind."""
    source, reference = pair
    mutants = list(_mutants(FUZZ_SEED))[::12]
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    codes = set()
    for k, (name, data) in enumerate(mutants):
        mutant = tmp_path / f"mutant{k}.png"
        mutant.write_bytes(data)
        out = out_dir / f"out{k}.png"
        as_source = k % 2 == 0
        inputs = [str(mutant), str(reference)] if as_source else [str(source), str(mutant)]
        start = time.perf_counter()
        code, lines = run(["transfer", *inputs, "-o", str(out), "--weights", str(tiny_weights)], capsys, 30)
        assert time.perf_counter() - start < 30, name
        codes.add(code)
        if code == 0:
            expected = load_image(data if as_source else source).rgb.shape[:2]
            assert out.is_file() and load_image(out).rgb.shape[:2] == expected, name
        else:
            assert_one_error_line(code, lines)
            assert not out.exists(), name
    assert codes == {0, 2}
    written = {p.name for p in out_dir.iterdir()}
    assert written <= {f"out{k}.png" for k in range(len(mutants))}  # no temporary file left


def test_fuzz_mutants_in_real_processes_end_in_one_line_without_traceback(
    tiny_weights: Path, pair: tuple[Path, Path], tmp_path: Path
) -> None:
    """Three failing mutants through the real command, as a user runs it: stderr is exactly the error
    line (no traceback, no libtiff or Pillow message), and no file is left."""
    _, reference = pair
    failing = {name: data for name, data in _mutants(FUZZ_SEED) if _fails(data)}
    for k, name in enumerate(("tiff/bitflip/1", "png/size/3", "jpeg/truncate/0")):
        mutant = tmp_path / f"proc{k}.jpg"
        mutant.write_bytes(failing[name])
        output = tmp_path / f"proc{k}.png"
        args = ["transfer", str(mutant), str(reference), "-o", str(output), "--weights", str(tiny_weights)]
        result = run_subprocess(*args)
        assert result.returncode == 2, (name, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("recolorize: error:"), (name, result.stderr)
        assert not output.exists()


def _fails(data: bytes) -> bool:
    try:
        load_image(data)
    except UserError:
        return True
    return False
