"""Proxies: an explicit proxy, the environment's, proxy=False (issue 3); never a proxy for a
loopback base (issue 9 item 5); malformed proxy URLs refused without echoing a password (item 6).

A proxy cannot be tested against a loopback base (graphsend never proxies those), so the
explicit and environment proxy tests send to ``https://graph.test:PORT``: a TLS server on
loopback with a certificate for that name, reached through a CONNECT proxy that maps every
target to 127.0.0.1 (the client never resolves the name: the proxy does).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from loopback import ConnectProxy, Reply, Seen, Server, _relay, accept_in_thread

import graphsend
from graphsend.testing import FakeGraph

PROXY_VARIABLES = ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY", "all_proxy")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*PROXY_VARIABLES, "ALL_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)


class MappingProxy:
    """A CONNECT proxy that tunnels every target to 127.0.0.1 on the target's port."""

    def __init__(self) -> None:
        self.tunnels: list[str] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        accept_in_thread(self.sock, self._serve)

    def _serve(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn:
            head = b""
            while b"\r\n\r\n" not in head:
                data = conn.recv(4096)
                if not data:
                    return
                head += data
            method, target = head.split()[:2]
            if method != b"CONNECT":
                conn.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                return
            port = int(target.decode().rsplit(":", 1)[1])
            with socket.create_connection(("127.0.0.1", port)) as upstream:
                self.tunnels.append(target.decode())
                conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                _relay(conn, upstream)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def proxy() -> Iterator[MappingProxy]:
    p = MappingProxy()
    yield p
    p.close()


@pytest.fixture
def named_server(tmp_path: Path, serve: Callable[..., Server]) -> tuple[Server, str]:
    """(a TLS server on loopback answering 202 with a certificate for graph.test, its CA)."""
    pytest.importorskip("cryptography")
    from graphsend.testing._certificates import write_certificates

    ca, cert, key = write_certificates(str(tmp_path), "graph.test")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return serve(lambda seen: Reply(202, (("request-id", "r"),)), tls=context), ca


def _named_client(named: tuple[Server, str], **kwargs: object) -> graphsend.Client:
    server, ca = named
    return graphsend.Client(
        "t0ken", base_url=f"https://graph.test:{server.port}", ca_bundle=ca, **kwargs
    )  # type: ignore[arg-type]


def test_explicit_proxy(named_server: tuple[Server, str], proxy: MappingProxy) -> None:
    assert _named_client(named_server, proxy=proxy.url).send("AAMk").status == 202
    assert proxy.tunnels == [f"graph.test:{named_server[0].port}"]


def test_proxy_from_the_environment(
    named_server: tuple[Server, str], proxy: MappingProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("https_proxy", proxy.url)
    assert _named_client(named_server).send("AAMk").status == 202
    assert proxy.tunnels == [f"graph.test:{named_server[0].port}"]


def test_proxy_false_ignores_the_environment(
    named_server: tuple[Server, str], proxy: MappingProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("https_proxy", proxy.url)
    monkeypatch.setenv("no_proxy", "")
    # Without the proxy the client resolves graph.test itself, which fails: nothing is sent.
    with pytest.raises(graphsend.TransportError):
        _named_client(named_server, proxy=False, retry=graphsend.Retry(max_attempts=1)).send("A")
    assert proxy.tunnels == []


# Issue 9 item 5: a loopback base never goes through a proxy, so the token never reaches one.


@pytest.mark.parametrize("variable", ["http_proxy", "HTTP_PROXY", "all_proxy"])
def test_i9_05_http_loopback_base_ignores_env_proxy(
    graph: FakeGraph,
    serve: Callable[..., Server],
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
) -> None:
    recorder = serve(lambda seen: Reply(200))
    monkeypatch.setenv(variable, recorder.base_url)
    client = graphsend.Client(graph.token, base_url=graph.base_url)
    assert client.send(graph.create_draft()).status == 202
    assert recorder.requests == []
    assert len(graph.sent_items()) == 1


def test_i9_05_https_loopback_base_ignores_env_proxy(
    graph_https: FakeGraph, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ConnectProxy() as recorder:
        monkeypatch.setenv("https_proxy", recorder.url)
        monkeypatch.setenv("HTTPS_PROXY", recorder.url)
        client = graphsend.Client(
            graph_https.token, base_url=graph_https.base_url, ca_bundle=graph_https.ca_bundle
        )
        assert client.send(graph_https.create_draft()).status == 202
        assert recorder.heads == []


def test_i9_05_loopback_base_ignores_explicit_proxy(
    graph: FakeGraph, serve: Callable[..., Server]
) -> None:
    recorder = serve(lambda seen: Reply(200))
    client = graphsend.Client(graph.token, base_url=graph.base_url, proxy=recorder.base_url)
    assert client.send(graph.create_draft()).status == 202
    assert recorder.requests == []


def test_i9_05_send_message_http_loopback_ignores_env_proxy(
    graph: FakeGraph, serve: Callable[..., Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[Seen] = []
    recorder = serve(lambda s: seen.append(s) or Reply(200))
    monkeypatch.setenv("http_proxy", recorder.base_url)
    receipt = graphsend.send_message(
        graph.create_draft(), token=graph.token, base_url=graph.base_url, timeout=61.5
    )
    assert receipt.status == 202
    assert seen == []


# Issue 9 item 6: a malformed proxy URL is refused at construction, the password never quoted.


@pytest.mark.parametrize(
    "url",
    [
        "http://alice:S3cretPw@@proxy:3128",
        "foo://alice:S3cretPw@proxy:3128",
        "http://alice:S3cretPw@proxy:99999",
        "http://alice:S3cretPw@proxy:0",
        "http://alice:S3cretPw@pro xy:3128",
        "alice:S3cretPw@proxy:3128",
        "http://alice:S3cretPw@:3128",
        "http://alice:S3cretPw@proxy:31a8",
    ],
)
def test_i9_06_malformed_proxy_is_a_value_error_without_the_password(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(ValueError) as info:
        graphsend.Client("t0ken", proxy=url)
    assert "S3cretPw" not in str(info.value)
    assert "S3cretPw" not in caplog.text


@pytest.mark.parametrize(
    "url",
    [
        "http://proxy:3128",
        "https://alice:pw@proxy.example:443",
        "socks4://proxy:1080",
        "socks4a://proxy:1080",
        "socks5://proxy:1080",
        "SOCKS5H://alice:p%40ss@proxy:1080",
        "http://[::1]:3128",
    ],
)
def test_i9_06_proxy_schemes_libcurl_supports_are_accepted(url: str) -> None:
    graphsend.Client("t0ken", proxy=url).close()
