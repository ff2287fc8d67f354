"""An exponential moving average of the networks a stage trains (``TrainConfig.ema_decay`` > 0).

The average is what a stage ends with: :meth:`EMA.copy_to_model` puts it into the model before the last
checkpoint and ``{stage}.safetensors`` are written, and the checkpoint keeps it so a resumed run goes on
averaging where it stopped.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from recolorize.networks.model import RecolorModel

__all__ = ["EMA"]


class EMA:
    """Exponential moving average of the stage's networks (floating tensors; other buffers are copied)."""

    def __init__(self, model: RecolorModel, trainable: Sequence[str], decay: float) -> None:
        self.decay = decay
        self.live = {
            f"{name}.{key}": value
            for name in trainable
            for key, value in getattr(model, name).state_dict(keep_vars=False).items()
        }
        self.shadow = {key: value.detach().clone() for key, value in self.live.items()}

    @torch.no_grad()
    def update(self) -> None:
        """One step of the average, after each optimiser step that was taken."""
        for key, live in self.live.items():
            if live.is_floating_point():
                self.shadow[key].lerp_(live, 1.0 - self.decay)
            else:
                self.shadow[key].copy_(live)

    @torch.no_grad()
    def load(self, state: dict[str, torch.Tensor]) -> None:
        """Resume the average from a checkpoint's ``ema_state``."""
        for key, value in state.items():
            self.shadow[key].copy_(value)

    @torch.no_grad()
    def copy_to_model(self) -> None:
        """Make the average the model's weights (at the end of the stage)."""
        for key, live in self.live.items():
            live.copy_(self.shadow[key])
