"""How FakeGraph answers a request to an upload URL, in this order:

1. an ``Authorization`` header (the bearer token must never go there) → 400
   ``InvalidAuthenticationTokenForUpload``; nothing else happens, no fault is used;
2. an upload fault planned for this chunk PUT (``fail_upload_chunk``, ``reset_upload_chunk``);
3. an unknown, cancelled, completed or expired session → 404 ``ErrorItemNotFound``;
4. GET → 200 with the session's status; DELETE → 204, the session is gone; other methods 405;
5. PUT without Content-Length → 411; over 4 MB → 413 ``RequestEntityTooLarge``; a
   Content-Range that is not the next expected range, or does not match the body or the size
   → 416 ``InvalidRange`` with ``nextExpectedRanges``;
6. otherwise the chunk is stored: 200 with ``nextExpectedRanges`` (``["{next start}"]``, as
   Outlook's upload service writes it), or, for the last one, 201 with an empty body and a
   ``Location`` naming the attachment, which is now on the draft.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._http import Request
from ._replies import Refusal, Replies
from ._uploads import attachment_of

if TYPE_CHECKING:
    from ._fakegraph import FakeGraph
    from ._rules import _Exchange


async def serve_upload(
    graph: FakeGraph, request: Request, replies: Replies, exchange: _Exchange
) -> bool:
    uploads = graph._uploads
    if "authorization" in request.headers:
        message = "An upload URL is pre-authenticated: send no Authorization header to it."
        return await exchange.answer(
            replies.error(400, "InvalidAuthenticationTokenForUpload", message)
        )
    if request.method == "PUT":
        fault = uploads.take_fault()
        if fault is not None and fault.kind == "reset":
            exchange.reset()
            return False
        if fault is not None:
            reply = replies.error(fault.status, fault.code, fault.message)
            if fault.retry_after is not None:
                reply.headers.append(("Retry-After", fault.retry_after))
            return await exchange.answer(reply)
    session = uploads.find(request.target)
    if session is None:
        message = "The upload session was not found: it expired, completed or never existed."
        return await exchange.answer(replies.error(404, "ErrorItemNotFound", message))
    exchange.record.user, exchange.record.message_id = session.user, session.message_id
    if request.method in ("GET", "HEAD"):
        reply = replies.json(200, session.status())
        return await exchange.answer(reply, head_only=request.method == "HEAD")
    if request.method == "DELETE":
        uploads.cancel(session)
        return await exchange.answer(replies.empty(204))
    if request.method != "PUT":
        return await exchange.answer(replies.method_not_allowed(request.method, "PUT"))
    if request.content_length is None:
        return await exchange.answer(replies.error(411))
    try:
        done = uploads.put(session, request.headers.get("content-range"), request.body)
    except Refusal as refusal:
        return await exchange.answer(replies.refusal(refusal))
    if not done:
        return await exchange.answer(replies.json(200, session.status()))
    attachment = attachment_of(session)
    if not graph._mailboxes.add_attachment(session.user, session.message_id, attachment):
        message = "The message of this upload session no longer exists."
        return await exchange.answer(replies.error(404, "ErrorItemNotFound", message))
    reply = replies.empty(201)
    location = (
        f"{graph.base_url}/v1.0/Users('{session.user}')/Messages('{session.message_id}')"
        f"/Attachments('{attachment.id}')"
    )
    reply.headers.append(("Location", location))
    return await exchange.answer(reply)
