"""graphsend._native against small real servers on loopback: no mock of libcurl or the network.

The servers (tests/loopback.py, started with the `serve` fixture) are deliberately dumb threaded
sockets, so that each test controls exactly what the wire carries: the bytes of the request,
when an answer comes, or that none does.
"""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import UUID4, CountingThread, in_threads
from loopback import SEND_PATH, ConnectProxy, Reply, Seen, Server, free_port

import graphsend
from graphsend import _native as native

PATH = SEND_PATH  # what server.url() sends to unless told otherwise
TOKEN = "Authorization: Bearer eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.e30.sig"
CRID = "client-request-id: 6f1b3c1e-7a3e-4c4e-9a55-0e8f2f3c9d11"
STATUS, HEADERS, BODY, ELAPSED, CODE, ERROR, SENT = range(7)

CURLE_UNSUPPORTED_PROTOCOL = 1
CURLE_COULDNT_RESOLVE_HOST = 6
CURLE_COULDNT_CONNECT = 7
CURLE_OPERATION_TIMEDOUT = 28
CURLE_SSL_CONNECT_ERROR = 35
CURLE_ABORTED_BY_CALLBACK = 42
CURLE_GOT_NOTHING = 52
CURLE_RECV_ERROR = 56
CURLE_PEER_FAILED_VERIFICATION = 60

# Time limits stretch under valgrind (.ci/memcheck sets this); what they check does not change.
SCALE = float(os.environ.get("GRAPHSEND_TIME_SCALE", "1"))


def wait_until(condition: Callable[[], object], seconds: float = 2.0) -> bool:
    deadline = time.monotonic() + seconds * SCALE
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return bool(condition())


# ---- TLS and handles ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, str]:
    """A CA and a certificate it signed for localhost and 127.0.0.1: (ca, cert, key) paths."""
    pytest.importorskip("cryptography")
    from graphsend.testing._certificates import write_certificates

    return write_certificates(str(tmp_path_factory.mktemp("tls")), "127.0.0.1")


@pytest.fixture
def tls(cert: tuple[str, str, str]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert[1], cert[2])
    return context


def http_handle(**options: object) -> native.Handle:
    options.setdefault("allow_http", True)
    options.setdefault("timeout_ms", int(10_000 * SCALE))  # valgrind runs ~30x slower
    return native.Handle(**options)  # type: ignore[arg-type]


# ---- module -------------------------------------------------------------------------------


def test_module_reports_its_libcurl() -> None:
    assert isinstance(native.libcurl_version, str)
    assert native.libcurl_version.count(".") == 2
    version = tuple(int(p) for p in native.libcurl_version.split("."))
    build = tuple(int(p) for p in native.libcurl_build_version.split("-")[0].split("."))
    assert version >= build >= (7, 85, 0)  # CURLOPT_PROTOCOLS_STR
    assert isinstance(native.http2_supported, bool)
    assert native.ssl_version
    assert native.body_limit == 64 * 1024


def test_types_are_final_and_signatures_are_introspectable() -> None:
    import inspect

    with pytest.raises(TypeError):
        type("Sub", (native.Handle,), {})
    assert str(inspect.signature(native.Handle.send)) == "(self, /, url, headers)"
    assert "check_signals" in str(inspect.signature(native.Handle))


# ---- the request on the wire --------------------------------------------------------------


def test_request_bytes_on_the_wire(serve: Callable[..., Server]) -> None:
    server = serve(lambda seen: Reply(watch_body=0.2))
    handle = http_handle(user_agent="graphsend-test/1.0")
    result = handle.send(server.url(), (TOKEN, CRID, "Retry-Attempt: 1"))
    assert result[STATUS] == 202
    (seen,) = server.requests
    assert seen.lines[0] == f"POST {PATH} HTTP/1.1".encode()
    assert seen.header("host") == [f"127.0.0.1:{server.port}"]
    assert seen.header("content-length") == ["0"]
    assert seen.header("accept") == ["application/json"]
    assert seen.header("user-agent") == ["graphsend-test/1.0"]
    assert seen.header("authorization") == [TOKEN.split(": ", 1)[1]]
    assert seen.header("client-request-id") == [CRID.split(": ", 1)[1]]
    assert seen.header("retry-attempt") == ["1"]
    for absent in ("transfer-encoding", "expect", "content-type"):
        assert seen.header(absent) == []
    assert seen.extra == b""  # no body followed the head
    assert len(seen.lines) == 8  # the request line and exactly the 7 headers above


def test_empty_user_agent_sends_none(serve: Callable[..., Server]) -> None:
    server = serve()
    http_handle(user_agent="").send(server.url(), ())
    assert server.requests[0].header("user-agent") == []


def test_request_arguments_are_checked() -> None:
    handle = http_handle()
    with pytest.raises(TypeError):
        handle.send(b"http://127.0.0.1/", ())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        handle.send("http://127.0.0.1/", [TOKEN])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        handle.send("http://127.0.0.1/", (TOKEN, 3))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="CR, LF or NUL"):
        handle.send("http://127.0.0.1/", ("X-A: 1\r\nX-Injected: 2",))
    with pytest.raises(ValueError, match="CR, LF or NUL"):
        handle.send("http://127.0.0.1/\n", ())
    with pytest.raises(ValueError, match="CR, LF or NUL"):
        handle.send("http://127.0.0.1/", ("X-A: \x00",))
    with pytest.raises(TypeError):
        handle.send("http://127.0.0.1/")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        handle.send("http://127.0.0.1/", (), bogus=1)  # type: ignore[call-arg]


# ---- send_draft: the request built in C ---------------------------------------------------


def test_send_draft_returns_the_receipt_on_202(serve: Callable[..., Server]) -> None:
    server = serve(lambda seen: Reply(headers=(("request-id", "rid-1"), ("Date", "D"))))
    handle = http_handle()
    prefix = server.base_url + "/v1.0"
    receipt = handle.send_draft(prefix, "adele@contoso.com", "AAMkAD/x+y=", TOKEN, None)
    assert isinstance(receipt, graphsend.Receipt)
    assert (receipt.status, receipt.request_id, receipt.date) == (202, "rid-1", "D")
    assert 0 < receipt.elapsed < 10 * SCALE
    (seen,) = server.requests
    path = "/v1.0/users/adele@contoso.com/messages/AAMkAD%2Fx%2By%3D/send"
    assert seen.lines[0] == f"POST {path} HTTP/1.1".encode()
    assert seen.header("authorization") == [TOKEN.split(": ", 1)[1]]
    assert seen.header("client-request-id") == [receipt.client_request_id]
    assert UUID4.fullmatch(receipt.client_request_id)
    # The caller's client-request-id is sent as given, from /me when user is None.
    again = handle.send_draft(prefix, None, "m", TOKEN, "crid-7")
    assert isinstance(again, graphsend.Receipt) and again.client_request_id == "crid-7"
    assert server.requests[1].lines[0] == b"POST /v1.0/me/messages/m/send HTTP/1.1"
    assert server.requests[1].header("client-request-id") == ["crid-7"]


def test_send_draft_returns_path_crid_and_result_otherwise(serve: Callable[..., Server]) -> None:
    server = serve(lambda seen: Reply(status=404, body=b'{"error": {}}'))
    got = http_handle().send_draft(server.base_url + "/v1.0", None, "a=b", TOKEN, "crid-1")
    assert not isinstance(got, graphsend.Receipt)
    path, crid, result = got
    assert (path, crid) == ("/me/messages/a%3Db/send", "crid-1")
    assert (result[STATUS], result[BODY], result[SENT]) == (404, b'{"error": {}}', True)


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        ((3, "m", TOKEN, None), TypeError, "user must be a str, not int"),
        (("", "m", TOKEN, None), ValueError, "user must not be empty"),
        ((None, "m\r\nX: 1", TOKEN, None), ValueError, "message_id must not contain control"),
        ((None, "\ud800", TOKEN, None), ValueError, "message_id must not contain control"),
        ((None, "m", TOKEN + "\r\nX: 1", None), ValueError, "CR, LF or NUL"),
        ((None, "m", TOKEN, ""), ValueError, "client_request_id must not be empty"),
        ((None, "m", TOKEN, "a\nb"), ValueError, "client_request_id must not contain control"),
        ((None, "m", TOKEN, b"x"), TypeError, "client_request_id must be a str, not bytes"),
    ],
)
def test_send_draft_checks_everything_before_the_wire(
    serve: Callable[..., Server], args: tuple[object, ...], error: type, message: str
) -> None:
    server = serve()
    with pytest.raises(error, match=message):
        http_handle().send_draft(server.base_url + "/v1.0", *args)  # type: ignore[arg-type]
    assert server.requests == []


@pytest.mark.parametrize(
    ("user", "message_id", "path"),
    [
        (None, "AAMk=", "/me/messages/AAMk%3D/send"),
        ("a.b@c.d", "x/y+z", "/users/a.b@c.d/messages/x%2Fy%2Bz/send"),
        ("é ü", "?#%", "/users/%C3%A9%20%C3%BC/messages/%3F%23%25/send"),
        (None, "..", "/me/messages/%2E%2E/send"),
        (".", "a.b", "/users/%2E/messages/a.b/send"),
        (None, "id@x", "/me/messages/id%40x/send"),  # "@" is kept in the user only
    ],
)
def test_send_path_encodes_each_part_as_one_segment(
    user: str | None, message_id: str, path: str
) -> None:
    assert native.send_path(user, message_id) == path


def test_check_text() -> None:
    assert native.check_text("x é", "what") == "x é"
    for bad, error in [("", ValueError), ("a\tb", ValueError), ("\u2028", ValueError)]:
        with pytest.raises(error, match=r"^what must"):
            native.check_text(bad, "what")
    with pytest.raises(TypeError, match="what must be a str, not NoneType"):
        native.check_text(None, "what")


def test_keyword_arguments_work(serve: Callable[..., Server]) -> None:
    server = serve()
    result = http_handle().send(headers=(CRID,), url=server.url())
    assert result[STATUS] == 202


def test_options_are_checked() -> None:
    with pytest.raises(TypeError):
        native.Handle(1)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        native.Handle(bogus=1)  # type: ignore[call-arg]
    with pytest.raises(ValueError):
        native.Handle(timeout_ms=-1)
    with pytest.raises(TypeError):
        native.Handle(share=object())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        native.Engine(check_signals=True)  # type: ignore[call-arg]


def test_https_only_unless_allowed(serve: Callable[..., Server]) -> None:
    server = serve()
    result = native.Handle().send(server.url(), ())
    assert result[CODE] == CURLE_UNSUPPORTED_PROTOCOL
    assert result[SENT] is False
    assert server.connections == 0


def test_redirects_are_not_followed(serve: Callable[..., Server]) -> None:
    server = serve(lambda seen: Reply(302, (("Location", "/elsewhere"),)))
    result = http_handle().send(server.url(), ())
    assert result[STATUS] == 302
    assert len(server.requests) == 1


# ---- the response -------------------------------------------------------------------------


def test_result_tuple_and_header_capture(serve: Callable[..., Server]) -> None:
    headers = (
        ("Request-Id", "5a1b"),
        ("CLIENT-REQUEST-ID", "  6f1b  "),
        ("Date", "Tue, 01 Jul 2025 10:00:00 GMT"),
        ("Retry-After", "0.249"),
        ("Content-Type", "application/json"),
        ("x-ms-ags-diagnostic", '{"ServerInfo":{"DataCenter":"West Europe"}}'),
        ("X-Other", "not kept"),
        ("Request-Id", "second copy"),
    )
    body = b'{"error":{"code":"ErrorAccessDenied"}}'
    server = serve(lambda seen: Reply(403, headers, body))
    result = http_handle().send(server.url(), ())
    assert isinstance(result, tuple) and len(result) == 7
    status, got, received, elapsed, code, error, sent = result
    assert (status, received, code, error, sent) == (403, body, 0, "", True)
    assert got == {
        "request-id": "5a1b",
        "client-request-id": "6f1b",
        "date": "Tue, 01 Jul 2025 10:00:00 GMT",
        "retry-after": "0.249",
        "content-type": "application/json",
        "x-ms-ags-diagnostic": '{"ServerInfo":{"DataCenter":"West Europe"}}',
    }
    assert isinstance(elapsed, float) and 0 < elapsed < 5 * SCALE


@pytest.mark.parametrize(
    ("raw", "status", "body", "request_id"),
    [
        pytest.param(
            b"HTTP/1.1 103 Early Hints\r\nrequest-id: early\r\ndate: early\r\n\r\n"
            b"HTTP/1.1 202 Accepted\r\nrequest-id: final\r\nContent-Length: 0\r\n\r\n",
            202,
            b"",
            "final",
            id="interim-response",
        ),
        pytest.param(
            b"HTTP/1.1 500 Oops\r\nrequest-id: real\r\nTransfer-Encoding: chunked\r\n"
            b"Trailer: request-id\r\n\r\n4\r\nbody\r\n0\r\nrequest-id: trailer\r\n\r\n",
            500,
            b"body",
            "real",
            id="trailers",
        ),
    ],
)
def test_only_the_final_response_head_is_kept(
    serve: Callable[..., Server], raw: bytes, status: int, body: bytes, request_id: str
) -> None:
    """Headers of an interim (1xx) response and trailers after a chunked body are not kept."""
    server = serve(lambda seen: Reply(action="raw", raw=raw))
    result = http_handle().send(server.url(), ())
    assert (result[STATUS], result[BODY]) == (status, body)
    assert result[HEADERS] == {"request-id": request_id}


def test_body_is_capped_and_the_rest_discarded(serve: Callable[..., Server]) -> None:
    big = bytes(range(256)) * (5 * 1024 * 1024 // 256)  # 5 MiB
    server = serve(lambda seen: Reply(500, body=big))
    handle = http_handle()
    start = time.monotonic()
    result = handle.send(server.url(), ())
    assert time.monotonic() - start < 3 * SCALE
    assert result[STATUS] == 500
    assert result[BODY] == big[: native.body_limit]
    assert result[CODE] == 0
    # The rest was read, not dropped with the connection: the next send reuses it.
    assert handle.send(server.url(), ())[BODY] == big[: native.body_limit]
    assert server.connections == 1


def test_connection_is_reused_across_sends(serve: Callable[..., Server]) -> None:
    server = serve()
    handle = http_handle()
    for _ in range(30):
        assert handle.send(server.url(), (TOKEN,))[STATUS] == 202
    assert len(server.requests) == 30
    assert server.connections == 1


# ---- the GIL ------------------------------------------------------------------------------


def test_sends_in_threads_run_in_parallel(serve: Callable[..., Server]) -> None:
    server = serve(lambda seen: Reply(delay=0.2))
    handles = [http_handle() for _ in range(8)]
    statuses: list[int] = []
    elapsed = in_threads(lambda h: statuses.append(h.send(server.url(), ())[STATUS]), handles)
    assert statuses == [202] * 8
    assert elapsed < 0.8 * SCALE, f"8 x 200 ms took {elapsed:.2f} s (serial: 1.6 s): GIL held?"


def test_other_threads_run_during_a_send(serve: Callable[..., Server]) -> None:
    server = serve(lambda seen: Reply(delay=0.3))
    handle = http_handle()
    with CountingThread() as counter:
        before = counter.count
        assert handle.send(server.url(), ())[STATUS] == 202
        progressed = counter.count - before
    assert progressed > 10_000 / SCALE, f"the counting thread advanced only {progressed} steps"


def test_two_threads_on_one_handle_get_runtime_error(serve: Callable[..., Server]) -> None:
    server = serve(lambda seen: Reply(delay=0.5))
    handle = http_handle()
    results: list[tuple] = []
    thread = threading.Thread(target=lambda: results.append(handle.send(server.url(), ())))
    thread.start()
    assert wait_until(lambda: server.requests)
    with pytest.raises(RuntimeError, match="another thread"):
        handle.send(server.url(), ())
    thread.join()
    assert results[0][STATUS] == 202
    assert handle.send(server.url(), ())[STATUS] == 202  # usable again once free


def test_many_threads_racing_one_handle_never_crash(serve: Callable[..., Server]) -> None:
    server = serve()
    handle = http_handle()
    outcomes: list[str] = []

    def hammer(_i: int) -> None:
        for _ in range(20):
            try:
                outcomes.append(str(handle.send(server.url(), ())[STATUS]))
            except RuntimeError:
                outcomes.append("busy")

    in_threads(hammer, range(6))
    assert len(outcomes) == 120
    assert set(outcomes) <= {"202", "busy"}
    assert outcomes.count("202") == len(server.requests)


# ---- transport failures and request_sent --------------------------------------------------


def test_timeout_after_the_request_was_written(serve: Callable[..., Server]) -> None:
    server = serve(lambda seen: Reply(action="stall"))
    result = http_handle(timeout_ms=300).send(server.url(), ())
    assert result[STATUS] == 0
    assert result[CODE] == CURLE_OPERATION_TIMEDOUT
    assert "timed out" in result[ERROR].lower()
    assert result[SENT] is True
    assert 0.25 < result[ELAPSED] < 2 * SCALE
    assert len(server.requests) == 1


def test_refused_connection_was_not_sent(refused_url: str) -> None:
    result = http_handle().send(f"{refused_url}{PATH}", ())
    assert (result[STATUS], result[CODE], result[SENT]) == (0, CURLE_COULDNT_CONNECT, False)
    assert result[ERROR]


def test_unresolvable_host_was_not_sent() -> None:
    result = http_handle(connect_timeout_ms=3000).send(f"http://graphsend-test.invalid{PATH}", ())
    assert result[STATUS] == 0
    assert result[CODE] in (CURLE_COULDNT_RESOLVE_HOST, CURLE_OPERATION_TIMEDOUT)
    assert result[SENT] is False


def test_tls_handshake_failure_was_not_sent(serve: Callable[..., Server]) -> None:
    server = serve(greeting=b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    result = native.Handle().send(f"https://127.0.0.1:{server.port}{PATH}", (TOKEN,))
    assert (result[STATUS], result[CODE], result[SENT]) == (0, CURLE_SSL_CONNECT_ERROR, False)


def test_untrusted_certificate_was_not_sent(
    serve: Callable[..., Server], tls: ssl.SSLContext
) -> None:
    server = serve(tls=tls)
    result = native.Handle().send(server.url(host="localhost"), (TOKEN,))
    assert (result[STATUS], result[CODE], result[SENT]) == (
        0,
        CURLE_PEER_FAILED_VERIFICATION,
        False,
    )
    assert server.requests == []


def test_https_with_ca_bundle(
    serve: Callable[..., Server], tls: ssl.SSLContext, cert: tuple[str, str, str]
) -> None:
    server = serve(tls=tls)
    handle = native.Handle(ca_bundle=cert[0])
    for _ in range(3):
        assert handle.send(server.url(host="localhost"), (TOKEN,))[STATUS] == 202
    assert server.connections == 1


def test_server_reads_then_closes(serve: Callable[..., Server]) -> None:
    server = serve(lambda seen: Reply(action="close"))
    result = http_handle().send(server.url(), ())
    assert (result[STATUS], result[CODE], result[SENT]) == (0, CURLE_GOT_NOTHING, True)


def test_server_reads_then_resets(serve: Callable[..., Server]) -> None:
    server = serve(lambda seen: Reply(action="reset"))
    result = http_handle().send(server.url(), ())
    assert result[STATUS] == 0
    assert result[CODE] in (CURLE_GOT_NOTHING, CURLE_RECV_ERROR)
    assert result[SENT] is True


def test_reused_connection_that_dies_is_not_resent(serve: Callable[..., Server]) -> None:
    """libcurl alone would send this POST a second time on a new connection (a duplicate mail)."""
    replies = iter([Reply(), Reply(action="close")])
    server = serve(lambda seen: next(replies, Reply()))
    handle = http_handle()
    assert handle.send(server.url(), ())[STATUS] == 202
    result = handle.send(server.url(), ())
    assert (result[STATUS], result[CODE], result[SENT]) == (0, CURLE_GOT_NOTHING, True)
    assert "resend" in result[ERROR]
    assert len(server.requests) == 2  # not 3
    assert handle.send(server.url(), ())[STATUS] == 202  # and the handle goes on


def test_proxy_refusing_connect_was_not_sent(cert: tuple[str, str, str]) -> None:
    with ConnectProxy(deny=True) as proxy:
        handle = native.Handle(proxy=proxy.url, ca_bundle=cert[0])
        result = handle.send(f"https://localhost:9{PATH}", (TOKEN,))
    assert result[STATUS] == 0  # the proxy's 403 is not Graph's answer
    assert result[CODE] != 0
    assert result[SENT] is False  # CONNECT bytes are not the request


def test_https_through_proxy_keeps_headers_from_the_proxy(
    serve: Callable[..., Server], tls: ssl.SSLContext, cert: tuple[str, str, str]
) -> None:
    server = serve(tls=tls)
    with ConnectProxy() as proxy:
        handle = native.Handle(proxy=proxy.url, ca_bundle=cert[0])
        result = handle.send(server.url(host="localhost"), (TOKEN, CRID))
    assert result[STATUS] == 202
    (connect,) = proxy.heads
    assert connect.startswith(f"CONNECT localhost:{server.port} ".encode())
    assert b"Bearer" not in connect and b"client-request-id" not in connect
    assert server.requests[0].header("authorization") == [TOKEN.split(": ", 1)[1]]


def test_proxy_none_follows_the_environment_and_empty_disables_it(
    serve: Callable[..., Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    origin, proxy = serve(), serve()
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{proxy.port}")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    assert http_handle().send(origin.url(), ())[STATUS] == 202
    # Tunnelled even for http (issue 9 item 5): this "proxy" answers the CONNECT with a 2xx and
    # then reads the POST itself.
    assert proxy.requests[0].lines[0] == f"CONNECT 127.0.0.1:{origin.port} HTTP/1.1".encode()
    assert proxy.requests[1].lines[0].startswith(b"POST /")
    assert http_handle(proxy="").send(origin.url(), ())[STATUS] == 202
    assert len(origin.requests) == 1 and len(proxy.requests) == 2


# ---- Ctrl-C, close, fork, share -----------------------------------------------------------


def _interrupt_after(seconds: float) -> threading.Timer:
    timer = threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    return timer


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals")
def test_ctrl_c_interrupts_a_send(serve: Callable[..., Server]) -> None:
    server = serve(lambda seen: Reply(action="stall") if len(server.requests) == 0 else Reply())
    handle = http_handle(check_signals=True, timeout_ms=10_000)
    timer = _interrupt_after(0.3 * SCALE)
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        handle.send(server.url(), ())
    late = time.monotonic() - start - 0.3 * SCALE
    timer.join()
    assert late < 0.3 * SCALE, f"Ctrl-C took {late:.2f} s to land"
    assert wait_until(lambda: server.client_closed == 1)  # the half-done transfer's connection
    assert handle.send(server.url(), ())[STATUS] == 202


def test_close_makes_the_handle_unusable(serve: Callable[..., Server]) -> None:
    server = serve()
    handle = http_handle()
    assert handle.send(server.url(), ())[STATUS] == 202
    assert handle.closed is False
    handle.close()
    assert handle.closed is True
    handle.close()  # twice is fine
    with pytest.raises(ValueError, match="closed"):
        handle.send(server.url(), ())
    assert wait_until(lambda: server.client_closed == 1)  # close() closed the connection


def test_share_between_threads(
    serve: Callable[..., Server], tls: ssl.SSLContext, cert: tuple[str, str, str]
) -> None:
    server = serve(tls=tls)
    share = native.Share()
    statuses: list[int] = []

    def worker(_i: int) -> None:
        handle = native.Handle(share=share, ca_bundle=cert[0])
        statuses.extend(handle.send(server.url(host="localhost"), ())[STATUS] for _ in range(10))
        handle.close()

    in_threads(worker, range(4))
    assert statuses == [202] * 40
    assert server.connections == 4  # connections are never shared, only DNS and TLS sessions


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_forked_child_leaves_the_parents_connection_alone(
    serve: Callable[..., Server], tls: ssl.SSLContext, cert: tuple[str, str, str]
) -> None:
    server = serve(tls=tls)
    share = native.Share()
    handle = native.Handle(share=share, ca_bundle=cert[0])
    engine = native.Engine(share=share, ca_bundle=cert[0])
    assert handle.send(server.url(host="localhost"), ())[STATUS] == 202
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: use nothing, then drop everything (a TLS close here would corrupt)
        code = 1
        try:
            try:
                handle.send(server.url(host="localhost"), ())
            except RuntimeError:
                code = 0
            for use in (lambda: engine.perform(0), lambda: engine.submit(1, "https://x/", ())):
                with contextlib.suppress(RuntimeError):
                    use()
                    code = 1
            with contextlib.suppress(RuntimeError):
                native.Handle(share=share)
                code = 1
            handle.close()
            del handle, engine, share
            gc.collect()
        finally:
            os.write(write_end, bytes([code]))
            os._exit(0)
    os.close(write_end)
    status = os.read(read_end, 1)
    os.close(read_end)
    os.waitpid(pid, 0)
    assert status == b"\x00", "the child could use the parent's handle"
    time.sleep(0.1 * SCALE)
    assert handle.send(server.url(host="localhost"), ())[STATUS] == 202
    assert server.connections == 1 and server.client_closed == 0


# ---- Engine ------------------------------------------------------------------------------


def drain(engine: native.Engine, count: int, limit: float = 10.0) -> dict[int, tuple]:
    """perform() until count results arrived; each tag at most once."""
    results: dict[int, tuple] = {}
    deadline = time.monotonic() + limit * SCALE
    while len(results) < count and time.monotonic() < deadline:
        for tag, result in engine.perform(0.5):
            assert tag not in results, f"tag {tag} finished twice"
            results[tag] = result
    return results


def http_engine(**options: object) -> native.Engine:
    options.setdefault("allow_http", True)
    options.setdefault("timeout_ms", int(10_000 * SCALE))
    return native.Engine(**options)  # type: ignore[arg-type]


def test_engine_runs_fifty_sends_and_cancels_some(serve: Callable[..., Server]) -> None:
    server = serve(lambda seen: Reply(delay=0.3))
    engine = http_engine()
    for tag in range(50):
        engine.submit(tag, server.url(f"/{tag}"), (TOKEN, f"client-request-id: {tag}"))
    cancelled = set(range(0, 50, 5))
    for tag in cancelled:
        engine.cancel(tag)
    start = time.monotonic()
    results = drain(engine, 50)
    assert time.monotonic() - start < 3 * SCALE  # concurrent, not 50 x 0.3 s
    assert set(results) == set(range(50))
    for tag, result in results.items():
        if tag in cancelled:
            assert (result[STATUS], result[CODE]) == (0, CURLE_ABORTED_BY_CALLBACK)
            assert result[ERROR] == "cancelled"
            assert result[SENT] is False  # cancelled before it ever ran
        else:
            assert (result[STATUS], result[CODE]) == (202, 0)
    served = {int(seen.lines[0].split()[1][1:]) for seen in server.requests}
    assert served == set(range(50)) - cancelled


def test_engine_returns_a_receipt_for_a_202_submitted_with_its_crid(
    serve: Callable[..., Server],
) -> None:
    server = serve(
        lambda seen: Reply(
            status=202 if b"/ok" in seen.head else 429,
            headers=(("request-id", "rid-" + seen.header("client-request-id")[0]),),
        )
    )
    engine = http_engine()
    engine.submit(1, server.url("/ok"), (TOKEN,), "c-1")  # the engine writes the crid line
    engine.submit(2, server.url("/ok"), (TOKEN, CRID))  # no crid: the Result tuple, as ever
    engine.submit(3, server.url("/no"), (TOKEN,), "c-3")
    with pytest.raises(ValueError, match="client_request_id must not contain control"):
        engine.submit(4, server.url("/ok"), (TOKEN,), "c\n4")
    results = drain(engine, 3)
    receipt = results[1]
    assert isinstance(receipt, graphsend.Receipt)
    assert (receipt.status, receipt.request_id, receipt.client_request_id) == (
        202,
        "rid-c-1",
        "c-1",
    )
    assert not isinstance(results[2], graphsend.Receipt) and results[2][STATUS] == 202
    assert not isinstance(results[3], graphsend.Receipt) and results[3][STATUS] == 429
    assert len(server.requests) == 3  # the bad one never reached the queue
    for seen in server.requests:  # exactly one client-request-id line each
        assert len(seen.header("client-request-id")) == 1


def test_engine_http2_option_does_not_hold_back_plain_http(serve: Callable[..., Server]) -> None:
    """PIPEWAIT applies to https only: on http it would wait for a connection that never
    multiplexes, and the transfers would run in two rounds instead of one."""
    arrivals: list[float] = []

    def reply(seen: Seen) -> Reply:
        arrivals.append(time.monotonic())
        return Reply(delay=0.3)

    server = serve(reply)
    engine = http_engine(http2=True)
    for tag in range(10):
        engine.submit(tag, server.url(), ())
    results = drain(engine, 10)
    assert [results[t][STATUS] for t in range(10)] == [202] * 10
    # One round: every request reached the server before the first answer (0.3 s) came back.
    # (Arrival times, not the total: a loaded machine stretches the total, not the rounds.)
    assert max(arrivals) - min(arrivals) < 0.25 * SCALE, arrivals


def test_engine_cancel_in_flight(serve: Callable[..., Server]) -> None:
    server = serve(lambda seen: Reply(action="stall"))
    engine = http_engine()
    engine.submit(7, server.url(), ())
    assert wait_until(lambda: engine.perform(0.05) == [] and server.requests)
    engine.cancel(7)
    engine.cancel(12345)  # unknown tags are ignored
    ((tag, result),) = engine.perform(1.0 * SCALE)
    assert (tag, result[CODE], result[SENT]) == (7, CURLE_ABORTED_BY_CALLBACK, True)
    assert wait_until(lambda: server.client_closed == 1)


def test_engine_reuses_connections_and_handles(serve: Callable[..., Server]) -> None:
    server = serve()
    engine = http_engine()
    for tag in range(30):
        engine.submit(tag, server.url(), ())
        assert drain(engine, 1)[tag][STATUS] == 202
    assert server.connections == 1


def test_submit_from_another_thread_wakes_perform(serve: Callable[..., Server]) -> None:
    server = serve()
    engine = http_engine()
    timer = threading.Timer(0.2, engine.submit, (1, server.url(), ()))
    start = time.monotonic()
    timer.start()
    first = engine.perform(5.0 * SCALE)
    woke = time.monotonic() - start
    timer.join()
    assert woke < 1.0 * SCALE, f"perform() slept {woke:.2f} s through a submit()"
    results = dict(first) | drain(engine, 1 - len(first))
    assert results[1][STATUS] == 202


def test_wakeup_interrupts_perform_and_is_not_lost() -> None:
    engine = http_engine()
    timer = threading.Timer(0.2, engine.wakeup)
    start = time.monotonic()
    timer.start()
    assert engine.perform(5.0 * SCALE) == []
    assert time.monotonic() - start < 1.0 * SCALE
    timer.join()
    engine.wakeup()  # before perform(): the next perform() returns at once
    start = time.monotonic()
    assert engine.perform(5.0 * SCALE) == []
    assert time.monotonic() - start < 0.5 * SCALE


def test_idle_perform_waits_without_spinning_and_releases_the_gil() -> None:
    engine = http_engine()
    with CountingThread(pause=0.001) as counter:  # counts each millisecond it gets to run
        cpu, wall = time.thread_time(), time.monotonic()
        assert engine.perform(0.5) == []
    assert 0.45 < time.monotonic() - wall < 1.5 * SCALE
    assert time.thread_time() - cpu < 0.05 * SCALE, "perform() burned CPU while idle"
    assert counter.count > 50 / SCALE


def test_two_threads_in_perform_get_runtime_error() -> None:
    engine = http_engine()
    thread = threading.Thread(target=engine.perform, args=(1.0 * SCALE,))
    thread.start()
    time.sleep(0.2 * SCALE)
    with pytest.raises(RuntimeError, match="another thread"):
        engine.perform(0)
    with pytest.raises(RuntimeError, match="another thread"):
        engine.close()
    engine.wakeup()
    thread.join()


def test_engine_close_semantics(serve: Callable[..., Server]) -> None:
    server = serve(lambda seen: Reply(action="stall"))
    engine = http_engine()
    engine.submit(1, server.url(), ())
    assert wait_until(lambda: engine.perform(0.05) == [] and server.requests)
    engine.submit(2, server.url(), ())  # queued, never started
    engine.close()
    assert engine.closed is True
    engine.close()
    for call in (
        lambda: engine.submit(3, server.url(), ()),
        lambda: engine.perform(0),
        lambda: engine.cancel(1),
        engine.wakeup,
    ):
        with pytest.raises(ValueError, match="closed"):
            call()
    assert wait_until(lambda: server.client_closed == 1)


def test_engine_transport_failures_are_results(refused_url: str) -> None:
    engine = http_engine()
    engine.submit(1, f"{refused_url}/", ())
    engine.submit(2, "ftp://127.0.0.1/", ())
    results = drain(engine, 2)
    assert (results[1][CODE], results[1][SENT]) == (CURLE_COULDNT_CONNECT, False)
    assert (results[2][CODE], results[2][SENT]) == (CURLE_UNSUPPORTED_PROTOCOL, False)


def test_engine_timeouts_fire_from_libcurls_timer(serve: Callable[..., Server]) -> None:
    """No socket activity at all: only libcurl's timer can end the transfer."""
    server = serve(lambda seen: Reply(action="stall"))
    engine = http_engine(timeout_ms=int(300 * SCALE))
    start = time.monotonic()
    engine.submit(1, server.url(), ())
    result = drain(engine, 1)[1]
    assert (result[CODE], result[SENT]) == (CURLE_OPERATION_TIMEDOUT, True)
    assert 0.25 * SCALE < time.monotonic() - start < 2 * SCALE


def test_perform_with_no_wait_still_drives_transfers(serve: Callable[..., Server]) -> None:
    server = serve(lambda seen: Reply(delay=0.05))
    engine = http_engine()
    for tag in range(5):
        engine.submit(tag, server.url(), ())
    results: dict[int, tuple] = {}
    deadline = time.monotonic() + 5 * SCALE
    while len(results) < 5 and time.monotonic() < deadline:
        results.update(engine.perform(0.0))  # never waits, so only perform(0) can progress
        time.sleep(0.005)
    assert sorted(results) == list(range(5))
    assert all(r[STATUS] == 202 for r in results.values())


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals")
def test_ctrl_c_in_perform_aborts_and_keeps_results(serve: Callable[..., Server]) -> None:
    server = serve(
        lambda seen: Reply(action="stall") if seen.lines[0].split()[1] == b"/s" else Reply()
    )
    engine = http_engine()
    engine.submit(1, server.url("/s"), ())
    engine.submit(2, server.url("/ok"), ())
    results: dict[int, tuple] = {}
    assert wait_until(lambda: results.update(engine.perform(0.05)) or len(server.requests) == 2)
    timer = _interrupt_after(0.3 * SCALE)
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        while True:
            results.update(engine.perform(10.0 * SCALE, check_signals=True))
    assert time.monotonic() - start < 0.7 * SCALE
    timer.join()
    results.update(engine.perform(0))  # what the interrupted call had finished or aborted
    assert results[2][STATUS] == 202
    assert (results[1][CODE], results[1][SENT]) == (CURLE_ABORTED_BY_CALLBACK, True)
    assert engine.perform(0) == []


def test_perform_arguments_are_checked() -> None:
    engine = http_engine()
    with pytest.raises(ValueError):
        engine.perform(-1)
    with pytest.raises(ValueError):
        engine.perform(float("nan"))
    with pytest.raises(TypeError):
        engine.perform("1")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        engine.submit("tag", "http://x/", ())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        engine.submit(1, "http://x/", "Authorization: x")  # type: ignore[arg-type]
    assert engine.perform(timeout=0, check_signals=False) == []


NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)


@pytest.mark.skipif(not native.http2_supported or NGINX is None, reason="needs HTTP/2 and nginx")
def test_engine_multiplexes_http2_on_one_connection(
    tmp_path: Path, cert: tuple[str, str, str], serve: Callable[..., Server]
) -> None:
    stall = serve(lambda seen: Reply(action="stall"))
    port = free_port()
    kinds = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    temp = " ".join(f"{kind}_temp_path {tmp_path};" for kind in kinds)
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"""
        daemon off; master_process off; worker_processes 1; pid {tmp_path}/nginx.pid;
        error_log {tmp_path}/error.log;
        events {{ worker_connections 64; }}
        http {{
            access_log off; {temp}
            server {{
                listen 127.0.0.1:{port} ssl http2;
                ssl_certificate {cert[1]}; ssl_certificate_key {cert[2]};
                location /stall {{ proxy_pass http://127.0.0.1:{stall.port}; }}
                location / {{ add_header request-id $connection always; return 202; }}
            }}
        }}
        """
    )
    nginx = subprocess.Popen([NGINX, "-c", str(conf), "-p", str(tmp_path)], stderr=subprocess.PIPE)
    try:
        assert wait_until(lambda: _connects(port), 5)
        engine = native.Engine(http2=True, ca_bundle=cert[0], timeout_ms=int(1500 * SCALE))
        for tag in range(20):
            engine.submit(tag, f"https://localhost:{port}/{tag}", (TOKEN,))
        engine.submit(99, f"https://localhost:{port}/stall", (TOKEN,))
        results = drain(engine, 21)
    finally:
        nginx.terminate()
        nginx.wait(5)
    assert [results[t][STATUS] for t in range(20)] == [202] * 20
    assert len({results[t][HEADERS]["request-id"] for t in range(20)}) == 1  # one connection
    # Over HTTP/2 too, a request that went out and got no answer is reported as sent.
    assert (results[99][CODE], results[99][SENT]) == (CURLE_OPERATION_TIMEDOUT, True)


def _connects(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def test_result_types_for_the_stub() -> None:
    """The .pyi must stay in step with the module: every public name is declared there."""
    stub = Path(native.__file__).with_name("_native.pyi").read_text()
    for name in dir(native):
        if not name.startswith("_"):
            assert name in stub, f"{name} missing from _native.pyi"
    for cls in (native.Share, native.Handle, native.Engine):
        for name in dir(cls):
            if not name.startswith("_"):
                assert f"def {name}" in stub or f"{name}:" in stub, f"{cls.__name__}.{name}"
    assert sys.modules["graphsend._native"] is native
