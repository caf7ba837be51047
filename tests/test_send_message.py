"""send_message() end to end against FakeGraph and raw loopback servers (issue 2)."""

from __future__ import annotations

import builtins
import time

import pytest
from helpers import UUID4, CountingThread, in_threads
from loopback import Server

import graphsend
from graphsend import send_message
from graphsend.testing import FakeGraph


def send(graph: FakeGraph, message_id: str, **kwargs: object) -> graphsend.Receipt:
    return send_message(message_id, token=graph.token, base_url=graph.base_url, **kwargs)


def test_202_returns_a_receipt_and_moves_the_draft(graph: FakeGraph) -> None:
    draft = graph.create_draft(subject="hello")
    receipt = send(graph, draft)
    assert receipt.status == 202
    assert receipt.request_id and UUID4.fullmatch(receipt.request_id)
    assert receipt.date and receipt.date.endswith("GMT")
    assert UUID4.fullmatch(receipt.client_request_id)
    assert 0 < receipt.elapsed < 5
    assert [m.subject for m in graph.sent_items()] == ["hello"]
    with pytest.raises(AttributeError):
        receipt.status = 500  # type: ignore[misc]


def test_the_exact_request_on_the_wire(graph: FakeGraph) -> None:
    draft = graph.create_draft()
    receipt = send(graph, draft, client_request_id="my-correlation-id")
    (request,) = graph.requests
    assert request.method == "POST"
    assert request.path == f"/v1.0/me/messages/{_encoded(draft)}/send"
    assert request.headers["content-length"] == "0"
    assert "transfer-encoding" not in request.headers
    assert request.body == b""
    assert request.headers["authorization"] == f"Bearer {graph.token}"
    assert request.headers["client-request-id"] == "my-correlation-id"
    assert receipt.client_request_id == "my-correlation-id"
    assert request.headers["accept"] == "application/json"
    agent = request.headers["user-agent"]
    assert agent.startswith("graphsend/") and "libcurl/" in agent and "Python/" in agent


def test_a_fresh_client_request_id_per_send(graph: FakeGraph) -> None:
    ids = [send(graph, graph.create_draft()).client_request_id for _ in range(3)]
    assert len(set(ids)) == 3
    assert [r.headers["client-request-id"] for r in graph.requests] == ids


def _encoded(message_id: str) -> str:
    return message_id.replace("/", "%2F").replace("+", "%2B").replace("=", "%3D")


@pytest.mark.parametrize(
    ("message_id", "segment"),
    [
        ("AAMkAGI2_abc-def==", "AAMkAGI2_abc-def%3D%3D"),
        ("AAMk/ab+cd=", "AAMk%2Fab%2Bcd%3D"),
        ("a?b#c%d", "a%3Fb%23c%25d"),
        ("with space", "with%20space"),
        ("caf\u00e9", "caf%C3%A9"),
        ("already%2Fencoded", "already%252Fencoded"),
        ("..", "%2E%2E"),
        ("a.b~c", "a.b~c"),
    ],
)
def test_message_id_is_one_path_segment(graph: FakeGraph, message_id: str, segment: str) -> None:
    with pytest.raises(graphsend.GraphError):
        send(graph, message_id)
    assert [r.path for r in graph.requests] == [f"/v1.0/me/messages/{segment}/send"]


@pytest.mark.parametrize(
    ("user", "segment"),
    [
        ("adele@contoso.com", "adele@contoso.com"),
        ("48d31887-5fad-4d73-a9f5-3c356e68a038", "48d31887-5fad-4d73-a9f5-3c356e68a038"),
        ("odd/user?#+=", "odd%2Fuser%3F%23%2B%3D"),
        ("jos\u00e9 m@contoso.com", "jos%C3%A9%20m@contoso.com"),
    ],
)
def test_user_is_one_path_segment(graph: FakeGraph, user: str, segment: str) -> None:
    with pytest.raises(graphsend.GraphError):
        send(graph, "AAMkAGI2", user=user, api_version="beta")
    assert [r.path for r in graph.requests] == [f"/beta/users/{segment}/messages/AAMkAGI2/send"]


def test_send_from_a_named_mailbox(graph: FakeGraph) -> None:
    draft = graph.create_draft(user="megan@contoso.com", subject="from megan")
    assert send(graph, draft, user="megan@contoso.com").status == 202
    assert [m.subject for m in graph.sent_items("megan@contoso.com")] == ["from megan"]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"message_id": ""}, ValueError),
        ({"message_id": 42}, TypeError),
        ({"message_id": None}, TypeError),
        ({"message_id": "abc\r\nX-Injected: 1"}, ValueError),
        ({"message_id": "abc\x00"}, ValueError),
        ({"user": ""}, ValueError),
        ({"user": "a\nb"}, ValueError),
        ({"user": b"bytes"}, TypeError),
        ({"token": ""}, ValueError),
        ({"token": "tok\r\nen"}, ValueError),
        ({"token": None}, TypeError),
        ({"base_url": "http://graph.microsoft.com"}, ValueError),
        ({"base_url": "http://10.0.0.1:8080"}, ValueError),
        ({"base_url": "ftp://127.0.0.1"}, ValueError),
        ({"base_url": "https://user:pw@graph.microsoft.com"}, ValueError),
        ({"api_version": "v1"}, ValueError),
        ({"api_version": "v1.0/../x"}, ValueError),
        ({"api_version": 1.0}, TypeError),
        ({"timeout": 0}, ValueError),
        ({"timeout": "10"}, TypeError),
        ({"connect_timeout": -1}, ValueError),
        ({"client_request_id": "x\ny"}, ValueError),
    ],
)
def test_bad_input_raises_before_the_wire(graph: FakeGraph, kwargs: dict, error: type) -> None:
    args = {"message_id": graph.create_draft(), "token": graph.token, "base_url": graph.base_url}
    args.update(kwargs)
    with pytest.raises(error):
        send_message(**args)
    assert graph.requests == []
    assert graph.sent_items() == []


def test_http_is_allowed_for_loopback_names(graph: FakeGraph) -> None:
    base_url = graph.base_url.replace("127.0.0.1", "localhost")
    assert send_message(graph.create_draft(), token=graph.token, base_url=base_url).status == 202


def test_repeated_sends_reuse_one_connection(graph: FakeGraph) -> None:
    for _ in range(30):
        send(graph, graph.create_draft())
    assert len(graph.sent_items()) == 30
    assert graph.connections == 1


def test_not_found_maps_to_its_class(graph: FakeGraph) -> None:
    draft = graph.create_draft()
    send(graph, draft)
    with pytest.raises(graphsend.NotFoundError) as info:
        send(graph, draft)
    err = info.value
    assert err.status == 404 and err.code == "ErrorItemNotFound"
    assert err.may_have_sent is False
    assert err.request_id and err.request_id in str(err)
    assert "404" in str(err) and "ErrorItemNotFound" in str(err)


def test_threads_send_in_parallel_with_the_gil_released() -> None:
    with FakeGraph(latency=0.2) as graph:
        drafts = [graph.create_draft() for _ in range(8)]
        elapsed = in_threads(lambda draft: send(graph, draft), drafts)  # raises what a send raised
        assert len(graph.sent_items()) == 8
        assert elapsed < 0.8, f"8 sends of 200 ms took {elapsed:.2f}s: not parallel"


def test_a_python_thread_keeps_running_during_a_slow_send() -> None:
    with FakeGraph(latency=0.5) as graph:
        draft = graph.create_draft()
        send(graph, graph.create_draft())  # connect first: measure only the wait
        with CountingThread() as counter:
            time.sleep(0.05)
            before = counter.count
            send(graph, draft)
            during = counter.count - before
        # A thread starved by a held GIL would count only during the switch intervals.
        assert during > 100_000, during


def test_timeout_on_a_server_that_never_answers(silent_server: Server) -> None:
    start = time.monotonic()
    with pytest.raises(graphsend.TimeoutError) as info:
        send_message("AAMk", token="t", base_url=silent_server.base_url, timeout=0.5)
    elapsed = time.monotonic() - start
    assert 0.4 < elapsed < 2.0
    err = info.value
    assert isinstance(err, graphsend.TransportError)
    assert isinstance(err, builtins.TimeoutError)
    assert err.curl_code == 28
    assert err.may_have_sent is True  # the request was written: Graph may have acted on it
    assert err.attempts == 1  # ambiguous: not retried
    (request,) = silent_server.requests
    assert request.lines[0].startswith(b"POST /v1.0/me/messages/AAMk/send ")


def test_refused_connection_is_a_transport_error_with_nothing_sent(refused_url: str) -> None:
    client = graphsend.Client("t", base_url=refused_url, retry=graphsend.Retry(max_attempts=1))
    with pytest.raises(graphsend.TransportError) as info:
        client.send("AAMk")
    err = info.value
    assert not isinstance(err, graphsend.TimeoutError)
    assert err.curl_code == 7
    assert err.may_have_sent is False
    assert UUID4.fullmatch(err.client_request_id or "")


def test_tls_with_the_fake_graph_ca(graph_https: FakeGraph) -> None:
    draft = graph_https.create_draft()
    base_url = graph_https.base_url
    client = graphsend.Client(
        graph_https.token, base_url=base_url, retry=graphsend.Retry(max_attempts=1)
    )
    with pytest.raises(graphsend.TransportError) as info:
        client.send(draft)
    assert info.value.curl_code == 60
    assert info.value.may_have_sent is False
    assert graph_https.requests == []
    receipt = send_message(
        draft, token=graph_https.token, base_url=base_url, ca_bundle=graph_https.ca_bundle
    )
    assert receipt.status == 202
    assert len(graph_https.sent_items()) == 1
