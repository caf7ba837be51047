"""Nothing a call takes outlives it: limiter slots (LocalLimiter, RedisLimiter leases, which
its keeper thread would renew for good) and the journal's lock go back when the call ends,
however it ends, and a finished answer's slot goes back while the rest of its call runs.

The class of defect behind the CI hang of commit 996e78e (a finished AsyncClient call kept the
slots of its last answers): each test here failed before its fix."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from loopback import Server

import graphsend
from graphsend.testing import FakeGraph

SCALE = float(os.environ.get("GRAPHSEND_TIME_SCALE", "1"))


@pytest.fixture(params=["local", "redis"])
def limiter(request: pytest.FixtureRequest) -> Iterator[graphsend.LocalLimiter]:
    """A limiter of 2 slots per mailbox, in this process or in a real Redis."""
    if request.param == "local":
        yield graphsend.LocalLimiter(per_mailbox=2)
        return
    url = request.getfixturevalue("redis_url")
    redis = graphsend.RedisLimiter(url, per_mailbox=2, prefix=f"t-held-{request.node.name}")
    yield redis  # type: ignore[misc]
    redis.close()


def _free(limiter: graphsend.LocalLimiter, mailbox: str, n: int = 2) -> bool:
    """Whether all n slots of mailbox can be had now (then given back)."""
    slots, _ = limiter.acquire(mailbox, n)
    limiter.release(slots, used=False)
    return len(slots) == n


def test_reconcile_many_gives_its_slots_back(limiter: graphsend.LocalLimiter) -> None:
    """The defect: Client.reconcile_many never gave back the slots of its last reads; with a
    LocalLimiter the mailbox stayed capped for good, with Redis the keeper renewed them."""
    with FakeGraph() as graph:
        drafts = graph.create_drafts(3)
        with graphsend.Client(graph.token, base_url=graph.base_url, limiter=limiter) as client:
            assert client.reconcile_many(drafts, wait=0) == ["not_sent"] * 3
            assert _free(limiter, "me"), "reconcile_many kept the mailbox's slots"
            # what a user sees: another client of the mailbox is not kept waiting
            other = graphsend.Client(
                graph.token, base_url=graph.base_url, limiter=limiter, timeout=5
            )
            with other:
                assert isinstance(other.send(drafts[0]), graphsend.Receipt)


def test_reconcile_many_interrupted_gives_its_slots_back(silent_server: Server) -> None:
    """The defect: Ctrl-C during reconcile_many dropped the aborted reads' results, and with
    them the slots those reads held."""
    limiter = graphsend.LocalLimiter(per_mailbox=2)
    client = graphsend.Client("t", base_url=silent_server.base_url, limiter=limiter)
    timer = threading.Timer(0.5 * SCALE, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            client.reconcile_many(["d1", "d2", "d3"], wait=0)
    finally:
        timer.cancel()
        client.close()
    assert len(silent_server.requests) == 2  # two reads in flight (the cap), one queued
    assert _free(limiter, "me"), "an interrupted reconcile_many kept the mailbox's slots"


def test_an_async_call_gives_a_finished_mailboxs_slots_back_while_it_runs(
    limiter: graphsend.LocalLimiter,
) -> None:
    """The defect: a send_many's answer from one mailbox kept its slot until the next start of
    that client, which, with nothing left to start, came only when the whole call ended (here
    after the slow mailbox's 3 s): other clients of the first mailbox waited that long."""
    with FakeGraph() as graph:
        graph.set_latency("slow@contoso.com", 3.0 * SCALE)
        fast = [("fast@contoso.com", d) for d in graph.create_drafts(2, user="fast@contoso.com")]
        slow = ("slow@contoso.com", graph.create_drafts(1, user="slow@contoso.com")[0])

        async def main() -> float:
            async with graphsend.AsyncClient(
                graph.token,
                base_url=graph.base_url,
                limiter=limiter,  # type: ignore[arg-type]
            ) as client:
                task = asyncio.ensure_future(client.send_many([*fast, slow]))
                start = time.monotonic()
                while len(graph.sent_items("fast@contoso.com")) < 2:
                    await asyncio.sleep(0.01)
                while not _free(limiter, "fast@contoso.com"):
                    await asyncio.sleep(0.01)
                freed = time.monotonic() - start
                assert not task.done()
                results = await asyncio.wait_for(task, 30 * SCALE)
                assert all(isinstance(r, graphsend.Receipt) for r in results), results
                return freed

        freed = asyncio.run(main())
    assert freed < 1.5 * SCALE, f"the finished mailbox's slots came back after {freed:.1f} s"


def test_an_async_client_closed_after_its_loop_gives_in_flight_slots_back(
    limiter: graphsend.LocalLimiter,
) -> None:
    """The defect: a client closed after its loop was (a loop stopped with sends in flight,
    then aclose() or the garbage collector) dropped those sends without their slots."""
    with FakeGraph(latency=5.0) as graph:
        drafts = graph.create_drafts(2)
        client = graphsend.AsyncClient(
            graph.token,
            base_url=graph.base_url,
            limiter=limiter,  # type: ignore[arg-type]
        )
        loop = asyncio.new_event_loop()

        async def start() -> list[asyncio.Task[graphsend.Receipt]]:
            tasks = [loop.create_task(client.send(d)) for d in drafts]
            while graph.in_flight() < 2:
                await asyncio.sleep(0.01)
            return tasks

        tasks = loop.run_until_complete(asyncio.wait_for(start(), 10))
        loop.close()  # with both sends in flight: never collected
        asyncio.run(client.aclose())
        assert _free(limiter, "me"), "a closed AsyncClient kept its in-flight sends' slots"
        for task in tasks:  # (pending on a closed loop by design: no warning when collected)
            task._log_destroy_pending = False  # type: ignore[attr-defined]


def test_a_send_many_refused_before_it_starts_lets_go_of_its_journal(tmp_path: Path) -> None:
    """The defect: send_many(journal=..., progress=<not callable>) raised its TypeError with the
    journal still open and locked, so the corrected call was refused (JournalBusyError)."""
    path = tmp_path / "run.journal"
    with FakeGraph() as graph:
        drafts = graph.create_drafts(3)
        with graphsend.Client(graph.token, base_url=graph.base_url) as client:
            with pytest.raises(TypeError, match="progress"):
                client.send_many(drafts, journal=path, progress=5)  # type: ignore[arg-type]
            assert graph.requests == []
            results = client.send_many(drafts, journal=path)
        assert all(isinstance(r, graphsend.Receipt) for r in results), results
        assert sorted(graph.send_counts().values()) == [1, 1, 1]


class _RaisingLookup:
    """A progress callable (a proxy, say) whose attribute lookups fail with other than
    AttributeError: send_many asks it for an optional `note` method."""

    def __call__(self, done: int, total: int) -> None:
        pass

    def __getattr__(self, name: str) -> object:
        raise RuntimeError(f"lookup of {name} failed")


def test_a_send_many_failing_while_it_sets_up_lets_go_of_its_journal(tmp_path: Path) -> None:
    """The defect: a failure between the journal's attach and the send loop (here the progress
    object's attribute lookup) left the journal open and locked, so the next call was refused."""
    path = tmp_path / "run.journal"
    with FakeGraph() as graph:
        drafts = graph.create_drafts(3)
        with graphsend.Client(graph.token, base_url=graph.base_url) as client:
            with pytest.raises(RuntimeError, match="lookup of note") as caught:
                client.send_many(drafts, journal=path, progress=_RaisingLookup())
            assert graph.requests == []
            assert [r.may_have_sent for r in caught.value.results] == [False] * 3  # type: ignore[attr-defined]
            results = client.send_many(drafts, journal=path)
        assert all(isinstance(r, graphsend.Receipt) for r in results), results
        assert sorted(graph.send_counts().values()) == [1, 1, 1]


def test_async_send_many_failing_while_it_sets_up_says_nothing_was_sent(tmp_path: Path) -> None:
    """AsyncClient.send_many: the same failure raised without `.results`; the journal is let go."""
    path = tmp_path / "run.journal"
    with FakeGraph() as graph:
        drafts = graph.create_drafts(3)

        async def run() -> list[graphsend.Receipt | graphsend.SendError]:
            async with graphsend.AsyncClient(graph.token, base_url=graph.base_url) as client:
                with pytest.raises(RuntimeError, match="lookup of note") as caught:
                    await client.send_many(drafts, journal=path, progress=_RaisingLookup())
                assert graph.requests == []
                results = caught.value.results  # type: ignore[attr-defined]
                assert [r.may_have_sent for r in results] == [False] * 3
                return await client.send_many(drafts, journal=path)

        results = asyncio.run(run())
        assert all(isinstance(r, graphsend.Receipt) for r in results), results
        assert sorted(graph.send_counts().values()) == [1, 1, 1]
