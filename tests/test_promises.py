"""README promises pinned by tests that kill the mutations of issue 15 (see mutants/): backoff
growth and jitter, Ctrl-C within 0.25 s on every path, no_proxy, and the command line."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from loopback import ConnectProxy

import graphsend
from graphsend.testing import FakeGraph

SCALE = float(os.environ.get("GRAPHSEND_TIME_SCALE", "1"))

# ------------------------------------------------------------------ backoff (statistics, no time)

DRAWS = 4000


def test_i15_02_backoff_doubles_until_its_cap_with_full_jitter() -> None:
    retry = graphsend.Retry(backoff_base=1.0, backoff_max=8.0)
    caps = {1: 1.0, 2: 2.0, 3: 4.0, 4: 8.0, 5: 8.0, 6: 8.0}
    means: dict[int, float] = {}
    for attempt, cap in caps.items():
        draws = [retry.backoff(attempt) for _ in range(DRAWS)]
        assert min(draws) >= 0.0
        assert max(draws) <= cap, f"attempt {attempt}: a wait above the cap {cap}"
        means[attempt] = statistics.fmean(draws)
        # Full jitter: uniform over [0, cap]. The mean of 4000 draws is within 1% of cap/2
        # (standard error 0.46% of cap); 10% leaves no room for chance.
        assert abs(means[attempt] - cap / 2) < 0.05 * cap, (attempt, means[attempt])
        # Spread over the whole range: each quarter holds about 25% of the draws.
        quarters = [0, 0, 0, 0]
        for d in draws:
            quarters[min(3, int(d / cap * 4))] += 1
        assert all(0.2 * DRAWS < q < 0.3 * DRAWS for q in quarters), (attempt, quarters)
        assert min(draws) < 0.02 * cap and max(draws) > 0.98 * cap
    # The mean doubles with each attempt until backoff_max, then stays.
    for attempt in (1, 2, 3):
        assert 1.8 < means[attempt + 1] / means[attempt] < 2.2, means
    assert 0.9 < means[6] / means[4] < 1.1, means


def test_i15_02_backoff_is_not_a_constant_nor_zero() -> None:
    retry = graphsend.Retry(backoff_base=0.5, backoff_max=60.0)
    draws = {retry.backoff(3) for _ in range(200)}
    assert len(draws) > 150  # jitter: hardly ever the same value twice
    assert statistics.fmean(draws) > 0.5  # cap 2.0: the mean is about 1.0


# ------------------------------------------------------------------ Ctrl-C within 0.25 s
# The README says an interrupt lands "within about 100 ms": native loops check for signals
# every GS_SIGNAL_SLICE (0.1 s). Each signal here is sent 20-150 ms into a blocked call; it is
# acted on about one slice later (the interrupted wait starts a new slice-long one before the
# check): about 100 ms with the 0.1 s slice, 250-450 ms with 0.25 s. Sixteen interrupts per
# path: their mean must stay under 170 ms, and all but one (a scheduling hiccup on a loaded
# machine) under 250 ms.

TRIALS = 16
MEAN_BOUND = 0.17 * SCALE
MAX_BOUND = 0.25 * SCALE


def _interrupt_delays(call: Callable[[], object]) -> list[float]:
    """Run ``call`` (which must block until interrupted) TRIALS times; each time, SIGINT the main
    thread at a random moment 20-150 ms into it. Returns the seconds from each signal until the
    KeyboardInterrupt reached this frame."""
    assert threading.current_thread() is threading.main_thread()
    main_id = threading.main_thread().ident
    assert main_id is not None
    delays: list[float] = []
    for _ in range(TRIALS):
        sent_at: list[float] = []

        def kill(after: float, sent_at: list[float]) -> None:
            time.sleep(after)
            sent_at.append(time.monotonic())
            signal.pthread_kill(main_id, signal.SIGINT)

        killer = threading.Thread(target=kill, args=(random.uniform(0.02, 0.15), sent_at))
        try:
            killer.start()
            call()
        except KeyboardInterrupt:
            delays.append(time.monotonic() - sent_at[0])
        else:
            raise AssertionError("the call returned instead of being interrupted")
        finally:
            killer.join()
    return delays


def _check(delays: list[float]) -> None:
    summary = f"mean {statistics.fmean(delays) * 1000:.0f} ms, max {max(delays) * 1000:.0f} ms"
    assert statistics.fmean(delays) < MEAN_BOUND, summary
    assert sorted(delays)[-2] < MAX_BOUND, summary


@pytest.fixture
def stalling_graph() -> Iterator[FakeGraph]:
    with FakeGraph() as graph:
        graph.stall_next(count=1000)  # every send is read and never answered
        yield graph


def test_i15_02_ctrl_c_interrupts_client_send_within_a_slice(stalling_graph: FakeGraph) -> None:
    graph = stalling_graph
    with graphsend.Client(graph.token, base_url=graph.base_url, timeout=30) as client:
        draft = graph.create_draft()
        _check(_interrupt_delays(lambda: client.send(draft)))


def test_i15_02_ctrl_c_interrupts_send_many_within_a_slice(stalling_graph: FakeGraph) -> None:
    graph = stalling_graph
    with graphsend.Client(graph.token, base_url=graph.base_url, timeout=30) as client:
        drafts = graph.create_drafts(3)
        _check(_interrupt_delays(lambda: client.send_many(drafts)))


def test_i15_02_ctrl_c_interrupts_async_send_within_a_slice(stalling_graph: FakeGraph) -> None:
    graph = stalling_graph
    draft = graph.create_draft()

    async def send() -> None:
        async with graphsend.AsyncClient(graph.token, base_url=graph.base_url, timeout=30) as c:
            await c.send(draft)

    _check(_interrupt_delays(lambda: asyncio.run(send())))


# ------------------------------------------------------------------ no_proxy


@pytest.fixture
def proxy_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[ConnectProxy]:
    for name in ("https_proxy", "HTTPS_PROXY", "http_proxy", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    with ConnectProxy() as proxy:
        monkeypatch.setenv("https_proxy", proxy.url)
        yield proxy


@pytest.fixture
def named_graph() -> Iterator[FakeGraph]:
    """FakeGraph over HTTPS addressed by this machine's name, not a loopback literal (a loopback
    base never goes through a proxy, so the proxy would see nothing either way)."""
    pytest.importorskip("cryptography")
    name = socket.gethostname()
    try:
        socket.getaddrinfo(name, 443, type=socket.SOCK_STREAM)
    except OSError:
        pytest.skip(f"this machine's name {name!r} does not resolve")
    with FakeGraph(https=True, host=name) as graph:
        yield graph


def _send(graph: FakeGraph) -> graphsend.Receipt:
    with graphsend.Client(graph.token, base_url=graph.base_url, ca_bundle=graph.ca_bundle) as c:
        return c.send(graph.create_draft())


def test_i15_02_no_proxy_naming_the_host_bypasses_the_proxy(
    named_graph: FakeGraph, proxy_env: ConnectProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("no_proxy", f"example.org,{named_graph.host}")
    assert _send(named_graph).status == 202
    assert proxy_env.heads == []


def test_i15_02_without_no_proxy_the_proxy_sees_the_connect(
    named_graph: FakeGraph, proxy_env: ConnectProxy
) -> None:
    assert _send(named_graph).status == 202
    assert proxy_env.tunnels == [f"{named_graph.host}:{named_graph.port}"]


# ------------------------------------------------------------------ the command line

TOKEN = "eyJ0eXAi.cli-secret-token.Zm9vYmFy"


def _cli(*args: str, token: str | None = TOKEN) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "GRAPH_TOKEN"}
    if token is not None:
        env["GRAPH_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "graphsend", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def _no_token(done: subprocess.CompletedProcess[str], token: str = TOKEN) -> None:
    assert token not in done.stdout and token not in done.stderr, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr


@pytest.fixture
def cli_graph() -> Iterator[FakeGraph]:
    with FakeGraph(token=TOKEN) as graph:
        yield graph


def test_i15_02_cli_send_prints_the_receipt_and_exits_0(cli_graph: FakeGraph) -> None:
    draft = cli_graph.create_draft()
    done = _cli("send", draft, "--base-url", cli_graph.base_url)
    assert done.returncode == 0, done.stderr
    line = done.stdout.strip()
    assert line.startswith("sent: 202 request-id="), line
    assert f"client-request-id={cli_graph.requests[-1].client_request_id}" in line
    assert [m.id for m in cli_graph.sent_items()] == [draft]
    _no_token(done)


def test_i15_02_cli_send_error_exits_1_without_the_token(cli_graph: FakeGraph) -> None:
    done = _cli("send", "AAMkAnot-a-draft=", "--base-url", cli_graph.base_url)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("graphsend: NotFoundError"), done.stderr
    _no_token(done)

    # A token the server refuses: the error names the failure, never the token.
    done = _cli("send", cli_graph.create_draft(), "--base-url", cli_graph.base_url, token=TOKEN * 2)
    assert done.returncode == 1
    assert "AuthenticationError" in done.stderr, done.stderr
    _no_token(done, TOKEN * 2)

    # A server that is not there.
    cli_graph.stop()
    done = _cli("send", "AAMkAx=", "--base-url", cli_graph.base_url)
    assert done.returncode == 1
    assert done.stderr.startswith("graphsend: TransportError"), done.stderr
    _no_token(done)


@pytest.mark.parametrize(
    ("args", "token", "says"),
    [
        ((), TOKEN, "usage:"),
        (("send",), TOKEN, "usage:"),
        (("send", "AAMkA="), None, "GRAPH_TOKEN"),
        (("send", "AAMkA=", "--base-url", "ftp://example.org"), TOKEN, "graphsend:"),
        (("send", "AAMkA=", "--ca-bundle", "/nonexistent/ca.pem"), TOKEN, "graphsend:"),
    ],
)
def test_i15_02_cli_usage_and_configuration_errors_exit_2(
    args: tuple[str, ...], token: str | None, says: str
) -> None:
    done = _cli(*args, token=token)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert says in done.stderr
    assert done.stdout == ""
    _no_token(done)


def test_i15_02_cli_demo_sends_three_drafts_and_exits_0() -> None:
    done = _cli("demo", token=None)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert sum(line.startswith("sent ") for line in lines) == 3
    assert any("NotFoundError" in line for line in lines)
    assert "Sent Items:" in lines
    _no_token(done, "fake-token")  # the demo server's token
