"""Hostile input, round 2 (issue 23, items 5, 8, 9, 10, 12 and 13), one class per test group:

5. the app's multipart parser: linear in the number of parts, and more parts than a request can need are
   refused before any part is read;
8. symlink loops in folder walks (``train``, ``build-cache``, ``make-bench``): each real folder once;
9. a model config's working resolution has one range, that of ``--size``, and a repeated JSON key is
   refused: both before any model is built;
10. ``.cube`` sizes are capped from the header (3D at 65, 1D at 65,536), rows are streamed into float32:
    memory stays bounded whatever the file holds;
12. every float option of every command refuses NaN and infinity in one line;
13. ``train`` settings that Adam, numpy or LPIPS would refuse with a traceback are refused in one line,
    before the data is scanned.

Everything runs on tiny photos and the tiny models. Timings are only ever compared with another timing
taken in the same test, never with a fixed number of seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
import tracemalloc
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file, save_file

from cli_helpers import assert_one_error_line, encode, picture, run
from recolorize.app import validation
from recolorize.app.validation import MAX_PARTS, HTTPProblem, parse_multipart
from recolorize.cli import build_parser
from recolorize.config import TRAIN_CONFIGS, get_config
from recolorize.errors import UserError
from recolorize.networks.model import RecolorModel

# ------------------------------------------------------------------------------------------- helpers


def best_of(repeats: int, work: Callable[[], object]) -> float:
    """The shortest of ``repeats`` timings of ``work`` (seconds): the least disturbed by other load."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


@pytest.fixture()
def pair(tmp_path: Path) -> tuple[Path, Path]:
    source, reference = tmp_path / "source.png", tmp_path / "reference.png"
    source.write_bytes(encode(picture(48, 64)))
    reference.write_bytes(encode(picture(40, 56, seed=1)[:, ::-1].copy()))
    return source, reference


# --------------------------------------------------------------------- 5. multipart: linear and bounded


def many_parts(count: int, name: str = "reference", size: int = 0) -> tuple[bytes, str]:
    """A multipart body of ``count`` parts all named ``name``, each holding ``size`` bytes."""
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="r.png"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    part = head + b"x" * size + b"\r\n"
    return part * count + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def test_an_upload_of_16000_parts_is_refused_at_once() -> None:
    """16,000 parts named ``reference`` in a 1 MB body (the probe's ~24 s of CPU) are refused from a
    count of the delimiters, in about the time a normal 1 MB upload of two parts takes to parse."""
    hostile, hostile_type = many_parts(16_000, size=1)
    assert 0.9e6 < len(hostile) < 2.5e6
    boundary = uuid.uuid4().hex
    normal = (
        b"".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + b"y" * (len(hostile) // 2)
            + b"\r\n"
            for name in ("source", "reference")
        )
        + f"--{boundary}--\r\n".encode()
    )
    normal_type = f"multipart/form-data; boundary={boundary}"
    assert set(parse_multipart(normal, normal_type)) == {"source", "reference"}

    def refuse() -> None:
        with pytest.raises(HTTPProblem) as refused:
            parse_multipart(hostile, hostile_type)
        assert refused.value.status == 400
        assert "16,000 parts" in refused.value.message and f"at most {MAX_PARTS}" in refused.value.message
        assert "\n" not in refused.value.message

    refuse()  # once before timing: the assertions hold
    hostile_seconds = best_of(5, refuse)
    normal_seconds = best_of(5, lambda: parse_multipart(normal, normal_type))
    assert hostile_seconds < 20 * normal_seconds, (hostile_seconds, normal_seconds)


def test_a_request_of_every_field_a_page_sends_is_within_the_part_limit() -> None:
    """The page sends a source and up to MAX_REFERENCES references: well within the limit."""
    assert MAX_PARTS >= 1 + validation.MAX_REFERENCES
    body, content_type = many_parts(MAX_PARTS, size=3)
    fields = parse_multipart(body, content_type)
    assert sorted(fields) == sorted(["reference"] + [f"reference#{k}" for k in range(2, MAX_PARTS + 1)])
    with pytest.raises(HTTPProblem, match="parts"):
        parse_multipart(*many_parts(MAX_PARTS + 1, size=3))


def test_multipart_parsing_is_linear_in_repeated_field_names(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the part limit lifted, ten times the parts (all of one name) take about ten times as long,
    not a hundred (the numbering of repeats was a scan from 1 for each part)."""
    monkeypatch.setattr(validation, "MAX_PARTS", 10**7)
    small, small_type = many_parts(800)
    large, large_type = many_parts(8_000)
    fields = parse_multipart(large, large_type)
    assert len(fields) == 8_000 and "reference#8000" in fields and "reference#8001" not in fields
    small_seconds = best_of(3, lambda: parse_multipart(small, small_type))
    large_seconds = best_of(3, lambda: parse_multipart(large, large_type))
    assert large_seconds < 35 * small_seconds, (large_seconds, small_seconds)


def test_a_field_named_like_a_repeat_keeps_every_part() -> None:
    """A client's own ``reference#2`` field next to two ``reference`` parts: no part replaces another."""
    boundary = uuid.uuid4().hex
    body = (
        b"".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
            for name, value in (("reference", "a"), ("reference#2", "b"), ("reference", "c"))
        )
        + f"--{boundary}--\r\n".encode()
    )
    fields = parse_multipart(body, f"multipart/form-data; boundary={boundary}")
    assert sorted(data for _, data in fields.values()) == [b"a", b"b", b"c"]


def test_the_app_answers_too_many_parts_with_one_json_line(tiny_weights: Path) -> None:
    import http.client

    from recolorize.app.jobs import AppConfig
    from recolorize.app.server import create_server
    from recolorize.inference.pipeline import Recolorizer

    server = create_server(Recolorizer.from_pretrained(tiny_weights), port=0, config=AppConfig())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        body, content_type = many_parts(16_000, size=1)
        host, port = server.server_address[:2]
        conn = http.client.HTTPConnection(host, port, timeout=60)
        try:
            conn.request("POST", "/api/prepare", body=body, headers={"Content-Type": content_type})
            response = conn.getresponse()
            status, answer = response.status, response.read()
        finally:
            conn.close()
        assert status == 400, answer
        message = json.loads(answer)["error"]
        assert "parts" in message and "\n" not in message
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


# ------------------------------------------------------------------------------ 8. symlink loops in walks


@pytest.fixture()
def looped_folder(tmp_path: Path) -> Path:
    """Three photos in two real folders, with links back into the tree: ``x -> .``, ``y -> .``,
    ``sub/up -> ..``, ``sub/again -> ../sub``."""
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    for k, path in enumerate([root / "a.png", root / "c.png", root / "sub" / "b.png"]):
        path.write_bytes(encode(picture(64, 80, seed=20 + k)))
    for link, target in (("x", "."), ("y", "."), ("sub/up", ".."), ("sub/again", "../sub")):
        (root / link).symlink_to(target, target_is_directory=True)  # POSIX: CI's machines have links
    return root


@pytest.fixture()
def counted_scandir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """Every folder listed under ``tmp_path`` (os.walk lists through ``os.scandir``); a walk that lists
    more than 100 is stopped with an error rather than left to run for ever."""
    listed: list[str] = []
    real_scandir = os.scandir

    def counting(path: object = ".") -> object:
        if str(path).startswith(str(tmp_path)):
            listed.append(str(path))
            if len(listed) > 100:
                raise RuntimeError(f"the walk keeps going: {len(listed)} folders listed, last {path}")
        return real_scandir(path)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "scandir", counting)
    return listed


def test_a_folder_walk_enters_each_real_folder_once(looped_folder: Path, counted_scandir: list[str]) -> None:
    from recolorize.data.folders import discover_photos

    photos = discover_photos([looped_folder])
    found = sorted(p.image.resolve().relative_to(looped_folder.resolve()).as_posix() for p in photos)
    assert found == ["a.png", "c.png", "sub/b.png"]
    walked = [p for p in counted_scandir if "segmentation" not in p and "masks_" not in p]
    assert len(walked) == 2, walked  # the root and sub/, each once


def test_make_bench_on_a_looped_folder_finishes(
    looped_folder: Path, counted_scandir: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``make-bench`` (like ``train`` and ``build-cache``, through ``discover_photos``) finishes and uses
    each photo once."""
    out = tmp_path / "bench"
    code, lines = run(["make-bench", "--images", str(looped_folder), "--out", str(out), "--n", "3"], capsys)
    assert code == 0, lines
    rows = (out / "pairs.csv").read_text().splitlines()[1:]
    assert len(rows) == 3
    assert len(counted_scandir) < 20, counted_scandir


# ----------------------------------------------------------------- 9. the working resolution's one range


def _config_cases(tiny_weights: Path) -> dict[str, str]:
    """Config JSON texts: a resolution outside --size's range, and a repeated key (each value alone fine)."""
    config = json.loads(tiny_weights.with_suffix(".json").read_text())
    text = json.dumps(config)
    assert text.endswith("}") and '"resolution": 64' in text
    return {
        "resolution 4096": json.dumps({**config, "resolution": 4096}),
        "resolution 2048": json.dumps({**config, "resolution": 2048}),
        "resolution 96": json.dumps({**config, "resolution": 96}),
        "repeated key": text[:-1] + ', "resolution": 128}',
        "repeated nested key": text.replace('"ablations": {', '"ablations": {"aspp": false, ', 1),
    }


@pytest.mark.parametrize("where", ["folder", "metadata"])
@pytest.mark.parametrize(
    "case", ["resolution 4096", "resolution 2048", "resolution 96", "repeated key", "repeated nested key"]
)
def test_a_bad_config_is_refused_in_one_line_before_any_model_is_built(
    case: str,
    where: str,
    tiny_weights: Path,
    pair: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A config that asks for a working resolution outside 64-1024, or gives a key twice: one line, exit 2,
    and no model is built. "folder": the model.json of an exported model folder, read by ``transfer`` before
    any photo is decoded or any ONNX Runtime session made; "metadata": a weight file with its config in its
    metadata only, read by ``export`` before any torch model is built."""
    import onnxruntime

    import recolorize.imaging

    text = _config_cases(tiny_weights)[case]
    folder = tmp_path / "w"
    folder.mkdir()
    weights = folder / "model.safetensors"
    if where == "folder":
        for file in tiny_weights.parent.iterdir():
            if file.is_file():
                (folder / file.name).write_bytes(file.read_bytes())
        (folder / "model.json").write_text(text)
    else:
        save_file(load_file(str(tiny_weights)), str(weights), metadata={"config": text})
    built: list[object] = []

    def never(what: str) -> Callable[..., None]:
        def refuse(*args: object, **kwargs: object) -> None:
            # never built for real: a 4096-px model is what took minutes and, in a test, ~24 GB
            built.append(what)
            raise RuntimeError(f"{what} was reached")

        return refuse

    monkeypatch.setattr(RecolorModel, "__init__", never("a torch model"))
    monkeypatch.setattr(onnxruntime, "InferenceSession", never("an ONNX Runtime session"))
    monkeypatch.setattr(recolorize.imaging, "load_image", never("a photo's decoding"))
    source, reference = pair
    out = tmp_path / ("out.png" if where == "folder" else "exported")
    if where == "folder":
        argv = ["transfer", str(source), str(reference), "-o", str(out), "--weights", str(folder)]
    else:
        argv = ["export", str(weights), "-o", str(out)]
    code, lines = run(argv, capsys)
    assert_one_error_line(code, lines)
    if case.startswith("resolution"):
        assert "resolution must be a multiple of 64 from 64 to 1024" in lines[0], lines
    else:
        assert "given twice" in lines[0], lines
    assert built == [] and not out.exists()


EXPORT_RESOLUTIONS = {
    "4096": ("4096", "resolution must be a multiple of 64 from 64 to 1024, got 4096"),
    "96": ("96", "resolution must be a multiple of 64 from 64 to 1024, got 96"),
    "not an integer": ("64.5", "resolution must be an integer, got 64.5"),
    "true": ("true", "resolution must be an integer, got True"),
    "not the graph's": ("128", "takes [1, 3, 64, 64] images, not the working resolution 128"),
}


@pytest.mark.parametrize("case", list(EXPORT_RESOLUTIONS))
def test_a_bad_export_resolution_is_refused_in_one_line(
    case: str, tiny_weights: Path, pair: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """export.json's working resolution (what the predictor graph was traced at) is in the one range and is
    the graph's own, or the folder is refused in one line (it was a per-photo ONNX Runtime error, or,
    for 64.5, silently 64)."""
    from recolorize.inference.pipeline import Recolorizer

    value, message = EXPORT_RESOLUTIONS[case]
    folder = tmp_path / "w"
    folder.mkdir()
    for file in tiny_weights.parent.iterdir():
        if file.is_file():
            (folder / file.name).write_bytes(file.read_bytes())
    (folder / "export.json").write_text(f'{{"resolution": {value}, "opset": 17}}')
    with pytest.raises(UserError) as error:
        Recolorizer.from_pretrained(folder)
    assert message in str(error.value) and "\n" not in str(error.value)
    source, reference = pair
    out = tmp_path / "out.png"
    code, lines = run(
        ["transfer", str(source), str(reference), "-o", str(out), "--weights", str(folder)], capsys
    )
    assert_one_error_line(code, lines)
    assert message in lines[0] and not out.exists()


def test_the_config_and_size_share_one_range(
    pair: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from recolorize.config import MAX_RESOLUTION, MIN_RESOLUTION

    assert (MIN_RESOLUTION, MAX_RESOLUTION) == (64, 1024)
    with pytest.raises(ValueError, match="must be a multiple of 64 from 64 to 1024, got 4096"):
        get_config("tiny").replace(resolution=4096)
    get_config("tiny").replace(resolution=1024)  # the largest is a config too
    source, reference = pair
    for command, extra in (("transfer", []), ("lut", [])):
        out = tmp_path / ("out.png" if command == "transfer" else "out.cube")
        code, lines = run(
            [command, str(source), str(reference), "-o", str(out), "--size", "4096", *extra], capsys
        )
        assert_one_error_line(code, lines)
        assert "--size must be a multiple of 64 from 64 to 1024, got 4096" in lines[0]


# --------------------------------------------------------------------------- 10. the .cube lattice caps


def _cube_with_rows(path: Path, header: str, rows: int) -> Path:
    with path.open("w") as handle:
        handle.write(header)
        chunk = "0.5000000 0.2500000 0.1250000\n" * 10_000
        for _ in range(rows // 10_000):
            handle.write(chunk)
    return path


def _peak_bytes(work: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _refused(path: Path) -> Exception:
    """The one-line error of reading ``path``."""
    from recolorize.inference.lut import LutError, read_cube

    with pytest.raises(LutError) as refused:
        read_cube(path)
    return refused.value


@pytest.mark.parametrize(
    "header, words",
    [
        ("LUT_3D_SIZE 256\n", "LUT_3D_SIZE 256; .cube tables larger than 65"),
        ('TITLE "big"\nLUT_3D_SIZE 66\n', "LUT_3D_SIZE 66; .cube tables larger than 65"),
        ("LUT_1D_SIZE 65537\n", "LUT_1D_SIZE 65537; .cube tables larger than 65536"),
        ("LUT_1D_SIZE 1024\nLUT_3D_SIZE 129\n", "LUT_3D_SIZE 129; .cube tables larger than 65"),
    ],
)
def test_a_cube_larger_than_editors_use_is_refused_from_its_header(
    header: str, words: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``LUT_3D_SIZE 256`` with a few MB of rows (the probe: 100 MB, 4.6 GB, 28 s) is refused in one line
    from the header: faster than reading a valid 17^3 cube, and within a few hundred kB of memory."""
    from recolorize.inference.lut import Lut3D, read_cube, write_cube

    big = _cube_with_rows(tmp_path / "big.cube", header, 200_000)
    assert big.stat().st_size > 5_000_000
    error = _refused(big)
    assert words in str(error) and str(big) in str(error) and "\n" not in str(error)
    peak = _peak_bytes(lambda: _refused(big))
    assert peak < 1_000_000, peak
    small = write_cube(Lut3D.identity(17), tmp_path / "small.cube")
    valid_seconds = best_of(3, lambda: read_cube(small))
    refused_seconds = best_of(3, lambda: _refused(big))
    assert refused_seconds < valid_seconds, (refused_seconds, valid_seconds)
    photo = tmp_path / "photo.png"
    photo.write_bytes(encode(picture()))
    code, lines = run(["lut-apply", str(big), str(photo), "-o", str(tmp_path / "out.png")], capsys)
    assert_one_error_line(code, lines)
    assert words in lines[0]


def test_rows_beyond_the_header_are_refused_as_they_come(tmp_path: Path) -> None:
    """A 33^3 header followed by 200,000 rows (5.5 times too many): refused at the first row too many,
    and memory stays near the 33^3 float32 table (0.4 MB), not the size of the file."""
    path = _cube_with_rows(tmp_path / "long.cube", "LUT_3D_SIZE 33\n", 200_000)
    error = _refused(path)
    assert "more than 35937 colour rows" in str(error), error
    assert _peak_bytes(lambda: _refused(path)) < 2_000_000


def test_the_largest_cube_reads_within_ten_mb(tmp_path: Path) -> None:
    """The largest file accepted (a 65,536-entry shaper and a 65^3 cube) reads back exactly, in float32,
    and within the 10 MB the README states."""
    from recolorize.inference.lut import MAX_CUBE_1D_SIZE, MAX_CUBE_3D_SIZE, Lut3D, read_cube, write_cube

    assert (MAX_CUBE_3D_SIZE, MAX_CUBE_1D_SIZE) == (65, 65536)
    rng = np.random.default_rng(0)
    curves = np.repeat(np.linspace(0, 1, 65536, dtype=np.float32)[:, None] ** 0.8, 3, axis=1)
    lut = Lut3D(rng.random((65, 65, 65, 3), dtype=np.float32), curves=curves)
    path = write_cube(lut, tmp_path / "largest.cube")
    peak = _peak_bytes(lambda: read_cube(path))
    assert peak < 10_000_000, peak
    back = read_cube(path)
    assert back.table.dtype == np.float32 and back.curves is not None
    assert np.abs(back.table - lut.table).max() < 1e-6 and np.abs(back.curves - lut.curves).max() < 1e-6


@pytest.mark.parametrize(
    "text, words",
    [
        ("LUT_3D_SIZE 2\n" + "0 0 0\n" * 7 + "1e39 0 0\n", "not finite in float32"),
        ("LUT_3D_SIZE 2\nDOMAIN_MIN 0 0 0\nDOMAIN_MAX 1e39 1 1\n" + "0 0 0\n" * 8, "not all finite"),
        ("LUT_3D_SIZE 2\n" + "0 0 0\n" * 8 + "LUT_3D_SIZE 2\n", "after the table's rows"),
        ("LUT_3D_SIZE 2\nLUT_3D_SIZE 3\n" + "0 0 0\n" * 27, "given twice"),
        ("LUT_3D_SIZE 2\n" + "0 " * 3000 + "\n", "longer than"),
        ("LUT_3D_SIZE 2\nLUT_IN_VIDEO_RANGE\n" + "0 0 0\n" * 8, "unknown keyword"),
    ],
)
def test_other_unusable_cubes_are_one_line(text: str, words: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.cube"
    path.write_text(text)
    error = _refused(path)
    assert words in str(error) and "\n" not in str(error), error


def test_a_byte_order_mark_and_crlf_lines_are_read(tmp_path: Path) -> None:
    from recolorize.inference.lut import read_cube

    rows = [f"{r} {g} {b}" for b in (0, 1) for g in (0, 1) for r in (0, 1)]
    path = tmp_path / "windows.cube"
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(['TITLE "w"', "LUT_3D_SIZE 2", *rows, ""]).encode())
    lut = read_cube(path)
    assert np.allclose(lut.apply(np.array([[0.25, 0.5, 0.75]])), [[0.25, 0.5, 0.75]], atol=1e-6)


# ------------------------------------------------------------ 12. float options: NaN and infinity refused


def _float_options() -> set[tuple[str, str]]:
    """(command, option) of every float option of every command, read off the parser."""
    parser = build_parser()
    found = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                for option in sub._actions:
                    if option.type is float:
                        found.add((name, max(option.option_strings, key=len)))
    return found


def _argv(command: str, option: str, value: str, tmp_path: Path) -> list[str]:
    """A command line that argparse takes, with ``option`` set to ``value``; nothing it names exists."""
    missing = str(tmp_path / "missing")
    required = {
        "transfer": [missing, missing, "-o", str(tmp_path / "o.png")],
        "lut": [missing, missing, "-o", str(tmp_path / "o.cube")],
        "eval": ["--pairs", missing, "--out", str(tmp_path / "report")],
        "dpst-report": ["--dpst", missing, "--out", str(tmp_path / "report")],
        "analyse": ["table3", "--images", missing, "--out", str(tmp_path / "analyses")],
        "app": ["--port", "0", "--weights", missing],
        "train": ["--config", "tiny", "--data", missing, "--run", str(tmp_path / "run")],
    }[command]
    return [command, *required, f"{option}={value}"]


FLOAT_OPTIONS = [
    ("transfer", "--strength"),
    ("lut", "--strength"),
    ("eval", "--strength"),
    ("dpst-report", "--strength"),
    ("analyse", "--lr"),
    ("app", "--max-upload-mb"),
    ("train", "--lr"),
]


def test_every_float_option_is_in_the_list_below() -> None:
    """A new float option joins FLOAT_OPTIONS, and so the test of non-finite values."""
    assert _float_options() == set(FLOAT_OPTIONS)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e400"])
@pytest.mark.parametrize("command, option", FLOAT_OPTIONS)
def test_a_non_finite_float_option_is_one_line(
    command: str, option: str, value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines = run(_argv(command, option, value, tmp_path), capsys)
    assert_one_error_line(code, lines)
    assert f"{option} must be a finite number" in lines[0], lines
    assert list(tmp_path.iterdir()) == []


def test_the_training_entry_point_refuses_them_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from recolorize.training.arguments import main as training_main

    capsys.readouterr()
    code = training_main(
        ["--config", "tiny", "--data", str(tmp_path), "--run", str(tmp_path / "r"), "--lr=nan"]
    )
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert_one_error_line(code, err)
    assert "--lr must be a finite number" in err[0]


# ------------------------------------------------------ 13. train settings refused before any work


@pytest.fixture()
def photo_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for k in range(4):
        (folder / f"p{k}.png").write_bytes(encode(picture(96, 96, seed=10 + k)))
    return folder


TRAIN_SETTINGS = {
    "seed -1": (["--seed=-1"], "seed must be a whole number from 0 to 4294967295 (got -1)"),
    "seed 2^32": (["--seed", str(2**32)], "seed must be a whole number from 0 to 4294967295"),
    "set seed -5": (["--set", "seed=-5"], "seed must be a whole number from 0"),
    "seed NaN": (["--set", "seed=NaN"], "--set seed needs a finite number"),
    "seed Infinity": (["--set", "seed=Infinity"], "--set seed needs a finite number"),
    "log_every 1e400": (["--set", "log_every=1e400"], "--set log_every needs a finite number"),
    "lpips_net foo": (
        ["--set", "generator.lpips_net=foo", "--set", "generator.lpips=1"],
        "generator.lpips_net must be one of alex, vgg (got 'foo')",
    ),
    "betas [2, 3]": (["--set", "generator.betas=[2,3]"], "generator.betas must each lie in [0, 1)"),
    "betas [0.9, 1]": (["--set", "predictor.betas=[0.9, 1]"], "predictor.betas must each lie in [0, 1)"),
    "betas [-0.1, 0.9]": (["--set", "wencoder.betas=[-0.1, 0.9]"], "wencoder.betas must each lie in [0, 1)"),
}


@pytest.mark.parametrize("case", list(TRAIN_SETTINGS))
def test_train_refuses_bad_settings_in_one_line_before_any_work(
    case: str,
    photo_folder: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from recolorize.training import loop

    def no_scan(*args: object, **kwargs: object) -> None:
        raise AssertionError("the photos were scanned before the settings were checked")

    monkeypatch.setattr(loop, "discover_photos", no_scan)
    option, words = TRAIN_SETTINGS[case]
    run_dir = tmp_path / "run"
    args = ["train", "--config", "tiny", "--data", str(photo_folder), "--run", str(run_dir)]
    code, lines = run([*args, "--stage", "generator", "--steps", "1", "--batch", "2", *option], capsys)
    assert_one_error_line(code, lines)
    assert words in lines[0], lines
    assert not run_dir.exists()


@pytest.mark.parametrize("name", sorted(TRAIN_CONFIGS))
def test_every_shipped_training_config_passes_the_checks(name: str) -> None:
    from recolorize.training import apply_overrides

    assert apply_overrides(TRAIN_CONFIGS[name], {}) == TRAIN_CONFIGS[name]


def test_the_largest_seed_is_taken() -> None:
    from recolorize.training import apply_overrides
    from recolorize.training.loop import MAX_SEED

    assert apply_overrides(TRAIN_CONFIGS["tiny"], {"seed": MAX_SEED}).seed == 2**32 - 1
    with pytest.raises(UserError, match="seed must be a whole number"):
        apply_overrides(TRAIN_CONFIGS["tiny"], {"seed": MAX_SEED + 1})
