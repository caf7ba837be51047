"""Issue 9 (hardening), the native layer's items: each test is named after its item
(test_i9_NN_...) and failed on f71b094. Real servers on loopback (tests/loopback.py); the slow
DNS and failing epoll_ctl come from small LD_PRELOAD shims the tests compile themselves and run
in a child process, never from a mock of libcurl.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from loopback import ConnectProxy, Reply, Server

import graphsend
from graphsend import _native as native

TOKEN = "Authorization: Bearer eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.e30.sig"
STATUS, HEADERS, BODY, ELAPSED, CODE, ERROR, SENT = range(7)
CURLE_OPERATION_TIMEDOUT = 28
CURLE_ABORTED_BY_CALLBACK = 42
SCALE = float(os.environ.get("GRAPHSEND_TIME_SCALE", "1"))
TESTS = Path(__file__).resolve().parent


def wait_until(condition: Callable[[], object], seconds: float = 2.0) -> bool:
    deadline = time.monotonic() + seconds * SCALE
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return bool(condition())


def http_handle(**options: object) -> native.Handle:
    options.setdefault("allow_http", True)
    options.setdefault("timeout_ms", int(10_000 * SCALE))
    return native.Handle(**options)  # type: ignore[arg-type]


def drain(engine: native.Engine, tags: set[int], limit: float) -> dict[int, tuple]:
    results: dict[int, tuple] = {}
    deadline = time.monotonic() + limit
    while not tags <= results.keys() and time.monotonic() < deadline:
        for tag, result in engine.perform(0.2):
            results[tag] = result
    return results


# ---- LD_PRELOAD shims, compiled by the tests --------------------------------------------------

SLOW_DNS_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Names containing "slow" take SLOW_DNS_SECONDS and then do not resolve; the rest as usual. */
int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res)
{
    typedef int (*real_fn)(const char *, const char *, const struct addrinfo *,
                           struct addrinfo **);
    if (node != NULL && strstr(node, "slow") != NULL) {
        const char *s = getenv("SLOW_DNS_SECONDS");
        double seconds = s != NULL ? atof(s) : 3.0;
        struct timespec ts = {(time_t)seconds, (long)((seconds - (time_t)seconds) * 1e9)};
        while (nanosleep(&ts, &ts) != 0)
            ;
        return EAI_NONAME;
    }
    return ((real_fn)dlsym(RTLD_NEXT, "getaddrinfo"))(node, service, hints, res);
}
"""

FAILING_EPOLL_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <sys/epoll.h>
#include <sys/stat.h>

/* Adding or changing a socket in an epoll set fails with ENOMEM; the eventfd still works. */
int epoll_ctl(int epfd, int op, int fd, struct epoll_event *event)
{
    typedef int (*real_fn)(int, int, int, struct epoll_event *);
    struct stat st;
    if ((op == EPOLL_CTL_ADD || op == EPOLL_CTL_MOD) && fstat(fd, &st) == 0 &&
        S_ISSOCK(st.st_mode)) {
        errno = ENOMEM;
        return -1;
    }
    return ((real_fn)dlsym(RTLD_NEXT, "epoll_ctl"))(epfd, op, fd, event);
}
"""


def _compile(source: str, directory: Path, name: str) -> str:
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        pytest.skip("needs a C compiler to build the LD_PRELOAD shim")
    src = directory / f"{name}.c"
    lib = directory / f"{name}.so"
    src.write_text(source)
    subprocess.run(
        [compiler, "-shared", "-fPIC", "-O1", "-o", str(lib), str(src), "-ldl"],
        check=True,
        capture_output=True,
    )
    return str(lib)


@pytest.fixture(scope="module")
def slow_dns(tmp_path_factory: pytest.TempPathFactory) -> str:
    return _compile(SLOW_DNS_C, tmp_path_factory.mktemp("shim"), "slowdns")


@pytest.fixture(scope="module")
def failing_epoll(tmp_path_factory: pytest.TempPathFactory) -> str:
    return _compile(FAILING_EPOLL_C, tmp_path_factory.mktemp("shim"), "failepoll")


def run_child(code: str, preload: str, **env: str) -> dict:
    """Run code in a fresh interpreter with the shim preloaded; it prints one JSON object."""
    child_env = dict(os.environ, **env)
    # After anything already preloaded (libasan under `make asan` must stay first), but not
    # valgrind's own preloads (under `make memcheck`): valgrind drops an LD_PRELOAD that starts
    # with them from the environment of a child it does not trace, our shim included.
    inherited = os.environ.get("LD_PRELOAD", "").replace(":", " ").split()
    kept = [lib for lib in inherited if "/valgrind/" not in lib]
    child_env["LD_PRELOAD"] = " ".join([*kept, preload])
    paths = [str(TESTS), *filter(None, [os.environ.get("PYTHONPATH")])]
    child_env["PYTHONPATH"] = os.pathsep.join(paths)
    child_env["GRAPHSEND_TIME_SCALE"] = str(SCALE)
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=child_env,
        capture_output=True,
        text=True,
        timeout=60 * SCALE,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---- item 3: close() while another thread is mid-send -----------------------------------------


def test_i9_03_close_during_a_send_in_another_thread_closes_when_it_lets_go(
    serve: Callable[..., Server],
) -> None:
    server = serve(lambda seen: Reply(delay=0.5 * SCALE))
    handle = http_handle()
    results: list[tuple] = []
    thread = threading.Thread(target=lambda: results.append(handle.send(server.url(), ())))
    thread.start()
    assert wait_until(lambda: server.requests)
    handle.close()  # f71b094: RuntimeError, and the handle stayed open
    assert handle.closed is True
    with pytest.raises(ValueError, match="closed"):
        handle.send(server.url(), ())
    thread.join()
    assert results[0][STATUS] == 202  # the send in flight was not cut short
    assert wait_until(lambda: server.client_closed == 1)  # freed when its thread let go
    with pytest.raises(ValueError, match="closed"):
        handle.send_draft(server.base_url, None, "AAMk", TOKEN, None)
    assert len(server.requests) == 1


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals")
def test_i9_03_close_from_a_signal_handler_during_a_send(serve: Callable[..., Server]) -> None:
    server = serve(lambda seen: Reply(delay=0.5 * SCALE))
    handle = http_handle(check_signals=True)
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: handle.close())
    timer = threading.Timer(0.2 * SCALE, os.kill, (os.getpid(), signal.SIGUSR1))
    try:
        timer.start()
        assert handle.send(server.url(), ())[STATUS] == 202
    finally:
        timer.join()
        signal.signal(signal.SIGUSR1, previous)
    assert handle.closed is True
    with pytest.raises(ValueError, match="closed"):
        handle.send(server.url(), ())


# ---- item 5: through a proxy, only CONNECT ----------------------------------------------------


def test_i9_05_plain_http_through_a_proxy_is_tunnelled(serve: Callable[..., Server]) -> None:
    server = serve()
    with ConnectProxy() as proxy:
        handle = http_handle(proxy=proxy.url)
        result = handle.send(server.url(), (TOKEN,))
    assert result[STATUS] == 202
    assert proxy.heads, "the proxy was not used"
    for head in proxy.heads:
        assert head.startswith(f"CONNECT 127.0.0.1:{server.port} ".encode()), head
        assert b"authorization" not in head.lower() and b"Bearer" not in head
    assert server.requests[0].header("authorization") == [TOKEN.split(": ", 1)[1]]


# ---- item 6: no proxy password in error texts -------------------------------------------------

SECRET_PROXIES = [
    ("http://alice:S3cretPw@@proxy:3128", "S3cretPw"),
    ("foo://user:pw0rdXyz@host", "pw0rdXyz"),
    ("alice:S3cretPw@@proxy:3128", "S3cretPw"),
]


@pytest.mark.parametrize(("proxy", "secret"), SECRET_PROXIES)
def test_i9_06_native_error_text_hides_the_proxy_password(proxy: str, secret: str) -> None:
    result = http_handle(proxy=proxy).send("http://graph.example.invalid/x", ())
    assert result[CODE] != 0
    assert secret not in result[ERROR]
    assert "***@" in result[ERROR] or "proxy" in result[ERROR].lower()


@pytest.mark.parametrize("variable", ["https_proxy", "HTTPS_PROXY"])
@pytest.mark.parametrize(("proxy", "secret"), SECRET_PROXIES[:2])
def test_i9_06_client_error_and_logs_hide_the_environment_proxy_password(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    variable: str,
    proxy: str,
    secret: str,
) -> None:
    for name in ("https_proxy", "HTTPS_PROXY", "no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, proxy)
    caplog.set_level(logging.DEBUG)
    error: Exception | None = None
    try:  # refusing the proxy at construction would do as well as failing the send
        client = graphsend.Client(
            "token",
            base_url="https://graph.example.invalid",
            retry=graphsend.Retry(max_attempts=1),
        )
        try:
            client.send("AAMkAD", user="adele@contoso.com")
        finally:
            client.close()
    except (graphsend.SendError, ValueError) as exc:
        error = exc
    assert error is not None, "a malformed proxy did not fail"
    texts = [str(error), repr(error), *map(str, error.args)]
    cause = error.__cause__ or error.__context__
    if cause is not None:
        texts += [str(cause), repr(cause)]
    texts += [record.getMessage() for record in caplog.records]
    assert all(secret not in text for text in texts), texts


# Review of issue 11, defect 3: a password holding a quote or a backtick (libcurl quotes the
# proxy URL in its messages: a token must not end there).
QUOTED_PROXIES = [f"http://alice:S3cret{q}Pw9x@@proxy:3128" for q in ("'", '"', "`")]


@pytest.mark.parametrize("proxy", QUOTED_PROXIES)
def test_r11_3_native_error_text_hides_a_quoted_proxy_password(proxy: str) -> None:
    result = http_handle(proxy=proxy).send("http://graph.example.invalid/x", ())
    assert result[CODE] != 0
    assert "S3cret" not in result[ERROR] and "Pw9x" not in result[ERROR], result[ERROR]


@pytest.mark.parametrize("proxy", QUOTED_PROXIES)
def test_r11_3_client_error_and_logs_hide_a_quoted_environment_proxy_password(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, proxy: str
) -> None:
    for name in ("https_proxy", "HTTPS_PROXY", "no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("https_proxy", proxy)
    caplog.set_level(logging.DEBUG)
    client = graphsend.Client(
        "token", base_url="https://graph.example.invalid", retry=graphsend.Retry(max_attempts=1)
    )
    try:
        with pytest.raises(graphsend.SendError) as info:
            client.send("AAMkAD", user="adele@contoso.com")
    finally:
        client.close()
    texts = [str(info.value), repr(info.value), str(getattr(info.value, "reason", ""))]
    texts += [record.getMessage() for record in caplog.records]
    assert all("S3cret" not in t and "Pw9x" not in t for t in texts), texts


# ---- item 9: teardown and the GIL during a slow DNS lookup ------------------------------------


def test_i9_09a_other_threads_run_while_a_resolving_transfer_is_torn_down(slow_dns: str) -> None:
    out = run_child(
        """
        import json, threading, time
        from graphsend import _native as native

        ticks, stop = [], threading.Event()
        def tick():
            while not stop.is_set():
                ticks.append(time.monotonic())
                time.sleep(0.005)
        threading.Thread(target=tick, daemon=True).start()
        engine = native.Engine(allow_http=True)
        engine.submit(1, "http://a.slow.test/x", ())
        engine.perform(0.3)  # now resolving
        t0 = time.monotonic()
        engine.close()
        t1 = time.monotonic()
        time.sleep(0.2)
        stop.set()
        marks = [t0] + [t for t in ticks if t0 < t < t1 + 0.1] + [t1 + 0.1]
        gap = max(b - a for a, b in zip(marks, marks[1:]))
        print(json.dumps({"close": t1 - t0, "gap": gap}))
        """,
        slow_dns,
        SLOW_DNS_SECONDS="3",
    )
    assert out["gap"] < 0.5 * SCALE, out  # f71b094: the GIL was held for the whole 3 s lookup


@pytest.mark.skipif(
    not getattr(native, "async_dns", True), reason="libcurl without an asynchronous resolver"
)
def test_i9_09b_ctrl_c_during_a_dns_lookup_stops_the_send(slow_dns: str) -> None:
    out = run_child(
        """
        import json, os, signal, threading, time
        from graphsend import _native as native

        handle = native.Handle(allow_http=True, check_signals=True, timeout_ms=30000)
        threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
        t0 = time.monotonic()
        try:
            handle.send("http://b.slow.test/x", ())
            outcome = "returned"
        except KeyboardInterrupt:
            outcome = "KeyboardInterrupt"
        print(json.dumps({"outcome": outcome, "late": time.monotonic() - t0 - 0.3}))
        """,
        slow_dns,
        SLOW_DNS_SECONDS="3",
    )
    assert out["outcome"] == "KeyboardInterrupt"
    assert out["late"] < 1.0 * SCALE, out  # f71b094: about 2.7 s


@pytest.mark.skipif(
    not getattr(native, "async_dns", True), reason="libcurl without an asynchronous resolver"
)
def test_i9_09c_timeout_during_a_dns_lookup_fires_on_time(slow_dns: str) -> None:
    out = run_child(
        """
        import json, time
        from graphsend import _native as native

        handle = native.Handle(allow_http=True, timeout_ms=500)
        t0 = time.monotonic()
        result = handle.send("http://c.slow.test/x", ())
        print(json.dumps({"code": result[4], "wall": time.monotonic() - t0}))
        """,
        slow_dns,
        SLOW_DNS_SECONDS="4",
    )
    assert out["code"] == CURLE_OPERATION_TIMEDOUT
    assert out["wall"] < 1.5 * SCALE, out  # f71b094: the whole 4 s lookup


@pytest.mark.skipif(
    not getattr(native, "async_dns", True), reason="libcurl without an asynchronous resolver"
)
def test_i9_09d_cancel_of_a_resolving_transfer_does_not_stall_the_others(slow_dns: str) -> None:
    out = run_child(
        """
        import json, time
        from loopback import Server
        from graphsend import _native as native

        server = Server()
        engine = native.Engine(allow_http=True)
        engine.submit(1, "http://d.slow.test/x", ())
        engine.perform(0.3)  # tag 1 is resolving
        t0 = time.monotonic()
        engine.cancel(1)
        for tag in range(2, 7):
            engine.submit(tag, server.url(), ())
        done = {}
        while len(done) < 6 and time.monotonic() - t0 < 20:
            for tag, result in engine.perform(0.2):
                done[tag] = [result[0], result[4], time.monotonic() - t0]
        engine.close()
        server.close()
        print(json.dumps(done))
        """,
        slow_dns,
        SLOW_DNS_SECONDS="3",
    )
    assert out["1"][1] == CURLE_ABORTED_BY_CALLBACK
    for tag in map(str, range(2, 7)):
        assert out[tag][0] == 202
        assert out[tag][2] < 1.0 * SCALE, out  # f71b094: all waited for the 3 s lookup


# ---- item 10: submit() + wakeup() must not starve the transfers in flight ---------------------


def test_i9_10_a_stream_of_submit_and_wakeup_does_not_starve_transfers(
    serve: Callable[..., Server],
) -> None:
    server = serve(lambda seen: Reply(delay=0.05))
    engine = native.Engine(allow_http=True, timeout_ms=int(10_000 * SCALE))
    for tag in range(10):
        engine.submit(tag, server.url(), ())
    # Work handed over before every perform(), as an event loop submitting and waking steadily
    # does from its thread; done in one thread here so that every call sees a hand-over (with a
    # second thread, how often that happens is up to the GIL's scheduling).
    # An unsupported scheme ends at once without I/O: only the hand-over matters.
    results: dict[int, tuple] = {}
    tag, deadline = 1000, time.monotonic() + 3.0 * SCALE
    try:
        while not set(range(10)) <= results.keys() and time.monotonic() < deadline:
            engine.submit(tag, "gopher://127.0.0.1/x", ())
            engine.wakeup()
            tag += 1
            results.update(engine.perform(0.2))
    finally:
        engine.close()
    finished = sorted(t for t in results if t < 10)
    assert finished == list(range(10)), (
        f"only {finished} of 10 in {tag - 1000} calls"
    )  # f71b094: none
    assert all(results[t][STATUS] == 202 for t in range(10))


# ---- item 11: the User-Agent goes through the header-line check -------------------------------


@pytest.mark.parametrize("agent", ["ua\r\nX-Injected: yes", "ua\nX-Injected: yes", "ua\rX"])
def test_i9_11_user_agent_with_a_line_break_is_refused(
    serve: Callable[..., Server], agent: str
) -> None:
    server = serve()
    with pytest.raises(ValueError, match="user_agent"):
        handle = http_handle(user_agent=agent)
        handle.send(server.url(), ())
    with pytest.raises(ValueError, match="user_agent"):
        engine = native.Engine(allow_http=True, user_agent=agent)
        engine.submit(1, server.url(), ())
        drain(engine, {1}, 2.0 * SCALE)
    assert server.requests == []
    with pytest.raises(TypeError, match="user_agent"):
        native.Handle(user_agent=b"ua")  # type: ignore[arg-type]


# ---- item 12: fork, same-thread re-entry, str subclasses --------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_i9_12_handle_busy_in_another_thread_at_fork_can_be_closed_in_the_child(
    serve: Callable[..., Server],
) -> None:
    server = serve(lambda seen: Reply(delay=0.5 * SCALE))
    handle = http_handle()
    results: list[tuple] = []
    thread = threading.Thread(target=lambda: results.append(handle.send(server.url(), ())))
    thread.start()
    assert wait_until(lambda: server.requests)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the sending thread does not exist here, but its busy flag does
        report: dict[str, object] = {}
        try:
            try:
                handle.send(server.url(), ())
            except Exception as exc:
                report["send"] = f"{type(exc).__name__}: {exc}"
            try:
                handle.close()
                report["close"] = "ok"
            except Exception as exc:
                report["close"] = f"{type(exc).__name__}: {exc}"
            report["closed"] = handle.closed
        finally:
            os.write(write_end, json.dumps(report).encode())
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        report = json.loads(pipe.read())
    os.waitpid(pid, 0)
    thread.join()
    assert "another process" in report["send"], report  # f71b094: "in use by another thread"
    assert report["close"] == "ok" and report["closed"] is True, report
    assert results[0][STATUS] == 202
    assert handle.send(server.url(), ())[STATUS] == 202  # the parent's handle is untouched


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_i9_12_engine_busy_in_another_thread_at_fork_can_be_closed_in_the_child() -> None:
    engine = native.Engine(allow_http=True)
    inside = threading.Event()

    def drive() -> None:
        inside.set()
        engine.perform(1.0 * SCALE)  # idle: waits until the wakeup below

    thread = threading.Thread(target=drive)
    thread.start()
    assert inside.wait(5)
    time.sleep(0.1)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        report: dict[str, object] = {}
        try:
            try:
                engine.perform(0)
            except Exception as exc:
                report["perform"] = f"{type(exc).__name__}: {exc}"
            try:
                engine.close()
                report["close"] = "ok"
            except Exception as exc:
                report["close"] = f"{type(exc).__name__}: {exc}"
            report["closed"] = engine.closed
        finally:
            os.write(write_end, json.dumps(report).encode())
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        report = json.loads(pipe.read())
    os.waitpid(pid, 0)
    engine.wakeup()
    thread.join()
    engine.close()
    assert "another process" in report["perform"], report  # f71b094: "another thread"
    assert report["close"] == "ok" and report["closed"] is True, report


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals")
def test_i9_12_reentry_from_a_signal_handler_is_not_called_another_thread(
    serve: Callable[..., Server],
) -> None:
    server = serve(lambda seen: Reply(delay=0.5 * SCALE))
    handle = http_handle(check_signals=True)
    errors: list[str] = []

    def handler(signum: int, frame: object) -> None:
        try:
            handle.send(server.url(), ())
        except RuntimeError as exc:
            errors.append(str(exc))

    previous = signal.signal(signal.SIGUSR1, handler)
    timer = threading.Timer(0.2 * SCALE, os.kill, (os.getpid(), signal.SIGUSR1))
    try:
        timer.start()
        assert handle.send(server.url(), ())[STATUS] == 202
    finally:
        timer.join()
        signal.signal(signal.SIGUSR1, previous)
    assert len(errors) == 1
    assert "re-entered from the same thread" in errors[0], errors  # f71b094: "another thread"
    assert "another thread" not in errors[0]
    assert len(server.requests) == 1


def test_i9_12_check_text_never_runs_a_str_subclass_method() -> None:
    calls: list[str] = []

    class Sneaky(str):
        def isprintable(self) -> bool:
            calls.append(str(self))
            return True

    with pytest.raises(ValueError, match="control characters"):
        native.check_text(Sneaky("caf\u00e9\u0085"), "message_id")  # U+0085 does not print
    assert native.check_text(Sneaky("caf\u00e9"), "message_id") == "caf\u00e9"
    with pytest.raises(ValueError, match="control characters"):
        native.send_path(None, Sneaky("caf\u00e9\u2028"))
    assert calls == []


# ---- item 14: epoll failures, folded headers, control bytes, async DNS -------------------------


def test_i9_14_epoll_ctl_failure_fails_the_transfer_not_the_engine(failing_epoll: str) -> None:
    out = run_child(
        """
        import json, time
        from loopback import Server
        from graphsend import _native as native

        server = Server()
        engine = native.Engine(allow_http=True, timeout_ms=20000)
        for tag in range(3):
            engine.submit(tag, server.url(), ())
        done, error = {}, None
        t0 = time.monotonic()
        try:
            while len(done) < 3 and time.monotonic() - t0 < 10:
                for tag, result in engine.perform(0.2):
                    done[tag] = [result[4], result[5], result[6]]
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        engine.close()
        server.close()
        print(json.dumps({"done": done, "error": error}))
        """,
        failing_epoll,
    )
    assert out["error"] is None, out  # f71b094: perform() raised and no tag got a result
    assert sorted(out["done"]) == ["0", "1", "2"], out
    for code, error, _sent in out["done"].values():
        assert code != 0 and "epoll_ctl" in error, out


def test_i9_14_folded_headers_are_joined_and_control_bytes_replaced(
    serve: Callable[..., Server],
) -> None:
    head = (
        b"HTTP/1.1 503 Unavailable\r\n"
        b"request-id: 1e3f0a\r\n"
        b" 9b2c-tail\r\n"
        b"\t-more\r\n"
        # (libcurl itself fails a response with a NUL in its head: "Nul byte in header".)
        b"x-ms-ags-diagnostic: a\x01b\x7fc\x1bd\re\x0bf\r\n"
        b"Retry-After: 7\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    server = serve(lambda seen: Reply(action="raw", raw=head))
    result = http_handle().send(server.url(), ())
    assert result[STATUS] == 503, result
    headers = result[HEADERS]
    assert headers["request-id"] == "1e3f0a 9b2c-tail -more"  # f71b094: "1e3f0a"
    diagnostic = headers["x-ms-ags-diagnostic"]
    assert all(ch >= " " and ch != "\x7f" for ch in diagnostic), repr(diagnostic)
    assert diagnostic.replace(" ", "") == "abcdef"
    assert headers["retry-after"] == "7"


def test_i9_14_async_resolver_is_reported() -> None:
    # Without one, timeouts and Ctrl-C cannot end a DNS lookup: import warns (RuntimeWarning).
    assert isinstance(native.async_dns, bool)
    assert native.async_dns, "this libcurl resolves synchronously"


# ---- item 13: sub-interpreters ----------------------------------------------------------------


@pytest.mark.skipif(
    getattr(native, "limited_api", True), reason="abi3 builds cannot declare per-interpreter GIL"
)
@pytest.mark.skipif(sys.version_info < (3, 12), reason="per-interpreter GIL needs Python 3.12+")
def test_i9_13_an_isolated_subinterpreter_can_import_the_module() -> None:
    code = textwrap.dedent(
        """
        import json, os, sys
        root = os.environ["GS_ROOT"]
        sys.path[:0] = [root]
        try:
            import _interpreters as interpreters
        except ImportError:
            import _xxsubinterpreters as interpreters
        interp = interpreters.create()  # isolated: its own GIL, multi-phase modules only
        script = (
            f"import sys; sys.path[:0] = [{root!r}]\\n"
            "import graphsend._native as n\\n"
            "assert len(n.new_client_request_id()) == 36\\n"
            "n.Handle().close()\\n"
        )
        try:
            error = interpreters.run_string(interp, script)  # 3.12 raises, 3.13 returns it
        finally:
            interpreters.destroy(interp)
        print(json.dumps({"error": None if error is None else str(error)}))
        """
    )
    root = str(Path(native.__file__).resolve().parent.parent)
    env = dict(os.environ, GS_ROOT=root)
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60 * SCALE
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"error": None}


# ---- item 15: over-long ids and users are a ValueError before any I/O -------------------------


def test_i9_15_over_long_ids_and_users_are_refused_before_any_io(
    serve: Callable[..., Server],
) -> None:
    server = serve()
    limit = native.id_limit
    assert limit == 2048
    huge = "A" * 1_000_000
    with pytest.raises(ValueError, match="message_id is longer than 2048 characters"):
        native.send_path(None, huge)
    with pytest.raises(ValueError, match="user is longer than 2048 characters"):
        native.send_path("u" * (limit + 1), "AAMk")
    handle = http_handle()
    with pytest.raises(ValueError, match="2048"):
        handle.send_draft(server.base_url, None, huge, TOKEN, None)
    with pytest.raises(ValueError, match="2048"):
        handle.send_draft(server.base_url, "u" * (limit + 1), "AAMk", TOKEN, None)
    assert server.requests == []
    assert native.send_path("u" * limit, "A" * limit).endswith("/send")  # the limit itself is fine
