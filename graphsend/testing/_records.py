"""The records tests read: messages in a mailbox, and requests as the server received them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

DraftKind = Literal["new", "reply", "replyAll", "forward"]
IdStyle = Literal["rest", "ews"]
Outcome = Literal["pending", "answered", "reset", "stalled", "disconnected"]
BodyType = Literal["text", "html"]
Importance = Literal["low", "normal", "high"]


@dataclass(frozen=True)
class Recipient:
    """An ``emailAddress`` as Graph stores it: ``str()`` gives ``"Name <address>"``."""

    address: str
    name: str = ""

    def __str__(self) -> str:
        return f"{self.name} <{self.address}>" if self.name else self.address


@dataclass(frozen=True)
class Attachment:
    """A file attachment with its exact bytes, however it arrived (inline JSON, an upload
    session, or a MIME part)."""

    id: str
    name: str
    content_type: str
    content_bytes: bytes
    inline: bool = False
    content_id: str | None = None

    @property
    def size(self) -> int:
        """Bytes of the content."""
        return len(self.content_bytes)


@dataclass(frozen=True)
class Message:
    """A draft, a received message, or a sent message in a FakeGraph mailbox.

    ``id`` is the id the message was created with (the draft id; tests compare it with what the
    client got). ``sent_id`` is its id in Sent Items once sent: the same id when it was created
    with ``Prefer: IdType="ImmutableId"`` (or ``create_draft(immutable_id=True)``), a new id
    otherwise, as Graph moves it. ``user`` is the mailbox, lower-cased. ``sent_at`` is the moment
    the send was accepted (UTC), or None for a draft. ``saved_to_sent_items`` is False for a
    sendMail with ``saveToSentItems: false`` (it is in :meth:`FakeGraph.delivered` only).

    The other fields are what a recipient gets: ``body``/``body_type``, recipients as
    :class:`Recipient` tuples, ``importance``, ``headers`` (internetMessageHeaders as
    (name, value) pairs), ``attachments`` with their bytes, ``extended_properties``
    (singleValueExtendedProperties as (id, value) pairs), ``sender`` (``from``). Replies and
    forwards made by createReply/createReplyAll/createForward carry ``comment`` and
    ``original_id``; ``conversation_id`` links a reply with its original. ``mime`` holds the
    RFC 5322 bytes of a message sent with sendMail as MIME.
    """

    id: str
    subject: str
    kind: DraftKind
    user: str
    sent_at: datetime | None = None
    body: str = ""
    body_type: BodyType = "text"
    to: tuple[Recipient, ...] = ()
    cc: tuple[Recipient, ...] = ()
    bcc: tuple[Recipient, ...] = ()
    reply_to: tuple[Recipient, ...] = ()
    sender: Recipient | None = None
    importance: Importance = "normal"
    headers: tuple[tuple[str, str], ...] = ()
    attachments: tuple[Attachment, ...] = ()
    extended_properties: tuple[tuple[str, str], ...] = ()
    comment: str = ""
    original_id: str | None = None
    conversation_id: str = ""
    immutable_id: bool = False
    sent_id: str | None = None
    saved_to_sent_items: bool = True
    mime: bytes | None = None

    @property
    def recipients(self) -> tuple[Recipient, ...]:
        """Everyone the message goes to (to + cc + bcc)."""
        return self.to + self.cc + self.bcc

    def attachment(self, name: str) -> Attachment:
        """The attachment called ``name``.

        Args:
            name: The attachment's file name.

        Returns:
            The attachment record.

        Raises:
            KeyError: The message has no attachment of that name.
        """
        for attachment in self.attachments:
            if attachment.name == name:
                return attachment
        raise KeyError(name)


@dataclass(eq=False)
class RecordedRequest:
    """One HTTP request as FakeGraph received it, including those that failed.

    ``path`` is the request target exactly as it appeared on the request line (with any query
    string and percent-encoding untouched). ``headers`` has lower-case names; repeated headers
    are joined with ``", "``. ``user`` is the mailbox the path resolved to (lower-cased, ``me``
    replaced by the default user) and ``message_id`` the percent-decoded id, when the path had
    them (for an upload URL, those of its session). ``received_at`` and ``answered_at`` are
    ``time.monotonic()`` values. ``connection`` numbers the TCP connection (1 for the first one
    accepted), so keep-alive reuse is visible; ``http_version`` is the protocol it came by:
    ``"HTTP/1.1"`` (or ``"HTTP/1.0"``) or ``"HTTP/2"``.

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

    @property
    def body_size(self) -> int:
        """Bytes in the request body."""
        return len(self.body)

    @property
    def is_upload(self) -> bool:
        """Whether the request went to an upload session's URL (not to Graph's API)."""
        return self.path.split("?", 1)[0].startswith("/uploads/")
