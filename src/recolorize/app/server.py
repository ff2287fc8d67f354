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
"""

from __future__ import annotations

import dataclasses
import io
import ipaddress
import json
import logging
import re
import secrets
import socket
import threading
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import numpy as np
from PIL import Image

from recolorize.app import (
    DEFAULT_CACHE_SIZE,
    DEFAULT_MAX_UPLOAD_MB,
    DEFAULT_PORT,
    DEFAULT_PREVIEW_SIZE,
)
from recolorize.errors import UserError
from recolorize.image_formats import APP_DEFAULT_MAX_PIXELS
from recolorize.imaging import (
    LoadedImage,
    encode_image,
    fit_long_side,
    load_image,
    takes_8bit_srgb,
    to_uint8,
)
from recolorize.inference.pipeline import PreparedPair, Recolorizer

__all__ = [  # the DEFAULT_* limits live in recolorize.app, which re-exports these names
    "AppConfig",
    "AppServer",
    "create_server",
]

logger = logging.getLogger(__name__)

#: Requests allowed to wait for the model lock before the server answers 503.
DEFAULT_MAX_WAITING = 8
#: Seconds a connection may stay silent (idle keep-alive, a stalled upload) before it is closed.
DEFAULT_IDLE_TIMEOUT_S = 20.0
#: Connections served at once; a browser opens about 6, so this leaves room for several tabs.
DEFAULT_MAX_CONNECTIONS = 32

#: The file types the app decodes (Pillow would open more, some through external programs).
ALLOWED_FORMATS = ("JPEG", "PNG", "TIFF", "WEBP", "BMP", "GIF", "MPO")
_DOWNLOAD_FORMATS = {"JPEG": ("JPEG", "jpg"), "MPO": ("JPEG", "jpg"), "TIFF": ("TIFF", "tif")}
_DOWNLOAD_FORMATS.update({"PNG": ("PNG", "png"), "WEBP": ("WEBP", "webp")})
#: Most reference photos one upload may carry (each up to the per-image limit).
MAX_REFERENCES = 4
_MULTIPART_OVERHEAD = 64 * 1024
_ID_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
_LENGTH_RE = re.compile(r"^[0-9]{1,15}$")
_STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/app.css": ("app.css", "text/css; charset=utf-8"),
}
_CSP = (
    "default-src 'self'; img-src 'self' blob: data:; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


class HTTPProblem(Exception):
    """An error answered as JSON ``{"error": message}`` with an HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class AppConfig:
    """The server's limits (see the module docstring)."""

    max_upload_bytes: int = int(DEFAULT_MAX_UPLOAD_MB * 1_000_000)
    max_pixels: int = APP_DEFAULT_MAX_PIXELS
    cache_size: int = DEFAULT_CACHE_SIZE
    preview_size: int = DEFAULT_PREVIEW_SIZE
    max_waiting: int = DEFAULT_MAX_WAITING
    job_timeout_s: float = 300.0
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S
    body_timeout_s: float = 120.0
    max_connections: int = DEFAULT_MAX_CONNECTIONS


@dataclass
class Session:
    """One uploaded pair: the prepared pair at full size and the same latents with a preview-size source."""

    prepared: PreparedPair
    preview: PreparedPair
    source_name: str
    source_png: bytes
    created: float


# ------------------------------------------------------------------------------------------ helpers


def _mb_pair(size: int, limit: int) -> tuple[str, str]:
    """``size`` and ``limit`` in MB with just enough decimals that they read differently.

    "0.1 MB; the limit is 0.1 MB" tells the user nothing, so a decimal is added until they differ.
    """
    for digits in range(1, 7):
        a, b = f"{size / 1_000_000:.{digits}f}", f"{limit / 1_000_000:.{digits}f}"
        if a != b:
            b = b.rstrip("0")  # the limit is usually round: 1.0 MB, not 1.00000 MB
            return f"{a} MB", f"{b}0 MB" if b.endswith(".") else f"{b} MB"
    return f"{size:,} bytes", f"{limit:,} bytes"


def _same_origin(origin: str, host: str) -> bool:
    """Whether an ``Origin`` header names the server a request was addressed to (``Host``), over http."""
    try:
        theirs = urlsplit(origin.strip())
        ours = urlsplit("http://" + host.strip())
        return (
            theirs.scheme.lower() == "http"
            and bool(theirs.hostname)
            and theirs.hostname == ours.hostname
            and (theirs.port or 80) == (ours.port or 80)
            and theirs.path in ("", "/")
        )
    except ValueError:  # a port that is not a number, a malformed IPv6 literal
        return False


def parse_multipart(body: bytes, content_type: str) -> dict[str, tuple[str, bytes]]:
    """Fields of a ``multipart/form-data`` body: name -> (filename, bytes). Exact bytes, no copies to disk.
    A name sent again is kept as ``name#2``, ``name#3`` ... (several reference files)."""
    match = re.search(r'boundary=(?:"([^"]+)"|([^;\s]+))', content_type)
    if not content_type.lower().startswith("multipart/form-data") or not match:
        raise HTTPProblem(HTTPStatus.BAD_REQUEST, "expected a multipart/form-data upload")
    boundary = (match.group(1) or match.group(2)).encode("latin-1")
    fields: dict[str, tuple[str, bytes]] = {}
    for part in body.split(b"--" + boundary)[1:]:
        if part.startswith(b"--"):
            break
        if part.startswith(b"\r\n"):
            part = part[2:]
        head, sep, content = part.partition(b"\r\n\r\n")
        if not sep:
            continue
        if content.endswith(b"\r\n"):
            content = content[:-2]
        disposition = ""
        for line in head.decode("utf-8", "replace").split("\r\n"):
            key, _, value = line.partition(":")
            if key.strip().lower() == "content-disposition":
                disposition = value
        name = re.search(r'\bname="([^"]*)"', disposition)
        filename = re.search(r'\bfilename="([^"]*)"', disposition)
        if name:
            key, count = name.group(1), 1
            while key in fields:  # a repeated name (several references): reference, reference#2, ...
                count += 1
                key = f"{name.group(1)}#{count}"
            fields[key] = (filename.group(1) if filename else "", content)
    return fields


def _preview_image(image: LoadedImage, long_side: int) -> LoadedImage:
    """The source scaled so its long side is at most ``long_side`` (antialiased), as a bare LoadedImage."""
    return LoadedImage(rgb=fit_long_side(image.rgb, long_side))


def _png_fast(rgb: np.ndarray) -> bytes:
    """8-bit sRGB PNG with light compression: previews are local, speed matters more than size."""
    pixels = to_uint8(rgb)
    buf = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# ------------------------------------------------------------------------------------------ state


class AppState:
    """The model, the one-job-at-a-time lock and the LRU of prepared pairs; shared by handler threads."""

    def __init__(self, recolorizer: Recolorizer, config: AppConfig) -> None:
        if config.cache_size < 1:
            raise UserError(f"the cache must hold at least one pair, got {config.cache_size}")
        if config.preview_size < 64:
            raise UserError(f"the preview size must be at least 64 pixels, got {config.preview_size}")
        if config.max_upload_bytes < 1:
            raise UserError("the upload limit must be positive")
        if config.max_connections < 1:
            raise UserError(f"the server must accept at least one connection, got {config.max_connections}")
        if not config.idle_timeout_s > 0 or not config.body_timeout_s > 0:
            raise UserError("the idle and upload timeouts must be positive")
        self.recolorizer = recolorizer
        self.config = config
        self._job_lock = threading.Lock()
        self._waiting = threading.BoundedSemaphore(config.max_waiting + 1)
        self._cache: OrderedDict[str, Session] = OrderedDict()
        self._cache_lock = threading.Lock()

    # --- the job queue ------------------------------------------------------------------------------
    def run_job(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(*args)`` while holding the model lock; 503 when too many requests are already waiting."""
        if not self._waiting.acquire(blocking=False):
            raise HTTPProblem(HTTPStatus.SERVICE_UNAVAILABLE, "the server is busy; try again in a moment")
        try:
            if not self._job_lock.acquire(timeout=self.config.job_timeout_s):
                raise HTTPProblem(HTTPStatus.SERVICE_UNAVAILABLE, "the server is busy; try again in a moment")
            try:
                return fn(*args)
            finally:
                self._job_lock.release()
        finally:
            self._waiting.release()

    # --- the cache ------------------------------------------------------------------------------------
    def put(self, session: Session) -> str:
        key = secrets.token_urlsafe(16)
        with self._cache_lock:
            self._cache[key] = session
            while len(self._cache) > self.config.cache_size:
                old, _ = self._cache.popitem(last=False)
                logger.debug("evicted prepared pair %s", old)
        return key

    def get(self, key: str) -> Session:
        with self._cache_lock:
            session = self._cache.get(key) if _ID_RE.match(key or "") else None
            if session is None:
                raise HTTPProblem(
                    HTTPStatus.GONE, "this upload is no longer on the server; drop the two images again"
                )
            self._cache.move_to_end(key)
            return session

    def cached_ids(self) -> list[str]:
        with self._cache_lock:
            return list(self._cache)

    def clear(self) -> None:
        with self._cache_lock:
            self._cache.clear()

    # --- the work -------------------------------------------------------------------------------------
    def decode(self, data: bytes, filename: str, role: str) -> LoadedImage:
        """Check the file type, then decode with ``load_image`` (its UserError messages reach the page)."""
        name = f"the {role} image" + (f" ({filename})" if filename else "")
        if not data:
            raise HTTPProblem(HTTPStatus.BAD_REQUEST, f"{name} is empty")
        limit = self.config.max_pixels
        fmt, size = self._probe(data, name)
        if fmt is not None and fmt not in ALLOWED_FORMATS:
            raise HTTPProblem(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                f"{name} is a {fmt} file; the app accepts JPEG, PNG, TIFF, WebP, BMP and GIF images",
            )
        if size is not None and size[0] * size[1] > limit:  # from the header: nothing decoded yet
            raise HTTPProblem(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"{name} is {size[0]}x{size[1]} = {size[0] * size[1]:,} pixels; "
                f"the limit is {limit:,} pixels",
            )
        stream = io.BytesIO(data)
        stream.name = name  # load_image names the file in its messages
        try:
            return load_image(stream, max_pixels=limit)
        except UserError as error:
            status = HTTPStatus.UNSUPPORTED_MEDIA_TYPE if fmt is None else HTTPStatus.BAD_REQUEST
            raise HTTPProblem(status, str(error)) from error
        except MemoryError:
            raise HTTPProblem(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"{name} is too large to decode in memory"
            ) from None
        except Exception as error:  # a decoder choking on a crafted file is the file's fault, not ours
            logger.info("could not decode %s", name, exc_info=True)
            raise HTTPProblem(
                HTTPStatus.BAD_REQUEST, f"{name} could not be decoded ({type(error).__name__}: {error})"
            ) from error

    def _probe(self, data: bytes, name: str) -> tuple[str | None, tuple[int, int] | None]:
        """Format and size from the file's header (Pillow reads no pixels here); (None, None) if unknown.

        Pillow refuses headers over twice its own limit with ``DecompressionBombError``, which is an
        answer (the image is too large), not a server error; anything else it raises means "not an
        image we can read", which ``load_image`` then explains in its own words.
        """
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(io.BytesIO(data)) as probe:
                    return probe.format, probe.size
        except Image.DecompressionBombError:
            pillow_limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
            if self.config.max_pixels <= pillow_limit:
                raise HTTPProblem(
                    HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                    f"{name} has more than {pillow_limit:,} pixels (a possible decompression bomb); "
                    f"the limit is {self.config.max_pixels:,} pixels",
                ) from None
            return None, None  # a limit above Pillow's: load_image raises Pillow's limit itself
        except Exception:  # not an image Pillow can read: load_image says why
            return None, None

    def prepare(self, source: tuple[str, bytes], references: list[tuple[str, bytes]]) -> tuple[str, Session]:
        """Decode the images and run the predictor once (under the job lock); cache the pair. Several
        references are one set of positions for the attention (Recolorizer.prepare)."""

        def job() -> Session:
            start = time.perf_counter()
            src = self.decode(source[1], source[0], "source")
            refs = [self.decode(data, name, "reference") for name, data in references]
            try:
                prepared = self.recolorizer.prepare(src, refs if len(refs) > 1 else refs[0])
            except UserError as error:
                raise HTTPProblem(HTTPStatus.BAD_REQUEST, str(error)) from error
            small = _preview_image(src, self.config.preview_size)
            preview = dataclasses.replace(prepared, source=small, timings={})
            logger.info(
                "prepared %s (%dx%d) with %s in %.2f s",
                source[0] or "source",
                src.width,
                src.height,
                " + ".join(name or "reference" for name, _ in references),
                time.perf_counter() - start,
            )
            return Session(prepared, preview, source[0], _png_fast(small.rgb), time.time())

        session = self.run_job(job)
        return self.put(session), session

    def render_preview(self, session: Session, strength: float) -> bytes:
        return self.run_job(lambda: _png_fast(self.recolorizer.render_array(session.preview, strength)))

    def render_full(self, session: Session, strength: float) -> tuple[bytes, str, str]:
        """The full-resolution result encoded like the source (format, ICC, EXIF, alpha, bit depth)."""
        fmt, ext = _DOWNLOAD_FORMATS.get(session.prepared.source.format or "", ("PNG", "png"))

        def job() -> bytes:
            source = session.prepared.source
            # 8-bit sRGB output: the samples straight from the full-resolution step (no full-size float)
            dtype = np.uint8 if takes_8bit_srgb(source, fmt) else np.float32
            rgb = self.recolorizer.render_array(session.prepared, strength, dtype=dtype)
            return encode_image(rgb, like=source, fmt=fmt, quality=95)

        data = self.run_job(job)
        stem = Path(session.source_name or "image").stem or "image"
        mime = {"JPEG": "image/jpeg", "PNG": "image/png", "TIFF": "image/tiff", "WEBP": "image/webp"}[fmt]
        return data, f"{stem}-recolorized.{ext}", mime


# ------------------------------------------------------------------------------------------ HTTP


class AppHandler(BaseHTTPRequestHandler):
    """Routes requests to the AppState of its server."""

    server: AppServer
    server_version = "recolorize-app"
    sys_version = ""  # the Server header names the app only: no Python version for a scanner to match
    protocol_version = "HTTP/1.1"
    _body_read = True  # False while a POST's body is still unread (then the connection must close)

    def setup(self) -> None:
        """Give the socket the idle timeout before anything is read (StreamRequestHandler applies it)."""
        self.timeout = self.server.state.config.idle_timeout_s
        super().setup()

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        logger.debug("%s %s", self.address_string(), format % args)

    # --- responses ------------------------------------------------------------------------------------
    def _send(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Content-Security-Policy", _CSP)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json")

    def _problem(self, problem: HTTPProblem) -> None:
        self._json(problem.status, {"error": problem.message})

    # --- dispatch -------------------------------------------------------------------------------------
    def _guarded(self, method: Any) -> None:
        try:
            self._check_host()
            method()
        except HTTPProblem as problem:
            if not self._body_read:  # the unread body would be parsed as the next request
                self.close_connection = True
            self._problem(problem)
        except TimeoutError:  # the client went silent mid-request: answer if it still listens, then close
            self.close_connection = True
            try:
                self._json(HTTPStatus.REQUEST_TIMEOUT, {"error": "the request timed out"})
            except OSError:
                pass
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception:  # a bug: log it, answer 500 without the traceback
            logger.exception("internal error on %s %s", self.command, self.path)
            self.close_connection = True
            self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "internal error; see the server's log"})

    def _check_host(self) -> None:
        """On a loopback address, refuse other Host names (DNS rebinding would let a web site read us)."""
        if not self.server.loopback_only:
            return
        host = (self.headers.get("Host") or "").strip()
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if not _is_loopback(name):
            raise HTTPProblem(HTTPStatus.FORBIDDEN, "this server only answers requests for localhost")

    def do_GET(self) -> None:  # noqa: N802 (the base class's naming)
        self._guarded(self._get)

    def do_HEAD(self) -> None:  # noqa: N802
        self._guarded(self._get)

    def do_POST(self) -> None:  # noqa: N802
        self._body_read = False
        try:
            self._guarded(self._post)
        finally:
            self._body_read = True

    def _check_origin(self) -> None:
        """Refuse a POST sent by a page of another origin: a web site the user visits must not drive us.

        Browsers send ``Origin`` with every cross-origin POST (and with same-origin ones); it must name
        the very server the request is addressed to. Clients that send no Origin (curl, scripts) are not
        a browser acting for a web site and pass.
        """
        origin = self.headers.get("Origin")
        if origin is not None and not _same_origin(origin, self.headers.get("Host") or ""):
            raise HTTPProblem(
                HTTPStatus.FORBIDDEN, "requests from other web pages are refused; open the app's own page"
            )

    def _content_length(self) -> int:
        """The body's length from a single, plain decimal Content-Length; refused before reading anything.

        ``int()`` alone would accept "-1" (then ``read(-1)`` reads until the client stops), "+5" or
        "1_000"; chunked bodies are not supported (browsers always send a length for a form).
        """
        values = self.headers.get_all("Content-Length") or []
        if self.headers.get("Transfer-Encoding") is not None:
            raise HTTPProblem(
                HTTPStatus.BAD_REQUEST, "chunked uploads are not supported; send a Content-Length"
            )
        if not values:
            raise HTTPProblem(HTTPStatus.LENGTH_REQUIRED, "the upload has no Content-Length")
        text = values[0].strip()
        if any(v.strip() != text for v in values) or not _LENGTH_RE.match(text):
            raise HTTPProblem(
                HTTPStatus.BAD_REQUEST, f"the upload's Content-Length {values[0][:40]!r} is not a byte count"
            )
        return int(text)

    def _read_body(self, length: int) -> bytes:
        """Exactly ``length`` bytes, within ``body_timeout_s`` in all: the idle timeout bounds each read
        only, and a client dripping one byte at a time would otherwise hold its thread for hours."""
        deadline = time.monotonic() + self.server.state.config.body_timeout_s
        body = bytearray(length)
        view = memoryview(body)
        done = 0
        while done < length:
            if time.monotonic() > deadline:
                raise HTTPProblem(HTTPStatus.REQUEST_TIMEOUT, "the upload took too long; try again")
            n = self.rfile.readinto1(view[done : min(length, done + (1 << 20))])
            if not n:
                raise HTTPProblem(HTTPStatus.BAD_REQUEST, "the upload was cut off")
            done += n
        view.release()
        self._body_read = True
        return bytes(body)

    def _get(self) -> None:
        url = urlsplit(self.path)
        state = self.server.state
        if url.path in _STATIC:
            name, mime = _STATIC[url.path]
            self._send(HTTPStatus.OK, self.server.static(name), mime)
            return
        if url.path == "/api/config":
            cfg = state.config
            self._json(
                HTTPStatus.OK,
                {
                    "max_upload_bytes": cfg.max_upload_bytes,
                    "max_pixels": cfg.max_pixels,
                    "preview_size": cfg.preview_size,
                    "formats": list(ALLOWED_FORMATS),
                    "model": state.recolorizer.describe(),
                },
            )
            return
        parts = url.path.strip("/").split("/")
        if len(parts) == 3 and parts[0] == "api" and parts[1] in ("source", "render", "download"):
            session = state.get(parts[2].removesuffix(".png"))
            if parts[1] == "source":
                self._send(HTTPStatus.OK, session.source_png, "image/png")
                return
            strength = self._strength(url.query)
            start = time.perf_counter()
            if parts[1] == "render":
                png = state.render_preview(session, strength)
                seconds = f"{time.perf_counter() - start:.3f}"
                self._send(HTTPStatus.OK, png, "image/png", {"X-Render-Seconds": seconds})
                return
            data, filename, mime = state.render_full(session, strength)
            ascii_name = filename.encode("ascii", "replace").decode().replace('"', "_").replace("?", "_")
            disposition = f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"
            self._send(HTTPStatus.OK, data, mime, {"Content-Disposition": disposition})
            logger.info("rendered %s at full size (strength %.2f)", filename, strength)
            return
        raise HTTPProblem(HTTPStatus.NOT_FOUND, f"no such page: {url.path}")

    @staticmethod
    def _strength(query: str) -> float:
        values = parse_qs(query).get("strength", ["1"])
        try:
            strength = float(values[0])
        except ValueError:
            strength = float("nan")
        if not 0.0 <= strength <= 1.0:
            raise HTTPProblem(HTTPStatus.BAD_REQUEST, f"strength must be between 0 and 1, got {values[0]!r}")
        return strength

    def _post(self) -> None:
        url = urlsplit(self.path)
        if url.path != "/api/prepare":
            raise HTTPProblem(HTTPStatus.NOT_FOUND, f"no such endpoint: {url.path}")
        self._check_origin()
        state = self.server.state
        limit = state.config.max_upload_bytes
        length = self._content_length()
        if length > (1 + MAX_REFERENCES) * limit + _MULTIPART_OVERHEAD:
            self._discard(length)
            upload, each = _mb_pair(length, limit)
            raise HTTPProblem(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"the upload is {upload}; each image may be at most {each}",
            )
        body = self._read_body(length)
        fields = parse_multipart(body, self.headers.get("Content-Type", ""))
        del body
        extra = sorted(k for k in fields if k.startswith("reference#"))
        if len(extra) + 1 > MAX_REFERENCES:
            raise HTTPProblem(
                HTTPStatus.BAD_REQUEST, f"{len(extra) + 1} references; at most {MAX_REFERENCES} at once"
            )
        for role in ("source", "reference", *extra):
            if role not in fields or not fields[role][1]:
                raise HTTPProblem(HTTPStatus.BAD_REQUEST, f"choose a {role.split('#')[0]} image first")
            filename, data = fields[role]
            role = role.split("#")[0]
            if len(data) > limit:
                label = f"the {role} image" + (f" ({filename})" if filename else "")
                size, most = _mb_pair(len(data), limit)
                raise HTTPProblem(
                    HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"{label} is {size}; the limit is {most}"
                )
        references = [fields["reference"]] + [fields[k] for k in sorted(extra, key=lambda k: int(k[10:]))]
        key, session = state.prepare(fields["source"], references)
        src = session.prepared.source
        small = session.preview.source
        self._json(
            HTTPStatus.OK,
            {
                "id": key,
                "source_name": session.source_name,
                "width": src.width,
                "height": src.height,
                "preview_width": small.width,
                "preview_height": small.height,
                "seconds": round(sum(session.prepared.timings.values()), 3),
            },
        )

    def _discard(self, length: int) -> None:
        """Read and drop an oversized body (so the browser sees our answer), up to 1 GB; then close."""
        self.close_connection = True
        remaining = min(length, 1_000_000_000)
        self.connection.settimeout(10)
        try:
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, 1 << 20))
                if not chunk:
                    break
                remaining -= len(chunk)
        except OSError:
            pass


class AppServer(ThreadingHTTPServer):
    """ThreadingHTTPServer carrying the app state; ``url`` is where it listens."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], state: AppState) -> None:
        self.state = state
        self.loopback_only = _is_loopback(address[0])
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
