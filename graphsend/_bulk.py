"""send_many(): many sends through one native Engine (libcurl multi) from the calling thread.

Policy stays here: per-mailbox and overall caps, requeueing throttled items after Retry-After
while the other mailboxes go on, and the same RetryState that Client.send uses.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from ._errors import SendError
from ._outcome import Outcome, outcome
from ._progress import reporter
from ._request import new_client_request_id, send_path
from ._retry import RetryState

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

    from ._client import Client
    from ._native import Result
    from ._progress import ProgressArg
    from ._request import Item


class _Job:
    __slots__ = ("crid", "index", "mailbox", "retry", "url")

    def __init__(self, index: int, mailbox: str, url: str, crid: str) -> None:
        self.index = index
        self.mailbox = mailbox
        self.url = url
        self.crid = crid
        self.retry: RetryState | None = None


class _Mailbox:
    __slots__ = ("in_flight", "paused_until", "queue")

    def __init__(self) -> None:
        self.queue: deque[_Job] = deque()
        self.in_flight = 0
        self.paused_until = 0.0


def parse_items(client: Client, items: Iterable[Item]) -> list[_Job]:
    """Validate every item before anything is sent: bad input raises, nothing goes out."""
    jobs = []
    for index, item in enumerate(items):
        if isinstance(item, tuple):
            if len(item) != 2:
                raise ValueError(
                    f"item {index}: expected (user, message_id), got {len(item)} values"
                )
            user, message_id = item
        else:
            user, message_id = None, item
        url = client._prefix + send_path(user, message_id)
        mailbox = "me" if user is None else user.lower()
        jobs.append(_Job(index, mailbox, url, new_client_request_id()))
    return jobs


def check_limits(max_concurrency: int, max_per_mailbox: int) -> None:
    for name, value in (("max_concurrency", max_concurrency), ("max_per_mailbox", max_per_mailbox)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int")
        if value < 1:
            raise ValueError(f"{name} must be at least 1")


class _Batch:
    """One send_many call: the queues, the caps, and the outcome of every item."""

    def __init__(
        self, client: Client, jobs: list[_Job], max_concurrency: int, max_per_mailbox: int
    ) -> None:
        self.client = client
        self.jobs = jobs
        self.max_concurrency = max_concurrency
        self.max_per_mailbox = max_per_mailbox
        self.engine = client._engine()
        self.tokens = client._tokens
        self.mailboxes: dict[str, _Mailbox] = {}
        for job in jobs:
            self.mailboxes.setdefault(job.mailbox, _Mailbox()).queue.append(job)
        self.in_flight: dict[int, _Job] = {}
        self.results: list[Outcome | None] = [None] * len(jobs)
        self.stopping = False

    def start_ready(self, now: float) -> float | None:
        """Submit what the caps allow; return when the next paused mailbox wakes, if any."""
        next_wake = None
        for box in self.mailboxes.values():
            if not box.queue or self.stopping:
                continue
            if box.paused_until > now:
                if next_wake is None or box.paused_until < next_wake:
                    next_wake = box.paused_until
                continue
            while (
                box.queue
                and box.in_flight < self.max_per_mailbox
                and len(self.in_flight) < self.max_concurrency
            ):
                self.submit(box.queue.popleft())
        return next_wake

    def submit(self, job: _Job) -> None:
        headers = [self.tokens.header(), "client-request-id: " + job.crid]
        if job.retry is not None:
            headers.append(f"Retry-Attempt: {job.retry.attempt - 1}")
        self.engine.submit(job.index, job.url, tuple(headers))
        self.in_flight[job.index] = job
        self.mailboxes[job.mailbox].in_flight += 1

    def complete(self, tag: int, result: Result) -> Outcome | None:
        """Record a finished transfer; returns its final outcome, or None when requeued."""
        job = self.in_flight.pop(tag)
        box = self.mailboxes[job.mailbox]
        box.in_flight -= 1
        got = outcome(result, job.crid)
        if isinstance(got, SendError):
            if job.retry is None:
                job.retry = RetryState(self.client.retry)
            wait = job.retry.next_wait(got, self.tokens)
            if wait is not None and not self.stopping:
                self.client._log_retry(job.url, got, wait, job.retry.attempt)
                # The mailbox pauses (Graph throttles per mailbox); the others go on.
                box.paused_until = max(box.paused_until, time.monotonic() + wait)
                box.queue.appendleft(job)
                return None
        self.results[job.index] = got
        return got

    def settle(self) -> list[Outcome]:
        """Every item gets an outcome: one in flight when stopped may have been sent."""
        for job in self.jobs:
            if self.results[job.index] is None:
                sent = job.index in self.in_flight
                self.results[job.index] = SendError(
                    "interrupted while in flight; the message may have been sent"
                    if sent
                    else "not sent: the batch stopped before this item",
                    may_have_sent=sent,
                    client_request_id=job.crid,
                )
        return self.results  # type: ignore[return-value]


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
    batch = _Batch(client, parse_items(client, items), max_concurrency, max_per_mailbox)
    total = len(batch.jobs)
    report = reporter(progress, total)
    check_signals = threading.current_thread() is threading.main_thread()
    done = 0
    try:
        while True:
            now = time.monotonic()
            next_wake = batch.start_ready(now)
            if not batch.in_flight and next_wake is None:
                break
            timeout = 1.0 if next_wake is None else max(0.0, min(next_wake - now, 1.0))
            for tag, result in batch.engine.perform(timeout, check_signals):
                final = batch.complete(tag, result)
                if final is None:
                    continue
                done += 1
                if report is not None:
                    report(done, total)
                if stop_on_error and isinstance(final, SendError):
                    batch.stopping = True
    except BaseException as exc:
        # Ctrl-C (or any failure): the engine aborted what was in flight; collect those
        # results (each says whether its request had been written) and keep the whole record.
        batch.stopping = True
        for tag, result in batch.engine.perform(0.0):
            batch.complete(tag, result)
        exc.results = batch.settle()  # type: ignore[attr-defined]
        raise
    return batch.settle()
