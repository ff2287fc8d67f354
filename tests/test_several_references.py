"""Several references at once (issue 14): the attention runs over the union of their positions.

Real photos: the two example JPEGs of the repository and the shipped model; one thread.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from recolorize.inference.image_io import load_image
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
