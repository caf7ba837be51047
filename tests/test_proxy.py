"""Proxies: an explicit proxy, the environment's, and proxy=False (issue 3)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from loopback import ConnectProxy

import graphsend
from graphsend.testing import FakeGraph


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[ConnectProxy]:
    for name in ("https_proxy", "HTTPS_PROXY", "http_proxy", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    with ConnectProxy() as p:
        yield p


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
