"""Helpers the tests share: threads run side by side, a GIL probe, Ctrl-C in a subprocess, and
the shape of a client-request-id."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T")

# A lower-case UUID version 4, as graphsend makes client-request-ids and FakeGraph request-ids.
UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def in_threads(function: Callable[[T], object], args: Iterable[T]) -> float:
    """Call function(arg) for each arg, each in its own thread, all started together.

    Returns the seconds from the first start until the last thread ended; re-raises the first
    exception a thread raised.
    """
    errors: list[BaseException] = []

    def run(arg: T) -> None:
        try:
            function(arg)
        except BaseException as exc:  # re-raised in the calling thread below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(arg,)) for arg in args]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    if errors:
        raise errors[0]
    return elapsed


class CountingThread:
    """A pure-Python thread that counts while the `with` block runs: a GIL probe.

    How far `count` gets while the main thread is inside a native call shows that the call
    released the GIL: a thread starved by a held GIL counts only in the switch intervals.
    With `pause`, it sleeps that long between counts, so `count` measures time it was let run.
    """

    def __init__(self, pause: float = 0.0) -> None:
        self.count = 0
        self._pause = pause
        self._running = True
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        while self._running:
            self.count += 1
            if self._pause:
                time.sleep(self._pause)

    def __enter__(self) -> CountingThread:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._running = False
        self._thread.join()


def interrupt_subprocess(script: str, after: float) -> tuple[int, str, float]:
    """Run `script` in a new Python, wait for it to print "ready", then `after` seconds more,
    and send it SIGINT (Ctrl-C).

    Returns (exit code, the rest of its stdout, seconds from the signal until it exited).
    Raises subprocess.TimeoutExpired when it is still running 5 s after the signal; the process
    never outlives the call.
    """
    with subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None
        try:
            first = proc.stdout.readline()
            if first.strip() != "ready":
                raise AssertionError(f'the script printed {first!r} where "ready" was expected')
            time.sleep(after)
            sent_at = time.monotonic()
            proc.send_signal(signal.SIGINT)
            returncode = proc.wait(timeout=5)
            seconds = time.monotonic() - sent_at
            return returncode, proc.stdout.read(), seconds
        finally:
            proc.kill()
