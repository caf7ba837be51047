"""The compose calls' checks and Operations, one definition for Client and AsyncClient: each
function checks its arguments (a clear exception before anything goes on the wire) and returns
what to run. Those that make a draft also return the stamp it carries, which the client
remembers for reconciliation (reconcile.py)."""

from __future__ import annotations

import base64

from graphsend._native import check_text
from graphsend._operations import catalog as _operations
from graphsend._operations import reconcile as _reconcile
from graphsend._operations import upload as _upload
from graphsend._operations.message import (
    RECIPIENTS_MAX,
    REQUEST_MAX,
    Message,
    _no_controls,
    mime_bytes,
    recipients,
)
from graphsend._rules.request import check_flag

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

    from graphsend._operations.catalog import Operation
    from graphsend._operations.message import Attachment
    from graphsend._rules.receipt import Receipt

_TOO_BIG = "use client.send(client.create_draft(message)), which uploads attachments"


def draft(message: object) -> tuple[Operation[str], str, list[Attachment]]:
    """create_draft: the request, its stamp, and the attachments too big to ride in it (added
    one by one once the draft exists). Every attachment file is checked first, so no draft is
    left behind for a missing one."""
    if not isinstance(message, Message):
        raise TypeError("message must be a graphsend.Message")
    _upload.check_files(message)
    inline, later = message.split_attachments(REQUEST_MAX)
    doc, stamp = _reconcile.stamped(message.json(inline))
    return _operations.create_draft(doc), stamp, later


def reply(message_id: str, comment: str, reply_all: object) -> tuple[Operation[str], str]:
    """create_reply: the request and its draft's stamp."""
    _no_controls(comment, "comment", multiline=True)
    check_text(message_id, "message_id")
    stamp = _reconcile.new_stamp()
    op = _operations.create_reply(
        message_id, comment, check_flag(reply_all, "reply_all"), _reconcile.stamp_property(stamp)
    )
    return op, stamp


def forward(
    message_id: str, to: Iterable[str | tuple[str, str]] | str, comment: str
) -> tuple[Operation[str], str]:
    """create_forward: the request and its draft's stamp."""
    _no_controls(comment, "comment", multiline=True)
    check_text(message_id, "message_id")
    rcpt = recipients(to, "to")
    if not rcpt:
        raise ValueError("create_forward needs at least one recipient in to=")
    if len(rcpt) > RECIPIENTS_MAX:
        raise ValueError(f"{len(rcpt)} recipients; at most {RECIPIENTS_MAX} per message")
    stamp = _reconcile.new_stamp()
    op = _operations.create_forward(message_id, rcpt, comment, _reconcile.stamp_property(stamp))
    return op, stamp


def small_send_mail(message: Message, save_to_sent_items: bool = True) -> Operation[Receipt] | None:
    """The sendMail for a message that fits in one request (every attachment small, the JSON
    under Graph's 4 MB), else None: that one needs a draft and uploads."""
    if any(not a.small for a in message.attachments):
        return None
    op = _reconcile.send_mail(message.json(message.attachments), save_to_sent_items)
    if op.body is not None and len(op.body) > REQUEST_MAX:
        return None
    return op


def send_mail(message: object, save_to_sent_items: object) -> Operation[Receipt]:
    """send_mail: one request, or a ValueError naming the draft path when it cannot be."""
    if not isinstance(message, Message):
        raise TypeError("message must be a graphsend.Message")
    save = check_flag(save_to_sent_items, "save_to_sent_items")
    if any(not a.small for a in message.attachments):
        raise ValueError(
            f"an attachment is over 3 MB: sendMail cannot carry it (Graph's 4 MB request cap); "
            f"{_TOO_BIG}"
        )
    op = _reconcile.send_mail(message.json(message.attachments), save)
    if op.body is not None and len(op.body) > REQUEST_MAX:
        raise ValueError(
            f"the sendMail request would be {len(op.body)} bytes, over Graph's 4 MB cap; {_TOO_BIG}"
        )
    return op


def send_mime(mime: object, save_to_sent_items: object) -> Operation[Receipt]:
    """send_mime: the MIME sendMail, base64 as Graph wants it."""
    if not check_flag(save_to_sent_items, "save_to_sent_items"):
        raise ValueError("Graph's MIME sendMail always saves to Sent Items")
    encoded = base64.b64encode(mime_bytes(mime))
    if len(encoded) > REQUEST_MAX:
        raise ValueError(
            f"the MIME message is {len(encoded)} bytes in base64, over Graph's 4 MB cap; "
            "use create_draft() + attach() + send() for large messages"
        )
    return _operations.send_mime(encoded)
