"""Graph operations as descriptions: what to send, what answer means success, what it yields.

An :class:`Operation` is data. A driver executes it: today the sync one (``_driver.run``, used by
:class:`graphsend.Client`); the bulk Scheduler and AsyncClient can execute the same objects, since
nothing here does I/O. Adding an operation is one function below, not a method per driver.

``sends_mail`` is the one fact the retry and error rules need: an operation that can deliver a
mail (sendMail, like a draft's send) is never repeated after it may have reached Graph, and its
errors say ``may_have_sent`` exactly; every other operation (a draft, an attachment, an upload
session) reports ``may_have_sent=False`` whatever happened, because none of them sends.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from graphsend import _native
from graphsend._operations.message import dumps
from graphsend._rules.receipt import Receipt

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, Generic, Literal, TypeAlias, TypeVar

    from graphsend._native import Result
    from graphsend._rules.errors import SendError

    T = TypeVar("T")
    Method: TypeAlias = Literal["GET", "POST", "PUT", "DELETE"]
else:
    from typing import Generic, TypeVar

    T = TypeVar("T")

JSON = "application/json"


@dataclass(frozen=True, slots=True)
class Operation(Generic[T]):
    """One Graph request: method, where, body, success statuses and how an answer becomes T."""

    name: str  # for logs and errors: Graph's name of the action
    method: Method
    suffix: str  # after the mailbox ("/sendMail") or after the message ("/createReply")
    parse: Callable[[Result, str], T]  # (result of a success, client-request-id) -> T
    message_id: str | None = None  # the message the operation acts on, if any
    body: bytes | None = None
    content_type: str | None = JSON
    success: frozenset[int] = frozenset({201})
    sends_mail: bool = False
    # graphsend's stamp on the message a sendMail sends, when its sent copy can be looked up in
    # Sent Items after an ambiguous failure (reconcile.py); None: nothing to look up.
    stamp: str | None = None

    def path(self, user: str | None) -> str:
        """The mailbox, then the message (if any), then the suffix."""
        if self.message_id is None:
            return mailbox(user) + self.suffix
        return message_path(user, self.message_id) + self.suffix


#: Asks Graph for ids that survive moves (a sent draft keeps its id in Sent Items).
PREFER_IMMUTABLE = 'Prefer: IdType="ImmutableId"'


def settle(err: SendError, op: Operation[Any], ambiguous: bool) -> SendError:
    """Only an operation that sends mail may have sent one."""
    err.may_have_sent = (err.may_have_sent or ambiguous) if op.sends_mail else False
    err.args = (f"{op.name}: {err.args[0]}",)
    return err


def mailbox(user: str | None) -> str:
    """ "/me" or "/users/{user}", the user one percent-encoded segment: the C encoder of the send
    path is the one implementation of those rules, so the prefix is cut from its answer."""
    return _native.send_path(user, "x")[: -len("/messages/x/send")]


def message_path(user: str | None, message_id: str) -> str:
    """mailbox(user) + "/messages/{message_id}", the id one encoded segment."""
    return _native.send_path(user, message_id)[: -len("/send")]


def read_json(body: bytes) -> object:
    """The JSON value of ``body``, or None when there is none to read. Never raises: a body is
    untrusted input (deep nesting raises RecursionError, huge numbers ValueError, ...)."""
    if not body:
        return None
    try:
        return json.loads(body)
    except Exception:  # ValueError, RecursionError, MemoryError: all "unreadable"
        return None


def json_body(result: Result) -> dict[str, Any]:
    """A success's JSON object; ValueError when it is none (the driver reports that)."""
    doc = read_json(result[2])
    if not isinstance(doc, dict):
        raise ValueError("the answer is not a JSON object")
    return doc


def _id(result: Result, crid: str) -> str:
    value = json_body(result).get("id")
    if not isinstance(value, str) or not value:
        raise ValueError("the answer carries no id")
    return value


def _receipt(result: Result, crid: str) -> Receipt:
    headers = result[1]
    return Receipt(result[0], headers.get("request-id"), crid, headers.get("date"), result[3])


def _doc(result: Result, crid: str) -> dict[str, Any]:
    return json_body(result)


# --- the declarations ---------------------------------------------------------------------


def create_draft(message: dict[str, Any]) -> Operation[str]:
    """POST /messages: a new draft in Drafts; yields its id."""
    return Operation("createDraft", "POST", "/messages", _id, body=dumps(message))


def create_reply(
    message_id: str, comment: str, reply_all: bool, stamp: list[dict[str, str]] | None = None
) -> Operation[str]:
    """``stamp``: singleValueExtendedProperties for the new draft (its ``message`` parameter;
    Graph refuses only a message body next to a comment)."""
    action = "/createReplyAll" if reply_all else "/createReply"
    doc: dict[str, Any] = {"comment": comment} if comment else {}
    if stamp is not None:
        doc["message"] = {"singleValueExtendedProperties": stamp}
    return Operation(action[1:], "POST", action, _id, message_id, dumps(doc) if doc else None)


def create_forward(
    message_id: str,
    to: list[dict[str, Any]],
    comment: str,
    stamp: list[dict[str, str]] | None = None,
) -> Operation[str]:
    doc: dict[str, Any] = {"toRecipients": to}
    if comment:
        doc["comment"] = comment
    if stamp is not None:
        doc["message"] = {"singleValueExtendedProperties": stamp}
    return Operation("createForward", "POST", "/createForward", _id, message_id, dumps(doc))


def add_attachment(message_id: str, attachment: dict[str, Any]) -> Operation[str]:
    """POST /messages/{id}/attachments with a fileAttachment (contentBytes): small files."""
    return Operation("addAttachment", "POST", "/attachments", _id, message_id, dumps(attachment))


def create_upload_session(message_id: str, item: dict[str, Any]) -> Operation[dict[str, Any]]:
    """POST .../attachments/createUploadSession: yields uploadUrl and nextExpectedRanges."""
    return Operation(
        "createUploadSession",
        "POST",
        "/attachments/createUploadSession",
        _doc,
        message_id,
        dumps({"AttachmentItem": item}),
    )


def send_mail(
    message: dict[str, Any], save_to_sent_items: bool, stamp: str | None = None
) -> Operation[Receipt]:
    """POST /sendMail with the message JSON: sends without a draft (Mail.Send only).
    ``stamp``: the one ``message`` carries (reconcile.stamped), kept when the copy is saved."""
    body = dumps({"message": message, "saveToSentItems": save_to_sent_items})
    return Operation(
        "sendMail",
        "POST",
        "/sendMail",
        _receipt,
        body=body,
        success=_ACCEPTED,
        sends_mail=True,
        stamp=stamp if save_to_sent_items else None,
    )


def send_mime(encoded: bytes) -> Operation[Receipt]:
    """POST /sendMail with base64 RFC 5322 bytes as text/plain."""
    return Operation(
        "sendMail",
        "POST",
        "/sendMail",
        _receipt,
        body=encoded,
        content_type="text/plain",
        success=_ACCEPTED,
        sends_mail=True,
    )


_ACCEPTED = frozenset({202})
