"""Receipt: what a successful send returns."""

from __future__ import annotations

from operator import itemgetter

from graphsend import _native

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class Receipt(tuple):  # type: ignore[type-arg]  # a record, not a sequence of one type
    """Graph accepted the draft for sending (202). Immutable, like a named tuple.

    202 means "saved for sending": a later delivery failure comes back to the mailbox as a
    non-delivery report, not as an error here. A tuple underneath because it is the cheapest
    immutable record to build on the send path.

    Attributes:
        status: The HTTP status (202).
        request_id: Graph's ``request-id``: quote it to Microsoft support.
        client_request_id: The ``client-request-id`` that was sent.
        date: Graph's ``Date`` header.
        elapsed: Seconds the (last) transfer took; for a reconciled send, the seconds from the
            failed attempt's end to the proof that it was sent.
        message_id: The draft id it is for (None for sendMail), so a Receipt can be stored or
            logged alone.
        user: The mailbox as given (None for ``/me``).
        reconciled: True when no 202 was seen (the answer was lost) but the mailbox showed the
            message sent (``Retry(reconcile_ambiguous=True)``).
    """

    __slots__ = ()

    if TYPE_CHECKING:
        status: int
        request_id: str | None
        client_request_id: str
        date: str | None
        elapsed: float
        message_id: str | None
        user: str | None
        reconciled: bool
    else:
        status = property(itemgetter(0), doc="The HTTP status (202).")
        request_id = property(itemgetter(1), doc="Graph's request-id (quote it to support).")
        client_request_id = property(itemgetter(2), doc="the client-request-id that was sent")
        date = property(itemgetter(3), doc="Graph's Date header")
        elapsed = property(itemgetter(4), doc="seconds the (last) transfer took")
        message_id = property(itemgetter(5), doc="the draft sent (None for sendMail)")
        user = property(itemgetter(6), doc="the mailbox as given (None for /me)")
        reconciled = property(itemgetter(7), doc="True when proved sent by reading the mailbox")

    def __new__(
        cls,
        status: int,
        request_id: str | None,
        client_request_id: str,
        date: str | None,
        elapsed: float,
        message_id: str | None = None,
        user: str | None = None,
        reconciled: bool = False,
    ) -> Receipt:
        return tuple.__new__(
            cls,
            (status, request_id, client_request_id, date, elapsed, message_id, user, reconciled),
        )

    def for_item(self, message_id: str | None, user: str | None) -> Receipt:
        """This Receipt naming the item it is for (the bulk engine builds it without them).

        Args:
            message_id: The draft id it is for (None for sendMail).
            user: The mailbox as given (None for ``/me``).

        Returns:
            A new Receipt with every other field (``reconciled`` included) unchanged.
        """
        return tuple.__new__(Receipt, (*self[:5], message_id, user, self[7]))

    def __getnewargs__(self) -> tuple[Any, ...]:
        return tuple(self)

    def __repr__(self) -> str:
        return (
            f"Receipt(status={self.status}, request_id={self.request_id!r}, "
            f"client_request_id={self.client_request_id!r}, date={self.date!r}, "
            f"elapsed={self.elapsed:.6f}, message_id={self.message_id!r}, user={self.user!r}, "
            f"reconciled={self.reconciled})"
        )


# Handle.send_draft() builds Receipts itself on 202, without running Python code.
_native.set_receipt_type(Receipt)
