"""Training losses: L1, LPIPS, the w0 colour-style loss (paper eq. 2) and the colour-histogram alternative.

Images are (B, 3, H, W) in [0, 1]. Every loss returns a scalar (mean over the batch) so stage configs can
weight and sum them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from recolorize.lpips import LPIPS, lpips_distance

__all__ = [
    "l1_loss",
    "lab_l1_loss",
    "lpips_loss",
    "w0_loss",
    "colour_histogram",
    "histogram_loss",
]


def l1_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error, the pixel term of every stage."""
    return (pred - target).abs().mean()


def lab_l1_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error in scaled CIE Lab (L/100, a/100, b/100) of the prediction clipped to [0, 1].

    Why: RGB L1 barely notices a wrong hue in a dark or saturated colour (a red cup that should be blue is a
    small RGB step at low lightness); Lab distances follow what the eye sees, like the Delta-E metrics.
    """
    from recolorize.networks.pointwise import lab_features

    return (lab_features(pred) - lab_features(target)).abs().mean()


def lpips_loss(pred: torch.Tensor, target: torch.Tensor, lpips_module: LPIPS) -> torch.Tensor:
    """Mean LPIPS over the batch; inputs in [0, 1] (converted to LPIPS's [-1, 1] here)."""
    return lpips_distance(pred, target, lpips_module).mean()


def w0_loss(
    self_code: Callable[[torch.Tensor], torch.Tensor], reference: torch.Tensor, prediction: torch.Tensor
) -> torch.Tensor:
    """L_w0 = mean | E_w(I_R, I_R) - E_w(I_P, I_P) |  (paper eq. 2).

    Why: E_w(I, I) summarises an image's colour style, so matching the codes asks the prediction I_P to
    carry the reference I_R's colours without a pixel correspondence. The reference's code is a target:
    it is computed without gradients; gradients reach ``prediction`` through ``self_code``.
    """
    with torch.no_grad():
        target = self_code(reference)
    return (target - self_code(prediction)).abs().mean()


def colour_histogram(image: torch.Tensor, bins: int = 32, sigma: float | None = None) -> torch.Tensor:
    """Differentiable soft histogram per channel: (B, C, H, W) in [0, 1] -> (B, C, bins), each row sums to 1.

    Every pixel value x spreads unit mass over the bin centres c_k = (k + 1/2) / bins with Gaussian weights
    exp(-(x - c_k)^2 / (2 sigma^2)), normalised per pixel (so edge values keep their full mass), then
    averaged over pixels. ``sigma`` defaults to one bin width: smooth enough for useful gradients.
    """
    if bins < 2:
        raise ValueError(f"bins must be at least 2, got {bins}")
    sigma = 1.0 / bins if sigma is None else float(sigma)
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    centres = (torch.arange(bins, device=image.device, dtype=image.dtype) + 0.5) / bins
    x = image.flatten(2).unsqueeze(-1)  # (B, C, N, 1)
    logits = -((x - centres) ** 2) / (2.0 * sigma**2)  # (B, C, N, bins)
    weights = torch.softmax(logits, dim=-1)  # per-pixel normalised Gaussian kernels
    return weights.mean(dim=2)


def histogram_loss(
    pred: torch.Tensor, reference: torch.Tensor, bins: int = 32, sigma: float | None = None
) -> torch.Tensor:
    """L_histogram: L1 between the soft colour histograms of prediction and reference (Table 2 ablation).

    Summed over bins (so it lies in [0, 2] per channel), averaged over batch and channels. The two images
    may differ in size: histograms are normalised. Like any L1 between histograms it only pulls where the two
    overlap (within a few sigma): fully disjoint colour ranges give (almost) no gradient.
    """
    hp = colour_histogram(pred, bins, sigma)
    hr = colour_histogram(reference, bins, sigma)
    return (hp - hr).abs().sum(dim=-1).mean()
