"""The local web app (``recolorize app``): a stdlib HTTP server and one static page.

Start it with ``recolorize app`` (http://127.0.0.1:7860/) or from Python::

    from recolorize import Recolorizer
    from recolorize.app import create_server

    server = create_server(Recolorizer.from_pretrained(), port=0)
    print(server.url)
    server.serve_forever()

The defaults live in ``defaults`` (not in ``server``), so that ``recolorize --help`` imports no server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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

from recolorize.app.defaults import (
    DEFAULT_CACHE_SIZE,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_UPLOAD_MB,
    DEFAULT_PORT,
    DEFAULT_PREVIEW_SIZE,
)

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
