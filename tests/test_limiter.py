"""Mailbox limiters (issue 13): LocalLimiter, and RedisLimiter against a real redis-server.

Several "processes" are several Clients with their own RedisLimiter (their own connections and
lease ids) in threads here; tests/test_scale.py runs real Celery worker processes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator

import pytest
from helpers import interrupt_subprocess
from redis_server import RedisServer, have_redis

import graphsend
from graphsend.testing import FakeGraph

SCALE = float(os.environ.get("GRAPHSEND_TIME_SCALE", "1"))
needs_redis = pytest.mark.skipif(not have_redis(), reason="redis-server is not installed")


@pytest.fixture
def limited_graph() -> Iterator[FakeGraph]:
    """Graph's MailboxConcurrency limit (4) enforced, 20 ms per send."""
    with FakeGraph(mailbox_concurrency_limit=4, latency=0.02) as g:
        yield g


def _drafts(graph: FakeGraph, mailboxes: int, per: int) -> list[tuple[str, str]]:
    items = []
    for m in range(mailboxes):
        user = f"user{m}@contoso.com"
        items += [(user, d) for d in graph.create_drafts(per, user=user)]
    return items


def _client(graph: FakeGraph, limiter: object = None, **kw: object) -> graphsend.Client:
    return graphsend.Client(
        graph.token,
        base_url=graph.base_url,
        retry=graphsend.Retry(max_attempts=1),
        limiter=limiter,  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


def _in_threads(work: list[tuple[graphsend.Client, list[tuple[str, str]]]]) -> list[object]:
    results: list[object] = []
    lock = threading.Lock()

    def run(client: graphsend.Client, items: list[tuple[str, str]]) -> None:
        got = client.send_many(items)
        with lock:
            results.extend(got)

    threads = [threading.Thread(target=run, args=w) for w in work]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def _split(items: list[tuple[str, str]], n: int) -> list[list[tuple[str, str]]]:
    return [items[i::n] for i in range(n)]


# ------------------------------------------------------------------ shared caps


def test_separate_clients_without_a_shared_limiter_exceed_graphs_cap(
    limited_graph: FakeGraph,
) -> None:
    """The defect: each process holds its own cap of 4; together they get 429s."""
    items = _drafts(limited_graph, 2, 40)
    results = _in_threads([(_client(limited_graph), part) for part in _split(items, 3)])
    assert limited_graph.throttled() > 0
    assert any(isinstance(r, graphsend.ThrottledError) for r in results)


def test_a_shared_local_limiter_holds_the_cap_across_clients(limited_graph: FakeGraph) -> None:
    items = _drafts(limited_graph, 2, 40)
    shared = graphsend.LocalLimiter(per_mailbox=4)
    results = _in_threads([(_client(limited_graph, shared), part) for part in _split(items, 3)])
    assert all(isinstance(r, graphsend.Receipt) for r in results), results
    assert len(results) == 80
    assert limited_graph.throttled() == 0
    assert (
        max(limited_graph.peak_in_flight(u) for u in ("user0@contoso.com", "user1@contoso.com"))
        <= 4
    )


@needs_redis
def test_redis_limiter_holds_the_cap_across_clients(
    limited_graph: FakeGraph, redis_url: str
) -> None:
    items = _drafts(limited_graph, 3, 40)
    work = [
        (_client(limited_graph, graphsend.RedisLimiter(redis_url, prefix="t-cap")), part)
        for part in _split(items, 4)
    ]
    results = _in_threads(work)
    assert len(results) == 120
    assert all(isinstance(r, graphsend.Receipt) for r in results), results
    assert limited_graph.throttled() == 0
    peaks = [limited_graph.peak_in_flight(f"user{m}@contoso.com") for m in range(3)]
    assert max(peaks) <= 4
    assert len(limited_graph.sent_items()) == 120


@needs_redis
def test_client_send_from_many_threads_waits_for_a_slot(
    limited_graph: FakeGraph, redis_url: str
) -> None:
    """The synchronous path: 12 threads, one mailbox, each Client.send takes a slot."""
    drafts = limited_graph.create_drafts(36, user="solo@contoso.com")
    limiter = graphsend.RedisLimiter(redis_url, prefix="t-sync")
    client = _client(limited_graph, limiter)
    errors: list[BaseException] = []

    def run(ids: list[str]) -> None:
        for d in ids:
            try:
                client.send(d, user="solo@contoso.com")
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=run, args=(drafts[i::12],)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert limited_graph.throttled() == 0
    assert limited_graph.peak_in_flight("solo@contoso.com") <= 4
    assert len(limited_graph.sent_items("solo@contoso.com")) == 36


@needs_redis
def test_async_client_shares_the_redis_limiter(limited_graph: FakeGraph, redis_url: str) -> None:
    items = _drafts(limited_graph, 2, 30)

    async def main() -> list[object]:
        clients = [
            graphsend.AsyncClient(
                limited_graph.token,
                base_url=limited_graph.base_url,
                retry=graphsend.Retry(max_attempts=1),
                limiter=graphsend.RedisLimiter(redis_url, prefix="t-async"),
            )
            for _ in range(3)
        ]
        try:
            parts = await asyncio.gather(
                *(c.send_many(p) for c, p in zip(clients, _split(items, 3), strict=True))
            )
        finally:
            for c in clients:
                await c.aclose()
        return [r for part in parts for r in part]

    results = asyncio.run(main())
    assert all(isinstance(r, graphsend.Receipt) for r in results), results
    assert limited_graph.throttled() == 0
    assert max(limited_graph.peak_in_flight(u) for u, _ in items) <= 4


@pytest.mark.parametrize("kind", ["local", "redis"])
@pytest.mark.parametrize("how", ["send", "send_many", "cancelled"])
def test_an_async_call_gives_its_slots_back_when_it_ends(
    kind: str, how: str, request: pytest.FixtureRequest
) -> None:
    """The defect (a CI hang): a finished AsyncClient call kept the slots of its last answers
    (or, cancelled, of its queued items) until its client's next call, so other clients of the
    mailbox waited for them forever. Once a call returns, every slot is free again."""
    if kind == "local":
        limiter: object = graphsend.LocalLimiter(per_mailbox=2)
    else:
        if not have_redis():
            pytest.skip("redis-server is not installed")
        url = request.getfixturevalue("redis_url")
        limiter = graphsend.RedisLimiter(url, per_mailbox=2, prefix=f"t-back-{how}")
    latency = 5.0 if how == "cancelled" else 0.0
    with FakeGraph(latency=latency) as graph:
        drafts = graph.create_drafts(6)

        async def main() -> None:
            async with graphsend.AsyncClient(
                graph.token,
                base_url=graph.base_url,
                limiter=limiter,  # type: ignore[arg-type]
            ) as client:
                if how == "send":
                    await client.send(drafts[0])
                elif how == "send_many":
                    await client.send_many(drafts)
                else:
                    task = asyncio.ensure_future(client.send_many(drafts))
                    await asyncio.sleep(0.3)  # two in flight, four queued holding no slot
                    task.cancel()
                    with pytest.raises(asyncio.CancelledError):
                        await task
                # the client is still open: nothing of it may hold the mailbox now
                slots, _ = limiter.acquire("me", 2)  # type: ignore[attr-defined]
                assert len(slots) == 2, "a finished call still holds the mailbox's slots"
                limiter.release(slots, used=False)  # type: ignore[attr-defined]

        asyncio.run(main())


# ------------------------------------------------------------------ messages per minute


@pytest.mark.parametrize("kind", ["local", "redis"])
def test_messages_per_window_never_exceeded(kind: str, request: pytest.FixtureRequest) -> None:
    window = 0.5 * SCALE
    with FakeGraph(latency=0.01) as graph:
        items = _drafts(graph, 2, 12)
        if kind == "local":
            shared = graphsend.LocalLimiter(messages_per_minute=5, window=window)
            limiters: list[object] = [shared, shared]
        else:
            if not have_redis():
                pytest.skip("redis-server is not installed")
            url = request.getfixturevalue("redis_url")
            limiters = [
                graphsend.RedisLimiter(url, messages_per_minute=5, window=window, prefix="t-mpm")
                for _ in range(2)
            ]
        start = time.monotonic()
        work = [
            (_client(graph, lim), part)
            for lim, part in zip(limiters, _split(items, 2), strict=True)
        ]
        results = _in_threads(work)
        took = time.monotonic() - start
        assert all(isinstance(r, graphsend.Receipt) for r in results), results
        assert graph.max_sends_in_window(window) <= 5
        # 12 sends per mailbox at 5 per window: at least two full windows of waiting.
        assert took >= 2 * window * 0.9
        assert len(graph.sent_items()) == 24


def test_max_sends_in_window_counts_what_arrived() -> None:
    """FakeGraph's own check can fail: without a limiter, 10 sends land in one window."""
    with FakeGraph() as graph:
        items = _drafts(graph, 1, 10)
        _client(graph).send_many(items)
        assert graph.max_sends_in_window(5.0) == 10
        assert graph.max_sends_in_window(5.0, "user0@contoso.com") == 10
        assert len(graph.send_times("user0@contoso.com")["user0@contoso.com"]) == 10


# ------------------------------------------------------------------ leases and outages


@needs_redis
def test_a_killed_process_frees_its_slots_after_the_lease(redis_url: str) -> None:
    lease = 0.6 * SCALE
    code = textwrap.dedent(f"""
        import sys, time, graphsend
        lim = graphsend.RedisLimiter({redis_url!r}, lease={lease}, prefix="t-kill")
        slots, _ = lim.acquire("victim@contoso.com", 4)
        print(len(slots), flush=True)
        time.sleep(60)
    """)
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "4"
        other = graphsend.RedisLimiter(redis_url, lease=lease, prefix="t-kill")
        # Alive, its keeper renews: still held after more than one lease.
        time.sleep(lease * 1.5)
        assert other.acquire("victim@contoso.com", 1)[0] == []
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        deadline = time.monotonic() + lease * 3 + 1
        while True:
            slots, wait = other.acquire("victim@contoso.com", 4)
            if slots:
                break
            assert time.monotonic() < deadline, "the dead process's slots never expired"
            time.sleep(wait)
        other.release(slots)
    finally:
        child.kill()
        child.wait(10)


@needs_redis
def test_redis_down_fails_sends_clearly_and_sends_nothing() -> None:
    with RedisServer() as server, FakeGraph() as graph:
        limiter = graphsend.RedisLimiter(server.url, socket_timeout=1.0, prefix="t-down")
        client = _client(graph, limiter)
        items = _drafts(graph, 2, 5)
        assert all(isinstance(r, graphsend.Receipt) for r in client.send_many(items[:2]))
        server.stop()
        results = client.send_many(items[2:])
        assert len(results) == 8
        for r in results:
            assert isinstance(r, graphsend.LimiterError), r
            assert r.may_have_sent is False
            assert "unreachable" in str(r) and "nothing was sent" in str(r)
        with pytest.raises(graphsend.LimiterError, match="unreachable"):
            client.send(items[2][1], user=items[2][0])
        assert len(graph.sent_items()) == 2
        # Back again: sends go on (after retry_interval).
        server.start()
        time.sleep(limiter.retry_interval)
        assert all(isinstance(r, graphsend.Receipt) for r in client.send_many(items[2:]))


@needs_redis
def test_redis_down_with_a_fallback_keeps_the_per_process_cap(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with RedisServer() as server, FakeGraph(mailbox_concurrency_limit=4, latency=0.02) as graph:
        limiter = graphsend.RedisLimiter(
            server.url,
            socket_timeout=1.0,
            prefix="t-fallback",
            fallback=graphsend.LocalLimiter(per_mailbox=1),
        )
        client = _client(graph, limiter)
        items = _drafts(graph, 1, 12)
        server.stop()
        with caplog.at_level(logging.WARNING, logger="graphsend"):
            results = client.send_many(items)
        assert all(isinstance(r, graphsend.Receipt) for r in results), results
        assert graph.peak_in_flight("user0@contoso.com") == 1
        assert "falling back" in caplog.text


def test_no_slot_within_the_timeout_is_a_clear_error(graph: FakeGraph) -> None:
    limiter = graphsend.LocalLimiter(per_mailbox=1)
    held, _ = limiter.acquire("me", 1)
    client = _client(graph, limiter, timeout=0.3)
    draft = graph.create_draft()
    with pytest.raises(graphsend.LimiterError, match="no slot") as info:
        client.send(draft)
    assert info.value.may_have_sent is False
    assert graph.sent_items() == []
    limiter.release(held)
    assert client.send(draft).status == 202


def test_limiter_arguments_are_checked() -> None:
    with pytest.raises(ValueError):
        graphsend.LocalLimiter(per_mailbox=0)
    with pytest.raises(TypeError):
        graphsend.LocalLimiter(messages_per_minute=2.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="limiter"):
        graphsend.Client("t", limiter=object())  # type: ignore[arg-type]
    if have_redis():
        with pytest.raises(ValueError, match="lease"):
            graphsend.RedisLimiter("redis://127.0.0.1:1/0", lease=0.01)
        with pytest.raises(TypeError, match="fallback"):
            graphsend.RedisLimiter("redis://127.0.0.1:1/0", fallback=object())  # type: ignore[arg-type]


def test_a_forked_child_starts_with_its_own_local_slots() -> None:
    limiter = graphsend.LocalLimiter(per_mailbox=2)
    held, _ = limiter.acquire("a@contoso.com", 2)
    assert limiter.acquire("a@contoso.com", 1)[0] == []
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the parent's two slots are not this process's
        try:
            slots, _ = limiter.acquire("a@contoso.com", 2)
            limiter.release(held)  # the parent's: ignored here
            os.write(write, str(len(slots)).encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    assert os.read(read, 16) == b"2"
    os.close(read)
    assert limiter.acquire("a@contoso.com", 1)[0] == []  # the parent's own state is untouched
    limiter.release(held)
    assert len(limiter.acquire("a@contoso.com", 2)[0]) == 2


CTRL_C_LIMITED_SEND = textwrap.dedent(
    """
    import graphsend
    from graphsend.testing import FakeGraph
    with FakeGraph() as graph:
        draft = graph.create_draft()
        graph.stall_next()  # written, never answered
        limiter = graphsend.LocalLimiter(messages_per_minute=1)
        client = graphsend.Client(graph.token, base_url=graph.base_url, limiter=limiter)
        print("ready", flush=True)
        try:
            client.send(draft)
        except BaseException as exc:
            print(type(exc).__name__, len(graph.requests), flush=True)
        slots, _ = limiter.acquire("me", 1)
        print("granted", len(slots), flush=True)
    """
)


def test_an_interrupted_send_still_counts_against_messages_per_minute() -> None:
    """The defect: Ctrl-C during a limited Client.send refunded its messages_per_minute use,
    though the request had been written (Graph may have sent it): one more send could follow
    within the window."""
    returncode, output, _ = interrupt_subprocess(CTRL_C_LIMITED_SEND, after=0.5)
    assert returncode == 0, output
    lines = output.split("\n")
    assert lines[0] == "KeyboardInterrupt 1", output  # the request reached the server
    assert lines[1] == "granted 0", output  # and it still counts: no second send this minute


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"client_request_id": "bad\nid"}, ValueError),
        ({"user": 5}, TypeError),
        ({"user": "a\nb@contoso.com"}, ValueError),
    ],
)
def test_bad_input_to_a_limited_send_takes_no_slot(
    kwargs: dict[str, object], error: type[Exception]
) -> None:
    """Bad input raises, as without a limiter, before a slot is taken: it used up the mailbox's
    messages_per_minute (and a bad user gave an AttributeError)."""
    limiter = graphsend.LocalLimiter(messages_per_minute=1)
    with FakeGraph() as graph:
        draft = graph.create_draft()
        with graphsend.Client(graph.token, base_url=graph.base_url, limiter=limiter) as client:
            with pytest.raises(error):
                client.send(draft, **kwargs)  # type: ignore[arg-type]
            assert graph.requests == []
            assert isinstance(client.send(draft), graphsend.Receipt)  # the minute's one send
