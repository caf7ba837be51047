"""HTTP/1.1 on the wire: read one request from a stream, write one reply, or reset instead."""

from __future__ import annotations

import asyncio
import contextlib
import http
import socket
import struct
import time
from dataclasses import dataclass
from typing import Final

MAX_HEAD: Final = 64 * 1024
# What the transport reads at most. Graph's own caps (4 MB per request, chunk) are rules that
# answer 413 in Graph's shape after the body is read (_rules, _upload_rules); this only stops a
# runaway client, with the same 413 but closing the connection.
MAX_BODY: Final = 16 * 1024 * 1024
# Large bodies (fail_next(body=...)) go out in slices, each drained, to bound buffering.
_WRITE_CHUNK: Final = 256 * 1024


@dataclass
class Request:
    method: str
    target: str
    version: str
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes
    content_length: int | None  # None when the request had no Content-Length header
    keep_alive: bool
    received_at: float  # time.monotonic() once the head was read


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""
    # The caller supplied its own framing headers: send them as they are and close afterwards.
    raw_framing: bool = False


class BadRequest(Exception):
    """The request could not be parsed: answer with this status and close the connection."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


async def read_request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, idle_timeout: float | None
) -> Request | None:
    """Read one request; None when the client closed the connection or stayed idle too long.

    ``writer`` is only for ``100 Continue``. Raises BadRequest for what cannot be parsed.
    """
    head = b""
    while not head:
        try:
            read = reader.readuntil(b"\r\n\r\n")
            raw = await (asyncio.wait_for(read, idle_timeout) if idle_timeout is not None else read)
        except (asyncio.IncompleteReadError, asyncio.TimeoutError):
            return None
        except asyncio.LimitOverrunError as exc:
            raise BadRequest(
                431, "RequestHeaderFieldsTooLarge", "The request header is too large."
            ) from exc
        head = raw.lstrip(b"\r\n")  # tolerate stray CRLFs between requests (RFC 9112 2.2)
    received_at = time.monotonic()

    lines = head[:-4].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[0].isalpha() or not parts[1]:
        raise BadRequest(400, "BadRequest", "Malformed request line.")
    method, target, version = parts
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise BadRequest(505, "BadRequest", f"HTTP version {version!r} is not supported.")
    headers = _parse_headers(lines[1:])

    tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
    if version == "HTTP/1.1":
        keep_alive = "close" not in tokens
    else:
        keep_alive = "keep-alive" in tokens

    content_length: int | None = None
    if "transfer-encoding" in headers:
        codings = [c.strip().lower() for c in headers["transfer-encoding"].split(",")]
        if codings[-1] != "chunked":
            raise BadRequest(501, "NotImplemented", "Only chunked transfer coding is supported.")
        body = await _read_chunked(reader)
    elif "content-length" in headers:
        values = {v.strip() for v in headers["content-length"].split(",")}
        if len(values) != 1 or not next(iter(values)).isdigit():
            raise BadRequest(400, "BadRequest", "Invalid Content-Length.")
        content_length = int(values.pop())
        _refuse_large_body(content_length)
        if content_length and headers.get("expect", "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        try:
            body = await reader.readexactly(content_length)
        except asyncio.IncompleteReadError:
            return None
    else:
        body = b""
    if body is None:
        return None
    return Request(method, target, version, headers, body, content_length, keep_alive, received_at)


def _parse_headers(lines: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip() or " " in name:
            raise BadRequest(400, "BadRequest", "Malformed header line.")
        name = name.lower()
        value = value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


async def _read_chunked(reader: asyncio.StreamReader) -> bytes | None:
    """The body of a chunked request; None when the client closed the connection mid-body."""
    chunks: list[bytes] = []
    total = 0
    try:
        while True:
            size_line = await reader.readuntil(b"\r\n")
            try:
                size = int(size_line.split(b";", 1)[0].strip(), 16)
            except ValueError as exc:
                raise BadRequest(400, "BadRequest", "Malformed chunk size.") from exc
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":
                    pass  # trailers
                return b"".join(chunks)
            total += size
            _refuse_large_body(total)
            chunks.append((await reader.readexactly(size + 2))[:-2])
    except asyncio.IncompleteReadError:
        return None


def _refuse_large_body(size: int) -> None:
    if size > MAX_BODY:
        raise BadRequest(413, "RequestEntityTooLarge", "The request body is too large.")


async def write_reply(
    writer: asyncio.StreamWriter, reply: Reply, *, close: bool, head_only: bool
) -> None:
    """Write ``reply``, adding Content-Length (unless its framing is raw) and, when ``close``,
    ``Connection: close``. ``head_only`` leaves the body out (an answer to HEAD)."""
    if writer.is_closing():
        raise ConnectionResetError("the client closed the connection")
    lines = [f"HTTP/1.1 {reply.status} {_reason(reply.status)}"]
    lines += [f"{name}: {value}" for name, value in reply.headers]
    if not reply.raw_framing:
        lines.append(f"Content-Length: {len(reply.body)}")
    if close and not any(n.lower() == "connection" for n, _ in reply.headers):
        lines.append("Connection: close")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    if not head_only:
        view = memoryview(reply.body)
        for start in range(0, len(view), _WRITE_CHUNK):
            writer.write(view[start : start + _WRITE_CHUNK])
            await writer.drain()
    await writer.drain()


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def reset(writer: asyncio.StreamWriter) -> None:
    """Close abortively: SO_LINGER 0 makes the kernel send RST instead of FIN, so the client
    sees ECONNRESET rather than a clean close."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
