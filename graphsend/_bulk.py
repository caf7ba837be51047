"""Bulk sends over one native Engine (libcurl multi): the per-mailbox Scheduler, and send_many().

Policy stays here: per-mailbox and overall caps, requeueing throttled items after Retry-After
while the other mailboxes go on, and the same RetryState that Client.send uses. send_many drives
a Scheduler from the calling thread; AsyncClient drives one per event loop, from that loop.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque

from . import _log, _native
from ._errors import SendError
from ._outcome import Outcome, outcome
from ._progress import reporter
from ._receipt import Receipt
from ._request import send_path
from ._retry import RetryState
from ._tokens import provider_failed

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

    from ._client import Client
    from ._native import Result
    from ._progress import ProgressArg
    from ._request import Item


class Job:
    """One item: its request, its place in its batch, and its retry state once it failed."""

    __slots__ = ("auth", "batch", "crid", "index", "mailbox", "retry", "tag", "url")

    def __init__(self, batch: Batch, index: int, mailbox: str, url: str, crid: str) -> None:
        self.batch = batch
        self.index = index
        self.mailbox = mailbox
        self.url = url
        self.crid = crid
        self.retry: RetryState | None = None
        self.tag = -1  # the Engine tag of its latest attempt
        self.auth = ""  # the Authorization line its latest attempt carried


class TokenPending(Exception):
    """Raised by an AsyncClient's async token source: no valid token now (after a 401, or near
    expiry). The Scheduler then starts nothing and sets token_wanted; the AsyncClient's driver
    awaits a fresh token in its loop and starts again (header() itself cannot await)."""


def token_error(exc: Exception) -> SendError:
    """A token provider's failure as the outcome of one item (never sent)."""
    if isinstance(exc, SendError):
        return exc  # TokenSource.header() already made it an AuthenticationError
    error = provider_failed(exc)
    error.__cause__ = exc
    return error


class Batch:
    """The items of one call (a send_many, or one AsyncClient.send) and their outcomes."""

    __slots__ = (
        "done",
        "jobs",
        "limit",
        "notice",
        "results",
        "running",
        "stop_on_error",
        "stopping",
    )

    def __init__(self, limit: int, stop_on_error: bool = False) -> None:
        self.jobs: list[Job] = []
        self.results: list[Outcome | None] = []
        self.limit = limit  # max_concurrency: transfers of this batch in flight at once
        self.stop_on_error = stop_on_error
        self.running = 0
        self.done = 0  # items with a final outcome
        self.stopping = False  # start nothing more; queued items are dropped as they come up
        self.notice: str | None = None  # a long pause began: shown on the progress bar

    def add(self, prefix: str, user: str | None, message_id: str, crid: str) -> None:
        """Validate and append one item (bad input raises here, before anything is sent)."""
        url = prefix + send_path(user, message_id)
        mailbox = "me" if user is None else user.lower()
        self.jobs.append(Job(self, len(self.jobs), mailbox, url, crid))

    def add_items(self, prefix: str, items: Iterable[Item]) -> None:
        for index, item in enumerate(items, len(self.jobs)):
            if isinstance(item, tuple):
                if len(item) != 2:
                    raise ValueError(
                        f"item {index}: expected (user, message_id), got {len(item)} values"
                    )
                user, message_id = item
            else:
                user, message_id = None, item
            self.add(prefix, user, message_id, _native.new_client_request_id())

    def finished(self) -> bool:
        return self.running == 0 and (self.stopping or self.done == len(self.results))

    def settle(
        self,
        in_flight: dict[int, Job],
        interrupted: str = "interrupted while in flight; the message may have been sent",
        keep_jobs: bool = False,
    ) -> list[Outcome]:
        """Every item gets an outcome: one in flight when stopped may have been sent."""
        results = self.results
        if len(results) < len(self.jobs):  # never handed to a Scheduler
            results.extend([None] * (len(self.jobs) - len(results)))
        for job in self.jobs:
            if results[job.index] is None:
                sent = in_flight.get(job.tag) is job
                results[job.index] = SendError(
                    interrupted if sent else "not sent: the batch stopped before this item",
                    may_have_sent=sent,
                    client_request_id=job.crid,
                )
        if not keep_jobs:  # (kept while another thread may still cancel them)
            self.jobs = []  # each Job points back here: break the cycle, so no gc pass is needed
        return results  # type: ignore[return-value]


class _Mailbox:
    __slots__ = ("in_flight", "name", "paused_until", "queue")

    def __init__(self, name: str) -> None:
        self.name = name
        self.queue: deque[Job] = deque()
        self.in_flight = 0
        self.paused_until = 0.0


class Scheduler:
    """Per-mailbox queues over one Engine: starts what the caps allow, requeues after Retry-After.

    Not thread-safe: one thread drives it (send_many's caller, or an AsyncClient's event loop).
    Items of several batches may share a mailbox; its cap covers them all, first come first served.
    """

    def __init__(self, client: Client, engine: _native.Engine, max_per_mailbox: int) -> None:
        self.client = client
        self.engine = engine
        self.tokens = client._tokens
        self.prefix_len = len(client._prefix)  # job.url[prefix_len:] is the path logs show
        self.max_per_mailbox = max_per_mailbox
        self.mailboxes: dict[str, _Mailbox] = {}
        self.in_flight: dict[int, Job] = {}
        # Only mailboxes where something changed are looked at on each wake-up, so the cost of
        # one does not grow with the number of mailboxes.
        self.ready: dict[str, _Mailbox] = {}
        self.paused: dict[str, _Mailbox] = {}
        self.blocked: dict[str, _Mailbox] = {}  # the next item's batch is at its max_concurrency
        self.touched: dict[Batch, None] = {}  # batches with news since the driver last looked
        self.token_wanted = False  # an async token source has no valid token (AsyncClient)
        self._tags = itertools.count()

    def add(self, batch: Batch) -> None:
        batch.results = [None] * len(batch.jobs)
        if not batch.jobs:
            self.touched[batch] = None
        for job in batch.jobs:
            box = self.mailboxes.get(job.mailbox)
            if box is None:
                box = self.mailboxes[job.mailbox] = _Mailbox(job.mailbox)
            box.queue.append(job)
            self.ready[job.mailbox] = box

    def start_ready(self, now: float) -> float | None:
        """Submit what the caps allow; return when the next paused mailbox wakes, if any."""
        next_wake = None
        if self.paused:
            for name, box in list(self.paused.items()):
                if box.paused_until <= now:
                    del self.paused[name]
                    self.ready[name] = box
                elif next_wake is None or box.paused_until < next_wake:
                    next_wake = box.paused_until
        ready, self.ready = self.ready, {}
        cap = self.max_per_mailbox
        try:
            for name, box in ready.items():
                if box.paused_until > now:
                    self.paused[name] = box
                    if next_wake is None or box.paused_until < next_wake:
                        next_wake = box.paused_until
                    continue
                queue = box.queue
                while queue and box.in_flight < cap:
                    job = queue[0]
                    batch = job.batch
                    if batch.stopping:
                        queue.popleft()  # dropped: settle() reports it as not sent
                    elif batch.running >= batch.limit:
                        self.blocked[name] = box
                        break
                    else:
                        self._submit(job, box)  # TokenPending leaves the job at the head
                        queue.popleft()
                if not queue and not box.in_flight:
                    # Idle: forget it, so a long-lived AsyncClient keeps no state per mailbox.
                    del self.mailboxes[name]
                    self.blocked.pop(name, None)
        except TokenPending:
            # Start nothing until the event loop has fetched a token; look at these again then.
            self.token_wanted = True
            for name, box in ready.items():
                if box.queue and self.mailboxes.get(name) is box:
                    self.ready[name] = box
        return next_wake

    def _submit(self, job: Job, box: _Mailbox) -> None:
        try:
            auth = self.tokens.header()
        except TokenPending:
            raise
        except Exception as exc:  # the provider failed: this item's outcome, the others go on
            self._record(job, token_error(exc))
            return
        if job.retry is None:
            headers: tuple[str, ...] = (auth,)
        else:
            headers = (auth, f"Retry-Attempt: {job.retry.attempt - 1}")
        job.auth = auth
        tag = job.tag = next(self._tags)
        # The engine writes the client-request-id line, and returns a 202 as the Receipt.
        self.engine.submit(tag, job.url, headers, job.crid)
        self.in_flight[tag] = job
        box.in_flight += 1
        job.batch.running += 1

    def finish(self, tag: int, result: Receipt | Result, log: bool = False) -> Job | None:
        """Record a finished transfer; returns its job when that outcome is final.

        ``log``: the driver found DEBUG enabled (checked once per batch of results).
        """
        job = self.in_flight.pop(tag, None)
        if job is None:
            return None
        box = self.mailboxes[job.mailbox]
        box.in_flight -= 1
        self.ready[job.mailbox] = box
        batch = job.batch
        batch.running -= 1
        if self.blocked:  # a batch got room under its max_concurrency
            self.ready.update(self.blocked)
            self.blocked.clear()
        got: Outcome = result  # type: ignore[assignment]  # a 202: the engine built the Receipt
        if result.__class__ is not Receipt:
            got = outcome(result, job.crid)  # type: ignore[arg-type]
        if log:
            self._log_attempt(job, got, result)
        if isinstance(got, SendError):
            if job.retry is None:
                job.retry = RetryState(self.client.retry)
            tokens = self.tokens
            stale = getattr(tokens, "stale", None)
            if stale is not None and stale(job.auth):
                tokens = _KEEP_FRESH  # a 401 for a token already replaced: keep the new one
            wait = job.retry.next_wait(got, tokens)
            if wait is not None and not batch.stopping:
                self.client._log_retry(job.url[self.prefix_len :], got, wait, job.retry.attempt)
                # The mailbox pauses (Graph throttles per mailbox); the others go on.
                until = time.monotonic() + wait
                if until > box.paused_until:
                    box.paused_until = until
                    if wait >= 1.0:  # long enough that a progress bar should say why it waits
                        batch.notice = f"mailbox {box.name} throttled, resuming in {wait:.0f} s"
                        self.touched[batch] = None
                box.queue.appendleft(job)
                return None
        self._record(job, got)
        return job

    def _record(self, job: Job, got: Outcome) -> None:
        batch = job.batch
        batch.results[job.index] = got
        batch.done += 1
        self.touched[batch] = None
        if batch.stop_on_error and isinstance(got, SendError):
            batch.stopping = True

    def _log_attempt(self, job: Job, got: Outcome, result: Receipt | Result) -> None:
        attempt = 1 if job.retry is None else job.retry.attempt
        path = job.url[self.prefix_len :]
        if isinstance(got, Receipt):
            self.client._log_attempt(
                path, got.status, got.request_id, job.crid, got.elapsed, attempt
            )
        else:
            status, headers, _, elapsed, curl_code = result[:5]  # type: ignore[misc]
            self.client._log_attempt(
                path,
                status or f"curl error {curl_code}",
                headers.get("request-id"),
                job.crid,
                elapsed,
                attempt,
            )

    def cancel(self, batch: Batch) -> None:
        """Stop the batch and abort its transfers; their results still come back to finish()."""
        batch.stopping = True
        self.touched[batch] = None  # the driver learns it has finished even if nothing ran
        for job in batch.jobs:
            if self.in_flight.get(job.tag) is job:
                self.engine.cancel(job.tag)


class _KeepFresh:
    """What RetryState.next_wait sees for a 401 whose request carried a token that an async
    source has already replaced: it retries (with the new token) without dropping it."""

    refreshable = True

    def invalidate(self) -> None:
        pass


_KEEP_FRESH = _KeepFresh()


def check_limits(max_concurrency: int, max_per_mailbox: int) -> None:
    for name, value in (("max_concurrency", max_concurrency), ("max_per_mailbox", max_per_mailbox)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int")
        if value < 1:
            raise ValueError(f"{name} must be at least 1")


def send_many(
    client: Client,
    items: Iterable[Item],
    *,
    max_concurrency: int,
    max_per_mailbox: int,
    progress: ProgressArg,
    stop_on_error: bool,
) -> list[Outcome]:
    check_limits(max_concurrency, max_per_mailbox)
    batch = Batch(max_concurrency, stop_on_error)
    batch.add_items(client._prefix, items)
    engine = client._engine()
    scheduler = Scheduler(client, engine, max_per_mailbox)
    scheduler.add(batch)
    total = len(batch.jobs)
    report = reporter(progress, total)
    note = getattr(report, "note", None)
    check_signals = threading.current_thread() is threading.main_thread()
    shown = 0  # items the progress report has been told about
    try:
        while True:
            now = time.monotonic()
            next_wake = scheduler.start_ready(now)
            if report is not None:
                while shown < batch.done:
                    shown += 1
                    report(shown, total)
            if batch.finished():
                break
            timeout = 1.0 if next_wake is None else max(0.0, min(next_wake - now, 1.0))
            finished = engine.perform(timeout, check_signals)
            log = _log.debug_enabled() is not None
            for tag, result in finished:
                scheduler.finish(tag, result, log)
            if batch.notice is not None:
                if note is not None:
                    note(batch.notice)
                batch.notice = None
    except BaseException as exc:
        # Ctrl-C, a progress callback that raised, any failure: start nothing more, abort what
        # is in flight (the engine already has, after a signal), collect those results (each
        # says whether its request had been written) and keep the whole record.
        scheduler.cancel(batch)
        for tag, result in engine.perform(0.0):
            scheduler.finish(tag, result)
        exc.results = batch.settle(scheduler.in_flight)  # type: ignore[attr-defined]
        raise
    return batch.settle(scheduler.in_flight)
