"""graphsend.Client: threads, retries that never double-send, tokens, logging (issue 3)."""

from __future__ import annotations

import logging
import time
from email.utils import formatdate
from types import SimpleNamespace

import pytest
from helpers import in_threads
from loopback import Server

import graphsend
from graphsend import Client, Retry
from graphsend.testing import FakeGraph


def client_for(graph: FakeGraph, **kwargs: object) -> Client:
    kwargs.setdefault("token", graph.token)
    return Client(base_url=graph.base_url, **kwargs)  # type: ignore[arg-type]


# Connections ----------------------------------------------------------------------------------


def test_sequential_sends_share_one_connection(graph: FakeGraph) -> None:
    with client_for(graph) as client:
        for _ in range(30):
            client.send(graph.create_draft())
    assert graph.connections == 1
    assert len(graph.sent_items()) == 30


def test_16_threads_x_100_sends(graph: FakeGraph) -> None:
    drafts = [
        [graph.create_draft(user=f"user{t}@contoso.com") for _ in range(100)] for t in range(16)
    ]
    with client_for(graph) as client:

        def worker(t: int) -> None:
            for draft in drafts[t]:
                client.send(draft, user=f"user{t}@contoso.com")

        in_threads(worker, range(16))  # raises what a worker raised
    assert sum(len(graph.sent_items(f"user{t}@contoso.com")) for t in range(16)) == 1600
    assert graph.connections <= 16


def test_closed_client_refuses_to_send(graph: FakeGraph) -> None:
    client = client_for(graph)
    client.send(graph.create_draft())
    client.close()
    with pytest.raises(ValueError, match="closed"):
        client.send(graph.create_draft())
    assert len(graph.requests) == 1


# Clouds and configuration ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cloud", "base_url"),
    [
        ("global", "https://graph.microsoft.com"),
        ("usgov", "https://graph.microsoft.us"),
        ("dod", "https://dod-graph.microsoft.us"),
        ("china", "https://microsoftgraph.chinacloudapi.cn"),
    ],
)
def test_clouds(cloud: str, base_url: str) -> None:
    client = Client("a-secret-token", cloud=cloud)
    assert client.base_url == base_url
    assert base_url in repr(client) and "a-secret-token" not in repr(client)


def test_bad_configuration_is_rejected() -> None:
    with pytest.raises(ValueError):
        Client("t", cloud="mars")
    with pytest.raises(TypeError):
        Client("t", retry=3)  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError):
        Client("t", ca_bundle="/nonexistent/ca.pem")
    with pytest.raises(TypeError):
        Client(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Client("t", http2="yes")  # type: ignore[arg-type]


# Retries --------------------------------------------------------------------------------------


def test_429_twice_then_202(graph: FakeGraph) -> None:
    graph.fail_next(429, "ApplicationThrottled", retry_after="0.2", count=2)
    draft = graph.create_draft()
    start = time.monotonic()
    receipt = client_for(graph).send(draft)
    elapsed = time.monotonic() - start
    assert receipt.status == 202
    assert len(graph.requests) == 3
    assert 0.38 < elapsed < 1.5
    crids = {r.headers["client-request-id"] for r in graph.requests}
    assert crids == {receipt.client_request_id}
    assert [r.headers.get("retry-attempt") for r in graph.requests] == [None, "1", "2"]


def test_503_with_http_date_retry_after(graph: FakeGraph) -> None:
    graph.fail_next(503, "ServiceUnavailable", retry_after=formatdate(time.time() + 2, usegmt=True))
    start = time.monotonic()
    client_for(graph).send(graph.create_draft())
    elapsed = time.monotonic() - start
    # HTTP-dates have one-second resolution: the wait ends at the date, 1-2 s from now.
    assert 0.9 < elapsed < 3.0
    assert len(graph.requests) == 2


def test_202_with_retry_after_is_never_retried(graph: FakeGraph) -> None:
    graph.fail_next(202, retry_after=5)
    receipt = client_for(graph).send(graph.create_draft())
    assert receipt.status == 202
    assert len(graph.requests) == 1
    assert len(graph.sent_items()) == 1


def test_504_is_ambiguous_and_not_retried_by_default(graph: FakeGraph) -> None:
    graph.fail_next(504, "GatewayTimeout")
    with pytest.raises(graphsend.ServerError) as info:
        client_for(graph).send(graph.create_draft())
    assert info.value.may_have_sent is True
    assert info.value.attempts == 1
    assert len(graph.requests) == 1


def test_504_is_retried_when_ambiguity_is_accepted(graph: FakeGraph) -> None:
    graph.fail_next(504, "GatewayTimeout")
    client = client_for(graph, retry=Retry(retry_ambiguous=True, backoff_base=0.01))
    assert client.send(graph.create_draft()).status == 202
    assert len(graph.requests) == 2


def test_not_found_after_an_ambiguous_attempt_says_it_may_have_sent(graph: FakeGraph) -> None:
    graph.fail_next(504, "GatewayTimeout")
    graph.fail_next(404, "ErrorItemNotFound", "The specified object was not found in the store.")
    client = client_for(graph, retry=Retry(retry_ambiguous=True, backoff_base=0.01))
    with pytest.raises(graphsend.NotFoundError) as info:
        client.send(graph.create_draft())
    assert info.value.may_have_sent is True
    assert "may have delivered" in str(info.value)
    assert info.value.attempts == 2


def test_long_retry_after_raises_at_once(graph: FakeGraph) -> None:
    graph.fail_next(429, "ApplicationThrottled", retry_after=3600)
    start = time.monotonic()
    with pytest.raises(graphsend.ThrottledError) as info:
        client_for(graph).send(graph.create_draft())
    assert time.monotonic() - start < 0.5
    assert info.value.retry_after == 3600
    assert info.value.attempts == 1
    assert len(graph.requests) == 1


def test_attempts_are_bounded(graph: FakeGraph) -> None:
    graph.fail_next(503, "ServiceUnavailable", retry_after=0, count=10)
    with pytest.raises(graphsend.ServiceUnavailableError) as info:
        client_for(graph, retry=Retry(max_attempts=3)).send(graph.create_draft())
    assert info.value.attempts == 3
    assert len(graph.requests) == 3


def test_backoff_without_retry_after_is_jittered_and_bounded(graph: FakeGraph) -> None:
    graph.fail_next(429, "TooManyRequests", count=2)
    start = time.monotonic()
    client_for(graph, retry=Retry(backoff_base=0.05, backoff_max=0.05)).send(graph.create_draft())
    assert time.monotonic() - start < 0.5
    assert len(graph.requests) == 3


def test_connect_failures_are_retried(refused_url: str) -> None:
    client = Client("t", base_url=refused_url, retry=Retry(max_attempts=3, backoff_base=0.01))
    with pytest.raises(graphsend.TransportError) as info:
        client.send("AAMk")
    assert info.value.attempts == 3
    assert info.value.may_have_sent is False


def test_timeouts_after_the_request_was_written_are_not_retried(silent_server: Server) -> None:
    client = Client("t", base_url=silent_server.base_url, timeout=0.3)
    with pytest.raises(graphsend.TimeoutError) as info:
        client.send("AAMk")
    assert info.value.may_have_sent is True
    assert info.value.attempts == 1
    assert len(silent_server.requests) == 1


# Tokens ---------------------------------------------------------------------------------------


def test_callable_token_is_asked_each_attempt(graph: FakeGraph) -> None:
    calls = []

    def provider() -> str:
        calls.append(1)
        return graph.token

    client = client_for(graph, token=provider)
    client.send(graph.create_draft())
    client.send(graph.create_draft())
    assert len(calls) == 2
    assert len(graph.sent_items()) == 2


class Credential:
    def __init__(self, token: str, lifetime: float) -> None:
        self.token, self.lifetime, self.scopes = token, lifetime, []

    def get_token(self, *scopes: str, **kwargs: object) -> SimpleNamespace:
        self.scopes.append(scopes)
        return SimpleNamespace(token=self.token, expires_on=int(time.time() + self.lifetime))


def test_credential_token_is_cached_until_near_expiry(graph: FakeGraph) -> None:
    credential = Credential(graph.token, lifetime=3600)
    client = client_for(graph, token=credential)
    for _ in range(3):
        client.send(graph.create_draft())
    assert credential.scopes == [("https://graph.microsoft.com/.default",)]
    short = Credential(graph.token, lifetime=60)  # inside the 5-minute margin: always refresh
    client = client_for(graph, token=short)
    client.send(graph.create_draft())
    client.send(graph.create_draft())
    assert len(short.scopes) == 2


def test_credential_scope_follows_the_cloud(graph: FakeGraph) -> None:
    credential = Credential(graph.token, lifetime=3600)
    client_for(graph, token=credential, cloud="usgov").send(graph.create_draft())
    assert credential.scopes == [("https://graph.microsoft.us/.default",)]


def test_msal_result_dicts(graph: FakeGraph) -> None:
    client = client_for(graph, token=lambda: {"access_token": graph.token, "expires_in": 3599})
    assert client.send(graph.create_draft()).status == 202
    failing = client_for(
        graph, token=lambda: {"error": "invalid_client", "error_description": "AADSTS7000215"}
    )
    with pytest.raises(graphsend.AuthenticationError) as info:
        failing.send(graph.create_draft())
    assert info.value.code == "invalid_client"
    assert "AADSTS7000215" in str(info.value)
    assert info.value.may_have_sent is False
    assert len(graph.requests) == 1  # the failing provider sent nothing


def test_401_refreshes_a_provider_token_once(graph: FakeGraph) -> None:
    tokens = iter(["expired-token", graph.token, graph.token])
    client = client_for(graph, token=lambda: next(tokens))
    assert client.send(graph.create_draft()).status == 202
    auth = [r.headers["authorization"] for r in graph.requests]
    assert auth == ["Bearer expired-token", f"Bearer {graph.token}"]


def test_401_twice_with_a_provider_raises(graph: FakeGraph) -> None:
    client = client_for(graph, token=lambda: "always-wrong")
    with pytest.raises(graphsend.AuthenticationError) as info:
        client.send(graph.create_draft())
    assert info.value.attempts == 2
    assert len(graph.requests) == 2


def test_401_with_a_static_token_is_not_retried(graph: FakeGraph) -> None:
    with pytest.raises(graphsend.AuthenticationError) as info:
        client_for(graph, token="wrong").send(graph.create_draft())
    assert info.value.attempts == 1
    assert len(graph.requests) == 1


def test_credential_refreshes_after_401(graph: FakeGraph) -> None:
    credential = Credential("stale", lifetime=3600)
    client = client_for(graph, token=credential)

    def rotate(*scopes: str, **kwargs: object) -> SimpleNamespace:
        credential.scopes.append(scopes)
        token = "stale" if len(credential.scopes) == 1 else graph.token
        return SimpleNamespace(token=token, expires_on=int(time.time() + 3600))

    credential.get_token = rotate  # type: ignore[method-assign]
    assert client.send(graph.create_draft()).status == 202
    assert len(credential.scopes) == 2


# Logging --------------------------------------------------------------------------------------


def test_debug_logging_of_a_whole_run_never_shows_the_token(
    graph: FakeGraph, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    graph.fail_next(429, "ApplicationThrottled", retry_after=0)
    client = client_for(graph)
    receipt = client.send(graph.create_draft())
    with pytest.raises(graphsend.NotFoundError):
        client.send("AAMkAGunknown")
    wrong = client_for(graph, token="not-the-token-1234")
    with pytest.raises(graphsend.AuthenticationError):
        wrong.send(graph.create_draft())
    debug = [r for r in caplog.records if r.levelno == logging.DEBUG and r.name == "graphsend"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(debug) == 4  # 429, 202, 404, 401: one per attempt
    assert len(warnings) == 1
    assert receipt.client_request_id in caplog.text
    assert "attempt=2" in caplog.text
    for secret in (graph.token, "not-the-token-1234", "Bearer", "uthorization"):
        assert secret not in caplog.text
