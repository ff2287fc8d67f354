"""Local benchmark pairs (``make-bench --kind local``): the same source colour changes differently in
different places, so that no global colour map (a function of the source colour alone) can reproduce the
target, and a method that gets below the best global map fitted to the target (``oracle-cubic`` /
``oracle-lut`` of :mod:`recolorize.evaluation.oracles`) must be spatially adaptive.

One pair from one photo (3, H, W) and its region labels (H, W) (dataset masks, else superpixels), every
random number from the row's generator:

1. **Two places of one colour.** A pair's *overlap* is the number of pixels of one colour in both places:
   the source's CIELAB colours put in cubes of side ``colour_cube``, the sum over cubes of the smaller of
   the two places' counts. Among the regions covering at least ``min_region_fraction`` of the photo with a
   mean CIELAB lightness of at least ``min_lightness`` (a change of a near-black place is hard to see), the
   pairs whose mean colours lie within ``similar_delta_e`` (CIE76) of each other and whose overlap is at
   least ``min_overlap_fraction`` of the photo are the candidates. One is drawn with a chance in proportion
   to its overlap, and which of the two is "first" by a coin.
   **Fallback** (no candidate): one region is cut in two halves of about equal pixel count by a line
   across its longer bounding-box side, at the median row or column of its pixels: of the regions above
   (large and light enough), the one whose halves overlap most; if no such split reaches
   ``min_overlap_fraction``, of every region covering ``min_region_fraction`` whatever its lightness (else
   the largest region). The halves meet in a soft ramp about ``split_ramp_fraction`` of the diagonal wide,
   and the region's own edges are feathered as below. bench.json records the rule of each row (``"rule"``:
   ``similar`` or ``split``) and its overlap as a share of the photo.
2. **Different changes.** Half the time only the first place changes; otherwise both change in opposite
   directions of one kind (hue rotated one way and the other; saturation up and down; exposure up and
   down; a tint and its opposite). The kind is drawn per pair: hue, saturation or exposure for a colourful
   place (mean CIELAB chroma at least ``colourful_chroma``), tint or exposure for a greyish one. The ranges
   never include the identity, and a draw is kept only if every changed place moves by a mean CIE76
   Delta E of at least ``min_change_delta_e`` (measured on its pixels); after ``attempts`` draws without
   one, the draw with the largest smallest change is kept (bench.json: ``change_delta_e``).
3. **Edge-aware feathered masks.** A region mask is drawn by hand a pixel or two off the object's edge, so a
   plain blur (the augmentation's ``region_weights``) leaves a rim of the old colour around it. Each place's
   hard mask is first moved onto the photo's own edges (``edge_passes`` rounds of a colour guided filter
   (He et al.) of the photo, each pixel then given to the place of most weight), then goes through that
   filter once more for a soft edge: within ``edge_fraction`` of the diagonal of a border (at least 2 px;
   ``superpixel_edge_fraction`` for superpixels, whose borders are blocky) the weight follows the photo's
   edges (``edge_eps``: how strong an edge must be), and it is exactly 0 or 1 everywhere else. The
   changes are :class:`~recolorize.data.augment.Grade` matrices blended per pixel by these weights
   (``augment.render``), so an edge is a blend of transforms, not of images.
4. **A mild global grade on top** with probability ``global_probability``: the augmentation's global look
   with every range scaled by ``global_strength`` (``AugmentationRanges.scaled``), composed in the same pass.
5. **The reference** is the target re-framed by ``geometry.alter_geometry``, as for the global bench.

Everything depends only on the generator's state: a pair is a pure function of (seed, row).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from recolorize.colour import REC709_LUMA, rgb_to_lab
from recolorize.data.augment import AugmentationRanges, Grade, render, sample_global_grade
from recolorize.data.geometry import GeometryRanges, alter_geometry

__all__ = ["LocalRanges", "LocalPair", "local_pair", "choose_places", "guided_filter", "snap_to_edges"]

_IDENTITY = Grade(linear=np.eye(3), curve=None, chroma=np.eye(3))


@dataclass(frozen=True)
class LocalRanges:
    """Settings of the local benchmark (see the module docstring for how each is used).

    Magnitudes are (low, high) ranges of the absolute change, its sign drawn separately: hue_degrees (Oklab
    hue rotation), exposure_ev (stops, linear light), tint (log gain between opposite colours, at a random
    angle of white balance), saturation_down / saturation_up (Oklab chroma scale).
    """

    similar_delta_e: float = 15.0
    colour_cube: float = 5.0
    min_overlap_fraction: float = 0.005
    min_region_fraction: float = 0.04
    colourful_chroma: float = 12.0
    min_lightness: float = 20.0
    min_change_delta_e: float = 12.0
    attempts: int = 12
    both_probability: float = 0.5
    hue_degrees: tuple[float, float] = (45.0, 120.0)
    saturation_down: tuple[float, float] = (0.25, 0.5)
    saturation_up: tuple[float, float] = (1.7, 2.3)
    exposure_ev: tuple[float, float] = (0.5, 1.0)
    tint: tuple[float, float] = (0.3, 0.55)
    global_probability: float = 0.5
    global_strength: float = 0.5
    edge_fraction: float = 0.007
    superpixel_edge_fraction: float = 0.02
    edge_eps: float = 1e-4
    edge_passes: int = 2
    split_ramp_fraction: float = 0.05
    superpixel_segments: int = 12


@dataclass
class LocalPair:
    """A local pair: target, reference (3, H, W), the (3, H, W) weights (rest, first place, second place)
    that blended the changes, and what was drawn (``info``, JSON-ready: bench.json's row)."""

    target: torch.Tensor
    reference: torch.Tensor
    weights: torch.Tensor
    info: dict[str, Any]


def _lab_pixels(image: torch.Tensor) -> np.ndarray:
    """(H * W, 3) float64 CIELAB of a (3, H, W) sRGB image."""
    return rgb_to_lab(image.float()).reshape(3, -1).T.double().numpy()


def _region_stats(
    lab: np.ndarray, labels: np.ndarray, minimum: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(area, mean Lab (K, 3), mean Lab chroma) of every label (at least ``minimum``); ``lab`` (H * W, 3)."""
    flat = labels.ravel()
    k = max(minimum, int(flat.max()) + 1)
    area = np.bincount(flat, minlength=k).astype(np.float64)
    safe = np.maximum(area, 1.0)
    means = np.stack([np.bincount(flat, lab[:, c], minlength=k) / safe for c in range(3)], axis=1)
    chroma = np.bincount(flat, np.hypot(lab[:, 1], lab[:, 2]), minlength=k) / safe
    return area, means, chroma


def _colour_bins(lab: np.ndarray, size: float) -> tuple[np.ndarray, int]:
    """Each pixel's CIELAB cube of side ``size`` (a fixed grid over L 0..100, a and b -128..128) as an
    index, and the number of cubes."""
    low, high = np.array([0.0, -128.0, -128.0]), np.array([100.0, 128.0, 128.0])
    counts = np.floor((high - low) / size).astype(np.int64) + 1
    cube = np.clip(np.floor((lab - low) / size).astype(np.int64), 0, counts - 1)
    return (cube[:, 0] * counts[1] + cube[:, 1]) * counts[2] + cube[:, 2], int(np.prod(counts))


def _overlap(bins: np.ndarray, count: int, first: np.ndarray, second: np.ndarray) -> int:
    """Pixels of one colour in both places: the sum over colour cubes of the smaller of the two counts."""
    return int(
        np.minimum(
            np.bincount(bins[first], minlength=count), np.bincount(bins[second], minlength=count)
        ).sum()
    )


def _halves(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool, float]:
    """A region cut in two across its longer bounding-box side at the median row or column of its pixels:
    (the half before the cut, the half after (H, W) bool, cut across rows?, the cut's coordinate)."""
    rows, cols = np.nonzero(mask)
    tall = bool(rows.max() - rows.min() >= cols.max() - cols.min())
    cut = float(np.median(rows if tall else cols))
    after = np.arange(mask.shape[0])[:, None] > cut if tall else np.arange(mask.shape[1])[None, :] > cut
    return mask & ~after, mask & after, tall, cut


def choose_places(
    image: torch.Tensor,
    labels: np.ndarray,
    rng: np.random.Generator,
    ranges: LocalRanges,
    lab: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
    """The two places of one colour: (places (H, W) int64: 0 rest, 1 first, 2 second; ramp or None; info).

    ``ramp`` (H, W) in [0, 1] is set for the split fallback: the share of the split region that belongs to
    the second place (the first gets the rest). lab: the image's (H * W, 3) CIELAB, if already computed.
    """
    height, width = labels.shape
    lab = _lab_pixels(image) if lab is None else lab
    area, means, _ = _region_stats(lab, labels)
    bins, count = _colour_bins(lab, ranges.colour_cube)
    flat = labels.ravel()
    large = [int(k) for k in np.flatnonzero(area >= ranges.min_region_fraction * labels.size)]
    visible = [k for k in large if means[k, 0] >= ranges.min_lightness]  # a near-black place hides a change
    least = ranges.min_overlap_fraction * labels.size
    candidates = []
    for i, j in itertools.combinations(visible, 2):
        delta_e = float(np.linalg.norm(means[i] - means[j]))
        if delta_e < ranges.similar_delta_e:
            shared = _overlap(bins, count, flat == i, flat == j)
            if shared >= least:
                candidates.append((i, j, delta_e, shared))
    places = np.zeros(labels.shape, dtype=np.int64)
    if candidates:
        shares = np.array([shared for *_, shared in candidates], dtype=np.float64)
        i, j, delta_e, shared = candidates[int(rng.choice(len(candidates), p=shares / shares.sum()))]
        if rng.random() < 0.5:
            i, j = j, i
        places[labels == i] = 1
        places[labels == j] = 2
        info = {
            "rule": "similar",
            "regions": [i, j],
            "delta_e": round(delta_e, 3),
            "overlap": round(shared / labels.size, 4),
        }
        return places, None, info
    splits = {}  # region -> (pixels of one colour in both halves, the halves)
    for region in visible:
        halves = _halves(labels == region)
        splits[region] = (_overlap(bins, count, halves[0].ravel(), halves[1].ravel()), halves)
    if not any(shared >= least for shared, _ in splits.values()):  # then any region, dark or not
        for region in [k for k in large if k not in splits] or [int(area.argmax())]:
            halves = _halves(labels == region)
            splits[region] = (_overlap(bins, count, halves[0].ravel(), halves[1].ravel()), halves)
    best = max(splits.items(), key=lambda item: (item[1][0], area[item[0]]))
    region, (shared, (first, second, tall, cut)) = best
    flip = bool(rng.random() < 0.5)  # which half is the first place (the one that always changes)
    if flip:
        first, second = second, first
    places[first] = 1
    places[second] = 2
    line = np.arange(height if tall else width, dtype=np.float64)
    scale = max(1.0, ranges.split_ramp_fraction * math.hypot(height, width)) / 4.0
    ramp_1d = 1.0 / (1.0 + np.exp(-(line - cut - 0.5) / scale))  # ~0 before the cut, ~1 after
    if flip:
        ramp_1d = 1.0 - ramp_1d
    ramp = np.broadcast_to(ramp_1d[:, None] if tall else ramp_1d[None, :], labels.shape)
    info = {
        "rule": "split",
        "regions": [region],
        "axis": "rows" if tall else "columns",
        "cut": cut,
        "overlap": round(shared / labels.size, 4),
    }
    return places, np.ascontiguousarray(ramp, dtype=np.float32), info


def _box(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean of (C, H, W) over (2 radius + 1)^2 windows (the part inside the image), by running sums."""
    for dim in (1, 2):
        n = x.shape[dim]
        pad = (0, 0, radius + 1, radius) if dim == 1 else (radius + 1, radius)
        sums = torch.nn.functional.pad(x, pad).cumsum(dim)  # zeros around: a window's sum is a difference
        total = sums.narrow(dim, 2 * radius + 1, n) - sums.narrow(dim, 0, n)
        index = torch.arange(n, dtype=x.dtype)
        count = (index + radius + 1).clamp(max=n) - (index - radius).clamp(min=0)
        x = total / count.reshape((1, n, 1) if dim == 1 else (1, 1, n))
    return x


_UPPER = ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))  # the guide's products that a covariance needs


def guided_filter(guide: torch.Tensor, masks: torch.Tensor, radius: int, eps: float) -> torch.Tensor:
    """He et al.'s colour guided filter: ``masks`` (K, H, W) smoothed over ``radius`` with their edges
    moved onto the edges of ``guide`` (3, H, W) in [0, 1] (``eps``: how strong an edge must be). A mask
    constant over a window stays that constant. float32; the guide is centred first (the filter does not
    see a shift of it, and the running sums stay small)."""
    image = guide.float() - guide.float().mean((1, 2), keepdim=True)
    p = masks.float()
    k, (height, width) = p.shape[0], image.shape[1:]
    products = torch.stack([image[i] * image[j] for i, j in _UPPER])
    cross = (image[None] * p[:, None]).reshape(3 * k, height, width)
    stats = _box(torch.cat([image, products, p, cross]), radius)
    mean_i, mean_p = stats[:3], stats[9 : 9 + k]
    upper = stats[3:9] - torch.stack([mean_i[i] * mean_i[j] for i, j in _UPPER])
    cov = upper[[0, 1, 2, 1, 3, 4, 2, 4, 5]].reshape(3, 3, height, width)
    cov = cov + eps * torch.eye(3)[:, :, None, None]
    cross = stats[9 + k :].reshape(k, 3, height, width) - mean_i[None] * mean_p[:, None]
    a = torch.linalg.solve(cov.permute(2, 3, 0, 1), cross.permute(2, 3, 1, 0)).permute(3, 2, 0, 1)
    b = mean_p - (a * mean_i[None]).sum(1)
    means = _box(torch.cat([a.reshape(3 * k, height, width), b]), radius)
    return (means[: 3 * k].reshape(k, 3, height, width) * image[None]).sum(1) + means[3 * k :]


def _weights(
    image: torch.Tensor, places: np.ndarray, ramp: np.ndarray | None, radius: int, ranges: LocalRanges
) -> torch.Tensor:
    """(3, H, W) weights of rest / first / second place, summing to 1 per pixel: the hard masks moved onto
    the photo's edges (:func:`snap_to_edges`), the split region times the ramp and its complement, through
    :func:`guided_filter` once more for a soft edge."""
    labels = torch.from_numpy(places)
    if ramp is not None:
        labels = (labels > 0).long()
    count = 3 if ramp is None else 2
    hard = (labels[None] == torch.arange(count)[:, None, None]).float()
    masks = snap_to_edges(image, hard, radius, ranges.edge_eps, ranges.edge_passes)
    if ramp is not None:
        share = torch.from_numpy(ramp)
        masks = torch.stack([masks[0], masks[1] * (1.0 - share), masks[1] * share])
    weights = _tiled_guided_filter(image, masks, radius, ranges.edge_eps).clamp(0.0, 1.0)
    return weights / weights.sum(0, keepdim=True).clamp_min(1e-6)


def snap_to_edges(
    image: torch.Tensor, masks: torch.Tensor, radius: int, eps: float, passes: int
) -> torch.Tensor:
    """One-hot masks (K, H, W) whose borders lie on the photo's edges: ``passes`` times, each pixel goes to
    the mask that :func:`guided_filter` gives the most weight. A border drawn a pixel or two off an edge
    moves onto it; one with no edge nearby stays (its corners rounded)."""
    for _ in range(passes):
        best = _tiled_guided_filter(image, masks, radius, eps).argmax(0)
        masks = (best[None] == torch.arange(masks.shape[0])[:, None, None]).float()
    return masks


def _tiled_guided_filter(
    image: torch.Tensor, masks: torch.Tensor, radius: int, eps: float, tile: int = 512
) -> torch.Tensor:
    """:func:`guided_filter` of masks that sum to 1 (K >= 2), tile by tile, each with a margin of 2 radius
    (all a pixel's result depends on: the numbers of one pass over the photo, in bounded memory). The
    first mask is 1 minus the others (the filter is linear); a tile whose masks are constant over it and its
    margin keeps them, as the filter would."""
    out = masks.clone()
    height, width = masks.shape[1:]
    margin = 2 * radius
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            rows = slice(max(0, top - margin), top + tile + margin)
            cols = slice(max(0, left - margin), left + tile + margin)
            window = masks[1:, rows, cols]
            if bool((window == window[:, :1, :1]).all()):
                continue
            filtered = guided_filter(image[:, rows, cols], window, radius, eps)
            keep = (
                slice(None),
                slice(top - rows.start, top - rows.start + tile),
                slice(left - cols.start, left - cols.start + tile),
            )
            out[1:, top : top + tile, left : left + tile] = filtered[keep]
            out[0, top : top + tile, left : left + tile] = 1.0 - filtered[keep].sum(0)
    return out


def _white_balance(angle: float, amount: float, exposure_ev: float) -> np.ndarray:
    """Diagonal linear-light gains: a tint ``amount`` (log gain) toward hue ``angle`` of the white-balance
    plane (temperature = cos, tint = sin, as in the augmentation), grey's luminance kept before exposure."""
    temperature, tint = amount * math.cos(angle), amount * math.sin(angle)
    gains = np.exp(np.array([temperature / 2 + tint / 3, -2 * tint / 3, -temperature / 2 + tint / 3]))
    gains /= float(np.asarray(REC709_LUMA) @ gains)
    return np.diag(gains * 2.0**exposure_ev)


def _chroma(hue_degrees: float, saturation: float) -> np.ndarray:
    angle = math.radians(hue_degrees)
    c, s = math.cos(angle) * saturation, math.sin(angle) * saturation
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _edits(
    kind: str, rng: np.random.Generator, ranges: LocalRanges
) -> tuple[tuple[Grade, Grade], tuple[dict[str, Any], dict[str, Any]]]:
    """One change of ``kind`` and its opposite, with their descriptions."""
    sign = 1.0 if rng.random() < 0.5 else -1.0
    if kind == "hue":
        value = sign * float(rng.uniform(*ranges.hue_degrees))
        grades = [Grade(np.eye(3), None, _chroma(v, 1.0)) for v in (value, -value)]
        described = [{"degrees": v} for v in (value, -value)]
    elif kind == "saturation":
        down = math.exp(float(rng.uniform(*np.log(ranges.saturation_down))))
        up = math.exp(float(rng.uniform(*np.log(ranges.saturation_up))))
        pair = (down, up) if sign > 0 else (up, down)
        grades = [Grade(np.eye(3), None, _chroma(0.0, v)) for v in pair]
        described = [{"scale": v} for v in pair]
    elif kind == "exposure":
        value = sign * float(rng.uniform(*ranges.exposure_ev))
        grades = [Grade(_white_balance(0.0, 0.0, v), None, np.eye(3)) for v in (value, -value)]
        described = [{"ev": v} for v in (value, -value)]
    else:  # tint: a white-balance shift toward a random hue, and toward the opposite one
        angle = float(rng.uniform(-math.pi, math.pi))
        amount = float(rng.uniform(*ranges.tint))
        grades = [Grade(_white_balance(a, amount, 0.0), None, np.eye(3)) for a in (angle, angle + math.pi)]
        described = [{"angle": math.degrees(a), "amount": amount} for a in (angle, angle + math.pi)]
    first, second = ({"kind": kind, **{k: round(v, 4) for k, v in d.items()}} for d in described)
    return (grades[0], grades[1]), (first, second)


def _core_pixels(image: torch.Tensor, places: np.ndarray, place: int, most: int = 20_000) -> torch.Tensor:
    """(3, 1, N) pixels of ``place`` (every k-th, N <= ``most``): where a change's size is measured."""
    index = np.flatnonzero(places.ravel() == place)
    index = index[:: max(1, -(-len(index) // most))]
    return image.reshape(3, -1)[:, torch.from_numpy(index)][:, None, :]


def _change(pixels: torch.Tensor, grade: Grade) -> float:
    """Mean CIE76 Delta E a grade makes on ``pixels`` (3, 1, N); 0 for no pixels."""
    if pixels.shape[-1] == 0:
        return 0.0
    return float((rgb_to_lab(render(pixels, global_grade=grade)) - rgb_to_lab(pixels)).norm(dim=0).mean())


def local_pair(
    source: torch.Tensor,
    regions: np.ndarray,
    rng: np.random.Generator,
    ranges: LocalRanges | None = None,
    geometry: GeometryRanges | None = None,
    superpixels: bool = False,
) -> LocalPair:
    """A local pair from ``source`` (3, H, W) in [0, 1] and its region labels (H, W); see the module
    docstring. superpixels: the labels are superpixels (blocky edges: a wider edge band)."""
    ranges = ranges if ranges is not None else LocalRanges()
    labels = np.asarray(regions, dtype=np.int64)
    if tuple(labels.shape) != tuple(source.shape[1:]):
        raise ValueError(f"regions {tuple(labels.shape)} do not match the image {tuple(source.shape)}")
    lab = _lab_pixels(source)
    places, ramp, info = choose_places(source, labels, rng, ranges, lab)
    area, _, chroma = _region_stats(lab, places, minimum=3)
    colourful = bool(chroma[1] >= ranges.colourful_chroma)
    kinds = ["hue", "saturation", "exposure"] if colourful else ["tint", "exposure"]
    both = bool(rng.random() < ranges.both_probability)
    pixels = [_core_pixels(source.float(), places, place) for place in (1, 2)]
    best: tuple[float, tuple[Grade, Grade], tuple[dict[str, Any], dict[str, Any]]] | None = None
    for _ in range(ranges.attempts):  # the first draw whose changes are large enough to see, else the largest
        grades, described = _edits(kinds[int(rng.integers(len(kinds)))], rng, ranges)
        sizes = [_change(pixels[0], grades[0])] + ([_change(pixels[1], grades[1])] if both else [])
        if best is None or min(sizes) > best[0]:
            best = (min(sizes), grades, described)
        if min(sizes) >= ranges.min_change_delta_e:
            break
    assert best is not None
    change, (first, second), (first_info, second_info) = best
    if not both:
        second, second_info = _IDENTITY, {"kind": "none"}
    fraction = ranges.superpixel_edge_fraction if superpixels else ranges.edge_fraction
    height, width = labels.shape
    radius = max(2, round(fraction * math.hypot(height, width)))
    weights = _weights(source, places, ramp, radius, ranges)
    global_grade = None
    if rng.random() < ranges.global_probability:
        global_grade = sample_global_grade(rng, AugmentationRanges().scaled(ranges.global_strength))
    target = render(source, global_grade, [_IDENTITY, first, second], weights)
    reference = alter_geometry(target, rng, geometry)
    info = {
        **info,
        "areas": [round(float(a) / labels.size, 4) for a in area[1:3]],
        "edits": [first_info, second_info],
        "change_delta_e": round(change, 3),
        "global": global_grade is not None,
        "edge_radius_px": radius,
    }
    return LocalPair(target, reference, weights, info)
