"""Scale-out (issue 13) with real components: redis-server on loopback ports, real `celery worker`
processes (prefork pool, Redis broker and result backend) against FakeGraph with Graph's
per-mailbox concurrency limit enforced. No eager mode, no fake Redis.

Slow (worker start-up, thousands of sends): run by ``make test-scale`` (GRAPHSEND_SCALE=1);
skipped otherwise.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from celery_cluster import MAILBOXES, Cluster, group_cpu
from redis_server import have_redis

import graphsend
from graphsend.testing import FakeGraph

pytestmark = pytest.mark.skipif(
    not os.environ.get("GRAPHSEND_SCALE") or not have_redis(),
    reason="slow scale-out suite: make test-scale (needs redis-server)",
)
SCALE = float(os.environ.get("GRAPHSEND_TIME_SCALE", "1"))


@pytest.fixture
def limited_graph() -> Iterator[FakeGraph]:
    with FakeGraph(mailbox_concurrency_limit=4, latency=0.02) as g:
        g.record_requests = False
        yield g


def _drafts(graph: FakeGraph, per_mailbox: int) -> list[tuple[str, str]]:
    """Drafts interleaved over the mailboxes, as a real job's items are; with immutable ids,
    as graphsend makes them (so a send can be reconciled by id)."""
    columns = [
        [(u, graph.create_draft(u, immutable_id=True)) for _ in range(per_mailbox)]
        for u in MAILBOXES
    ]
    return [item for row in zip(*columns, strict=True) for item in row]


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _wait_all(async_results: list[Any], timeout: float) -> list[Any]:
    out = []
    for r in async_results:
        out.append(r.get(timeout=timeout, propagate=True))
    return out


def _peak(graph: FakeGraph) -> int:
    return max(graph.peak_in_flight(u) for u in MAILBOXES)


# ------------------------------------------------------------------ throughput and caps


def _one_process(graph: FakeGraph) -> float:
    """One process's send_many over 2,000 drafts (20 mailboxes): the reference."""
    items = _drafts(graph, 100)
    graph.reset_stats()
    with graphsend.Client(graph.token, base_url=graph.base_url) as client:
        start = time.monotonic()
        got = client.send_many(items)
        took = time.monotonic() - start
    assert all(isinstance(r, graphsend.Receipt) for r in got)
    assert graph.throttled() == 0
    return took


def _on_workers(cluster: Cluster, graph: FakeGraph) -> float:
    """The same through the workers: 16 tasks of 125 drafts."""
    items = _drafts(graph, 100)
    graph.reset_stats()
    cpu0 = group_cpu([w.pid for w in cluster.workers])
    start = time.monotonic()
    pending = [cluster.send.delay(items=chunk) for chunk in _chunks(items, 125)]
    results = [r for part in _wait_all(pending, 120 * SCALE) for r in part]
    took = time.monotonic() - start
    if os.environ.get("GS_DEBUG"):
        print(f"workers' CPU {group_cpu([w.pid for w in cluster.workers]) - cpu0:.2f} s")
    assert len(results) == 2000
    assert all(isinstance(r, graphsend.Receipt) for r in results), [
        r for r in results if not isinstance(r, graphsend.Receipt)
    ][:3]
    assert graph.throttled() == 0  # no 429 from the MailboxConcurrency limit
    assert _peak(graph) <= 4  # FakeGraph's own count, every mailbox
    assert all(graph.send_count(d) == 1 for _, d in items)
    return took


def test_four_workers_hold_graphs_cap_at_one_process_speed(limited_graph: FakeGraph) -> None:
    graph = limited_graph
    cluster = Cluster(graph)
    try:
        cluster.start_workers(4, 4)
        # Interleaved, best of two each: this machine is shared, and a load spike during one
        # run says nothing about either.
        one = [_one_process(graph)]
        many = [_on_workers(cluster, graph), _on_workers(cluster, graph)]
        one.append(_one_process(graph))
    finally:
        cluster.close()
    ratio = min(one) / min(many)
    print(f"\none process {min(one):.2f} s, 4 workers x 4 {min(many):.2f} s: {ratio:.2f}x")
    # bench/scale.py reports the figure (0.8x and up on a quiet 2-core machine); here, with 20
    # worker processes sharing two cores with FakeGraph and whatever else runs, a generous
    # bound: far below it, the limiter would be serializing the workers.
    assert ratio >= 0.4 / SCALE


def test_messages_per_window_hold_across_four_workers(limited_graph: FakeGraph) -> None:
    graph = limited_graph
    window = 1.0 * SCALE
    cluster = Cluster(graph, GS_MPM="5", GS_WINDOW=str(window))
    try:
        cluster.start_workers(4, 2)
        items = [(u, d) for u in MAILBOXES[:4] for d in graph.create_drafts(12, user=u)]
        pending = [cluster.send.delay(items=chunk) for chunk in _chunks(items, 6)]
        results = [r for part in _wait_all(pending, 120 * SCALE) for r in part]
    finally:
        cluster.close()
    assert all(isinstance(r, graphsend.Receipt) for r in results), results[:3]
    assert graph.max_sends_in_window(window) <= 5
    assert graph.throttled() == 0


# ------------------------------------------------------------------ failures


def test_a_worker_killed_mid_batch_loses_nothing_and_sends_nothing_twice(
    limited_graph: FakeGraph,
) -> None:
    graph = limited_graph
    cluster = Cluster(
        graph,
        GS_LEASE=str(1.0 * SCALE),  # the limiter's slots of the dead worker free within this
        GS_VISIBILITY=str(4.0 * SCALE),  # its unacknowledged tasks come back after this
        GS_RUN_LEASE=str(1.0 * SCALE),
        GS_RECONCILE_WAIT=str(1.0 * SCALE),
    )
    try:
        cluster.start_workers(4, 4)
        items = _drafts(graph, 50)
        pending = [cluster.send.delay(items=chunk) for chunk in _chunks(items, 25)]
        # Kill one worker (its pool children too) once sends are under way.
        deadline = time.monotonic() + 30
        while sum(graph.send_counts().values()) < 200:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        cluster.kill_worker(0)
        killed = time.monotonic()
        # The dead worker's unacknowledged tasks come back once the visibility timeout has
        # passed, when a live worker's kombu restores them: it tries every 10 s but acts on one
        # try in 10 (about 100 s). To keep the test short, this process runs kombu's own restore
        # (the same Redis operation) every second instead.
        with cluster.app_module.app.connection_for_write() as conn:
            qos = conn.default_channel.qos
            while not all(p.ready() for p in pending):
                assert time.monotonic() - killed < 120 * SCALE
                qos._vrestore_count = 0  # (its every-tenth-call gate)
                qos.restore_visible(num=100)
                time.sleep(1.0)
        results = [r for part in _wait_all(pending, 180 * SCALE) for r in part]
        print(f"\nall results {time.monotonic() - killed:.1f} s after the kill")
    finally:
        cluster.close()
    assert len(results) == len(items)
    assert all(isinstance(r, graphsend.Receipt) for r in results), [
        r for r in results if not isinstance(r, graphsend.Receipt)
    ][:3]
    counts = graph.send_counts()
    assert [d for _, d in items if counts.get(d, 0) != 1] == []  # every draft exactly once
    # The redelivered runs found sends of the dead one in the mailbox and did not send those
    # again: their Receipts say so.
    reconciled = [r for r in results if r.reconciled]
    assert reconciled and all(r.request_id is None for r in reconciled)
    assert {(r.user, r.message_id) for r in reconciled} <= set(items)
    assert graph.throttled() == 0
    assert _peak(graph) <= 4


def test_limiter_redis_stopped_mid_run(limited_graph: FakeGraph) -> None:
    graph = limited_graph
    cluster = Cluster(graph)
    try:
        cluster.start_workers(2, 4)
        items = _drafts(graph, 40)
        pending = [cluster.send.delay(items=chunk) for chunk in _chunks(items, 20)]
        deadline = time.monotonic() + 30
        while sum(graph.send_counts().values()) < 100:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        cluster.limiter.stop()
        results = [r for part in _wait_all(pending, 120 * SCALE) for r in part]
    finally:
        cluster.close()
    assert len(results) == len(items)  # nothing lost from the results
    counts = graph.send_counts()
    failed = 0
    for (_, d), r in zip(items, results, strict=True):
        if isinstance(r, graphsend.Receipt):
            assert counts.get(d) == 1
        else:
            assert isinstance(r, graphsend.LimiterError), r
            assert "unreachable" in str(r) and r.may_have_sent is False
            assert counts.get(d, 0) == 0  # failed clearly: nothing sent
            failed += 1
    assert failed > 0
    assert graph.throttled() == 0  # nothing past the limits
    assert _peak(graph) <= 4
