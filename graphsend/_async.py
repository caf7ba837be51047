"""AsyncClient: asyncio on the same native engine, without blocking the event loop.

One engine thread per client drives a libcurl multi handle (GIL released while it waits) with the
per-mailbox Scheduler that Client.send_many uses: it submits, retries and requeues on its own,
and wakes a loop only when a call awaited there has news, once per batch of finished transfers.
1,000 concurrent sends cost one OS thread; a send_many costs no task or future per item.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, TypeAlias

from . import _native
from ._bulk import Batch, Scheduler, check_limits
from ._client import DEFAULT_RETRY, Client
from ._errors import SendError
from ._progress import reporter
from ._receipt import Receipt
from ._request import client_request_id_or_new
from ._retry import Retry

if TYPE_CHECKING:
    from ._progress import ProgressArg
    from ._request import Item
    from ._tokens import TokenArg


class _Call(Batch):
    """A Batch awaited in an event loop. The engine thread fills the Batch fields; the seen_*
    fields and the waiter are only touched in the loop."""

    __slots__ = ("loop", "progress", "seen_done", "seen_finished", "waiter")

    loop: asyncio.AbstractEventLoop
    waiter: asyncio.Future[None]

    def __init__(self, limit: int, stop_on_error: bool = False) -> None:
        super().__init__(limit, stop_on_error)
        self.progress = False  # wake the loop on every batch of results, not just at the end
        self.seen_done = 0
        self.seen_finished = False


# (call, items done, finished) as the engine thread saw them.
_News: TypeAlias = list[tuple[_Call, int, bool]]


class AsyncClient:
    """The asyncio twin of :class:`Client`; same constructor arguments.

    ``max_per_mailbox`` (default 4, Outlook's concurrency limit per app per mailbox) caps
    concurrent ``send()`` calls to one mailbox as well as ``send_many``, whichever event loop
    they come from.
    """

    def __init__(
        self,
        token: TokenArg,
        *,
        cloud: str = "global",
        base_url: str | None = None,
        api_version: str = "v1.0",
        timeout: float = 100.0,
        connect_timeout: float = 30.0,
        retry: Retry = DEFAULT_RETRY,
        proxy: str | bool | None = None,
        ca_bundle: str | os.PathLike[str] | None = None,
        user_agent: str | None = None,
        http2: bool = True,
        max_per_mailbox: int = 4,
    ) -> None:
        check_limits(1, max_per_mailbox)
        # A Client holds the validated configuration, the token source and the retry policy.
        self._client = Client(
            token,
            cloud=cloud,
            base_url=base_url,
            api_version=api_version,
            timeout=timeout,
            connect_timeout=connect_timeout,
            retry=retry,
            proxy=proxy,
            ca_bundle=ca_bundle,
            user_agent=user_agent,
            http2=http2,
        )
        self.base_url = self._client.base_url
        self.max_per_mailbox = max_per_mailbox
        self._engine: _native.Engine | None = None
        self._scheduler: Scheduler | None = None
        self._thread: threading.Thread | None = None
        # Work for the engine thread, which alone touches the scheduler: loops append, it pops.
        self._inbox: deque[tuple[Callable[[Batch], None], Batch]] = deque()
        self._wake_pending = False  # a wakeup() is on its way, so more posts need none
        self._calls: dict[_Call, None] = {}  # awaited now: answered even if the engine dies
        self._lock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"<graphsend.AsyncClient base_url={self.base_url!r}>"

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the engine thread (without blocking the loop) and close every connection."""
        with self._lock:
            self._closed = True
            engine, thread = self._engine, self._thread
        if engine is not None and thread is not None:
            engine.wakeup()
            await asyncio.get_running_loop().run_in_executor(None, thread.join)
            engine.close()
        self._client.close()
        self._abandon("the AsyncClient was closed during the send")

    async def send(
        self, message_id: str, *, user: str | None = None, client_request_id: str | None = None
    ) -> Receipt:
        """Send one draft; raises a SendError subclass as ``Client.send`` would."""
        call = _Call(1)
        crid = client_request_id_or_new(client_request_id)
        call.add(self._client._prefix, user, message_id, crid)
        await self._run(call)
        got = call.settle({})[0]
        if call.error is not None:
            raise call.error
        if isinstance(got, SendError):
            raise got
        return got

    async def send_many(
        self,
        items: Iterable[Item],
        *,
        max_concurrency: int = 64,
        progress: ProgressArg = None,
        stop_on_error: bool = False,
    ) -> list[Receipt | SendError]:
        """Like ``Client.send_many``; results in input order, Receipt or SendError each."""
        check_limits(max_concurrency, 1)
        call = _Call(max_concurrency, stop_on_error)
        call.add_items(self._client._prefix, items)  # bad input raises before anything is sent
        total = len(call.jobs)
        report = reporter(progress, total)
        call.progress = report is not None
        shown = 0

        def show(done: int) -> None:
            nonlocal shown
            if report is not None:
                while shown < done:
                    shown += 1
                    report(shown, total)

        if total:
            await self._run(call, show)
        show(call.seen_done)
        results = call.settle({})  # finished: nothing of it is in flight
        if call.error is not None:
            call.error.results = results  # type: ignore[attr-defined]
            raise call.error
        return results

    async def _run(self, call: _Call, progress: Callable[[int], None] | None = None) -> None:
        """Hand the call to the engine thread and wait until it has finished."""
        loop = asyncio.get_running_loop()
        call.loop = loop
        call.waiter = loop.create_future()
        self._calls[call] = None
        try:
            self._post(call)
            while True:
                await call.waiter
                if call.seen_finished:
                    return
                if progress is not None:
                    progress(call.seen_done)
                call.waiter = loop.create_future()
        except asyncio.CancelledError:
            # Cancelling the awaiting task cancels the transfers; their late results are dropped.
            self._post(call, cancel=True)
            raise
        finally:
            self._calls.pop(call, None)

    def _post(self, call: _Call, cancel: bool = False) -> None:
        with self._lock:
            if self._closed or self._scheduler is None:
                if cancel:
                    return  # nothing runs any more, or never did
                if self._closed:
                    raise ValueError("this AsyncClient is closed")
                self._start_engine()
            scheduler, engine = self._scheduler, self._engine
            assert scheduler is not None and engine is not None
            self._inbox.append((scheduler.cancel if cancel else scheduler.add, call))
            # Sends posted in one go (a gather) wake the engine thread once.
            if not self._wake_pending:
                self._wake_pending = True
                engine.wakeup()

    def _start_engine(self) -> None:
        engine = self._engine = _native.Engine(share=_native.Share(), **self._client._options)
        scheduler = self._scheduler = Scheduler(self._client, engine, self.max_per_mailbox)
        self._thread = threading.Thread(
            target=self._run_engine, args=(engine, scheduler), name="graphsend-engine", daemon=True
        )
        self._thread.start()

    def _run_engine(self, engine: _native.Engine, scheduler: Scheduler) -> None:
        """The engine thread: wait on sockets with the GIL released, schedule, tell the loops."""
        inbox = self._inbox
        try:
            while not self._closed:
                self._wake_pending = False  # before draining: a post after this wakes us again
                while inbox:
                    op, call = inbox.popleft()
                    op(call)
                now = time.monotonic()
                next_wake = scheduler.start_ready(now)
                timeout = 1.0 if next_wake is None else max(0.0, min(next_wake - now, 1.0))
                for tag, result in engine.perform(timeout):
                    scheduler.finish(tag, result)
                if scheduler.touched:
                    touched, scheduler.touched = scheduler.touched, {}
                    news = [(c, c.done, c.finished()) for c in touched]  # type: ignore[attr-defined]
                    _tell([n for n in news if n[2] or n[0].progress])  # type: ignore[misc]
        except BaseException as exc:  # never leave awaiting calls hanging
            with self._lock:
                self._closed = True
            self._abandon(f"the engine thread failed ({exc!r})")
            raise

    def _abandon(self, why: str) -> None:
        """Calls still awaited learn that their transfers were abandoned mid-flight."""
        in_flight = {} if self._scheduler is None else self._scheduler.in_flight
        calls = list(self._calls)
        for call in calls:
            call.settle(in_flight, f"{why}; it may have been sent")
        _tell([(call, call.done, True) for call in calls])


def _tell(news: _News) -> None:
    """Wake each loop once for all its calls with news."""
    by_loop: dict[asyncio.AbstractEventLoop, _News] = {}
    for item in news:
        by_loop.setdefault(item[0].loop, []).append(item)
    for loop, items in by_loop.items():
        try:
            loop.call_soon_threadsafe(_wake, items)
        except RuntimeError:
            pass  # that loop is closed: nobody is waiting any more


def _wake(news: _News) -> None:
    """In the loop: record what the engine thread saw and wake the awaiting coroutines."""
    for call, done, finished in news:
        call.seen_done = max(call.seen_done, done)
        call.seen_finished = call.seen_finished or finished
        if not call.waiter.done():
            call.waiter.set_result(None)
