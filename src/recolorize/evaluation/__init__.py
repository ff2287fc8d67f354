"""Evaluation: image-quality metrics (``metrics``), classical colour-transfer baselines (``baselines``).

Submodules are imported explicitly (``from recolorize.evaluation.metrics import METRICS``) so that importing
the package stays cheap.
"""

from __future__ import annotations

__all__: list[str] = []
