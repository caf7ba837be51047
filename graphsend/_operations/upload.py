"""Large attachments: an upload session and PUTs of byte ranges, streamed from disk.

The upload URL is pre-authenticated (in production it is another host): no request to it ever
carries the Authorization header. A chunk is not a send, so a failed one is simply sent again;
the session's ``nextExpectedRanges`` says where to go on, and an expired session (404) starts
over with a new one. A file is read by libcurl in C (pread of the chunk's range): nothing of it
passes through Python, so memory stays flat whatever the size.
"""

from __future__ import annotations

import os
import stat

from graphsend._operations import catalog as _operations
from graphsend._operations.catalog import PREFER_IMMUTABLE, settle
from graphsend._rules import log as _log
from graphsend._rules.errors import GraphError, SendError
from graphsend._rules.outcome import failure
from graphsend._rules.request import is_loopback
from graphsend._rules.retry import RetryState

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Generator
    from typing import Any, TypeAlias

    from graphsend._drivers.client import Client
    from graphsend._native import Result
    from graphsend._operations.catalog import Operation
    from graphsend._operations.message import Attachment, Message

    #: What steps() asks its driver for (see there).
    Step: TypeAlias = tuple[Any, ...]  # ("session",), ("put", url, start, end), ("sleep", s),
    # ("delete", url)

#: 12 x 320 KiB: Graph wants chunks in multiples of 320 KiB, each request under 4 MB.
CHUNK = 12 * 320 * 1024
#: New sessions after an expired one (404) before giving up.
RESTARTS = 2


def open_regular(path: str, name: str) -> tuple[int, int]:
    """(fd, size) of the regular file ``path``, at most 150 MB. O_NONBLOCK: a path that became
    a FIFO would block open() for ever; the flag is cleared again, pread ignores it anyway."""
    from graphsend._operations.message import ATTACHMENT_MAX

    flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)  # the size the session is made for, read once
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"attachment {name!r} is no longer a regular file: {path}")
        if st.st_size > ATTACHMENT_MAX:
            raise ValueError(f"attachment {name!r} grew past 150 MB")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd, st.st_size


class _Upload:
    def __init__(
        self,
        client: Client,
        message_id: str,
        att: Attachment,
        user: str | None,
        progress: Callable[[int, int], object] | None,
        fd: int,
        size: int,
    ) -> None:
        self.client, self.message_id, self.att, self.user = client, message_id, att, user
        self.progress, self.fd, self.size = progress, fd, size
        self._url, self._open = "", False
        extra = (PREFER_IMMUTABLE,) if client.immutable_ids else ()
        self.extra: tuple[str, ...] = extra

    def session_op(self) -> Operation[Any]:
        """The createUploadSession request for this attachment."""
        return _operations.create_upload_session(self.message_id, self.att.item_json(self.size))

    def session_url(self, doc: dict[str, Any], op: Operation[Any]) -> str:
        """The upload URL from createUploadSession's answer, or the error to raise."""
        url = doc.get("uploadUrl")
        if not isinstance(url, str) or not self._url_ok(url):
            # Never the URL itself: it carries the session's authtoken.
            why = f"createUploadSession gave no usable uploadUrl ({_where(url)})"
            raise settle(GraphError(201, message=why), op, False)
        return url

    def _url_ok(self, url: str) -> bool:
        """https, or http to a loopback host when the Client itself allows http there."""
        from urllib.parse import urlsplit

        if any(c in url for c in "\r\n\x00 "):
            return False
        parts = urlsplit(url)
        if parts.scheme == "https" and parts.hostname:
            return True
        allow_http = bool(self.client._options["allow_http"])
        return parts.scheme == "http" and allow_http and is_loopback(parts.hostname or "")

    def steps(self) -> Generator[Step, Any, str]:
        """The upload's rules, without I/O: yields ("session",) for a new session's URL,
        ("put", url, start, end) for a chunk's Result, ("sleep", seconds), ("delete", url) to
        cancel a failed upload's session (best effort: the answer is not looked at); returns
        the attachment id. Raises what the upload ends with."""
        url = yield ("session",)
        # Whether the session at ``url`` is still open: a failed upload DELETEs it (Graph's way
        # to cancel one), so its bytes do not linger on the server until it expires.
        self._open = True
        try:
            return (yield from self._chunks(url))
        except SendError:
            if self._open and not self.client._closed:
                yield ("delete", self._url)
            raise

    def _chunks(self, url: str) -> Generator[Step, Any, str]:
        self._url = url
        restarts = 0
        start = 0
        # One RetryState per position: progress starts a fresh count; no progress (a 416, or a
        # 200 whose next range does not move forward) counts toward the attempt limit as well.
        state = RetryState(self.client.retry, idempotent=True)
        while True:
            end = min(start + CHUNK, self.size) - 1
            result = yield ("put", url, start, end)
            status = result[0]
            what = f"<upload session> bytes {start}-{end}/{self.size}"
            if _log.debug_enabled():
                shown = status or f"curl error {result[4]}"
                self.client._log_attempt(
                    what, shown, result[1].get("request-id"), None, result[3], state.attempt, "PUT"
                )
            if status in (200, 201, 202):
                nxt = _next_start(result[2])
                if status == 201 or (nxt is None and end == self.size - 1):
                    self._open = False  # complete: the session is gone
                    if self.progress is not None:
                        self.progress(self.size, self.size)
                    return self._attachment_id(result)
                if nxt is None:
                    nxt = end + 1
                if start < nxt < self.size:
                    start = nxt
                    state = self._fresh(state)
                    if self.progress is not None:
                        self.progress(start, self.size)
                    continue
                self._no_progress(result, state, f"the server asked for byte {nxt} next")
                continue
            if status == 404:
                # The session expired (or was lost): a new one, from the first byte.
                self._open = False
                restarts += 1
                if restarts > RESTARTS:
                    raise self._fail(result, "the upload session expired again")
                url = self._url = yield ("session",)
                self._open = True
                start = 0
                state = self._fresh(state)
                continue
            if status == 416:
                nxt = _next_start(result[2])
                self._no_progress(result, state, "the server refused the byte range")
                if nxt is not None and nxt < self.size:
                    start = nxt
                continue
            # 5xx, 429 or a transport failure: a chunk sends no mail, so what may help is
            # retried; what cannot (an untrusted certificate, a 4xx) fails at once.
            err = failure(result, "")
            wait = state.next_wait(err, self.client._tokens)
            if wait is None:
                raise self._fail(result, f"chunk {start}-{end} failed (attempt {state.attempt})")
            self.client._log_retry(what, err, wait, state.attempt, "PUT")
            if wait:
                yield ("sleep", wait)
            if self.client._closed:
                raise self._fail(result, "not retried: the Client was closed")

    def _fresh(self, old: RetryState) -> RetryState:
        """A new attempt count for a new position; the time waited counts for the whole upload."""
        state = RetryState(self.client.retry, idempotent=True)
        state.waited = old.waited
        return state

    def _no_progress(self, result: Result, state: RetryState, why: str) -> None:
        """An answer that does not move the upload forward: one failed attempt."""
        if state.attempt >= self.client.retry.max_attempts:
            raise self._fail(result, f"{why}; no progress after {state.attempt} attempts")
        state.attempt += 1

    def _fail(self, result: Result, why: str) -> SendError:
        err = failure(result, "")
        err.client_request_id = None
        err.may_have_sent = False  # an upload sends nothing
        err.args = (f"uploading {self.att.name!r}: {why}: {err.args[0]}",)
        return err

    def _attachment_id(self, result: Result) -> str:
        found = _attachment_id(result)
        if found is None:
            raise self._fail(
                result,
                "the attachment was uploaded, but the answer names no id (no Location header, "
                "no id in the body)",
            )
        return found


def check_files(message: Message) -> None:
    """Open and check every attachment file before a draft exists (no draft left behind)."""
    for att in message.attachments:
        if att.path is not None:
            fd, _size = open_regular(att.path, att.name)
            os.close(fd)


def tag_unfinished_draft(exc: BaseException, draft_id: str, missing: int) -> None:
    """An attachment failed after the draft was made: say so, and give the draft's id."""
    note = f"the draft {draft_id} was created without this attachment" + (
        f" and the {missing} after it" if missing else ""
    )
    if isinstance(exc, SendError):
        exc.args = (f"{exc.args[0]}; {note}",)
    elif hasattr(exc, "add_note"):
        exc.add_note(note)
    else:  # Python 3.10 has no add_note(): the same attribute (3.11+ tracebacks show it)
        try:
            exc.__notes__ = [*getattr(exc, "__notes__", ()), note]  # type: ignore[attr-defined]
        except AttributeError:
            pass
    try:
        exc.draft_id = draft_id  # type: ignore[attr-defined]
    except AttributeError:
        pass  # an exception type with __slots__: nothing more to do


def _where(url: object) -> str:
    """The scheme and host of a URL, for messages: never its path or query (secrets)."""
    from urllib.parse import urlsplit

    if not isinstance(url, str):
        return f"a {type(url).__name__}"
    try:
        parts = urlsplit(url)
        return f"scheme {parts.scheme[:16]!r}, host {(parts.hostname or '')[:255]!r}"
    except ValueError:
        return "not a URL"


def _next_start(body: bytes) -> int | None:
    """The start of the first of nextExpectedRanges ("12345-" or "12345-67890"), if any."""
    doc = _operations.read_json(body)
    if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
        doc = doc["error"]
    ranges = None
    if isinstance(doc, dict):  # Outlook writes "NextExpectedRanges" too: any casing
        ranges = next((v for k, v in doc.items() if k.lower() == "nextexpectedranges"), None)
    if not isinstance(ranges, list) or not ranges or not isinstance(ranges[0], str):
        return None
    first = ranges[0].split("-", 1)[0]
    # ASCII digits, and few enough of them for int() (which refuses > 4300 digits).
    if not first or len(first) > 20 or not first.isascii() or not first.isdigit():
        return None
    return int(first)


def _attachment_id(result: Result) -> str | None:
    """From Location: ...Attachments('<id>') (or a JSON body with an id); None when neither."""
    location = result[1].get("location", "")
    marker = location.rfind("ttachments('")
    if marker >= 0:
        rest = location[marker + len("ttachments('") :]
        end = rest.find("')")
        if end > 0:
            from urllib.parse import unquote

            return unquote(rest[:end])
    doc = _operations.read_json(result[2])
    value = doc.get("id") if isinstance(doc, dict) else None
    return value if isinstance(value, str) and value else None
