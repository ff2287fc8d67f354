"""The web app's limits across time and connections (issue 23, items 6 and 7): total deadlines for a
request's head and body, enforced on the socket, and one memory budget shared by all connections."""

from __future__ import annotations

import http.client
import io
import json
import socket
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from recolorize.app.jobs import AppConfig
from recolorize.app.limits import BODY_COPIES, MemoryBudget
from recolorize.app.server import create_server
from recolorize.app.validation import HTTPProblem


@pytest.fixture(scope="module")
def weights(tiny_weights: Path) -> Path:
    """The tiny exported model folder (conftest's ``tiny_weights``: graphs, config, safetensors)."""
    return tiny_weights.parent


def start(weights: Path, **limits):
    from recolorize.inference.pipeline import Recolorizer

    config = AppConfig(preview_size=256, **limits)
    srv = create_server(Recolorizer.from_pretrained(weights), port=0, config=config)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    return srv, thread


def stop(srv, thread) -> None:
    srv.shutdown()
    srv.server_close()
    thread.join(10)


def get_status(srv, path: str = "/") -> int:
    """The status of a GET, or 0 when the connection was refused or reset."""
    host, port = srv.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    except OSError:
        return 0
    finally:
        conn.close()


def trickle(sock: socket.socket, data: bytes, every: float, closed_at: list[float]) -> None:
    """Send ``data`` one byte every ``every`` seconds (never idle) until the server closes the socket."""
    sock.settimeout(every)
    for i in range(10_000):
        try:
            sock.send(data[i % len(data) : i % len(data) + 1])
            if sock.recv(65536) == b"":
                break
            # an answer (408, 413): keep on until the server closes
        except TimeoutError:
            continue
        except OSError:  # reset by the server
            break
    closed_at.append(time.monotonic())


# --- item 6: total deadlines -------------------------------------------------------------------------------
def test_slow_loris_clients_are_cut_off_and_a_get_is_served(weights):
    """3 slots, each held by a client sending one header byte every 0.3 s (never idle for the 5 s idle
    timeout): the 1 s header deadline cuts them off, and a normal GET is served soon after."""
    header_deadline = 1.0
    srv, thread = start(weights, max_connections=3, idle_timeout_s=5.0, header_timeout_s=header_deadline)
    host, port = srv.server_address[:2]
    head = f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nX-Slow: ".encode() + b"a" * 1000
    socks = [socket.create_connection((host, port), timeout=10) for _ in range(3)]
    closed_at: list[float] = []
    try:
        begin = time.monotonic()
        threads = [threading.Thread(target=trickle, args=(s, head, 0.3, closed_at)) for s in socks]
        for t in threads:
            t.start()
        time.sleep(0.3)
        assert get_status(srv) == 503  # every slot is held by a slow client
        while (status := get_status(srv)) != 200 and time.monotonic() - begin < 4 * header_deadline + 5:
            time.sleep(0.05)
        served = time.monotonic() - begin
        for t in threads:
            t.join(15)
        assert status == 200
        assert served < header_deadline + 1.5, served  # not after the idle timeout (5 s), nor never
        assert len(closed_at) == 3
        assert max(closed_at) - begin < header_deadline + 1.5  # each slow client was cut off
    finally:
        for s in socks:
            s.close()
        stop(srv, thread)


def test_a_slow_client_is_not_drained_for_long(weights):
    """An oversized body is drained (so a browser sees the 413) only at the floor rate: a client that
    drips it is closed after the body's grace, not after 1 GB."""
    srv, thread = start(
        weights, max_upload_bytes=1000, idle_timeout_s=5.0, body_timeout_s=1.0, min_upload_rate=64_000
    )
    host, port = srv.server_address[:2]
    head = (
        f"POST /api/prepare HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: multipart/form-data; "
        f"boundary=b\r\nContent-Length: 900000000\r\n\r\n"
    ).encode()
    closed_at: list[float] = []
    try:
        with socket.create_connection((host, port), timeout=10) as sock:
            sock.sendall(head)
            begin = time.monotonic()
            trickle(sock, b"x", 0.3, closed_at)
        assert closed_at[0] - begin < 3.0  # grace 1 s + 1 byte at 64 kB/s, then closed
    finally:
        stop(srv, thread)


def test_a_dripping_body_is_cut_at_the_floor_rate(weights):
    """A body with a valid length, sent at 1 byte per 0.2 s: 408 after the grace, on the socket's own
    deadline (the idle timeout of 5 s never trips)."""
    srv, thread = start(weights, idle_timeout_s=5.0, body_timeout_s=1.0, min_upload_rate=64_000)
    host, port = srv.server_address[:2]
    head = (
        f"POST /api/prepare HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: multipart/form-data; "
        f"boundary=b\r\nContent-Length: 5000\r\n\r\n"
    ).encode()
    try:
        with socket.create_connection((host, port), timeout=10) as sock:
            sock.sendall(head)
            begin = time.monotonic()
            sock.settimeout(0.2)
            answer = b""
            while not answer and time.monotonic() - begin < 10:
                try:
                    sock.send(b"x")
                    answer = sock.recv(65536)
                except TimeoutError:
                    continue
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert time.monotonic() - begin < 2.5
    finally:
        stop(srv, thread)


# --- item 7: one memory budget across connections ---------------------------------------------------------
def noise_png(width: int, height: int, seed: int) -> bytes:
    rgb = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def multipart(files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
        + data
        + b"\r\n"
        for name, (filename, data) in files.items()
    )
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def post_head(srv, length: int, content_type: str) -> bytes:
    host, port = srv.server_address[:2]
    return (
        f"POST /api/prepare HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {length}\r\nConnection: close\r\n\r\n"
    ).encode()


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    response = http.client.HTTPResponse(sock)
    response.begin()
    return response.status, dict(response.getheaders()), response.read()


def wait_until(condition, seconds: float = 10.0) -> bool:
    end = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > end:
            return False
        time.sleep(0.02)
    return True


def test_a_second_large_upload_is_refused_at_once_while_the_first_holds_the_budget(weights):
    body, content_type = multipart(
        {"source": ("s.png", noise_png(256, 192, 0)), "reference": ("r.png", noise_png(256, 192, 1))}
    )
    length = len(body)
    budget = int(1.5 * BODY_COPIES * length)  # room for one upload being read, not two
    srv, thread = start(weights, memory_budget=budget, idle_timeout_s=10.0)
    host, port = srv.server_address[:2]
    try:
        assert srv.state.budget.total == budget and srv.state.budget.held == 0
        with socket.create_connection((host, port), timeout=20) as first:
            first.sendall(post_head(srv, length, content_type) + body[: length // 2])
            assert wait_until(lambda: srv.state.budget.held > 0)  # reserved before its body is read
            with socket.create_connection((host, port), timeout=20) as second:
                began = time.monotonic()
                second.sendall(post_head(srv, length, content_type))  # the head only: no body sent
                status, headers, answer = read_answer(second)
                assert status == 503 and time.monotonic() - began < 1.0
                assert headers["Retry-After"].isdigit() and "busy" in json.loads(answer)["error"]
            first.sendall(body[length // 2 :])
            status, _, answer = read_answer(first)
            assert status == 200, answer
        assert wait_until(lambda: srv.state.budget.held == 0)
        with socket.create_connection((host, port), timeout=20) as third:  # room again: accepted
            third.sendall(post_head(srv, length, content_type) + body)
            status, _, answer = read_answer(third)
            assert status == 200, answer
        assert wait_until(lambda: srv.state.budget.held == 0)
    finally:
        stop(srv, thread)


def test_the_budget_default_fits_one_largest_upload_and_a_reservation_never_exceeds_it():
    assert AppConfig(max_upload_bytes=1_000_000).memory_budget_bytes() == 512_000_000
    assert AppConfig().memory_budget_bytes() == BODY_COPIES * (5 * 40_000_000 + 64 * 1024)
    assert AppConfig(memory_budget=1234).memory_budget_bytes() == 1234
    budget = MemoryBudget(100)
    with budget.reservation() as big:
        big.grow(1_000, "x")  # larger than the budget: runs alone, holding all of it
        assert budget.held == 100
        with pytest.raises(HTTPProblem) as busy, budget.reservation() as other:
            other.grow(1, "reading uploads")
        assert busy.value.status == 503 and "Retry-After" in busy.value.headers
        big.shrink_to(30)
        with budget.reservation() as other:
            other.grow(70, "decoding images")
            assert budget.held == 100
    assert budget.held == 0


def test_decoding_reserves_its_memory_while_it_runs(weights):
    """A decode holds pixels x DECODE_BYTES_PER_PIXEL of the budget while it runs, released after (the
    image then belongs to the prepared pair); with no room it is a 503, not a decode."""
    from recolorize.app.jobs import AppState
    from recolorize.app.limits import DECODE_BYTES_PER_PIXEL
    from recolorize.inference.pipeline import Recolorizer

    need = 100 * 80 * DECODE_BYTES_PER_PIXEL
    state = AppState(Recolorizer.from_pretrained(weights), AppConfig(memory_budget=need + 1000))
    png = noise_png(100, 80, 2)
    with state.budget.reservation() as mine:
        mine.grow(1000, "reading uploads")
        assert state.decode(png, "a.png", "source", mine).rgb.shape[:2] == (80, 100)
        assert mine.bytes == 1000 and state.budget.held == 1000
        with state.budget.reservation() as other:
            other.grow(1, "reading uploads")  # one byte too many for the decode
            with pytest.raises(HTTPProblem) as busy:
                state.decode(png, "a.png", "source", mine)
            assert busy.value.status == 503 and mine.bytes == 1000
    assert state.budget.held == 0
