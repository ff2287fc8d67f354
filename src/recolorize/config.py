"""Model and training configurations as data: frozen dataclasses saved as JSON beside every weight file.

Named configs (:data:`CONFIGS`; docs/architecture.md, "Design decisions"):
``pointwise`` (128 px, the pointwise generator with the colour
correspondence and the quadratic correspondence prior: the shipped model, trained on a 2-core CPU),
``pointwise-mkl`` and ``pointwise-affine`` (the same with the MKL / affine correspondence prior: the first
phases of the shipped model's recipe), ``paper`` (the paper's
StyleGAN2-256, C = 512), ``base`` (half the channels, meant for a GPU), ``small`` (128 px, few channels,
the conv generator on a CPU) and ``tiny`` / ``tiny-pointwise`` (64 px, tests and CI only).
Every ablation of the paper's Table 2 is a field of :class:`Ablations`. Reading configs from files
(strictly) is ``config_json``'s job.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "Ablations",
    "ModelConfig",
    "StageConfig",
    "TrainConfig",
    "CONFIGS",
    "TRAIN_CONFIGS",
    "get_config",
    "STAGE_NAMES",
    "NUM_STYLES",
    "MIN_RESOLUTION",
    "MAX_RESOLUTION",
    "resolution_problem",
]

#: The working resolution's range, the one range of ``ModelConfig.resolution`` (a config read from a weight
#: file included) and of ``transfer --size`` / ``lut --size``: a multiple of 64 from 64 to 1024. The
#: attention between source and reference positions grows with its fourth power (measured peak with the
#: shipped model: 0.8 GB at 512, 4.9 GB at 1024; 2048 would need ~70 GB).
MIN_RESOLUTION, MAX_RESOLUTION = 64, 1024


def resolution_problem(value: int) -> str | None:
    """Why ``value`` cannot be a working resolution ("must be ..., got ..."), or None when it can."""
    if value % 64 or not MIN_RESOLUTION <= value <= MAX_RESOLUTION:
        return f"must be a multiple of 64 from {MIN_RESOLUTION} to {MAX_RESOLUTION}, got {value}"
    return None


#: Number of style inputs of the generator's decoder (W^1 .. W^20 in the paper, section 3.2.3).
NUM_STYLES = 20

SemanticBackbone = Literal["vgg16", "efficientnet_lite0"]
GeneratorKind = Literal["conv", "pointwise"]
ColourPrior = Literal["none", "mkl", "correspondence", "correspondence-quadratic", "correspondence-lut"]
LocalFieldPlace = Literal["after", "base"]
LatentLevels = Literal["all", "w1_only", "w3_only"]


@dataclass(frozen=True)
class Ablations:
    """Switches for the paper's Table 2; the default (all True / "all") is the full method.

    masking: random semantic masking of A_C during training (off = "w/o mask").
    latent_levels: "all" predicts W1, W2, W3; "w1_only" / "w3_only" predict one map for all 20 layers.
    aspp: ASPP heads (off = "w/o ASPP": plain 3x3 convolutions, smaller receptive field).
    separate_reference_encoder: E_W encodes the reference (off = "shared E_C": E_C^S encodes both).
    use_w: the ASPP pooling branch is fed by w = E_w(I_S, I_R) (off = "w/o w": global average pooling).
    hard_attention: one-hot argmax A_h, eq. 5 (off = "w/o hard": softmax attention).
    """

    masking: bool = True
    latent_levels: LatentLevels = "all"
    aspp: bool = True
    separate_reference_encoder: bool = True
    use_w: bool = True
    hard_attention: bool = True


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of every network; a model is always built from one of these, never from CLI flags.

    resolution: working resolution (square training crops; inference resizes to it). Divisible by 64.
    latent_dim: C, channels of w, W0 and the latent maps (paper: 512).
    generator_channels: channels of the generator at 1/64, 1/32, ..., 1/1 of the resolution (7 levels).
    encoder_width: base width of every ResNet-18 trunk (64 is the standard ResNet-18).
    semantic_backbone: frozen features for the correspondence A_C: VGG16 relu5_1 (paper) or
        EfficientNet-Lite0 1/16 features (9x faster on the CPU).
    predictor_width: channels inside the ASPP heads of P_W.
    residual_maps: P_W predicts W = W0_S + dW instead of W (our change: training starts at the source's own
        self-reconstruction, so short runs stay sane). Off reproduces the paper.
    softmax_temperature: temperature of the softmax attention used by the "w/o hard" ablation.
    generator: "conv" is the paper's encoder-decoder StyleGAN2 G'; "pointwise" is the per-pixel colour
        mapping out(x) = base(x) + f(I(x); styles(x)) that learns on two CPU cores (docs/architecture.md).
    pointwise_width, pointwise_layers: hidden width and number of demodulated 1x1 layers of f.
    colour_correspondence: P_W also warps the reference's cell colours (hard at 1/16, soft with a learned
        temperature at 1/8) and hands the 1/8 one to the generator per pixel as a colour hint.
    prior: classical transfer the residual is added to, a global colour map also fed to f as an input:
        "correspondence" / "correspondence-quadratic" (an affine / quadratic map fitted by robust regression
        to the colours of mutually best-matching cells of the 1/8 correspondence: the reference's grade
        where both photos show the same thing), "mkl" (Pitie's linear map of the two colour distributions)
        or "none" (base = the source); "correspondence-lut" is ``recolorize.prior``: a robust cubic and a
        cross-validated 9^3 lattice fitted to mutual matches of 48 x 48 cells of 384-px copies of the two
        photos (computed from the photos by inference and stored by the training cache). Pointwise
        generator only.
    colour_statistics: P_W adds a code of both images' colour statistics (Lab mean, spread and quantiles,
        RGB quantiles) to w before the ASPP heads: an alignment-free global descriptor (E_w was trained on
        aligned pairs, the stage-3 pairs are not aligned).
    local_transfer: the colour hint also carries the spread of the warped reference cell and the source
        cell's own mean and spread, and f reads a per-pixel local colour transfer (Reinhard per cell along
        the correspondence, L*a*b* mean and spread): where the match is right that is nearly the answer
        (MAE 1.6 on aligned pairs against MKL's 5.5), and f learns where to trust it.
    local_field: where the "correspondence-lut" prior's local field (``recolorize.prior.local``) goes:
        "after" f (added to the output; f was trained without it: the shipped model) or into the "base" f
        works on (stage 3 then puts a cache's field into the base, and inference does the same).
    """

    name: str
    resolution: int
    latent_dim: int
    generator_channels: tuple[int, ...]
    encoder_width: int
    semantic_backbone: SemanticBackbone
    predictor_width: int
    residual_maps: bool = True
    softmax_temperature: float = 0.01
    ablations: Ablations = field(default_factory=Ablations)
    generator: GeneratorKind = "conv"
    pointwise_width: int = 32
    pointwise_layers: int = 3
    colour_correspondence: bool = False
    prior: ColourPrior = "none"
    colour_statistics: bool = False
    local_transfer: bool = False
    local_field: LocalFieldPlace = "after"

    def __post_init__(self) -> None:
        if (problem := resolution_problem(self.resolution)) is not None:
            raise ValueError(f"resolution {problem}")
        if len(self.generator_channels) != 7:
            raise ValueError("generator_channels needs 7 entries (1/64 ... 1/1 of the resolution)")
        if self.generator not in ("conv", "pointwise"):
            raise ValueError(f"generator must be 'conv' or 'pointwise', got {self.generator!r}")
        if self.prior not in typing.get_args(ColourPrior):
            known = ", ".join(typing.get_args(ColourPrior))
            raise ValueError(f"prior must be one of {known}, got {self.prior!r}")
        if self.prior.startswith("correspondence") and not self.colour_correspondence:
            raise ValueError("the correspondence prior needs the colour correspondence (its 1/8 features)")
        if self.generator == "conv" and (self.prior != "none" or self.colour_correspondence):
            raise ValueError("a colour prior and the colour correspondence need the pointwise generator")
        if self.colour_correspondence and self.semantic_backbone != "efficientnet_lite0":
            raise ValueError("the colour correspondence uses EfficientNet-Lite0's 1/8 features")
        if self.local_transfer and not self.colour_correspondence:
            raise ValueError("local_transfer needs the colour correspondence")
        if self.local_field not in typing.get_args(LocalFieldPlace):
            raise ValueError(f"local_field must be 'after' or 'base', got {self.local_field!r}")

    def replace(self, **changes: Any) -> ModelConfig:
        """Return a copy with fields changed; ``ablations`` may be given as a dict of switches."""
        if isinstance(changes.get("ablations"), dict):
            changes["ablations"] = dataclasses.replace(self.ablations, **changes["ablations"])
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        data = dict(data)
        data["generator_channels"] = tuple(data["generator_channels"])
        data["ablations"] = Ablations(**data.get("ablations", {}))
        return cls(**data)


@dataclass(frozen=True)
class StageConfig:
    """Hyper-parameters of one training stage (paper sections 3.2.2, 3.3, 3.4.4).

    lr, betas: Adam (paper: 0.0025, (0, 0.99); lower here because that rate diverged in calibration).
    grad_clip: global gradient-norm clip (0 = off).
    l1, lpips, w0, histogram: loss weights (0 = term off). lpips_net: "alex" or "vgg".
    mask_ratio_max: upper bound of the masking curriculum (stage 3); rises linearly 0 -> max over
        ``mask_warmup_fraction`` of the stage's steps; each step draws a ratio in [0, current bound].
    lab_l1: weight of an L1 term in scaled CIE Lab (L/100, a/100, b/100): weighs hue errors of dark and
        saturated colours as the eye does, which RGB L1 underweights.
    warmup_steps, cosine: linear learning-rate warm-up, then (with ``cosine``) cosine decay to 0 at the
        stage's last step; the default is the constant rate.
    also_train: networks trained in this stage besides the stage's own (e.g. the pointwise generator's
        few thousand weights fine-tuned with P_W in stage 3: our change, the paper keeps G' fixed).
    pixel_stride: the pointwise generator is evaluated (and the losses taken) on every k-th pixel of each
        crop, at a random phase per step: a per-pixel mapping needs no neighbours, so this is exact and
        k^2 times cheaper. Ignored by the conv generator.
    """

    steps: int
    batch: int
    lr: float = 3e-4
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float = 1.0
    l1: float = 1.0
    lpips: float = 0.0
    lpips_net: str = "alex"
    w0: float = 0.0
    histogram: float = 0.0
    mask_ratio_max: float = 0.0
    mask_warmup_fraction: float = 0.8
    lab_l1: float = 0.0
    warmup_steps: int = 0
    cosine: bool = False
    also_train: tuple[str, ...] = ()
    pixel_stride: int = 1


@dataclass(frozen=True)
class TrainConfig:
    """The three stages plus data and logging settings; saved as JSON beside every checkpoint.

    generator: stage 1, G and E_w (``WEncoder``). wencoder: stage 2, E_W (``MapEncoder``, the paper's
    "W-Encoder"; not ``WEncoder``). predictor: stage 3, P_W. The field names are the stage names
    (:data:`STAGE_NAMES`), stored in every checkpoint and run folder, so they do not change.
    """

    generator: StageConfig
    wencoder: StageConfig
    predictor: StageConfig
    seed: int = 0
    checkpoint_every: int = 100
    sample_every: int = 200
    log_every: int = 10
    ema_decay: float = 0.0

    def stage(self, name: str) -> StageConfig:
        """The settings of stage ``name`` (one of :data:`STAGE_NAMES`)."""
        if name not in STAGE_NAMES:
            raise KeyError(name)
        return getattr(self, name)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        data = dict(data)
        for name in STAGE_NAMES:
            stage = dict(data[name])
            stage["betas"] = tuple(stage["betas"])
            stage["also_train"] = tuple(stage.get("also_train", ()))
            data[name] = StageConfig(**stage)
        return cls(**data)


#: The training stages in training order: TrainConfig's StageConfig fields, defined nowhere else. The
#: names are used on the command line (``--stage``, ``--set STAGE.FIELD``), in checkpoints, metrics rows
#: and file names (``{stage}.safetensors``); ``training.stages.STAGE_ORDER`` is this tuple. The
#: "wencoder" stage trains E_W (``MapEncoder``, the image -> W0 map encoder), not E_w (``WEncoder``,
#: trained with the generator in stage "generator"); the name stays for existing runs and checkpoints.
STAGE_NAMES: tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(TrainConfig) if f.type in (StageConfig, "StageConfig")
)

CONFIGS: dict[str, ModelConfig] = {
    "paper": ModelConfig(
        name="paper",
        resolution=256,
        latent_dim=512,
        generator_channels=(512, 512, 512, 512, 512, 256, 128),
        encoder_width=64,
        semantic_backbone="vgg16",
        predictor_width=256,
        residual_maps=False,
    ),
    "base": ModelConfig(
        name="base",
        resolution=256,
        latent_dim=256,
        generator_channels=(256, 256, 256, 256, 256, 128, 64),
        encoder_width=32,
        semantic_backbone="efficientnet_lite0",
        predictor_width=128,
    ),
    "small": ModelConfig(
        name="small",
        resolution=128,
        latent_dim=64,
        generator_channels=(64, 64, 64, 64, 48, 32, 16),
        encoder_width=16,
        semantic_backbone="efficientnet_lite0",
        predictor_width=48,
    ),
    "pointwise": ModelConfig(
        name="pointwise",
        resolution=128,
        latent_dim=64,
        generator_channels=(64, 64, 64, 64, 48, 32, 16),  # unused by the pointwise generator
        encoder_width=16,
        semantic_backbone="efficientnet_lite0",
        predictor_width=64,
        generator="pointwise",
        colour_correspondence=True,
        prior="correspondence-quadratic",
        colour_statistics=True,
    ),
    "tiny-pointwise": ModelConfig(
        name="tiny-pointwise",
        resolution=64,
        latent_dim=16,
        generator_channels=(32, 32, 32, 16, 16, 8, 8),
        encoder_width=8,
        semantic_backbone="efficientnet_lite0",
        predictor_width=16,
        generator="pointwise",
        pointwise_width=8,
        pointwise_layers=2,
        colour_correspondence=True,
        prior="correspondence-quadratic",
        colour_statistics=True,
    ),
    "tiny": ModelConfig(
        name="tiny",
        resolution=64,
        latent_dim=32,
        generator_channels=(32, 32, 32, 16, 16, 8, 8),
        encoder_width=8,
        semantic_backbone="efficientnet_lite0",
        predictor_width=16,
    ),
}
# The shipped model's recipe (scripts/train_default.sh) trains the same networks under simpler priors first:
# MKL (phases 1-2), then the affine correspondence prior (phase 3), then the quadratic one (phase 4).
CONFIGS["pointwise-mkl"] = CONFIGS["pointwise"].replace(name="pointwise-mkl", prior="mkl")
CONFIGS["pointwise-affine"] = CONFIGS["pointwise"].replace(name="pointwise-affine", prior="correspondence")
# issue 21: the same networks over the lattice prior read off a 384-px correspondence (recolorize.prior)
CONFIGS["pointwise-lut"] = CONFIGS["pointwise"].replace(name="pointwise-lut", prior="correspondence-lut")
# issue 21, second pass: f trained with the prior's local field inside its base (measured, not shipped)
CONFIGS["pointwise-lut-local"] = CONFIGS["pointwise-lut"].replace(
    name="pointwise-lut-local", local_field="base"
)
# issue 22: the tiny networks with the shipped design (the lattice prior), so tests can export them to ONNX
CONFIGS["tiny-lut"] = CONFIGS["tiny-pointwise"].replace(name="tiny-lut", prior="correspondence-lut")

TRAIN_CONFIGS: dict[str, TrainConfig] = {
    "paper": TrainConfig(
        generator=StageConfig(steps=60000, batch=8, lr=3e-4, lpips=1.0),
        wencoder=StageConfig(steps=30000, batch=8, lr=3e-4),
        predictor=StageConfig(steps=60000, batch=8, lr=3e-4, lpips=1.0, w0=1.0, mask_ratio_max=0.95),
    ),
    "base": TrainConfig(
        generator=StageConfig(steps=20000, batch=16, lr=3e-4, lpips=0.5),
        wencoder=StageConfig(steps=10000, batch=16, lr=3e-4),
        predictor=StageConfig(steps=20000, batch=16, lr=3e-4, lpips=1.0, w0=1.0, mask_ratio_max=0.95),
    ),
    "small": TrainConfig(
        generator=StageConfig(steps=4000, batch=8, lr=5e-4),
        wencoder=StageConfig(steps=1500, batch=8, lr=5e-4),
        predictor=StageConfig(steps=4000, batch=8, lr=5e-4, lpips=0.5, w0=1.0, mask_ratio_max=0.95),
        checkpoint_every=100,
        sample_every=500,
    ),
    "pointwise": TrainConfig(
        generator=StageConfig(
            steps=1500, batch=16, lr=2e-3, lab_l1=0.5, warmup_steps=100, cosine=True, pixel_stride=2
        ),
        wencoder=StageConfig(
            steps=600, batch=16, lr=2e-3, lab_l1=0.5, warmup_steps=50, cosine=True, pixel_stride=2
        ),
        predictor=StageConfig(
            steps=6000,
            batch=12,
            lr=1e-3,
            w0=0.1,
            lab_l1=0.5,
            mask_ratio_max=0.5,
            warmup_steps=200,
            cosine=True,
            also_train=("generator",),
            pixel_stride=2,
        ),
        checkpoint_every=100,
        sample_every=1000,
        log_every=20,
    ),
    "tiny-pointwise": TrainConfig(
        generator=StageConfig(steps=40, batch=4, lr=3e-3, pixel_stride=2),
        wencoder=StageConfig(steps=30, batch=4, lr=3e-3, pixel_stride=2),
        predictor=StageConfig(
            steps=40,
            batch=4,
            lr=3e-3,
            w0=0.1,
            lab_l1=0.5,
            mask_ratio_max=0.5,
            also_train=("generator",),
            pixel_stride=2,
        ),
        checkpoint_every=20,
        sample_every=30,
        log_every=5,
    ),
    "tiny": TrainConfig(
        generator=StageConfig(steps=60, batch=4, lr=2e-3),
        wencoder=StageConfig(steps=60, batch=4, lr=2e-3),
        predictor=StageConfig(steps=60, batch=4, lr=2e-3, lpips=0.0, w0=1.0, mask_ratio_max=0.95),
        checkpoint_every=20,
        sample_every=30,
        log_every=5,
    ),
}


def get_config(name: str) -> ModelConfig:
    """Look up a named model config, with a clear error listing the known names."""
    try:
        return CONFIGS[name]
    except KeyError:
        raise KeyError(f"unknown config {name!r}; choose one of {', '.join(CONFIGS)}") from None
