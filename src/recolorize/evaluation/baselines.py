"""Classical global colour-transfer baselines to compare the model against (``recolorize eval --methods``).

Every baseline is a pure function ``baseline(source, reference) -> output``: ``source`` (H, W, 3) and
``reference`` (h, w, 3) are NumPy float images in **[0, 1]** sRGB (sizes may differ); ``output`` is
(H, W, 3) float32 in [0, 1] (clipped), the source recoloured with the reference's colour statistics.
Computation is in float64. :data:`BASELINES` maps names to functions so a CLI can list and check them.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping
from types import MappingProxyType

import numpy as np

from recolorize.errors import UserError
from recolorize.prior.colour_map import mkl_map

__all__ = [
    "BaselineFn",
    "BASELINES",
    "get_baseline",
    "identity",
    "reinhard",
    "histogram",
    "mkl",
    "hm_mkl_hm",
    "match_cdf",
    "mkl_map",
]

logger = logging.getLogger(__name__)

BaselineFn = Callable[[np.ndarray, np.ndarray], np.ndarray]

#: Reinhard: a source channel with less spread than this (CIE Lab units) is treated as flat, so that a grey
#: source's round-off chroma (|a|, |b| < 0.01) is not blown up into noise by sigma_ref / sigma_src.
REINHARD_MIN_STD = 0.5


def _as_image(image: np.ndarray, name: str) -> np.ndarray:
    """Validate an (H, W, 3) float image in [0, 1] (float32 round-off allowed) and return float64."""
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"{name} must have shape (H, W, 3), got {array.shape}")
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"{name} must be a float image in [0, 1], got dtype {array.dtype} (divide by 255)")
    if array.size == 0:
        raise ValueError(f"{name} is empty: {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    if array.min() < -1e-6 or array.max() > 1.0 + 1e-6:
        raise ValueError(f"{name} must be in [0, 1], got values in [{array.min():.4g}, {array.max():.4g}]")
    return np.clip(array.astype(np.float64), 0.0, 1.0)


def _finish(image: np.ndarray) -> np.ndarray:
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def identity(source: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """No transfer: returns the source (a floor every method should beat on reference-based metrics).

    source: (H, W, 3) float in [0, 1]. reference: (h, w, 3), only validated. Returns (H, W, 3) float32.
    """
    _as_image(reference, "reference")
    return _finish(_as_image(source, "source"))


def _lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    from skimage.color import lab2rgb  # here: listing the baselines (``recolorize --help``) needs no skimage

    with warnings.catch_warnings():
        # Out-of-gamut Lab (negative Z) is clipped by skimage, which is what a transfer wants; no warning.
        warnings.filterwarnings("ignore", message=".*negative Z values.*")
        return lab2rgb(lab)


def reinhard(source: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Reinhard et al. (2001) colour transfer: match each channel's mean and standard deviation.

    Done in CIE Lab (D65) instead of the paper's l-alpha-beta space: both are decorrelated opponent spaces
    and Lab is the one the metrics use. Channels of the source with a std under :data:`REINHARD_MIN_STD`
    are shifted to the reference mean but not stretched. Out-of-gamut results are clipped in sRGB, so the
    output's Lab statistics match the reference's only approximately.
    source: (H, W, 3) float in [0, 1]. reference: (h, w, 3) float in [0, 1]. Returns (H, W, 3) float32.
    """
    from skimage.color import rgb2lab

    src_lab = rgb2lab(_as_image(source, "source"))
    ref_lab = rgb2lab(_as_image(reference, "reference"))
    src_mean, src_std = src_lab.mean(axis=(0, 1)), src_lab.std(axis=(0, 1))
    ref_mean, ref_std = ref_lab.mean(axis=(0, 1)), ref_lab.std(axis=(0, 1))
    scale = ref_std / np.maximum(src_std, REINHARD_MIN_STD)
    out_lab = (src_lab - src_mean) * scale + ref_mean
    return _finish(_lab_to_rgb(out_lab))


def match_cdf(source: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Exact histogram specification of one channel, as ``skimage.exposure.match_histograms`` does it.

    Each distinct source value goes to the reference value at the same cumulative frequency (linear
    interpolation between the reference's distinct values).
    source: any-shape float array; reference: any-shape float array. Returns source's shape, float64,
    values inside [reference.min(), reference.max()].
    """
    src_values, src_index, src_counts = np.unique(source.ravel(), return_inverse=True, return_counts=True)
    ref_values, ref_counts = np.unique(reference.ravel(), return_counts=True)
    src_quantiles = np.cumsum(src_counts) / source.size
    ref_quantiles = np.cumsum(ref_counts) / reference.size
    mapped = np.interp(src_quantiles, ref_quantiles, ref_values)
    return mapped[src_index].reshape(source.shape)


def histogram(source: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per-channel RGB histogram matching (exact CDF matching, independent channels).

    source: (H, W, 3) float in [0, 1]. reference: (h, w, 3) float in [0, 1]. Returns (H, W, 3) float32
    whose R, G and B histograms each follow the reference's (the joint colour distribution does not).
    """
    src = _as_image(source, "source")
    ref = _as_image(reference, "reference")
    out = np.stack([match_cdf(src[..., c], ref[..., c]) for c in range(3)], axis=-1)
    return _finish(out)


def mkl(source: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Monge-Kantorovich linear colour transfer (Pitie & Kokaram 2007) of the RGB mean and covariance.

    source: (H, W, 3) float in [0, 1]. reference: (h, w, 3) float in [0, 1]. Returns (H, W, 3) float32;
    before the final clip to [0, 1] its RGB mean and covariance equal the reference's (:func:`mkl_map`).
    """
    src = _as_image(source, "source")
    matrix, offset = mkl_map(src.reshape(-1, 3), _as_image(reference, "reference").reshape(-1, 3))
    out = src.reshape(-1, 3) @ matrix + offset
    clipped = np.mean((out < 0.0) | (out > 1.0))
    if clipped > 0.05:
        logger.debug("mkl: %.1f%% of values clipped to [0, 1]", 100.0 * clipped)
    return _finish(out.reshape(src.shape))


def hm_mkl_hm(source: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Histogram matching, then MKL, then histogram matching again (``color-matcher`` 0.6.0, RGB).

    Why: it is the compound practitioners reach for and the strongest classical peer here (MKL fixes the
    joint colour covariance that per-channel matching ignores; the last matching restores the reference's
    exact channel histograms), so the model has to beat it, not only :func:`mkl` or :func:`histogram`.
    source: (H, W, 3) float in [0, 1]. reference: (h, w, 3) float in [0, 1]. Returns (H, W, 3) float32;
    the final histogram matching keeps every value inside the reference's range.
    """
    try:  # lazy: keeps the CLI start-up free of the package's imports; optional: it is GPL-3.0
        from color_matcher import ColorMatcher
    except ImportError as error:
        raise UserError(
            "the hm-mkl-hm baseline needs the optional package color-matcher (GPL-3.0): "
            "pip install 'recolorize[compare]'"
        ) from error

    src = _as_image(source, "source")
    ref = _as_image(reference, "reference")
    out = ColorMatcher().transfer(src=src, ref=ref, method="hm-mkl-hm")
    # The package takes matrix square roots with np.linalg.eig, which may return a complex dtype with
    # round-off imaginary parts for the symmetric covariances; the colours are the real parts.
    return _finish(np.real(out))


BASELINES: Mapping[str, BaselineFn] = MappingProxyType(
    {
        "identity": identity,
        "reinhard": reinhard,
        "histogram": histogram,
        "mkl": mkl,
        "hm-mkl-hm": hm_mkl_hm,
    }
)


def get_baseline(name: str) -> BaselineFn:
    """Look up a baseline by name; an unknown name is a :class:`UserError` listing the known ones."""
    try:
        return BASELINES[name]
    except KeyError:
        raise UserError(f"unknown baseline {name!r}; choose from {', '.join(BASELINES)}") from None
