"""The networks one stage trains as one module, and freezing every other network.

:class:`StageNetwork` holds exactly the trainable networks as children, so DistributedDataParallel syncs
exactly the parameters that learn; its ``forward`` is the stage's forward pass and loss terms
(``Stage.forward``, ``LOSS_TERMS``). Frozen networks stay in eval mode without gradients, though gradients
still flow *through* them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from torch import nn

from recolorize.lpips import LPIPS
from recolorize.networks.model import RecolorModel
from recolorize.training.stages import LOSS_TERMS, Stage, StageOutputs

__all__ = ["TRAINABLE_NETWORKS", "StageNetwork", "freeze_all_but"]

#: RecolorModel attributes that a stage may train (``Stage.trainable``, ``StageConfig.also_train``).
TRAINABLE_NETWORKS: tuple[str, ...] = ("generator", "w_encoder", "map_encoder", "predictor")


class StageNetwork(nn.Module):
    """The trainable networks of one stage as one module (what DDP wraps); ``forward`` runs the stage.

    The frozen networks and LPIPS are reached through the model but are not children of this module, so
    DDP neither syncs nor broadcasts them. Returns the stage outputs and the unweighted loss terms.
    """

    def __init__(
        self,
        model: RecolorModel,
        stage: Stage,
        weights: dict[str, float],
        lpips: LPIPS | None,
        trainable: Sequence[str] | None = None,
    ):
        super().__init__()
        names = stage.trainable if trainable is None else trainable
        self.trainable = nn.ModuleDict({name: getattr(model, name) for name in names})
        self.pixel_stride = 1
        self._context = (model, stage, tuple(weights), lpips)  # a tuple: not registered as children

    def forward(
        self, batch: dict[str, torch.Tensor], mask_ratio: float, mask_generator: torch.Generator | None
    ) -> tuple[StageOutputs, dict[str, torch.Tensor]]:
        model, stage, names, lpips = self._context
        outputs = stage.forward(model, batch, mask_ratio, mask_generator, self.pixel_stride)
        terms = {name: LOSS_TERMS[name](outputs, model, lpips).float() for name in names}
        return outputs, terms

    @torch.no_grad()
    def identity_loss(self, outputs: StageOutputs, weights: dict[str, float]) -> torch.Tensor | None:
        """The weighted loss of doing nothing (the prediction replaced by ``outputs.unchanged``)."""
        if outputs.unchanged is None:
            return None
        model, _, names, lpips = self._context
        unchanged = dataclasses.replace(outputs, prediction=outputs.unchanged)
        return sum(weights[n] * LOSS_TERMS[n](unchanged, model, lpips).float() for n in names)


def freeze_all_but(model: RecolorModel, trainable: Sequence[str]) -> list[nn.Parameter]:
    """Frozen networks: eval mode, no gradients; trainable ones: train mode. Returns the trainable params."""
    model.eval()
    model.requires_grad_(False)
    params: list[nn.Parameter] = []
    for name in trainable:
        module = getattr(model, name)
        module.train()
        module.requires_grad_(True)
        params.extend(module.parameters())
    return params
