"""Image-quality metrics of the paper's section 4.2.2 (MAE, LPIPS, PSNR, Delta E) and a few more.

Every metric takes two NumPy images ``(H, W, 3)`` float in **[0, 1]** sRGB and returns a Python float:
``metric(output, other)``. ``other`` is the ground-truth target for most metrics, or the style reference
for :func:`his` (which compares colour distributions, so the two may differ in size). Integer arrays and
values outside [0, 1] are rejected, because a 0-255 image silently scores nonsense.

:data:`METRICS` maps a name to a :class:`Metric` (function, which image it needs, direction), so a CLI can
list the names and reject unknown ones with :func:`get_metric`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal

import numpy as np
from skimage.color import rgb2lab
from skimage.metrics import structural_similarity

from recolorize.errors import UserError

if TYPE_CHECKING:
    from recolorize.lpips import LPIPS

__all__ = [
    "Metric",
    "METRICS",
    "get_metric",
    "compute_metrics",
    "mae",
    "psnr",
    "delta_e76",
    "delta_e2000",
    "ciede2000",
    "ssim",
    "his",
    "lpips",
]

logger = logging.getLogger(__name__)

MetricFn = Callable[[np.ndarray, np.ndarray], float]
Needs = Literal["target", "reference"]

_RANGE_SLACK = 1e-6  # float32 round-off allowed outside [0, 1]


def _as_image(image: np.ndarray, name: str) -> np.ndarray:
    """Validate an (H, W, 3) float image in [0, 1] and return it as float64."""
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"{name} must have shape (H, W, 3), got {array.shape}")
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"{name} must be a float image in [0, 1], got dtype {array.dtype} (divide by 255)")
    array = array.astype(np.float64, copy=False)
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    low, high = float(array.min(initial=0.0)), float(array.max(initial=0.0))
    if low < -_RANGE_SLACK or high > 1.0 + _RANGE_SLACK:
        raise ValueError(f"{name} must be in [0, 1], got values in [{low:.4g}, {high:.4g}]")
    return np.clip(array, 0.0, 1.0)


def _pair(output: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate an output / target pair that must be pixel-aligned (same shape)."""
    out, tgt = _as_image(output, "output"), _as_image(target, "target")
    if out.shape != tgt.shape:
        raise ValueError(f"output {out.shape} and target {tgt.shape} must have the same shape")
    return out, tgt


def mae(output: np.ndarray, target: np.ndarray) -> float:
    """Mean absolute error on the 0-255 scale (the paper's Table 1-3 unit), over pixels and channels.

    output, target: (H, W, 3) float in [0, 1]. Returns a value in [0, 255]; 0 for identical images.
    """
    out, tgt = _pair(output, target)
    return float(np.mean(np.abs(out - tgt)) * 255.0)


def psnr(output: np.ndarray, target: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB with peak 1: ``10 log10(1 / MSE)``, MSE over pixels and channels.

    output, target: (H, W, 3) float in [0, 1]. Returns ``inf`` for identical images.
    """
    out, tgt = _pair(output, target)
    mse = float(np.mean((out - tgt) ** 2))
    if mse == 0.0:
        return float("inf")
    return float(10.0 * np.log10(1.0 / mse))


def ciede2000(
    lab1: np.ndarray, lab2: np.ndarray, k_l: float = 1.0, k_c: float = 1.0, k_h: float = 1.0
) -> np.ndarray:
    """CIEDE2000 colour difference per element, following Sharma, Wu & Dalal (2005), eqs. 1-22.

    lab1, lab2: (..., 3) CIE Lab (L in [0, 100]); broadcastable. k_l, k_c, k_h: parametric weights
    (1 = reference conditions). Returns (...) float64 distances, >= 0.
    """
    lab1 = np.asarray(lab1, dtype=np.float64)
    lab2 = np.asarray(lab2, dtype=np.float64)
    l1, a1, b1 = np.moveaxis(lab1, -1, 0)
    l2, a2, b2 = np.moveaxis(lab2, -1, 0)

    # Step 1: a' stretched by G, C', h' in degrees [0, 360).
    c_bar7 = ((np.hypot(a1, b1) + np.hypot(a2, b2)) / 2.0) ** 7
    g = 0.5 * (1.0 - np.sqrt(c_bar7 / (c_bar7 + 25.0**7)))
    a1p, a2p = (1.0 + g) * a1, (1.0 + g) * a2
    c1p, c2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p = np.degrees(np.arctan2(b1, a1p)) % 360.0
    h2p = np.degrees(np.arctan2(b2, a2p)) % 360.0

    # Step 2: differences; the hue difference is 0 when either chroma is 0.
    chroma_product = c1p * c2p
    zero_chroma = chroma_product == 0.0
    dl = l2 - l1
    dc = c2p - c1p
    dh = h2p - h1p
    dh = np.where(dh > 180.0, dh - 360.0, np.where(dh < -180.0, dh + 360.0, dh))
    dh = np.where(zero_chroma, 0.0, dh)
    dh_big = 2.0 * np.sqrt(chroma_product) * np.sin(np.radians(dh) / 2.0)

    # Step 3: means (the hue mean goes the short way round the circle) and the weighting functions.
    l_bar = (l1 + l2) / 2.0
    c_bar = (c1p + c2p) / 2.0
    h_sum = h1p + h2p
    h_bar = np.where(
        np.abs(h1p - h2p) <= 180.0,
        h_sum / 2.0,
        np.where(h_sum < 360.0, (h_sum + 360.0) / 2.0, (h_sum - 360.0) / 2.0),
    )
    h_bar = np.where(zero_chroma, h_sum, h_bar)
    t = (
        1.0
        - 0.17 * np.cos(np.radians(h_bar - 30.0))
        + 0.24 * np.cos(np.radians(2.0 * h_bar))
        + 0.32 * np.cos(np.radians(3.0 * h_bar + 6.0))
        - 0.20 * np.cos(np.radians(4.0 * h_bar - 63.0))
    )
    d_theta = 30.0 * np.exp(-(((h_bar - 275.0) / 25.0) ** 2))
    c_bar7p = c_bar**7
    r_c = 2.0 * np.sqrt(c_bar7p / (c_bar7p + 25.0**7))
    s_l = 1.0 + 0.015 * (l_bar - 50.0) ** 2 / np.sqrt(20.0 + (l_bar - 50.0) ** 2)
    s_c = 1.0 + 0.045 * c_bar
    s_h = 1.0 + 0.015 * c_bar * t
    r_t = -np.sin(np.radians(2.0 * d_theta)) * r_c

    term_l = dl / (k_l * s_l)
    term_c = dc / (k_c * s_c)
    term_h = dh_big / (k_h * s_h)
    return np.sqrt(np.maximum(term_l**2 + term_c**2 + term_h**2 + r_t * term_c * term_h, 0.0))


def delta_e76(output: np.ndarray, target: np.ndarray) -> float:
    """Mean CIE76 Delta E: Euclidean distance in CIE Lab (D65, via ``skimage.color.rgb2lab``) per pixel.

    output, target: (H, W, 3) float in [0, 1]. Returns a mean in [0, ~260]; about 2.3 is a just-noticeable
    difference.
    """
    out, tgt = _pair(output, target)
    return float(np.mean(np.linalg.norm(rgb2lab(out) - rgb2lab(tgt), axis=-1)))


def delta_e2000(output: np.ndarray, target: np.ndarray) -> float:
    """Mean CIEDE2000 Delta E (:func:`ciede2000`, reference conditions) per pixel, via CIE Lab (D65).

    output, target: (H, W, 3) float in [0, 1]. Returns a mean >= 0, about 1 per just-noticeable difference.
    """
    out, tgt = _pair(output, target)
    return float(np.mean(ciede2000(rgb2lab(out), rgb2lab(tgt))))


def ssim(output: np.ndarray, target: np.ndarray) -> float:
    """Mean SSIM over channels, ``skimage.metrics.structural_similarity`` defaults (7x7 uniform window).

    output, target: (H, W, 3) float in [0, 1] (``data_range=1``). Images under 7 px on a side use the
    largest odd window that fits (at least 3 px). Returns a value in [-1, 1]; 1 for identical images.
    """
    out, tgt = _pair(output, target)
    side = min(out.shape[:2])
    if side < 3:
        raise ValueError(f"SSIM needs images of at least 3x3 pixels, got {out.shape[:2]}")
    win_size = min(7, side if side % 2 == 1 else side - 1)
    return float(structural_similarity(out, tgt, channel_axis=2, data_range=1.0, win_size=win_size))


def his(output: np.ndarray, reference: np.ndarray, bins: int = 16) -> float:
    """Histogram intersection similarity of the **joint** RGB histograms of output and reference.

    Why joint: per-channel histograms would call two images with swapped colours (red sky / blue grass vs
    blue sky / red grass) identical. Each image's ``bins**3`` histogram (``bins`` equal-width bins per
    channel over [0, 1]) is normalised to sum 1, and ``sum(min(h_out, h_ref))`` is returned.
    output, reference: (H, W, 3) and (h, w, 3) float in [0, 1]; sizes may differ. bins: per channel, >= 1.
    Returns a value in [0, 1]: 1 for identical colour distributions, 0 when no bin is shared.
    """
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    hist_out = _joint_histogram(_as_image(output, "output"), bins)
    hist_ref = _joint_histogram(_as_image(reference, "reference"), bins)
    return float(np.minimum(hist_out, hist_ref).sum())


def _joint_histogram(image: np.ndarray, bins: int) -> np.ndarray:
    """Normalised (bins**3,) joint RGB histogram of an (H, W, 3) image in [0, 1]; 1.0 falls in the top bin."""
    index = np.minimum((image * bins).astype(np.int64), bins - 1).reshape(-1, 3)
    flat = (index[:, 0] * bins + index[:, 1]) * bins + index[:, 2]
    counts = np.bincount(flat, minlength=bins**3).astype(np.float64)
    return counts / max(counts.sum(), 1.0)


@functools.lru_cache(maxsize=2)
def _lpips_model(net: str) -> LPIPS:
    """One frozen CPU LPIPS instance per net, built on first use (building loads the ImageNet weights)."""
    from recolorize.lpips import LPIPS  # lazy: importing torch networks is slow and rarely needed

    logger.info("building LPIPS(net=%r) for evaluation", net)
    return LPIPS(net=net).eval()


def lpips(output: np.ndarray, target: np.ndarray, net: Literal["alex", "vgg"] = "alex") -> float:
    """LPIPS v0.1 perceptual distance (``recolorize.lpips.LPIPS``, AlexNet by default) on CPU.

    output, target: (H, W, 3) float in [0, 1]; scaled here to [-1, 1] as LPIPS expects. Returns a value
    >= 0 (0 for identical images; about 0.2-0.3 for the paper's results).
    """
    import torch

    out, tgt = _pair(output, target)

    def to_tensor(image: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(image).permute(2, 0, 1).unsqueeze(0).float() * 2.0 - 1.0

    model = _lpips_model(net)
    with torch.no_grad():
        distance = model(to_tensor(out), to_tensor(tgt))
    return float(distance.reshape(-1)[0])


@dataclass(frozen=True)
class Metric:
    """A registered metric.

    fn: ``fn(output, other) -> float`` on (H, W, 3) float images in [0, 1].
    needs: "target" (pixel-aligned ground truth, same shape as output) or "reference" (the style exemplar,
    any size). higher_is_better: direction for reports. unit: how to read the number.
    """

    name: str
    fn: MetricFn
    needs: Needs
    higher_is_better: bool
    unit: str

    @property
    def needs_target(self) -> bool:
        """True when the metric compares against a ground-truth target rather than the reference."""
        return self.needs == "target"

    def __call__(self, output: np.ndarray, other: np.ndarray) -> float:
        return self.fn(output, other)


METRICS: Mapping[str, Metric] = MappingProxyType(
    {
        "mae": Metric("mae", mae, "target", False, "0-255 levels"),
        "psnr": Metric("psnr", psnr, "target", True, "dB, peak 1"),
        "delta_e76": Metric("delta_e76", delta_e76, "target", False, "CIE76 Delta E"),
        "delta_e2000": Metric("delta_e2000", delta_e2000, "target", False, "CIEDE2000 Delta E"),
        "ssim": Metric("ssim", ssim, "target", True, "SSIM in [-1, 1]"),
        "lpips": Metric("lpips", lpips, "target", False, "LPIPS v0.1 AlexNet"),
        "his": Metric("his", his, "reference", True, "joint RGB histogram intersection in [0, 1]"),
    }
)


def get_metric(name: str) -> Metric:
    """Look up a metric by name; an unknown name is a :class:`UserError` listing the known ones."""
    try:
        return METRICS[name]
    except KeyError:
        raise UserError(f"unknown metric {name!r}; choose from {', '.join(METRICS)}") from None


def compute_metrics(
    output: np.ndarray,
    *,
    target: np.ndarray | None = None,
    reference: np.ndarray | None = None,
    names: Iterable[str] | None = None,
) -> dict[str, float]:
    """Run several metrics on one output and return ``{name: value}`` in the order given.

    output: (H, W, 3) float in [0, 1]. target: ground truth of the same shape, or None. reference: the
    style exemplar, any size, or None. names: metric names (default: all of :data:`METRICS`, skipping those
    whose input is None). A name given explicitly whose input is missing raises ValueError.
    """
    explicit = names is not None
    if isinstance(names, str):
        names = [names]
    selected = [get_metric(name) for name in (names if names is not None else METRICS)]
    results: dict[str, float] = {}
    for metric in selected:
        other = target if metric.needs_target else reference
        if other is None:
            if explicit:
                raise ValueError(f"metric {metric.name!r} needs a {metric.needs} image, none given")
            logger.debug("skipping %s: no %s image", metric.name, metric.needs)
            continue
        results[metric.name] = metric(output, other)
    return results
