"""FakeGraph itself, over raw sockets and http.client (not through graphsend's client)."""

from __future__ import annotations

import base64
import http.client
import importlib.util
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import quote

import pytest
from helpers import in_threads

import graphsend.testing
from graphsend.testing import FakeGraph, Message

pytest_plugins = ["pytester"]

ALICE = "alice@contoso.com"


# Helpers ---------------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def error(self) -> dict:
        assert self.headers["content-type"] == "application/json"
        return json.loads(self.body)["error"]


def send_path(message_id: str, user: str | None = None, version: str = "v1.0") -> str:
    who = "me" if user is None else f"users/{quote(user, safe='@')}"
    return f"/{version}/{who}/messages/{quote(message_id, safe='')}/send"


def request(
    graph: FakeGraph,
    path: str,
    *,
    method: str = "POST",
    headers: dict[str, str] | None = None,
    conn: http.client.HTTPConnection | None = None,
    token: str | None = None,
) -> Reply:
    """One request with http.client (which sends Content-Length: 0 for an empty POST)."""
    own = conn is None
    c = conn or http.client.HTTPConnection(graph.host, graph.port, timeout=10)
    all_headers = {"Authorization": f"Bearer {token or graph.token}"}
    all_headers.update(headers or {})
    c.request(method, path, body=b"" if method == "POST" else None, headers=all_headers)
    response = c.getresponse()
    body = response.read()
    if own:
        c.close()
    return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, body)


def send(graph: FakeGraph, message_id: str, user: str | None = None, **kwargs) -> Reply:
    return request(graph, send_path(message_id, user), **kwargs)


def raw_request(path: str, token: str, extra: str = "", length: str | None = "0") -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: graph.test", f"Authorization: Bearer {token}"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode("latin-1")


def read_response(sock: socket.socket, method: str = "POST") -> Reply:
    response = http.client.HTTPResponse(sock, method=method)
    response.begin()
    body = response.read()
    return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, body)


def connect(graph: FakeGraph, timeout: float = 10) -> socket.socket:
    return socket.create_connection((graph.host, graph.port), timeout=timeout)


def concurrent(graph: FakeGraph, paths: list[str]) -> list[Reply]:
    """Send every path at once, each on its own connection, from its own thread."""
    conns = [http.client.HTTPConnection(graph.host, graph.port, timeout=20) for _ in paths]
    for c in conns:
        c.connect()
    barrier = threading.Barrier(len(paths))
    replies: dict[int, Reply] = {}

    def run(i: int) -> None:
        barrier.wait()
        replies[i] = request(graph, paths[i], conn=conns[i])

    try:
        in_threads(run, range(len(paths)))  # raises what a request raised
    finally:
        for c in conns:
            c.close()
    return [replies[i] for i in range(len(paths))]


@pytest.fixture
def server() -> Iterator[FakeGraph]:
    with FakeGraph() as g:
        yield g


HAS_CRYPTOGRAPHY = importlib.util.find_spec("cryptography") is not None
needs_cryptography = pytest.mark.skipif(
    not HAS_CRYPTOGRAPHY,
    reason="HTTPS mode needs cryptography (graphsend[testing])",
)


# Ids --------------------------------------------------------------------------------------------


def test_ids_look_like_graph_ids() -> None:
    graph = FakeGraph(seed=7)
    rest = graph.create_draft(id_style="rest")
    ews = graph.create_draft(id_style="ews")
    for message_id in (rest, ews):
        assert message_id.startswith("AAMkA")
        assert 140 <= len(message_id) <= 160
        assert message_id.endswith("=")
        assert len(base64.b64decode(message_id, altchars=b"-_", validate=False)) == 113
    assert re.fullmatch(r"[A-Za-z0-9_=-]+", rest) and "-" in rest and "_" in rest
    assert re.fullmatch(r"[A-Za-z0-9+/=]+", ews) and "/" in ews and "+" in ews
    assert base64.b64decode(ews, validate=True)  # a valid standard-alphabet id


def test_every_third_default_id_is_ews_style_and_ids_are_unique() -> None:
    graph = FakeGraph()
    ids = graph.create_drafts(300)
    assert len(set(ids)) == 300
    for n, message_id in enumerate(ids, start=1):
        ews = "/" in message_id and "+" in message_id
        rest = "-" in message_id and "_" in message_id
        assert (ews, rest) == ((True, False) if n % 3 == 0 else (False, True)), n


def test_seed_makes_ids_reproducible() -> None:
    assert FakeGraph(seed=3).create_drafts(5) == FakeGraph(seed=3).create_drafts(5)
    assert FakeGraph(seed=3).create_drafts(5) != FakeGraph(seed=4).create_drafts(5)


def test_create_draft_validates_its_arguments() -> None:
    graph = FakeGraph()
    with pytest.raises(ValueError, match="kind"):
        graph.create_draft(kind="draft")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="id_style"):
        graph.create_draft(id_style="graph")  # type: ignore[arg-type]


# The send operation --------------------------------------------------------------------------


def test_send_moves_the_draft_and_answers_202(server: FakeGraph) -> None:
    draft = server.create_draft(subject="Quarterly report", kind="forward")
    other = server.create_draft(subject="stays")
    reply = send(server, draft, headers={"client-request-id": "my-crid"})

    assert reply.status == 202
    assert reply.body == b""
    assert reply.headers["content-length"] == "0"
    assert "content-type" not in reply.headers
    assert uuid.UUID(reply.headers["request-id"])
    assert reply.headers["client-request-id"] == "my-crid"
    date = parsedate_to_datetime(reply.headers["date"])
    assert abs(date.timestamp() - time.time()) < 5
    assert "ServerInfo" in json.loads(reply.headers["x-ms-ags-diagnostic"])

    (sent,) = server.sent_items()
    assert isinstance(sent, Message)
    assert (sent.id, sent.subject, sent.kind, sent.user) == (
        draft,
        "Quarterly report",
        "forward",
        "adele@contoso.com",
    )
    assert sent.sent_at is not None and sent.sent_at.tzinfo is not None
    assert [m.id for m in server.drafts()] == [other]
    assert server.drafts()[0].sent_at is None


def test_request_ids_are_fresh_and_client_request_id_defaults_to_it(server: FakeGraph) -> None:
    replies = [send(server, server.create_draft()) for _ in range(3)]
    request_ids = [r.headers["request-id"] for r in replies]
    assert len(set(request_ids)) == 3
    assert [r.headers["client-request-id"] for r in replies] == request_ids


def test_second_send_of_the_same_id_is_404_in_graphs_error_shape(server: FakeGraph) -> None:
    draft = server.create_draft()
    assert send(server, draft).status == 202
    reply = send(server, draft, headers={"client-request-id": "again"})
    assert reply.status == 404
    error = reply.error()
    assert error["code"] == "ErrorItemNotFound"
    assert error["message"]
    inner = error["innerError"]
    assert inner["request-id"] == reply.headers["request-id"]
    assert inner["client-request-id"] == "again" == reply.headers["client-request-id"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", inner["date"])
    assert reply.headers["date"].endswith("GMT")
    assert "x-ms-ags-diagnostic" in reply.headers
    assert len(server.sent_items()) == 1


def test_resend_window_lets_a_sent_id_send_again(server: FakeGraph) -> None:
    server.resend_window = 5
    draft = server.create_draft()
    assert send(server, draft).status == 202
    assert send(server, draft).status == 202
    assert [m.id for m in server.sent_items()] == [draft, draft]


def test_named_mailboxes_compare_case_insensitively(server: FakeGraph) -> None:
    draft = server.create_draft(user="Megan@Contoso.com", subject="from megan")
    path = f"/beta/users/MEGAN%40contoso.COM/messages/{quote(draft, safe='')}/send"
    assert request(server, path).status == 202
    assert [m.subject for m in server.sent_items("megan@CONTOSO.com")] == ["from megan"]
    assert server.sent_items("me") == []
    assert server.sent_items()[0].user == "megan@contoso.com"
    assert server.requests[0].user == "megan@contoso.com"


def test_me_is_the_default_user(server: FakeGraph) -> None:
    draft = server.create_draft("me")
    assert send(server, draft, user="ADELE@contoso.com").status == 202
    assert [m.id for m in server.sent_items("me")] == [draft]
    assert [m.id for m in server.sent_items(server.default_user)] == [draft]


def test_unknown_mailbox_and_unknown_id(server: FakeGraph) -> None:
    reply = send(server, server.create_draft(), user="nobody@contoso.com")
    assert (reply.status, reply.error()["code"]) == (404, "ErrorInvalidUser")
    server.add_mailbox(ALICE)
    reply = send(server, "AAMkAGI2THVSAAA=", user=ALICE)
    assert (reply.status, reply.error()["code"]) == (404, "ErrorItemNotFound")


def test_ews_ids_need_each_segment_percent_encoded_once(server: FakeGraph) -> None:
    draft = server.create_draft(id_style="ews")
    unencoded = f"/v1.0/me/messages/{draft}/send"  # the "/" splits the id into segments
    reply = request(server, unencoded)
    assert (reply.status, reply.error()["code"]) == (400, "ErrorInvalidIdMalformed")

    twice = f"/v1.0/me/messages/{quote(quote(draft, safe=''), safe='')}/send"
    reply = request(server, twice)
    assert (reply.status, reply.error()["code"]) == (400, "ErrorInvalidIdMalformed")
    assert server.sent_items() == [] and len(server.drafts()) == 1

    # "+" left as it is stays "+" (a path is not a form): only "/" had to be encoded.
    plus_raw = f"/v1.0/me/messages/{quote(draft, safe='+=')}/send"
    assert "+" in plus_raw
    assert request(server, plus_raw).status == 202
    assert [m.id for m in server.sent_items()] == [draft]


def test_encoded_ews_id_is_sent(server: FakeGraph) -> None:
    draft = server.create_draft(id_style="ews")
    path = send_path(draft)
    assert "%2F" in path and "%2B" in path and "%3D" in path
    assert request(server, path).status == 202


@pytest.mark.parametrize("segment", ["AAMk%20AGI2", "AAMk!AGI2", "AAMk%25AGI2", "%E2%82%AC", ""])
def test_characters_outside_base64_are_malformed(server: FakeGraph, segment: str) -> None:
    reply = request(server, f"/v1.0/me/messages/{segment}/send")
    assert reply.status == 400
    assert reply.error()["code"] == "ErrorInvalidIdMalformed"


def test_missing_or_wrong_token_is_401(server: FakeGraph) -> None:
    draft = server.create_draft()
    c = http.client.HTTPConnection(server.host, server.port, timeout=10)
    c.request("POST", send_path(draft), body=b"")
    response = c.getresponse()
    body = json.loads(response.read())
    assert response.status == 401
    assert body["error"]["code"] == "InvalidAuthenticationToken"
    assert body["error"]["message"] == "Access token is empty."
    assert response.getheader("WWW-Authenticate", "").startswith("Bearer")
    c.close()

    for authorization in ("Bearer nope", f"Basic {server.token}", server.token):
        reply = send(server, draft, headers={"Authorization": authorization})
        assert reply.status == 401, authorization
        assert reply.error()["code"] == "InvalidAuthenticationToken"
    assert server.sent_items() == []
    assert send(server, draft, headers={"Authorization": f"bearer {server.token}"}).status == 202


def test_token_can_rotate_while_running(server: FakeGraph) -> None:
    old = server.token
    server.token = "rotated"
    assert send(server, server.create_draft(), token=old).status == 401
    assert send(server, server.create_draft(), token="rotated").status == 202


def test_missing_content_length_is_411_and_the_connection_stays_usable(server: FakeGraph) -> None:
    first, second = server.create_draft(), server.create_draft()
    with connect(server) as sock:
        sock.sendall(raw_request(send_path(first), server.token, length=None))
        reply = read_response(sock)
        assert reply.status == 411
        assert reply.error()["code"] == "LengthRequired"
        sock.sendall(raw_request(send_path(second), server.token))
        assert read_response(sock).status == 202
    assert [m.id for m in server.sent_items()] == [second]
    assert [r.status for r in server.requests] == [411, 202]
    assert server.connections == 1


def test_chunked_post_is_411_without_losing_framing(server: FakeGraph) -> None:
    draft = server.create_draft()
    with connect(server) as sock:
        chunked = raw_request(
            send_path(draft), server.token, "Transfer-Encoding: chunked\r\n", None
        )
        sock.sendall(chunked + b"2\r\n{}\r\n0\r\n\r\n")
        assert read_response(sock).status == 411
        sock.sendall(raw_request(send_path(draft), server.token))
        assert read_response(sock).status == 202
    assert server.requests[0].body == b"{}"


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_other_methods_on_the_send_path_are_405(server: FakeGraph, method: str) -> None:
    draft = server.create_draft()
    reply = request(server, send_path(draft), method=method)
    assert reply.status == 405
    assert reply.headers["allow"] == "POST"
    assert reply.error()["code"] == "MethodNotAllowed"
    assert server.drafts()[0].id == draft


def test_head_gets_headers_only(server: FakeGraph) -> None:
    with connect(server) as sock:
        sock.sendall(b"HEAD /v1.0/me/messages/AAMk/send HTTP/1.1\r\nHost: x\r\n\r\n")
        reply = read_response(sock, method="HEAD")
        assert reply.status == 405 and reply.body == b""
        assert int(reply.headers["content-length"]) > 0
        sock.sendall(b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock, method="GET").status == 404  # still in sync


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/v1.0",
        "/v2.0/me/messages/AAMk/send",
        "/v1.0/me/events",
        "/v1.0/me/messages/AAMk/reply",
        "/v1.0/groups/x/messages/AAMk/send",
        "/v1.0/users/",
    ],
)
def test_unknown_paths_are_404_in_graphs_error_shape(server: FakeGraph, path: str) -> None:
    reply = request(server, path)
    assert reply.status == 404
    error = reply.error()
    assert error["code"] == "ResourceNotFound"
    assert error["innerError"]["request-id"] == reply.headers["request-id"]


def test_absolute_form_target_is_routed(server: FakeGraph) -> None:
    draft = server.create_draft()
    assert request(server, server.send_url(draft)).status == 202
    assert server.requests[0].path == server.send_url(draft)


def test_drafts_can_be_made_and_listed_over_http(server: FakeGraph) -> None:
    reply = request(
        server,
        "/v1.0/users/alice@contoso.com/messages",
        headers={"Content-Type": "application/json"},
    )
    assert reply.status == 201  # http.client sent no body: default subject
    c = http.client.HTTPConnection(server.host, server.port, timeout=10)
    c.request(
        "POST",
        "/v1.0/me/messages",
        body=json.dumps({"subject": "over http"}),
        headers={"Authorization": f"Bearer {server.token}", "Content-Type": "application/json"},
    )
    response = c.getresponse()
    created = json.loads(response.read())
    c.close()
    assert response.status == 201 and created["isDraft"] is True
    assert created["subject"] == "over http"
    assert [m.id for m in server.drafts("me")] == [created["id"]]

    assert send(server, created["id"]).status == 202
    listing = request(server, "/v1.0/me/mailFolders/sentitems/messages", method="GET")
    assert listing.status == 200
    (item,) = json.loads(listing.body)["value"]
    # Without Prefer: IdType="ImmutableId" the move to Sent Items gives a new id, as in Graph.
    (sent,) = server.sent_items()
    assert sent.id == created["id"] and sent.sent_id != created["id"]
    assert (item["id"], item["isDraft"], item["subject"]) == (sent.sent_id, False, "over http")
    drafts = request(
        server, "/v1.0/users/alice@contoso.com/mailFolders/Drafts/messages", method="GET"
    )
    assert len(json.loads(drafts.body)["value"]) == 1
    assert request(server, "/v1.0/me/messages", token="wrong").status == 401


def test_drafts_made_over_http_for_users_me_go_to_the_default_user(server: FakeGraph) -> None:
    # This used to create the draft and then drop the connection without an answer.
    reply = request(server, "/v1.0/users/Me/messages")
    assert reply.status == 201
    assert [m.id for m in server.drafts("me")] == [json.loads(reply.body)["id"]]


# Fault injection --------------------------------------------------------------------------------


def test_fail_next_answers_once_in_graphs_shape(server: FakeGraph) -> None:
    draft = server.create_draft()
    server.fail_next(503, "ServiceUnavailable", "Try later.", retry_after=2)
    assert server.pending_faults == 1
    reply = send(server, draft, headers={"client-request-id": "c1"})
    assert reply.status == 503
    assert reply.headers["retry-after"] == "2"
    error = reply.error()
    assert (error["code"], error["message"]) == ("ServiceUnavailable", "Try later.")
    assert error["innerError"]["client-request-id"] == "c1"
    assert uuid.UUID(reply.headers["request-id"])
    assert server.sent_items() == [] and server.pending_faults == 0
    assert send(server, draft).status == 202


@pytest.mark.parametrize(
    ("value", "header"),
    [(0, "0"), (7, "7"), (2.0, "2"), (0.249, "0.249"), ("Wed, 21 Oct 2015 07:28:00 GMT", None)],
)
def test_retry_after_forms(server: FakeGraph, value: float | str, header: str | None) -> None:
    server.fail_next(429, "ApplicationThrottled", retry_after=value)
    reply = send(server, server.create_draft())
    assert reply.status == 429
    assert reply.headers["retry-after"] == (header if header is not None else value)


def test_fail_next_defaults_code_and_message_per_status(server: FakeGraph) -> None:
    server.fail_next(504)
    server.fail_next(418)
    first, second = send(server, server.create_draft()), send(server, server.create_draft())
    assert (first.status, first.error()["code"]) == (504, "GatewayTimeout")
    assert first.error()["message"]
    assert (second.status, second.error()["code"]) == (418, "UnknownError")
    assert "retry-after" not in first.headers


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ("", None),
        ("<html><body>502 Bad Gateway</body></html>", "text/html; charset=utf-8"),
        ("{not json", "application/json"),
        ("upstream connect error", "text/plain; charset=utf-8"),
        (b"\x00\xff", "text/plain; charset=utf-8"),
    ],
)
def test_fail_next_body_replaces_the_json(
    server: FakeGraph, body: str | bytes, content_type: str | None
) -> None:
    server.fail_next(502, body=body)
    reply = send(server, server.create_draft())
    assert reply.status == 502
    assert reply.body == (body.encode() if isinstance(body, str) else body)
    assert reply.headers.get("content-type") == content_type
    assert reply.headers["request-id"]


def test_fail_next_headers_add_override_and_remove(server: FakeGraph) -> None:
    server.fail_next(
        500,
        headers={"Content-Type": "application/problem+json", "request-id": None, "X-Extra": "1"},
    )
    reply = send(server, server.create_draft())
    assert reply.status == 500
    assert reply.headers["content-type"] == "application/problem+json"
    assert "request-id" not in reply.headers
    assert reply.headers["x-extra"] == "1"


def test_huge_error_body_streams_and_keeps_the_connection(server: FakeGraph) -> None:
    huge = "x" * (5 * 1024 * 1024)
    server.fail_next(500, body=huge)
    c = http.client.HTTPConnection(server.host, server.port, timeout=10)
    start = time.monotonic()
    reply = send(server, server.create_draft(), conn=c)
    assert time.monotonic() - start < 5
    assert reply.status == 500 and len(reply.body) == len(huge)
    assert send(server, server.create_draft(), conn=c).status == 202
    c.close()
    assert server.connections == 1


def test_fail_next_count_user_and_order(server: FakeGraph) -> None:
    server.add_mailbox(ALICE)
    server.fail_next(500, count=2, user=ALICE.upper())
    server.fail_next(503)
    # adele's send skips alice's fault and takes the 503.
    assert send(server, server.create_draft()).status == 503
    assert send(server, server.create_draft()).status == 202
    assert send(server, server.create_draft(ALICE), user=ALICE).status == 500
    assert send(server, server.create_draft(ALICE), user=ALICE).status == 500
    assert send(server, server.create_draft(ALICE), user=ALICE).status == 202
    assert server.pending_faults == 0


def test_clear_faults(server: FakeGraph) -> None:
    server.fail_next(500, count=3)
    server.reset_next()
    assert server.pending_faults == 4
    server.clear_faults()
    assert send(server, server.create_draft()).status == 202


def test_fail_next_validates(server: FakeGraph) -> None:
    with pytest.raises(ValueError):
        server.fail_next(99)
    with pytest.raises(ValueError):
        server.fail_next(500, count=0)


def test_202_with_retry_after_still_sends(server: FakeGraph) -> None:
    draft = server.create_draft()
    server.fail_next(202, retry_after=5)
    reply = send(server, draft)
    assert reply.status == 202
    assert reply.headers["retry-after"] == "5"
    assert reply.body == b""
    assert [m.id for m in server.sent_items()] == [draft]


def test_unexpected_200_with_an_error_body_still_sends(server: FakeGraph) -> None:
    draft = server.create_draft()
    server.fail_next(200, "UnexpectedOk", "odd")
    reply = send(server, draft)
    assert reply.status == 200
    assert reply.error()["code"] == "UnexpectedOk"
    assert [m.id for m in server.sent_items()] == [draft]


def test_2xx_fault_does_not_hide_a_real_404(server: FakeGraph) -> None:
    server.fail_next(202, retry_after=5)
    reply = send(server, "AAMkAGI2THVSAAA=")
    assert reply.status == 404 and "retry-after" not in reply.headers


def test_own_framing_headers_give_a_truncated_body(server: FakeGraph) -> None:
    server.fail_next(502, body="short", headers={"Content-Length": "100"})
    c = http.client.HTTPConnection(server.host, server.port, timeout=10)
    c.request("POST", send_path(server.create_draft()), body=b"", headers={"Authorization": "x"})
    response = c.getresponse()
    assert response.status == 502
    with pytest.raises(http.client.IncompleteRead):
        response.read()
    c.close()


def test_reset_next_resets_after_reading_the_request(server: FakeGraph) -> None:
    draft = server.create_draft()
    server.reset_next()
    with connect(server) as sock:
        sock.sendall(raw_request(send_path(draft), server.token))
        with pytest.raises(ConnectionResetError):
            data = sock.recv(1024)
            assert data == b"", "expected a reset, not an answer"
            pytest.fail("the connection closed cleanly instead of being reset")
    (record,) = server.requests
    assert (record.outcome, record.status) == ("reset", None)
    assert server.sent_items() == []
    assert send(server, draft).status == 202


def test_stall_next_never_answers_until_the_client_leaves(server: FakeGraph) -> None:
    draft = server.create_draft()
    server.stall_next()
    sock = connect(server, timeout=0.5)
    sock.sendall(raw_request(send_path(draft), server.token))
    with pytest.raises(socket.timeout):
        sock.recv(1024)
    (record,) = server.wait_for_requests(1)
    assert record.outcome == "stalled" and record.status is None
    assert server.in_flight() == 1 and server.in_flight("me") == 1
    sock.close()
    deadline = time.monotonic() + 5
    while server.in_flight() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.in_flight() == 0
    assert record.outcome == "disconnected"  # the client gave up
    assert server.sent_items() == []
    assert send(server, draft).status == 202


def test_a_client_that_times_out_still_gets_its_mail_sent(server: FakeGraph) -> None:
    """Graph goes on with a send whose client gave up: the case that makes retries risky."""
    server.latency = 0.5
    draft = server.create_draft()
    sock = connect(server, timeout=0.1)
    sock.sendall(raw_request(send_path(draft), server.token))
    with pytest.raises(socket.timeout):
        sock.recv(1024)
    sock.close()
    deadline = time.monotonic() + 5
    while server.requests[0].outcome == "pending" and time.monotonic() < deadline:
        time.sleep(0.01)
    (record,) = server.requests
    assert (record.status, record.outcome) == (202, "disconnected")
    assert [m.id for m in server.sent_items()] == [draft]


def test_stop_closes_stalled_connections() -> None:
    graph = FakeGraph().start()
    graph.stall_next(count=3)
    socks = [connect(graph, timeout=5) for _ in range(3)]
    for sock in socks:
        sock.sendall(raw_request(send_path(graph.create_draft()), graph.token))
    graph.wait_for_requests(3)
    start = time.monotonic()
    graph.stop()
    assert time.monotonic() - start < 3
    for sock in socks:
        try:
            assert sock.recv(1024) == b""
        except ConnectionResetError:
            pass
        sock.close()
    assert not graph.running


def test_wait_for_requests_times_out(server: FakeGraph) -> None:
    with pytest.raises(TimeoutError):
        server.wait_for_requests(1, timeout=0.1)


# Latency and concurrency -----------------------------------------------------------------------


def timed_send(graph: FakeGraph, user: str | None = None) -> float:
    draft = graph.create_draft(user)
    start = time.monotonic()
    assert send(graph, draft, user=user).status == 202
    return time.monotonic() - start


def test_latency_global_per_mailbox_and_at_run_time() -> None:
    with FakeGraph(latency=0.3) as graph:
        assert timed_send(graph) >= 0.3
        graph.latency = 0.0
        assert timed_send(graph) < 0.25
        graph.set_latency(ALICE, 0.4)
        assert timed_send(graph, ALICE) >= 0.4
        assert timed_send(graph) < 0.25
        graph.set_latency(ALICE, None)
        assert timed_send(graph, ALICE) < 0.25


def test_latency_applies_to_errors_too(server: FakeGraph) -> None:
    server.latency = 0.3
    start = time.monotonic()
    assert send(server, "AAMkAGI2THVSAAA=").status == 404
    assert time.monotonic() - start >= 0.3


def test_latency_does_not_serialize_requests(server: FakeGraph) -> None:
    server.latency = 0.5
    users = [f"user{i}@contoso.com" for i in range(20)]
    paths = [send_path(server.create_draft(user), user) for user in users]
    start = time.monotonic()
    replies = concurrent(server, paths)
    elapsed = time.monotonic() - start
    assert [r.status for r in replies] == [202] * 20
    assert 0.5 <= elapsed < 2.5
    assert server.peak_in_flight() == 20
    assert server.peak_in_flight("user3@contoso.com") == 1


def test_mailbox_concurrency_limit_throttles_the_fifth() -> None:
    with FakeGraph(latency=1.0, mailbox_concurrency_limit=4) as graph:
        graph.add_mailbox(ALICE)
        paths = [send_path(graph.create_draft()) for _ in range(8)]
        paths += [send_path(graph.create_draft(ALICE), ALICE) for _ in range(4)]
        replies = concurrent(graph, paths)
        adele, alice = replies[:8], replies[8:]
        assert sorted(r.status for r in adele) == [202] * 4 + [429] * 4
        assert [r.status for r in alice] == [202] * 4  # another mailbox has its own budget
        for reply in adele:
            if reply.status == 429:
                assert reply.error()["code"] == "ApplicationThrottled"
                assert "MailboxConcurrency" in reply.error()["message"]
                assert reply.headers["retry-after"] == "1"
        assert len(graph.sent_items("me")) == 4
        # Throttled requests count while they are being answered: the peak shows the client
        # went over the limit, though 429s are answered at once and so overlap only briefly.
        assert 5 <= graph.peak_in_flight("me") <= 8
        assert graph.peak_in_flight(ALICE) == 4
        assert 8 <= graph.peak_in_flight() <= 12


def test_concurrency_limit_switches_at_run_time() -> None:
    with FakeGraph(latency=0.5) as graph:
        paths = [send_path(graph.create_draft()) for _ in range(6)]
        assert [r.status for r in concurrent(graph, paths)] == [202] * 6
        graph.mailbox_concurrency_limit = 2
        graph.throttle_retry_after = "0.5"
        replies = concurrent(graph, [send_path(graph.create_draft()) for _ in range(6)])
        assert sorted(r.status for r in replies) == [202] * 2 + [429] * 4
        assert {r.headers.get("retry-after") for r in replies if r.status == 429} == {"0.5"}


def test_250_concurrent_keep_alive_connections(server: FakeGraph) -> None:
    server.latency = 0.5
    drafts = server.create_drafts(500)
    socks: list[socket.socket] = []
    try:
        began = time.monotonic()
        socks += [connect(server, timeout=30) for _ in range(250)]
        assert time.monotonic() - began < 5  # a small listen backlog would stall connects here
        for round_ in range(2):
            if round_ == 1:
                server.reset_stats()
            start = time.monotonic()
            for sock, draft in zip(socks, drafts[round_ * 250 : round_ * 250 + 250], strict=True):
                sock.sendall(raw_request(send_path(draft), server.token))
            statuses = [read_response(sock).status for sock in socks]
            elapsed = time.monotonic() - start
            assert statuses == [202] * 250
            assert elapsed < 10  # one at a time would take 125 s
            assert server.peak_in_flight() >= 200
        assert server.connections == 0  # the second round reused every connection
        assert server.open_connections == 250
        assert len({r.connection for r in server.requests}) == 250
    finally:
        for sock in socks:
            sock.close()
    assert len(server.sent_items()) == 500


# Connections ------------------------------------------------------------------------------------


def test_keep_alive_reuses_one_connection(server: FakeGraph) -> None:
    c = http.client.HTTPConnection(server.host, server.port, timeout=10)
    for _ in range(5):
        assert send(server, server.create_draft(), conn=c).status == 202
    c.close()
    assert server.connections == 1
    assert {r.connection for r in server.requests} == {server.requests[0].connection}


def test_connection_close_is_honoured(server: FakeGraph) -> None:
    with connect(server) as sock:
        request_bytes = raw_request(
            send_path(server.create_draft()), server.token, "Connection: close\r\n"
        )
        sock.sendall(request_bytes)
        reply = read_response(sock)
        assert reply.status == 202 and reply.headers["connection"] == "close"
        assert sock.recv(1024) == b""


def test_http_1_0_closes_by_default(server: FakeGraph) -> None:
    with connect(server) as sock:
        data = raw_request(send_path(server.create_draft()), server.token)
        sock.sendall(data.replace(b"HTTP/1.1", b"HTTP/1.0", 1))
        assert read_response(sock).status == 202
        assert sock.recv(1024) == b""
    assert server.requests[0].http_version == "HTTP/1.0"


def test_pipelined_requests_are_answered_in_order(server: FakeGraph) -> None:
    draft = server.create_draft()
    with connect(server) as sock:
        sock.sendall(raw_request(send_path(draft), server.token) + raw_request("/nope", "t"))
        stream = sock.makefile("rb")
        data = stream.read1(65536)
        while data.count(b"HTTP/1.1 ") < 2:
            data += stream.read1(65536)
    assert data.index(b"HTTP/1.1 202") < data.index(b"HTTP/1.1 404")


def test_max_requests_per_connection(server: FakeGraph) -> None:
    server.max_requests_per_connection = 2
    with connect(server) as sock:
        sock.sendall(raw_request(send_path(server.create_draft()), server.token))
        assert "connection" not in read_response(sock).headers
        sock.sendall(raw_request(send_path(server.create_draft()), server.token))
        assert read_response(sock).headers["connection"] == "close"
        assert sock.recv(1024) == b""


def test_idle_timeout_closes_idle_connections(server: FakeGraph) -> None:
    server.idle_timeout = 0.2
    with connect(server) as sock:
        sock.sendall(raw_request(send_path(server.create_draft()), server.token))
        assert read_response(sock).status == 202
        start = time.monotonic()
        assert sock.recv(1024) == b""
        assert 0.1 < time.monotonic() - start < 3


def test_oversized_head_is_431_and_closes(server: FakeGraph) -> None:
    with connect(server) as sock:
        sock.sendall(raw_request("/v1.0/me/messages/x/send", "t", "X-Big: " + "a" * 70000 + "\r\n"))
        reply = read_response(sock)
        assert reply.status == 431
        assert sock.recv(1024) == b""


def test_malformed_request_line_is_400(server: FakeGraph) -> None:
    with connect(server) as sock:
        sock.sendall(b"NONSENSE\r\n\r\n")
        assert read_response(sock).status == 400


def test_expect_100_continue(server: FakeGraph) -> None:
    draft = server.create_draft()
    with connect(server) as sock:
        head = raw_request(send_path(draft), server.token, "Expect: 100-continue\r\n", "2")
        sock.sendall(head)
        assert sock.recv(1024).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(b"{}")
        assert read_response(sock).status == 202


# Recording ---------------------------------------------------------------------------------------


def test_raw_path_and_request_are_recorded_exactly(server: FakeGraph) -> None:
    draft = server.create_draft(id_style="ews")
    segment = quote(draft, safe="").replace("%2F", "%2f")  # lower-case escapes stay as sent
    path = f"/v1.0/users/ADELE%40contoso.com/messages/{segment}/send?x=%20y+z"
    with connect(server) as sock:
        sock.sendall(raw_request(path, server.token, "X-Twice: a\r\nX-Twice: b\r\n"))
        assert read_response(sock).status == 202
    (record,) = server.requests
    assert record.path == path
    assert record.method == "POST"
    assert record.headers["x-twice"] == "a, b"
    assert record.headers["authorization"] == f"Bearer {server.token}" == record.authorization
    assert all(name == name.lower() for name in record.headers)
    assert record.body == b""
    assert record.user == "adele@contoso.com"
    assert record.message_id == draft
    assert (record.status, record.outcome) == (202, "answered")
    assert record.answered_at is not None and record.answered_at >= record.received_at
    assert record.client_request_id is None


def test_failed_requests_are_recorded(server: FakeGraph) -> None:
    send(server, server.create_draft(), token="wrong", headers={"client-request-id": "x"})
    request(server, "/nowhere", method="GET")
    server.fail_next(503)
    send(server, server.create_draft())
    assert [(r.method, r.status) for r in server.requests] == [
        ("POST", 401),
        ("GET", 404),
        ("POST", 503),
    ]
    assert server.requests[0].client_request_id == "x"
    assert server.requests[1].user is None


def test_reset_stats_and_clear_requests(server: FakeGraph) -> None:
    send(server, server.create_draft())
    assert (server.connections, len(server.requests), server.peak_in_flight()) == (1, 1, 1)
    server.reset_stats()
    assert (server.connections, len(server.requests), server.peak_in_flight()) == (0, 1, 0)
    server.clear_requests()
    assert server.requests == []
    send(server, server.create_draft())
    assert server.connections == 1 and server.requests[0].connection == 2


def test_recording_can_be_switched_off(server: FakeGraph) -> None:
    server.record_requests = False
    assert send(server, server.create_draft()).status == 202
    assert server.requests == []


# Lifecycle ---------------------------------------------------------------------------------------


def test_addresses_and_restart_on_the_same_port() -> None:
    graph = FakeGraph()
    with pytest.raises(RuntimeError):
        graph.base_url  # noqa: B018
    draft = graph.create_draft()  # state works before start
    with graph:
        port = graph.port
        assert graph.base_url == f"http://127.0.0.1:{port}"
        assert not graph.base_url.endswith("/")
        assert graph.running and "serving" in repr(graph)
        assert graph.ca_bundle is None
    assert not graph.running
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    with graph:
        assert graph.port == port
        assert send(graph, draft).status == 202
    with pytest.raises(RuntimeError):
        graph.start().start()
    graph.stop()
    graph.stop()  # idempotent


def test_start_fails_cleanly_when_the_port_is_taken() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        graph = FakeGraph(port=taken.getsockname()[1])
        with pytest.raises(OSError):
            graph.start()
        assert not graph.running


def test_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    graph = FakeGraph(host="::1")
    try:
        graph.start()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    try:
        assert graph.base_url == f"http://[::1]:{graph.port}"
        assert send(graph, graph.create_draft()).status == 202
    finally:
        graph.stop()


# HTTPS -------------------------------------------------------------------------------------------


@needs_cryptography
def test_https_with_the_ca_bundle() -> None:
    with FakeGraph(https=True) as graph:
        assert graph.base_url.startswith("https://127.0.0.1:")
        ca = graph.ca_bundle
        assert ca is not None and Path(ca).read_text().startswith("-----BEGIN CERTIFICATE-----")
        context = ssl.create_default_context(cafile=ca)
        for host in ("127.0.0.1", "localhost"):
            c = http.client.HTTPSConnection(host, graph.port, context=context, timeout=10)
            reply = send(graph, graph.create_draft(), conn=c)
            assert reply.status == 202, host
            assert reply.headers["strict-transport-security"]
            cert = c.sock.getpeercert()
            assert ("DNS", "localhost") in cert["subjectAltName"]
            assert ("IP Address", "127.0.0.1") in cert["subjectAltName"]
            assert c.sock.selected_alpn_protocol() in (None, "http/1.1")
            c.close()
        assert len(graph.sent_items()) == 2
        assert graph.client_ssl_context().verify_mode == ssl.CERT_REQUIRED

        untrusted = http.client.HTTPSConnection(
            "127.0.0.1", graph.port, context=ssl.create_default_context(), timeout=10
        )
        with pytest.raises(ssl.SSLCertVerificationError):
            untrusted.connect()
        untrusted.close()
        # The failed handshake did not upset the server.
        c = http.client.HTTPSConnection("localhost", graph.port, context=context, timeout=10)
        assert send(graph, graph.create_draft(), conn=c).status == 202
        c.close()
    assert not Path(ca).exists()


@needs_cryptography
def test_https_reset_and_keep_alive() -> None:
    with FakeGraph(https=True) as graph:
        context = graph.client_ssl_context()
        c = http.client.HTTPSConnection("localhost", graph.port, context=context, timeout=10)
        for _ in range(3):
            assert send(graph, graph.create_draft(), conn=c).status == 202
        c.close()
        assert graph.connections == 1
        graph.reset_next()
        plain = connect(graph)
        below_tls = plain.dup()  # to see the TCP reset itself, under TLS's EOF handling
        tls = context.wrap_socket(plain, server_hostname="localhost")
        tls.sendall(raw_request(send_path(graph.create_draft()), graph.token))
        graph.wait_for_requests(4)
        with pytest.raises(ConnectionResetError):
            while below_tls.recv(65536):  # TLS records queued before the reset come first
                pass
            pytest.fail("clean close instead of a reset")
        tls.close()
        below_tls.close()
        assert graph.requests[-1].outcome == "reset"


def test_https_without_cryptography_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "cryptography" else real(name)
    )
    with pytest.raises(ImportError, match=r"graphsend\[testing\]"):
        FakeGraph(https=True)


# pytest plugin, command line, imports -------------------------------------------------------


PLUGIN_TESTS = """
import http.client
import pytest

seen = []

def test_fixture_is_running(fake_graph):
    draft = fake_graph.create_draft()
    c = http.client.HTTPConnection(fake_graph.host, fake_graph.port, timeout=10)
    path = "/v1.0/me/messages/" + draft.replace("/", "%2F").replace("+", "%2B") + "/send"
    c.request("POST", path, body=b"", headers={"Authorization": "Bearer " + fake_graph.token})
    assert c.getresponse().status == 202
    assert len(fake_graph.sent_items()) == 1
    seen.append(fake_graph)

def test_a_fresh_server_per_test_and_the_last_one_stopped(fake_graph):
    assert seen and seen[0] is not fake_graph and not seen[0].running
    assert fake_graph.sent_items() == []

@pytest.mark.fake_graph(latency=0.25, mailbox_concurrency_limit=4, token="tok")
def test_marker_configures_it(fake_graph):
    assert (fake_graph.latency, fake_graph.mailbox_concurrency_limit) == (0.25, 4)
    assert fake_graph.token == "tok"

def test_https_fixture(fake_graph_https):
    assert fake_graph_https.base_url.startswith("https://")
    assert fake_graph_https.ca_bundle
"""


def test_pytest_plugin_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(PLUGIN_TESTS)
    # Load the plugin by module name; block the entry point (if installed) so it loads once.
    result = pytester.runpytest("-p", "no:graphsend", "-p", "graphsend.integrations.pytest_plugin")
    result.assert_outcomes(
        passed=4 if HAS_CRYPTOGRAPHY else 3, skipped=0 if HAS_CRYPTOGRAPHY else 1
    )


def test_pytest_entry_point_when_installed(pytester: pytest.Pytester) -> None:
    from importlib.metadata import entry_points

    names = {ep.value for ep in entry_points(group="pytest11")}
    if "graphsend.integrations.pytest_plugin" not in names:
        pytest.skip("graphsend is not installed as a distribution here")
    pytester.makepyfile(PLUGIN_TESTS.split("@pytest.mark")[0])
    pytester.runpytest().assert_outcomes(passed=2)


def _pythonpath() -> dict[str, str]:
    """The environment for a child Python that imports this same graphsend."""
    root = str(Path(graphsend.testing.__file__).parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return env


def test_command_line_serves_until_terminated(tmp_path: Path) -> None:
    ids_file = tmp_path / "ids.txt"
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "graphsend.testing", "--port", "0", "--latency", "0.05"),
            *("--drafts", "3", "--drafts-file", str(ids_file), "--token", "cli-token"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_pythonpath(),
    )
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", base_url), base_url
        port = int(base_url.rsplit(":", 1)[1])
        ids = ids_file.read_text().split()
        assert len(ids) == 3
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request(
            "POST", send_path(ids[0]), body=b"", headers={"Authorization": "Bearer cli-token"}
        )
        assert c.getresponse().status == 202
        c.close()
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err


def test_imports_stay_cheap() -> None:
    code = (
        "import sys\n"
        "import graphsend.integrations.pytest_plugin\n"
        "assert 'graphsend.testing' not in sys.modules, 'plugin imported FakeGraph eagerly'\n"
        "import graphsend.testing\n"
        "assert 'cryptography' not in sys.modules, 'cryptography imported eagerly'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=_pythonpath(), timeout=60)


def test_import_graphsend_does_not_import_testing() -> None:
    code = "import sys, graphsend\nassert 'graphsend.testing' not in sys.modules\n"
    subprocess.run([sys.executable, "-c", code], check=True, env=_pythonpath(), timeout=60)
