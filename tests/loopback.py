"""Small real servers on loopback for the tests: no mock of libcurl or the network.

They are deliberately dumb threaded sockets, so that each test controls exactly what the wire
carries: the bytes of the request, when an answer comes, or that none does. FakeGraph
(graphsend.testing) is the server that behaves like Graph; these are for everything else.

- `Server`: HTTP/1.1 with a scripted `Reply` per request (answer, delay, stall, close, reset,
  raw bytes), over TLS when given a context; records each request as `Seen`.
- `ConnectProxy`: an HTTP CONNECT proxy that records what it was asked and the tunnels it opened.
- `free_port()`: a loopback port with nothing listening.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass

# Percent-encoded like graphsend's own send paths: what Server.url() puts in a URL by default.
SEND_PATH = "/v1.0/users/adele%40contoso.com/messages/AAMkAD%2Fx%2By%3D/send"


def free_port() -> int:
    """A loopback port that nothing listens on (free when asked: use it at once)."""
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return sock.getsockname()[1]


@dataclass
class Reply:
    """What the server does with one request."""

    status: int = 202
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    delay: float = 0.0
    action: str = "answer"  # answer | stall | close | reset | raw
    raw: bytes = b""  # for action "raw": written as is
    watch_body: float = 0.0  # wait this long for bytes after the head (there must be none)


@dataclass
class Seen:
    """One request as the server read it."""

    head: bytes
    connection: int
    extra: bytes = b""

    @property
    def lines(self) -> list[bytes]:
        return self.head.split(b"\r\n")[:-2]

    def header(self, name: str) -> list[str]:
        prefix = name.lower().encode() + b":"
        return [
            line.split(b":", 1)[1].strip().decode()
            for line in self.lines[1:]
            if line.lower().startswith(prefix)
        ]


class Server:
    """HTTP/1.1 over loopback, one thread per connection, keep-alive, scripted replies.

    `reply(seen)` decides what happens to each request (default: an empty 202). `greeting`
    instead writes those bytes on accept and closes. Counts `connections` accepted and
    `client_closed` (connections the client closed while the server waited for it).
    """

    def __init__(
        self,
        reply: Callable[[Seen], Reply] | None = None,
        *,
        tls: ssl.SSLContext | None = None,
        greeting: bytes | None = None,
    ) -> None:
        self.reply = reply or (lambda seen: Reply())
        self.tls = tls
        self.greeting = greeting  # written on accept, then the connection is closed
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.client_closed = 0
        self.requests: list[Seen] = []
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def url(self, path: str = SEND_PATH, host: str = "127.0.0.1") -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{host}:{self.port}{path}"

    @property
    def base_url(self) -> str:
        return self.url("")

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                index = self.connections
                self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn, index), daemon=True).start()

    def _serve(self, conn: socket.socket, index: int) -> None:
        with contextlib.suppress(OSError), conn:
            if self.greeting is not None:
                conn.sendall(self.greeting)
                return
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            buf = b""
            while not self.stopped.is_set():
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        with self.lock:
                            self.client_closed += 1
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                seen = Seen(head + b"\r\n\r\n", index)
                reply = self.reply(seen)
                if reply.watch_body:
                    conn.settimeout(reply.watch_body)
                    with contextlib.suppress(TimeoutError, socket.timeout):
                        buf += conn.recv(65536)
                    conn.settimeout(None)
                    seen.extra, buf = buf, b""
                with self.lock:
                    self.requests.append(seen)
                if reply.delay:
                    self.stopped.wait(reply.delay)
                if reply.action == "stall":
                    while conn.recv(65536):  # until the client gives up
                        pass
                    with self.lock:
                        self.client_closed += 1
                    return
                if reply.action == "close":
                    return
                if reply.action == "reset":
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                if reply.action == "raw":
                    conn.sendall(reply.raw)
                    continue
                lines = [f"HTTP/1.1 {reply.status} Whatever"]
                lines += [f"{name}: {value}" for name, value in reply.headers]
                if not any(name.lower() == "content-length" for name, _ in reply.headers):
                    lines.append(f"Content-Length: {len(reply.body)}")
                conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + reply.body)

    def close(self) -> None:
        self.stopped.set()
        self.sock.close()
        with self.lock:
            for conn in self.conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)


def accept_in_thread(
    sock: socket.socket,
    serve: Callable[[socket.socket], None],
    conns: list[socket.socket] | None = None,
    lock: threading.Lock | None = None,
) -> None:
    """Accept on ``sock`` until it is closed, in a thread; each connection is served by
    ``serve(conn)`` in a thread of its own (and recorded in ``conns``, under ``lock``)."""

    def accept() -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            if conns is not None and lock is not None:
                with lock:
                    conns.append(conn)
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()


class ConnectProxy:
    """An HTTP CONNECT proxy on loopback.

    Records every request head it reads (`heads`) and the tunnels it opened (`tunnels`, as
    "host:port"). Anything but CONNECT gets 405; with deny=True, CONNECT gets 403 too.
    """

    def __init__(self, deny: bool = False) -> None:
        self.deny = deny
        self.heads: list[bytes] = []
        self.tunnels: list[str] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.lock = threading.Lock()
        self.conns: list[socket.socket] = []
        accept_in_thread(self.sock, self._serve, self.conns, self.lock)

    def __enter__(self) -> ConnectProxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _serve(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn:
            head = b""
            while b"\r\n\r\n" not in head:
                data = conn.recv(4096)
                if not data:
                    return
                head += data
            self.heads.append(head)
            method, target = head.split()[:2]
            if method != b"CONNECT":
                conn.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                return
            if self.deny:
                conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                return
            host, port = target.decode().rsplit(":", 1)
            with socket.create_connection((host, int(port))) as upstream:
                self.tunnels.append(target.decode())
                conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                _relay(conn, upstream)

    def close(self) -> None:
        """Stop accepting and end the open tunnels."""
        self.sock.close()
        with self.lock:
            for conn in self.conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)


def _relay(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until either side closes."""
    other = {a: b, b: a}
    while True:
        readable, _, _ = select.select(list(other), [], [])
        for sock in readable:
            data = sock.recv(65536)
            if not data:
                return
            other[sock].sendall(data)
