"""The README demo does its job: the red cup and saucer turn blue after the blue-cup reference, the table
stays warm (issue 10's check, on the committed sample pair and the shipped model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from skimage.color import rgb2lab

from recolorize.imaging import load_image
from recolorize.inference.pipeline import Recolorizer

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def demo_regions(source_lab: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(cup-and-saucer, table) masks taken from the source in CIELAB.

    cup-and-saucer: the largest connected part of pixels with hue angle < 46 degrees and chroma > 35, holes
    filled (so the spoon on the saucer belongs to it); table: pixels with hue > 50 degrees and chroma > 15
    farther than 6 px from that region.
    """
    a, b = source_lab[..., 1], source_lab[..., 2]
    hue = np.degrees(np.arctan2(b, a)) % 360.0
    chroma = np.hypot(a, b)
    red = (hue < 46.0) & (chroma > 35.0)
    labels, count = ndimage.label(red)
    assert count > 0, "no red region in the demo source"
    sizes = ndimage.sum(red, labels, index=np.arange(1, count + 1))
    cup = ndimage.binary_fill_holes(labels == 1 + int(np.argmax(sizes)))
    far = ndimage.distance_transform_edt(~cup) > 6.0
    table = (hue > 50.0) & (chroma > 15.0) & far
    return cup, table


def test_demo_regions_are_sensible() -> None:
    """The masks the check relies on cover the cup and the table of the source (guards the check itself)."""
    source = rgb2lab(load_image(EXAMPLES / "source.jpg").rgb)
    cup, table = demo_regions(source)
    assert 0.05 < cup.mean() < 0.6 and table.mean() > 0.1
    assert source[..., 2][cup].mean() > 15 and source[..., 2][table].mean() > 5  # red cup, warm table


@pytest.fixture(scope="module")
def demo() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(b* of the shipped model's output, cup-and-saucer mask, table mask) for the README demo pair."""
    source_image = load_image(EXAMPLES / "source.jpg")
    recolorizer = Recolorizer.from_pretrained()
    output = recolorizer.render_array(recolorizer.prepare(source_image, EXAMPLES / "reference.jpg"))
    cup, table = demo_regions(rgb2lab(source_image.rgb))
    return rgb2lab(np.clip(output, 0.0, 1.0))[..., 2], cup, table


def test_readme_demo_turns_the_cup_blue_and_keeps_the_table_warm(demo) -> None:
    b_star, cup, table = demo
    cup_b, table_b = b_star[cup].mean(), b_star[table].mean()
    assert cup_b < -10.0, f"cup-and-saucer mean b* {cup_b:.1f} (blue needs < -10)"
    assert table_b > 5.0, f"table mean b* {table_b:.1f} (warm needs > 5)"


def test_readme_demo_leaves_almost_no_table_pixel_blue(demo) -> None:
    b_star, _, table = demo
    table_blue = (b_star[table] < 0).mean()
    assert table_blue < 0.01, f"{100 * table_blue:.2f} % of table pixels went blue"
