"""Shared fixtures: FakeGraph over http and https, and raw loopback servers (tests/loopback.py)."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator

import pytest
from loopback import Reply, Server, free_port
from redis_server import RedisServer, have_redis

from graphsend.testing import FakeGraph


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """A real redis-server for the module's tests (skipped where none can be installed)."""
    if not have_redis():
        pytest.skip("redis-server is not installed")
    with RedisServer() as server:
        yield server.url


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


# ------------------------------------------------------------------ default features (issue 15)
# Tests marked `default_feature` cover something on by default (HTTP/2, say). A skip hides
# that it is untested, so CI (.ci/run sets GRAPHSEND_REQUIRE_DEFAULT_FEATURES=1) fails on one.


def pytest_configure(config: pytest.Config) -> None:
    # A job started in the background by a non-interactive shell (CI, nohup, `make mutants`
    # run with &) has SIGINT ignored, and an ignored signal stays ignored across exec: every
    # Ctrl-C test, in this process or in the Pythons it starts, would wait in vain. A handler
    # here is reset to the default at exec, so children get Python's usual KeyboardInterrupt.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    config.addinivalue_line(
        "markers",
        "default_feature: covers a feature on by default; its skip fails the run when "
        "GRAPHSEND_REQUIRE_DEFAULT_FEATURES=1",
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if (
        report.skipped
        and os.environ.get("GRAPHSEND_REQUIRE_DEFAULT_FEATURES") == "1"
        and item.get_closest_marker("default_feature") is not None
        and not hasattr(report, "wasxfail")
    ):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = (
            f"{item.nodeid} tests a default feature and was skipped ({reason}); "
            "GRAPHSEND_REQUIRE_DEFAULT_FEATURES=1 makes that a failure: install what it needs"
        )
