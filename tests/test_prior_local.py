"""The prior's local field (``recolorize.prior.local``): the matches' residuals from the lattice, spread over
the source and sliced to pixels by colour. Synthetic photos, so what the field should be is known."""

from __future__ import annotations

import numpy as np

from recolorize.prior import (
    LocalField,
    Matches,
    apply_local_field,
    identity_lattice,
    local_field,
    pair_prior,
)
from recolorize.prior.matching import cell_colours
from recolorize.prior.pair import LOCAL_FROM

GRID = (48, 48)


def _photo(left: tuple[float, float, float], right: tuple[float, float, float]) -> np.ndarray:
    """A 384 x 384 photo, its left half one colour and its right half another, with a little texture."""
    rng = np.random.default_rng(0)
    photo = np.empty((384, 384, 3), np.float32)
    photo[:, :192] = left
    photo[:, 192:] = right
    photo += rng.normal(0.0, 0.01, photo.shape).astype(np.float32)
    return np.clip(photo, 0.0, 1.0)


def _matches(source: np.ndarray, reference: np.ndarray, weight: float = 0.6) -> Matches:
    """Every cell matched to the same place in the reference (an aligned pair)."""
    return Matches(
        source=cell_colours(source, GRID),
        reference=cell_colours(reference, GRID),
        weight=np.full(GRID[0] * GRID[1], weight),
    )


def test_one_colour_changed_in_one_place_only() -> None:
    """Both halves are the same grey; the reference lifts the right half's red by 0.2. No global map can do
    that (one colour, two outcomes); the field gives the right half the lift and the left half nothing."""
    source = _photo((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    reference = source.copy()
    reference[:, 192:, 0] += 0.2
    field = local_field(_matches(source, reference), identity_lattice(9), GRID)
    offsets = apply_local_field(field, source)
    assert abs(float(offsets[:, 260:, 0].mean()) - 0.2) < 0.03
    assert abs(float(offsets[:, :120, 0].mean())) < 0.02
    assert np.abs(offsets[..., 1:]).max() < 0.02  # only red moved


def test_the_field_stops_at_an_edge_instead_of_leaking_a_halo() -> None:
    """The left half is red, the right half blue; only the blue half changes. Pixels of the red half right
    next to the edge keep (almost) nothing: the slice weighs cells by colour, a plain blur would bleed."""
    source = _photo((0.7, 0.2, 0.2), (0.2, 0.3, 0.7))
    reference = source.copy()
    reference[:, 192:, 1] += 0.25
    field = local_field(_matches(source, reference), identity_lattice(9), GRID)
    offsets = apply_local_field(field, source)
    assert float(offsets[:, 196:240, 1].mean()) > 0.18  # the changed side, next to the edge
    assert float(np.abs(offsets[:, 180:192, 1]).max()) < 0.03  # the unchanged side, next to the edge


def test_agreeing_matches_and_no_matches_give_no_field() -> None:
    """Where the lattice already explains every match, or nothing matched, the field is zero."""
    source = _photo((0.3, 0.6, 0.4), (0.8, 0.7, 0.2))
    graded = np.clip(source * 0.8 + 0.1, 0.0, 1.0)
    lattice = identity_lattice(9) * 0.8 + 0.1  # the global grade itself
    explained = local_field(_matches(source, graded), lattice, GRID)
    assert np.abs(apply_local_field(explained, source)).max() < 0.01
    nothing = local_field(_matches(source, graded, weight=0.0), identity_lattice(9), GRID)
    assert isinstance(nothing, LocalField)
    assert np.abs(nothing.offsets).max() == 0.0


def test_a_few_wrong_matches_do_not_make_a_blotch() -> None:
    """A handful of cells matched to the wrong colour (a large residual each) are outvoted and down-weighted
    (Cauchy): the field there stays small, where averaging them plainly would leave a visible spot."""
    source = _photo((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    matches = _matches(source, source)
    wrong = matches.reference.copy()
    wrong[[1000, 1001, 1048, 1049]] = (1.0, 0.0, 1.0)
    field = local_field(Matches(matches.source, wrong, matches.weight), identity_lattice(9), GRID)
    assert np.abs(field.offsets).max() < 0.02


def test_pair_prior_reads_no_field_between_different_scenes() -> None:
    """Photos that share too little content (mean match weight under LOCAL_FROM) get the lattice alone: a
    residual between different scenes is content, not a local grade."""
    rng = np.random.default_rng(1)
    source = rng.random((384, 384, 3)).astype(np.float32)
    reference = rng.random((384, 384, 3)).astype(np.float32)
    descriptors = rng.normal(size=(2, 48 * 48, 1024)).astype(np.float32)  # unrelated: shared ~0.06
    descriptors /= np.linalg.norm(descriptors, axis=-1, keepdims=True)
    prior = pair_prior(source, [reference], descriptors[0], [descriptors[1]])
    assert prior.local is None
    # the same photo as its own reference shares everything: the field is read (and is about zero)
    same = pair_prior(source, [source], descriptors[0], [descriptors[0]])
    assert same.local is not None
    assert np.abs(same.local.offsets).max() < 0.01
    assert LOCAL_FROM > 0.0
