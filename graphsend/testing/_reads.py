"""Reading a mailbox: the switch that denies reads (403), and listing a folder with the one
``$filter`` shape Graph documents for finding a message by a single-value extended property::

    GET /{me}/mailFolders/sentitems/messages?$filter=singleValueExtendedProperties/Any(
        ep: ep/id eq 'String {guid} Name X' and ep/value eq 'v')

Any other ``$filter`` gets Graph's 400, so a client speaking another dialect shows.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from ._http import Reply, Request
from ._replies import Replies
from ._routing import Route
from ._shapes import message_json, query_options

if TYPE_CHECKING:
    from ._fakegraph import FakeGraph

_READ_KINDS = frozenset({"message", "folder", "attachments", "attachment"})
_STRING = r"'((?:[^']|'')*)'"
_FILTER = re.compile(
    r"\s*singleValueExtendedProperties/any\(\s*([A-Za-z_]\w*)\s*:\s*"
    rf"\1/id\s+eq\s+{_STRING}\s+and\s+\1/value\s+eq\s+{_STRING}\s*\)\s*",
    re.IGNORECASE,
)


def read_denied(graph: FakeGraph, request: Request, route: Route, replies: Replies) -> Reply | None:
    """403 ErrorAccessDenied for a read while ``graph.deny_reads`` is set (an app without
    Mail.ReadBasic / Mail.Read, or scoped away from the mailbox by RBAC)."""
    if graph.deny_reads and request.method in ("GET", "HEAD") and route.kind in _READ_KINDS:
        return replies.error(
            403, "ErrorAccessDenied", "Access is denied. Check credentials and try again."
        )
    return None


def parse_property_filter(text: str) -> tuple[str, str] | None:
    """(property id, value) of the documented extended-property filter, else None."""
    match = _FILTER.fullmatch(text)
    if match is None:
        return None
    return match.group(2).replace("''", "'"), match.group(3).replace("''", "'")


def list_folder(graph: FakeGraph, request: Request, route: Route, replies: Replies) -> Reply:
    user = route.user or ""
    folder = route.folder if route.folder in ("inbox", "drafts") else "sentitems"
    query = parse_qs(urlsplit(request.target).query)
    filters = query.get("$filter", []) + query.get("filter", [])
    wanted: tuple[str, str] | None = None
    if filters:
        wanted = parse_property_filter(filters[0]) if len(filters) == 1 else None
        if wanted is None:
            return replies.error(
                400,
                "BadRequest",
                "Invalid filter clause: FakeGraph understands only "
                "singleValueExtendedProperties/Any(ep: ep/id eq '...' and ep/value eq '...').",
            )
    tops = query.get("$top", []) + query.get("top", [])
    top: int | None = None
    if tops:
        if not tops[0].isdigit():
            return replies.error(400, "BadRequest", f"Invalid value '{tops[0]}' for $top.")
        top = int(tops[0])
    items = graph._mailboxes.folder(user, folder)
    if items is None:
        return replies.invalid_user(user)
    if wanted is not None:
        prop_id, value = wanted[0].casefold(), wanted[1]
        items = [
            m
            for m in items
            if any(i.casefold() == prop_id and v == value for i, v in m.extended_properties)
        ]
    if top is not None:
        items = items[:top]
    select, expand = query_options(request.target)
    return replies.json(200, {"value": [message_json(m, folder, select, expand) for m in items]})
