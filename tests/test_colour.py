"""Colour maths against scikit-image, round trips and float64 gradients."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from skimage import color as skcolor

from recolorize import colour


def _random_image(seed: int = 0, batch: int = 2, size: int = 8, dtype=torch.float64) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    image = torch.rand(batch, 3, size, size, generator=generator, dtype=dtype)
    # Include the extremes and values on both sides of the sRGB knee (0.04045).
    image[0, :, 0, 0] = 0.0
    image[0, :, 0, 1] = 1.0
    image[0, :, 0, 2] = torch.tensor([0.01, 0.04, 0.05], dtype=dtype)
    return image


def _to_numpy(image: torch.Tensor) -> np.ndarray:
    return image.permute(0, 2, 3, 1).numpy()


def _from_numpy(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).permute(0, 3, 1, 2)


class TestAgainstSkimage:
    def test_rgb_to_xyz(self) -> None:
        image = _random_image()
        expected = skcolor.rgb2xyz(_to_numpy(image))
        np.testing.assert_allclose(_to_numpy(colour.rgb_to_xyz(image)), expected, atol=1e-6)

    def test_xyz_to_rgb(self) -> None:
        xyz = _from_numpy(skcolor.rgb2xyz(_to_numpy(_random_image(1))))
        expected = skcolor.xyz2rgb(_to_numpy(xyz))
        np.testing.assert_allclose(_to_numpy(colour.xyz_to_rgb(xyz)), expected, atol=1e-6)

    @pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
    def test_rgb_to_lab(self, dtype: torch.dtype) -> None:
        image = _random_image(2, dtype=dtype)
        expected = skcolor.rgb2lab(_to_numpy(image).astype(np.float64))
        np.testing.assert_allclose(_to_numpy(colour.rgb_to_lab(image)), expected, atol=1e-4)

    def test_rgb_to_lab_dark_colours_use_the_linear_branch(self) -> None:
        # Very dark colours have XYZ / white below 0.008856: the linear part of f(t).
        image = torch.full((1, 3, 2, 2), 0.02, dtype=torch.float64)
        image[0, 0, 1, 1] = 0.0
        image[0, 2, 0, 1] = 0.3
        expected = skcolor.rgb2lab(_to_numpy(image))
        np.testing.assert_allclose(_to_numpy(colour.rgb_to_lab(image)), expected, atol=1e-4)

    @pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
    def test_rgb_to_lab_channels_last_is_the_same_lab(self, dtype: torch.dtype) -> None:
        # the pointwise generator's exported form (dark colours on the linear branch of both curves too)
        image = torch.cat([_random_image(3, dtype=dtype), torch.full((1, 3, 8, 8), 0.02, dtype=dtype)])
        last = image.permute(0, 2, 3, 1)
        expected = skcolor.rgb2lab(last.numpy().astype(np.float64))
        np.testing.assert_allclose(colour.rgb_to_lab_last(last).numpy(), expected, atol=1e-4)
        tolerance = 1e-4 if dtype == torch.float32 else 1e-10
        first = colour.rgb_to_lab(image).permute(0, 2, 3, 1)
        np.testing.assert_allclose(colour.rgb_to_lab_last(last).numpy(), first.numpy(), atol=tolerance)

    def test_known_values(self) -> None:
        # Primaries and white in D65 Lab as skimage 0.26 gives them (its sRGB matrix rows do not sum to
        # the D65 white exactly, so white has |a|, |b| < 0.005 instead of 0).
        image = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
        lab = colour.rgb_to_lab(image.T.reshape(1, 3, 1, 4).double())[0, :, 0].T
        expected = np.array(
            [[53.2406, 80.0923, 67.2028], [87.7351, -86.1830, 83.1797], [32.2957, 79.1856, -107.8573]]
        )
        np.testing.assert_allclose(lab[:3].numpy(), expected, atol=1e-3)
        np.testing.assert_allclose(lab[3].numpy(), [100.0, 0.0, 0.0], atol=5e-3)

    def test_lab_to_rgb(self) -> None:
        rng = np.random.default_rng(3)
        lab = np.stack(
            [
                rng.uniform(0, 100, (2, 6, 6)),
                rng.uniform(-60, 60, (2, 6, 6)),
                rng.uniform(-60, 60, (2, 6, 6)),
            ],
            axis=-1,
        )
        lab[0, 0, 0] = [5.0, 0.0, 60.0]  # negative z: skimage sets it to 0 (and warns)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            expected = skcolor.lab2rgb(lab)
        np.testing.assert_allclose(_to_numpy(colour.lab_to_rgb(_from_numpy(lab))), expected, atol=1e-6)

    def test_luminance_is_xyz_y(self) -> None:
        image = _random_image(4)
        expected = skcolor.rgb2xyz(_to_numpy(image))[..., 1]
        result = colour.luminance(image)
        assert result.shape == (2, 1, 8, 8)
        np.testing.assert_allclose(result[:, 0].numpy(), expected, atol=1e-7)

    def test_greyscale_keeps_lightness_and_drops_chroma(self) -> None:
        image = _random_image(5)
        grey = colour.greyscale(image)
        assert grey.shape == image.shape
        assert torch.equal(grey[:, 0], grey[:, 1]) and torch.equal(grey[:, 1], grey[:, 2])
        lab_grey = skcolor.rgb2lab(_to_numpy(grey))
        lab = skcolor.rgb2lab(_to_numpy(image))
        np.testing.assert_allclose(lab_grey[..., 0], lab[..., 0], atol=1e-3)
        np.testing.assert_allclose(lab_grey[..., 1:], 0.0, atol=1e-2)


class TestRoundTrip:
    def test_srgb_linear(self) -> None:
        image = _random_image(6)
        back = colour.linear_to_srgb(colour.srgb_to_linear(image))
        torch.testing.assert_close(back, image, atol=1e-10, rtol=0)

    def test_rgb_xyz(self) -> None:
        image = _random_image(7)
        torch.testing.assert_close(colour.xyz_to_rgb(colour.rgb_to_xyz(image)), image, atol=1e-9, rtol=0)

    def test_rgb_lab(self) -> None:
        image = _random_image(8)
        torch.testing.assert_close(colour.lab_to_rgb(colour.rgb_to_lab(image)), image, atol=1e-5, rtol=0)

    def test_float32_lab_round_trip(self) -> None:
        image = _random_image(9, dtype=torch.float32)
        torch.testing.assert_close(colour.lab_to_rgb(colour.rgb_to_lab(image)), image, atol=1e-4, rtol=0)

    def test_unbatched_and_extra_dims(self) -> None:
        image = _random_image(10)
        torch.testing.assert_close(colour.rgb_to_lab(image[0]), colour.rgb_to_lab(image)[0])
        stacked = image.unsqueeze(0)
        torch.testing.assert_close(colour.rgb_to_lab(stacked)[0], colour.rgb_to_lab(image))


class TestGradients:
    def test_gradcheck_rgb_to_lab(self) -> None:
        image = (_random_image(11, batch=1, size=3) * 0.9 + 0.05).requires_grad_(True)
        assert torch.autograd.gradcheck(colour.rgb_to_lab, (image,), eps=1e-6, atol=1e-5)

    def test_gradcheck_lab_to_rgb(self) -> None:
        image = _random_image(12, batch=1, size=3) * 0.8 + 0.1
        lab = colour.rgb_to_lab(image).detach().requires_grad_(True)
        assert torch.autograd.gradcheck(colour.lab_to_rgb, (lab,), eps=1e-6, atol=1e-5)

    def test_gradcheck_luminance(self) -> None:
        image = (_random_image(13, batch=1, size=3) * 0.9 + 0.05).requires_grad_(True)
        assert torch.autograd.gradcheck(colour.luminance, (image,), eps=1e-6, atol=1e-5)

    def test_gradients_finite_at_extremes(self) -> None:
        # Pure black / white / exact knees must not produce NaN gradients through the unused branch.
        image = torch.tensor([0.0, 1.0, 0.04045, 0.0031308], dtype=torch.float64)
        image = image.view(1, 1, 2, 2).expand(1, 3, 2, 2).clone().requires_grad_(True)
        colour.rgb_to_lab(image).sum().backward()
        assert torch.isfinite(image.grad).all()


class TestBadInput:
    def test_wrong_channels(self) -> None:
        with pytest.raises(ValueError, match=r"\(\*, 3, H, W\)"):
            colour.rgb_to_lab(torch.rand(1, 4, 2, 2))

    def test_too_few_dims(self) -> None:
        with pytest.raises(ValueError):
            colour.srgb_to_linear(torch.rand(3, 2))

    def test_integer_tensor(self) -> None:
        with pytest.raises(ValueError, match="floating"):
            colour.rgb_to_xyz(torch.zeros(1, 3, 2, 2, dtype=torch.uint8))

    def test_not_a_tensor(self) -> None:
        with pytest.raises(TypeError):
            colour.rgb_to_lab(np.zeros((1, 3, 2, 2)))  # type: ignore[arg-type]


class TestIsGreyscale:
    def test_grey_rgb(self) -> None:
        grey = np.random.default_rng(0).random((5, 6, 1)).repeat(3, axis=2)
        assert colour.is_greyscale(grey)

    def test_two_dimensional_and_single_channel(self) -> None:
        assert colour.is_greyscale(np.zeros((4, 4)))
        assert colour.is_greyscale(np.zeros((4, 4, 1)))

    def test_colour(self) -> None:
        image = np.full((4, 4, 3), 0.5)
        image[2, 3, 0] = 0.6
        assert not colour.is_greyscale(image)

    def test_tolerance(self) -> None:
        image = np.full((4, 4, 3), 0.5)
        image[..., 2] += 1.0 / 255.0
        assert colour.is_greyscale(image)
        assert not colour.is_greyscale(image, tolerance=0.5 / 255.0)

    def test_uint8_and_alpha(self) -> None:
        image = np.full((3, 3, 4), 100, dtype=np.uint8)
        image[..., 3] = 7
        assert colour.is_greyscale(image)
        image[0, 0, 1] = 110
        assert not colour.is_greyscale(image)

    def test_bad_shape(self) -> None:
        with pytest.raises(ValueError):
            colour.is_greyscale(np.zeros((4, 4, 2)))


class TestOklab:
    """Oklab against the reference values of Ottosson's post (linear sRGB primaries, white)."""

    REFERENCE = {  # linear sRGB -> Oklab (L, a, b), bottosson.github.io/posts/oklab
        (1.0, 1.0, 1.0): (1.0, 0.0, 0.0),
        (1.0, 0.0, 0.0): (0.627955, 0.224863, 0.125846),
        (0.0, 1.0, 0.0): (0.866440, -0.233888, 0.179498),
        (0.0, 0.0, 1.0): (0.452014, -0.032457, -0.311528),
        (0.0, 0.0, 0.0): (0.0, 0.0, 0.0),
    }

    def test_reference_values(self) -> None:
        rgb = torch.tensor(list(self.REFERENCE), dtype=torch.float64).T.reshape(1, 3, 1, -1)
        expected = torch.tensor(list(self.REFERENCE.values()), dtype=torch.float64).T.reshape(1, 3, 1, -1)
        torch.testing.assert_close(colour.linear_to_oklab(rgb), expected, atol=2e-6, rtol=0)

    def test_round_trip(self) -> None:
        linear = colour.srgb_to_linear(_random_image(14))
        back = colour.oklab_to_linear(colour.linear_to_oklab(linear))
        torch.testing.assert_close(back, linear, atol=1e-9, rtol=0)

    def test_greys_have_no_chroma(self) -> None:
        grey = torch.linspace(0.0, 1.0, 11, dtype=torch.float64).view(1, 1, 1, 11).expand(1, 3, 1, 11)
        lab = colour.linear_to_oklab(grey)
        torch.testing.assert_close(lab[:, 1:], torch.zeros_like(lab[:, 1:]), atol=1e-6, rtol=0)
        assert torch.all(lab[0, 0, 0, 1:] > lab[0, 0, 0, :-1])  # lightness grows with the grey level

    def test_unbatched_float32(self) -> None:
        image = colour.srgb_to_linear(_random_image(15, dtype=torch.float32))
        torch.testing.assert_close(colour.linear_to_oklab(image[0]), colour.linear_to_oklab(image)[0])
