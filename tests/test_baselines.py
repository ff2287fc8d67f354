"""Classical colour-transfer baselines: each must move the statistic it claims to move."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from skimage.color import rgb2lab
from skimage.exposure import match_histograms

from recolorize.errors import UserError
from recolorize.evaluation import baselines

DPST = Path("/work/shared/data/dpst")
# DPST pairs whose transfer results stay mostly inside the sRGB gamut (little clipping), and whose source and
# reference statistics differ a lot, so that a no-op transfer fails the test (checked in the tests).
REINHARD_PAIRS = (6, 15, 26)  # pair 6: Lab b std 7.9 (source) vs 25.3 (reference)
MKL_PAIRS = (1, 6)  # relative covariance difference source vs reference: 4.0 and 0.42
HISTOGRAM_PAIRS = (1, 6)
HM_MKL_HM_PAIRS = (1, 6, 9)  # Lab mean distance source to reference: 48.6, 22.6 and 96.9
GREY_REFERENCE_PAIR = 38  # tar38 is a greyscale photo
# A global colour mixing (3x3 matrix + offset) that per-channel matching cannot undo.
MIX = np.array([[0.80, 0.15, 0.05], [0.10, 0.70, 0.10], [0.00, 0.20, 0.90]])
STRONG_MIX = np.array([[0.50, 0.40, 0.10], [0.30, 0.40, 0.30], [0.10, 0.20, 0.70]])
MIX_OFFSET = np.array([0.08, 0.02, -0.03])


def _load(path: Path, width: int) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        rgb = image.convert("RGB")
        height = max(1, round(rgb.height * width / rgb.width))
        return np.asarray(rgb.resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32) / 255.0


def _dpst_pair(pair: int) -> tuple[np.ndarray, np.ndarray]:
    source, style = DPST / "input" / f"in{pair}.png", DPST / "style" / f"tar{pair}.png"
    if not (source.is_file() and style.is_file()):
        pytest.skip(
            f"DPST photos not found ({source}, {style}): real-photo checks need /work/shared/data/dpst"
        )
    # Reduced sizes keep the test fast; the reference gets another size on purpose.
    return _load(source, 128), _load(style, 96)


def _random_pair(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Correlated colour noise with moderate spread: a source and a reference of another size."""
    rng = np.random.default_rng(seed)
    mix_s = np.array([[0.08, 0.03, 0.01], [0.0, 0.05, 0.02], [0.0, 0.0, 0.04]])
    mix_r = np.array([[0.05, 0.0, 0.0], [0.04, 0.06, 0.0], [-0.02, 0.03, 0.07]])
    source = rng.normal(size=(20, 24, 3)) @ mix_s + np.array([0.45, 0.5, 0.4])
    reference = rng.normal(size=(17, 13, 3)) @ mix_r + np.array([0.55, 0.45, 0.6])
    return np.clip(source, 0, 1).astype(np.float32), np.clip(reference, 0, 1).astype(np.float32)


def _cov(image: np.ndarray) -> np.ndarray:
    return np.cov(image.reshape(-1, 3).astype(np.float64), rowvar=False, bias=True)


class TestContract:
    @pytest.mark.parametrize("name", list(baselines.BASELINES))
    def test_shape_dtype_range_with_other_reference_size(self, name: str) -> None:
        source, reference = _random_pair(1)
        output = baselines.BASELINES[name](source, reference)
        assert output.shape == source.shape
        assert output.dtype == np.float32
        assert output.min() >= 0.0 and output.max() <= 1.0

    @pytest.mark.parametrize("name", list(baselines.BASELINES))
    def test_grey_source_is_finite(self, name: str) -> None:
        source, reference = _random_pair(2)
        grey = source.mean(axis=2, keepdims=True).repeat(3, axis=2)
        output = baselines.BASELINES[name](grey, reference)
        assert np.isfinite(output).all() and output.shape == grey.shape

    def test_identity_returns_source(self) -> None:
        source, reference = _random_pair(3)
        np.testing.assert_array_equal(baselines.identity(source, reference), source)

    def test_registry(self) -> None:
        assert list(baselines.BASELINES) == ["identity", "reinhard", "histogram", "mkl", "hm-mkl-hm"]
        assert baselines.get_baseline("mkl") is baselines.mkl
        assert baselines.get_baseline("hm-mkl-hm") is baselines.hm_mkl_hm
        with pytest.raises(UserError, match="unknown baseline 'wct2'.*reinhard"):
            baselines.get_baseline("wct2")

    def test_bad_input(self) -> None:
        source, reference = _random_pair(4)
        with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
            baselines.reinhard(source[..., :2], reference)
        with pytest.raises(ValueError, match="float"):
            baselines.mkl((source * 255).astype(np.uint8), reference)
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            baselines.histogram(source, reference * 255)


class TestReinhard:
    @pytest.mark.parametrize("pair", REINHARD_PAIRS)
    def test_matches_reference_lab_mean_and_std(self, pair: int) -> None:
        source, reference = _dpst_pair(pair)
        out_lab = rgb2lab(baselines.reinhard(source, reference).astype(np.float64))
        ref_lab = rgb2lab(reference.astype(np.float64))
        src_lab = rgb2lab(source.astype(np.float64))
        np.testing.assert_allclose(out_lab.mean(axis=(0, 1)), ref_lab.mean(axis=(0, 1)), atol=1.0)
        np.testing.assert_allclose(out_lab.std(axis=(0, 1)), ref_lab.std(axis=(0, 1)), rtol=0.1)
        # The pair is informative: the source's statistics are far from the reference's.
        moved = np.abs(src_lab.mean((0, 1)) - ref_lab.mean((0, 1))).max()
        stretched = np.abs(src_lab.std((0, 1)) / ref_lab.std((0, 1)) - 1.0).max()
        assert moved > 5.0 or stretched > 0.3

    def test_exact_without_clipping(self) -> None:
        # A reference that is an in-gamut affine Lab change of the source: the transfer recovers it.
        source, _ = _random_pair(5)
        src_lab = rgb2lab(source.astype(np.float64))
        target_lab = (src_lab - src_lab.mean((0, 1))) * [0.9, 1.3, 0.8] + [55.0, 4.0, -3.0]
        from skimage.color import lab2rgb

        target = lab2rgb(target_lab).astype(np.float32)
        np.testing.assert_allclose(baselines.reinhard(source, target), target, atol=2e-3)

    def test_grey_source_takes_reference_mean_chroma(self) -> None:
        source, reference = _random_pair(6)
        grey = np.repeat(source[..., :1], 3, axis=2)
        out_lab = rgb2lab(baselines.reinhard(grey, reference).astype(np.float64))
        ref_lab = rgb2lab(reference.astype(np.float64))
        np.testing.assert_allclose(out_lab[..., 1:].mean((0, 1)), ref_lab[..., 1:].mean((0, 1)), atol=0.5)
        assert out_lab[..., 1:].std(axis=(0, 1)).max() < 1.0  # no invented chroma noise


class TestHistogram:
    def test_same_size_reproduces_reference_values_exactly(self) -> None:
        rng = np.random.default_rng(7)
        source = rng.random((16, 16, 3))  # continuous: no ties
        reference = rng.beta(2.0, 5.0, (8, 32, 3))  # same pixel count, another shape and distribution
        output = baselines.histogram(source, reference)
        for c in range(3):
            np.testing.assert_allclose(
                np.sort(output[..., c].ravel()), np.sort(reference[..., c].ravel()), atol=1e-7
            )
        # Order is kept: the brightest source pixel gets the brightest reference value.
        assert np.argmax(output[..., 0]) == np.argmax(source[..., 0])

    @pytest.mark.parametrize("pair", HISTOGRAM_PAIRS)
    def test_quantiles_match_with_other_size(self, pair: int) -> None:
        # 8-bit photos have ties, which exact matching cannot split, so single quantiles can be a few levels
        # off; the mean quantile gap (the 1-D Wasserstein distance) must be about one level.
        source, reference = _dpst_pair(pair)
        output = baselines.histogram(source, reference)
        levels = np.linspace(0.01, 0.99, 99)
        for c in range(3):
            ref_q = np.quantile(reference[..., c], levels)
            assert np.abs(np.quantile(output[..., c], levels) - ref_q).mean() < 1.5 / 255.0
            assert np.abs(np.quantile(source[..., c], levels) - ref_q).mean() > 10.0 / 255.0

    def test_agrees_with_skimage(self) -> None:
        source, reference = _random_pair(8)
        expected = match_histograms(source.astype(np.float64), reference.astype(np.float64), channel_axis=-1)
        np.testing.assert_allclose(baselines.histogram(source, reference), expected, atol=1e-6)


class TestMkl:
    def test_map_moves_mean_and_covariance_exactly(self) -> None:
        source, reference = _random_pair(9)
        matrix, offset = baselines.mkl_map(source.reshape(-1, 3), reference.reshape(-1, 3))
        moved = source.reshape(-1, 3).astype(np.float64) @ matrix + offset
        ref_mean = reference.reshape(-1, 3).astype(np.float64).mean(axis=0)
        np.testing.assert_allclose(moved.mean(axis=0), ref_mean, atol=1e-9)
        np.testing.assert_allclose(_cov(moved), _cov(reference), atol=1e-10)
        np.testing.assert_allclose(matrix, matrix.T, atol=1e-12)

    def test_map_is_the_minimal_displacement_one(self) -> None:
        # For isotropic source covariance s*I the MK map is sqrt(R)/sqrt(s): symmetric positive definite.
        rng = np.random.default_rng(10)
        source = rng.normal(size=(4000, 3))
        source = (source - source.mean(0)) @ np.linalg.inv(np.linalg.cholesky(np.cov(source.T, bias=True))).T
        reference = rng.normal(size=(3000, 3)) @ np.array([[1.0, 0.5, 0.0], [0.0, 1.0, 0.3], [0.0, 0.0, 0.7]])
        matrix, _ = baselines.mkl_map(source, reference)
        values, vectors = np.linalg.eigh(np.cov(reference.T, bias=True))
        np.testing.assert_allclose(matrix, (vectors * np.sqrt(values)) @ vectors.T, atol=1e-8)

    def test_output_mean_and_covariance_on_synthetic(self) -> None:
        source, reference = _random_pair(11)
        output = baselines.mkl(source, reference)
        np.testing.assert_allclose(output.reshape(-1, 3).mean(0), reference.reshape(-1, 3).mean(0), atol=5e-3)
        np.testing.assert_allclose(_cov(output), _cov(reference), atol=3e-4)

    @pytest.mark.parametrize("pair", MKL_PAIRS)
    def test_output_mean_and_covariance_on_photos(self, pair: int) -> None:
        source, reference = _dpst_pair(pair)
        output = baselines.mkl(source, reference)
        np.testing.assert_allclose(output.reshape(-1, 3).mean(0), reference.reshape(-1, 3).mean(0), atol=0.01)
        error = np.linalg.norm(_cov(output) - _cov(reference)) / np.linalg.norm(_cov(reference))
        assert error < 0.1
        assert np.linalg.norm(_cov(source) - _cov(reference)) / np.linalg.norm(_cov(reference)) > 0.3


def _mixed_pair(source: np.ndarray, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Target = a global colour mixing of the source; reference = the target mirrored (no pixel alignment)."""
    target = np.clip(source.astype(np.float64) @ matrix.T + MIX_OFFSET, 0, 1).astype(np.float32)
    return target, target[:, ::-1].copy()


def _hm_then_mkl_then_hm(source: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """The compound rebuilt from this project's own histogram matching and MKL map (an independent check)."""
    src, ref = source.astype(np.float64), reference.astype(np.float64)
    matched = np.stack([baselines.match_cdf(src[..., c], ref[..., c]) for c in range(3)], axis=-1)
    matrix, offset = baselines.mkl_map(matched.reshape(-1, 3), ref.reshape(-1, 3))
    moved = (matched.reshape(-1, 3) @ matrix + offset).reshape(src.shape)
    return np.stack([baselines.match_cdf(moved[..., c], ref[..., c]) for c in range(3)], axis=-1)


class TestHmMklHm:
    @pytest.mark.parametrize("pair", HM_MKL_HM_PAIRS)
    def test_moves_lab_mean_and_channel_histograms_to_reference(self, pair: int) -> None:
        source, reference = _dpst_pair(pair)
        output = baselines.hm_mkl_hm(source, reference)
        out_lab, ref_lab, src_lab = (rgb2lab(x.astype(np.float64)) for x in (output, reference, source))
        before = np.linalg.norm(src_lab.mean((0, 1)) - ref_lab.mean((0, 1)))
        after = np.linalg.norm(out_lab.mean((0, 1)) - ref_lab.mean((0, 1)))
        assert before > 20.0  # the pair is informative: identity is far off
        assert after < 0.05 * before and after < 2.0
        # The last step is histogram matching: each RGB channel follows the reference's quantiles.
        levels = np.linspace(0.01, 0.99, 99)
        for c in range(3):
            gap = np.quantile(output[..., c], levels) - np.quantile(reference[..., c], levels)
            assert np.abs(gap).mean() < 1.5 / 255.0

    @pytest.mark.parametrize("pair", (1, 6, 15))
    def test_undoes_colour_mixing_better_than_histogram_on_photos(self, pair: int) -> None:
        source, _ = _dpst_pair(pair)
        target, reference = _mixed_pair(source, MIX)
        error = {
            name: np.abs(baselines.BASELINES[name](source, reference) - target).mean() * 255
            for name in ("identity", "histogram", "hm-mkl-hm")
        }
        assert error["hm-mkl-hm"] < 0.5 * error["histogram"] < 0.5 * error["identity"]
        assert error["hm-mkl-hm"] < 1.0  # under one 8-bit level on average

    def test_undoes_colour_mixing_better_than_histogram_on_synthetic(self) -> None:
        source, _ = _random_pair(12)
        target, reference = _mixed_pair(source, STRONG_MIX)
        hist_error = np.abs(baselines.histogram(source, reference) - target).mean()
        error = np.abs(baselines.hm_mkl_hm(source, reference) - target).mean()
        assert error < 0.25 * hist_error

    @pytest.mark.parametrize("pair", [None, 1])
    def test_equals_color_matcher_clipped(self, pair: int | None) -> None:
        from color_matcher import ColorMatcher

        source, reference = _random_pair(13) if pair is None else _dpst_pair(pair)
        expected = ColorMatcher().transfer(
            src=source.astype(np.float64), ref=reference.astype(np.float64), method="hm-mkl-hm"
        )
        output = baselines.hm_mkl_hm(source, reference)
        np.testing.assert_array_equal(output, np.clip(expected, 0, 1).astype(np.float32))

    @pytest.mark.parametrize("pair", [None, 6])
    def test_equals_hm_then_our_mkl_then_hm(self, pair: int | None) -> None:
        # color-matcher's MKL (np.linalg.eig, unbiased covariances) against ours (eigh, biased): the last
        # histogram matching only sees the ranks, so the two must agree to float32 round-off.
        source, reference = _random_pair(14) if pair is None else _dpst_pair(pair)
        expected = _hm_then_mkl_then_hm(source, reference)
        np.testing.assert_allclose(baselines.hm_mkl_hm(source, reference), expected, atol=1e-6)
        assert np.abs(expected - baselines.histogram(source, reference)).max() > 0.02  # MKL changed it

    def test_grey_reference_gives_real_grey_output(self) -> None:
        # On this pair color-matcher's eig of a rank-1 covariance returns complex round-off (seen with
        # OpenBLAS): the baseline must still return real float32 without a ComplexWarning.
        source, reference = _dpst_pair(GREY_REFERENCE_PAIR)
        assert np.ptp(reference, axis=2).max() < 1e-6
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            output = baselines.hm_mkl_hm(source, reference)
        assert output.dtype == np.float32
        assert np.ptp(output, axis=2).max() < 1.0 / 255.0  # grey up to near-tie round-off
        assert np.abs(output.mean() - reference.mean()) < 0.01

    def test_color_matcher_is_imported_lazily(self) -> None:
        code = "import sys, recolorize.evaluation.baselines; print('color_matcher' in sys.modules)"
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert result.stdout.strip() == "False"
