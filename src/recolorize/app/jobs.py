"""The web app's model work and memory: its limits (:class:`AppConfig`), the one-job-at-a-time lock, the
LRU of prepared pairs, and the jobs themselves (decode an upload, prepare a pair, render a preview, the
full-resolution download or the look as a ``.cube``). Refusals are
:class:`recolorize.app.validation.HTTPProblem`."""

from __future__ import annotations

import dataclasses
import io
import logging
import secrets
import threading
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from recolorize.app.defaults import DEFAULT_CACHE_SIZE, DEFAULT_MAX_UPLOAD_MB, DEFAULT_PREVIEW_SIZE
from recolorize.app.limits import BODY_COPIES, DECODE_BYTES_PER_PIXEL, MemoryBudget, Reservation
from recolorize.app.validation import ID_RE, MAX_REFERENCES, MULTIPART_OVERHEAD, HTTPProblem
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

__all__ = [
    "DEFAULT_MAX_WAITING",
    "DEFAULT_IDLE_TIMEOUT_S",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_HEADER_TIMEOUT_S",
    "DEFAULT_MIN_UPLOAD_RATE",
    "DEFAULT_MEMORY_BUDGET",
    "ALLOWED_FORMATS",
    "AppConfig",
    "Session",
    "AppState",
]

logger = logging.getLogger(__name__)

#: Requests allowed to wait for the model lock before the server answers 503.
DEFAULT_MAX_WAITING = 8
#: Seconds a connection may stay silent (idle keep-alive, a stalled upload) before it is closed.
DEFAULT_IDLE_TIMEOUT_S = 20.0
#: Connections served at once; a browser opens about 6, so this leaves room for several tabs.
DEFAULT_MAX_CONNECTIONS = 32
#: Seconds a request line and its headers may take in all, from their first byte (a client dripping a
#: byte at a time is never idle, so the idle timeout alone does not free its slot).
DEFAULT_HEADER_TIMEOUT_S = 10.0
#: A body must arrive at this many bytes per second on average, after ``body_timeout_s`` of grace.
DEFAULT_MIN_UPLOAD_RATE = 64_000
#: Bytes that buffered uploads and decoded images may hold at once across all connections, at least.
DEFAULT_MEMORY_BUDGET = 512_000_000

#: The file types the app decodes (Pillow would open more, some through external programs).
ALLOWED_FORMATS = ("JPEG", "PNG", "TIFF", "WEBP", "BMP", "GIF", "MPO")
_DOWNLOAD_FORMATS = {"JPEG": ("JPEG", "jpg"), "MPO": ("JPEG", "jpg"), "TIFF": ("TIFF", "tif")}
_DOWNLOAD_FORMATS.update({"PNG": ("PNG", "png"), "WEBP": ("WEBP", "webp")})


@dataclass(frozen=True)
class AppConfig:
    """The server's limits (the docstring of :mod:`recolorize.app.server` says what each bounds)."""

    max_upload_bytes: int = int(DEFAULT_MAX_UPLOAD_MB * 1_000_000)
    max_pixels: int = APP_DEFAULT_MAX_PIXELS
    cache_size: int = DEFAULT_CACHE_SIZE
    preview_size: int = DEFAULT_PREVIEW_SIZE
    max_waiting: int = DEFAULT_MAX_WAITING
    job_timeout_s: float = 300.0
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S
    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S
    body_timeout_s: float = 10.0  # grace before min_upload_rate applies: a body gets this + size / rate
    min_upload_rate: int = DEFAULT_MIN_UPLOAD_RATE
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    #: Bytes held at once by uploads being read and images being decoded, all connections together;
    #: 0 = the default, :data:`DEFAULT_MEMORY_BUDGET` or the cost of one largest upload if that is more.
    memory_budget: int = 0

    def memory_budget_bytes(self) -> int:
        """The budget in bytes: ``memory_budget``, or by default at least one largest request's body."""
        if self.memory_budget > 0:
            return self.memory_budget
        largest = (1 + MAX_REFERENCES) * self.max_upload_bytes + MULTIPART_OVERHEAD
        return max(DEFAULT_MEMORY_BUDGET, BODY_COPIES * largest)


@dataclass
class Session:
    """One uploaded pair: the prepared pair at full size and the same latents with a preview-size source."""

    prepared: PreparedPair
    preview: PreparedPair
    source_name: str
    source_png: bytes
    created: float


def _preview_image(image: LoadedImage, long_side: int) -> LoadedImage:
    """The source scaled so its long side is at most ``long_side`` (antialiased), as a bare LoadedImage."""
    return LoadedImage(pixels=fit_long_side(image.rgb, long_side))


def _png_fast(rgb: np.ndarray) -> bytes:
    """8-bit sRGB PNG with light compression: previews are local, speed matters more than size."""
    pixels = to_uint8(rgb)
    buf = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


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
        if not all(t > 0 for t in (config.idle_timeout_s, config.header_timeout_s, config.body_timeout_s)):
            raise UserError("the idle, header and upload timeouts must be positive")
        if config.min_upload_rate < 1 or config.memory_budget < 0:
            raise UserError("the upload rate must be positive and the memory budget not negative")
        self.recolorizer = recolorizer
        self.config = config
        self._job_lock = threading.Lock()
        self._waiting = threading.BoundedSemaphore(config.max_waiting + 1)
        self._cache: OrderedDict[str, Session] = OrderedDict()
        self._cache_lock = threading.Lock()
        #: what uploads being read and images being decoded hold at once, across all connections
        self.budget = MemoryBudget(config.memory_budget_bytes())

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
            session = self._cache.get(key) if ID_RE.match(key or "") else None
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
    def decode(
        self, data: bytes, filename: str, role: str, reservation: Reservation | None = None
    ) -> LoadedImage:
        """Check the file type, then decode with ``load_image`` (its UserError messages reach the page).
        The decoder's memory (from the header's size) is added to ``reservation`` while it runs (503 if
        the budget has no room)."""
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
        before = reservation.bytes if reservation is not None else 0
        if reservation is not None and size is not None:
            reservation.grow(size[0] * size[1] * DECODE_BYTES_PER_PIXEL, "decoding images")
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
        finally:  # decoded: the decoder's work memory is gone, the image is the pair's (the LRU bounds those)
            if reservation is not None:
                reservation.shrink_to(before)

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

    def prepare(
        self,
        source: tuple[str, bytes],
        references: list[tuple[str, bytes]],
        reservation: Reservation | None = None,
    ) -> tuple[str, Session]:
        """Decode the images and run the predictor once (under the job lock); cache the pair. Several
        references are one set of positions for the attention (Recolorizer.prepare). Each decode first
        grows ``reservation`` (the request's share of the memory budget)."""

        def job() -> Session:
            start = time.perf_counter()
            src = self.decode(source[1], source[0], "source", reservation)
            refs = [self.decode(data, name, "reference", reservation) for name, data in references]
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

    def render_lut(self, session: Session, strength: float) -> tuple[bytes, str]:
        """The pair's look at ``strength`` as a ``.cube`` file's bytes and its name (``<source>-look.cube``).

        The same LUT ``recolorize lut`` writes for these photos (its default method, 33^3), made from the
        full-size prepared pair, so the look can grade other photos or video in an editor."""
        from recolorize.inference.lut import LUT_METHODS, cube_text, transfer_lut

        stem = Path(session.source_name or "image").stem or "image"

        def job() -> bytes:
            lut = transfer_lut(self.recolorizer, session.prepared, strength, method=LUT_METHODS[0])
            titled = dataclasses.replace(lut, title=f"{stem} look (recolorize, strength {strength:.2f})")
            return cube_text(titled).encode()

        return self.run_job(job), f"{stem}-look.cube"
