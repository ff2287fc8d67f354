"""Several references at once (issue 14): the attention runs over the union of their positions.

Real photos: the two example JPEGs of the repository and the shipped model; one thread.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from recolorize.imaging import load_image
from recolorize.inference.pipeline import Recolorizer
from recolorize.networks.predictor import per_reference

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def recolorizer() -> Recolorizer:
    torch.set_num_threads(1)
    return Recolorizer.from_pretrained()


@pytest.fixture(scope="module")
def photos():
    source = load_image(EXAMPLES / "source.jpg")
    reference = load_image(EXAMPLES / "reference.jpg")
    return source, reference


def test_a_list_of_one_reference_is_that_reference(recolorizer, photos) -> None:
    source, reference = photos
    single = recolorizer.render_array(recolorizer.prepare(source, reference))
    listed = recolorizer.render_array(recolorizer.prepare(source, [reference]))
    assert np.array_equal(single, listed)


def test_a_repeated_reference_gives_the_same_result(recolorizer, photos) -> None:
    """The union of a reference with itself holds the same colours at the same matches."""
    source, reference = photos
    single = recolorizer.render_array(recolorizer.prepare(source, reference))
    twice = recolorizer.render_array(recolorizer.prepare(source, [reference, reference]))
    assert np.abs(single - twice).mean() * 255 < 0.5


def test_the_order_of_references_does_not_matter(recolorizer, photos) -> None:
    source, reference = photos
    other = load_image(np.ascontiguousarray(reference.rgb[:, ::-1] * 0.6))  # mirrored and darker
    forward = recolorizer.render_array(recolorizer.prepare(source, [reference, other]))
    backward = recolorizer.render_array(recolorizer.prepare(source, [other, reference]))
    alone = recolorizer.render_array(recolorizer.prepare(source, reference))
    assert np.abs(forward - backward).mean() * 255 < 0.5
    assert np.abs(forward - alone).mean() * 255 > 1.0  # the second reference is really used


def test_per_reference_never_mixes_two_references() -> None:
    """A convolution over the canvas would blur across the seam; per_reference runs it on each alone."""
    left, right = torch.zeros(1, 1, 8, 8), torch.ones(1, 1, 8, 8)
    blur = torch.nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    out = per_reference(blur, torch.cat([left, right], dim=-1), 2)
    assert torch.equal(out[..., :8], left) and torch.equal(out[..., 8:], right)
    assert not torch.equal(blur(torch.cat([left, right], dim=-1)), out)


def test_no_reference_is_an_error(recolorizer, photos) -> None:
    from recolorize.errors import UserError

    with pytest.raises(UserError):
        recolorizer.prepare(photos[0], [])


def test_cli_takes_several_references_and_pairs_rows_with_semicolons(recolorizer, photos, tmp_path) -> None:
    """`transfer SOURCE REF1 REF2 -o OUT` and a --pairs row "a.jpg;b.jpg" give the API's list result."""
    from PIL import Image

    from recolorize.cli import main

    source, reference = photos
    width = reference.rgb.shape[1]
    left = tmp_path / "left.png"
    right = tmp_path / "right.png"
    Image.fromarray((reference.rgb[:, : width * 3 // 5] * 255).round().astype(np.uint8)).save(left)
    Image.fromarray((reference.rgb[:, width * 2 // 5 :] * 255).round().astype(np.uint8)).save(right)
    out = tmp_path / "out.png"
    assert main(["transfer", str(EXAMPLES / "source.jpg"), str(left), str(right), "-o", str(out)]) == 0
    expected = recolorizer.render_array(recolorizer.prepare(source, [left, right]))
    written = load_image(out).rgb
    assert np.abs(written - expected).max() * 255 <= 1.0
    only_left = recolorizer.render_array(recolorizer.prepare(source, left))
    assert np.abs(written - only_left).mean() * 255 > 0.5  # the second reference changed the result
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(f"source,reference,output\n{EXAMPLES / 'source.jpg'},left.png;right.png,two.png\n")
    assert main(["transfer", "--pairs", str(pairs), "-o", str(tmp_path / "batch")]) == 0
    assert np.abs(load_image(tmp_path / "batch" / "two.png").rgb - written).max() * 255 <= 1.0
