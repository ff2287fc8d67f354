"""Data integrity under hostile conditions (issue 23, "Data integrity" items 1-4), one class per test group:

1. a stop signal (SIGTERM, SIGHUP) during a write leaves no temporary file; folder scans skip hidden files;
2. two writers to one output without ``--overwrite``: the name is created without replacing, the loser told;
3. NaN / inf: weights refused at load, a non-finite render is an error, hyper-parameters must be finite, a run
   whose loss stays non-finite stops and keeps its last finite checkpoint;
4. the app's download header: an upload's file name cannot add headers (RFC 6266 ``filename*``).

Everything runs on tiny photos and the tiny models, in seconds.
"""

from __future__ import annotations

import errno
import http.client
import json
import math
import os
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from urllib.parse import quote, unquote

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from cli_helpers import assert_one_error_line, encode, picture, run, subprocess_env
from recolorize.config import TRAIN_CONFIGS
from recolorize.errors import UserError, WeightsError
from recolorize.io_utils import atomic_write

# ------------------------------------------------------------------------------------------- helpers


def _stop_signals_at_default() -> None:
    """In the child: SIGTERM and SIGHUP at their defaults (a suite started under nohup passes SIGHUP on
    ignored, and an ignored signal rightly stays ignored)."""
    for name in ("SIGTERM", "SIGHUP", "SIGINT"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_DFL)


@pytest.fixture()
def pair(tmp_path: Path) -> tuple[Path, Path]:
    source, reference = tmp_path / "source.png", tmp_path / "reference.png"
    source.write_bytes(encode(picture(48, 64)))
    reference.write_bytes(encode(picture(40, 56, seed=1)[:, ::-1].copy()))
    return source, reference


# ------------------------------------------------------------ 1. stop signals and hidden temporary files

STOP_SIGNALS = [name for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)]

# The real command in a child process; the output's bytes are half written when the signal arrives.
_SIGNALLED_CHILD = r"""
import os, pathlib, signal, sys, time
from recolorize.cli import main

signum, out_dir, argv = getattr(signal, sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3:]
real_write_bytes = pathlib.Path.write_bytes

def half_then_signal(self, data):
    if self.parent != out_dir:
        return real_write_bytes(self, data)
    real_write_bytes(self, data[: len(data) // 2])
    os.kill(os.getpid(), signum)
    time.sleep(60)  # the signal lands here

pathlib.Path.write_bytes = half_then_signal
sys.exit(main(argv))
"""


@pytest.mark.parametrize("command", ["transfer", "lut-apply"])
@pytest.mark.parametrize("name", STOP_SIGNALS)
def test_a_stop_signal_during_a_write_leaves_no_temporary_file(
    name: str, command: str, tiny_weights: Path, pair: tuple[Path, Path], tmp_path: Path, request
) -> None:
    """SIGTERM / SIGHUP while the output is half written: the command unwinds as for Ctrl-C (exit
    128 + the signal, one line), and neither the output nor its hidden temporary file is left."""
    source, reference = pair
    out = tmp_path / "out"
    out.mkdir()
    if command == "transfer":
        argv = [
            "transfer",
            str(source),
            str(reference),
            "-o",
            str(out / "x.png"),
            "--weights",
            str(tiny_weights),
        ]
    else:
        argv = ["lut-apply", str(request.getfixturevalue("warm_cube")), str(source), "-o", str(out / "x.png")]
    result = subprocess.run(
        [sys.executable, "-c", _SIGNALLED_CHILD, name, str(out), *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env=subprocess_env(),
        preexec_fn=_stop_signals_at_default,
    )
    signum = getattr(signal, name)
    assert result.returncode == 128 + signum, (result.returncode, result.stderr)
    assert result.stderr.strip().splitlines() == [f"recolorize: stopped by {name}"], result.stderr
    assert sorted(p.name for p in out.iterdir()) == []  # no output, no .x.png.XXXXXXXX.png


@pytest.mark.parametrize("name", STOP_SIGNALS)
def test_fuzz_stop_signals_at_random_moments_of_a_batch(name: str, warm_cube: Path, tmp_path: Path) -> None:
    """``lut-apply DIR`` over 16 photos, stopped at seeded random moments: whenever the signal lands, the
    output folder holds only complete photos (no hidden temporary file, nothing half-written) and the
    command ends as for Ctrl-C (or finished, or was stopped before it began: nothing written then)."""
    folder, rng = tmp_path / "photos", np.random.default_rng(23)
    folder.mkdir()
    for k in range(16):
        (folder / f"p{k:02d}.png").write_bytes(encode(picture(384, 512, seed=k)))
    signum = getattr(signal, name)
    for trial, delay in enumerate(rng.uniform(0.5, 3.0, size=3)):
        out = tmp_path / f"out{trial}"
        process = subprocess.Popen(
            [sys.executable, "-m", "recolorize", "lut-apply", str(warm_cube), str(folder), "-o", str(out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=subprocess_env(),
            preexec_fn=_stop_signals_at_default,
        )
        try:
            process.wait(timeout=float(delay))
        except subprocess.TimeoutExpired:
            process.send_signal(signum)
        _, stderr = process.communicate(timeout=120)
        assert process.returncode in (0, 128 + signum, -signum), (delay, process.returncode, stderr)
        assert "Traceback" not in stderr, stderr
        written = sorted(out.iterdir()) if out.exists() else []
        assert not [p.name for p in written if p.name.startswith(".")], (delay, written)
        for path in written:
            with Image.open(path) as image:
                image.load()  # complete: a half-written PNG fails here


def test_stop_signals_are_taken_only_when_at_their_default() -> None:
    """An ignored SIGHUP (nohup) stays ignored; SIGTERM raises while the block runs; both are restored."""
    from recolorize.errors import stop_signals_as_interrupts

    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        with stop_signals_as_interrupts():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGTERM)
                for _ in range(1000):  # the handler runs at the next bytecode boundary
                    pass
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)


def test_atomic_write_cleans_up_on_an_interrupt_at_any_point(tmp_path: Path) -> None:
    """A KeyboardInterrupt (what the stop signals become) inside the write: no temporary file left."""
    from recolorize.io_utils import is_hidden

    target = tmp_path / "out.png"
    with pytest.raises(KeyboardInterrupt), atomic_write(target) as tmp:
        tmp.write_bytes(b"partial")
        assert is_hidden(tmp.name) and tmp.parent == tmp_path
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_a_killed_writers_temporary_file_is_removed_by_whoever_outlives_it(tmp_path: Path) -> None:
    """A writer killed inside ``atomic_write`` (SIGKILL: no handler runs) leaves its hidden temporary file;
    ``remove_temporaries`` (the batch's parent when a helper dies, a training run's folder) deletes exactly
    those of the target, long names shortened alike, and nothing else."""
    from recolorize.io_utils import remove_temporaries

    def killed_inside(target: Path) -> Path:
        tmp = atomic_write(target).__enter__()  # entered, never left: what a SIGKILL mid-write leaves
        tmp.write_bytes(b"partial")
        return tmp

    short, long = tmp_path / "q00.jpg", tmp_path / ("x" * 240 + ".jpg")
    left = [killed_inside(short), killed_inside(long)]
    others = [tmp_path / "q00.jpg", tmp_path / ".q00.jpg.notmine", tmp_path / ".q01.jpg.0123abcd.jpg"]
    for path in others:
        path.write_bytes(b"keep")
    assert sorted(remove_temporaries(short) + remove_temporaries(long)) == sorted(left)
    assert sorted(tmp_path.iterdir()) == sorted(others)


def test_folder_scans_skip_hidden_and_temporary_files(
    tiny_weights: Path, pair: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], request
) -> None:
    """A killed writer's partial temporary file, a dot-file and a dot-folder are not photos: not for
    ``transfer DIR``, ``lut-apply DIR`` nor the training / build-cache / make-bench folder walk."""
    from recolorize.data.folders import discover_photos
    from recolorize.inference.jobs import images_in

    _, reference = pair
    folder = tmp_path / "photos"
    (folder / ".trash").mkdir(parents=True)
    good = encode(picture(48, 64, seed=3))
    (folder / "a.png").write_bytes(good)
    (folder / ".b.png.0a1b2c3d.png").write_bytes(good[: len(good) // 2])  # left by a killed writer
    (folder / ".hidden.jpg").write_bytes(encode(picture(48, 64, seed=4), "JPEG"))
    (folder / ".trash" / "c.png").write_bytes(good)
    assert [p.name for p in images_in(folder)] == ["a.png"]
    assert [p.image.name for p in discover_photos(folder)] == ["a.png"]
    out = tmp_path / "out"
    code, lines = run(
        ["transfer", str(folder), str(reference), "-o", str(out), "--weights", str(tiny_weights)], capsys
    )
    assert code == 0, lines
    assert sorted(p.name for p in out.iterdir()) == ["a.png"]
    graded = tmp_path / "graded"
    code, lines = run(
        ["lut-apply", str(request.getfixturevalue("warm_cube")), str(folder), "-o", str(graded)], capsys
    )
    assert code == 0, lines
    assert sorted(p.name for p in graded.iterdir()) == ["a.png"]


# ------------------------------------------------------------------- 2. two writers to one output


def test_a_name_taken_meanwhile_is_not_replaced(tmp_path: Path) -> None:
    target = tmp_path / "out.png"
    with pytest.raises(FileExistsError), atomic_write(target, replace=False) as tmp:
        tmp.write_bytes(b"second run")
        target.write_bytes(b"first run")  # the other run finished meanwhile
    assert target.read_bytes() == b"first run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]
    with atomic_write(target) as tmp:  # replace=True (--overwrite): replaces, as before
        tmp.write_bytes(b"replaced")
    assert target.read_bytes() == b"replaced"
    fresh = tmp_path / "fresh.png"
    with atomic_write(fresh, replace=False) as tmp:
        tmp.write_bytes(b"new")
    assert fresh.read_bytes() == b"new" and sorted(p.name for p in tmp_path.iterdir()) == [
        "fresh.png",
        "out.png",
    ]


def test_no_replace_without_hard_links_falls_back_to_an_exclusive_create(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")  # what vfat answers

    monkeypatch.setattr(os, "link", no_links)
    target = tmp_path / "out.png"
    with atomic_write(target, replace=False) as tmp:
        tmp.write_bytes(b"first")
    assert target.read_bytes() == b"first"
    with pytest.raises(FileExistsError), atomic_write(target, replace=False) as tmp:
        tmp.write_bytes(b"second")
    assert target.read_bytes() == b"first" and sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_writers_racing_for_one_name_one_wins_the_others_are_told(tmp_path: Path) -> None:
    target, writers = tmp_path / "out.png", 8
    barrier = threading.Barrier(writers)
    outcomes: dict[int, str] = {}

    def write(k: int) -> None:
        try:
            with atomic_write(target, replace=False) as tmp:
                tmp.write_bytes(f"writer {k}".encode())
                barrier.wait(timeout=30)  # all have written their temporary file; now all rename at once
            outcomes[k] = "won"
        except FileExistsError:
            outcomes[k] = "told"

    threads = [threading.Thread(target=write, args=(k,)) for k in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    winners = [k for k, outcome in outcomes.items() if outcome == "won"]
    assert len(outcomes) == writers and len(winners) == 1, outcomes
    assert target.read_bytes() == f"writer {winners[0]}".encode()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


@pytest.mark.parametrize("command", ["transfer", "lut-apply", "lut"])
def test_the_second_run_to_one_output_gets_the_exists_line(
    command: str,
    tiny_weights: Path,
    pair: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    request,
) -> None:
    """The output appears while this run works (another run to the same name finished first): without
    ``--overwrite`` this run is refused with the usual one line (exit 2) and the other's file stays; with
    it, the file is replaced as before."""
    source, reference = pair
    if command == "lut":
        import recolorize.inference.lut.cube as cube_module

        target, first = tmp_path / "look.cube", b"the first run's LUT"
        real = cube_module.cube_text

        def format_then_race(*args: object, **kwargs: object) -> str:
            text = real(*args, **kwargs)  # (called while the temporary file is open, before it is named)
            if not target.exists():
                target.write_bytes(first)
            return text

        monkeypatch.setattr(cube_module, "cube_text", format_then_race)
        argv = ["lut", str(source), str(reference), "-o", str(target), "--weights", str(tiny_weights)]
    else:
        import recolorize.imaging.encode as encode_module

        target, first = tmp_path / "out.png", b"the first run's photo"
        real = encode_module.encode_image

        def encode_then_race(*args: object, **kwargs: object) -> bytes:
            data = real(*args, **kwargs)
            if not target.exists():
                target.write_bytes(first)
            return data

        monkeypatch.setattr(encode_module, "encode_image", encode_then_race)
        if command == "transfer":
            argv = [
                "transfer",
                str(source),
                str(reference),
                "-o",
                str(target),
                "--weights",
                str(tiny_weights),
            ]
        else:
            argv = ["lut-apply", str(request.getfixturevalue("warm_cube")), str(source), "-o", str(target)]
    code, lines = run(argv, capsys)
    assert_one_error_line(code, lines)
    assert "exists" in lines[0] and "--overwrite" in lines[0]
    assert target.read_bytes() == first
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    target.unlink()
    code, lines = run([*argv, "--overwrite"], capsys)
    assert code == 0, lines
    assert target.read_bytes() != first  # replaced with --overwrite, as today


# ------------------------------------------------------------------------------------------ 3. NaN, inf


@pytest.fixture(scope="module")
def non_finite_weights(tiny_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny model with one float tensor holding NaN, +inf or -inf (fp32), and NaN in an fp16 file."""
    state = load_file(str(tiny_weights))
    metadata = {"format": "recolorize-1"}
    name = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 4)
    paths = {}
    for case, value, dtype in [
        ("nan", math.nan, torch.float32),
        ("inf", math.inf, torch.float32),
        ("-inf", -math.inf, torch.float32),
        ("fp16 nan", math.nan, torch.float16),
    ]:
        edited = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in state.items()}
        edited[name] = edited[name].clone()
        edited[name].view(-1)[1] = value
        path = tmp_path_factory.mktemp("nonfinite") / "model.safetensors"
        save_file(edited, str(path), metadata=metadata)
        path.with_suffix(".json").write_text(tiny_weights.with_suffix(".json").read_text())
        paths[case] = path
    return paths


@pytest.mark.parametrize("case", ["nan", "inf", "-inf", "fp16 nan"])
def test_non_finite_weights_are_refused_at_load_in_one_line(
    case: str,
    non_finite_weights: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Torch weights holding NaN or inf are refused where torch loads them: ``recolorize export`` (so such a
    model never becomes graphs) and the torch pipeline that eval runs on weights without graphs."""
    from recolorize.torch_inference.recolorizer import TorchRecolorizer

    path = non_finite_weights[case]
    with pytest.raises(WeightsError) as error:
        TorchRecolorizer.from_pretrained(path)
    assert "NaN or infinite" in str(error.value) and str(path) in str(error.value)
    assert "\n" not in str(error.value)
    out = tmp_path / "exported"
    code, lines = run(["export", str(path), "-o", str(out)], capsys)
    assert_one_error_line(code, lines)
    assert "NaN or infinite" in lines[0] and not out.exists()


def _graph_with(folder: Path, graph: str, value: float) -> None:
    """Set one entry of the first float tensor (more than 4 values) that ``folder``'s ``graph`` holds."""
    import onnx
    from onnx import numpy_helper

    path = folder / f"{graph}.onnx"
    proto = onnx.load(str(path))
    floats = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
    tensor = next(t for t in proto.graph.initializer if t.data_type in floats and math.prod(t.dims) > 4)
    array = numpy_helper.to_array(tensor).copy()
    array.reshape(-1)[1] = value
    tensor.CopyFrom(numpy_helper.from_array(array, tensor.name))
    onnx.save(proto, str(path))


@pytest.fixture(scope="module")
def non_finite_graphs(tiny_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Exported model folders (the tiny one's graphs and config) whose ``graph`` holds NaN or +inf in one
    weight: keys "graph value" ("generator nan", ...)."""
    pytest.importorskip("onnx")
    folders = {}
    for graph in ("features", "predictor", "generator"):
        for name, value in (("nan", math.nan), ("inf", math.inf)):
            folder = tmp_path_factory.mktemp("nonfinite-graph")
            for file in tiny_weights.parent.iterdir():
                if file.is_file():
                    (folder / file.name).write_bytes(file.read_bytes())
            _graph_with(folder, graph, value)
            folders[f"{graph} {name}"] = folder
    return folders


def _fails_in_one_line(recolorizer_or_error: object, source: Path, reference: Path) -> None:
    """The exported model is refused at load (one ``WeightsError`` line), or each render is one
    ``UserError`` line naming NaN or infinity."""
    if isinstance(recolorizer_or_error, WeightsError):
        assert "\n" not in str(recolorizer_or_error)
        return
    for strength in (1.0, 0.5):
        with pytest.raises(UserError) as error:
            recolorizer_or_error.transfer(source, reference, strength=strength)  # type: ignore[attr-defined]
        assert "NaN or infinity" in str(error.value) and "\n" not in str(error.value)


def _load(folder: Path) -> object:
    from recolorize.inference.pipeline import Recolorizer

    try:
        return Recolorizer.from_pretrained(folder)
    except WeightsError as error:
        return error


# ONNX Runtime renders a photo up to 0.5 MP on every pixel ("direct"), a larger one on a 0.26-MP copy carried
# up to its size ("carried"): both routes refuse a non-finite rendering.
ROUTES = {"direct": (48, 64), "carried": (800, 900)}


@pytest.mark.parametrize("route", list(ROUTES))
@pytest.mark.parametrize("value", ["nan", "inf"])
def test_a_render_with_non_finite_values_is_an_error_not_an_image(
    route: str, value: str, non_finite_graphs: dict[str, Path], pair: tuple[Path, Path], tmp_path: Path
) -> None:
    _, reference = pair
    source = tmp_path / "large.png"
    source.write_bytes(encode(picture(*ROUTES[route])))
    _fails_in_one_line(_load(non_finite_graphs[f"generator {value}"]), source, reference)


def _torch_broken(recolorizer: object, value: float) -> None:
    with torch.no_grad():
        for parameter in recolorizer.model.generator.parameters():  # type: ignore[attr-defined]
            parameter.fill_(value)


@pytest.mark.parametrize("full_resolution", ["direct", "affine"])
@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_a_torch_render_with_non_finite_values_is_an_error_not_an_image(
    full_resolution: str, value: float, tiny_weights: Path, pair: tuple[Path, Path]
) -> None:
    """The torch pipeline (the parity reference, eval of weights without graphs), both of its routes."""
    from recolorize.torch_inference.recolorizer import TorchRecolorizer

    recolorizer = TorchRecolorizer.from_pretrained(tiny_weights, full_resolution=full_resolution)
    _torch_broken(recolorizer, value)
    source, reference = pair
    for strength in (1.0, 0.5):
        with pytest.raises(UserError) as error:
            recolorizer.transfer(source, reference, strength=strength)
        assert "NaN or infinity" in str(error.value) and "\n" not in str(error.value)


GRAPH_CASES = [
    pytest.param(
        "features inf",
        marks=pytest.mark.xfail(
            strict=True,
            reason="known gap: an inf weight in the features graph is clipped by its ReLU6 layers into a "
            "finite but wrong prior, and the exported graphs' weights are not checked at load",
        ),
    ),
    "features nan",
    "predictor nan",
    "predictor inf",
    "generator nan",
    "generator inf",
]


@pytest.mark.parametrize("case", GRAPH_CASES)
def test_a_non_finite_model_folder_in_the_cli_is_one_line_and_no_file(
    case: str,
    non_finite_graphs: dict[str, Path],
    pair: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An exported model whose graph holds NaN or inf loads (ONNX Runtime checks no values), but it is
    refused in one line, at load or at render: exit 2, no file, no temporary file."""
    folder = non_finite_graphs[case]
    source, reference = pair
    _fails_in_one_line(_load(folder), source, reference)
    out = tmp_path / "o.png"
    code, lines = run(
        ["transfer", str(source), str(reference), "-o", str(out), "--weights", str(folder)], capsys
    )
    assert_one_error_line(code, lines)
    assert ("NaN or infinity" in lines[0] or "NaN or infinite" in lines[0]) and not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


NON_FINITE_SETTINGS = [
    "generator.lr=1e400",
    "generator.lr=NaN",
    "generator.lr=Infinity",
    "wencoder.l1=-Infinity",
    "predictor.grad_clip=NaN",
    "generator.betas=[0.9, 1e400]",
    "generator.betas=[NaN, 0.99]",
    "ema_decay=NaN",
    "log_every=1e400",
    "seed=NaN",
]


@pytest.mark.parametrize("setting", NON_FINITE_SETTINGS)
def test_non_finite_hyper_parameters_are_refused(setting: str) -> None:
    from recolorize.training import apply_overrides
    from recolorize.training.arguments import parse_setting

    key, value = parse_setting(setting)
    with pytest.raises(UserError) as error:
        apply_overrides(TRAIN_CONFIGS["tiny"], {key: value})
    assert "finite" in str(error.value) and key in str(error.value)


def test_a_non_finite_setting_from_anywhere_is_refused() -> None:
    """Whatever the source (a stored config, a checkpoint's), not only ``--set``."""
    import dataclasses

    from recolorize.training import apply_overrides

    base = TRAIN_CONFIGS["tiny"]
    broken = dataclasses.replace(base, predictor=dataclasses.replace(base.predictor, w0=math.inf))
    with pytest.raises(UserError, match="predictor.w0 must be a finite number"):
        apply_overrides(broken, {})


@pytest.fixture()
def photo_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for k in range(4):
        (folder / f"p{k}.png").write_bytes(encode(picture(96, 96, seed=10 + k)))
    return folder


@pytest.mark.parametrize(
    "option",
    [["--set", "generator.lr=1e400"], ["--lr", "inf"], ["--lr", "nan"], ["--set", "generator.lr=NaN"]],
)
def test_train_refuses_a_non_finite_learning_rate_in_one_line(
    option: list[str], photo_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    args = ["train", "--config", "tiny", "--data", str(photo_folder), "--run", str(run_dir)]
    code, lines = run([*args, "--stage", "generator", "--steps", "2", "--batch", "2", *option], capsys)
    assert_one_error_line(code, lines)
    assert "finite" in lines[0]
    assert not (run_dir / "generator.safetensors").exists()


def test_a_run_whose_loss_stays_non_finite_stops_and_keeps_the_last_finite_checkpoint(
    photo_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """From step 4 on every loss is NaN: the steps are skipped (one alone would be, as before), the run
    stops after MAX_NONFINITE_STEPS of them in a row with one error line (exit 2), no checkpoint is written
    during them, and no stage weights are written at all."""
    from recolorize.training import load_checkpoint, stages
    from recolorize.training.runner import MAX_NONFINITE_STEPS

    calls = {"n": 0}
    real_l1 = stages.LOSS_TERMS["l1"]

    def l1_turns_nan(outputs, model, lpips):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        value = real_l1(outputs, model, lpips)
        return value * float("nan") if calls["n"] >= 4 else value

    monkeypatch.setitem(stages.LOSS_TERMS, "l1", l1_turns_nan)
    run_dir = tmp_path / "run"
    args = ["train", "--config", "tiny", "--data", str(photo_folder), "--run", str(run_dir), "--stage"]
    settings = ["--set", "checkpoint_every=2", "--set", "log_every=1000", "--set", "sample_every=1000"]
    code, lines = run([*args, "wencoder", "--steps", "60", "--batch", "2", *settings], capsys)
    assert code == 2, lines
    errors = [line for line in lines if line.startswith("recolorize: error:")]
    assert errors == [lines[-1]], lines
    assert (
        f"not finite for {MAX_NONFINITE_STEPS} steps in a row (steps 4-{3 + MAX_NONFINITE_STEPS})"
        in lines[-1]
    )
    assert "step 2 of this stage" in lines[-1]
    checkpoint = load_checkpoint(run_dir / "checkpoint.safetensors")
    assert checkpoint.stage == "wencoder" and checkpoint.step == 2  # the last one before the NaN
    assert all(torch.isfinite(t).all() for t in checkpoint.model_state.values() if t.is_floating_point())
    assert not (run_dir / "wencoder.safetensors").exists()


# --------------------------------------------------------------------------- 4. the app's download header


def test_attachment_header_is_one_clean_line_with_an_exact_utf8_name() -> None:
    from recolorize.app.validation import attachment_header, clean_filename

    for name in [
        "photo.png",
        'a"b\\c%41.png',
        "évian été-recolorized.jpg",
        "x\nX-Injected: yes\r\nSet-Cookie: a=b.png",
        "\u202egnp.exe\u200b\x00\x7f\x85.png",
        "фото 写真 🙂.webp",
    ]:
        header = attachment_header(name)
        assert all(" " <= c <= "~" for c in header), repr(header)  # printable ASCII only: no CR, LF
        plain, _, encoded = header.partition("; filename*=UTF-8''")
        assert plain.startswith('attachment; filename="') and plain.endswith('"')
        assert '"' not in plain[len('attachment; filename="') : -1] and "\\" not in plain
        assert unquote(encoded) == clean_filename(name)
        assert all(c not in unquote(encoded) for c in "\r\n\x00\x7f\x85\u202e\u200b")


def _multipart(files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = []
    for field, (filename, data) in files.items():
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        )
        parts.append(head.encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def _request(srv, method: str, path: str, body: bytes | None = None, headers: dict | None = None):  # type: ignore[no-untyped-def]
    host, port = srv.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.getheaders(), response.read()
    finally:
        conn.close()


def test_an_upload_file_name_cannot_inject_download_headers(
    tiny_weights: Path, pair: tuple[Path, Path]
) -> None:
    """An upload named with line feeds (``X-Injected``, ``Set-Cookie``) and non-ASCII: the download has
    one Content-Disposition with the name cleaned, in ASCII and as RFC 6266 ``filename*``, and no other
    header of the client's making."""
    from recolorize.app.jobs import AppConfig
    from recolorize.app.server import create_server
    from recolorize.inference.pipeline import Recolorizer

    source, reference = pair
    server = create_server(Recolorizer.from_pretrained(tiny_weights), port=0, config=AppConfig())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        evil = "été\nX-Injected: yes\nSet-Cookie: session=stolen\r\x0bend.png"
        body, content_type = _multipart(
            {"source": (evil, source.read_bytes()), "reference": ("r.png", reference.read_bytes())}
        )
        status, _, answer = _request(server, "POST", "/api/prepare", body, {"Content-Type": content_type})
        assert status == 200, answer
        upload = json.loads(answer)["id"]
        status, headers, data = _request(server, "GET", f"/api/download/{upload}?strength=1")
        assert status == 200 and data
        names = [key.lower() for key, _ in headers]
        assert "x-injected" not in names and "set-cookie" not in names, headers
        (disposition,) = [value for key, value in headers if key.lower() == "content-disposition"]
        assert all(" " <= c <= "~" for c in disposition), repr(disposition)
        expected = "étéX-Injected: yesSet-Cookie: session=stolenend-recolorized.png"
        assert disposition.endswith("filename*=UTF-8''" + quote(expected, safe=""))
        assert 'filename="_t_X-Injected: yesSet-Cookie: session=stolenend-recolorized.png"' in disposition
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
