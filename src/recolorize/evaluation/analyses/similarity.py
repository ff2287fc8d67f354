"""The numbers behind fig4, fig5 and w0: similarity matrices of codes and histograms, eq. 3 heatmaps, the
query cell, and rank / linear correlations. No files, no plots."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from skimage.color import rgb2lab

from recolorize.evaluation.analyses.common import batches, model_device
from recolorize.evaluation.metrics import his
from recolorize.networks.model import RecolorModel

__all__ = [
    "cosine_matrix",
    "histogram_matrix",
    "self_similarity",
    "self_codes",
    "neighbours",
    "upper_triangle",
    "rank_correlation",
    "pearson",
    "colourful_point",
    "grid_cell",
    "upsample_heatmap",
]


def cosine_matrix(codes: torch.Tensor) -> np.ndarray:
    """(N, N) cosine similarities of (N, C) codes."""
    unit = F.normalize(codes.float(), dim=1)
    return (unit @ unit.T).cpu().numpy().astype(np.float64)


def histogram_matrix(images: Sequence[np.ndarray], bins: int = 16) -> np.ndarray:
    """(N, N) joint RGB histogram intersections (:func:`metrics.his`) of (H, W, 3) images in [0, 1]."""
    n = len(images)
    matrix = np.eye(n)
    for i in range(n):
        for j in range(i + 1, n):
            matrix[i, j] = matrix[j, i] = his(images[i], images[j], bins)
    return matrix


def self_similarity(features: torch.Tensor, point: tuple[int, int]) -> np.ndarray:
    """Eq. 3: H(j) = cosine(F(i), F(j)) for a (C, h, w) feature map and query cell i = (row, col)."""
    unit = F.normalize(features.float(), dim=0)
    query = unit[:, point[0], point[1]]
    return torch.einsum("c,chw->hw", query, unit).cpu().numpy().astype(np.float64)


def self_codes(model: RecolorModel, images: torch.Tensor, batch: int) -> torch.Tensor:
    """w0 = E_w(I, I) for every image, (N, C)."""
    device = model_device(model)
    with torch.no_grad():
        return torch.cat([model.self_code(images[s].to(device)).cpu() for s in batches(len(images), batch)])


def neighbours(matrix: np.ndarray, query: int, k: int) -> list[int]:
    """The ``k`` most similar images to ``query`` (itself excluded), most similar first."""
    order = [int(j) for j in np.argsort(-matrix[query], kind="stable") if j != query]
    return order[:k]


def upper_triangle(matrix: np.ndarray) -> np.ndarray:
    """The entries above the diagonal (every pair once)."""
    return matrix[np.triu_indices(len(matrix), k=1)]


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman correlation of two 1d arrays (ranks with ties broken by order); nan when undefined."""
    if len(a) < 2:
        return math.nan
    ra = np.argsort(np.argsort(a, kind="stable"), kind="stable").astype(np.float64)
    rb = np.argsort(np.argsort(b, kind="stable"), kind="stable").astype(np.float64)
    return pearson(ra, rb)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two arrays (flattened); nan when undefined."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if len(a) < 2 or a.std() == 0 or b.std() == 0:
        return math.nan
    return float(np.corrcoef(a, b)[0, 1])


def colourful_point(image: np.ndarray, grid: int) -> tuple[float, float]:
    """Centre (row, col) fractions of the cell of a grid x grid partition with the highest mean Lab chroma."""
    lab = rgb2lab(image)
    chroma = np.hypot(lab[..., 1], lab[..., 2])
    h, w = chroma.shape
    cells = chroma[: h - h % grid, : w - w % grid].reshape(grid, h // grid, grid, w // grid).mean(axis=(1, 3))
    row, col = np.unravel_index(int(np.argmax(cells)), cells.shape)
    return (row + 0.5) / grid, (col + 0.5) / grid


def grid_cell(point: tuple[float, float], shape: tuple[int, int]) -> tuple[int, int]:
    """The (row, col) cell of a ``shape`` grid that holds ``point`` (fractions of the image)."""
    return (
        min(shape[0] - 1, max(0, int(point[0] * shape[0]))),
        min(shape[1] - 1, max(0, int(point[1] * shape[1]))),
    )


def upsample_heatmap(heat: np.ndarray, size: int) -> np.ndarray:
    """A heatmap resized (bilinear) to ``size`` x ``size``."""
    tensor = torch.from_numpy(heat).float()[None, None]
    return F.interpolate(tensor, size=(size, size), mode="bilinear", align_corners=False)[0, 0].numpy()
