"""Table 3 (section 4.3.3): reconstruction MAE (0-255) of colour-augmented pairs with E_w alone, the
optimised 1d code of G and the optimised 20 maps of G' (:func:`compute_table3`), then its plot, markdown
and files (:func:`table3`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from recolorize.data.folders import Photo
from recolorize.evaluation.analyses.common import (
    PAPER,
    AnalysisOptions,
    batches,
    mae255,
    model_device,
    select_photos,
    settings_record,
)
from recolorize.evaluation.analyses.report import new_figure, save_figure, write_numbers
from recolorize.networks.model import RecolorModel
from recolorize.optimize import optimise_code, optimise_maps

__all__ = ["Table3Numbers", "compute_table3", "plot_table3", "table3_markdown", "table3"]

logger = logging.getLogger(__name__)


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
    device = model_device(model)
    resolution = model.config.resolution
    photos = select_photos(images_dir, n, options.seed)
    dataset = ColourPairDataset(photos, resolution, seed=options.seed)
    torch.manual_seed(options.seed)

    per_pair: dict[str, list[float]] = {"identity": [], "encoder": [], "online_1d": [], "online_2d": []}
    curves_1d: list[np.ndarray] = []
    curves_2d: list[np.ndarray] = []
    for part in tqdm(batches(len(dataset), options.batch), desc="table3", unit="batch"):
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
        per_pair["identity"] += mae255(image_in, image_out).tolist()
        per_pair["encoder"] += mae255(encoder_out, image_out).tolist()
        per_pair["online_1d"] += mae255(result_1d.output, image_out).tolist()
        per_pair["online_2d"] += mae255(result_2d.output, image_out).tolist()
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
    fig, axes = new_figure(1, 2, (11, 4))
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
    return save_figure(fig, path)


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
        "settings": settings_record(options, numbers.n, model, images_dir),
        "mae_255": numbers.means,
        "labels": labels,
        "paper_mae_255": dict(PAPER["table3"]),
        "per_pair": numbers.per_pair,
        "curve_1d": numbers.curve_1d.tolist(),
        "curve_2d": numbers.curve_2d.tolist(),
        "images": [str(p.image) for p in numbers.photos],
    }
    markdown = table3_markdown(numbers, options, model.config.resolution)
    json_path, md_path = write_numbers(out, "table3", record, markdown)
    logger.info("table3: %s", ", ".join(f"{k} {v:.2f}" for k, v in numbers.means.items()))
    return {"png": png, "json": json_path, "md": md_path, "mae_255": numbers.means}
