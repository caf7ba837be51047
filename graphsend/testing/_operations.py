"""The compose operations Graph serves besides send: drafts, replies and forwards,
attachments, upload sessions and their URLs, sendMail (JSON and MIME), reading a message.

Each handler gets a request whose route, token and mailbox the rules (``_rules``) have checked;
it answers, or raises Refusal for Graph's error answer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._compose import (
    action_parameters,
    file_attachment,
    json_object,
    parse_message,
    recipients,
    reply_fields,
)
from ._http import Reply, Request
from ._mime import decode_mime, parse_mime
from ._records import DraftKind, Message
from ._replies import Refusal, Replies
from ._routing import Route
from ._shapes import attachment_json, message_json, query_options

if TYPE_CHECKING:
    from ._fakegraph import FakeGraph

_DEFAULT_SUBJECT = "FakeGraph test message"


def wants_immutable_ids(request: Request) -> bool:
    """``Prefer: IdType="ImmutableId"``, among any other preferences."""
    prefer = request.headers.get("prefer", "").replace(" ", "").lower()
    return 'idtype="immutableid"' in prefer.split(",")


def serve_operation(graph: FakeGraph, request: Request, route: Route, replies: Replies) -> Reply:
    user, message_id = route.user or "", route.message_id or ""
    method = request.method
    if route.kind == "create":
        return _only(method, "POST") or _create(graph, request, user, replies)
    if route.kind == "sendmail":
        return _only(method, "POST") or _send_mail(graph, request, user, replies)
    if route.kind == "action":
        return _only(method, "POST") or _create_reply(graph, request, route, replies)
    if route.kind == "upload_session":
        return _only(method, "POST") or _upload_session(graph, request, user, message_id, replies)
    if route.kind == "attachments":
        if method == "POST":
            return _attach(graph, request, user, message_id, replies)
        return _only(method, "GET", "POST") or _attachments(graph, user, message_id, replies)
    if route.kind == "attachment":
        return _only(method, "GET") or _attachment(graph, route, replies)
    if method == "PATCH":
        return _update(graph, request, user, message_id, replies)
    if method == "DELETE":
        if not graph._mailboxes.delete(user, message_id):
            raise Refusal(404, "ErrorItemNotFound", "The specified object was not found.")
        return replies.empty(204)
    return _only(method, "GET", "PATCH", "DELETE") or _get(graph, request, route, replies)


def _only(method: str, *allowed: str) -> Reply | None:
    if method in allowed or (method == "HEAD" and "GET" in allowed):
        return None
    raise Refusal(405, "MethodNotAllowed", f"The HTTP method '{method}' is not allowed.")


def _create(graph: FakeGraph, request: Request, user: str, replies: Replies) -> Reply:
    if _is_mime(request):
        fields = parse_mime(decode_mime(request.body), sending=False)
    else:
        fields = parse_message(json_object(request.body))
    # The draft goes where create_draft(user) puts it: "users/me" means the default user.
    draft = graph._mailboxes.new_draft(
        graph._key(user),
        _DEFAULT_SUBJECT if not request.body.strip() else "",
        "new",
        None,
        fields,
        immutable_id=wants_immutable_ids(request),
    )
    return _created(replies, request, message_json(draft, "drafts"))


def _create_reply(graph: FakeGraph, request: Request, route: Route, replies: Replies) -> Reply:
    user = route.user or ""
    allowed = ("comment", "message") + (("toRecipients",) if route.action == "forward" else ())
    name = f"create{route.action[0].upper()}{route.action[1:]}"
    data = action_parameters(json_object(request.body), allowed, name)
    comment = data.get("comment", "")
    if not isinstance(comment, str):
        raise Refusal(400, "RequestBodyRead", "comment must be a string.")
    original = _find(graph, user, route.message_id or "")[1]
    fields = reply_fields(original, route.action, comment, user)
    if "toRecipients" in data:
        fields["to"] = recipients(data["toRecipients"], "toRecipients")
    if "message" in data:
        fields.update(parse_message(data["message"]))
    kind: DraftKind = route.action  # type: ignore[assignment]
    draft = graph._mailboxes.new_draft(
        user, "", kind, None, fields, immutable_id=wants_immutable_ids(request)
    )
    return _created(replies, request, message_json(draft, "drafts"))


def _attach(
    graph: FakeGraph, request: Request, user: str, message_id: str, replies: Replies
) -> Reply:
    attachment = file_attachment(json_object(request.body))
    if not graph._mailboxes.add_attachment(user, message_id, attachment):
        raise _not_found()
    return replies.json(201, attachment_json(attachment, with_bytes=False))


def _attachments(graph: FakeGraph, user: str, message_id: str, replies: Replies) -> Reply:
    message = _find(graph, user, message_id)[1]
    values = [attachment_json(a, with_bytes=True) for a in message.attachments]
    return replies.json(200, {"value": values})


def _attachment(graph: FakeGraph, route: Route, replies: Replies) -> Reply:
    message = _find(graph, route.user or "", route.message_id or "")[1]
    for attachment in message.attachments:
        if attachment.id == route.attachment_id:
            return replies.json(200, attachment_json(attachment, with_bytes=True))
    raise _not_found()


def _upload_session(
    graph: FakeGraph, request: Request, user: str, message_id: str, replies: Replies
) -> Reply:
    folder = _find(graph, user, message_id)[0]
    if folder != "drafts":
        raise _not_found()
    body = action_parameters(json_object(request.body), ("AttachmentItem",), "createUploadSession")
    session = graph._uploads.create(user, message_id, body)
    payload = {**session.created(), "uploadUrl": graph.base_url + session.path}
    return replies.json(201, payload)


def _send_mail(graph: FakeGraph, request: Request, user: str, replies: Replies) -> Reply:
    if _is_mime(request):
        fields, save = parse_mime(decode_mime(request.body), sending=True), True
    else:
        parameters = ("message", "saveToSentItems")
        data = action_parameters(json_object(request.body), parameters, "sendMail")
        if "message" not in data:
            raise Refusal(400, "ErrorInvalidParameter", "The 'message' parameter is missing.")
        save = data.get("saveToSentItems", True)
        if not isinstance(save, bool):
            raise Refusal(400, "RequestBodyRead", "saveToSentItems must be true or false.")
        fields = parse_message(data["message"])
    sent = graph._mailboxes.send_mail(
        user,
        fields,
        save=save,
        immutable_id=wants_immutable_ids(request),
        delay=graph.sent_items_delay,
    )
    if sent is None:
        return replies.invalid_user(user)
    return replies.accepted()


def _update(
    graph: FakeGraph, request: Request, user: str, message_id: str, replies: Replies
) -> Reply:
    changes = parse_message(json_object(request.body))
    changes.pop("attachments", None)  # Graph adds attachments only through .../attachments
    draft = graph._mailboxes.update_draft(user, message_id, **changes)
    if draft is None:
        raise _not_found()
    return replies.json(200, message_json(draft, "drafts"))


def _get(graph: FakeGraph, request: Request, route: Route, replies: Replies) -> Reply:
    folder, message = _find(graph, route.user or "", route.message_id or "")
    select, expand = query_options(request.target)
    return replies.json(200, message_json(message, folder, select, expand))


def _find(graph: FakeGraph, user: str, message_id: str) -> tuple[str, Message]:
    found = graph._mailboxes.find(user, message_id)
    if found is None:
        raise _not_found()
    return found


def _created(replies: Replies, request: Request, payload: dict[str, object]) -> Reply:
    reply = replies.json(201, payload)
    if wants_immutable_ids(request):
        reply.headers.append(("Preference-Applied", 'IdType="ImmutableId"'))
    return reply


def _is_mime(request: Request) -> bool:
    return request.headers.get("content-type", "").split(";")[0].strip().lower() == "text/plain"


def _not_found() -> Refusal:
    return Refusal(404, "ErrorItemNotFound", "The specified object was not found in the store.")
