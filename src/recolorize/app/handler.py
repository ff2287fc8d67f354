"""The web app's HTTP side: routes each request to the app state of its server, answers with the security
headers every response carries, and turns every refusal into a JSON error (bugs into a bare 500)."""

from __future__ import annotations

import io
import json
import logging
import re
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any, Protocol
from urllib.parse import urlsplit

from recolorize.app.jobs import ALLOWED_FORMATS, AppState
from recolorize.app.limits import BODY_COPIES, DeadlineReader, Reservation
from recolorize.app.validation import (
    MAX_REFERENCES,
    MULTIPART_OVERHEAD,
    HTTPProblem,
    attachment_header,
    is_loopback,
    mb_pair,
    parse_content_length,
    parse_multipart,
    parse_strength,
    same_origin,
    upload_images,
)


class ServesTheApp(Protocol):
    """What the handler reads off its server (``server.AppServer``): named here, so that the handler module
    never imports the server module that imports it."""

    state: AppState
    static: Any
    loopback_only: bool


__all__ = ["AppHandler"]

logger = logging.getLogger(__name__)

#: Control characters, never sent in a header value.
_HEADER_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")

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


class AppHandler(BaseHTTPRequestHandler):
    """Routes requests to the AppState of its server."""

    server: ServesTheApp  # type: ignore[assignment]  # an AppServer
    server_version = "recolorize-app"
    sys_version = ""  # the Server header names the app only: no Python version for a scanner to match
    protocol_version = "HTTP/1.1"
    _body_read = True  # False while a POST's body is still unread (then the connection must close)

    def setup(self) -> None:
        """Give the socket the idle timeout before anything is read (StreamRequestHandler applies it), and
        read it through a :class:`DeadlineReader`, so a request's head and body also have total deadlines."""
        self.timeout = self.server.state.config.idle_timeout_s
        super().setup()
        self.rfile.close()  # the socket's own reader: closed, or the socket would stay open after close()
        self._reader = DeadlineReader(self.connection, self.timeout)
        self.rfile = io.BufferedReader(self._reader)

    def handle_one_request(self) -> None:
        """Wait for a request's first byte (idle timeout only), then give its line and headers
        ``header_timeout_s`` in all: a client sending a byte now and then is cut off there."""
        self._reader.deadline = None
        try:
            if not self.rfile.peek(1):  # the client closed the connection
                self.close_connection = True
                return
        except OSError:  # silent past the idle timeout (TimeoutError), or reset
            self.close_connection = True
            return
        self._reader.deadline = time.monotonic() + self.server.state.config.header_timeout_s
        super().handle_one_request()  # a TimeoutError in the head: logged, connection closed

    def parse_request(self) -> bool:
        try:
            return super().parse_request()  # reads the headers
        finally:
            self._reader.deadline = None  # a body has its own deadline (_body_deadline)

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
        for key, value in (headers or {}).items():  # no header of ours carries CR or LF (a new header)
            self.send_header(key, _HEADER_UNSAFE.sub("", value))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json")

    def _problem(self, problem: HTTPProblem) -> None:
        body = json.dumps({"error": problem.message}).encode()
        self._send(problem.status, body, "application/json", problem.headers)

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
        if not is_loopback(name):
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
        if origin is not None and not same_origin(origin, self.headers.get("Host") or ""):
            raise HTTPProblem(
                HTTPStatus.FORBIDDEN, "requests from other web pages are refused; open the app's own page"
            )

    def _content_length(self) -> int:
        """The body's length (:func:`parse_content_length`); refused before reading anything."""
        values = self.headers.get_all("Content-Length") or []
        return parse_content_length(values, self.headers.get("Transfer-Encoding"))

    def _body_deadline(self, start: float, done: int) -> float:
        """When byte ``done + 1`` of a body must have arrived: ``body_timeout_s`` of grace, then
        ``min_upload_rate`` bytes per second on average (the idle timeout bounds each read only, and a
        client dripping one byte at a time would otherwise hold its thread for hours)."""
        cfg = self.server.state.config
        return start + cfg.body_timeout_s + (done + 1) / cfg.min_upload_rate

    def _read_body(self, length: int) -> bytes:
        """Exactly ``length`` bytes, each by its :meth:`_body_deadline` (a socket deadline), else 408."""
        body = bytearray(length)
        view = memoryview(body)
        done = 0
        start = time.monotonic()
        try:
            while done < length:
                self._reader.deadline = self._body_deadline(start, done)
                n = self.rfile.readinto1(view[done : min(length, done + (1 << 20))])
                if not n:
                    raise HTTPProblem(HTTPStatus.BAD_REQUEST, "the upload was cut off")
                done += n
        except TimeoutError:
            raise HTTPProblem(HTTPStatus.REQUEST_TIMEOUT, "the upload took too long; try again") from None
        finally:
            self._reader.deadline = None
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
        if len(parts) == 3 and parts[0] == "api" and parts[1] in ("source", "render", "download", "lut"):
            session = state.get(parts[2].removesuffix(".png").removesuffix(".cube"))
            if parts[1] == "source":
                self._send(HTTPStatus.OK, session.source_png, "image/png")
                return
            strength = parse_strength(url.query)
            start = time.perf_counter()
            if parts[1] == "render":
                png = state.render_preview(session, strength)
                seconds = f"{time.perf_counter() - start:.3f}"
                self._send(HTTPStatus.OK, png, "image/png", {"X-Render-Seconds": seconds})
                return
            if parts[1] == "lut":  # the look as a 3D LUT; .cube has no registered type: it is plain text
                cube, filename = state.render_lut(session, strength)
                headers = {"Content-Disposition": attachment_header(filename)}
                self._send(HTTPStatus.OK, cube, "text/plain; charset=utf-8", headers)
                logger.info("made the look %s (strength %.2f)", filename, strength)
                return
            data, filename, mime = state.render_full(session, strength)
            self._send(HTTPStatus.OK, data, mime, {"Content-Disposition": attachment_header(filename)})
            logger.info("rendered %s at full size (strength %.2f)", filename, strength)
            return
        raise HTTPProblem(HTTPStatus.NOT_FOUND, f"no such page: {url.path}")

    def _post(self) -> None:
        url = urlsplit(self.path)
        if url.path != "/api/prepare":
            raise HTTPProblem(HTTPStatus.NOT_FOUND, f"no such endpoint: {url.path}")
        self._check_origin()
        state = self.server.state
        limit = state.config.max_upload_bytes
        length = self._content_length()
        if length > (1 + MAX_REFERENCES) * limit + MULTIPART_OVERHEAD:
            self._discard(length)
            upload, each = mb_pair(length, limit)
            raise HTTPProblem(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"the upload is {upload}; each image may be at most {each}",
            )
        with state.budget.reservation() as reservation:
            try:  # before the body is read: a 503 at once when the uploads in progress hold the budget
                reservation.grow(BODY_COPIES * length, "reading uploads")
            except HTTPProblem as problem:
                self._refuse_unread(problem, length)
                return
            key, session = self._prepare(length, reservation)
        src = session.prepared.source
        small = session.preview.source
        logger.debug("memory budget held after the request: %d bytes", state.budget.held)
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

    def _prepare(self, length: int, reservation: Reservation) -> tuple[str, Any]:
        """Read the body, split it, and prepare the pair within the request's ``reservation``."""
        state = self.server.state
        body = self._read_body(length)
        fields = parse_multipart(body, self.headers.get("Content-Type", ""))
        del body
        reservation.shrink_to(length)  # the parts alone are held now
        source, references = upload_images(fields, state.config.max_upload_bytes)
        return state.prepare(source, references, reservation)

    def _refuse_unread(self, problem: HTTPProblem, length: int) -> None:
        """Answer ``problem`` before reading the body, then drain it (a browser that is still sending
        would see a reset instead of the answer) and close."""
        self.close_connection = True
        try:
            self._problem(problem)
            self.wfile.flush()
        except OSError:
            return
        self._discard(length)

    def _discard(self, length: int) -> None:
        """Read and drop an unwanted body (so the browser sees our answer), up to 1 GB, at the body's
        floor rate (:meth:`_body_deadline`); then close."""
        self.close_connection = True
        remaining = min(length, 1_000_000_000)
        start = time.monotonic()
        try:
            while remaining > 0:
                self._reader.deadline = self._body_deadline(start, length - remaining)
                chunk = self.rfile.read1(min(remaining, 1 << 20))
                if not chunk:
                    break
                remaining -= len(chunk)
        except OSError:  # TimeoutError included: a client too slow to drain is simply closed
            pass
        finally:
            self._reader.deadline = None
