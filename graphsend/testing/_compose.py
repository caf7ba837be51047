"""Compose rules: a Graph message JSON → the fields FakeGraph stores, checked as Graph checks
them, and the drafts that createReply, createReplyAll and createForward make."""

from __future__ import annotations

import base64
import binascii
import html
import json
from collections.abc import Mapping
from typing import Any, Final

from ._ids import attachment_id
from ._records import Attachment, Message, Recipient
from ._replies import Refusal

#: Graph refuses request bodies over 4 MB, and inline (JSON) file attachments over 3 MB.
MAX_REQUEST: Final = 4 * 1024 * 1024
MAX_INLINE_ATTACHMENT: Final = 3 * 1024 * 1024
MAX_RECIPIENTS: Final = 500

FILE_ATTACHMENT: Final = "#microsoft.graph.fileAttachment"
_RECIPIENT_FIELDS: Final = {
    "toRecipients": "to",
    "ccRecipients": "cc",
    "bccRecipients": "bcc",
    "replyTo": "reply_to",
}
# Properties of microsoft.graph.message that FakeGraph accepts without storing them; any other
# name is refused as Graph refuses it (400 RequestBodyRead), so a client's dialect shows.
_IGNORED: Final = frozenset(
    {
        "bodyPreview", "categories", "changeKey", "conversationId", "conversationIndex",
        "createdDateTime", "flag", "hasAttachments", "id", "inferenceClassification",
        "internetMessageId", "isDeliveryReceiptRequested", "isDraft", "isRead",
        "isReadReceiptRequested", "lastModifiedDateTime", "parentFolderId", "receivedDateTime",
        "sender", "sentDateTime", "uniqueBody", "webLink", "extensions",
        "multiValueExtendedProperties", "mentions",
    }
)  # fmt: skip


def bad_request(message: str, code: str = "RequestBodyRead") -> Refusal:
    return Refusal(400, code, message)


def parse_message(data: object) -> dict[str, Any]:
    """The Message fields a message JSON sets (only those present), or Refusal."""
    if not isinstance(data, dict):
        raise bad_request("The message must be a JSON object.")
    fields: dict[str, Any] = {}
    for key, value in data.items():
        if key.startswith("@odata."):
            continue
        if key == "subject":
            fields["subject"] = _string(value, key)
        elif key == "body":
            fields["body_type"], fields["body"] = _body(value)
        elif key in _RECIPIENT_FIELDS:
            fields[_RECIPIENT_FIELDS[key]] = recipients(value, key)
        elif key == "from":
            fields["sender"] = _recipient(value, key)
        elif key == "importance":
            fields["importance"] = _choice(value, key, ("low", "normal", "high"))
        elif key == "internetMessageHeaders":
            fields["headers"] = _headers(value)
        elif key == "singleValueExtendedProperties":
            fields["extended_properties"] = _extended_properties(value)
        elif key == "attachments":
            if not isinstance(value, list):
                raise bad_request("attachments must be an array.")
            fields["attachments"] = tuple(file_attachment(a) for a in value)
        elif key not in _IGNORED:
            raise bad_request(
                f"The property '{key}' does not exist on type 'microsoft.graph.message'. "
                "Make sure to only use property names that are defined by the type."
            )
    return fields


def recipients(value: object, key: str) -> tuple[Recipient, ...]:
    if not isinstance(value, list):
        raise bad_request(f"{key} must be an array of recipients.")
    return tuple(_recipient(item, key) for item in value)


def _recipient(value: object, key: str) -> Recipient:
    address = value.get("emailAddress") if isinstance(value, dict) else None
    if not isinstance(address, dict) or not isinstance(address.get("address", ""), str):
        raise bad_request(f"Each of {key} must be {{'emailAddress': {{'address': ...}}}}.")
    unknown = set(address) - {"address", "name", "@odata.type"}
    if unknown:
        raise bad_request(f"The property '{sorted(unknown)[0]}' does not exist on emailAddress.")
    return Recipient(address.get("address", ""), _string(address.get("name", ""), "name"))


def _body(value: object) -> tuple[str, str]:
    if not isinstance(value, dict):
        raise bad_request("body must be {'contentType': ..., 'content': ...}.")
    kind = _choice(value.get("contentType", "text"), "contentType", ("text", "html"))
    return kind, _string(value.get("content", ""), "content")


def _headers(value: object) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, list):
        raise bad_request("internetMessageHeaders must be an array.")
    pairs = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise bad_request("Each internet message header needs a name and a value.")
        name, header_value = item["name"], _string(item.get("value", ""), "value")
        if not name.lower().startswith("x-"):
            raise Refusal(
                400,
                "InvalidInternetMessageHeader",
                f"The internet message header name '{name}' should start with 'x-' or 'X-'.",
            )
        pairs.append((name, header_value))
    return tuple(pairs)


def _extended_properties(value: object) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, list):
        raise bad_request("singleValueExtendedProperties must be an array.")
    pairs = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            raise bad_request("Each singleValueExtendedProperty needs an id and a value.")
        pairs.append((item["id"], _string(item.get("value", ""), "value")))
    return tuple(pairs)


def file_attachment(data: object) -> Attachment:
    """A ``#microsoft.graph.fileAttachment`` JSON → Attachment, with Graph's 3 MB inline cap."""
    if not isinstance(data, dict):
        raise bad_request("An attachment must be a JSON object.")
    kind = data.get("@odata.type")
    if kind != FILE_ATTACHMENT:
        raise bad_request(
            f"FakeGraph stores only '{FILE_ATTACHMENT}' attachments, not {kind!r}.",
            "ErrorInvalidAttachmentType" if kind else "RequestBodyRead",
        )
    content = data.get("contentBytes")
    if not isinstance(content, str):
        raise bad_request("A fileAttachment needs contentBytes (base64).")
    try:
        raw = base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise bad_request("contentBytes is not valid base64.") from exc
    if len(raw) > MAX_INLINE_ATTACHMENT:
        raise Refusal(
            413,
            "RequestEntityTooLarge",
            f"The attachment is {len(raw)} bytes: a fileAttachment in a request is limited to "
            f"{MAX_INLINE_ATTACHMENT} bytes (3 MB); use an upload session.",
        )
    content_id = data.get("contentId")
    return Attachment(
        id=attachment_id(),
        name=_string(data.get("name", ""), "name"),
        content_type=_string(data.get("contentType") or "application/octet-stream", "type"),
        content_bytes=raw,
        inline=bool(data.get("isInline", False)),
        content_id=content_id if isinstance(content_id, str) else None,
    )


def check_sendable(message: Message) -> None:
    """What Graph checks when a message is sent (send or sendMail)."""
    everyone = message.recipients
    if len(everyone) > MAX_RECIPIENTS:
        raise Refusal(
            400,
            "ErrorTooManyRecipients",
            f"The message has {len(everyone)} recipients; the limit is {MAX_RECIPIENTS}.",
        )
    for recipient in everyone + message.reply_to:
        if "@" not in recipient.address:
            raise Refusal(400, "ErrorInvalidRecipients", "At least one recipient isn't valid.")


def reply_fields(original: Message, kind: str, comment: str, mailbox: str) -> dict[str, Any]:
    """The fields of the draft Graph makes for a reply, a reply-all or a forward of
    ``original`` from ``mailbox``: prefixed subject, recipients derived from the original (none
    for a forward), an HTML body with the comment above the quoted original, and for a forward
    the original's attachments."""
    prefix = "FW: " if kind == "forward" else "RE: "
    subject = original.subject
    if not subject.upper().startswith(prefix.strip().upper()):
        subject = prefix + subject
    author = original.sender or Recipient(original.user)
    to: tuple[Recipient, ...] = ()
    cc: tuple[Recipient, ...] = ()
    if kind != "forward":
        to = original.reply_to or (author,)
    if kind == "replyAll":
        mine = mailbox.casefold()
        seen = {r.address.casefold() for r in to}
        to += tuple(r for r in original.to if r.address.casefold() not in seen | {mine})
        cc = tuple(r for r in original.cc if r.address.casefold() != mine)
    return {
        "subject": subject,
        "to": to,
        "cc": cc,
        "body_type": "html",
        "body": quoted_body(original, comment),
        "comment": comment,
        "original_id": original.sent_id or original.id,
        "conversation_id": original.conversation_id,
        "attachments": original.attachments if kind == "forward" else (),
    }


def quoted_body(original: Message, comment: str) -> str:
    text = original.body if original.body_type == "html" else html.escape(original.body)
    author = original.sender or Recipient(original.user)
    return (
        f"<html><body><div>{html.escape(comment)}</div><hr>"
        f"<div><b>From:</b> {html.escape(str(author))}<br>"
        f"<b>Subject:</b> {html.escape(original.subject)}</div>"
        f"<div>{text}</div></body></html>"
    )


def json_object(body: bytes) -> dict[str, Any]:
    """A request body that must be a JSON object (an empty body is ``{}``)."""
    if not body.strip():
        return {}
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise bad_request("Invalid JSON body.") from exc
    if not isinstance(data, dict):
        raise bad_request("The request body must be a JSON object.")
    return data


def action_parameters(
    data: Mapping[str, object], allowed: tuple[str, ...], action: str
) -> dict[str, object]:
    """An OData action's parameters by their documented names. Graph matches parameter names
    without regard to case: its metadata spells them "Comment", "SaveToSentItems",
    "AttachmentItem" (as msgraph-sdk sends them), its docs "comment", "saveToSentItems"."""
    names = {name.lower(): name for name in allowed}
    found: dict[str, object] = {}
    for key, value in data.items():
        name = names.get(key.lower())
        if name is None or name in found:
            raise bad_request(f"The parameter '{key}' is not valid for {action}.")
        found[name] = value
    return found


def _string(value: object, key: str) -> str:
    if not isinstance(value, str):
        raise bad_request(f"{key} must be a string.")
    return value


def _choice(value: object, key: str, choices: tuple[str, ...]) -> Any:
    if not isinstance(value, str) or value.lower() not in choices:
        raise bad_request(f"{key} must be one of {', '.join(choices)}, not {value!r}.")
    return value.lower()
