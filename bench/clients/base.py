"""The runner contract and the pieces several families share."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from itertools import count
from typing import Any, Protocol

from ..common import draft_id


class Runner(Protocol):
    def run(self, n: int) -> int:
        """Do n units of work (sends, bulk rounds, or sends per thread); return how many 202s."""
        ...

    def close(self) -> None: ...


class NotAvailable(Exception):
    """The client cannot run here (not built yet, no HTTP/2, ...); the text says why."""


class TransferClock:
    """Adds up the transfer time a libcurl-based client reports (graphsend's Receipt.elapsed,
    pycurl's TOTAL_TIME): time spent inside libcurl, with the GIL released. Wall time minus
    this is what the client does per send with the GIL held."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def add(self, seconds: float) -> None:
        self.seconds += seconds


class Sequential:
    """S1 for a blocking client: `send(message_id) -> bool` called n times in a row."""

    def __init__(
        self,
        send: Callable[[str], bool],
        close: Callable[[], object] = lambda: None,
        clock: TransferClock | None = None,
    ):
        self._send = send
        self._close = close
        self._ids = count()
        self.clock = clock

    def run(self, n: int) -> int:
        send, ids = self._send, self._ids
        ok = 0
        for _ in range(n):
            ok += send(draft_id(next(ids)))
        return ok

    def close(self) -> None:
        self._close()


class AsyncSequential:
    """S1 for an asyncio client: `await send(message_id)` n times in a row on one event loop."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        send: Callable[[str], Awaitable[bool]],
        close: Callable[[], Coroutine[Any, Any, object]] | None = None,
    ) -> None:
        self._loop = loop
        self._send = send
        self._close = close
        self._ids = count()

    async def _many(self, n: int) -> int:
        send, ids = self._send, self._ids
        ok = 0
        for _ in range(n):
            ok += await send(draft_id(next(ids)))
        return ok

    def run(self, n: int) -> int:
        return self._loop.run_until_complete(self._many(n))

    def close(self) -> None:
        if self._close is not None:
            self._loop.run_until_complete(self._close())


class AsyncBulk:
    """S3 for an asyncio client: every item a task, a Semaphore(cap) per mailbox, one gather.

    This is the shape the peers' documentation suggests for bounded concurrency. `send` is
    `await send(message_id, user)`, as the async peers' senders take it.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        plan: Any,
        send: Callable[[str, str], Awaitable[bool]],
        close: Callable[[], Coroutine[Any, Any, object]] | None = None,
        caller_limits: bool = True,
    ) -> None:
        self._loop, self._plan, self._send, self._close = loop, plan, send, close
        self._caller_limits = caller_limits
        self._round = 0

    async def _bulk(self, items: Iterable[tuple[str, str]]) -> int:
        send = self._send  # as is when the client caps mailboxes itself
        if self._caller_limits:
            limits: dict[str, asyncio.Semaphore] = {}

            async def limited(message_id: str, user: str) -> bool:
                sem = limits.get(user)
                if sem is None:
                    sem = limits[user] = asyncio.Semaphore(self._plan.cap)
                async with sem:
                    return await self._send(message_id, user)

            send = limited
        done = await asyncio.gather(*(send(m, u) for u, m in items), return_exceptions=True)
        return sum(1 for d in done if d is True)

    def run(self, n: int) -> int:
        ok = 0
        for _ in range(n):
            ok += self._loop.run_until_complete(self._bulk(self._plan.items(self._round)))
            self._round += 1
        return ok

    def close(self) -> None:
        if self._close is not None:
            self._loop.run_until_complete(self._close())


class Threaded:
    """S2: `threads` long-lived threads; run(n) has each do n sends, started together.

    Threads live across rounds so per-thread connections (graphsend's handles, requests'
    Sessions) stay open, as they would in a thread pool.
    """

    def __init__(self, threads: int, make_sender: Callable[[], Callable[[str], bool]]) -> None:
        self._threads = threads
        self._make_sender = make_sender
        self._start = threading.Barrier(threads + 1)
        self._end = threading.Barrier(threads + 1)
        self._n = 0
        self._ok = [0] * threads
        self._stop = False
        self._ids = count()
        self._ids_lock = threading.Lock()
        self._workers = [
            threading.Thread(target=self._loop, args=(i,), daemon=True) for i in range(threads)
        ]
        for t in self._workers:
            t.start()

    def _loop(self, index: int) -> None:
        send = self._make_sender()
        while True:
            self._start.wait()
            if self._stop:
                return
            with self._ids_lock:
                first = next(self._ids) * 1_000_000
            ok = 0
            for i in range(self._n):
                ok += send(draft_id(first + i))
            self._ok[index] = ok
            self._end.wait()

    def run(self, n: int) -> int:
        self._n = n
        self._start.wait()
        self._end.wait()
        return sum(self._ok)

    def close(self) -> None:
        self._stop = True
        self._start.wait()
        for t in self._workers:
            t.join()
