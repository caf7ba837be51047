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


if TYPE_CHECKING:
    _Rebuildable = type
else:

    class _Rebuildable(type):
        """Lets ``cls(*err.args)`` rebuild an error with every field: what Celery's JSON result
        backend (and any other serializer that stores an exception as class + args) does."""

        def __call__(cls, *args: Any, **kwargs: Any) -> Any:
            if len(args) == 2 and not kwargs and type(args[1]) is dict and _MARK in args[1]:
                return _from_fields(cls, args[0], args[1])
            return super().__call__(*args, **kwargs)


#: the key that tells a fields dict in ``args`` from a user's dict
_MARK = "graphsend_error"


class SendError(Exception, metaclass=_Rebuildable):
    """Base class of every graphsend failure.

    Sending is not idempotent: a retry after a send that did go through delivers the message
    twice. ``may_have_sent`` says whether that can happen. Exceptions pickle (they come back
    from worker processes intact) and never hold the token.

    ``args`` is ``(text, fields)``: the message and a JSON-safe dict of every field, so
    ``type(err)(*err.args)`` (how Celery's JSON backend rebuilds an exception) gives back the
    same error; ``str(err)`` is the text alone. No field ever holds a token.

    Attributes:
        may_have_sent: True when the request may have reached Graph and the mail may be out;
            False when it is certain nothing was sent (safe to send again).
        client_request_id: The ``client-request-id`` the request carried (quote it with
            ``request_id`` to Microsoft support).
        attempts: How many requests were made, retries included.
    """

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
        """Make the exception (graphsend raises these; you rarely make one yourself).

        Args:
            message: What happened, for a person.
            may_have_sent: Whether the mail may have been sent.
            client_request_id: The request's ``client-request-id``.
            attempts: Requests made, retries included.
        """
        super().__init__(message)
        self.may_have_sent = may_have_sent
        self.client_request_id = client_request_id
        self.attempts = attempts

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only constructors do not pickle by default; results cross process boundaries
        # (ProcessPoolExecutor), so rebuild from the instance dict.
        return (_rebuild, (type(self), _TEXT_ARGS.__get__(self), self.__dict__))

    if not TYPE_CHECKING:

        @property
        def args(self) -> tuple[Any, ...]:
            """``(text, fields)``: the message, and a JSON-safe dict of every field, so that
            ``type(err)(*err.args)`` rebuilds the same error. Setting ``(text,)`` rewords the
            message and keeps the fields."""
            text = _TEXT_ARGS.__get__(self)
            fields = {k: v for k, v in self.__dict__.items() if _plain(v, 3)}
            fields[_MARK] = 1
            return (text[0] if text else "", fields)

        @args.setter
        def args(self, value: tuple[Any, ...]) -> None:
            # err.args = (new text,) rewords the message; the fields stay.
            value = tuple(value)
            if len(value) == 2 and type(value[1]) is dict and _MARK in value[1]:
                self.__dict__.update({k: v for k, v in value[1].items() if k != _MARK})
                value = value[:1]
            _TEXT_ARGS.__set__(self, value)


_TEXT_ARGS: Any = BaseException.__dict__["args"]  # the C-level args: what str() shows


def _plain(value: object, depth: int) -> bool:
    """JSON-safe (what a fields dict may carry through any serializer)."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return True
    if depth and isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v, depth - 1) for k, v in value.items())
    if depth and isinstance(value, (list, tuple)):
        return all(_plain(v, depth - 1) for v in value)
    return False


def _from_fields(cls: type[SendError], text: object, fields: dict[str, Any]) -> SendError:
    err = cls.__new__(cls)
    Exception.__init__(err, text)
    err.__dict__.update({k: v for k, v in fields.items() if k != _MARK})
    return err


def _rebuild(cls: type[SendError], args: tuple[Any, ...], state: dict[str, Any]) -> SendError:
    err = cls.__new__(cls)
    Exception.__init__(err, *args)
    err.__dict__.update(state)
    return err


class GraphError(SendError):
    """Graph answered with a status other than 202 (the base of the status classes below).

    Its ``str()`` shows the status, code, message and request-id: what Microsoft support
    asks for. An answer whose body cannot be read still becomes the GraphError of its status,
    with the problem named in its message. ``may_have_sent`` is False for a 4xx and a 503,
    True otherwise (a 2xx other than 202, a 3xx, 500, 502, 504).

    Attributes:
        status: The HTTP status.
        code: Graph's error code (``"ErrorItemNotFound"``), or None.
        message: Graph's error message, or None.
        inner_code: The code of ``innerError``, when it has one.
        request_id: Graph's ``request-id``.
        date: Graph's ``Date`` header.
        retry_after: Seconds from ``Retry-After``, or None.
        headers: The response headers graphsend keeps (lower-case names).
        body: The response body, capped at 64 KiB.
    """

    status: int
    code: str | None
    message: str | None
    inner_code: str | None
    request_id: str | None
    date: str | None
    retry_after: float | None
    headers: dict[str, str]
    body: str

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
        """Make the exception from an answer's parts (see the attributes).

        Args:
            status: The HTTP status.
            code: Graph's error code.
            message: Graph's error message.
            inner_code: The code of ``innerError``.
            request_id: Graph's ``request-id``.
            client_request_id: The request's ``client-request-id``.
            date: Graph's ``Date`` header.
            retry_after: Seconds from ``Retry-After``.
            headers: Response headers (lower-case names).
            body: The response body.
            may_have_sent: None derives it from the status.
            attempts: Requests made, retries included.
        """
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
    """No HTTP response: DNS, connect, TLS, reset, a proxy that refused.

    ``may_have_sent`` is False when the failure came before the request was written, True
    after. Certificate, CA-bundle and URL problems say what to fix; a proxy password never
    appears in the message.

    Attributes:
        curl_code: libcurl's CURLcode (6 DNS, 7 connect, 28 timeout, 35 TLS, 60 certificate,
            ...).
        reason: What happened, in words.
    """

    curl_code: int
    reason: str

    def __init__(
        self,
        reason: str,
        *,
        curl_code: int,
        may_have_sent: bool,
        client_request_id: str | None = None,
        attempts: int = 1,
    ) -> None:
        """Make the exception.

        Args:
            reason: What happened.
            curl_code: libcurl's CURLcode.
            may_have_sent: Whether the request had been written.
            client_request_id: The request's ``client-request-id``.
            attempts: Requests made, retries included.
        """
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
    """The transfer took longer than the connect or total timeout (CURLcode 28).

    A subclass of the builtin ``TimeoutError`` too, so ``except TimeoutError`` catches it
    either way. It is left out of ``graphsend.__all__`` so that ``from graphsend import *``
    keeps the builtin name. ``may_have_sent`` as for :class:`TransportError`.
    """


class LimiterError(SendError):
    """Nothing was sent: the mailbox limiter could not grant a slot (its store, e.g. Redis, is
    unreachable, or the mailbox's limits stayed in use for the whole wait)."""

    def __init__(
        self,
        message: str,
        *,
        may_have_sent: bool = False,
        client_request_id: str | None = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(
            message,
            may_have_sent=may_have_sent,
            client_request_id=client_request_id,
            attempts=attempts,
        )


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
CURLE_COULDNT_RESOLVE_PROXY = 5
CURLE_COULDNT_RESOLVE_HOST = 6
_REASONS = {
    1: "unsupported protocol (a proxy scheme this libcurl lacks?): check the proxy URL",
    3: "malformed URL: check base_url and the proxy URL",
    4: "this libcurl lacks a feature the request needs: check proxy and TLS settings",
    5: "could not resolve proxy",
    6: "could not resolve host",
    7: "could not connect",
    27: "out of memory: a part of the request (user, message id, token) is far too large",
    28: "timed out",
    35: "TLS handshake failed",
    42: "transfer cancelled",
    52: "server closed the connection without answering",
    55: "failed sending the request",
    56: "connection reset while receiving",
    58: "the client certificate could not be used",
    59: "the TLS cipher list could not be used",
    60: (
        "the server's certificate is not trusted: pass ca_bundle= a PEM file of the CAs to "
        "trust, or fix the system CA store"
    ),
    77: "the CA bundle could not be read: pass ca_bundle= a readable PEM file of CAs",
    83: "the server's certificate issuer check failed: check ca_bundle",
    90: "the server's public key does not match the pinned one",
    91: "the server's certificate status is invalid",
}

#: What the native layer puts before libcurl's text when the certificate it did not trust was
#: an https:// proxy's (csrc/transfer.h, GS_PROXY_TLS_PREFIX): the fix is not the server's CAs.
_PROXY_TLS_PREFIX = "HTTPS proxy: "
_PROXY_UNTRUSTED = (
    "the proxy's certificate is not trusted: if it was not issued for the proxy URL's host, "
    "use the name it was issued for; else pass proxy_ca_bundle= a PEM file of the proxy's "
    "CAs (without it the proxy is verified like the server: ca_bundle=, SSL_CERT_FILE, the "
    "system's CAs)"
)

#: CURLcodes that no retry can cure: the same request fails the same way until the caller
#: changes something (CA bundle, URL, proxy, libcurl build, request size).
PERMANENT_CURL_CODES = frozenset({1, 2, 3, 4, 27, 43, 48, 53, 58, 59, 60, 66, 77, 83, 90, 91})


def transport_error(
    curl_code: int, detail: str, request_sent: bool, client_request_id: str | None
) -> TransportError:
    """Map a libcurl failure to an exception.

    ``request_sent`` is the native layer's measurement (request bytes written), so it alone
    decides ``may_have_sent``: a failure before the write (DNS, connect, TLS) proves nothing went.
    """
    # "what happened: what to fix"; libcurl's text goes after what happened.
    reason, _, advice = _REASONS.get(curl_code, "transport failure").partition(": ")
    if curl_code == 60 and detail.startswith(_PROXY_TLS_PREFIX):
        detail = detail[len(_PROXY_TLS_PREFIX) :]
        reason, _, advice = _PROXY_UNTRUSTED.partition(": ")
    if detail:
        if detail[: len(reason)].lower() == reason.lower():
            # libcurl often says the same ("Could not resolve host: h"): say it once.
            reason += detail[len(reason) :]
        else:
            reason = f"{reason}: {detail}"
    if advice:
        reason = f"{reason}; {advice}"
    cls = TimeoutError if curl_code == CURLE_OPERATION_TIMEDOUT else TransportError
    return cls(
        reason,
        curl_code=curl_code,
        may_have_sent=bool(request_sent),
        client_request_id=client_request_id,
    )


def graph_error(
    status: int, headers: Mapping[str, str], body: bytes, client_request_id: str | None
) -> GraphError:
    """Build the exception for a non-202 answer, tolerant of any body Graph or a gateway sends.

    Never raises: whatever the body or headers hold, the result is a GraphError whose
    ``may_have_sent`` follows from the status alone; a part that could not be read is named in
    its message.
    """
    from graphsend._rules.retry_after import parse_retry_after

    problems: list[str] = []
    text = ""
    code = message = inner_code = body_request_id = body_date = None
    try:
        text = body.decode("utf-8", "replace")  # the native layer caps it at 64 KiB
        code, message, inner_code, body_request_id, body_date = _parse_error_body(text)
    except Exception as exc:  # RecursionError (deep nesting), MemoryError, ...
        problems.append(f"the error body could not be read: {type(exc).__name__}")
    retry_after = None
    try:
        header = headers.get("retry-after")
        if header:
            retry_after = parse_retry_after(header)
            if retry_after is None:
                problems.append(f"the Retry-After header could not be read: {header[:64]!r}")
        err = error_class(status)(
            status,
            code=code,
            message=message,
            inner_code=inner_code,
            request_id=headers.get("request-id") or body_request_id,
            client_request_id=headers.get("client-request-id") or client_request_id,
            date=headers.get("date") or body_date,
            retry_after=retry_after,
            headers=headers,
            body=text,
        )
    except Exception as exc:
        problems.append(f"the response could not be read: {type(exc).__name__}")
        err = unreadable_response(status, client_request_id)
    if problems:
        err.args = (f"{err.args[0]}; {'; '.join(problems)}",)
    return err


def unreadable_response(status: int, client_request_id: str | None) -> GraphError:
    """The last resort for an answer nothing could be read from: its status alone decides."""
    try:
        cls = error_class(status)
    except Exception:
        cls = GraphError
    return cls(
        status,
        client_request_id=client_request_id,
        may_have_sent=status_may_have_sent(status),
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
