"""FakeGraph's upload sessions (issue 11): createUploadSession, PUTs of byte ranges to the
pre-authenticated URL, its rules and errors, and the upload faults; over http.client and
HTTP/2."""

from __future__ import annotations

import http.client
import os
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from test_fakegraph_compose import MB, Api, H2Client, Reply

from graphsend.testing import FakeGraph

SCALE = float(os.environ.get("GRAPHSEND_TIME_SCALE", "1"))
CHUNK = 12 * 320 * 1024  # 3.75 MiB, the client's default in COMPOSE-CONTRACT.md


def start_session(api: Api, draft: str, size: int, name: str = "big.bin", **item: Any) -> dict:
    payload = {"AttachmentItem": {"attachmentType": "file", "name": name, "size": size, **item}}
    reply = api.post(("messages", draft, "attachments", "createUploadSession"), payload)
    assert reply.status == 201, reply.body
    return reply.json()


def put(
    graph: FakeGraph,
    url: str,
    data: bytes,
    start: int,
    total: int,
    *,
    content_range: str | None = None,
    headers: dict[str, str] | None = None,
    method: str = "PUT",
) -> Reply:
    """A request to an upload URL as a client must make it: no Authorization header."""
    parts = urlsplit(url)
    assert (parts.hostname, parts.port) == (graph.host, graph.port)
    all_headers = {}
    if method == "PUT":
        end = start + len(data) - 1
        all_headers["Content-Range"] = content_range or f"bytes {start}-{end}/{total}"
    all_headers.update(headers or {})
    conn = http.client.HTTPConnection(graph.host, graph.port, timeout=30)
    try:
        conn.request(
            method,
            f"{parts.path}?{parts.query}",
            body=data if method == "PUT" else None,
            headers=all_headers,
        )
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, body)


def upload(graph: FakeGraph, url: str, data: bytes, start: int = 0) -> Reply:
    """PUT ``data[start:]`` in CHUNK-sized ranges; the last answer."""
    reply = Reply(0, {}, b"")
    for offset in range(start, len(data), CHUNK):
        reply = put(graph, url, data[offset : offset + CHUNK], offset, len(data))
        assert reply.status in (200, 201), reply.body
    return reply


@pytest.fixture
def api(graph: FakeGraph) -> Api:
    return Api(graph)


@pytest.fixture
def draft(graph: FakeGraph) -> str:
    return graph.create_draft(subject="with a big file")


def test_a_10mb_upload_in_chunks_lands_on_the_draft_and_goes_out(
    graph: FakeGraph, api: Api, draft: str
) -> None:
    data = os.urandom(10 * MB + 12345)
    session = start_session(api, draft, len(data), contentType="application/zip")
    assert session["nextExpectedRanges"] == ["0-"]
    assert session["expirationDateTime"].endswith("Z")
    url = session["uploadUrl"]
    assert url.startswith(graph.base_url + "/uploads/") and graph.token not in url
    first = put(graph, url, data[:CHUNK], 0, len(data))
    assert first.status == 200 and first.json()["nextExpectedRanges"] == [str(CHUNK)]
    last = upload(graph, url, data, CHUNK)
    assert (last.status, last.body) == (201, b"")
    attachment = graph.message(draft).attachment("big.bin")
    assert last.headers["location"].endswith(f"/Attachments('{attachment.id}')")
    assert attachment.content_bytes == data and attachment.content_type == "application/zip"
    chunks = [r for r in graph.requests if r.is_upload]
    assert [r.body_size for r in chunks] == [CHUNK, CHUNK, len(data) - 2 * CHUNK]
    assert all(r.authorization is None and r.message_id == draft for r in chunks)
    assert graph.open_upload_sessions == 0
    assert api.post(("messages", draft, "send")).status == 202
    assert graph.delivered()[0].attachment("big.bin").content_bytes == data
    # The session is over: its URL is gone.
    assert put(graph, url, b"x", 0, len(data)).status == 404


def test_the_upload_url_refuses_the_bearer_token_on_every_method(
    graph: FakeGraph, api: Api, draft: str
) -> None:
    url = start_session(api, draft, 100)["uploadUrl"]
    bearer = {"Authorization": f"Bearer {graph.token}"}
    for method in ("PUT", "GET", "DELETE"):
        reply = put(graph, url, b"x" * 100, 0, 100, headers=bearer, method=method)
        assert reply.status == 400
        assert reply.error()["code"] == "InvalidAuthenticationTokenForUpload"
    refused = [r for r in graph.requests if r.is_upload]
    assert [r.authorization for r in refused] == [f"Bearer {graph.token}"] * 3
    status = put(graph, url, b"", 0, 0, method="GET")  # not advanced, not cancelled
    assert status.json()["nextExpectedRanges"] == ["0"]
    assert upload(graph, url, b"y" * 100).status == 201


def test_sessions_over_150mb_are_refused_without_sending_the_bytes(
    graph: FakeGraph, api: Api, draft: str
) -> None:
    limit = 150 * MB
    payload = {"AttachmentItem": {"attachmentType": "file", "name": "huge", "size": limit + 1}}
    reply = api.post(("messages", draft, "attachments", "createUploadSession"), payload)
    assert (reply.status, reply.error()["code"]) == (400, "ErrorAttachmentSizeLimitExceeded")
    at_limit = start_session(api, draft, limit)
    assert graph.open_upload_sessions == 1
    assert put(graph, at_limit["uploadUrl"], b"", 0, 0, method="DELETE").status == 204
    assert graph.open_upload_sessions == 0


@pytest.mark.parametrize(
    "item",
    [
        {"attachmentType": "reference", "name": "a", "size": 10},
        {"attachmentType": "file", "size": 10},
        {"attachmentType": "file", "name": "a", "size": 0},
        {"attachmentType": "file", "name": "a", "size": "10"},
    ],
)
def test_create_upload_session_checks_its_body(api: Api, draft: str, item: dict) -> None:
    reply = api.post(
        ("messages", draft, "attachments", "createUploadSession"), {"AttachmentItem": item}
    )
    assert (reply.status, reply.error()["code"]) == (400, "RequestBodyRead")


def test_create_upload_session_needs_a_draft_and_the_token(graph: FakeGraph, api: Api) -> None:
    item = {"AttachmentItem": {"attachmentType": "file", "name": "a", "size": 10}}
    missing = graph.create_draft()
    api.post(("messages", missing, "send"))
    reply = api.post(("messages", missing, "attachments", "createUploadSession"), item)
    assert (reply.status, reply.error()["code"]) == (404, "ErrorItemNotFound")
    draft = graph.create_draft()
    reply = api.post(("messages", draft, "attachments", "createUploadSession"), item, auth=False)
    assert reply.status == 401


def test_a_chunk_over_4mb_is_413(graph: FakeGraph, api: Api, draft: str) -> None:
    size = 4 * MB + 1
    url = start_session(api, draft, size)["uploadUrl"]
    reply = put(graph, url, bytes(size), 0, size)
    assert (reply.status, reply.error()["code"]) == (413, "RequestEntityTooLarge")
    assert upload(graph, url, bytes(size)).status == 201  # 4 MB exactly, then 1 byte


@pytest.mark.parametrize(
    ("start", "length", "content_range"),
    [
        (30, 10, None),  # starts after the next expected byte (20)
        (10, 10, None),  # starts before it
        (20, 10, "bytes 20-39/100"),  # range longer than the body
        (20, 10, "bytes 20-29/99"),  # total is not the session's size
        (20, 10, "bytes 29-20/100"),  # backwards
        (20, 10, "20-29/100"),  # no unit
    ],
)
def test_misaligned_ranges_get_416_with_next_expected_ranges(
    graph: FakeGraph, api: Api, draft: str, start: int, length: int, content_range: str | None
) -> None:
    data = os.urandom(100)
    url = start_session(api, draft, 100)["uploadUrl"]
    assert put(graph, url, data[:20], 0, 100).status == 200
    chunk = data[start : start + length]
    reply = put(graph, url, chunk, start, 100, content_range=content_range)
    assert reply.status == 416
    error = reply.error()
    assert error["code"] == "InvalidRange" and error["nextExpectedRanges"] == ["20"]
    assert upload(graph, url, data, 20).status == 201
    assert graph.message(draft).attachment("big.bin").content_bytes == data


def test_a_chunk_without_content_length_is_411(graph: FakeGraph, api: Api, draft: str) -> None:
    url = urlsplit(start_session(api, draft, 10)["uploadUrl"])
    conn = http.client.HTTPConnection(graph.host, graph.port, timeout=10)
    conn.putrequest("PUT", f"{url.path}?{url.query}")
    conn.putheader("Content-Range", "bytes 0-9/10")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders(b"a\r\n0123456789\r\n0\r\n\r\n")
    assert conn.getresponse().status == 411
    conn.close()


def test_fail_upload_chunk_answers_the_nth_chunk_and_the_resend_succeeds(
    graph: FakeGraph, api: Api, draft: str
) -> None:
    data = os.urandom(3 * CHUNK // 2)
    url = start_session(api, draft, len(data))["uploadUrl"]
    graph.fail_upload_chunk(2, 503, retry_after=1)
    assert graph.pending_faults == 1
    assert put(graph, url, data[:CHUNK], 0, len(data)).status == 200
    failed = put(graph, url, data[CHUNK:], CHUNK, len(data))
    assert failed.status == 503 and failed.headers["retry-after"] == "1"
    assert failed.error()["code"] == "ServiceUnavailable"
    status = put(graph, url, b"", 0, 0, method="GET").json()
    assert status["nextExpectedRanges"] == [str(CHUNK)]  # the failed chunk was not stored
    assert put(graph, url, data[CHUNK:], CHUNK, len(data)).status == 201
    assert graph.message(draft).attachment("big.bin").content_bytes == data
    assert graph.pending_faults == 0


def test_reset_upload_chunk_drops_the_connection_and_the_chunk(
    graph: FakeGraph, api: Api, draft: str
) -> None:
    data = os.urandom(1000)
    url = start_session(api, draft, len(data))["uploadUrl"]
    graph.reset_upload_chunk()
    with pytest.raises((ConnectionError, http.client.RemoteDisconnected)):
        put(graph, url, data[:500], 0, len(data))
    record = [r for r in graph.requests if r.is_upload][-1]
    assert (record.outcome, record.status) == ("reset", None)
    assert put(graph, url, data[:500], 0, len(data)).json()["nextExpectedRanges"] == ["500"]
    assert put(graph, url, data[500:], 500, len(data)).status == 201


def test_fail_upload_chunk_counts_from_now_and_ignores_token_bearing_puts(
    graph: FakeGraph, api: Api, draft: str
) -> None:
    url = start_session(api, draft, 30)["uploadUrl"]
    assert put(graph, url, b"a" * 10, 0, 30).status == 200
    graph.fail_upload_chunk(1, 500, "Boom", "injected")
    bearer = {"Authorization": "Bearer x"}
    assert put(graph, url, b"b" * 10, 10, 30, headers=bearer).status == 400
    reply = put(graph, url, b"b" * 10, 10, 30)
    assert (reply.status, reply.error()["code"], reply.error()["message"]) == (
        500, "Boom", "injected"
    )  # fmt: skip
    with pytest.raises(ValueError):
        graph.fail_upload_chunk(0)


def test_expired_sessions_answer_404_and_a_new_session_starts_over(
    graph: FakeGraph, api: Api, draft: str
) -> None:
    data = os.urandom(100)
    url = start_session(api, draft, 100)["uploadUrl"]
    assert put(graph, url, data[:50], 0, 100).status == 200
    assert graph.expire_upload_sessions() == 1
    for method in ("PUT", "GET", "DELETE"):
        reply = put(graph, url, data[50:], 50, 100, method=method)
        assert (reply.status, reply.error()["code"]) == (404, "ErrorItemNotFound")
    assert upload(graph, start_session(api, draft, 100)["uploadUrl"], data).status == 201
    assert graph.message(draft).attachment("big.bin").content_bytes == data


def test_sessions_expire_after_their_lifetime(graph: FakeGraph, api: Api, draft: str) -> None:
    graph.upload_session_lifetime = 0.2 * SCALE
    url = start_session(api, draft, 10)["uploadUrl"]
    time.sleep(0.3 * SCALE)
    assert put(graph, url, b"0123456789", 0, 10).status == 404


def test_a_wrong_secret_or_session_is_404(graph: FakeGraph, api: Api, draft: str) -> None:
    url = start_session(api, draft, 10)["uploadUrl"]
    forged = url[: url.index("authtoken=") + len("authtoken=")] + "guess"
    assert put(graph, forged, b"0123456789", 0, 10).status == 404
    assert put(graph, graph.base_url + "/uploads/nothing", b"0", 0, 1).status == 404
    assert put(graph, url, b"0123456789", 0, 10).status == 201


def test_inline_upload_keeps_its_content_id(graph: FakeGraph, api: Api, draft: str) -> None:
    session = start_session(api, draft, 5, name="logo.png", isInline=True, contentId="logo")
    assert upload(graph, session["uploadUrl"], b"\x89PNG!").status == 201
    logo = graph.message(draft).attachment("logo.png")
    assert (logo.inline, logo.content_id, logo.content_type) == (
        True, "logo", "application/octet-stream"
    )  # fmt: skip


@pytest.fixture
def graph_h2() -> Iterator[FakeGraph]:
    pytest.importorskip("cryptography")
    pytest.importorskip("h2")
    with FakeGraph(https=True, http2=True) as g:
        yield g


def test_upload_over_http2(graph_h2: FakeGraph) -> None:
    draft = graph_h2.create_draft(id_style="ews")
    data = os.urandom(5 * MB)
    item = {"AttachmentItem": {"attachmentType": "file", "name": "h2.bin", "size": len(data)}}
    with H2Client(graph_h2) as client:
        path = f"/v1.0/me/messages/{quote(draft, safe='')}/attachments/createUploadSession"
        created = client.request("POST", path, item)
        url = created.json()["uploadUrl"]
        bearer = client.request("PUT", url, body=data[:CHUNK], headers={
            "content-range": f"bytes 0-{CHUNK - 1}/{len(data)}"})  # fmt: skip
        assert bearer.status == 400  # H2Client sends the token unless told not to
        for offset in range(0, len(data), CHUNK):
            chunk = data[offset : offset + CHUNK]
            end = offset + len(chunk) - 1
            reply = client.request(
                "PUT", url, body=chunk, auth=False,
                headers={"content-range": f"bytes {offset}-{end}/{len(data)}"},
            )  # fmt: skip
            assert reply.status in (200, 201)
        assert reply.status == 201
    assert graph_h2.message(draft).attachment("h2.bin").content_bytes == data
    assert {r.http_version for r in graph_h2.requests} == {"HTTP/2"}


def test_clear_faults_drops_upload_faults(graph: FakeGraph, api: Api, draft: str) -> None:
    graph.fail_upload_chunk(1)
    graph.reset_upload_chunk(2)
    assert graph.pending_faults == 2
    graph.clear_faults()
    assert graph.pending_faults == 0
    assert upload(graph, start_session(api, draft, 10)["uploadUrl"], b"0123456789").status == 201
