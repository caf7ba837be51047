"""The drafts of a send_many: Messages too large for one sendMail are drafted (with their
attachments and uploads) before the batch sends them, several at once.

One after another, N such drafts cost N times (createDraft + attachments + upload chunks) round
trips before the first send; side by side, at most ``max_per_mailbox`` per mailbox (Graph's
concurrency limit counts these requests too), they cost about what the sends themselves cost,
so the whole batch stays near twice its send time when the mailboxes carry even loads. (Chaining
draft, attachments and send as jobs of the Scheduler would also overlap the two phases; this is
the small step that keeps the Scheduler untouched.)

The sync Client drafts on a few threads (each uses its own Handle, as any thread does); the
AsyncClient on its own loop, bounded by a semaphore. Outcomes are applied to the batch by the
caller's thread only.
"""

from __future__ import annotations

import threading
from collections import deque

from graphsend._rules.errors import SendError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

    from graphsend._drivers.async_client import AsyncClient
    from graphsend._drivers.client import Client
    from graphsend._operations.message import Message

    Large = list[tuple[Any, str | None, Message]]  # (job, user, message)

#: Threads a sync send_many drafts on, at most (each holds a connection while it works).
MAX_THREADS = 16


def interleaved(large: Large) -> Iterator[tuple[Any, str | None, Message]]:
    """The items round-robin over their mailboxes, so no mailbox waits behind another's."""
    queues: dict[str, deque[tuple[Any, str | None, Message]]] = {}
    for item in large:
        user = item[1]
        queues.setdefault("me" if user is None else user.lower(), deque()).append(item)
    while queues:
        for name in list(queues):
            queue = queues[name]
            yield queue.popleft()
            if not queue:
                del queues[name]


def draft_many(
    client: Client,
    large: Large,
    batch: Any,
    max_per_mailbox: int,
    max_concurrency: int,
) -> None:
    """Create every draft of ``large`` and tell ``batch`` (to_draft, or preset with the
    SendError). Any other exception (a file that went away, Ctrl-C) stops the drafting: what
    is under way finishes (a draft is not a send), then it is raised."""
    # stop_on_error: one at a time, so that no draft is made after the first failure (it would
    # be left in Drafts, never sent).
    if len(large) <= 1 or min(max_concurrency, max_per_mailbox) <= 1 or batch.stop_on_error:
        for job, user, message in large:
            if batch.stopping:
                break  # stop_on_error: no more drafts for a batch that will not send them
            _apply(client, batch, job, user, _draft(client, user, message))
        return
    items = deque(interleaved(large))
    cond = threading.Condition()
    busy: dict[str, int] = {}
    done: deque[tuple[Any, str | None, object]] = deque()
    failure: list[BaseException] = []
    state = {"running": 0, "stop": False}

    def take() -> tuple[Any, str | None, Message] | None:
        """The next item whose mailbox has room (under cond)."""
        while True:
            if state["stop"] or batch.stopping or failure or not items:
                return None
            for i, item in enumerate(items):
                box = "me" if item[1] is None else item[1].lower()
                if busy.get(box, 0) < max_per_mailbox:
                    del items[i]
                    busy[box] = busy.get(box, 0) + 1
                    return item
            cond.wait()

    def work() -> None:
        while True:
            with cond:
                item = take()
                if item is None:
                    return
            job, user, message = item
            try:
                got: object = _draft(client, user, message)
            except BaseException as exc:  # not a SendError: the drafting stops
                got = exc
            with cond:
                box = "me" if user is None else user.lower()
                busy[box] -= 1
                done.append((job, user, got))
                cond.notify_all()

    threads = [
        threading.Thread(target=work, name="graphsend-draft", daemon=True)
        for _ in range(min(len(large), max_concurrency, MAX_THREADS))
    ]
    for thread in threads:
        thread.start()
    try:
        while True:
            with cond:
                while not done and any(t.is_alive() for t in threads):
                    cond.wait(0.1)
                ready = list(done)
                done.clear()
            for job, user, got in ready:
                if isinstance(got, BaseException) and not isinstance(got, SendError):
                    failure.append(got)
                elif not failure:
                    _apply(client, batch, job, user, got)  # may set batch.stopping
            if not ready and not any(t.is_alive() for t in threads):
                break
            if failure or batch.stopping:
                with cond:
                    state["stop"] = True
                    cond.notify_all()
    except BaseException:
        # Ctrl-C (or a progress of its own failing): start no more drafts; the ones under way
        # finish (a draft is not a send, and each request has the Client's timeouts).
        with cond:
            state["stop"] = True
            cond.notify_all()
        for thread in threads:
            thread.join()
        raise
    if failure:
        raise failure[0]


async def draft_many_async(
    owner: AsyncClient, large: Large, call: Any, max_concurrency: int
) -> None:
    """draft_many for the AsyncClient: its Scheduler already holds each mailbox to its cap;
    the semaphore bounds how many drafts (and open attachment files) are under way."""
    import asyncio

    # stop_on_error: one at a time (see draft_many).
    gate = asyncio.Semaphore(1 if call.stop_on_error else max(1, max_concurrency))

    async def one(job: Any, user: str | None, message: Message) -> None:
        async with gate:
            if call.stopping:
                return  # stop_on_error: no more drafts for a batch that will not send them
            try:
                draft_id = await owner.create_draft(message, user=user)
            except SendError as exc:
                call.preset(job, exc)
            else:
                call.to_draft(job, owner._client._prefix, user, draft_id)

    tasks = [asyncio.ensure_future(one(*item)) for item in interleaved(large)]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        # Cancelled, or a file went away: stop the other drafts before the caller reports.
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def _draft(client: Client, user: str | None, message: Message) -> object:
    try:
        return client.create_draft(message, user=user)
    except SendError as exc:
        return exc


def _apply(client: Client, batch: Any, job: Any, user: str | None, got: object) -> None:
    if isinstance(got, SendError):
        batch.preset(job, got)
    elif isinstance(got, BaseException):
        raise got
    else:
        batch.to_draft(job, client._prefix, user, got)
