"""Bulk sends over one native Engine (libcurl multi): the per-mailbox Scheduler, and send_many().

Policy stays here: per-mailbox and overall caps, requeueing throttled items after Retry-After
while the other mailboxes go on, and the same RetryState that Client.send uses. send_many drives
a Scheduler from the calling thread; AsyncClient drives one per event loop, from that loop.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections import deque

from graphsend import _native
from graphsend._drivers.drafting import draft_many
from graphsend._drivers.progress import reporter
from graphsend._drivers.sync import PREFER_IMMUTABLE, failure, settle
from graphsend._rules import log as _log
from graphsend._rules.errors import GraphError, LimiterError, SendError
from graphsend._rules.outcome import Outcome, outcome
from graphsend._rules.receipt import Receipt
from graphsend._rules.request import send_path
from graphsend._rules.retry import EARLIER_AMBIGUOUS, RetryState, mark_maybe_delivered
from graphsend._rules.tokens import provider_failed

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

    from graphsend._drivers.client import Client
    from graphsend._drivers.journal import Journal
    from graphsend._drivers.progress import ProgressArg
    from graphsend._native import Result
    from graphsend._operations.catalog import Operation
    from graphsend._operations.message import Message
    from graphsend._rules.request import Item


_TAGS = itertools.count()  # Engine tags (see Scheduler._tags)


class Job:
    """One item: its request, its place in its batch, and its retry state once it failed.

    A send (``op`` None) takes the engine's fast path. Any other Operation (sendMail, a draft,
    an upload chunk) carries its method, body, fixed header lines and how its answer is read.
    """

    __slots__ = (
        "auth",
        "batch",
        "crid",
        "file",
        "fixed",
        "index",
        "mailbox",
        "message_id",
        "op",
        "probe",
        "retry",
        "signed",
        "slot",
        "tag",
        "url",
        "user",
    )

    def __init__(self, batch: Batch, index: int, mailbox: str, url: str, crid: str) -> None:
        self.batch = batch
        self.index = index
        self.mailbox = mailbox
        self.url = url
        self.crid = crid
        self.retry: RetryState | None = None
        self.tag = -1  # the Engine tag of its latest attempt
        self.auth = ""  # the Authorization line its latest attempt carried
        self.op: Operation[Any] | None = None
        self.fixed: tuple[str, ...] = ()  # an op's header lines besides Authorization
        self.file: tuple[int, int, int] | None = None  # an op's body read from a file
        self.signed = True  # False: no Authorization (an upload URL is pre-authenticated)
        self.user: str | None = None  # the item, as given: its Receipt names it
        self.message_id: str | None = None  # the draft a send sends (None: an Operation)
        self.probe: Any = None  # a read of an ambiguous send's reconciliation (reconciling.py)
        self.slot: object = None  # the limiter's slot it holds (Client(limiter=...))


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
        "journal",
        "known",
        "limit",
        "notice",
        "results",
        "running",
        "stop_on_error",
        "stopping",
    )

    def __init__(self, limit: int, stop_on_error: bool = False) -> None:
        self.jobs: list[Job] = []
        self.known: dict[int, Outcome] = {}  # outcomes settled before scheduling
        self.results: list[Outcome | None] = []
        self.limit = limit  # max_concurrency: transfers of this batch in flight at once
        self.stop_on_error = stop_on_error
        self.running = 0
        self.done = 0  # items with a final outcome
        self.stopping = False  # start nothing more; queued items are dropped as they come up
        self.notice: str | None = None  # a long pause began: shown on the progress bar
        self.journal: Journal | None = None  # send_many(journal=...): told of each start, outcome

    def add(self, prefix: str, user: str | None, message_id: str, crid: str) -> None:
        """Validate and append one item (bad input raises here, before anything is sent)."""
        url = prefix + send_path(user, message_id)
        mailbox = "me" if user is None else user.lower()
        job = Job(self, len(self.jobs), mailbox, url, crid)
        job.user, job.message_id = user, message_id
        self.jobs.append(job)

    def add_op(
        self,
        prefix: str,
        user: str | None,
        op: Operation[Any],
        prefer: str | None,
        *,
        url: str | None = None,
        extra: tuple[str, ...] = (),
        file: tuple[int, int, int] | None = None,
        signed: bool = True,
    ) -> Job:
        """Append one Operation: the headers _driver.run sends (client-request-id, Prefer but
        not on a send, Content-Type), to ``url`` when given (an upload URL) instead of its path."""
        crid = _native.new_client_request_id()
        fixed = ["client-request-id: " + crid]
        if prefer is not None:
            fixed.append(prefer)
        if (op.body is not None or file is not None) and op.content_type is not None:
            fixed.append("Content-Type: " + op.content_type)
        mailbox = "me" if user is None else user.lower()
        job = Job(self, len(self.jobs), mailbox, url or prefix + op.path(user), crid)
        job.op, job.fixed, job.file, job.signed = op, (*fixed, *extra), file, signed
        job.user = user
        self.jobs.append(job)
        return job

    def add_items(
        self, prefix: str, items: Iterable[Item], prefer: str | None = None
    ) -> list[tuple[Job, str | None, Message]]:
        """Append every item; a Message that fits one request becomes a sendMail Operation.
        Returns the Messages too large for that (job, user, message): the caller composes each
        as a draft and then calls ``to_draft`` (or ``preset`` with the error)."""
        from graphsend._operations import compose as _compose
        from graphsend._operations.message import Message

        large: list[tuple[Job, str | None, Message]] = []
        for index, item in enumerate(items, len(self.jobs)):
            if isinstance(item, tuple):
                if len(item) != 2:
                    raise ValueError(
                        f"item {index}: expected (user, message_id), got {len(item)} values"
                    )
                user, what = item
            else:
                user, what = None, item
            if isinstance(what, Message):
                op = _compose.small_send_mail(what)
                if op is not None:
                    self.add_op(prefix, user, op, prefer)
                    continue
                send_path(user, "x")  # a bad user raises now, before anything is sent
                self.add(prefix, user, "pending", _native.new_client_request_id())
                large.append((self.jobs[-1], user, what))
            else:
                self.add(prefix, user, what, _native.new_client_request_id())
        return large

    def to_draft(self, job: Job, prefix: str, user: str | None, draft_id: str) -> None:
        job.url = prefix + send_path(user, draft_id)
        job.message_id = draft_id

    def preset(self, job: Job, got: SendError) -> None:
        """An item whose outcome is known before the Scheduler sees it (its draft failed)."""
        got.may_have_sent = False  # composing never sends
        self.known[job.index] = got
        if self.stop_on_error:
            self.stopping = True

    def abandon(self) -> list[Outcome]:
        """Every outcome when the call ends before its items were handed to a Scheduler. An
        item a journal says may have been sent says so (it was not reconciled)."""
        self.results = [self.known.get(job.index) for job in self.jobs]
        if self.journal is not None and self.journal.doubtful:
            from graphsend._drivers.journal import DOUBTFUL

            for job in self.journal.doubtful:
                self.results[job.index] = SendError(
                    f"{DOUBTFUL}, nor reconciled", may_have_sent=True, client_request_id=job.crid
                )
        return self.settle({})

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
                text = interrupted if sent else "not sent: the batch stopped before this item"
                if not sent and _was_ambiguous(job):  # it waited to be sent again
                    sent, text = True, f"not retried: the batch stopped; {EARLIER_AMBIGUOUS}"
                results[job.index] = SendError(text, may_have_sent=sent, client_request_id=job.crid)
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
        # Unique across Schedulers: send_many's Engine is the thread's, so a transfer an
        # interrupted call left behind must never answer for the next call's job.
        self._tags = _TAGS
        # Reconciliations pausing between reads: a heap of (when, n, probe) (reconciling.py).
        self.sleeping: list[tuple[float, int, Any]] = []
        # Client(limiter=...): a slot per request, taken before it starts; finished ones are
        # given back together at the next start_ready() (one call to a shared store).
        self.limiter = client._limiter
        self.returned: list[object] = []

    def add(self, batch: Batch) -> None:
        batch.results = [None] * len(batch.jobs)
        if not batch.jobs or batch.known:
            self.touched[batch] = None
        for job in batch.jobs:
            known = batch.known.get(job.index)
            if known is not None:
                batch.results[job.index] = known
                batch.done += 1
                continue
            box = self.mailboxes.get(job.mailbox)
            if box is None:
                box = self.mailboxes[job.mailbox] = _Mailbox(job.mailbox)
            box.queue.append(job)
            self.ready[job.mailbox] = box

    def start_ready(self, now: float, budget: int = 0) -> float | None:
        """Submit what the caps allow; return when the next paused mailbox wakes, if any.

        ``budget`` (> 0): submit at most that many; the mailboxes not reached stay ready for the
        next call (an event loop starts a large batch in slices, so other tasks run between)."""
        next_wake = None
        if self.sleeping:
            from graphsend._drivers import reconciling as _reconciling

            next_wake = _reconciling.wake(self, now)
        if self.paused:
            for name, box in list(self.paused.items()):
                if box.paused_until <= now:
                    del self.paused[name]
                    self.ready[name] = box
                elif next_wake is None or box.paused_until < next_wake:
                    next_wake = box.paused_until
        ready, self.ready = self.ready, {}
        cap = self.max_per_mailbox
        limiter = self.limiter
        if limiter is not None and self.returned:
            returned, self.returned = self.returned, []
            limiter.release(returned)
        left = budget if budget > 0 else -1
        try:
            for name, box in ready.items():
                if left == 0:
                    self.ready[name] = box  # the budget is spent: next time
                    continue
                if box.paused_until > now:
                    self.paused[name] = box
                    if next_wake is None or box.paused_until < next_wake:
                        next_wake = box.paused_until
                    continue
                queue = box.queue
                wait: float | None = None  # the limiter's answer for this mailbox, once asked
                while queue and box.in_flight < cap:
                    job = queue[0]
                    batch = job.batch
                    if batch.stopping:
                        queue.popleft()  # dropped: settle() reports it as not sent
                        if job.slot is not None:
                            self._unused(job)
                    elif batch.running >= batch.limit:
                        self.blocked[name] = box
                        break
                    elif limiter is not None and job.slot is None:
                        if wait is None:  # not asked yet in this pass: slots for the head
                            wait = self._take_slots(box, cap)
                            continue  # (None again when the head job failed: ask again)
                        if not box.in_flight:
                            # None granted and nothing of its own in flight to wake it up: this
                            # mailbox waits, the others go on.
                            box.paused_until = now + wait
                            self.paused[name] = box
                            if next_wake is None or box.paused_until < next_wake:
                                next_wake = box.paused_until
                        break  # else its own next answer makes it ready again: no polling
                    else:
                        if left == 0:
                            self.ready[name] = box
                            break
                        self._submit(job, box)  # TokenPending leaves the job at the head
                        queue.popleft()
                        left -= 1
                if not queue and not box.in_flight and self.mailboxes.get(name) is box:
                    # Idle: forget it, so a long-lived AsyncClient keeps no state per mailbox.
                    # (A read that could not start may have settled its item and forgotten
                    # the mailbox already, inside _take_slots.)
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
        op = job.op
        try:
            auth = self.tokens.header() if job.signed else ""
        except TokenPending:
            raise
        except Exception as exc:  # the provider failed: this item's outcome, the others go on
            if job.slot is not None:
                self._unused(job)
            if job.probe is not None:  # a read settling a send: it tells nothing, not "unsent"
                self._read_failed(job)
                return
            err = _after_ambiguous(job, token_error(exc))
            self._record(job, err if op is None else settle(err, op, False))
            return
        if job.retry is None:
            headers: tuple[str, ...] = (auth,) if auth else ()
        else:
            headers = (auth, f"Retry-Attempt: {job.retry.attempt - 1}") if auth else ()
        job.auth = auth
        tag = job.tag = next(self._tags)
        if job.batch.journal is not None and job.probe is None:  # (a read sends nothing)
            job.batch.journal.started(job, self.mailboxes)  # durable before the Engine runs
        # Noted before it is handed over: a Ctrl-C landing right after submit() returns must
        # find it in flight (cancelled, its answer collected), not "not sent" and left running.
        self.in_flight[tag] = job
        box.in_flight += 1
        job.batch.running += 1
        try:
            if op is not None:
                # Any other request: its own header lines, the whole 2xx body back as a Result.
                self.engine.submit(
                    tag, job.url, (*headers, *job.fixed), None, op.method, op.body, job.file
                )
            else:
                # The engine writes the client-request-id line, and returns a 202 as the Receipt.
                self.engine.submit(tag, job.url, headers, job.crid)
        except Exception:  # submit() refused it: nothing was handed over
            del self.in_flight[tag]
            box.in_flight -= 1
            job.batch.running -= 1
            raise

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
        if job.slot is not None:
            self.returned.append(job.slot)
            job.slot = None
        batch = job.batch
        batch.running -= 1
        if self.blocked:  # a batch got room under its max_concurrency
            self.ready.update(self.blocked)
            self.blocked.clear()
        if job.probe is not None:  # a read settling an ambiguous send
            from graphsend._drivers import reconciling as _reconciling

            if log:
                self._log_attempt(job, result, result)  # type: ignore[arg-type]
            _reconciling.read_done(self, job, result)  # type: ignore[arg-type]
            return None
        op = job.op
        got: Any  # an Outcome; for an Operation, whatever its parse yields
        final = False  # an Operation's success that could not be read: never retried
        if op is not None:
            got, final = self._op_outcome(job, op, result)
        elif result.__class__ is not Receipt:
            got = outcome(result, job.crid, job.message_id, job.user)  # type: ignore[arg-type]
        else:
            got = result.for_item(job.message_id, job.user)  # type: ignore[union-attr]
        if log and job.signed:  # (an upload chunk is logged by the upload, never by URL)
            self._log_attempt(job, got, result)
        if isinstance(got, SendError) and not final:
            if job.retry is None:
                job.retry = RetryState(self.client.retry)
            tokens = self.tokens
            stale = getattr(tokens, "stale", None)
            if stale is not None and stale(job.auth):
                tokens = _KEEP_FRESH  # a 401 for a token already replaced: keep the new one
            wait = job.retry.next_wait(got, tokens)
            if (
                wait is None
                and (op is None or op.stamp is not None)  # a send, or a stamped sendMail
                and self.client.retry.reconcile_ambiguous
                and got.may_have_sent
                and not batch.stopping
            ):
                from graphsend._drivers import reconciling as _reconciling

                _reconciling.start(self, job, got)  # ask the mailbox; the others go on
                return None
            if wait is not None and batch.stopping:
                _after_ambiguous(job, got)  # its retry was due: the error must still say so
            elif wait is not None:
                self.client._log_retry(
                    job.url[self.prefix_len :],
                    got,
                    wait,
                    job.retry.attempt,
                    "POST" if job.op is None else job.op.method,
                )
                # The mailbox pauses (Graph throttles per mailbox); the others go on.
                until = time.monotonic() + wait
                if until > box.paused_until:
                    box.paused_until = until
                    if wait >= 1.0:  # long enough that a progress bar should say why it waits
                        batch.notice = f"mailbox {box.name} throttled, resuming in {wait:.0f} s"
                        self.touched[batch] = None
                box.queue.appendleft(job)
                if batch.journal is not None:
                    batch.journal.requeued(job)
                return None
        if op is not None and isinstance(got, SendError):
            # Only an operation that sends mail may have sent one (as _driver.run says).
            settle(got, op, job.retry is not None and job.retry.ambiguous)
        self._record(job, got)
        return job

    @staticmethod
    def _op_outcome(job: Job, op: Operation[Any], result: Result) -> tuple[Any, bool]:
        """What _driver.run makes of one attempt's answer: op.parse's value for a success,
        else the SendError of failure() (retried by the caller's RetryState as a send's);
        and whether that outcome is final whatever the retry policy says."""
        if result[0] in op.success:
            try:
                value = op.parse(result, job.crid)
                if job.user is not None and value.__class__ is Receipt:  # sendMail
                    value = value.for_item(None, job.user)
                return value, False
            except Exception as exc:
                # Graph did what was asked but the answer cannot be used: say so, never retry.
                err: SendError = GraphError(
                    result[0],
                    message=f"the answer could not be read: {exc}",
                    request_id=result[1].get("request-id"),
                    client_request_id=job.crid,
                    may_have_sent=op.sends_mail,
                )
                return err, True
        return failure(result, job.crid), False

    def _take_slots(self, box: _Mailbox, cap: int) -> float | None:
        """Slots from the limiter for the jobs at the head of box's queue that can start now
        (those of one kind: sending mail or not), asked for in one call; returns how long the
        rest waits. An unreachable limiter fails the head job (not sent) and returns None."""
        queue = box.queue
        head = queue[0]
        sends = head.op is None or head.op.sends_mail
        room = min(cap - box.in_flight, head.batch.limit - head.batch.running)
        wanted: list[Job] = []
        for job in queue:
            if len(wanted) >= room or job.slot is not None or job.batch is not head.batch:
                break
            if (job.op is None or job.op.sends_mail) is not sends:
                break
            wanted.append(job)
        assert self.limiter is not None
        try:
            slots, wait = self.limiter.acquire(box.name, len(wanted), sends=sends)
        except LimiterError as exc:
            queue.popleft()
            if head.probe is not None:  # a read settling a send: it tells nothing, not "unsent"
                self._read_failed(head)
                return None
            _after_ambiguous(head, exc)
            self._record(head, exc if head.op is None else settle(exc, head.op, False))
            return None
        for job, slot in zip(wanted, slots, strict=False):
            job.slot = slot
        if len(slots) > len(wanted):  # a limiter that granted more than asked
            self.limiter.release(slots[len(wanted) :], used=False)
        return max(wait, 0.001)

    def _read_failed(self, read: Job) -> None:
        """A read of a reconciliation that could not be made (no token, no limiter slot): an
        answer that tells nothing. Never the item's outcome: its send may have gone out."""
        from graphsend._drivers import reconciling as _reconciling

        _reconciling.read_done(self, read, None)

    def _unused(self, job: Job) -> None:
        """Give back the slot of a job that will not start (nothing was written)."""
        assert self.limiter is not None
        slot, job.slot = job.slot, None
        self.limiter.release([slot], used=False)

    def abandon_in_flight(self) -> None:
        """The answers of the transfers still in flight will never be read (the call ended, or
        the event loop is gone): their slots go back with the finished ones."""
        for job in self.in_flight.values():
            if job.slot is not None:
                self.returned.append(job.slot)
                job.slot = None

    def release_slots(self, batch: Batch | None = None, *, queued: bool = True) -> None:
        """Give back every slot still held (queued jobs of ``batch``, or all; none when not
        ``queued``) and the finished ones: when a call ends, however it ends."""
        limiter = self.limiter
        if limiter is None:
            return
        unused = []
        for box in self.mailboxes.values() if queued else ():
            for job in box.queue:
                if job.slot is not None and (batch is None or job.batch is batch):
                    unused.append(job.slot)
                    job.slot = None
        if unused:
            limiter.release(unused, used=False)
        if self.returned:
            returned, self.returned = self.returned, []
            limiter.release(returned)

    def release_quietly(self, batch: Batch | None = None, *, queued: bool = True) -> None:
        """release_slots() that never raises: a failed release must not hide a call's results
        or the exception that ended it (a shared store's leases expire by themselves)."""
        try:
            self.release_slots(batch, queued=queued)
        except Exception:
            pass

    def _record(self, job: Job, got: Outcome) -> None:
        batch = job.batch
        batch.results[job.index] = got
        batch.done += 1
        self.touched[batch] = None
        if batch.journal is not None:
            batch.journal.settled(job, got)
        if batch.stop_on_error and isinstance(got, SendError):
            batch.stopping = True

    def _log_attempt(self, job: Job, got: Outcome, result: Receipt | Result) -> None:
        attempt = 1 if job.retry is None else job.retry.attempt
        path = job.url[self.prefix_len :]
        method = "POST" if job.op is None else job.op.method
        if isinstance(got, Receipt):
            self.client._log_attempt(
                path, got.status, got.request_id, job.crid, got.elapsed, attempt, method
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
                method,
            )

    def cancel(self, batch: Batch) -> None:
        """Stop the batch and abort its transfers; their results still come back to finish()."""
        batch.stopping = True
        self.touched[batch] = None  # the driver learns it has finished even if nothing ran
        for tag, job in list(self.in_flight.items()):
            if job.batch is batch:  # its sends, and the reads reconciling them
                self.engine.cancel(tag)

    def cancel_and_collect(self, batch: Batch) -> None:
        """A synchronous call failed: cancel the batch and collect the aborted transfers'
        results (each says whether its request was written) from the thread's Engine."""
        self.cancel(batch)
        for tag, result in self.engine.perform(0.0):
            self.finish(tag, result)  # (their limiter slots come back with them)


def _was_ambiguous(job: Job) -> bool:
    """An attempt of this send (or mail-sending Operation) may have delivered it."""
    retry = job.retry
    return retry is not None and retry.ambiguous and (job.op is None or job.op.sends_mail)


def _after_ambiguous(job: Job, error: SendError) -> SendError:
    """``error`` ends ``job`` before its next attempt (the batch stopped, no token, no limiter
    slot): if an earlier attempt may have delivered it, say so, as Client.send does; else a
    caller (or a journal's rerun) would send it again."""
    if not error.may_have_sent and _was_ambiguous(job):
        mark_maybe_delivered(error)
    return error


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
    journal: object = None,
) -> list[Outcome]:
    check_limits(max_concurrency, max_per_mailbox)
    if journal is not None:
        from graphsend._drivers import journal as _journal

        path = _journal.check_path(journal)
        items = list(items)
        keys = _journal.item_keys(items)
    batch = Batch(max_concurrency, stop_on_error)
    prefer = PREFER_IMMUTABLE if client.immutable_ids else None
    large = batch.add_items(client._prefix, items, prefer)  # bad input raises here
    if journal is not None:
        # Refuses a busy or mismatched journal (before anything is sent); presets what is
        # known sent.
        batch.journal = _journal.attach(client, batch, path, keys, max_per_mailbox)
    try:
        # Too large for one sendMail: drafts with their uploads first (several at once, see
        # drafting.py), then their sends go out with the others.
        draft_many(client, large, batch, max_per_mailbox, max_concurrency)
        engine = client._engine()
        report = reporter(progress, len(batch.jobs))
        note = getattr(report, "note", None)
        scheduler = Scheduler(client, engine, max_per_mailbox)
        scheduler.add(batch)
    except BaseException as exc:  # Ctrl-C while setting up, a bad progress: nothing was sent
        exc.results = batch.abandon()  # type: ignore[attr-defined]
        if batch.journal is not None:  # (else its lock outlives the call: the next run is refused)
            with contextlib.suppress(Exception):
                batch.journal.close()
        raise
    total = len(batch.jobs)
    check_signals = threading.current_thread() is threading.main_thread()
    shown = 0  # items the progress report has been told about
    try:
        if batch.journal is not None and batch.journal.doubtful:
            _journal.reconcile(scheduler, batch.journal)  # maybe sent before: ask the mailbox
        while True:
            now = time.monotonic()
            next_wake = scheduler.start_ready(now)
            if batch.journal is not None:
                batch.journal.flush()  # what was just submitted is recorded before it is written
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
        client._engine_cleanup(engine, lambda: scheduler.cancel_and_collect(batch))
        exc.results = batch.settle(scheduler.in_flight)  # type: ignore[attr-defined]
        scheduler.abandon_in_flight()  # (no answer came back: none will be read)
        scheduler.release_quietly()
        if batch.journal is not None:
            with contextlib.suppress(Exception):  # (the journal may be what failed)
                batch.journal.close()  # the aborted ones' outcomes too (in flight: doubtful)
        raise
    results = batch.settle(scheduler.in_flight)
    scheduler.release_quietly()  # every send is done: a failed release must not hide results
    if batch.journal is not None:
        try:
            batch.journal.close()
        except BaseException as exc:  # (a full disk, say): every send is done, say how
            exc.results = results  # type: ignore[attr-defined]
            raise
    return results
