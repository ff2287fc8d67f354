"""The web app under hostile load, with its default settings (issue 23, items 6 and 7):

    nice -n 19 .venv/bin/python benchmarks/bench_app_memory.py [--parallel 8] [--slow 32]

Starts ``recolorize app`` (the shipped model, default limits: 40 MB per image, 32 connections) as a child
process and reports its resident memory (VmRSS, and the peak VmHWM from /proc) while

1. ``--parallel`` clients each upload a largest body at once (a source and 4 references of 40 MB each,
   200 MB; bytes that are not images, so the body is read and split, then refused as not an image);
2. as many clients each upload a source and 4 references of 40 MP each (the pixel limit; small PNGs),
   which are decoded and prepared: the most one request can make the app hold;
3. ``--slow`` clients each send one header byte per second and never finish; a normal GET is then tried
   every 0.25 s, and the time until it is served is printed.

Linux only (/proc). Takes about a minute.
"""

from __future__ import annotations

import argparse
import http.client
import io
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid

import numpy as np
from PIL import Image

from _machine import machine_description

MB = 1_000_000


def status_kb(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(port: int, path: str = "/") -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    except OSError:
        return 0
    finally:
        conn.close()


def multipart(parts: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{name}.png"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
        + data
        + b"\r\n"
        for name, data in parts
    )
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def upload(port: int, body: bytes, content_type: str, answers: list[int]) -> None:
    """Send the body in 1 MB pieces, stopping early if the server answers first (a 503)."""
    head = (
        f"POST /api/prepare HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        try:
            sock.sendall(head)
            view = memoryview(body)
            for offset in range(0, len(body), MB):
                if select.select([sock], [], [], 0)[0]:
                    break  # answered before the body was read
                sock.sendall(view[offset : offset + MB])
        except OSError:
            pass
        try:
            response = http.client.HTTPResponse(sock)
            response.begin()
            response.read()
            answers.append(response.status)
        except OSError:
            answers.append(0)


def parallel_uploads(port: int, pid: int, n: int, body: bytes, content_type: str) -> tuple[list[int], float]:
    answers: list[int] = []
    threads = [threading.Thread(target=upload, args=(port, body, content_type, answers)) for _ in range(n)]
    begin = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(answers), time.perf_counter() - begin


def slow_client(port: int, stop: threading.Event, cut: list[float]) -> None:
    head = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 10_000
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.settimeout(1.0)
            for i in range(len(head)):
                if stop.is_set():
                    return
                sock.send(head[i : i + 1])
                try:
                    if sock.recv(65536) == b"":
                        break
                except TimeoutError:
                    continue
    except OSError:
        pass
    cut.append(time.perf_counter())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parallel", type=int, default=8, help="clients uploading at once (default 8)")
    parser.add_argument("--slow", type=int, default=32, help="slow clients (default 32, every slot)")
    args = parser.parse_args()
    print(machine_description())

    port = free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "recolorize", "app", "--port", str(port)]
    app = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        end = time.monotonic() + 120
        while get(port) != 200:
            if app.poll() is not None or time.monotonic() > end:
                raise SystemExit("the app did not start")
            time.sleep(0.3)
        idle = status_kb(app.pid, "VmRSS") / 1000
        print(f"app: {' '.join(command[1:])} (default limits); idle RSS {idle:.0f} MB")

        garbage = bytes(np.random.default_rng(0).integers(0, 256, 40 * MB, dtype=np.uint8))
        body, content_type = multipart([("source", garbage)] + [("reference", garbage)] * 4)
        answers, seconds = parallel_uploads(port, app.pid, args.parallel, body, content_type)
        peak = status_kb(app.pid, "VmHWM") / 1000
        print(
            f"{args.parallel} parallel {len(body) / MB:.0f} MB uploads (not images): answers {answers} "
            f"in {seconds:.1f} s; peak RSS {peak:.0f} MB (+{peak - idle:.0f} MB over idle)"
        )

        y = np.linspace(0, 255, 5000, dtype=np.float32)[:, None]
        pngs = []
        for k in range(5):  # 8000 x 5000 = 40 MP each, the default --max-pixels
            rgb = np.stack([y, (y * (k + 1)) % 256, 255 - y], -1).astype(np.uint8)
            buf = io.BytesIO()
            Image.fromarray(np.ascontiguousarray(np.broadcast_to(rgb, (5000, 8000, 3)))).save(buf, "PNG")
            pngs.append(buf.getvalue())
        body, content_type = multipart([("source", pngs[0])] + [("reference", p) for p in pngs[1:]])
        answers, seconds = parallel_uploads(port, app.pid, args.parallel, body, content_type)
        peak = status_kb(app.pid, "VmHWM") / 1000
        print(
            f"{args.parallel} parallel uploads of a 40 MP source and 4 references of 40 MP "
            f"({len(body) / MB:.1f} MB of PNG; decoded and prepared): answers {answers} in {seconds:.1f} s; "
            f"peak RSS {peak:.0f} MB (+{peak - idle:.0f} MB over idle)"
        )

        stop, cut = threading.Event(), []
        slow = [threading.Thread(target=slow_client, args=(port, stop, cut)) for _ in range(args.slow)]
        begin = time.perf_counter()
        for thread in slow:
            thread.start()
        while get(port) != 503 and time.perf_counter() - begin < 10:  # until they hold every slot
            time.sleep(0.1)
        full = time.perf_counter() - begin
        refused = 1
        while (status := get(port)) != 200 and time.perf_counter() - begin < 60:
            refused += 1
            time.sleep(0.25)
        served = time.perf_counter() - begin
        for thread in slow:  # each sees its connection closed by the server
            thread.join(max(0.0, begin + 30 - time.perf_counter()))
        stop.set()
        for thread in slow:
            thread.join(10)
        print(
            f"{args.slow} slow clients (one header byte per second) held every slot after {full:.1f} s; "
            f"a GET got {status} after {served:.1f} s ({refused} tries answered 503 before); slow clients "
            "cut off after "
            f"{(max(cut) - begin) if cut else float('nan'):.1f} s at most ({len(cut)} of {args.slow})"
        )
    finally:
        app.send_signal(signal.SIGINT)
        app.wait(30)


if __name__ == "__main__":
    main()
