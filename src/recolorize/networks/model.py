"""RecolorModel: the paper's four networks and the frozen semantic backbone, built from one ModelConfig.

Weights are saved as safetensors (trainable networks only; the frozen backbone comes from its installed
package) with the config JSON beside them and inside the file's metadata, so a model is always rebuilt
from its own config.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from recolorize.config import NUM_STYLES, ModelConfig
from recolorize.io_utils import atomic_write
from recolorize.networks.colour_prior import mkl_affine
from recolorize.networks.encoders import MapEncoder, WEncoder
from recolorize.networks.generator import Generator
from recolorize.networks.pointwise import Conditioning, PointwiseGenerator, lab_features
from recolorize.networks.predictor import PredictorInputs, WPredictor

__all__ = ["RecolorModel", "config_path_for"]

#: Generator layers (1-based, inclusive) filled by W1, W2, W3 (section 3.4.3, after pSp [18]).
LAYERS_PER_LEVEL = {"W1": range(1, 10), "W2": range(10, 13), "W3": range(13, 21)}


def config_path_for(weights_path: str | Path) -> Path:
    """The config JSON that sits beside a weight file: ``model.safetensors`` -> ``model.json``."""
    return Path(weights_path).with_suffix(".json")


class RecolorModel(nn.Module):
    """G / G', E_w, E_W and P_W with the frozen semantic backbone of ``config.semantic_backbone``."""

    def __init__(self, config: ModelConfig, semantic: nn.Module | None = None) -> None:
        super().__init__()
        self.config = config
        self.generator: nn.Module = (
            PointwiseGenerator(config) if config.generator == "pointwise" else Generator(config)
        )
        self.w_encoder = WEncoder(config)
        self.map_encoder = MapEncoder(config)
        self.predictor = WPredictor(config)
        if semantic is None:
            from recolorize.networks.backbones import build_semantic_backbone

            semantic = build_semantic_backbone(config.semantic_backbone)
        self.semantic = semantic

    # --- latents of section 3.3 -------------------------------------------------------------------------
    def pair_code(self, image_in: torch.Tensor, image_out: torch.Tensor) -> torch.Tensor:
        """w = E_w(I_in, I_out): the colour change from I_in to I_out, (B, C)."""
        return self.w_encoder(image_in, image_out)

    def self_code(self, image: torch.Tensor) -> torch.Tensor:
        """w0 = E_w(I, I), the self-reconstruction code; it characterises global style (eq. 2)."""
        return self.w_encoder(image, image)

    def self_maps(self, image: torch.Tensor) -> torch.Tensor:
        """W0 = E_W(I) at 1/16, the self-reconstruction map: I ~ G'(I, W0)."""
        return self.map_encoder(image)

    @staticmethod
    def expand(latent_map: torch.Tensor) -> list[torch.Tensor]:
        """One map for all 20 layers (how G' consumes W0); each layer resizes its style to its features."""
        return [latent_map] * NUM_STYLES

    def expand_predicted(self, maps: list[torch.Tensor]) -> list[torch.Tensor]:
        """[W1, W2, W3] -> the 20 layer inputs: W1 -> 1-9, W2 -> 10-12, W3 -> 13-20 (one map fills all)."""
        if len(maps) == 1:
            return self.expand(maps[0])
        if len(maps) != 3:
            raise ValueError(f"expected 1 or 3 predicted maps, got {len(maps)}")
        return (
            [maps[0]] * len(LAYERS_PER_LEVEL["W1"])
            + [maps[1]] * len(LAYERS_PER_LEVEL["W2"])
            + [maps[2]] * len(LAYERS_PER_LEVEL["W3"])
        )

    # --- the generator and what conditions it -------------------------------------------------------------
    def generate(
        self,
        image: torch.Tensor,
        latents: torch.Tensor | list[torch.Tensor],
        conditioning: Conditioning | None,
        stride: int = 1,
        phase: tuple[int, int] = (0, 0),
    ) -> torch.Tensor:
        """G(I, w) / G'(I, W); the conditioning (prior, hint) reaches the pointwise generator only.

        stride, phase: evaluate the pointwise generator only on the pixels (phase + stride * k) of ``image``:
        training evaluates every 2nd pixel, 4x cheaper, and compares with the target sampled alike (a
        per-pixel mapping needs no neighbours, so the sampled output equals sampling the full one).
        """
        if self.config.generator != "pointwise":
            if stride != 1:
                raise ValueError("only the pointwise generator can be evaluated on a pixel subgrid")
            return self.generator(image, latents)
        if stride == 1:
            return self.generator(image, latents, conditioning)
        height, width = image.shape[-2:]
        rows = torch.arange(phase[0], height, stride, device=image.device)
        cols = torch.arange(phase[1], width, stride, device=image.device)
        return self.generator(
            image[:, :, phase[0] :: stride, phase[1] :: stride],
            latents,
            conditioning,
            guide_low=lab_features(image),
            rows=rows,
            cols=cols,
            full_size=(height, width),
        )

    def pair_conditioning(
        self, image_in: torch.Tensor, colours_of: torch.Tensor, hint: torch.Tensor | None = None
    ) -> Conditioning | None:
        """Prior of a pair: the MKL map from ``image_in``'s colours to ``colours_of``'s (config.prior)."""
        if self.config.generator != "pointwise":
            return None
        prior = mkl_affine(image_in, colours_of) if self.config.prior == "mkl" else None
        return Conditioning(prior=prior, hint=hint)

    def self_conditioning(self, image: torch.Tensor) -> Conditioning | None:
        """A self-reconstruction's conditioning: identity prior, no hint (the MKL map of I onto I)."""
        return Conditioning() if self.config.generator == "pointwise" else None

    # --- W-predictor (section 3.4) ------------------------------------------------------------------------
    def semantic_features(self, image: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Frozen (1/8 or None, 1/16) features: the 1/8 ones only for the colour correspondence."""
        with torch.no_grad():
            if self.config.colour_correspondence:
                fine, coarse = self.semantic.pyramid(image)
                return fine, coarse
            return None, self.semantic(image)

    def predictor_inputs(
        self,
        source: torch.Tensor,
        reference: torch.Tensor,
        features: dict[str, torch.Tensor] | None = None,
    ) -> PredictorInputs:
        """Run the frozen networks P_W reads: F_S, F_R, W0_R, w and W0_S (no gradients flow into them).

        features: precomputed frozen features ("semantic_source", "semantic_reference" and, with the colour
        correspondence, "fine_source", "fine_reference"), as a training cache holds them.
        """
        ablations = self.config.ablations
        with torch.no_grad():
            if features is not None and "semantic_source" in features:
                fine_source = features.get("fine_source")
                fine_reference = features.get("fine_reference")
                semantic_source = features["semantic_source"].float()
                semantic_reference = features["semantic_reference"].float()
                fine_source = fine_source.float() if fine_source is not None else None
                fine_reference = fine_reference.float() if fine_reference is not None else None
            else:
                fine_source, semantic_source = self.semantic_features(source)
                fine_reference, semantic_reference = self.semantic_features(reference)
            return PredictorInputs(
                semantic_source=semantic_source,
                semantic_reference=semantic_reference,
                reference_maps=self.self_maps(reference) if ablations.separate_reference_encoder else None,
                code=self.pair_code(source, reference) if ablations.use_w else None,
                source_maps=self.self_maps(source) if self.config.residual_maps else None,
                fine_source=fine_source,
                fine_reference=fine_reference,
            )

    def predict(
        self,
        source: torch.Tensor,
        reference: torch.Tensor,
        mask_ratio: float = 0.0,
        generator: torch.Generator | None = None,
        inputs: PredictorInputs | None = None,
    ) -> tuple[list[torch.Tensor], Conditioning | None]:
        """W = P_W(I_S, I_R) as the 20 layer inputs of G', and the generator's conditioning for the pair."""
        if inputs is None:
            inputs = self.predictor_inputs(source, reference)
        maps, hint = self.predictor.forward_with_hint(
            source, reference, inputs, mask_ratio=mask_ratio, generator=generator
        )
        return self.expand_predicted(maps), self.pair_conditioning(source, reference, hint)

    def predict_maps(
        self,
        source: torch.Tensor,
        reference: torch.Tensor,
        mask_ratio: float = 0.0,
        generator: torch.Generator | None = None,
        inputs: PredictorInputs | None = None,
    ) -> list[torch.Tensor]:
        """W = P_W(I_S, I_R) as the 20 layer inputs of G' (``predict`` without the conditioning)."""
        return self.predict(source, reference, mask_ratio, generator, inputs)[0]

    def recolour(self, source: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """I_P = G'(I_S, P_W(I_S, I_R)) at the working resolution."""
        maps, conditioning = self.predict(source, reference)
        return self.generate(source, maps, conditioning)

    def reconstruct(self, image: torch.Tensor) -> torch.Tensor:
        """G'(I, E_W(I)): the generator's own rendering of I, the base of the full-resolution transfer."""
        return self.generate(image, self.expand(self.self_maps(image)), self.self_conditioning(image))

    # --- weights --------------------------------------------------------------------------------------
    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Every tensor except the frozen backbone's (which ships in its own package)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("semantic.")}

    def save(self, path: str | Path, half: bool = False) -> None:
        """Write safetensors weights (fp16 with ``half``) and the config JSON beside them, atomically."""
        state = {
            k: (v.half() if half and v.is_floating_point() else v).detach().contiguous().cpu()
            for k, v in self.trainable_state_dict().items()
        }
        config_json = json.dumps(self.config.to_dict(), indent=2, sort_keys=True)
        with atomic_write(path) as tmp:
            save_file(state, str(tmp), metadata={"config": config_json, "format": "recolorize-1"})
        with atomic_write(config_path_for(path)) as tmp:
            tmp.write_text(config_json + "\n")

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> RecolorModel:
        """Rebuild a model from a weight file and its config (JSON beside it, else the file's metadata)."""
        path = Path(path)
        config_file = config_path_for(path)
        if config_file.exists():
            config = ModelConfig.from_dict(json.loads(config_file.read_text()))
        else:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
            if "config" not in metadata:
                raise ValueError(f"{path} has no config (no {config_file.name} beside it, none inside)")
            config = ModelConfig.from_dict(json.loads(metadata["config"]))
        model = cls(config)
        state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("semantic.")]
        if missing or unexpected:
            raise ValueError(
                f"{path} does not fit config {config.name!r}: missing {missing[:5]}, "
                f"unexpected {unexpected[:5]}"
            )
        return model.to(device).eval()
