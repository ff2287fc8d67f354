"""Inference: the full-resolution transfer, LUTs and the Recolorizer (photo I/O: ``recolorize.imaging``).

Kept import-light on purpose: ``fullres`` and ``pipeline`` are imported from their modules, so that
importing this package never pulls in the networks.
"""

__all__: list[str] = []
