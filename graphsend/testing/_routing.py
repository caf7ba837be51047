"""Request targets → what they name: a send, a compose operation, a message, a folder to list,
an upload URL, or nothing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import unquote

from ._ids import ID_ALPHABET

_VERSIONS: Final = frozenset({"v1.0", "beta"})
_ACTIONS: Final = {
    "createreply": "reply",
    "createreplyall": "replyAll",
    "createforward": "forward",
}
RouteKind = Literal[
    "send",  # POST messages/{id}/send
    "create",  # messages: POST a draft
    "message",  # messages/{id}: GET, PATCH, DELETE
    "action",  # messages/{id}/createReply, createReplyAll, createForward
    "attachments",  # messages/{id}/attachments: POST one, GET the list
    "attachment",  # messages/{id}/attachments/{attachment id}
    "upload_session",  # messages/{id}/attachments/createUploadSession
    "sendmail",  # sendMail
    "folder",  # mailFolders/{inbox|drafts|sentitems}/messages
    "upload",  # an upload session's URL (outside the API's paths)
    "unknown",
]


@dataclass(frozen=True)
class Route:
    kind: RouteKind
    user: str | None = None
    message_id: str | None = None
    id_malformed: bool = False
    folder: str | None = None
    # For "action": the kind of draft it makes (reply, replyAll, forward).
    action: str = ""
    attachment_id: str | None = None
    # For "unknown": the segment Graph's 404 message names.
    segment: str = ""


def parse_route(target: str, default_user: str) -> Route:
    """Map a request target to what it names. Each path segment is percent-decoded once.

    ``me`` becomes ``default_user``; a user named in ``users/{user}`` is lower-cased.
    """
    path = target
    if not path.startswith("/") and "://" in path:  # absolute-form: scheme://authority/path
        after_scheme = path.split("://", 1)[1]
        slash = after_scheme.find("/")
        path = after_scheme[slash:] if slash >= 0 else "/"
    path = path.split("?", 1)[0].split("#", 1)[0]
    if path.startswith("/uploads/"):
        return Route("upload")
    segments = path.split("/")
    if len(segments) < 3 or segments[0] != "" or segments[1] not in _VERSIONS:
        bad = segments[1] if len(segments) > 1 else path
        return Route("unknown", segment=unquote(bad))
    rest = segments[2:]
    head = rest[0].lower()
    if head == "me":
        user, tail = default_user, rest[1:]
    elif head == "users" and len(rest) >= 2 and rest[1]:
        user, tail = unquote(rest[1]).casefold(), rest[2:]
    else:
        return Route("unknown", segment=unquote(rest[0]))
    if not tail:
        return Route("unknown", user=user, segment=unquote(rest[-1]))
    first = tail[0].lower()
    if first == "messages":
        if len(tail) == 1:
            return Route("create", user=user)
        if len(tail) >= 3 and tail[-1].lower() == "send":
            return _send_route(user, tail[1:-1])
        return _message_route(user, tail[1], tail[2:])
    if first == "sendmail" and len(tail) == 1:
        return Route("sendmail", user=user)
    if first == "mailfolders" and len(tail) == 3 and tail[2].lower() == "messages":
        folder = unquote(tail[1]).lower()
        if folder in ("inbox", "drafts", "sentitems"):
            return Route("folder", user=user, folder=folder)
        return Route("unknown", user=user, segment=unquote(tail[1]))
    return Route("unknown", user=user, segment=unquote(tail[0]))


def _message_route(user: str, id_segment: str, rest: list[str]) -> Route:
    message_id = unquote(id_segment)
    malformed = not message_id or any(c not in ID_ALPHABET for c in message_id)
    names = [segment.lower() for segment in rest]
    kind: RouteKind = "unknown"
    action, attachment = "", None
    if not names:
        kind = "message"
    elif len(names) == 1 and names[0] in _ACTIONS:
        kind, action = "action", _ACTIONS[names[0]]
    elif names[0] == "attachments" and len(names) == 1:
        kind = "attachments"
    elif names[0] == "attachments" and len(names) == 2:
        if names[1] == "createuploadsession":
            kind = "upload_session"
        else:
            kind, attachment = "attachment", unquote(rest[1])
    if kind == "unknown":
        return Route("unknown", user=user, segment=unquote(rest[-1]))
    return Route(
        kind,
        user=user,
        message_id=message_id,
        id_malformed=malformed,
        action=action,
        attachment_id=attachment,
    )


def _send_route(user: str, id_segments: list[str]) -> Route:
    if len(id_segments) != 1:
        # An unencoded "/" split the id: Graph answers 400 ErrorInvalidIdMalformed.
        return Route("send", user=user, id_malformed=True)
    message_id = unquote(id_segments[0])
    malformed = not message_id or any(c not in ID_ALPHABET for c in message_id)
    return Route("send", user=user, message_id=message_id, id_malformed=malformed)
