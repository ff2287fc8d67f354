"""Hostile input, round 3 (issue 23, items 11, 14, 15, 16, 17 and 18), one class per test group:

11. an output its format cannot hold (WebP over 16,383 px a side, JPEG over 65,500) is refused from the
    source's header, before it is decoded, in one line (``imaging.encode.check_encodable``, used by
    ``transfer``, ``lut-apply`` and ``encode_image``); any encoder failure is one clean line without the
    codec's text, and an EXIF block the TIFF encoder cannot parse is dropped, not fatal;
14. a write of weights, checkpoints or run files that fails (full disk, read-only filesystem) is one line
    (``errors.write_errors``); ``export`` checks its output folder before it reads the run;
15. a client that hangs up before the app's answer leaves nothing on stderr;
16. a name with a newline (or any control character) cannot split an error message: ``UserError`` and
    ``errors.shown`` escape it;
17. option errors are one line (``errors.OneLineParser``), and ``app --max-pixels`` takes what ``transfer``
    takes;
18. a ``.cube`` whose values or domain overflow float32, or whose domain is degenerate, is one line, and no
    numpy warning reaches stderr.

Everything runs on tiny photos and the tiny models.
"""

from __future__ import annotations

import errno
import socket
import struct
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cli_helpers import assert_one_error_line, encode, picture, run
from recolorize.cli import main
from recolorize.config import get_config
from recolorize.errors import UserError
from recolorize.networks.model import RecolorModel

# ------------------------------------------------------------------------------------------- helpers


@pytest.fixture()
def cube(tmp_path: Path) -> Path:
    """The identity 2^3 LUT."""
    rows = "".join(f"{r} {g} {b}\n" for b in (0, 1) for g in (0, 1) for r in (0, 1))
    path = tmp_path / "identity.cube"
    path.write_text("LUT_3D_SIZE 2\n" + rows)
    return path


@pytest.fixture()
def reference(tmp_path: Path) -> Path:
    path = tmp_path / "reference.png"
    path.write_bytes(encode(picture(40, 56, seed=1)))
    return path


@pytest.fixture()
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Decoding the pixels of a photo wider than 10,000 px fails the test (the commands must refuse it
    from its header). Pillow's ``load`` is patched, not our ``load_image``, which modules imported
    meanwhile would keep."""
    from PIL import ImageFile

    real_load = ImageFile.ImageFile.load

    def load(self: ImageFile.ImageFile) -> object:
        if self.width > 10_000:
            raise AssertionError("the photo was decoded before its output size was checked")
        return real_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)


# ------------------------------------------------------------------ 11. the output formats' size limits

WIDE = {
    "webp": (16_384, "WEBP holds at most 16,383 pixels a side"),
    "jpg": (65_501, "JPEG holds at most 65,500"),
}


@pytest.mark.parametrize("command", ["lut-apply", "transfer"])
@pytest.mark.parametrize("suffix", sorted(WIDE))
def test_an_output_wider_than_its_format_allows_is_refused_before_decoding(
    command: str,
    suffix: str,
    tmp_path: Path,
    cube: Path,
    reference: Path,
    tiny_weights: Path,
    no_decoding: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    width, words = WIDE[suffix]
    source = tmp_path / "wide.png"
    source.write_bytes(encode(np.full((32, width, 3), 120, np.uint8)))
    out = tmp_path / f"out.{suffix}"
    if command == "lut-apply":
        args = ["lut-apply", str(cube), str(source), "-o", str(out)]
    else:
        args = ["transfer", str(source), str(reference), "-o", str(out), "--weights", str(tiny_weights)]
    code, lines = run(args, capsys)
    assert_one_error_line(code, lines)
    assert words in lines[0] and f"{width:,} x 32" in lines[0] and str(out) in lines[0], lines
    assert not out.exists()


def test_encode_image_checks_the_limits_itself() -> None:
    from recolorize.imaging import EncoderError, encode_image

    with pytest.raises(EncoderError, match="WEBP holds at most 16,383 pixels a side"):
        encode_image(np.zeros((16, 16_384, 3), np.uint8), fmt="WEBP")
    assert encode_image(np.zeros((16, 16_383, 3), np.uint8), fmt="WEBP")[:4] == b"RIFF"


def test_any_encoder_failure_is_one_clean_line(
    tmp_path: Path, cube: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "photo.png"
    source.write_bytes(encode(picture()))

    def broken(self: Image.Image, fp: object, format: str | None = None, **params: object) -> None:  # noqa: A002
        raise OSError("broken data stream when writing image file")

    monkeypatch.setattr(Image.Image, "save", broken)
    out = tmp_path / "out.jpg"
    code, lines = run(["lut-apply", str(cube), str(source), "-o", str(out)], capsys)
    assert_one_error_line(code, lines)
    assert "JPEG encoder could not write" in lines[0] and str(out) in lines[0], lines
    assert "broken data stream" not in lines[0]
    assert not out.exists()


def test_a_tiff_of_a_photo_with_garbage_exif_is_written_without_it(
    tmp_path: Path, cube: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "garbage.jpg"
    source.write_bytes(encode(picture(), "JPEG", exif=b"Exif\x00\x00" + b"garbage-bytes-here" * 4))
    out = tmp_path / "out.tif"
    code, lines = run(["lut-apply", str(cube), str(source), "-o", str(out)], capsys)
    assert code == 0, lines
    assert not any("Traceback" in line or "not a TIFF" in line for line in lines), lines
    with Image.open(out) as im:
        assert im.size == (64, 48)


# ------------------------------------------------------------------------- 14. failed writes, one line


def _enospc(*args: object, **kwargs: object) -> None:
    from safetensors import SafetensorError

    raise SafetensorError(
        'Error while serializing: I/O error: No space left on device (os error 28) at path "x"'
    )


def test_write_errors_turns_os_and_safetensors_errors_into_one_line(tmp_path: Path) -> None:
    from recolorize.errors import write_errors

    with pytest.raises(UserError, match=r"^cannot write weights .*w\.safetensors: No space left on device$"):
        with write_errors(tmp_path / "w.safetensors", "weights "):
            _enospc()
    with pytest.raises(UserError, match=r"^cannot write .*x\.csv: Read-only file system$"):
        with write_errors(tmp_path / "x.csv"):
            raise OSError(errno.EROFS, "Read-only file system")
    with pytest.raises(KeyError), write_errors(tmp_path / "y"):
        raise KeyError("not a write error")


def test_train_on_a_full_disk_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from recolorize.training import checkpoint

    photos = tmp_path / "photos"
    photos.mkdir()
    for k in range(4):
        (photos / f"p{k}.png").write_bytes(encode(picture(96, 96, seed=10 + k)))
    monkeypatch.setattr(checkpoint, "save_file", _enospc)
    run_dir = tmp_path / "run"
    args = ["train", "--config", "tiny", "--data", str(photos), "--run", str(run_dir), "--stage", "wencoder"]
    settings = ["--set", "checkpoint_every=2", "--set", "log_every=1000", "--set", "sample_every=1000"]
    code, lines = run([*args, "--steps", "4", "--batch", "2", *settings], capsys)
    assert code == 2, lines
    assert lines[-1].startswith("recolorize: error: cannot write checkpoint "), lines
    assert lines[-1].endswith(": No space left on device"), lines
    assert not any("Traceback" in line or "SafetensorError" in line for line in lines), lines
    assert not list(run_dir.glob(".checkpoint*"))  # no temporary file left


@pytest.fixture()
def run_folder(tmp_path: Path) -> Path:
    """A run folder holding finished stage weights of the tiny model."""
    folder = tmp_path / "run"
    folder.mkdir()
    torch.manual_seed(0)
    RecolorModel(get_config("tiny")).save(folder / "wencoder.safetensors")
    return folder


def test_export_to_a_full_disk_is_one_line(
    run_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import recolorize.networks.model as model_module

    monkeypatch.setattr(model_module, "save_file", _enospc)
    out = tmp_path / "out"
    code, lines = run(["export", str(run_folder), "-o", str(out)], capsys)
    assert_one_error_line(code, lines)
    assert f"cannot write weights {out / 'model.safetensors'}: No space left on device" in lines[0], lines


def test_export_checks_its_output_folder_before_reading_the_run(
    run_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    from recolorize.training import checkpoint as export  # where export reads a run's newest weights

    def not_yet(*args: object) -> None:
        raise AssertionError("the run was read before the output folder was checked")

    def read_only(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(export, "latest_weights", not_yet)
    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
    out = tmp_path / "new" / "out"
    code, lines = run(["export", str(run_folder), "-o", str(out)], capsys)
    assert_one_error_line(code, lines)
    assert f"cannot write into the folder {tmp_path}: Read-only file system" in lines[0], lines
    assert not (tmp_path / "new").exists()
    monkeypatch.undo()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setattr(export, "latest_weights", not_yet)
    code, lines = run(["export", str(run_folder), "-o", str(blocker / "out")], capsys)
    assert_one_error_line(code, lines)
    assert "which is a file" in lines[0], lines


# ---------------------------------------------------------------- 15. a client that hangs up on the app


def test_a_client_that_hangs_up_before_the_413_leaves_stderr_clean(
    tiny_weights: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    from recolorize.app.jobs import AppConfig
    from recolorize.app.server import create_server
    from recolorize.inference.pipeline import Recolorizer

    server = create_server(Recolorizer.from_pretrained(tiny_weights), port=0, config=AppConfig())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    capsys.readouterr()
    caplog.set_level("DEBUG", logger="recolorize.app.server")
    try:
        for _ in range(4):
            client = socket.create_connection((host, port))
            client.sendall(
                f"POST /api/prepare HTTP/1.1\r\nHost: {host}:{port}\r\n"
                "Content-Type: multipart/form-data; boundary=x\r\n"
                "Content-Length: 999999999999\r\n\r\n".encode()
            )
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # a reset
            client.close()
            time.sleep(0.2)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Broken pipe" not in err and "Exception" not in err, err
    assert all(record.levelname == "DEBUG" for record in caplog.records if "hung up" in record.getMessage())


# ------------------------------------------------------------------------ 16. names in error messages


def test_control_characters_are_escaped() -> None:
    from recolorize.errors import escape_controls, shown

    assert escape_controls("a\nb\r\tc\x1b[31m\u202ed") == "a\\nb\\r\\tc\\x1b[31m\\u202ed"
    assert escape_controls("plain name é.jpg") == "plain name é.jpg"
    assert shown(Path("x\ny.png")) == "x\\ny.png"
    missing = Path("no/such\nfile.png")
    assert str(UserError(f"{missing} does not exist")) == "no/such\\nfile.png does not exist"


@pytest.mark.parametrize("command", ["transfer", "lut-apply"])
def test_a_file_name_with_a_newline_stays_on_one_line(
    command: str, tmp_path: Path, cube: Path, reference: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no\nsuch.png"
    if command == "transfer":
        args = ["transfer", str(missing), str(reference), "-o", str(tmp_path / "out.png")]
    else:
        args = ["lut-apply", str(cube), str(missing), "-o", str(tmp_path / "out.png")]
    code, lines = run(args, capsys)
    assert_one_error_line(code, lines)
    assert "no\\nsuch.png" in lines[0], lines


def test_a_quoted_newline_in_a_pairs_cell_stays_on_one_line(
    tmp_path: Path, reference: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(f'source,reference\n"first\nsecond.png",{reference.name}\n')
    code, lines = run(["transfer", "--pairs", str(pairs), "-o", str(tmp_path / "out")], capsys)
    assert code == 1, lines
    assert len(lines) == 2 and "first\\nsecond.png" in lines[0] and "photos failed" in lines[1], lines


# ---------------------------------------------------------------------------- 17. option errors, one line


BAD_OPTIONS = {
    "no command": ([], "recolorize: ", "(see recolorize --help)"),
    "unknown command": (["nosuch"], "recolorize: ", "(see recolorize --help)"),
    "not a float": (
        ["transfer", "--strength", "x", "a.png", "b.png", "-o", "c.png"],
        "recolorize transfer: argument --strength: invalid float value: 'x'",
        "(see recolorize transfer --help)",
    ),
    "missing arguments": (["lut-apply"], "recolorize lut-apply: ", "(see recolorize lut-apply --help)"),
    "unknown option": (
        ["transfer", "a.png", "b.png", "-o", "c.png", "--bogus"],
        "recolorize transfer: unrecognized arguments: --bogus",
        "(see recolorize transfer --help)",
    ),
    "bad choice": (["train", "--config", "huge"], "recolorize train: ", "(see recolorize train --help)"),
}


@pytest.mark.parametrize("case", list(BAD_OPTIONS))
def test_an_option_error_is_one_line(case: str, capsys: pytest.CaptureFixture[str]) -> None:
    args, start, end = BAD_OPTIONS[case]
    with pytest.raises(SystemExit) as stop:
        main(args)
    assert stop.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(start) and lines[0].endswith(end), lines


def test_the_training_entry_point_gives_one_line_too(capsys: pytest.CaptureFixture[str]) -> None:
    from recolorize.training.arguments import main as training_main

    with pytest.raises(SystemExit) as stop:
        training_main(["--bogus"])
    assert stop.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("python -m recolorize.training: "), lines


@pytest.mark.parametrize("value", ["4e7", "40_000_000", "40000000"])
def test_app_takes_the_pixel_limit_as_transfer_does(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = run(["app", "--max-pixels", value, "--cache", "0"], capsys)  # stops at --cache, not at it
    assert_one_error_line(code, lines)
    assert "--cache" in lines[0], lines


@pytest.mark.parametrize("value", ["0", "4.5", "lots", "nan"])
def test_app_refuses_a_bad_pixel_limit_in_one_line(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = run(["app", "--max-pixels", value], capsys)
    assert_one_error_line(code, lines)
    assert "--max-pixels" in lines[0], lines


# --------------------------------------------------------------------- 18. .cube values beyond float32

ROWS = "".join(f"{r} {g} {b}\n" for b in (0, 1) for g in (0, 1) for r in (0, 1))
OVERFLOWING_CUBES = {
    "a row of 1e39": ("LUT_3D_SIZE 2\n" + ROWS.replace("0 0 0\n", "1e39 0 0\n", 1), "not finite in float32"),
    "a domain of +-1e39": (
        "LUT_3D_SIZE 2\nDOMAIN_MIN -1e39 -1e39 -1e39\nDOMAIN_MAX 1e39 1e39 1e39\n" + ROWS,
        "not all finite in float32",
    ),
    "a domain of +-3e38": (
        "LUT_3D_SIZE 2\nDOMAIN_MIN -3e38 -3e38 -3e38\nDOMAIN_MAX 3e38 3e38 3e38\n" + ROWS,
        "does not fit in float32",
    ),
    "a domain max of 1e-300": (
        "LUT_3D_SIZE 2\nDOMAIN_MIN 0 0 0\nDOMAIN_MAX 1e-300 1e-300 1e-300\n" + ROWS,
        "is degenerate",
    ),
    "one axis of 1e-40": ("LUT_3D_SIZE 2\nDOMAIN_MIN 0 0 0\nDOMAIN_MAX 1e-40 1 1\n" + ROWS, "is degenerate"),
    "a 1D range of 1e-300": ("LUT_1D_SIZE 2\nLUT_1D_INPUT_RANGE 0 1e-300\n0 0 0\n1 1 1\n", "is degenerate"),
}


@pytest.mark.parametrize("case", list(OVERFLOWING_CUBES))
def test_a_cube_beyond_float32_is_one_line_and_no_warning(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text, words = OVERFLOWING_CUBES[case]
    path = tmp_path / "bad.cube"
    path.write_text(text)
    source = tmp_path / "photo.png"
    source.write_bytes(encode(picture()))
    out = tmp_path / "out.png"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a numpy warning (with its source line) fails the test
        code, lines = run(["lut-apply", str(path), str(source), "-o", str(out)], capsys)
    assert_one_error_line(code, lines)
    assert words in lines[0] and str(path) in lines[0], lines
    assert not out.exists()


def test_the_largest_float32_values_apply_without_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "huge.cube"
    path.write_text(
        "LUT_3D_SIZE 2\nDOMAIN_MIN -1e6 -1e6 -1e6\nDOMAIN_MAX 1e6 1e6 1e6\n"
        + ROWS.replace("1 1 1", "3e38 -3e38 3e38")
    )
    source = tmp_path / "photo.png"
    source.write_bytes(encode(picture()))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        code, lines = run(["lut-apply", str(path), str(source), "-o", str(tmp_path / "out.png")], capsys)
    assert code == 0, lines
