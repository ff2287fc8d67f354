"""The pointwise generator on every pixel of a whole image, pixels grouped by latent cell: the same numbers
as ``PointwiseGenerator.forward`` (a test holds them within 1e-5), several times faster, and the form the
ONNX graph of f exports (``recolorize.export.graphs``).

Why: ``forward``'s guided upsampling carries each style map to the pixels by nine full-size gathers and
products, ~113 channels x 9 passes over memory per pixel. Here the image's pixels are first laid out cell by
cell of the finest latent grid (``cells, pixels_per_cell``; the coarser grids nest in it). All pixels of a
cell share their nine neighbour cells, so each grid's upsampling is one batched product
``(pixels_per_cell x 9) @ (9 x C)`` per cell, and f's modulated 1x1 layers are ``(pixels x C) @ (C x O)``
products: memory is touched a few times per pixel, not nine times per channel.

The layout. A pixel at row y lies in cell row ``floor(y h / H)`` of an ``h``-row grid
(``GuidedUpsampler._axis``), so cell row k holds rows ``ceil(k H / h) .. ceil((k + 1) H / h) - 1``:
``floor(H / h)`` or ``ceil(H / h)`` rows. Each cell row is read as ``ceil(H / h)`` rows, repeating its
last row where it has fewer; the repeats are computed and dropped when the pixels go back to their places.
Columns alike. A cell of an h-row grid nested in the finest grid of ``h f`` rows is ``floor(k / f)``
(floor of a floor), so one layout serves all grids.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from recolorize.colour import rgb_to_lab_last
from recolorize.networks.pointwise import (
    HINT_CHANNELS,
    Conditioning,
    PointwiseGenerator,
    cell_mean,
)

__all__ = ["can_render_blocked", "render_blocked", "render_image"]


def can_render_blocked(generator: PointwiseGenerator, styles: list[torch.Tensor]) -> bool:
    """Whether :func:`render_blocked` covers this generator and these styles: spatial styles on grids that
    nest in the finest one, no local transfer (the shipped design); ``forward`` renders the rest."""
    if generator.local_transfer:
        return False
    sizes = [tuple(style.shape[-2:]) for style in styles]
    if any(size == (1, 1) for size in sizes):
        return False
    finest = (max(size[0] for size in sizes), max(size[1] for size in sizes))
    return all(finest[0] % h == 0 and finest[1] % w == 0 for h, w in sizes)


def _row_band(
    full: int | torch.Tensor, top: int | torch.Tensor, height: int, cells: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int | torch.Tensor]:
    """The rows of a ``full``-row photo laid out cell by cell of a ``cells``-row grid (the module docstring),
    for the band of rows ``top .. top + height``, which starts where a cell row starts and holds whole cell
    rows: the band's cell rows (global indices), the band-relative source row of each of their
    ``per_cell`` places (a short cell repeats its last row), where each row of the band went (its place),
    and ``per_cell``. The whole photo is the band ``top = 0, height = full``; columns are laid out alike.
    Sizes may be tensors: the ONNX graph takes the band as an input."""
    per_cell = (full + cells - 1) // cells
    first = (top * cells) // full
    last = ((top + height - 1) * cells) // full
    # the last band takes the grid's last cell rows too (empty ones when the photo has fewer rows than the
    # grid: their places repeat a row and are dropped); a product, not an ``if``, so a trace keeps it
    last = last + (cells - 1 - last) * ((top + height) >= full)
    cell = torch.arange(first, last + 1, device=device)
    start = (cell * full + cells - 1) // cells
    end = ((cell + 1) * full + cells - 1) // cells
    offset = torch.arange(per_cell, device=device)
    index = torch.minimum(start[:, None] + offset[None, :], end[:, None] - 1).reshape(-1) - top
    row = torch.arange(height, device=device) + top
    row_cell = (row * cells) // full - first
    place = row_cell * per_cell + (row - start[row_cell])
    return cell, index, place, per_cell


def _neighbour_cells(cell_rows: torch.Tensor, factor: int, cells: int) -> torch.Tensor:
    """(n, 3): for each of these fine cells, its coarse cell (``// factor``) and the coarse cells before and
    after, clamped to the grid: the neighbours the guided upsampling weighs."""
    coarse = cell_rows // factor
    return (coarse[:, None] + torch.arange(-1, 2, device=cell_rows.device)[None, :]).clamp(0, cells - 1)


def _upsample_grid(
    generator: PointwiseGenerator,
    coarse: list[torch.Tensor],
    guide: torch.Tensor,
    guide_low: torch.Tensor,
    y: torch.Tensor,
    x: torch.Tensor,
    size: tuple[int | torch.Tensor, int],
    fine: tuple[torch.Tensor, int, int],
) -> torch.Tensor:
    """One grid's maps ``coarse`` (each (C, h, w)) carried to the blocked pixels, each (cells, P, C): the
    guided upsampling's weights (``GuidedUpsampler.plan``: tent times colour similarity over the 3 x 3
    neighbour cells, softmax), then one batched product per cell and map.

    guide: the pixels' scaled Lab (cells, P, 3); y, x: their rows (n, rows) and columns (fine_w, cols) in the
    photo; size: the photo's (height, width); fine: the band's cell rows of the finest grid (n, global
    indices) and that grid's (fine_h, fine_w)."""
    (h, w), (height, width), (cell_rows, fine_h, fine_w) = coarse[0].shape[-2:], size, fine
    device, dtype = guide.device, guide.dtype
    cells = cell_rows.shape[0] * fine_w
    fy, fx = fine_h // h, fine_w // w
    offsets = torch.arange(-1, 2, device=device, dtype=dtype)
    cell_y = cell_rows.to(dtype).div(fy, rounding_mode="floor")
    cell_x = torch.arange(fine_w, device=device, dtype=dtype).div(fx, rounding_mode="floor")
    # the tent weights of the 3 neighbour rows and columns, as logarithms: log(wy wx) = log wy + log wx,
    # and log(1e-12) below where either is 0, as the clamp there
    ys = (y + 0.5) * h / height - 0.5  # (fine_h, rows), position in this grid's cell units
    xs = (x + 0.5) * w / width - 0.5
    radius = generator.upsampler.radius
    wy = (1.0 - (ys[:, :, None] - (cell_y[:, None, None] + offsets)).abs() / radius).clamp_min(0.0)
    wx = (1.0 - (xs[:, :, None] - (cell_x[:, None, None] + offsets)).abs() / radius).clamp_min(0.0)
    spatial = torch.log(wy)[:, None, :, None, :, None] + torch.log(wx)[None, :, None, :, None, :]
    spatial = spatial.clamp_min(math.log(1e-12)).reshape(cells, -1, 9)
    near_y = _neighbour_cells(cell_rows, fy, h)  # (n, 3)
    near_x = _neighbour_cells(torch.arange(fine_w, device=device), fx, w)
    tap_guides = _taps(cell_mean(guide_low, (h, w))[0], near_y, near_x, cells)  # (cells, 9, 3)
    # |g - c|^2 = |g|^2 - 2 g.c + |c|^2: one product for the 9 neighbours
    distance = guide.pow(2).sum(-1, keepdim=True) - 2.0 * torch.bmm(guide, tap_guides.transpose(1, 2))
    distance = (distance + tap_guides.pow(2).sum(-1)[:, None, :]).clamp_min(0.0)
    inv = 0.5 / torch.exp(2.0 * generator.upsampler.log_sigma).clamp_min(1e-6)
    weights = torch.softmax(spatial - distance * inv, dim=-1)  # (cells, P, 9)
    # one product per map (not one for the grid's maps concatenated, then sliced: ONNX Runtime copies slices)
    return [torch.bmm(weights, _taps(grid, near_y, near_x, cells)) for grid in coarse]  # (cells, P, C) each


def _taps(grid: torch.Tensor, near_y: torch.Tensor, near_x: torch.Tensor, cells: int) -> torch.Tensor:
    """(cells, 9, C): each fine cell's 3 x 3 neighbour cells of ``grid`` (C, h, w), row-major. The grid is
    put channels last first (it is small), so the gathers and the transpose move whole C-vectors: in
    ONNX Runtime, gathering channel-first and moving C last cost ~1 ms per map and band."""
    laid = grid.permute(1, 2, 0)[near_y][:, :, near_x]  # (n, 3, fine_w, 3, C)
    return laid.permute(0, 2, 1, 3, 4).reshape(cells, 9, -1)


def _pixel_network(
    generator: PointwiseGenerator,
    rgb: torch.Tensor,
    guide: torch.Tensor,
    base: torch.Tensor,
    upsampled: dict[str, torch.Tensor],
) -> torch.Tensor:
    """f's residual on the blocked pixels (cells, P, 3): its modulated 1x1 layers as (pixels x C) @ (C x O)
    products, each pixel modulated by its own upsampled styles (as ``pointwise._modulated_1x1``)."""
    inputs = [rgb * 2.0 - 1.0, guide]
    if generator.use_prior:
        inputs.append(base.clamp(0.0, 1.0) * 2.0 - 1.0)
    if generator.use_hint:
        hint = upsampled["hint"]
        inputs.append(hint if hint.shape[-1] == HINT_CHANNELS else hint[:, :, :HINT_CHANNELS])
    hidden = torch.cat(inputs, dim=-1)
    gain = math.sqrt(2)
    for n, conv in enumerate([*generator.layers, generator.to_rgb]):
        weight = (conv.weight * conv.scale).flatten(1)  # (O, C)
        style = upsampled[f"style{n}"]
        out = torch.matmul(hidden * style, weight.t())
        if conv.demodulate:
            out = out * torch.rsqrt(torch.matmul(style * style, weight.pow(2).t()) + 1e-8)
        if n < len(generator.biases):
            hidden = F.leaky_relu(out + generator.biases[n], 0.2) * gain
        else:
            hidden = out + generator.rgb_bias
    return hidden


@torch.no_grad()
def render_blocked(
    generator: PointwiseGenerator,
    image: torch.Tensor,
    styles: list[torch.Tensor],
    hint: torch.Tensor | None,
    base: torch.Tensor,
    guide_low: torch.Tensor,
    band: tuple[int | torch.Tensor, int | torch.Tensor] | None = None,
) -> torch.Tensor:
    """G'(I) on every pixel of ``image`` (H, W, 3), channels last as a decoded photo lies: (H, W, 3), not
    clipped.

    styles: each layer's style A(W) at its grid (``PointwiseGenerator.coarse_styles``); hint: the colour hint
    (1, HINT_CHANNELS, h, w) or None; base: the prior applied to the image (H, W, 3); guide_low: scaled Lab
    of the working-resolution image (1, 3, r, r), the cells' guide colours. band: (top, full height) when
    ``image`` is the rows ``top .. top + H`` of a taller photo, starting where a row of the finest grid's
    cells starts and holding whole cell rows (``inference.onnx_model.band_edges``): a photo rendered band
    by band is the photo rendered whole, in a fraction of the memory.
    """
    device, dtype = image.device, image.dtype
    height, width = image.shape[0], image.shape[1]
    top, full_height = band if band is not None else (0, height)
    maps = {f"style{n}": style for n, style in enumerate(styles)}
    if generator.use_hint:
        maps["hint"] = hint if hint is not None else image.new_zeros(1, HINT_CHANNELS, *styles[1].shape[-2:])
    grids: dict[tuple[int, int], list[str]] = {}
    for key, value in maps.items():
        grids.setdefault(tuple(value.shape[-2:]), []).append(key)
    fine_h = max(size[0] for size in grids)
    fine_w = max(size[1] for size in grids)

    cell_rows, row_index, row_place, rows = _row_band(full_height, top, height, fine_h, device)
    _, col_index, col_place, cols = _row_band(width, 0, width, fine_w, device)
    bands = cell_rows.shape[0]  # the band's rows of cells
    cells = bands * fine_w

    def blocked(x: torch.Tensor) -> torch.Tensor:
        """(H, W, K) -> (cells, pixels per cell, K), cells row-major, a cell's pixels row-major."""
        laid = x[row_index][:, col_index].reshape(bands, rows, fine_w, cols, x.shape[-1])
        return laid.permute(0, 2, 1, 3, 4).reshape(cells, rows * cols, x.shape[-1])

    rgb = blocked(image)
    guide = rgb_to_lab_last(rgb.clamp(0.0, 1.0)) / 100.0  # ``lab_features``, channels last: (cells, P, 3)
    base_pixels = blocked(base)
    # each blocked pixel's row and column in the photo: the upsampler's positions are computed from them
    y = (row_index + top).to(dtype).reshape(bands, rows)
    x = col_index.to(dtype).reshape(fine_w, cols)
    upsampled: dict[str, torch.Tensor] = {}
    for keys in grids.values():
        coarse = [maps[key][0] for key in keys]  # (C, h, w) each
        size, fine = (full_height, width), (cell_rows, fine_h, fine_w)
        values = _upsample_grid(generator, coarse, guide, guide_low, y, x, size, fine)
        upsampled.update(zip(keys, values, strict=True))

    result = base_pixels + _pixel_network(generator, rgb, guide, base_pixels, upsampled)  # (cells, P, 3)
    laid = result.reshape(bands, fine_w, rows, cols, 3).permute(0, 2, 1, 3, 4).reshape(bands * rows, -1, 3)
    return laid[row_place][:, col_place]


def render_image(
    generator: PointwiseGenerator,
    image: torch.Tensor,
    latents: list[torch.Tensor],
    conditioning: Conditioning,
    guide_low: torch.Tensor,
) -> torch.Tensor:
    """``generator(image, latents, conditioning, guide_low=guide_low)`` for a whole image (1, 3, H, W): by
    :func:`render_blocked` where it applies, else by ``forward`` itself."""
    styles = generator.coarse_styles(latents)
    if image.shape[0] != 1 or not can_render_blocked(generator, styles):
        return generator(image, latents, conditioning, guide_low=guide_low)
    base = conditioning.base
    if base is None:
        from recolorize.networks.colour_prior import apply_colour_affine

        base = apply_colour_affine(conditioning.prior, image) if conditioning.prior is not None else image
    rendered = render_blocked(
        generator, image[0].permute(1, 2, 0), styles, conditioning.hint, base[0].permute(1, 2, 0), guide_low
    )
    return rendered.permute(2, 0, 1)[None]
