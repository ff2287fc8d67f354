"""recolorize: exemplar-based photo re-colorization (Yang, Xu, Fan: latent-guided, spatially-adaptive).

from recolorize import Recolorizer
Recolorizer.from_pretrained().transfer("source.jpg", "reference.jpg", strength=1.0).save("out.jpg")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "Recolorizer",
    "RecolorModel",
    "ModelConfig",
    "get_config",
    "Lut3D",
    "transfer_lut",
    "read_cube",
    "write_cube",
    "__version__",
]
__version__ = "0.1.0"

if TYPE_CHECKING:  # pragma: no cover
    from recolorize.config import ModelConfig, get_config
    from recolorize.inference.lut import Lut3D, read_cube, transfer_lut, write_cube
    from recolorize.inference.pipeline import Recolorizer
    from recolorize.networks.model import RecolorModel


def __getattr__(name: str) -> Any:
    """Import the heavy parts (torch models) only when they are used, so ``recolorize --help`` is quick."""
    if name == "Recolorizer":
        from recolorize.inference.pipeline import Recolorizer

        return Recolorizer
    if name == "RecolorModel":
        from recolorize.networks.model import RecolorModel

        return RecolorModel
    if name in ("Lut3D", "transfer_lut", "read_cube", "write_cube"):
        from recolorize.inference import lut

        return getattr(lut, name)
    if name in ("ModelConfig", "get_config"):
        from recolorize import config

        return getattr(config, name)
    raise AttributeError(f"module 'recolorize' has no attribute {name!r}")
