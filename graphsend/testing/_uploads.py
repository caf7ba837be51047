"""Upload sessions: createUploadSession, then PUTs of byte ranges to a pre-authenticated URL
(the rules Graph's upload service applies, and the faults tests inject into it)."""

from __future__ import annotations

import re
import secrets
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Final, Literal
from urllib.parse import parse_qs, urlsplit

from ._compose import MAX_REQUEST, bad_request
from ._ids import attachment_id
from ._records import Attachment
from ._replies import Refusal

#: Graph's cap on one attachment, whatever way it comes.
MAX_ATTACHMENT: Final = 150 * 1024 * 1024
PREFIX: Final = "/uploads/"
_PATH: Final = re.compile(r"^/uploads/AttachmentSessions\('([A-Za-z0-9_-]+)'\)$")
_RANGE: Final = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")


@dataclass
class UploadSession:
    id: str
    secret: str
    user: str
    message_id: str
    name: str
    content_type: str
    size: int
    inline: bool
    content_id: str | None
    expires_at: datetime
    received: bytearray = field(default_factory=bytearray)

    @property
    def path(self) -> str:
        """The upload URL's path and query (the secret in the query pre-authenticates it)."""
        return f"{PREFIX}AttachmentSessions('{self.id}')?authtoken={self.secret}"

    def created(self) -> dict[str, object]:
        """createUploadSession's answer (Graph's uploadSession resource), less uploadUrl."""
        return {
            "@odata.context": "$metadata#microsoft.graph.uploadSession",
            "expirationDateTime": graph_time(self.expires_at),
            "nextExpectedRanges": ["0-"],
        }

    def status(self) -> dict[str, object]:
        """A chunk's answer, as the Outlook upload service writes it (Graph's "Attach large
        files to Outlook messages" walkthrough): PascalCase ExpirationDateTime, and
        nextExpectedRanges as one "{start}", not OneDrive's "start-end" ranges."""
        return {
            "@odata.context": "$metadata#AttachmentSessions/$entity",
            "ExpirationDateTime": graph_time(self.expires_at),
            "nextExpectedRanges": [str(len(self.received))],
        }


@dataclass
class UploadFault:
    chunk: int  # the chunk PUT (counted since the server started) it applies to
    kind: Literal["status", "reset"]
    status: int = 0
    code: str | None = None
    message: str | None = None
    retry_after: str | None = None


class Uploads:
    """Every open upload session of one FakeGraph, and the upload faults waiting. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[str, UploadSession] = {}
        self._faults: list[UploadFault] = []
        self._chunks = 0  # chunk PUTs counted so far (those without an Authorization header)
        #: Seconds a new session lives (Graph's last about 15 minutes).
        self.lifetime = 15 * 60.0
        #: Sessions cancelled by a DELETE on their upload URL.
        self.cancelled = 0

    def create(self, user: str, message_id: str, body: dict[str, Any]) -> UploadSession:
        """A new session from a createUploadSession body, checked as Graph checks it."""
        item = body.get("AttachmentItem")
        if set(body) - {"AttachmentItem"} or not isinstance(item, dict):
            raise bad_request("The body must be {'AttachmentItem': {...}}.")
        if item.get("attachmentType", "file") != "file":
            raise bad_request("FakeGraph uploads only attachmentType 'file'.")
        size = item.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise bad_request("AttachmentItem.size must be a positive number of bytes.")
        if size > MAX_ATTACHMENT:
            raise Refusal(
                400,
                "ErrorAttachmentSizeLimitExceeded",
                f"The attachment size {size} exceeds the limit of {MAX_ATTACHMENT} bytes.",
            )
        name, content_id = item.get("name"), item.get("contentId")
        if not isinstance(name, str) or not name:
            raise bad_request("AttachmentItem.name is required.")
        session = UploadSession(
            id=secrets.token_urlsafe(24),
            secret=secrets.token_urlsafe(32),
            user=user,
            message_id=message_id,
            name=name,
            content_type=str(item.get("contentType") or "application/octet-stream"),
            size=size,
            inline=bool(item.get("isInline", False)),
            content_id=content_id if isinstance(content_id, str) else None,
            expires_at=datetime.now(timezone.utc) + timedelta(seconds=self.lifetime),
        )
        with self._lock:
            self._sessions[session.id] = session
        return session

    def find(self, target: str) -> UploadSession | None:
        """The live session an upload URL names (None: unknown, wrong secret, or expired)."""
        parts = urlsplit(target)
        match = _PATH.match(parts.path)
        secret = parse_qs(parts.query).get("authtoken", [""])[0]
        if match is None:
            return None
        with self._lock:
            session = self._sessions.get(match.group(1))
            if session is None or not secrets.compare_digest(session.secret, secret):
                return None
            if session.expires_at <= datetime.now(timezone.utc):
                del self._sessions[session.id]
                return None
            return session

    def take_fault(self) -> UploadFault | None:
        """Count one chunk PUT; the fault planned for it, if any."""
        with self._lock:
            self._chunks += 1
            for i, fault in enumerate(self._faults):
                if fault.chunk == self._chunks:
                    return self._faults.pop(i)
        return None

    def add_fault(self, nth: int, fault: UploadFault) -> None:
        if nth < 1:
            raise ValueError("n counts chunk PUTs from 1")
        with self._lock:
            fault.chunk = self._chunks + nth
            self._faults.append(fault)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending_faults(self) -> int:
        with self._lock:
            return len(self._faults)

    def put(self, session: UploadSession, content_range: str | None, body: bytes) -> bool:
        """Store one chunk; True when the upload is complete. Refusal leaves it unchanged."""
        if len(body) > MAX_REQUEST:
            raise Refusal(
                413,
                "RequestEntityTooLarge",
                f"The chunk is {len(body)} bytes; each upload request is limited to "
                f"{MAX_REQUEST} bytes (4 MB).",
            )
        match = _RANGE.match((content_range or "").strip())
        with self._lock:
            expected = len(session.received)
            if match is None:
                problem = f"Content-Range {content_range!r} is not 'bytes start-end/total'."
            else:
                start, end, total = (int(g) for g in match.groups())
                problem = _range_problem(start, end, total, len(body), expected, session.size)
            if problem:
                ranges = {"nextExpectedRanges": [str(expected)]}
                raise Refusal(416, "InvalidRange", problem, ranges)
            session.received += body
            done = len(session.received) == session.size
            if done:
                del self._sessions[session.id]
        return done

    def cancel(self, session: UploadSession) -> None:
        with self._lock:
            if self._sessions.pop(session.id, None) is not None:
                self.cancelled += 1

    def expire_all(self) -> int:
        """Expire every open session now; return how many there were."""
        with self._lock:
            count = len(self._sessions)
            self._sessions.clear()
        return count

    def open_sessions(self) -> list[UploadSession]:
        with self._lock:
            return list(self._sessions.values())


def attachment_of(session: UploadSession) -> Attachment:
    return Attachment(
        id=attachment_id(),
        name=session.name,
        content_type=session.content_type,
        content_bytes=bytes(session.received),
        inline=session.inline,
        content_id=session.content_id,
    )


def _range_problem(start: int, end: int, total: int, length: int, expected: int, size: int) -> str:
    if total != size:
        return f"The total {total} in Content-Range is not the session's size {size}."
    if start != expected:
        return f"The chunk starts at {start}; the next expected range starts at {expected}."
    if end < start or end >= total:
        return f"The range {start}-{end} is not within 0-{total - 1}."
    if end - start + 1 != length:
        return f"The range {start}-{end} is {end - start + 1} bytes; the body has {length}."
    return ""


def graph_time(moment: datetime) -> str:
    """A timestamp as Graph writes it: seven fraction digits and Z."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}0Z"
