"""The records tests read: messages in a mailbox, and requests as the server received them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

DraftKind = Literal["new", "reply", "replyAll", "forward"]
IdStyle = Literal["rest", "ews"]
Outcome = Literal["pending", "answered", "reset", "stalled", "disconnected"]


@dataclass(frozen=True)
class Message:
    """A draft or a sent message in a FakeGraph mailbox.

    ``id`` is the draft id the message was created with (Graph gives sent items a new id; keeping
    the draft id makes tests simpler). ``user`` is the mailbox, lower-cased. ``sent_at`` is the
    moment the send was accepted (UTC), or None for a draft.
    """

    id: str
    subject: str
    kind: DraftKind
    user: str
    sent_at: datetime | None = None


@dataclass(eq=False)
class RecordedRequest:
    """One HTTP request as FakeGraph received it, including those that failed.

    ``path`` is the request target exactly as it appeared on the request line (with any query
    string and percent-encoding untouched). ``headers`` has lower-case names; repeated headers
    are joined with ``", "``. ``user`` is the mailbox the path resolved to (lower-cased, ``me``
    replaced by the default user) and ``message_id`` the percent-decoded id, when the path had
    them. ``received_at`` and ``answered_at`` are ``time.monotonic()`` values. ``connection``
    numbers the TCP connection (1 for the first one accepted), so keep-alive reuse is visible;
    ``http_version`` is the protocol it came by: ``"HTTP/1.1"`` (or ``"HTTP/1.0"``) or
    ``"HTTP/2"``.

    ``status`` and ``outcome`` are filled in by the server thread once the request is dealt with:
    ``outcome`` is ``"pending"`` until then, ``"answered"`` when a response was written,
    ``"reset"`` for an injected reset, ``"stalled"`` while an injected stall holds the request,
    and ``"disconnected"`` when the client went away first: it closed the connection before the
    answer was ready (the answer is still written, to no one, and ``status`` says what it was),
    or gave up on a stalled request. ``status`` is None when nothing was answered.
    """

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    user: str | None
    message_id: str | None
    received_at: float
    connection: int
    http_version: str
    status: int | None = None
    outcome: Outcome = "pending"
    answered_at: float | None = None

    @property
    def client_request_id(self) -> str | None:
        """The ``client-request-id`` header the client sent, if any."""
        return self.headers.get("client-request-id")

    @property
    def authorization(self) -> str | None:
        """The ``Authorization`` header the client sent, if any."""
        return self.headers.get("authorization")
