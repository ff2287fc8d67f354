"""Inference: image I/O (EXIF, ICC, alpha, bit depth), the full-resolution transfer and the Recolorizer.

Kept import-light on purpose: ``image_io`` and ``fullres`` are imported from their modules, so that
loading an image never pulls in the networks.
"""

__all__: list[str] = []
