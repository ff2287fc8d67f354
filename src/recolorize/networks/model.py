"""RecolorModel: the paper's four networks and the frozen semantic backbone, built from one ModelConfig.

Weights are saved as safetensors (trainable networks only; the frozen backbone comes from its installed
package) with the config JSON beside them and inside the file's metadata, so a model is always rebuilt
from its own config. Loading treats the file as untrusted: ``check_weights`` checks it whole
before any weight is read.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from recolorize.config import NUM_STYLES, ModelConfig
from recolorize.config_json import CONFIG_METADATA_KEY
from recolorize.errors import WeightsError, one_line, write_errors
from recolorize.io_utils import atomic_write
from recolorize.networks.colour_prior import apply_colour_affine, correspondence_map, mkl_affine
from recolorize.networks.encoders import MapEncoder, WEncoder
from recolorize.networks.generator import Generator
from recolorize.networks.pointwise import Conditioning, PointwiseGenerator, lab_features
from recolorize.networks.predictor import PredictorInputs, WPredictor, fine_attention
from recolorize.networks.weights_file import check_file, check_finite, config_path_for

__all__ = ["RecolorModel", "check_weights", "is_backbone_key"]

#: Generator layers (1-based, inclusive) filled by W1, W2, W3 (section 3.4.3, after pSp [18]).
LAYERS_PER_LEVEL = {"W1": range(1, 10), "W2": range(10, 13), "W3": range(13, 21)}


def check_weights(path: str | Path) -> ModelConfig:
    """Check a weight file whole without reading a weight (``weights_file.check_file``): header, config, and
    every tensor against the model its config builds; one ``WeightsError`` line otherwise."""
    return check_file(path, _skeleton)


def _skeleton(config: ModelConfig) -> nn.Module:
    """The model ``config`` builds, without its frozen backbone: the tensors a weight file must hold."""
    return RecolorModel(config, semantic=nn.Identity())


def is_backbone_key(name: str) -> bool:
    """Whether a state-dict key is the frozen semantic backbone's: no weight file or checkpoint holds those
    (they come from the backbone's own package), so they are left out when saving and not missed when
    loading."""
    return name.startswith("semantic.")


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
        if conditioning is not None and conditioning.base is not None:
            base = conditioning.base[:, :, phase[0] :: stride, phase[1] :: stride]
            conditioning = dataclasses.replace(conditioning, base=base)
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
        self,
        image_in: torch.Tensor,
        colours_of: torch.Tensor,
        hint: torch.Tensor | None = None,
        inputs: PredictorInputs | None = None,
        prior: torch.Tensor | None = None,
    ) -> Conditioning | None:
        """The pair's prior (config.prior), a map from ``image_in``'s colours toward ``colours_of``'s, and
        the colour hint. The correspondence prior matches cells along P_W's 1/8 correspondence (``inputs``);
        without ``inputs`` the two images are taken as aligned (a stage-1 pair).

        prior: the lattice prior (B, 3, S, S, S) when the caller fitted it from the photos (inference) or
        read it from the training cache; "correspondence-lut" without it fits it from these images."""
        if self.config.generator != "pointwise":
            return None
        if self.config.prior == "correspondence-lut":
            if prior is None:
                prior = self.lattice_prior(image_in, colours_of, aligned=inputs is None)
            return Conditioning(prior=prior.to(image_in.device, image_in.dtype), hint=hint)
        prior = None
        if self.config.prior == "mkl":
            prior = mkl_affine(image_in, colours_of)
        elif self.config.prior.startswith("correspondence"):
            degree = 2 if self.config.prior == "correspondence-quadratic" else 1
            if inputs is None:
                prior = correspondence_map(image_in, colours_of, degree=degree)
            else:
                prior = correspondence_map(
                    image_in,
                    colours_of,
                    fine_attention(inputs),
                    tuple(inputs.fine_source.shape[-2:]),
                    tuple(inputs.fine_reference.shape[-2:]),
                    degree=degree,
                    fallback=mkl_affine(image_in, colours_of),
                )
        return Conditioning(prior=prior, hint=hint)

    def lattice_prior(self, image_in: torch.Tensor, colours_of: torch.Tensor, aligned: bool) -> torch.Tensor:
        """``recolorize.prior``'s lattice (B, 3, S, S, S) from these images as they are: matched along the
        frozen network's descriptors, or cell for cell when ``aligned`` (a stage-1 pair)."""
        from recolorize.networks.prior_features import lattice_tensor, photos_prior
        from recolorize.prior import fit_lattice
        from recolorize.prior.matching import cell_colours

        lattices = []
        for source, reference in zip(image_in.detach().cpu(), colours_of.detach().cpu(), strict=True):
            if aligned:
                grid = (source.shape[1] // 8, source.shape[2] // 8)
                pixels_in = cell_colours(source.permute(1, 2, 0).numpy(), grid)
                pixels_out = cell_colours(reference.permute(1, 2, 0).numpy(), grid)
                lattices.append(fit_lattice(pixels_in, pixels_out, np.ones(len(pixels_in))).lattice)
            else:
                lattices.append(photos_prior(self.semantic, source, [reference]).lattice)
        return lattice_tensor(lattices, image_in.device)

    @staticmethod
    def with_local_field(
        conditioning: Conditioning, image: torch.Tensor, offsets: torch.Tensor
    ) -> Conditioning:
        """``conditioning`` with its base set to the lattice's colour of ``image`` plus the prior's local
        field already sliced at its pixels (``offsets``, (B, 3, H, W): ``prior_features.local_offsets``):
        what f works on in a model with ``local_field="base"``, in training and in the torch pipeline."""
        base = apply_colour_affine(conditioning.prior, image) + offsets
        return dataclasses.replace(conditioning, base=base)

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

    @staticmethod
    def reference_canvas(reference: torch.Tensor | Sequence[torch.Tensor]) -> tuple[torch.Tensor, int]:
        """Several references (each (B, 3, r, r)) side by side as one I_R (B, 3, r, k r), and k.

        Why side by side: the attention (eq. 4), the warped colours and the classical prior then run over
        the union of all references' positions and pixels, so each source region takes its colour from its
        best match in any of them; the networks that convolve see each reference alone (``per_reference``).
        """
        if isinstance(reference, torch.Tensor):
            return reference, 1
        references = list(reference)
        if not references:
            raise ValueError("at least one reference is needed")
        if len({tuple(r.shape) for r in references}) != 1:
            raise ValueError("all references must have the same shape (resize them to the working size)")
        return torch.cat(references, dim=-1), len(references)

    def reference_features(self, reference: torch.Tensor) -> dict[str, torch.Tensor | None]:
        """What the frozen networks compute from one I_R alone (F_R at 1/8 and 1/16, W0_R): kept by a caller
        that pairs many sources with one reference (a batch) and passed back to ``predictor_inputs``."""
        fine, semantic = self.semantic_features(reference)
        with torch.no_grad():
            maps = self.self_maps(reference) if self.config.ablations.separate_reference_encoder else None
        return {"fine_reference": fine, "semantic_reference": semantic, "reference_maps": maps}

    def predictor_inputs(
        self,
        source: torch.Tensor,
        reference: torch.Tensor | Sequence[torch.Tensor],
        features: dict[str, torch.Tensor] | None = None,
        reference_side: dict[str, torch.Tensor | None] | None = None,
    ) -> PredictorInputs:
        """Run the frozen networks P_W reads: F_S, F_R, W0_R, w and W0_S (no gradients flow into them).

        reference: one I_R, or a list of references (``reference_canvas``); with several, w is the mean of
        the pair codes E_w(I_S, I_R_k) (each code describes one colour change; their mean is the look the
        references share, as the attention picks local colour from the best of them).
        features: precomputed frozen features ("semantic_source", "semantic_reference" and, with the colour
        correspondence, "fine_source", "fine_reference"), as a training cache holds them.
        reference_side: ``reference_features(reference)`` computed before, for one reference.
        """
        reference, tiles = self.reference_canvas(reference)
        if tiles > 1:
            if features is not None:
                raise ValueError("precomputed features are for one reference")
            parts = list(reference.chunk(tiles, dim=-1))
            one = [self.predictor_inputs(source, part) for part in parts]

            def side(name: str) -> torch.Tensor | None:
                """The references' ``name`` side by side, as their images lie in the canvas."""
                first = getattr(one[0], name)
                return None if first is None else torch.cat([getattr(i, name) for i in one], dim=-1)

            codes = [i.code for i in one]
            return PredictorInputs(
                semantic_source=one[0].semantic_source,
                semantic_reference=side("semantic_reference"),
                reference_maps=side("reference_maps"),
                code=None if codes[0] is None else torch.stack(codes).mean(0),
                source_maps=one[0].source_maps,
                fine_source=one[0].fine_source,
                fine_reference=side("fine_reference"),
                reference_tiles=tiles,
            )
        ablations = self.config.ablations
        with torch.no_grad():
            if features is not None and "semantic_source" in features:
                fine_source = features.get("fine_source")
                fine_reference = features.get("fine_reference")
                semantic_source = features["semantic_source"].float()
                semantic_reference = features["semantic_reference"].float()
                fine_source = fine_source.float() if fine_source is not None else None
                fine_reference = fine_reference.float() if fine_reference is not None else None
                reference_maps = self.self_maps(reference) if ablations.separate_reference_encoder else None
            else:
                fine_source, semantic_source = self.semantic_features(source)
                side = reference_side if reference_side is not None else self.reference_features(reference)
                fine_reference, semantic_reference = side["fine_reference"], side["semantic_reference"]
                reference_maps = side["reference_maps"]
            return PredictorInputs(
                semantic_source=semantic_source,
                semantic_reference=semantic_reference,
                reference_maps=reference_maps,
                code=self.pair_code(source, reference) if ablations.use_w else None,
                source_maps=self.self_maps(source) if self.config.residual_maps else None,
                fine_source=fine_source,
                fine_reference=fine_reference,
            )

    def predict(
        self,
        source: torch.Tensor,
        reference: torch.Tensor | Sequence[torch.Tensor],
        mask_ratio: float = 0.0,
        generator: torch.Generator | None = None,
        inputs: PredictorInputs | None = None,
        prior: torch.Tensor | None = None,
    ) -> tuple[list[torch.Tensor], Conditioning | None]:
        """W = P_W(I_S, I_R) as the 20 layer inputs of G', and the generator's conditioning for the pair.

        reference: one I_R or several (``reference_canvas``); the prior is fitted over all of them.
        prior: a lattice prior fitted before (``pair_conditioning``).
        """
        if not isinstance(reference, torch.Tensor):
            if inputs is None:
                inputs = self.predictor_inputs(source, reference)
            reference, _ = self.reference_canvas(reference)
        if inputs is None:
            inputs = self.predictor_inputs(source, reference)
        maps, hint = self.predictor.forward_with_hint(
            source, reference, inputs, mask_ratio=mask_ratio, generator=generator
        )
        return self.expand_predicted(maps), self.pair_conditioning(source, reference, hint, inputs, prior)

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
        return {k: v for k, v in self.state_dict().items() if not is_backbone_key(k)}

    def save(self, path: str | Path, half: bool = False) -> None:
        """Write safetensors weights (fp16 with ``half``) and the config JSON beside them, atomically."""
        state = {
            k: (v.half() if half and v.is_floating_point() else v).detach().contiguous().cpu()
            for k, v in self.trainable_state_dict().items()
        }
        config_json = json.dumps(self.config.to_dict(), indent=2, sort_keys=True)
        with write_errors(path, "weights "), atomic_write(path) as tmp:  # a full disk: one line, exit 2
            save_file(state, str(tmp), metadata={CONFIG_METADATA_KEY: config_json, "format": "recolorize-1"})
        with write_errors(config_path_for(path), "config "), atomic_write(config_path_for(path)) as tmp:
            tmp.write_text(config_json + "\n")

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> RecolorModel:
        """Rebuild a model from a weight file and its config (JSON beside it, else the file's metadata).

        Everything is checked (``check_weights``) before the model is built or a weight is read; any
        failure is a ``WeightsError`` (a ``ValueError``) of one line.
        """
        path = Path(path)
        config = check_weights(path)
        try:
            model = cls(config)
            loaded = load_file(str(path))
            state = {k: v.float() if v.is_floating_point() else v for k, v in loaded.items()}
            model.load_state_dict(state, strict=False)
        except MemoryError:
            raise WeightsError(f"not enough memory to load model weights {path}") from None
        except Exception as exc:  # noqa: BLE001 - e.g. safetensors' own error on inconsistent offsets
            raise WeightsError(f"cannot load model weights {path}: {one_line(exc)}") from None
        check_finite(path, model.trainable_state_dict())  # NaN / inf weights: one line, not a black photo
        return model.to(device).eval()

    def with_config(self, config: ModelConfig) -> RecolorModel:
        """These weights under another config whose tensors have the same names and shapes (e.g. another
        colour prior): the warm start of a fine-tune (``recolorize train --config X --init W``)."""
        model = RecolorModel(config, semantic=self.semantic)
        ours, theirs = self.trainable_state_dict(), model.trainable_state_dict()
        unfit = sorted(
            set(ours) ^ set(theirs) | {k for k in set(ours) & set(theirs) if ours[k].shape != theirs[k].shape}
        )
        if unfit:
            shown = ", ".join(unfit[:3]) + (" ..." if len(unfit) > 3 else "")
            raise ValueError(f"weights of config {self.config.name} do not fit config {config.name}: {shown}")
        model.load_state_dict(ours, strict=False)
        return model.to(next(self.parameters()).device).eval()

    def with_local_transfer(self) -> RecolorModel:
        """A copy of this pointwise model with ``local_transfer`` on, warm-started rather than from zero.

        f's first layer gains the 3 local-transfer columns (pointwise.local_colour_transfer); the weights of
        its scaled-Lab input columns move to them, with their styles. With no hint (a self-reconstruction)
        the local transfer is the pixel's own Lab, so G(I, W0) is unchanged and E_W stays valid; with a
        reference, f at once reads the colour the match suggests where it read the pixel's, and fine-tuning
        (stage 3) learns how far to trust it. A zero-initialised column learned ~10x slower here (measured).
        """
        if self.config.generator != "pointwise" or not self.config.colour_correspondence:
            raise ValueError("local transfer needs the pointwise generator with the colour correspondence")
        if self.config.local_transfer:
            raise ValueError("the model already has the local transfer")
        grown = RecolorModel(self.config.replace(local_transfer=True), semantic=self.semantic)
        state = self.state_dict()
        with torch.no_grad():
            for name, target in grown.state_dict().items():
                value = state[name]
                if value.shape != target.shape:  # layer 0's weight (out, in, 1, 1) and its style affine
                    grown_value = target.clone()
                    grown_value[tuple(slice(0, n) for n in value.shape)] = value
                    state[name] = grown_value
            grown.load_state_dict(state)
            first = grown.generator.layers[0]
            lab, local = slice(3, 6), slice(first.weight.shape[1] - 3, first.weight.shape[1])
            first.weight[:, local] = first.weight[:, lab]
            first.weight[:, lab] = 0.0
            first.affine.linear.weight[local] = first.affine.linear.weight[lab]
            first.affine.linear.bias[local] = first.affine.linear.bias[lab]
        return grown.to(next(self.parameters()).device).eval()
