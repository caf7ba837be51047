"""Construction-time checks, closing, token providers and send_message's cache: issue 9
items 3, 16, 17, 20 and 22 (Python parts), against real loopback servers."""

from __future__ import annotations

import json
import os
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from loopback import Reply, Seen, Server

import graphsend
from graphsend.testing import FakeGraph


def client_for(graph: FakeGraph, **kwargs: object) -> graphsend.Client:
    return graphsend.Client(kwargs.pop("token", graph.token), base_url=graph.base_url, **kwargs)  # type: ignore[arg-type]


# Item 3: close() while another thread is mid-send; sends after close raise in every thread.


def test_i9_03_close_while_another_thread_is_mid_send(serve: Callable[..., Server]) -> None:
    server = serve(lambda seen: Reply(202, delay=0.5 if not server.requests else 0))
    client = graphsend.Client("t0ken", base_url=server.base_url)
    outcomes: list[object] = []

    def worker() -> None:
        outcomes.append(client.send("first"))  # holds its thread's handle during close()
        try:
            outcomes.append(client.send("second"))
        except ValueError as exc:
            outcomes.append(exc)

    thread = threading.Thread(target=worker)
    thread.start()
    deadline = time.monotonic() + 5
    while not server.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    client.close()
    thread.join()
    assert isinstance(outcomes[0], graphsend.Receipt)  # the send under way finishes
    assert isinstance(outcomes[1], ValueError)
    assert str(outcomes[1]) == "this Client is closed"
    assert len(server.requests) == 1


def test_i9_22_send_after_close_says_the_client_is_closed(graph: FakeGraph) -> None:
    client = client_for(graph)
    client.send(graph.create_draft())  # this thread now holds a handle
    client.close()
    with pytest.raises(ValueError) as info:
        client.send(graph.create_draft())
    assert str(info.value) == "this Client is closed"


def test_i9_03_close_during_a_retry_wait_raises_the_last_error(graph: FakeGraph) -> None:
    graph.fail_next(429, retry_after=0.5)
    client = client_for(graph)
    threading.Timer(0.2, client.close).start()
    with pytest.raises(graphsend.ThrottledError) as info:
        client.send(graph.create_draft())
    assert "the Client was closed" in str(info.value)
    assert info.value.may_have_sent is False
    assert len(graph.requests) == 1


# Item 16: base_url and timeouts are checked at construction.


@pytest.mark.parametrize(
    "base_url",
    [
        "https://graph.example/?",
        "https://graph.example/#",
        "https://graph.example?",
        "https://graph.example:0",
        "https://graph.example:65536",
        "https://graph.example:99999",
        "https://graph.example:-1",
        "https://graph .example",
        "https://graph.example%20x",
        "https://gra<ph.example",
        "http://127.0.0.1:0",
        "https://[::1",
        "https://graph.example/a b",
        "https://gräph.example",
    ],
)
def test_i9_16_bad_base_url_is_a_value_error(base_url: str) -> None:
    with pytest.raises(ValueError):
        graphsend.Client("t0ken", base_url=base_url)


@pytest.mark.parametrize(
    "base_url",
    [
        "https://graph.example:443",
        "http://[::1]:8080",
        "https://graph.example/",
        "http://localhost",
    ],
)
def test_i9_16_good_base_urls_are_accepted(base_url: str) -> None:
    graphsend.Client("t0ken", base_url=base_url).close()


@pytest.mark.parametrize("name", ["timeout", "connect_timeout"])
@pytest.mark.parametrize("value", [1e300, 2**31, 3e6])
def test_i9_16_too_large_timeout_is_a_value_error(name: str, value: float) -> None:
    with pytest.raises(ValueError, match=name):
        graphsend.Client("t0ken", **{name: value})  # type: ignore[arg-type]


def test_i9_16_large_timeout_within_the_limit_sends(graph: FakeGraph) -> None:
    client = client_for(graph, timeout=2_000_000, connect_timeout=86_400)
    assert client.send(graph.create_draft()).status == 202


# Item 17: a failing token provider is an AuthenticationError at once, nothing sent.


class _RaisingCredential:
    def get_token(self, *scopes: str, **kwargs: object) -> object:
        raise RuntimeError("the vault is sealed")


@pytest.mark.parametrize(
    "token",
    [lambda: (_ for _ in ()).throw(RuntimeError("the vault is sealed")), _RaisingCredential()],
    ids=["callable", "credential"],
)
def test_i9_17_provider_exception_is_an_authentication_error(
    graph: FakeGraph, token: object
) -> None:
    client = client_for(graph, token=token)
    start = time.monotonic()
    with pytest.raises(graphsend.AuthenticationError) as info:
        client.send(graph.create_draft())
    assert time.monotonic() - start < 0.5
    err = info.value
    assert isinstance(err.__cause__, RuntimeError)
    assert err.may_have_sent is False and err.status == 0
    assert str(err) == "the token provider failed: RuntimeError: the vault is sealed"
    assert graph.requests == []


def test_i9_17_provider_returning_garbage_is_an_authentication_error(graph: FakeGraph) -> None:
    with pytest.raises(graphsend.AuthenticationError) as info:
        client_for(graph, token=lambda: "two words").send(graph.create_draft())
    assert "unusable token" in str(info.value) and "two words" not in str(info.value)
    assert graph.requests == []


def test_i9_17_msal_error_dict_reads_for_a_person(graph: FakeGraph) -> None:
    result = {
        "error": "invalid_client",
        "error_description": "AADSTS7000215: Invalid client secret provided.",
        "correlation_id": "c0ffee",
    }
    with pytest.raises(graphsend.AuthenticationError) as info:
        client_for(graph, token=lambda: result).send(graph.create_draft())
    assert str(info.value) == (
        "the token provider returned an error: invalid_client: AADSTS7000215: Invalid client "
        "secret provided. (correlation_id c0ffee)"
    )
    assert info.value.code == "invalid_client" and info.value.may_have_sent is False


def test_i9_17_provider_failing_on_a_retry_keeps_may_have_sent(graph: FakeGraph) -> None:
    calls = iter([graph.token])

    def provider() -> str:
        return next(calls)  # StopIteration on the second call: the provider failed

    graph.fail_next(504)
    client = client_for(graph, token=provider, retry=graphsend.Retry(retry_ambiguous=True))
    with pytest.raises(graphsend.AuthenticationError) as info:
        client.send(graph.create_draft())
    assert info.value.may_have_sent is True  # the 504 attempt may have sent it
    assert len(graph.requests) == 1


@pytest.fixture
def failing_authority(serve: Callable[..., Server], tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(authority URL, CA path): an HTTPS token endpoint on loopback that answers 401."""
    pytest.importorskip("cryptography")
    from graphsend.testing._certificates import write_certificates

    ca, cert, key = write_certificates(str(tmp_path), "127.0.0.1")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    def reply(seen: Seen) -> Reply:
        base = f"https://127.0.0.1:{server.port}/tenant"
        json_close = (("Content-Type", "application/json"), ("Connection", "close"))
        if b"openid-configuration" in seen.lines[0]:
            doc = {
                "token_endpoint": base + "/oauth2/v2.0/token",
                "authorization_endpoint": base + "/oauth2/v2.0/authorize",
                "issuer": base + "/v2.0",
            }
            return Reply(200, json_close, json.dumps(doc).encode())
        error = {
            "error": "invalid_client",
            "error_description": "AADSTS7000215: Invalid client secret provided.",
            "error_codes": [7000215],
        }
        return Reply(401, json_close, json.dumps(error).encode())

    server = serve(reply, tls=context)
    yield f"https://127.0.0.1:{server.port}", ca


def test_i9_17_azure_identity_credential_failure(
    graph: FakeGraph, failing_authority: tuple[str, str]
) -> None:
    azure_identity = pytest.importorskip("azure.identity")
    from azure.core.exceptions import ClientAuthenticationError

    authority, ca = failing_authority
    credential = azure_identity.ClientSecretCredential(
        "tenant",
        "client",
        "not-the-secret",
        authority=authority,
        disable_instance_discovery=True,
        connection_verify=ca,
    )
    client = client_for(graph, token=credential)
    start = time.monotonic()
    with pytest.raises(graphsend.AuthenticationError) as info:
        client.send(graph.create_draft())
    assert time.monotonic() - start < 2.0
    assert isinstance(info.value.__cause__, ClientAuthenticationError)
    assert info.value.may_have_sent is False
    assert str(info.value).startswith("the token provider failed: ClientAuthenticationError:")
    assert "AADSTS7000215" in str(info.value) and "not-the-secret" not in str(info.value)
    assert graph.requests == []


# Item 20: send_message keeps a bounded number of Clients.


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_i9_20_send_message_cache_is_bounded(graph: FakeGraph) -> None:
    graphsend.send_message(graph.create_draft(), token=graph.token, base_url=graph.base_url)
    before = _open_fds()
    for i in range(200):
        receipt = graphsend.send_message(
            graph.create_draft(), token=graph.token, base_url=graph.base_url, timeout=50 + i
        )
        assert receipt.status == 202
    # Each kept Client holds a few descriptors (eventfd, socket, ...): 8 kept, not 200.
    assert _open_fds() - before < 60
    assert len(graph.sent_items()) == 201


def test_i9_19_send_message_accepts_a_pathlike_ca_bundle(graph_https: FakeGraph) -> None:
    assert graph_https.ca_bundle is not None
    receipt = graphsend.send_message(
        graph_https.create_draft(),
        token=graph_https.token,
        base_url=graph_https.base_url,
        ca_bundle=Path(graph_https.ca_bundle),
    )
    assert receipt.status == 202


# Item 22: smaller things.


def test_i9_22_star_import_keeps_the_builtin_timeout_error() -> None:
    namespace: dict[str, object] = {}
    exec("from graphsend import *", namespace)
    assert "TimeoutError" not in namespace
    assert graphsend.TimeoutError is not TimeoutError
    assert issubclass(graphsend.TimeoutError, TimeoutError)


@pytest.mark.parametrize("path", ["/dev/null", "/"])
def test_i9_22_ca_bundle_that_is_not_a_file_says_so(path: str) -> None:
    with pytest.raises(ValueError, match="not a regular file"):
        graphsend.Client("t0ken", ca_bundle=path)


def test_i9_22_ca_bundle_that_is_not_pem_says_so(tmp_path: Path) -> None:
    empty = tmp_path / "empty.pem"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="not a PEM bundle"):
        graphsend.Client("t0ken", ca_bundle=empty)


def test_i9_22_sdist_ships_the_test_helpers(tmp_path: Path) -> None:
    import subprocess
    import sys
    import tarfile

    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run(
        [sys.executable, "setup.py", "-q", "sdist", "--dist-dir", str(tmp_path)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    (archive,) = tmp_path.glob("*.tar.gz")
    with tarfile.open(archive) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    for helper in ("tests/conftest.py", "tests/helpers.py", "tests/loopback.py"):
        assert helper in names
