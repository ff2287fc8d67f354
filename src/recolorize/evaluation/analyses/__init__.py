"""The paper's analyses of its latent spaces (``recolorize analyse {table3,fig4,fig5,w0}``).

- ``table3`` (section 4.3.3, Table 3): how well each latent space represents colour changes. Colour-augmented
  pairs (I_in, I_out), made exactly as in stage-1 training (:class:`recolorize.data.pairs.ColourPairDataset`),
  are reconstructed by the online scheme of SpaceEdit: the 1d code of G is optimised from E_w(I_in, I_out)
  (:func:`recolorize.optimize.optimise_code`), then the 20 maps of G' from the 1d result
  (:func:`recolorize.optimize.optimise_maps`). Reported: mean MAE (0-255) of G(I_in, E_w(I_in, I_out))
  (encoder only), of the 1d optimum and of the 2d optimum, beside the identity MAE(I_in, I_out).
  Paper: 8.68 (finetuned G) and 5.06 (G'); 11.2 for the original SpaceEdit G, which we do not have.
- ``fig4`` (section 3.3, Figure 4): nearest neighbours of a few query images by cosine similarity of
  w0 = E_w(I, I) versus by colour-histogram intersection (:func:`recolorize.evaluation.metrics.his`).
- ``fig5`` (section 3.3, eq. 3, Figure 5): self-similarity heatmap H(j) = <W0(i), W0(j)> (cosine) of
  W0 = E_W(I) for a query point i, beside the same heatmap of VGG16 relu2_2 features. Quantified by the
  correlation of each heatmap with colour closeness to the query (-Delta E76 in CIE Lab).
- ``w0`` (section 3.3): MAE (0-255) of G(I, w0_I) with the image's own code versus codes of other images
  (paper: 1.89 vs 2.85 over 1k images), and how the error falls as the two codes get more similar.

Images are centre squares at the model's working resolution (``model.config.resolution``). Each analysis
writes ``<name>.png``, ``<name>.json`` (all numbers and settings) and ``<name>.md`` into the output folder.

One job per module: ``common`` (options, photo choice, centre squares, shared settings), ``similarity``
(the numbers: cosine and histogram matrices, eq. 3 heatmaps, rank correlations), ``report`` (JSON,
markdown and figure files), one module per analysis (``reconstruction``: table3, ``neighbours``: fig4,
``heatmaps``: fig5, ``own_code``: w0; each computes, then plots and writes) and this registry.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from recolorize.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    from recolorize.evaluation.analyses.common import AnalysisOptions
    from recolorize.networks.model import RecolorModel

__all__ = ["Analysis", "ANALYSES", "get_analysis"]


@dataclass(frozen=True)
class Analysis:
    """A registered analysis: ``run(model, images_dir, out_dir, options)`` -> paths and headline numbers.

    The registry names each analysis's function (``module``, ``function``) rather than holding it, so that
    listing the analyses (``recolorize --help``) imports no torch: that is the train extra's.
    """

    name: str
    module: str
    function: str
    description: str

    @property
    def run(self) -> Callable[[RecolorModel, Path, Path, AnalysisOptions], dict[str, Any]]:
        """The analysis's function, imported now."""
        module = importlib.import_module(f"recolorize.evaluation.analyses.{self.module}")
        return getattr(module, self.function)


ANALYSES: Mapping[str, Analysis] = MappingProxyType(
    {
        "table3": Analysis(
            "table3",
            "reconstruction",
            "table3",
            "Table 3: reconstruction MAE of the 1d G and the 2d G' latents",
        ),
        "fig4": Analysis(
            "fig4", "neighbours", "fig4", "Figure 4: neighbours by w0 cosine versus colour histogram"
        ),
        "fig5": Analysis(
            "fig5", "heatmaps", "fig5", "Figure 5: W0 versus VGG relu2_2 self-similarity heatmaps (eq. 3)"
        ),
        "w0": Analysis(
            "w0", "own_code", "w0_reconstruction", "Section 3.3: G(I, w0) error with own versus others' w0"
        ),
    }
)


def get_analysis(name: str) -> Analysis:
    """Look up an analysis; an unknown name is a :class:`UserError` listing the known ones."""
    try:
        return ANALYSES[name]
    except KeyError:
        raise UserError(f"unknown analysis {name!r}; choose from {', '.join(ANALYSES)}") from None
