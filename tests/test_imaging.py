"""The imaging layer: metadata survives a round trip, every bad input is one clear UserError, nothing
half-written, and training sees a photo exactly as inference does."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageOps

from recolorize.data.folders import Photo, discover_photos
from recolorize.data.pairs import load_crop
from recolorize.errors import UserError
from recolorize.evaluation.bench import load_photo
from recolorize.imaging import (
    MAX_PIXELS_ENV,
    LoadedImage,
    encode_image,
    load_image,
    photo_size,
    resize_image,
    save_image,
    to_pil,
    to_uint8,
)

ORIENTATION = 0x0112
MAKE = 0x010F

# Adobe RGB (1998) colorants adapted to the D50 PCS (as in Adobe's own profile) and its 563/256 gamma.
ADOBE_D50 = np.array([[0.60974, 0.20528, 0.14919], [0.31111, 0.62567, 0.06322], [0.01947, 0.06087, 0.74457]])
ADOBE_GAMMA = 563 / 256
# sRGB colorants, Bradford-adapted to D50 (what every ICC sRGB profile stores).
SRGB_D50 = np.array(
    [[0.4360747, 0.3850649, 0.1430804], [0.2225045, 0.7168786, 0.0606169], [0.0139322, 0.0971045, 0.7141733]]
)


def _s15(v: float) -> bytes:
    return struct.pack(">i", round(v * 65536))


def adobe_like_profile() -> bytes:
    """A minimal ICC v2 matrix/TRC display profile with Adobe RGB primaries, built byte by byte."""
    desc_text = b"Test AdobeRGB-like\x00"
    desc = (
        b"desc"
        + b"\0" * 4
        + struct.pack(">I", len(desc_text))
        + desc_text
        + b"\0" * 8
        + b"\0" * 3
        + b"\0" * 67
    )
    xyz = lambda v: b"XYZ " + b"\0" * 4 + b"".join(_s15(c) for c in v)  # noqa: E731
    curve = b"curv" + b"\0" * 4 + struct.pack(">IH", 1, round(ADOBE_GAMMA * 256)) + b"\0\0"
    tags = [
        (b"desc", desc),
        (b"cprt", b"text" + b"\0" * 4 + b"public domain\x00"),
        (b"wtpt", xyz([0.9642, 1.0, 0.8249])),
        (b"rXYZ", xyz(ADOBE_D50[:, 0])),
        (b"gXYZ", xyz(ADOBE_D50[:, 1])),
        (b"bXYZ", xyz(ADOBE_D50[:, 2])),
        (b"rTRC", curve),
        (b"gTRC", curve),
        (b"bTRC", curve),
    ]
    offset = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for sig, body in tags:
        body = body + b"\0" * (-len(body) % 4)
        table += struct.pack(">4sII", sig, offset + len(data), len(body))
        data += body
    size = offset + len(data)
    header = (
        struct.pack(">I", size)
        + b"\0" * 4
        + struct.pack(">I", 0x02100000)
        + b"mntrRGB XYZ "
        + b"\0" * 12
        + b"acsp"
        + b"\0" * 24
        + struct.pack(">I", 0)
        + _s15(0.9642)
        + _s15(1.0)
        + _s15(0.8249)
        + b"\0" * 48
    )
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + data


def adobe_to_srgb(x: np.ndarray) -> np.ndarray:
    """Independent reference maths: Adobe-RGB-like values in [0, 1] -> sRGB in [0, 1]."""
    lin = np.power(x, ADOBE_GAMMA) @ (np.linalg.solve(SRGB_D50, ADOBE_D50)).T
    lin = np.clip(lin, 0, 1)
    return np.where(lin <= 0.0031308, 12.92 * lin, 1.055 * np.power(lin, 1 / 2.4) - 0.055)


def png16(arr: np.ndarray) -> bytes:
    """A 16-bit PNG with unfiltered rows, written here independently of the library's encoder."""
    h, w, ch = arr.shape
    rows = arr.astype(">u2").reshape(h, -1).view(np.uint8)
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rows], axis=1).tobytes()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, {3: 2, 4: 6}[ch], 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )


def photo(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    """A small smooth colour image with some texture (uint8)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([x, y, 0.5 + 0.4 * np.sin(6 * x * y)], -1) * 200 + 20
    return np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)


def to8(rgb: np.ndarray) -> np.ndarray:
    return np.round(rgb * 255).astype(np.uint8)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ------------------------------------------------------------------------------------------- EXIF


def test_exif_orientation_is_applied_and_reset_and_exif_kept(tmp_path: Path) -> None:
    arr = photo(48, 64)
    arr[:8, :8] = [255, 0, 0]  # a red marker in the stored top-left corner
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    exif[MAKE] = "RecolorizeTestCam"
    src = tmp_path / "rotated.jpg"
    Image.fromarray(arr).save(src, quality=95, exif=exif.tobytes())

    loaded = load_image(src)
    assert loaded.rgb.shape == (64, 48, 3)  # orientation 6: stored landscape, shown portrait
    expected = np.asarray(ImageOps.exif_transpose(Image.open(src)))
    assert np.array_equal(to8(loaded.rgb), expected)
    assert np.abs(to8(loaded.rgb).astype(int) - np.rot90(arr, -1)).mean() < 8  # clockwise turn (JPEG noise)
    assert loaded.rgb[:8, -8:, 0].mean() > 0.8 and loaded.rgb[:8, -8:, 1].mean() < 0.2  # marker at top right

    kept = Image.Exif()
    kept.load(loaded.exif)
    assert kept[ORIENTATION] == 1 and kept[MAKE] == "RecolorizeTestCam"

    for name in ("out.jpg", "out.png", "out.webp"):
        save_image(tmp_path / name, loaded.rgb, like=loaded)
        with Image.open(tmp_path / name) as im:
            assert im.size == (48, 64), name
            assert im.getexif()[ORIENTATION] == 1 and im.getexif()[MAKE] == "RecolorizeTestCam", name


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_matches_pillow(orientation: int) -> None:
    arr = photo(40, 56, seed=orientation)
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG", exif=exif.tobytes())
    loaded = load_image(buf.getvalue())
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(buf.getvalue()))))
    assert np.array_equal(to8(loaded.rgb), expected)


# ------------------------------------------------------------------------------------------- alpha, bit depth


def test_alpha_passes_through_unchanged(tmp_path: Path) -> None:
    arr = photo()
    alpha = np.tile(np.linspace(0, 255, 64).astype(np.uint8), (48, 1))
    alpha[10:20, 10:20] = 0
    src = tmp_path / "a.png"
    Image.fromarray(np.dstack([arr, alpha]), "RGBA").save(src)
    loaded = load_image(src)
    assert loaded.alpha is not None and np.array_equal(loaded.alpha, alpha)
    assert np.array_equal(to8(loaded.rgb), arr)

    recoloured = loaded.rgb[..., ::-1].copy()
    for name in ("out.png", "out.webp", "out.tif"):
        save_image(tmp_path / name, recoloured, like=loaded)
        with Image.open(tmp_path / name) as im:
            assert im.mode == "RGBA"
            assert np.array_equal(np.asarray(im)[..., 3], alpha), name
    assert np.array_equal(np.asarray(to_pil(recoloured, like=loaded))[..., 3], alpha)
    save_image(tmp_path / "flat.jpg", recoloured, like=loaded)  # JPEG has no alpha: dropped, not an error
    with Image.open(tmp_path / "flat.jpg") as im:
        assert im.mode == "RGB"


def test_sixteen_bit_png_round_trip_keeps_sixteen_bits(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 65536, (40, 52, 4), dtype=np.uint16)
    src = tmp_path / "deep.png"
    src.write_bytes(png16(arr))
    loaded = load_image(src)
    assert loaded.bit_depth == 16
    assert np.array_equal(np.round(loaded.rgb * 65535).astype(np.uint16), arr[..., :3])
    assert (
        loaded.alpha is not None
        and loaded.alpha.dtype == np.uint16
        and np.array_equal(loaded.alpha, arr[..., 3])
    )
    # Pillow alone would have kept only the high bytes: the low bytes really carry information.
    assert (arr[..., :3] & 0xFF).any()

    out = tmp_path / "deep_out.png"
    save_image(out, loaded.rgb, like=loaded)
    assert out.read_bytes()[24] == 16  # IHDR bit depth
    again = load_image(out)
    assert again.bit_depth == 16
    assert np.array_equal(np.round(again.rgb * 65535).astype(np.uint16), arr[..., :3])
    assert np.array_equal(again.alpha, arr[..., 3])

    tif = tmp_path / "deep_out.tif"
    save_image(tif, loaded.rgb, like=loaded)
    back = load_image(tif)
    assert back.bit_depth == 16 and np.array_equal(np.round(back.rgb * 65535).astype(np.uint16), arr[..., :3])

    eight = tmp_path / "deep_out.jpg"  # JPEG cannot hold 16 bits: written as 8-bit, close to the source
    save_image(eight, loaded.rgb, like=loaded)
    assert np.abs(load_image(eight).rgb - loaded.rgb).mean() < 6 / 255  # random noise: JPEG's worst case


def test_sixteen_bit_greyscale(tmp_path: Path) -> None:
    grey = (np.arange(48 * 64, dtype=np.uint32).reshape(48, 64) * 21).astype(np.uint16)
    src = tmp_path / "g16.png"
    Image.fromarray(grey).save(src)  # Pillow writes mode I;16 as a 16-bit grey PNG
    loaded = load_image(src)
    assert loaded.greyscale and loaded.bit_depth == 16
    assert np.array_equal(np.round(loaded.rgb[..., 1] * 65535).astype(np.uint16), grey)


# ------------------------------------------------------------------------------------------- modes


def test_palette_converts_to_rgb_and_transparency_to_alpha(tmp_path: Path) -> None:
    arr = photo()
    pal = Image.fromarray(arr).quantize(16)
    pal.save(tmp_path / "p.png")
    loaded = load_image(tmp_path / "p.png")
    assert np.array_equal(to8(loaded.rgb), np.asarray(pal.convert("RGB")))
    assert loaded.alpha is None and not loaded.greyscale

    pal.info["transparency"] = 3
    pal.save(tmp_path / "pt.png", transparency=3)
    with_alpha = load_image(tmp_path / "pt.png")
    idx = np.asarray(pal)
    assert with_alpha.alpha is not None
    assert np.array_equal(with_alpha.alpha == 0, idx == 3)


def test_cmyk_converts_to_rgb(tmp_path: Path) -> None:
    cmyk = np.zeros((48, 64, 4), np.uint8)
    cmyk[:, :32, 0] = 255  # pure cyan
    cmyk[:, 32:, 1] = 255  # pure magenta
    Image.fromarray(cmyk, "CMYK").save(tmp_path / "c.tif")
    loaded = load_image(tmp_path / "c.tif")
    assert np.allclose(loaded.rgb[5, 5], [0, 1, 1]) and np.allclose(loaded.rgb[5, 40], [1, 0, 1])


def test_greyscale_detection(tmp_path: Path) -> None:
    grey = photo()[..., 0]
    Image.fromarray(grey, "L").save(tmp_path / "l.png")
    loaded = load_image(tmp_path / "l.png")
    assert loaded.greyscale and loaded.rgb.shape == (48, 64, 3)
    assert np.array_equal(to8(loaded.rgb), np.repeat(grey[..., None], 3, -1))

    Image.fromarray(np.dstack([grey, np.full_like(grey, 128)]), "LA").save(tmp_path / "la.png")
    la = load_image(tmp_path / "la.png")
    assert la.greyscale and la.alpha is not None and (la.alpha == 128).all()

    Image.fromarray(np.repeat(grey[..., None], 3, -1)).save(tmp_path / "rgbgrey.png")
    assert load_image(tmp_path / "rgbgrey.png").greyscale
    assert not load_image(photo()).greyscale


def test_array_and_pil_inputs() -> None:
    arr = photo()
    assert np.array_equal(to8(load_image(arr).rgb), arr)
    assert np.array_equal(to8(load_image(Image.fromarray(arr)).rgb), arr)
    as_float = load_image(arr.astype(np.float32) / 255)
    assert np.abs(as_float.rgb - arr / 255).max() < 1e-6
    assert load_image(arr.astype(np.uint16) * 257).bit_depth == 16
    t = load_image(arr).tensor()
    assert t.shape == (1, 3, 48, 64)


# ------------------------------------------------------------------------------------------- ICC


def test_icc_profile_is_converted_and_re_embedded(tmp_path: Path) -> None:
    icc = adobe_like_profile()
    assert ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc))).startswith("Test")
    arr = photo()
    src = tmp_path / "adobe.png"
    Image.fromarray(arr).save(src, icc_profile=icc)

    loaded = load_image(src)
    assert loaded.icc_profile == icc
    expected = adobe_to_srgb(arr / 255.0)
    assert np.abs(loaded.rgb - expected).max() < 2.5 / 255  # littleCMS agrees with the textbook maths
    assert np.abs(loaded.rgb - arr / 255.0).mean() > 5 / 255  # and a conversion really happened

    for name in ("out.png", "out.jpg", "out.tif"):
        save_image(tmp_path / name, loaded.rgb, like=loaded)
        with Image.open(tmp_path / name) as im:
            assert im.info.get("icc_profile") == icc, name
        back = load_image(tmp_path / name)
        tol = 2.5 / 255 if name != "out.jpg" else 4 / 255
        assert np.abs(back.rgb - loaded.rgb).mean() < tol, name
    # Written in the source's profile: the stored samples are close to the source's own samples.
    with Image.open(tmp_path / "out.png") as im:
        assert np.abs(np.asarray(im).astype(int) - arr).mean() < 1.5


def test_unusable_icc_profile_is_ignored_not_fatal(tmp_path: Path) -> None:
    arr = photo()
    src = tmp_path / "badicc.png"
    Image.fromarray(arr).save(src, icc_profile=b"\0" * 200)
    loaded = load_image(src)
    assert np.array_equal(to8(loaded.rgb), arr)  # treated as sRGB
    save_image(tmp_path / "out.png", loaded.rgb, like=loaded)
    with Image.open(tmp_path / "out.png") as im:
        assert "icc_profile" not in im.info  # never label pixels with a profile they are not in


def test_icc_sixteen_bit_uses_float_maths(tmp_path: Path) -> None:
    icc = adobe_like_profile()
    rng = np.random.default_rng(2)
    arr = rng.integers(0, 65536, (36, 40, 3), dtype=np.uint16)
    data = png16(arr)
    # Splice an iCCP chunk in after IHDR (8-byte signature + 25-byte IHDR chunk).
    body = b"adobe\x00\x00" + zlib.compress(icc)
    iccp = struct.pack(">I", len(body)) + b"iCCP" + body + struct.pack(">I", zlib.crc32(b"iCCP" + body))
    src = tmp_path / "adobe16.png"
    src.write_bytes(data[:33] + iccp + data[33:])

    loaded = load_image(src)
    assert loaded.bit_depth == 16 and loaded.icc_profile == icc
    error = np.abs(loaded.rgb - adobe_to_srgb(arr / 65535.0))
    # littleCMS's own sRGB colorants differ from the textbook ones by ~5e-5, which the steep sRGB curve
    # near black amplifies to ~1e-3; on average the float path is far finer than 8 bits (1/255 = 4e-3).
    assert error.mean() < 1e-4 and error.max() < 2e-3
    assert np.abs(loaded.rgb * 255 - np.round(loaded.rgb * 255)).mean() > 0.1  # not quantised to 8 bits

    out = tmp_path / "adobe16_out.png"
    save_image(out, loaded.rgb, like=loaded)
    again = load_image(out)
    assert again.icc_profile == icc and again.bit_depth == 16
    inside = (loaded.rgb > 0.002).all(-1) & (loaded.rgb < 0.998).all(-1)  # out-of-gamut colours clip
    assert np.abs(again.rgb - loaded.rgb)[inside].max() < 1e-3


# ------------------------------------------------------------------------------------------- bad inputs


def test_bad_inputs_raise_user_error_naming_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = tmp_path / "good.jpg"
    Image.fromarray(photo(96, 128)).save(good, quality=90)
    jpeg = good.read_bytes()

    text = tmp_path / "notes.jpg"
    text.write_text("this is not an image\n")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(jpeg[: len(jpeg) // 2])
    pngbuf = io.BytesIO()
    Image.fromarray(photo(96, 128)).save(pngbuf, "PNG")
    png = bytearray(pngbuf.getvalue())
    png[len(png) // 2 : len(png) // 2 + 64] = bytes(64)  # zeroed bytes inside IDAT: CRC / zlib failure
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(bytes(png))
    tiny = tmp_path / "tiny.png"
    Image.fromarray(photo(20, 64)).save(tiny)

    cases = {
        text: "not an image",
        truncated: "truncated or corrupt",
        corrupt: "corrupt",
        tmp_path / "missing.png": "does not exist",
        tmp_path: "directory",
        tiny: "at least 32",
    }
    for path, words in cases.items():
        with pytest.raises(UserError) as err:
            load_image(path)
        message = str(err.value)
        assert str(path) in message and words in message, message
        assert "\n" not in message

    with pytest.raises(UserError, match="limit"):
        load_image(good, max_pixels=1000)
    monkeypatch.setenv(MAX_PIXELS_ENV, "5000")
    with pytest.raises(UserError, match=MAX_PIXELS_ENV):
        load_image(good)
    monkeypatch.setenv(MAX_PIXELS_ENV, str(128 * 96))
    assert load_image(good).rgb.shape == (96, 128, 3)
    with pytest.raises(UserError, match="at least 32"):
        load_image(np.zeros((31, 100, 3), np.uint8))


def test_save_refusals_leave_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "photo.png"
    Image.fromarray(photo()).save(src)
    before = src.read_bytes()
    loaded = load_image(src)
    red = np.zeros_like(loaded.rgb)
    red[..., 0] = 1

    with pytest.raises(UserError, match="source image"):
        save_image(src, red, like=loaded)
    with pytest.raises(UserError, match="source image"):
        save_image(tmp_path / "." / "photo.png", red, source_path=src)
    assert src.read_bytes() == before

    existing = tmp_path / "existing.png"
    existing.write_bytes(b"keep me")
    with pytest.raises(UserError, match="already exists"):
        save_image(existing, red, like=loaded)
    assert existing.read_bytes() == b"keep me"

    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(UserError, match="not a writable directory"):
        save_image(blocker / "sub" / "out.png", red, like=loaded)
    with pytest.raises(UserError, match="suffix"):
        save_image(tmp_path / "out.xyz", red)
    with pytest.raises(UserError, match="quality"):
        save_image(tmp_path / "out.jpg", red, quality=0)

    def broken(*args: object, **kwargs: object) -> bytes:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", broken)
    with pytest.raises(UserError, match="No space left"):
        save_image(tmp_path / "full.png", red, like=loaded)
    monkeypatch.undo()
    assert leftovers(tmp_path) == ["a_file", "existing.png", "photo.png"]

    save_image(src, red, like=loaded, overwrite=True)  # explicitly allowed
    assert np.array_equal(to8(load_image(src).rgb), to8(red))
    assert leftovers(tmp_path) == ["a_file", "existing.png", "photo.png"]


def test_encode_image_for_download() -> None:
    arr = photo()
    loaded = LoadedImage(pixels=arr.astype(np.float32) / 255)
    for fmt, magic in (("jpg", b"\xff\xd8"), ("PNG", b"\x89PNG"), ("webp", b"RIFF")):
        data = encode_image(loaded.rgb, loaded, fmt, quality=90)
        assert data.startswith(magic)
        assert np.abs(load_image(data).rgb - loaded.rgb).mean() < 8 / 255  # lossy codecs on a noisy image
    with pytest.raises(UserError):
        encode_image(loaded.rgb, None, "gif")


# ------------------------------------------------------------------- one decode for training and inference


def _adobe_jpeg(path: Path, arr: np.ndarray, orientation: int = 1) -> Path:
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    Image.fromarray(arr).save(path, quality=95, icc_profile=adobe_like_profile(), exif=exif)
    return path


def test_training_crops_see_a_wide_gamut_photo_as_inference_does(tmp_path: Path) -> None:
    """A JPEG in an Adobe-RGB-like profile, turned by EXIF: the training loader's crop is what
    ``load_image`` gives after the same resize, and the old loader (Pillow, no ICC) was visibly off."""
    path = _adobe_jpeg(tmp_path / "adobe.jpg", photo(96, 96, seed=3), orientation=6)
    resolution, whole = 64, (0.0, 0.0, 96.0, 96.0)  # crop_scale 1 on a square photo: the crop is all of it
    crop, _ = load_crop(
        Photo(path), resolution, np.random.default_rng(0), crop_scale=(1.0, 1.0), flip_probability=0.0
    )
    training = crop.permute(1, 2, 0).numpy()
    inference = resize_image(to_uint8(load_image(path).rgb), (resolution, resolution), "bicubic", box=whole)
    assert np.abs(training - inference / 255.0).max() <= 1 / 255 + 1e-6

    with Image.open(path) as im:  # what the loader did before: Pillow's samples, no ICC, no orientation
        raw = im.convert("RGB")
        old = np.asarray(raw.resize((resolution, resolution), Image.Resampling.BICUBIC, box=whole)) / 255.0
        upright = ImageOps.exif_transpose(raw)  # orientation alone: the difference left is the ICC profile
        unconverted = np.asarray(upright.resize((resolution, resolution), Image.Resampling.BICUBIC)) / 255.0
    assert np.abs(training - old).mean() > 10 / 255
    assert np.abs(training - unconverted).mean() > 3 / 255
    assert np.abs(inference / 255.0 - unconverted).mean() > 3 / 255  # so the first check can fail


def test_photo_size_is_upright_and_refuses_what_load_image_refuses(tmp_path: Path) -> None:
    path = _adobe_jpeg(tmp_path / "turned.jpg", photo(48, 64), orientation=6)
    assert photo_size(path) == (48, 64) == (load_image(path).width, load_image(path).height)
    Image.fromarray(photo(20, 64)).save(tmp_path / "thin.png")
    with pytest.raises(UserError, match="at least 32"):
        photo_size(tmp_path / "thin.png")
    assert [p.image.name for p in discover_photos(tmp_path)] == [
        "turned.jpg"
    ]  # skipped, as the decoder would


def test_bench_photos_are_decoded_by_the_imaging_layer(tmp_path: Path) -> None:
    path = _adobe_jpeg(tmp_path / "adobe.jpg", photo(48, 64, seed=1))
    assert np.array_equal(
        load_photo(path).permute(1, 2, 0).numpy(), to_uint8(load_image(path).rgb) / np.float32(255)
    )
    small = load_photo(path, 40).permute(1, 2, 0).numpy()
    assert small.shape == (30, 40, 3)
    expected = resize_image(to_uint8(load_image(path).rgb), (40, 30), "lanczos")
    assert np.array_equal(small, expected / np.float32(255))


@pytest.mark.parametrize("name", ["bicubic", "lanczos"])
def test_resize_image_is_pillows_resize(name: str) -> None:
    """uint8 gives Pillow's own 8-bit result (the benchmark files stay byte-identical); float agrees."""
    arr, box = photo(48, 64), (2.5, 1.0, 60.0, 45.0)
    filters = {"bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS}
    ours = resize_image(arr, (40, 30), name, box=box)
    assert np.array_equal(ours, np.asarray(Image.fromarray(arr).resize((40, 30), filters[name], box=box)))
    floats = resize_image(arr / 255.0, (40, 30), name, box=box)
    assert floats.dtype == np.float32 and floats.shape == (30, 40, 3)
    assert np.abs(floats - ours / 255.0).max() <= 1.5 / 255  # 8-bit Pillow rounds between its two passes
    with pytest.raises(ValueError, match="unknown filter"):
        resize_image(arr, (40, 30), "box-ish")


def test_an_8bit_photo_keeps_its_samples_and_makes_float_pixels_only_when_asked(tmp_path: Path) -> None:
    """An 8-bit sRGB photo decodes to its uint8 samples (the transfer needs no float copy); ``rgb`` is them
    divided by 255, made once on first use; 16-bit and profile-converted photos decode to float pixels."""
    rng = np.random.default_rng(3)
    samples = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    Image.fromarray(samples).save(tmp_path / "eight.png")
    eight = load_image(tmp_path / "eight.png")
    assert eight.pixels.dtype == np.uint8 and np.array_equal(eight.srgb8, samples)
    assert "_rgb" not in vars(eight)
    assert eight.rgb.dtype == np.float32 and np.array_equal(eight.rgb, samples.astype(np.float32) / 255)
    assert eight.rgb is eight.rgb  # made once
    assert (eight.height, eight.width) == (40, 60)
    lean = eight.metadata_only()
    assert lean.srgb8 is None and lean.rgb.shape == (40, 60, 3) and not lean.rgb.any()
    Image.fromarray(samples[..., 0]).save(tmp_path / "grey.png")
    grey = load_image(tmp_path / "grey.png")
    assert grey.greyscale and np.array_equal(grey.srgb8, np.repeat(samples[..., :1], 3, axis=-1))
    sixteen = load_image((samples.astype(np.uint16) * 257)[..., :3])
    assert sixteen.srgb8 is None and sixteen.pixels.dtype == np.float32
    with pytest.raises(ValueError):
        LoadedImage(pixels=samples.astype(np.float64))
