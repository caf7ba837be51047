"""Running ``_operations/reconcile.plan`` on the event loop (AsyncClient.reconcile) and inside
the bulk Scheduler (send_many and AsyncClient with ``Retry(reconcile_ambiguous=True)``)."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time

from graphsend import _native
from graphsend._drivers.bulk import Batch, Job, Scheduler, _Mailbox, check_limits
from graphsend._drivers.sync import PREFER_IMMUTABLE
from graphsend._operations import reconcile as _reconcile
from graphsend._rules.errors import SendError
from graphsend._rules.receipt import Receipt

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Generator, Iterable

    from graphsend._drivers.async_client import AsyncClient
    from graphsend._drivers.client import Client
    from graphsend._native import Result
    from graphsend._operations.reconcile import Step, Verdict
    from graphsend._rules.request import Item


async def reconcile_async(
    owner: AsyncClient, message_id: str, user: str | None, wait: float, stamp: str | None
) -> Verdict:
    """The plan's reads as one-item calls on the loop's Scheduler, its pauses awaited."""
    if stamp is None:
        stamp = owner._client._stamps.get(message_id)
    steps = _reconcile.plan(message_id, stamp, wait)
    try:
        step = next(steps)
        while True:
            answer: Result | None = None
            if step[0] == "get":
                try:
                    answer = await owner._run_op(step[1], user)
                except SendError:
                    answer = None  # no token, or the driver stopped: this read tells nothing
            else:
                await asyncio.sleep(step[1])
            step = steps.send(answer)
    except StopIteration as done:
        verdict: Verdict = done.value
        return verdict


# --- inside the bulk Scheduler ----------------------------------------------------------------
#
# An ambiguous send (its final failure may have delivered it) is not recorded: its job waits
# while a Probe runs the plan. Each read is a Job of its own in the send's mailbox queue (so
# Graph's per-mailbox cap covers the reads too) and each pause an entry of Scheduler.sleeping;
# the other items go on meanwhile. Until the verdict, the item's result is the original error,
# so a batch stopped half-way (Ctrl-C, cancel) reports it as may have been sent.

_order = itertools.count()  # ties in the sleeping heap: first come first served


class Probe:
    __slots__ = ("error", "job", "started", "steps")

    def __init__(
        self, job: Job, error: SendError | None, steps: Generator[Step, Result | None, Verdict]
    ) -> None:
        self.job = job  # the send being settled
        self.error = error
        self.steps = steps
        self.started = time.monotonic()


def start(scheduler: Scheduler, job: Job, error: SendError) -> None:
    """Settle ``job``'s ambiguous failure by reading its mailbox (a sendMail: by its stamp)."""
    job.batch.results[job.index] = error  # provisional: what a stop reports (not counted done)
    if job.message_id is None:
        stamp = job.op.stamp
    else:
        stamp = scheduler.client._stamps.get(job.message_id)
    steps = _reconcile.plan(job.message_id, stamp, scheduler.client.retry.reconcile_wait)
    _advance(scheduler, Probe(job, error, steps), None, first=True)


def wake(scheduler: Scheduler, now: float) -> float | None:
    """Go on with the probes whose pause is over; when the next one wakes, if any."""
    sleeping = scheduler.sleeping
    while sleeping and sleeping[0][0] <= now:
        probe = heapq.heappop(sleeping)[2]
        _advance(scheduler, probe, None)
    return sleeping[0][0] if sleeping else None


def read_done(scheduler: Scheduler, read: Job, result: Result | None) -> None:
    """A read finished (the Scheduler did the mailbox and batch bookkeeping), or could not be
    made (None: no token or no limiter slot; the plan then only ever pauses or concludes)."""
    probe: Probe = read.probe
    if result.__class__ is Receipt:  # (reads carry no crid for the engine: never a Receipt)
        result = None  # type: ignore[assignment]
    _advance(scheduler, probe, result)


def _advance(
    scheduler: Scheduler, probe: Probe, answer: Result | None, first: bool = False
) -> None:
    job = probe.job
    batch = job.batch
    if batch.stopping:
        scheduler.touched[batch] = None
        return  # the provisional result (the original error) stands
    try:
        step = next(probe.steps) if first else probe.steps.send(answer)
    except StopIteration as done:
        _conclude(scheduler, probe, done.value)
        return
    if step[0] == "sleep":
        heapq.heappush(scheduler.sleeping, (time.monotonic() + step[1], next(_order), probe))
        _box(scheduler, job.mailbox)  # marked ready: the driver looks at the Scheduler again
        return
    op = step[1]
    client = scheduler.client
    crid = _native.new_client_request_id()
    read = Job(batch, job.index, job.mailbox, client._prefix + op.path(job.user), crid)
    fixed = ["client-request-id: " + crid]
    if client.immutable_ids:
        fixed.append(PREFER_IMMUTABLE)
    read.op, read.fixed, read.probe, read.user = op, tuple(fixed), probe, job.user
    _enqueue(scheduler, read, front=True)  # the settling time runs: ahead of queued sends


def _conclude(scheduler: Scheduler, probe: Probe, verdict: Verdict) -> None:
    job = probe.job
    if probe.error is None:  # reconcile_many: the verdict is the item's result
        scheduler._record(job, verdict)  # type: ignore[arg-type]
        return
    assert job.retry is not None
    elapsed = time.monotonic() - probe.started
    got = _reconcile.after(verdict, probe.error, job.retry, elapsed, job.message_id, job.user)
    if got is None:  # proved not sent: send again (same client-request-id)
        job.batch.results[job.index] = None  # not in flight, not sent: as any queued item
        path = job.url[scheduler.prefix_len :]
        scheduler.client._log_retry(path, probe.error, 0.0, job.retry.attempt)
        _enqueue(scheduler, job, front=True)
        return
    scheduler._record(job, got)


def _enqueue(scheduler: Scheduler, job: Job, front: bool) -> None:
    box = _box(scheduler, job.mailbox)
    if front:
        box.queue.appendleft(job)
    else:
        box.queue.append(job)


def _box(scheduler: Scheduler, name: str) -> _Mailbox:
    """The mailbox's queue (made again if it went idle), marked ready."""
    box = scheduler.mailboxes.get(name)
    if box is None:
        box = scheduler.mailboxes[name] = _Mailbox(name)
    scheduler.ready[name] = box
    return box


def reconcile_many(
    client: Client, items: Iterable[Item], wait: float, max_concurrency: int, max_per_mailbox: int
) -> list[Verdict]:
    """Client.reconcile_many: every item's plan at once on the thread's Engine, under the
    per-mailbox cap; the verdicts in input order."""
    import threading

    check_limits(max_concurrency, max_per_mailbox)
    batch = Batch(max_concurrency)
    for index, item in enumerate(items):
        if isinstance(item, tuple):
            if len(item) != 2:
                raise ValueError(f"item {index}: expected (user, message_id), got {len(item)}")
            user, message_id = item
        else:
            user, message_id = None, item
        if not isinstance(message_id, str):
            raise TypeError(f"item {index}: a message id (str) is needed")
        batch.add(client._prefix, user, message_id, "")  # bad input raises here
    engine = client._engine()
    scheduler = Scheduler(client, engine, max_per_mailbox)
    batch.results = [None] * len(batch.jobs)
    for job in batch.jobs:
        assert job.message_id is not None
        stamp = client._stamps.get(job.message_id)
        _advance(
            scheduler, Probe(job, None, _reconcile.plan(job.message_id, stamp, wait)), None, True
        )
    check_signals = threading.current_thread() is threading.main_thread()
    try:
        while not batch.finished():
            now = time.monotonic()
            next_wake = scheduler.start_ready(now)
            if batch.finished():
                break
            timeout = 1.0 if next_wake is None else max(0.0, min(next_wake - now, 1.0))
            for tag, result in engine.perform(timeout, check_signals):
                scheduler.finish(tag, result)
    except BaseException:
        client._engine_cleanup(engine, lambda: scheduler.cancel_and_collect(batch))
        raise
    finally:
        # Client(limiter=...): the slots of the last answers (or of the aborted reads) go
        # back now; kept, they would hold the mailbox from every other client for good.
        scheduler.release_quietly()
    verdicts = list(batch.results)
    batch.jobs = []
    return verdicts  # type: ignore[return-value]
