"""Answers in Graph's shape: its headers, its error JSON, its messages as JSON."""

from __future__ import annotations

import email.utils
import json
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Final

from ._http import Reply

_DIAGNOSTIC: Final = json.dumps(
    {
        "ServerInfo": {
            "DataCenter": "Loopback",
            "Slice": "E",
            "Ring": "5",
            "ScaleUnit": "000",
            "RoleInstance": "FAKEGRAPH01",
        }
    },
    separators=(",", ":"),
)
# Graph's code and message for a status, used when no other is given (fail_next(status) too).
_DEFAULT_ERRORS: Final[dict[int, tuple[str, str]]] = {
    400: ("BadRequest", "The request is invalid."),
    401: ("InvalidAuthenticationToken", "Access token validation failure."),
    403: ("ErrorAccessDenied", "Access is denied. Check credentials and try again."),
    404: ("ErrorItemNotFound", "The specified object was not found in the store."),
    409: ("ErrorIrresolvableConflict", "The send or update operation could not be performed."),
    411: ("LengthRequired", "The request must be chunked or have a content length."),
    413: ("ErrorQuotaExceeded", "The mailbox quota has been exceeded."),
    429: ("ApplicationThrottled", "Application is over its MailboxConcurrency limit."),
    500: ("InternalServerError", "An internal server error occurred."),
    502: ("BadGateway", "The gateway received an invalid response."),
    503: ("ServiceUnavailable", "The service is temporarily unavailable."),
    504: ("GatewayTimeout", "The gateway timed out waiting for the backend."),
}
_UNKNOWN_ERROR: Final = ("UnknownError", "An error occurred.")
_BEARER_CHALLENGE: Final = (
    'Bearer realm="", authorization_uri="https://login.microsoftonline.com/'
    'common/oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000"'
)


class Refusal(Exception):
    """A request Graph refuses: raised by the compose rules, answered with Graph's error body."""

    def __init__(
        self, status: int, code: str, message: str, extra: Mapping[str, object] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.extra = dict(extra or {})


class Replies:
    """Makes the answers to one request; each carries that request's ids, like Graph's."""

    def __init__(self, *, https: bool, request_headers: Mapping[str, str]) -> None:
        self._https = https
        self._request_id = str(uuid.uuid4())
        # Graph echoes the client's id, or repeats its own when the client sent none.
        self._client_request_id = request_headers.get("client-request-id") or self._request_id

    def accepted(self) -> Reply:
        """``202 Accepted`` with an empty body: a send that went through."""
        return Reply(202, self._headers())

    def empty(self, status: int) -> Reply:
        """An answer with no body (204 No Content, an upload's last 201)."""
        return Reply(status, self._headers())

    def json(self, status: int, payload: object) -> Reply:
        headers = self._headers()
        headers.append(("Content-Type", "application/json; odata.metadata=minimal"))
        return Reply(status, headers, json.dumps(payload).encode("utf-8"))

    def error(
        self,
        status: int,
        code: str | None = None,
        message: str | None = None,
        extra: Mapping[str, object] | None = None,
    ) -> Reply:
        """Graph's error JSON; a missing code or message is the status's usual one. ``extra``
        adds members to the ``error`` object (an upload's ``nextExpectedRanges``)."""
        default_code, default_message = _DEFAULT_ERRORS.get(status, _UNKNOWN_ERROR)
        inner = {
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
            "request-id": self._request_id,
            "client-request-id": self._client_request_id,
        }
        body = {
            "error": {
                "code": code or default_code,
                "message": message or default_message,
                **(extra or {}),
                "innerError": inner,
            }
        }
        headers = self._headers()
        headers.append(("Content-Type", "application/json"))
        return Reply(status, headers, json.dumps(body).encode("utf-8"))

    def refusal(self, refusal: Refusal) -> Reply:
        return self.error(refusal.status, refusal.code, refusal.message, refusal.extra)

    def invalid_user(self, user: str) -> Reply:
        return self.error(404, "ErrorInvalidUser", f"The requested user '{user}' is invalid.")

    def method_not_allowed(self, method: str, allow: str) -> Reply:
        message = f"The HTTP method '{method}' is not allowed for this resource."
        reply = self.error(405, "MethodNotAllowed", message)
        reply.headers.append(("Allow", allow))
        return reply

    def unauthorized(self, message: str) -> Reply:
        reply = self.error(401, "InvalidAuthenticationToken", message)
        reply.headers.append(("WWW-Authenticate", _BEARER_CHALLENGE))
        return reply

    def _headers(self) -> list[tuple[str, str]]:
        headers = [
            ("request-id", self._request_id),
            ("client-request-id", self._client_request_id),
            ("Date", email.utils.formatdate(usegmt=True)),
            ("x-ms-ags-diagnostic", _DIAGNOSTIC),
            ("Cache-Control", "no-cache"),
        ]
        if self._https:
            headers.append(("Strict-Transport-Security", "max-age=31536000"))
        return headers


def retry_after_text(value: float | str | None) -> str | None:
    """A Retry-After header value: whole seconds without a fraction, strings as they are."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        raise TypeError("retry_after must be a number of seconds or a string")
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return repr(float(value))
