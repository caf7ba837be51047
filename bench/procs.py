"""The harness side of the worker protocol (worker.py, c/common.h): start a client in its own
process, hand it counts, read back timings. Each process's stderr goes to .work/logs/."""

from __future__ import annotations

import json
import re
import select
import subprocess
import sys
from dataclasses import asdict
from types import TracebackType
from typing import Any, NamedTuple

from .common import REPO_DIR, WORK_DIR, BulkPlan, Target, pin_to
from .servers import BIN_DIR

LOG_DIR = WORK_DIR / "logs"


class Round(NamedTuple):
    seconds: float  # wall time of the round
    ok: int  # sends answered 202
    cpu: float  # CPU time (user + system, all threads) the client process spent on it


class RoundTimeout(Exception):
    """A round ran past its time limit; the process has been stopped."""


class Proc:
    """A running client. `na` holds the reason when it could not start; run() needs na is None."""

    def __init__(self, name: str, argv: list[str], *, python: bool, cpus: str = "client") -> None:
        self.name = name
        self.na: str | None = None
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        log = LOG_DIR / (re.sub(r"[^A-Za-z0-9._-]+", "_", name) + ".log")
        self._log = open(log, "a")  # closed in close()
        self._p: subprocess.Popen[str] | None = subprocess.Popen(
            argv,
            cwd=REPO_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            bufsize=1,
            preexec_fn=pin_to(cpus),
        )
        self._python = python

    @classmethod
    def unavailable(cls, name: str, reason: str) -> Proc:
        proc = cls.__new__(cls)
        proc.name, proc.na, proc._p, proc._python = name, reason, None, False
        return proc

    def wait_ready(self) -> Proc:
        """Python workers say "ready" once their client is built (start many, then wait)."""
        if self._python and self.na is None:
            self._python = False
            first = self._readline()
            if first != "ready":
                self.na = first[3:] if first.startswith("na ") else f"failed to start ({first!r})"
                self.close()
        return self

    def _readline(self) -> str:
        assert self._p is not None and self._p.stdout is not None
        return self._p.stdout.readline().strip()

    def command(self, text: str, timeout: float | None = None) -> str:
        """Send one command, return its answer line. Past `timeout` seconds the process is
        killed and RoundTimeout raised (a peer that takes minutes must not stall the suite)."""
        assert self._p is not None and self._p.stdin is not None and self.na is None
        assert self._p.stdout is not None
        self._p.stdin.write(text + "\n")
        self._p.stdin.flush()
        if timeout is not None and not select.select([self._p.stdout], [], [], timeout)[0]:
            self._p.kill()
            self.close()
            self.na = f"stopped after {timeout:g} s"
            raise RoundTimeout(self.na)
        answer = self._readline()
        if not answer or answer.startswith("error"):
            raise RuntimeError(f"{self.name}: {answer or 'exited'} (see {self._log.name})")
        return answer

    def run(self, n: int, timeout: float | None = None) -> Round:
        """n units of work: wall seconds, 202s, and the process's CPU seconds (all threads)."""
        ns, ok, cpu_ns = self.command(str(n), timeout).split()
        return Round(int(ns) / 1e9, int(ok), int(cpu_ns) / 1e9)

    def rss_kb(self) -> int:
        return int(self.command("rss"))

    def transfer_seconds(self) -> float | None:
        value = float(self.command("transfer"))
        return None if value < 0 else value

    def gil(self, seconds: float) -> dict[str, Any]:
        return dict(json.loads(self.command(f"gil {seconds}")))

    def close(self) -> None:
        if self._p is None:
            return
        if self._p.poll() is None:
            try:
                assert self._p.stdin is not None
                self._p.stdin.close()
                self._p.wait(30)
            except (OSError, subprocess.TimeoutExpired):
                self._p.kill()
                self._p.wait()
        self._p = None
        self._log.close()

    def __enter__(self) -> Proc:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def python_worker(
    name: str,
    kind: str,
    target: Target,
    *,
    plan: BulkPlan | None = None,
    threads: int | None = None,
    env_python: str | None = None,
    cpus: str = "client",
) -> Proc:
    spec: dict[str, Any] = {"kind": kind, "client": name, "target": asdict(target)}
    if plan is not None:
        spec["plan"] = asdict(plan)
    if threads is not None:
        spec["threads"] = threads
    argv = [env_python or sys.executable, "-m", "bench.worker", json.dumps(spec)]
    return Proc(f"{kind}-{name}-{threads or ''}", argv, python=True, cpus=cpus)


def c_argv(program: str, target: Target) -> list[str]:
    """The command line of a bench/c program sending to target."""
    argv = [str(BIN_DIR / program), "--base", target.base_url, "--token", target.token]
    if target.user:
        argv += ["--user", target.user]
    if target.cafile:
        argv += ["--cainfo", target.cafile]
    if target.http2:
        argv.append("--http2")
    return argv


def c_program(name: str, program: str, target: Target, extra: list[str] | None = None) -> Proc:
    exe = BIN_DIR / program
    argv = c_argv(program, target) + (extra or [])
    if not exe.exists():
        return Proc.unavailable(name, f"{exe.name} not built (make -C bench programs)")
    return Proc(name, argv, python=False)


def start_all(procs: dict[str, Proc]) -> dict[str, Proc]:
    """Wait until every process of a batch (started together, so imports overlap) is ready."""
    for p in procs.values():
        p.wait_ready()
    return procs
