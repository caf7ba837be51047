"""Settling an ambiguous send by asking the mailbox: the stamp every graphsend draft carries,
the two reads (Operations) and the rules that turn what they show into a verdict. No I/O here:
the drivers run :func:`plan`'s steps (sync: ``_drivers/sync.py``; the bulk Scheduler and
AsyncClient: ``_drivers/reconciling.py``).

How the mailbox tells (Graph's documented behaviour):

* ``GET /messages/{id}?$select=isDraft,parentFolderId`` (Mail.ReadBasic). With an immutable id
  (``Prefer: IdType="ImmutableId"`` when the draft was made, graphsend's default) the id still
  names the message after the send moved it to Sent Items: ``isDraft`` false is proof it was
  sent. ``isDraft`` true is proof of nothing at first: the send pipeline moves the message
  some time after the 202. Only a draft that still reads unsent once the settling time
  (``wait``) is over counts as not sent.
* Every draft graphsend creates carries one single-value extended property in graphsend's own
  GUID namespace, with one fixed name and a fresh value per draft (never a new name per
  message: a mailbox caps its named properties). ``GET /mailFolders/sentitems/messages?$filter=
  singleValueExtendedProperties/Any(ep: ep/id eq '...' and ep/value eq '...')`` (Mail.Read)
  finds the sent copy even when its id changed (ids that are not immutable). It is used when
  the id no longer resolves (404) and the stamp is known: the Client remembers the stamps of
  the drafts it made (the last :data:`STAMPS_KEPT`), or the caller passes ``stamp=``.
* A 403, a 404 without a known stamp, or reads that keep failing say nothing: "unknown".

A JSON sendMail has no draft to read, so every one graphsend sends carries a stamp too (in
the sendMail body's message: :func:`send_mail`); with ``saveToSentItems`` its ambiguous
failure is settled by the stamp search alone (``plan(None, stamp, wait)``). Its sent copy
found is proof it was sent. Not finding it is never proof it was not: unlike a draft that still
reads unsent, an absence is also what a copy still in the pipeline, or moved or deleted from
Sent Items, shows; so after ``wait`` it is "unknown" (the original error), never a resend.
A MIME sendMail cannot carry an extended property (an X- header becomes a named property
only on transport delivery to a mailbox, not on the sender's copy): it is not reconciled.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from urllib.parse import quote

from graphsend import _native
from graphsend._operations.catalog import Operation, read_json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Generator
    from typing import Any, Literal, TypeAlias

    from graphsend._native import Result
    from graphsend._rules.errors import SendError
    from graphsend._rules.receipt import Receipt
    from graphsend._rules.retry import Retry, RetryState

    Verdict: TypeAlias = Literal["sent", "not_sent", "unknown"]
    # What one read showed: the sent copy; the draft, still unsent; the id names nothing;
    # no sent copy with the stamp (yet); a read that cannot tell (403, another 404: stop);
    # a read that failed (5xx, transport, 401, an unreadable answer: try again).
    Reading: TypeAlias = Literal["sent", "draft", "gone", "none", "blind", "error"]
    Step: TypeAlias = tuple[Literal["get"], Operation["Result"]] | tuple[Literal["sleep"], float]

#: graphsend's own property set (a GUID of its own, fixed forever) and the one property name.
STAMP_GUID = "6b1f3c52-8d0e-4a57-9c1e-2f4e7a9d0b63"
STAMP_ID = f"String {{{STAMP_GUID}}} Name graphsendStamp"
#: Drafts whose stamp a Client remembers (id -> stamp), the most recent ones: about 300 bytes
#: each, so the memory stays under 5 MB.
STAMPS_KEPT = 16384
#: Polls back off from this many seconds, doubling, up to BACKOFF_MAX.
BACKOFF_FIRST = 0.25
BACKOFF_MAX = 5.0
#: Reads that fail (5xx, a reset, a timeout) once the settling time is over are tried again
#: this many times: ``wait`` bounds the settling time, not the patience with a flaky network.
LATE_RETRIES = 3

_ANY_STATUS = frozenset(range(0, 1000))  # every answer comes back raw: these rules read it


def new_stamp() -> str:
    """A fresh stamp value (a UUID v4 string)."""
    return _native.new_client_request_id()


def stamp_property(stamp: str) -> list[dict[str, str]]:
    """The ``singleValueExtendedProperties`` member of a draft stamped with ``stamp``."""
    return [{"id": STAMP_ID, "value": stamp}]


def stamped(message: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """A message JSON with a fresh stamp added, and the stamp."""
    stamp = new_stamp()
    message["singleValueExtendedProperties"] = stamp_property(stamp)
    return message, stamp


def send_mail(message: dict[str, Any], save_to_sent_items: bool) -> Operation[Receipt]:
    """The sendMail Operation for a message JSON, the message stamped (its ``stamp`` set when
    the sent copy is saved, so it can be looked up)."""
    from graphsend._operations.catalog import send_mail as _send_mail

    doc, stamp = stamped(message)
    return _send_mail(doc, save_to_sent_items, stamp)


class Stamps:
    """The stamps of the drafts one Client made, most recent :data:`STAMPS_KEPT` (thread-safe)."""

    def __init__(self, kept: int = STAMPS_KEPT) -> None:
        self._kept = kept
        self._lock = threading.Lock()
        self._by_id: OrderedDict[str, str] = OrderedDict()

    def remember(self, message_id: str, stamp: str) -> None:
        with self._lock:
            self._by_id[message_id] = stamp
            if len(self._by_id) > self._kept:
                self._by_id.popitem(last=False)

    def get(self, message_id: str) -> str | None:
        with self._lock:
            return self._by_id.get(message_id)


def check_wait(wait: object, what: str = "wait") -> float:
    import math

    if isinstance(wait, bool) or not isinstance(wait, (int, float)):
        raise TypeError(f"{what} must be a number of seconds")
    if not (wait >= 0 and math.isfinite(wait)):
        raise ValueError(f"{what} must be a finite number >= 0")
    return float(wait)


# --- the reads ------------------------------------------------------------------------------


def _raw(result: Result, crid: str) -> Result:
    return result


def read_message(message_id: str) -> Operation[Result]:
    """GET the message's isDraft (Mail.ReadBasic); every answer comes back as is."""
    return Operation(
        "getMessage",
        "GET",
        "?$select=isDraft,parentFolderId",
        _raw,
        message_id,
        content_type=None,
        success=_ANY_STATUS,
    )


def find_stamp(stamp: str) -> Operation[Result]:
    """Sent Items filtered on graphsend's stamp (Mail.Read); every answer comes back as is."""
    value = stamp.replace("'", "''")
    expr = f"singleValueExtendedProperties/Any(ep: ep/id eq '{STAMP_ID}' and ep/value eq '{value}')"
    query = "$filter=" + quote(expr, safe="/:(),'") + "&$select=id,isDraft&$top=1"
    return Operation(
        "findSentByStamp",
        "GET",
        "/mailFolders/sentitems/messages?" + query,
        _raw,
        content_type=None,
        success=_ANY_STATUS,
    )


def _code(body: bytes) -> str | None:
    doc = read_json(body)
    error = doc.get("error") if isinstance(doc, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) else None


def read_reading(result: Result) -> Reading:
    """What a GET of the message shows."""
    status, body = result[0], result[2]
    if status == 200:
        doc = read_json(body)
        is_draft = doc.get("isDraft") if isinstance(doc, dict) else None
        if is_draft is False:
            return "sent"
        return "draft" if is_draft is True else "error"
    if status == 404:
        # The id names nothing (sent with an id that is not immutable, or deleted); another
        # 404 (ErrorInvalidUser, MailboxNotEnabledForRESTAPI) will not change by asking again.
        return "gone" if _code(body) == "ErrorItemNotFound" else "blind"
    if status in (400, 403):
        return "blind"  # no permission (Mail.ReadBasic, or RBAC scoping), or not readable
    return "error"


def search_reading(result: Result) -> Reading:
    """What the Sent Items search for the stamp shows."""
    status, body = result[0], result[2]
    if status == 200:
        doc = read_json(body)
        found = doc.get("value") if isinstance(doc, dict) else None
        if not isinstance(found, list):
            return "error"
        return "sent" if found else "none"
    if status in (400, 403, 404):
        return "blind"  # no Mail.Read, a filter this service refuses, no such mailbox
    return "error"


def verdict(
    reading: Reading, started: float, deadline: float, late_errors: int = 0
) -> Verdict | None:
    """The verdict a reading gives, or None to read again later. ``started``: when the read
    was issued; a draft reading unsent is proof only from a read issued after ``deadline``.
    ``late_errors``: failed reads issued after ``deadline`` so far, this one included."""
    if reading == "sent":
        return "sent"
    if reading == "blind":
        return "unknown"
    if started < deadline:
        return None
    if reading == "draft":
        return "not_sent"
    if reading == "error" and late_errors <= LATE_RETRIES:
        return None
    return "unknown"


def backoff(polls: int) -> float:
    return min(BACKOFF_MAX, BACKOFF_FIRST * 2**polls)


def plan(
    message_id: str | None,
    stamp: str | None,
    wait: float,
    clock: Callable[[], float] = time.monotonic,
) -> Generator[Step, Result | None, Verdict]:
    """The reads and pauses that settle one ambiguous send of ``message_id``; the driver sends
    each read's Result back (None after a pause) and gets the verdict as the return value.

    Reads at once, then backs off (0.25 s doubling to 5 s) until ``wait`` seconds have passed,
    with one last read issued at or after that moment (tried again up to LATE_RETRIES times
    if it fails). ``message_id`` None (a sendMail): the stamp search alone, which can say
    "sent" or "unknown", never "not_sent".
    """
    deadline = clock() + wait
    if message_id is None and stamp is None:
        return "unknown"
    gone = message_id is None  # the id named nothing: from now on only the stamp can tell
    polls = 0
    late_errors = 0
    while True:
        started = clock()
        reading: Reading = "error"
        if not gone:
            answer = yield ("get", read_message(message_id))  # type: ignore[arg-type]
            reading = read_reading(answer) if answer is not None else "error"
            if reading == "gone":
                if stamp is None:
                    return "unknown"  # deleted, or a changed id we cannot follow
                gone = True
        if gone:
            answer = yield ("get", find_stamp(stamp))  # type: ignore[arg-type]
            reading = search_reading(answer) if answer is not None else "error"
        if reading == "error" and started >= deadline:
            late_errors += 1
        decided = verdict(reading, started, deadline, late_errors)
        if decided is not None:
            return decided
        now = clock()
        if late_errors:
            yield ("sleep", backoff(late_errors - 1))
        else:
            yield ("sleep", max(0.0, min(backoff(polls), deadline - now)))
        polls += 1


# --- what a verdict does to the send (Retry(reconcile_ambiguous=True)) ---------------------


def may_reconcile(
    policy: Retry, error: SendError, message_id: str | None, stamp: str | None = None
) -> bool:
    """Whether a final failure is settled by asking the mailbox: the policy asks for it, the
    send may have gone out, and there is a draft to read or (a sendMail) a stamp to look up."""
    return (
        policy.reconcile_ambiguous
        and error.may_have_sent
        and (message_id is not None or stamp is not None)
    )


def after(
    verdict: Verdict,
    error: SendError,
    state: RetryState,
    elapsed: float,
    message_id: str | None,
    user: str | None,
) -> Receipt | SendError | None:
    """The outcome of an ambiguous failure once the mailbox has answered: a Receipt with
    ``reconciled=True`` (sent); None to send again, the attempt counted in ``state`` (not sent,
    and the policy allows another attempt); else the error to report (``may_have_sent`` False
    when the mailbox proved it was not sent)."""
    from graphsend._rules.receipt import Receipt

    if verdict == "sent":
        request_id = getattr(error, "request_id", None)
        crid = error.client_request_id or ""
        return Receipt(202, request_id, crid, None, elapsed, message_id, user, True)
    if verdict == "not_sent":
        # Proof that no attempt so far delivered it: a new one cannot make a duplicate.
        state.ambiguous = False
        error.args = (f"{error.args[0]}; the mailbox shows it was not sent",)
        if state.attempt < state.policy.max_attempts:
            state.attempt += 1
            return None
        error.may_have_sent = False
        return error
    error.args = (f"{error.args[0]}; reading the mailbox could not tell whether it was sent",)
    return error
