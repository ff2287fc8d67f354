"""Request checks of the web app, before any model work: the Host and Origin rules, the upload's length
and fields, the strength of a render; every refusal is an :class:`HTTPProblem` (status and one message)."""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from http import HTTPStatus
from urllib.parse import parse_qs, quote, urlsplit

__all__ = [
    "HTTPProblem",
    "MAX_PARTS",
    "MAX_REFERENCES",
    "attachment_header",
    "clean_filename",
    "MULTIPART_OVERHEAD",
    "ID_RE",
    "mb_pair",
    "same_origin",
    "is_loopback",
    "parse_content_length",
    "parse_multipart",
    "parse_strength",
    "upload_images",
]

#: Most reference photos one upload may carry (each up to the per-image limit).
MAX_REFERENCES = 4
#: Most parts one upload may have: the source and :data:`MAX_REFERENCES` references, and as many again for
#: form fields a client may add. More cannot be a request of ours, and is refused before any part is read.
MAX_PARTS = 2 * (1 + MAX_REFERENCES)
#: Bytes of a multipart body that are not image bytes (boundaries, headers), allowed beyond the images.
MULTIPART_OVERHEAD = 64 * 1024
#: An upload id as ``AppState.put`` makes them.
ID_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
_LENGTH_RE = re.compile(r"^[0-9]{1,15}$")


class HTTPProblem(Exception):
    """An error answered as JSON ``{"error": message}`` with an HTTP status (and ``headers``, if any)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def mb_pair(size: int, limit: int) -> tuple[str, str]:
    """``size`` and ``limit`` in MB with just enough decimals that they read differently.

    "0.1 MB; the limit is 0.1 MB" tells the user nothing, so a decimal is added until they differ.
    """
    for digits in range(1, 7):
        a, b = f"{size / 1_000_000:.{digits}f}", f"{limit / 1_000_000:.{digits}f}"
        if a != b:
            b = b.rstrip("0")  # the limit is usually round: 1.0 MB, not 1.00000 MB
            return f"{a} MB", f"{b}0 MB" if b.endswith(".") else f"{b} MB"
    return f"{size:,} bytes", f"{limit:,} bytes"


def same_origin(origin: str, host: str) -> bool:
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


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_content_length(values: list[str], transfer_encoding: str | None) -> int:
    """The body's length from a single, plain decimal Content-Length; refused before reading anything.

    ``int()`` alone would accept "-1" (then ``read(-1)`` reads until the client stops), "+5" or
    "1_000"; chunked bodies are not supported (browsers always send a length for a form).
    """
    if transfer_encoding is not None:
        raise HTTPProblem(HTTPStatus.BAD_REQUEST, "chunked uploads are not supported; send a Content-Length")
    if not values:
        raise HTTPProblem(HTTPStatus.LENGTH_REQUIRED, "the upload has no Content-Length")
    text = values[0].strip()
    if any(v.strip() != text for v in values) or not _LENGTH_RE.match(text):
        raise HTTPProblem(
            HTTPStatus.BAD_REQUEST, f"the upload's Content-Length {values[0][:40]!r} is not a byte count"
        )
    return int(text)


def parse_multipart(body: bytes, content_type: str) -> dict[str, tuple[str, bytes]]:
    """Fields of a ``multipart/form-data`` body: name -> (filename, bytes). Exact bytes, no copies to disk.
    A name sent again is kept as ``name#2``, ``name#3`` ... (several reference files)."""
    match = re.search(r'boundary=(?:"([^"]+)"|([^;\s]+))', content_type)
    if not content_type.lower().startswith("multipart/form-data") or not match:
        raise HTTPProblem(HTTPStatus.BAD_REQUEST, "expected a multipart/form-data upload")
    boundary = (match.group(1) or match.group(2)).encode("latin-1")
    delimiter = b"--" + boundary
    parts = body.count(delimiter) - 1  # the last delimiter closes the body (``--boundary--``)
    if parts > MAX_PARTS:
        raise HTTPProblem(
            HTTPStatus.BAD_REQUEST, f"the upload has {parts:,} parts; a request has at most {MAX_PARTS}"
        )
    fields: dict[str, tuple[str, bytes]] = {}
    seen: dict[str, int] = {}  # times each name was sent: the next repeat's number, found in O(1)
    for part in body.split(delimiter)[1:]:
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
        if name:  # a repeated name (several references): reference, reference#2, ...
            key = name.group(1)
            count = seen[key] = seen.get(key, 0) + 1
            while count > 1 and f"{key}#{count}" in fields:  # a client's own "reference#2" field
                count = seen[key] = count + 1
            fields[key if count == 1 else f"{key}#{count}"] = (
                clean_filename(filename.group(1)) if filename else "",
                content,
            )
    return fields


#: Unicode categories never kept in a file name from a client: control characters (CR, LF, NUL, DEL, C1),
#: format characters (bidirectional overrides, zero-width), line and paragraph separators, surrogates.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
#: Longest name kept (characters): the name only labels the download.
MAX_FILENAME = 200


def clean_filename(name: str) -> str:
    """An upload's file name as it may be shown, logged and sent back: without control and format
    characters (a line feed in a header would start a header of the client's choosing), at most
    :data:`MAX_FILENAME` characters."""
    return "".join(c for c in name if unicodedata.category(c) not in _UNSAFE_CATEGORIES)[:MAX_FILENAME]


def attachment_header(filename: str) -> str:
    """``Content-Disposition`` of a download named ``filename`` (RFC 6266): ``filename*=UTF-8''...``,
    percent-encoded, which browsers use, after a plain ``filename="..."`` for older clients, in printable
    ASCII without quotes, backslashes or percent signs (each other character becomes ``_``)."""
    name = clean_filename(filename) or "download"
    fallback = "".join(c if " " <= c <= "~" and c not in '"\\%' else "_" for c in name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def upload_images(
    fields: dict[str, tuple[str, bytes]], limit: int
) -> tuple[tuple[str, bytes], list[tuple[str, bytes]]]:
    """The source and the 1-:data:`MAX_REFERENCES` references of a prepare upload, each present and
    within ``limit`` bytes: ((filename, bytes), [(filename, bytes), ...])."""
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
            size, most = mb_pair(len(data), limit)
            raise HTTPProblem(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"{label} is {size}; the limit is {most}")
    references = [fields["reference"]] + [fields[k] for k in sorted(extra, key=lambda k: int(k[10:]))]
    return fields["source"], references


def parse_strength(query: str) -> float:
    """The ``strength`` of a render or download query (default 1), which must lie in [0, 1]."""
    values = parse_qs(query).get("strength", ["1"])
    try:
        strength = float(values[0])
    except ValueError:
        strength = float("nan")
    if not 0.0 <= strength <= 1.0:
        raise HTTPProblem(HTTPStatus.BAD_REQUEST, f"strength must be between 0 and 1, got {values[0]!r}")
    return strength
