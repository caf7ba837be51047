"""Issue 9 item 1: turning a response into an outcome never raises, on every path.

A 500 whose body nests 30,000 arrays (json.loads raises RecursionError) and a 429 whose
Retry-After is an HTTP-date with a huge zone field (the date parser raises OverflowError) are
answered by a real loopback server; every path must report a SendError whose may_have_sent
follows from the status.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import graphsend
from graphsend._rules.errors import status_may_have_sent
from graphsend._rules.outcome import outcome
from graphsend.testing import FakeGraph

DEEP_BODY = '{"error":' + "[" * 30_000
HUGE_ZONE_DATE = "Wed, 21 Oct 2015 07:28:00 +99999999999999999999"
NO_RETRY = graphsend.Retry(max_attempts=1)


def hostile_500(graph: FakeGraph) -> None:
    graph.fail_next(500, body=DEEP_BODY)


def hostile_429(graph: FakeGraph) -> None:
    graph.fail_next(429, retry_after=HUGE_ZONE_DATE)


def client_for(graph: FakeGraph, **kwargs: object) -> graphsend.Client:
    return graphsend.Client(graph.token, base_url=graph.base_url, **kwargs)  # type: ignore[arg-type]


def test_i9_01_client_send_deeply_nested_500_body(graph: FakeGraph) -> None:
    hostile_500(graph)
    with pytest.raises(graphsend.ServerError) as info:
        client_for(graph).send(graph.create_draft())
    assert info.value.status == 500
    assert info.value.may_have_sent is True
    assert "the error body could not be read: RecursionError" in str(info.value)
    assert len(graph.requests) == 1  # a 500 may have sent: never retried by default


def test_i9_01_client_send_429_with_a_huge_zone_retry_after(graph: FakeGraph) -> None:
    hostile_429(graph)
    with pytest.raises(graphsend.ThrottledError) as info:
        client_for(graph, retry=NO_RETRY).send(graph.create_draft())
    assert info.value.may_have_sent is False
    assert info.value.retry_after is None
    assert "Retry-After header could not be read" in str(info.value)


def test_i9_01_unreadable_retry_after_still_retries_with_backoff(graph: FakeGraph) -> None:
    hostile_429(graph)
    retry = graphsend.Retry(backoff_base=0.01)
    assert client_for(graph, retry=retry).send(graph.create_draft()).status == 202
    assert len(graph.requests) == 2


def test_i9_01_send_message(graph: FakeGraph) -> None:
    hostile_500(graph)
    with pytest.raises(graphsend.ServerError) as info:
        graphsend.send_message(graph.create_draft(), token=graph.token, base_url=graph.base_url)
    assert info.value.may_have_sent is True


def test_i9_01_send_many_reports_the_item_and_sends_the_rest(graph: FakeGraph) -> None:
    drafts = [graph.create_draft() for _ in range(3)]
    hostile_500(graph)
    results = client_for(graph).send_many(drafts, max_concurrency=1)
    errors = [r for r in results if isinstance(r, graphsend.SendError)]
    assert len(errors) == 1
    assert isinstance(errors[0], graphsend.ServerError)
    assert errors[0].may_have_sent is True
    assert sum(isinstance(r, graphsend.Receipt) for r in results) == 2
    assert len(graph.sent_items()) == 2  # FakeGraph's 500 fault leaves the draft unsent
    assert len(graph.requests) == 3


def test_i9_01_send_many_429_with_a_huge_zone_retry_after(graph: FakeGraph) -> None:
    drafts = [graph.create_draft() for _ in range(3)]
    hostile_429(graph)
    results = client_for(graph, retry=graphsend.Retry(backoff_base=0.01)).send_many(drafts)
    assert all(isinstance(r, graphsend.Receipt) for r in results)


def test_i9_01_async_client_survives_hostile_answers(graph: FakeGraph) -> None:
    async def run() -> None:
        async with graphsend.AsyncClient(graph.token, base_url=graph.base_url) as client:
            hostile_500(graph)
            with pytest.raises(graphsend.ServerError) as info:
                await client.send(graph.create_draft())
            assert info.value.may_have_sent is True
            hostile_429(graph)
            async with graphsend.AsyncClient(
                graph.token, base_url=graph.base_url, retry=NO_RETRY
            ) as other:
                with pytest.raises(graphsend.ThrottledError):
                    await other.send(graph.create_draft())
            # The engine thread is alive: the same client sends again.
            assert (await client.send(graph.create_draft())).status == 202
            drafts = [graph.create_draft() for _ in range(3)]
            hostile_500(graph)
            results = await client.send_many(drafts)
            errors = [r for r in results if isinstance(r, graphsend.SendError)]
            assert len(errors) == 1 and errors[0].may_have_sent is True
            assert (await client.send(graph.create_draft())).status == 202

    asyncio.run(run())


def test_i9_01_cli_prints_one_line_without_a_traceback(graph: FakeGraph) -> None:
    hostile_500(graph)
    env = dict(os.environ, GRAPH_TOKEN=graph.token)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "graphsend",
            "send",
            graph.create_draft(),
            "--base-url",
            graph.base_url,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert proc.returncode == 3  # a 500 may have sent it (issue 14's exit status)
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "ServerError" in proc.stderr and "RecursionError" in proc.stderr
    assert graph.token not in proc.stderr + proc.stdout


# The parser, fuzzed: random statuses, headers and bodies never make outcome() raise.

_date_piece = st.sampled_from(
    [
        "Wed,",
        "21",
        "Oct",
        "2015",
        "07:28:00",
        "GMT",
        "+0000",
        "-9999",
        "+99999999999999999999",
        "99999999999999999999",
        "Feb",
        "30",
        "24:61:61",
        "UTC",
        "é",
        "\u00a0",
        "",
        "-",
        "1e400",
    ]
)
_retry_after = st.one_of(
    st.lists(_date_piece, max_size=7).map(" ".join),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=40),
)
_json = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10)),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.sampled_from(
                ["error", "code", "message", "innerError", "innererror", "request-id", "date", "x"]
            ),
            children,
            max_size=4,
        ),
    ),
    max_leaves=30,
)


def _body(draw_json: object) -> bytes:
    import json

    return json.dumps(draw_json).encode()


_bodies = st.one_of(
    st.binary(max_size=200),
    _json.map(_body),
    _json.map(lambda doc: _body({"error": doc})),
    st.integers(min_value=1, max_value=40_000).map(lambda n: b'{"error":' + b"[" * n),
    st.integers(min_value=1, max_value=40_000).map(lambda n: b'{"error":' + b'{"innererror":' * n),
    st.just(b'\xff\xfe{"error": \xc3\x28}'),
    st.just(b"{" * 70_000),
)
_headers = st.dictionaries(
    st.sampled_from(
        [
            "retry-after",
            "request-id",
            "client-request-id",
            "date",
            "content-type",
            "x-ms-ags-diagnostic",
        ]
    ),
    st.text(max_size=30),
    max_size=6,
)


@settings(max_examples=300, deadline=None, database=None)
@given(
    status=st.integers(min_value=0, max_value=999),
    headers=_headers,
    retry_after=st.one_of(st.none(), _retry_after),
    body=_bodies,
    curl_code=st.integers(min_value=0, max_value=100),
    error=st.text(max_size=30),
    request_sent=st.booleans(),
)
def test_i9_01_outcome_never_raises_fuzz(
    status: int,
    headers: dict[str, str],
    retry_after: str | None,
    body: bytes,
    curl_code: int,
    error: str,
    request_sent: bool,
) -> None:
    if retry_after is not None:
        headers = {**headers, "retry-after": retry_after}
    got = outcome((status, headers, body, 0.01, curl_code, error, request_sent), "crid")
    if status == 202:
        assert isinstance(got, graphsend.Receipt)
        return
    assert isinstance(got, graphsend.SendError)
    str(got)  # its message can be made
    if status == 0:
        assert isinstance(got, graphsend.TransportError)
        assert got.may_have_sent is request_sent
    else:
        assert isinstance(got, graphsend.GraphError)
        assert got.status == status
        assert got.may_have_sent is status_may_have_sent(status)
        assert got.retry_after is None or got.retry_after >= 0


# The same over the wire: random status lines, header lines and bodies written by a loopback
# server, read by libcurl, settled by Client.send. Only SendErrors (or a Receipt) come out.

_token_chars = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=":"),
    min_size=1,
    max_size=20,
)
_value_chars = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=60,
)
_wire_headers = st.lists(
    st.tuples(
        st.one_of(
            st.sampled_from(
                [
                    "Retry-After",
                    "request-id",
                    "client-request-id",
                    "Date",
                    "Content-Type",
                    "x-ms-ags-diagnostic",
                ]
            ),
            _token_chars,
        ),
        st.one_of(_value_chars, _retry_after.filter(lambda v: "\r" not in v and "\n" not in v)),
    ),
    max_size=6,
)


@pytest.fixture(scope="module")
def wire() -> object:
    from loopback import Reply, Server

    state: dict[str, bytes] = {"raw": b""}
    server = Server(lambda seen: Reply(action="raw", raw=state["raw"]))
    client = graphsend.Client(
        "t0ken", base_url=server.base_url, retry=NO_RETRY, timeout=2, http2=False
    )
    yield state, server, client
    client.close()
    server.close()


@settings(max_examples=120, deadline=None, database=None)
@given(
    status=st.one_of(st.integers(min_value=200, max_value=999), st.just(202)),  # 1xx: interim
    reason=st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20),
    headers=_wire_headers,
    body=_bodies.filter(lambda b: len(b) < 50_000),
)
def test_i9_01_client_send_fuzzed_wire_answers(
    wire: tuple[dict[str, bytes], object, graphsend.Client],
    status: int,
    reason: str,
    headers: list[tuple[str, str]],
    body: bytes,
) -> None:
    state, _, client = wire
    head = f"HTTP/1.1 {status} {reason}\r\n".encode()
    for name, value in headers:
        if name.lower() not in ("content-length", "transfer-encoding", "connection"):
            head += name.encode() + b": " + value.encode("latin-1", "replace") + b"\r\n"
    if status in (204, 304):
        body = b""  # no body allowed: libcurl would wait for the next answer
    state["raw"] = head + f"Content-Length: {len(body)}\r\n\r\n".encode() + body
    try:
        receipt = client.send("AAMk")
    except graphsend.SendError as err:
        str(err)
        if isinstance(err, graphsend.GraphError):
            assert err.may_have_sent is status_may_have_sent(err.status)
    else:
        assert receipt.status == 202
