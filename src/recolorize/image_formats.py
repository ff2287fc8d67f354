"""Facts about image files that several layers share, kept in one place and free of heavy imports.

``data`` (folder discovery), ``imaging`` (the codec), the CLI commands and the app all import
these, so this module imports nothing but the standard library (``recolorize --help`` stays light).
"""

from __future__ import annotations

__all__ = [
    "APP_DEFAULT_MAX_PIXELS",
    "DEFAULT_MAX_PIXELS",
    "PHOTO_SUFFIXES",
    "WRITE_FORMATS",
    "WRITE_SUFFIXES",
]

#: Suffixes (lower case) of the files taken as photos when a folder is listed: dataset discovery and
#: ``recolorize transfer`` on a folder. Reading by content accepts more (see ``imaging.READ_FORMATS``).
PHOTO_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

#: Output suffix -> Pillow format name: the formats ``save_image`` writes (the format follows the suffix).
WRITE_FORMATS: dict[str, str] = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".png": "PNG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
    ".bmp": "BMP",
}
#: Output suffixes ``save_image`` writes, in the order the help texts list them.
WRITE_SUFFIXES: tuple[str, ...] = tuple(WRITE_FORMATS)

#: Decompression-bomb guard: images with more pixels than this are refused before decoding.
DEFAULT_MAX_PIXELS = 100_000_000
#: The web app's lower limit for uploads, on purpose: a server holds several prepared pairs at once (an LRU
#: cache of full-size float32 sources plus latents), and a 40 MP photo is already ~0.5 GB as float32 while
#: it is processed; the CLI handles one pair at a time and keeps ``DEFAULT_MAX_PIXELS``.
APP_DEFAULT_MAX_PIXELS = 40_000_000
