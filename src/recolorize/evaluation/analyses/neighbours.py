"""Figure 4 (section 3.3): the neighbours of query images by w0 cosine similarity versus by colour
histogram (:func:`compute_fig4`), then the contact sheet, markdown and files (:func:`fig4`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recolorize.data.folders import Photo
from recolorize.errors import UserError
from recolorize.evaluation.analyses.common import (
    AnalysisOptions,
    load_images,
    select_photos,
    settings_record,
    to_numpy,
)
from recolorize.evaluation.analyses.report import write_numbers
from recolorize.evaluation.analyses.similarity import (
    cosine_matrix,
    histogram_matrix,
    neighbours,
    rank_correlation,
    self_codes,
    upper_triangle,
)
from recolorize.evaluation.grids import contact_sheet, save_png
from recolorize.networks.model import RecolorModel

__all__ = ["Fig4Numbers", "compute_fig4", "fig4_queries", "plot_fig4", "fig4_markdown", "fig4"]


@dataclass
class Fig4Numbers:
    """What :func:`compute_fig4` measured: the images, both (N, N) similarity matrices, k and the queries."""

    photos: list[Photo]
    arrays: list[np.ndarray]
    w0_sim: np.ndarray
    hist_sim: np.ndarray
    k: int
    queries: list[int]


def compute_fig4(model: RecolorModel, images_dir: Path, options: AnalysisOptions) -> Fig4Numbers:
    """w0 cosine and histogram-intersection similarities of every image pair; no file is written."""
    n = options.n if options.n is not None else 60
    photos = select_photos(images_dir, n, options.seed)
    if len(photos) < 2:
        raise UserError(f"fig4 needs at least 2 images, {images_dir} gave {len(photos)}")
    images = load_images(photos, model.config.resolution)
    arrays = [to_numpy(im) for im in images]
    w0_sim = cosine_matrix(self_codes(model, images, options.batch))
    hist_sim = histogram_matrix(arrays)
    k = max(1, min(options.k, len(photos) - 1))
    queries = np.linspace(0, len(photos) - 1, num=min(options.queries, len(photos))).round().astype(int)
    queries = list(dict.fromkeys(int(q) for q in queries))
    return Fig4Numbers(photos, arrays, w0_sim, hist_sim, k, queries)


def fig4_queries(numbers: Fig4Numbers) -> list[dict[str, Any]]:
    """Each query's top-k neighbours by w0 and by histogram, with their scores and the lists' overlap."""
    photos, w0_sim, hist_sim, k = numbers.photos, numbers.w0_sim, numbers.hist_sim, numbers.k
    listed = []
    for q in numbers.queries:
        by_w0, by_hist = neighbours(w0_sim, q, k), neighbours(hist_sim, q, k)
        listed.append(
            {
                "query": str(photos[q].image),
                "w0": [{"image": str(photos[j].image), "cosine": w0_sim[q, j]} for j in by_w0],
                "histogram": [{"image": str(photos[j].image), "his": hist_sim[q, j]} for j in by_hist],
                "overlap": len(set(by_w0) & set(by_hist)) / k,
            }
        )
    return listed


def plot_fig4(numbers: Fig4Numbers, path: Path, height: int) -> Path:
    """Two rows per query (its neighbours by w0, then by histogram), scores above each image."""
    arrays, w0_sim, hist_sim, k = numbers.arrays, numbers.w0_sim, numbers.hist_sim, numbers.k
    rows, titles = [], []
    for q in numbers.queries:
        by_w0, by_hist = neighbours(w0_sim, q, k), neighbours(hist_sim, q, k)
        rows.append([("query", arrays[q])] + [(f"w0 cos {w0_sim[q, j]:.3f}", arrays[j]) for j in by_w0])
        rows.append([("query", arrays[q])] + [(f"HIS {hist_sim[q, j]:.3f}", arrays[j]) for j in by_hist])
        stem = numbers.photos[q].image.stem
        titles += [f"{stem}: w0", f"{stem}: histogram"]
    return save_png(contact_sheet(rows, titles, height=height), path)


def fig4_markdown(record: dict[str, Any]) -> str:
    """``fig4.md``: the two similarities' agreement and each query's neighbours."""
    k, correlation = record["k"], record["spearman_w0_vs_histogram"]
    md_lines = [
        f"# Figure 4: neighbours by w0 versus by colour histogram ({len(record['images'])} images)",
        "",
        "Each query's top-k neighbours by cosine similarity of w0 = E_w(I, I), and by joint RGB histogram "
        "intersection (HIS); see fig4.png (scores above each image).",
        "",
        f"- Spearman correlation of the two similarities over all image pairs: {correlation:.3f}",
        f"- Mean overlap of the two top-{k} lists: {record['mean_topk_overlap']:.2f}",
        "",
        "| query | top by w0 (cosine) | top by histogram (HIS) |",
        "|---|---|---|",
    ]
    for q in record["queries"]:
        w0_text = ", ".join(f"{Path(e['image']).stem} {e['cosine']:.3f}" for e in q["w0"])
        hist_text = ", ".join(f"{Path(e['image']).stem} {e['his']:.3f}" for e in q["histogram"])
        md_lines.append(f"| {Path(q['query']).stem} | {w0_text} | {hist_text} |")
    return "\n".join(md_lines) + "\n"


def fig4(model: RecolorModel, images_dir: Path, out: Path, options: AnalysisOptions) -> dict[str, Any]:
    """Figure 4: neighbours of query images by w0 cosine similarity versus by colour histogram."""
    numbers = compute_fig4(model, images_dir, options)
    photos = numbers.photos
    listed = fig4_queries(numbers)
    png = plot_fig4(numbers, out / "fig4.png", height=min(160, model.config.resolution * 2))
    correlation = rank_correlation(upper_triangle(numbers.w0_sim), upper_triangle(numbers.hist_sim))
    record = {
        "analysis": "fig4",
        "settings": settings_record(options, len(photos), model, images_dir),
        "k": numbers.k,
        "queries": listed,
        "spearman_w0_vs_histogram": correlation,
        "mean_topk_overlap": float(np.mean([q["overlap"] for q in listed])),
        "images": [str(p.image) for p in photos],
        "w0_cosine": numbers.w0_sim.tolist(),
        "histogram_his": numbers.hist_sim.tolist(),
    }
    json_path, md_path = write_numbers(out, "fig4", record, fig4_markdown(record))
    return {"png": png, "json": json_path, "md": md_path, "spearman": correlation}
