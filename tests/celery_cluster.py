"""Real Celery workers for the tests: redis-servers, FakeGraph, `celery worker` processes."""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from redis_server import RedisServer

from graphsend.testing import FakeGraph

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
            log = open(Path(self.broker.dir) / f"worker{i}.log", "wb")
            self.workers.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "celery",
                        "-A",
                        "celery_app",
                        "worker",
                        "-P",
                        "prefork",
                        "-c",
                        str(concurrency),
                        "-n",
                        f"w{i}@%h",
                        "--without-gossip",
                        "--without-mingle",
                        "-l",
                        "info" if os.environ.get("GS_DEBUG") else "warning",
                    ],
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
        if os.environ.get("GS_DEBUG"):
            print("worker logs in", self.broker.dir)
            self.broker.stop()
        else:
            self.broker.close()
        self.limiter.close()


def group_cpu(groups: list[int]) -> float:
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
