"""The web app's defaults, in a module of their own: ``recolorize --help`` shows them without importing the
server, and the server's modules read them without importing the package ``__init__`` that imports them."""

from __future__ import annotations

from recolorize.image_formats import APP_DEFAULT_MAX_PIXELS

__all__ = [
    "DEFAULT_CACHE_SIZE",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MAX_UPLOAD_MB",
    "DEFAULT_PORT",
    "DEFAULT_PREVIEW_SIZE",
]

DEFAULT_PORT = 7860
#: Largest accepted image file, in MB (10^6 bytes), per image.
DEFAULT_MAX_UPLOAD_MB = 40.0
#: Decompression-bomb limit for uploads (lower than the CLI's on purpose; the reason is at its definition).
DEFAULT_MAX_PIXELS = APP_DEFAULT_MAX_PIXELS
#: Prepared pairs kept (LRU): each holds the full-size source as float32 plus the latents.
DEFAULT_CACHE_SIZE = 4
#: Long side of the preview the strength slider re-renders; the download is always full size.
DEFAULT_PREVIEW_SIZE = 1024
