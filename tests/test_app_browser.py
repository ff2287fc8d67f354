"""The web app in a real headless Chromium (Playwright): upload, slider, downloads (full resolution and the
look as a .cube), error message.

Needs the ``playwright`` Python package and a Chromium at /usr/bin/chromium (``scripts/setup.sh --test``
installs both; ``RECOLORIZE_CHROMIUM`` names another binary). Without them the test skips locally and
fails in CI (``CI=true``). ``RECOLORIZE_APP_SCREENSHOT=path.png`` saves a screenshot after the transfer
(how docs/images/app.png is made) and ``RECOLORIZE_APP_WEIGHTS=FOLDER`` uses that exported model (a folder
``recolorize export`` writes, or a file in it) instead of the tiny one.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from recolorize.inference.lut import Lut3D, read_cube

CHROMIUM = Path(os.environ.get("RECOLORIZE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 60_000


def _unavailable(reason: str) -> None:
    """Skip on a developer machine, fail in CI: CI must run the browser test."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason} (CI must run the browser test; run scripts/setup.sh --test)")
    pytest.skip(f"{reason}; run scripts/setup.sh --test to install it")


@pytest.fixture(scope="module")
def sync_playwright():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright Python package is not installed")
    if not CHROMIUM.is_file():
        _unavailable(f"no Chromium at {CHROMIUM} (scripts/install_browser.sh installs Debian's chromium)")
    return sync_playwright


@pytest.fixture(scope="module")
def app_url(tiny_weights, sync_playwright):
    """`recolorize app` in a subprocess with the tiny exported model on a free port; stopped afterwards."""
    weights = Path(os.environ.get("RECOLORIZE_APP_WEIGHTS", ""))
    if not weights.name:
        weights = tiny_weights.parent
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "2"}
    cmd = [sys.executable, "-m", "recolorize", "app", "--weights", str(weights), "--port", "0"]
    cmd += ["--preview-size", "512"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    found: list[str] = []
    log: list[str] = []
    ready = threading.Event()

    def read() -> None:
        for line in proc.stderr:
            log.append(line)
            match = re.search(r"serving on (http://\S+)", line)
            if match and not found:
                found.append(match.group(1))
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    ready.wait(60)
    if not found:
        proc.kill()
        pytest.fail("`recolorize app` did not start:\n" + "".join(log))
    yield found[0]
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


# Mean absolute difference (0-255) between two images on the page, read back through a canvas.
_PAGE_MAE = """([a, b]) => {
  const read = (img) => {
    const c = document.createElement('canvas');
    c.width = img.naturalWidth; c.height = img.naturalHeight;
    const ctx = c.getContext('2d');
    ctx.drawImage(img, 0, 0);
    return ctx.getImageData(0, 0, c.width, c.height).data;
  };
  const x = read(document.querySelector(a)), y = read(document.querySelector(b));
  if (x.length !== y.length) return -1;
  let sum = 0, n = 0;
  for (let i = 0; i < x.length; i += 4) {
    for (let k = 0; k < 3; k++) { sum += Math.abs(x[i + k] - y[i + k]); n++; }
  }
  return sum / n;
}"""

_RENDERED = """(s) => document.body.dataset.state === 'ready'
    && document.querySelector('#result-img').dataset.strength === s
    && document.querySelector('#result-img').complete"""


def _rgb(path: str | Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).astype(np.float64)


def test_browser_transfer_slider_download_and_error(sync_playwright, app_url, photos, tmp_path):
    screenshot = os.environ.get("RECOLORIZE_APP_SCREENSHOT")
    with Image.open(photos["source"]) as im:
        source_size = im.size
    requests: list[str] = []
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            accept_downloads=True,
            viewport={"width": 1280, "height": 800},
        )
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            page.on("request", lambda r: requests.append(r.url))
            page.goto(app_url)
            assert page.title() == "recolorize"
            assert page.locator("#strength").is_disabled()
            assert page.locator("#download-lut").is_disabled()  # no pair yet

            # drop both photos (through the file inputs the drop zones wrap) and wait for the result
            start = time.perf_counter()
            page.set_input_files("#source-input", str(photos["source"]))
            page.set_input_files("#reference-input", str(photos["reference"]))
            page.wait_for_function(_RENDERED, arg="1")
            assert page.locator("#compare").is_visible()
            assert page.locator("#error").is_hidden()
            assert "700 × 437" in page.locator("#dims").inner_text()
            transfer_s = time.perf_counter() - start

            with page.expect_download() as info:
                page.click("#download")
            download = info.value
            assert download.suggested_filename == "in1-recolorized.png"
            full = tmp_path / "full.png"
            download.save_as(full)
            with Image.open(full) as out:
                assert out.size == source_size

            # beside it, the look as a .cube at the slider's strength (1 here)
            assert page.locator("#download-lut").is_enabled()
            with page.expect_download() as info:
                page.click("#download-lut")
            assert info.value.suggested_filename == "in1-look.cube"
            look = tmp_path / "look.cube"
            info.value.save_as(look)
            identity = Lut3D.identity().table
            assert read_cube(look).size == 33 and np.abs(read_cube(look).table - identity).max() > 0
            if screenshot:
                page.locator("#handle").focus()
                for _ in range(5):
                    page.keyboard.press("ArrowLeft")
                page.mouse.move(0, 0)  # no hover on a button
                page.wait_for_timeout(500)  # let the download button's fade-in finish
                page.screenshot(path=screenshot)

            # strength 0 with the keyboard (a real input event): the page shows the source again
            page.focus("#strength")
            page.keyboard.press("Home")
            assert page.locator("#strength-value").inner_text() == "0.00"
            page.wait_for_function(_RENDERED, arg="0")
            assert page.evaluate(_PAGE_MAE, ["#result-img", "#before-img"]) == pytest.approx(0, abs=1.0)
            with page.expect_download() as info:
                page.click("#download")
            zero = tmp_path / "zero.png"
            info.value.save_as(zero)
            assert np.abs(_rgb(zero) - _rgb(photos["source"])).mean() < 1.0
            with page.expect_download() as info:
                page.click("#download-lut")
            info.value.save_as(tmp_path / "zero.cube")
            assert np.array_equal(read_cube(tmp_path / "zero.cube").table, identity)  # the slider's 0

            # a file that is not an image: the server's message appears on the page
            page.set_input_files(
                "#source-input",
                files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not a photo"}],
            )
            error = page.locator("#error")
            error.wait_for(state="visible")
            text = error.inner_text()
            assert "notes.txt" in text and "not an image file" in text
            assert page.locator("#source-drop.invalid").count() == 1
        finally:
            context.close()
    host = app_url.rstrip("/")
    outside = [u for u in requests if not (u.startswith(host) or u.startswith(("blob:", "data:")))]
    assert not outside, f"the page contacted other origins: {outside}"
    assert transfer_s < 60
