"""AsyncClient: asyncio on the same native engine, without blocking the event loop.

One engine thread per client runs a libcurl multi handle (GIL released while it waits) and hands
finished transfers back with ``call_soon_threadsafe``: 1,000 concurrent sends cost one OS thread,
not a thread or executor job each. Retry policy and error mapping are the ones Client uses.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TypeAlias

from . import _native
from ._bulk import check_limits
from ._client import DEFAULT_RETRY, Client
from ._errors import SendError
from ._outcome import Outcome, outcome
from ._progress import reporter
from ._receipt import Receipt
from ._request import client_request_id_or_new, send_path
from ._retry import Retry, RetryState

if TYPE_CHECKING:
    from ._progress import ProgressArg
    from ._request import Item
    from ._tokens import TokenArg

_Waiter: TypeAlias = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]"]


class AsyncClient:
    """The asyncio twin of :class:`Client`; same constructor arguments.

    ``max_per_mailbox`` (default 4, Outlook's concurrency limit per app per mailbox) caps
    concurrent ``send()`` calls to one mailbox as well as ``send_many``.
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
        self._thread: threading.Thread | None = None
        self._waiters: dict[int, _Waiter] = {}
        self._tags = itertools.count()
        # Per event loop: a semaphore belongs to the loop that first waits on it, and one client
        # may serve several loops (asyncio.run() twice, a notebook's loop and a thread's).
        self._mailbox_slots: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[str, asyncio.Semaphore]
        ] = weakref.WeakKeyDictionary()
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
        self._abandon_waiters("the AsyncClient was closed during the send")

    def _abandon_waiters(self, why: str) -> None:
        """Sends still waiting learn that their transfer was abandoned mid-flight."""
        waiters, self._waiters = self._waiters, {}
        for loop, future in waiters.values():
            error = SendError(f"{why}; it may have been sent", may_have_sent=True)
            try:
                loop.call_soon_threadsafe(_fail, future, error)
            except RuntimeError:
                pass  # that loop is closed: nobody is waiting any more

    async def send(
        self, message_id: str, *, user: str | None = None, client_request_id: str | None = None
    ) -> Receipt:
        """Send one draft; raises a SendError subclass as ``Client.send`` would."""
        url = self._client._prefix + send_path(user, message_id)
        crid = client_request_id_or_new(client_request_id)
        mailbox = "me" if user is None else user.lower()
        async with self._slot(mailbox):
            got = await self._send_with_retries(url, crid)
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
        pairs = [item if isinstance(item, tuple) else (None, item) for item in items]
        for user, message_id in pairs:  # bad input raises before anything is sent
            send_path(user, message_id)
        report = reporter(progress, len(pairs))
        overall = asyncio.Semaphore(max_concurrency)
        stop = asyncio.Event()
        done = 0

        async def one(user: str | None, message_id: str) -> Receipt | SendError:
            nonlocal done
            async with overall:
                if stop.is_set():
                    return SendError(
                        "not sent: the batch stopped before this item", may_have_sent=False
                    )
                try:
                    result: Receipt | SendError = await self.send(message_id, user=user)
                except SendError as exc:
                    result = exc
                    if stop_on_error:
                        stop.set()
            done += 1
            if report is not None:
                report(done, len(pairs))
            return result

        return list(await asyncio.gather(*(one(u, m) for u, m in pairs)))

    def _slot(self, mailbox: str) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        slots = self._mailbox_slots.get(loop)
        if slots is None:
            slots = self._mailbox_slots[loop] = {}
        slot = slots.get(mailbox)
        if slot is None:
            slot = slots[mailbox] = asyncio.Semaphore(self.max_per_mailbox)
        return slot

    async def _send_with_retries(self, url: str, crid: str) -> Outcome:
        tokens = self._client._tokens
        crid_header = "client-request-id: " + crid
        headers = (tokens.header(), crid_header)
        state: RetryState | None = None
        while True:
            got = outcome(await self._transfer(url, headers), crid)
            if isinstance(got, Receipt):
                return got
            if state is None:
                state = RetryState(self._client.retry)
            wait = state.next_wait(got, tokens)
            if wait is None:
                return got
            self._client._log_retry(url, got, wait, state.attempt)
            await asyncio.sleep(wait)
            headers = (tokens.header(), crid_header, f"Retry-Attempt: {state.attempt - 1}")

    async def _transfer(self, url: str, headers: tuple[str, ...]) -> _native.Result:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_native.Result] = loop.create_future()
        tag = next(self._tags)
        self._waiters[tag] = (loop, future)
        engine = self._running_engine()
        engine.submit(tag, url, headers)
        try:
            return await future
        except asyncio.CancelledError:
            # Cancelling the task cancels the transfer; its late result is dropped.
            self._waiters.pop(tag, None)
            engine.cancel(tag)
            raise

    def _running_engine(self) -> _native.Engine:
        with self._lock:
            if self._closed:
                raise ValueError("this AsyncClient is closed")
            if self._engine is None:
                self._engine = _native.Engine(share=_native.Share(), **self._client._options)
                self._thread = threading.Thread(
                    target=self._run_engine,
                    args=(self._engine,),
                    name="graphsend-engine",
                    daemon=True,
                )
                self._thread.start()
            return self._engine

    def _run_engine(self, engine: _native.Engine) -> None:
        """The engine thread: wait on sockets with the GIL released, then resolve futures."""
        try:
            while not self._closed:
                self._deliver(engine.perform(1.0))
        except BaseException as exc:  # never leave awaiting sends hanging
            with self._lock:
                self._closed = True
            self._abandon_waiters(f"the engine thread failed ({exc!r})")
            raise

    def _deliver(self, finished: list[tuple[int, _native.Result]]) -> None:
        """Hand finished transfers to their loops: one wake-up per loop per batch."""
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any]]] = {}
        for tag, result in finished:
            waiter = self._waiters.pop(tag, None)
            if waiter is not None:
                by_loop.setdefault(waiter[0], []).append((waiter[1], result))
        for loop, batch in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve, batch)
            except RuntimeError:
                pass  # that loop is closed: nobody is waiting any more


def _fail(future: asyncio.Future[Any], error: SendError) -> None:
    if not future.done():
        future.set_exception(error)


def _resolve(batch: list[tuple[asyncio.Future[Any], Any]]) -> None:
    for future, result in batch:
        if not future.done():
            future.set_result(result)
