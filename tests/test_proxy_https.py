"""An ``https://`` proxy (issue 14): libcurl verifies the proxy's own certificate with
CURLOPT_PROXY_CAINFO, which is separate from the origin's CURLOPT_CAINFO. The binary wheel's
libcurl has no CA store compiled in, so without it an HTTPS proxy could never be verified.

The proxy here is a real one on loopback: TLS from the client with a certificate signed by its
own test CA, then CONNECT, each tunnel going to 127.0.0.1 on the target's port. It records every
byte the client sent it outside and inside the tunnels, so the tests can show the bearer token
never reaches it. The origin is a TLS server for ``graph.test`` (a name only the proxy
"resolves"), with a certificate from another test CA, as in tests/test_proxy.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from loopback import Reply, Server, accept_in_thread

import graphsend

pytest.importorskip("cryptography")

SCALE = float(os.environ.get("GRAPHSEND_TIME_SCALE", "1"))
TOKEN = "t0ken-never-for-the-proxy"
PROXY_VARIABLES = ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY", "all_proxy")
CA_VARIABLES = ("SSL_CERT_FILE", "CURL_CA_BUNDLE")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*PROXY_VARIABLES, *CA_VARIABLES, "ALL_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)


class TlsConnectProxy:
    """An HTTPS CONNECT proxy on loopback that tunnels every target to 127.0.0.1.

    ``heads``: the CONNECT requests read; ``tunnels``: "host:port" of each tunnel opened;
    ``received``: every byte the client sent after the TLS handshake (heads and tunnelled bytes);
    ``refused``: handshakes that failed (the client did not trust the certificate).
    """

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        self.heads: list[bytes] = []
        self.tunnels: list[str] = []
        self.received = bytearray()
        self.refused = 0
        self.refusal = threading.Event()
        self.lock = threading.Lock()
        self.conns: list[socket.socket] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"https://127.0.0.1:{self.sock.getsockname()[1]}"
        accept_in_thread(self.sock, self._serve, self.conns, self.lock)

    def _serve(self, raw: socket.socket) -> None:
        with contextlib.suppress(OSError), raw:
            try:
                conn = self.context.wrap_socket(raw, server_side=True)
            except (ssl.SSLError, OSError):
                with self.lock:
                    self.refused += 1
                self.refusal.set()
                return
            with conn:
                head = b""
                while b"\r\n\r\n" not in head:
                    data = conn.recv(4096)
                    if not data:
                        return
                    self._record(data)
                    head += data
                self.heads.append(head)
                method, target = head.split()[:2]
                if method != b"CONNECT":
                    conn.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                    return
                port = int(target.decode().rsplit(":", 1)[1])
                with socket.create_connection(("127.0.0.1", port)) as upstream:
                    self.tunnels.append(target.decode())
                    conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    self._relay(conn, upstream)

    def _record(self, data: bytes) -> None:
        with self.lock:
            self.received += data

    def _relay(self, client: ssl.SSLSocket, upstream: socket.socket) -> None:
        """Copy both ways until either side closes; bytes already decrypted in the client's TLS
        object (``pending()``) are read before waiting on the sockets."""
        while True:
            if client.pending():
                ready = [client]
            else:
                ready, _, _ = select.select([client, upstream], [], [])
            for sock in ready:
                data = sock.recv(65536)
                if not data:
                    return
                if sock is client:
                    self._record(data)
                    upstream.sendall(data)
                else:
                    client.sendall(data)

    def close(self) -> None:
        self.sock.close()
        with self.lock:
            for conn in self.conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)


def _certificates(directory: Path, host: str) -> tuple[str, ssl.SSLContext]:
    """(a fresh test CA's PEM path, a server context with a certificate for host signed by it)."""
    from graphsend.testing._certificates import write_certificates

    directory.mkdir()
    ca, cert, key = write_certificates(str(directory), host)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return ca, context


class Setup:
    """The origin (graph.test), the HTTPS proxy, their two CAs and a bundle holding both."""

    def __init__(self, tmp_path: Path, serve: Callable[..., Server]) -> None:
        self.origin_ca, origin_context = _certificates(tmp_path / "origin", "graph.test")
        self.proxy_ca, proxy_context = _certificates(tmp_path / "proxy", "127.0.0.1")
        self.both = str(tmp_path / "both.pem")
        pems = [Path(path).read_text() for path in (self.origin_ca, self.proxy_ca)]
        Path(self.both).write_text("".join(pems))
        self.origin = serve(lambda seen: Reply(202, (("request-id", "r"),)), tls=origin_context)
        self.proxy = TlsConnectProxy(proxy_context)
        self.base_url = f"https://graph.test:{self.origin.port}"

    def tokens_at_origin(self) -> list[list[str]]:
        return [seen.header("authorization") for seen in self.origin.requests]

    def check_proxy_saw_no_token(self) -> None:
        assert TOKEN.encode() not in self.proxy.received
        assert b"authorization" not in b"".join(self.proxy.heads).lower()


@pytest.fixture
def setup(tmp_path: Path, serve: Callable[..., Server]) -> Iterator[Setup]:
    s = Setup(tmp_path, serve)
    yield s
    s.proxy.close()


def _client(setup: Setup, **kwargs: object) -> graphsend.Client:
    return graphsend.Client(TOKEN, base_url=setup.base_url, **kwargs)  # type: ignore[arg-type]


# ------------------------------------------------------------------ the proxy's CA is trusted


def test_https_proxy_is_verified_with_the_origins_ca_bundle(setup: Setup) -> None:
    """Without proxy_ca_bundle=, the proxy is verified with the same CA file as the origin."""
    with _client(setup, proxy=setup.proxy.url, ca_bundle=setup.both) as client:
        assert client.send("AAMk").status == 202
        assert client.send("AAMl").status == 202  # the same tunnel, kept alive
    assert setup.proxy.tunnels == [f"graph.test:{setup.origin.port}"]
    assert setup.tokens_at_origin() == [[f"Bearer {TOKEN}"]] * 2
    setup.check_proxy_saw_no_token()


def test_proxy_ca_bundle_trusts_the_proxy_only(setup: Setup) -> None:
    """proxy_ca_bundle= verifies the proxy; ca_bundle= still verifies the origin alone."""
    with _client(
        setup, proxy=setup.proxy.url, ca_bundle=setup.origin_ca, proxy_ca_bundle=setup.proxy_ca
    ) as client:
        assert client.send("AAMk").status == 202
        (result,) = client.send_many(["AAMl"])
        assert isinstance(result, graphsend.Receipt), result
    assert setup.tokens_at_origin() == [[f"Bearer {TOKEN}"]] * 2
    setup.check_proxy_saw_no_token()
    # The proxy's CA is not trusted for the origin: a proxy_ca_bundle is no origin CA.
    origin_requests = len(setup.origin.requests)
    with (
        _client(
            setup,
            proxy=setup.proxy.url,
            ca_bundle=setup.proxy_ca,
            proxy_ca_bundle=setup.proxy_ca,
            retry=graphsend.Retry(max_attempts=1),
        ) as client,
        pytest.raises(graphsend.TransportError) as info,
    ):
        client.send("AAMm")
    # libcurl 7.88 reports a server certificate it refuses inside a TLS tunnel as a TLS error
    # (35, SSL_ERROR_SYSCALL) rather than 60 (the curl tool does the same); never the proxy's.
    assert info.value.curl_code in (35, 60) and info.value.may_have_sent is False
    assert "proxy's certificate" not in str(info.value), str(info.value)
    assert len(setup.origin.requests) == origin_requests


def test_async_client_through_an_https_proxy(setup: Setup) -> None:
    async def main() -> graphsend.Receipt:
        async with graphsend.AsyncClient(
            TOKEN,
            base_url=setup.base_url,
            proxy=setup.proxy.url,
            ca_bundle=setup.origin_ca,
            proxy_ca_bundle=setup.proxy_ca,
        ) as client:
            return await client.send("AAMk")

    assert asyncio.run(main()).status == 202
    assert setup.tokens_at_origin() == [[f"Bearer {TOKEN}"]]
    setup.check_proxy_saw_no_token()


def test_https_proxy_from_the_environment_with_ssl_cert_file(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTPS_PROXY as before; SSL_CERT_FILE names the CAs of both (a corporate bundle)."""
    monkeypatch.setenv("HTTPS_PROXY", setup.proxy.url)
    monkeypatch.setenv("SSL_CERT_FILE", setup.both)
    with _client(setup) as client:
        assert client.send("AAMk").status == 202
    assert setup.proxy.tunnels == [f"graph.test:{setup.origin.port}"]
    setup.check_proxy_saw_no_token()


# ------------------------------------------------------------------ the proxy's CA is not trusted


@pytest.mark.parametrize("how", ["ca_bundle", "proxy_ca_bundle", "environment"])
def test_an_untrusted_https_proxy_fails_before_anything_is_sent(
    setup: Setup, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    kwargs: dict[str, object] = {"ca_bundle": setup.origin_ca}
    if how == "proxy_ca_bundle":
        kwargs = {"ca_bundle": setup.both, "proxy_ca_bundle": setup.origin_ca}
    if how == "environment":
        monkeypatch.setenv("https_proxy", setup.proxy.url)
    else:
        kwargs["proxy"] = setup.proxy.url
    with (
        _client(setup, retry=graphsend.Retry(max_attempts=3), **kwargs) as client,
        pytest.raises(graphsend.TransportError) as info,
    ):
        client.send("AAMk")
    error = info.value
    assert error.may_have_sent is False and error.attempts == 1  # permanent: no retry
    assert error.curl_code == 60
    assert "proxy's certificate is not trusted" in str(error), str(error)
    assert "proxy_ca_bundle=" in str(error)
    assert "nothing was sent" in str(error)
    # The proxy's thread notes the refused handshake just after the client has hung up.
    assert setup.proxy.refusal.wait(5 * SCALE)
    assert setup.proxy.heads == [] and setup.proxy.tunnels == []
    assert setup.origin.requests == []
    setup.check_proxy_saw_no_token()


def test_cli_proxy_ca_bundle(
    setup: Setup, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from graphsend.__main__ import main

    monkeypatch.setenv("GRAPH_TOKEN", TOKEN)
    args = ["send", "AAMk", "--base-url", setup.base_url, "--proxy", setup.proxy.url, "--json"]
    args += ["--ca-bundle", setup.origin_ca]
    assert main(args) == 1  # the proxy's CA is not trusted: not sent
    result = json.loads(capsys.readouterr().out)
    assert result["may_have_sent"] is False and "proxy_ca_bundle=" in result["error"]
    assert main([*args, "--proxy-ca-bundle", setup.proxy_ca]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == 202
    assert setup.tokens_at_origin() == [[f"Bearer {TOKEN}"]]
    setup.check_proxy_saw_no_token()


# ------------------------------------------------------------------ checked like ca_bundle=


def test_proxy_ca_bundle_is_checked_at_construction(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.pem")
    with pytest.raises(FileNotFoundError, match="proxy_ca_bundle not found"):
        graphsend.Client(TOKEN, proxy_ca_bundle=missing)
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello\n")
    with pytest.raises(ValueError, match="proxy_ca_bundle is not a PEM bundle"):
        graphsend.Client(TOKEN, proxy_ca_bundle=not_pem)
    with pytest.raises(TypeError, match="proxy_ca_bundle"):
        graphsend.Client(TOKEN, proxy_ca_bundle=3)  # type: ignore[arg-type]


# ------------------------------------------------------------------ the wheel's libcurl

_WHEEL = r"""
import json, sys, types
spec = json.loads(sys.argv[1])
# What packaging/build-wheel.sh adds to the wheel: this libcurl has no CA store of its own.
sys.modules["graphsend._wheel"] = types.ModuleType("graphsend._wheel")
import graphsend
from graphsend._rules import ca
ca.SYSTEM_BUNDLES = tuple(spec["system_bundles"])
client = graphsend.Client(spec["token"], base_url=spec["base_url"], proxy=spec["proxy"])
try:
    out = {"status": client.send("AAMk").status}
except graphsend.SendError as exc:
    out = {"error": str(exc), "may_have_sent": exc.may_have_sent}
out["options"] = {k: client._options.get(k) for k in ("ca_bundle", "proxy_ca_bundle")}
print(json.dumps(out))
"""


def test_wheel_verifies_the_proxy_with_the_discovered_bundle(setup: Setup) -> None:
    """The wheel's libcurl has no default: the system bundle graphsend finds (here one holding
    both test CAs) verifies the proxy as well as the origin."""
    env = {k: v for k, v in os.environ.items() if k not in (*CA_VARIABLES, *PROXY_VARIABLES)}
    spec = {
        "token": TOKEN,
        "base_url": setup.base_url,
        "proxy": setup.proxy.url,
        "system_bundles": [str(Path(setup.both).parent / "missing.pem"), setup.both],
    }
    proc = subprocess.run(
        [sys.executable, "-c", _WHEEL, json.dumps(spec)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out.get("status") == 202, out
    assert out["options"] == {"ca_bundle": setup.both, "proxy_ca_bundle": setup.both}
    assert setup.proxy.tunnels == [f"graph.test:{setup.origin.port}"]
    setup.check_proxy_saw_no_token()
