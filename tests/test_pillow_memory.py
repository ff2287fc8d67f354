"""Pixels shared with Pillow without copies (``imaging.pillow_memory``): the same numbers as the copying
paths, views that outlive the image they came from, and no view handed out where the layout is not the
one Pillow reads."""

from __future__ import annotations

import gc
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from recolorize.imaging import load_image, resize_array, rgbx_array, save_image
from recolorize.imaging.pillow_memory import as_pil, is_rgbx, one_block, rgb_view

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
needs_export = pytest.mark.skipif(
    not hasattr(Image.Image, "__arrow_c_array__"),
    reason="this Pillow has no Arrow export (Pillow < 11.2): the copying paths run instead",
)


def _big_photo(tmp_path: Path) -> Path:
    """A JPEG over Pillow's 16-MB block (so its default allocation would split it)."""
    rng = np.random.default_rng(0)
    small = np.asarray(Image.open(EXAMPLES / "source.jpg").convert("RGB"))
    tiled = np.tile(small, (6, 6, 1))[:2300, :2000]
    noisy = np.clip(tiled.astype(np.int16) + rng.integers(-6, 7, tiled.shape), 0, 255).astype(np.uint8)
    path = tmp_path / "big.jpg"
    Image.fromarray(noisy).save(path, quality=90)
    return path


@needs_export
def test_decoded_pixels_are_pillows_own_memory_and_equal_the_copy(tmp_path: Path) -> None:
    path = _big_photo(tmp_path)
    before = Image.core.get_block_size()
    photo = load_image(path)
    assert Image.core.get_block_size() == before  # the caller's setting is back
    assert is_rgbx(photo.pixels)
    assert not photo.pixels.flags.writeable  # as np.asarray's copy was
    with Image.open(path) as im:
        expected = np.asarray(im.convert("RGB"))
    gc.collect()  # the decoder's PIL image is gone: the view must keep the memory
    np.testing.assert_array_equal(photo.pixels, expected)


@needs_export
def test_view_outlives_its_image() -> None:
    with one_block(), Image.open(EXAMPLES / "reference.jpg") as im:
        im.load()
        view = rgb_view(im)
        expected = np.asarray(im).copy()
    del im
    gc.collect()
    assert view is not None
    np.testing.assert_array_equal(view, expected)


def test_one_block_nests_and_restores() -> None:
    before = Image.core.get_block_size()
    with one_block():
        inside = Image.core.get_block_size()
        with one_block():
            assert Image.core.get_block_size() == inside
        assert Image.core.get_block_size() == inside
    assert inside > before
    assert Image.core.get_block_size() == before


def test_only_the_whole_four_byte_layout_is_handed_to_pillow() -> None:
    pixels = rgbx_array(40, 30)
    pixels[...] = np.arange(40 * 30 * 3, dtype=np.uint32).reshape(40, 30, 3) % 251
    assert is_rgbx(pixels)
    shared = as_pil(pixels)
    assert shared is not None and shared.size == (30, 40)
    np.testing.assert_array_equal(np.asarray(shared)[:, :, :3], pixels)
    # crops and flips of it keep its strides but not its start or direction: Pillow would read the wrong
    # pixels, so they are copied instead
    for other in (pixels[5:], pixels[:, 3:], pixels[::-1], pixels[:, :, ::-1], np.ascontiguousarray(pixels)):
        assert not is_rgbx(other)
        assert as_pil(other) is None


@needs_export
def test_resize_and_jpeg_of_shared_pixels_equal_the_copying_paths(tmp_path: Path) -> None:
    photo = load_image(_big_photo(tmp_path))
    copy = np.ascontiguousarray(photo.pixels)
    assert is_rgbx(photo.pixels) and not is_rgbx(copy)
    np.testing.assert_array_equal(resize_array(photo.pixels, (301, 257)), resize_array(copy, (301, 257)))

    rendered = rgbx_array(*copy.shape[:2])
    rendered[...] = 255 - copy
    written = []
    for name, pixels in (("shared.jpg", rendered), ("copied.jpg", np.ascontiguousarray(rendered))):
        save_image(tmp_path / name, pixels, like=photo.metadata_only(), quality=93)
        written.append((tmp_path / name).read_bytes())
    assert written[0] == written[1]
    with Image.open(io.BytesIO(written[0])) as back:
        assert back.mode == "RGB" and back.size == (copy.shape[1], copy.shape[0])


def test_without_pillows_export_the_copies_give_the_same_photo(tmp_path: Path, monkeypatch) -> None:
    """Where Pillow cannot export an image (Pillow < 11.2, an image in several blocks), decoding copies it
    out as before: the same pixels, and the resize and the encoder take the copy."""
    from recolorize.imaging import samples

    path = _big_photo(tmp_path)
    shared = load_image(path)
    monkeypatch.setattr(samples, "rgb_view", lambda im: None)
    copied = load_image(path)
    assert not is_rgbx(copied.pixels) and copied.pixels.flags.c_contiguous
    np.testing.assert_array_equal(copied.pixels, shared.pixels)
    np.testing.assert_array_equal(
        resize_array(copied.pixels, (97, 83)), resize_array(shared.pixels, (97, 83))
    )
    save_image(tmp_path / "copied.jpg", copied.pixels, like=copied.metadata_only())
    save_image(tmp_path / "shared.jpg", shared.pixels, like=shared.metadata_only())
    assert (tmp_path / "copied.jpg").read_bytes() == (tmp_path / "shared.jpg").read_bytes()
