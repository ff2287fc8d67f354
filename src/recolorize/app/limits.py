"""The web app's limits across time and connections: socket reads with a total deadline
(:class:`DeadlineReader`) and the memory budget shared by all connections (:class:`MemoryBudget`).

Why deadlines on the socket and not only an idle timeout: a client that sends one byte every few seconds is
never idle, so an idle timeout alone let 32 such clients hold every connection slot for as long as they
liked. Each read is given ``min(idle timeout, time left before the deadline)``, so a request's head must
arrive within ``header_timeout_s`` of its first byte and a body at a floor rate.

Why a budget: each connection buffers its upload in memory (about three copies while the multipart body is
split) and a job decodes the images, so without a bound the memory grew with the number of connections
(six 195 MB uploads in parallel took 3.6 GB). A request reserves what it will hold before reading its body
or decoding, and is answered 503 (with ``Retry-After``) when the budget has no room.
"""

from __future__ import annotations

import io
import socket
import threading
import time
from http import HTTPStatus

from recolorize.app.validation import HTTPProblem

__all__ = ["BODY_COPIES", "DECODE_BYTES_PER_PIXEL", "DeadlineReader", "MemoryBudget", "Reservation"]

#: Bytes held per byte of a request body while it is read and split into its parts (the body as read,
#: the parts cut from it, the part being trimmed): measured, one 195 MB upload added ~585 MB.
BODY_COPIES = 3
#: Bytes held per pixel while an image is decoded (16-bit inputs; 8-bit ones take ~20, see the README).
DECODE_BYTES_PER_PIXEL = 26
#: Seconds a client is told to wait before retrying when the budget is full.
RETRY_AFTER_S = 2


class DeadlineReader(io.RawIOBase):
    """A socket's reading side whose every read times out after the idle timeout or at ``deadline``
    (a ``time.monotonic`` value, None for none), whichever comes first: ``TimeoutError`` either way.

    The socket's timeout is restored to the idle timeout after each read, so writes keep theirs.
    """

    def __init__(self, sock: socket.socket, idle_timeout_s: float) -> None:
        super().__init__()
        self._sock = sock
        self._idle = idle_timeout_s
        self.deadline: float | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        timeout = self._idle
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the client took too long")
            timeout = min(timeout, left)
        self._sock.settimeout(timeout)
        try:
            return self._sock.recv_into(buffer)
        finally:
            self._sock.settimeout(self._idle)


class MemoryBudget:
    """Bytes that buffered uploads and decoded images may hold at once, across all connections."""

    def __init__(self, total: int) -> None:
        if total < 1:
            raise ValueError(f"the memory budget must be positive, got {total}")
        self.total = total
        self._held = 0
        self._lock = threading.Lock()

    @property
    def held(self) -> int:
        with self._lock:
            return self._held

    def reservation(self) -> Reservation:
        return Reservation(self)

    def _resize(self, reservation: Reservation, target: int, what: str) -> None:
        # one request never needs more than the whole budget: a larger one runs when it is alone
        target = max(0, min(target, self.total))
        with self._lock:
            more = target - reservation.bytes
            if more > 0 and self._held + more > self.total:
                raise HTTPProblem(
                    HTTPStatus.SERVICE_UNAVAILABLE,
                    f"the server is busy with other uploads ({what}); try again in a moment",
                    headers={"Retry-After": str(RETRY_AFTER_S)},
                )
            self._held += more
            reservation.bytes = target


class Reservation:
    """One request's share of a :class:`MemoryBudget`; grows before it holds more, released at the end."""

    def __init__(self, budget: MemoryBudget) -> None:
        self.budget = budget
        self.bytes = 0

    def grow(self, more: int, what: str) -> None:
        """Hold ``more`` bytes beyond the current share, or raise a 503 :class:`HTTPProblem`."""
        self.budget._resize(self, self.bytes + more, what)

    def shrink_to(self, size: int) -> None:
        if size < self.bytes:
            self.budget._resize(self, size, "")

    def release(self) -> None:
        self.shrink_to(0)

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
