"""The synchronous driver: executes an Operation on a Client's per-thread Handle.

What every operation shares lives here once: the headers (Authorization, client-request-id,
Prefer, Content-Type, Retry-Attempt), the retry policy, logging, and turning an answer into the
operation's result or into a SendError whose ``may_have_sent`` is exact for the operation.
"""

from __future__ import annotations

import time

from graphsend._operations.catalog import PREFER_IMMUTABLE, settle
from graphsend._rules import log as _log
from graphsend._rules.errors import GraphError, SendError
from graphsend._rules.outcome import failure
from graphsend._rules.receipt import Receipt
from graphsend._rules.request import new_client_request_id
from graphsend._rules.retry import RetryState

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TypeVar

    from graphsend._drivers.client import Client
    from graphsend._native import Result
    from graphsend._operations.catalog import Operation
    from graphsend._operations.reconcile import Verdict
    from graphsend._rules.tokens import TokenSource

    T = TypeVar("T")


def run(client: Client, op: Operation[T], user: str | None, tokens: TokenSource | None = None) -> T:
    """``tokens``: another token source than the client's (send_message passes its own)."""
    limiter = client._limiter
    if limiter is None:
        return _run(client, op, user, tokens)
    from graphsend._drivers.limiter import acquire_blocking, mailbox_of

    path = op.path(user)  # bad input fails before a slot is taken
    slots: list[object] = []
    try:  # (the slot is taken inside: a Ctrl-C right after it still gives it back)
        slots = acquire_blocking(limiter, mailbox_of(user), op.sends_mail, client._slot_wait)
        return _run(client, op, user, tokens, path)
    finally:
        limiter.release(slots)


def _run(
    client: Client,
    op: Operation[T],
    user: str | None,
    tokens: TokenSource | None = None,
    path: str | None = None,
) -> T:
    if path is None:
        path = op.path(user)
    url = client._prefix + path
    crid = new_client_request_id()
    fixed = ["client-request-id: " + crid]
    if client.immutable_ids:
        fixed.append(PREFER_IMMUTABLE)
    if op.body is not None and op.content_type is not None:
        fixed.append("Content-Type: " + op.content_type)
    if tokens is None:
        tokens = client._tokens
    state = RetryState(client.retry)
    auth = tokens.header()  # a failing provider raises AuthenticationError: nothing was sent
    while True:
        extra = (f"Retry-Attempt: {state.attempt - 1}",) if state.attempt > 1 else ()
        result = client._handle().request(op.method, url, (auth, *fixed, *extra), op.body)
        status = result[0]
        if _log.debug_enabled():
            client._log_attempt(
                path,
                status or f"curl error {result[4]}",
                result[1].get("request-id"),
                crid,
                result[3],
                state.attempt,
                op.method,
            )
        if status in op.success:
            try:
                value = op.parse(result, crid)
                if user is not None and value.__class__ is Receipt:  # sendMail: name the mailbox
                    value = value.for_item(None, user)  # type: ignore[attr-defined]
                return value
            except Exception as exc:
                # Graph did what was asked but the answer cannot be used: say so, never retry.
                err: SendError = GraphError(
                    status,
                    message=f"the answer could not be read: {exc}",
                    request_id=result[1].get("request-id"),
                    client_request_id=crid,
                    may_have_sent=op.sends_mail,
                )
                raise settle(err, op, False) from None
        err = failure(result, crid)
        wait = state.next_wait(err, tokens)
        if wait is None:
            raise settle(err, op, state.ambiguous)
        client._log_retry(path, err, wait, state.attempt, op.method)
        if wait:
            time.sleep(wait)
        if client._closed:
            err.args = (f"{err.args[0]}; not retried: the Client was closed",)
            raise settle(err, op, state.ambiguous)
        try:
            auth = tokens.header()
        except SendError as exc:
            exc.attempts = state.attempt - 1
            exc.client_request_id = crid
            raise settle(exc, op, state.ambiguous) from exc.__cause__


def reconcile(
    client: Client,
    message_id: str | None,
    user: str | None,
    wait: float,
    stamp: str | None,
    tokens: TokenSource | None = None,
    held: bool = False,
) -> Verdict:
    """Run ``_operations/reconcile.plan``'s reads and pauses in this thread; its verdict.
    ``held``: the caller holds a limiter slot for this mailbox (a send settling its own
    ambiguous failure): the reads go under it, never wait for another one. ``message_id``
    None: a sendMail, found by its ``stamp`` alone."""
    from graphsend._operations import reconcile as _reconcile

    if stamp is None and message_id is not None:
        stamp = client._stamps.get(message_id)
    steps = _reconcile.plan(message_id, stamp, wait)
    try:
        step = next(steps)
        while True:
            answer: Result | None = None
            if step[0] == "get":
                try:
                    read = _run if held else run
                    answer = read(client, step[1], user, tokens)
                except SendError:
                    answer = None  # the token provider failed: this read tells nothing
            else:
                time.sleep(step[1])
            step = steps.send(answer)
    except StopIteration as done:
        verdict: Verdict = done.value
        return verdict
