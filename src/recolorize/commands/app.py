"""``recolorize app``: the local web page (drop a source and a reference, move the strength, download).

Listens on 127.0.0.1 only unless ``--host`` names another address. Everything stays on this machine:
the page's assets are served by the app itself and uploads are kept in memory, never written to disk.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import webbrowser
from pathlib import Path

from recolorize.errors import UserError

__all__ = ["register", "run"]

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``app`` subcommand."""
    from recolorize.app import (
        DEFAULT_CACHE_SIZE,
        DEFAULT_MAX_UPLOAD_MB,
        DEFAULT_PORT,
        DEFAULT_PREVIEW_SIZE,
    )
    from recolorize.image_formats import APP_DEFAULT_MAX_PIXELS

    parser = subparsers.add_parser(
        "app",
        help="start the local web app (drop two photos, move the strength slider, download)",
        description="Start the local web app. " + (__doc__ or "").split("\n\n", 1)[1],
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 = any)"
    )
    parser.add_argument("--weights", type=Path, help="model weights (.safetensors); default: shipped model")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument(
        "--max-upload-mb",
        type=float,
        default=DEFAULT_MAX_UPLOAD_MB,
        help=f"largest accepted image file in MB (default {DEFAULT_MAX_UPLOAD_MB:g})",
    )
    parser.add_argument(
        "--max-pixels",
        default=APP_DEFAULT_MAX_PIXELS,
        metavar="N",
        help=f"largest accepted image in pixels, written as for transfer: 40000000 or 4e7 "
        f"(default {APP_DEFAULT_MAX_PIXELS:,})",
    )
    parser.add_argument(
        "--cache",
        type=int,
        default=DEFAULT_CACHE_SIZE,
        help=f"prepared pairs kept in memory, least recently used first out (default {DEFAULT_CACHE_SIZE})",
    )
    parser.add_argument(
        "--preview-size",
        type=int,
        default=DEFAULT_PREVIEW_SIZE,
        help=f"long side of the on-page preview in pixels (default {DEFAULT_PREVIEW_SIZE})",
    )
    parser.add_argument("--open", action="store_true", help="open the page in the default browser")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from recolorize.app.jobs import AppConfig
    from recolorize.app.server import create_server
    from recolorize.imaging import parse_max_pixels
    from recolorize.inference.pipeline import Recolorizer

    if not 0 <= args.port <= 65535:
        raise UserError(f"--port must be between 0 and 65535, got {args.port}")
    if args.max_upload_mb <= 0:
        raise UserError(f"--max-upload-mb must be positive, got {args.max_upload_mb}")
    max_pixels = parse_max_pixels(args.max_pixels)  # transfer's rule: 40000000, 40_000_000 or 4e7
    if args.cache < 1:
        raise UserError(f"--cache must be at least 1, got {args.cache}")
    if args.preview_size < 64:
        raise UserError(f"--preview-size must be at least 64, got {args.preview_size}")
    config = AppConfig(
        max_upload_bytes=int(args.max_upload_mb * 1_000_000),
        max_pixels=max_pixels,
        cache_size=args.cache,
        preview_size=args.preview_size,
    )
    recolorizer = Recolorizer.from_pretrained(args.weights, device=args.device)
    server = create_server(recolorizer, host=args.host, port=args.port, config=config)
    if not server.loopback_only:
        logger.warning(
            "listening on %s: anyone who can reach this address can use the app and upload images", args.host
        )
    logger.info("recolorize app: serving on %s (press Ctrl+C to stop)", server.url)
    if args.open:
        threading.Timer(0.5, webbrowser.open, args=(server.url,)).start()
    previous = signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops it as cleanly as Ctrl+C
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        logger.info("stopping")
    finally:
        server.server_close()  # closes the socket and drops every cached upload
        signal.signal(signal.SIGTERM, previous)
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
