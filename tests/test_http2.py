"""HTTP/2, on by default (Client(http2=True)), end to end against FakeGraph(https=True, http2=True)
(issue 15 item 1): every path says which protocol the server saw, and concurrent sends share few
connections. These run in every CI run: .ci/run turns a skip of a default feature into a failure.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import time
from collections.abc import Iterator

import pytest

import graphsend
from graphsend import _native
from graphsend.testing import FakeGraph

pytestmark = pytest.mark.default_feature

SCALE = float(os.environ.get("GRAPHSEND_TIME_SCALE", "1"))
MAILBOXES = [f"user{i}@contoso.com" for i in range(5)]


@pytest.fixture
def graph() -> Iterator[FakeGraph]:
    pytest.importorskip("cryptography")
    pytest.importorskip("h2")
    if not _native.http2_supported:
        pytest.skip("this libcurl was built without HTTP/2")
    with FakeGraph(https=True, http2=True) as g:
        yield g


def client(graph: FakeGraph, **options: object) -> graphsend.Client:
    return graphsend.Client(
        graph.token, base_url=graph.base_url, ca_bundle=graph.ca_bundle, **options
    )


def async_client(graph: FakeGraph, **options: object) -> graphsend.AsyncClient:
    return graphsend.AsyncClient(
        graph.token, base_url=graph.base_url, ca_bundle=graph.ca_bundle, **options
    )


def spread_drafts(graph: FakeGraph, per_mailbox: int) -> list[tuple[str, str]]:
    """(user, draft) pairs over five mailboxes: 4 per mailbox may be in flight, 20 in all."""
    return [(user, graph.create_draft(user)) for _ in range(per_mailbox) for user in MAILBOXES]


def versions(graph: FakeGraph) -> set[str]:
    return {r.http_version for r in graph.requests if "/send" in r.path}


# ------------------------------------------------------------------ each way to send


def test_i15_01_client_send_speaks_http2_and_reuses_its_connection(graph: FakeGraph) -> None:
    drafts = graph.create_drafts(3)
    with client(graph) as c:
        receipts = [c.send(d) for d in drafts]
    assert [r.status for r in receipts] == [202] * 3
    assert versions(graph) == {"HTTP/2"}
    assert graph.connections == 1
    assert [m.id for m in graph.sent_items()] == drafts


def test_i15_01_send_message_speaks_http2(graph: FakeGraph) -> None:
    draft = graph.create_draft()
    receipt = graphsend.send_message(
        draft, token=graph.token, base_url=graph.base_url, ca_bundle=graph.ca_bundle
    )
    assert receipt.status == 202
    assert versions(graph) == {"HTTP/2"}


def test_i15_01_send_many_multiplexes_concurrent_sends_over_one_connection(
    graph: FakeGraph,
) -> None:
    graph.latency = 0.3
    items = spread_drafts(graph, per_mailbox=4)
    with client(graph) as c:
        start = time.monotonic()
        results = c.send_many(items)
        elapsed = time.monotonic() - start
    assert all(isinstance(r, graphsend.Receipt) for r in results), results
    assert versions(graph) == {"HTTP/2"}
    # 20 requests were in flight together, on one or two connections (HTTP/1.1 needs 20).
    assert graph.peak_in_flight() >= 12
    assert graph.connections <= 2
    # Streams of one connection are served concurrently: one round of latency, not twenty.
    assert elapsed < 3 * 0.3 * SCALE, elapsed


def test_i15_01_async_send_and_send_many_multiplex_over_one_connection(graph: FakeGraph) -> None:
    graph.latency = 0.3
    singles = spread_drafts(graph, per_mailbox=4)
    batch = spread_drafts(graph, per_mailbox=4)

    async def main() -> tuple[list[graphsend.Receipt], list[object], float]:
        async with async_client(graph) as c:
            start = time.monotonic()
            receipts = await asyncio.gather(*(c.send(m, user=u) for u, m in singles))
            elapsed = time.monotonic() - start
            results = await c.send_many(batch)
        return receipts, results, elapsed

    receipts, results, elapsed = asyncio.run(main())
    assert all(r.status == 202 for r in receipts)
    assert all(isinstance(r, graphsend.Receipt) for r in results), results
    assert versions(graph) == {"HTTP/2"}
    assert len(graph.sent_items()) == 40
    assert graph.peak_in_flight() >= 12
    assert graph.connections <= 2
    assert elapsed < 3 * 0.3 * SCALE, elapsed


def test_i15_01_http2_false_speaks_http1_on_every_path(graph: FakeGraph) -> None:
    graph.latency = 0.1
    with client(graph, http2=False) as c:
        c.send(graph.create_draft())
        c.send_many(spread_drafts(graph, per_mailbox=1))

    async def main() -> None:
        async with async_client(graph, http2=False) as c:
            await c.send(graph.create_draft())

    asyncio.run(main())
    assert versions(graph) == {"HTTP/1.1"}
    assert graph.connections >= 5  # no multiplexing: one connection per concurrent send


# ------------------------------------------------------------------ FakeGraph's HTTP/2 mode


def test_http2_mode_needs_https() -> None:
    with pytest.raises(ValueError, match="https=True"):
        FakeGraph(http2=True)


def test_http2_mode_offers_http1_to_clients_without_h2(graph: FakeGraph) -> None:
    import http.client

    context = graph.client_ssl_context()
    context.set_alpn_protocols(["http/1.1"])
    conn = http.client.HTTPSConnection(graph.host, graph.port, context=context)
    conn.request("GET", "/v1.0/me/mailFolders/drafts/messages", headers={"Authorization": "x"})
    assert conn.getresponse().status == 401
    conn.close()
    assert graph.requests[-1].http_version == "HTTP/1.1"


def test_http2_mode_negotiates_h2_by_alpn(graph: FakeGraph) -> None:
    import socket

    context = graph.client_ssl_context()
    context.set_alpn_protocols(["h2", "http/1.1"])
    with (
        socket.create_connection((graph.host, graph.port)) as raw,
        context.wrap_socket(raw, server_hostname=graph.host) as tls,
    ):
        assert tls.selected_alpn_protocol() == "h2"
    assert isinstance(context, ssl.SSLContext)


def test_http2_faults_and_rules_match_http1(graph: FakeGraph) -> None:
    retry = graphsend.Retry(backoff_base=0.01, backoff_max=0.01)
    with client(graph, retry=retry, timeout=1.0 * SCALE) as c:
        # fail_next: a 503 is retried, on the same connection.
        draft = graph.create_draft()
        graph.fail_next(503, retry_after=0)
        assert c.send(draft).status == 202
        assert [r.status for r in graph.requests[-2:]] == [503, 202]

        # reset_next: RST_STREAM after the request was read: the client may have sent it.
        graph.reset_next()
        with pytest.raises(graphsend.TransportError) as reset:
            c.send(graph.create_draft())
        assert reset.value.may_have_sent is True
        assert graph.requests[-1].outcome == "reset"

        # stall_next: never answered; the client times out.
        graph.stall_next()
        with pytest.raises(graphsend.TimeoutError):
            c.send(graph.create_draft())
        stalled = graph.requests[-1]

        # Authorization is checked as in HTTP/1.1.
        graph.token = "rotated"
        with pytest.raises(graphsend.AuthenticationError):
            c.send(graph.create_draft())
        assert graph.requests[-1].status == 401
    # Once the client has let go of the stream (reset it or closed the connection), the stalled
    # request is recorded as given up.
    deadline = time.monotonic() + 5 * SCALE
    while stalled.outcome == "stalled" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert stalled.outcome == "disconnected"
    assert versions(graph) == {"HTTP/2"}


def test_http2_concurrency_limit_throttles_streams(graph: FakeGraph) -> None:
    graph.latency = 0.2
    graph.mailbox_concurrency_limit = 2
    graph.throttle_retry_after = 0
    drafts = graph.create_drafts(4)
    with client(graph) as c:
        c.send_many(drafts, max_per_mailbox=4)
    statuses = [r.status for r in graph.requests]
    assert statuses.count(429) >= 1  # 4 streams at once against a limit of 2
    assert statuses.count(202) >= 2
    assert graph.peak_in_flight(graph.default_user) >= 3
    assert versions(graph) == {"HTTP/2"}


def test_http2_max_requests_per_connection_sends_goaway(graph: FakeGraph) -> None:
    graph.max_requests_per_connection = 2
    drafts = graph.create_drafts(4)
    with client(graph) as c:
        for d in drafts:
            c.send(d)
    assert [r.connection for r in graph.requests] == [1, 1, 2, 2]
    assert versions(graph) == {"HTTP/2"}


def test_http2_large_error_body_respects_flow_control(graph: FakeGraph) -> None:
    # 1 MB is far beyond HTTP/2's initial 64 KiB windows: the server must wait for the client's
    # WINDOW_UPDATEs, and the client keeps only the first 64 KiB of an error body.
    graph.fail_next(500, body="x" * (1 << 20))
    with client(graph) as c, pytest.raises(graphsend.ServerError) as error:
        c.send(graph.create_draft())
    assert error.value.status == 500
    assert graph.requests[-1].outcome == "answered"
    assert versions(graph) == {"HTTP/2"}


def test_http2_stream_only_reset_leaves_the_other_streams_alone(graph: FakeGraph) -> None:
    graph.latency = 0.2
    drafts = graph.create_drafts(4)
    graph.reset_next(stream_only=True)
    with client(graph) as c:
        results = c.send_many(drafts)
    failed = [r for r in results if not isinstance(r, graphsend.Receipt)]
    assert len(failed) == 1 and failed[0].may_have_sent is True, results
    assert sorted(r.outcome for r in graph.requests) == ["answered"] * 3 + ["reset"]
    assert graph.connections <= 2  # multiplexed: not one connection per request


@pytest.mark.xfail(
    reason="libcurl 7.88: after an HTTP/2 RST_STREAM, the next transfer of that easy handle "
    "often fails with CURLE_HTTP2 (16) before reaching the server, reported as may_have_sent",
    strict=False,
)
def test_http2_send_after_a_stream_reset_succeeds(graph: FakeGraph) -> None:
    with client(graph) as c:
        for _ in range(5):
            graph.reset_next(stream_only=True)
            with pytest.raises(graphsend.TransportError):
                c.send(graph.create_draft())
            assert c.send(graph.create_draft()).status == 202


@pytest.mark.fake_graph(http2=True)
def test_pytest_plugin_fixture_serves_http2_with_the_marker(fake_graph_https: FakeGraph) -> None:
    pytest.importorskip("h2")
    with client(fake_graph_https) as c:
        c.send(fake_graph_https.create_draft())
    assert fake_graph_https.http2
    assert versions(fake_graph_https) == {"HTTP/2"}
