"""Every non-202 answer becomes the right exception with Graph's details (issue 2)."""

from __future__ import annotations

import json
import logging
import pickle
import time
from email.utils import formatdate

import pytest

import graphsend
from graphsend import Retry
from graphsend._rules.retry import parse_retry_after
from graphsend.testing import FakeGraph

STATUS_TABLE = [
    (400, "ErrorInvalidIdMalformed", graphsend.BadRequestError, False),
    (400, "ErrorInvalidRecipients", graphsend.BadRequestError, False),
    (401, "InvalidAuthenticationToken", graphsend.AuthenticationError, False),
    (403, "ErrorSendAsDenied", graphsend.PermissionDeniedError, False),
    (404, "ErrorItemNotFound", graphsend.NotFoundError, False),
    (409, "ErrorIrresolvableConflict", graphsend.ConflictError, False),
    (411, "LengthRequired", graphsend.GraphError, False),
    (413, "ErrorQuotaExceeded", graphsend.GraphError, False),
    (429, "ApplicationThrottled", graphsend.ThrottledError, False),
    (500, "InternalServerError", graphsend.ServerError, True),
    (502, "BadGateway", graphsend.ServerError, True),
    (503, "ServiceUnavailable", graphsend.ServiceUnavailableError, False),
    (504, "GatewayTimeout", graphsend.ServerError, True),
    (302, "Redirected", graphsend.GraphError, True),
    (200, "UnexpectedOk", graphsend.GraphError, True),
]


@pytest.fixture
def client(graph: FakeGraph) -> graphsend.Client:
    return graphsend.Client(graph.token, base_url=graph.base_url, retry=Retry(max_attempts=1))


@pytest.mark.parametrize(("status", "code", "cls", "may_have_sent"), STATUS_TABLE)
def test_status_maps_to_class_with_attributes(
    graph: FakeGraph,
    client: graphsend.Client,
    status: int,
    code: str,
    cls: type,
    may_have_sent: bool,
) -> None:
    graph.fail_next(status, code, "Something specific happened.", retry_after=7)
    with pytest.raises(graphsend.SendError) as info:
        client.send(graph.create_draft(), client_request_id="crid-1")
    err = info.value
    assert type(err) is cls
    assert isinstance(err, graphsend.GraphError)
    assert err.status == status
    assert err.code == code
    assert err.message == "Something specific happened."
    assert err.may_have_sent is may_have_sent
    assert err.request_id and err.request_id == err.headers["request-id"]
    assert err.client_request_id == "crid-1"
    assert err.date and err.date.endswith("GMT")
    assert err.retry_after == 7.0
    assert json.loads(err.body)["error"]["code"] == code
    assert all(name == name.lower() for name in err.headers)
    text = str(err)
    assert str(status) in text and code in text and err.request_id in text
    assert "Something specific happened." in text


def test_server_error_hierarchy() -> None:
    assert issubclass(graphsend.ServiceUnavailableError, graphsend.ServerError)
    assert issubclass(graphsend.TimeoutError, graphsend.TransportError)
    for cls in (graphsend.GraphError, graphsend.TransportError):
        assert issubclass(cls, graphsend.SendError)


def test_nested_inner_error_with_other_casing(graph: FakeGraph, client: graphsend.Client) -> None:
    body = {
        "ERROR": {
            "Code": "ErrorAccessDenied",
            "Message": "Access is denied.",
            "InnerError": {
                "Request-Id": "body-rid",
                "Date": "2026-11-27T02:00:00",
                "innererror": {"code": "ErrorSendAsDenied"},
            },
        }
    }
    graph.fail_next(403, body=json.dumps(body), headers={"content-type": "application/json"})
    with pytest.raises(graphsend.PermissionDeniedError) as info:
        client.send(graph.create_draft())
    err = info.value
    assert err.code == "ErrorAccessDenied"
    assert err.message == "Access is denied."
    assert err.inner_code == "ErrorSendAsDenied"
    assert err.request_id  # the header wins; the body's is the fallback


@pytest.mark.parametrize(
    "body", ["", "<html><body>502 Bad Gateway</body></html>", "{not json", "[]"]
)
def test_empty_and_non_json_bodies(graph: FakeGraph, client: graphsend.Client, body: str) -> None:
    graph.fail_next(502, body=body)
    with pytest.raises(graphsend.ServerError) as info:
        client.send(graph.create_draft())
    err = info.value
    assert err.code is None and err.message is None
    assert err.body == body
    assert err.request_id  # from the response headers
    assert "502" in str(err) and err.request_id in str(err)


def test_huge_error_body_is_capped_without_a_hang(
    graph: FakeGraph, client: graphsend.Client
) -> None:
    graph.fail_next(500, body="x" * (5 * 1024 * 1024))
    start = time.monotonic()
    with pytest.raises(graphsend.ServerError) as info:
        client.send(graph.create_draft())
    assert time.monotonic() - start < 5
    assert len(info.value.body) == 64 * 1024
    # The connection was drained, not poisoned: the next send works.
    assert client.send(graph.create_draft()).status == 202


def test_exceptions_pickle(graph: FakeGraph, client: graphsend.Client) -> None:
    graph.fail_next(404, "ErrorItemNotFound", "gone")
    with pytest.raises(graphsend.NotFoundError) as info:
        client.send(graph.create_draft())
    copy = pickle.loads(pickle.dumps(info.value))
    assert type(copy) is graphsend.NotFoundError
    assert (copy.status, copy.code, copy.request_id, str(copy)) == (
        404,
        "ErrorItemNotFound",
        info.value.request_id,
        str(info.value),
    )


def test_the_token_never_shows(graph: FakeGraph, caplog: pytest.LogCaptureFixture) -> None:
    secret = "eyJ0eXAiOiJKV1QiLCJhbGciOi.secret-token-value"
    caplog.set_level(logging.DEBUG, logger="graphsend")
    client = graphsend.Client(secret, base_url=graph.base_url, retry=Retry(max_attempts=1))
    errors: list[BaseException] = []
    for _ in range(2):
        try:
            client.send(graph.create_draft())  # wrong token: 401
        except graphsend.SendError as exc:
            errors.append(exc)
    assert len(errors) == 2
    seen = [str(e) for e in errors] + [repr(e) for e in errors] + [repr(e.args) for e in errors]
    seen += [repr(client), caplog.text]
    seen += [repr(vars(e)) for e in errors]
    assert caplog.records, "DEBUG records were expected"
    for text in seen:
        assert secret not in text
        assert "Bearer" not in text


@pytest.mark.parametrize(
    ("value", "expected"),
    [("120", 120.0), ("0.249", 0.249), (" 3 ", 3.0), ("-5", 0.0), ("soon", None), ("nan", None)],
)
def test_retry_after_forms(value: str, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_retry_after_http_date() -> None:
    now = time.time()
    assert parse_retry_after(formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30, abs=1)
    assert parse_retry_after(formatdate(now - 30, usegmt=True), now=now) == 0.0
