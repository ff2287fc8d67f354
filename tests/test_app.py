"""The web app over HTTP: a server on a free port with a tiny seeded model, real DPST photos."""

from __future__ import annotations

import http.client
import io
import json
import socket
import struct
import threading
import time
import uuid
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from recolorize.app.jobs import AppConfig
from recolorize.app.server import create_server
from recolorize.app.validation import MAX_REFERENCES, parse_multipart
from recolorize.cli import build_parser

MAX_UPLOAD = 1_000_000  # small so the oversize tests stay light; the DPST photos are ~0.4 MB


@pytest.fixture(scope="module")
def weights(tiny_weights: Path) -> Path:
    """The tiny exported model folder (conftest's ``tiny_weights``: graphs, config, safetensors)."""
    return tiny_weights.parent


@pytest.fixture(scope="module")
def server(weights):
    from recolorize.inference.pipeline import Recolorizer

    config = AppConfig(max_upload_bytes=MAX_UPLOAD, cache_size=2, preview_size=256)
    srv = create_server(Recolorizer.from_pretrained(weights), port=0, config=config)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(10)


def request(srv, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    host, port = srv.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def multipart(files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = []
    for name, (filename, data) in files.items():
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        )
        parts.append(head.encode() + data + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def upload(srv, files: dict[str, tuple[str, bytes]]):
    body, content_type = multipart(files)
    return request(srv, "POST", "/api/prepare", body, {"Content-Type": content_type})


def pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB")).astype(np.float64)


@pytest.fixture(scope="module")
def prepared(server, photos) -> dict:
    status, _, body = upload(server, {role: (p.name, p.read_bytes()) for role, p in photos.items()})
    assert status == 200, body
    return json.loads(body)


def test_multipart_parser_keeps_binary_bytes_exactly():
    data = bytes(range(256)) * 3 + b"\r\n--x\r\n\r\n"
    body, content_type = multipart({"source": ("a b.png", data), "reference": ("r.jpg", b"\r\n")})
    fields = parse_multipart(body, content_type)
    assert fields["source"] == ("a b.png", data)
    assert fields["reference"] == ("r.jpg", b"\r\n")


def test_page_and_assets_are_served_locally(server):
    status, headers, body = request(server, "GET", "/")
    assert status == 200 and b"recolorize" in body
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    for asset in ("/static/app.js", "/static/app.css"):
        status, _, text = request(server, "GET", asset)
        assert status == 200 and text
        assert b"http://" not in text and b"https://" not in text  # no CDN, no external fonts
    assert b"https://" not in body and b"http://" not in body


def test_transfer_preview_and_full_resolution_download(server, photos, prepared):
    with Image.open(photos["source"]) as im:
        size = im.size
    assert (prepared["width"], prepared["height"]) == size
    assert max(prepared["preview_width"], prepared["preview_height"]) == 256
    status, _, png = request(server, "GET", f"/api/render/{prepared['id']}?strength=1")
    assert status == 200
    preview = pixels(png)
    assert preview.shape[:2] == (prepared["preview_height"], prepared["preview_width"])
    status, headers, data = request(server, "GET", f"/api/download/{prepared['id']}?strength=1")
    assert status == 200
    assert (
        "attachment" in headers["Content-Disposition"]
        and "in1-recolorized.png" in headers["Content-Disposition"]
    )
    with Image.open(io.BytesIO(data)) as out:
        assert out.size == size


def test_strength_zero_returns_the_source(server, photos, prepared):
    source = pixels(photos["source"].read_bytes())
    status, _, data = request(server, "GET", f"/api/download/{prepared['id']}?strength=0")
    assert status == 200
    assert np.abs(pixels(data) - source).mean() < 1.0
    _, _, preview_source = request(server, "GET", f"/api/source/{prepared['id']}")
    _, _, preview = request(server, "GET", f"/api/render/{prepared['id']}?strength=0")
    assert np.abs(pixels(preview) - pixels(preview_source)).mean() < 1.0
    _, _, full = request(server, "GET", f"/api/render/{prepared['id']}?strength=1")
    # strength 1 is not simply the source again
    assert np.abs(pixels(full) - pixels(preview_source)).mean() > 0


def test_download_keeps_icc_and_exif(server, photos):
    with Image.open(photos["source"]) as im:
        rgb = im.convert("RGB")
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "TestCamera"  # Make
    buf = io.BytesIO()
    rgb.save(buf, format="JPEG", quality=92, icc_profile=profile, exif=exif.tobytes())
    status, _, body = upload(
        server,
        {"source": ("cam.jpg", buf.getvalue()), "reference": ("r.png", photos["reference"].read_bytes())},
    )
    assert status == 200, body
    key = json.loads(body)["id"]
    status, headers, data = request(server, "GET", f"/api/download/{key}?strength=0.5")
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    with Image.open(io.BytesIO(data)) as out:
        assert out.format == "JPEG" and out.size == rgb.size
        assert out.info.get("icc_profile") == profile
        assert out.getexif().get(0x010F) == "TestCamera"


def test_the_look_downloads_as_a_cube_at_the_sliders_strength(server, weights, photos, prepared, tmp_path):
    """``/api/lut/ID?strength=S``: the ``.cube`` ``recolorize lut`` makes for the same photos and strength
    (the API's transfer_lut, default method, 33^3), named after the source, read back by our reader."""
    from recolorize.inference.lut import Lut3D, read_cube, transfer_lut
    from recolorize.inference.pipeline import Recolorizer

    key = prepared["id"]  # (the server keeps two pairs: an upload of our own would evict it)
    looks = {}
    for strength in ("0", "0.5", "1"):
        status, headers, data = request(server, "GET", f"/api/lut/{key}?strength={strength}")
        assert status == 200, data
        assert headers["Content-Type"] == "text/plain; charset=utf-8"
        assert headers["Content-Disposition"].startswith('attachment; filename="in1-look.cube"')
        assert data.decode().startswith(f'TITLE "in1 look (recolorize, strength {float(strength):.2f})"\n')
        path = tmp_path / f"look-{strength}.cube"
        path.write_bytes(data)
        looks[strength] = read_cube(path)
        assert looks[strength].size == 33
    identity = Lut3D.identity().table
    assert np.array_equal(looks["0"].table, identity)
    moved = {s: np.abs(looks[s].table - identity).mean() for s in ("0.5", "1")}
    assert 0 < moved["0.5"] < moved["1"], moved
    recolorizer = Recolorizer.from_pretrained(weights)
    pair = recolorizer.prepare(photos["source"], photos["reference"])
    for strength in ("0.5", "1"):
        expected = transfer_lut(recolorizer, pair, float(strength))
        assert np.abs(looks[strength].table - expected.table).max() < 1e-5
    assert request(server, "GET", f"/api/lut/{key}?strength=2")[0] == 400
    assert request(server, "GET", "/api/lut/unknown-upload-id?strength=1")[0] == 410


def test_non_image_upload_is_refused_with_a_clear_message(server, photos):
    status, _, body = upload(
        server,
        {
            "source": ("notes.txt", b"hello, not a photo"),
            "reference": ("r.png", photos["reference"].read_bytes()),
        },
    )
    assert 400 <= status < 500
    message = json.loads(body)["error"]
    assert "source image (notes.txt)" in message and "not an image file" in message


def test_truncated_image_is_refused(server, photos):
    data = photos["source"].read_bytes()
    status, _, body = upload(
        server, {"source": ("cut.png", data[: len(data) // 3]), "reference": ("r.png", data)}
    )
    assert 400 <= status < 500
    assert "cut.png" in json.loads(body)["error"]


def test_oversize_uploads_are_refused(server, photos):
    big = b"\0" * (MAX_UPLOAD + 10)
    status, _, body = upload(
        server, {"source": ("big.png", big), "reference": ("r.png", photos["reference"].read_bytes())}
    )
    assert status == 413
    assert "big.png" in json.loads(body)["error"] and "limit is 1.0 MB" in json.loads(body)["error"]
    # a body over the whole-request limit (source + MAX_REFERENCES references) is refused from its
    # Content-Length alone
    huge, content_type = multipart(
        {"source": ("a.png", b"\0" * ((2 + MAX_REFERENCES) * MAX_UPLOAD)), "reference": ("b.png", b"x")}
    )
    status, _, body = request(server, "POST", "/api/prepare", huge, {"Content-Type": content_type})
    assert status == 413 and "at most 1.0 MB" in json.loads(body)["error"]


def test_bad_requests(server, prepared):
    assert request(server, "GET", f"/api/render/{prepared['id']}?strength=2")[0] == 400
    assert request(server, "GET", f"/api/render/{prepared['id']}?strength=abc")[0] == 400
    assert request(server, "GET", "/api/render/unknown-upload-id?strength=1")[0] == 410
    assert request(server, "GET", "/nothing-here")[0] == 404
    status, _, body = upload(server, {"source": ("a.png", b"")})
    assert status == 400 and "choose a" in json.loads(body)["error"]
    # DNS rebinding: a loopback server answers only requests addressed to localhost
    assert request(server, "GET", "/", headers={"Host": "evil.example:80"})[0] == 403


def test_cache_is_bounded_lru(server, photos):
    files = {role: (p.name, p.read_bytes()) for role, p in photos.items()}
    ids = [json.loads(upload(server, files)[2])["id"] for _ in range(3)]
    cached = server.state.cached_ids()
    assert len(cached) == 2 and ids[0] not in cached and ids[1:] == cached


def test_binds_loopback_by_default(weights):
    args = build_parser().parse_args(["app", "--weights", str(weights)])
    assert (
        args.host == "127.0.0.1" and args.port == 7860 and args.func.__module__ == "recolorize.commands.app"
    )
    from recolorize.inference.pipeline import Recolorizer

    srv = create_server(Recolorizer.from_pretrained(weights), port=0)
    try:
        assert srv.server_address[0] == "127.0.0.1" and srv.loopback_only
        assert srv.url.startswith("http://127.0.0.1:")
    finally:
        srv.server_close()


def test_one_model_job_at_a_time_and_a_bounded_queue(weights):
    from recolorize.app.jobs import AppState
    from recolorize.app.validation import HTTPProblem
    from recolorize.inference.pipeline import Recolorizer

    state = AppState(Recolorizer.from_pretrained(weights), AppConfig(max_waiting=0, job_timeout_s=5))
    started, release = threading.Event(), threading.Event()
    running: list[int] = []

    def job() -> int:
        running.append(1)
        started.set()
        release.wait(10)
        return len(running)

    first = threading.Thread(target=state.run_job, args=(job,))
    first.start()
    assert started.wait(10)
    with pytest.raises(HTTPProblem) as busy:  # nobody may wait: the second request is told to retry
        state.run_job(job)
    assert busy.value.status == 503
    release.set()
    first.join(10)
    assert state.run_job(lambda: "done") == "done" and len(running) == 1


# --- hostile input (issue 12, items 9-13) ----------------------------------------------------------------
def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` RGB pixels, with almost no pixel data (60 bytes)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def png_zlib_bomb(side: int) -> bytes:
    """A valid black 1-bit PNG of ``side`` x ``side``: a few kB that inflate to side^2 pixels."""
    row = b"\0" * (1 + (side + 7) // 8)  # filter byte + packed bits
    idat = zlib.compress(row * side, 9)
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small real JPEG whose SOF0 header is edited to claim ``width`` x ``height``."""
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (90, 120, 200)).save(buf, format="JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def small_photo(fmt: str = "PNG", exif: bytes | None = None) -> bytes:
    """A 96x64 colour gradient (the models work at 64 px; a photo need not be real for these checks)."""
    y, x = np.mgrid[0:64, 0:96]
    rgb = np.stack([x * 2.6, y * 3.9, 255 - x * 2.6], -1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format=fmt, **({"exif": exif} if exif else {}))
    return buf.getvalue()


def text_orientation_exif() -> bytes:
    """EXIF whose Orientation (0x0112) is the ASCII text "ab" instead of a number 1-8."""
    entry = struct.pack("<HHI", 0x0112, 2, 3) + b"ab\0\0"
    return b"Exif\0\0II*\0" + struct.pack("<IH", 8, 1) + entry + struct.pack("<I", 0)


@pytest.mark.parametrize(
    ("name", "make", "words"),
    [
        ("png50k.png", lambda: png_header_only(50_000, 50_000), "possible decompression bomb"),
        ("jpeg65k.jpg", lambda: jpeg_claiming(65_500, 65_500), "possible decompression bomb"),
        ("zbomb.png", lambda: png_zlib_bomb(8_000), "8000x8000 = 64,000,000 pixels"),
    ],
)
def test_decompression_bombs_are_refused_from_the_header(server, name, make, words):
    data = make()
    assert len(data) < 20_000  # tiny files that claim billions of pixels
    start = time.perf_counter()
    status, _, body = upload(server, {"source": (name, data), "reference": ("r.png", small_photo())})
    assert status == 413, body
    message = json.loads(body)["error"]
    assert name in message and words in message and "the limit is 40,000,000 pixels" in message, message
    assert time.perf_counter() - start < 5  # refused from the header, nothing inflated


def test_text_orientation_jpeg_is_never_a_server_error(server):
    jpeg = small_photo("JPEG", exif=text_orientation_exif())
    with Image.open(io.BytesIO(jpeg)) as im:
        assert im.getexif().get(0x0112) == "ab"
    for role in ("source", "reference"):
        other = "reference" if role == "source" else "source"
        status, _, body = upload(server, {role: ("ab.jpg", jpeg), other: ("o.png", small_photo())})
        assert status < 500, body
        if status == 200:  # the imaging layer takes the text as orientation 1: the whole round trip works
            key = json.loads(body)["id"]
            assert request(server, "GET", f"/api/download/{key}?strength=1")[0] == 200
        else:
            assert "ab.jpg" in json.loads(body)["error"]


def test_any_decoder_failure_is_a_4xx_with_the_file_named(server, monkeypatch):
    """Whatever a decoder raises on a crafted file (here the ValueError a text Orientation once raised)."""
    import recolorize.app.jobs as app_jobs

    def broken_decoder(stream, max_pixels=None):
        raise ValueError("invalid literal for int() with base 10: 'ab'")

    monkeypatch.setattr(app_jobs, "load_image", broken_decoder)
    status, _, body = upload(
        server, {"source": ("ab.jpg", small_photo("JPEG")), "reference": ("r.png", b"x")}
    )
    assert status == 400
    message = json.loads(body)["error"]
    assert "source image (ab.jpg)" in message and "could not be decoded" in message and "'ab'" in message


def raw_exchange(srv, data: bytes, timeout: float = 10.0) -> bytes:
    """Send ``data`` on a raw socket, keep it open for writing, and read until the server closes."""
    with socket.create_connection(srv.server_address[:2], timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def post_head(srv, length: str, extra: str = "") -> bytes:
    host, port = srv.server_address[:2]
    return (
        f"POST /api/prepare HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: multipart/form-data; "
        f"boundary=b\r\nContent-Length: {length}\r\n{extra}\r\n"
    ).encode()


@pytest.mark.parametrize("length", ["-1", "abc", "+5", "1_000", "0x10", "", "99999999999999999999"])
def test_bad_content_length_is_refused_before_any_body_is_read(server, length):
    """The body is never sent and the socket stays open: a server that waited for it would hang."""
    start = time.perf_counter()
    answer = raw_exchange(server, post_head(server, length))
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert b"Connection: close" in answer and b"Content-Length" in answer.split(b"\r\n\r\n", 1)[1]
    assert time.perf_counter() - start < 5


def test_missing_length_and_chunked_uploads_are_refused(server):
    host, port = server.server_address[:2]
    no_length = f"POST /api/prepare HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    assert raw_exchange(server, no_length).startswith(b"HTTP/1.1 411 ")
    chunked = post_head(server, "5", "Transfer-Encoding: chunked\r\n")
    assert raw_exchange(server, chunked).startswith(b"HTTP/1.1 400 ")


def test_cross_origin_posts_are_refused(server):
    files = {"source": ("s.png", small_photo()), "reference": ("r.png", small_photo())}
    body, content_type = multipart(files)
    host, port = server.server_address[:2]
    before = server.state.cached_ids()
    for origin in (
        "https://evil.example",
        "null",
        f"http://{host}:{port + 1}",
        f"https://{host}:{port}",
        "http://localhost.evil.example",
    ):
        headers = {"Content-Type": content_type, "Origin": origin}
        status, _, answer = request(server, "POST", "/api/prepare", body, headers)
        assert status == 403 and "other web pages" in json.loads(answer)["error"], origin
    assert server.state.cached_ids() == before  # nothing was processed
    # the app's own page (what a browser sends for a same-origin fetch) and clients without Origin work
    for headers in ({"Origin": f"http://{host}:{port}"}, {}):
        status, _, answer = request(
            server, "POST", "/api/prepare", body, {"Content-Type": content_type, **headers}
        )
        assert status == 200, answer


def test_size_messages_never_read_the_same_and_server_header_has_no_version(server):
    from recolorize.app.validation import mb_pair

    assert mb_pair(300_000, 100_000) == ("0.3 MB", "0.1 MB")
    assert mb_pair(100_001, 100_000) == ("0.100001 MB", "0.1 MB")
    assert mb_pair(149_999, 100_000) == ("0.15 MB", "0.1 MB")
    status, headers, body = upload(
        server, {"source": ("big.png", b"\0" * (MAX_UPLOAD + 10)), "reference": ("r.png", small_photo())}
    )
    assert status == 413
    assert "is 1.00001 MB; the limit is 1.0 MB" in json.loads(body)["error"]
    answers = [headers, request(server, "GET", "/")[1], request(server, "GET", "/missing")[1]]
    host, port = server.server_address[:2]
    unknown_method = f"BREW / HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode()
    bad_request_line = raw_exchange(server, unknown_method)  # answered by the base class's send_error
    assert bad_request_line.startswith(b"HTTP/1.1 501 ")
    assert b"\r\nServer: recolorize-app\r\n" in bad_request_line
    for answer in answers:
        assert answer["Server"] == "recolorize-app"
    assert b"Python" not in bad_request_line


@pytest.fixture()
def strict_server(weights):
    """A server with a short idle timeout, a short upload deadline and room for 3 connections."""
    from recolorize.inference.pipeline import Recolorizer

    config = AppConfig(max_connections=3, idle_timeout_s=1.0, body_timeout_s=1.5, preview_size=256)
    srv = create_server(Recolorizer.from_pretrained(weights), port=0, config=config)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(10)


def test_idle_connections_time_out_and_connections_are_bounded(strict_server):
    address = strict_server.server_address[:2]
    idle = [socket.create_connection(address, timeout=10) for _ in range(3)]
    try:
        time.sleep(0.3)  # the server has accepted them: all 3 slots are held by silent clients
        start = time.perf_counter()
        with socket.create_connection(address, timeout=10) as extra:
            answer = extra.recv(65536)
        assert answer.startswith(b"HTTP/1.1 503 "), answer  # told at once, not queued behind them
        assert time.perf_counter() - start < 1
        for sock in idle:  # the idle timeout closes each silent connection: recv sees the end
            assert sock.recv(1) == b""
        assert time.perf_counter() - start < 8
    finally:
        for sock in idle:
            sock.close()
    deadline = time.monotonic() + 10  # slots are free again
    while (status := request(strict_server, "GET", "/")[0]) != 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert status == 200


def test_a_dripping_upload_is_cut_off(strict_server):
    """One byte every 0.3 s never trips the idle timeout, but the whole body has a deadline."""
    start = time.perf_counter()
    with socket.create_connection(strict_server.server_address[:2], timeout=10) as sock:
        sock.sendall(post_head(strict_server, "1000"))
        sock.settimeout(0.3)
        answer = b""
        for _ in range(40):  # 12 s of dripping at most; stop as soon as the server answers
            sock.sendall(b"x")
            try:
                answer = sock.recv(65536)
                break
            except TimeoutError:
                continue
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert time.perf_counter() - start < 8


def multipart_list(files: list[tuple[str, str, bytes]]) -> tuple[bytes, str]:
    """Like ``multipart`` but with repeated field names (several reference files)."""
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
        + data
        + b"\r\n"
        for name, filename, data in files
    ]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def test_several_references_in_one_upload(server, photos):
    """1-4 reference files (the field name repeated) are prepared as one set of positions; a fifth is
    refused."""
    source = ("source.png", photos["source"].read_bytes())
    reference = ("ref.png", photos["reference"].read_bytes())
    body, content_type = multipart_list(
        [("source", *source), ("reference", *reference), ("reference", *source)]
    )
    fields = parse_multipart(body, content_type)
    assert fields["reference#2"] == source and fields["reference"] == reference
    status, _, answer = request(server, "POST", "/api/prepare", body, {"Content-Type": content_type})
    assert status == 200, answer
    key = json.loads(answer)["id"]
    status, _, png = request(server, "GET", f"/api/render/{key}?strength=1")
    assert status == 200 and pixels(png).size
    body, content_type = multipart_list([("source", *source)] + [("reference", *reference)] * 5)
    status, _, answer = request(server, "POST", "/api/prepare", body, {"Content-Type": content_type})
    assert status == 400 and b"at most 4" in answer
