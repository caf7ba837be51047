"""Retry policy: issue 9 items 4 and 15 (and 22's repeated TransportError text), and the
README claims of issue 15 (max_attempts=1 is one request; only ErrorItemNotFound is relabelled).
Every case runs against a real loopback server."""

from __future__ import annotations

import os
import ssl
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from loopback import Reply, Server

import graphsend
from graphsend import Retry
from graphsend.testing import FakeGraph

AMBIGUOUS = Retry(retry_ambiguous=True, backoff_base=0.01)


def client_for(graph: FakeGraph, **kwargs: object) -> graphsend.Client:
    kwargs.setdefault("ca_bundle", graph.ca_bundle)
    return graphsend.Client(kwargs.pop("token", graph.token), base_url=graph.base_url, **kwargs)  # type: ignore[arg-type]


# Item 4: bools are bools, numbers finite; a 2xx or 3xx answer is never retried.


@pytest.mark.parametrize("value", ["false", "", 1, 0, None, "yes"])
def test_i9_04_retry_ambiguous_must_be_a_bool(value: object) -> None:
    with pytest.raises(TypeError, match="retry_ambiguous"):
        Retry(retry_ambiguous=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["max_total_wait", "backoff_base", "backoff_max"])
@pytest.mark.parametrize("value", [float("inf"), float("nan"), -1.0])
def test_i9_04_retry_numbers_must_be_finite(name: str, value: float) -> None:
    with pytest.raises(ValueError, match=name):
        Retry(**{name: value})  # type: ignore[arg-type]


@pytest.mark.parametrize(("status", "code"), [(200, "Odd"), (204, None)])
def test_i9_04_2xx_is_never_retried_even_with_retry_ambiguous(
    graph: FakeGraph, status: int, code: str | None
) -> None:
    graph.fail_next(status, code)
    with pytest.raises(graphsend.GraphError) as info:
        client_for(graph, retry=AMBIGUOUS).send(graph.create_draft())
    assert info.value.status == status
    assert info.value.may_have_sent is True
    assert len(graph.requests) == 1


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_i9_04_3xx_is_never_retried_even_with_retry_ambiguous(
    serve: Callable[..., Server], status: int
) -> None:
    server = serve(lambda seen: Reply(status, (("Location", "http://127.0.0.1:1/x"),)))
    client = graphsend.Client("t0ken", base_url=server.base_url, retry=AMBIGUOUS)
    with pytest.raises(graphsend.GraphError) as info:
        client.send("AAMk")
    assert info.value.status == status and info.value.may_have_sent is True
    assert len(server.requests) == 1


# Issue 15: Retry(max_attempts=1) means exactly one request, even after a 401 with a provider.


def test_i15_max_attempts_1_is_one_request_even_after_401(graph: FakeGraph) -> None:
    graph.fail_next(401, "InvalidAuthenticationToken")
    client = client_for(graph, token=lambda: graph.token, retry=Retry(max_attempts=1))
    with pytest.raises(graphsend.AuthenticationError) as info:
        client.send(graph.create_draft())
    assert info.value.attempts == 1
    assert len(graph.requests) == 1


def test_i15_401_refresh_counts_against_max_attempts(graph: FakeGraph) -> None:
    graph.fail_next(401, "InvalidAuthenticationToken")
    client = client_for(graph, token=lambda: graph.token, retry=Retry(max_attempts=2))
    assert client.send(graph.create_draft()).status == 202
    assert len(graph.requests) == 2


# Issue 15: only 404 ErrorItemNotFound after an ambiguous attempt means "may have sent".


@pytest.mark.parametrize("code", ["ErrorInvalidUser", "MailboxNotEnabledForRESTAPI"])
def test_i15_other_404_after_ambiguous_attempt_is_not_relabelled(
    graph: FakeGraph, code: str
) -> None:
    graph.fail_next(504)
    graph.fail_next(404, code, "nope")
    with pytest.raises(graphsend.NotFoundError) as info:
        client_for(graph, retry=AMBIGUOUS).send(graph.create_draft())
    assert info.value.may_have_sent is False
    assert "may have delivered" not in str(info.value)
    assert len(graph.requests) == 2


def test_i15_item_not_found_after_ambiguous_attempt_is_relabelled(graph: FakeGraph) -> None:
    graph.fail_next(504)
    graph.fail_next(404, "ErrorItemNotFound", "The specified object was not found in the store.")
    with pytest.raises(graphsend.NotFoundError) as info:
        client_for(graph, retry=AMBIGUOUS).send(graph.create_draft())
    assert info.value.may_have_sent is True


# Item 15: failures no retry can cure fail at once, saying what to fix.


def tls_server(serve: Callable[..., Server], directory: Path) -> Server:
    """A TLS server on loopback whose certificate no system store trusts."""
    pytest.importorskip("cryptography")
    from graphsend.testing._certificates import write_certificates

    _, cert, key = write_certificates(str(directory), "127.0.0.1")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return serve(tls=context)


def test_i9_15_untrusted_certificate_fails_at_once(
    serve: Callable[..., Server], tmp_path: Path
) -> None:
    server = tls_server(serve, tmp_path)
    client = graphsend.Client("t0ken", base_url=server.base_url)  # no ca_bundle
    start = time.monotonic()
    with pytest.raises(graphsend.TransportError) as info:
        client.send("AAMk")
    # Scaled: under valgrind (GRAPHSEND_TIME_SCALE=30) the TLS handshake alone takes ~1 s.
    assert time.monotonic() - start < 1.0 * float(os.environ.get("GRAPHSEND_TIME_SCALE", "1"))
    assert info.value.curl_code == 60
    assert info.value.may_have_sent is False
    assert info.value.attempts == 1
    assert "not trusted" in str(info.value) and "ca_bundle" in str(info.value)
    assert server.connections == 1
    assert server.requests == []


def test_i9_15_unusable_ca_bundle_fails_at_once(graph_https: FakeGraph, tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\nnot base64 !!\n-----END CERTIFICATE-----\n")
    client = graphsend.Client(graph_https.token, base_url=graph_https.base_url, ca_bundle=bad)
    start = time.monotonic()
    with pytest.raises(graphsend.TransportError) as info:
        client.send(graph_https.create_draft())
    assert time.monotonic() - start < 1.0
    assert info.value.curl_code == 77
    assert info.value.attempts == 1
    assert "ca_bundle" in str(info.value)
    assert graph_https.connections <= 1


def test_i9_15_dns_failure_is_retried_once_and_said_once() -> None:
    client = graphsend.Client(
        "t0ken", base_url="https://graphsend-test.invalid", retry=Retry(backoff_base=0.01)
    )
    with pytest.raises(graphsend.TransportError) as info:
        client.send("AAMk")
    assert info.value.curl_code == 6
    assert info.value.attempts == 2
    # Item 22: "could not resolve host: Could not resolve host: ..." says it once.
    assert str(info.value).lower().count("resolve host") == 1
    assert "graphsend-test.invalid" in str(info.value)


@pytest.mark.parametrize("code", [1, 3, 4, 27, 58, 59, 60, 77])
def test_i9_15_policy_never_retries_permanent_curl_codes(code: int) -> None:
    error = graphsend._rules.errors.transport_error(code, "", False, "crid")
    assert Retry(max_attempts=10).wait_before_retry(error, 1, 0.0) is None
