"""Engine re-entered from its own thread (a signal handler run by perform(check_signals=True))
says so, rather than blaming "another thread" (issue 10, item 4)."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable

import pytest
from loopback import Reply, Server

from graphsend import _native as native

SCALE = float(os.environ.get("GRAPHSEND_TIME_SCALE", "1"))


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals")
def test_i10_engine_reentry_from_a_signal_handler_is_not_called_another_thread(
    serve: Callable[..., Server],
) -> None:
    server = serve(lambda seen: Reply(delay=0.5 * SCALE))
    engine = native.Engine(allow_http=True, timeout_ms=int(10_000 * SCALE))
    errors: list[str] = []

    def handler(signum: int, frame: object) -> None:
        for call in (lambda: engine.perform(0), engine.close):
            try:
                call()
            except RuntimeError as exc:
                errors.append(str(exc))

    previous = signal.signal(signal.SIGUSR1, handler)
    timer = threading.Timer(0.2 * SCALE, os.kill, (os.getpid(), signal.SIGUSR1))
    try:
        engine.submit(1, server.url(), ())
        timer.start()
        done: list[tuple[int, object]] = []
        while not done:
            done += engine.perform(5.0 * SCALE, check_signals=True)
    finally:
        timer.join()
        signal.signal(signal.SIGUSR1, previous)
    assert done[0][0] == 1 and done[0][1][0] == 202  # type: ignore[index]
    assert len(errors) == 2, errors
    for error in errors:  # main at 53413f5: "another thread is inside perform()"
        assert "re-entered from the same thread" in error, errors
        assert "another thread" not in error
    assert len(server.requests) == 1
    engine.close()  # usable again once perform() returned
    assert engine.closed
