"""Scale-out figures (issue 13): what a mailbox limiter costs, and Celery workers vs one process.

    .venv/bin/python -m bench.scale [--rounds N] [--out bench/results/scale.md]

1. µs per acquire + release on a loopback redis-server (RedisLimiter, one slot at a time, and
   LocalLimiter), median of rounds.
2. S1-like: sequential Client.send to FakeGraph (no latency) with no limiter (the default),
   LocalLimiter, RedisLimiter: µs per send; S3-like: send_many of 2,000 drafts over 20 mailboxes
   (FakeGraph, 20 ms latency, MailboxConcurrency 4 enforced) with each: seconds.
3. 4 `celery worker` processes x concurrency 4 (prefork, Redis broker, RedisLimiter) sending the
   same 2,000 drafts as 16 batch tasks, against one process's send_many: best of ``rounds``.

Needs redis-server (.ci/ensure-redis) and the test extra (redis, celery). FakeGraph is Python:
absolute figures are FakeGraph-bound; the differences are what the limiter costs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import graphsend  # noqa: E402
from graphsend.testing import FakeGraph  # noqa: E402


def acquire_release_us(limiter: object, n: int) -> float:
    acquire, release = limiter.acquire, limiter.release  # type: ignore[attr-defined]
    start = time.perf_counter()
    for _ in range(n):
        slots, _ = acquire("bench@contoso.com", 1, sends=False)
        release(slots)
    return (time.perf_counter() - start) / n * 1e6


def ping_us(url: str, n: int) -> float:
    import redis

    r = redis.Redis.from_url(url)
    r.ping()
    start = time.perf_counter()
    for _ in range(n):
        r.ping()
    return (time.perf_counter() - start) / n * 1e6


def s1_us(base_url: str, drafts: list[str], limiter: object, n: int) -> float:
    """Sequential Client.send from /me to a FakeGraph in another process (as S1's nginx is:
    an in-process server would fight the client for the GIL at every Redis call)."""
    client = graphsend.Client("fake-token", base_url=base_url, limiter=limiter)  # type: ignore[arg-type]
    for d in drafts[:50]:
        client.send(d)
    start = time.perf_counter()
    for d in drafts[50 : 50 + n]:
        client.send(d)
    took = time.perf_counter() - start
    client.close()
    del drafts[: 50 + n]
    return took / n * 1e6


def fake_graph_process(drafts: int) -> tuple[subprocess.Popen[str], str, list[str]]:
    ids_file = tempfile.mktemp(prefix="gs-bench-ids-")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "graphsend.testing",
            "--drafts",
            str(drafts),
            "--drafts-file",
            ids_file,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    base_url = proc.stdout.readline().strip()
    with open(ids_file) as f:
        ids = f.read().split()
    os.unlink(ids_file)
    return proc, base_url, ids


def s3_s(graph: FakeGraph, limiter: object) -> float:
    items = [
        (f"box{m}@contoso.com", graph.create_draft(f"box{m}@contoso.com"))
        for _ in range(100)
        for m in range(20)
    ]
    client = graphsend.Client(graph.token, base_url=graph.base_url, limiter=limiter)  # type: ignore[arg-type]
    start = time.perf_counter()
    results = client.send_many(items)
    took = time.perf_counter() - start
    assert all(isinstance(r, graphsend.Receipt) for r in results)
    assert graph.throttled() == 0
    client.close()
    return took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=str(HERE / "results" / "scale.md"))
    args = parser.parse_args()
    from redis_server import RedisServer

    lines = ["# Scale-out figures (bench/scale.py)", ""]
    lines.append(f"Machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start.")
    lines.append("")
    with RedisServer() as server:
        redis_lim = graphsend.RedisLimiter(server.url, prefix="bench")
        local_lim = graphsend.LocalLimiter()
        rounds = args.rounds
        ping = statistics.median(ping_us(server.url, 3000) for _ in range(rounds))
        redis_pair = statistics.median(acquire_release_us(redis_lim, 3000) for _ in range(rounds))
        local_pair = statistics.median(acquire_release_us(local_lim, 20000) for _ in range(rounds))
        lines += [
            "## Limiter calls (loopback)",
            "",
            "| what | µs |",
            "| --- | ---: |",
            f"| redis-py PING round trip | {ping:.1f} |",
            f"| RedisLimiter acquire + release (two Lua calls) | {redis_pair:.1f} |",
            f"| LocalLimiter acquire + release | {local_pair:.1f} |",
            "",
        ]
        print("\n".join(lines[-8:]), flush=True)
        proc, base_url, ids = fake_graph_process((50 + 1000) * 3 * rounds)
        try:
            s1: dict[str, list[float]] = {"none": [], "local": [], "redis": []}
            for _ in range(rounds):  # interleaved, so drift hits all alike
                for name, lim in (("none", None), ("local", local_lim), ("redis", redis_lim)):
                    s1[name].append(s1_us(base_url, ids, lim, 1000))
        finally:
            proc.terminate()
            proc.wait(10)
        with FakeGraph(mailbox_concurrency_limit=4, latency=0.02) as graph:
            graph.record_requests = False
            s3 = {
                name: min(s3_s(graph, lim) for _ in range(rounds))
                for name, lim in (("none", None), ("local", local_lim), ("redis", redis_lim))
            }
        lines += [
            "## Client.send (S1-like) and send_many (S3-like)",
            "",
            "S1: sequential sends from /me to FakeGraph in another process (no latency), median",
            "of rounds. S3: in-process FakeGraph, 20 ms latency, MailboxConcurrency 4; best of",
            "rounds.",
            "",
            "| limiter | S1 µs per send (median) | S3 2,000 drafts / 20 mailboxes, s (best) |",
            "| --- | ---: | ---: |",
        ]
        for name in ("none", "local", "redis"):
            label = {"none": "none (default)", "local": "LocalLimiter", "redis": "RedisLimiter"}
            lines.append(f"| {label[name]} | {statistics.median(s1[name]):.1f} | {s3[name]:.3f} |")
        lines.append("")
        print("\n".join(lines[-7:]), flush=True)

    from celery_cluster import Cluster

    with FakeGraph(mailbox_concurrency_limit=4, latency=0.02) as graph:
        graph.record_requests = False
        cluster = Cluster(graph)
        try:
            cluster.start_workers(4, 4)
            one, many = [], []
            for _ in range(rounds):
                one.append(s3_s(graph, None))
                items = [
                    [f"box{m}@contoso.com", graph.create_draft(f"box{m}@contoso.com")]
                    for _ in range(100)
                    for m in range(20)
                ]
                graph.reset_stats()
                start = time.perf_counter()
                pending = [
                    cluster.send.delay(items=items[i : i + 125]) for i in range(0, 2000, 125)
                ]
                results = [r for p in pending for r in p.get(timeout=120)]
                many.append(time.perf_counter() - start)
                assert all(isinstance(r, graphsend.Receipt) for r in results)
                assert graph.throttled() == 0
                assert max(graph.peak_in_flight(f"box{m}@contoso.com") for m in range(20)) <= 4
        finally:
            cluster.close()
    lines += [
        "## 4 celery workers x concurrency 4 vs one process",
        "",
        "2,000 drafts over 20 mailboxes, FakeGraph 20 ms latency, MailboxConcurrency 4 enforced;",
        "16 batch tasks of 125 drafts, RedisLimiter(per_mailbox=4); zero 429s, peak <= 4 checked.",
        "",
        "| | best s | all rounds s |",
        "| --- | ---: | --- |",
        f"| one process send_many | {min(one):.3f} | {', '.join(f'{x:.2f}' for x in one)} |",
        f"| 4 workers x 4 | {min(many):.3f} | {', '.join(f'{x:.2f}' for x in many)} |",
        f"| throughput ratio (workers / one) | {min(one) / min(many):.2f}x | |",
        "",
    ]
    print("\n".join(lines[-10:]), flush=True)
    Path(args.out).write_text("\n".join(lines))
    print("written", args.out)


if __name__ == "__main__":
    main()
