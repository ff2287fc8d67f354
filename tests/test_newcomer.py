"""Issue 23, items 19-21 and the newcomer's stumbles, one class per test group:

19. a legal 250-byte output name is written (the temporary name is shortened to fit); a name too long for
    the filesystem is refused before any work;
20. garbage EXIF and NaN weights put no library warning (raw bytes, a numpy source line) on stderr;
21. where an output's folder comes from: one output file's folder must exist (as with ``cp``), a batch's
    ``-o`` folder may be made, and ``nosuch/../out.jpg`` never makes ``nosuch``;
then a fresh user's stumbles: ``--version``, help texts a wheel user can read, one "wrote" line, a text file
refused before torch is imported, the pretrained cache pruned, docs that cite only what the repository has.

Everything runs on tiny photos, a tiny ``.cube`` and the tiny models, in seconds.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from cli_helpers import REPO, assert_one_error_line, encode, picture, run, subprocess_env
from recolorize.cli import main


@pytest.fixture()
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    path.write_bytes(encode(picture()))
    return path


# -------------------------------------------------------------------------------- 19. long output names


def test_a_250_byte_output_name_is_written(
    tmp_path: Path, photo: Path, warm_cube: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """250 bytes is a legal name (NAME_MAX 255): the hidden temporary name beside it is shortened to fit."""
    out = tmp_path / ("x" * 246 + ".png")
    assert len(out.name.encode()) == 250
    code, lines = run(["lut-apply", str(warm_cube), str(photo), "-o", str(out)], capsys)
    assert code == 0, lines
    assert out.is_file() and Image.open(out).size == (64, 48)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["photo.png", out.name])
    # a multi-byte name near the limit too (the shortened temporary name stays valid UTF-8)
    wide = tmp_path / ("é" * 124 + ".png")
    assert len(wide.name.encode()) == 252
    code, lines = run(["lut-apply", str(warm_cube), str(photo), "-o", str(wide)], capsys)
    assert code == 0 and wide.is_file(), lines


def test_an_output_name_too_long_is_refused_before_any_work(
    tmp_path: Path, photo: Path, warm_cube: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A name the filesystem cannot hold is one line, exit 2, before the photo is decoded or the LUT read."""
    long_name = "y" * 300 + ".png"
    bad_cube = tmp_path / "bad.cube"
    bad_cube.write_text("not a cube\n")  # reading it would fail with a different message
    code, lines = run(["lut-apply", str(bad_cube), str(photo), "-o", str(tmp_path / long_name)], capsys)
    assert_one_error_line(code, lines)
    assert "longer than" in lines[0]
    code, lines = run(["lut", str(photo), str(photo), "-o", str(tmp_path / ("z" * 300 + ".cube"))], capsys)
    assert_one_error_line(code, lines)
    assert "longer than" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.cube", "photo.png"]


# ------------------------------------------------------------------------- 21. where output folders come from


def test_one_output_files_folder_must_exist(
    tmp_path: Path, photo: Path, warm_cube: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """As with ``cp``: ``-o /typo/dir/x.png`` is one line, exit 2, and no folder is made; so for ``lut``."""
    for command in (
        ["lut-apply", str(warm_cube), str(photo), "-o", str(tmp_path / "typo" / "dir" / "x.png")],
        ["lut", str(photo), str(photo), "-o", str(tmp_path / "typo" / "dir" / "x.cube")],
        ["transfer", str(photo), str(photo), "-o", str(tmp_path / "typo" / "dir" / "x.png")],
    ):
        code, lines = run(command, capsys)
        assert_one_error_line(code, lines)
        assert "does not exist" in lines[0], lines
        assert not (tmp_path / "typo").exists()


def test_dot_dot_through_a_missing_folder_leaves_no_folder(
    tmp_path: Path,
    photo: Path,
    warm_cube: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``-o nosuch/../out.png`` names a folder that does not exist: refused, and ``nosuch/`` is not made;
    for a batch, ``-o nosuch/../out/`` is made as ``./out`` alone."""
    monkeypatch.chdir(tmp_path)
    code, lines = run(["lut-apply", str(warm_cube), str(photo), "-o", "nosuch/../out.png"], capsys)
    assert_one_error_line(code, lines)
    assert not (tmp_path / "nosuch").exists() and not (tmp_path / "out.png").exists()

    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.png").write_bytes(encode(picture()))
    code, lines = run(["lut-apply", str(warm_cube), str(photos), "-o", "nosuch/../out/"], capsys)
    assert code == 0, lines
    assert (tmp_path / "out" / "a.png").is_file()
    assert not (tmp_path / "nosuch").exists()


def test_a_batch_output_folder_may_be_made(
    tmp_path: Path, warm_cube: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.png").write_bytes(encode(picture()))
    code, lines = run(["lut-apply", str(warm_cube), str(photos), "-o", str(tmp_path / "new" / "out")], capsys)
    assert code == 0, lines
    assert (tmp_path / "new" / "out" / "a.png").is_file()


# --------------------------------------------------------------------- 20. no library warnings on stderr

#: An EXIF block Pillow cannot parse (no TIFF header): it used to be quoted, raw bytes and all, on stderr.
GARBAGE_EXIF = b"Exif\x00\x00\x89\xfe\x00garbage\xff\xfe\x00\x01"


def test_garbage_exif_prints_no_warning(tmp_path: Path, warm_cube: Path) -> None:
    """A malformed EXIF block counts as orientation 1, as the README says, without a word on stderr: not
    for the source, and not for a reference whose EXIF is never used (a subprocess: the CLI's own log
    set-up and Python's warnings, as a user sees them)."""
    for fmt in ("png", "webp", "jpg"):
        photo = tmp_path / f"garbage.{fmt}"
        Image.fromarray(picture()).save(photo, exif=GARBAGE_EXIF)
        for command in (
            ["lut", str(photo), str(photo), "-o", str(tmp_path / f"{fmt}.cube")],
            ["lut-apply", str(warm_cube), str(photo), "-o", str(tmp_path / f"out.{fmt}")],
        ):
            result = subprocess.run(
                [sys.executable, "-m", "recolorize", *command],
                capture_output=True, text=True, env=subprocess_env(), timeout=120,
            )  # fmt: skip
            lines = [line for line in result.stderr.splitlines() if line.strip()]
            assert result.returncode == 0, result.stderr
            assert len(lines) == 1 and lines[0].startswith("wrote "), result.stderr


@pytest.mark.parametrize("case", ["nan", "inf", "huge"])
def test_train_init_with_nan_weights_is_one_line_without_a_numpy_warning(case: str, tmp_path: Path) -> None:
    """In a subprocess (pytest would catch the warnings itself): NaN / inf weights are refused in one line;
    finite weights that overflow to NaN train without numpy's cast warning (the sample grid)."""
    import torch
    from safetensors.torch import load_file, safe_open, save_file

    from recolorize.config import get_config
    from recolorize.networks.model import RecolorModel

    torch.manual_seed(0)
    good = tmp_path / "good.safetensors"
    RecolorModel(get_config("tiny-pointwise")).save(good)
    with safe_open(str(good), "pt") as handle:
        metadata = handle.metadata()
    state = load_file(str(good))
    photos = tmp_path / "photos"
    photos.mkdir()
    for k in range(4):
        (photos / f"p{k}.png").write_bytes(encode(picture(96, 96, seed=10 + k)))
    for value in [{"nan": float("nan"), "inf": float("inf"), "huge": 3e38}[case]]:
        broken = tmp_path / f"{case}.safetensors"
        save_file(
            {k: (torch.full_like(v, value) if v.is_floating_point() else v) for k, v in state.items()},
            str(broken),
            metadata=metadata,
        )
        broken.with_suffix(".json").write_text(good.with_suffix(".json").read_text())
        result = subprocess.run(
            [sys.executable, "-m", "recolorize", "train", "--data", str(photos), "--run", str(tmp_path / "r"),
             "--stage", "generator", "--steps", "1", "--batch", "2", "--init", str(broken)],
            capture_output=True, text=True, env=subprocess_env(), timeout=120, cwd=tmp_path,
        )  # fmt: skip
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert "Warning" not in result.stderr, result.stderr
        if case != "huge":
            assert result.returncode == 2 and len(lines) == 1, result.stderr


# ------------------------------------------------------------------------------- the newcomer's stumbles


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib import metadata

    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"recolorize {metadata.version('recolorize')}"
    readme = (REPO / "README.md").read_text()
    assert "recolorize --version" in readme and ".venv/bin/recolorize" in readme


def _help_texts() -> dict[str, str]:
    import argparse

    from recolorize.cli import build_parser

    parser = build_parser()
    texts = {"recolorize": parser.format_help()}
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in subparsers.choices.items():
        texts[name] = sub.format_help()
    return texts


def test_help_texts_have_no_markup_source_paths_or_docs_references() -> None:
    """What a wheel user reads: no RST markup, no source paths, no pages of docs/ (the wheel has none)."""
    import re

    texts = _help_texts()
    assert {"transfer", "lut", "lut-apply", "train", "build-cache", "export", "app"} <= set(texts)
    for name, text in texts.items():
        assert "``" not in text, (name, text)
        assert "src/" not in text and "docs/" not in text, (name, text)
        assert not re.search(r"[\w/]+\.py\b", text), (name, re.search(r"[\w/]+\.py\b", text))


def test_the_demo_prints_one_wrote_line() -> None:
    """The CLI says what it wrote; the demo script does not say it again."""
    script = (REPO / "scripts" / "demo.sh").read_text()
    assert "echo" not in script or "wrote" not in script.split("echo", 1)[1]


def test_wrote_lines_are_not_glued_onto_the_progress_bar(tmp_path: Path, warm_cube: Path) -> None:
    """In a batch each "wrote" line starts its own line: printed through tqdm while the bar is drawn, not
    appended to the bar's last frame (which a terminal shows as one line)."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for k in range(3):
        (photos / f"p{k}.png").write_bytes(encode(picture(seed=k)))
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "recolorize", "lut-apply", str(warm_cube), str(photos), "-o", str(out)],
        capture_output=True, text=True, env=subprocess_env(), timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    wrote = [line for line in result.stderr.split("\n") if "wrote" in line]
    assert len(wrote) == 3, result.stderr
    for line in wrote:
        assert line.split("\r")[-1].startswith("wrote "), repr(line)


@pytest.mark.parametrize(
    "command",
    [
        ["transfer", "{text}", "{photo}", "-o", "{out}.png"],
        ["transfer", "{photo}", "{text}", "-o", "{out}.png"],
        ["transfer", "{folder}", "{text}", "-o", "{out}"],
        ["lut", "{text}", "{photo}", "-o", "{out}.cube"],
        ["lut", "{photo}", "{text}", "-o", "{out}.cube"],
        ["lut-apply", "{cube}", "{text}", "-o", "{out}.png"],
    ],
)
def test_a_text_file_given_as_a_photo_is_refused_before_torch_is_imported(
    command: list[str], tmp_path: Path, photo: Path, warm_cube: Path
) -> None:
    """Other mistakes take 0.3 s; a text file named .jpg must not wait for torch's import (2-3 s)."""
    text = tmp_path / "notes.jpg"
    text.write_text("not a photo\n")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a.png").write_bytes(encode(picture()))
    names = {"text": text, "photo": photo, "cube": warm_cube, "folder": folder, "out": tmp_path / "out"}
    argv = [part.format(**names) for part in command]
    probe = (
        "import sys\nfrom recolorize.cli import main\ncode = main(sys.argv[1:])\n"
        "print(code, 'torch' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, *argv],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=120,
    )
    assert result.stdout.split() == ["2", "False"], (result.stdout, result.stderr)
    assert "is not an image file" in result.stderr


def test_writing_a_weight_cache_prunes_those_of_removed_installs(tmp_path: Path) -> None:
    """Each install converts its EfficientNet .pth into its own 19 MB cache file; once an install is gone
    its file is deleted when another is written. A live install's cache and foreign files stay."""
    import torch

    from recolorize.pretrained.loaders import cached_torch_state

    cache = tmp_path / "cache"
    state = {"w": torch.arange(6, dtype=torch.float32)}
    sources = {}
    for install in ("old", "live", "new"):
        (tmp_path / install).mkdir()
        sources[install] = tmp_path / install / "model.pth"
        sources[install].write_bytes(install.encode())
    cached_torch_state(sources["old"], cache, fallback=lambda _: state)
    cached_torch_state(sources["live"], cache, fallback=lambda _: state)
    assert len(list(cache.glob("*.safetensors"))) == 2
    (cache / "notes.safetensors").write_bytes(b"not ours")
    from safetensors.torch import save_file

    save_file(state, str(cache / "model-0123456789ab.safetensors"), metadata={"format": "other"})
    sources["old"].unlink()
    shutil.rmtree(tmp_path / "old")
    cached_torch_state(sources["new"], cache, fallback=lambda _: state)
    left = sorted(p.name for p in cache.glob("*.safetensors"))
    assert len(left) == 4, left  # live, new, and the two foreign files
    assert "notes.safetensors" in left and "model-0123456789ab.safetensors" in left
    for install in ("live", "new"):
        torch.testing.assert_close(cached_torch_state(sources[install], cache, fallback=lambda _: {}), state)


def test_the_readme_documents_the_cache() -> None:
    readme = (REPO / "README.md").read_text()
    assert "~/.cache/recolorize" in readme and "RECOLORIZE_CACHE_DIR" in readme


def test_docs_cite_only_pages_the_repository_has() -> None:
    """design.md was cited but never committed: every ``*.md`` a doc or a docstring names must exist."""
    import re

    texts = {p: p.read_text() for p in [REPO / "README.md", *(REPO / "docs").glob("*.md")]}
    texts.update({p: p.read_text() for p in (REPO / "src" / "recolorize").rglob("*.py")})
    for path, text in texts.items():
        assert "design.md" not in text, path
        for cited in re.findall(r"\bdocs/([\w-]+\.md)", text):
            assert (REPO / "docs" / cited).is_file(), (path, cited)
    assert "## Design decisions" in (REPO / "docs" / "architecture.md").read_text()


def test_the_architecture_file_map_names_every_module() -> None:
    """docs/architecture.md's file map is drawn from the tree: each module's file name appears in it."""
    text = (REPO / "docs" / "architecture.md").read_text()
    missing = sorted(
        str(path.relative_to(REPO / "src" / "recolorize"))
        for path in (REPO / "src" / "recolorize").rglob("*.py")
        if path.name not in text
    )
    assert not missing, missing
