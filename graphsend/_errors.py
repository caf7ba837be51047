"""Exceptions, and the one place that maps outcomes to them.

Every failure of a send is a :class:`SendError`. Each carries ``may_have_sent``: sending is not
idempotent, so callers must know whether retrying could deliver the message twice.
"""

from __future__ import annotations

import builtins

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any


class SendError(Exception):
    """Base class of every graphsend failure."""

    may_have_sent: bool
    client_request_id: str | None
    attempts: int

    def __init__(
        self,
        message: str,
        *,
        may_have_sent: bool,
        client_request_id: str | None = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(message)
        self.may_have_sent = may_have_sent
        self.client_request_id = client_request_id
        self.attempts = attempts

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only constructors do not pickle by default; results cross process boundaries
        # (ProcessPoolExecutor), so rebuild from the instance dict.
        return (_rebuild, (type(self), self.args, self.__dict__))


def _rebuild(cls: type[SendError], args: tuple[Any, ...], state: dict[str, Any]) -> SendError:
    err = cls.__new__(cls)
    Exception.__init__(err, *args)
    err.__dict__.update(state)
    return err


class GraphError(SendError):
    """Graph answered with a status other than 202."""

    def __init__(
        self,
        status: int,
        *,
        code: str | None = None,
        message: str | None = None,
        inner_code: str | None = None,
        request_id: str | None = None,
        client_request_id: str | None = None,
        date: str | None = None,
        retry_after: float | None = None,
        headers: Mapping[str, str] | None = None,
        body: str = "",
        may_have_sent: bool | None = None,
        attempts: int = 1,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.inner_code = inner_code
        self.request_id = request_id
        self.date = date
        self.retry_after = retry_after
        self.headers = dict(headers or {})
        self.body = body
        if may_have_sent is None:
            may_have_sent = status_may_have_sent(status)
        super().__init__(
            self._describe(),
            may_have_sent=may_have_sent,
            client_request_id=client_request_id,
            attempts=attempts,
        )

    def _describe(self) -> str:
        text = f"{self.status} {self.code or 'no error code'}: {self.message or 'no message'}"
        return f"{text} (request-id: {self.request_id or 'none'})"


class BadRequestError(GraphError):
    """400: the request was malformed (bad id, bad recipients, message too large)."""


class AuthenticationError(GraphError):
    """401: the token is missing, expired or invalid (or a token provider reported an error)."""


class PermissionDeniedError(GraphError):
    """403: the app may not send from this mailbox, or sending is blocked."""


class NotFoundError(GraphError):
    """404: no such draft or mailbox (a draft that was already sent is gone too)."""


class ConflictError(GraphError):
    """409: the mailbox refused the operation in its current state."""


class ThrottledError(GraphError):
    """429: too many requests; ``retry_after`` says how long Graph asks to wait."""


class ServerError(GraphError):
    """5xx: Graph failed. 500, 502 and 504 may have sent the message."""


class ServiceUnavailableError(ServerError):
    """503: Graph did not take the request; safe to retry after ``retry_after``."""


class TransportError(SendError):
    """No HTTP response: DNS, connect, TLS, reset, ..."""

    def __init__(
        self,
        reason: str,
        *,
        curl_code: int,
        may_have_sent: bool,
        client_request_id: str | None = None,
        attempts: int = 1,
    ) -> None:
        self.curl_code = curl_code
        self.reason = reason
        super().__init__(
            f"{reason} (curl error {curl_code}); "
            + ("the request may have been sent" if may_have_sent else "nothing was sent"),
            may_have_sent=may_have_sent,
            client_request_id=client_request_id,
            attempts=attempts,
        )


class TimeoutError(TransportError, builtins.TimeoutError):
    """The transfer took longer than the connect or total timeout (shadows the builtin on
    purpose: ``except TimeoutError`` catches it either way)."""


_STATUS_CLASSES: dict[int, type[GraphError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    429: ThrottledError,
    503: ServiceUnavailableError,
}


def status_may_have_sent(status: int) -> bool:
    """False only where the status proves Graph did not send: any 4xx, and 503."""
    return not (400 <= status < 500 or status == 503)


def error_class(status: int) -> type[GraphError]:
    cls = _STATUS_CLASSES.get(status)
    if cls is not None:
        return cls
    return ServerError if 500 <= status < 600 else GraphError


CURLE_OPERATION_TIMEDOUT = 28
_REASONS = {
    5: "could not resolve proxy",
    6: "could not resolve host",
    7: "could not connect",
    28: "timed out",
    35: "TLS handshake failed",
    42: "transfer cancelled",
    52: "server closed the connection without answering",
    55: "failed sending the request",
    56: "connection reset while receiving",
    60: "TLS certificate verification failed",
    77: "could not read the CA bundle",
}


def transport_error(
    curl_code: int, detail: str, request_sent: bool, client_request_id: str | None
) -> TransportError:
    """Map a libcurl failure to an exception.

    ``request_sent`` is the native layer's measurement (request bytes written), so it alone
    decides ``may_have_sent``: a failure before the write (DNS, connect, TLS) proves nothing went.
    """
    reason = _REASONS.get(curl_code, "transport failure")
    if detail:
        reason = f"{reason}: {detail}"
    cls = TimeoutError if curl_code == CURLE_OPERATION_TIMEDOUT else TransportError
    return cls(
        reason,
        curl_code=curl_code,
        may_have_sent=request_sent,
        client_request_id=client_request_id,
    )


def graph_error(
    status: int, headers: Mapping[str, str], body: bytes, client_request_id: str | None
) -> GraphError:
    """Build the exception for a non-202 answer, tolerant of any body Graph or a gateway sends."""
    from ._retry import parse_retry_after

    text = body.decode("utf-8", "replace")  # the native layer caps it at 64 KiB
    code, message, inner_code, body_request_id, body_date = _parse_error_body(text)
    retry_after_header = headers.get("retry-after")
    return error_class(status)(
        status,
        code=code,
        message=message,
        inner_code=inner_code,
        request_id=headers.get("request-id") or body_request_id,
        client_request_id=headers.get("client-request-id") or client_request_id,
        date=headers.get("date") or body_date,
        retry_after=parse_retry_after(retry_after_header) if retry_after_header else None,
        headers=headers,
        body=text,
    )


def _parse_error_body(
    text: str,
) -> tuple[str | None, str | None, str | None, str | None, str | None]:
    """(code, message, innermost inner code, request-id, date) from a Graph error body, if any."""
    if not text.lstrip().startswith("{"):
        return None, None, None, None, None
    import json

    try:
        doc = json.loads(text)
    except ValueError:
        return None, None, None, None, None
    error = _get(doc, "error")
    if not isinstance(error, dict):
        return None, None, None, None, None
    code, message = _str(_get(error, "code")), _str(_get(error, "message"))
    inner_code = request_id = date = None
    inner = _get(error, "innererror")
    while isinstance(inner, dict):
        inner_code = _str(_get(inner, "code")) or inner_code
        request_id = request_id or _str(_get(inner, "request-id"))
        date = date or _str(_get(inner, "date"))
        inner = _get(inner, "innererror")
    return code, message, inner_code, request_id, date


def _get(obj: object, key: str) -> object:
    """Case-insensitive key lookup: Graph's casing of innerError and friends varies."""
    if not isinstance(obj, dict):
        return None
    if key in obj:
        return obj[key]
    for name, value in obj.items():
        if isinstance(name, str) and name.lower() == key:
            return value
    return None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
