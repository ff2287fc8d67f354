"""The local web app: a small stdlib HTTP server and one static page (``recolorize app``).

Why not Gradio: the app is one page with two uploads, two sliders and a download. The standard
library's ``ThreadingHTTPServer`` serves it with no new dependency (Gradio pulls ~100 packages, a
web framework and, by default, assets and telemetry from the internet), and a server we write
ourselves lets us keep the predicted latents per upload, enforce the limits below, and guarantee
that nothing leaves the machine (every asset is served from ``app/static``, and the page's
Content-Security-Policy forbids other origins).

Endpoints (``ID`` is an opaque upload id)::

    GET  /                       the page (static/index.html, app.js, app.css)
    GET  /api/config             limits and model description, JSON
    POST /api/prepare            multipart form with a ``source`` file and 1-4 ``reference`` files (the
                                 name repeated): decodes them, runs ``Recolorizer.prepare`` once, caches
                                 the pair -> JSON
    GET  /api/source/ID          the source, downscaled to the preview size, PNG
    GET  /api/render/ID?strength=S   the result at preview size (reruns only ``render``), PNG
    GET  /api/download/ID?strength=S the full-resolution result with the source's ICC/EXIF/alpha
    GET  /api/lut/ID?strength=S      the look as a 33^3 ``.cube`` (``recolorize lut``'s default method)

Resource limits: request bodies are refused above ``max_upload_bytes`` per image (checked from
Content-Length before anything is read, then per file; a missing, negative or non-numeric length is
refused at once), and a body must arrive within ``body_timeout_s``; every socket times out after
``idle_timeout_s`` without traffic and at most ``max_connections`` connections are served at once (the
next one gets a 503 and is closed); images are checked against ``max_pixels`` from their header before
they are decoded, and any decoding failure is the file's fault (4xx), never the server's (500); every
model or decoding job runs under one lock (one job at a time, others wait in line, and at most
``max_waiting`` requests may wait before the server answers 503); prepared pairs are kept in an LRU of
``cache_size`` entries. Everything is held in memory: no temporary files are written.

Cross-site use: on a loopback address only requests for a loopback Host name are answered (DNS
rebinding), and a POST whose ``Origin`` is not this server's own origin is refused (403), so a web
page the user visits cannot drive the app.

One job per module: ``validation`` (the checks above that need no model: Host, Origin, lengths, fields,
strength), ``jobs`` (:class:`AppConfig`, the model lock, the LRU, decoding and rendering), ``handler``
(HTTP routing and responses) and this one (the listening server: connection slots, static files).
"""

from __future__ import annotations

import json
import logging
import socket
import sys
import threading
from http.server import ThreadingHTTPServer
from importlib import resources
from typing import Any

from recolorize.app.defaults import DEFAULT_PORT
from recolorize.app.handler import AppHandler
from recolorize.app.jobs import AppConfig, AppState
from recolorize.app.validation import is_loopback
from recolorize.errors import UserError
from recolorize.inference.pipeline import Recolorizer

__all__ = ["AppServer", "create_server"]  # recolorize.app re-exports them (and AppConfig, from jobs)

logger = logging.getLogger(__name__)


class AppServer(ThreadingHTTPServer):
    """ThreadingHTTPServer carrying the app state; ``url`` is where it listens."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], state: AppState) -> None:
        self.state = state
        self.loopback_only = is_loopback(address[0])
        self._slots = threading.BoundedSemaphore(state.config.max_connections)
        self._static_cache: dict[str, bytes] = {}
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, AppHandler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in str(host) else host
        return f"http://{host}:{port}/"

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve the connection in a thread if a slot is free; else answer 503 at once and close it.

        Without the bound, every half-open connection would hold a thread until it timed out.
        """
        if not self._slots.acquire(blocking=False):
            self._refuse(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up while we answered (say, after an oversized Content-Length, before our 413)
        is one debug line, not a traceback on stderr; any other error is socketserver's report."""
        error = sys.exc_info()[1]
        if isinstance(error, BrokenPipeError | ConnectionResetError | ConnectionAbortedError):
            logger.debug(
                "%s hung up before the answer was sent (%s)", client_address[0], type(error).__name__
            )
            return
        super().handle_error(request, client_address)

    def _refuse(self, request: socket.socket) -> None:
        """A short 503 written from the accepting thread (it fits in the socket buffer), then close."""
        body = json.dumps({"error": "the server has too many open connections; try again in a moment"})
        head = (
            "HTTP/1.1 503 Service Unavailable\r\nServer: recolorize-app\r\n"
            "Content-Type: application/json\r\nRetry-After: 1\r\nConnection: close\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        try:
            request.settimeout(1.0)
            request.sendall(head.encode("ascii") + body.encode())
        except OSError:
            pass
        logger.info("refused a connection: %d already open", self.state.config.max_connections)
        self.shutdown_request(request)

    def static(self, name: str) -> bytes:
        if name not in self._static_cache:
            self._static_cache[name] = (resources.files("recolorize.app") / "static" / name).read_bytes()
        return self._static_cache[name]

    def server_close(self) -> None:
        super().server_close()
        self.state.clear()


def create_server(
    recolorizer: Recolorizer,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    config: AppConfig | None = None,
) -> AppServer:
    """Bind the app on ``host:port`` (port 0 = any free port); call ``serve_forever`` to run it."""
    state = AppState(recolorizer, config or AppConfig())
    try:
        return AppServer((host, port), state)
    except OSError as error:
        raise UserError(f"cannot listen on {host}:{port}: {error.strerror or error}") from error
