"""Proxies: an explicit proxy, the environment's, and proxy=False (issue 3)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

import graphsend
from graphsend.testing import FakeGraph


class ConnectProxy:
    """A small HTTP CONNECT proxy on loopback that records the tunnels it opens."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.tunnels: list[str] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._tunnel, args=(client,), daemon=True).start()

    def _tunnel(self, client: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(4096)
            if not chunk:
                client.close()
                return
            head += chunk
        method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
        if method != "CONNECT":
            client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            client.close()
            return
        self.tunnels.append(target)
        host, port = target.rsplit(":", 1)
        upstream = socket.create_connection((host, int(port)))
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        threading.Thread(target=_pipe, args=(upstream, client), daemon=True).start()
        _pipe(client, upstream)

    def close(self) -> None:
        self.server.close()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for s in (source, sink):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[ConnectProxy]:
    for name in ("https_proxy", "HTTPS_PROXY", "http_proxy", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    p = ConnectProxy()
    yield p
    p.close()


def _client(graph: FakeGraph, **kwargs: object) -> graphsend.Client:
    return graphsend.Client(
        graph.token, base_url=graph.base_url, ca_bundle=graph.ca_bundle, **kwargs
    )  # type: ignore[arg-type]


def test_explicit_proxy(graph_https: FakeGraph, proxy: ConnectProxy) -> None:
    receipt = _client(graph_https, proxy=proxy.url).send(graph_https.create_draft())
    assert receipt.status == 202
    assert proxy.tunnels == [f"127.0.0.1:{graph_https.port}"]


def test_proxy_from_the_environment(
    graph_https: FakeGraph, proxy: ConnectProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("https_proxy", proxy.url)
    assert _client(graph_https).send(graph_https.create_draft()).status == 202
    assert proxy.tunnels == [f"127.0.0.1:{graph_https.port}"]


def test_proxy_false_ignores_the_environment(
    graph_https: FakeGraph, proxy: ConnectProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("https_proxy", proxy.url)
    assert _client(graph_https, proxy=False).send(graph_https.create_draft()).status == 202
    assert proxy.tunnels == []
