"""Defects found reviewing the issue 10-14 merge: each test failed on main before its fix.

Real servers on loopback only (FakeGraph, redis-server); what is asserted is what the server
received and what the caller gets.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

import graphsend
from graphsend import AsyncClient, Client
from graphsend.testing import FakeGraph


def _drafts(graph: FakeGraph, count: int) -> list[tuple[str, str]]:
    users = [f"user{i % 3}@contoso.com" for i in range(count)]
    return [(u, graph.create_draft(u, immutable_id=True)) for u in users]


def _sends(graph: FakeGraph) -> int:
    return sum(1 for r in graph.requests if r.method == "POST" and r.path.endswith("/send"))


def test_async_journal_rerun_without_a_token_keeps_the_stored_receipts(tmp_path: Path) -> None:
    """A rerun whose async token provider fails must still report what the journal knows
    was sent as sent (not as a provider error that says nothing was sent)."""
    path = tmp_path / "run.db"
    with FakeGraph() as graph:
        items = _drafts(graph, 6)
        with Client(graph.token, base_url=graph.base_url) as client:
            first = client.send_many(items, journal=path)
        assert all(isinstance(r, graphsend.Receipt) for r in first)
        # As if the run had died with item 0's request written and no outcome recorded.
        db = sqlite3.connect(path, timeout=30)  # (waits for the journal's closing thread)
        with db:
            db.execute("INSERT INTO event (changes) VALUES ('[0]')")
        db.close()

        async def no_token() -> str:
            raise RuntimeError("the vault is down")

        async def rerun() -> list[graphsend.Receipt | graphsend.SendError]:
            async with AsyncClient(no_token, base_url=graph.base_url) as aclient:
                return await aclient.send_many(items, journal=path)

        again = asyncio.run(rerun())
        assert _sends(graph) == 6
    assert again[1:] == first[1:], [type(r).__name__ for r in again]
    doubtful = again[0]
    assert isinstance(doubtful, graphsend.SendError) and doubtful.may_have_sent, repr(doubtful)


def test_redis_window_outlives_a_slot_held_past_its_lease() -> None:
    """A send held longer than lease + window (a slow answer, Retry-After sleeps or a
    reconciliation inside one Client.send) still counts against messages_per_minute: the
    window's key must not expire under it."""
    from redis_server import RedisServer, have_redis

    if not have_redis():
        pytest.skip("redis-server is not installed")
    with RedisServer() as server:
        a = graphsend.RedisLimiter(server.url, messages_per_minute=1, lease=0.3, window=1.0)
        b = graphsend.RedisLimiter(server.url, messages_per_minute=1, lease=0.3, window=1.0)
        try:
            held, _ = a.acquire("adele@contoso.com", 1)
            assert len(held) == 1
            time.sleep(3.0)  # in flight (renewed by a's keeper) well past lease + window + 1 s
            got, wait = b.acquire("adele@contoso.com", 1)
            assert got == [], "a second send was let into a window that already has one"
            assert wait > 0
            a.release(held, used=True)
            got, _ = b.acquire("adele@contoso.com", 1)
            assert got == [], "the send just answered counts for a whole window after it"
        finally:
            a.close()
            b.close()


def test_client_send_under_a_limiter_can_reconcile_its_own_ambiguous_send() -> None:
    """Client.send holds its mailbox slot for the whole call; the reads that settle an
    ambiguous failure go under that slot, not wait for a second one (per_mailbox=1 here:
    they would wait for the send's own slot until the timeout and tell nothing)."""
    with FakeGraph() as graph:
        draft = graph.create_draft("adele@contoso.com", immutable_id=True)
        graph.fail_next(504, deliver=True)
        retry = graphsend.Retry(reconcile_ambiguous=True, reconcile_wait=1.0)
        limiter = graphsend.LocalLimiter(per_mailbox=1)
        with Client(
            graph.token, base_url=graph.base_url, retry=retry, limiter=limiter, timeout=3
        ) as client:
            started = time.monotonic()
            got = client.send(draft, user="adele@contoso.com")
            took = time.monotonic() - started
        assert isinstance(got, graphsend.Receipt) and got.reconciled
        assert graph.send_count(draft) == 1
        assert took < 2.5, f"the reads waited for the send's own slot ({took:.1f} s)"


_FULL_DISK_CHILD = r"""
import asyncio, json, os, resource, signal, sys
import graphsend

token, base_url, path, listed, kind = sys.argv[1:6]
items = [tuple(i) for i in json.load(open(listed))]
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
limited = False

def progress(done, total):
    # Some sends are out: from now on the journal cannot grow (as on a full disk).
    global limited
    if done >= 5 and not limited:
        limited = True
        size = max(os.path.getsize(path), os.path.getsize(path + "-wal"))
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, resource.RLIM_INFINITY))

async def run_async():
    async with graphsend.AsyncClient(token, base_url=base_url, max_per_mailbox=2) as client:
        return await client.send_many(items, journal=path, progress=progress, max_concurrency=4)

def run_sync():
    with graphsend.Client(token, base_url=base_url) as client:
        return client.send_many(
            items, journal=path, progress=progress, max_concurrency=4, max_per_mailbox=2
        )

try:
    results = asyncio.run(run_async()) if kind == "async" else run_sync()
    error = None
except Exception as exc:
    results = graphsend.interrupted_results(exc)
    error = type(exc).__name__
out = None if results is None else [
    ["receipt", r.message_id] if isinstance(r, graphsend.Receipt) else ["error", r.may_have_sent]
    for r in results
]
print(json.dumps({"error": error, "results": out}))
"""


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_journal_that_cannot_be_written_ends_the_call_with_every_outcome(
    kind: str, tmp_path: Path
) -> None:
    """The journal fails mid-run (its disk is full): the call ends with every item's outcome
    (no hang, no exception without .results), and a rerun with the journal once writable sends
    every draft exactly once."""
    import json
    import subprocess
    import sys

    path = tmp_path / "run.db"
    with FakeGraph(latency=0.02) as graph:
        graph.resend_window = 3600.0
        items = _drafts(graph, 60)
        listed = tmp_path / "items.json"
        listed.write_text(json.dumps(items))
        argv = [sys.executable, "-c", _FULL_DISK_CHILD, graph.token, graph.base_url]
        proc = subprocess.run(
            [*argv, str(path), str(listed), kind], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        got = json.loads(proc.stdout)
        assert got["error"] is not None, "the journal never failed: the test did not test that"
        results = got["results"]
        assert results is not None and len(results) == 60, got
        # What FakeGraph sent has its Receipt, or is reported as may have been sent.
        for (_, message_id), r in zip(items, results, strict=True):
            if graph.send_count(message_id):
                assert r == ["receipt", message_id] or r == ["error", True], r
        with Client(graph.token, base_url=graph.base_url) as client:
            again = client.send_many(items, journal=path)
        assert all(isinstance(r, graphsend.Receipt) for r in again)
        assert [graph.send_count(m) for _, m in items] == [1] * 60


def test_a_reconciling_read_without_a_token_never_reports_the_send_as_not_sent() -> None:
    """send_many(reconcile_ambiguous=True): the send's answer is lost (it did go out), and the
    token provider fails when the mailbox is read. The item's outcome is the ambiguous error
    (may_have_sent=True), not the read's token error (which says nothing was sent)."""
    calls = 0

    with FakeGraph() as graph:

        def token() -> str:
            nonlocal calls
            calls += 1
            if calls > 1:
                raise RuntimeError("the vault is down")
            return graph.token

        draft = graph.create_draft("adele@contoso.com", immutable_id=True)
        graph.fail_next(504, deliver=True)
        retry = graphsend.Retry(reconcile_ambiguous=True, reconcile_wait=0.5)
        with Client(token, base_url=graph.base_url, retry=retry) as client:
            [got] = client.send_many([("adele@contoso.com", draft)])
        assert graph.send_count(draft) == 1
    assert isinstance(got, graphsend.SendError), got
    assert got.may_have_sent, repr(got)


def test_a_reconciling_read_refused_a_slot_never_reports_the_send_as_not_sent() -> None:
    """As above with the shared limiter's Redis gone while the send was in flight: the read
    gets no slot (LimiterError, which says nothing was sent), the item stays may-have-sent."""
    from redis_server import RedisServer, have_redis

    if not have_redis():
        pytest.skip("redis-server is not installed")
    with RedisServer() as server, FakeGraph(latency=1.0) as graph:
        draft = graph.create_draft("adele@contoso.com", immutable_id=True)
        graph.fail_next(504, deliver=True)
        retry = graphsend.Retry(reconcile_ambiguous=True, reconcile_wait=0.5)
        limiter = graphsend.RedisLimiter(server.url, retry_interval=30.0)
        with Client(graph.token, base_url=graph.base_url, retry=retry, limiter=limiter) as client:
            import threading

            threading.Timer(0.4, server.stop).start()  # while the send is in flight
            [got] = client.send_many([("adele@contoso.com", draft)])
        limiter.close()
        assert graph.send_count(draft) == 1
    assert isinstance(got, graphsend.SendError), got
    assert got.may_have_sent, repr(got)


@pytest.mark.parametrize("how", ["send", "send_many"])
def test_a_final_error_after_an_ambiguous_attempt_still_says_it_may_have_sent(how: str) -> None:
    """Retry(retry_ambiguous=True): the first attempt's answer is lost (it went out), the
    retry is refused with a 503 and the attempts run out. The mail is out: the final error
    must say it may have been sent, whatever the last attempt's status proves about itself."""
    with FakeGraph() as graph:
        draft = graph.create_draft("adele@contoso.com", immutable_id=True)
        graph.fail_next(504, deliver=True)
        graph.fail_next(503)
        retry = graphsend.Retry(retry_ambiguous=True, max_attempts=2, backoff_max=0.01)
        with Client(graph.token, base_url=graph.base_url, retry=retry) as client:
            if how == "send":
                with pytest.raises(graphsend.SendError) as raised:
                    client.send(draft, user="adele@contoso.com")
                got: object = raised.value
            else:
                [got] = client.send_many([("adele@contoso.com", draft)])
        assert graph.send_count(draft) == 1
    assert isinstance(got, graphsend.SendError), got
    assert got.may_have_sent, repr(got)
