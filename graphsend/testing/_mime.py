"""sendMail with MIME: a base64 body of RFC 5322 bytes, parsed with the stdlib email package
into the fields FakeGraph stores."""

from __future__ import annotations

import base64
import binascii
import email.parser
import email.policy
import email.utils
from email.message import EmailMessage
from typing import Any, cast

from ._ids import attachment_id
from ._records import Attachment, Recipient
from ._replies import Refusal

_IMPORTANCE = {"high": "high", "low": "low", "normal": "normal", "1": "high", "5": "low"}


def decode_mime(body: bytes) -> bytes:
    """The RFC 5322 bytes of a MIME sendMail body (base64, line breaks allowed)."""
    compact = b"".join(body.split())
    try:
        raw = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Refusal(
            400, "ErrorMimeContentInvalidBase64String", "Invalid base64 string for MIME content."
        ) from exc
    if not raw.strip():
        raise Refusal(400, "ErrorMimeContentInvalid", "The MIME content is empty.")
    return raw


def parse_mime(raw: bytes, *, sending: bool) -> dict[str, Any]:
    """The Message fields a MIME message sets (``sending``: it must name recipients)."""
    parser = email.parser.BytesParser(policy=email.policy.default)
    message = cast(EmailMessage, parser.parsebytes(raw))
    if sending and not any(message.get(h) for h in ("To", "Cc", "Bcc")):
        raise Refusal(400, "ErrorInvalidRecipients", "The MIME message has no recipients.")
    fields: dict[str, Any] = {
        "subject": str(message.get("Subject", "")),
        "to": _addresses(message, "To"),
        "cc": _addresses(message, "Cc"),
        "bcc": _addresses(message, "Bcc"),
        "reply_to": _addresses(message, "Reply-To"),
        "headers": tuple(
            (name, str(value)) for name, value in message.items() if name.lower().startswith("x-")
        ),
        "mime": raw,
    }
    senders = _addresses(message, "From")
    if senders:
        fields["sender"] = senders[0]
    priority = str(message.get("Importance") or message.get("X-Priority") or "normal")
    fields["importance"] = _IMPORTANCE.get(priority.strip().split(" ")[0].lower(), "normal")
    body = message.get_body(preferencelist=("html", "plain"))
    if body is not None:
        fields["body_type"] = "html" if body.get_content_subtype() == "html" else "text"
        fields["body"] = body.get_content()
    fields["attachments"] = tuple(_attachments(message, body))
    return fields


def _addresses(message: EmailMessage, header: str) -> tuple[Recipient, ...]:
    values = [str(v) for v in message.get_all(header, [])]
    return tuple(Recipient(a, n) for n, a in email.utils.getaddresses(values) if a)


def _attachments(message: EmailMessage, body: EmailMessage | None) -> list[Attachment]:
    found = []
    for part in message.walk():
        if part.is_multipart() or part is body or part is message:
            continue
        disposition = part.get_content_disposition()
        content_id = part.get("Content-ID")
        if disposition is None and content_id is None:
            continue  # an alternative body (the plain text beside the HTML)
        data = part.get_payload(decode=True)
        found.append(
            Attachment(
                id=attachment_id(),
                name=part.get_filename() or "",
                content_type=part.get_content_type(),
                content_bytes=data if isinstance(data, bytes) else b"",
                # A part with a Content-ID and no disposition (multipart/related) is inline too.
                inline=disposition == "inline" or (disposition is None and bool(content_id)),
                content_id=str(content_id).strip("<>") if content_id else None,
            )
        )
    return found
