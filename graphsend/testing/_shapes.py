"""Messages and attachments as Graph writes them in JSON, with $select and $expand."""

from __future__ import annotations

import base64
from typing import Final
from urllib.parse import parse_qs, urlsplit

from ._records import Attachment, Message, Recipient

#: parentFolderId of each well-known folder (opaque, like Graph's; one set for every mailbox).
FOLDER_IDS: Final = {
    "inbox": "AAMkADAwATM0MDAAMS1iNTcwLWI2NTEtMDACLTAwCgAuAAADSW5ib3gAAAA=",
    "drafts": "AAMkADAwATM0MDAAMS1iNTcwLWI2NTEtMDACLTAwCgAuAAADRHJhZnRzAAA=",
    "sentitems": "AAMkADAwATM0MDAAMS1iNTcwLWI2NTEtMDACLTAwCgAuAAADU2VudEl0ZW1zAAA=",
}


def query_options(target: str) -> tuple[set[str] | None, set[str]]:
    """$select (None: everything) and $expand of a request target, lower-cased."""
    query = parse_qs(urlsplit(target).query)

    def names(option: str) -> set[str]:
        values = query.get(option, []) + query.get(option.lstrip("$"), [])
        # $expand=singleValueExtendedProperties($filter=...) names the property before "(".
        return {v.split("(", 1)[0].strip().lower() for s in values for v in s.split(",") if v}

    select = names("$select")
    return (select or None), names("$expand")


def message_json(
    message: Message,
    folder: str = "",
    select: set[str] | None = None,
    expand: frozenset[str] | set[str] = frozenset(),
) -> dict[str, object]:
    """A message as Graph returns it; ``folder`` defaults to where its state puts it."""
    folder = folder or ("sentitems" if message.sent_at and message.sent_id else "drafts")
    sent = message.sent_at is not None
    payload: dict[str, object] = {
        "id": message.sent_id if folder == "sentitems" and message.sent_id else message.id,
        "subject": message.subject,
        "isDraft": not sent,
        "sentDateTime": _time(message) if sent else None,
        "parentFolderId": FOLDER_IDS.get(folder, ""),
        "conversationId": message.conversation_id,
        "importance": message.importance,
        "hasAttachments": bool(message.attachments),
        "body": {"contentType": message.body_type, "content": message.body},
        "from": _address(message.sender) if message.sender else None,
        "sender": _address(message.sender) if message.sender else None,
        "toRecipients": [_address(r) for r in message.to],
        "ccRecipients": [_address(r) for r in message.cc],
        "bccRecipients": [_address(r) for r in message.bcc],
        "replyTo": [_address(r) for r in message.reply_to],
        "internetMessageHeaders": [{"name": n, "value": v} for n, v in message.headers],
    }
    if select is not None:
        payload = {k: v for k, v in payload.items() if k == "id" or k.lower() in select}
    if "attachments" in expand:
        payload["attachments"] = [attachment_json(a, with_bytes=True) for a in message.attachments]
    if "singlevalueextendedproperties" in expand:
        payload["singleValueExtendedProperties"] = [
            {"id": i, "value": v} for i, v in message.extended_properties
        ]
    return payload


def attachment_json(attachment: Attachment, *, with_bytes: bool) -> dict[str, object]:
    payload: dict[str, object] = {
        "@odata.type": "#microsoft.graph.fileAttachment",
        "id": attachment.id,
        "name": attachment.name,
        "contentType": attachment.content_type,
        "size": attachment.size,
        "isInline": attachment.inline,
        "contentId": attachment.content_id,
    }
    if with_bytes:
        payload["contentBytes"] = base64.b64encode(attachment.content_bytes).decode("ascii")
    return payload


def _address(recipient: Recipient) -> dict[str, object]:
    return {"emailAddress": {"name": recipient.name, "address": recipient.address}}


def _time(message: Message) -> str | None:
    return message.sent_at.strftime("%Y-%m-%dT%H:%M:%SZ") if message.sent_at else None
