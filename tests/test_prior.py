"""The NumPy colour prior (recolorize.prior): lattice maths, the robust cubic, the cross-validated lattice,
mutual matches on real descriptors, and its twin in torch (what the generator applies)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recolorize.networks.colour_prior import apply_lattice_torch, lerp_affine
from recolorize.prior import (
    apply_cubic,
    apply_lattice,
    fit_cubic,
    fit_lattice,
    identity_lattice,
    lerp_lattice,
)
from recolorize.prior.colour_map import cubic_terms
from recolorize.prior.matching import cell_colours, descriptors, mutual_matches


def _random_lattice(size: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (identity_lattice(size) + 0.1 * rng.standard_normal((size, size, size, 3))).astype(np.float32)


def test_identity_lattice_is_the_identity_and_lattice_points_are_exact() -> None:
    rng = np.random.default_rng(1)
    colours = rng.random((1000, 3)).astype(np.float32)
    np.testing.assert_allclose(apply_lattice(identity_lattice(9), colours), colours, atol=1e-6)
    table = _random_lattice(5)
    points = identity_lattice(5).reshape(-1, 3)
    np.testing.assert_allclose(apply_lattice(table, points), table.reshape(-1, 3), atol=1e-6)


def test_numpy_and_torch_lattice_application_agree() -> None:
    table = _random_lattice(9, seed=2)
    image = np.random.default_rng(3).random((17, 23, 3)).astype(np.float32)
    expected = apply_lattice(table, image)
    tensor = torch.from_numpy(table).permute(3, 0, 1, 2)[None]
    got = apply_lattice_torch(tensor, torch.from_numpy(image).permute(2, 0, 1)[None])
    np.testing.assert_allclose(got[0].permute(1, 2, 0).numpy(), expected, atol=2e-6)


def test_strength_blends_the_lattice_linearly_in_numpy_and_torch() -> None:
    table = _random_lattice(9, seed=4)
    np.testing.assert_allclose(lerp_lattice(table, 0.0), identity_lattice(9), atol=1e-7)
    np.testing.assert_allclose(lerp_lattice(table, 1.0), table, atol=1e-7)
    tensor = torch.from_numpy(table).permute(3, 0, 1, 2)[None]
    half = lerp_affine(tensor, 0.5)[0].permute(1, 2, 3, 0).numpy()
    np.testing.assert_allclose(half, lerp_lattice(table, 0.5), atol=1e-6)


def test_robust_cubic_recovers_a_cubic_grade_despite_outliers() -> None:
    rng = np.random.default_rng(5)
    source = rng.random((2000, 3))
    truth = np.zeros((20, 3))
    truth[1:4] = np.eye(3) * 0.8
    truth[0] = 0.05
    truth[10] = [0.1, 0.0, -0.05]  # r^3 lifts red's highlights
    truth[13] = [0.0, 0.08, 0.0]
    target = apply_cubic(truth, source)
    target[:300] = rng.random((300, 3))  # 15 % of matches are wrong
    coefficients, robust = fit_cubic(source, target, np.ones(len(source)))
    inliers = apply_cubic(coefficients, source[300:]) - target[300:]
    assert np.abs(inliers).max() < 0.01
    assert robust[:300].mean() < 0.5 * robust[300:].mean()  # the wrong matches are discounted


def test_cross_validation_keeps_a_cubic_for_noise_and_follows_a_consistent_local_change() -> None:
    rng = np.random.default_rng(6)
    source = rng.random((2300, 3))
    # a consistent local change no cubic follows: reds (and only reds) turn magenta
    red = (source[:, 0] > 0.6) & (source[:, 1] < 0.35) & (source[:, 2] < 0.35)
    target = source.copy()
    target[red] += [-0.06, 0.0, 0.1]
    consistent = fit_lattice(source, target, np.ones(len(source)))
    lattice_error = np.abs(apply_lattice(consistent.lattice, source[red]) - target[red]).mean()
    cubic_error = np.abs(apply_cubic(consistent.cubic, source[red]) - target[red]).mean()
    assert lattice_error < 0.5 * cubic_error
    # matches that say nothing: targets unrelated to the sources
    noise = fit_lattice(source, rng.random((2300, 3)), np.ones(len(source)))
    assert noise.smoothness > consistent.smoothness
    points = identity_lattice(9).reshape(-1, 3)
    departure = np.abs(noise.lattice.reshape(-1, 3) - apply_cubic(noise.cubic, points)).mean()
    assert departure < 0.02  # the noisy pair's lattice stays the cubic (no posterised blotches)


def test_cubic_terms_are_the_twenty_monomials() -> None:
    terms = cubic_terms(np.array([[2.0, 3.0, 5.0]]))[0]
    assert terms.shape == (20,)
    assert sorted(terms.tolist()) == sorted(
        [1, 2, 3, 5, 4, 9, 25, 6, 10, 15, 8, 27, 125, 12, 20, 18, 45, 50, 75, 30]
    )


def test_mutual_matches_keep_only_cycle_consistent_pairs() -> None:
    similarity = np.array([[0.9, 0.1, 0.0], [0.8, 0.2, 0.1], [0.0, 0.1, 0.7]])
    best, weight = mutual_matches(similarity)
    assert best.tolist() == [0, 0, 2]
    np.testing.assert_allclose(weight, [0.9, 0.0, 0.7])


def test_descriptors_are_unit_and_cells_average_their_pixels() -> None:
    rng = np.random.default_rng(7)
    out = descriptors(rng.standard_normal((40, 6, 6)), rng.standard_normal((112, 3, 3)))
    assert out.shape == (36, 152)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    image = rng.random((16, 24, 3))
    cells = cell_colours(image, (2, 3))
    np.testing.assert_allclose(cells[4], image[8:16, 8:16].mean(axis=(0, 1)))


@pytest.mark.parametrize("flip", [False, True])
def test_real_descriptors_match_a_regraded_reframed_photo(shared_data, flip: bool) -> None:
    """On a real photo and a strongly re-graded, re-framed copy of it, the prior recovers the grade."""
    from PIL import Image

    from recolorize.networks.backbones import build_semantic_backbone
    from recolorize.networks.prior_features import photos_prior

    photo = sorted((shared_data / "bsds500" / "images" / "test").glob("*.jpg"))[3]
    source = np.asarray(Image.open(photo).convert("RGB"), dtype=np.float32) / 255.0
    graded = np.clip(source[..., [1, 2, 0]] ** 0.8 * 0.9 + 0.05, 0, 1).astype(np.float32)
    height, width = source.shape[:2]
    reference = graded[height // 8 :, : width - width // 6]
    reference = reference[:, ::-1] if flip else reference
    prior = photos_prior(
        build_semantic_backbone("efficientnet_lite0"), source, [np.ascontiguousarray(reference)]
    )
    error = np.abs(apply_lattice(prior.lattice, source) - graded).mean() * 255
    assert error < 0.25 * np.abs(source - graded).mean() * 255
    assert error < 4.0


def test_different_scenes_give_way_to_mkl_and_a_greyscale_source_does_not(shared_data) -> None:
    """DPST pair 2 (a sunset and a night sky: different scenes) shares little: its prior leans on MKL's
    affine map, whose gain is moderate everywhere, so the smooth sky's JPEG noise is not blown into blocks;
    DPST pair 8's greyscale source keeps the correspondence's map (MKL would turn noise into colour)."""
    from recolorize.imaging import load_image
    from recolorize.networks.backbones import build_semantic_backbone
    from recolorize.networks.prior_features import prior_copy, prior_descriptors
    from recolorize.prior import NOTHING_SHARED, SHARED_SCENE, fit_prior, pair_prior

    semantic = build_semantic_backbone("efficientnet_lite0")
    fits = {}
    for pair in (2, 8):
        source = load_image(shared_data / "dpst" / "input" / f"in{pair}.png").rgb
        reference = load_image(shared_data / "dpst" / "style" / f"tar{pair}.png").rgb
        copies = [prior_copy(source), prior_copy(reference)]
        fits[pair] = fit_prior(*copies, *prior_descriptors(semantic, copies))
    fit, matches = fits[2]
    assert matches.shared < SHARED_SCENE
    assert fit.trust == pytest.approx(np.clip((matches.shared - NOTHING_SHARED) / 0.1, 0, 1))
    assert fit.trust < 0.5
    steepest = max(np.abs(np.diff(fit.lattice, axis=axis)).max() * 8 for axis in range(3))
    assert steepest < 3.0  # the cubic alone reached a gain of 7 in this sky
    grey_fit, grey_matches = fits[8]
    assert grey_matches.shared < SHARED_SCENE and grey_fit.trust == 1.0
    # neither reads a local field: between different scenes a residual is content, not a local change
    for pair in (2, 8):
        source = load_image(shared_data / "dpst" / "input" / f"in{pair}.png").rgb
        reference = load_image(shared_data / "dpst" / "style" / f"tar{pair}.png").rgb
        copies = [prior_copy(source), prior_copy(reference)]
        described = prior_descriptors(semantic, copies)
        assert pair_prior(copies[0], [copies[1]], described[0], [described[1]]).local is None


def test_the_blocked_column_argmax_is_numpys() -> None:
    """The match's column argmax a block of rows at a time: NumPy's first maximum of every column, ties
    included."""
    from recolorize.prior.matching import _column_argmax

    rng = np.random.default_rng(6)
    for shape in [(1300, 700), (5, 9), (1024, 3)]:
        matrix = rng.integers(0, 7, shape).astype(np.float32)  # many ties
        assert np.array_equal(_column_argmax(matrix, block=128), matrix.argmax(axis=0)), shape
