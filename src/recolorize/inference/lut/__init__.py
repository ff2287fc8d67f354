"""3D colour lookup tables: take a transfer's look away as a ``.cube`` file, and apply any ``.cube`` fast.

A LUT is one *global* colour mapping, while the model's transfer is local (each region gets its own styles).
Two ways of turning a transfer into a LUT were measured on the ground-truth benchmark (docs/results.md,
"3D LUT"):

* ``"fit"`` (the default): a regularised least-squares 33^3 LUT fitted to the pairs (source pixel -> output
  pixel) of the whole photo. The fit is trilinear-consistent (each sample is the trilinear blend of its
  8 lattice neighbours, exactly as the LUT will be applied), and a smoothness term on the LUT's offset
  from the global affine fit of the pairs fills the colours the photo lacks smoothly: a missing colour
  follows the global trend plus the correction of the colours around it, so the LUT stays monotone where
  the fitted mapping is. This is the best global approximation of what the model did to *this* photo.
* ``"pooled"``: the pointwise generator evaluated on the lattice colours with its latent maps (and the
  colour hint) averaged over the image: the global part of the look, with no fit.

Applying is trilinear interpolation with NumPy and Pillow, no torch (``table``): exact in float32
(``Lut3D.apply``), or for 8-bit photos through Pillow's C ``Color3DLUT`` (``Lut3D.apply_8bit``, within 1 level
of the float result rounded; a 12 MP photo in ~0.3 s on one core), which ``lut-apply`` uses. ``.cube`` files
are read and written by our own small reader and writer (``cube``), in the Adobe/Resolve layout:
``LUT_3D_SIZE``, domain 0-1, red index fastest. Not colour-science, which wrote them before: ~100 MB installed
and over a second of import for a plain text format of a few keywords and rows of numbers; a test holds ours
equal to it (each reads what the other writes). LUTs work on sRGB-encoded values, the space the model works
in: ``imaging.load_image`` gives a photo's sRGB copy, and ``save_image(..., like=photo)`` carries the change
onto the photo's own samples in its own profile, as for ``transfer``.

One job per module: ``table`` (:class:`Lut3D` and applying it), ``fit`` (the least-squares fit),
``from_transfer`` (a prepared pair's look as a LUT) and ``cube`` (``.cube`` I/O). This package re-exports
their public names, the API the CLI, ``recolorize.Lut3D`` and the benchmarks use.
"""

from __future__ import annotations

from recolorize.inference.lut.cube import (
    MAX_CUBE_1D_SIZE,
    MAX_CUBE_3D_SIZE,
    MAX_CUBE_BYTES,
    LutError,
    cube_text,
    read_cube,
    write_cube,
)
from recolorize.inference.lut.fit import FIT_MAX_SAMPLES, FIT_ORDER, FIT_PRIOR, FIT_SMOOTHNESS, fit_lut
from recolorize.inference.lut.from_transfer import LUT_METHODS, pooled_generator_lut, transfer_lut
from recolorize.inference.lut.table import LUT_SIZE, Lut3D, apply_lut, apply_lut_8bit

__all__ = [
    "Lut3D",
    "LutError",
    "LUT_SIZE",
    "LUT_METHODS",
    "FIT_SMOOTHNESS",
    "FIT_ORDER",
    "FIT_PRIOR",
    "FIT_MAX_SAMPLES",
    "MAX_CUBE_BYTES",
    "MAX_CUBE_1D_SIZE",
    "MAX_CUBE_3D_SIZE",
    "apply_lut",
    "apply_lut_8bit",
    "fit_lut",
    "pooled_generator_lut",
    "transfer_lut",
    "cube_text",
    "read_cube",
    "write_cube",
]
