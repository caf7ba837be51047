"""Receipt: what a successful send returns."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn


class Receipt:
    """Graph accepted the draft for sending (202). Immutable.

    202 means "saved for sending": a later delivery failure comes back to the mailbox as a
    non-delivery report, not as an error here.
    """

    __slots__ = ("client_request_id", "date", "elapsed", "request_id", "status")

    status: int
    request_id: str | None
    client_request_id: str
    date: str | None
    elapsed: float

    def __init__(
        self,
        status: int,
        request_id: str | None,
        client_request_id: str,
        date: str | None,
        elapsed: float,
    ) -> None:
        init = object.__setattr__
        init(self, "status", status)
        init(self, "request_id", request_id)
        init(self, "client_request_id", client_request_id)
        init(self, "date", date)
        init(self, "elapsed", elapsed)

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError("Receipt is immutable")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError("Receipt is immutable")

    def _fields(self) -> tuple[Any, ...]:
        return (self.status, self.request_id, self.client_request_id, self.date, self.elapsed)

    def __eq__(self, other: object) -> bool:
        return type(other) is Receipt and self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __reduce__(self) -> tuple[Any, ...]:
        return (Receipt, self._fields())

    def __repr__(self) -> str:
        return (
            f"Receipt(status={self.status}, request_id={self.request_id!r}, "
            f"client_request_id={self.client_request_id!r}, date={self.date!r}, "
            f"elapsed={self.elapsed:.6f})"
        )
