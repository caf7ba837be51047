"""The Celery task's runs (graphsend/integrations/celery.py) with a real `celery worker` process
and real redis-servers against FakeGraph: a run's lease belongs to its owner, and a redelivered
batch reconciles its items all at once."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator

import pytest
import redis
from celery_cluster import MAILBOXES, Cluster
from redis_server import RedisServer, have_redis

import graphsend
from graphsend.integrations.celery import _State
from graphsend.testing import FakeGraph

pytestmark = pytest.mark.skipif(not have_redis(), reason="redis-server is not installed")
SCALE = float(os.environ.get("GRAPHSEND_TIME_SCALE", "1"))


@pytest.fixture
def graph() -> Iterator[FakeGraph]:
    with FakeGraph(mailbox_concurrency_limit=4) as g:
        yield g


def test_a_stalled_run_neither_renews_nor_deletes_the_lease_a_redelivery_took(
    graph: FakeGraph,
) -> None:
    """A worker frozen (SIGSTOP: a VM pause, swapping) past its run's lease; a redelivered run
    (here this process, through the same _State code a worker runs) takes the lease over. When
    the first worker wakes, its keeper and its end must leave the new owner's lease alone."""
    lease = 1.0 * SCALE
    box = MAILBOXES[0]
    cluster = Cluster(graph, GS_RUN_LEASE=str(lease))
    taker = None
    try:
        cluster.start_workers(1, 1)
        graph.set_latency(box, 3.0 * lease)  # the first run's send is in flight meanwhile
        pending = cluster.send.delay(graph.create_draft(box, immutable_id=True), user=box)
        deadline = time.monotonic() + 30 * SCALE
        while graph.in_flight(box) == 0:
            assert time.monotonic() < deadline, "the send never started"
            time.sleep(0.005)
        worker = cluster.workers[0].pid
        os.killpg(worker, signal.SIGSTOP)
        try:
            time.sleep(1.5 * lease)  # its lease lapses in Redis meanwhile
            taker = _State(cluster.broker.url, lease).begin(pending.id)
            assert not taker.busy and taker.resumed  # the redelivery's view: a dead run
        finally:
            os.killpg(worker, signal.SIGCONT)
        key = f"graphsend:celery:{pending.id}:run"
        r = redis.Redis.from_url(cluster.broker.url)
        seen = set()
        while not pending.ready():  # the first run wakes, its keeper ticks, its send ends
            seen.add(r.get(key))
            time.sleep(0.005)
        receipt = pending.get(timeout=30 * SCALE)
        assert isinstance(receipt, graphsend.Receipt)
        seen.add(r.get(key))
        # Only ever the new owner's token: the first run did not write its own over it (a
        # renewal) nor delete it (its end), which would let a third run start beside it.
        assert seen == {taker.owner.encode()}, seen
        assert r.pttl(key) > 0
    finally:
        if taker is not None:
            taker.stop()
        cluster.close()


def test_a_live_run_takes_back_a_lease_that_lapsed_with_no_one_taking_it() -> None:
    """Redis lost the lease (out of reach past it, say) and no redelivery took it: the live run's
    keeper sets it again, so a redelivery arriving later waits instead of running beside it."""
    lease = 0.6 * SCALE
    with RedisServer() as server:
        run = _State(server.url, lease).begin("lapsed")
        try:
            r = redis.Redis.from_url(server.url)
            r.delete("graphsend:celery:lapsed:run")
            time.sleep(lease)  # at least two keeper ticks
            assert r.get("graphsend:celery:lapsed:run") == run.owner.encode()
            assert _State(server.url, lease).begin("lapsed").busy
        finally:
            run.stop()
        assert r.get("graphsend:celery:lapsed:run") is None  # its own end deletes it


def test_a_run_whose_result_could_not_be_stored_still_lets_go_of_its_lease(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The defects: when storing the result failed (a Redis error) after the sends, the error
    failed the task (a caller retrying it would send again), and the run never stopped its
    keeper, which renewed (and took back) the lease for as long as the worker lived: every
    redelivery of the task waited for ever."""
    lease = 0.6 * SCALE
    with RedisServer() as server:
        r = redis.Redis.from_url(server.url)
        run = _State(server.url, lease).begin("blip")
        r.delete("graphsend:celery:blip:state")
        r.set("graphsend:celery:blip:state", "not a hash")  # the result's HSET fails (WRONGTYPE)
        run.finish({"sent": True})  # never raises: the sends are done
        assert "could not be stored" in caplog.text
        time.sleep(lease)  # at least two keeper ticks
        assert r.get("graphsend:celery:blip:run") is None  # a redelivery may run


def test_a_redelivered_batch_reconciles_its_items_side_by_side(graph: FakeGraph) -> None:
    """A batch task delivered again after its first run died (its state says it started, no
    run holds its lease): every item is read at once (reconcile_many), not a few at a time,
    so the batch settles in about one reconcile wait, whatever its size."""
    wait = 2.0 * SCALE
    cluster = Cluster(graph, GS_RECONCILE_WAIT=str(wait))
    try:
        cluster.start_workers(1, 1)
        items = [
            (u, graph.create_draft(u, immutable_id=True)) for _ in range(4) for u in MAILBOXES[:12]
        ]
        # The dead run had sent a few of them.
        already = items[::8]
        with graphsend.Client(graph.token, base_url=graph.base_url) as client:
            assert all(isinstance(r, graphsend.Receipt) for r in client.send_many(already))
        task_id = str(uuid.uuid4())
        r = redis.Redis.from_url(cluster.broker.url)
        r.hset(f"graphsend:celery:{task_id}:state", "started", "1")  # what it left behind
        graph.clear_requests()
        start = time.monotonic()
        results = cluster.send.apply_async(
            kwargs={"items": [list(i) for i in items]}, task_id=task_id
        ).get(timeout=120 * SCALE)
        took = time.monotonic() - start
    finally:
        cluster.close()
    assert len(results) == len(items) == 48
    assert all(isinstance(x, graphsend.Receipt) for x in results), results[:3]
    assert [x.reconciled for x in results] == [i in already for i in items]
    counts = graph.send_counts()
    assert [d for _, d in items if counts.get(d) != 1] == []  # each exactly once
    first_read: dict[str, float] = {}
    for req in graph.requests:
        if req.method == "GET" and req.message_id is not None:
            first_read.setdefault(req.message_id, req.received_at)
    assert len(first_read) == len(items)
    # Each unsent item takes `wait` to settle; read a few at a time (16 threads), the later
    # items would be first read only after the first ones had settled.
    spread = max(first_read.values()) - min(first_read.values())
    print(
        f"\nredelivered batch of 48 (wait {wait} s): {took:.2f} s, first reads over {spread:.3f} s"
    )
    assert spread < wait / 2, f"items first read over {spread:.2f} s"


def test_reconcile_many_gives_its_limiter_slots_back(graph: FakeGraph) -> None:
    """reconcile_many's reads take a RedisLimiter's slots; once it returns, none is held (a held
    one is renewed for as long as the process lives: its mailbox blocked for every worker)."""
    box = MAILBOXES[0]
    drafts = [graph.create_draft(box, immutable_id=True) for _ in range(4)]
    with RedisServer() as server:
        limiter = graphsend.RedisLimiter(server.url, per_mailbox=4, lease=1.0 * SCALE)
        with graphsend.Client(graph.token, base_url=graph.base_url, limiter=limiter) as client:
            verdicts = client.reconcile_many([(box, d) for d in drafts], wait=0.2 * SCALE)
            assert verdicts == ["not_sent"] * 4
            time.sleep(2.0 * SCALE)  # past the lease: only renewed slots are still there
            other = graphsend.RedisLimiter(server.url, per_mailbox=4)  # another worker's
            slots, _ = other.acquire(box, 4)
            assert len(slots) == 4
            other.release(slots, used=False)
            # And this client goes on sending to that mailbox.
            assert client.send(drafts[0], user=box).status == 202
        limiter.close()
