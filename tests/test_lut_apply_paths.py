"""Applying a 3D LUT without torch (issue 22): the exact float path (NumPy) and the 8-bit path (Pillow's C
``Color3DLUT``), what each promises, which one ``lut-apply`` takes, and that neither imports torch.

Measured promises (the tests below hold them):

* the float path equals ``prior.lattice.apply_lattice`` (plain NumPy trilinear, float32) within 1e-6, and
  the former torch ``grid_sample`` path within 3e-7 on 12 MP of random colours (measured once, torch being
  the training extra);
* the 8-bit path is within **1 level** of the float path rounded on every one of the 2^24 8-bit colours
  (measured: max 1; 1.6% of colours differ, by one level, for the matrix + gamma look). Pillow rounds its
  16-bit fixed-point blend (1/64 of a level) half up, we round the float32 blend half to even, so a colour
  whose exact value lies within ~1/64 of a level of a half level may land on the other side. The former
  torch ``lut-apply`` was the float path rounded, so its 8-bit outputs are no longer bit-exact with it:
  they are within 1 level.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from recolorize.cli import main
from recolorize.inference.lut import Lut3D, apply_lut_8bit, read_cube, write_cube
from recolorize.prior.lattice import apply_lattice

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
MATRIX = np.array([[0.70, 0.25, 0.05], [0.10, 0.65, 0.25], [0.15, 0.05, 0.80]])


def identity(size: int) -> np.ndarray:
    return Lut3D.identity(size).table.astype(np.float64)


def graded(size: int = 33) -> Lut3D:
    """A colour matrix and a gamma: not symmetric in r, g, b, so swapped axes show."""
    return Lut3D(np.clip(identity(size) @ MATRIX.T, 0.0, 1.0) ** 1.3)


def rounded(x: np.ndarray) -> np.ndarray:
    return np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.int64)


def every_colour(step: int = 1) -> np.ndarray:
    """The 8-bit colours (r, g, b) with each channel in range(0, 256, step) plus 255, as (N, 3) uint8."""
    levels = np.unique(np.r_[np.arange(0, 256, step), 255]).astype(np.uint8)
    r, g, b = np.meshgrid(levels, levels, levels, indexing="ij")
    return np.stack([r.ravel(), g.ravel(), b.ravel()], axis=1)


# ------------------------------------------------------------------------------------------ float path


def test_float_path_equals_the_numpy_reference_and_clamps_outside_the_domain() -> None:
    rng = np.random.default_rng(0)
    lut = Lut3D(rng.random((9, 9, 9, 3)))
    colours = rng.random((50_000, 3)).astype(np.float32)
    colours[:9] = [[0, 0, 0], [1, 1, 1], [1, 0, 0.5], [0.125, 0.25, 1], [0.5, 0.5, 0.5], *rng.random((4, 3))]
    assert np.abs(lut.apply(colours) - apply_lattice(lut.table, colours)).max() < 1e-6
    outside = np.array([[-0.5, 1.5, 0.25], [np.inf, -np.inf, 2.0]], dtype=np.float32)
    assert np.abs(lut.apply(outside) - apply_lattice(lut.table, np.clip(outside, 0, 1))).max() < 1e-6
    # NaN takes the upper edge, as grid_sample did
    assert np.allclose(lut.apply(np.array([[np.nan, 0.0, 0.0]])), lut.table[-1, 0, 0], atol=1e-6)
    # 8- and 16-bit samples are scaled; the shape is kept
    image = (rng.random((7, 5, 3)) * 65535).astype(np.uint16)
    assert np.abs(lut.apply(image) - apply_lattice(lut.table, image / 65535.0)).max() < 1e-6


def test_float_path_does_not_depend_on_the_thread_count(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks are shared among threads, each writing its own slice: the same bits with 1 or 3 threads
    (``--jobs`` outputs must not depend on the machine)."""
    import recolorize.inference.lut.table as table

    monkeypatch.setattr(table, "_BLOCK_PIXELS", 1000)  # many blocks
    lut = graded(17)
    colours = np.random.default_rng(1).random((20_000, 3)).astype(np.float32)
    results = []
    for threads in ("1", "3"):
        monkeypatch.setenv("OMP_NUM_THREADS", threads)
        results.append(lut.apply(colours))
    assert np.array_equal(results[0], results[1])
    assert np.abs(results[0] - apply_lattice(lut.table, colours)).max() < 1e-6


def test_domain_and_shaper_apply_a_block_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """A LUT with a domain and 1D curves: blocks give what one pass gives (curves, then the domain)."""
    import recolorize.inference.lut.table as table

    curves = np.linspace(0.0, 1.0, 11)[:, None] ** np.array([1.0, 2.0, 0.5])
    lut = Lut3D(graded(5).table, np.array([[0.0] * 3, [2.0] * 3]), curves=curves)
    colours = np.random.default_rng(2).random((5000, 3)).astype(np.float32)
    monkeypatch.setattr(table, "_BLOCK_PIXELS", 777)
    shaped = np.stack([np.interp(colours[:, c], np.linspace(0, 1, 11), curves[:, c]) for c in range(3)], 1)
    expected = apply_lattice(lut.table, np.clip(shaped / 2.0, 0, 1))
    assert np.abs(lut.apply(colours) - expected).max() < 1e-6


def test_values_beyond_float32_apply_without_a_warning() -> None:
    table = identity(2)
    table[1, 1, 1] = [3e38, -3e38, 3e38]
    lut = Lut3D(table, np.array([[-1e6] * 3, [1e6] * 3]))
    with np.errstate(all="raise"):
        out = lut.apply(np.array([[3e38, 0.5, -3e38], [0.9, 0.9, 0.9]], dtype=np.float32))
        eight = lut.apply_8bit(np.array([[0, 255, 128]], dtype=np.uint8))
    assert out.shape == (2, 3) and eight.dtype == np.uint8


# ------------------------------------------------------------------------------------------- 8-bit path


def test_pillow_path_is_within_one_level_of_the_exact_path_on_every_8bit_colour() -> None:
    """The 8-bit colours (every second level of each channel, and 255: 2.1 M; all 2^24 measured the same
    once, max 1, 1.6%) through a look like a transfer's (33^3): Pillow's C filter against our float32
    trilinear rounded. Max 1 level, and a small share of colours (those within ~1/64 of a level of a half
    level) differ at all: a wrong table order or interpolation would move most colours by many levels."""
    lut = graded(33)
    colours = every_colour(2)
    pillow = apply_lut_8bit(lut, colours).astype(np.int64)
    exact = rounded(lut.apply(colours))
    difference = np.abs(pillow - exact)
    assert difference.max() <= 1, difference.max()
    assert (difference > 0).mean() < 0.03, (difference > 0).mean()
    # and the LUT did change the colours
    assert np.abs(exact - colours).mean() > 5


@pytest.mark.parametrize("size", [2, 9, 17, 65])
def test_pillow_path_agrees_on_other_lattices_up_to_its_table_range(size: int) -> None:
    """Random tables (not smooth: every cell differs) with values across Pillow's range, +-2, which it
    holds exactly enough; every 5th level of each channel."""
    rng = np.random.default_rng(size)
    lut = Lut3D(rng.uniform(-2.0, 2.0, (size, size, size, 3)))
    colours = every_colour(5)
    difference = np.abs(apply_lut_8bit(lut, colours).astype(np.int64) - rounded(lut.apply(colours)))
    assert difference.max() <= 1, difference.max()


def test_identity_lut_returns_8bit_colours_exactly() -> None:
    colours = every_colour(3)
    for size in (2, 33, 65):
        assert np.array_equal(Lut3D.identity(size).apply_8bit(colours), colours)


def test_8bit_path_takes_uint8_or_float_holding_8bit_values_and_keeps_the_shape() -> None:
    rng = np.random.default_rng(3)
    image = (rng.random((31, 17, 3)) * 255).astype(np.uint8)
    lut = graded(9)
    out = lut.apply_8bit(image)
    assert out.dtype == np.uint8 and out.shape == image.shape
    assert np.array_equal(lut.apply_8bit(image.astype(np.float32) / 255.0), out)


HELD_EXACTLY_BY_PILLOW_NOT = {
    "a value beyond 2": lambda: Lut3D(np.where(identity(5) > 0.9, 3.0, identity(5))),
    "a domain": lambda: Lut3D(identity(5), np.array([[0.0] * 3, [0.5] * 3])),
    "shaper curves": lambda: Lut3D(identity(5), curves=np.linspace(0, 1, 8)[:, None].repeat(3, 1) ** 2),
}


@pytest.mark.parametrize("case", list(HELD_EXACTLY_BY_PILLOW_NOT))
def test_a_lut_pillow_cannot_hold_takes_the_exact_path(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pillow clamps its table to +-2 and has no domain or shaper: such LUTs are the float path rounded,
    bit for bit, and Pillow's filter is never called."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("Pillow's filter was used for a LUT it cannot hold")

    lut = HELD_EXACTLY_BY_PILLOW_NOT[case]()
    colours = every_colour(7)
    expected = rounded(lut.apply(colours))
    monkeypatch.setattr(Image.Image, "filter", refuse)
    assert np.array_equal(lut.apply_8bit(colours), expected)


# --------------------------------------------------------------------------------- which path lut-apply


def _cube(tmp_path: Path) -> tuple[Lut3D, Path]:
    lut = graded(33)
    return lut, write_cube(lut, tmp_path / "look.cube")


def test_lut_apply_grades_an_8bit_photo_through_pillow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lut, cube = _cube(tmp_path)
    source = tmp_path / "source.png"
    Image.open(EXAMPLES / "source.jpg").convert("RGB").save(source)
    calls: list[str] = []
    real = Image.Image.filter

    def counted(self: Image.Image, flt: object) -> Image.Image:
        calls.append(type(flt).__name__)
        return real(self, flt)

    monkeypatch.setattr(Image.Image, "filter", counted)
    out = tmp_path / "out.png"
    assert main(["lut-apply", str(cube), str(source), "-o", str(out)]) == 0
    assert calls and set(calls) == {"Color3DLUT"}
    samples = np.asarray(Image.open(source))
    written = np.asarray(Image.open(out))
    assert np.array_equal(written, read_cube(cube).apply_8bit(samples))  # the file holds the 8-bit path's
    assert np.abs(written.astype(np.int64) - rounded(lut.apply(samples))).max() <= 1


def test_lut_apply_keeps_the_float_path_for_16_bits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lut, cube = _cube(tmp_path)
    rng = np.random.default_rng(4)
    deep = (rng.random((40, 48, 3)) * 65535).astype(np.uint16)
    import tifffile

    tif = tmp_path / "deep.tif"
    tifffile.imwrite(tif, deep, photometric="rgb")
    monkeypatch.setattr(Image.Image, "filter", lambda *a, **k: pytest.fail("8-bit path used for 16 bits"))
    out = tmp_path / "out.tif"
    assert main(["lut-apply", str(cube), str(tif), "-o", str(out)]) == 0
    written = tifffile.imread(out).astype(np.int64)
    expected = np.round(np.clip(read_cube(cube).apply(deep), 0, 1) * 65535.0)
    assert np.abs(written - expected).max() <= 1  # the float result at 16 bits, not 8


# ------------------------------------------------------------------------------------------- no torch

#: In a fresh interpreter: torch made unimportable, then the LUT module's API and ``recolorize lut-apply``
#: on an 8-bit JPEG and a 16-bit PNG (both paths); prints whether torch got into ``sys.modules``.
_WITHOUT_TORCH = """
import sys
sys.modules["torch"] = None  # `import torch` now raises ImportError
import numpy as np
from PIL import Image
from recolorize.cli import main
from recolorize.inference.lut import Lut3D, fit_lut, read_cube, write_cube
folder = sys.argv[1]
rng = np.random.default_rng(0)
photo = (rng.random((48, 64, 3)) * 255).astype(np.uint8)
Image.fromarray(photo).save(folder + "/photo.jpg", quality=95)
deep = (rng.random((48, 64, 3)) * 65535).astype(np.uint16)
import recolorize.imaging.encode as encode
open(folder + "/deep.png", "wb").write(encode._png16(deep, None, None))
lut = fit_lut(photo, np.clip(photo / 255.0 * 0.8 + 0.1, 0, 1), size=9)
cube = str(write_cube(lut, folder + "/look.cube"))
back = read_cube(cube)
assert back.apply(photo).dtype == np.float32 and back.apply_8bit(photo).dtype == np.uint8
for name in ("photo.jpg", "deep.png"):
    status = main(["lut-apply", cube, folder + "/" + name, "-o", folder + "/out-" + name])
    assert status == 0, (name, status)
print(sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.")), sys.modules["torch"])
"""


def test_lut_apply_and_the_lut_module_run_with_torch_unimportable(tmp_path: Path) -> None:
    from cli_helpers import subprocess_env

    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_TORCH, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env=subprocess_env(),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "['torch'] None", done.stdout  # only our blocking entry, never a module
    assert (tmp_path / "out-photo.jpg").is_file() and (tmp_path / "out-deep.png").is_file()


def test_importing_lut_apply_leaves_torch_out() -> None:
    """With torch installed (the test extra), importing the command's module and the LUT package in a fresh
    interpreter still imports no torch."""
    from cli_helpers import run_python

    code = (
        "import sys\n"
        "import recolorize.commands.lut_apply, recolorize.inference.lut\n"
        "import recolorize.inference.lut.table, recolorize.inference.lut.cube, recolorize.inference.lut.fit\n"
        "print('torch' in sys.modules)\n"
    )
    done = run_python(code)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "False"
