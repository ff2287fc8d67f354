"""Where the source and the reference show the same thing: mutual nearest neighbours between frozen
EfficientNet-Lite0 descriptors of the two photos at ``PRIOR_SIZE`` px, and the mean colour of each matched
cell.

Why a fine grid: at 384 px the 1/8 features give 48 x 48 = 2,304 cells a photo, each 8 x 8 pixels, small
enough that a cup and the table under it fall in different cells, so the colours paired are each one
thing's colour (at 128 px a 16 x 16 grid mixed them). Why normalise the photo per channel before the
network (``network_input``): the descriptors then see structure rather than the grade, so a strong colour
change does not break matching; the colours matched come from the un-normalised photo.

NumPy only: the network's features are computed by the caller (torch today) and handed in as arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "PRIOR_SIZE",
    "CELL",
    "Matches",
    "network_input",
    "descriptors",
    "cell_colours",
    "mutual_matches",
    "match_cells",
]

#: Side (px) of the square copies of both photos that are matched.
PRIOR_SIZE = 384
#: Pixels per cell side: the 1/8 features' stride.
CELL = 8


@dataclass(frozen=True)
class Matches:
    """Pairs of cells that show the same thing: the source cell's colour (N, 3), the matched reference
    cell's colour (N, 3), and the match's weight (N,) (cosine similarity of mutual matches, else 0)."""

    source: np.ndarray
    reference: np.ndarray
    weight: np.ndarray

    @property
    def shared(self) -> float:
        """Mean match weight over all source cells: how much content the two photos share."""
        return float(self.weight.mean()) if len(self.weight) else 0.0


def network_input(image: np.ndarray, spread: float = 0.2) -> np.ndarray:
    """The photo (H, W, 3) in [0, 1] with each channel standardised over the photo, fed as
    0.5 + spread * z, clipped to [0, 1]: what the frozen network sees (structure, not the grade)."""
    pixels = np.asarray(image, dtype=np.float32)
    mean = pixels.reshape(-1, 3).mean(0)
    std = pixels.reshape(-1, 3).std(0)
    z = (pixels - mean) / np.maximum(std, 1e-3)
    return np.clip(0.5 + spread * z, 0.0, 1.0).astype(np.float32)


def _unit(features: np.ndarray, axis: int) -> np.ndarray:
    norm = np.sqrt((features * features).sum(axis=axis, keepdims=True))
    return features / np.maximum(norm, 1e-8)


def _upsample2(features: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of (C, h, w) to (C, *size), pixel centres aligned (align_corners=False)."""
    channels, height, width = features.shape

    def axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        position = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0.0, n_in - 1)
        low = np.floor(position).astype(np.int64)
        high = np.minimum(low + 1, n_in - 1)
        return low, high, (position - low).astype(np.float32)

    y0, y1, fy = axis(height, size[0])
    x0, x1, fx = axis(width, size[1])
    rows = features[:, y0] * (1.0 - fy)[None, :, None] + features[:, y1] * fy[None, :, None]
    return rows[:, :, x0] * (1.0 - fx)[None, None, :] + rows[:, :, x1] * fx[None, None, :]


def descriptors(fine: np.ndarray, coarse: np.ndarray) -> np.ndarray:
    """One unit descriptor per 1/8 cell, (h * w, C8 + C16): the 1/8 features (C8, h, w) and the 1/16 ones
    (C16, h/2, w/2) bilinear-upsampled to them, each L2-normalised, concatenated and normalised again (the
    1/16 features say what a thing is, the 1/8 ones where exactly it is)."""
    fine = np.asarray(fine, dtype=np.float32)
    coarse = np.asarray(coarse, dtype=np.float32)
    up = _upsample2(coarse, fine.shape[1:])
    joined = np.concatenate([_unit(fine, 0), _unit(up, 0)], axis=0)
    return _unit(joined.reshape(joined.shape[0], -1).T, 1)


def cell_colours(image: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Mean colour (h * w, 3) of each cell of a ``grid`` over the image (H, W, 3), H and W multiples of it."""
    height, width, _ = image.shape
    rows, cols = grid
    cells = np.asarray(image, dtype=np.float64).reshape(rows, height // rows, cols, width // cols, 3)
    return cells.mean(axis=(1, 3)).reshape(-1, 3)


def mutual_matches(similarity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each source cell's best reference cell (N_S,) and its weight (N_S,): the similarity (clamped at 0)
    where the two cells are each other's best match (cycle-consistent), else 0."""
    best = similarity.argmax(axis=1)
    back = _column_argmax(similarity)
    mutual = back[best] == np.arange(similarity.shape[0])
    weight = np.maximum(similarity[np.arange(similarity.shape[0]), best], 0.0) * mutual
    return best, weight.astype(np.float64)


def _column_argmax(matrix: np.ndarray, block: int = 512) -> np.ndarray:
    """``matrix.argmax(axis=0)`` (the first maximum of each column) a block of rows at a time: NumPy's
    argmax along the first axis walks the columns with a stride, ~2x slower on a 2304 x 2304 similarity
    than blocks of rows that stay in cache, each block's winners kept where strictly better (so the first
    maximum still wins)."""
    rows, cols = matrix.shape
    if rows <= block:
        return matrix.argmax(axis=0)
    columns = np.arange(cols)
    best_index = np.zeros(cols, dtype=np.int64)
    best_value = np.full(cols, -np.inf, dtype=matrix.dtype)
    for start in range(0, rows, block):
        part = matrix[start : start + block]
        index = part.argmax(axis=0)
        value = part[index, columns]
        better = value > best_value
        best_value[better] = value[better]
        best_index[better] = index[better] + start
    return best_index


def match_cells(
    source: np.ndarray,
    reference: np.ndarray,
    source_descriptors: np.ndarray,
    reference_descriptors: np.ndarray,
) -> Matches:
    """Pair the source's cells with the reference's along mutual matches of their descriptors.

    source, reference: the photos (H, W, 3) at the size the descriptors were computed on; descriptors
    (N_S, C) and (N_R, C) from :func:`descriptors`. Several references side by side are one wider photo.
    """
    src_grid = _grid(source, len(source_descriptors))
    ref_grid = _grid(reference, len(reference_descriptors))
    similarity = source_descriptors @ reference_descriptors.T
    best, weight = mutual_matches(similarity)
    return Matches(
        source=cell_colours(source, src_grid),
        reference=cell_colours(reference, ref_grid)[best],
        weight=weight,
    )


def _grid(image: np.ndarray, cells: int) -> tuple[int, int]:
    height, width = image.shape[:2]
    rows = height // CELL
    if rows * (width // CELL) != cells:
        raise ValueError(f"{cells} descriptors do not tile a {width}x{height} photo in {CELL}-px cells")
    return rows, width // CELL
