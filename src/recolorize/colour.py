"""Differentiable colour maths: sRGB <-> linear RGB <-> CIE XYZ <-> CIE Lab (D65, 2 degree observer), and
linear RGB <-> Oklab.

Why here: losses (histogram, Lab distances), augmentations and metrics all need the same conversions, and
the training losses need gradients, so they are written once in torch. Constants follow
``skimage.color`` (sRGB matrix of IEC 61966-2-1, D65 white ``(0.95047, 1, 1.08883)``, the CIE
``0.008856 / 7.787`` Lab knee) so that ``rgb_to_lab`` agrees with ``skimage.color.rgb2lab`` to 1e-4.

Oklab (Ottosson 2020) is the perceptual space of the colour augmentation (hue rotations keep lightness);
its matrices are the published ones for linear sRGB.

Every tensor function takes ``(*, 3, H, W)`` (usually ``(B, 3, H, W)``) float tensors: channels are
dimension -3. Branch points use ``torch.where`` with clamped operands so that gradients stay finite
everywhere (no NaN from ``pow`` of a negative number in the branch that is not taken).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "D65_WHITE",
    "XYZ_FROM_RGB",
    "srgb_to_linear",
    "linear_to_srgb",
    "rgb_to_xyz",
    "xyz_to_rgb",
    "xyz_to_lab",
    "lab_to_xyz",
    "rgb_to_lab",
    "rgb_to_lab_last",
    "lab_to_rgb",
    "OKLAB_LMS_FROM_LINEAR",
    "OKLAB_FROM_LMS",
    "REC709_LUMA",
    "linear_to_oklab",
    "oklab_to_linear",
    "luminance",
    "greyscale",
    "is_greyscale",
]

# Linear sRGB -> XYZ (D65), rows X, Y, Z; the same matrix as skimage.color.colorconv.xyz_from_rgb.
XYZ_FROM_RGB: tuple[tuple[float, float, float], ...] = (
    (0.412453, 0.357580, 0.180423),
    (0.212671, 0.715160, 0.072169),
    (0.019334, 0.119193, 0.950227),
)
# CIE XYZ of the D65 reference white, 2 degree observer, Y normalised to 1.
D65_WHITE: tuple[float, float, float] = (0.95047, 1.0, 1.08883)

# Oklab (Ottosson 2020): linear sRGB -> LMS cone responses; cube roots of LMS -> (L, a, b).
OKLAB_LMS_FROM_LINEAR: tuple[tuple[float, float, float], ...] = (
    (0.4122214708, 0.5363325363, 0.0514459929),
    (0.2119034982, 0.6806995451, 0.1073969566),
    (0.0883024619, 0.2817188376, 0.6299787005),
)
OKLAB_FROM_LMS: tuple[tuple[float, float, float], ...] = (
    (0.2104542553, 0.7936177850, -0.0040720468),
    (1.9779984951, -2.4285922050, 0.4505937099),
    (0.0259040371, 0.7827717662, -0.8086757660),
)
# Rec. 709 luma weights (the rounded Y row of the sRGB primaries), for fast greys and grey-keeping gains.
REC709_LUMA: tuple[float, float, float] = (0.2126, 0.7152, 0.0722)

_OKLAB_M1 = np.asarray(OKLAB_LMS_FROM_LINEAR, dtype=np.float64)
_OKLAB_M2 = np.asarray(OKLAB_FROM_LMS, dtype=np.float64)
_OKLAB_M1_INV = np.linalg.inv(_OKLAB_M1)
_OKLAB_M2_INV = np.linalg.inv(_OKLAB_M2)

_SRGB_KNEE = 0.04045  # encoded value where the sRGB curve turns from linear to a power law
_LINEAR_KNEE = 0.0031308  # the same point in linear light
_LAB_EPSILON = 0.008856  # CIE knee of f(t) (skimage's rounded value of (6/29)^3)
_LAB_KAPPA = 7.787  # slope of the linear part of f(t) (skimage's rounded value of 1/3 (29/6)^2)
_LAB_DELTA = 6.0 / 29.0  # 0.2068966, knee of f^-1 as skimage writes it
_LAB_OFFSET = 16.0 / 116.0


def _check_image(image: torch.Tensor, name: str = "image") -> None:
    """Raise ValueError unless ``image`` is a floating tensor of shape (*, 3, H, W)."""
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(image).__name__}")
    if image.dim() < 3 or image.shape[-3] != 3:
        raise ValueError(f"{name} must have shape (*, 3, H, W), got {tuple(image.shape)}")
    if not image.is_floating_point():
        raise ValueError(f"{name} must be a floating tensor, got {image.dtype}")


def _matrix(rows: tuple[tuple[float, float, float], ...] | np.ndarray, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(np.asarray(rows, dtype=np.float64), dtype=like.dtype, device=like.device)


def _apply_matrix(matrix: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """out[..., i, h, w] = sum_j matrix[i, j] * image[..., j, h, w]."""
    return torch.einsum("ij,...jhw->...ihw", matrix, image)


def _white(like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(D65_WHITE, dtype=like.dtype, device=like.device).view(3, 1, 1)


def srgb_to_linear(image: torch.Tensor) -> torch.Tensor:
    """Undo the sRGB transfer curve (IEC 61966-2-1).

    image: (*, 3, H, W) encoded sRGB in [0, 1]. Returns linear-light RGB, same shape, in [0, 1].
    """
    _check_image(image)
    return _decode_curve(image)


def _decode_curve(image: torch.Tensor) -> torch.Tensor:
    """The sRGB decoding curve on every value (any layout)."""
    power = ((image.clamp(min=_SRGB_KNEE) + 0.055) / 1.055) ** 2.4
    return torch.where(image > _SRGB_KNEE, power, image / 12.92)


def linear_to_srgb(image: torch.Tensor) -> torch.Tensor:
    """Apply the sRGB transfer curve; the inverse of :func:`srgb_to_linear`.

    image: (*, 3, H, W) linear-light RGB, nominally [0, 1]. Returns encoded sRGB, same shape; values
    outside [0, 1] are not clipped (values below the knee stay on the linear segment).
    """
    _check_image(image)
    power = 1.055 * image.clamp(min=_LINEAR_KNEE) ** (1.0 / 2.4) - 0.055
    return torch.where(image > _LINEAR_KNEE, power, image * 12.92)


def rgb_to_xyz(image: torch.Tensor) -> torch.Tensor:
    """sRGB -> CIE XYZ (D65), like ``skimage.color.rgb2xyz``.

    image: (*, 3, H, W) sRGB in [0, 1]. Returns XYZ, same shape, X in [0, 0.9505], Y in [0, 1],
    Z in [0, 1.089].
    """
    return _apply_matrix(_matrix(XYZ_FROM_RGB, image), srgb_to_linear(image))


def xyz_to_rgb(xyz: torch.Tensor, clip: bool = True) -> torch.Tensor:
    """CIE XYZ (D65) -> sRGB, like ``skimage.color.xyz2rgb``.

    xyz: (*, 3, H, W) XYZ with Y in [0, 1]. clip: clamp the result to [0, 1] as skimage does (the gradient
    is then zero outside the gamut); False keeps out-of-gamut values for losses that want them.
    Returns sRGB, same shape.
    """
    _check_image(xyz, "xyz")
    rgb_from_xyz = _matrix(np.linalg.inv(np.asarray(XYZ_FROM_RGB, dtype=np.float64)), xyz)
    rgb = linear_to_srgb(_apply_matrix(rgb_from_xyz, xyz))
    return rgb.clamp(0.0, 1.0) if clip else rgb


def xyz_to_lab(xyz: torch.Tensor) -> torch.Tensor:
    """CIE XYZ (D65) -> CIE Lab, like ``skimage.color.xyz2lab``.

    xyz: (*, 3, H, W) with Y in [0, 1]. Returns Lab, same shape: L in [0, 100], a and b roughly
    in [-128, 127].
    """
    _check_image(xyz, "xyz")
    t = xyz / _white(xyz)
    f = torch.where(t > _LAB_EPSILON, t.clamp(min=_LAB_EPSILON) ** (1.0 / 3.0), _LAB_KAPPA * t + _LAB_OFFSET)
    fx, fy, fz = f.unbind(dim=-3)
    lightness = 116.0 * fy - 16.0
    a = 500.0 * (fx - fy)
    b = 200.0 * (fy - fz)
    return torch.stack([lightness, a, b], dim=-3)


def lab_to_xyz(lab: torch.Tensor) -> torch.Tensor:
    """CIE Lab -> CIE XYZ (D65), like ``skimage.color.lab2xyz`` (negative z before the cube is set to 0).

    lab: (*, 3, H, W), L in [0, 100], a and b roughly in [-128, 127]. Returns XYZ, same shape.
    """
    _check_image(lab, "lab")
    lightness, a, b = lab.unbind(dim=-3)
    fy = (lightness + 16.0) / 116.0
    fx = a / 500.0 + fy
    fz = (fy - b / 200.0).clamp(min=0.0)
    f = torch.stack([fx, fy, fz], dim=-3)
    t = torch.where(f > _LAB_DELTA, f.clamp(min=_LAB_DELTA) ** 3, (f - _LAB_OFFSET) / _LAB_KAPPA)
    return t * _white(lab)


def rgb_to_lab(image: torch.Tensor) -> torch.Tensor:
    """sRGB -> CIE Lab (D65, 2 degree), equal to ``skimage.color.rgb2lab`` to 1e-4.

    image: (*, 3, H, W) sRGB in [0, 1]. Returns Lab, same shape: L in [0, 100], a, b roughly [-128, 127].
    """
    return xyz_to_lab(rgb_to_xyz(image))


def rgb_to_lab_last(image: torch.Tensor) -> torch.Tensor:
    """:func:`rgb_to_lab` for channels last, (..., 3) -> (..., 3), as matrix products on the last axis.

    Why a second form: the pointwise generator's exported graph holds pixels channels last, and the
    channel-first form's transposes, and the slices and concatenation of L, a, b, were copies in ONNX
    Runtime. The same maths (the white point folded into the XYZ matrix, L, a, b as one 3 x 3 product):
    equal to :func:`rgb_to_lab` to ~1e-5 of a Lab unit (a test)."""
    linear = _decode_curve(image)
    white = np.asarray(D65_WHITE, dtype=np.float64)
    scaled = _matrix(np.asarray(XYZ_FROM_RGB, dtype=np.float64) / white[:, None], image)
    t = linear @ scaled.T
    f = torch.where(t > _LAB_EPSILON, t.clamp(min=_LAB_EPSILON) ** (1.0 / 3.0), _LAB_KAPPA * t + _LAB_OFFSET)
    # L = 116 fy - 16, a = 500 (fx - fy), b = 200 (fy - fz)
    lab_from_f = _matrix(((0.0, 116.0, 0.0), (500.0, -500.0, 0.0), (0.0, 200.0, -200.0)), image)
    return f @ lab_from_f.T - _matrix((16.0, 0.0, 0.0), image)


def lab_to_rgb(lab: torch.Tensor, clip: bool = True) -> torch.Tensor:
    """CIE Lab (D65, 2 degree) -> sRGB, like ``skimage.color.lab2rgb``.

    lab: (*, 3, H, W), L in [0, 100]. clip: clamp to [0, 1] as skimage does. Returns sRGB, same shape.
    """
    return xyz_to_rgb(lab_to_xyz(lab), clip=clip)


def linear_to_oklab(image: torch.Tensor) -> torch.Tensor:
    """Linear-light sRGB -> Oklab (Ottosson 2020).

    image: (*, 3, H, W) linear RGB; negative values are treated as 0 (the cube root needs LMS >= 0).
    Returns Oklab, same shape: L in [0, 1] for RGB in [0, 1] (white is (1, 0, 0)), a and b roughly in
    [-0.4, 0.4].
    """
    _check_image(image)
    lms = _apply_matrix(_matrix(_OKLAB_M1, image), image.clamp_min(0.0))
    return _apply_matrix(_matrix(_OKLAB_M2, image), lms.pow(1.0 / 3.0))


def oklab_to_linear(lab: torch.Tensor) -> torch.Tensor:
    """Oklab -> linear-light sRGB; the inverse of :func:`linear_to_oklab` (for RGB >= 0).

    lab: (*, 3, H, W) Oklab. Returns linear RGB, same shape, not clipped (colours outside the sRGB gamut
    give values outside [0, 1]).
    """
    _check_image(lab, "lab")
    lms = _apply_matrix(_matrix(_OKLAB_M2_INV, lab), lab) ** 3
    return _apply_matrix(_matrix(_OKLAB_M1_INV, lab), lms)


def luminance(image: torch.Tensor) -> torch.Tensor:
    """Relative luminance Y (linear light, Rec. 709 / sRGB primaries, D65): the Y of :func:`rgb_to_xyz`.

    image: (*, 3, H, W) sRGB in [0, 1]. Returns (*, 1, H, W) in [0, 1]. Note this is linear light, not
    the gamma-encoded luma; :func:`greyscale` gives a displayable grey image.
    """
    weights = _matrix(XYZ_FROM_RGB, image)[1]
    return torch.einsum("j,...jhw->...hw", weights, srgb_to_linear(image)).unsqueeze(-3)


def greyscale(image: torch.Tensor) -> torch.Tensor:
    """Grey version of an image that keeps its CIE L* (so a* and b* become ~0, |a*|, |b*| < 0.01): R = G = B.

    Why: the paper's greyscale-source setting needs sources whose lightness equals the colour photo's.
    image: (*, 3, H, W) sRGB in [0, 1]. Returns (*, 3, H, W) sRGB in [0, 1] with equal channels.
    """
    grey = linear_to_srgb(luminance(image).expand(*image.shape[:-3], 3, *image.shape[-2:]))
    return grey.clamp(0.0, 1.0)


def is_greyscale(image_np: np.ndarray, tolerance: float = 2.0 / 255.0) -> bool:
    """True when a NumPy image carries no colour: every pixel has |R - G| and |G - B| <= ``tolerance``.

    Why: greyscale sources (or colour files holding a grey photo) take the greyscale path; JPEG chroma
    noise in grey photos saved as RGB is usually within 1-2 levels, hence the default of 2/255.
    image_np: (H, W), (H, W, 1) or (H, W, 3|4) (alpha ignored); float in [0, 1] or uint8 / uint16
    (scaled to [0, 1]). tolerance: in [0, 1] units.
    """
    array = np.asarray(image_np)
    if array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 1):
        return True
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ValueError(
            f"image must have shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {array.shape}"
        )
    if np.issubdtype(array.dtype, np.integer):
        scale = float(np.iinfo(array.dtype).max)
    else:
        scale = 1.0
    rgb = array[..., :3].astype(np.float64) / scale
    if rgb.size == 0:
        return True
    spread = max(np.abs(rgb[..., 0] - rgb[..., 1]).max(), np.abs(rgb[..., 1] - rgb[..., 2]).max())
    return bool(spread <= tolerance)
