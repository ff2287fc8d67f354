"""The networks as the ONNX graphs inference runs (``recolorize.inference.onnx_model`` names their inputs).

The networks are defined once, in torch, for training; these wrappers only choose what one graph computes,
so that the NumPy side never repeats network maths:

    features      phi(I) -> (1/8, 1/16) frozen EfficientNet-Lite0 features, any batch and size: the
                  lattice prior's descriptors at 384 px (``recolorize.prior``)
    predictor_k   (I_S, k references) at the working resolution -> W1, W2, W3 = P_W(I_S, I_R), W0_S = E_W(I_S)
                  and the colour hint; E_w, E_W, P_W and their frozen features inside, for any k
                  (several references lie side by side, as ``RecolorModel.reference_canvas`` lays them)
    generator     G'(I, W_alpha) on every pixel of an image of any size: the pointwise f with its guided
                  upsampling; W_alpha = W0_S + alpha (W - W0_S) and the faded hint computed inside from the
                  strength alpha; the base (the lattice prior applied to I) is an input; ``band`` = (top,
                  full height) renders a band of a taller image's rows (``inference.onnx_model.band_edges``)

Why not one graph: the prior's NumPy fit sits between the frozen features and the generator, the predictor
runs once a pair while the generator runs at every strength, and a photo's references may number 1 to 4.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from recolorize.networks.blocked import render_blocked
from recolorize.networks.model import RecolorModel
from recolorize.networks.pointwise import lab_features
from recolorize.networks.predictor import PredictorInputs, cosine_attention, fine_descriptor

__all__ = ["FeaturesGraph", "PredictorGraph", "GeneratorGraph", "check_exportable"]


def check_exportable(model: RecolorModel) -> None:
    """``ValueError`` naming what the ONNX runtime does not run: it runs the pointwise generator with the
    lattice prior, the colour correspondence and residual maps at all three latent levels (the shipped
    design); the older configs stay trainable and evaluable in torch."""
    config = model.config
    problems = []
    if config.generator != "pointwise":
        problems.append(f"generator {config.generator!r} (needs 'pointwise')")
    if config.prior != "correspondence-lut":
        problems.append(f"prior {config.prior!r} (needs 'correspondence-lut')")
    if not config.colour_correspondence:
        problems.append("no colour correspondence")
    if not config.residual_maps:
        problems.append("no residual maps")
    if config.ablations.latent_levels != "all":
        problems.append(f"latent levels {config.ablations.latent_levels!r} (needs 'all')")
    if config.semantic_backbone != "efficientnet_lite0":
        problems.append(f"backbone {config.semantic_backbone!r} (needs 'efficientnet_lite0')")
    if problems:
        raise ValueError(f"config {config.name} cannot be exported to ONNX: {'; '.join(problems)}")


class FeaturesGraph(nn.Module):
    """phi(I): the frozen network's (1/8, 1/16) features of a batch of [0, 1] images."""

    def __init__(self, model: RecolorModel) -> None:
        super().__init__()
        self.semantic = model.semantic

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.semantic.net.features_1_8_and_1_16(image)


class PredictorGraph(nn.Module):
    """(I_S, references (k, 3, r, r)) -> (W1, W2, W3, W0_S, hint): ``RecolorModel.predict``'s networks,
    without the prior (fitted in NumPy) and without expanding the maps to the 20 layers, for any number k
    of references.

    ``RecolorModel.predictor_inputs`` runs the frozen networks reference by reference and lays the results
    side by side, a Python loop that a trace would freeze at one k; here the references are one batch and
    laid side by side by a reshape: the same numbers (a test holds them equal for one and two references).
    """

    def __init__(self, model: RecolorModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, source: torch.Tensor, references: torch.Tensor) -> tuple[torch.Tensor, ...]:
        model = self.model
        count = references.shape[0]

        def side_by_side(batch: torch.Tensor) -> torch.Tensor:
            """(k, C, h, w) -> (1, C, h, k w), reference 0 leftmost (``reference_canvas``'s layout)."""
            channels, height, width = batch.shape[1:]
            return batch.permute(1, 2, 0, 3).reshape(1, channels, height, count * width)

        fine_source, semantic_source = model.semantic.pyramid(source)
        fine_reference, semantic_reference = model.semantic.pyramid(references)
        codes = model.pair_code(source.expand(count, -1, -1, -1), references)
        inputs = PredictorInputs(
            semantic_source=semantic_source,
            semantic_reference=side_by_side(semantic_reference),
            reference_maps=side_by_side(model.self_maps(references)),
            code=codes.mean(dim=0, keepdim=True),
            source_maps=model.self_maps(source),
            fine_source=fine_source,
            fine_reference=side_by_side(fine_reference),
        )
        # each reference's descriptors alone (fine_descriptors), then the attention over all of them
        inputs.fine_similarity = cosine_attention(
            fine_descriptor(fine_source, semantic_source),
            side_by_side(fine_descriptor(fine_reference, semantic_reference)),
        )
        maps, hint = model.predictor.forward_with_hint(source, side_by_side(references), inputs)
        return (*maps, inputs.source_maps, hint)


class GeneratorGraph(nn.Module):
    """G'(I, W_alpha) with the conditioning at strength alpha (``Recolorizer.render_array``'s maths)."""

    def __init__(self, model: RecolorModel) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        image: torch.Tensor,
        base: torch.Tensor,
        source_low: torch.Tensor,
        self_maps: torch.Tensor,
        maps_1: torch.Tensor,
        maps_2: torch.Tensor,
        maps_3: torch.Tensor,
        hint: torch.Tensor,
        strength: torch.Tensor,
        band: torch.Tensor,
    ) -> torch.Tensor:
        faded = []
        for predicted in (maps_1, maps_2, maps_3):
            own = F.interpolate(self_maps, size=predicted.shape[-2:], mode="bilinear", align_corners=False)
            faded.append(own + strength * (predicted - own))
        styles = self.model.generator.coarse_styles(self.model.expand_predicted(faded))
        generator, guide_low = self.model.generator, lab_features(source_low)
        return render_blocked(generator, image, styles, hint * strength, base, guide_low, (band[0], band[1]))
