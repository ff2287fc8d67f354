"""Metrics against published values (Sharma et al. 2005), constructed images and scikit-image."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch
from skimage.color import deltaE_cie76, deltaE_ciede2000, rgb2lab

from recolorize.errors import UserError
from recolorize.evaluation import metrics

# Sharma, Wu & Dalal (2005), "The CIEDE2000 color-difference formula: implementation notes, supplementary
# test data, and mathematical observations", Table 1: (L1, a1, b1), (L2, a2, b2), published Delta E 00.
SHARMA_PAIRS = [
    ((50.0000, 2.6772, -79.7751), (50.0000, 0.0000, -82.7485), 2.0425),
    ((50.0000, 3.1571, -77.2803), (50.0000, 0.0000, -82.7485), 2.8615),
    ((50.0000, 2.8361, -74.0200), (50.0000, 0.0000, -82.7485), 3.4412),
    ((50.0000, -1.3802, -84.2814), (50.0000, 0.0000, -82.7485), 1.0000),
    ((50.0000, -1.1848, -84.8006), (50.0000, 0.0000, -82.7485), 1.0000),
    ((50.0000, -0.9009, -85.5211), (50.0000, 0.0000, -82.7485), 1.0000),
    ((50.0000, 0.0000, 0.0000), (50.0000, -1.0000, 2.0000), 2.3669),
    ((50.0000, -1.0000, 2.0000), (50.0000, 0.0000, 0.0000), 2.3669),
    ((50.0000, 2.4900, -0.0010), (50.0000, -2.4900, 0.0009), 7.1792),
    ((50.0000, 2.4900, -0.0010), (50.0000, -2.4900, 0.0010), 7.1792),
    ((50.0000, 2.4900, -0.0010), (50.0000, -2.4900, 0.0011), 7.2195),
    ((50.0000, 2.4900, -0.0010), (50.0000, -2.4900, 0.0012), 7.2195),
    ((50.0000, -0.0010, 2.4900), (50.0000, 0.0009, -2.4900), 4.8045),
    ((50.0000, -0.0010, 2.4900), (50.0000, 0.0010, -2.4900), 4.8045),
    ((50.0000, -0.0010, 2.4900), (50.0000, 0.0011, -2.4900), 4.7461),
    ((50.0000, 2.5000, 0.0000), (50.0000, 0.0000, -2.5000), 4.3065),
    ((50.0000, 2.5000, 0.0000), (73.0000, 25.0000, -18.0000), 27.1492),
    ((50.0000, 2.5000, 0.0000), (61.0000, -5.0000, 29.0000), 22.8977),
    ((50.0000, 2.5000, 0.0000), (56.0000, -27.0000, -3.0000), 31.9030),
    ((50.0000, 2.5000, 0.0000), (58.0000, 24.0000, 15.0000), 19.4535),
    ((50.0000, 2.5000, 0.0000), (50.0000, 3.1736, 0.5854), 1.0000),
    ((50.0000, 2.5000, 0.0000), (50.0000, 3.2972, 0.0000), 1.0000),
    ((50.0000, 2.5000, 0.0000), (50.0000, 1.8634, 0.5757), 1.0000),
    ((50.0000, 2.5000, 0.0000), (50.0000, 3.2592, 0.3350), 1.0000),
    ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
    ((63.0109, -31.0961, -5.8663), (62.8187, -29.7946, -4.0864), 1.2630),
    ((61.2901, 3.7196, -5.3901), (61.4292, 2.2480, -4.9620), 1.8731),
    ((35.0831, -44.1164, 3.7933), (35.0232, -40.0716, 1.5901), 1.8645),
    ((22.7233, 20.0904, -46.6940), (23.0331, 14.9730, -42.5619), 2.0373),
    ((36.4612, 47.8580, 18.3852), (36.2715, 50.5065, 21.2231), 1.4146),
    ((90.8027, -2.0831, 1.4410), (91.1528, -1.6435, 0.0447), 1.4441),
    ((90.9257, -0.5406, -0.9208), (88.6381, -0.8985, -0.7239), 1.5381),
    ((6.7747, -0.2908, -2.4247), (5.8714, -0.0985, -2.2286), 0.6377),
    ((2.0776, 0.0795, -1.1350), (0.9033, -0.0636, -0.5514), 0.9082),
]


def _photo_like(seed: int, size: int = 32) -> np.ndarray:
    """A smooth random colour image in [0, 1] (gradients plus noise), (size, size, 3) float32."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    base = np.stack([x, y, 0.5 * (x + y)], axis=-1) * rng.uniform(0.3, 0.7, 3) + rng.uniform(0.1, 0.3, 3)
    return np.clip(base + rng.normal(0, 0.03, base.shape), 0, 1).astype(np.float32)


class TestCiede2000:
    @pytest.mark.parametrize(("lab1", "lab2", "expected"), SHARMA_PAIRS)
    def test_sharma_pairs(self, lab1, lab2, expected) -> None:
        assert metrics.ciede2000(np.array(lab1), np.array(lab2)) == pytest.approx(expected, abs=1e-4)

    def test_vectorised_and_symmetric(self) -> None:
        lab1 = np.array([pair[0] for pair in SHARMA_PAIRS])
        lab2 = np.array([pair[1] for pair in SHARMA_PAIRS])
        expected = np.array([pair[2] for pair in SHARMA_PAIRS])
        np.testing.assert_allclose(metrics.ciede2000(lab1, lab2), expected, atol=1e-4)
        np.testing.assert_allclose(metrics.ciede2000(lab2, lab1), expected, atol=1e-4)

    def test_agrees_with_skimage_on_random_colours(self) -> None:
        rng = np.random.default_rng(0)
        lab1 = np.stack([rng.uniform(0, 100, 500), rng.uniform(-90, 90, 500), rng.uniform(-90, 90, 500)], -1)
        lab2 = lab1 + rng.normal(0, 8, lab1.shape)
        np.testing.assert_allclose(metrics.ciede2000(lab1, lab2), deltaE_ciede2000(lab1, lab2), atol=1e-8)

    def test_identical_is_zero(self) -> None:
        assert metrics.ciede2000(np.array([50.0, 10.0, -3.0]), np.array([50.0, 10.0, -3.0])) == 0.0


class TestPixelMetrics:
    def test_mae_constant_offset(self) -> None:
        image = np.full((8, 9, 3), 0.5, dtype=np.float32)
        assert metrics.mae(image + 10 / 255, image) == pytest.approx(10.0, abs=1e-4)
        assert metrics.mae(image, image) == 0.0

    def test_mae_one_channel(self) -> None:
        image = np.zeros((4, 4, 3))
        other = image.copy()
        other[..., 1] = 1.0  # one of three channels differs by 255
        assert metrics.mae(image, other) == pytest.approx(85.0)

    def test_psnr_constant_offset(self) -> None:
        image = np.full((8, 8, 3), 0.25)
        # MSE = (10/255)^2, so PSNR = 20 log10(25.5) = 28.1308 dB.
        assert metrics.psnr(image + 10 / 255, image) == pytest.approx(28.1308, abs=1e-4)

    def test_psnr_half_range(self) -> None:
        assert metrics.psnr(np.zeros((4, 4, 3)), np.full((4, 4, 3), 0.5)) == pytest.approx(6.0206, abs=1e-4)

    def test_psnr_identical_is_inf(self) -> None:
        image = _photo_like(0)
        assert metrics.psnr(image, image) == float("inf")

    def test_delta_e76_against_skimage(self) -> None:
        a, b = _photo_like(1), _photo_like(2)
        expected = deltaE_cie76(rgb2lab(a.astype(np.float64)), rgb2lab(b.astype(np.float64))).mean()
        assert metrics.delta_e76(a, b) == pytest.approx(expected, rel=1e-9)

    def test_delta_e76_black_white_is_100(self) -> None:
        assert metrics.delta_e76(np.zeros((2, 2, 3)), np.ones((2, 2, 3))) == pytest.approx(100.0, abs=1e-3)

    def test_delta_e2000_against_skimage(self) -> None:
        a, b = _photo_like(3), _photo_like(4)
        expected = deltaE_ciede2000(rgb2lab(a.astype(np.float64)), rgb2lab(b.astype(np.float64))).mean()
        assert metrics.delta_e2000(a, b) == pytest.approx(expected, rel=1e-9)
        assert metrics.delta_e2000(a, a) == 0.0

    def test_ssim_identical_is_one(self) -> None:
        image = _photo_like(5)
        assert metrics.ssim(image, image) == pytest.approx(1.0)

    def test_ssim_lower_for_noise(self) -> None:
        image = _photo_like(6)
        noisy = np.clip(image + np.random.default_rng(0).normal(0, 0.2, image.shape), 0, 1)
        assert metrics.ssim(noisy, image) < 0.8

    def test_ssim_small_image(self) -> None:
        image = _photo_like(7, size=4)
        assert metrics.ssim(image, image) == pytest.approx(1.0)


class TestHistogramIntersection:
    def test_identical_is_one(self) -> None:
        image = _photo_like(8)
        assert metrics.his(image, image) == pytest.approx(1.0)

    def test_same_distribution_other_size_is_one(self) -> None:
        image = _photo_like(9, size=16)
        assert metrics.his(image, np.tile(image, (2, 3, 1))) == pytest.approx(1.0)

    def test_disjoint_colours_is_zero(self) -> None:
        red = np.zeros((8, 8, 3))
        red[..., 0] = 1.0
        blue = np.zeros((5, 7, 3))
        blue[..., 2] = 1.0
        assert metrics.his(red, blue) == 0.0

    def test_half_overlap(self) -> None:
        left = np.zeros((4, 4, 3))
        left[:, :2] = 1.0  # half white, half black
        right = np.zeros((4, 4, 3))
        right[:, :2, 0] = 1.0  # half red, half black
        assert metrics.his(left, right) == pytest.approx(0.5)

    def test_joint_not_per_channel(self) -> None:
        # Same per-channel histograms, different colour combinations: red + green vs yellow + black.
        a = np.zeros((2, 2, 3))
        a[0, :, 0] = 1.0
        a[1, :, 1] = 1.0
        b = np.zeros((2, 2, 3))
        b[0, :, :2] = 1.0
        assert metrics.his(a, b) == 0.0


class TestLpips:
    @pytest.fixture
    def fake_lpips(self, monkeypatch: pytest.MonkeyPatch):
        """Replace recolorize.lpips with a recorder, to check scaling, caching and the returned value."""
        calls: list[tuple[str, torch.Tensor, torch.Tensor]] = []
        built: list[str] = []

        class FakeLPIPS(torch.nn.Module):
            def __init__(self, net: str = "alex") -> None:
                super().__init__()
                self.net = net
                built.append(net)

            def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
                calls.append((self.net, a, b))
                return (a - b).abs().mean(dim=(1, 2, 3))

        module = types.ModuleType("recolorize.lpips")
        module.LPIPS = FakeLPIPS  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "recolorize.lpips", module)
        metrics._lpips_model.cache_clear()
        yield calls, built
        metrics._lpips_model.cache_clear()

    def test_scales_to_minus_one_one_and_caches(self, fake_lpips) -> None:
        calls, built = fake_lpips
        black, white = np.zeros((6, 5, 3)), np.ones((6, 5, 3))
        assert metrics.lpips(black, white) == pytest.approx(2.0)
        metrics.lpips(white, white)
        metrics.lpips(white, black, net="vgg")
        assert built == ["alex", "vgg"]
        net, a, b = calls[0]
        assert net == "alex" and a.shape == (1, 3, 6, 5) and a.dtype == torch.float32
        assert a.min() == -1.0 and b.max() == 1.0

    def test_real_lpips_identical_is_zero(self) -> None:
        pytest.importorskip("recolorize.lpips", reason="recolorize.lpips is not written yet")
        metrics._lpips_model.cache_clear()
        image = _photo_like(10, size=64)
        assert metrics.lpips(image, image) == pytest.approx(0.0, abs=1e-6)
        assert metrics.lpips(image, 1.0 - image) > 0.05


class TestRegistry:
    def test_names_and_needs(self) -> None:
        assert set(metrics.METRICS) == {"mae", "psnr", "delta_e76", "delta_e2000", "ssim", "his", "lpips"}
        assert metrics.METRICS["his"].needs == "reference" and not metrics.METRICS["his"].needs_target
        assert all(metrics.METRICS[name].needs_target for name in ("mae", "psnr", "lpips", "delta_e2000"))
        assert metrics.METRICS["psnr"].higher_is_better and not metrics.METRICS["mae"].higher_is_better

    def test_unknown_name(self) -> None:
        with pytest.raises(UserError, match="unknown metric 'fid'.*mae"):
            metrics.get_metric("fid")

    def test_registry_is_read_only(self) -> None:
        with pytest.raises(TypeError):
            metrics.METRICS["x"] = metrics.METRICS["mae"]  # type: ignore[index]

    def test_compute_metrics(self) -> None:
        image = _photo_like(11)
        reference = _photo_like(12, size=20)
        result = metrics.compute_metrics(
            image, target=image, reference=reference, names=["mae", "his", "psnr"]
        )
        assert list(result) == ["mae", "his", "psnr"]
        assert result["mae"] == 0.0 and result["psnr"] == float("inf") and 0.0 <= result["his"] < 1.0

    def test_compute_metrics_skips_missing_inputs_by_default(self) -> None:
        image = _photo_like(13)
        assert list(metrics.compute_metrics(image, reference=image)) == ["his"]

    def test_compute_metrics_explicit_missing_input(self) -> None:
        with pytest.raises(ValueError, match="needs a target"):
            metrics.compute_metrics(_photo_like(14), names=["mae"])


class TestBadInput:
    def test_shape_mismatch(self) -> None:
        with pytest.raises(ValueError, match="same shape"):
            metrics.mae(np.zeros((4, 4, 3)), np.zeros((4, 5, 3)))

    def test_uint8_rejected(self) -> None:
        with pytest.raises(ValueError, match="float"):
            metrics.psnr(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4, 3), np.uint8))

    def test_0_255_range_rejected(self) -> None:
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            metrics.delta_e76(np.full((4, 4, 3), 200.0), np.zeros((4, 4, 3)))

    def test_wrong_channels(self) -> None:
        with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
            metrics.his(np.zeros((4, 4)), np.zeros((4, 4, 3)))

    def test_nan(self) -> None:
        image = np.zeros((4, 4, 3))
        image[0, 0, 0] = np.nan
        with pytest.raises(ValueError, match="NaN"):
            metrics.ssim(image, np.zeros((4, 4, 3)))
