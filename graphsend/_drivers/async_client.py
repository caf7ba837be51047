"""AsyncClient: asyncio on the same native core, driven by the running event loop.

Every event loop that uses a client gets its own _Driver: a LoopEngine (one libcurl multi), the
per-mailbox Scheduler that Client.send_many uses, and the loop registrations libcurl asks for.
libcurl's socket callback ends in loop.add_reader()/add_writer(), its timer in one call_later();
a ready socket calls LoopEngine.drive() (C, short and non-blocking, so the GIL stays held), the
finished transfers go to the Scheduler and the awaiting calls' futures resolve there and then.
No thread, no cross-thread hand-off, no task or future per item of a send_many.

A _Driver holds no reference to the AsyncClient: a client dropped without aclose() is collected
and its finalizer closes every driver's transfers.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import math
import os
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, TypeAlias

from graphsend import _native
from graphsend._drivers.bulk import (
    Batch,
    Scheduler,
    TokenPending,
    check_limits,
    token_error,
)
from graphsend._drivers.client import DEFAULT_RETRY, Client
from graphsend._drivers.drafting import draft_many_async
from graphsend._drivers.progress import reporter
from graphsend._drivers.sync import PREFER_IMMUTABLE, settle
from graphsend._operations import catalog as _operations
from graphsend._operations import compose as _compose
from graphsend._operations import reconcile as _reconcile
from graphsend._operations import upload as _upload
from graphsend._operations.catalog import Operation
from graphsend._rules import log as _log
from graphsend._rules.errors import AuthenticationError, SendError
from graphsend._rules.receipt import Receipt
from graphsend._rules.request import CLOUDS, check_text, client_request_id_or_new
from graphsend._rules.retry import Retry
from graphsend._rules.tokens import EXPIRY_MARGIN, TokenSource, token_from_result

if TYPE_CHECKING:
    import email.message
    from typing import Any, Protocol, TypeVar

    from graphsend._drivers.bulk import Job
    from graphsend._drivers.journal import Journal
    from graphsend._native import Result
    from graphsend._operations.message import Attachment, Message
    from graphsend._operations.reconcile import Verdict

    T = TypeVar("T")

    from graphsend._drivers.limiter import Limiter
    from graphsend._drivers.progress import ProgressArg
    from graphsend._rules.outcome import Outcome
    from graphsend._rules.request import Item
    from graphsend._rules.tokens import AccessTokenLike, TokenArg

    class AsyncCredentialLike(Protocol):
        """azure.identity.aio style: ``get_token`` is a coroutine function."""

        async def get_token(self, *scopes: str, **kwargs: Any) -> AccessTokenLike:
            """Return a token for ``scopes``, awaited in the event loop."""
            ...

    AsyncTokenArg: TypeAlias = Callable[[], Awaitable[str | dict[str, Any]]] | AsyncCredentialLike


class _Call(Batch):
    """A Batch awaited in an event loop; everything about it happens in that loop's thread."""

    __slots__ = ("ended", "failure", "progress", "waiter")

    waiter: asyncio.Future[None]

    def __init__(self, limit: int, stop_on_error: bool = False) -> None:
        super().__init__(limit, stop_on_error)
        self.progress = False  # wake the caller on every batch of results, not just at the end
        self.ended = False  # every item has its outcome (or the driver stopped)
        self.failure: Exception | None = None  # its journal could not be written: raised


class _AsyncToken(TokenSource):
    """An async credential (``async def get_token``) or an async callable returning a token.

    The token is awaited in the event loop before a call is handed to the Scheduler. When the
    Scheduler finds none valid later (after a 401, or near expiry), header() raises TokenPending:
    the Scheduler starts nothing, and the driver awaits a fresh token and starts again.
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

    def stale(self, header: str) -> bool:
        """A request that carried header got a 401, but a newer token is here already (the
        answers of the requests sent with the old one come in one by one, each in its own loop
        callback): retry with the new token rather than fetch yet another."""
        current = self._state[0]
        return current is not None and current != header

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


# libcurl's CURL_POLL_* (what to watch) and CURL_CSELECT_* (what is ready) bits, and
# LoopEngine's own: a connection socket libcurl is done with for now (its close will be told),
# and that close (fd -1: some close could not be recorded). See csrc/events.h.
_POLL_IN, _POLL_OUT, _POLL_REMOVE = 1, 2, 4
_SOCK_CLOSED, _SOCK_IDLE = 8, 16

# While a call is awaited, the loop wakes at least this often (seconds). Some loops' signal
# handlers schedule work with call_soon(), which does not wake a loop asleep in select():
# ipykernel's SIGINT handler (a kernel interrupt) is one, and its cancellation of the cell would
# wait for the next socket event, which for a slow server may be minutes away.
_HEARTBEAT = 0.2

# Transfers started per loop callback. Starting one (libcurl writes its request) takes tens of
# microseconds, so a gather of hundreds would hold the loop for tens of milliseconds at once;
# in slices, other tasks run between them.
_START_SLICE = 64

# A gather's tasks all take their first step in one loop iteration; their sends start in slices
# as they are added, so the first requests are out while the later tasks still run (S3: the whole
# first wave of 400). Up to this many slices (about 20 ms of starts) per iteration: a larger
# gather starts the rest in the queued kick's slices, with other tasks between them.
_EARLY_SLICES = 8

_NO_ADD_READER = (
    "AsyncClient needs an event loop that can watch sockets (loop.add_reader), and {loop} "
    "cannot (the Windows Proactor loop is one such). On Windows, run it under the selector "
    "loop: asyncio.set_event_loop_policy(asyncio.WindowsSelectorEventLoopPolicy())."
)


def _check_loop(loop: asyncio.AbstractEventLoop) -> None:
    proactor = getattr(asyncio, "ProactorEventLoop", None)
    add_reader = getattr(type(loop), "add_reader", None)
    if (
        add_reader is None
        or add_reader is asyncio.AbstractEventLoop.add_reader  # raises NotImplementedError
        or (proactor is not None and isinstance(loop, proactor))
    ):
        raise RuntimeError(_NO_ADD_READER.format(loop=type(loop).__name__))


class _Driver:
    """One event loop's libcurl multi, Scheduler and socket registrations. Runs in that loop's
    thread only; holds no reference to the AsyncClient."""

    def __init__(
        self, client: Client, max_per_mailbox: int, loop: asyncio.AbstractEventLoop
    ) -> None:
        _check_loop(loop)
        self.loop = loop
        self.engine = _native.LoopEngine(share=_native.Share(), **client._native_options())
        self.scheduler = Scheduler(client, self.engine, max_per_mailbox)
        self.fds: dict[int, int] = {}  # fd -> the _POLL_* bits registered with the loop
        # Kept-alive connections libcurl does not wait on: still registered for reading, since
        # the next send on one wants just that and (un)registering costs a system call each.
        # Readable while idle (the server closed it), one is unregistered there and then.
        self.idle: set[int] = set()
        # libcurl's timer: when it is due (loop time, inf: none), and the one call_at() that
        # serves it; a later deadline keeps the handle (it fires early and re-arms), so the
        # frequent timer updates of libcurl cost no loop handle each.
        self.timer_at = math.inf
        self.timer: asyncio.TimerHandle | None = None
        self.wake: asyncio.TimerHandle | None = None  # a throttled mailbox resumes
        self.wake_at = math.inf
        self.beat: asyncio.TimerHandle | None = None  # see _HEARTBEAT
        self.kick_pending = False
        self.added = 0  # items added since the last kick
        self.early = 0  # slices add() started since the queued kick last ran
        self.refreshing = False
        self.tasks: set[asyncio.Task[None]] = set()  # token refreshes
        self.calls: dict[_Call, None] = {}  # awaited now
        self.closing = False  # close() began: a failure inside it does not close again
        self.closed = False
        self.journals: dict[Journal, None] = {}  # of calls with journal=: flushed by _kick

    # ---- calls, from the awaiting coroutines

    def add(self, call: _Call) -> None:
        self.calls[call] = None
        self.scheduler.add(call)
        if call.journal is not None:
            from graphsend._drivers import journal as _journal

            self.journals[call.journal] = None
            if call.journal.doubtful:  # maybe sent before: ask the mailbox, before any kick
                _journal.reconcile(self.scheduler, call.journal)
        try:
            if self.kick_pending or len(self.calls) > 1:
                # Sends made in one go (a gather) start together, a slice at a time, and the
                # first slices as soon as they are there: not after every task of a large
                # gather has run.
                self.added += len(call.jobs)
                if self.added >= _START_SLICE and self.early < _EARLY_SLICES:
                    self.early += 1
                    self._kick(queued=self.kick_pending)
                else:
                    self._kick_soon()
            else:
                self._kick()  # a lone send starts now, not one loop iteration later
        except Exception as exc:
            # Starting failed (the engine, a limiter): every call gets its outcome from
            # close(), this one too; the exception must not reach only the task that added.
            if not self.closing:
                self.close(f"the event loop driver failed ({exc!r})")
            return
        if self.beat is None:
            self.beat = self.loop.call_later(_HEARTBEAT, self._heartbeat)

    def _heartbeat(self) -> None:
        self.beat = None
        if self.calls and not self.closed:
            self.beat = self.loop.call_later(_HEARTBEAT, self._heartbeat)

    def cancel(self, call: _Call) -> None:
        """Start nothing more for call and abort its transfers now: their results (which say
        whether each request was written) come back from this very drive()."""
        if not self.closed:
            self.scheduler.cancel(call)
            self._drive(-1)

    def let_go(self, call: _Call) -> None:
        """Client(limiter=...): the call has ended; the slots of its last answers (and of its
        queued items, if it was stopped) go back now, not at this client's next call: until
        then, other clients and processes could not have them."""
        scheduler = self.scheduler
        if scheduler.limiter is None or self.closed:
            return
        if call.stopping:
            scheduler.release_quietly(call)
        elif scheduler.returned and not self.kick_pending:  # (else the kick gives them)
            scheduler.release_quietly(queued=False)

    # ---- libcurl and the Scheduler

    def _kick_soon(self) -> None:
        if not self.kick_pending:
            self.kick_pending = True
            self.loop.call_soon(self._kick)

    def _kick(self, queued: bool = False) -> None:
        """Start what is ready (a slice of it). queued: called early, by add(), while the kick
        that _kick_soon() queued is still to come (it starts the rest)."""
        if not queued:
            self.kick_pending = False
            self.early = 0
        self.added = 0
        if self.closed:
            return
        scheduler = self.scheduler
        now = time.monotonic()
        running = len(scheduler.in_flight)
        next_wake = scheduler.start_ready(now, _START_SLICE)
        for journal in self.journals:  # what was submitted is recorded before it is written
            try:
                journal.flush()
            except Exception as exc:
                # (a full disk): its calls stop before their unrecorded starts are written;
                # the drive below collects them, and send_many raises this with the results.
                for call in self.calls:
                    if call.journal is journal and call.failure is None:
                        call.failure = exc
                        scheduler.cancel(call)
        if scheduler.ready and not scheduler.token_wanted:
            self._kick_soon()  # the slice was spent: the rest after the loop's other work
        if scheduler.token_wanted:
            scheduler.token_wanted = False
            self._refresh_token()
        if next_wake is not None and next_wake < self.wake_at:
            if self.wake is not None:
                self.wake.cancel()
            self.wake_at = next_wake
            self.wake = self.loop.call_later(max(0.0, next_wake - now), self._on_wake)
        if len(scheduler.in_flight) > running:
            self._drive(-1)  # starts what was submitted
        elif scheduler.touched:  # items settled without a transfer (a token error, a stop)
            self._drive(-1)

    def _on_wake(self) -> None:
        self.wake = None
        self.wake_at = math.inf
        self._kick()

    def _on_timer(self) -> None:
        self.timer = None
        if self.timer_at <= self.loop.time():
            self.timer_at = math.inf
            self._drive(-1)
        else:
            self._arm_timer()

    def _arm_timer(self) -> None:
        """One call_at for libcurl's timer, while transfers are in flight. Idle, libcurl still
        asks for a last call after each transfer; the next kick drives it anyway."""
        at = self.timer_at
        if at == math.inf or not self.scheduler.in_flight or self.closed:
            return
        if self.timer is not None:
            if self.timer.when() <= at:
                return  # fires early and re-arms
            self.timer.cancel()
        self.timer = self.loop.call_at(at, self._on_timer)

    def _drive(self, fd: int, flags: int = 0) -> None:
        """libcurl runs socket fd (or its timer); what finished goes to the Scheduler."""
        if fd in self.idle:
            self._forget(fd)  # libcurl finds the connection dead when it next looks at it
            return
        try:
            finished, changes, timer = self.engine.drive(fd, flags)
            if changes is not None:
                self._watch(changes)
            scheduler = self.scheduler
            if finished:
                log = _log.debug_enabled() is not None
                finish = scheduler.finish
                for tag, result in finished:
                    finish(tag, result, log)
                if scheduler.ready:
                    self._after_finish(scheduler)
            if timer is not None:
                self.timer_at = math.inf if timer < 0.0 else self.loop.time() + timer
            self._arm_timer()  # after finish(): in_flight says whether anything runs
            if scheduler.touched:
                touched, scheduler.touched = scheduler.touched, {}
                for call in touched:
                    _tell(call)  # type: ignore[arg-type]
        except Exception as exc:  # never leave awaiting calls hanging
            if not self.closing:
                self.close(f"the event loop driver failed ({exc!r})")
            raise

    def _after_finish(self, scheduler: Scheduler) -> None:
        """Mailboxes got room under their cap: a kick starts their next items. When none has
        any queued (sends awaited one at a time), their idle state is dropped here instead,
        which spares each send a loop callback."""
        ready = scheduler.ready
        if scheduler.sleeping:  # a reconciliation pause: start_ready() wakes it and its timer
            self._kick_soon()
            return
        for box in ready.values():
            if box.queue or box.paused_until:  # (a pause must outlive the box's last send)
                self._kick_soon()
                return
        mailboxes = scheduler.mailboxes
        for name, box in ready.items():
            if not box.in_flight and mailboxes.get(name) is box:
                del mailboxes[name]  # as start_ready() forgets an idle mailbox
        ready.clear()
        if scheduler.returned and not self.kick_pending:
            # Client(limiter=...): no kick gives these answers' slots back, and the call may
            # go on for long elsewhere (other mailboxes in flight): other clients want them.
            scheduler.release_quietly(queued=False)

    def _watch(self, changes: list[tuple[int, int]]) -> None:
        """Keep the loop's registrations in step with what libcurl waits for; in order, so
        that a closed socket's fd number reused by a new one is registered afresh."""
        loop, fds, idle, drive = self.loop, self.fds, self.idle, self._drive
        for fd, what in changes:
            had = fds.get(fd, 0)
            if what == _SOCK_IDLE:
                want = had & _POLL_IN  # (a writable socket would call back without end)
                if want:
                    idle.add(fd)
            elif what == _SOCK_CLOSED:
                if fd < 0:
                    self._rewatch()
                    continue
                idle.discard(fd)
                want = 0
            else:
                if idle:
                    idle.discard(fd)
                want = 0 if what & _POLL_REMOVE else what
            if want == had:
                continue
            # libcurl may already have closed a socket it no longer wants: nothing to undo.
            if had & _POLL_IN and not want & _POLL_IN:
                _quietly(loop.remove_reader, fd)
            if had & _POLL_OUT and not want & _POLL_OUT:
                _quietly(loop.remove_writer, fd)
            if want & _POLL_IN and not had & _POLL_IN:
                loop.add_reader(fd, drive, fd, _POLL_IN)
            if want & _POLL_OUT and not had & _POLL_OUT:
                loop.add_writer(fd, drive, fd, _POLL_OUT)
            if want:
                fds[fd] = want
            else:
                del fds[fd]

    def _forget(self, fd: int) -> None:
        """Unregister an idle connection's socket."""
        self.idle.discard(fd)
        had = self.fds.pop(fd, 0)
        if had & _POLL_IN:
            _quietly(self.loop.remove_reader, fd)
        if had & _POLL_OUT:
            _quietly(self.loop.remove_writer, fd)

    def _rewatch(self) -> None:
        """Some socket's close went unrecorded (out of memory): any idle one may be a closed
        fd, or its number reused, so every registration is made afresh."""
        for fd in list(self.idle):
            self._forget(fd)
        for fd, had in list(self.fds.items()):
            self._forget(fd)
            if had & _POLL_IN:
                self.loop.add_reader(fd, self._drive, fd, _POLL_IN)
            if had & _POLL_OUT:
                self.loop.add_writer(fd, self._drive, fd, _POLL_OUT)
            self.fds[fd] = had

    def _refresh_token(self) -> None:
        """The async token source has no valid token: await one, then start again."""
        if self.refreshing:
            return
        self.refreshing = True
        tokens = self.scheduler.tokens
        assert isinstance(tokens, _AsyncToken)

        async def refresh() -> None:
            try:
                await tokens.refresh()  # never raises: a failure is each item's outcome
            finally:
                self.refreshing = False
                if not self.closed:
                    self._kick_soon()

        task = self.loop.create_task(refresh())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # ---- the end

    def shutdown(self, why: str) -> None:
        """From any thread: close, in the loop's thread when that loop runs elsewhere."""
        loop = self.loop
        if loop.is_closed():
            self.close(why, touch_loop=False)
        elif _running_loop() is loop or not loop.is_running():
            self.close(why)
        else:
            try:
                loop.call_soon_threadsafe(self.close, why)
            except RuntimeError:  # closed meanwhile
                self.close(why, touch_loop=False)

    def close(self, why: str, touch_loop: bool = True) -> None:
        """Abort every transfer (the awaited calls get their results), unregister every socket
        and free the multi."""
        if self.closing:
            return
        self.closing = True
        calls = list(self.calls)
        if touch_loop:
            for call in calls:
                self.scheduler.cancel(call)
            try:
                self._drive(-1)  # the aborted transfers' results
            except Exception:
                pass  # the calls are settled below
        self.closed = True
        for handle in (self.timer, self.wake, self.beat):
            if handle is not None:
                handle.cancel()
        self.timer = self.wake = self.beat = None
        if touch_loop:
            for fd, had in self.fds.items():
                if had & _POLL_IN:
                    _quietly(self.loop.remove_reader, fd)
                if had & _POLL_OUT:
                    _quietly(self.loop.remove_writer, fd)
        self.fds.clear()
        self.idle.clear()
        self.engine.close()
        self.scheduler.abandon_in_flight()  # never collected (the loop is gone)
        self.scheduler.release_quietly()  # Client(limiter=...): give back what is held
        for call in calls:
            if not call.ended:
                call.settle(self.scheduler.in_flight, f"{why}; it may have been sent", True)
                call.ended = True
                if touch_loop and not call.waiter.done():
                    call.waiter.set_result(None)


def _tell(call: _Call) -> None:
    """The Scheduler has news of call: wake its coroutine if it is waiting for it."""
    if call.finished():
        call.ended = True
    elif not call.progress:
        return
    if not call.waiter.done():
        call.waiter.set_result(None)


def _quietly(remove: Callable[[int], object], fd: int) -> None:
    try:
        remove(fd)
    except (OSError, ValueError, RuntimeError):
        pass  # closed already (by libcurl, or the loop is closed)


_running_loop = asyncio._get_running_loop  # None outside a running loop, never raises


def _shutdown(drivers: dict[asyncio.AbstractEventLoop, _Driver], why: str) -> None:
    for driver in list(drivers.values()):
        driver.shutdown(why)
    drivers.clear()


class AsyncClient:
    """The asyncio twin of :class:`Client`; same constructor arguments, plus ``max_per_mailbox``.

    It runs on the caller's event loop: libcurl's sockets are watched with the loop's
    ``add_reader``/``add_writer`` and its timer with one ``call_at``, so there is no thread.
    Each event loop that uses the client gets its own connections. The Windows Proactor loop
    cannot watch sockets and is refused. Prefer ``async with``; a client that is never closed
    is closed when it is garbage-collected.

    Example:
        ::

            async with graphsend.AsyncClient(credential) as client:
                receipt = await client.send(draft_id, user="adele@contoso.com")

    Attributes:
        base_url: The Graph host requests go to.
        immutable_ids: Whether requests that return ids ask for immutable ones.
        max_per_mailbox: Requests in flight per mailbox, across every call on one event loop.
    """

    base_url: str
    immutable_ids: bool
    max_per_mailbox: int

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
        proxy_ca_bundle: str | os.PathLike[str] | None = None,
        user_agent: str | None = None,
        http2: bool = True,
        immutable_ids: bool = True,
        max_per_mailbox: int = 4,
        limiter: Limiter | None = None,
    ) -> None:
        """Check the configuration; no connection is made until the first request.

        Args:
            token: As for :class:`Client`, or also an async credential
                (``azure.identity.aio``: ``async def get_token``) or an ``async def``
                returning a token or an MSAL result dict; those are awaited in the loop.
            cloud: As for :class:`Client`.
            base_url: As for :class:`Client`.
            api_version: As for :class:`Client`.
            timeout: As for :class:`Client`.
            connect_timeout: As for :class:`Client`.
            retry: As for :class:`Client`.
            proxy: As for :class:`Client`.
            ca_bundle: As for :class:`Client`.
            proxy_ca_bundle: As for :class:`Client`.
            user_agent: As for :class:`Client`.
            http2: As for :class:`Client`.
            immutable_ids: As for :class:`Client`.
            max_per_mailbox: Requests in flight per mailbox (Outlook allows 4 per app),
                for ``send()`` calls as well as ``send_many``, across every call on one event
                loop. Each loop has its own connections and its own cap: for one cap across
                several loops running at once (threads), pass
                ``limiter=graphsend.LocalLimiter()``.
            limiter: As for :class:`Client`: a :class:`LocalLimiter` or
                :class:`RedisLimiter` shared with other clients (and, for Redis, other
                processes). A mailbox whose slots are taken pauses on the loop; the other
                mailboxes go on.

        Raises:
            ValueError: As for :class:`Client`, or ``max_per_mailbox`` below 1.
            TypeError: As for :class:`Client`.
            FileNotFoundError: ``ca_bundle`` or ``proxy_ca_bundle`` does not exist.
        """
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
            proxy_ca_bundle=proxy_ca_bundle,
            user_agent=user_agent,
            http2=http2,
            immutable_ids=immutable_ids,
            limiter=limiter,
        )
        self.base_url = self._client.base_url
        self.immutable_ids = self._client.immutable_ids
        self.max_per_mailbox = max_per_mailbox
        self._drivers: dict[asyncio.AbstractEventLoop, _Driver] = {}  # one per event loop
        self._lock = threading.Lock()  # loops in other threads may use this client too
        self._closed = False
        # Dropped without aclose(): every loop's transfers are aborted and its multi freed.
        weakref.finalize(self, _shutdown, self._drivers, "the AsyncClient was garbage-collected")

    def __repr__(self) -> str:
        return f"<graphsend.AsyncClient base_url={self.base_url!r}>"

    async def __aenter__(self) -> AsyncClient:
        """Return the client itself; leaving the ``async with`` block closes it."""
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Close the client (see :meth:`aclose`)."""
        await self.aclose()

    async def aclose(self) -> None:
        """Close every connection, in every event loop that used this client.

        Calls still awaited end at once: their transfers are aborted, and the results say
        which requests had been written (``may_have_sent``). Later calls raise ValueError.
        """
        with self._lock:
            self._closed = True
        _shutdown(self._drivers, "the AsyncClient was closed during the send")
        self._client.close()

    async def send(
        self, message_id: str, *, user: str | None = None, client_request_id: str | None = None
    ) -> Receipt:
        """Send one draft; see :meth:`Client.send`.

        Cancelling the awaiting task aborts the transfer at once.

        Args:
            message_id: The draft's id.
            user: The mailbox; ``None`` sends from ``/me``.
            client_request_id: The ``client-request-id`` to send (default: a new UUID).

        Returns:
            The Receipt of Graph's ``202 Accepted``.

        Raises:
            SendError: As :meth:`Client.send` (a token provider that fails:
                :class:`AuthenticationError`).
            TypeError: An argument of the wrong type.
            ValueError: A malformed id or user, or the client is closed.
            RuntimeError: The running loop cannot watch sockets (the Windows Proactor loop).
        """
        call = _Call(1)
        crid = client_request_id_or_new(client_request_id)
        call.add(self._client._prefix, user, message_id, crid)
        if self._async_token is not None:
            try:
                await self._async_token.ensure()
            except SendError as error:
                error.client_request_id = crid
                raise error from error.__cause__
        # _run's steps, in this coroutine: a gather of thousands of sends saves a coroutine
        # (and a frame to resume) per send.
        driver = self._begin(call)
        try:
            while not call.ended:  # (one item, no progress: woken once, with its outcome)
                await call.waiter
                if not call.ended:
                    call.waiter = driver.loop.create_future()
        except BaseException:
            _stopped_early(driver, call)
            raise
        finally:
            _let_go(driver, call)
        got = call.settle({})[0]
        if isinstance(got, SendError):
            raise got
        return got

    # --- compose: the Operations of _operations.py, run on this loop's LoopEngine by the same
    # Scheduler as the sends (per-mailbox caps, Retry-After, RetryState, exact may_have_sent).

    async def create_draft(self, message: Message, *, user: str | None = None) -> str:
        """Create a draft (attachments of any size); see :meth:`Client.create_draft`.

        Args:
            message: What to compose.
            user: The mailbox; ``None`` is ``/me``.

        Returns:
            The new draft's id.

        Raises:
            SendError: As :meth:`Client.create_draft` (``exc.draft_id`` once the draft exists).
            TypeError: ``message`` is not a :class:`Message`.
            FileNotFoundError: An attachment file is missing (before any request).
            ValueError: An attachment file is unusable.
        """
        op, stamp, later = _compose.draft(message)
        draft_id: str = await self._run_op(op, user)
        self._client._stamps.remember(draft_id, stamp)
        for index, att in enumerate(later):
            try:
                await self.attach(draft_id, att, user=user)
            except BaseException as exc:
                _upload.tag_unfinished_draft(exc, draft_id, len(later) - index - 1)
                raise
        return draft_id

    async def create_reply(
        self,
        message_id: str,
        *,
        comment: str = "",
        reply_all: bool = False,
        user: str | None = None,
    ) -> str:
        """Create a reply (or reply-all) draft; see :meth:`Client.create_reply`.

        Args:
            message_id: The message replied to.
            comment: Text above the quoted original.
            reply_all: Reply to every recipient.
            user: The mailbox; ``None`` is ``/me``.

        Returns:
            The new draft's id.

        Raises:
            SendError: Graph refused or could not be reached (never ``may_have_sent``).
            TypeError: An argument of the wrong type.
            ValueError: An empty id, control characters in ``comment``.
        """
        op, stamp = _compose.reply(message_id, comment, reply_all)
        result: str = await self._run_op(op, user)
        self._client._stamps.remember(result, stamp)
        return result

    async def create_forward(
        self,
        message_id: str,
        *,
        to: Iterable[str | tuple[str, str]] | str,
        comment: str = "",
        user: str | None = None,
    ) -> str:
        """Create a forward draft to ``to``; see :meth:`Client.create_forward`.

        Args:
            message_id: The message forwarded.
            to: Recipients (``"a@b.com"``, ``"Name <a@b.com>"``, ``(name, address)``).
            comment: Text above the forwarded message.
            user: The mailbox; ``None`` is ``/me``.

        Returns:
            The new draft's id.

        Raises:
            SendError: Graph refused or could not be reached (never ``may_have_sent``).
            ValueError: No recipient, more than 500, a malformed address, an empty id.
            TypeError: An argument of the wrong type.
        """
        op, stamp = _compose.forward(message_id, to, comment)
        result: str = await self._run_op(op, user)
        self._client._stamps.remember(result, stamp)
        return result

    async def reconcile(
        self,
        message_id: str,
        *,
        user: str | None = None,
        wait: float = 60.0,
        stamp: str | None = None,
    ) -> Verdict:
        """Ask the mailbox whether a draft was sent; see :meth:`Client.reconcile`.

        The reads are made on this loop's connections (under the per-mailbox cap) and the
        pauses are awaited.

        Args:
            message_id: The draft's id.
            user: The mailbox; ``None`` is ``/me``.
            wait: Seconds the draft must go on reading unsent before the verdict is
                ``"not_sent"``.
            stamp: The draft's graphsend stamp, when this client did not create it.

        Returns:
            ``"sent"``, ``"not_sent"`` or ``"unknown"``, as :meth:`Client.reconcile`.

        Raises:
            TypeError: An argument of the wrong type.
            ValueError: An empty or malformed id, user or stamp, a ``wait`` below 0 or not
                finite, or the client is closed.
            RuntimeError: The running loop cannot watch sockets (the Windows Proactor loop).
        """
        from graphsend._drivers.reconciling import reconcile_async
        from graphsend._rules.request import send_path

        check_text(message_id, "message_id")
        send_path(user, message_id)  # a bad user raises now, before any request
        if stamp is not None:
            check_text(stamp, "stamp")
        return await reconcile_async(self, message_id, user, _reconcile.check_wait(wait), stamp)

    async def reconcile_many(self, items: Iterable[Item], *, wait: float = 60.0) -> list[Verdict]:
        """:meth:`reconcile` for many drafts at once; see :meth:`Client.reconcile_many`.

        Every item's reads run side by side on this loop, under the client's
        ``max_per_mailbox``.

        Args:
            items: Draft ids (of ``/me``) or ``(user, message_id)`` pairs.
            wait: As for :meth:`reconcile`, for every item.

        Returns:
            One verdict per item (``"sent"``, ``"not_sent"`` or ``"unknown"``), in input
            order.

        Raises:
            TypeError: An argument of the wrong type.
            ValueError: An item that is neither an id nor a ``(user, message_id)`` pair, a
                malformed id or user, a ``wait`` below 0 or not finite, or the client is
                closed.
        """
        pairs = [item if isinstance(item, tuple) else (None, item) for item in items]
        for index, pair in enumerate(pairs):
            if len(pair) != 2 or not isinstance(pair[1], str):
                raise ValueError(f"item {index}: expected a message id or (user, message_id)")
        wait = _reconcile.check_wait(wait)
        calls = [self.reconcile(message_id, user=user, wait=wait) for user, message_id in pairs]
        return list(await asyncio.gather(*calls))

    async def attach(
        self,
        message_id: str,
        source: str | os.PathLike[str] | bytes | Attachment,
        *,
        name: str | None = None,
        content_type: str | None = None,
        inline: bool = False,
        content_id: str | None = None,
        user: str | None = None,
        progress: ProgressArg = None,
    ) -> str:
        """Attach a file to a draft; see :meth:`Client.attach`.

        Up to 3 MB one request, larger an upload session whose chunks are read from disk in C
        and never carry the token.

        Args:
            message_id: The draft.
            source: A path, bytes (then ``name`` is required), or an :class:`Attachment`.
            name: The file name shown to recipients.
            content_type: The MIME type (default: guessed from the name).
            inline: An inline attachment.
            content_id: The Content-ID of an inline image.
            user: The mailbox; ``None`` is ``/me``.
            progress: A callable ``(bytes_done, total)``, or ``True`` for a progress bar.

        Returns:
            The attachment's id.

        Raises:
            SendError: Graph refused or could not be reached (never ``may_have_sent``).
            FileNotFoundError: The file does not exist.
            ValueError: Over 150 MB, a directory, a bad name or content type.
            TypeError: An argument of the wrong type.
        """
        from graphsend._operations.message import Attachment

        check_text(message_id, "message_id")
        if isinstance(source, Attachment):
            if name is not None or content_type is not None or inline or content_id is not None:
                raise ValueError("pass name/content_type/inline/content_id to the Attachment")
            att = source
        else:
            att = Attachment(
                source, name=name, content_type=content_type, inline=inline, content_id=content_id
            )
        report = reporter(progress, att.size)
        if att.small:
            op = _operations.add_attachment(message_id, att.file_json())
            attachment_id: str = await self._run_op(op, user)
            if report is not None:
                report(att.size, att.size)
            return attachment_id
        return await _AsyncUpload(self, message_id, att, user, report).run_async()

    async def send_mail(
        self, message: Message, *, user: str | None = None, save_to_sent_items: bool = True
    ) -> Receipt:
        """Send ``message`` in one ``POST /sendMail``; see :meth:`Client.send_mail`.

        Args:
            message: What to send (under 4 MB in all).
            user: The mailbox; ``None`` is ``/me``.
            save_to_sent_items: Keep a copy in Sent Items.

        Returns:
            The Receipt of Graph's ``202 Accepted``.

        Raises:
            SendError: As :meth:`Client.send`.
            ValueError: An attachment over 3 MB, or the request over 4 MB.
            TypeError: ``message`` is not a :class:`Message`.
        """
        result: Receipt = await self._run_op(_compose.send_mail(message, save_to_sent_items), user)
        return result

    async def send_mime(
        self,
        mime: bytes | email.message.Message,
        *,
        user: str | None = None,
        save_to_sent_items: bool = True,
    ) -> Receipt:
        """Send an RFC 5322 message as is; see :meth:`Client.send_mime`.

        Args:
            mime: Bytes, or an ``email.message.Message`` / ``EmailMessage``.
            user: The mailbox; ``None`` is ``/me``.
            save_to_sent_items: Must be True (Graph always saves a MIME send).

        Returns:
            The Receipt of Graph's ``202 Accepted``.

        Raises:
            SendError: As :meth:`Client.send`.
            ValueError: ``save_to_sent_items=False``, or over 4 MB once base64-encoded.
            TypeError: ``mime`` is neither bytes nor an email message.
        """
        result: Receipt = await self._run_op(_compose.send_mime(mime, save_to_sent_items), user)
        return result

    async def _run_op(
        self,
        op: Operation[T],
        user: str | None,
        *,
        url: str | None = None,
        file: tuple[int, int, int] | None = None,
        fixed: tuple[str, ...] | None = None,
    ) -> T:
        """One Operation as a one-item call; to ``url`` (an upload URL: unsigned, the ``fixed``
        lines only) or to its Graph path with _driver.run's headers."""
        client = self._client
        call = _Call(1)
        prefer = PREFER_IMMUTABLE if client.immutable_ids else None
        signed = url is None
        job = call.add_op(client._prefix, user, op, prefer, url=url, file=file, signed=signed)
        if fixed is not None:
            job.fixed = fixed
        if signed and self._async_token is not None:
            try:
                await self._async_token.ensure()
            except SendError as error:
                error.client_request_id = job.crid
                raise settle(error, op, False) from error.__cause__
        await self._run(call)
        got = call.settle({})[0]
        if isinstance(got, SendError):
            if not op.sends_mail:
                got.may_have_sent = False  # (the driver stopped mid-way: still no mail)
            raise got
        return got  # type: ignore[return-value]

    async def send_many(
        self,
        items: Iterable[Item],
        *,
        max_concurrency: int = 64,
        progress: ProgressArg = None,
        stop_on_error: bool = False,
        journal: str | os.PathLike[str] | None = None,
    ) -> list[Receipt | SendError]:
        """Send many messages at once; see :meth:`Client.send_many`.

        The per-mailbox cap is the client's ``max_per_mailbox``. When the call stops early
        (the task is cancelled, ``progress`` raises), nothing more is started, the transfers
        in flight are aborted, and the exception carries ``.results`` (read it with
        :func:`graphsend.interrupted_results`). ``journal`` as in ``Client.send_many`` (its
        SQLite writes, a few milliseconds per call and an fsync now and then, run in the event
        loop).

        Args:
            items: Message ids, ``(user, message_id)`` pairs, :class:`Message` objects or
                ``(user, Message)`` pairs.
            max_concurrency: Requests in flight in all.
            progress: A callable ``(done, total)``, or ``True`` for a progress bar.
            stop_on_error: Start nothing more after the first failure.
            journal: A SQLite file path that makes the batch crash-safe (see
                :meth:`Client.send_many`).

        Returns:
            One Receipt or SendError per item, in input order.

        Raises:
            TypeError: A malformed item or limit (before anything is sent).
            ValueError: A bad id, user or limit, or a journal of another run (before anything
                is sent).
            RuntimeError: The journal is in use by another process or call.
            FileNotFoundError: The journal's directory does not exist.
            asyncio.CancelledError: The task was cancelled; carries ``.results``.
        """
        check_limits(max_concurrency, 1)
        if journal is not None:
            from graphsend._drivers import journal as _journal

            path = _journal.check_path(journal)
            items = list(items)
            keys = _journal.item_keys(items)
        call = _Call(max_concurrency, stop_on_error)
        client = self._client
        prefer = PREFER_IMMUTABLE if client.immutable_ids else None
        large = call.add_items(client._prefix, items, prefer)  # bad input raises here
        if journal is not None:
            call.journal = _journal.attach(client, call, path, keys, self.max_per_mailbox)
            try:
                results = await self._send_many(call, [], progress, max_concurrency)
            except BaseException:
                with contextlib.suppress(Exception):  # (the journal may be what failed)
                    call.journal.close()
                raise
            try:
                call.journal.close()
                if call.failure is not None:
                    raise call.failure
            except BaseException as exc:  # every send is done: say how, with the exception
                exc.results = results  # type: ignore[attr-defined]
                raise
            return results
        return await self._send_many(call, large, progress, max_concurrency)

    async def _send_many(
        self,
        call: _Call,
        large: list[tuple[Job, str | None, Message]],
        progress: ProgressArg,
        max_concurrency: int,
    ) -> list[Receipt | SendError]:
        try:
            # Too large for one sendMail: drafts and uploads first (several at once, see
            # drafting.py), then their sends go out with the rest.
            await draft_many_async(self, large, call, max_concurrency)
        except BaseException as exc:  # cancelled while composing: nothing of it was sent
            exc.results = call.abandon()  # type: ignore[attr-defined]
            raise
        total = len(call.jobs)
        if self._async_token is not None and total:
            try:
                await self._async_token.ensure()
            except SendError:  # no token: every item fails, each with its own error
                error = self._async_token.error()
                assert error is not None
                return self._unsent(call, error)
        try:
            report = reporter(progress, total)
            note = getattr(report, "note", None)
        except BaseException as exc:  # a bad progress: nothing was sent
            exc.results = call.abandon()  # type: ignore[attr-defined]
            raise
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
            show(call.done)
        except BaseException as exc:
            exc.results = call.settle({})  # type: ignore[attr-defined]
            raise
        return call.settle({})  # finished: nothing of it is in flight

    @staticmethod
    def _unsent(call: _Call, error: BaseException) -> list[Outcome]:
        # What is known already stands (a journal's stored Receipt, a draft that failed); an
        # item a journal says may have been sent cannot be reconciled without a token.
        doubtful = {job.index for job in call.journal.doubtful} if call.journal else set()
        results: list[Outcome] = []
        for job in call.jobs:
            known = call.known.get(job.index)
            if known is not None:
                results.append(known)
                continue
            item_error = _provider_error(error)
            item_error.client_request_id = job.crid
            if job.index in doubtful:
                from graphsend._drivers.journal import DOUBTFUL

                item_error.may_have_sent = True
                item_error.args = (f"{item_error.args[0]}; {DOUBTFUL}, nor reconciled",)
            results.append(item_error)
        call.jobs = []
        return results

    async def _run(self, call: _Call, progress: Callable[[int], None] | None = None) -> None:
        """Hand the call to this loop's driver and wait until every item has its outcome.

        If the wait ends early (cancelled, or ``progress`` raised), nothing more of the call is
        started and its transfers are aborted there and then, so that every item's outcome is
        known: the results say which requests were written."""
        driver = self._begin(call)
        try:
            while not call.ended:
                await call.waiter
                if not call.ended:
                    call.waiter = driver.loop.create_future()
                    if progress is not None:
                        progress(call.done)
        except BaseException:
            _stopped_early(driver, call)
            raise
        finally:
            _let_go(driver, call)

    def _begin(self, call: _Call) -> _Driver:
        """Hand the call to this loop's driver, with a future to wake its coroutine."""
        loop = asyncio.get_running_loop()
        driver = self._driver(loop)
        call.waiter = loop.create_future()
        driver.add(call)
        return driver

    def _driver(self, loop: asyncio.AbstractEventLoop) -> _Driver:
        driver = self._drivers.get(loop)  # the common case, without the lock
        if driver is not None and not driver.closed and not self._closed:
            return driver
        with self._lock:
            if self._closed:
                raise ValueError("this AsyncClient is closed")
            driver = self._drivers.get(loop)
            if driver is not None and not driver.closed:
                return driver
            # A loop that has been closed (a finished asyncio.run) will not come back.
            for old in [old for old in self._drivers if old.is_closed()]:
                self._drivers.pop(old).shutdown("its event loop was closed")
            driver = self._drivers[loop] = _Driver(self._client, self.max_per_mailbox, loop)
            return driver


def _stopped_early(driver: _Driver, call: _Call) -> None:
    """The wait for call ended early: start nothing more of it and abort its transfers now."""
    driver.cancel(call)
    if not call.ended:  # the driver has stopped: report what it knows
        call.settle(
            driver.scheduler.in_flight,
            "cancelled while in flight; it may have been sent",
            keep_jobs=True,
        )


def _let_go(driver: _Driver, call: _Call) -> None:
    """The call is over, however it ended."""
    driver.calls.pop(call, None)
    if call.journal is not None:
        driver.journals.pop(call.journal, None)
    driver.let_go(call)


def _raw(result: Result, crid: str) -> Result:
    return result


# An upload chunk's every answer goes back to _AsyncUpload as is (status 0 too): its own rules.
_ANY_STATUS = frozenset(range(0, 1000))


class _AsyncUpload(_upload._Upload):
    """_upload._Upload's rules (its steps()), each request awaited on the loop's engine."""

    def __init__(
        self,
        owner: AsyncClient,
        message_id: str,
        att: Attachment,
        user: str | None,
        progress: Callable[[int, int], object] | None,
    ) -> None:
        super().__init__(owner._client, message_id, att, user, progress, -1, att.size)
        self.owner = owner

    async def run_async(self) -> str:
        try:
            if self.att.path is not None:
                self.fd, self.size = _upload.open_regular(self.att.path, self.att.name)
            steps = self.steps()
            try:
                step = next(steps)
                while True:
                    if step[0] == "session":
                        answer: object = await self._session()
                    elif step[0] == "put":
                        answer = await self._put(step[1], step[2], step[3])
                    elif step[0] == "delete":
                        answer = await self._delete(step[1])
                    else:
                        await asyncio.sleep(step[1])
                        answer = None
                    step = steps.send(answer)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
        finally:
            if self.fd >= 0:
                os.close(self.fd)  # no transfer reads it now: a cancel aborts them first
                self.fd = -1

    async def _session(self) -> str:
        op = self.session_op()
        return self.session_url(await self.owner._run_op(op, self.user), op)

    async def _delete(self, url: str) -> None:
        """Cancel a failed upload's session; best effort (as uploading._SyncUpload.delete)."""
        op: Operation[Result] = Operation(
            "deleteUploadSession", "DELETE", "", _raw, content_type=None, success=_ANY_STATUS
        )
        try:
            await self.owner._run_op(op, self.user, url=url, fixed=())
        except Exception:
            pass

    async def _put(self, url: str, start: int, end: int) -> Result:
        headers = (f"Content-Range: bytes {start}-{end}/{self.size}", *self.extra)
        body = None
        file = None
        if self.fd >= 0:
            file = (self.fd, start, end - start + 1)
        else:
            assert self.att.data is not None
            body = self.att.data[start : end + 1]
        op: Operation[Result] = Operation(
            "uploadChunk", "PUT", "", _raw, body=body, content_type=None, success=_ANY_STATUS
        )
        # No Authorization: the upload URL is pre-authenticated (another host in production).
        return await self.owner._run_op(op, self.user, url=url, file=file, fixed=headers)
