"""Imaging: reading and writing photos without losing what the photographer put in them.

Inside the library an image is sRGB float in [0, 1]. At the boundary we keep everything else a photo
carries and hand it back on save: the EXIF block (with the orientation reset, because the pixels are
stored upright), the embedded ICC profile, the alpha channel (passed through bit-exactly) and the bit
depth (16-bit PNG/TIFF in, 16-bit out). Every way a file can be bad becomes a ``UserError`` naming the
file. Every photo the library reads (training crops, the benchmark builder, evaluation, the CLI, the
app) is decoded here, so training and inference see a photo the same way.

One job per module:

* ``limits``: the pixel limit (``--max-pixels``, ``$RECOLORIZE_MAX_PIXELS``), the formats read, ``MIN_SIDE``;
* ``files``: opening only regular files, only ``READ_FORMATS``;
* ``samples``: a PIL image's samples as arrays (exact 16-bit), ``exif``: orientation;
* ``icc`` (matrix/TRC profiles in float) and ``cms`` (ICC -> sRGB on decode, the change back on encode);
* ``decode``: ``load_image``, ``photo_size``; ``loaded``: ``LoadedImage``;
* ``encode``: ``save_image``, ``encode_image``, ``to_pil``, ``output_format``, ``takes_8bit_srgb``,
  ``check_encodable`` / ``check_output_fits`` (the formats' size limits, before decoding);
* ``pillow_memory``: 8-bit RGB pixels shared with Pillow without copies (``rgbx_array`` for outputs);
* ``convert``: ``to_uint8``, ``resize_for_network`` (tensors), ``resize_image`` (arrays, Pillow filters),
  ``fit_long_side``.

Depends only on ``recolorize.errors``, ``image_formats`` and ``io_utils`` (never on inference,
training, evaluation, commands or the app); torch is imported only by the functions that take tensors.
"""

from recolorize.imaging.convert import fit_long_side, resize_array, resize_for_network, resize_image, to_uint8
from recolorize.imaging.decode import load_image, photo_size
from recolorize.imaging.encode import (
    EncoderError,
    check_encodable,
    check_output_fits,
    encode_image,
    output_format,
    save_image,
    takes_8bit_srgb,
    to_pil,
)
from recolorize.imaging.files import check_regular_file
from recolorize.imaging.limits import (
    DECODE_BYTES_PER_PIXEL,
    DEFAULT_MAX_PIXELS,
    MAX_PIXELS_ENV,
    MIN_SIDE,
    READ_FORMATS,
    parse_max_pixels,
    resolve_max_pixels,
)
from recolorize.imaging.loaded import LoadedImage
from recolorize.imaging.pillow_memory import rgbx_array

__all__ = [
    "DECODE_BYTES_PER_PIXEL",
    "DEFAULT_MAX_PIXELS",
    "MAX_PIXELS_ENV",
    "MIN_SIDE",
    "READ_FORMATS",
    "LoadedImage",
    "check_regular_file",
    "encode_image",
    "fit_long_side",
    "resize_array",
    "load_image",
    "output_format",
    "parse_max_pixels",
    "photo_size",
    "resize_for_network",
    "resize_image",
    "resolve_max_pixels",
    "rgbx_array",
    "save_image",
    "EncoderError",
    "check_encodable",
    "check_output_fits",
    "takes_8bit_srgb",
    "to_pil",
    "to_uint8",
]
