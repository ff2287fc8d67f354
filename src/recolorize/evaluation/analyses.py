"""The paper's analyses of its latent spaces (``recolorize analyse {table3,fig4,fig5,w0}``).

- ``table3`` (section 4.3.3, Table 3): how well each latent space represents colour changes. Colour-augmented
  pairs (I_in, I_out), made exactly as in stage-1 training (:class:`recolorize.data.pairs.ColourPairDataset`),
  are reconstructed by the online scheme of SpaceEdit: the 1d code of G is optimised from E_w(I_in, I_out)
  (:func:`recolorize.optimize.optimise_code`), then the 20 maps of G' from the 1d result
  (:func:`recolorize.optimize.optimise_maps`). Reported: mean MAE (0-255) of G(I_in, E_w(I_in, I_out))
  (encoder only), of the 1d optimum and of the 2d optimum, beside the identity MAE(I_in, I_out).
  Paper: 8.68 (finetuned G) and 5.06 (G'); 11.2 for the original SpaceEdit G, which we do not have.
- ``fig4`` (section 3.3, Figure 4): nearest neighbours of a few query images by cosine similarity of
  w0 = E_w(I, I) versus by colour-histogram intersection (:func:`recolorize.evaluation.metrics.his`).
- ``fig5`` (section 3.3, eq. 3, Figure 5): self-similarity heatmap H(j) = <W0(i), W0(j)> (cosine) of
  W0 = E_W(I) for a query point i, beside the same heatmap of VGG16 relu2_2 features. Quantified by the
  correlation of each heatmap with colour closeness to the query (-Delta E76 in CIE Lab).
- ``w0`` (section 3.3): MAE (0-255) of G(I, w0_I) with the image's own code versus codes of other images
  (paper: 1.89 vs 2.85 over 1k images), and how the error falls as the two codes get more similar.

Images are centre squares at the model's working resolution (``model.config.resolution``). Each analysis
writes ``<name>.png``, ``<name>.json`` (all numbers and settings) and ``<name>.md`` into the output folder.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from skimage.color import rgb2lab
from tqdm import tqdm

from recolorize.data.folders import Photo, discover_photos
from recolorize.errors import UserError
from recolorize.evaluation.grids import contact_sheet, save_png
from recolorize.evaluation.metrics import his
from recolorize.io_utils import atomic_write
from recolorize.networks.model import RecolorModel
from recolorize.optimize import optimise_code, optimise_maps

__all__ = [
    "AnalysisOptions",
    "Analysis",
    "ANALYSES",
    "get_analysis",
    "select_photos",
    "load_square",
    "load_images",
    "Table3Numbers",
    "compute_table3",
    "plot_table3",
    "table3_markdown",
    "table3",
    "fig4",
    "fig5",
    "w0_reconstruction",
    "cosine_matrix",
    "histogram_matrix",
    "self_similarity",
]

logger = logging.getLogger(__name__)

#: Numbers the paper reports, written beside ours.
PAPER = MappingProxyType(
    {
        "table3": {"G_theta (SpaceEdit)": 11.2, "G_theta' (1d, finetuned)": 8.68, "G'_theta' (2d)": 5.06},
        "w0": {"own": 1.89, "others": 2.85},
    }
)


@dataclass(frozen=True)
class AnalysisOptions:
    """Settings shared by the analyses (each uses the ones it needs).

    n: number of images (pairs for table3); None = the analysis's default. seed: image choice, colour
    augmentation and optimisation. batch: images per forward pass. steps_code / steps_maps / lr: Adam steps
    and learning rate of the online optimisation (table3). k / queries: neighbours shown and query images
    (fig4). point: fig5's query (row, col) as fractions of the image, None = the most colourful cell.
    show: images drawn in fig5. others: other images' codes tried per image (w0).
    """

    n: int | None = None
    seed: int = 0
    batch: int = 8
    steps_code: int = 200
    steps_maps: int = 200
    lr: float = 0.01
    k: int = 5
    queries: int = 3
    point: tuple[float, float] | None = None
    show: int = 4
    others: int = 4


# ------------------------------------------------------------------------------------------- images


def select_photos(images_dir: str | os.PathLike[str], n: int, seed: int) -> list[Photo]:
    """``n`` photos (all when fewer) chosen at random with ``seed`` from ``images_dir``, in path order."""
    if n < 1:
        raise UserError(f"--n must be at least 1, got {n}")
    photos = discover_photos([images_dir])
    if n >= len(photos):
        if n > len(photos):
            logger.warning("asked for %d images, %s has %d: using all", n, images_dir, len(photos))
        return photos
    chosen = np.random.default_rng(seed).choice(len(photos), size=n, replace=False)
    return [photos[i] for i in sorted(int(i) for i in chosen)]


def load_square(path: Path, resolution: int) -> torch.Tensor:
    """The centre square of a photo, resized to (3, R, R) float32 in [0, 1] (antialiased)."""
    from recolorize.imaging import load_image, resize_for_network

    rgb = load_image(path).rgb
    height, width = rgb.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = np.ascontiguousarray(rgb[top : top + side, left : left + side])
    tensor = torch.from_numpy(square).permute(2, 0, 1)[None]
    return resize_for_network(tensor, resolution)[0].contiguous()


def load_images(photos: Sequence[Photo], resolution: int) -> torch.Tensor:
    """(N, 3, R, R) centre squares of ``photos``."""
    return torch.stack([load_square(p.image, resolution) for p in tqdm(photos, desc="load", unit="img")])


def _to_numpy(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) tensor -> (H, W, 3) float32 in [0, 1]."""
    return image.detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy().astype(np.float32)


def _mae255(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image MAE on the 0-255 scale of (B, 3, H, W) images (output clipped to [0, 1]), shape (B,)."""
    return (output.clamp(0, 1) - target).abs().flatten(1).mean(1) * 255.0


def _batches(n: int, batch: int) -> list[slice]:
    return [slice(i, min(i + batch, n)) for i in range(0, n, max(1, batch))]


def _device(model: RecolorModel) -> torch.device:
    return next(model.parameters()).device


def _write_numbers(out: Path, name: str, numbers: Mapping[str, Any], markdown: str) -> tuple[Path, Path]:
    json_path, md_path = out / f"{name}.json", out / f"{name}.md"
    with atomic_write(json_path) as tmp:
        tmp.write_text(json.dumps(_json_safe(numbers), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    with atomic_write(md_path) as tmp:
        tmp.write_text(markdown, encoding="utf-8")
    return json_path, md_path


def _figure(rows: int, cols: int, size: tuple[float, float]) -> tuple[Figure, np.ndarray]:
    """A matplotlib Figure on the Agg canvas (no pyplot, no global backend) and its (rows, cols) axes."""
    fig = Figure(figsize=size, layout="constrained")
    return fig, np.asarray(fig.subplots(rows, cols, squeeze=False))


def _save_figure(fig: Figure, path: Path) -> Path:
    with atomic_write(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return path


def _json_safe(value: Any) -> Any:
    """NaN and infinities become null so that the file is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _settings(options: AnalysisOptions, n: int, model: RecolorModel, images_dir: Path) -> dict[str, Any]:
    return {
        "images": str(images_dir),
        "n": n,
        "resolution": model.config.resolution,
        "config": model.config.name,
        **{k: v for k, v in asdict(options).items() if k != "n"},
    }


# ------------------------------------------------------------------------------------------- table 3


@dataclass
class Table3Numbers:
    """What :func:`compute_table3` measured: per-pair MAE (0-255) of each latent space, their means, and
    the mean L1 (0-255) per Adam step of the 1d and the 2d optimisation."""

    photos: list[Photo]
    per_pair: dict[str, list[float]]
    means: dict[str, float]
    curve_1d: np.ndarray
    curve_2d: np.ndarray

    @property
    def n(self) -> int:
        return len(next(iter(self.per_pair.values())))


def compute_table3(model: RecolorModel, images_dir: Path, options: AnalysisOptions) -> Table3Numbers:
    """Reconstruct colour-augmented pairs (made as in stage 1) with E_w alone, the optimised 1d code of G
    and the optimised 20 maps of G'; no file is written."""
    from recolorize.data.pairs import ColourPairDataset

    n = options.n if options.n is not None else 100
    device = _device(model)
    resolution = model.config.resolution
    photos = select_photos(images_dir, n, options.seed)
    dataset = ColourPairDataset(photos, resolution, seed=options.seed)
    torch.manual_seed(options.seed)

    per_pair: dict[str, list[float]] = {"identity": [], "encoder": [], "online_1d": [], "online_2d": []}
    curves_1d: list[np.ndarray] = []
    curves_2d: list[np.ndarray] = []
    for part in tqdm(_batches(len(dataset), options.batch), desc="table3", unit="batch"):
        items = [dataset[i] for i in range(part.start, part.stop)]  # (I_in, I_out) as in stage 1
        image_in = torch.stack([it["input"] for it in items]).to(device)
        image_out = torch.stack([it["output"] for it in items]).to(device)
        # as in stage 1: the pointwise G also reads the pair's prior (the MKL map I_in -> I_out), no hint
        conditioning = model.pair_conditioning(image_in, image_out)
        model.generator.requires_grad_(False)

        def generator(image: torch.Tensor, latents, conditioning=conditioning) -> torch.Tensor:
            return model.generate(image, latents, conditioning)

        with torch.no_grad():
            code = model.pair_code(image_in, image_out)  # w = E_w(I_in, I_out)
            encoder_out = generator(image_in, code)
        result_1d = optimise_code(generator, image_in, image_out, code, options.steps_code, options.lr)
        result_2d = optimise_maps(
            generator, image_in, image_out, result_1d.latents, options.steps_maps, options.lr
        )
        per_pair["identity"] += _mae255(image_in, image_out).tolist()
        per_pair["encoder"] += _mae255(encoder_out, image_out).tolist()
        per_pair["online_1d"] += _mae255(result_1d.output, image_out).tolist()
        per_pair["online_2d"] += _mae255(result_2d.output, image_out).tolist()
        weight = (part.stop - part.start) / len(dataset)
        curves_1d.append(np.asarray(result_1d.history) * 255.0 * weight)
        curves_2d.append(np.asarray(result_2d.history) * 255.0 * weight)

    return Table3Numbers(
        photos=photos,
        per_pair=per_pair,
        means={key: float(np.mean(values)) for key, values in per_pair.items()},
        curve_1d=np.sum(curves_1d, axis=0) if options.steps_code else np.zeros(0),
        curve_2d=np.sum(curves_2d, axis=0) if options.steps_maps else np.zeros(0),
    )


def plot_table3(numbers: Table3Numbers, path: Path) -> Path:
    """The mean MAE per latent space as bars, beside the optimisation curves; written to ``path``."""
    means, curve_1d, curve_2d = numbers.means, numbers.curve_1d, numbers.curve_2d
    fig, axes = _figure(1, 2, (11, 4))
    bars, curves = axes[0]
    keys = list(means)
    bars.bar(range(len(keys)), [means[k] for k in keys], color=["#999", "#6a9fd4", "#2f6db5", "#c0392b"])
    bars.set_xticks(range(len(keys)), ["identity", "E_w only", "G (1d)", "G' (2d)"])
    bars.set_ylabel("MAE (0-255)")
    bars.set_title(f"Reconstruction of {numbers.n} colour-augmented pairs")
    for i, k in enumerate(keys):
        bars.text(i, means[k], f"{means[k]:.2f}", ha="center", va="bottom")
    steps = np.arange(len(curve_1d) + len(curve_2d))
    if len(curve_1d):
        curves.plot(steps[: len(curve_1d)], curve_1d, label="G: code w")
    if len(curve_2d):
        curves.plot(steps[len(curve_1d) :], curve_2d, label="G': 20 maps")
    curves.set_xlabel("Adam step")
    curves.set_ylabel("mean L1 (0-255)")
    curves.set_title("Online optimisation")
    curves.legend()
    return _save_figure(fig, path)


def table3_markdown(numbers: Table3Numbers, options: AnalysisOptions, resolution: int) -> str:
    """``table3.md``: ours beside the paper's numbers (:data:`PAPER`)."""
    means = numbers.means
    paper = PAPER["table3"]
    paper_spaceedit = paper["G_theta (SpaceEdit)"]
    paper_1d, paper_2d = paper["G_theta' (1d, finetuned)"], paper["G'_theta' (2d)"]
    return "\n".join(
        [
            f"# Table 3: reconstruction error of {numbers.n} colour-augmented pairs (MAE, 0-255)",
            "",
            "| latent space | ours | paper |",
            "|---|---|---|",
            f"| identity (no change) | {means['identity']:.2f} | – |",
            f"| G, encoder only: G(I_in, E_w(I_in, I_out)) | {means['encoder']:.2f} | – |",
            f"| G (1d code, online) | {means['online_1d']:.2f} | {paper_1d} |",
            f"| G' (2d maps, online) | {means['online_2d']:.2f} | {paper_2d} |",
            "",
            f"Online optimisation: Adam, lr {options.lr}, {options.steps_code} steps on w from "
            f"E_w(I_in, I_out), then {options.steps_maps} steps on the 20 maps of G' from the 1d result. "
            f"Pairs made as in stage-1 training, seed {options.seed}, {resolution} px. "
            f"The paper's G_theta ({paper_spaceedit}) is the original SpaceEdit generator, "
            "not available here.",
            "",
        ]
    )


def table3(model: RecolorModel, images_dir: Path, out: Path, options: AnalysisOptions) -> dict[str, Any]:
    """Table 3: MAE (0-255) of reconstructing colour-augmented pairs with the 1d G and the 2d G'.

    Computes (:func:`compute_table3`), plots (:func:`plot_table3`) and writes table3.json and table3.md.
    """
    numbers = compute_table3(model, images_dir, options)
    png = plot_table3(numbers, out / "table3.png")
    labels = {
        "identity": "identity MAE(I_in, I_out)",
        "encoder": "G(I_in, E_w(I_in, I_out)), no optimisation",
        "online_1d": f"G, 1d code w optimised ({options.steps_code} steps)",
        "online_2d": f"G', 20 maps optimised from the 1d result ({options.steps_maps} steps)",
    }
    record = {
        "analysis": "table3",
        "settings": _settings(options, numbers.n, model, images_dir),
        "mae_255": numbers.means,
        "labels": labels,
        "paper_mae_255": dict(PAPER["table3"]),
        "per_pair": numbers.per_pair,
        "curve_1d": numbers.curve_1d.tolist(),
        "curve_2d": numbers.curve_2d.tolist(),
        "images": [str(p.image) for p in numbers.photos],
    }
    markdown = table3_markdown(numbers, options, model.config.resolution)
    json_path, md_path = _write_numbers(out, "table3", record, markdown)
    logger.info("table3: %s", ", ".join(f"{k} {v:.2f}" for k, v in numbers.means.items()))
    return {"png": png, "json": json_path, "md": md_path, "mae_255": numbers.means}


# -------------------------------------------------------------------------------------------- fig 4


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


def _self_codes(model: RecolorModel, images: torch.Tensor, batch: int) -> torch.Tensor:
    """w0 = E_w(I, I) for every image, (N, C)."""
    device = _device(model)
    with torch.no_grad():
        return torch.cat([model.self_code(images[s].to(device)).cpu() for s in _batches(len(images), batch)])


def _neighbours(matrix: np.ndarray, query: int, k: int) -> list[int]:
    order = [int(j) for j in np.argsort(-matrix[query], kind="stable") if j != query]
    return order[:k]


def _upper(matrix: np.ndarray) -> np.ndarray:
    return matrix[np.triu_indices(len(matrix), k=1)]


def _rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman correlation of two 1d arrays (ranks with ties broken by order); nan when undefined."""
    if len(a) < 2:
        return math.nan
    ra = np.argsort(np.argsort(a, kind="stable"), kind="stable").astype(np.float64)
    rb = np.argsort(np.argsort(b, kind="stable"), kind="stable").astype(np.float64)
    return _pearson(ra, rb)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if len(a) < 2 or a.std() == 0 or b.std() == 0:
        return math.nan
    return float(np.corrcoef(a, b)[0, 1])


def fig4(model: RecolorModel, images_dir: Path, out: Path, options: AnalysisOptions) -> dict[str, Any]:
    """Figure 4: neighbours of query images by w0 cosine similarity versus by colour histogram."""
    n = options.n if options.n is not None else 60
    photos = select_photos(images_dir, n, options.seed)
    if len(photos) < 2:
        raise UserError(f"fig4 needs at least 2 images, {images_dir} gave {len(photos)}")
    images = load_images(photos, model.config.resolution)
    arrays = [_to_numpy(im) for im in images]
    w0_sim = cosine_matrix(_self_codes(model, images, options.batch))
    hist_sim = histogram_matrix(arrays)
    k = max(1, min(options.k, len(photos) - 1))
    queries = np.linspace(0, len(photos) - 1, num=min(options.queries, len(photos))).round().astype(int)
    queries = list(dict.fromkeys(int(q) for q in queries))

    rows, titles, listed = [], [], []
    for q in queries:
        by_w0, by_hist = _neighbours(w0_sim, q, k), _neighbours(hist_sim, q, k)
        rows.append([("query", arrays[q])] + [(f"w0 cos {w0_sim[q, j]:.3f}", arrays[j]) for j in by_w0])
        rows.append([("query", arrays[q])] + [(f"HIS {hist_sim[q, j]:.3f}", arrays[j]) for j in by_hist])
        titles += [f"{photos[q].image.stem}: w0", f"{photos[q].image.stem}: histogram"]
        listed.append(
            {
                "query": str(photos[q].image),
                "w0": [{"image": str(photos[j].image), "cosine": w0_sim[q, j]} for j in by_w0],
                "histogram": [{"image": str(photos[j].image), "his": hist_sim[q, j]} for j in by_hist],
                "overlap": len(set(by_w0) & set(by_hist)) / k,
            }
        )
    png = save_png(
        contact_sheet(rows, titles, height=min(160, model.config.resolution * 2)), out / "fig4.png"
    )
    correlation = _rank_correlation(_upper(w0_sim), _upper(hist_sim))
    numbers = {
        "analysis": "fig4",
        "settings": _settings(options, len(photos), model, images_dir),
        "k": k,
        "queries": listed,
        "spearman_w0_vs_histogram": correlation,
        "mean_topk_overlap": float(np.mean([q["overlap"] for q in listed])),
        "images": [str(p.image) for p in photos],
        "w0_cosine": w0_sim.tolist(),
        "histogram_his": hist_sim.tolist(),
    }
    md_lines = [
        f"# Figure 4: neighbours by w0 versus by colour histogram ({len(photos)} images)",
        "",
        "Each query's top-k neighbours by cosine similarity of w0 = E_w(I, I), and by joint RGB histogram "
        "intersection (HIS); see fig4.png (scores above each image).",
        "",
        f"- Spearman correlation of the two similarities over all image pairs: {correlation:.3f}",
        f"- Mean overlap of the two top-{k} lists: {numbers['mean_topk_overlap']:.2f}",
        "",
        "| query | top by w0 (cosine) | top by histogram (HIS) |",
        "|---|---|---|",
    ]
    for q in listed:
        w0_text = ", ".join(f"{Path(e['image']).stem} {e['cosine']:.3f}" for e in q["w0"])
        hist_text = ", ".join(f"{Path(e['image']).stem} {e['his']:.3f}" for e in q["histogram"])
        md_lines.append(f"| {Path(q['query']).stem} | {w0_text} | {hist_text} |")
    json_path, md_path = _write_numbers(out, "fig4", numbers, "\n".join(md_lines) + "\n")
    return {"png": png, "json": json_path, "md": md_path, "spearman": correlation}


# -------------------------------------------------------------------------------------------- fig 5


def self_similarity(features: torch.Tensor, point: tuple[int, int]) -> np.ndarray:
    """Eq. 3: H(j) = cosine(F(i), F(j)) for a (C, h, w) feature map and query cell i = (row, col)."""
    unit = F.normalize(features.float(), dim=0)
    query = unit[:, point[0], point[1]]
    return torch.einsum("c,chw->hw", query, unit).cpu().numpy().astype(np.float64)


def _colourful_point(image: np.ndarray, grid: int) -> tuple[float, float]:
    """Centre (row, col) fractions of the cell of a grid x grid partition with the highest mean Lab chroma."""
    lab = rgb2lab(image)
    chroma = np.hypot(lab[..., 1], lab[..., 2])
    h, w = chroma.shape
    cells = chroma[: h - h % grid, : w - w % grid].reshape(grid, h // grid, grid, w // grid).mean(axis=(1, 3))
    row, col = np.unravel_index(int(np.argmax(cells)), cells.shape)
    return (row + 0.5) / grid, (col + 0.5) / grid


def _cell(point: tuple[float, float], shape: tuple[int, int]) -> tuple[int, int]:
    return (
        min(shape[0] - 1, max(0, int(point[0] * shape[0]))),
        min(shape[1] - 1, max(0, int(point[1] * shape[1]))),
    )


def _upsample(heat: np.ndarray, size: int) -> np.ndarray:
    tensor = torch.from_numpy(heat).float()[None, None]
    return F.interpolate(tensor, size=(size, size), mode="bilinear", align_corners=False)[0, 0].numpy()


def fig5(model: RecolorModel, images_dir: Path, out: Path, options: AnalysisOptions) -> dict[str, Any]:
    """Figure 5: W0 self-similarity heatmap (eq. 3) versus VGG16 relu2_2 for a query point."""
    from recolorize.networks.backbones import VGG16Features

    n = options.n if options.n is not None else 4
    photos = select_photos(images_dir, n, options.seed)
    resolution = model.config.resolution
    images = load_images(photos, resolution)
    device = _device(model)
    vgg = VGG16Features(last="relu2_2").to(device)
    shown = min(options.show, len(photos))
    grid = max(1, resolution // 16)

    results, figure_rows = [], []
    for index in tqdm(range(len(photos)), desc="fig5", unit="img"):
        image = images[index : index + 1].to(device)
        array = _to_numpy(images[index])
        point = options.point if options.point is not None else _colourful_point(array, grid)
        with torch.no_grad():
            w0_maps = model.self_maps(image)[0]  # W0 = E_W(I), (C, R/16, R/16)
            vgg_maps = vgg(image, names=("relu2_2",))[0][0]  # (128, R/2, R/2)
        heat_w0 = _upsample(self_similarity(w0_maps, _cell(point, w0_maps.shape[-2:])), resolution)
        heat_vgg = _upsample(self_similarity(vgg_maps, _cell(point, vgg_maps.shape[-2:])), resolution)
        # colour closeness to the query: -Delta E76 to the query's mean Lab colour (3x3 px around it)
        lab = rgb2lab(array)
        row, col = _cell(point, lab.shape[:2])
        query_lab = lab[max(0, row - 1) : row + 2, max(0, col - 1) : col + 2].reshape(-1, 3).mean(0)
        closeness = -np.linalg.norm(lab - query_lab, axis=-1)
        entry = {
            "image": str(photos[index].image),
            "point": [float(point[0]), float(point[1])],
            "w0_colour_correlation": _pearson(heat_w0, closeness),
            "vgg_colour_correlation": _pearson(heat_vgg, closeness),
        }
        results.append(entry)
        if index < shown:
            figure_rows.append((array, heat_w0, heat_vgg, (row, col), entry))

    fig, axes = _figure(len(figure_rows), 3, (9, 3 * len(figure_rows)))
    for r, (array, heat_w0, heat_vgg, (row, col), entry) in enumerate(figure_rows):
        panels = [
            (array, f"{Path(entry['image']).stem}: query"),
            (heat_w0, f"W0 (E_W), r = {entry['w0_colour_correlation']:.2f}"),
            (heat_vgg, f"VGG relu2_2, r = {entry['vgg_colour_correlation']:.2f}"),
        ]
        for c, (data, title) in enumerate(panels):
            ax = axes[r][c]
            ax.imshow(data, cmap=None if c == 0 else "inferno")
            ax.plot([col], [row], marker="+", color="cyan", markersize=14, markeredgewidth=2)
            ax.set_title(title, fontsize=9)
            ax.axis("off")
    fig.suptitle("Self-similarity to the query (+), eq. 3; r: correlation with colour closeness", fontsize=10)
    png = _save_figure(fig, out / "fig5.png")

    mean_w0 = float(np.nanmean([e["w0_colour_correlation"] for e in results]))
    mean_vgg = float(np.nanmean([e["vgg_colour_correlation"] for e in results]))
    numbers = {
        "analysis": "fig5",
        "settings": _settings(options, len(photos), model, images_dir),
        "mean_w0_colour_correlation": mean_w0,
        "mean_vgg_colour_correlation": mean_vgg,
        "per_image": results,
    }
    md = "\n".join(
        [
            f"# Figure 5: W0 versus VGG16 relu2_2 self-similarity ({len(photos)} images)",
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
    json_path, md_path = _write_numbers(out, "fig5", numbers, md)
    return {"png": png, "json": json_path, "md": md_path, "w0": mean_w0, "vgg": mean_vgg}


# ----------------------------------------------------------------------------------------------- w0


def w0_reconstruction(
    model: RecolorModel, images_dir: Path, out: Path, options: AnalysisOptions
) -> dict[str, Any]:
    """Section 3.3: MAE (0-255) of G(I, w0) with the image's own w0 versus other images' w0."""
    n = options.n if options.n is not None else 200
    photos = select_photos(images_dir, n, options.seed)
    if len(photos) < 2:
        raise UserError(f"the w0 analysis needs at least 2 images, {images_dir} gave {len(photos)}")
    images = load_images(photos, model.config.resolution)
    device = _device(model)
    codes = _self_codes(model, images, options.batch)
    similarity = cosine_matrix(codes)
    rng = np.random.default_rng(options.seed)
    others = max(1, min(options.others, len(photos) - 1))
    jobs = [(i, i) for i in range(len(photos))]  # (image, code owner)
    for i in range(len(photos)):
        candidates = np.array([j for j in range(len(photos)) if j != i])
        jobs += [(i, int(j)) for j in rng.choice(candidates, size=others, replace=False)]
    errors = np.zeros(len(jobs))
    with torch.no_grad():
        for part in tqdm(_batches(len(jobs), options.batch), desc="w0", unit="batch"):
            idx = jobs[part]
            image = images[[i for i, _ in idx]].to(device)
            code = codes[[j for _, j in idx]].to(device)
            errors[part] = _mae255(model.generator(image, code), image).cpu().numpy()
    own = errors[: len(photos)]
    other = errors[len(photos) :]
    other_sim = np.array([similarity[i, j] for i, j in jobs[len(photos) :]])
    per_image_other = other.reshape(len(photos), others).mean(1)
    stats = {
        "own_mae_255": float(own.mean()),
        "others_mae_255": float(other.mean()),
        "fraction_own_better": float(np.mean(own < per_image_other)),
        "spearman_error_vs_w0_cosine": _rank_correlation(other, other_sim),
    }

    fig, axes = _figure(1, 2, (11, 4))
    hist_ax, scatter = axes[0]
    bins = np.linspace(0, max(float(errors.max()), 1e-6), 30)
    hist_ax.hist(own, bins=bins, alpha=0.6, label=f"own w0 (mean {stats['own_mae_255']:.2f})")
    hist_ax.hist(other, bins=bins, alpha=0.6, label=f"other images' w0 (mean {stats['others_mae_255']:.2f})")
    hist_ax.set_xlabel("MAE of G(I, w0) vs I (0-255)")
    hist_ax.set_ylabel("count")
    hist_ax.legend()
    hist_ax.set_title("Self-reconstruction with own / other codes")
    scatter.scatter(other_sim, other, s=8, alpha=0.6)
    scatter.set_xlabel("cosine(w0 of I, w0 used)")
    scatter.set_ylabel("MAE (0-255)")
    scatter.set_title(f"Error vs code similarity (Spearman {stats['spearman_error_vs_w0_cosine']:.2f})")
    png = _save_figure(fig, out / "w0.png")

    numbers = {
        "analysis": "w0",
        "settings": _settings(options, len(photos), model, images_dir),
        **stats,
        "paper_mae_255": dict(PAPER["w0"]),
        "others_per_image": others,
        "own": own.tolist(),
        "others": [
            {"image": i, "code_of": j, "mae_255": float(e)}
            for (i, j), e in zip(jobs[len(photos) :], other, strict=True)
        ],
        "images": [str(p.image) for p in photos],
    }
    md = "\n".join(
        [
            f"# w0: self-reconstruction with the image's own code versus others' ({len(photos)} images)",
            "",
            "| code used in G(I, w0) | MAE (0-255), ours | paper |",
            "|---|---|---|",
            f"| own w0 = E_w(I, I) | {stats['own_mae_255']:.2f} | {PAPER['w0']['own']} |",
            f"| another image's w0 ({others} per image) | {stats['others_mae_255']:.2f} | "
            f"{PAPER['w0']['others']} |",
            "",
            f"- Images reconstructed better with their own code: {100 * stats['fraction_own_better']:.0f}%",
            f"- Spearman correlation of the error with cosine(w0_I, w0_other): "
            f"{stats['spearman_error_vs_w0_cosine']:.3f} (negative: closer codes reconstruct better)",
            "",
        ]
    )
    json_path, md_path = _write_numbers(out, "w0", numbers, md)
    logger.info("w0: own %.2f, others %.2f", stats["own_mae_255"], stats["others_mae_255"])
    return {"png": png, "json": json_path, "md": md_path, **stats}


# ---------------------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Analysis:
    """A registered analysis: ``run(model, images_dir, out_dir, options)`` -> paths and headline numbers."""

    name: str
    run: Callable[[RecolorModel, Path, Path, AnalysisOptions], dict[str, Any]]
    description: str


ANALYSES: Mapping[str, Analysis] = MappingProxyType(
    {
        "table3": Analysis("table3", table3, "Table 3: reconstruction MAE of the 1d G and the 2d G' latents"),
        "fig4": Analysis("fig4", fig4, "Figure 4: neighbours by w0 cosine versus colour histogram"),
        "fig5": Analysis("fig5", fig5, "Figure 5: W0 versus VGG relu2_2 self-similarity heatmaps (eq. 3)"),
        "w0": Analysis("w0", w0_reconstruction, "Section 3.3: G(I, w0) error with own versus others' w0"),
    }
)


def get_analysis(name: str) -> Analysis:
    """Look up an analysis; an unknown name is a :class:`UserError` listing the known ones."""
    try:
        return ANALYSES[name]
    except KeyError:
        raise UserError(f"unknown analysis {name!r}; choose from {', '.join(ANALYSES)}") from None
