"""Turn the native layer's result tuple into a Receipt or an exception (not raised)."""

from __future__ import annotations

from graphsend._rules.errors import SendError, graph_error, transport_error, unreadable_response
from graphsend._rules.receipt import Receipt

TYPE_CHECKING = False
if TYPE_CHECKING:
    from graphsend._native import Result

Outcome = Receipt | SendError


def outcome(
    result: Result,
    client_request_id: str,
    message_id: str | None = None,
    user: str | None = None,
) -> Outcome:
    """Never raises: a response nothing can be read from still becomes a SendError whose
    ``may_have_sent`` follows from its status (callers rely on this to settle every send).
    ``message_id`` and ``user``: the item, carried by a Receipt."""
    if result[0] == 202:
        headers = result[1]
        date, elapsed = headers.get("date"), result[3]
        request_id = headers.get("request-id")
        return Receipt(202, request_id, client_request_id, date, elapsed, message_id, user)
    return failure(result, client_request_id)


def failure(result: Result, client_request_id: str) -> SendError:
    """The error for an answer that is not an operation's success; never raises, as
    :func:`outcome` (a 202 here is an error too: the operation wanted another status)."""
    status, headers, body, _elapsed, curl_code, error, request_sent = result
    try:
        if status == 0:
            return transport_error(curl_code, error, request_sent, client_request_id)
        return graph_error(status, headers, body, client_request_id)
    except Exception as exc:
        if status == 0:
            return transport_error(curl_code, "", request_sent, client_request_id)
        err = unreadable_response(status, client_request_id)
        err.args = (f"{err.args[0]}; the response could not be read: {type(exc).__name__}",)
        return err
