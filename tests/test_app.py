"""The web app over HTTP: a server on a free port with a tiny seeded model, real DPST photos."""

from __future__ import annotations

import http.client
import io
import json
import threading
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms

from recolorize.app.server import AppConfig, create_server, parse_multipart
from recolorize.cli import build_parser

MAX_UPLOAD = 1_000_000  # small so the oversize tests stay light; the DPST photos are ~0.4 MB


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    from recolorize.config import get_config
    from recolorize.networks.model import RecolorModel

    path = tmp_path_factory.mktemp("app-model") / "model.safetensors"
    torch.manual_seed(0)
    RecolorModel(get_config("tiny")).save(path)
    return path


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
    # an untrained tiny model barely changes colours, but strength 1 is not simply the source again
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
    # a body over the whole-request limit is refused from its Content-Length alone
    huge, content_type = multipart(
        {"source": ("a.png", b"\0" * (3 * MAX_UPLOAD)), "reference": ("b.png", b"x")}
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
    from recolorize.app.server import AppState, HTTPProblem
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
