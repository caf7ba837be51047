"""Scale-out (issue 13) with real components: redis-server on loopback ports, real `celery worker`
processes (prefork pool, Redis broker and result backend) against FakeGraph with Graph's
per-mailbox concurrency limit enforced. No eager mode, no fake Redis.

Slow (worker start-up, thousands of sends): run by ``make test-scale`` (GRAPHSEND_SCALE=1);
skipped otherwise.
"""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis_server import RedisServer, have_redis

import graphsend
from graphsend.testing import FakeGraph

pytestmark = pytest.mark.skipif(
    not os.environ.get("GRAPHSEND_SCALE") or not have_redis(),
    reason="slow scale-out suite: make test-scale (needs redis-server)",
)
SCALE = float(os.environ.get("GRAPHSEND_TIME_SCALE", "1"))
HERE = Path(__file__).parent
MAILBOXES = [f"box{m}@contoso.com" for m in range(20)]


class Cluster:
    """Redis (broker + result backend + run state), a second Redis for the limiter, FakeGraph,
    and celery worker processes (each in its own process group, to be SIGKILLed whole)."""

    def __init__(self, graph: FakeGraph, **env: str) -> None:
        self.graph = graph
        self.broker = RedisServer().start()
        self.limiter = RedisServer().start()
        self.env = dict(os.environ)
        self.env.update(
            GS_BROKER=self.broker.url,
            GS_LIMITER=self.limiter.url,
            GS_BASE=graph.base_url,
            GS_TOKEN=graph.token,
            PYTHONPATH=os.pathsep.join([str(HERE), self.env.get("PYTHONPATH", "")]),
        )
        self.env.update(env)
        self.workers: list[subprocess.Popen[bytes]] = []
        os.environ.update({k: v for k, v in self.env.items() if k.startswith("GS_")})
        import celery_app

        self.app_module = importlib.reload(celery_app)
        self.send: Any = self.app_module.send

    def start_workers(self, count: int, concurrency: int = 4) -> None:
        for i in range(count):
            log = open(Path(self.broker.dir) / f"worker{i}.log", "wb")  # noqa: SIM115
            self.workers.append(
                subprocess.Popen(
                    [
                        sys.executable, "-m", "celery", "-A", "celery_app", "worker",
                        "-P", "prefork", "-c", str(concurrency), "-n", f"w{i}@%h",
                        "--without-gossip", "--without-mingle", "-l", "warning",
                    ],  # fmt: skip
                    cwd=HERE,
                    env=self.env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        deadline = time.monotonic() + 60 * SCALE
        names: set[str] = set()
        while len(names) < count:
            assert time.monotonic() < deadline, f"workers did not start: {names}"
            for reply in self.app_module.app.control.ping(timeout=0.5) or []:
                names.update(reply)
        self.graph.reset_stats()

    def kill_worker(self, index: int) -> None:
        os.killpg(self.workers[index].pid, signal.SIGKILL)
        self.workers[index].wait(10)

    def close(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for proc in self.workers:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        self.broker.close()
        self.limiter.close()


@pytest.fixture
def limited_graph() -> Iterator[FakeGraph]:
    with FakeGraph(mailbox_concurrency_limit=4, latency=0.02) as g:
        g.record_requests = False
        yield g


def _drafts(graph: FakeGraph, per_mailbox: int) -> list[tuple[str, str]]:
    """Drafts interleaved over the mailboxes, as a real job's items are."""
    columns = [[(u, d) for d in graph.create_drafts(per_mailbox, user=u)] for u in MAILBOXES]
    return [item for row in zip(*columns, strict=True) for item in row]


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _wait_all(async_results: list[Any], timeout: float) -> list[Any]:
    out = []
    for r in async_results:
        out.append(r.get(timeout=timeout, propagate=True))
    return out


def _group_cpu(groups: list[int]) -> float:
    """CPU seconds used so far by every process in these process groups (Linux /proc)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) in groups or int(entry) in groups:
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _peak(graph: FakeGraph) -> int:
    return max(graph.peak_in_flight(u) for u in MAILBOXES)


# ------------------------------------------------------------------ throughput and caps


def test_four_workers_hold_graphs_cap_at_one_process_speed(limited_graph: FakeGraph) -> None:
    graph = limited_graph
    # One process's send_many on the same shape of items: the reference.
    reference = _drafts(graph, 100)
    graph.reset_stats()
    with graphsend.Client(graph.token, base_url=graph.base_url) as client:
        start = time.monotonic()
        got = client.send_many(reference)
        one_process = time.monotonic() - start
    assert all(isinstance(r, graphsend.Receipt) for r in got)
    assert graph.throttled() == 0

    cluster = Cluster(graph)
    try:
        cluster.start_workers(4, 4)
        items = _drafts(graph, 100)
        graph.reset_stats()
        cpu0 = _group_cpu([w.pid for w in cluster.workers]) if os.environ.get("GS_DEBUG") else 0
        start = time.monotonic()
        pending = [cluster.send.delay(items=chunk) for chunk in _chunks(items, 125)]
        results = [r for part in _wait_all(pending, 120 * SCALE) for r in part]
        celery_time = time.monotonic() - start
        if os.environ.get("GS_DEBUG"):
            import redis

            stats = redis.Redis.from_url(cluster.limiter.url).info("commandstats")
            print({k: v["calls"] for k, v in stats.items() if "evalsha" in k})
            print("worker cpu s", _group_cpu([w.pid for w in cluster.workers]) - cpu0)
            print("redis cpu s", _group_cpu([cluster.limiter.proc.pid, cluster.broker.proc.pid]))
            print("this process cpu s", time.process_time())
    finally:
        cluster.close()
    assert len(results) == 2000
    assert all(isinstance(r, graphsend.Receipt) for r in results), [
        r for r in results if not isinstance(r, graphsend.Receipt)
    ][:3]
    assert graph.throttled() == 0  # no 429 from the MailboxConcurrency limit
    assert _peak(graph) <= 4  # FakeGraph's own count, every mailbox
    assert all(graph.send_count(d) == 1 for _, d in items)
    ratio = one_process / celery_time
    print(f"\none process {one_process:.2f} s, 4 workers x 4 {celery_time:.2f} s: {ratio:.2f}x")
    assert ratio >= 0.8 / SCALE


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
        results = [r for part in _wait_all(pending, 180 * SCALE) for r in part]
    finally:
        cluster.close()
    assert len(results) == len(items)
    assert all(isinstance(r, graphsend.Receipt) for r in results), [
        r for r in results if not isinstance(r, graphsend.Receipt)
    ][:3]
    counts = graph.send_counts()
    assert [d for _, d in items if counts.get(d, 0) != 1] == []  # every draft exactly once
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


# ------------------------------------------------------------------ results through the backend


def test_receipts_and_exceptions_through_the_result_backend(limited_graph: FakeGraph) -> None:
    graph = limited_graph
    cluster = Cluster(graph)
    try:
        cluster.start_workers(1, 2)
        draft = graph.create_draft(user=MAILBOXES[0])
        receipt = cluster.send.delay(draft, user=MAILBOXES[0]).get(timeout=60)
        assert isinstance(receipt, graphsend.Receipt)
        assert receipt.status == 202 and receipt.request_id

        with pytest.raises(graphsend.NotFoundError) as info:
            cluster.send.delay("AAMkADno-such-draft", user=MAILBOXES[0]).get(timeout=60)
        err = info.value
        assert err.status == 404 and err.code == "ErrorItemNotFound"
        assert err.request_id and err.client_request_id and err.may_have_sent is False
        assert "404 ErrorItemNotFound" in str(err)
        assert graph.token not in repr(err.args)

        graph.fail_next(403, user=MAILBOXES[1])
        with pytest.raises(graphsend.PermissionDeniedError) as denied:
            cluster.send.delay(graph.create_draft(user=MAILBOXES[1]), user=MAILBOXES[1]).get(
                timeout=60
            )
        assert denied.value.status == 403 and denied.value.may_have_sent is False

        # A batch: Receipts and errors, in input order, each rebuilt.
        ok = graph.create_draft(user=MAILBOXES[2])
        batch = cluster.send.delay(items=[[MAILBOXES[2], ok], [MAILBOXES[2], "AAMkADgone"]])
        first, second = batch.get(timeout=60)
        assert isinstance(first, graphsend.Receipt)
        assert isinstance(second, graphsend.NotFoundError) and second.status == 404
    finally:
        cluster.close()
