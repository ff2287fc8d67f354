"""The local web app (``recolorize app``): a stdlib HTTP server and one static page.

Start it with ``recolorize app`` (http://127.0.0.1:7860/) or from Python::

    from recolorize import Recolorizer
    from recolorize.app import create_server

    server = create_server(Recolorizer.from_pretrained(), port=0)
    print(server.url)
    server.serve_forever()

The defaults live here (not in ``server``) so that ``recolorize --help`` does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from recolorize.image_formats import APP_DEFAULT_MAX_PIXELS

__all__ = [
    "DEFAULT_CACHE_SIZE",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MAX_UPLOAD_MB",
    "DEFAULT_PORT",
    "DEFAULT_PREVIEW_SIZE",
    "AppConfig",
    "AppServer",
    "create_server",
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

if TYPE_CHECKING:  # pragma: no cover
    from recolorize.app.jobs import AppConfig
    from recolorize.app.server import AppServer, create_server


def __getattr__(name: str) -> Any:
    if name == "AppConfig":
        from recolorize.app.jobs import AppConfig

        return AppConfig
    if name in ("AppServer", "create_server"):
        from recolorize.app import server

        return getattr(server, name)
    raise AttributeError(f"module 'recolorize.app' has no attribute {name!r}")
