"""Shared fixtures: FakeGraph over http and https, and raw loopback servers (tests/loopback.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from loopback import Reply, Server, free_port

from graphsend.testing import FakeGraph


@pytest.fixture
def graph() -> Iterator[FakeGraph]:
    with FakeGraph() as g:
        yield g


@pytest.fixture
def graph_https() -> Iterator[FakeGraph]:
    pytest.importorskip("cryptography")
    with FakeGraph(https=True) as g:
        yield g


@pytest.fixture
def serve() -> Iterator[Callable[..., Server]]:
    """Start loopback.Server(*args, **kwargs) as often as needed; all are closed after the test."""
    servers: list[Server] = []

    def start(*args: object, **kwargs: object) -> Server:
        server = Server(*args, **kwargs)  # type: ignore[arg-type]
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def silent_server(serve: Callable[..., Server]) -> Server:
    """Reads each request (see .requests) and never answers."""
    return serve(lambda seen: Reply(action="stall"))


@pytest.fixture
def refused_url() -> str:
    """A loopback port with nothing listening."""
    return f"http://127.0.0.1:{free_port()}"
