"""AsyncClient: asyncio on the same native engine, without blocking the event loop.

One engine thread per client drives a libcurl multi handle (GIL released while it waits) with the
per-mailbox Scheduler that Client.send_many uses: it submits, retries and requeues on its own,
and wakes a loop only when a call awaited there has news, once per batch of finished transfers.
1,000 concurrent sends cost one OS thread; a send_many costs no task or future per item.

The engine thread holds only an _EngineState, never the AsyncClient: a client dropped without
aclose() is collected, and its finalizer stops the thread. At interpreter exit an atexit handler
stops every engine thread before libcurl and OpenSSL are torn down.
"""

from __future__ import annotations

import asyncio
import atexit
import inspect
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, TypeAlias

from . import _log, _native
from ._bulk import Batch, Scheduler, TokenPending, check_limits, token_error
from ._client import DEFAULT_RETRY, Client
from ._errors import AuthenticationError, SendError
from ._progress import reporter
from ._receipt import Receipt
from ._request import CLOUDS, client_request_id_or_new
from ._retry import Retry
from ._tokens import EXPIRY_MARGIN, TokenSource, token_from_result

if TYPE_CHECKING:
    from typing import Any, Protocol

    from ._outcome import Outcome
    from ._progress import ProgressArg
    from ._request import Item
    from ._tokens import AccessTokenLike, TokenArg

    class AsyncCredentialLike(Protocol):
        """azure.identity.aio style: ``get_token`` is a coroutine function."""

        async def get_token(self, *scopes: str, **kwargs: Any) -> AccessTokenLike: ...

    AsyncTokenArg: TypeAlias = Callable[[], Awaitable[str | dict[str, Any]]] | AsyncCredentialLike


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


class _AsyncToken(TokenSource):
    """An async credential (``async def get_token``) or an async callable returning a token.

    The token is fetched in the event loop (awaited) before a call is handed to the engine
    thread, and again when the engine thread finds none valid (after a 401, or near expiry): it
    then raises TokenPending and asks a loop to fetch one. The engine thread never runs a
    coroutine and never waits on a loop.
    """

    def __init__(self, fetch: Callable[[], Awaitable[tuple[str, float]]], per_call: bool) -> None:
        self._fetch = fetch
        self._per_call = per_call  # an async callable is asked again by every call
        # (header, refresh at, the last fetch's error), replaced as a whole: read in one step.
        self._state: tuple[str | None, float, BaseException | None] = (None, 0.0, None)
        self._fetching: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}

    def header(self) -> str:
        header, refresh_at, error = self._state
        if header is not None and time.time() < refresh_at:
            return header
        if error is not None:
            raise _provider_error(error)  # a fresh one per item
        raise TokenPending

    def invalidate(self) -> None:
        self._state = (None, 0.0, None)

    def error(self) -> BaseException | None:
        return self._state[2]

    async def ensure(self) -> None:
        """In the loop: make sure a token is there for a new call (raises the provider's error
        as an AuthenticationError)."""
        header, refresh_at, _ = self._state
        if self._per_call or header is None or time.time() >= refresh_at:
            await self.refresh()
        error = self._state[2]
        if error is not None:
            raise _provider_error(error)

    async def refresh(self) -> None:
        """Fetch a token; concurrent calls in one loop share one fetch. Never raises."""
        loop = asyncio.get_running_loop()
        task = self._fetching.get(loop)
        if task is None or task.done():
            task = self._fetching[loop] = loop.create_task(self._run_fetch())
        await asyncio.shield(task)  # a cancelled caller does not cancel the shared fetch

    async def _run_fetch(self) -> None:
        try:
            header, refresh_at = await self._fetch()
        except Exception as exc:
            self._state = (None, 0.0, exc)
        else:
            self._state = (header, refresh_at, None)
        finally:
            self._fetching.pop(asyncio.get_running_loop(), None)


def _provider_error(error: BaseException) -> SendError:
    if isinstance(error, AuthenticationError):  # an MSAL error dict: keep its code and message
        fresh = AuthenticationError(0, code=error.code, message=error.message, may_have_sent=False)
        fresh.__cause__ = error.__cause__
        return fresh
    return token_error(error)  # type: ignore[arg-type]


def _refresh_at(expires_on: float) -> float:
    """When to fetch again: 5 minutes before expiry, but a short-lived token serves half its
    remaining life, and a fresh one at least a second (a 401 then says if it is bad), so that
    an expired or short-lived token never makes every item fetch again."""
    now = time.time()
    left = expires_on - now
    return max(expires_on - min(EXPIRY_MARGIN, left / 2), now + 1.0)


def _async_token(token: object, scope: str) -> _AsyncToken | None:
    """An _AsyncToken for an async credential or async callable; None for anything else."""
    get_token = getattr(token, "get_token", None)
    if callable(get_token):
        if not inspect.iscoroutinefunction(get_token):
            return None

        async def from_credential() -> tuple[str, float]:
            access = await get_token(scope)
            header = "Authorization: Bearer " + token_from_result(access.token)
            return header, _refresh_at(float(access.expires_on))

        return _AsyncToken(from_credential, per_call=False)
    call = getattr(type(token), "__call__", None)  # noqa: B004  # an object's async __call__
    if callable(token) and (
        inspect.iscoroutinefunction(token) or inspect.iscoroutinefunction(call)
    ):
        provider: Callable[[], Awaitable[object]] = token  # type: ignore[assignment]

        async def from_callable() -> tuple[str, float]:
            header = "Authorization: Bearer " + token_from_result(await provider())
            return header, float("inf")  # valid until a 401; every call asks again

        return _AsyncToken(from_callable, per_call=True)
    return None


class _EngineState:
    """What the engine thread works with. It holds no reference to the AsyncClient, so a client
    dropped without aclose() can be collected (its finalizer then stops the thread)."""

    def __init__(self, client: Client, max_per_mailbox: int, lock: threading.Lock) -> None:
        self.lock = lock  # the client's: guards calls against _abandon
        self.engine = _native.Engine(share=_native.Share(), **client._options)
        self.scheduler = Scheduler(client, self.engine, max_per_mailbox)
        # Work for the engine thread, which alone touches the scheduler: loops append, it pops.
        self.inbox: deque[tuple[Callable[[Batch], None], Batch]] = deque()
        self.wake_pending = False  # a wakeup() is on its way, so more posts need none
        self.calls: dict[_Call, None] = {}  # awaited now: answered even if the engine stops
        self.closed = False  # set once; the thread leaves its loop and libcurl for good
        self.why = "the AsyncClient was closed during the send"
        self.token_requested = False
        self.forsaken = False  # exit did not wait for this thread: it must not touch libcurl
        self.thread = threading.Thread(
            target=_run_engine, args=(self,), name="graphsend-engine", daemon=True
        )

    def stop(self, why: str | None = None) -> None:
        """Any thread: make the engine thread leave its loop, close the engine and exit."""
        if not self.closed:
            if why is not None:
                self.why = why
            self.closed = True
        if self.thread.is_alive():
            self.engine.wakeup()  # no libcurl call: it writes the engine's eventfd

    def want_token(self) -> None:
        """Engine thread: ask the loops of the awaiting calls to fetch a token."""
        if self.token_requested:
            return
        self.token_requested = True
        for loop in {call.loop for call in list(self.calls)}:
            try:
                loop.call_soon_threadsafe(self._start_refresh)
            except RuntimeError:
                pass  # that loop is closed

    def _start_refresh(self) -> None:
        """In a loop: fetch the token, then wake the engine thread to use it (or report the
        error on the items waiting for it)."""
        tokens = self.scheduler.tokens
        assert isinstance(tokens, _AsyncToken)

        async def refresh() -> None:
            try:
                await tokens.refresh()
            finally:
                self.token_requested = False
                if not self.closed:
                    self.engine.wakeup()

        task = asyncio.get_running_loop().create_task(refresh())
        _background.add(task)
        task.add_done_callback(_background.discard)


_background: set[asyncio.Task[None]] = set()  # token refreshes running in some loop
_live: weakref.WeakSet[_EngineState] = weakref.WeakSet()  # engine threads not yet stopped
_exiting = False
_atexit_registered = False


def _stop_all_at_exit() -> None:
    """At interpreter exit, before libcurl and OpenSSL clean up: stop every engine thread.

    A daemon thread still inside libcurl when OpenSSL's atexit cleanup runs crashes the process.
    """
    global _exiting
    _exiting = True
    states = list(_live)
    for state in states:
        state.stop("the interpreter exited during the send")
    deadline = time.monotonic() + 5.0
    for state in states:
        state.thread.join(max(0.0, deadline - time.monotonic()))
        if state.thread.is_alive():  # stuck in a token provider, say: leave its engine alone
            state.forsaken = True


def _run_engine(state: _EngineState) -> None:
    """The engine thread: wait on sockets with the GIL released, schedule, tell the loops."""
    engine, scheduler, inbox = state.engine, state.scheduler, state.inbox
    try:
        while not state.closed:
            state.wake_pending = False  # before draining: a post after this wakes us again
            while inbox:
                op, call = inbox.popleft()
                op(call)
            now = time.monotonic()
            next_wake = scheduler.start_ready(now)
            if scheduler.token_wanted:
                scheduler.token_wanted = False
                state.want_token()
            if scheduler.touched:
                timeout = 0.0  # items settled without a transfer: tell their loops now
            else:
                timeout = 1.0 if next_wake is None else max(0.0, min(next_wake - now, 1.0))
            if state.closed:
                break  # never enter libcurl again once a stop began
            finished = engine.perform(timeout)
            log = _log.debug_enabled() is not None
            for tag, result in finished:
                scheduler.finish(tag, result, log)
            if scheduler.touched:
                touched, scheduler.touched = scheduler.touched, {}
                news = [(c, c.done, c.finished()) for c in touched]  # type: ignore[attr-defined]
                _tell([n for n in news if n[2] or n[0].progress])  # type: ignore[misc]
    except BaseException as exc:  # never leave awaiting calls hanging
        state.closed = True
        state.why = f"the engine thread failed ({exc!r})"
        raise
    finally:
        _live.discard(state)
        try:
            if not state.forsaken:
                engine.close()
        finally:
            _abandon(state)


def _abandon(state: _EngineState) -> None:
    """Calls still awaited learn that their transfers were abandoned mid-flight."""
    with state.lock:  # after this, _post refuses new calls
        state.closed = True
        calls = list(state.calls)
    for call in calls:
        call.settle(state.scheduler.in_flight, f"{state.why}; it may have been sent")
    _tell([(call, call.done, True) for call in calls])


class AsyncClient:
    """The asyncio twin of :class:`Client`; same constructor arguments.

    ``token`` may also be an async credential (``azure.identity.aio``: ``async def get_token``)
    or an async callable returning a token; they are awaited in the event loop.
    ``max_per_mailbox`` (default 4, Outlook's concurrency limit per app per mailbox) caps
    concurrent ``send()`` calls to one mailbox as well as ``send_many``, whichever event loop
    they come from.
    """

    def __init__(
        self,
        token: TokenArg | AsyncTokenArg,
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
        self._async_token = _async_token(token, CLOUDS.get(cloud, "") + "/.default")
        # A Client holds the validated configuration, the token source and the retry policy.
        self._client = Client(
            token if self._async_token is None else self._async_token,
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
        self._state: _EngineState | None = None
        self._lock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"<graphsend.AsyncClient base_url={self.base_url!r}>"

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the engine thread (without blocking the loop) and close every connection.

        Calls still awaited end at once: their in-flight items may have been sent."""
        with self._lock:
            self._closed = True
            state = self._state
        if state is not None:
            state.stop("the AsyncClient was closed during the send")
            await asyncio.get_running_loop().run_in_executor(None, state.thread.join)
        self._client.close()

    async def send(
        self, message_id: str, *, user: str | None = None, client_request_id: str | None = None
    ) -> Receipt:
        """Send one draft; raises a SendError subclass as ``Client.send`` would."""
        call = _Call(1)
        crid = client_request_id_or_new(client_request_id)
        call.add(self._client._prefix, user, message_id, crid)
        if self._async_token is not None:
            try:
                await self._async_token.ensure()
            except SendError as error:
                error.client_request_id = crid
                raise error from error.__cause__
        await self._run(call)
        got = call.settle({})[0]
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
        """Like ``Client.send_many``; results in input order, Receipt or SendError each.

        When the call stops early (the task is cancelled, ``progress`` raises), nothing more is
        started, the transfers in flight are aborted, and the exception carries ``.results``.
        """
        check_limits(max_concurrency, 1)
        call = _Call(max_concurrency, stop_on_error)
        call.add_items(self._client._prefix, items)  # bad input raises before anything is sent
        total = len(call.jobs)
        if self._async_token is not None and total:
            try:
                await self._async_token.ensure()
            except SendError:  # no token: every item fails, each with its own error
                error = self._async_token.error()
                assert error is not None
                return self._unsent(call, error)
        report = reporter(progress, total)
        note = getattr(report, "note", None)
        call.progress = report is not None
        shown = 0
        notice = None

        def show(done: int) -> None:
            nonlocal shown, notice
            if report is not None:
                if note is not None and call.notice is not notice:
                    notice = call.notice
                    if notice is not None:
                        note(notice)
                while shown < done:
                    shown += 1
                    report(shown, total)

        try:
            if total:
                await self._run(call, show)
            show(call.seen_done)
        except BaseException as exc:
            exc.results = call.settle({})  # type: ignore[attr-defined]
            raise
        return call.settle({})  # finished: nothing of it is in flight

    @staticmethod
    def _unsent(call: _Call, error: BaseException) -> list[Outcome]:
        results: list[Outcome] = []
        for job in call.jobs:
            item_error = _provider_error(error)
            item_error.client_request_id = job.crid
            results.append(item_error)
        call.jobs = []
        return results

    async def _run(self, call: _Call, progress: Callable[[int], None] | None = None) -> None:
        """Hand the call to the engine thread and wait until it has finished.

        If the wait ends early (cancelled, or ``progress`` raised), the call is stopped and this
        waits until the engine thread has aborted its transfers, so that every item's outcome
        is known: the results then say which requests were written."""
        loop = asyncio.get_running_loop()
        call.loop = loop
        call.waiter = loop.create_future()
        state = self._post(call)
        try:
            while not call.seen_finished:
                await call.waiter
                call.waiter = loop.create_future()  # before anything else can await
                if progress is not None and not call.seen_finished:
                    progress(call.seen_done)
        except BaseException:
            self._post(call, cancel=True)  # start nothing more, abort what is in flight
            if call.waiter.done():  # cancelled along with the task
                call.waiter = loop.create_future()
            try:
                while not call.seen_finished:
                    await call.waiter
                    call.waiter = loop.create_future()
            except asyncio.CancelledError:
                # Cancelled again while waiting: report what the engine thread knows now.
                call.settle(
                    state.scheduler.in_flight,
                    "cancelled while in flight; it may have been sent",
                    keep_jobs=True,
                )
            raise
        finally:
            state.calls.pop(call, None)

    def _post(self, call: _Call, cancel: bool = False) -> _EngineState:
        with self._lock:
            state = self._state
            if cancel:
                assert state is not None
                if state.closed:
                    return state  # the engine thread has stopped (or is stopping) everything
            else:
                if self._closed:
                    raise ValueError("this AsyncClient is closed")
                if state is None:
                    state = self._state = self._start_engine()
                elif state.closed:
                    raise ValueError(f"this AsyncClient can no longer send: {state.why}")
                state.calls[call] = None
            state.inbox.append((state.scheduler.cancel if cancel else state.scheduler.add, call))
            # Sends posted in one go (a gather) wake the engine thread once.
            if not state.wake_pending:
                state.wake_pending = True
                state.engine.wakeup()
            return state

    def _start_engine(self) -> _EngineState:
        global _atexit_registered
        if _exiting:
            raise RuntimeError("the interpreter is shutting down")
        state = _EngineState(self._client, self.max_per_mailbox, self._lock)
        if not _atexit_registered:
            atexit.register(_stop_all_at_exit)
            _atexit_registered = True
        # Dropping the client without aclose() stops the thread; so does interpreter exit.
        weakref.finalize(self, state.stop, "the AsyncClient was garbage-collected").atexit = False
        _live.add(state)
        state.thread.start()
        return state


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
