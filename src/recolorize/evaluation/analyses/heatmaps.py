"""Figure 5 (section 3.3, eq. 3): the self-similarity heatmap of W0 = E_W(I) versus VGG16 relu2_2 for a
query point, scored by its correlation with colour closeness (:func:`compute_fig5`), then the figure,
markdown and files (:func:`fig5`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from skimage.color import rgb2lab
from tqdm import tqdm

from recolorize.data.folders import Photo
from recolorize.evaluation.analyses.common import (
    AnalysisOptions,
    load_images,
    model_device,
    select_photos,
    settings_record,
    to_numpy,
)
from recolorize.evaluation.analyses.report import new_figure, save_figure, write_numbers
from recolorize.evaluation.analyses.similarity import (
    colourful_point,
    grid_cell,
    pearson,
    self_similarity,
    upsample_heatmap,
)
from recolorize.networks.model import RecolorModel

__all__ = ["Fig5Numbers", "compute_fig5", "plot_fig5", "fig5_markdown", "fig5"]

#: A drawn image: (image, W0 heatmap, VGG heatmap, query (row, col) in pixels, its entry of ``per_image``).
Panel = tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int], dict[str, Any]]


@dataclass
class Fig5Numbers:
    """What :func:`compute_fig5` measured: one entry per image, and the first ``options.show`` drawn."""

    photos: list[Photo]
    per_image: list[dict[str, Any]] = field(default_factory=list)
    panels: list[Panel] = field(default_factory=list)


def compute_fig5(model: RecolorModel, images_dir: Path, options: AnalysisOptions) -> Fig5Numbers:
    """Eq. 3 heatmaps of W0 and VGG16 relu2_2 for each image's query point; no file is written."""
    from recolorize.networks.backbones import VGG16Features

    n = options.n if options.n is not None else 4
    photos = select_photos(images_dir, n, options.seed)
    resolution = model.config.resolution
    images = load_images(photos, resolution)
    device = model_device(model)
    vgg = VGG16Features(last="relu2_2").to(device)
    shown = min(options.show, len(photos))
    grid = max(1, resolution // 16)

    numbers = Fig5Numbers(photos)
    for index in tqdm(range(len(photos)), desc="fig5", unit="img"):
        image = images[index : index + 1].to(device)
        array = to_numpy(images[index])
        point = options.point if options.point is not None else colourful_point(array, grid)
        with torch.no_grad():
            w0_maps = model.self_maps(image)[0]  # W0 = E_W(I), (C, R/16, R/16)
            vgg_maps = vgg(image, names=("relu2_2",))[0][0]  # (128, R/2, R/2)
        heat_w0 = upsample_heatmap(self_similarity(w0_maps, grid_cell(point, w0_maps.shape[-2:])), resolution)
        heat_vgg = upsample_heatmap(
            self_similarity(vgg_maps, grid_cell(point, vgg_maps.shape[-2:])), resolution
        )
        # colour closeness to the query: -Delta E76 to the query's mean Lab colour (3x3 px around it)
        lab = rgb2lab(array)
        row, col = grid_cell(point, lab.shape[:2])
        query_lab = lab[max(0, row - 1) : row + 2, max(0, col - 1) : col + 2].reshape(-1, 3).mean(0)
        closeness = -np.linalg.norm(lab - query_lab, axis=-1)
        entry = {
            "image": str(photos[index].image),
            "point": [float(point[0]), float(point[1])],
            "w0_colour_correlation": pearson(heat_w0, closeness),
            "vgg_colour_correlation": pearson(heat_vgg, closeness),
        }
        numbers.per_image.append(entry)
        if index < shown:
            numbers.panels.append((array, heat_w0, heat_vgg, (row, col), entry))
    return numbers


def plot_fig5(panels: list[Panel], path: Path) -> Path:
    """One row per drawn image: the image, the W0 heatmap and the VGG heatmap, the query marked (+)."""
    fig, axes = new_figure(len(panels), 3, (9, 3 * len(panels)))
    for r, (array, heat_w0, heat_vgg, (row, col), entry) in enumerate(panels):
        drawn = [
            (array, f"{Path(entry['image']).stem}: query"),
            (heat_w0, f"W0 (E_W), r = {entry['w0_colour_correlation']:.2f}"),
            (heat_vgg, f"VGG relu2_2, r = {entry['vgg_colour_correlation']:.2f}"),
        ]
        for c, (data, title) in enumerate(drawn):
            ax = axes[r][c]
            ax.imshow(data, cmap=None if c == 0 else "inferno")
            ax.plot([col], [row], marker="+", color="cyan", markersize=14, markeredgewidth=2)
            ax.set_title(title, fontsize=9)
            ax.axis("off")
    fig.suptitle("Self-similarity to the query (+), eq. 3; r: correlation with colour closeness", fontsize=10)
    return save_figure(fig, path)


def fig5_markdown(n: int, mean_w0: float, mean_vgg: float) -> str:
    """``fig5.md``: the mean correlation with colour closeness of each feature map."""
    return "\n".join(
        [
            f"# Figure 5: W0 versus VGG16 relu2_2 self-similarity ({n} images)",
            "",
            "Heatmap H(j) = cosine(F(i), F(j)) for the query point i (eq. 3); the query is the most "
            "colourful 1/16 cell unless a point was given. Score: Pearson correlation between the heatmap "
            "and colour closeness to the query (-ΔE76 in CIE Lab); higher = features follow local colour.",
            "",
            "| features | mean correlation with colour closeness |",
            "|---|---|",
            f"| W0 = E_W(I) | {mean_w0:.3f} |",
            f"| VGG16 relu2_2 | {mean_vgg:.3f} |",
            "",
        ]
    )


def fig5(model: RecolorModel, images_dir: Path, out: Path, options: AnalysisOptions) -> dict[str, Any]:
    """Figure 5: W0 self-similarity heatmap (eq. 3) versus VGG16 relu2_2 for a query point."""
    numbers = compute_fig5(model, images_dir, options)
    results = numbers.per_image
    png = plot_fig5(numbers.panels, out / "fig5.png")
    mean_w0 = float(np.nanmean([e["w0_colour_correlation"] for e in results]))
    mean_vgg = float(np.nanmean([e["vgg_colour_correlation"] for e in results]))
    record = {
        "analysis": "fig5",
        "settings": settings_record(options, len(numbers.photos), model, images_dir),
        "mean_w0_colour_correlation": mean_w0,
        "mean_vgg_colour_correlation": mean_vgg,
        "per_image": results,
    }
    markdown = fig5_markdown(len(numbers.photos), mean_w0, mean_vgg)
    json_path, md_path = write_numbers(out, "fig5", record, markdown)
    return {"png": png, "json": json_path, "md": md_path, "w0": mean_w0, "vgg": mean_vgg}
