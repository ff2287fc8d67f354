"""The pointwise generator evaluated on every pixel of a photo, fast (inference only, the same numbers).

Why a second implementation: ``PointwiseGenerator.forward`` is written for training (autograd, any pixel
subgrid). Its guided upsampling carries every style map to the pixels through nine full-size gathers and
products per map, ~110 channels x 9 passes over memory per pixel, which made the 0.5-MP "direct" rendering
of the shipped model ~2 s on one core (issue 11).

Here the photo is taken one band at a time, a band being rows that share their cell row in every latent grid
(cells of the 1/4, 1/8 and 1/16 maps nest, so a band is one row of the finest cells). Within a band the nine
neighbour cells of a pixel depend on its column only, so the joint bilateral upsampling of all maps of one
grid is a single batched product ``(rows x 9) @ (9 x C)`` per column, and the 1x1 modulated layers are
``(pixels x C) @ (C x O)`` products on channel-last tiles that stay in cache. The maths is the generator's,
term by term: the same cell indices and tent weights (``GuidedUpsampler._axis``), colour similarity,
softmax, modulation, demodulation, prior base and colour hint; only the order of float32 sums differs.

A check runs with every rendering: a sample of pixels is evaluated by ``generator.forward`` itself and
compared; if they ever disagree (say the network changes and this module does not), the rendering is redone
by the generator, band by band, and a warning says so. Nothing here is used in training.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F

from recolorize.inference.parallel import for_each
from recolorize.networks.colour_prior import apply_lattice_torch, colour_terms, is_lattice
from recolorize.networks.pointwise import (
    HINT_CHANNELS,
    Conditioning,
    GuidedUpsampler,
    PointwiseGenerator,
    lab_features,
    local_colour_transfer,
)

__all__ = ["BAND_PIXELS", "CHECK_TOLERANCE", "render_pointwise", "render_pointwise_reference"]

logger = logging.getLogger(__name__)

#: Most pixels per tile (a band is split into column chunks above this): ~150 floats per pixel stay ~10 MB.
BAND_PIXELS = 1 << 16
#: Largest difference (0-1 scale) tolerated between this module and ``generator.forward`` on the check's
#: pixels; float32 sums in another order differ by ~1e-6, a real disagreement by far more than 1e-4.
CHECK_TOLERANCE = 1e-4
#: Pixels of the reference path's bands (the generator's own forward, bounded memory).
_REFERENCE_BAND_PIXELS = 1 << 16


class _Grid:
    """One latent grid (h x w cells): its maps concatenated, cell guide, and per-axis cell positions."""

    def __init__(
        self,
        maps: torch.Tensor,
        guide_cells: torch.Tensor,
        height: int,
        width: int,
        radius: float,
    ) -> None:
        device, dtype = maps.device, torch.float32
        h, w = maps.shape[-2:]
        self.maps = maps[0]  # (C, h, w)
        self.guide_cells = guide_cells[0]  # (3, h, w)
        rows = torch.arange(height, device=device, dtype=dtype)
        cols = torch.arange(width, device=device, dtype=dtype)
        # GuidedUpsampler._axis is the generator's own rule for cell index and position in cell units.
        cy, self.ys, _ = GuidedUpsampler._axis(rows, h, height)
        cx, xs, _ = GuidedUpsampler._axis(cols, w, width)
        self.h, self.w, self.radius = h, w, radius
        shifted = cx[None, :] + torch.tensor([-1.0, 0.0, 1.0], device=device, dtype=dtype)[:, None]  # (3, W)
        self.ix_all = shifted.clamp(0, w - 1).long()  # the cell column of each pixel's 3 dx neighbours
        self.wx_all = (1.0 - (xs[None, :] - shifted).abs() / radius).clamp_min(0.0)  # their tent weights
        self.cx_index = cx.long()
        self.cy_list = cy.long().tolist()
        neighbours = torch.arange(w, device=device)[:, None] + torch.tensor([-1, 0, 1], device=device)
        self.neighbours = neighbours.clamp(0, w - 1)  # (w, 3): cell columns cx-1, cx, cx+1

    def upsample(
        self, top: int, bottom: int, left: int, right: int, guide: torch.Tensor, inv: torch.Tensor
    ) -> torch.Tensor:
        """This grid's maps upsampled to a band's pixels (rows ``top:bottom``, all in one cell row, columns
        ``left:right``), as (pixels, C) with pixels ordered column by column.

        guide: the pixels' guide as (3, cols, rows); inv = 1 / (2 sigma^2). The nine neighbour cells are
        handled at once (a (3 dy, 3 dx) leading pair of axes) and the per-column products are one batched
        product: a few dozen torch calls per band whatever the grid, so that two photos re-coloured at
        once (``--jobs 2``) are not queued on Python's lock.
        """
        cy = self.cy_list[top]
        ys = self.ys[top:bottom]
        cols, rows = right - left, bottom - top
        iys = [min(max(cy + dy, 0), self.h - 1) for dy in (-1, 0, 1)]
        offsets = torch.tensor([cy - 1.0, float(cy), cy + 1.0], dtype=guide.dtype, device=guide.device)
        wy = (1.0 - (ys[None, :] - offsets[:, None]).abs() / self.radius).clamp_min(0.0)  # (3 dy, rows)
        wx = self.wx_all[:, left:right]  # (3 dx, cols)
        spatial = (wy[:, None, None, :] * wx[None, :, :, None]).clamp_min_(1e-12).log_()  # (3, 3, cols, rows)
        ix = self.ix_all[:, left:right]  # (3 dx, cols)
        cells = self.guide_cells[:, iys][:, :, ix]  # (3 channels, 3 dy, 3 dx, cols)
        distance = (guide[:, None, None] - cells[..., None]).square_().sum(0)  # (3, 3, cols, rows)
        logits = spatial.sub_(distance.mul_(inv)).reshape(9, cols, rows)
        weights = torch.softmax(logits, dim=0).permute(1, 2, 0)  # (cols, rows, 9)
        # taps[c] = the maps at the 9 cells around cell column c, (w, 9, C), dy-major like the logits.
        taps = self.maps[:, iys][:, :, self.neighbours]  # (C, 3, w, 3)
        taps = taps.permute(2, 1, 3, 0).reshape(self.w, 9, -1)
        column_taps = taps.index_select(0, self.cx_index[left:right])  # (cols, 9, C)
        return torch.bmm(weights, column_taps).reshape(cols * rows, -1)


def _band_edges(grids: Sequence[_Grid], height: int) -> list[int]:
    """Row indices where a band starts: every row where any grid's cell row changes, and the end."""
    edges = {0, height}
    for grid in grids:
        cy = grid.cy_list
        edges.update(y for y in range(1, height) if cy[y] != cy[y - 1])
    return sorted(edges)


def _flat_weight(conv: torch.nn.Module) -> torch.Tensor:
    """A 1x1 modulated convolution's scaled weight as (O, C), as ``pointwise._modulated_1x1`` uses it."""
    return (conv.weight * conv.scale).flatten(1)


@torch.no_grad()
def render_pointwise(
    generator: PointwiseGenerator,
    image: torch.Tensor,
    latents: torch.Tensor | Sequence[torch.Tensor],
    conditioning: Conditioning | None,
    guide_low: torch.Tensor,
    check: bool = True,
) -> torch.Tensor:
    """``generator(image, latents, conditioning, guide_low=guide_low)`` for a whole photo, fast.

    image: (1, 3, H, W) float32 in [0, 1] on the generator's device; guide_low: the working-resolution
    guide (``lab_features`` of the network's copy). Returns (1, 3, H, W) float32, not clipped. With
    ``check``, a sample of pixels is compared with ``generator.forward`` and the whole rendering redone by it
    if they disagree (see the module docstring).
    """
    if image.dim() != 4 or image.shape[0] != 1 or image.shape[1] != 3:
        raise ValueError(f"image must be (1, 3, H, W), got {tuple(image.shape)}")
    latents = latents if isinstance(latents, torch.Tensor) else list(latents)  # a 1d code stays a tensor
    out = _render_fast(generator, image, latents, conditioning, guide_low)
    if check and not _agrees(generator, image, latents, conditioning, guide_low, out):
        logger.warning("fast pointwise rendering disagrees with the generator; rendering with the generator")
        out = render_pointwise_reference(generator, image, latents, conditioning, guide_low)
    return out


class _Layers(NamedTuple):
    """The generator's 1x1 modulated layers then ``to_rgb``, as the fast path multiplies them."""

    weights: list[torch.Tensor]  # (O, C) scaled weights
    energies: list[torch.Tensor | None]  # squared weights of the demodulated layers, else None
    biases: list[torch.Tensor]  # the hidden layers' biases (to_rgb's is ``generator.rgb_bias``)


def _layers(generator: PointwiseGenerator) -> _Layers:
    layers = [*generator.layers, generator.to_rgb]
    weights = [_flat_weight(conv) for conv in layers]
    energies = [w.pow(2) if conv.demodulate else None for conv, w in zip(layers, weights, strict=True)]
    return _Layers(weights, energies, [bias for bias in generator.biases])


#: A latent grid and what its concatenated maps hold: (key, channels) per map, in order.
_GridEntries = list[tuple[_Grid, list[tuple[str, int]]]]


def _latent_grids(
    generator: PointwiseGenerator,
    image: torch.Tensor,
    latents: torch.Tensor | list[torch.Tensor],
    conditioning: Conditioning,
    guide_low: torch.Tensor,
) -> tuple[_GridEntries, dict[str, torch.Tensor]]:
    """The styles and the colour hint grouped into one :class:`_Grid` per grid size, and the 1x1 maps
    (the generator treats them as constant styles) as (1, C) constants keyed ``style{n}`` / ``hint``."""
    _, _, height, width = image.shape
    styles = generator.coarse_styles(latents)

    # What is upsampled, grouped by grid size: (size) -> list of (key, coarse map (1, C, h, w)).
    coarse: dict[tuple[int, int], list[tuple[str, torch.Tensor]]] = {}
    constants: dict[str, torch.Tensor] = {}

    def add(key: str, value: torch.Tensor) -> None:
        size = tuple(value.shape[-2:])
        if size == (1, 1):  # the generator treats any 1x1 map as a constant style
            constants[key] = value.reshape(1, -1)
        else:
            coarse.setdefault(size, []).append((key, value))

    if generator.use_hint:
        hint = conditioning.hint
        if hint is not None:
            if hint.shape[1] != generator.hint_channels:
                raise ValueError(f"hint needs {generator.hint_channels} channels, got {hint.shape[1]}")
            add("hint", hint.to(image.dtype))
    for n, style in enumerate(styles):
        add(f"style{n}", style)

    radius = float(generator.upsampler.radius)
    grids: _GridEntries = []
    for size, entries in coarse.items():
        maps = torch.cat([value for _, value in entries], dim=1)
        cells = guide_low if tuple(guide_low.shape[-2:]) == size else F.adaptive_avg_pool2d(guide_low, size)
        grids.append(
            (_Grid(maps, cells, height, width, radius), [(key, value.shape[1]) for key, value in entries])
        )
    return grids, constants


def _tile_colours(
    generator: PointwiseGenerator,
    layers: _Layers,
    rgb: torch.Tensor,
    flat_guide: torch.Tensor,
    prior: torch.Tensor | None,
    upsampled: dict[str, torch.Tensor],
) -> torch.Tensor:
    """The generator's per-pixel network on a tile: rgb and guide (pixels, 3), styles and hint (pixels, C);
    returns the output colours (pixels, 3), the prior's base plus the network's residual."""
    pixels = rgb.shape[0]
    if prior is not None and is_lattice(prior):
        base = apply_lattice_torch(prior, rgb.t()[None, :, None, :])[0, :, 0].t()
    elif prior is not None:
        matrix = prior[0].to(rgb.dtype)
        base = torch.addmm(matrix[:, -1], rgb, matrix[:, :3].t())
        if matrix.shape[1] > 4:  # a degree-2 map: its quadratic terms too (colour_prior.colour_terms)
            base = base.addmm_(colour_terms(rgb, 2)[:, 3:], matrix[:, 3:-1].t())
    else:
        base = rgb
    inputs = [rgb * 2.0 - 1.0, flat_guide]
    if generator.use_prior:
        inputs.append(base.clamp(0.0, 1.0) * 2.0 - 1.0)
    if generator.use_hint:
        pixel_hint = upsampled.get("hint")
        if pixel_hint is None:
            pixel_hint = rgb.new_zeros(pixels, generator.hint_channels)
        inputs.append(pixel_hint[:, :HINT_CHANNELS])
        if generator.local_transfer:
            inputs.append(local_colour_transfer(pixel_hint, flat_guide))
    x = torch.cat(inputs, dim=1)
    gain = math.sqrt(2)
    for n, (weight, energy) in enumerate(zip(layers.weights, layers.energies, strict=True)):
        style = upsampled[f"style{n}"]
        y = torch.mm(x * style, weight.t())
        if energy is not None:
            y *= torch.rsqrt(torch.mm(style * style, energy.t()) + 1e-8)
        if n < len(layers.biases):
            y += layers.biases[n]
            x = F.leaky_relu(y, 0.2) * gain
        else:
            x = y + generator.rgb_bias
    return base + x


def _render_fast(
    generator: PointwiseGenerator,
    image: torch.Tensor,
    latents: torch.Tensor | list[torch.Tensor],
    conditioning: Conditioning | None,
    guide_low: torch.Tensor,
) -> torch.Tensor:
    conditioning = conditioning if conditioning is not None else Conditioning()
    device = image.device
    _, _, height, width = image.shape
    grids, constants = _latent_grids(generator, image, latents, conditioning, guide_low)
    inv = 0.5 / torch.exp(2.0 * generator.upsampler.log_sigma).clamp_min(1e-6)
    prior = conditioning.prior  # None: the base is the image itself
    layers = _layers(generator)

    out = torch.empty(1, 3, height, width, dtype=torch.float32, device=device)
    edges = _band_edges([grid for grid, _ in grids], height)

    def render_band(rows_of_band: tuple[int, int]) -> None:
        top, bottom = rows_of_band
        rows = bottom - top
        chunk = max(1, BAND_PIXELS // rows)
        band = image[0, :, top:bottom]  # (3, rows, W)
        band_guide = lab_features(image[:, :, top:bottom])[0]  # (3, rows, W)
        for left in range(0, width, chunk):
            right = min(width, left + chunk)
            cols = right - left
            pixels = cols * rows
            rgb = band[:, :, left:right].permute(2, 1, 0)  # (cols, rows, 3)
            guide = band_guide[:, :, left:right].transpose(1, 2).contiguous()  # (3, cols, rows)
            upsampled: dict[str, torch.Tensor] = dict(constants)
            for grid, entries in grids:
                values = grid.upsample(top, bottom, left, right, guide, inv)
                start = 0
                for key, channels in entries:
                    upsampled[key] = values[:, start : start + channels]
                    start += channels
            flat_guide = guide.reshape(3, pixels).t()
            result = _tile_colours(generator, layers, rgb.reshape(pixels, 3), flat_guide, prior, upsampled)
            out[0, :, top:bottom, left:right] = result.reshape(cols, rows, 3).permute(2, 1, 0)

    # bands write disjoint rows of ``out``: a few threads at once (parallel.for_each says why)
    for_each(render_band, list(zip(edges[:-1], edges[1:], strict=True)), device)
    return out


def render_pointwise_reference(
    generator: PointwiseGenerator,
    image: torch.Tensor,
    latents: torch.Tensor | Sequence[torch.Tensor],
    conditioning: Conditioning | None,
    guide_low: torch.Tensor,
) -> torch.Tensor:
    """The same rendering by ``generator.forward``, band by band (the path the fast one is checked on)."""
    _, _, height, width = image.shape
    rows_per_band = max(1, _REFERENCE_BAND_PIXELS // width)
    out = torch.empty(1, 3, height, width, dtype=torch.float32, device=image.device)
    cols = torch.arange(width, device=image.device)
    for top in range(0, height, rows_per_band):
        bottom = min(height, top + rows_per_band)
        rows = torch.arange(top, bottom, device=image.device)
        out[:, :, top:bottom] = generator(
            image[:, :, top:bottom],
            latents,
            conditioning,
            guide_low=guide_low,
            rows=rows,
            cols=cols,
            full_size=(height, width),
        )
    return out


def _agrees(
    generator: PointwiseGenerator,
    image: torch.Tensor,
    latents: torch.Tensor | list[torch.Tensor],
    conditioning: Conditioning | None,
    guide_low: torch.Tensor,
    rendered: torch.Tensor,
) -> bool:
    """Whether ``generator.forward`` gives ``rendered`` on a spread sample of rows and columns (<= 8 x 64)."""
    _, _, height, width = image.shape
    rows = torch.linspace(0, height - 1, min(height, 8), device=image.device).round().long().unique()
    cols = torch.linspace(0, width - 1, min(width, 64), device=image.device).round().long().unique()
    sample = image[:, :, rows][:, :, :, cols]
    expected = generator(
        sample, latents, conditioning, guide_low=guide_low, rows=rows, cols=cols, full_size=(height, width)
    )
    got = rendered[:, :, rows][:, :, :, cols]
    difference = float((expected - got).abs().max())
    if not difference <= CHECK_TOLERANCE:  # also catches NaN
        logger.debug("fast rendering differs from the generator by %.3g on the check's pixels", difference)
        return False
    return True
