"""The paper's three training stages as data: which networks learn, on what data, under which losses.

Stage 1 "generator" (section 3.2.2): G and E_w jointly on colour pairs (I_in, I_out),
    I_G = G(I_in, E_w(I_in, I_out)); loss l1 * L1(I_G, I_out) + lpips * LPIPS(I_G, I_out).
    A share :data:`IDENTITY_FRACTION` of the pairs has I_out = I_in, so that the self-reconstruction
    code w0 = E_w(I, I) of section 3.3 really reconstructs I (I ~ G(I, w0)); the paper's w0 loss relies on it.
Stage 2 "wencoder" (section 3.3): E_W with G' fixed, I_rec = G'(I, expand(E_W(I))); loss L1(I_rec, I)
    (+ LPIPS when its weight is set). The name is the paper's "W-Encoder" E_W (capital W): the network is
    ``RecolorModel.map_encoder`` (class ``MapEncoder``), not E_w (class ``WEncoder``, trained in stage 1).
    The name stays: checkpoints, metrics rows, ``wencoder.safetensors``, ``TrainConfig.wencoder`` and
    ``--set wencoder.*`` of existing runs use it.
Stage 3 "predictor" (section 3.4.4, eq. 6): P_W with G', E_W, E_w fixed on triples (I_S, I_R, target),
    I_P = G'(I_S, P_W(I_S, I_R)); loss lambda_1 L1(I_P, target) + lambda_LPIPS LPIPS(I_P, target)
    + lambda_w0 L_w0(I_R, I_P). The paper writes the pixel terms "between I_P and I_R"; I_R is re-framed
    (not aligned with I_S), so the pixel terms use the target (I_R's colours on I_S's geometry) and only the
    alignment-free style term uses I_R itself. With ``StageConfig.histogram > 0`` the colour-histogram
    loss replaces the w0 loss (the Table 2 ablation). Random semantic masking of A_C with a ratio drawn each
    step from [0, bound], the bound rising linearly 0 -> ``mask_ratio_max`` (section 4.1.2).

Every network not listed in ``Stage.trainable`` is frozen (eval mode, ``requires_grad`` False) during the
stage; gradients still flow *through* frozen networks (e.g. through G' into E_W, through E_w into I_P).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import Dataset

from recolorize.config import STAGE_NAMES, StageConfig
from recolorize.data.cache import CachedColourPairs, CachedImages, CachedTriples, TrainingCache
from recolorize.data.folders import Photo
from recolorize.data.pairs import ColourPairDataset, ImageDataset, TriplePairDataset
from recolorize.losses import histogram_loss, l1_loss, lab_l1_loss, lpips_loss, w0_loss
from recolorize.lpips import LPIPS
from recolorize.networks.model import RecolorModel
from recolorize.networks.prior_features import local_offsets

__all__ = [
    "IDENTITY_FRACTION",
    "STAGE_ORDER",
    "STAGES",
    "LOSS_TERMS",
    "Stage",
    "StageOutputs",
    "get_stage",
    "IdentityMixPairs",
    "loss_weights",
    "mask_bound",
    "learning_rate",
]

#: Share of each stage-1 batch trained as identity pairs (I_in = I_out): E_w(I, I) = w0 must reconstruct I.
IDENTITY_FRACTION = 0.25

#: The stages in training order; ``--stage all`` runs them in this order, each from the previous weights.
#: Defined once, as TrainConfig's stage fields (:data:`recolorize.config.STAGE_NAMES`).
STAGE_ORDER: tuple[str, ...] = STAGE_NAMES


@dataclass
class StageOutputs:
    """What one stage's forward pass produces for the losses and the sample grid.

    prediction: the generated image (B, 3, H, W) in [0, 1] (I_G, G'(I, W0) or I_P).
    target: what the pixel terms (L1, LPIPS) compare it with.
    style_reference: I_R for the style terms (w0 / histogram), None where a stage has none.
    unchanged: the image the stage starts from (I_in, I_S). The same loss with ``unchanged`` in place of
        the prediction is the loss of doing nothing, logged beside the loss as a yardstick that moves with
        the batch (so their ratio shows learning through the sampling noise); None where it is 0.
    images: named images for the sample grid, in column order.
    """

    prediction: torch.Tensor
    target: torch.Tensor
    style_reference: torch.Tensor | None = None
    unchanged: torch.Tensor | None = None
    images: dict[str, torch.Tensor] = field(default_factory=dict)


#: Context for the loss terms: the model (for E_w in the w0 loss) and the LPIPS module (None when unused).
LossFn = Callable[[StageOutputs, RecolorModel, "LPIPS | None"], torch.Tensor]


def _l1(out: StageOutputs, model: RecolorModel, lpips: LPIPS | None) -> torch.Tensor:
    return l1_loss(out.prediction, out.target)


def _lab_l1(out: StageOutputs, model: RecolorModel, lpips: LPIPS | None) -> torch.Tensor:
    return lab_l1_loss(out.prediction, out.target)


def _lpips(out: StageOutputs, model: RecolorModel, lpips: LPIPS | None) -> torch.Tensor:
    if lpips is None:
        raise ValueError("the lpips term needs an LPIPS module")
    return lpips_loss(out.prediction, out.target, lpips)


def _w0(out: StageOutputs, model: RecolorModel, lpips: LPIPS | None) -> torch.Tensor:
    if out.style_reference is None:
        raise ValueError("the w0 term needs a style reference I_R")
    return w0_loss(model.self_code, out.style_reference, out.prediction)


def _histogram(out: StageOutputs, model: RecolorModel, lpips: LPIPS | None) -> torch.Tensor:
    if out.style_reference is None:
        raise ValueError("the histogram term needs a style reference I_R")
    return histogram_loss(out.prediction, out.style_reference)


#: Loss term name -> function; each is weighted by the :class:`StageConfig` field of the same name.
LOSS_TERMS: dict[str, LossFn] = {
    "l1": _l1,
    "lab_l1": _lab_l1,
    "lpips": _lpips,
    "w0": _w0,
    "histogram": _histogram,
}


def _pixel_grid(
    model: RecolorModel, generator: torch.Generator | None, stride: int
) -> tuple[int, tuple[int, int]]:
    """Stride and a random phase for this step (``StageConfig.pixel_stride``; always 1 for the conv
    generator, which needs neighbours)."""
    if model.config.generator != "pointwise" or stride <= 1:
        return 1, (0, 0)
    phase = torch.randint(
        0, stride, (2,), generator=generator, device=generator.device if generator else None
    )
    return stride, (int(phase[0]), int(phase[1]))


def _sample(image: torch.Tensor, stride: int, phase: tuple[int, int]) -> torch.Tensor:
    return image[:, :, phase[0] :: stride, phase[1] :: stride] if stride > 1 else image


#: Chance that a stage-1 item carries no colour hint (the pointwise generator must work without one).
NO_HINT_FRACTION = 0.5


def target_hint(
    model: RecolorModel,
    target: torch.Tensor,
    generator: torch.Generator | None,
    image_in: torch.Tensor | None = None,
) -> torch.Tensor | None:
    """Stage 1's stand-in for P_W's colour hint: the target's own 1/8 cell colours with a random confidence.

    At stage 3 the hint is the reference's colour warped by the soft correspondence, with the best cosine
    similarity as confidence; here the target's cell means (what a perfect match would give) with a
    confidence drawn from [0.3, 1] per image, and no hint at all for a share :data:`NO_HINT_FRACTION`, so the
    generator learns to use a hint without depending on it. None when the config has no colour hint.
    With ``local_transfer`` the hint also holds the target's cell spreads and ``image_in``'s own statistics.
    """
    if not model.config.colour_correspondence:
        return None
    from recolorize.networks.predictor import cell_colour_stats

    batch, _, height, width = target.shape
    cells = (height // 8, width // 8)
    stats = cell_colour_stats(target, cells)
    draws = torch.rand(batch, 2, generator=generator, device=target.device)
    confidence = (0.3 + 0.7 * draws[:, :1]) * (draws[:, 1:] >= NO_HINT_FRACTION)
    confidence = confidence[:, :, None, None].expand(-1, 1, *cells)
    present = confidence > 0
    parts = [stats[:, :3] * present, confidence]
    if model.config.local_transfer:
        if image_in is None:
            raise ValueError("the local transfer hint needs the input image's own statistics")
        parts += [stats[:, 3:] * present, cell_colour_stats(image_in, cells) * present]
    return torch.cat(parts, dim=1)


class IdentityMixPairs(ColourPairDataset):
    """Stage-1 pairs of which a share :data:`IDENTITY_FRACTION` are identity pairs (I_out = I_in).

    Each item's choice comes from (seed, epoch, index), like the rest of the item, so the share does not
    depend on the batch size or on how the batch is split over processes.
    """

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = super().__getitem__(index)
        if np.random.default_rng([self.seed, self.epoch, int(index), 1]).random() < IDENTITY_FRACTION:
            item["output"] = item["input"]
        return item


def _generator_forward(
    model: RecolorModel,
    batch: dict[str, torch.Tensor],
    mask_ratio: float,
    generator: torch.Generator | None,
    pixel_stride: int = 1,
) -> StageOutputs:
    """Stage 1: I_G = G(I_in, E_w(I_in, I_out)) (identity pairs included, see :class:`IdentityMixPairs`)."""
    image_in, image_out = batch["input"], batch["output"]
    code = model.pair_code(image_in, image_out)  # w = E_w(I_in, I_out)
    conditioning = model.pair_conditioning(
        image_in, image_out, target_hint(model, image_out, generator, image_in)
    )
    stride, phase = _pixel_grid(model, generator, pixel_stride)
    generated = model.generate(image_in, code, conditioning, stride, phase).float()  # I_G
    image_in, image_out = _sample(image_in, stride, phase), _sample(image_out, stride, phase)
    return StageOutputs(
        prediction=generated,
        target=image_out,
        unchanged=image_in,
        images={"input": image_in, "output": image_out, "generated": generated},
    )


def _wencoder_forward(
    model: RecolorModel,
    batch: dict[str, torch.Tensor],
    mask_ratio: float,
    generator: torch.Generator | None,
    pixel_stride: int = 1,
) -> StageOutputs:
    """Stage 2: G'(I, expand(E_W(I))) should give back I."""
    image = batch["image"]
    stride, phase = _pixel_grid(model, generator, pixel_stride)
    latents = model.expand(model.self_maps(image))
    reconstruction = model.generate(image, latents, model.self_conditioning(image), stride, phase).float()
    image = _sample(image, stride, phase)
    return StageOutputs(
        prediction=reconstruction, target=image, images={"image": image, "reconstruction": reconstruction}
    )


def _predictor_forward(
    model: RecolorModel,
    batch: dict[str, torch.Tensor],
    mask_ratio: float,
    generator: torch.Generator | None,
    pixel_stride: int = 1,
) -> StageOutputs:
    """Stage 3: I_P = G'(I_S, P_W(I_S, I_R)) with masking ratio ``mask_ratio`` drawn from ``generator``."""
    source, reference, target = batch["source"], batch["reference"], batch["target"]
    inputs = model.predictor_inputs(source, reference, features=batch)  # cached frozen features if present
    prior = batch.get("prior")  # the cache's lattice prior, fitted at 384 px as inference fits it
    maps, conditioning = model.predict(source, reference, mask_ratio, generator, inputs, prior)  # W = P_W
    if model.config.local_field == "base" and "local_offsets" in batch and conditioning is not None:
        # the base f works on, as inference gives such a model: the lattice's colour plus the local field
        offsets = local_offsets(source, batch["local_offsets"], batch["local_colours"])
        conditioning = model.with_local_field(conditioning, source, offsets)
    stride, phase = _pixel_grid(model, generator, pixel_stride)
    prediction = model.generate(source, maps, conditioning, stride, phase).float()  # I_P
    source, reference, target = (_sample(x, stride, phase) for x in (source, reference, target))
    return StageOutputs(
        prediction=prediction,
        target=target,
        style_reference=reference,
        unchanged=source,
        images={"source": source, "reference": reference, "prediction": prediction, "target": target},
    )


DatasetFactory = Callable[[Sequence[Photo], int, int], Dataset]
StageForward = Callable[..., StageOutputs]


@dataclass(frozen=True)
class Stage:
    """One training stage as data.

    name: the stage's name on the command line and in files (``{name}.safetensors``).
    trainable: RecolorModel attributes optimised in this stage; every other network is frozen.
    dataset: (photos, resolution, seed) -> the stage's dataset (items are dicts of (3, R, R) images).
    forward: (model, batch, mask_ratio, mask_generator, pixel_stride) -> :class:`StageOutputs`.
    terms: loss terms this stage may use (names of :data:`LOSS_TERMS`); weights come from StageConfig.
    masking: whether the stage draws a masking ratio each step (the curriculum of section 4.1.2).
    cached_dataset: (training cache, seed) -> the stage's dataset when training reads a cache (data/cache.py).
    """

    name: str
    trainable: tuple[str, ...]
    dataset: DatasetFactory
    forward: StageForward
    terms: tuple[str, ...]
    masking: bool = False
    cached_dataset: Callable[[TrainingCache, int], Dataset] | None = None


#: Stage name -> stage, in :data:`STAGE_ORDER` (the keys are the stages' own names; a test checks the order).
STAGES: dict[str, Stage] = {
    stage.name: stage
    for stage in (
        Stage(
            name="generator",
            trainable=("generator", "w_encoder"),
            dataset=lambda photos, resolution, seed: IdentityMixPairs(photos, resolution, seed=seed),
            forward=_generator_forward,
            terms=("l1", "lab_l1", "lpips"),
            cached_dataset=lambda cache, seed: CachedColourPairs(cache, seed, IDENTITY_FRACTION),
        ),
        Stage(
            name="wencoder",
            trainable=("map_encoder",),
            dataset=lambda photos, resolution, seed: ImageDataset(photos, resolution, seed=seed),
            forward=_wencoder_forward,
            terms=("l1", "lab_l1", "lpips"),
            cached_dataset=lambda cache, seed: CachedImages(cache, seed),
        ),
        Stage(
            name="predictor",
            trainable=("predictor",),
            dataset=lambda photos, resolution, seed: TriplePairDataset(photos, resolution, seed=seed),
            forward=_predictor_forward,
            terms=("l1", "lab_l1", "lpips", "w0", "histogram"),
            masking=True,
            cached_dataset=lambda cache, seed: CachedTriples(cache, seed),
        ),
    )
}


def get_stage(name: str) -> Stage:
    """Look up a stage by name, with the known names in the error."""
    try:
        return STAGES[name]
    except KeyError:
        raise KeyError(f"unknown stage {name!r}; choose one of {', '.join(STAGE_ORDER)}") from None


def loss_weights(stage: Stage, config: StageConfig) -> dict[str, float]:
    """The stage's active loss terms and their weights (terms weighted 0 are off).

    The histogram loss replaces the w0 loss when its weight is positive (paper Table 2: "w0 loss" vs
    "histogram loss" are alternatives, not a sum).
    """
    weights = {name: float(getattr(config, name)) for name in stage.terms}
    if weights.get("histogram", 0.0) > 0:
        weights["w0"] = 0.0
    active = {name: w for name, w in weights.items() if w > 0}
    if not active:
        raise ValueError(f"stage {stage.name} has no loss term with a positive weight")
    return active


def mask_bound(step: int, total_steps: int, config: StageConfig) -> float:
    """Upper bound a of the masking ratio at ``step`` (0-based): rises linearly 0 -> ``mask_ratio_max`` over
    ``mask_warmup_fraction`` of the stage's steps, then stays (section 4.1.2)."""
    if config.mask_ratio_max <= 0:
        return 0.0
    warmup = config.mask_warmup_fraction * total_steps
    if warmup <= 0:
        return float(config.mask_ratio_max)
    return float(config.mask_ratio_max * min(1.0, step / warmup))


def learning_rate(step: int, config: StageConfig) -> float:
    """Adam's rate at ``step`` (0-based): linear warm-up over ``warmup_steps``, then constant or cosine."""
    rate = config.lr
    if config.warmup_steps > 0:
        rate *= min(1.0, (step + 1) / config.warmup_steps)
    if config.cosine and config.steps > config.warmup_steps:
        progress = max(0.0, (step - config.warmup_steps) / (config.steps - config.warmup_steps))
        rate *= 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return rate
