"""3D LUTs (.cube): fit, apply, read/write, and the ``lut`` / ``lut-apply`` / ``transfer --lut`` commands.

The independent checks read our ``.cube`` files with other implementations: pillow-lut's parser with
Pillow's C trilinear filter, ffmpeg's ``lut3d`` filter (the binary of the imageio-ffmpeg test extra), and
colour-science (the test extra), whose writer ours replaced: each reads what the other writes.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage.color import rgb2lab

from recolorize.cli import main
from recolorize.errors import UserError
from recolorize.evaluation.metrics import ciede2000
from recolorize.inference.lut import (
    Lut3D,
    LutError,
    fit_lut,
    pooled_generator_lut,
    read_cube,
    transfer_lut,
    write_cube,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
# A 3x3 colour matrix (rows sum to 1: greys stay grey) and a gamma: a known global transform.
MATRIX = np.array([[0.70, 0.25, 0.05], [0.10, 0.65, 0.25], [0.15, 0.05, 0.80]])
GAMMA = 1.3


def known_transform(rgb: np.ndarray) -> np.ndarray:
    """A global colour transform a LUT can hold: matrix, clip, gamma; deliberately not symmetric in r, g, b
    so that a LUT read or applied with its axes swapped fails."""
    return np.clip(np.asarray(rgb, dtype=np.float64) @ MATRIX.T, 0.0, 1.0) ** GAMMA


def lattice(size: int) -> np.ndarray:
    return Lut3D.identity(size).table.astype(np.float64)


def photo() -> np.ndarray:
    return np.asarray(Image.open(EXAMPLES / "source.jpg").convert("RGB"), dtype=np.float32) / 255.0


def delta_e(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """CIEDE2000 per pixel between two sRGB images in [0, 1]."""
    return ciede2000(rgb2lab(np.clip(a, 0, 1)), rgb2lab(np.clip(b, 0, 1)))


def eight_bit(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255.0


@pytest.fixture(scope="module")
def graded_cube(tmp_path_factory) -> tuple[Lut3D, Path]:
    """The known transform baked into a 33^3 LUT and written by us."""
    lut = Lut3D(known_transform(lattice(33)))
    path = write_cube(lut, tmp_path_factory.mktemp("cube") / "known.cube")
    return lut, path


# ---------------------------------------------------------------------------------------- apply / io


def test_identity_lut_returns_the_photo_within_one_level(tmp_path) -> None:
    source = tmp_path / "source.png"
    Image.open(EXAMPLES / "source.jpg").convert("RGB").save(source)
    cube = write_cube(Lut3D.identity(), tmp_path / "identity.cube")
    out = tmp_path / "out.png"
    assert main(["lut-apply", str(cube), str(source), "-o", str(out)]) == 0
    difference = np.abs(eight_bit(out) - eight_bit(source)) * 255.0
    assert difference.max() <= 1.0
    assert np.abs(Lut3D.identity().apply(photo()) - photo()).max() < 1e-5


def test_known_transform_baked_into_a_lut_reproduces_it(graded_cube) -> None:
    lut, path = graded_cube
    image = photo()
    expected = known_transform(image)
    for applied in (lut.apply(image), read_cube(path).apply(image)):
        error = delta_e(applied, expected)
        assert error.max() <= 1.0, error.max()
    # and the LUT did change the photo (the test would pass on an identity otherwise)
    assert delta_e(image, expected).mean() > 5.0


def test_written_cube_reads_back_with_its_layout(graded_cube) -> None:
    lut, path = graded_cube
    text = path.read_text().splitlines()
    assert "LUT_3D_SIZE 33" in text
    rows = [line for line in text if line[:1].isdigit()]
    assert len(rows) == 33**3
    # red index fastest: the second row is (r=1, g=0, b=0)
    assert np.allclose([float(v) for v in rows[1].split()], lut.table[1, 0, 0], atol=1e-6)
    assert np.abs(read_cube(path).table - lut.table).max() < 1e-6


def test_pillow_reads_and_applies_our_cube_like_we_do(graded_cube) -> None:
    """Independent reader (pillow-lut) and interpolator (Pillow's C Color3DLUT): the same image."""
    from pillow_lut import load_cube_file

    _, path = graded_cube
    image = Image.open(EXAMPLES / "source.jpg").convert("RGB")
    theirs = np.asarray(image.filter(load_cube_file(str(path))), dtype=np.float64) / 255.0
    ours = read_cube(path).apply(np.asarray(image, dtype=np.float32) / 255.0)
    # ours before quantisation against theirs (8-bit): every pixel within 1 ΔE2000, and within 1 level
    error = delta_e(ours, theirs)
    assert error.max() <= 1.0, error.max()
    assert np.abs(np.round(ours * 255.0) - theirs * 255.0).max() <= 1.0


def test_ffmpeg_lut3d_applies_our_cube_like_we_do(graded_cube, tmp_path) -> None:
    """Independent reader and interpolator: ffmpeg's lut3d filter (trilinear) on a PNG. The ffmpeg binary
    comes with the test extra (imageio-ffmpeg), so the check runs wherever the tests do."""
    import imageio_ffmpeg

    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    _, path = graded_cube
    source = tmp_path / "source.png"
    Image.open(EXAMPLES / "source.jpg").convert("RGB").save(source)
    out = tmp_path / "ffmpeg.png"
    subprocess.run(
        [ffmpeg, "-v", "error", "-y", "-i", str(source), "-vf", f"lut3d=file={path}:interp=trilinear"]
        + ["-frames:v", "1", str(out)],
        check=True,
        timeout=120,
    )
    ours = read_cube(path).apply(eight_bit(source))
    error = delta_e(ours, eight_bit(out))
    assert error.max() <= 1.0, error.max()
    assert np.abs(np.round(ours * 255.0) - eight_bit(out) * 255.0).max() <= 1.0


def test_we_read_and_apply_a_cube_written_by_hand_with_a_domain_and_a_shaper(tmp_path) -> None:
    """A cube from someone else: comments, TITLE, DOMAIN_MIN/MAX (Adobe) and a Resolve 1D shaper."""
    table = known_transform(lattice(5))
    rows = "\n".join(
        " ".join(f"{v:.6f}" for v in table[r, g, b]) for b in range(5) for g in range(5) for r in range(5)
    )
    adobe = tmp_path / "adobe.cube"
    adobe.write_text(
        f'# made by hand\nTITLE "hand"\nLUT_3D_SIZE 5\nDOMAIN_MIN 0 0 0\nDOMAIN_MAX 2 2 2\n{rows}\n'
    )
    lut = read_cube(adobe)
    colours = np.array([[0.2, 0.4, 0.6], [1.0, 0.5, 0.0]])
    # the domain is 0-2, so an input of c samples the table at c / 2
    assert np.allclose(lut.apply(colours), Lut3D(table).apply(colours / 2.0), atol=1e-5)
    shaper = "\n".join(f"{v:.6f} {v:.6f} {v:.6f}" for v in np.linspace(0, 1, 11) ** 2)
    resolve = tmp_path / "resolve.cube"
    resolve.write_text(f"LUT_1D_SIZE 11\nLUT_3D_SIZE 5\n{shaper}\n{rows}\n")
    with_shaper = read_cube(resolve)
    assert with_shaper.curves is not None
    squared = np.array([[0.2, 0.4, 0.6]]) ** 2
    assert np.allclose(with_shaper.apply([[0.2, 0.4, 0.6]]), Lut3D(table).apply(squared), atol=3e-3)


MALFORMED = {
    "empty": "",
    "not a LUT": "hello world\n",
    "too few rows": "LUT_3D_SIZE 3\n" + "0 0 0\n" * 26,
    "too many rows": "LUT_3D_SIZE 2\n" + "0 0 0\n" * 9,
    "two values on a row": "LUT_3D_SIZE 2\n" + "0 0 0\n" * 7 + "0 0\n",
    "not a number": "LUT_3D_SIZE 2\n" + "0 0 0\n" * 7 + "0 x 0\n",
    "NaN": "LUT_3D_SIZE 2\n" + "0 0 0\n" * 7 + "nan 0 0\n",
    "bad size": "LUT_3D_SIZE two\n" + "0 0 0\n" * 8,
    "size 1": "LUT_3D_SIZE 1\n0 0 0\n",
    "binary": "\x00\x01\x02LUT_3D_SIZE 2\n",
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_cube_is_one_user_error_line(case, tmp_path, capsys) -> None:
    path = tmp_path / "bad.cube"
    path.write_text(MALFORMED[case])
    with pytest.raises(UserError) as caught:
        read_cube(path)
    assert (
        isinstance(caught.value, LutError)
        and "\n" not in str(caught.value)
        and str(path) in str(caught.value)
    )
    source = tmp_path / "source.png"
    Image.open(EXAMPLES / "source.jpg").convert("RGB").save(source)
    assert main(["lut-apply", str(path), str(source), "-o", str(tmp_path / "out.png")]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("recolorize: error: LUT"), lines
    assert not (tmp_path / "out.png").exists()


def test_missing_or_folder_lut_is_a_user_error(tmp_path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        read_cube(tmp_path / "nope.cube")
    with pytest.raises(UserError, match="directory"):
        read_cube(tmp_path)


#: Run in a fresh interpreter: colour-science hidden (its import fails, as where it is not installed), then
#: a LUT written, read back and written by ``recolorize lut``; prints what it checked.
_WITHOUT_COLOUR = """
import importlib.abc, sys
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "colour" or name.startswith("colour."):
            raise ImportError(f"{name} hidden by the test")
sys.meta_path.insert(0, Hide())
import numpy as np
from recolorize.cli import main
from recolorize.inference.lut import Lut3D, read_cube, write_cube
folder, source, reference, weights = sys.argv[1:5]
lut = Lut3D(np.random.default_rng(0).random((5, 5, 5, 3)), curves=np.linspace(0, 1, 7)[:, None] ** [1, 2, 3])
back = read_cube(write_cube(lut, folder + "/api.cube"))
assert np.abs(back.table - lut.table).max() < 1e-6 and np.abs(back.curves - lut.curves).max() < 1e-6
code = main(["lut", source, reference, "-o", folder + "/cli.cube", "--weights", weights, "--size", "64"])
assert code == 0, code
assert read_cube(folder + "/cli.cube").size == 33
assert not [name for name in sys.modules if name.split(".")[0] == "colour"]
print("ok")
"""


def test_cube_files_are_written_and_read_without_colour_science(tiny_weights, tmp_path) -> None:
    """The base install has no colour-science: the API and ``recolorize lut`` write and read ``.cube``
    files with it unimportable (before, both stopped with a 'pip install recolorize[lut]' line)."""
    from cli_helpers import subprocess_env

    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_COLOUR, str(tmp_path)]
        + [str(EXAMPLES / "source.jpg"), str(EXAMPLES / "reference.jpg"), str(tiny_weights)],
        capture_output=True,
        text=True,
        timeout=300,
        env=subprocess_env(),
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


def test_nothing_in_the_package_imports_colour_science() -> None:
    """Every import in ``src/recolorize`` (functions included): none of ``colour`` (colour-science; our own
    ``recolorize.colour`` is another module), so the package never needs it."""
    import ast

    package = Path(__file__).resolve().parents[1] / "src" / "recolorize"
    found = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            found += [f"{path.name}:{node.lineno} {n}" for n in names if n.split(".")[0] == "colour"]
    assert found == []


# ------------------------------------------------------- the same files as colour-science reads and writes


def _colour_luts():
    return pytest.importorskip(
        "colour.io.luts",
        reason="colour-science (the test extra) checks our .cube reader and writer against its own",
    )


#: A LUT no symmetry hides a mistake in: the known transform on a 9^3 lattice over a domain that differs
#: per axis (rows red fastest, DOMAIN_MIN/MAX in the file).
def _uneven_lut() -> Lut3D:
    domain = np.array([[0.0, -0.1, 0.05], [1.0, 1.2, 0.9]])
    colours = domain[0] + lattice(9) * (domain[1] - domain[0])
    return Lut3D(known_transform(colours) - 0.01, domain, title="uneven")


def _shaped_lut() -> Lut3D:
    """A cube after per-channel shaper curves of different gammas, Resolve's layout, ranges not 0-1."""
    curves = np.linspace(0.0, 1.0, 12)[:, None] ** np.array([0.8, 1.0, 1.3])
    return Lut3D(
        known_transform(lattice(7)) * 1.5,
        np.array([[0.0] * 3, [1.5] * 3]),
        curves=curves,
        curves_domain=np.array([[-0.25] * 3, [2.0] * 3]),
        title="shaped",
    )


def test_our_cube_writer_writes_what_colour_science_writes(tmp_path) -> None:
    """The Adobe (Iridas) layout byte for byte, and colour-science reads our file to the same LUT."""
    luts = _colour_luts()
    lut = _uneven_lut()
    ours = write_cube(lut, tmp_path / "ours.cube")
    theirs = tmp_path / "theirs.cube"
    luts.write_LUT(luts.LUT3D(lut.table.astype(np.float64), "uneven", lut.domain), theirs, 7, "Iridas Cube")
    assert ours.read_bytes() == theirs.read_bytes()
    read = luts.read_LUT(ours)
    assert np.abs(read.table - lut.table).max() < 1e-6 and np.array_equal(read.domain, lut.domain)
    colours = np.random.default_rng(2).random((500, 3))
    assert np.abs(read.apply(colours) - lut.apply(colours)).max() < 1e-5  # both interpolators agree


def test_colour_science_reads_our_shaper_and_cube_as_we_wrote_them(tmp_path) -> None:
    luts = _colour_luts()
    lut = _shaped_lut()
    read = luts.read_LUT(write_cube(lut, tmp_path / "ours.cube"))
    shaper, cube = read[0], read[1]
    assert np.abs(shaper.table - lut.curves).max() < 1e-6
    assert np.array_equal(shaper.domain, lut.curves_domain)
    assert np.abs(cube.table - lut.table).max() < 1e-6 and np.array_equal(cube.domain, lut.domain)
    colours = np.random.default_rng(3).random((500, 3)) * 1.8
    assert np.abs(read.apply(colours) - lut.apply(colours)).max() < 1e-5


@pytest.mark.parametrize("layout", ["Iridas Cube", "Resolve Cube"])
def test_we_read_what_colour_science_writes(layout, tmp_path) -> None:
    luts = _colour_luts()
    lut = _uneven_lut() if layout == "Iridas Cube" else _shaped_lut()
    cube = luts.LUT3D(lut.table.astype(np.float64), "theirs", lut.domain)
    item = cube
    if lut.curves is not None:
        shaper = luts.LUT3x1D(lut.curves.astype(np.float64), "shaper", lut.curves_domain)
        item = luts.LUTSequence(shaper, cube)
    path = tmp_path / "theirs.cube"
    luts.write_LUT(item, path, 7, layout)
    read = read_cube(path)
    assert np.abs(read.table - lut.table).max() < 1e-6 and np.array_equal(read.domain, lut.domain)
    if lut.curves is not None:
        assert read.curves is not None and np.abs(read.curves - lut.curves).max() < 1e-6
        assert np.array_equal(read.curves_domain, lut.curves_domain)
    colours = np.random.default_rng(4).random((500, 3)) * 1.8
    assert np.abs(read.apply(colours) - item.apply(colours)).max() < 1e-5


def test_a_cube_the_writer_cannot_express_is_refused_not_written_wrong(tmp_path) -> None:
    """A shaper with per-channel ranges (Resolve's ranges are one pair for all channels), values that are
    not finite, and a title that would break its line."""
    curves = np.linspace(0, 1, 4)[:, None].repeat(3, axis=1)
    uneven = Lut3D(lattice(2), curves=curves, curves_domain=np.array([[0, 0, 0], [1, 2, 1.0]]))
    with pytest.raises(ValueError, match="one range for all channels"):
        write_cube(uneven, tmp_path / "uneven.cube")
    table = lattice(2)
    table[1, 1, 1, 0] = np.nan
    with pytest.raises(ValueError, match="not finite"):
        write_cube(Lut3D(table), tmp_path / "nan.cube")
    assert list(tmp_path.iterdir()) == []
    titled = write_cube(Lut3D(lattice(2), title='a "quoted"\nline'), tmp_path / "t.cube")
    assert titled.read_text().splitlines()[:2] == ['TITLE "a quoted line"', "LUT_3D_SIZE 2"]
    assert np.array_equal(read_cube(titled).table, lattice(2).astype(np.float32))


# -------------------------------------------------------------------------------------------------- fit


def test_fit_reproduces_a_known_global_transform() -> None:
    image = photo()
    expected = known_transform(image)
    lut = fit_lut(image, expected)
    assert lut.table.shape == (33, 33, 33, 3)
    error = delta_e(lut.apply(image), expected)
    assert error.mean() <= 0.5 and np.quantile(error, 0.99) <= 1.0, (error.mean(), np.quantile(error, 0.99))


def test_fit_fills_colours_the_photo_lacks_smoothly() -> None:
    """Fitted on a photo without strong colours, the LUT still holds the transform on those colours
    (it is smooth: it continues the mapping where there is no data) and stays monotone and in range."""
    rng = np.random.default_rng(0)
    muted = 0.3 + 0.4 * rng.random((20000, 3))  # colours only in the middle of the cube
    lut = fit_lut(muted, muted @ MATRIX.T)
    assert lut.table.min() >= 0.0 and lut.table.max() <= 1.0
    for axis in range(3):
        assert (np.diff(lut.table[..., axis], axis=axis) >= -1e-4).all()
    inside = 0.3 + 0.4 * rng.random((2000, 3))
    assert np.abs(lut.apply(inside) - inside @ MATRIX.T).max() < 2e-3
    outside = rng.random((2000, 3))
    assert np.abs(lut.apply(outside) - np.clip(outside @ MATRIX.T, 0, 1)).mean() < 0.02


def test_fit_of_a_single_colour_photo_is_solvable() -> None:
    grey = np.full((50, 50, 3), 0.5, dtype=np.float32)
    lut = fit_lut(grey, grey * 0.8)
    assert np.isfinite(lut.table).all()
    assert np.allclose(lut.apply(np.array([[0.5, 0.5, 0.5]])), 0.4, atol=1e-3)


# ------------------------------------------------------------------------------- with the shipped model


@pytest.fixture(scope="module")
def shipped():
    from recolorize.inference.pipeline import Recolorizer

    recolorizer = Recolorizer.from_pretrained()
    prepared = recolorizer.prepare(EXAMPLES / "source.jpg", EXAMPLES / "reference.jpg")
    return recolorizer, prepared


@pytest.mark.parametrize("method", ["fit", "pooled"])
def test_strength_zero_is_the_identity_lut(shipped, method) -> None:
    recolorizer, prepared = shipped
    lut = transfer_lut(recolorizer, prepared, strength=0.0, method=method)
    assert np.array_equal(lut.table, Lut3D.identity().table)
    half = transfer_lut(recolorizer, prepared, strength=0.5, method=method)
    full = transfer_lut(recolorizer, prepared, strength=1.0, method=method)
    identity = Lut3D.identity().table
    moved_half, moved_full = np.abs(half.table - identity).mean(), np.abs(full.table - identity).mean()
    assert 0.0 < moved_half < moved_full


def test_api_lut_carries_the_look_of_the_transfer(shipped, tmp_path) -> None:
    recolorizer, prepared = shipped
    output = recolorizer.render_array(prepared, 1.0)
    source = prepared.source.rgb
    lut = transfer_lut(recolorizer, prepared)
    assert isinstance(lut.table, np.ndarray) and lut.table.shape == (33, 33, 33, 3)
    through = read_cube(write_cube(lut, tmp_path / "look.cube")).apply(source)
    # the LUT gets most of the way from the source to the model's output
    assert delta_e(through, output).mean() < 0.5 * delta_e(source, output).mean()
    pooled = pooled_generator_lut(recolorizer, prepared)
    assert delta_e(pooled.apply(source), output).mean() < delta_e(source, output).mean()


def test_cli_round_trip_with_the_shipped_model(tmp_path) -> None:
    source, reference = EXAMPLES / "source.jpg", EXAMPLES / "reference.jpg"
    look = tmp_path / "look.cube"
    assert main(["lut", str(source), str(reference), "-o", str(look)]) == 0
    out = tmp_path / "transfer.png"
    from_transfer = tmp_path / "from_transfer.cube"
    assert (
        main(
            [
                "transfer",
                str(source),
                str(reference),
                "-o",
                str(out),
                "--lut",
                str(from_transfer),
            ]
        )
        == 0
    )
    graded = tmp_path / "graded"
    assert main(["lut-apply", str(look), str(EXAMPLES), "-o", str(graded)]) == 0
    assert sorted(p.name for p in graded.iterdir()) == ["reference.jpg", "source.jpg"]
    transferred, original = eight_bit(out), eight_bit(source)
    for cube, image in ((look, graded / "source.jpg"), (from_transfer, None)):
        through = eight_bit(image) if image is not None else read_cube(cube).apply(original)
        assert delta_e(through, transferred).mean() < 0.5 * delta_e(original, transferred).mean()
    # both commands make the same look (one fits the written photo, the other a rendering of it)
    assert np.abs(read_cube(look).table - read_cube(from_transfer).table).mean() < 0.01


def test_lut_apply_batch_skips_a_bad_photo_and_existing_outputs(graded_cube, tmp_path, capsys) -> None:
    _, cube = graded_cube
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(EXAMPLES / "source.jpg", photos / "a.jpg")
    shutil.copy(EXAMPLES / "reference.jpg", photos / "b.jpg")
    (photos / "broken.jpg").write_bytes((EXAMPLES / "source.jpg").read_bytes()[:2000])
    out = tmp_path / "out"
    out.mkdir()
    (out / "b.jpg").write_bytes(b"kept")
    assert main(["lut-apply", str(cube), str(photos), "-o", str(out)]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("recolorize:")]
    assert len(errors) == 2 and "broken.jpg" in errors[0] and errors[1] == "recolorize: 1 of 3 photos failed"
    assert sorted(p.name for p in out.iterdir()) == ["a.jpg", "b.jpg"]
    assert (out / "b.jpg").read_bytes() == b"kept"
    expected = known_transform(eight_bit(photos / "a.jpg"))
    assert delta_e(eight_bit(out / "a.jpg"), expected).mean() < 1.5


def test_cli_refuses_bad_lut_outputs_before_any_work(tmp_path, capsys) -> None:
    source, reference = EXAMPLES / "source.jpg", EXAMPLES / "reference.jpg"
    existing = tmp_path / "exists.cube"
    existing.write_text("keep me")
    cases = [
        ["lut", str(source), str(reference), "-o", str(tmp_path / "look.txt")],
        ["lut", str(source), str(reference), "-o", str(existing)],
        ["lut", str(source), str(reference), "-o", str(tmp_path / "a.cube"), "--strength", "1.5"],
        ["lut", str(source), str(reference), "-o", str(tmp_path / "a.cube"), "--lut-size", "1"],
        [
            "transfer",
            str(EXAMPLES),
            str(reference),
            "-o",
            str(tmp_path / "out"),
            "--lut",
            str(tmp_path / "b.cube"),
        ],
        ["transfer", str(source), str(reference), "-o", str(tmp_path / "o.png"), "--lut", str(existing)],
    ]
    for argv in cases:
        assert main(argv) == 2, argv
        lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("recolorize: error:"), (argv, lines)
    assert existing.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exists.cube"]


def test_lut_apply_keeps_16_bits_alpha_icc_and_exif(graded_cube, tmp_path) -> None:
    from PIL import ImageCms

    lut, cube = graded_cube
    rng = np.random.default_rng(1)
    rgba16 = (rng.random((40, 48, 4)) * 65535).astype(np.uint16)
    import tifffile

    from recolorize.imaging import load_image

    tif = tmp_path / "deep.tif"
    tifffile.imwrite(tif, rgba16, photometric="rgb", extrasamples=["unassalpha"])
    out = tmp_path / "out.tif"
    assert main(["lut-apply", str(cube), str(tif), "-o", str(out)]) == 0
    written = tifffile.imread(out)
    assert written.dtype == np.uint16 and written.shape == (40, 48, 4)
    assert np.array_equal(written[..., 3], rgba16[..., 3])  # alpha untouched
    expected = known_transform(rgba16[..., :3] / 65535.0)
    assert np.abs(written[..., :3] / 65535.0 - expected).max() < 2e-3  # 16-bit precision, not 8

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "test camera"
    jpeg = tmp_path / "tagged.jpg"
    Image.open(EXAMPLES / "source.jpg").save(jpeg, icc_profile=srgb, exif=exif.tobytes(), quality=95)
    graded = tmp_path / "graded.jpg"
    assert main(["lut-apply", str(cube), str(jpeg), "-o", str(graded)]) == 0
    with Image.open(graded) as im:
        assert im.info.get("icc_profile") == srgb
        assert im.getexif().get(0x010F) == "test camera"
    loaded = load_image(graded)
    assert delta_e(loaded.rgb, known_transform(load_image(jpeg).rgb)).mean() < 1.5
