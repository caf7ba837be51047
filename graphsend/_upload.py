"""Large attachments: an upload session and PUTs of byte ranges, streamed from disk.

The upload URL is pre-authenticated (in production it is another host): no request to it ever
carries the Authorization header. A chunk is not a send, so a failed one is simply sent again;
the session's ``nextExpectedRanges`` says where to go on, and an expired session (404) starts
over with a new one. A file is read by libcurl in C (pread of the chunk's range): nothing of it
passes through Python, so memory stays flat whatever the size.
"""

from __future__ import annotations

import json
import os
import time

from . import _operations
from ._driver import PREFER_IMMUTABLE, failure, run, settle
from ._errors import GraphError, SendError
from ._request import is_loopback

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from ._client import Client
    from ._message import Attachment
    from ._native import Result

#: 12 x 320 KiB: Graph wants chunks in multiples of 320 KiB, each request under 4 MB.
CHUNK = 12 * 320 * 1024
#: New sessions after an expired one (404) before giving up.
RESTARTS = 2


def upload(
    client: Client,
    message_id: str,
    att: Attachment,
    user: str | None,
    progress: Callable[[int, int], object] | None,
) -> str:
    """Upload ``att`` to the draft; returns the attachment id (from the Location header)."""
    fd = -1
    try:
        if att.path is not None:
            fd = os.open(att.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            size = os.fstat(fd).st_size  # the size the session is made for, read once
        else:
            size = att.size
        from ._message import ATTACHMENT_MAX

        if size > ATTACHMENT_MAX:
            raise ValueError(f"attachment {att.name!r} grew past 150 MB")
        return _Upload(client, message_id, att, user, progress, fd, size).run()
    finally:
        if fd >= 0:
            os.close(fd)


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
        extra = (PREFER_IMMUTABLE,) if client.immutable_ids else ()
        self.extra: tuple[str, ...] = extra

    def session(self) -> str:
        op = _operations.create_upload_session(self.message_id, self.att.item_json(self.size))
        doc = run(self.client, op, self.user)
        url = doc.get("uploadUrl")
        if not isinstance(url, str) or not self._url_ok(url):
            err = GraphError(201, message=f"createUploadSession gave no usable uploadUrl: {url!r}")
            raise settle(err, op, False)
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

    def put(self, url: str, start: int, end: int) -> Result:
        headers = (f"Content-Range: bytes {start}-{end}/{self.size}", *self.extra)
        length = end - start + 1
        handle = self.client._handle()
        if self.fd >= 0:
            return handle.request("PUT", url, headers, file=(self.fd, start, length))
        assert self.att.data is not None
        return handle.request("PUT", url, headers, self.att.data[start : end + 1])

    def run(self) -> str:
        url = self.session()
        retry = self.client.retry
        restarts = failures = 0
        start = 0
        waited = 0.0
        while True:
            end = min(start + CHUNK, self.size) - 1
            result = self.put(url, start, end)
            status = result[0]
            if status in (200, 201, 202):
                nxt = _next_start(result[2])
                if status == 201 or (nxt is None and end == self.size - 1):
                    if self.progress is not None:
                        self.progress(self.size, self.size)
                    return _attachment_id(result)
                start = end + 1 if nxt is None else nxt
                failures = 0
                if self.progress is not None:
                    self.progress(start, self.size)
                continue
            if status == 404:
                # The session expired (or was lost): a new one, from the first byte.
                restarts += 1
                if restarts > RESTARTS:
                    raise self._fail(result, "the upload session expired again")
                url = self.session()
                start = 0
                continue
            if status == 416:
                nxt = _next_start(result[2])
                failures += 1
                if nxt is None or failures >= retry.max_attempts:
                    raise self._fail(result, "the server refused the byte range")
                start = nxt
                continue
            # 5xx, 429 or a transport failure: a chunk is safe to send again.
            failures += 1
            err = failure(result, "")
            if failures >= retry.max_attempts or not _transient(err):
                raise self._fail(result, f"chunk {start}-{end} failed {failures} times")
            wait = getattr(err, "retry_after", None)
            if wait is None:
                wait = retry.backoff(failures)
            if waited + wait > retry.max_total_wait:
                raise self._fail(result, "out of retry time")
            waited += wait
            time.sleep(wait)

    def _fail(self, result: Result, why: str) -> SendError:
        err = failure(result, "")
        err.client_request_id = None
        err.may_have_sent = False  # an upload sends nothing
        err.args = (f"uploading {self.att.name!r}: {why}: {err.args[0]}",)
        return err


def _transient(err: SendError) -> bool:
    status = getattr(err, "status", 0)
    return status == 0 or status == 429 or status >= 500


def _next_start(body: bytes) -> int | None:
    """The start of the first of nextExpectedRanges ("12345-" or "12345-67890"), if any."""
    try:
        doc = json.loads(body) if body else None
    except ValueError:
        return None
    if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
        doc = doc["error"]
    ranges = None
    if isinstance(doc, dict):  # Outlook writes "NextExpectedRanges" too: any casing
        ranges = next((v for k, v in doc.items() if k.lower() == "nextexpectedranges"), None)
    if not isinstance(ranges, list) or not ranges or not isinstance(ranges[0], str):
        return None
    first = ranges[0].split("-", 1)[0]
    return int(first) if first.isdigit() else None


def _attachment_id(result: Result) -> str:
    """From Location: ...Attachments('<id>') (or a JSON body with an id)."""
    location = result[1].get("location", "")
    marker = location.rfind("ttachments('")
    if marker >= 0:
        rest = location[marker + len("ttachments('") :]
        end = rest.find("')")
        if end > 0:
            from urllib.parse import unquote

            return unquote(rest[:end])
    try:
        doc = json.loads(result[2]) if result[2] else {}
        value = doc.get("id") if isinstance(doc, dict) else None
    except ValueError:
        value = None
    return value if isinstance(value, str) else ""
