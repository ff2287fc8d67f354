"""The w0 analysis (section 3.3): MAE (0-255) of G(I, w0) with the image's own code versus other images'
codes, and the error against code similarity (:func:`compute_w0`), then its plot, markdown and files
(:func:`w0_reconstruction`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from recolorize.data.folders import Photo
from recolorize.errors import UserError
from recolorize.evaluation.analyses.common import (
    PAPER,
    AnalysisOptions,
    batches,
    load_images,
    mae255,
    model_device,
    select_photos,
    settings_record,
)
from recolorize.evaluation.analyses.report import new_figure, save_figure, write_numbers
from recolorize.evaluation.analyses.similarity import cosine_matrix, rank_correlation, self_codes
from recolorize.networks.model import RecolorModel

__all__ = ["W0Numbers", "compute_w0", "plot_w0", "w0_markdown", "w0_reconstruction"]

logger = logging.getLogger(__name__)


@dataclass
class W0Numbers:
    """What :func:`compute_w0` measured.

    jobs: (image, code owner) pairs, each image with its own code first, then ``others`` per image.
    errors: MAE (0-255) of each job; other_sim: cosine(w0 of the image, w0 used) of the other-code jobs.
    """

    photos: list[Photo]
    others: int
    jobs: list[tuple[int, int]]
    errors: np.ndarray
    other_sim: np.ndarray
    stats: dict[str, float]

    @property
    def own(self) -> np.ndarray:
        return self.errors[: len(self.photos)]

    @property
    def other(self) -> np.ndarray:
        return self.errors[len(self.photos) :]


def compute_w0(model: RecolorModel, images_dir: Path, options: AnalysisOptions) -> W0Numbers:
    """Reconstruct each image with its own w0 and with ``options.others`` other images' codes."""
    n = options.n if options.n is not None else 200
    photos = select_photos(images_dir, n, options.seed)
    if len(photos) < 2:
        raise UserError(f"the w0 analysis needs at least 2 images, {images_dir} gave {len(photos)}")
    images = load_images(photos, model.config.resolution)
    device = model_device(model)
    codes = self_codes(model, images, options.batch)
    similarity = cosine_matrix(codes)
    rng = np.random.default_rng(options.seed)
    others = max(1, min(options.others, len(photos) - 1))
    jobs = [(i, i) for i in range(len(photos))]  # (image, code owner)
    for i in range(len(photos)):
        candidates = np.array([j for j in range(len(photos)) if j != i])
        jobs += [(i, int(j)) for j in rng.choice(candidates, size=others, replace=False)]
    errors = np.zeros(len(jobs))
    with torch.no_grad():
        for part in tqdm(batches(len(jobs), options.batch), desc="w0", unit="batch"):
            idx = jobs[part]
            image = images[[i for i, _ in idx]].to(device)
            code = codes[[j for _, j in idx]].to(device)
            errors[part] = mae255(model.generator(image, code), image).cpu().numpy()
    own = errors[: len(photos)]
    other = errors[len(photos) :]
    other_sim = np.array([similarity[i, j] for i, j in jobs[len(photos) :]])
    per_image_other = other.reshape(len(photos), others).mean(1)
    stats = {
        "own_mae_255": float(own.mean()),
        "others_mae_255": float(other.mean()),
        "fraction_own_better": float(np.mean(own < per_image_other)),
        "spearman_error_vs_w0_cosine": rank_correlation(other, other_sim),
    }
    return W0Numbers(photos, others, jobs, errors, other_sim, stats)


def plot_w0(numbers: W0Numbers, path: Path) -> Path:
    """Histograms of the own-code and other-code errors, beside the error against code similarity."""
    own, other, stats = numbers.own, numbers.other, numbers.stats
    fig, axes = new_figure(1, 2, (11, 4))
    hist_ax, scatter = axes[0]
    bins = np.linspace(0, max(float(numbers.errors.max()), 1e-6), 30)
    hist_ax.hist(own, bins=bins, alpha=0.6, label=f"own w0 (mean {stats['own_mae_255']:.2f})")
    hist_ax.hist(other, bins=bins, alpha=0.6, label=f"other images' w0 (mean {stats['others_mae_255']:.2f})")
    hist_ax.set_xlabel("MAE of G(I, w0) vs I (0-255)")
    hist_ax.set_ylabel("count")
    hist_ax.legend()
    hist_ax.set_title("Self-reconstruction with own / other codes")
    scatter.scatter(numbers.other_sim, other, s=8, alpha=0.6)
    scatter.set_xlabel("cosine(w0 of I, w0 used)")
    scatter.set_ylabel("MAE (0-255)")
    scatter.set_title(f"Error vs code similarity (Spearman {stats['spearman_error_vs_w0_cosine']:.2f})")
    return save_figure(fig, path)


def w0_markdown(numbers: W0Numbers) -> str:
    """``w0.md``: ours beside the paper's numbers (:data:`PAPER`)."""
    stats, others, n = numbers.stats, numbers.others, len(numbers.photos)
    return "\n".join(
        [
            f"# w0: self-reconstruction with the image's own code versus others' ({n} images)",
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


def w0_reconstruction(
    model: RecolorModel, images_dir: Path, out: Path, options: AnalysisOptions
) -> dict[str, Any]:
    """Section 3.3: MAE (0-255) of G(I, w0) with the image's own w0 versus other images' w0."""
    numbers = compute_w0(model, images_dir, options)
    photos, stats = numbers.photos, numbers.stats
    png = plot_w0(numbers, out / "w0.png")
    record = {
        "analysis": "w0",
        "settings": settings_record(options, len(photos), model, images_dir),
        **stats,
        "paper_mae_255": dict(PAPER["w0"]),
        "others_per_image": numbers.others,
        "own": numbers.own.tolist(),
        "others": [
            {"image": i, "code_of": j, "mae_255": float(e)}
            for (i, j), e in zip(numbers.jobs[len(photos) :], numbers.other, strict=True)
        ],
        "images": [str(p.image) for p in photos],
    }
    json_path, md_path = write_numbers(out, "w0", record, w0_markdown(numbers))
    logger.info("w0: own %.2f, others %.2f", stats["own_mae_255"], stats["others_mae_255"])
    return {"png": png, "json": json_path, "md": md_path, **stats}
